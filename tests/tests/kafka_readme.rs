//! The README's "Use any Kafka client" lines, run as written (with `localhost:9092` pointed
//! at a real broker) with `sh`, kcat and the real `rafka` binary, then its Python example
//! with confluent-kafka in the clients' venv, checking the output the README shows.

use std::process::Stdio;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::cli_binary;

const MARKER: &str = "<!-- kafka walkthrough: tests/tests/kafka_readme.rs runs these lines -->";
const PYTHON_MARKER: &str = "<!-- kafka python: tests/tests/kafka_readme.rs runs this -->";

/// The `lang` block after `marker` and the `text` block after it.
fn readme_block(marker: &str, lang: &str) -> (String, String) {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let start = text.find(marker).expect("README has the marker") + marker.len();
    let fence = format!("```{lang}\n");
    let block = text[start..].trim_start().strip_prefix(&fence).expect("a code block");
    let end = block.find("```").expect("the block ends");
    let rest = &block[end + 3..];
    let out = &rest[rest.find("```text\n").expect("a ```text block follows") + 8..];
    (block[..end].to_string(), out[..out.find("```").expect("the text block ends")].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_kafka_lines_work_as_written() {
    let (lines, want) = readme_block(MARKER, "sh");
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let (python, python_want) = readme_block(PYTHON_MARKER, "python");
    let cluster = Cluster::start(1).await;
    let addr = cluster.broker(1).addr().to_string();
    let bin_dir = cli_binary().parent().unwrap().to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&path))).unwrap();
    bounded("README Kafka lines", Duration::from_secs(120), async {
        let mut printed = String::new();
        for line in &lines {
            let line = line.replace("localhost:9092", &addr);
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&line)
                .env("PATH", &path)
                .env("RAFKA_BOOTSTRAP", &addr)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "`{line}` failed: {stderr}");
            printed.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        assert_eq!(printed, want, "what the README's Kafka lines print");

        let script = python.replace("localhost:9092", &addr);
        let out = tokio::process::Command::new(rafka_tests::kafka::python())
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the README's Python example failed: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), python_want, "what it prints");
    })
    .await;
}
