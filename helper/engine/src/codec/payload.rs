//! ISAKMP payloads (RFC 2408 §3.4–3.15, RFC 3947, mode-cfg, fragmentation)
//! and the payload chain.

use super::{
    Attribute, DecodeError, IdType, NotifyType, PayloadType, ProtocolId, Reader, SIT_IDENTITY_ONLY,
};

/// Length of the generic payload header (next, reserved, length).
pub const GENERIC_HEADER_LEN: usize = 4;
/// Most payloads accepted in one message.
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most transforms accepted in one proposal (the count field is one byte anyway).
pub const MAX_TRANSFORMS: usize = 255;

/// One transform of a proposal (RFC 2408 §3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub number: u8,
    pub id: u8,
    pub attributes: Vec<Attribute>,
}

/// One proposal of an SA payload (RFC 2408 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// Security Association payload (RFC 2408 §3.4) for the IPsec DOI with
/// SIT_IDENTITY_ONLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    pub doi: u32,
    pub situation: u32,
    pub proposals: Vec<Proposal>,
}

impl SaPayload {
    pub const DOI_IPSEC: u32 = super::DOI_IPSEC;
    pub const SIT_IDENTITY_ONLY: u32 = super::SIT_IDENTITY_ONLY;
}

/// Identification payload (RFC 2407 §4.6.2); also the body of NAT-OA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPayload {
    pub id_type: IdType,
    pub protocol: u8,
    pub port: u16,
    pub data: Vec<u8>,
}

/// CERT or CERTREQ payload (RFC 2408 §3.9, §3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPayload {
    pub encoding: u8,
    pub data: Vec<u8>,
}

impl CertPayload {
    /// "X.509 Certificate - Signature".
    pub const X509_SIG: u8 = super::CERT_X509_SIG;
}

/// Notification payload (RFC 2408 §3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPayload {
    pub doi: u32,
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub kind: NotifyType,
    pub data: Vec<u8>,
}

/// Delete payload (RFC 2408 §3.15). Every SPI is exactly `spi_size` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload {
    pub doi: u32,
    pub protocol: ProtocolId,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// Mode Config / XAuth attribute payload (draft-dukes-ike-mode-cfg §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPayload {
    /// REQUEST, REPLY, SET or ACK (see [`super::cfg_attr`]).
    pub cfg_type: u8,
    pub identifier: u16,
    pub attributes: Vec<Attribute>,
}

/// Cisco/strongSwan IKEv1 fragment payload (type 132): fragment id (2),
/// fragment number (1), flags (1, bit 0 = last), data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPayload {
    pub id: u16,
    pub number: u8,
    pub last: bool,
    pub data: Vec<u8>,
}

impl FragmentPayload {
    pub const FLAG_LAST: u8 = 1;
}

/// One top-level payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(SaPayload),
    Ke(Vec<u8>),
    Id(IdPayload),
    Cert(CertPayload),
    CertReq(CertPayload),
    Hash(Vec<u8>),
    Sig(Vec<u8>),
    Nonce(Vec<u8>),
    Notify(NotifyPayload),
    Delete(DeletePayload),
    VendorId(Vec<u8>),
    /// Type 20, or 130 when `draft`.
    NatD {
        draft: bool,
        hash: Vec<u8>,
    },
    /// Type 21, or 131 when `draft`.
    NatOa {
        draft: bool,
        id: IdPayload,
    },
    Attr(AttrPayload),
    Fragment(FragmentPayload),
    /// Any other type: the body kept verbatim.
    Unknown {
        kind: PayloadType,
        data: Vec<u8>,
    },
}

/// A decoded payload and the byte range it occupied (generic header included)
/// in the buffer handed to [`decode_payloads`]. Needed to hash received bytes
/// exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub payload: Payload,
    pub span: std::ops::Range<usize>,
}

// ---------------------------------------------------------------------------
// Helpers

/// Type and length (or value) of a data attribute: the least an attribute takes.
const ATTR_HEADER_LEN: usize = 4;

/// What may follow the last payload of a chain, inside the length that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailing {
    /// Nothing: every byte belongs to a payload.
    Nothing,
    /// Up to 3 zero bytes of 4-octet alignment padding (libreswan's default
    /// `ikepad=yes` pads plaintext messages this way).
    Alignment,
    /// Anything (the cipher padding of a decrypted body).
    Any,
}

/// Consumes what is left of `r` when it is 4-octet alignment padding (1 to 3 zero
/// bytes); `TrailingBytes` naming `after` when anything else is left.
fn skip_alignment_padding(r: &mut Reader<'_>, after: &'static str) -> Result<(), DecodeError> {
    let rest = r.peek_rest();
    if rest.len() < ATTR_HEADER_LEN && rest.iter().all(|b| *b == 0) {
        r.rest();
        return Ok(());
    }
    r.expect_empty(after)
}

/// Appends a generic payload header with a placeholder length; returns where
/// the header starts so [`finish_generic`] can patch the length.
fn start_generic(next: PayloadType, out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.push(next.0);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    at
}

/// Patches the length of the generic header written at `at`. A payload longer
/// than 65535 bytes is a caller bug (the length saturates).
fn finish_generic(at: usize, out: &mut [u8]) {
    let len = out.len().saturating_sub(at);
    debug_assert!(len <= usize::from(u16::MAX), "payload too long");
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(at + 2..at + 4) {
        slot.copy_from_slice(&len);
    }
}

/// Length as a one-byte size field (saturating; callers keep SPIs short).
fn size_u8(len: usize) -> u8 {
    debug_assert!(len <= usize::from(u8::MAX), "SPI too long");
    u8::try_from(len).unwrap_or(u8::MAX)
}

/// Reads a generic payload header and returns (next, body reader).
fn read_generic<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
) -> Result<(PayloadType, Reader<'a>), DecodeError> {
    let mut h = Reader::named(
        r.take(GENERIC_HEADER_LEN).map_err(|e| rename(e, what))?,
        what,
    );
    let next = PayloadType(h.u8()?);
    let _reserved = h.u8()?;
    let len = usize::from(h.u16()?);
    if len < GENERIC_HEADER_LEN {
        return Err(DecodeError::BadLength { what, len });
    }
    let body_len = len - GENERIC_HEADER_LEN;
    if body_len > r.left() {
        return Err(DecodeError::BadLength { what, len });
    }
    Ok((next, r.sub(body_len)?.with_what(what)))
}

fn rename(e: DecodeError, what: &'static str) -> DecodeError {
    match e {
        DecodeError::Truncated { need, have, .. } => DecodeError::Truncated { what, need, have },
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Body codecs

impl Transform {
    /// Reads the transform body (after its generic header).
    pub fn read(r: &mut Reader<'_>) -> Result<Transform, DecodeError> {
        let number = r.u8()?;
        let id = r.u8()?;
        let _reserved = r.u16()?;
        let attributes = Attribute::read_all(r)?;
        Ok(Transform {
            number,
            id,
            attributes,
        })
    }

    /// Writes the transform body (without generic header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.number);
        out.push(self.id);
        out.extend_from_slice(&[0, 0]);
        Attribute::encode_all(&self.attributes, out);
    }
}

impl Proposal {
    /// Reads the proposal body (after its generic header), transforms included.
    pub fn read(r: &mut Reader<'_>) -> Result<Proposal, DecodeError> {
        let number = r.u8()?;
        let protocol = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let count = usize::from(r.u8()?);
        let spi = r.take(spi_size)?.to_vec();
        let mut transforms = Vec::with_capacity(count.min(16));
        let mut next = if r.is_empty() {
            PayloadType::NONE
        } else {
            PayloadType::TRANSFORM
        };
        while next != PayloadType::NONE {
            if next != PayloadType::TRANSFORM {
                return Err(DecodeError::Invalid {
                    what: "payload type in transform chain",
                });
            }
            if transforms.len() >= MAX_TRANSFORMS {
                return Err(DecodeError::Invalid {
                    what: "too many transforms",
                });
            }
            let (n, mut body) = read_generic(r, "transform payload")?;
            transforms.push(Transform::read(&mut body)?);
            next = n;
        }
        r.expect_empty("transform chain")?;
        if transforms.len() != count {
            return Err(DecodeError::Invalid {
                what: "transform count",
            });
        }
        Ok(Proposal {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    /// Writes the proposal body (without generic header), transforms included.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.number);
        out.push(self.protocol.0);
        out.push(size_u8(self.spi.len()));
        out.push(size_u8(self.transforms.len()));
        out.extend_from_slice(
            self.spi
                .get(..usize::from(size_u8(self.spi.len())))
                .unwrap_or(&[]),
        );
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            let next = if i + 1 < n {
                PayloadType::TRANSFORM
            } else {
                PayloadType::NONE
            };
            let at = start_generic(next, out);
            t.encode_body(out);
            finish_generic(at, out);
        }
    }
}

impl SaPayload {
    /// Reads the SA body (after its generic header), proposals included.
    pub fn read(r: &mut Reader<'_>) -> Result<SaPayload, DecodeError> {
        let doi = r.u32()?;
        let situation = r.u32()?;
        if situation != SIT_IDENTITY_ONLY {
            return Err(DecodeError::Invalid {
                what: "SA situation",
            });
        }
        let mut proposals = Vec::new();
        let mut next = PayloadType::PROPOSAL;
        while next != PayloadType::NONE {
            if next != PayloadType::PROPOSAL {
                return Err(DecodeError::Invalid {
                    what: "payload type in proposal chain",
                });
            }
            if proposals.len() >= MAX_PROPOSALS {
                return Err(DecodeError::Invalid {
                    what: "too many proposals",
                });
            }
            let (n, mut body) = read_generic(r, "proposal payload")?;
            proposals.push(Proposal::read(&mut body)?);
            next = n;
        }
        r.expect_empty("proposal chain")?;
        Ok(SaPayload {
            doi,
            situation,
            proposals,
        })
    }

    /// Writes the SA body (without generic header).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.doi.to_be_bytes());
        out.extend_from_slice(&self.situation.to_be_bytes());
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            let next = if i + 1 < n {
                PayloadType::PROPOSAL
            } else {
                PayloadType::NONE
            };
            let at = start_generic(next, out);
            p.encode_body(out);
            finish_generic(at, out);
        }
    }
}

impl IdPayload {
    pub fn read(r: &mut Reader<'_>) -> Result<IdPayload, DecodeError> {
        let id_type = IdType(r.u8()?);
        let protocol = r.u8()?;
        let port = r.u16()?;
        let data = r.rest().to_vec();
        Ok(IdPayload {
            id_type,
            protocol,
            port,
            data,
        })
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.id_type.0);
        out.push(self.protocol);
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.data);
    }
}

impl CertPayload {
    pub fn read(r: &mut Reader<'_>) -> Result<CertPayload, DecodeError> {
        let encoding = r.u8()?;
        Ok(CertPayload {
            encoding,
            data: r.rest().to_vec(),
        })
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.encoding);
        out.extend_from_slice(&self.data);
    }
}

impl NotifyPayload {
    pub fn read(r: &mut Reader<'_>) -> Result<NotifyPayload, DecodeError> {
        let doi = r.u32()?;
        let protocol = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let kind = NotifyType(r.u16()?);
        let spi = r.take(spi_size)?.to_vec();
        let data = r.rest().to_vec();
        Ok(NotifyPayload {
            doi,
            protocol,
            spi,
            kind,
            data,
        })
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        let spi_size = size_u8(self.spi.len());
        out.extend_from_slice(&self.doi.to_be_bytes());
        out.push(self.protocol.0);
        out.push(spi_size);
        out.extend_from_slice(&self.kind.0.to_be_bytes());
        out.extend_from_slice(self.spi.get(..usize::from(spi_size)).unwrap_or(&[]));
        out.extend_from_slice(&self.data);
    }
}

impl DeletePayload {
    pub fn read(r: &mut Reader<'_>) -> Result<DeletePayload, DecodeError> {
        let doi = r.u32()?;
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = usize::from(r.u16()?);
        let size = usize::from(spi_size);
        if size == 0 && count != 0 {
            return Err(DecodeError::Invalid {
                what: "delete payload with empty SPIs",
            });
        }
        // Every SPI is exactly spi_size long and they fill the body exactly.
        if size.checked_mul(count) != Some(r.left()) {
            return Err(DecodeError::BadLength {
                what: "delete payload SPIs",
                len: r.left(),
            });
        }
        let mut spis = Vec::with_capacity(count);
        for _ in 0..count {
            spis.push(r.take(size)?.to_vec());
        }
        r.expect_empty("delete payload")?;
        Ok(DeletePayload {
            doi,
            protocol,
            spi_size,
            spis,
        })
    }

    /// Writes the body; SPIs are written as given (each should be `spi_size` long).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        debug_assert!(
            self.spis
                .iter()
                .all(|s| s.len() == usize::from(self.spi_size))
        );
        debug_assert!(self.spis.len() <= usize::from(u16::MAX));
        out.extend_from_slice(&self.doi.to_be_bytes());
        out.push(self.protocol.0);
        out.push(self.spi_size);
        let count = u16::try_from(self.spis.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for spi in self.spis.iter().take(usize::from(count)) {
            out.extend_from_slice(spi);
        }
    }
}

impl AttrPayload {
    pub fn read(r: &mut Reader<'_>) -> Result<AttrPayload, DecodeError> {
        let cfg_type = r.u8()?;
        let _reserved = r.u8()?;
        let identifier = r.u16()?;
        let attributes = Attribute::read_all(r)?;
        Ok(AttrPayload {
            cfg_type,
            identifier,
            attributes,
        })
    }

    /// Like [`AttrPayload::read`], for what gateways send: up to 3 zero bytes after
    /// the last attribute are 4-octet alignment padding and are skipped. libreswan
    /// before 5.2 (with its default `ikepad=yes`) pads the payload this way when an
    /// attribute's length is not a multiple of 4 (a 14-byte Cisco Unity split
    /// network, an odd-length domain name). An attribute needs at least 4 bytes, so
    /// 1 to 3 zero bytes cannot be one; anything else left over is still an error.
    pub fn read_aligned(r: &mut Reader<'_>) -> Result<AttrPayload, DecodeError> {
        let cfg_type = r.u8()?;
        let _reserved = r.u8()?;
        let identifier = r.u16()?;
        let mut attributes = Vec::new();
        while r.left() >= ATTR_HEADER_LEN {
            if attributes.len() >= super::MAX_ATTRIBUTES {
                return Err(DecodeError::Invalid {
                    what: "too many attributes",
                });
            }
            attributes.push(Attribute::read(r)?);
        }
        skip_alignment_padding(r, "last attribute")?;
        Ok(AttrPayload {
            cfg_type,
            identifier,
            attributes,
        })
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.cfg_type);
        out.push(0);
        out.extend_from_slice(&self.identifier.to_be_bytes());
        Attribute::encode_all(&self.attributes, out);
    }
}

impl FragmentPayload {
    pub fn read(r: &mut Reader<'_>) -> Result<FragmentPayload, DecodeError> {
        let id = r.u16()?;
        let number = r.u8()?;
        let flags = r.u8()?;
        Ok(FragmentPayload {
            id,
            number,
            last: flags & FragmentPayload::FLAG_LAST != 0,
            data: r.rest().to_vec(),
        })
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.number);
        out.push(if self.last {
            FragmentPayload::FLAG_LAST
        } else {
            0
        });
        out.extend_from_slice(&self.data);
    }
}

// ---------------------------------------------------------------------------
// Payload

impl Payload {
    /// The payload type this payload is sent as.
    pub fn kind(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::Id(_) => PayloadType::ID,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Hash(_) => PayloadType::HASH,
            Payload::Sig(_) => PayloadType::SIG,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::NatD { draft: false, .. } => PayloadType::NAT_D,
            Payload::NatD { draft: true, .. } => PayloadType::NAT_D_DRAFT,
            Payload::NatOa { draft: false, .. } => PayloadType::NAT_OA,
            Payload::NatOa { draft: true, .. } => PayloadType::NAT_OA_DRAFT,
            Payload::Attr(_) => PayloadType::ATTRIBUTE,
            Payload::Fragment(_) => PayloadType::FRAGMENT,
            Payload::Unknown { kind, .. } => *kind,
        }
    }

    /// Decodes the body (without generic header) of a payload of type `kind`.
    /// The whole of `body` must be consumed. PROPOSAL and TRANSFORM, which
    /// only occur inside SA, are `Invalid` here; NONE is `Invalid` too.
    pub fn decode_body(kind: PayloadType, body: &[u8]) -> Result<Payload, DecodeError> {
        Self::decode_body_with(kind, body, false)
    }

    /// Like [`Payload::decode_body`], for received payloads: an ATTRIBUTE payload may
    /// end with alignment padding ([`AttrPayload::read_aligned`]), which is dropped.
    pub fn decode_received_body(kind: PayloadType, body: &[u8]) -> Result<Payload, DecodeError> {
        Self::decode_body_with(kind, body, true)
    }

    fn decode_body_with(
        kind: PayloadType,
        body: &[u8],
        aligned: bool,
    ) -> Result<Payload, DecodeError> {
        let what = match kind.name() {
            Some(_) => payload_what(kind),
            None => "unknown payload",
        };
        let mut r = Reader::named(body, what);
        let p = match kind {
            PayloadType::NONE => {
                return Err(DecodeError::Invalid {
                    what: "payload type NONE",
                });
            }
            PayloadType::PROPOSAL | PayloadType::TRANSFORM => {
                return Err(DecodeError::Invalid {
                    what: "proposal or transform outside SA",
                });
            }
            PayloadType::SA => Payload::Sa(SaPayload::read(&mut r)?),
            PayloadType::KE => Payload::Ke(r.rest().to_vec()),
            PayloadType::ID => Payload::Id(IdPayload::read(&mut r)?),
            PayloadType::CERT => Payload::Cert(CertPayload::read(&mut r)?),
            PayloadType::CERTREQ => Payload::CertReq(CertPayload::read(&mut r)?),
            PayloadType::HASH => Payload::Hash(r.rest().to_vec()),
            PayloadType::SIG => Payload::Sig(r.rest().to_vec()),
            PayloadType::NONCE => Payload::Nonce(r.rest().to_vec()),
            PayloadType::NOTIFY => Payload::Notify(NotifyPayload::read(&mut r)?),
            PayloadType::DELETE => Payload::Delete(DeletePayload::read(&mut r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(r.rest().to_vec()),
            PayloadType::ATTRIBUTE if aligned => Payload::Attr(AttrPayload::read_aligned(&mut r)?),
            PayloadType::ATTRIBUTE => Payload::Attr(AttrPayload::read(&mut r)?),
            PayloadType::NAT_D => Payload::NatD {
                draft: false,
                hash: r.rest().to_vec(),
            },
            PayloadType::NAT_D_DRAFT => Payload::NatD {
                draft: true,
                hash: r.rest().to_vec(),
            },
            PayloadType::NAT_OA => Payload::NatOa {
                draft: false,
                id: IdPayload::read(&mut r)?,
            },
            PayloadType::NAT_OA_DRAFT => Payload::NatOa {
                draft: true,
                id: IdPayload::read(&mut r)?,
            },
            PayloadType::FRAGMENT => Payload::Fragment(FragmentPayload::read(&mut r)?),
            other => Payload::Unknown {
                kind: other,
                data: r.rest().to_vec(),
            },
        };
        r.expect_empty(what)?;
        Ok(p)
    }

    /// The payload body without its 4-byte generic header (e.g. SAi_b, IDii_b
    /// of RFC 2409).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_body_into(&mut out);
        out
    }

    /// Appends the body (without generic header) to `out`.
    pub fn encode_body_into(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(sa) => sa.encode_body(out),
            Payload::Id(id) | Payload::NatOa { id, .. } => id.encode_body(out),
            Payload::Cert(c) | Payload::CertReq(c) => c.encode_body(out),
            Payload::Notify(n) => n.encode_body(out),
            Payload::Delete(d) => d.encode_body(out),
            Payload::Attr(a) => a.encode_body(out),
            Payload::Fragment(f) => f.encode_body(out),
            Payload::Ke(b)
            | Payload::Hash(b)
            | Payload::Sig(b)
            | Payload::Nonce(b)
            | Payload::VendorId(b)
            | Payload::NatD { hash: b, .. }
            | Payload::Unknown { data: b, .. } => out.extend_from_slice(b),
        }
    }

    /// Generic header (next, reserved 0, length) + body.
    pub fn encode_with_next(&self, next: PayloadType, out: &mut Vec<u8>) {
        let at = start_generic(next, out);
        self.encode_body_into(out);
        finish_generic(at, out);
    }
}

/// A short name for errors about payloads of a known type.
fn payload_what(kind: PayloadType) -> &'static str {
    match kind {
        PayloadType::SA => "SA payload",
        PayloadType::KE => "KE payload",
        PayloadType::ID => "ID payload",
        PayloadType::CERT => "CERT payload",
        PayloadType::CERTREQ => "CERTREQ payload",
        PayloadType::HASH => "HASH payload",
        PayloadType::SIG => "SIG payload",
        PayloadType::NONCE => "NONCE payload",
        PayloadType::NOTIFY => "NOTIFY payload",
        PayloadType::DELETE => "DELETE payload",
        PayloadType::VENDOR_ID => "VENDOR ID payload",
        PayloadType::ATTRIBUTE => "ATTRIBUTE payload",
        PayloadType::NAT_D | PayloadType::NAT_D_DRAFT => "NAT-D payload",
        PayloadType::NAT_OA | PayloadType::NAT_OA_DRAFT => "NAT-OA payload",
        PayloadType::FRAGMENT => "FRAGMENT payload",
        _ => "payload",
    }
}

/// Walks the payload chain starting with `first`. With `allow_padding`, bytes
/// after the last payload (next = NONE) are accepted (encrypted messages
/// carry cipher padding); without, they are `TrailingBytes`. Each generic
/// header length must be >= 4 and fit. Payloads nested only inside SA
/// (PROPOSAL, TRANSFORM) are rejected at top level (`Invalid`). At most
/// [`MAX_PAYLOADS`] payloads are accepted.
pub fn decode_payloads(
    first: PayloadType,
    buf: &[u8],
    allow_padding: bool,
) -> Result<Vec<Decoded>, DecodeError> {
    let trailing = if allow_padding {
        Trailing::Any
    } else {
        Trailing::Nothing
    };
    decode_chain(first, buf, trailing, false)
}

/// Like [`decode_payloads`], for a chain as received from a gateway: what may follow
/// the last payload is `trailing`, and an ATTRIBUTE payload may end with alignment
/// padding ([`Payload::decode_received_body`]). The spans still cover each payload
/// as its length says (padding inside a payload included), so hashes over received
/// bytes come out as the sender computed them.
pub fn decode_received_payloads(
    first: PayloadType,
    buf: &[u8],
    trailing: Trailing,
) -> Result<Vec<Decoded>, DecodeError> {
    decode_chain(first, buf, trailing, true)
}

fn decode_chain(
    first: PayloadType,
    buf: &[u8],
    trailing: Trailing,
    received: bool,
) -> Result<Vec<Decoded>, DecodeError> {
    let mut r = Reader::named(buf, "payload chain");
    let mut out = Vec::new();
    let mut next = first;
    while next != PayloadType::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(DecodeError::Invalid {
                what: "too many payloads",
            });
        }
        if matches!(next, PayloadType::PROPOSAL | PayloadType::TRANSFORM) {
            return Err(DecodeError::Invalid {
                what: "proposal or transform outside SA",
            });
        }
        let start = r.position();
        let (n, body) = read_generic(&mut r, payload_what(next))?;
        let payload = Payload::decode_body_with(next, body.peek_rest(), received)?;
        out.push(Decoded {
            payload,
            span: start..r.position(),
        });
        next = n;
    }
    match trailing {
        Trailing::Nothing => r.expect_empty("last payload")?,
        Trailing::Alignment => skip_alignment_padding(&mut r, "last payload")?,
        Trailing::Any => {}
    }
    Ok(out)
}

/// Encodes a chain; returns the first payload's type (NONE if empty) and the bytes.
pub fn encode_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::new();
    let first = payloads.first().map_or(PayloadType::NONE, Payload::kind);
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(PayloadType::NONE, Payload::kind);
        p.encode_with_next(next, &mut out);
    }
    (first, out)
}
