//! Adding and decommissioning brokers under load. A 3-broker cluster gets a fourth broker
//! that joins through one live broker's address (`--join`, not a founding member); it shows
//! in the cluster description, and `rafka cluster rebalance` moves replicas and preferred
//! leaders onto it until they are spread evenly. Then founding broker 1 — a controller voter —
//! is decommissioned (`rafka cluster decommission 1 --wait`): its replicas move away, the
//! controller's voters move to the new broker, and it is removed and stopped. Broker 4
//! restarts without `--join` (its data says where it belongs). Finally a second founding
//! broker is killed: the cluster (brokers 3 and 4 of voters 2, 3, 4) still
//! serves. A producer runs throughout; every acknowledged record is stored exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::run_cli;
use rafka_tests::load::Load;
use rafka_tests::load::assert_stored_once;
use rafka_tests::load::stored_values;
use rafka_tests::wait::poll;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "scale";
const PARTITIONS: u32 = 6;

/// Replicas and preferred leaders of the topic per broker.
async fn spread(admin: &Admin) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let md = admin.metadata(&[TOPIC]).await.unwrap();
    let (mut replicas, mut first) = (BTreeMap::new(), BTreeMap::new());
    for p in &md.topic(TOPIC).unwrap().partitions {
        for r in &p.replicas {
            *replicas.entry(*r).or_default() += 1;
        }
        *first.entry(p.replicas[0]).or_default() += 1;
    }
    (replicas, first)
}

async fn cli(bootstrap: &str, args: &[&str]) -> String {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    let run = run_cli(&all, &[], "").await;
    assert_eq!(run.code, Some(0), "rafka {args:?}: {}{}", run.stdout, run.stderr);
    run.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_join_rebalance_and_decommission_under_load() {
    bounded("scale", test_timeout(Duration::from_secs(600)), async {
        let mut cluster = Cluster::start(3).await;
        let client = cluster.client();
        client.must_create_topic(TOPIC, PARTITIONS, 3).await;
        let founders: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
        let producer_client = Client::connect(&founders.join(",")).await.unwrap();
        let producer = Producer::new(producer_client, ProducerConfig::default()).unwrap();
        let load = Load::start(producer, TOPIC, "s", 200);
        let more = |n: usize| load.wait_acked(load.acked() + n, Duration::from_secs(120));
        more(100).await.unwrap();

        // Three brokers cannot lose one while topics have three replicas: refused, one line.
        let run =
            run_cli(&["--bootstrap", &founders.join(","), "cluster", "decommission", "3"], &[], "")
                .await;
        assert_ne!(run.code, Some(0), "decommissioned a broker that was needed");
        assert!(run.stderr.contains("add a broker first"), "{}", run.stderr);

        // Broker 4 joins through broker 1.
        let id = cluster.must_add_broker();
        assert_eq!(id, 4);
        cluster.broker_mut(4).wait_ready(Duration::from_secs(90)).await.unwrap();
        let all: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
        let bootstrap = all.join(",");
        let admin = Admin::new(Client::connect(&bootstrap).await.unwrap());
        let described = admin.describe_cluster().await.unwrap();
        let four = described.brokers.iter().find(|b| b.broker_id == 4).expect("broker 4 listed");
        assert!(four.alive && !four.draining, "{four:?}");

        // Rebalance: broker 4 gets its share of replicas and of preferred leaders.
        let out = cli(&bootstrap, &["cluster", "rebalance", "--wait", "240000"]).await;
        assert!(out.contains("balanced"), "{out}");
        let (replicas, first) = spread(&admin).await;
        assert!(
            (1..=4).all(|b| (4..=5).contains(replicas.get(&b).unwrap_or(&0))),
            "replicas per broker after the rebalance: {replicas:?}"
        );
        assert!(first.get(&4).copied().unwrap_or(0) >= 1, "preferred leaders {first:?}");
        more(100).await.unwrap();

        // Decommission founding broker 1, a controller voter.
        let before = admin.describe_cluster().await.unwrap();
        assert!(before.controller_voters.contains(&1), "{:?}", before.controller_voters);
        let out = cli(&bootstrap, &["cluster", "decommission", "1", "--wait", "240000"]).await;
        assert!(out.contains("broker 1 is decommissioned"), "{out}");
        let after = admin.describe_cluster().await.unwrap();
        assert_eq!(after.decommissioned, vec![1]);
        assert!(after.brokers.iter().all(|b| b.broker_id != 1), "{:?}", after.brokers);
        poll("controller voters off broker 1", Duration::from_secs(60), || async {
            let v = admin.describe_cluster().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            match v.controller_voters == vec![2, 3, 4] {
                true => Ok(()),
                false => Err(anyhow::anyhow!("voters {:?}", v.controller_voters)),
            }
        })
        .await
        .unwrap();
        let (replicas, _) = spread(&admin).await;
        assert!(!replicas.contains_key(&1), "{replicas:?}");
        let status = cluster.must_terminate(1, Duration::from_secs(30)).await;
        assert!(status.success(), "{status}");

        // Broker 4 restarts without `--join`: its data says where it belongs.
        cluster.must_terminate(4, Duration::from_secs(30)).await;
        cluster.broker_mut(4).drop_flag("--join");
        cluster.broker_mut(4).start().unwrap();
        cluster.broker_mut(4).wait_ready(Duration::from_secs(60)).await.unwrap();
        let out = cli(&all[2..].join(","), &["cluster", "health", "--wait", "120000"]).await;
        assert!(out.contains("healthy"), "{out}");

        // Lose founding broker 2 as well: voters 3 and 4 are a quorum of 2, 3, 4.
        cluster.must_kill(2);
        more(100).await.unwrap();
        let sent = load.finish().await;
        let failed = &sent.failed;
        assert!(failed.is_empty(), "sends failed: {:?}", &failed[..failed.len().min(5)]);

        let stored = stored_values(&client, TOPIC, PARTITIONS).await;
        assert_stored_once(&sent.acked, &stored);
        eprintln!(
            "{} records acknowledged and stored through join, rebalance, decommission",
            sent.acked.len()
        );
    })
    .await;
}
