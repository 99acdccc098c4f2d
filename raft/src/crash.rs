//! Crash points for the fault suite: places where a broker can be made to die as if the power
//! went, to prove that recovery keeps every acknowledged write.
//!
//! A crash point is a [fail](https://docs.rs/fail) point whose `return` action aborts the
//! process (no destructors, no flush: the nearest thing to SIGKILL from inside). They compile
//! to nothing unless the `failpoints` feature is on; the broker then lets tests arm them at
//! run time through its HTTP side port (`PUT /failpoints/{name}` with a fail action such as
//! `1*return` or `5%return`).

/// Every crash point of rafka-raft and rafka-broker, for tests and the HTTP listing.
pub const CRASH_POINTS: &[&str] = &[
    LOG_BEFORE_FSYNC,
    LOG_AFTER_FSYNC,
    SEGMENT_ROLL,
    "partition-apply",
    "snapshot-install",
    "offset-commit",
    crate::durable::BEFORE_DIR_FSYNC,
];

/// Before a flush round fdatasyncs segment files (writes done, none durable yet).
pub const LOG_BEFORE_FSYNC: &str = "log-before-fsync";
/// After a flush round's fdatasyncs, before anyone is told the entries are durable.
pub const LOG_AFTER_FSYNC: &str = "log-after-fsync";
/// When the active segment is sealed, before the next segment is created.
pub const SEGMENT_ROLL: &str = "segment-roll";

/// Aborts the process at the named crash point when a test armed it (`return` action).
#[macro_export]
macro_rules! crash_point {
    ($name:expr) => {
        $crate::fail::fail_point!($name, |_| {
            eprintln!("crash point {}: aborting the process", $name);
            ::std::process::abort()
        })
    };
}
