//! Running under systemd: the unit file passes `systemd-analyze verify` (with the built
//! broker as its `ExecStart`), and the broker speaks systemd's readiness protocol
//! (`Type=notify`) — `READY=1` once `/readyz` answers 200, `STOPPING=1` on SIGTERM — to a
//! notification socket the test listens on, as systemd would.

use std::path::Path;
use std::time::Duration;

use rafka_tests::Cluster;
use rafka_tests::broker::broker_binary;
use rafka_tests::http::http_get;
use tokio::net::UnixDatagram;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/rafka-broker.service")).unwrap();
    assert!(unit.contains("Type=notify"), "the unit relies on READY=1");
    let bin = broker_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The unit as installed, with the binary where this build put it.
    let unit = unit.replace("/usr/local/bin/rafka-broker", bin.to_str().unwrap());
    let path = dir.path().join("rafka-broker.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package) must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {stderr}");
    // Unknown keys and bad values are only warnings to it: there must be none.
    let about_unit: Vec<&str> =
        stderr.lines().filter(|l| l.contains("rafka-broker.service")).collect();
    assert!(about_unit.is_empty(), "warnings about the unit: {about_unit:#?}");
}

/// The next notification on `socket`, within 60 s.
async fn next(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buf))
        .await
        .expect("no notification within 60 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut cluster = Cluster::start(1).await;
    let broker = &mut cluster.brokers_mut()[0];
    broker.terminate(Duration::from_secs(30)).await.unwrap();
    broker.set_env("NOTIFY_SOCKET", path.to_str().unwrap());
    broker.start().unwrap();
    let ready = next(&socket).await;
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let (status, body) =
        http_get(broker.http_addr(), "/readyz", Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 200, "READY=1 came before the broker was ready: {body}");
    broker.terminate(Duration::from_secs(30)).await.unwrap();
    let stopping = next(&socket).await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}
