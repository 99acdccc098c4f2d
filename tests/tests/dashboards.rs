//! The monitoring files in `deploy/`: Prometheus' scrape config and alert rules pass
//! `promtool check`, the Grafana dashboard is valid JSON with queries, and every rafka metric
//! the dashboard and the alerts query exists on a live broker's `/metrics`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::broker::run_cli;
use rafka_tests::http::http_get;
use rafka_tests::wait::poll;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `rafka_*` metric names in `text` (histogram series keep their `_bucket` suffix).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("rafka_") {
        let boundary = text[..i].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if !boundary {
            continue;
        }
        let name: String =
            text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        names.insert(name);
    }
    names
}

/// Every query of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/rafka.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect()
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules() {
    for (what, file) in [
        ("rules", "deploy/prometheus/alerts.yml"),
        ("config", "deploy/prometheus/prometheus.yml"),
        ("config", "deploy/prometheus/compose.yml"),
    ] {
        let out = std::process::Command::new("promtool")
            .args(["check", what])
            .arg(repo().join(file))
            .output()
            .expect("promtool (Debian's prometheus package) must be installed");
        assert!(
            out.status.success(),
            "promtool check {what} {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = read("deploy/prometheus/alerts.yml");
    for alert in [
        "RafkaBrokerDown",
        "RafkaUnderReplicatedPartitions",
        "RafkaNoControllerLeader",
        "RafkaConsumerLagGrowing",
        "RafkaDiskFilling",
        "RafkaDiskFull",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "no {alert} rule");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_query_exists() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "the dashboard has {} queries", queries.len());
    let mut wanted = metric_names(&queries.join("\n"));
    wanted.extend(metric_names(&read("deploy/prometheus/alerts.yml")));
    assert!(wanted.len() >= 15, "only {wanted:?}");

    // A broker that has produced, fetched, fsynced and has a consumer group with a lag.
    let cluster = Cluster::start(1).await;
    let b = cluster.addrs()[0].to_string();
    let cli = |args: &[&str], stdin: &str| {
        let mut all = vec!["--bootstrap", b.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.into_iter().map(String::from).collect();
        let stdin = stdin.to_string();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            let run = run_cli(&args, &[], &stdin).await;
            assert_eq!(run.code, Some(0), "rafka {args:?}: {}", run.stderr);
        }
    };
    cli(&["topic", "create", "watched", "--partitions", "1"], "").await;
    cli(&["produce", "watched"], "a\nb\nc\n").await;
    cli(
        &["consume", "watched", "--group", "g", "--max-messages", "2", "--timeout-ms", "20000"],
        "",
    )
    .await;
    cli(&["produce", "watched"], "d\n").await;
    let http = cluster.brokers()[0].http_addr();
    poll("every queried metric on /metrics", Duration::from_secs(60), || async {
        let (_, body) = http_get(http, "/metrics", Duration::from_secs(10)).await?;
        let present: BTreeSet<&str> = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let missing: Vec<&String> =
            wanted.iter().filter(|w| !present.contains(w.as_str())).collect();
        anyhow::ensure!(missing.is_empty(), "missing from /metrics: {missing:?}");
        Ok(())
    })
    .await
    .unwrap();
}
