//! Regression: writes keep being accepted past the leader lease, both while they flow and
//! after a quiet period longer than half the lease (an idle group sends no heartbeats, so
//! its lease lapses and the next write renews it). A lone voter has no lease to renew: an
//! earlier version waited for a quorum acknowledgement that never came and refused every
//! write 8 s (half the loopback lease) after the partition was created.
//!
//! Timing is shrunk so the lease is 1.6 s (8 × election-timeout-max-ms).

use std::time::Duration;
use std::time::Instant;

use rafka_proto::v1::Acks;
use rafka_tests::Cluster;
use rafka_tests::ClusterOptions;
use rafka_tests::bounded;
use rafka_tests::records;

const SHORT_LEASE: &str = "[raft]
heartbeat-interval-ms = 50
election-timeout-min-ms = 100
election-timeout-max-ms = 200
";
const LEASE: Duration = Duration::from_millis(1600);

async fn writes_past_the_lease(brokers: usize) {
    let cluster = Cluster::start_with(ClusterOptions {
        brokers,
        extra_toml: SHORT_LEASE.into(),
        ..Default::default()
    })
    .await;
    bounded("writes past the lease", Duration::from_secs(90), async {
        let client = cluster.client().with_timeout(Duration::from_secs(10));
        client.must_create_topic("lease", 1, brokers as u32).await;
        let started = Instant::now();
        let mut next = 0;
        // Writes flowing for two leases.
        while started.elapsed() < 2 * LEASE {
            let batch = records::values_batch(&[format!("v{next}")], records::now_ms());
            let base = client.must_produce("lease", 0, batch, Acks::All).await;
            assert_eq!(base, next, "offset of write #{next}");
            next += 1;
        }
        // A deliberate quiet window longer than half the lease, then one more write.
        tokio::time::sleep(LEASE).await;
        let batch = records::values_batch(&["after the quiet"], records::now_ms());
        let base = client.must_produce("lease", 0, batch, Acks::All).await;
        assert_eq!(base, next, "offset of the write after the quiet window");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_voter_accepts_writes_past_the_lease() {
    writes_past_the_lease(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_accept_writes_past_the_lease() {
    writes_past_the_lease(3).await;
}
