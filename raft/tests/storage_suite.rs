//! openraft's own log-storage test suite, run against the segmented log.

mod common;

use common::C;
use common::MemStateMachine;
use common::TestApp;
use openraft::StorageError;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use rafka_raft::LogConfig;
use rafka_raft::SegmentLog;
use tempfile::TempDir;

struct Builder {
    cfg: LogConfig,
}

impl StoreBuilder<C, SegmentLog<TestApp>, MemStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, SegmentLog<TestApp>, MemStateMachine), StorageError<C>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = common::runtime(dir.path(), self.cfg.clone());
        let log = rt.open_group::<TestApp>(7).expect("open group");
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
