//! Process-wide telemetry: the tracing subscriber ([`init_tracing`]) and the Prometheus
//! metrics recorder ([`install_metrics_recorder`], kept fresh by [`upkeep`]). Both are
//! global, so a binary sets them up once at start; libraries only emit.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use metrics_exporter_prometheus::BuildError;
use metrics_exporter_prometheus::Matcher;
use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Histogram buckets in seconds, from 50 µs (an fdatasync on NVMe) to 10 s (a stalled disk or
/// a produce waiting out its timeout), about three per decade.
pub const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets of histograms named `*_bytes`: 64 B to 64 MiB, powers of four.
pub const SIZE_BUCKETS_BYTES: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Buckets of histograms that count things (entries, writes per flush): powers of two.
pub const COUNT_BUCKETS: [f64; 13] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// Name suffixes (the unit, per the `rafka_<subsystem>_<what>_<unit>` convention) of
/// histograms that count things rather than time them.
const COUNT_SUFFIXES: [&str; 4] = ["_entries", "_writes", "_records", "_batches"];

/// How often [`upkeep`] drains histogram samples into their buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Telemetry that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter (`RUST_LOG` or `log-level`) does not parse.
    #[error("invalid log filter `{filter}` (from {origin}): {detail}")]
    Filter {
        /// The filter text.
        filter: String,
        /// `RUST_LOG` or `log-level`.
        origin: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// A global tracing subscriber is already set (by an earlier call or another library).
    #[error("cannot set the tracing subscriber: {0}")]
    Tracing(String),
    /// The Prometheus recorder could not be built or installed (another global metrics
    /// recorder is installed).
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] BuildError),
}

/// Directives added to every filter that does not name the target itself: openraft logs its
/// whole state on every change at `info`, which drowns what an operator wants to see (start,
/// ready, leadership changes, topics, shutdown). `openraft=info` in the filter turns it back on.
const QUIET_DEPENDENCIES: [(&str, &str); 1] = [("openraft", "warn")];

/// `filter` with [`QUIET_DEPENDENCIES`] appended for each target it does not mention, when
/// its default level is more verbose than theirs (a filter asking for less stays as it is).
pub fn effective_filter(filter: &str) -> String {
    let mut out = filter.trim().to_string();
    let default =
        out.split(',').map(str::trim).rfind(|d| !d.contains('=')).map(str::to_ascii_lowercase);
    if !matches!(default.as_deref(), Some("info" | "debug" | "trace")) {
        return out;
    }
    for (target, level) in QUIET_DEPENDENCIES {
        if !out.contains(target) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("{target}={level}"));
        }
    }
    out
}

/// Sends `tracing` events to stderr as text or JSON lines. The filter is `RUST_LOG` when set
/// and non-empty (so an operator can turn up one module without editing the config), else
/// `level`; either way dependencies' internals stay at `warn` unless named
/// ([`effective_filter`]). Fails, rather than panics, when a subscriber is already set.
pub fn init_tracing(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let (filter, origin) = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => (effective_filter(&s), "RUST_LOG"),
        _ => (effective_filter(level), "log-level"),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|e| TelemetryError::Filter {
        filter: filter.clone(),
        origin,
        detail: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        // Colour codes are noise in journald and log files.
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| TelemetryError::Tracing(e.to_string()))
}

/// The installed recorder's handle; a mutex rather than a `OnceLock` alone because installing
/// can fail and two racing first calls must not both try.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the global Prometheus recorder on the first call and returns its handle (later
/// calls return the same handle). Histograms get [`LATENCY_BUCKETS_SECONDS`], except those
/// named `*_bytes` ([`SIZE_BUCKETS_BYTES`]) and `*_entries`, `*_writes`, `*_records`,
/// `*_batches` ([`COUNT_BUCKETS`]). Spawns nothing: run [`upkeep`] inside the runtime.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let mut installed = RECORDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = builder()?.install_recorder()?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The recorder's settings: bucket layouts by metric name.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS_SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &SIZE_BUCKETS_BYTES)?;
    for suffix in COUNT_SUFFIXES {
        builder = builder.set_buckets_for_metric(Matcher::Suffix(suffix.into()), &COUNT_BUCKETS)?;
    }
    Ok(builder)
}

/// Runs [`PrometheusHandle::run_upkeep`] every [`UPKEEP_INTERVAL`], which bounds the memory
/// of histogram samples between scrapes. Runs until dropped (run it as a supervised task).
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_increasing() {
        for buckets in [&LATENCY_BUCKETS_SECONDS[..], &SIZE_BUCKETS_BYTES, &COUNT_BUCKETS] {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        }
        assert_eq!(LATENCY_BUCKETS_SECONDS[0], 50e-6);
        assert_eq!(LATENCY_BUCKETS_SECONDS[16], 10.0);
    }

    /// Bucket layouts, on a local recorder: the global one is tested in `tests/http.rs`, its
    /// own binary, so no unit test here races another recorder for the global slot.
    #[test]
    fn histograms_get_buckets_that_fit_their_unit() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("rafka_test_fsync_seconds").record(0.000_07);
            metrics::histogram!("rafka_test_flush_batch_writes").record(3.0);
            metrics::histogram!("rafka_test_request_bytes").record(1000.0);
        });
        handle.run_upkeep();
        let text = handle.render();
        for line in [
            "rafka_test_fsync_seconds_bucket{le=\"0.00005\"} 0",
            "rafka_test_fsync_seconds_bucket{le=\"0.0001\"} 1",
            "rafka_test_fsync_seconds_bucket{le=\"10\"} 1",
            "rafka_test_flush_batch_writes_bucket{le=\"2\"} 0",
            "rafka_test_flush_batch_writes_bucket{le=\"4\"} 1",
            "rafka_test_request_bytes_bucket{le=\"1024\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn dependencies_stay_quiet_unless_named() {
        assert_eq!(effective_filter("info"), "info,openraft=warn");
        assert_eq!(effective_filter(" debug "), "debug,openraft=warn");
        assert_eq!(
            effective_filter("rafka_broker=debug,info"),
            "rafka_broker=debug,info,openraft=warn"
        );
        assert_eq!(effective_filter("info,openraft=debug"), "info,openraft=debug");
        // Asking for less than warn, or naming no default, leaves openraft where it was.
        assert_eq!(effective_filter("error"), "error");
        assert_eq!(effective_filter("rafka_broker=debug"), "rafka_broker=debug");
    }

    #[test]
    fn bad_filter_is_an_error_not_a_panic() {
        // Only reached when RUST_LOG is unset; otherwise RUST_LOG wins and may be valid.
        if std::env::var_os("RUST_LOG").is_none() {
            let e = init_tracing(LogFormat::Text, "rafka=loud").unwrap_err();
            assert!(e.to_string().contains("log-level"), "{e}");
        }
    }
}

/// Lets at most one event a second through, counting the ones it held back: for logs a
/// client can trigger at will (failed authentications, refused connections).
#[derive(Debug, Default)]
pub struct RateLimit {
    second: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl RateLimit {
    /// A limiter that has let nothing through yet.
    pub const fn new() -> RateLimit {
        RateLimit {
            second: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(events held back since the last one let through)` when this one may be logged.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second.swap(now, Relaxed) == now {
            self.held.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.held.swap(0, Relaxed))
    }
}

/// Failed authentications and authorization denials.
pub static SECURITY_LOG: RateLimit = RateLimit::new();

/// Logs `line` at info unless [`SECURITY_LOG`] holds it back.
pub fn rate_limited_info(line: &str) {
    if let Some(held) = SECURITY_LOG.allow() {
        if held > 0 {
            tracing::info!("{line} ({held} more like it not logged)");
        } else {
            tracing::info!("{line}");
        }
    }
}
