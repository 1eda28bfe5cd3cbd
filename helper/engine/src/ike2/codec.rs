//! The IKEv2 wire format (RFC 7296 §3): header, generic payload header with the
//! critical bit, and the payloads the engine speaks. Decoding is strict: every
//! length is checked against its enclosing structure, reserved fields are read and
//! ignored, trailing bytes are refused, and nothing panics on any input. Unknown
//! payload types and numbers round-trip (they are kept as raw bodies / open numbers).
//!
//! The SK payload (§3.14) is decoded here only as its raw body (IV, ciphertext and
//! ICV); `super::sk` opens and seals it.

use crate::codec::{DecodeError, Reader};

/// IKE header length (§3.1).
pub const HEADER_LEN: usize = 28;
/// Generic payload header length (§3.2).
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// The largest message we decode or build (the UDP limit).
pub const MAX_MESSAGE: usize = 65_535;

/// Exchange types (§3.1).
pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (§3.1).
pub mod flags {
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// Payload types (§3.2).
pub mod ptype {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;
}

/// Notify message types (§3.10.1) the engine uses.
pub mod notify {
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// First status type; below are errors.
    pub const STATUS_FIRST: u16 = 16384;
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// The registered name of a notify type, for messages.
    pub fn name(t: u16) -> Option<&'static str> {
        Some(match t {
            UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD",
            INVALID_IKE_SPI => "INVALID_IKE_SPI",
            INVALID_MAJOR_VERSION => "INVALID_MAJOR_VERSION",
            INVALID_SYNTAX => "INVALID_SYNTAX",
            INVALID_MESSAGE_ID => "INVALID_MESSAGE_ID",
            INVALID_SPI => "INVALID_SPI",
            NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN",
            INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD",
            AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED",
            SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED",
            NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS",
            INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE",
            FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED",
            TS_UNACCEPTABLE => "TS_UNACCEPTABLE",
            INVALID_SELECTORS => "INVALID_SELECTORS",
            TEMPORARY_FAILURE => "TEMPORARY_FAILURE",
            CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND",
            _ => return None,
        })
    }
}

/// Transform types (§3.3.2).
pub mod transform {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
    /// The Key Length attribute (§3.3.5), always TV.
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

/// Security protocol identifiers (§3.3.1).
pub mod proto {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Configuration payload types and attributes (§3.15).
pub mod cfg {
    pub const CFG_REQUEST: u8 = 1;
    pub const CFG_REPLY: u8 = 2;
    pub const INTERNAL_IP4_ADDRESS: u16 = 1;
    pub const INTERNAL_IP4_NETMASK: u16 = 2;
    pub const INTERNAL_IP4_DNS: u16 = 3;
    pub const INTERNAL_IP6_ADDRESS: u16 = 8;
    pub const INTERNAL_IP6_DNS: u16 = 10;
    pub const INTERNAL_IP4_SUBNET: u16 = 13;
    pub const INTERNAL_IP6_SUBNET: u16 = 15;
}

/// The IKE header (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub spi_i: [u8; 8],
    pub spi_r: [u8; 8],
    pub next_payload: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }
    pub fn from_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    /// Reads the header; the version must be 2.x (a higher major version is refused,
    /// any minor version accepted as §2.5 asks).
    pub fn decode(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
        let spi_i = r.array()?;
        let spi_r = r.array()?;
        let next_payload = r.u8()?;
        let version = r.u8()?;
        if version >> 4 != 2 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let exchange = r.u8()?;
        let flags = r.u8()?;
        let message_id = r.u32()?;
        let length = r.u32()?;
        Ok(Header {
            spi_i,
            spi_r,
            next_payload,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i);
        out.extend_from_slice(&self.spi_r);
        out.push(self.next_payload);
        out.push(0x20);
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// A transform attribute (§3.3.5): TV (`tv`, 2-byte value) or TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: u16,
    pub tv: bool,
    pub value: Vec<u8>,
}

/// A transform (§3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub kind: u8,
    pub id: u16,
    pub attrs: Vec<Attr>,
}

impl Transform {
    pub fn new(kind: u8, id: u16) -> Self {
        Transform {
            kind,
            id,
            attrs: Vec::new(),
        }
    }
    pub fn with_key_len(kind: u8, id: u16, bits: Option<u16>) -> Self {
        let mut t = Transform::new(kind, id);
        if let Some(b) = bits {
            t.attrs.push(Attr {
                kind: transform::ATTR_KEY_LENGTH,
                tv: true,
                value: b.to_be_bytes().to_vec(),
            });
        }
        t
    }
    /// The Key Length attribute, if present and well formed.
    pub fn key_len(&self) -> Option<u16> {
        self.attrs
            .iter()
            .find(|a| a.kind == transform::ATTR_KEY_LENGTH && a.value.len() == 2)
            .map(|a| u16::from_be_bytes([a.value[0], a.value[1]]))
    }
}

/// A proposal (§3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub number: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// A traffic selector (§3.13.1): an address range and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub ts_type: u8,
    pub ip_proto: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start: std::net::IpAddr,
    pub end: std::net::IpAddr,
}

pub const TS_IPV4_ADDR_RANGE: u8 = 7;
pub const TS_IPV6_ADDR_RANGE: u8 = 8;

/// A configuration attribute (§3.15.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgAttr {
    pub kind: u16,
    pub value: Vec<u8>,
}

/// A decoded payload. `Raw` keeps unknown types (and the SK body, which `sk` opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    /// IDi (`initiator`) or IDr.
    Id {
        initiator: bool,
        kind: u8,
        data: Vec<u8>,
    },
    Cert {
        encoding: u8,
        data: Vec<u8>,
    },
    CertReq {
        encoding: u8,
        data: Vec<u8>,
    },
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    Nonce(Vec<u8>),
    Notify {
        protocol: u8,
        spi: Vec<u8>,
        kind: u16,
        data: Vec<u8>,
    },
    Delete {
        protocol: u8,
        spi_size: u8,
        spis: Vec<Vec<u8>>,
    },
    Vendor(Vec<u8>),
    /// TSi (`initiator`) or TSr.
    Ts {
        initiator: bool,
        selectors: Vec<Selector>,
    },
    Cp {
        cfg_type: u8,
        attrs: Vec<CfgAttr>,
    },
    Eap(Vec<u8>),
    /// A payload type we do not decode (or SK), kept whole.
    Raw {
        kind: u8,
        critical: bool,
        body: Vec<u8>,
    },
}

fn bad(what: &'static str) -> DecodeError {
    DecodeError::Invalid { what }
}

impl Payload {
    pub fn kind(&self) -> u8 {
        match self {
            Payload::Sa(_) => ptype::SA,
            Payload::Ke { .. } => ptype::KE,
            Payload::Id {
                initiator: true, ..
            } => ptype::IDI,
            Payload::Id { .. } => ptype::IDR,
            Payload::Cert { .. } => ptype::CERT,
            Payload::CertReq { .. } => ptype::CERTREQ,
            Payload::Auth { .. } => ptype::AUTH,
            Payload::Nonce(_) => ptype::NONCE,
            Payload::Notify { .. } => ptype::NOTIFY,
            Payload::Delete { .. } => ptype::DELETE,
            Payload::Vendor(_) => ptype::VENDOR,
            Payload::Ts {
                initiator: true, ..
            } => ptype::TSI,
            Payload::Ts { .. } => ptype::TSR,
            Payload::Cp { .. } => ptype::CP,
            Payload::Eap(_) => ptype::EAP,
            Payload::Raw { kind, .. } => *kind,
        }
    }

    fn critical(&self) -> bool {
        matches!(self, Payload::Raw { critical: true, .. })
    }

    /// Decodes the body of a payload of type `kind`. Unknown types become `Raw`.
    pub fn decode_body(kind: u8, critical: bool, body: &[u8]) -> Result<Payload, DecodeError> {
        let mut r = Reader::named(body, "IKEv2 payload");
        let p = match kind {
            ptype::SA => Payload::Sa(decode_sa(&mut r)?),
            ptype::KE => {
                let group = r.u16()?;
                r.u16()?;
                Payload::Ke {
                    group,
                    data: r.rest().to_vec(),
                }
            }
            ptype::IDI | ptype::IDR => {
                let k = r.u8()?;
                r.take(3)?;
                Payload::Id {
                    initiator: kind == ptype::IDI,
                    kind: k,
                    data: r.rest().to_vec(),
                }
            }
            ptype::CERT | ptype::CERTREQ => {
                let encoding = r.u8()?;
                let data = r.rest().to_vec();
                if kind == ptype::CERT {
                    Payload::Cert { encoding, data }
                } else {
                    Payload::CertReq { encoding, data }
                }
            }
            ptype::AUTH => {
                let method = r.u8()?;
                r.take(3)?;
                Payload::Auth {
                    method,
                    data: r.rest().to_vec(),
                }
            }
            ptype::NONCE => {
                let n = r.rest();
                // §3.9: 16 to 256 octets.
                if !(16..=256).contains(&n.len()) {
                    return Err(DecodeError::BadLength {
                        what: "nonce",
                        len: n.len(),
                    });
                }
                Payload::Nonce(n.to_vec())
            }
            ptype::NOTIFY => {
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let kind = r.u16()?;
                let spi = r.take(spi_size as usize)?.to_vec();
                Payload::Notify {
                    protocol,
                    spi,
                    kind,
                    data: r.rest().to_vec(),
                }
            }
            ptype::DELETE => {
                let protocol = r.u8()?;
                let spi_size = r.u8()?;
                let n = r.u16()?;
                let mut spis = Vec::new();
                for _ in 0..n {
                    spis.push(r.take(spi_size as usize)?.to_vec());
                }
                if n > 0 && spi_size == 0 {
                    return Err(bad("delete payload (SPIs of size 0)"));
                }
                r.expect_empty("delete payload")?;
                Payload::Delete {
                    protocol,
                    spi_size,
                    spis,
                }
            }
            ptype::VENDOR => Payload::Vendor(r.rest().to_vec()),
            ptype::TSI | ptype::TSR => {
                let n = r.u8()?;
                r.take(3)?;
                let mut selectors = Vec::new();
                for _ in 0..n {
                    selectors.push(decode_selector(&mut r)?);
                }
                r.expect_empty("traffic selector payload")?;
                Payload::Ts {
                    initiator: kind == ptype::TSI,
                    selectors,
                }
            }
            ptype::CP => {
                let cfg_type = r.u8()?;
                r.take(3)?;
                let mut attrs = Vec::new();
                while !r.is_empty() {
                    let k = r.u16()? & 0x7fff;
                    let len = r.u16()? as usize;
                    attrs.push(CfgAttr {
                        kind: k,
                        value: r.take(len)?.to_vec(),
                    });
                }
                Payload::Cp { cfg_type, attrs }
            }
            ptype::EAP => Payload::Eap(r.rest().to_vec()),
            _ => Payload::Raw {
                kind,
                critical,
                body: body.to_vec(),
            },
        };
        Ok(p)
    }

    /// The body (without the generic header).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Payload::Sa(props) => {
                for (i, p) in props.iter().enumerate() {
                    let last = i + 1 == props.len();
                    encode_proposal(p, last, &mut o);
                }
            }
            Payload::Ke { group, data } => {
                o.extend_from_slice(&group.to_be_bytes());
                o.extend_from_slice(&[0, 0]);
                o.extend_from_slice(data);
            }
            Payload::Id { kind, data, .. } => {
                o.extend_from_slice(&[*kind, 0, 0, 0]);
                o.extend_from_slice(data);
            }
            Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
                o.push(*encoding);
                o.extend_from_slice(data);
            }
            Payload::Auth { method, data } => {
                o.extend_from_slice(&[*method, 0, 0, 0]);
                o.extend_from_slice(data);
            }
            Payload::Nonce(n) => o.extend_from_slice(n),
            Payload::Notify {
                protocol,
                spi,
                kind,
                data,
            } => {
                o.push(*protocol);
                o.push(spi.len() as u8);
                o.extend_from_slice(&kind.to_be_bytes());
                o.extend_from_slice(spi);
                o.extend_from_slice(data);
            }
            Payload::Delete {
                protocol,
                spi_size,
                spis,
            } => {
                o.push(*protocol);
                o.push(*spi_size);
                o.extend_from_slice(&(spis.len() as u16).to_be_bytes());
                for s in spis {
                    o.extend_from_slice(s);
                }
            }
            Payload::Vendor(v) | Payload::Eap(v) => o.extend_from_slice(v),
            Payload::Ts { selectors, .. } => {
                o.extend_from_slice(&[selectors.len() as u8, 0, 0, 0]);
                for s in selectors {
                    encode_selector(s, &mut o);
                }
            }
            Payload::Cp { cfg_type, attrs } => {
                o.extend_from_slice(&[*cfg_type, 0, 0, 0]);
                for a in attrs {
                    o.extend_from_slice(&(a.kind & 0x7fff).to_be_bytes());
                    o.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
                    o.extend_from_slice(&a.value);
                }
            }
            Payload::Raw { body, .. } => o.extend_from_slice(body),
        }
        o
    }
}

fn decode_sa(r: &mut Reader<'_>) -> Result<Vec<Proposal>, DecodeError> {
    let mut out = Vec::new();
    loop {
        let last = r.u8()?;
        r.u8()?;
        let len = r.u16()? as usize;
        if len < 8 {
            return Err(DecodeError::BadLength {
                what: "proposal",
                len,
            });
        }
        let mut p = r.sub(len - 4)?.with_what("proposal");
        let number = p.u8()?;
        let protocol = p.u8()?;
        let spi_size = p.u8()?;
        let n = p.u8()?;
        let spi = p.take(spi_size as usize)?.to_vec();
        let mut transforms = Vec::new();
        for i in 0..n {
            let tlast = p.u8()?;
            p.u8()?;
            let tlen = p.u16()? as usize;
            if tlen < 8 {
                return Err(DecodeError::BadLength {
                    what: "transform",
                    len: tlen,
                });
            }
            let mut t = p.sub(tlen - 4)?.with_what("transform");
            let kind = t.u8()?;
            t.u8()?;
            let id = t.u16()?;
            let mut attrs = Vec::new();
            while !t.is_empty() {
                let k = t.u16()?;
                if k & 0x8000 != 0 {
                    attrs.push(Attr {
                        kind: k & 0x7fff,
                        tv: true,
                        value: t.take(2)?.to_vec(),
                    });
                } else {
                    let l = t.u16()? as usize;
                    attrs.push(Attr {
                        kind: k,
                        tv: false,
                        value: t.take(l)?.to_vec(),
                    });
                }
            }
            // Only the last transform says 0 (§3.3.2: 3 means more follow).
            let expect = if i + 1 == n { 0 } else { 3 };
            if tlast != expect {
                return Err(bad("transform substructure chain"));
            }
            transforms.push(Transform { kind, id, attrs });
        }
        p.expect_empty("proposal")?;
        out.push(Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
        match (last, r.is_empty()) {
            (0, true) => return Ok(out),
            (2, false) => {}
            _ => return Err(bad("proposal substructure chain")),
        }
    }
}

fn encode_proposal(p: &Proposal, last: bool, o: &mut Vec<u8>) {
    let start = o.len();
    o.extend_from_slice(&[if last { 0 } else { 2 }, 0, 0, 0]);
    o.extend_from_slice(&[
        p.number,
        p.protocol,
        p.spi.len() as u8,
        p.transforms.len() as u8,
    ]);
    o.extend_from_slice(&p.spi);
    for (i, t) in p.transforms.iter().enumerate() {
        let ts = o.len();
        let tlast = if i + 1 == p.transforms.len() { 0 } else { 3 };
        o.extend_from_slice(&[tlast, 0, 0, 0, t.kind, 0]);
        o.extend_from_slice(&t.id.to_be_bytes());
        for a in &t.attrs {
            if a.tv {
                o.extend_from_slice(&(a.kind | 0x8000).to_be_bytes());
                o.extend_from_slice(&a.value);
            } else {
                o.extend_from_slice(&(a.kind & 0x7fff).to_be_bytes());
                o.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
                o.extend_from_slice(&a.value);
            }
        }
        let tl = (o.len() - ts) as u16;
        o[ts + 2..ts + 4].copy_from_slice(&tl.to_be_bytes());
    }
    let l = (o.len() - start) as u16;
    o[start + 2..start + 4].copy_from_slice(&l.to_be_bytes());
}

fn decode_selector(r: &mut Reader<'_>) -> Result<Selector, DecodeError> {
    let ts_type = r.u8()?;
    let ip_proto = r.u8()?;
    let len = r.u16()? as usize;
    let alen = match ts_type {
        TS_IPV4_ADDR_RANGE => 4,
        TS_IPV6_ADDR_RANGE => 16,
        _ => return Err(bad("traffic selector type")),
    };
    if len != 8 + 2 * alen {
        return Err(DecodeError::BadLength {
            what: "traffic selector",
            len,
        });
    }
    let start_port = r.u16()?;
    let end_port = r.u16()?;
    let a = r.take(alen)?;
    let b = r.take(alen)?;
    let (start, end) = if alen == 4 {
        let a: [u8; 4] = a.try_into().map_err(|_| bad("address"))?;
        let b: [u8; 4] = b.try_into().map_err(|_| bad("address"))?;
        (std::net::IpAddr::from(a), std::net::IpAddr::from(b))
    } else {
        let a: [u8; 16] = a.try_into().map_err(|_| bad("address"))?;
        let b: [u8; 16] = b.try_into().map_err(|_| bad("address"))?;
        (std::net::IpAddr::from(a), std::net::IpAddr::from(b))
    };
    Ok(Selector {
        ts_type,
        ip_proto,
        start_port,
        end_port,
        start,
        end,
    })
}

fn encode_selector(s: &Selector, o: &mut Vec<u8>) {
    let (a, b): (Vec<u8>, Vec<u8>) = match (s.start, s.end) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
            (a.octets().to_vec(), b.octets().to_vec())
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
            (a.octets().to_vec(), b.octets().to_vec())
        }
        // Mixed families cannot be built by the engine; encode the start twice.
        (a, _) => {
            let v = match a {
                std::net::IpAddr::V4(a) => a.octets().to_vec(),
                std::net::IpAddr::V6(a) => a.octets().to_vec(),
            };
            (v.clone(), v)
        }
    };
    let ts_type = if a.len() == 4 {
        TS_IPV4_ADDR_RANGE
    } else {
        TS_IPV6_ADDR_RANGE
    };
    o.push(ts_type);
    o.push(s.ip_proto);
    o.extend_from_slice(&((8 + 2 * a.len()) as u16).to_be_bytes());
    o.extend_from_slice(&s.start_port.to_be_bytes());
    o.extend_from_slice(&s.end_port.to_be_bytes());
    o.extend_from_slice(&a);
    o.extend_from_slice(&b);
}

/// A payload as found in a chain, with its header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub payload: Payload,
    pub critical: bool,
}

/// A decoded chain: the payloads, and for a chain ending in SK the type of the first
/// payload inside it (the SK payload itself is the last entry, as `Raw`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    pub payloads: Vec<Decoded>,
    pub sk_first: Option<u8>,
}

/// Decodes a payload chain starting with type `first`. An SK payload must be the last
/// one: its Next Payload names the first payload inside it.
pub fn decode_chain(first: u8, bytes: &[u8]) -> Result<Chain, DecodeError> {
    let mut r = Reader::named(bytes, "IKEv2 payload chain");
    let mut next = first;
    let mut chain = Chain::default();
    while next != ptype::NONE {
        if chain.payloads.len() >= 64 {
            return Err(bad("payload chain (more than 64 payloads)"));
        }
        let kind = next;
        next = r.u8()?;
        let c = r.u8()?;
        let len = r.u16()? as usize;
        if len < PAYLOAD_HEADER_LEN {
            return Err(DecodeError::BadLength {
                what: "payload header",
                len,
            });
        }
        let body = r.take(len - PAYLOAD_HEADER_LEN)?;
        let critical = c & 0x80 != 0;
        let payload = if kind == ptype::SK {
            Payload::Raw {
                kind,
                critical,
                body: body.to_vec(),
            }
        } else {
            Payload::decode_body(kind, critical, body)?
        };
        chain.payloads.push(Decoded { payload, critical });
        if kind == ptype::SK {
            chain.sk_first = Some(next);
            r.expect_empty("IKEv2 message after the SK payload")?;
            return Ok(chain);
        }
    }
    r.expect_empty("IKEv2 payload chain")?;
    Ok(chain)
}

/// Encodes a chain; returns the first payload type and the bytes. `sk_first`, when
/// given, is written as the Next Payload of a final SK (`Raw` of type SK) payload.
pub fn encode_chain(payloads: &[Payload], sk_first: Option<u8>) -> (u8, Vec<u8>) {
    let mut o = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(n) => n.kind(),
            None if p.kind() == ptype::SK => sk_first.unwrap_or(ptype::NONE),
            None => ptype::NONE,
        };
        let body = p.encode_body();
        o.push(next);
        o.push(if p.critical() { 0x80 } else { 0 });
        o.extend_from_slice(&((body.len() + PAYLOAD_HEADER_LEN) as u16).to_be_bytes());
        o.extend_from_slice(&body);
    }
    (payloads.first().map_or(ptype::NONE, Payload::kind), o)
}

/// A whole (outer) message: header and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub chain: Chain,
}

impl Message {
    /// Decodes a datagram; the header length must equal the datagram length.
    pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
        if data.len() > MAX_MESSAGE {
            return Err(DecodeError::BadLength {
                what: "IKEv2 message",
                len: data.len(),
            });
        }
        let mut r = Reader::named(data, "IKEv2 header");
        let header = Header::decode(&mut r)?;
        if header.length as usize != data.len() {
            return Err(DecodeError::BadLength {
                what: "IKEv2 message (header length)",
                len: header.length as usize,
            });
        }
        let chain = decode_chain(header.next_payload, r.rest())?;
        Ok(Message { header, chain })
    }

    /// Encodes a plaintext message (no SK), fixing next payload and length.
    pub fn encode(header: Header, payloads: &[Payload]) -> Vec<u8> {
        let (first, body) = encode_chain(payloads, None);
        let mut h = header;
        h.next_payload = first;
        h.length = (HEADER_LEN + body.len()) as u32;
        let mut o = Vec::with_capacity(h.length as usize);
        h.encode(&mut o);
        o.extend_from_slice(&body);
        o
    }

    /// The payloads (without the header fields), for lookups.
    pub fn payloads(&self) -> impl Iterator<Item = &Payload> {
        self.chain.payloads.iter().map(|d| &d.payload)
    }
}

/// The first unknown payload marked critical, if any (§2.5: refuse the message with
/// UNSUPPORTED_CRITICAL_PAYLOAD).
pub fn unsupported_critical(chain: &Chain) -> Option<u8> {
    chain.payloads.iter().find_map(|d| match d.payload {
        Payload::Raw { kind, critical, .. } if critical && kind != ptype::SK => Some(kind),
        _ => None,
    })
}
