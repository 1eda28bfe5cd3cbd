//! The 28-byte ISAKMP header (RFC 2408 §3.1).

use super::{DecodeError, ExchangeType, PayloadType, Reader};

/// The fixed ISAKMP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub initiator_cookie: [u8; 8],
    pub responder_cookie: [u8; 8],
    pub next_payload: PayloadType,
    /// Major version in the high nibble, minor in the low: 0x10 for IKEv1.
    pub version: u8,
    pub exchange: ExchangeType,
    pub flags: u8,
    pub message_id: u32,
    /// Length of the whole message, header included.
    pub length: u32,
}

impl Header {
    pub const LEN: usize = 28;
    /// IKEv1: major 1, minor 0.
    pub const VERSION_IKEV1: u8 = 0x10;
    pub const FLAG_ENCRYPTION: u8 = 1;
    pub const FLAG_COMMIT: u8 = 2;
    pub const FLAG_AUTH_ONLY: u8 = 4;

    /// Reads the 28-byte header from the start of `buf`; checks `length >= 28`
    /// and `length <= buf.len()`, and that the major version is 1.
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::named(buf, "ISAKMP header");
        let h = Header::read(&mut r)?;
        let len = usize::try_from(h.length).unwrap_or(usize::MAX);
        if len < Header::LEN || len > buf.len() {
            return Err(DecodeError::BadLength {
                what: "ISAKMP header",
                len,
            });
        }
        Ok(h)
    }

    /// Reads the 28 header bytes with only the version check (no length checks).
    pub fn read(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        let initiator_cookie = r.array()?;
        let responder_cookie = r.array()?;
        let next_payload = PayloadType(r.u8()?);
        let version = r.u8()?;
        let exchange = ExchangeType(r.u8()?);
        let flags = r.u8()?;
        let message_id = r.u32()?;
        let length = r.u32()?;
        if version >> 4 != 1 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(Header {
            initiator_cookie,
            responder_cookie,
            next_payload,
            version,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    /// Writes the 28 bytes; `length` is written as given.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.initiator_cookie);
        out.extend_from_slice(&self.responder_cookie);
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// Whether the encryption flag is set.
    pub fn is_encrypted(&self) -> bool {
        self.flags & Header::FLAG_ENCRYPTION != 0
    }
}
