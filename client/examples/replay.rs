//! Replays one partition from a stored offset (or a timestamp) without joining a group,
//! printing every record until it catches up with the end of the log.
//!
//! ```sh
//! RAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example replay -- demo 0 5
//! RAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example replay -- demo 0 @1700000000000
//! ```

use std::time::Duration;

use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::OffsetSpec;
use rafka_client::SeekTo;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::var("RAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let partition: u32 = args.next().map_or(Ok(0), |p| p.parse())?;
    let from = args.next().unwrap_or_else(|| "0".into());
    let to = match from.strip_prefix('@') {
        Some(ts) => SeekTo::Timestamp(ts.parse()?),
        None => SeekTo::Offset(from.parse()?),
    };

    let client = Client::connect(&bootstrap).await?;
    let end = client.list_offset(&topic, partition, OffsetSpec::Latest).await?;
    let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
    consumer.assign(&[(topic.clone(), partition)])?;
    consumer.seek(&topic, partition, to).await?;
    while consumer.position(&topic, partition).is_some_and(|p| p < end) {
        for r in consumer.poll(Duration::from_secs(1)).await? {
            let value = r.value.as_deref().map(String::from_utf8_lossy);
            println!("@{} ts={} key={:?} value={:?}", r.offset, r.timestamp, r.key, value);
        }
    }
    consumer.close().await?;
    Ok(())
}
