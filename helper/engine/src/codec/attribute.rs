//! Data attributes (RFC 2408 §3.3), used in transforms and in the Mode Config
//! ATTRIBUTE payload.

use super::{DecodeError, Reader};

/// The attribute format bit: set for TV (2-byte value), clear for TLV.
pub const AF_BIT: u16 = 0x8000;

/// Most attributes accepted in one transform or one ATTRIBUTE payload.
pub const MAX_ATTRIBUTES: usize = 256;

/// An attribute value in the form it was (or will be) sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// TV form (AF bit set): a 2-byte value.
    Basic(u16),
    /// TLV form (AF bit clear): a 2-byte length and that many bytes.
    Variable(Vec<u8>),
}

/// One data attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute type without the AF bit (15 bits).
    pub kind: u16,
    pub value: AttrValue,
}

impl Attribute {
    pub fn basic(kind: u16, v: u16) -> Self {
        Attribute {
            kind: kind & !AF_BIT,
            value: AttrValue::Basic(v),
        }
    }

    pub fn variable(kind: u16, v: Vec<u8>) -> Self {
        Attribute {
            kind: kind & !AF_BIT,
            value: AttrValue::Variable(v),
        }
    }

    /// Integer value of either form (a TLV value up to 8 significant bytes,
    /// big-endian; leading zero bytes are ignored). `None` for an empty or
    /// too long TLV value.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            AttrValue::Basic(v) => Some(u64::from(*v)),
            AttrValue::Variable(bytes) => {
                if bytes.is_empty() {
                    return None;
                }
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                let significant = bytes.get(start..).unwrap_or(&[]);
                if significant.len() > 8 {
                    return None;
                }
                Some(
                    significant
                        .iter()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
                )
            }
        }
    }

    /// The value bytes of a TLV attribute (or the two bytes of a TV one).
    pub fn bytes(&self) -> Vec<u8> {
        match &self.value {
            AttrValue::Basic(v) => v.to_be_bytes().to_vec(),
            AttrValue::Variable(b) => b.clone(),
        }
    }

    /// Reads one attribute.
    pub fn read(r: &mut Reader<'_>) -> Result<Attribute, DecodeError> {
        let t = r.u16()?;
        let kind = t & !AF_BIT;
        if t & AF_BIT != 0 {
            Ok(Attribute {
                kind,
                value: AttrValue::Basic(r.u16()?),
            })
        } else {
            let len = usize::from(r.u16()?);
            let v = r.take(len)?;
            Ok(Attribute {
                kind,
                value: AttrValue::Variable(v.to_vec()),
            })
        }
    }

    /// Reads attributes until the reader is empty (at most [`MAX_ATTRIBUTES`]).
    pub fn read_all(r: &mut Reader<'_>) -> Result<Vec<Attribute>, DecodeError> {
        let mut out = Vec::new();
        while !r.is_empty() {
            if out.len() >= MAX_ATTRIBUTES {
                return Err(DecodeError::Invalid {
                    what: "too many attributes",
                });
            }
            out.push(Attribute::read(r)?);
        }
        Ok(out)
    }

    /// Writes the attribute. A TLV value longer than 65535 bytes is a caller
    /// bug; it is cut to 65535 bytes so the output stays well-formed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.kind & !AF_BIT;
        match &self.value {
            AttrValue::Basic(v) => {
                out.extend_from_slice(&(kind | AF_BIT).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttrValue::Variable(v) => {
                debug_assert!(v.len() <= usize::from(u16::MAX), "attribute value too long");
                let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(v.get(..usize::from(len)).unwrap_or(v));
            }
        }
    }

    /// Writes a list of attributes.
    pub fn encode_all(attrs: &[Attribute], out: &mut Vec<u8>) {
        for a in attrs {
            a.encode(out);
        }
    }
}
