//! Arbitrary bytes as a gRPC request body: a pass-through [`BytesCodec`] and
//! [`raw_unary`], to check that a broker survives requests no generated client would send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use tonic::Status;
use tonic::codec::Codec;
use tonic::codec::DecodeBuf;
use tonic::codec::Decoder;
use tonic::codec::EncodeBuf;
use tonic::codec::Encoder;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::broker::channel_to;

/// A gRPC codec that sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Sends `body` as the request message of the unary method `path` (for example
/// `/rafka.v1.Data/Produce`) to the broker at `addr` over a new connection; returns the
/// response message bytes or the gRPC status. Bounded by `timeout`.
pub async fn raw_unary(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Bytes, Status> {
    let channel = channel_to(&addr.to_string()).map_err(|e| Status::internal(e.to_string()))?;
    raw_unary_on(channel, path, body, timeout).await
}

/// [`raw_unary`] over an existing channel (many requests, one connection).
pub async fn raw_unary_on(
    channel: Channel,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<Bytes, Status> {
    let path = PathAndQuery::try_from(path)
        .map_err(|e| Status::invalid_argument(format!("bad method path {path:?}: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = async {
        grpc.ready().await.map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
        grpc.unary(tonic::Request::new(body), path, BytesCodec).await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!("no answer in {timeout:?}"))),
    }
}
