//! Kafka's framing and request headers, read defensively: every request is a 4-byte
//! big-endian size and that many bytes — `api_key i16 | api_version i16 | correlation_id
//! i32 | client_id | (tags) | body`. Sizes are bounded before anything is read into memory,
//! header and body decoding never panic the connection's task, and a frame that cannot be
//! read closes the connection (as Kafka does: there is no way to answer a request whose
//! header is unknown).

use std::io;
use std::panic::AssertUnwindSafe;

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::Encodable;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

/// The largest Produce request (Kafka's `socket.request.max.bytes` default).
pub const MAX_PRODUCE_REQUEST: usize = 100 << 20;
/// The largest request of any other API. Decoding builds a struct per array element, which
/// may take many times the bytes the element took on the wire; this bounds that.
pub const MAX_OTHER_REQUEST: usize = 16 << 20;
/// Bytes of the fixed start of every request header: key, version, correlation id.
const FIXED_HEADER: usize = 8;

/// A request read off the wire: its key, version and correlation id, and the rest of the
/// frame (client id, header tags, body).
#[derive(Debug)]
pub struct Frame {
    pub key: i16,
    pub version: i16,
    pub correlation_id: i32,
    /// The whole frame after the size, header included.
    pub bytes: Bytes,
}

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("request size {0} is negative or larger than {MAX_PRODUCE_REQUEST} bytes")]
    Size(i32),
    #[error("{key:?} request of {size} bytes is larger than {limit} bytes")]
    TooLarge { key: i16, size: usize, limit: usize },
    #[error("request of {0} bytes is shorter than a request header")]
    Short(usize),
    #[error("{0}")]
    Decode(String),
}

/// Reads one raw size-prefixed SASL token (after SaslHandshake 0), at most `max` bytes.
pub async fn read_token<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    r.read_exact(&mut size).await?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|s| *s <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "SASL token size"))?;
    let mut token = vec![0u8; size];
    r.read_exact(&mut token).await?;
    Ok(token)
}

/// Reads one request; `None` when the client closed the connection between requests.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut size = [0u8; 4];
    let mut got = 0;
    while got < size.len() {
        let n = match r.read(&mut size[got..]).await {
            // A TLS client that closes without close_notify between requests (most do) has
            // closed as cleanly as a plaintext one.
            Err(e) if got == 0 && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            r => r?,
        };
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let declared = i32::from_be_bytes(size);
    let size = usize::try_from(declared)
        .ok()
        .filter(|s| *s <= MAX_PRODUCE_REQUEST)
        .ok_or(FrameError::Size(declared))?;
    if size < FIXED_HEADER {
        return Err(FrameError::Short(size));
    }
    let mut fixed = [0u8; FIXED_HEADER];
    r.read_exact(&mut fixed).await?;
    let key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let limit = if key == ApiKey::Produce as i16 { MAX_PRODUCE_REQUEST } else { MAX_OTHER_REQUEST };
    if size > limit {
        return Err(FrameError::TooLarge { key, size, limit });
    }
    // Read as the bytes arrive rather than reserving the declared size up front: a client
    // that announces 100 MiB and sends nothing holds no memory for it.
    let mut rest = Vec::new();
    let wanted = (size - FIXED_HEADER) as u64;
    let n = r.take(wanted).read_to_end(&mut rest).await?;
    if n as u64 != wanted {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    let mut bytes = BytesMut::with_capacity(size);
    bytes.put_slice(&fixed);
    bytes.put_slice(&rest);
    Ok(Some(Frame {
        key,
        version: i16::from_be_bytes([fixed[2], fixed[3]]),
        correlation_id: i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        bytes: bytes.freeze(),
    }))
}

/// Decodes a message, turning a decoder panic into an error: the decoder is third-party
/// code fed with untrusted bytes.
pub fn decode<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<T, FrameError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| T::decode(buf, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FrameError::Decode(format!("{e:#}"))),
        Err(_) => Err(FrameError::Decode("the decoder panicked".into())),
    }
}

/// Splits the request header off `frame`, leaving the body.
pub fn header(frame: &Frame, key: ApiKey) -> Result<(RequestHeader, Bytes), FrameError> {
    let mut body = frame.bytes.clone();
    let header = decode::<RequestHeader>(&mut body, key.request_header_version(frame.version))?;
    Ok((header, body))
}

/// A response frame: size, header (version `header_version`), `body` at `version`.
pub fn response<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &T,
    version: i16,
) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let failed =
        |e: &dyn std::fmt::Display| FrameError::Decode(format!("encoding a response: {e}"));
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .map_err(|e| failed(&e))?;
    body.encode(&mut out, version).map_err(|e| failed(&e))?;
    let size = i32::try_from(out.len() - 4)
        .map_err(|_| FrameError::Decode(format!("response of {} bytes", out.len())))?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_bytes(b: &[u8]) -> Result<Option<Frame>, FrameError> {
        read(&mut &b[..]).await
    }

    #[tokio::test]
    async fn sizes_are_bounded_before_reading() {
        assert!(read_bytes(&[]).await.unwrap().is_none(), "a clean close");
        assert!(matches!(read_bytes(&[0, 0]).await, Err(FrameError::Io(_))));
        assert!(matches!(read_bytes(&(-1i32).to_be_bytes()).await, Err(FrameError::Size(-1))));
        let huge = (MAX_PRODUCE_REQUEST as i32 + 1).to_be_bytes();
        assert!(matches!(read_bytes(&huge).await, Err(FrameError::Size(_))));
        assert!(matches!(read_bytes(&[0, 0, 0, 7, 1, 2, 3]).await, Err(FrameError::Short(7))));
        // A Metadata request (key 3) over the non-produce limit is refused after its header.
        let mut big = ((MAX_OTHER_REQUEST + 1) as i32).to_be_bytes().to_vec();
        big.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 9]);
        assert!(matches!(read_bytes(&big).await, Err(FrameError::TooLarge { key: 3, .. })));
        // A truncated body.
        let cut = [0, 0, 0, 20, 0, 3, 0, 1, 0, 0, 0, 9, 1];
        assert!(matches!(read_bytes(&cut).await, Err(FrameError::Io(_))));
        let ok = [0, 0, 0, 10, 0, 18, 0, 3, 0, 0, 0, 9, 0xAA, 0xBB];
        let f = read_bytes(&ok).await.unwrap().unwrap();
        assert_eq!((f.key, f.version, f.correlation_id, f.bytes.len()), (18, 3, 9, 10));
    }
}
