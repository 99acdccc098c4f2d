//! Produces a few keyed records and prints where each landed.
//!
//! ```sh
//! rafka topic create demo --partitions 3 --replication-factor 1
//! RAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example producer -- demo 10
//! ```

use bytes::Bytes;
use rafka_client::Client;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_client::ProducerRecord;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::var("RAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let count: usize = args.next().map_or(Ok(10), |n| n.parse())?;

    let client = Client::connect(&bootstrap).await?;
    let producer = Producer::new(client, ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = ProducerRecord {
            topic: topic.clone(),
            key: Some(Bytes::from(format!("user-{}", i % 4))),
            value: Some(Bytes::from(format!("event {i}"))),
            headers: vec![("source".into(), Some(Bytes::from_static(b"example")))],
            ..ProducerRecord::default()
        };
        // Queued at once; its batch is written while the next records are sent.
        deliveries.push((i, producer.send(record).await?));
    }
    for (i, delivery) in deliveries {
        let md = delivery.await?;
        println!("event {i} -> partition {} offset {}", md.partition, md.offset);
    }
    Ok(())
}
