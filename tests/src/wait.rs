//! Waiting with deadlines, and the `RAFKA_TEST_*` environment knobs.
//!
//! Tests never sleep to synchronise: they poll a condition until it holds or a deadline
//! passes, and then fail saying what they waited for and what they saw last.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use std::time::Instant;

/// Reads a numeric knob from the environment, `default` when unset.
///
/// # Panics
/// When the variable is set but is not a number: a typo must not silently run the default.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

/// The bound of one test: `default`, or `RAFKA_TEST_TIMEOUT_SECS` when set (for runs made
/// heavier with the size knobs).
pub fn test_timeout(default: Duration) -> Duration {
    Duration::from_secs(env_u64("RAFKA_TEST_TIMEOUT_SECS", default.as_secs()))
}

/// Runs `fut` to completion within `limit`, or panics naming `what`.
///
/// The future is dropped on timeout, so anything it owns (a cluster) is torn down as the
/// panic unwinds and its logs are printed.
pub async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{what}: did not finish within {limit:?} (set RAFKA_TEST_TIMEOUT_SECS to allow more)"
        ),
    }
}

/// Calls `f` until it returns `Ok`, pausing briefly between attempts; after `timeout` fails
/// with `what` and the last error.
pub async fn poll<T, E, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let last = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            anyhow::bail!("{what}: not reached within {timeout:?}; last: {last:#}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Exponential pause between retries, never past a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: Duration::from_millis(10) }
    }

    /// Sleeps for the next pause (10 ms doubling to 500 ms), cut short at `deadline`.
    pub(crate) async fn pause(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(self.next.min(left)).await;
        self.next = (self.next * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_returns_the_first_success() {
        let mut n = 0;
        let v = poll("third call", Duration::from_secs(5), || {
            n += 1;
            let r = if n >= 3 { Ok(n) } else { Err(format!("call {n}")) };
            async move { r }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn poll_times_out_with_the_last_error() {
        let err = poll("never", Duration::from_millis(100), || async { Err::<(), _>("nope") })
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("never") && err.contains("nope"), "{err}");
    }

    #[tokio::test]
    #[should_panic(expected = "slow thing: did not finish")]
    async fn bounded_panics_on_timeout() {
        bounded("slow thing", Duration::from_millis(10), std::future::pending::<()>()).await;
    }
}
