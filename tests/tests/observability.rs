//! Acceptance: observability, follower reads and leader placement.
//!
//! - `metrics_and_health_endpoints`: `/metrics`, `/healthz`, `/readyz` on the HTTP port.
//! - `follower_fetch_opt_in`: followers refuse reads with a leader hint unless the client
//!   opts in, then serve the same batches as the leader.
//! - `leaders_spread_and_return_to_preferred`: leaders spread evenly and return to an even
//!   spread after a broker is killed and restarted.

use std::collections::BTreeMap;
use std::time::Duration;

use rafka_proto::ErrorExt;
use rafka_proto::v1::Acks;
use rafka_proto::v1::Error;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchRequest;
use rafka_proto::v1::FetchResponse;
use rafka_proto::v1::FetchedBatch;
use rafka_proto::v1::ListOffsetsRequest;
use rafka_proto::v1::OffsetSpec;
use rafka_proto::v1::offset_spec::Spec;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::client::code_of;
use rafka_tests::http::http_get;
use rafka_tests::poll;
use rafka_tests::produced::Produced;
use rafka_tests::records;
use rafka_tests::records::decode_batch;
use rafka_tests::wait::test_timeout;

async fn start(brokers: usize, extra_toml: String) -> Cluster {
    Cluster::start_with(ClusterOptions { brokers, extra_toml, ..Default::default() }).await
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name{k="v",...} value` lines; comments and lines that do not parse are skipped.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.trim().rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some(Sample { name: name.to_string(), labels, value })
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample_value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints() {
    const TOPIC: &str = "metered";
    const BATCHES: usize = 10;
    let cluster = start(1, String::new()).await;
    bounded("metrics_and_health_endpoints", test_timeout(Duration::from_secs(60)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 1).await;
        let mut sent = Produced::default();
        sent.append(&client, TOPIC, 0, BATCHES, (3, 100), records::now_ms()).await;
        for offset in [0, 5, sent.end() - 1] {
            let resp = client.fetch(TOPIC, 0, offset).await.unwrap();
            assert_eq!(code_of(&resp), ErrorCode::None, "fetch at {offset}: {:?}", resp.error);
        }
        let (leader, _) = client.leader(TOPIC, 0).await.unwrap();
        let http = cluster.broker(leader).http_addr();
        let hw = sent.end() as f64;
        let partition = format!("{TOPIC}-0");

        // Counters appear at once; gauges are refreshed every five seconds.
        poll("the expected metrics", Duration::from_secs(20), || async {
            let (code, body) = http_get(http, "/metrics", Duration::from_secs(5)).await?;
            anyhow::ensure!(code == 200, "GET /metrics: HTTP {code}");
            let all = samples(&body);
            let requests = "rafka_broker_requests_total";
            let produced = sample_value(&all, requests, &[("rpc", "produce"), ("code", "NONE")]);
            anyhow::ensure!(
                produced == Some(BATCHES as f64),
                "{requests} for produce NONE: {produced:?}, expected {BATCHES}"
            );
            let fetched = sample_value(&all, requests, &[("rpc", "fetch"), ("code", "NONE")]);
            anyhow::ensure!(fetched.is_some_and(|n| n >= 3.0), "{requests} fetch: {fetched:?}");
            let latency = all.iter().any(|s| {
                s.name.starts_with("rafka_broker_request_duration_seconds")
                    && s.labels.get("rpc").is_some_and(|r| r == "produce")
            });
            anyhow::ensure!(latency, "no rafka_broker_request_duration_seconds for produce");
            let hw_seen = sample_value(
                &all,
                "rafka_partition_high_watermark",
                &[("partition", partition.as_str())],
            );
            anyhow::ensure!(hw_seen == Some(hw), "high watermark gauge {hw_seen:?}, want {hw}");
            let controller = sample_value(&all, "rafka_controller_leader", &[]);
            anyhow::ensure!(controller == Some(1.0), "rafka_controller_leader: {controller:?}");
            anyhow::ensure!(
                all.iter().any(|s| s.name.starts_with("rafka_raft_")),
                "no rafka_raft_* metric"
            );
            let version = env!("CARGO_PKG_VERSION");
            let build = sample_value(&all, "rafka_build_info", &[("version", version)]);
            anyhow::ensure!(build == Some(1.0), "rafka_build_info{{version={version}}}: {build:?}");
            Ok::<_, anyhow::Error>(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

        let broker = cluster.broker(leader);
        assert_eq!(broker.http_status("/healthz").await.unwrap(), 200, "/healthz");
        assert_eq!(broker.http_status("/readyz").await.unwrap(), 200, "/readyz");
    })
    .await;
}

/// One fetch of partition 0 at the broker at `addr`, no routing, no retries.
async fn fetch_at(
    client: &TestClient,
    addr: &str,
    topic: &str,
    offset: i64,
    allow_follower: bool,
) -> anyhow::Result<FetchResponse> {
    let req = FetchRequest {
        topic: topic.into(),
        partition: 0,
        offset,
        allow_follower,
        ..Default::default()
    };
    let mut data = client.data_at(addr)?;
    let resp = tokio::time::timeout(Duration::from_secs(5), data.fetch(req))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no answer to a fetch in 5 s"))??;
    Ok(resp.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_fetch_opt_in() {
    const TOPIC: &str = "replicated";
    // No preferred-leader moves during the test: the leader found stays the leader.
    let cluster = start(3, "leader-balance-interval-ms = 3600000\n".into()).await;
    bounded("follower_fetch_opt_in", test_timeout(Duration::from_secs(60)), async {
        let client = cluster.client();
        client.must_create_topic(TOPIC, 1, 3).await;
        let mut sent = Produced::default();
        sent.append(&client, TOPIC, 0, 20, (5, 200), records::now_ms()).await;
        let hw = sent.end();
        let (leader, leader_addr) = client.leader(TOPIC, 0).await.unwrap();
        assert_eq!(leader_addr, cluster.broker(leader).addr().to_string(), "leader address");
        let follower = *cluster.ids().iter().find(|&&id| id != leader).unwrap();
        let follower_addr = cluster.broker(follower).addr().to_string();

        // A follower that has not heard from the leader yet may say LEADER_NOT_AVAILABLE.
        let what = format!("NOT_LEADER naming broker {leader} from follower {follower}");
        let resp = poll(&what, Duration::from_secs(10), || async {
            let resp = fetch_at(&client, &follower_addr, TOPIC, 0, false).await?;
            let e = resp.error.clone().unwrap_or_else(Error::none);
            let hint = e.leader.as_ref().map(|h| (h.broker_id, h.address.clone()));
            anyhow::ensure!(
                e.error_code() == ErrorCode::NotLeader
                    && hint == Some((leader, leader_addr.clone())),
                "{:?} with leader hint {hint:?}: {}",
                e.error_code(),
                e.message
            );
            Ok::<_, anyhow::Error>(resp)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(resp.batches.is_empty(), "a refused fetch returns no batches");
        let mut data = client.data_at(&follower_addr).unwrap();
        let lookup = ListOffsetsRequest {
            topic: TOPIC.into(),
            partition: 0,
            spec: Some(OffsetSpec { spec: Some(Spec::Latest(true)) }),
            allow_follower: false,
        };
        let resp = data.list_offsets(lookup.clone()).await.unwrap().into_inner();
        assert_eq!(code_of(&resp), ErrorCode::NotLeader, "ListOffsets at the follower");

        // Opted in: the follower answers once its high watermark has caught up.
        let what = format!("follower {follower} to serve offsets up to {hw}");
        poll(&what, Duration::from_secs(20), || async {
            let resp = fetch_at(&client, &follower_addr, TOPIC, 0, true).await?;
            anyhow::ensure!(
                code_of(&resp) == ErrorCode::None && resp.high_watermark == hw,
                "{:?}, high watermark {}",
                resp.error,
                resp.high_watermark
            );
            Ok::<_, anyhow::Error>(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let mut theirs: Vec<FetchedBatch> = Vec::new();
        let mut next = 0;
        while next < hw {
            let resp = fetch_at(&client, &follower_addr, TOPIC, next, true).await.unwrap();
            assert_eq!(code_of(&resp), ErrorCode::None, "follower fetch at {next}");
            assert!(!resp.batches.is_empty(), "follower fetch at {next} below {hw}: no batches");
            for b in resp.batches {
                assert_eq!(b.base_offset, next, "follower batches follow each other");
                next += decode_batch(b.base_offset, &b.batch).unwrap().len() as i64;
                theirs.push(b);
            }
        }
        let ours = client.fetch_batches(TOPIC, 0, 0).await.unwrap();
        assert!(theirs == ours, "the follower's batches differ from the leader's");
        let got: Vec<_> =
            theirs.iter().flat_map(|b| decode_batch(b.base_offset, &b.batch).unwrap()).collect();
        sent.check_from(&got, 0, "read from the follower");
        let resp = data.list_offsets(ListOffsetsRequest { allow_follower: true, ..lookup });
        let resp = resp.await.unwrap().into_inner();
        assert_eq!((code_of(&resp), resp.offset), (ErrorCode::None, hw), "follower latest");
    })
    .await;
}

/// Per partition of `topic`: its leader (`None` while it has none) and its preferred (first)
/// replica.
async fn leaders(client: &TestClient, topic: &str) -> anyhow::Result<Vec<(Option<u64>, u64)>> {
    let md = client.metadata(&[topic]).await?;
    let t = md.topics.iter().find(|t| t.name == topic).expect("an entry per requested topic");
    anyhow::ensure!(code_of(t) == ErrorCode::None, "metadata of {topic}: {:?}", t.error);
    let mut parts = t.partitions.clone();
    parts.sort_by_key(|p| p.partition);
    Ok(parts.iter().map(|p| (p.leader, p.replicas.first().copied().unwrap_or(0))).collect())
}

/// Waits until each broker in `ids` leads exactly `each` partitions of `topic`, each led by
/// its preferred replica.
async fn wait_for_even_spread(client: &TestClient, topic: &str, ids: &[u64], each: usize) {
    let what = format!("every broker leading {each} partitions of {topic}, all preferred");
    poll(&what, Duration::from_secs(60), || async {
        let l = leaders(client, topic).await?;
        let counts: Vec<usize> =
            ids.iter().map(|id| l.iter().filter(|(x, _)| *x == Some(*id)).count()).collect();
        anyhow::ensure!(
            counts.iter().all(|&c| c == each) && l.iter().all(|(x, p)| *x == Some(*p)),
            "(leader, preferred) by partition {l:?}; leaderships per broker {counts:?}"
        );
        Ok::<_, anyhow::Error>(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_spread_and_return_to_preferred() {
    const TOPIC: &str = "balanced";
    let mut cluster = start(3, "leader-balance-interval-ms = 1000\n".into()).await;
    let limit = test_timeout(Duration::from_secs(120));
    bounded("leaders_spread_and_return_to_preferred", limit, async {
        let all = cluster.ids();
        let client = cluster.client();
        client.must_create_topic(TOPIC, 6, 3).await;
        wait_for_even_spread(&client, TOPIC, &all, 2).await;

        let md = client.metadata(&[]).await.unwrap();
        let victim = *all.iter().rev().find(|&&id| Some(id) != md.controller_id).unwrap();
        cluster.must_kill(victim);
        let what = format!("leaders other than the killed broker {victim} for every partition");
        poll(&what, Duration::from_secs(30), || async {
            let l = leaders(&client, TOPIC).await?;
            anyhow::ensure!(
                l.iter().all(|(x, _)| x.is_some_and(|x| x != victim)),
                "(leader, preferred) by partition {l:?}"
            );
            Ok::<_, anyhow::Error>(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        // Writes work meanwhile.
        for p in 0..6 {
            let batch = records::values_batch(&["while down"], records::now_ms());
            client.must_produce(TOPIC, p, batch, Acks::All).await;
        }

        cluster.must_restart(victim, Duration::from_secs(60)).await;
        wait_for_even_spread(&client, TOPIC, &all, 2).await;
    })
    .await;
}
