//! Joins a consumer group, prints records with their partition and offset, and commits
//! after each batch. Start it several times to watch partitions move between members;
//! Ctrl-C leaves the group cleanly.
//!
//! ```sh
//! RAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example consumer_group -- demo my-group
//! ```

use std::sync::Arc;
use std::time::Duration;

use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::RebalanceListener;

struct Log;

impl RebalanceListener for Log {
    fn on_revoked(&self, partitions: &[(String, u32)]) {
        println!("revoked: {partitions:?}");
    }
    fn on_assigned(&self, partitions: &[(String, u32)]) {
        println!("assigned: {partitions:?}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::var("RAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let group = args.next().unwrap_or_else(|| "demo-group".into());

    let client = Client::connect(&bootstrap).await?;
    let config = ConsumerConfig {
        group: Some(group),
        auto_commit_interval: None, // commit by hand after processing
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config)?;
    consumer.set_rebalance_listener(Arc::new(Log));
    consumer.subscribe(&[topic.as_str()]).await?;
    loop {
        tokio::select! {
            records = consumer.poll(Duration::from_secs(1)) => {
                let records = records?;
                for r in &records {
                    let value = r.value.as_deref().map(String::from_utf8_lossy);
                    println!("{}/{} @{}: {:?}", r.topic, r.partition, r.offset, value);
                }
                if !records.is_empty() {
                    consumer.commit().await?;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    consumer.close().await?;
    Ok(())
}
