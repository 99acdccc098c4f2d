//! Acceptance: `deploy/local-cluster.sh up|status|restart|down` runs a 3-broker cluster on
//! the fixed local ports (9092-9094, HTTP 9644-9646) that serves clients, restarts it one
//! broker at a time (waiting for the cluster to be whole between brokers), and stops it
//! again. Fails at once with a clear message when those ports are taken.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rafka_tests::TestClient;
use rafka_tests::bounded;
use rafka_tests::broker::broker_binary;
use rafka_tests::ports::is_free;

/// Runs the script with `arg` in `dir`; returns its stdout.
fn script(dir: &Path, arg: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(repo.join("deploy/local-cluster.sh"))
        .arg(arg)
        .current_dir(dir)
        .env("RAFKA_BROKER_BIN", broker_binary().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "local-cluster.sh {arg} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Stops the cluster however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let _ = Command::new(repo.join("deploy/local-cluster.sh"))
            .arg("down")
            .current_dir(self.0)
            .env("RAFKA_BROKER_BIN", broker_binary().unwrap())
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_script_starts_serves_and_stops() {
    for port in [9092, 9093, 9094, 9644, 9645, 9646] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            is_free(addr),
            "port {port} is taken: the local cluster needs 9092-9094, 9644-9646"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let _down = Down(dir.path());
    bounded("local cluster", Duration::from_secs(240), async {
        let up = script(dir.path(), "up");
        assert!(up.contains("ready"), "{up}");
        let status = script(dir.path(), "status");
        assert_eq!(status.matches(", ready").count(), 3, "{status}");
        let client =
            TestClient::new([9092, 9093, 9094].map(|p| SocketAddr::from(([127, 0, 0, 1], p))));
        client.must_create_topic("local", 3, 3).await;
        let batch = rafka_tests::records::values_batch(&["before"], 1);
        client.must_produce("local", 0, batch, rafka_proto::v1::Acks::All).await;
        // A rolling restart: every broker restarted, one at a time, the cluster whole after.
        let restart = script(dir.path(), "restart");
        assert_eq!(restart.matches("restarting broker").count(), 3, "{restart}");
        assert!(restart.contains("restarted, one broker at a time"), "{restart}");
        let status = script(dir.path(), "status");
        assert_eq!(status.matches(", ready").count(), 3, "{status}");
        let read = client.fetch_all("local", 0, 0).await.unwrap();
        assert_eq!(read.len(), 1, "the record survives the restart");
        let down = script(dir.path(), "down");
        assert!(down.contains("stopped"), "{down}");
        let status = script(dir.path(), "status");
        assert_eq!(status.matches(": stopped").count(), 3, "{status}");
        for id in 1..=3 {
            assert!(
                dir.path().join(format!("rafka-data/{id}/data")).is_dir(),
                "data of broker {id}"
            );
        }
    })
    .await;
}
