//! Acceptance: the `rafka` CLI, driven as a user drives it.
//!
//! - `readme_walkthrough_works_as_written`: starts a 1-broker cluster, then runs the README's
//!   "Quick start" walk-through lines (checked to be exactly the README's) with `sh`, the
//!   real `rafka` binary first on `PATH` and `RAFKA_BOOTSTRAP` pointing at the broker, and
//!   checks every line's output.
//! - `errors_are_one_line_and_non_zero`: unknown topics, unknown partitions, bad flags and
//!   bad values each print exactly one line on stderr and exit non-zero; `produce
//!   --print-offsets` still prints one `error CODE` line per input line.
//!
//! The binary is `$RAFKA_BIN`, else `rafka` next to the broker binary in the target dir
//! (`cargo build --workspace` builds both; `cargo test --workspace` too).

use std::process::Stdio;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::cli_binary;
use tokio::io::AsyncWriteExt;

/// Bound on one CLI invocation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The README walk-through, line by line, with the stdout each line must print (the README
/// shows the same output).
const WALKTHROUGH: &[(&str, &str)] = &[
    (
        "rafka topic create greetings --partitions 1 --replication-factor 1",
        "created topic greetings (1 partition, replication factor 1)\n",
    ),
    (
        "printf 'alice:hi\\nbob:hello\\nalice:bye\\n' | rafka produce greetings --key-separator : \
         --print-offsets",
        "0 0\n0 1\n0 2\n",
    ),
    (
        "rafka consume greetings --group readers --format '%o %k %v' --timeout-ms 2000",
        "0 alice hi\n1 bob hello\n2 alice bye\n",
    ),
    (
        "rafka group describe readers",
        "group readers (empty), 0 members, assignor uniform\n\
         \x20 TOPIC      PARTITION  COMMITTED  HIGH_WATERMARK  LAG  OWNER\n\
         \x20 greetings  0          3          3               0    -\n",
    ),
    (
        "rafka consume greetings --offset 1 --format '%o %k %v' --max-messages 2",
        "1 bob hello\n2 alice bye\n",
    ),
];

/// What one command did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `line` with `sh -c`, the CLI first on `PATH`, `RAFKA_BOOTSTRAP=bootstrap`, and
/// `stdin` as its input; bounded by [`COMMAND_TIMEOUT`].
async fn sh(line: &str, bootstrap: &str, stdin: &str) -> Run {
    let bin_dir = cli_binary().parent().unwrap().to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path))).unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("PATH", path)
        .env("RAFKA_BOOTSTRAP", bootstrap)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning sh");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{line}` did not finish within {COMMAND_TIMEOUT:?}"))
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The bootstrap string of `cluster`.
fn bootstrap(cluster: &Cluster) -> String {
    cluster.addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The README's walk-through: the lines of the `sh` block right after the line
/// `<!-- walkthrough: tests/tests/cli.rs runs these lines -->`, and the `text` block after
/// it (the output the README promises).
fn readme_walkthrough() -> (Vec<String>, String) {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let marker = "<!-- walkthrough: tests/tests/cli.rs runs these lines -->";
    let start = text.find(marker).expect("README has the walk-through marker") + marker.len();
    let block = text[start..].trim_start().strip_prefix("```sh\n").expect("a ```sh block");
    let end = block.find("```").expect("the block ends");
    let lines = block[..end].lines().map(str::to_string).collect();
    let rest = &block[end + 3..];
    let out = &rest[rest.find("```text\n").expect("a ```text block follows") + 8..];
    let output = out[..out.find("```").expect("the text block ends")].to_string();
    (lines, output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_works_as_written() {
    let (lines, output) = readme_walkthrough();
    let expected: Vec<&str> = WALKTHROUGH.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, expected, "the README walk-through and this test disagree");
    let printed: String = WALKTHROUGH.iter().map(|(_, o)| *o).collect();
    assert_eq!(output, printed, "the README's walk-through output and this test disagree");
    let mut cluster = Cluster::start(1).await;
    let bootstrap = bootstrap(&cluster);
    bounded("README walk-through", Duration::from_secs(180), async {
        for (line, want) in WALKTHROUGH {
            let run = sh(line, &bootstrap, "").await;
            assert_eq!(run.code, Some(0), "`{line}` failed: {run:?}");
            assert_eq!(run.stdout, *want, "`{line}` printed {run:?}");
        }
    })
    .await;
    let status = cluster.must_terminate(1, Duration::from_secs(30)).await;
    assert!(status.success(), "the broker stopped with {status}");
    // At the default level an operator sees what started, changed and stopped, not the
    // internals of the broker's dependencies. (RUST_LOG, when set, is a filter of the
    // developer's choosing: nothing to check then.)
    if std::env::var_os("RUST_LOG").is_none() {
        let log = std::fs::read_to_string(cluster.broker(1).log_path()).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("=== rafka-tests:")).collect();
        assert!(
            lines.len() < MAX_SESSION_LOG_LINES,
            "the walk-through session logged {} lines at the default level:\n{}",
            lines.len(),
            lines.join("\n")
        );
        assert!(lines.iter().any(|l| l.contains("broker stopped")), "{log}");
    }
}

/// Most log lines a fresh single broker may write for the whole walk-through, start to stop.
const MAX_SESSION_LOG_LINES: usize = 40;

/// Asserts `run` failed with exactly one line on stderr that contains every `needle`.
fn assert_one_line_error(what: &str, run: &Run, needles: &[&str]) {
    assert!(matches!(run.code, Some(c) if c != 0), "{what}: exit status {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{what}: stderr is not one line: {run:?}");
    for n in needles {
        assert!(run.stderr.contains(n), "{what}: stderr lacks {n:?}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_non_zero() {
    let cluster = Cluster::start(1).await;
    let b = bootstrap(&cluster);
    bounded("CLI errors", Duration::from_secs(180), async {
        let run = sh("rafka topic describe nope", &b, "").await;
        assert_one_line_error("describe unknown topic", &run, &["nope", "does not exist"]);
        assert!(run.stdout.is_empty(), "{run:?}");

        let run = sh("rafka consume nope --max-messages 1", &b, "").await;
        assert_one_line_error("consume unknown topic", &run, &["nope"]);

        let run = sh("rafka produce nope --print-offsets", &b, "a\nb\n").await;
        assert_ne!(run.code, Some(0), "{run:?}");
        assert_eq!(run.stdout, "error UNKNOWN_TOPIC\nerror UNKNOWN_TOPIC\n", "{run:?}");

        let run = sh("rafka produce nope", &b, "a\n").await;
        assert_one_line_error("produce unknown topic", &run, &["UNKNOWN_TOPIC"]);
        assert!(run.stdout.is_empty(), "{run:?}");

        let run = sh("rafka topic create t --partitions 2 --replication-factor 1", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let run = sh("rafka produce t --partition 0 --print-offsets", &b, "x\ny\n").await;
        assert_eq!((run.code, run.stdout.as_str()), (Some(0), "0 0\n0 1\n"), "{run:?}");
        let run = sh("rafka produce t --partition 9 --print-offsets", &b, "x\n").await;
        assert_eq!(run.stdout, "error UNKNOWN_PARTITION\n", "{run:?}");
        assert_ne!(run.code, Some(0), "{run:?}");
        let run = sh("rafka consume t --partition 9 --max-messages 1", &b, "").await;
        assert_one_line_error("consume unknown partition", &run, &["partition 9"]);

        let run = sh("rafka topic create t2 --bogus", &b, "").await;
        assert_one_line_error("unknown flag", &run, &["--bogus"]);
        assert_eq!(run.code, Some(2), "{run:?}");
        let run = sh("rafka consume t --offset sometime", &b, "").await;
        assert_one_line_error("bad offset", &run, &["sometime"]);
        let run = sh("rafka produce", &b, "").await;
        assert_one_line_error("missing topic", &run, &["TOPIC"]);
        let run = sh("rafka topic create t --partitions 1 --replication-factor 1", &b, "").await;
        assert_one_line_error("topic exists", &run, &["TOPIC_ALREADY_EXISTS"]);

        let run = sh("rafka topic reassign t 0 --brokers 1,9", &b, "").await;
        assert_one_line_error("reassign to an unknown broker", &run, &["broker 9"]);
        let run = sh("rafka topic reassign t 5 --brokers 1", &b, "").await;
        assert_one_line_error("reassign an unknown partition", &run, &["UNKNOWN_PARTITION"]);
        let run = sh("rafka topic transfer-leadership t 0 --to 7", &b, "").await;
        assert_one_line_error("transfer to a non-replica", &run, &["not a replica"]);
        let run = sh("rafka topic reassign t 0 --brokers 1", &b, "").await;
        assert_eq!((run.code, run.stdout.as_str()), (Some(0), "moving t/0 to brokers 1\n"));
        let run = sh("rafka topic transfer-leadership t 1 --to 1 --output json", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");

        let run = sh("rafka topic describe t --output json", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["name"], "t");
        let parts = v["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{v}");
        for p in parts {
            assert_eq!(p["moving_to"], serde_json::json!([]), "{v}");
            for field in ["partition", "leader", "replicas", "in_sync"] {
                assert!(!p[field].is_null(), "{field} missing in {v}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_retries_through_a_broker_restart() {
    use tokio::io::AsyncBufReadExt;

    let mut cluster = Cluster::start(1).await;
    let b = bootstrap(&cluster);
    bounded("produce across a restart", Duration::from_secs(240), async {
        let run = sh("rafka topic create r --partitions 1 --replication-factor 1", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let mut child = tokio::process::Command::new(cli_binary())
            .args(["produce", "r", "--print-offsets", "--delivery-timeout-ms", "120000"])
            .env("RAFKA_BOOTSTRAP", &b)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        stdin.write_all(b"a\n").await.unwrap();
        stdin.flush().await.unwrap();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("0 0"));

        // The broker dies with records on their way; they are retried until it is back.
        cluster.must_kill(1);
        stdin.write_all(b"b\nc\n").await.unwrap();
        drop(stdin);
        cluster.must_restart(1, Duration::from_secs(60)).await;
        let mut rest = Vec::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            rest.push(line);
        }
        let status = child.wait().await.unwrap();
        assert_eq!(rest, ["0 1", "0 2"], "status {status:?}");
        assert!(status.success(), "{status:?}");

        let run = sh("rafka consume r --max-messages 3", &b, "").await;
        assert_eq!((run.code, run.stdout.as_str()), (Some(0), "a\nb\nc\n"), "{run:?}");
    })
    .await;
}

/// Runs `line`, asserts it succeeded, and parses its stdout as one JSON document.
async fn json_of(line: &str, bootstrap: &str) -> serde_json::Value {
    let run = sh(line, bootstrap, "").await;
    assert_eq!(run.code, Some(0), "`{line}`: {run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("`{line}`: {e}: {run:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_outputs_groups_and_bench() {
    let cluster = Cluster::start(1).await;
    let b = bootstrap(&cluster);
    bounded("json outputs", Duration::from_secs(240), async {
        let run = sh("rafka topic create j --partitions 2 --replication-factor 1", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");

        let v =
            json_of("rafka bench produce j --records 300 --record-size 10 --output json", &b).await;
        assert_eq!((v["bench"].as_str(), v["records"].as_u64()), (Some("produce"), Some(300)));
        assert_eq!(v["errors"], 0, "{v}");
        for q in ["p50", "p99", "p999", "max"] {
            assert!(v["latency_us"][q].as_u64().is_some_and(|l| l > 0), "{q} in {v}");
        }
        let v = json_of("rafka bench consume j --output json", &b).await;
        assert_eq!(v["records"], 300, "{v}");
        assert_eq!(v["bytes"], 3000, "{v}");

        // One at a time into a topic it creates, with the broker's CPU and a disk baseline.
        let http = cluster.brokers()[0].http_addr();
        let disk = tempfile::tempdir().unwrap();
        let line = format!(
            "rafka bench produce k --create --partitions 2 --replication-factor 1 --records 50 \
             --record-size 100 --sync --broker-metrics {http} --disk-baseline {} --output json",
            disk.path().display()
        );
        let v = json_of(&line, &b).await;
        assert_eq!((v["records"].as_u64(), v["errors"].as_u64()), (Some(50), Some(0)), "{v}");
        let p = &v["params"];
        assert_eq!((p["window"].as_u64(), p["linger_ms"].as_u64()), (Some(1), Some(0)), "{v}");
        assert_eq!(p["partitions"], 2, "{v}");
        assert!(v["broker_cpu_seconds"].as_f64().is_some_and(|c| c > 0.0), "{v}");
        assert!(v["broker_cpu_ms_per_mb"].as_f64().is_some_and(|c| c > 0.0), "{v}");
        let d = &v["disk_baseline"];
        assert!(d["mb_per_sec"].as_f64().is_some_and(|m| m > 0.0), "{v}");
        assert!(d["fraction_used"].as_f64().is_some_and(|f| f > 0.0), "{v}");
        assert_eq!(std::fs::read_dir(disk.path()).unwrap().count(), 0, "baseline files removed");
        // Open loop at a fixed rate with a window.
        let line = "rafka bench produce k --records 100 --rate 1000 --window 10 --output json";
        let v = json_of(line, &b).await;
        assert_eq!((v["records"].as_u64(), v["errors"].as_u64()), (Some(100), Some(0)), "{v}");
        assert_eq!(
            (v["params"]["rate"].as_f64(), v["params"]["window"].as_u64()),
            (Some(1000.0), Some(10))
        );
        // Paced: the last of 100 records at 1,000/s is not sent before 99 ms.
        assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.099), "{v}");

        // A group reads everything, commits what it printed, and leaves.
        let run = sh("rafka consume j --group jg --output json --max-messages 300", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_eq!(run.stdout.lines().count(), 300, "{run:?}");
        let first: serde_json::Value =
            serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
        assert_eq!(first["topic"], "j", "{first}");
        let v = json_of("rafka group describe jg --output json", &b).await;
        assert_eq!(v["group"], "jg", "{v}");
        assert_eq!(v["members"].as_array().map(Vec::len), Some(0), "left the group: {v}");
        assert!(v["state"].is_string(), "{v}");
        let parts = v["partitions"].as_array().unwrap();
        let committed: i64 = parts.iter().map(|p| p["committed_offset"].as_i64().unwrap()).sum();
        assert_eq!(committed, 300, "{v}");
        for p in parts {
            assert_eq!(p["lag"], 0, "{v}");
            for field in ["topic", "partition", "high_watermark", "owner"] {
                assert!(p.get(field).is_some(), "{field} missing in {v}");
            }
        }
        // Reset to the start and read again from the group's offsets.
        let run = sh("rafka group reset-offsets jg --topic j --to-earliest", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let run = sh("rafka consume j --group jg --max-messages 300 --format %o", &b, "").await;
        assert_eq!(run.stdout.lines().count(), 300, "{run:?}");
        let v = json_of("rafka group list --output json", &b).await;
        assert_eq!(v[0]["group"], "jg", "{v}");

        let v = json_of("rafka cluster status --output json", &b).await;
        assert_eq!(v["brokers"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["brokers"][0]["alive"], true, "{v}");
        assert!(v["controller"].is_u64(), "{v}");

        let v = json_of("rafka bench e2e j --rate 200 --seconds 1 --output json", &b).await;
        assert_eq!((v["bench"].as_str(), v["records"].as_u64()), (Some("e2e"), Some(200)));

        // The same batches over both protocols; each replay reads the whole topic.
        let run = sh("rafka topic create pr --partitions 3 --replication-factor 1", &b, "").await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let line = "rafka bench protocols pr --records 250 --record-size 10 --batch-records 7 \
                    --output json";
        let v = json_of(line, &b).await;
        let runs = v["runs"].as_array().unwrap();
        let row = |phase: &str, protocol: &str| {
            runs.iter().find(|r| r["phase"] == phase && r["protocol"] == protocol).unwrap()
        };
        for protocol in ["grpc", "kafka"] {
            assert_eq!(row("produce", protocol)["records"], 250, "{v}");
            assert_eq!(row("replay", protocol)["records"], 500, "{v}");
            assert_eq!(row("replay", protocol)["bytes"], 5000, "{v}");
        }
        assert!(v["kafka_over_grpc"]["produce"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    })
    .await;
}
