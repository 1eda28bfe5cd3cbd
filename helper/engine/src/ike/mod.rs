//! The IKEv1 state machine, both roles, without I/O.
//!
//! An [`Ike`] is one phase 1 (ISAKMP) SA with the phase 2 (ESP) SAs negotiated
//! under it. It is driven like quinn-proto's `Connection`:
//!
//! * inputs: [`Ike::handle_datagram`], [`Ike::handle_timeout`], [`Ike::close`];
//! * outputs, to be polled after every input, in this order:
//!   [`Ike::poll_transmit`] until `None` (datagrams to send to the peer),
//!   [`Ike::poll_event`] until `None` (state changes, SAs to install or remove, errors),
//!   then [`Ike::poll_timeout`] (the next deadline at which `handle_timeout` must be called).
//!
//! Time comes in as `Instant` values and randomness from the RNG given at
//! construction, so tests run two engines against each other on a simulated clock.
//!
//! States are named for what they expect next (`ExpectSaReply`, `ExpectKeReply`,
//! `ExpectIdHash`...). Peer faults and local failures are kept apart in [`Error`],
//! and every error maps to a message a person can read.
//!
//! Inside, [`Ike`] (`dispatch.rs`) owns one ISAKMP SA context (`sa_ctx::IsakmpSa`:
//! cookies, keys, IV chain, seal/open, message ids, outbox) and the sub-machines
//! that keep their own state and are handed the context `&mut`: `phase1::Phase1`
//! (main and aggressive mode, both roles), `transaction::Transaction` (XAuth, Mode
//! Config), `quick::QuickModes`, `rekey::Children` (SA pairs and their timers),
//! `dpd::Dpd` and `renew::Renewal`. The machines reach each other only through the
//! dispatcher, which routes each datagram and acts on what each step returns.

mod dispatch;
mod dpd;
mod exchange;
mod fragment;
#[cfg(any(test, feature = "fuzzing"))]
pub mod harness;
mod junk;
mod natt;
mod phase1;
mod quick;
mod rekey;
mod renew;
mod sa;
mod sa_ctx;
mod transaction;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use crate::algs::{EspProposal, IkeProposal};
use crate::codec::{IdType, NotifyType};
use crate::crypto::Rng;

pub use dpd::DpdConfig;
pub use exchange::RetransmitConfig;
pub use junk::{DropReport, REPORT_INTERVAL as DROP_REPORT_INTERVAL};
pub use natt::{NAT_T_PORT, NatState, NatTraversal, NattVersion};
pub use transaction::{
    Credentials, CredentialsRequest, ModeConfigInfo, ModeConfigMode, XAuthConfig, XAuthField,
    XAuthServer,
};

/// Which phase 1 exchange to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeMode {
    Main,
    Aggressive,
}

impl ExchangeMode {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeMode::Main => "main",
            ExchangeMode::Aggressive => "aggressive",
        }
    }
}

/// How we prove who we are in phase 1. The key schedule (SKEYID) and the
/// HASH/SIG payloads go through [`Auth`].
#[derive(Clone)]
pub enum Auth {
    /// Pre-shared key (RFC 2409 §5.4).
    Psk(Zeroizing<Vec<u8>>),
    /// Signatures with X.509 certificates (RFC 2409 §5.1), both sides: RSA
    /// (RSA_SIG, or XAUTH_INIT_RSA with XAuth) or ECDSA (ECDSA_256/384, RFC 4754),
    /// as our key is.
    Signature(Arc<Certs>),
    /// Hybrid (draft-ietf-ipsra-hybrid-auth, HybridInitRSA 64221): the responder
    /// signs with its certificate; the initiator sends HASH_I (keyed by the
    /// signature SKEYID, no PSK) and proves itself by XAuth afterwards. The
    /// initiator needs no key; the responder does.
    Hybrid(Arc<Certs>),
}

/// Certificates and key for [`Auth::Signature`] and [`Auth::Hybrid`].
pub struct Certs {
    /// Our private key (`None` for a hybrid client).
    pub key: Option<crate::cert::PrivateKey>,
    /// Our certificate first, then intermediates to send with it.
    pub chain: Vec<crate::cert::Certificate>,
    /// The CAs the peer's certificate must chain to (named in our CERTREQs).
    pub trusted: Vec<crate::cert::Certificate>,
    /// CRLs consulted for the peer's chain.
    pub crls: Vec<crate::cert::Crl>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs")
            .field("key", &self.key)
            .field("chain", &self.chain)
            .field("trusted", &self.trusted)
            .field("crls", &self.crls.len())
            .finish()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Psk(_) => f.write_str("Psk(<redacted>)"),
            Auth::Signature(c) => write!(f, "Signature({c:?})"),
            Auth::Hybrid(c) => write!(f, "Hybrid({c:?})"),
        }
    }
}

impl Auth {
    /// The AUTHENTICATION_METHOD attribute, XAuth variants when XAuth follows.
    pub(crate) fn method_attr(&self, xauth: bool) -> u16 {
        use crate::cert::SigKind;
        use crate::codec::attr;
        match (self, xauth) {
            (Auth::Psk(_), false) => attr::PSK,
            (Auth::Psk(_), true) => attr::XAUTH_INIT_PSK,
            (Auth::Signature(c), x) => match c.key.as_ref().map(|k| k.kind()) {
                Some(SigKind::EcdsaP256) => attr::ECDSA_256,
                Some(SigKind::EcdsaP384) => attr::ECDSA_384,
                Some(SigKind::EcdsaP521) => attr::ECDSA_521,
                _ if x => attr::XAUTH_INIT_RSA,
                _ => attr::RSA_SIG,
            },
            (Auth::Hybrid(_), _) => attr::HYBRID_INIT_RSA,
        }
    }

    pub(crate) fn certs(&self) -> Option<&Arc<Certs>> {
        match self {
            Auth::Psk(_) => None,
            Auth::Signature(c) | Auth::Hybrid(c) => Some(c),
        }
    }

    /// Whether the side in role `who` signs (else it sends a HASH).
    pub(crate) fn signs(&self, who: Role) -> bool {
        match self {
            Auth::Psk(_) => false,
            Auth::Signature(_) => true,
            Auth::Hybrid(_) => who == Role::Responder,
        }
    }
}

/// An IKE identity (RFC 2407 §4.6.2): the type and the bytes that go in the ID payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdType,
    pub data: Vec<u8>,
}

impl Identity {
    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Identity {
                kind: IdType::IPV4_ADDR,
                data: a.octets().to_vec(),
            },
            IpAddr::V6(a) => Identity {
                kind: IdType::IPV6_ADDR,
                data: a.octets().to_vec(),
            },
        }
    }
    pub fn fqdn(name: &str) -> Self {
        Identity {
            kind: IdType::FQDN,
            data: name.as_bytes().to_vec(),
        }
    }
    pub fn user_fqdn(name: &str) -> Self {
        Identity {
            kind: IdType::USER_FQDN,
            data: name.as_bytes().to_vec(),
        }
    }
    pub fn key_id(id: &[u8]) -> Self {
        Identity {
            kind: IdType::KEY_ID,
            data: id.to_vec(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            IdType::IPV4_ADDR if self.data.len() == 4 => {
                let b: [u8; 4] = [self.data[0], self.data[1], self.data[2], self.data[3]];
                write!(f, "address:{}", std::net::Ipv4Addr::from(b))
            }
            IdType::IPV6_ADDR if self.data.len() == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&self.data);
                write!(f, "address:{}", std::net::Ipv6Addr::from(b))
            }
            IdType::FQDN => write!(
                f,
                "fqdn:{}",
                String::from_utf8_lossy(&self.data).escape_debug()
            ),
            IdType::USER_FQDN => {
                write!(
                    f,
                    "user-fqdn:{}",
                    String::from_utf8_lossy(&self.data).escape_debug()
                )
            }
            IdType::DER_ASN1_DN => match crate::cert::dn_text(&self.data) {
                Some(t) => write!(f, "dn:{t}"),
                None => write!(f, "dn:<{} bytes that do not parse>", self.data.len()),
            },
            IdType::KEY_ID => {
                f.write_str("keyid:0x")?;
                for b in &self.data {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            other => write!(f, "id-type-{}:{} bytes", other.0, self.data.len()),
        }
    }
}

/// A traffic selector: an address range given as address/prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl TrafficSelector {
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        TrafficSelector { addr, prefix }
    }
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }
    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &TrafficSelector) -> bool {
        if other.prefix < self.prefix {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix as u32)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix as u32)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// ESP encapsulation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulation {
    Tunnel,
    Transport,
}

/// One phase 2 SA pair to negotiate: our side and the peer's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildConfig {
    /// Our traffic selector; `None` in transport mode (no client IDs sent).
    pub local: Option<TrafficSelector>,
    pub remote: Option<TrafficSelector>,
}

/// Everything one tunnel needs to negotiate.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: ExchangeMode,
    pub auth: Auth,
    /// Our identity; `None` means our IP address.
    pub local_id: Option<Identity>,
    /// The identity the peer must present; `None` accepts any.
    pub remote_id: Option<Identity>,
    pub ike_proposals: Vec<IkeProposal>,
    pub ike_lifetime: Duration,
    pub esp_proposals: Vec<EspProposal>,
    pub esp_lifetime: Duration,
    pub esp_lifetime_kb: Option<u64>,
    pub encapsulation: Encapsulation,
    /// Phase 2 SAs to set up once phase 1 is established (initiator), or the
    /// selectors we accept (responder: `local` is ours, `remote` the peer's).
    pub children: Vec<ChildConfig>,
    pub retransmit: RetransmitConfig,
    /// Send INITIAL-CONTACT in phase 1 (the peer then drops stale SAs of ours).
    pub initial_contact: bool,
    pub nat_traversal: NatTraversal,
    /// XAuth login to give when the gateway asks (client).
    pub xauth: Option<XAuthConfig>,
    /// Mode Config: pull or wait for push; the result replaces `children`.
    pub mode_config: ModeConfigMode,
    /// With Mode Config: the networks to reach; empty means what the gateway
    /// pushes as split-include, else everything (0.0.0.0/0).
    pub remote_networks: Vec<TrafficSelector>,
    /// Dead peer detection (RFC 3706).
    pub dpd: Option<DpdConfig>,
    /// Send messages larger than `fragment_size` as IKE fragments when the peer
    /// announces fragmentation (received fragments are always put together).
    pub fragmentation: bool,
    /// Largest datagram sent before fragmenting (bytes).
    pub fragment_size: usize,
    /// Mode Config: the address to ask for (a phase 1 renewal asks for the one it has).
    pub requested_address: Option<std::net::Ipv4Addr>,
    /// Mode Config: ask for an IPv6 address too (INTERNAL_IP6_ADDRESS), for a profile
    /// that names IPv6 networks.
    pub request_ipv6: bool,
    /// Responder only: ask the initiator for this XAuth login.
    pub xauth_server: Option<XAuthServer>,
    /// IKEv2 initiator: prove ourselves with our certificate inside EAP-TLS (RFC 5216)
    /// instead of an AUTH signature; `auth` is `Signature` with our key.
    pub eap_tls: bool,
    /// Responder only: what to hand out by Mode Config.
    pub mode_config_server: Option<ModeConfigInfo>,
    /// A moment of the engine's clock and the wall time then, given by the driver
    /// (the engine reads no clock): certificates are checked at the wall time of `now`.
    pub wall_clock: Option<(Instant, SystemTime)>,
}

impl Config {
    /// A config with the usual defaults and the given PSK.
    pub fn psk(psk: &[u8]) -> Self {
        Config {
            mode: ExchangeMode::Main,
            auth: Auth::Psk(Zeroizing::new(psk.to_vec())),
            local_id: None,
            remote_id: None,
            ike_proposals: Vec::new(),
            ike_lifetime: Duration::from_secs(8 * 3600),
            esp_proposals: Vec::new(),
            esp_lifetime: Duration::from_secs(3600),
            esp_lifetime_kb: None,
            encapsulation: Encapsulation::Tunnel,
            children: Vec::new(),
            retransmit: RetransmitConfig::default(),
            initial_contact: true,
            nat_traversal: NatTraversal::Auto,
            xauth: None,
            mode_config: ModeConfigMode::Off,
            remote_networks: Vec::new(),
            dpd: Some(DpdConfig::default()),
            requested_address: None,
            request_ipv6: false,
            fragmentation: true,
            fragment_size: 1280,
            xauth_server: None,
            eap_tls: false,
            mode_config_server: None,
            wall_clock: None,
        }
    }
}

/// Our role in the phase 1 exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// Negotiated phase 1 parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase1Info {
    pub mode: ExchangeMode,
    pub proposal: IkeProposal,
    pub lifetime: Duration,
    pub local_id: Identity,
    pub peer_id: Identity,
    pub initiator_cookie: [u8; 8],
    pub responder_cookie: [u8; 8],
    /// The NAT-T dialect agreed on, if any, and where the NATs are.
    pub nat_t: Option<NattVersion>,
    pub nat: NatState,
}

/// Keys of one direction of an ESP SA. Never printed.
#[derive(Clone)]
pub struct EspKeys {
    pub encryption: Zeroizing<Vec<u8>>,
    pub integrity: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for EspKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EspKeys {{ encryption: <{} bytes>, integrity: <{} bytes> }}",
            self.encryption.len(),
            self.integrity.len()
        )
    }
}

/// An established ESP SA pair, ready to install.
#[derive(Debug, Clone)]
pub struct ChildSa {
    pub proposal: EspProposal,
    pub encapsulation: Encapsulation,
    /// ESP in UDP (RFC 3948) on port 4500 because NAT traversal is in use.
    pub udp_encapsulation: bool,
    /// SPI of the SA the peer sends to us.
    pub spi_in: u32,
    /// SPI of the SA we send to the peer.
    pub spi_out: u32,
    pub keys_in: EspKeys,
    pub keys_out: EspKeys,
    pub local_ts: Option<TrafficSelector>,
    pub remote_ts: Option<TrafficSelector>,
    /// Further (local, remote) selector pairs the same SA carries (IKEv2: the IPv6
    /// pair beside the IPv4 one in one child); empty for IKEv1.
    pub more_ts: Vec<(TrafficSelector, TrafficSelector)>,
    pub lifetime: Duration,
    pub lifetime_kb: Option<u64>,
}

impl ChildSa {
    /// Every (local, remote) selector pair of the SA: the first, then [`Self::more_ts`].
    pub fn ts_pairs(&self) -> Vec<(Option<TrafficSelector>, TrafficSelector)> {
        self.remote_ts
            .map(|r| (self.local_ts, r))
            .into_iter()
            .chain(self.more_ts.iter().map(|(l, r)| (Some(*l), *r)))
            .collect()
    }
}

/// What happened; polled with [`Ike::poll_event`].
#[derive(Debug, Clone)]
pub enum Event {
    Phase1Established(Phase1Info),
    Phase2Established(ChildSa),
    /// An ESP SA pair is gone (we closed it or the peer deleted it).
    Phase2Deleted {
        spi_in: u32,
        spi_out: u32,
        by_peer: bool,
    },
    /// A quick mode failed; the phase 1 SA stays up.
    Phase2Failed(Error),
    /// The peer deleted the phase 1 SA.
    Phase1Deleted,
    /// Phase 1 was renewed (new ISAKMP SA, ESP SAs untouched).
    Phase1Renewed(Phase1Info),
    /// A phase 1 renewal failed; it is tried again while the old one lives.
    Phase1RenewalFailed(Error),
    /// The gateway asks for XAuth credentials: answer with `Ike::submit_credentials`.
    CredentialsRequired(CredentialsRequest),
    /// The gateway accepted our XAuth login.
    XAuthSucceeded,
    /// What the gateway handed out by Mode Config (quick mode follows).
    ModeConfig(ModeConfigInfo),
    /// A message from the peer that belonged to an exchange in progress was refused
    /// (it could not be read, its HASH did not verify, it was not what the exchange
    /// expects): one line saying why. The exchange goes on (retransmissions) until it
    /// completes or gives up, and then its error names the reason too. Reported once
    /// per distinct reason, and at most [`MAX_REFUSALS_REPORTED`] times per IKE SA.
    MessageRefused(String),
    /// Datagrams from the peer's address were dropped on the established SA
    /// (malformed, unauthenticated, for no SA of ours...): at most one of these per
    /// [`DROP_REPORT_INTERVAL`]; its `Display` is the log line.
    Dropped(DropReport),
    /// Negotiation failed for good, or the peer died; the engine is dead.
    Failed(Error),
    /// `close()` finished: DELETEs are queued, nothing more will happen.
    Closed,
    /// A line worth showing the user (e.g. phase 2 proposals left out of an offer);
    /// nothing to act on.
    Note(String),
    /// IKEv2 MOBIKE: the IKE SA and its child SAs (same SPIs, keys and counters) now
    /// run between these outer addresses, with this NAT state and encapsulation.
    AddressesChanged(crate::ike2::mobike::AddressChange),
}

/// Why a negotiation failed. Each variant reads as one clear sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("authentication failed ({0})")]
    AuthenticationFailed(String),
    #[error("no proposal chosen: {0}")]
    NoProposalChosen(String),
    #[error("gateway not responding after {0} retransmissions")]
    NotResponding(u32),
    #[error("invalid ID information: {0}")]
    InvalidId(String),
    #[error("the peer reported {name}{detail}")]
    PeerNotify {
        kind: NotifyType,
        name: String,
        detail: String,
    },
    #[error("malformed message from the peer: {0}")]
    Malformed(String),
    #[error("the peer deleted the IKE SA")]
    DeletedByPeer,
    #[error("phase 1 expired and could not be renewed")]
    Phase1Expired,
    #[error("certificate refused: {0}")]
    Certificate(crate::cert::CertError),
    #[error("XAuth failed: {0}")]
    XAuthFailed(String),
    #[error("dead peer: no answer to {0} dead peer detection probes")]
    DeadPeer(u32),
    #[error("{0}")]
    Local(String),
}

impl Error {
    /// The notify to send the peer for this error, when we are the one refusing.
    pub fn notify(&self) -> Option<NotifyType> {
        match self {
            Error::AuthenticationFailed(_) | Error::XAuthFailed(_) => {
                Some(NotifyType::AUTHENTICATION_FAILED)
            }
            Error::Certificate(crate::cert::CertError::IdMismatch { .. }) => {
                Some(NotifyType::INVALID_ID_INFORMATION)
            }
            Error::Certificate(crate::cert::CertError::BadIkeSignature(_)) => {
                Some(NotifyType::INVALID_SIGNATURE)
            }
            Error::Certificate(_) => Some(NotifyType::INVALID_CERTIFICATE),
            Error::NoProposalChosen(_) => Some(NotifyType::NO_PROPOSAL_CHOSEN),
            Error::InvalidId(_) => Some(NotifyType::INVALID_ID_INFORMATION),
            Error::Malformed(_) => Some(NotifyType::PAYLOAD_MALFORMED),
            _ => None,
        }
    }

    /// The error a peer's notify stands for.
    pub(crate) fn from_notify(kind: NotifyType, data: &[u8]) -> Error {
        let text: String = String::from_utf8_lossy(data)
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        let detail = if text.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", text.trim())
        };
        match kind {
            NotifyType::NO_PROPOSAL_CHOSEN => Error::NoProposalChosen(format!(
                "the gateway accepted none of our proposals{detail}"
            )),
            NotifyType::AUTHENTICATION_FAILED | NotifyType::INVALID_HASH_INFORMATION => {
                Error::AuthenticationFailed(format!(
                    "the gateway refused our authentication{detail}"
                ))
            }
            NotifyType::INVALID_CERTIFICATE
            | NotifyType::INVALID_SIGNATURE
            | NotifyType::CERT_TYPE_UNSUPPORTED
            | NotifyType::INVALID_CERT_AUTHORITY
            | NotifyType::CERTIFICATE_UNAVAILABLE => Error::AuthenticationFailed(format!(
                "the gateway refused our certificate or signature ({}){detail}",
                kind.name().unwrap_or("certificate error")
            )),
            NotifyType::INVALID_ID_INFORMATION => Error::InvalidId(format!(
                "the gateway refused our identity or traffic selectors{detail}"
            )),
            other => Error::PeerNotify {
                kind: other,
                name: other
                    .name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("notify {}", other.0)),
                detail,
            },
        }
    }
}

/// A datagram to send to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub data: Vec<u8>,
    /// Send from the NAT-T socket (port 4500) with the 4-byte non-ESP marker in
    /// front of `data` (RFC 3948 §2.2).
    pub nat_t: bool,
}

pub use dispatch::Ike;

/// How many [`Event::MessageRefused`] lines one IKE SA reports at most (a peer
/// sending junk cannot flood the log).
pub const MAX_REFUSALS_REPORTED: u32 = 16;

/// Statistics a user may want to see; never keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub retransmits: u32,
    pub dropped: u32,
}

/// Events and datagrams queued for the driver.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
}

pub(crate) fn random_bytes<const N: usize>(rng: &mut dyn Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

pub(crate) fn now_plus(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}
