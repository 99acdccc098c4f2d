//! The HTTP side port: what orchestrators and Prometheus ask a broker, kept off the gRPC port
//! so that a scrape or a probe never queues behind client traffic.
//!
//! | route          | answer                                                            |
//! |----------------|-------------------------------------------------------------------|
//! | `GET /metrics` | 200, Prometheus text format (`text/plain; version=0.0.4`)         |
//! | `GET /healthz` | 200 `ok` while [`Health::live`], else 503 (liveness: restart me)  |
//! | `GET /readyz`  | 200 `ready`, or 503 with the reason (readiness: route no traffic) |
//! | `PUT /failpoints/{name}` | `failpoints` builds only: arms a crash point (body: fail action) |
//! | `DELETE /failpoints/{name}` | `failpoints` builds only: disarms it                      |
//! | anything else  | 404 (405 for another method on a known path)                      |

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::tls::Tls;

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the probes report; implemented by the broker, faked in tests. Calls must be cheap and
/// must not block: probes come every few seconds and have short timeouts.
pub trait Health: Send + Sync + 'static {
    /// Process is up and serving (liveness).
    fn live(&self) -> bool;
    /// Ready to take traffic: Ok, or the reason it is not.
    fn ready(&self) -> Result<(), String>;
}

struct AppState {
    metrics: PrometheusHandle,
    /// The process's own figures (`process_cpu_seconds_total`, resident memory, open
    /// files, threads), read afresh for each scrape.
    process: metrics_process::Collector,
    health: Arc<dyn Health>,
}

/// Serves the side port on `listener` until `shutdown` completes, then lets requests in
/// flight finish. Errors only if the listener itself fails.
/// With `tls`, the port is served over TLS (`[tls] http`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<Tls>>,
    metrics: PrometheusHandle,
    health: Arc<dyn Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(metrics, health);
    match tls {
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
        Some(tls) => {
            let listener = TlsListener { inner: listener, tls, handshakes: JoinSet::new() };
            axum::serve(listener, router).with_graceful_shutdown(shutdown).await
        }
    }
}

/// The side port's listener over TLS: handshakes run side by side (a slow client holds up
/// no one), and a failed one is dropped.
struct TlsListener {
    inner: tokio::net::TcpListener,
    tls: Arc<Tls>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.inner.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.configs().http);
                        // Owned by the listener, which the server drops when it stops.
                        #[allow(clippy::disallowed_methods)]
                        self.handshakes.spawn(async move {
                            let handshake = acceptor.accept(stream);
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                                Ok(Ok(s)) => Some((s, addr)),
                                _ => None,
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accepting an HTTP connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(io)) = done {
                        return io;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// How long a TLS handshake on the side port may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The routes, separate from `serve` for callers that mount them elsewhere.
pub fn router(metrics: PrometheusHandle, health: Arc<dyn Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(failpoints::routes())
        .with_state(Arc::new(AppState { metrics, process: process_collector(), health }))
}

fn process_collector() -> metrics_process::Collector {
    let c = metrics_process::Collector::default();
    c.describe();
    c
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    state.process.collect();
    ([(CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], state.metrics.render()).into_response()
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if state.health.live() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not live\n").into_response()
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

/// Crash points armed over HTTP by the fault suite; no routes without the feature.
mod failpoints {
    use std::sync::Arc;

    use axum::Router;

    use super::AppState;

    #[cfg(not(feature = "failpoints"))]
    pub(super) fn routes() -> Router<Arc<AppState>> {
        Router::new()
    }

    #[cfg(feature = "failpoints")]
    pub(super) fn routes() -> Router<Arc<AppState>> {
        use axum::extract::Path;
        use axum::http::StatusCode;
        use axum::routing::put;

        async fn arm(Path(name): Path<String>, actions: String) -> (StatusCode, String) {
            if !rafka_raft::crash::CRASH_POINTS.contains(&name.as_str()) {
                return (StatusCode::NOT_FOUND, format!("no crash point {name}\n"));
            }
            match fail::cfg(name.clone(), actions.trim()) {
                Ok(()) => {
                    tracing::warn!(point = %name, actions = %actions.trim(), "crash point armed");
                    (StatusCode::OK, "armed\n".into())
                }
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        async fn disarm(Path(name): Path<String>) -> (StatusCode, String) {
            fail::remove(name);
            (StatusCode::OK, "disarmed\n".into())
        }
        Router::new().route("/failpoints/{name}", put(arm).delete(disarm))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;

    use metrics_exporter_prometheus::PrometheusBuilder;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::*;

    struct FakeHealth {
        live: AtomicBool,
        ready: Mutex<Result<(), String>>,
    }

    impl Health for FakeHealth {
        fn live(&self) -> bool {
            self.live.load(Ordering::SeqCst)
        }
        fn ready(&self) -> Result<(), String> {
            self.ready.lock().unwrap().clone()
        }
    }

    /// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
    async fn request(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
    ) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn routes_answer_and_shutdown_stops_the_server() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("rafka_test_requests_total").increment(7);
        });
        let health = Arc::new(FakeHealth {
            live: AtomicBool::new(true),
            ready: Mutex::new(Err("catching up with the controller".into())),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        #[allow(clippy::disallowed_methods)] // the test owns and awaits this task
        let server = tokio::spawn(serve(listener, None, handle, health.clone(), async {
            let _ = stopped.await;
        }));

        let (status, head, body) = request(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        assert!(body.contains("rafka_test_requests_total 7"), "{body}");

        assert_eq!(request(addr, "GET", "/healthz").await.0, 200);
        assert_eq!(request(addr, "GET", "/healthz").await.2, "ok\n");
        let (status, _, body) = request(addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "catching up with the controller\n"));

        *health.ready.lock().unwrap() = Ok(());
        health.live.store(false, Ordering::SeqCst);
        let (status, _, body) = request(addr, "GET", "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        assert_eq!(request(addr, "GET", "/healthz").await.0, 503);

        assert_eq!(request(addr, "GET", "/").await.0, 404);
        assert_eq!(request(addr, "GET", "/metricsx").await.0, 404);
        assert_eq!(request(addr, "POST", "/healthz").await.0, 405);

        stop.send(()).unwrap();
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        result.expect("server stops after shutdown").unwrap().unwrap();
    }
}
