//! Helpers shared by the client's integration tests.

use std::collections::HashMap;
use std::time::Duration;

use rafka_client::Admin;
use rafka_client::Error;
use rafka_tests::poll;

/// Waits until every partition of `topic` has a leader.
pub async fn wait_for_leaders(admin: &Admin, topic: &str) {
    poll("leaders elected", Duration::from_secs(60), || async {
        let d = admin.describe_topic(topic).await?;
        match d.partitions.iter().all(|p| p.leader.is_some()) {
            true => Ok(d),
            false => Err(Error::Protocol(format!("not all partitions have leaders: {d:?}"))),
        }
    })
    .await
    .expect("leaders");
}

/// Creates `topic` and waits until every partition has a leader.
#[allow(dead_code)] // Not every test file creates topics this way.
pub async fn create_topic(admin: &Admin, topic: &str, partitions: u32, rf: u32) {
    admin.create_topic(topic, partitions, rf, HashMap::new()).await.expect("create");
    wait_for_leaders(admin, topic).await;
}
