//! Conversions between openraft's messages and the transport protobuf (`proto/raft.proto`).
//!
//! Entry payloads use the segment files' encoding (`LogPayload::encode`, and the codec's
//! membership encoding), so a follower decodes exactly what the leader stores. Decoding never
//! panics on bad input: it returns an error that the transport turns into a status.

use std::io;

use bytes::Bytes;
use bytes::BytesMut;
use openraft::EntryPayload;
use openraft::StoredMembership;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::StreamAppendError;
use openraft::raft::StreamAppendResult;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;

use crate::codec;
use crate::types::App;
use crate::types::Entry;
use crate::types::LeaderId;
use crate::types::LogId;
use crate::types::LogPayload;
use crate::types::Membership;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::types::log_id;

/// Generated code of the `rafka.raft.v1` package.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("rafka.raft.v1");
}

pub(crate) fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId { term: id.leader_id.term, index: id.index }
}

pub(crate) fn opt_log_id_to_pb(id: Option<&LogId>) -> Option<pb::LogId> {
    id.map(log_id_to_pb)
}

pub(crate) fn log_id_from_pb(id: &pb::LogId) -> LogId {
    log_id(id.term, id.index)
}

pub(crate) fn opt_log_id_from_pb(id: Option<&pb::LogId>) -> Option<LogId> {
    id.map(log_id_from_pb)
}

pub(crate) fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote { term: v.leader_id.term, voted_for: v.leader_id.voted_for, committed: v.committed }
}

pub(crate) fn vote_from_pb(v: Option<&pb::Vote>) -> io::Result<Vote> {
    let v = v.ok_or_else(|| codec::invalid("missing vote"))?;
    Ok(Vote {
        leader_id: LeaderId { term: v.term, voted_for: v.voted_for },
        committed: v.committed,
    })
}

pub(crate) fn entry_to_pb<A: App>(e: &Entry<A>) -> pb::Entry {
    let (kind, payload) = match &e.payload {
        EntryPayload::Blank => (codec::KIND_BLANK, Bytes::new()),
        EntryPayload::Normal(d) => {
            let mut buf = BytesMut::with_capacity(d.encoded_len());
            d.encode(&mut buf);
            (codec::KIND_NORMAL, buf.freeze())
        }
        EntryPayload::Membership(m) => {
            let mut buf = BytesMut::new();
            codec::encode_membership(m, &mut buf);
            (codec::KIND_MEMBERSHIP, buf.freeze())
        }
    };
    pb::Entry { term: e.log_id.leader_id.term, index: e.log_id.index, kind: kind.into(), payload }
}

pub(crate) fn entry_from_pb<A: App>(e: pb::Entry) -> io::Result<Entry<A>> {
    let payload = match u8::try_from(e.kind) {
        Ok(codec::KIND_BLANK) => EntryPayload::Blank,
        Ok(codec::KIND_NORMAL) => EntryPayload::Normal(A::Data::decode(e.payload)?),
        Ok(codec::KIND_MEMBERSHIP) => {
            EntryPayload::Membership(codec::decode_membership(e.payload)?)
        }
        _ => return Err(codec::invalid("unknown entry kind")),
    };
    Ok(Entry::<A> { log_id: log_id(e.term, e.index), payload })
}

pub(crate) fn membership_to_pb(m: &Membership) -> Bytes {
    let mut buf = BytesMut::new();
    codec::encode_membership(m, &mut buf);
    buf.freeze()
}

pub(crate) fn stored_membership_from_pb(
    log_id: Option<&pb::LogId>,
    bytes: Bytes,
) -> io::Result<StoredMembership<crate::types::CommittedLeaderId, u64, crate::ReplicaNode>> {
    Ok(StoredMembership::new(opt_log_id_from_pb(log_id), codec::decode_membership(bytes)?))
}

pub(crate) fn append_to_pb<A: App>(
    address: pb::Address,
    req: &AppendEntriesRequest<TypeConfig<A>>,
) -> pb::AppendRequest {
    pb::AppendRequest {
        address: Some(address),
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: opt_log_id_to_pb(req.prev_log_id.as_ref()),
        leader_commit: opt_log_id_to_pb(req.leader_commit.as_ref()),
        entries: req.entries.iter().map(entry_to_pb::<A>).collect(),
    }
}

/// Decodes an append request and checks the structure openraft only debug-asserts: entries
/// follow `prev_log_id` with consecutive indexes and non-decreasing terms, and no entry or
/// commit point claims a term above the sender's vote. A request failing this is answered
/// with an error and never reaches the log (a bad append would stop the group).
pub(crate) fn append_from_pb<A: App>(
    req: pb::AppendRequest,
) -> io::Result<AppendEntriesRequest<TypeConfig<A>>> {
    let vote = vote_from_pb(req.vote.as_ref())?;
    let prev_log_id = opt_log_id_from_pb(req.prev_log_id.as_ref());
    let leader_commit = opt_log_id_from_pb(req.leader_commit.as_ref());
    let term = vote.leader_id.term;
    let (mut next, mut last_term) = match &prev_log_id {
        Some(p) => (
            p.index.checked_add(1).ok_or_else(|| codec::invalid("index overflow"))?,
            p.leader_id.term,
        ),
        None => (0, 0),
    };
    if last_term > term || leader_commit.as_ref().is_some_and(|c| c.leader_id.term > term) {
        return Err(codec::invalid("log id from a term above the sender's vote"));
    }
    let mut entries = Vec::with_capacity(req.entries.len());
    for e in req.entries {
        if e.index != next {
            return Err(codec::invalid("entries are not consecutive after prev_log_id"));
        }
        if e.term < last_term || e.term > term {
            return Err(codec::invalid("entry term out of order or above the sender's vote"));
        }
        next = e.index.saturating_add(1);
        last_term = e.term;
        entries.push(entry_from_pb::<A>(e)?);
    }
    Ok(AppendEntriesRequest { vote, prev_log_id, leader_commit, entries })
}

pub(crate) fn append_result_to_pb<A: App>(
    r: &StreamAppendResult<TypeConfig<A>>,
) -> pb::AppendResponse {
    use pb::append_response::Result as R;
    let result = match r {
        Ok(matched) => R::Success(pb::Matched { log_id: opt_log_id_to_pb(matched.as_ref()) }),
        Err(StreamAppendError::Conflict(id)) => R::Conflict(log_id_to_pb(id)),
        Err(StreamAppendError::HigherVote(v)) => R::HigherVote(vote_to_pb(v)),
    };
    pb::AppendResponse { result: Some(result) }
}

pub(crate) fn append_error_to_pb(msg: String) -> pb::AppendResponse {
    pb::AppendResponse { result: Some(pb::append_response::Result::Error(msg)) }
}

/// Decodes an append outcome; `Err(message)` when the remote could not deliver it.
pub(crate) fn append_result_from_pb<A: App>(
    r: pb::AppendResponse,
) -> Result<StreamAppendResult<TypeConfig<A>>, String> {
    use pb::append_response::Result as R;
    match r.result {
        Some(R::Success(m)) => Ok(Ok(opt_log_id_from_pb(m.log_id.as_ref()))),
        Some(R::Conflict(id)) => Ok(Err(StreamAppendError::Conflict(log_id_from_pb(&id)))),
        Some(R::HigherVote(v)) => Ok(Err(StreamAppendError::HigherVote(
            vote_from_pb(Some(&v)).map_err(|e| e.to_string())?,
        ))),
        Some(R::Error(msg)) => Err(msg),
        None => Err("empty append response".to_string()),
    }
}

pub(crate) fn vote_req_to_pb<A: App>(
    address: pb::Address,
    req: &VoteRequest<TypeConfig<A>>,
    pre_vote: bool,
) -> pb::VoteRequest {
    pb::VoteRequest {
        address: Some(address),
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: opt_log_id_to_pb(req.last_log_id.as_ref()),
        leadership_transfer: req.leadership_transfer,
        pre_vote,
    }
}

pub(crate) fn vote_req_from_pb<A: App>(
    req: &pb::VoteRequest,
) -> io::Result<VoteRequest<TypeConfig<A>>> {
    Ok(VoteRequest {
        vote: vote_from_pb(req.vote.as_ref())?,
        last_log_id: opt_log_id_from_pb(req.last_log_id.as_ref()),
        leadership_transfer: req.leadership_transfer,
    })
}

pub(crate) fn vote_resp_to_pb<A: App>(r: &VoteResponse<TypeConfig<A>>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_to_pb(r.last_log_id.as_ref()),
    }
}

pub(crate) fn vote_resp_from_pb<A: App>(
    r: &pb::VoteResponse,
) -> io::Result<VoteResponse<TypeConfig<A>>> {
    Ok(VoteResponse::new(
        vote_from_pb(r.vote.as_ref())?,
        opt_log_id_from_pb(r.last_log_id.as_ref()),
        r.vote_granted,
    ))
}

/// The (prev, last) log ids an append request covers.
pub(crate) fn append_range<A: App>(
    req: &AppendEntriesRequest<TypeConfig<A>>,
) -> (Option<LogId>, Option<LogId>) {
    let last = req.entries.last().map(|e| e.log_id).or(req.prev_log_id);
    (req.prev_log_id, last)
}
