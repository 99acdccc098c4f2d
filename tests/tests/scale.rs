//! Adding and decommissioning brokers under load. A 3-broker cluster gets a fourth broker
//! that joins through one live broker's address (`--join`, not a founding member); it shows
//! in the cluster description, and `rafka cluster rebalance` moves replicas and preferred
//! leaders onto it until they are spread evenly. Then founding broker 1 — a controller voter —
//! is decommissioned (`rafka cluster decommission 1 --wait`): its replicas move away, the
//! controller's voters move to the new broker, and it is removed and stopped. Finally a
//! second founding broker is killed: the cluster (brokers 3 and 4 of voters 2, 3, 4) still
//! serves. A producer runs throughout; every acknowledged record is stored exactly once.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;
use rafka_tests::Cluster;
use rafka_tests::bounded;
use rafka_tests::broker::run_cli;
use rafka_tests::wait::poll;
use rafka_tests::wait::test_timeout;

const TOPIC: &str = "scale";
const PARTITIONS: u32 = 6;

/// Sends numbered records (up to 32 unacknowledged) until `stop`, counting acknowledgements
/// in `count`; the acknowledged values and the failures.
async fn produce(
    producer: Producer,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> (BTreeSet<String>, Vec<String>) {
    let mut pending = FuturesUnordered::new();
    let (mut acked, mut failed) = (BTreeSet::new(), Vec::new());
    let mut i = 0u64;
    let mut done = |v: String, r: Result<_, rafka_client::Error>| match r {
        Ok(_) => {
            acked.insert(v);
            count.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => failed.push(format!("{v}: {e}")),
    };
    while !stop.load(Ordering::Relaxed) {
        let value = format!("s{i:07}");
        i += 1;
        let record = ProducerRecord {
            topic: TOPIC.into(),
            partition: None,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(value.clone())),
            headers: Vec::new(),
            timestamp: None,
        };
        match producer.send(record).await {
            Ok(d) => pending.push(async move { (value, d.await) }),
            Err(e) => done(value, Err(e)),
        }
        while pending.len() >= 32 {
            if let Some((v, r)) = pending.next().await {
                done(v, r);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while let Some((v, r)) = pending.next().await {
        done(v, r);
    }
    (acked, failed)
}

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
        let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let load = tokio::spawn(produce(producer, stop.clone(), count.clone()));
        let acked_past = |n: usize| {
            let count = count.clone();
            poll("acknowledged sends", Duration::from_secs(120), move || {
                let done = count.load(Ordering::Relaxed);
                async move { if done >= n { Ok(()) } else { Err(anyhow::anyhow!("{done} of {n}")) } }
            })
        };
        acked_past(100).await.unwrap();

        // Three brokers cannot lose one while topics have three replicas: refused, one line.
        let run = run_cli(
            &["--bootstrap", &founders.join(","), "cluster", "decommission", "3"],
            &[],
            "",
        )
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
        acked_past(count.load(Ordering::Relaxed) + 100).await.unwrap();

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

        // Lose founding broker 2 as well: voters 3 and 4 are a quorum of 2, 3, 4.
        cluster.must_kill(2);
        acked_past(count.load(Ordering::Relaxed) + 100).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        let (acked, failed) = load.await.unwrap();
        assert!(failed.is_empty(), "sends failed: {:?}", &failed[..failed.len().min(5)]);

        let mut stored = Vec::new();
        for p in 0..PARTITIONS {
            for r in client.fetch_all(TOPIC, p, 0).await.unwrap() {
                stored.push(String::from_utf8_lossy(r.value_bytes()).into_owned());
            }
        }
        let unique: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(unique.len(), stored.len(), "a record was stored twice");
        let missing: Vec<&String> = acked.difference(&unique).take(5).collect();
        assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
        eprintln!("{} records acknowledged and stored through join, rebalance, decommission", acked.len());
    })
    .await;
}
