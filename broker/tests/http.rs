//! The side port with the real global recorder of `telemetry`, in its own test binary because
//! the recorder is process-wide.

use std::sync::Arc;
use std::time::Duration;

use rafka_broker::http::Health;
use rafka_broker::telemetry;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

struct Up;

impl Health for Up {
    fn live(&self) -> bool {
        true
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn metrics_endpoint_serves_the_global_recorder() {
    let handle = telemetry::install_metrics_recorder().unwrap();
    // A second call (e.g. a test harness and main both setting up) gets the same recorder.
    let again = telemetry::install_metrics_recorder().unwrap();
    let upkeep = rafka_broker::supervisor::Supervisor::new();
    upkeep.spawn("metrics upkeep", telemetry::upkeep(again));
    metrics::histogram!("rafka_test_fsync_seconds").record(0.002);
    metrics::counter!("rafka_test_appends_total").increment(3);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    #[allow(clippy::disallowed_methods)] // the test owns and awaits this task
    let server =
        tokio::spawn(rafka_broker::http::serve(listener, None, handle, Arc::new(Up), async {
            let _ = stopped.await;
        }));

    // Some CPU time for process_cpu_seconds_total to show (the kernel counts in ticks).
    let busy = std::time::Instant::now();
    let mut x = 0u64;
    while busy.elapsed() < Duration::from_millis(100) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("rafka_test_appends_total 3"), "{raw}");
    assert!(raw.contains("rafka_test_fsync_seconds_bucket{le=\"0.0025\"} 1"), "{raw}");
    assert!(raw.contains("rafka_test_fsync_seconds_bucket{le=\"0.001\"} 0"), "{raw}");
    // The process's own figures, read at the scrape: this test has used some CPU.
    let cpu = raw
        .lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .unwrap_or_else(|| panic!("no process_cpu_seconds_total in {raw}"));
    assert!(cpu.trim().parse::<f64>().unwrap() > 0.0, "{cpu}");
    for name in ["process_resident_memory_bytes ", "process_open_fds ", "process_threads "] {
        assert!(raw.lines().any(|l| l.starts_with(name)), "no {name}in {raw}");
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    upkeep.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_side_port_speaks_tls_when_asked() {
    use rustls_pki_types::pem::PemObject;
    let handle = telemetry::install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = rafka_tests::certs::Ca::new(dir.path(), "ca");
    let cert = ca.issue(dir.path(), "broker", "broker", &["127.0.0.1"]);
    let config = rafka_broker::config::TlsConfig {
        cert_file: cert.cert.clone(),
        key_file: cert.key.clone(),
        client_ca_file: ca.pem.clone(),
        http: true,
        ..Default::default()
    };
    let tls = rafka_broker::tls::Tls::load(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    #[allow(clippy::disallowed_methods)] // the test owns and awaits this task
    let server =
        tokio::spawn(rafka_broker::http::serve(listener, Some(tls), handle, Arc::new(Up), async {
            let _ = stopped.await;
        }));

    // Plaintext gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut raw)).await;
    assert!(!raw.starts_with(b"HTTP/1.1"), "plaintext was answered: {raw:?}");

    // TLS with the CA: /healthz answers.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_file(&ca.pem).unwrap()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}
