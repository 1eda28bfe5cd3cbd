//! The ISAKMP wire format: RFC 2408 (ISAKMP), RFC 2409 (IKE), RFC 2407 (IPsec
//! DOI), RFC 3947 (NAT-T), RFC 3706 (DPD), draft-dukes-ike-mode-cfg,
//! draft-beaulieu-ike-xauth and the Cisco/strongSwan IKEv1 fragment payload.
//!
//! Decoding never panics and never reads past a length: every structure is
//! read through a [`Reader`] bounded by the enclosing length, trailing bytes
//! are rejected, and the number of payloads, proposals, transforms and
//! attributes is bounded. Protocol numbers are open newtypes, so values this
//! code does not know round-trip unchanged.
//!
//! Encoding is infallible. Lengths that do not fit their field (a payload
//! over 65535 bytes, an SPI over 255 bytes) are programming errors of the
//! caller: they trip a `debug_assert!` and otherwise saturate.

mod attribute;
mod header;
mod message;
mod payload;
mod reader;
mod types;

#[cfg(test)]
mod tests;

pub use attribute::{AF_BIT, AttrValue, Attribute, MAX_ATTRIBUTES};
pub use header::Header;
pub use message::Message;
pub use payload::{
    AttrPayload, CertPayload, Decoded, DeletePayload, FragmentPayload, GENERIC_HEADER_LEN,
    IdPayload, MAX_PAYLOADS, MAX_PROPOSALS, MAX_TRANSFORMS, NotifyPayload, Payload, Proposal,
    SaPayload, Trailing, Transform, decode_payloads, decode_received_payloads, encode_payloads,
};
pub use reader::Reader;
pub use types::{
    CERT_X509_SIG, DOI_IPSEC, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId,
    SIT_IDENTITY_ONLY, attr, cfg_attr, ipsec_attr,
};

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("bad length {len} in {what}")]
    BadLength { what: &'static str, len: usize },
    #[error("{n} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, n: usize },
    #[error("unsupported ISAKMP version {0:#04x}")]
    UnsupportedVersion(u8),
    #[error("invalid {what}")]
    Invalid { what: &'static str },
}
