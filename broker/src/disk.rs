//! Free space on the data directory's filesystem ([`DiskSpace`]). Below `min-free-bytes` the
//! broker refuses produce requests with the retriable [`Error::DiskFull`] instead of
//! running into `ENOSPC` halfway through a segment write (which stops the replica: a Raft
//! log that cannot write is failed until the broker restarts); reads, replication of what
//! was accepted and the small internal writes (controller, group offsets) go on. A watcher
//! ([`crate::upkeep::disk_space`]) measures every [`CHECK_INTERVAL`]; between measurements
//! the batches admitted here are subtracted from the last figure, so a fast producer cannot
//! write past the threshold within one interval. Produce is accepted again by itself within
//! a second of space returning.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::Error;
use crate::error::Result;
use crate::metrics as m;

/// How often the watcher measures the free space.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The last measurement and whether it is under the threshold.
#[derive(Debug)]
pub struct DiskSpace {
    min_free: u64,
    /// Free bytes at the last measurement.
    free: AtomicU64,
    /// Bytes admitted since then.
    admitted: AtomicU64,
    /// Whether the last measurement was under the threshold.
    low: AtomicBool,
    /// Whether a write was refused since the last measurement.
    refused: AtomicBool,
}

impl DiskSpace {
    /// Space is low below `min_free` bytes (0: never).
    pub fn new(min_free: u64) -> DiskSpace {
        DiskSpace {
            min_free,
            free: AtomicU64::new(u64::MAX),
            admitted: AtomicU64::new(0),
            low: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        }
    }

    /// Bytes admitted since the last measurement: pass to [`DiskSpace::observe`] with the
    /// measurement taken after reading it.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Records a measurement of `free` bytes (of `total`), taken after [`DiskSpace::admitted`]
    /// read `counted` (those bytes are in the figure now); logs when space turns low or comes
    /// back.
    pub fn observe(&self, free: u64, total: u64, counted: u64) {
        self.free.store(free, Ordering::Relaxed);
        let _ = self.admitted.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
            Some(a.saturating_sub(counted))
        });
        let low = self.min_free > 0 && free < self.min_free;
        let was = self.low.swap(low, Ordering::Relaxed);
        metrics::gauge!(m::DISK_FREE).set(free as f64);
        metrics::gauge!(m::DISK_TOTAL).set(total as f64);
        let refused = self.refused.swap(false, Ordering::Relaxed);
        metrics::gauge!(m::DISK_FULL).set(if low || refused { 1.0 } else { 0.0 });
        match (was, low) {
            (false, true) => tracing::warn!(
                free,
                min_free = self.min_free,
                "data directory nearly full: refusing produce requests until space returns"
            ),
            (true, false) => {
                tracing::info!(free, "data directory has space again: accepting produce requests")
            }
            _ => {}
        }
    }

    /// Admits a write of `bytes`, or `Err(DiskFull)` while space is low (by the last
    /// measurement less what was admitted since).
    pub fn admit(&self, broker: u64, bytes: u64) -> Result<()> {
        let admitted = self.admitted.load(Ordering::Relaxed);
        let free = self.free.load(Ordering::Relaxed).saturating_sub(admitted);
        let low = self.low.load(Ordering::Relaxed)
            || (self.min_free > 0 && free.saturating_sub(bytes) < self.min_free);
        if !low {
            self.admitted.fetch_add(bytes, Ordering::Relaxed);
            return Ok(());
        }
        if !self.refused.swap(true, Ordering::Relaxed) {
            metrics::gauge!(m::DISK_FULL).set(1.0);
        }
        let under = free < self.min_free;
        let (free, min) = (mib(free), mib(self.min_free));
        let why = if under {
            format!("has {free} free, under min-free-bytes {min}")
        } else {
            format!(
                "has {free} free; a batch of {} would take it under min-free-bytes {min}",
                mib(bytes)
            )
        };
        Err(Error::DiskFull(format!(
            "broker {broker}: its data directory {why}: produce is refused until space returns"
        )))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_threshold_and_back() {
        let d = DiskSpace::new(100 << 20);
        d.admit(1, 1 << 20).unwrap();
        d.observe(99 << 20, 1 << 30, d.admitted());
        let e = d.admit(1, 1).unwrap_err();
        assert!(matches!(e, Error::DiskFull(_)));
        assert!(e.to_string().contains("99.0 MiB free, under min-free-bytes 100.0 MiB"), "{e}");
        assert!(e.code().is_retriable());
        d.observe(103 << 20, 1 << 30, d.admitted());
        // Between measurements, what was admitted counts: 3 MiB of room, not more.
        d.admit(1, 2 << 20).unwrap();
        d.admit(1, 1 << 20).unwrap();
        d.admit(1, 1).unwrap_err();
        // A measurement that includes those writes starts the count again.
        let e = d.admit(1, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("100.0 MiB free; a batch of 1.0 MiB would take it under"), "{e}");
        let counted = d.admitted();
        d.observe(110 << 20, 1 << 30, counted);
        d.admit(1, 10 << 20).unwrap();
        let off = DiskSpace::new(0);
        off.observe(0, 1 << 30, 0);
        off.admit(1, 1 << 30).unwrap();
    }
}
