//! Ordered produce streams: one `ProduceStream` call per broker, shared by every partition
//! that broker leads. Requests go out in the order [`Streams::send`] is called and the
//! broker admits them in that order, so a partition's batches stay in order while several
//! are in flight; answers come back in the same order and are matched to requests by it.
//!
//! A stream that fails (transport error, the broker closing it, or a caller's timeout) is
//! marked broken and replaced on the next send; its unanswered requests get a retriable
//! error (their outcome is unknown: an idempotent retry is deduplicated by the broker).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use futures::StreamExt;
use rafka_proto::v1;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use crate::client::Client;
use crate::client::data;
use crate::error::Error;
use crate::error::Result;

/// Where a request's answer goes.
type Reply = oneshot::Sender<Result<v1::ProduceResponse>>;

/// The open streams of a producer, by broker address.
pub(crate) struct Streams {
    client: Client,
    open: Mutex<HashMap<String, Arc<BrokerStream>>>,
}

/// One broker's stream: the queue of requests to write, and the replies awaited in order.
struct BrokerStream {
    tx: mpsc::UnboundedSender<(v1::ProduceRequest, Reply)>,
    /// Replies of requests written, oldest first; `None` once the stream is broken (no
    /// request may be written after that: its answer would never come).
    waiting: Mutex<Option<VecDeque<Reply>>>,
}

impl BrokerStream {
    fn broken(&self) -> bool {
        self.tx.is_closed() || self.waiting.lock().unwrap().is_none()
    }

    /// Marks the stream broken and fails every request written and not answered.
    fn break_with(&self, why: &str) {
        let waiting = self.waiting.lock().unwrap().take();
        for reply in waiting.into_iter().flatten() {
            let _ = reply.send(Err(stream_error(why)));
        }
    }
}

/// The retriable error of a request whose stream broke before it was answered.
fn stream_error(why: &str) -> Error {
    let status = tonic::Status::unavailable(format!("produce stream closed: {why}"));
    Error::Transport(status)
}

impl Streams {
    pub(crate) fn new(client: Client) -> Streams {
        Streams { client, open: Mutex::default() }
    }

    /// Writes `req` on the stream to `addr` (opening one when there is none or it broke);
    /// the answer comes on the receiver, which is dropped without one if the stream ends
    /// before the request was written.
    pub(crate) fn send(
        &self,
        addr: &str,
        req: v1::ProduceRequest,
    ) -> oneshot::Receiver<Result<v1::ProduceResponse>> {
        let (reply, rx) = oneshot::channel();
        // A failed send drops the reply: the receiver sees the stream is gone.
        let _ = self.stream(addr).tx.send((req, reply));
        rx
    }

    /// Gives up on the stream to `addr` (an answer took too long): its unanswered requests
    /// fail, and the next send opens a new one.
    pub(crate) fn reset(&self, addr: &str) {
        let stream = self.open.lock().unwrap().remove(addr);
        if let Some(s) = stream {
            s.break_with("no answer in time");
        }
    }

    fn stream(&self, addr: &str) -> Arc<BrokerStream> {
        let mut open = self.open.lock().unwrap();
        if let Some(s) = open.get(addr).filter(|s| !s.broken()) {
            return s.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stream = Arc::new(BrokerStream { tx, waiting: Mutex::new(Some(VecDeque::new())) });
        open.insert(addr.to_string(), stream.clone());
        let channel = self.client.channel(addr);
        tokio::spawn(run(channel, rx, stream.clone()));
        stream
    }
}

/// Runs one stream until it fails or the producer drops it, answering replies in order.
async fn run(
    channel: Result<crate::client::Channel>,
    rx: mpsc::UnboundedReceiver<(v1::ProduceRequest, Reply)>,
    stream: Arc<BrokerStream>,
) {
    let writer = stream.clone();
    // Each request's reply joins the queue as tonic takes the request to write it, so
    // queue order is wire order.
    let outbound = futures::stream::unfold(rx, move |mut rx| {
        let writer = writer.clone();
        async move {
            let (req, reply) = rx.recv().await?;
            let mut waiting = writer.waiting.lock().unwrap();
            match waiting.as_mut() {
                Some(w) => w.push_back(reply),
                None => {
                    let _ = reply.send(Err(stream_error("broken")));
                    return None;
                }
            }
            drop(waiting);
            Some((req, rx))
        }
    });
    let ended = async {
        let mut answers = data(channel?).produce_stream(outbound).await?.into_inner();
        loop {
            let Some(resp) = answers.next().await.transpose()? else {
                return Ok::<_, Error>("the broker ended it".to_string());
            };
            let reply = stream.waiting.lock().unwrap().as_mut().and_then(VecDeque::pop_front);
            match reply {
                Some(reply) => {
                    let _ = reply.send(Ok(resp));
                }
                // Broken by a reset while this answer was on its way.
                None => return Ok("reset".to_string()),
            }
        }
    };
    let why = match ended.await {
        Ok(why) => why,
        Err(e) => e.to_string(),
    };
    tracing::debug!("produce stream ended: {why}");
    stream.break_with(&why);
}
