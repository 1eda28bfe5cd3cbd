//! NAT traversal negotiation (RFC 3947 and the draft-ietf-ipsec-nat-t-ike-02/03
//! versions still spoken by older gateways): vendor IDs, NAT-D hashes, the
//! decision to float to UDP 4500, and the UDP-encapsulated ESP mode numbers.
//!
//! The engine only decides; the driver sends datagrams marked
//! [`Transmit::nat_t`](super::Transmit::nat_t) from its port 4500 socket with the
//! 4-byte non-ESP marker (RFC 3948 §2.2) in front.

use std::net::{IpAddr, SocketAddr};

use crate::algs::HashAlg;
use crate::codec::ipsec_attr;
use crate::crypto;

/// The port IKE floats to once NAT traversal is in use.
pub const NAT_T_PORT: u16 = 4500;

/// What the profile asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatTraversal {
    /// Offer NAT-T; float to 4500 only when a NAT is detected.
    #[default]
    Auto,
    /// Offer NAT-T and make the peer believe we are behind a NAT, so ESP is
    /// always UDP-encapsulated (for networks that drop raw ESP).
    Force,
    /// Do not offer NAT-T at all.
    Off,
}

/// Which NAT-T dialect the peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NattVersion {
    Rfc3947,
    /// draft-ietf-ipsec-nat-t-ike-02/03: NAT-D payload 130, modes 61443/61444.
    Draft,
}

impl NattVersion {
    pub(crate) fn draft(self) -> bool {
        self == NattVersion::Draft
    }
    /// The ENCAPSULATION_MODE value for UDP-encapsulated tunnel or transport mode.
    pub(crate) fn udp_mode(self, tunnel: bool) -> u16 {
        match (self, tunnel) {
            (NattVersion::Rfc3947, true) => ipsec_attr::UDP_TUNNEL_RFC,
            (NattVersion::Rfc3947, false) => ipsec_attr::UDP_TRANSPORT_RFC,
            (NattVersion::Draft, true) => ipsec_attr::UDP_TUNNEL_DRAFT,
            (NattVersion::Draft, false) => ipsec_attr::UDP_TRANSPORT_DRAFT,
        }
    }
}

/// The vendor ID strings (their MD5 is the payload).
const VID_RFC3947: &[u8] = b"RFC 3947";
const VID_DRAFTS: [&[u8]; 3] = [
    b"draft-ietf-ipsec-nat-t-ike-03",
    b"draft-ietf-ipsec-nat-t-ike-02\n",
    b"draft-ietf-ipsec-nat-t-ike-02",
];

fn md5(s: &[u8]) -> Vec<u8> {
    crypto::hash(HashAlg::Md5, &[s])
}

/// Vendor IDs we send in the first message.
pub(crate) fn our_vendor_ids() -> Vec<Vec<u8>> {
    let mut v = vec![md5(VID_RFC3947)];
    v.extend(VID_DRAFTS.iter().map(|s| md5(s)));
    v
}

/// The best NAT-T version among the peer's vendor IDs.
pub(crate) fn version_from_vendor_ids<'a>(
    vids: impl Iterator<Item = &'a [u8]>,
) -> Option<NattVersion> {
    let rfc = md5(VID_RFC3947);
    let drafts: Vec<Vec<u8>> = VID_DRAFTS.iter().map(|s| md5(s)).collect();
    let mut best = None;
    for v in vids {
        if v == rfc.as_slice() {
            return Some(NattVersion::Rfc3947);
        }
        if drafts.iter().any(|d| d.as_slice() == v) {
            best = Some(NattVersion::Draft);
        }
    }
    best
}

/// The vendor ID that announces `v` (what a responder echoes).
pub(crate) fn vendor_id_for(v: NattVersion) -> Vec<u8> {
    match v {
        NattVersion::Rfc3947 => md5(VID_RFC3947),
        NattVersion::Draft => md5(VID_DRAFTS[1]),
    }
}

/// NAT-D = HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash.
pub(crate) fn nat_d(
    hash: HashAlg,
    icookie: &[u8; 8],
    rcookie: &[u8; 8],
    addr: SocketAddr,
) -> Vec<u8> {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    crypto::hash(hash, &[icookie, rcookie, &ip, &addr.port().to_be_bytes()])
}

/// Where the NATs are, from the peer's NAT-D payloads (the first names us as the
/// peer sees us, the others the peer's own addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatState {
    pub local_behind_nat: bool,
    pub remote_behind_nat: bool,
    /// We made the peer believe we are behind a NAT ([`NatTraversal::Force`]): UDP
    /// encapsulation whatever the two fields above found.
    pub forced: bool,
}

impl NatState {
    /// Whether IKE floats to 4500 and ESP goes in UDP.
    pub fn any(self) -> bool {
        self.local_behind_nat || self.remote_behind_nat || self.forced
    }
}

pub(crate) fn detect(
    received: &[Vec<u8>],
    expect_us: &[u8],
    expect_peer: &[u8],
) -> Option<NatState> {
    let (first, rest) = received.split_first()?;
    Some(NatState {
        local_behind_nat: first.as_slice() != expect_us,
        remote_behind_nat: !rest.iter().any(|h| h.as_slice() == expect_peer),
        forced: false,
    })
}
