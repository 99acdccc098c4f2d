//! Kafka's wire protocol on the broker port: what lets Kafka clients and tools (librdkafka
//! and kcat, kafka-python, the Java client) use rafka unchanged. Each handler translates one
//! API's request into calls of the protocol-neutral service layer — the same calls gRPC
//! makes — and the answers back. Requests are decoded with the `kafka-protocol` crate.
//!
//! One task per connection reads requests and writes their answers in request order
//! (clients pipeline, and match answers to requests by order); Produce requests replicate
//! together, everything else is worked on one at a time (see [`serve`]); a long poll holds
//! up only its own connection. Produce with acks=0 gets no answer. A
//! request that cannot be read — bad size, unknown API or version, undecodable header or
//! body — closes the connection with a log line; nothing stored is touched.

mod acls;
mod admin;
mod configs;
mod consumer_groups;
pub mod controller;
pub mod errors;
mod fetch;
pub mod frame;
pub mod group_admin;
mod groups;
mod metadata;
mod offsets;
mod produce;
pub mod sasl;
mod users;
pub mod versions;

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::AlterConfigsRequest;
use kafka_protocol::messages::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::CreateAclsRequest;
use kafka_protocol::messages::CreatePartitionsRequest;
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::messages::DeleteAclsRequest;
use kafka_protocol::messages::DeleteGroupsRequest;
use kafka_protocol::messages::DeleteTopicsRequest;
use kafka_protocol::messages::DescribeAclsRequest;
use kafka_protocol::messages::DescribeClusterRequest;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::DescribeGroupsRequest;
use kafka_protocol::messages::DescribeUserScramCredentialsRequest;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::FindCoordinatorRequest;
use kafka_protocol::messages::HeartbeatRequest;
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::messages::JoinGroupRequest;
use kafka_protocol::messages::LeaveGroupRequest;
use kafka_protocol::messages::ListGroupsRequest;
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::messages::OffsetCommitRequest;
use kafka_protocol::messages::OffsetFetchRequest;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::messages::SaslAuthenticateRequest;
use kafka_protocol::messages::SaslHandshakeRequest;
use kafka_protocol::messages::SyncGroupRequest;
use kafka_protocol::protocol::Encodable;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::io::BufWriter;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;

use self::frame::Frame;
use self::frame::FrameError;
use self::sasl::Session;
use crate::acl::Caller;
use crate::broker::Broker;
use crate::tls::stream::Conn;

pub use metadata::topic_uuid;

/// Requests of one connection worked on at once.
const PIPELINE: usize = 16;

/// What the writer gets for each request, in request order, with the pipeline permits the
/// request holds until its answer is written.
enum Job {
    /// The answer (`None`: none is sent), or why the connection closes.
    Ready(Result<Option<Bytes>, FrameError>, OwnedSemaphorePermit),
    /// A Produce whose batches are proposed; its answer comes when they are committed.
    Pending(BoxFuture<'static, Result<Option<Bytes>, FrameError>>, OwnedSemaphorePermit),
}

/// Serves one Kafka connection until the client closes it, sends what cannot be read, or
/// the broker stops (the caller's task is cancelled).
///
/// Answers leave in request order. Produce requests are pipelined: each is admitted (its
/// batches proposed, in order) before the next request is read, and up to [`PIPELINE`]
/// replicate at once; any other request waits until every request before it is answered,
/// so it sees their effects as it would one at a time.
pub async fn serve(b: Arc<Broker>, conn: Conn) {
    let session = Session::new(&b, conn.info());
    // A plaintext connection splits into owned halves; a TLS session shares one state.
    match conn.into_plain() {
        Ok((stream, _)) => {
            let (read, write) = stream.into_split();
            serve_halves(&b, read, write, session).await;
        }
        Err(conn) => {
            let (read, write) = tokio::io::split(*conn);
            serve_halves(&b, read, write, session).await;
        }
    }
}

async fn serve_halves<R, W>(b: &Arc<Broker>, read: R, write: W, session: Session)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let (jobs, queue) = mpsc::channel(PIPELINE);
    let permits = Arc::new(Semaphore::new(PIPELINE));
    let peer = session.peer.clone();
    let reader = read_requests(b, read, jobs, permits, session);
    let writer = write_answers(write, queue, &peer);
    tokio::pin!(writer);
    tokio::select! {
        // The client sent all it will (or something unreadable): answer what came before.
        () = reader => writer.await,
        // The client is gone, or an answer could not be made.
        () = &mut writer => {}
    }
}

async fn read_requests<R: AsyncRead + Unpin + Send>(
    b: &Arc<Broker>,
    read: R,
    jobs: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    mut session: Session,
) {
    let peer = session.peer.clone();
    let mut read = BufReader::new(read);
    loop {
        if sasl::expects_raw_token(&session) {
            // After SaslHandshake 0: a size-prefixed token, answered the same way.
            let Ok(token) = frame::read_token(&mut read, sasl::MAX_TOKEN).await else { return };
            let Some(reply) = sasl::raw_token(b, &mut session, &token) else { return };
            let Ok(all) = permits.clone().acquire_many_owned(PIPELINE as u32).await else {
                return;
            };
            if jobs.send(Job::Ready(Ok(Some(reply)), all)).await.is_err() {
                return;
            }
            continue;
        }
        let frame = match frame::read(&mut read).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::info!(%peer, "closing a Kafka connection: {e}");
                return;
            }
        };
        let job = if frame.key == ApiKey::Produce as i16
            && versions::served(ApiKey::Produce, frame.version)
        {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            if !session.admits(b, ApiKey::Produce) {
                Job::Ready(Err(unauthenticated(&session, ApiKey::Produce)), permit)
            } else {
                match admit_produce(b, &session.caller(), session.listener.clone(), frame).await {
                    Ok(answer) => Job::Pending(answer, permit),
                    Err(e) => Job::Ready(Err(e), permit),
                }
            }
        } else {
            let Ok(all) = permits.clone().acquire_many_owned(PIPELINE as u32).await else {
                return;
            };
            Job::Ready(answer(b, frame, &mut session).await, all)
        };
        // A request that cannot be read closes the connection once the answers before it
        // are out: nothing after it is read, let alone admitted. So does a failed
        // authentication, once its answer is out.
        let unreadable = matches!(job, Job::Ready(Err(_), _));
        if jobs.send(job).await.is_err() || unreadable || session.closing {
            return;
        }
    }
}

async fn write_answers<W: AsyncWrite + Unpin + Send>(
    write: W,
    mut queue: mpsc::Receiver<Job>,
    peer: &str,
) {
    // Answers ready together leave in one write (a pipelining client's Produce answers
    // often are); a large answer goes past the buffer.
    let mut write = BufWriter::new(write);
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            job = queue.recv(), if open => match job {
                Some(Job::Ready(out, permit)) => {
                    pending.push_back(futures::future::ready((out, permit)).boxed());
                }
                Some(Job::Pending(answer, permit)) => {
                    pending.push_back(answer.map(move |out| (out, permit)).boxed());
                }
                None => open = false,
            },
            Some(first) = pending.next() => {
                // Held until the answers are written: they bound what is in flight.
                let mut permits = Vec::new();
                let mut next = Some(first);
                while let Some((out, permit)) = next.take() {
                    match out {
                        Ok(Some(bytes)) => {
                            if let Err(e) = write.write_all(&bytes).await {
                                tracing::debug!(%peer, "Kafka connection: {e}");
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = write.flush().await;
                            tracing::info!(%peer, "closing a Kafka connection: {e}");
                            return;
                        }
                    }
                    permits.push(permit);
                    next = pending.next().now_or_never().flatten();
                }
                if let Err(e) = write.flush().await {
                    tracing::debug!(%peer, "Kafka connection: {e}");
                    return;
                }
                drop(permits);
            }
            else => return,
        }
    }
}

/// Decodes a Produce request and admits its batches; the future of its answer.
async fn admit_produce(
    b: &Arc<Broker>,
    caller: &Caller,
    listener: Option<Arc<str>>,
    f: Frame,
) -> Result<BoxFuture<'static, Result<Option<Bytes>, FrameError>>, FrameError> {
    let version = f.version;
    let key = ApiKey::Produce;
    let (header, mut body) = frame::header(&f, key)?;
    let req: ProduceRequest = frame::decode(&mut body, version)?;
    let silent = req.acks == 0;
    let admitted = produce::admit(b, caller, req).await;
    let b = b.clone();
    Ok(async move {
        let resp = admitted.finish(&b, listener.as_deref(), version).await;
        if silent {
            return Ok(None);
        }
        let header_version = key.response_header_version(version);
        frame::response(header.correlation_id, header_version, &resp, version).map(Some)
    }
    .boxed())
}

/// The response frame to `f`, `None` for none (Produce with acks=0), an error to close the
/// connection.
pub async fn answer(
    b: &Broker,
    f: Frame,
    session: &mut Session,
) -> Result<Option<Bytes>, FrameError> {
    let Ok(key) = ApiKey::try_from(f.key) else {
        return Err(FrameError::Decode(format!("unknown API key {}", f.key)));
    };
    if !session.admits(b, key) {
        return Err(unauthenticated(session, key));
    }
    let caller = session.caller();
    let listener = session.listener.clone();
    let listener = listener.as_deref();
    if key == ApiKey::ApiVersions && !versions::served(key, f.version) {
        // A newer client's first request: answer version 0 with the versions known here.
        // The header of an unknown version is read as the newest one's.
        let version = f.version.clamp(0, 4);
        let hf = Frame { version, ..f };
        let (header, _) = frame::header(&hf, key)?;
        let body = versions::unsupported_api_versions();
        return frame::response(header.correlation_id, 0, &body, 0).map(Some);
    }
    if !versions::served(key, f.version) {
        return Err(FrameError::Decode(format!("{key:?} version {} is not served", f.version)));
    }
    let version = f.version;
    let (header, mut body) = frame::header(&f, key)?;
    let respond = |header: &RequestHeader, resp: &dyn Respond| {
        resp.frame(header.correlation_id, key.response_header_version(version), version).map(Some)
    };
    match key {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = frame::decode(&mut body, version)?;
            respond(&header, &versions::api_versions())
        }
        ApiKey::SaslHandshake => {
            let req: SaslHandshakeRequest = frame::decode(&mut body, version)?;
            respond(&header, &sasl::handshake(b, session, req, version))
        }
        ApiKey::SaslAuthenticate => {
            let req: SaslAuthenticateRequest = frame::decode(&mut body, version)?;
            respond(&header, &sasl::authenticate(b, session, req))
        }
        ApiKey::DescribeUserScramCredentials => {
            let req: DescribeUserScramCredentialsRequest = frame::decode(&mut body, version)?;
            respond(&header, &users::describe(b, session, req).await)
        }
        ApiKey::AlterUserScramCredentials => {
            let req: AlterUserScramCredentialsRequest = frame::decode(&mut body, version)?;
            respond(&header, &users::alter(b, session, req).await)
        }
        ApiKey::CreateAcls => {
            let req: CreateAclsRequest = frame::decode(&mut body, version)?;
            respond(&header, &acls::create(b, session, req).await)
        }
        ApiKey::DescribeAcls => {
            let req: DescribeAclsRequest = frame::decode(&mut body, version)?;
            respond(&header, &acls::describe(b, session, req))
        }
        ApiKey::DeleteAcls => {
            let req: DeleteAclsRequest = frame::decode(&mut body, version)?;
            respond(&header, &acls::delete(b, session, req).await)
        }
        ApiKey::Metadata => {
            let req: MetadataRequest = frame::decode(&mut body, version)?;
            respond(&header, &metadata::handle(b, &caller, listener, req, version).await)
        }
        ApiKey::Produce => {
            let req: ProduceRequest = frame::decode(&mut body, version)?;
            let silent = req.acks == 0;
            let resp = produce::handle(b, &caller, listener, req, version).await;
            if silent { Ok(None) } else { respond(&header, &resp) }
        }
        ApiKey::Fetch => {
            let req: FetchRequest = frame::decode(&mut body, version)?;
            respond(&header, &fetch::handle(b, &caller, req, version).await)
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = frame::decode(&mut body, version)?;
            respond(&header, &offsets::list_offsets(b, &caller, req, version).await)
        }
        ApiKey::InitProducerId => {
            let req: InitProducerIdRequest = frame::decode(&mut body, version)?;
            respond(&header, &offsets::init_producer_id(b, &caller, req).await)
        }
        ApiKey::FindCoordinator => {
            let req: FindCoordinatorRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::find_coordinator(b, &caller, listener, req, version).await)
        }
        ApiKey::JoinGroup => {
            let req: JoinGroupRequest = frame::decode(&mut body, version)?;
            let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
            let peer = session.peer.as_str();
            let host = format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h));
            respond(&header, &groups::join_group(b, &caller, req, version, &client_id, &host).await)
        }
        ApiKey::SyncGroup => {
            let req: SyncGroupRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::sync_group(b, &caller, req, version).await)
        }
        ApiKey::Heartbeat => {
            let req: HeartbeatRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::heartbeat(b, &caller, req).await)
        }
        ApiKey::LeaveGroup => {
            let req: LeaveGroupRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::leave_group(b, &caller, req, version).await)
        }
        ApiKey::OffsetCommit => {
            let req: OffsetCommitRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::offset_commit(b, &caller, req).await)
        }
        ApiKey::OffsetFetch => {
            let req: OffsetFetchRequest = frame::decode(&mut body, version)?;
            respond(&header, &groups::offset_fetch(b, &caller, req, version).await)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let req: ConsumerGroupHeartbeatRequest = frame::decode(&mut body, version)?;
            let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
            respond(&header, &consumer_groups::heartbeat(b, &caller, req, &client_id).await)
        }
        ApiKey::ConsumerGroupDescribe => {
            let req: ConsumerGroupDescribeRequest = frame::decode(&mut body, version)?;
            respond(&header, &consumer_groups::describe(b, &caller, req).await)
        }
        ApiKey::DescribeGroups => {
            let req: DescribeGroupsRequest = frame::decode(&mut body, version)?;
            respond(&header, &group_admin::describe_groups(b, &caller, req).await)
        }
        ApiKey::ListGroups => {
            let req: ListGroupsRequest = frame::decode(&mut body, version)?;
            respond(&header, &group_admin::list_groups(b, &caller, req))
        }
        ApiKey::DeleteGroups => {
            let req: DeleteGroupsRequest = frame::decode(&mut body, version)?;
            respond(&header, &group_admin::delete_groups(b, &caller, req).await)
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = frame::decode(&mut body, version)?;
            respond(&header, &admin::create_topics(b, &caller, req, version).await)
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = frame::decode(&mut body, version)?;
            respond(&header, &admin::delete_topics(b, &caller, req, version).await)
        }
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest = frame::decode(&mut body, version)?;
            respond(&header, &admin::create_partitions(b, &caller, req).await)
        }
        ApiKey::DescribeCluster => {
            let req: DescribeClusterRequest = frame::decode(&mut body, version)?;
            respond(&header, &admin::describe_cluster(b, listener, req).await)
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = frame::decode(&mut body, version)?;
            respond(&header, &configs::describe_configs(b, &caller, req))
        }
        ApiKey::AlterConfigs => {
            let req: AlterConfigsRequest = frame::decode(&mut body, version)?;
            respond(&header, &configs::alter_configs(b, &caller, req).await)
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: IncrementalAlterConfigsRequest = frame::decode(&mut body, version)?;
            respond(&header, &configs::incremental_alter_configs(b, &caller, req).await)
        }
        other => Err(FrameError::Decode(format!("{other:?} is not served"))),
    }
}

/// Why a request from a connection that has not authenticated closes it.
fn unauthenticated(session: &Session, key: ApiKey) -> FrameError {
    crate::metrics::auth_failed("kafka");
    FrameError::Decode(format!(
        "{key:?} from {} before it authenticated (authentication is on: use SASL or a client \
         certificate)",
        session.peer
    ))
}

/// A response body of any API.
trait Respond {
    fn frame(
        &self,
        correlation_id: i32,
        header_version: i16,
        version: i16,
    ) -> Result<Bytes, FrameError>;
}

impl<T: Encodable> Respond for T {
    fn frame(
        &self,
        correlation_id: i32,
        header_version: i16,
        version: i16,
    ) -> Result<Bytes, FrameError> {
        frame::response(correlation_id, header_version, self, version)
    }
}
