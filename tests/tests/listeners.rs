//! Named listeners: every broker of a 3-broker cluster has a second listener, `external`,
//! advertised as `localhost:PORT` while the brokers talk over their `127.0.0.1` one. A client
//! that connects to a listener is shown every broker at that listener's address — in Kafka's
//! Metadata, DescribeCluster and FindCoordinator, and in rafka's gRPC cluster description —
//! and kcat and the `rafka` CLI work end to end through the external listener alone.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::DescribeClusterRequest;
use kafka_protocol::messages::DescribeClusterResponse;
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::FindCoordinatorResponse;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::StrBytes;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::broker::run_cli;
use rafka_tests::kafka::call;
use rafka_tests::kafka::must_kcat;
use rafka_tests::wait::test_timeout;

/// `host:port` of every broker as a Kafka Metadata answer asked at `addr` lists them.
async fn kafka_brokers(addr: SocketAddr) -> BTreeSet<String> {
    let req = MetadataRequest::default().with_topics(Some(vec![]));
    let md: MetadataResponse = call(addr, 12, &req).await.expect("metadata");
    md.brokers.iter().map(|b| format!("{}:{}", b.host, b.port)).collect()
}

/// Runs the CLI against `bootstrap`; its standard output, once it succeeded.
async fn cli(bootstrap: &str, args: &[&str], stdin: &str) -> String {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    let run = run_cli(&all, &[], stdin).await;
    assert_eq!(run.code, Some(0), "rafka {args:?}: {}", run.stderr);
    run.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_the_addresses_of_the_listener_they_connected_to() {
    let limit = test_timeout(Duration::from_secs(240));
    bounded("listeners", limit, async {
        let cluster =
            Cluster::start_with(ClusterOptions { external_listener: true, ..Default::default() })
                .await;
        let internal: BTreeSet<String> =
            cluster.brokers().iter().map(|b| b.addr().to_string()).collect();
        let external_addr = |b: &rafka_tests::Broker| b.external_addr().expect("external");
        let external: BTreeSet<String> = cluster
            .brokers()
            .iter()
            .map(|b| format!("localhost:{}", external_addr(b).port()))
            .collect();
        let one = &cluster.brokers()[0];

        // Kafka: Metadata on each listener names that listener's addresses (broker 1 is
        // asked; forwarded answers from the controller leader are translated too).
        for b in cluster.brokers() {
            assert_eq!(kafka_brokers(b.addr()).await, internal, "internal, asked {}", b.id());
            assert_eq!(
                kafka_brokers(external_addr(b)).await,
                external,
                "external, asked {}",
                b.id()
            );
        }
        let req = DescribeClusterRequest::default().with_endpoint_type(1);
        let dc: DescribeClusterResponse = call(external_addr(one), 0, &req).await.unwrap();
        let described: BTreeSet<String> =
            dc.brokers.iter().map(|b| format!("{}:{}", b.host, b.port)).collect();
        assert_eq!(described, external, "DescribeCluster on the external listener");

        // kcat through the external listener only: produce, then read back with a group (the
        // coordinator is found and reached at its external address).
        let bootstrap = format!("localhost:{}", external_addr(one).port());
        let lines: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        must_kcat(&["-b", &bootstrap, "-P", "-t", "ext", "-p", "0"], &(lines.join("\n") + "\n"))
            .await;
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("readers"))
            .with_key_type(0);
        let fc: FindCoordinatorResponse = call(external_addr(one), 3, &req).await.unwrap();
        assert_eq!(fc.error_code, 0, "{:?}", fc.error_message);
        let coordinator = format!("{}:{}", fc.host, fc.port);
        assert!(external.contains(&coordinator), "coordinator at {coordinator}");
        let out = must_kcat(
            &["-b", &bootstrap, "-G", "readers", "-o", "beginning", "-c", "20", "-e", "ext"],
            "",
        )
        .await;
        let read: Vec<&str> = out.lines().filter(|l| l.starts_with('r')).collect();
        assert_eq!(read, lines.iter().map(String::as_str).collect::<Vec<_>>());

        // gRPC: the CLI through the external listener sees external addresses and produces
        // and consumes through them.
        let status = cli(&bootstrap, &["cluster", "status", "--output", "json"], "").await;
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        let shown: BTreeSet<String> = v["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["address"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shown, external, "gRPC cluster status on the external listener");
        cli(&bootstrap, &["topic", "create", "grpc-ext", "--partitions", "2"], "").await;
        cli(&bootstrap, &["produce", "grpc-ext", "--partition", "1"], "a\nb\nc\n").await;
        let args =
            ["consume", "grpc-ext", "--partition", "1", "--offset", "0", "--max-messages", "3"];
        assert_eq!(cli(&bootstrap, &args, "").await, "a\nb\nc\n");
    })
    .await;
}
