//! openraft's own log-storage test suite, run against the segmented log.
//!
//! The suite purges past the end of the log without installing a snapshot, which only a
//! log without record offsets allows (see `App::RECORD_OFFSETS`), so it runs on
//! `NoOffsetsApp`; record offsets are covered by `model.rs` and `recovery.rs`.

mod common;

use common::MemStateMachine;
use common::NoOffsetsApp;
use openraft::StorageError;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use rafka_raft::LogConfig;
use rafka_raft::SegmentLog;
use rafka_raft::types::TypeConfig;
use tempfile::TempDir;

type C = TypeConfig<NoOffsetsApp>;

struct Builder {
    cfg: LogConfig,
}

impl StoreBuilder<C, SegmentLog<NoOffsetsApp>, MemStateMachine<NoOffsetsApp>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, SegmentLog<NoOffsetsApp>, MemStateMachine<NoOffsetsApp>), StorageError<C>>
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = common::runtime(dir.path(), self.cfg.clone());
        let log = rt.open_group::<NoOffsetsApp>(7).expect("open group");
        Ok((dir, log, MemStateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_log_storage_suite() -> Result<(), StorageError<C>> {
    Suite::test_all(Builder { cfg: LogConfig::default() }).await
}

/// The same suite with tiny segments and a dense index, so every operation crosses segment
/// boundaries and index records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_log_storage_suite_tiny_segments() -> Result<(), StorageError<C>> {
    let cfg = LogConfig { segment_bytes: 256, index_interval_bytes: 1, ..LogConfig::default() };
    Suite::test_all(Builder { cfg }).await
}
