//! A whole plaintext ISAKMP message.

use super::{
    DecodeError, Header, Payload, Trailing, decode_payloads, decode_received_payloads,
    encode_payloads,
};

/// A plaintext (unencrypted) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decodes a whole datagram: header, `length` must equal `buf.len()`
    /// (else `BadLength`), the encryption flag must be clear (else `Invalid`),
    /// payloads strict (no padding).
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        Self::decode_with(buf, false)
    }

    /// Like [`Message::decode`], for a datagram from a gateway: up to 3 zero bytes of
    /// 4-octet alignment padding may follow the last payload inside the header's
    /// length, and an ATTRIBUTE payload may end with such padding too (libreswan
    /// before 5.2 with its default `ikepad=yes` sends both). The padding is not kept:
    /// re-encoding gives the message without it.
    pub fn decode_received(buf: &[u8]) -> Result<Message, DecodeError> {
        Self::decode_with(buf, true)
    }

    fn decode_with(buf: &[u8], received: bool) -> Result<Message, DecodeError> {
        let header = Header::decode(buf)?;
        let len = usize::try_from(header.length).unwrap_or(usize::MAX);
        if len != buf.len() {
            return Err(DecodeError::BadLength {
                what: "ISAKMP message",
                len,
            });
        }
        if header.is_encrypted() {
            return Err(DecodeError::Invalid {
                what: "encrypted message where plaintext expected",
            });
        }
        let body = buf.get(Header::LEN..).unwrap_or(&[]);
        let decoded = if received {
            decode_received_payloads(header.next_payload, body, Trailing::Alignment)?
        } else {
            decode_payloads(header.next_payload, body, false)?
        };
        let payloads = decoded.into_iter().map(|d| d.payload).collect();
        Ok(Message { header, payloads })
    }

    /// Encodes the message; sets `next_payload` and `length` from the payloads.
    pub fn encode(&self) -> Vec<u8> {
        let (first, body) = encode_payloads(&self.payloads);
        let mut header = self.header.clone();
        header.next_payload = first;
        header.length = u32::try_from(Header::LEN + body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(Header::LEN + body.len());
        header.encode(&mut out);
        out.extend_from_slice(&body);
        out
    }

    /// The first payload of the given type.
    pub fn find(&self, kind: super::PayloadType) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.kind() == kind)
    }
}
