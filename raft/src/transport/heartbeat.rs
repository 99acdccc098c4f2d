//! Heartbeat coalescing: the heartbeats of many groups bound for one peer travel in one RPC.
//!
//! A heartbeat is queued and the peer's sender task wakes. If no batch is in flight it goes
//! out at once, alone (no added latency on an idle link); heartbeats queued while a batch is
//! in flight leave together in the next one (Redpanda's heartbeat batching). So 10,000 groups
//! with something to say cost a handful of RPCs, not 10,000.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use tokio::sync::Notify;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::Counters;
use crate::detector::Detector;
use crate::metrics as m;
use crate::wire::pb;
use crate::wire::pb::raft_transport_client::RaftTransportClient;

/// Most heartbeats in one RPC (keeps a message well under gRPC's size limit).
const MAX_BATCH: usize = 8192;

type Reply = oneshot::Sender<Result<pb::AppendResponse, String>>;

#[derive(Default)]
struct Queue {
    items: Vec<(pb::AppendRequest, Reply)>,
    closed: bool,
}

pub(crate) struct Coalescer {
    queue: Mutex<Queue>,
    wake: Notify,
    cut: Arc<AtomicBool>,
}

impl Coalescer {
    /// Starts the sender task of one peer.
    pub fn start(
        peer: u64,
        client: RaftTransportClient<Channel>,
        timeout: Duration,
        cut: Arc<AtomicBool>,
        detector: Arc<Detector>,
        counters: Arc<Counters>,
    ) -> Arc<Coalescer> {
        let c =
            Arc::new(Coalescer { queue: Mutex::new(Queue::default()), wake: Notify::new(), cut });
        tokio::spawn(sender(peer, c.clone(), client, timeout, detector, counters));
        c
    }

    /// Sends one heartbeat; resolves with the peer's answer or a delivery error.
    pub async fn send(&self, req: pb::AppendRequest) -> Result<pb::AppendResponse, String> {
        if self.cut.load(Ordering::Relaxed) {
            return Err("peer is partitioned away".into());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.closed {
                return Err("peer connection closed".into());
            }
            q.items.push((req, tx));
        }
        self.wake.notify_one();
        rx.await.unwrap_or_else(|_| Err("heartbeat sender stopped".into()))
    }

    /// Stops the sender task; queued heartbeats fail.
    pub fn close(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.closed = true;
        q.items.clear();
        drop(q);
        self.wake.notify_one();
    }
}

async fn sender(
    peer: u64,
    c: Arc<Coalescer>,
    mut client: RaftTransportClient<Channel>,
    timeout: Duration,
    detector: Arc<Detector>,
    counters: Arc<Counters>,
) {
    let peer_label = peer.to_string();
    loop {
        let batch = {
            let notified = c.wake.notified();
            let batch = {
                let mut q = c.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.closed {
                    return;
                }
                let n = q.items.len().min(MAX_BATCH);
                q.items.drain(..n).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                notified.await;
                continue;
            }
            batch
        };
        let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let n = reqs.len();
        let started = Instant::now();
        let mut request = tonic::Request::new(pb::HeartbeatBatch { heartbeats: reqs });
        request.set_timeout(timeout);
        counters.rpcs.fetch_add(1, Ordering::Relaxed);
        counters.heartbeat_rpcs.fetch_add(1, Ordering::Relaxed);
        counters.heartbeats.fetch_add(n as u64, Ordering::Relaxed);
        let res = client.heartbeat(request).await;
        metrics::counter!(m::TRANSPORT_RPCS, "peer" => peer_label.clone(), "rpc" => "heartbeat")
            .increment(1);
        metrics::histogram!(m::TRANSPORT_HEARTBEAT_BATCH_SENT, "peer" => peer_label.clone())
            .record(n as f64);
        metrics::histogram!(m::TRANSPORT_RPC_SECONDS, "peer" => peer_label.clone(), "rpc" => "heartbeat")
            .record(started.elapsed().as_secs_f64());
        match res {
            Ok(resp) => {
                detector.touch(peer);
                let responses = resp.into_inner().responses;
                if responses.len() != n {
                    let msg = format!("peer answered {} of {n} heartbeats", responses.len());
                    for r in replies {
                        let _ = r.send(Err(msg.clone()));
                    }
                    continue;
                }
                for (r, resp) in replies.into_iter().zip(responses) {
                    let _ = r.send(Ok(resp));
                }
            }
            Err(status) => {
                metrics::counter!(m::TRANSPORT_ERRORS, "peer" => peer_label.clone(), "rpc" => "heartbeat")
                    .increment(1);
                let msg = format!("heartbeat RPC failed: {}", status.message());
                for r in replies {
                    let _ = r.send(Err(msg.clone()));
                }
            }
        }
    }
}
