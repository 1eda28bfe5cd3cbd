//! The IKEv2 state machine (RFC 7296), both roles, without I/O.
//!
//! An [`Ike2`] is one IKE SA with the CHILD_SA negotiated in its IKE_AUTH exchange
//! and one more per further configured network (`children.rs`).
//! It is driven exactly like the IKEv1 [`crate::ike::Ike`], and speaks the same
//! vocabulary ([`Config`], [`Event`], [`Error`], [`Transmit`], [`ChildSa`]), so the
//! tunnel driver handles both with one code path:
//!
//! * inputs: [`Ike2::handle_datagram`], [`Ike2::handle_timeout`], [`Ike2::close`],
//!   [`Ike2::check_peer`], [`Ike2::traffic_received`];
//! * outputs, polled after every input in this order: [`Ike2::poll_transmit`] until
//!   `None`, [`Ike2::poll_event`] until `None`, then [`Ike2::poll_timeout`].
//!
//! What it does: IKE_SA_INIT (NAT detection, COOKIE and INVALID_KE_PAYLOAD retries),
//! the key schedule of §2.14, IKE_AUTH with a pre-shared key, the first CHILD_SA
//! (ESP, keys from KEYMAT §2.17, traffic selectors with narrowing accepted), the
//! configuration payload (INTERNAL_IP4_ADDRESS/DNS/SUBNET), INFORMATIONAL (DELETE of
//! the IKE SA and of children, liveness checks answered and sent for dead peer
//! detection), message IDs with a window of 1 and retransmission with the IKEv1
//! engine's timer ([`RetransmitConfig`]). What it does not do yet: CREATE_CHILD_SA
//! (rekeying; a gateway's request is refused with NO_ADDITIONAL_SAS), certificates,
//! EAP, fragmentation, more than one child SA. MOBIKE (RFC 4555) is in `mobike.rs`.
//!
//! States are named for what they expect next (`ExpectInitReply`, `ExpectAuthReply`,
//! `ExpectInit`, `ExpectAuth`).

pub mod auth;
mod children;
pub mod codec;
mod eap_auth;
mod frag;
mod inner6;
pub mod keys;
pub mod mobike;
mod rekey_ike;

pub use children::planned_children;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::algs::{DhGroup, EspCipher, EspProposal, IkeProposal};
use crate::codec::{IdType, NotifyType};
use crate::crypto::{DhKeyPair, Rng, ct_eq};
use crate::ike::{
    Auth, ChildSa, Config, Counters, Encapsulation, Error, EspKeys, Event, ExchangeMode, Identity,
    ModeConfigInfo, ModeConfigMode, NAT_T_PORT, NatState, NatTraversal, NattVersion, Phase1Info,
    RetransmitConfig, Role, TrafficSelector, Transmit,
};
use codec::{
    CfgAttr, Header, Message, Payload, Proposal, Selector, Transform, cfg, exchange, flags, notify,
    proto, ptype, transform,
};
use keys::IkeKeys;

/// Where a child's KEYMAT comes from (§2.17).
struct Keymat<'a> {
    ni: &'a [u8],
    nr: &'a [u8],
    g_ir: Option<&'a [u8]>,
    /// We initiated the exchange that made the child.
    we_initiated: bool,
}

/// Our CREATE_CHILD_SA rekey in flight.
struct Rekey {
    old_spi_in: u32,
    new_spi_in: u32,
    ni: Vec<u8>,
    dh: Option<DhKeyPair>,
    local_ts: TrafficSelector,
    remote_ts: TrafficSelector,
    /// The child's further selector pairs (`inner6.rs`), offered again.
    more_ts: Vec<inner6::Pair>,
}

/// A child's rekey is started at this share of its lifetime (the gateway's own rekey,
/// if it has a shorter lifetime, comes first and is answered).
const REKEY_AT_PERCENT: u32 = 85;

/// What the engine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator: the IKE_SA_INIT response.
    ExpectInitReply,
    /// Initiator: the IKE_AUTH response.
    ExpectAuthReply,
    /// Responder: the IKE_SA_INIT request.
    ExpectInit,
    /// Responder: the IKE_AUTH request.
    ExpectAuth,
    Established,
    Dead,
}

/// What our outstanding request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Init,
    Auth,
    Liveness,
    /// CREATE_CHILD_SA rekeying our child (state in `Ike2::rekey`).
    RekeyChild,
    /// CREATE_CHILD_SA rekeying the IKE SA (state in `Ike2::ike_rekey`).
    RekeyIke,
    /// CREATE_CHILD_SA for a further child (children.rs).
    NewChild,
    /// The DELETE of the child a rekey replaced (its SPIs).
    DeleteOld {
        spi_in: u32,
        spi_out: u32,
    },
    /// MOBIKE: our UPDATE_SA_ADDRESSES (`mobike.rs`).
    UpdateAddresses,
}

/// Our request waiting for its answer (window of 1).
#[derive(Debug, Clone)]
struct Pending {
    kind: Request,
    id: u32,
    datagram: Vec<u8>,
    sent: u32,
    deadline: Instant,
    /// A liveness check after a resume gives up at this moment instead.
    give_up: Option<Instant>,
}

/// One IKEv2 SA, both roles. See the module documentation.
pub struct Ike2 {
    role: Role,
    config: Config,
    rng: Box<dyn Rng + Send>,
    local: SocketAddr,
    remote: SocketAddr,
    /// IKE runs on port 4500 with the non-ESP marker (a NAT was found or forced).
    floated: bool,
    state: State,
    spi_i: [u8; 8],
    spi_r: [u8; 8],
    /// Initiator: the proposal whose group our KE uses; responder: the chosen one.
    proposal: Option<IkeProposal>,
    dh: Option<DhKeyPair>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    cookie: Option<Vec<u8>>,
    /// The IKE_SA_INIT request and response as sent (the AUTH covers them).
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    keys: Option<IkeKeys>,
    nat: NatState,
    /// Our next request's message ID.
    next_id: u32,
    pending: Option<Pending>,
    /// The peer's next request's message ID, and our answer to its last one.
    peer_next_id: u32,
    last_response: Option<(u32, Vec<u8>)>,
    /// Initiator: the SPI of the child we proposed; the ESP proposals offered.
    child_spi: u32,
    phase1: Option<Phase1Info>,
    mode_config: Option<ModeConfigInfo>,
    children: Vec<ChildSa>,
    outbox_tx: VecDeque<Transmit>,
    outbox_ev: VecDeque<Event>,
    counters: Counters,
    last_heard: Option<Instant>,
    /// Responder: answer IKE_SA_INIT only with a COOKIE first (§2.6).
    require_cookie: bool,
    cookie_secret: [u8; 16],
    refusals: u32,
    /// Our rekey in flight, and when each child (by inbound SPI) is due for one
    /// (initiator; children.rs).
    rekey: Option<Rekey>,
    rekey_due: Vec<(u32, Instant)>,
    /// The children after the first (children.rs).
    extra: children::Extra,
    /// MOBIKE (RFC 4555): offered, negotiated, a move in flight.
    mobike: mobike::Mobike,
    /// Where the request being answered came from: answers go there (§2.11), which
    /// may differ from `remote` while a peer moves.
    reply_to: Option<SocketAddr>,
    /// We are the original initiator of the current IKE SA (a rekey by the peer makes
    /// it the initiator): the I flag and the direction of the SK_e/SK_a keys.
    ike_initiator: bool,
    /// Our rekey of the IKE SA in flight, when the next is due, and replaced SAs
    /// still answering (rekey_ike.rs).
    ike_rekey: Option<rekey_ike::IkeRekey>,
    ike_rekey_due: Option<Instant>,
    retiring: Vec<rekey_ike::Retiring>,
    /// Both sides announced IKEv2 fragmentation (frag.rs); the message being put
    /// together; our last fragmented messages (retransmitted as they were); a
    /// reassembled message's payloads for `open`.
    frag_ok: bool,
    reassembly: Option<frag::Reassembly>,
    frag_cache: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    reassembled: Option<Vec<Payload>>,
    /// The hash algorithms the peer announced for RFC 7427 signatures.
    peer_hashes: Vec<u16>,
    /// Initiator: EAP in IKE_AUTH (the profile's [xauth] login), while it runs.
    eap: Option<eap_auth::EapClient>,
    /// Responder: the EAP server side (tests), while it runs.
    eap_server: Option<eap_auth::EapServer>,
}

impl std::fmt::Debug for Ike2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ike2")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>(rng: &mut dyn Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

fn notify_payload(kind: u16, data: Vec<u8>) -> Payload {
    Payload::Notify {
        protocol: 0,
        spi: Vec::new(),
        kind,
        data,
    }
}

/// The error a peer's error notify stands for, one sentence each.
pub fn error_from_notify(kind: u16, data: &[u8]) -> Error {
    match kind {
        notify::AUTHENTICATION_FAILED => {
            Error::AuthenticationFailed("wrong pre-shared key or identity".into())
        }
        notify::NO_PROPOSAL_CHOSEN => {
            Error::NoProposalChosen("the gateway accepted none of our proposals".into())
        }
        notify::TS_UNACCEPTABLE | notify::INVALID_SELECTORS => {
            Error::InvalidId("the gateway refused our traffic selectors (remote_networks)".into())
        }
        notify::INTERNAL_ADDRESS_FAILURE => Error::PeerNotify {
            kind: NotifyType(kind),
            name: "INTERNAL_ADDRESS_FAILURE".into(),
            detail: ": the gateway has no virtual address to give us".into(),
        },
        notify::FAILED_CP_REQUIRED => Error::PeerNotify {
            kind: NotifyType(kind),
            name: "FAILED_CP_REQUIRED".into(),
            detail: ": the gateway requires a virtual address request (mode_config = \"pull\")"
                .into(),
        },
        other => {
            let name = notify::name(other)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("IKEv2 notify {other}"));
            let detail = if data.is_empty() {
                String::new()
            } else {
                format!(" ({} bytes of data)", data.len())
            };
            Error::PeerNotify {
                kind: NotifyType(other),
                name,
                detail,
            }
        }
    }
}

// ----- traffic selectors ----------------------------------------------------------

fn to_selector(t: &TrafficSelector) -> Selector {
    match t.addr {
        IpAddr::V4(a) => {
            let mask = if t.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(t.prefix.min(32)))
            };
            let s = u32::from(a) & mask;
            Selector {
                ts_type: codec::TS_IPV4_ADDR_RANGE,
                ip_proto: 0,
                start_port: 0,
                end_port: 65535,
                start: IpAddr::V4(s.into()),
                end: IpAddr::V4((s | !mask).into()),
            }
        }
        IpAddr::V6(a) => {
            let mask = if t.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(t.prefix.min(128)))
            };
            let s = u128::from(a) & mask;
            Selector {
                ts_type: codec::TS_IPV6_ADDR_RANGE,
                ip_proto: 0,
                start_port: 0,
                end_port: 65535,
                start: IpAddr::V6(s.into()),
                end: IpAddr::V6((s | !mask).into()),
            }
        }
    }
}

/// The prefix an address range is, if it is exactly one.
fn from_selector(s: &Selector) -> Option<TrafficSelector> {
    match (s.start, s.end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u32::from(a), u32::from(b));
            let host = a ^ b;
            if a & host != 0 || host.checked_add(1).is_some_and(|h| !h.is_power_of_two()) {
                return None;
            }
            let prefix = host.leading_zeros() as u8;
            let prefix = if host == 0 { 32 } else { prefix };
            Some(TrafficSelector {
                addr: IpAddr::V4(a.into()),
                prefix,
            })
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (u128::from(a), u128::from(b));
            let host = a ^ b;
            if a & host != 0 || host.checked_add(1).is_some_and(|h| !h.is_power_of_two()) {
                return None;
            }
            let prefix = if host == 0 {
                128
            } else {
                host.leading_zeros() as u8
            };
            Some(TrafficSelector {
                addr: IpAddr::V6(a.into()),
                prefix,
            })
        }
        _ => None,
    }
}

fn any_v4() -> TrafficSelector {
    TrafficSelector {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    }
}

// ----- proposals ------------------------------------------------------------------

/// An AEAD cipher has no INTEG transform (RFC 5282 §8, RFC 7296 §3.3.3).
fn ike_transforms(p: &IkeProposal) -> Vec<Transform> {
    let mut t = vec![
        Transform::with_key_len(
            transform::ENCR,
            keys::encr_id(p.cipher),
            p.cipher.key_length_attr(),
        ),
        Transform::new(transform::PRF, keys::prf_id(p.hash)),
    ];
    if !p.cipher.is_aead() {
        t.push(Transform::new(transform::INTEG, keys::integ_id(p.hash)));
    }
    t.push(Transform::new(transform::DH, p.group.ike_id()));
    t
}

/// The IKE proposal a received proposal is, if it is one we can run (exactly one of
/// each transform type after choosing; PRF and INTEG on the same hash; an AEAD
/// cipher with no INTEG other than NONE).
fn offered_ike(p: &Proposal) -> Vec<IkeProposal> {
    let mut out = Vec::new();
    if p.protocol != proto::IKE {
        return out;
    }
    let of = |k: u8| p.transforms.iter().filter(move |t| t.kind == k);
    for e in of(transform::ENCR) {
        let Some(cipher) = keys::encr_from_id(e.id, e.key_len()) else {
            continue;
        };
        for pr in of(transform::PRF) {
            let Some(h) = keys::prf_from_id(pr.id) else {
                continue;
            };
            let integ_ok = if cipher.is_aead() {
                of(transform::INTEG).all(|i| i.id == 0)
            } else {
                of(transform::INTEG).any(|i| keys::integ_from_id(i.id) == Some(h))
            };
            if !integ_ok {
                continue;
            }
            for d in of(transform::DH) {
                if let Some(group) = DhGroup::from_ike(d.id) {
                    out.push(IkeProposal {
                        cipher,
                        hash: h,
                        group,
                    });
                }
            }
        }
    }
    out
}

fn esp_transforms(p: &EspProposal, dh: Option<DhGroup>) -> Vec<Transform> {
    let mut t = vec![Transform::with_key_len(
        transform::ENCR,
        u16::from(p.cipher.transform_id()),
        p.cipher.key_length_attr(),
    )];
    if let Some(a) = p.auth {
        t.push(Transform::new(transform::INTEG, keys::esp_integ_id(a)));
    }
    if let Some(g) = dh {
        t.push(Transform::new(transform::DH, g.ike_id()));
    }
    t.push(Transform::new(transform::ESN, 0));
    t
}

/// Whether a received ESP proposal offers `ours` (cipher and integrity; no ESN
/// must be possible; a DH transform is ignored in IKE_AUTH).
fn esp_matches(p: &Proposal, ours: &EspProposal) -> bool {
    if p.protocol != proto::ESP || p.spi.len() != 4 {
        return false;
    }
    let of = |k: u8| p.transforms.iter().filter(move |t| t.kind == k);
    let cipher_ok = of(transform::ENCR).any(|t| {
        u8::try_from(t.id)
            .ok()
            .and_then(|id| EspCipher::from_ike(id, t.key_len()))
            == Some(ours.cipher)
    });
    let integ_ok = match ours.auth {
        Some(a) => of(transform::INTEG).any(|t| keys::esp_integ_from_id(t.id) == Some(a)),
        None => of(transform::INTEG).all(|t| t.id == 0),
    };
    let esn_ok = of(transform::ESN).next().is_none() || of(transform::ESN).any(|t| t.id == 0);
    cipher_ok && integ_ok && esn_ok
}

fn spi_of(p: &Proposal) -> Option<u32> {
    let b: [u8; 4] = p.spi.as_slice().try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

// ----- the engine -----------------------------------------------------------------

impl Ike2 {
    /// Starts IKE_SA_INIT as initiator; the first message is ready in `poll_transmit`.
    /// `local` must be the concrete address the datagrams leave from.
    pub fn initiate(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: Box<dyn Rng + Send>,
    ) -> Result<Ike2, Error> {
        let Some(first) = config.ike_proposals.first().copied() else {
            return Err(Error::Local("no IKE proposals configured".into()));
        };
        if config.esp_proposals.is_empty() {
            return Err(Error::Local("no ESP proposals configured".into()));
        }
        if matches!(config.auth, Auth::Hybrid(_)) && config.xauth.is_none() {
            return Err(Error::Local(
                "auth.method = \"hybrid\" needs the user's login ([xauth], EAP in IKEv2)".into(),
            ));
        }
        if let Auth::Signature(c) = &config.auth
            && config.xauth.is_some()
            && c.key.is_some()
        {
            return Err(Error::Local(
                "with IKEv2, [xauth] is an EAP login in place of our certificate: use auth.method = \"hybrid\" or remove [xauth]".into(),
            ));
        }
        if config.eap_tls
            && (config.xauth.is_some()
                || !matches!(&config.auth, Auth::Signature(c) if c.key.is_some()))
        {
            return Err(Error::Local(
                "EAP-TLS needs our certificate and private key (auth.cert + auth.key, or auth.pkcs12) and no [xauth]".into(),
            ));
        }
        if let Auth::Signature(c) = &config.auth
            && c.key.is_none()
            && config.xauth.is_none()
        {
            return Err(Error::Local(
                "certificate authentication needs our private key (auth.key or auth.pkcs12)".into(),
            ));
        }
        let mut e = Ike2::new(Role::Initiator, config, local, remote, rng);
        e.spi_i = random(&mut *e.rng);
        e.ni = random::<32>(&mut *e.rng).to_vec();
        e.child_spi = e.new_spi();
        e.proposal = Some(first);
        e.dh = Some(DhKeyPair::generate(first.group, &mut *e.rng));
        e.state = State::ExpectInitReply;
        e.send_init(now);
        Ok(e)
    }

    /// A responder waiting for the initiator's IKE_SA_INIT.
    pub fn respond(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Ike2 {
        let mut e = Ike2::new(Role::Responder, config, local, remote, rng);
        e.cookie_secret = random(&mut *e.rng);
        e.state = State::ExpectInit;
        e
    }

    fn new(
        role: Role,
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Ike2 {
        Ike2 {
            role,
            config,
            rng,
            local,
            remote,
            floated: false,
            state: State::Dead,
            spi_i: [0; 8],
            spi_r: [0; 8],
            proposal: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            cookie: None,
            init_request: Vec::new(),
            init_response: Vec::new(),
            keys: None,
            nat: NatState::default(),
            next_id: 0,
            pending: None,
            peer_next_id: 0,
            last_response: None,
            child_spi: 0,
            phase1: None,
            mode_config: None,
            children: Vec::new(),
            outbox_tx: VecDeque::new(),
            outbox_ev: VecDeque::new(),
            counters: Counters::default(),
            last_heard: None,
            require_cookie: false,
            cookie_secret: [0; 16],
            refusals: 0,
            rekey: None,
            rekey_due: Vec::new(),
            extra: children::Extra::default(),
            mobike: mobike::Mobike::default(),
            reply_to: None,
            ike_initiator: role == Role::Initiator,
            ike_rekey: None,
            ike_rekey_due: None,
            retiring: Vec::new(),
            frag_ok: false,
            reassembly: None,
            frag_cache: Vec::new(),
            reassembled: None,
            peer_hashes: Vec::new(),
            eap: None,
            eap_server: None,
        }
    }

    /// Responder: demand a COOKIE round trip before any state is kept (§2.6).
    pub fn set_require_cookie(&mut self, yes: bool) {
        self.require_cookie = yes;
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }
    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }
    /// The IKE SA's parameters (the IKEv1 name is kept so the driver reads both alike).
    pub fn phase1(&self) -> Option<&Phase1Info> {
        self.phase1.as_ref()
    }
    pub fn children(&self) -> &[ChildSa] {
        &self.children
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    pub fn mode_config(&self) -> Option<&ModeConfigInfo> {
        self.mode_config.as_ref()
    }
    /// Whether IKE runs on port 4500 (NAT found or forced).
    pub fn floated(&self) -> bool {
        self.floated
    }
    /// The SPIs of the IKE SA (initiator's, responder's).
    pub fn spis(&self) -> ([u8; 8], [u8; 8]) {
        (self.spi_i, self.spi_r)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox_tx.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.outbox_ev.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Dead {
            return None;
        }
        let retransmit = self
            .pending
            .as_ref()
            .map(|p| p.give_up.map_or(p.deadline, |g| g.min(p.deadline)));
        let dpd = match (&self.config.dpd, self.last_heard, &self.pending) {
            (Some(d), Some(h), None) if self.state == State::Established => {
                Some(later(h, d.interval))
            }
            _ => None,
        };
        let idle = self.pending.is_none() && self.state == State::Established;
        let rekey = self.next_rekey().filter(|_| idle);
        let ike_rekey = self.ike_rekey_due.filter(|_| idle);
        [retransmit, dpd, rekey, ike_rekey, self.retiring_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Dead {
            return;
        }
        self.retiring_timeout(now);
        if let Some(p) = self.pending.as_mut() {
            if p.give_up.is_some_and(|g| now >= g) {
                let (kind, sent) = (p.kind, p.sent);
                self.pending = None;
                self.fail(match kind {
                    Request::UpdateAddresses => Error::NotResponding(sent.saturating_sub(1)),
                    _ => Error::DeadPeer(sent),
                });
                return;
            }
            if now >= p.deadline {
                let cfg: RetransmitConfig = self.config.retransmit;
                if p.sent >= cfg.tries {
                    let (kind, sent) = (p.kind, p.sent);
                    self.pending = None;
                    let e = match kind {
                        Request::Liveness => Error::DeadPeer(sent),
                        _ => Error::NotResponding(sent.saturating_sub(1)),
                    };
                    self.fail(e);
                    return;
                }
                p.sent += 1;
                p.deadline = later(now, cfg.wait_after(p.sent));
                let d = p.datagram.clone();
                self.counters.retransmits += 1;
                self.send_raw(d);
            }
            return;
        }
        if self.state == State::Established
            && self.ike_rekey_due.is_some_and(|t| now >= t)
            && self.start_ike_rekey(now, None)
        {
            return;
        }
        if self.state == State::Established
            && let Some(spi) = self.due_rekey(now)
        {
            self.start_rekey(now, spi);
            return;
        }
        if self.state == State::Established
            && let (Some(d), Some(h)) = (&self.config.dpd, self.last_heard)
            && now >= later(h, d.interval)
        {
            self.send_liveness(now, None);
        }
    }

    fn rekey_time(&self) -> Duration {
        self.config.esp_lifetime * REKEY_AT_PERCENT / 100
    }

    /// CREATE_CHILD_SA rekeying the child with inbound SPI `old_spi_in` (§1.3.3):
    /// a new pair with fresh nonces (and a new DH exchange with PFS); the old pair is
    /// deleted once the new one is up.
    fn start_rekey(&mut self, now: Instant, old_spi_in: u32) -> bool {
        if self.state != State::Established || self.pending.is_some() || self.rekey.is_some() {
            return false;
        }
        let Some(old) = self
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .cloned()
        else {
            return false;
        };
        let (Some(local_ts), Some(remote_ts)) = (old.local_ts, old.remote_ts) else {
            return false;
        };
        let new_spi_in = self.new_spi();
        let ni = random::<32>(&mut *self.rng).to_vec();
        let pfs = self.config.esp_proposals.first().and_then(|p| p.group);
        let dh = pfs.map(|g| DhKeyPair::generate(g, &mut *self.rng));
        let spi = new_spi_in.to_be_bytes().to_vec();
        let mut payloads = vec![
            Payload::Notify {
                protocol: proto::ESP,
                spi: old_spi_in.to_be_bytes().to_vec(),
                kind: notify::REKEY_SA,
                data: Vec::new(),
            },
            Payload::Sa(
                self.config
                    .esp_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Proposal {
                        number: (i + 1).min(255) as u8,
                        protocol: proto::ESP,
                        spi: spi.clone(),
                        transforms: esp_transforms(p, p.group),
                    })
                    .collect(),
            ),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke {
                group: dh.group().ike_id(),
                data: dh.public().to_vec(),
            });
        }
        let mut pairs = vec![(local_ts, remote_ts)];
        pairs.extend(old.more_ts.iter().copied());
        payloads.extend(inner6::ts_payloads(&pairs, true));
        self.rekey = Some(Rekey {
            old_spi_in,
            new_spi_in,
            ni,
            dh,
            local_ts,
            remote_ts,
            more_ts: old.more_ts.clone(),
        });
        self.request(
            now,
            Request::RekeyChild,
            exchange::CREATE_CHILD_SA,
            &payloads,
        );
        self.next_id = self.next_id.wrapping_add(1);
        true
    }

    fn on_rekey_reply(&mut self, now: Instant, payloads: &[Payload]) {
        let Some(rk) = self.rekey.take() else {
            return;
        };
        let retry = later(
            now,
            Duration::from_secs(30).min(self.config.esp_lifetime / 10),
        );
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p
                && *kind < notify::STATUS_FIRST
            {
                self.outbox_ev
                    .push_back(Event::Phase2Failed(error_from_notify(*kind, data)));
                self.set_rekey(rk.old_spi_in, retry);
                return;
            }
        }
        match self.rekeyed_child(&rk, payloads) {
            Ok(c) => {
                self.children.push(c.clone());
                self.outbox_ev
                    .push_back(Event::Phase2Established(c.clone()));
                self.set_rekey(c.spi_in, later(now, self.rekey_time()));
                self.forget_rekey(rk.old_spi_in);
                if let Some(old) = self.children.iter().find(|c| c.spi_in == rk.old_spi_in) {
                    let (spi_in, spi_out) = (old.spi_in, old.spi_out);
                    self.request(
                        now,
                        Request::DeleteOld { spi_in, spi_out },
                        exchange::INFORMATIONAL,
                        &[Payload::Delete {
                            protocol: proto::ESP,
                            spi_size: 4,
                            spis: vec![spi_in.to_be_bytes().to_vec()],
                        }],
                    );
                    self.next_id = self.next_id.wrapping_add(1);
                }
            }
            Err(e) => {
                self.outbox_ev.push_back(Event::Phase2Failed(e));
                self.set_rekey(rk.old_spi_in, retry);
            }
        }
    }

    fn rekeyed_child(&self, rk: &Rekey, payloads: &[Payload]) -> Result<ChildSa, Error> {
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let Some([chosen]) = sa.map(Vec::as_slice) else {
            return Err(Error::Malformed(
                "CREATE_CHILD_SA reply without exactly one proposal".into(),
            ));
        };
        let Some(ours) = self
            .config
            .esp_proposals
            .iter()
            .find(|o| esp_matches(chosen, o))
            .copied()
        else {
            return Err(Error::NoProposalChosen(
                "the gateway chose an ESP proposal we did not offer (rekey)".into(),
            ));
        };
        let spi_out = spi_of(chosen).ok_or_else(|| Error::Malformed("child SPI".into()))?;
        let nr = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Nonce(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::Malformed("CREATE_CHILD_SA reply without a nonce".into()))?;
        let shared = match &rk.dh {
            Some(dh) => {
                let ke = payloads
                    .iter()
                    .find_map(|p| match p {
                        Payload::Ke { group, data } if *group == dh.group().ike_id() => Some(data),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        Error::NoProposalChosen("the gateway refused PFS on the rekey".into())
                    })?;
                Some(
                    dh.shared_secret(ke)
                        .map_err(|e| Error::Malformed(format!("rekey KE: {e}")))?,
                )
            }
            None => None,
        };
        let ts = |init: bool| {
            payloads
                .iter()
                .find_map(|p| match p {
                    Payload::Ts {
                        initiator,
                        selectors,
                    } if *initiator == init => Some(selectors.as_slice()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let mut offered = vec![(rk.local_ts, rk.remote_ts)];
        offered.extend(rk.more_ts.iter().copied());
        let mut pairs = inner6::pick_pairs(ts(true), ts(false), &offered).into_iter();
        let Some((local_ts, remote_ts)) = pairs.next() else {
            return Err(Error::InvalidId(
                "the gateway's traffic selectors on the rekey are not within ours".into(),
            ));
        };
        let km = Keymat {
            ni: &rk.ni,
            nr: &nr,
            g_ir: shared.as_ref().map(|s| s.as_slice()),
            we_initiated: true,
        };
        let mut child = self.make_child_with(ours, rk.new_spi_in, spi_out, local_ts, remote_ts, km);
        child.more_ts = pairs.collect();
        Ok(child)
    }

    /// The peer's CREATE_CHILD_SA: a rekey of a child is answered (with PFS when the
    /// peer asks for it), a rekey of the IKE SA goes to rekey_ike.rs, a new child to
    /// children.rs.
    fn on_create_child_request(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        let refuse = |e: &mut Ike2, n: u16, why: &str| {
            e.outbox_ev.push_back(Event::Note(format!(
                "ike: refused the gateway's CREATE_CHILD_SA ({why})"
            )));
            e.respond_with(
                exchange::CREATE_CHILD_SA,
                id,
                &[notify_payload(n, Vec::new())],
            );
        };
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v.clone()),
            _ => None,
        });
        let Some(sa) = sa else {
            return refuse(self, notify::INVALID_SYNTAX, "no SA payload");
        };
        if sa.iter().any(|p| p.protocol == proto::IKE) {
            return self.on_ike_rekey_request(now, id, payloads, &sa);
        }
        if self.ike_rekey.is_some() {
            // §2.25.2: no child exchange while the IKE SA is being rekeyed.
            return refuse(
                self,
                notify::TEMPORARY_FAILURE,
                "the IKE SA is being rekeyed",
            );
        }
        let rekey_of = payloads.iter().find_map(|p| match p {
            Payload::Notify {
                kind: notify::REKEY_SA,
                protocol: proto::ESP,
                spi,
                ..
            } => <[u8; 4]>::try_from(spi.as_slice())
                .ok()
                .map(u32::from_be_bytes),
            _ => None,
        });
        let Some(rekey_of) = rekey_of else {
            return self.on_new_child_request(now, id, payloads, &sa);
        };
        let Some(old) = self
            .children
            .iter()
            .find(|c| c.spi_out == rekey_of)
            .cloned()
        else {
            return refuse(self, notify::CHILD_SA_NOT_FOUND, "no such child SA");
        };
        let ni = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let Some(ni) = ni else {
            return refuse(self, notify::INVALID_SYNTAX, "no nonce");
        };
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group, data } => Some((*group, data.clone())),
            _ => None,
        });
        let Some((theirs, ours)) = self.config.esp_proposals.iter().find_map(|o| {
            sa.iter()
                .find(|t| esp_matches(t, o))
                .map(|t| (t.clone(), *o))
        }) else {
            return refuse(
                self,
                notify::NO_PROPOSAL_CHOSEN,
                "no acceptable ESP proposal",
            );
        };
        let Some(spi_out) = spi_of(&theirs) else {
            return refuse(self, notify::INVALID_SYNTAX, "bad SPI");
        };
        // PFS: the group of the KE, which the chosen proposal must list.
        let mut dh_group = None;
        if let Some((g, _)) = &ke {
            let listed = theirs
                .transforms
                .iter()
                .any(|t| t.kind == transform::DH && t.id == *g);
            match DhGroup::from_ike(*g).filter(|_| listed) {
                Some(group) => dh_group = Some(group),
                None => {
                    return refuse(self, notify::NO_PROPOSAL_CHOSEN, "unsupported PFS group");
                }
            }
        }
        let mut shared = None;
        let mut ker = None;
        if let (Some(group), Some((_, data))) = (dh_group, &ke) {
            let dh = DhKeyPair::generate(group, &mut *self.rng);
            match dh.shared_secret(data) {
                Ok(x) => shared = Some(x),
                Err(_) => {
                    return refuse(self, notify::INVALID_SYNTAX, "bad KE");
                }
            }
            ker = Some(Payload::Ke {
                group: group.ike_id(),
                data: dh.public().to_vec(),
            });
        }
        let (Some(local_ts), Some(remote_ts)) = (old.local_ts, old.remote_ts) else {
            return refuse(self, notify::TS_UNACCEPTABLE, "no selectors");
        };
        let spi_in = self.new_spi();
        let nr = random::<32>(&mut *self.rng).to_vec();
        let mut out = vec![
            Payload::Sa(vec![Proposal {
                number: theirs.number,
                protocol: proto::ESP,
                spi: spi_in.to_be_bytes().to_vec(),
                transforms: esp_transforms(&ours, dh_group),
            }]),
            Payload::Nonce(nr.clone()),
        ];
        out.extend(ker);
        // The exchange's initiator is the peer: TSi is its side, ours is TSr.
        let mut pairs = vec![(local_ts, remote_ts)];
        pairs.extend(old.more_ts.iter().copied());
        out.extend(inner6::ts_payloads(&pairs, false));
        self.respond_with(exchange::CREATE_CHILD_SA, id, &out);
        let km = Keymat {
            ni: &ni,
            nr: &nr,
            g_ir: shared.as_ref().map(|s| s.as_slice()),
            we_initiated: false,
        };
        let mut child = self.make_child_with(ours, spi_in, spi_out, local_ts, remote_ts, km);
        child.more_ts = old.more_ts.clone();
        self.children.push(child.clone());
        self.forget_rekey(old.spi_in);
        if self.role == Role::Initiator {
            self.set_rekey(child.spi_in, later(now, self.rekey_time()));
        }
        self.outbox_ev.push_back(Event::Phase2Established(child));
    }

    /// Tells the engine that traffic arrived from the peer (ESP), so the peer is alive.
    pub fn traffic_received(&mut self, now: Instant) {
        if self.state == State::Established {
            self.last_heard = Some(now);
        }
    }

    /// The user's answer to `Event::CredentialsRequired` (an EAP password or
    /// passcode round).
    pub fn submit_credentials(
        &mut self,
        now: Instant,
        creds: crate::ike::Credentials,
    ) -> Result<(), Error> {
        self.eap_credentials(now, creds)
    }

    /// Asks the peer at once whether it is alive (an empty INFORMATIONAL); the peer is
    /// declared dead if no answer comes within `give_up`.
    pub fn check_peer(&mut self, now: Instant, give_up: Duration) -> bool {
        if self.state != State::Established || self.pending.is_some() {
            return self.checking_peer();
        }
        self.send_liveness(now, Some(later(now, give_up)));
        true
    }

    pub fn checking_peer(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.kind == Request::Liveness)
    }

    /// Command: rekey the child with inbound SPI `spi_in` now (CREATE_CHILD_SA,
    /// make-before-break). False when there is no such child, the IKE SA is not up, or
    /// another request is in flight (the timer tries again).
    pub fn rekey(&mut self, now: Instant, spi_in: u32) -> bool {
        self.start_rekey(now, spi_in)
    }

    /// Deletes the IKE SA (and with it the children): the DELETE is queued, then
    /// `Closed`; nothing more happens.
    pub fn close(&mut self, _now: Instant) {
        if self.state == State::Dead {
            return;
        }
        if self.keys.is_some() {
            let id = self.next_id;
            let d = self.seal_request(
                exchange::INFORMATIONAL,
                id,
                &[Payload::Delete {
                    protocol: proto::IKE,
                    spi_size: 0,
                    spis: Vec::new(),
                }],
            );
            self.next_id = self.next_id.wrapping_add(1);
            self.send_raw(d);
        }
        for c in std::mem::take(&mut self.children) {
            self.outbox_ev.push_back(Event::Phase2Deleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                by_peer: false,
            });
        }
        self.pending = None;
        self.state = State::Dead;
        self.outbox_ev.push_back(Event::Closed);
    }

    // ----- sending ------------------------------------------------------------------

    fn new_spi(&mut self) -> u32 {
        loop {
            let s = u32::from_be_bytes(random(&mut *self.rng));
            if s > 255 {
                return s;
            }
        }
    }

    fn send_raw(&mut self, data: Vec<u8>) {
        for data in self.fragments_of(data) {
            self.outbox_tx.push_back(Transmit {
                destination: self.remote,
                data,
                nat_t: self.floated,
            });
        }
    }

    fn header(&self, exch: u8, id: u32, response: bool) -> Header {
        let mut f = 0;
        if self.ike_initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            exchange: exch,
            flags: f,
            message_id: id,
            length: 0,
        }
    }

    fn seal(&mut self, h: Header, payloads: &[Payload]) -> Vec<u8> {
        match &self.keys {
            Some(k) => k.seal(h, payloads, self.ike_initiator, &mut *self.rng),
            None => Message::encode(h, payloads),
        }
    }

    fn seal_request(&mut self, exch: u8, id: u32, payloads: &[Payload]) -> Vec<u8> {
        let h = self.header(exch, id, false);
        self.seal(h, payloads)
    }

    /// Sends a request and keeps it for retransmission.
    fn request(&mut self, now: Instant, kind: Request, exch: u8, payloads: &[Payload]) {
        let id = self.next_id;
        let d = self.seal_request(exch, id, payloads);
        self.start_pending(now, kind, id, d, None);
    }

    fn start_pending(
        &mut self,
        now: Instant,
        kind: Request,
        id: u32,
        d: Vec<u8>,
        give_up: Option<Instant>,
    ) {
        self.pending = Some(Pending {
            kind,
            id,
            datagram: d.clone(),
            sent: 1,
            deadline: later(now, self.config.retransmit.wait_after(1)),
            give_up,
        });
        self.send_raw(d);
    }

    fn respond_with(&mut self, exch: u8, id: u32, payloads: &[Payload]) {
        let h = self.header(exch, id, true);
        let d = self.seal(h, payloads);
        self.last_response = Some((id, d.clone()));
        self.peer_next_id = id.wrapping_add(1);
        self.send_reply(d);
    }

    /// An answer: to where the request came from (§2.11), else to the peer.
    /// (In fragments when it is too large, like any message: `fragments_of`.)
    fn send_reply(&mut self, data: Vec<u8>) {
        let destination = self.reply_to.unwrap_or(self.remote);
        for data in self.fragments_of(data) {
            self.outbox_tx.push_back(Transmit {
                destination,
                data,
                nat_t: self.floated,
            });
        }
    }

    fn nat_notifies(&self, spi_r: [u8; 8]) -> [Payload; 2] {
        let src = if self.config.nat_traversal == NatTraversal::Force {
            // Make the peer believe we are behind a NAT (ESP in UDP everywhere).
            keys::nat_hash(&self.spi_i, &spi_r, SocketAddr::new(self.local.ip(), 0))
        } else {
            keys::nat_hash(&self.spi_i, &spi_r, self.local)
        };
        [
            notify_payload(notify::NAT_DETECTION_SOURCE_IP, src),
            notify_payload(
                notify::NAT_DETECTION_DESTINATION_IP,
                keys::nat_hash(&self.spi_i, &spi_r, self.remote),
            ),
        ]
    }

    fn send_init(&mut self, now: Instant) {
        let Some(dh) = &self.dh else {
            return;
        };
        let group = dh.group();
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
            payloads.push(notify_payload(notify::COOKIE, c.clone()));
        }
        // Proposals whose group is the KE's first (§1.2: the guess should be preferred).
        let mut props: Vec<IkeProposal> = self.config.ike_proposals.clone();
        props.sort_by_key(|p| p.group != group);
        payloads.push(Payload::Sa(
            props
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    number: (i + 1).min(255) as u8,
                    protocol: proto::IKE,
                    spi: Vec::new(),
                    transforms: ike_transforms(p),
                })
                .collect(),
        ));
        payloads.push(Payload::Ke {
            group: group.ike_id(),
            data: dh.public().to_vec(),
        });
        payloads.push(Payload::Nonce(self.ni.clone()));
        if self.config.nat_traversal != NatTraversal::Off {
            payloads.extend(self.nat_notifies([0; 8]));
        }
        if self.config.fragmentation {
            payloads.push(notify_payload(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        payloads.extend(self.auth_init_notifies());
        let h = self.header(exchange::IKE_SA_INIT, 0, false);
        let d = Message::encode(h, &payloads);
        self.init_request = d.clone();
        self.next_id = 1;
        self.start_pending(now, Request::Init, 0, d, None);
    }

    fn send_liveness(&mut self, now: Instant, give_up: Option<Instant>) {
        let id = self.next_id;
        let d = self.seal_request(exchange::INFORMATIONAL, id, &[]);
        self.next_id = self.next_id.wrapping_add(1);
        self.start_pending(now, Request::Liveness, id, d, give_up);
    }

    fn fail(&mut self, e: Error) {
        if self.state == State::Dead {
            return;
        }
        self.state = State::Dead;
        self.pending = None;
        self.outbox_ev.push_back(Event::Failed(e));
    }

    fn refused(&mut self, why: String) {
        self.counters.dropped += 1;
        if self.refusals < crate::ike::MAX_REFUSALS_REPORTED {
            self.refusals += 1;
            self.outbox_ev.push_back(Event::MessageRefused(why));
        }
    }

    fn local_identity(&self) -> Identity {
        self.config
            .local_id
            .clone()
            .unwrap_or_else(|| Identity::address(self.local.ip()))
    }

    fn phase1_info(&self, peer_id: Identity) -> Option<Phase1Info> {
        Some(Phase1Info {
            mode: ExchangeMode::Main,
            proposal: self.proposal?,
            lifetime: self.config.ike_lifetime,
            local_id: self.local_identity(),
            peer_id,
            initiator_cookie: self.spi_i,
            responder_cookie: self.spi_r,
            nat_t: self.floated.then_some(NattVersion::Rfc3947),
            nat: self.nat,
        })
    }

    // ----- receiving ----------------------------------------------------------------

    /// A datagram from the peer (without the non-ESP marker when it came to 4500).
    /// `local` is the address it arrived at, `remote` where it came from.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if self.state == State::Dead {
            return;
        }
        if data.len() > codec::HEADER_LEN && data[16] == frag::SKF {
            self.on_fragment(now, local, remote, data);
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.counters.dropped += 1;
                if self.state != State::Established {
                    self.refused(format!("undecodable IKEv2 message: {e}"));
                }
                return;
            }
        };
        self.dispatch(now, local, remote, data, &msg);
    }

    /// A decoded message (or one reassembled from fragments) to its handler.
    fn dispatch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let h = msg.header;
        // Responder, first message: take the initiator's SPI.
        if self.role == Role::Responder && self.state == State::ExpectInit {
            if h.exchange == exchange::IKE_SA_INIT
                && !h.is_response()
                && h.from_initiator()
                && h.message_id == 0
                && h.spi_r == [0; 8]
            {
                self.local = local;
                self.remote = remote;
                self.on_init_request(now, data, msg);
            } else {
                self.counters.dropped += 1;
            }
            return;
        }
        if (h.spi_i, h.spi_r) != (self.spi_i, self.spi_r) && self.on_retiring(data, msg) {
            return;
        }
        if h.spi_i != self.spi_i {
            self.counters.dropped += 1;
            return;
        }
        // The responder's SPI is known after IKE_SA_INIT (a COOKIE or INVALID_KE
        // reply to the initiator still has it zero, or any value: accepted there).
        let init_reply =
            self.role == Role::Initiator && h.exchange == exchange::IKE_SA_INIT && h.is_response();
        if !init_reply && h.spi_r != self.spi_r {
            self.counters.dropped += 1;
            return;
        }
        if h.from_initiator() == self.ike_initiator {
            // Our own flags reflected: not from the peer.
            self.counters.dropped += 1;
            return;
        }
        if h.is_response() {
            self.on_response(now, data, msg);
        } else {
            self.on_request(now, local, remote, data, msg);
        }
    }

    fn open(&mut self, data: &[u8], msg: &Message) -> Option<Vec<Payload>> {
        if let Some(p) = self.reassembled.take() {
            return Some(p);
        }
        let from_initiator = msg.header.from_initiator();
        let keys = self.keys.as_ref()?;
        match keys.open(data, msg, from_initiator) {
            Ok(chain) => Some(chain.payloads.into_iter().map(|d| d.payload).collect()),
            Err(e) => {
                self.refused(format!("IKEv2 message refused: {e}"));
                None
            }
        }
    }

    fn on_response(&mut self, now: Instant, data: &[u8], msg: &Message) {
        let Some(p) = self.pending.as_ref() else {
            self.counters.dropped += 1;
            return;
        };
        if p.id != msg.header.message_id {
            self.counters.dropped += 1;
            return;
        }
        let kind = p.kind;
        match kind {
            Request::Init => {
                if msg.header.exchange != exchange::IKE_SA_INIT {
                    self.counters.dropped += 1;
                    return;
                }
                let payloads: Vec<Payload> = msg.payloads().cloned().collect();
                self.on_init_reply(now, data, msg.header, &payloads);
            }
            _ => {
                let Some(payloads) = self.open(data, msg) else {
                    return;
                };
                self.pending = None;
                self.last_heard = Some(now);
                match kind {
                    Request::Auth => self.on_auth_reply(now, &payloads),
                    Request::RekeyChild => self.on_rekey_reply(now, &payloads),
                    Request::RekeyIke => self.on_ike_rekey_reply(now, &payloads),
                    Request::NewChild => self.on_new_child_reply(now, &payloads),
                    Request::DeleteOld { spi_in, spi_out } => {
                        if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
                            self.children.remove(i);
                            self.outbox_ev.push_back(Event::Phase2Deleted {
                                spi_in,
                                spi_out,
                                by_peer: false,
                            });
                        }
                    }
                    Request::UpdateAddresses => self.on_update_reply(&payloads),
                    Request::Liveness | Request::Init => {}
                }
                self.mobike_after_response(now);
            }
        }
    }

    fn on_init_reply(&mut self, now: Instant, data: &[u8], h: Header, payloads: &[Payload]) {
        // Notifies first: COOKIE, INVALID_KE_PAYLOAD, errors.
        for p in payloads {
            let Payload::Notify { kind, data: nd, .. } = p else {
                continue;
            };
            match *kind {
                notify::COOKIE => {
                    if nd.is_empty() || nd.len() > 64 || self.cookie.as_ref() == Some(nd) {
                        self.refused("a COOKIE we already sent, or malformed".into());
                        return;
                    }
                    self.cookie = Some(nd.clone());
                    self.outbox_ev
                        .push_back(Event::Note("ike: the gateway asked for a cookie".into()));
                    self.send_init(now);
                    return;
                }
                notify::INVALID_KE_PAYLOAD => {
                    let group = <[u8; 2]>::try_from(nd.as_slice())
                        .ok()
                        .map(u16::from_be_bytes)
                        .and_then(DhGroup::from_ike);
                    let current = self.dh.as_ref().map(DhKeyPair::group);
                    match group.and_then(|g| {
                        self.config
                            .ike_proposals
                            .iter()
                            .find(|p| p.group == g)
                            .copied()
                    }) {
                        Some(p) if Some(p.group) != current => {
                            self.outbox_ev.push_back(Event::Note(format!(
                                "ike: the gateway asked for DH group {}; retrying",
                                p.group.name()
                            )));
                            self.proposal = Some(p);
                            self.dh = Some(DhKeyPair::generate(p.group, &mut *self.rng));
                            self.send_init(now);
                        }
                        _ => self.fail(Error::NoProposalChosen(
                            "the gateway asked for a Diffie-Hellman group we do not offer".into(),
                        )),
                    }
                    return;
                }
                k if k < notify::STATUS_FIRST => {
                    self.fail(error_from_notify(k, nd));
                    return;
                }
                _ => {}
            }
        }
        if h.spi_r == [0; 8] {
            self.refused("IKE_SA_INIT reply without a responder SPI".into());
            return;
        }
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group, data } => Some((*group, data)),
            _ => None,
        });
        let nr = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let (Some(sa), Some((group, ke)), Some(nr)) = (sa, ke, nr) else {
            self.refused("IKE_SA_INIT reply without SA, KE or nonce".into());
            return;
        };
        // Exactly one proposal, one we offered, on our KE's group.
        let chosen = match sa.as_slice() {
            [one] => offered_ike(one),
            _ => Vec::new(),
        };
        let Some(dh) = self.dh.take() else {
            return;
        };
        let Some(p) = chosen
            .into_iter()
            .find(|c| self.config.ike_proposals.contains(c) && c.group == dh.group())
        else {
            self.dh = Some(dh);
            self.refused("the gateway chose a proposal we did not offer".into());
            return;
        };
        if group != p.group.ike_id() {
            self.dh = Some(dh);
            self.refused("the gateway's KE is not of the chosen group".into());
            return;
        }
        let shared = match dh.shared_secret(ke) {
            Ok(s) => s,
            Err(e) => {
                self.dh = Some(dh);
                self.refused(format!("the gateway's KE: {e}"));
                return;
            }
        };
        self.spi_r = h.spi_r;
        self.nr = nr.clone();
        self.proposal = Some(p);
        self.init_response = data.to_vec();
        self.keys = Some(keys::derive(
            p.hash,
            p.cipher,
            &shared,
            &self.ni,
            &self.nr,
            &self.spi_i,
            &self.spi_r,
        ));
        drop(dh);
        self.pending = None;
        self.frag_ok = self.config.fragmentation && has_frag_notify(payloads);
        self.note_peer_hashes(payloads);
        self.detect_nat(payloads, h.spi_r);
        self.send_auth(now);
    }

    /// NAT detection (§2.23) from the peer's notifies; floats to 4500 if a NAT is
    /// found or forced.
    fn detect_nat(&mut self, payloads: &[Payload], spi_r: [u8; 8]) {
        if self.config.nat_traversal == NatTraversal::Off {
            return;
        }
        let mut srcs = Vec::new();
        let mut dst = None;
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p {
                match *kind {
                    notify::NAT_DETECTION_SOURCE_IP => srcs.push(data.clone()),
                    notify::NAT_DETECTION_DESTINATION_IP => dst = Some(data.clone()),
                    _ => {}
                }
            }
        }
        let Some(dst) = dst else {
            // The peer does no NAT detection.
            return;
        };
        let spi_r_for = if self.role == Role::Initiator {
            spi_r
        } else {
            [0; 8]
        };
        let mine = keys::nat_hash(&self.spi_i, &spi_r_for, self.local);
        let theirs = keys::nat_hash(&self.spi_i, &spi_r_for, self.remote);
        self.nat = NatState {
            local_behind_nat: !ct_eq(&dst, &mine),
            remote_behind_nat: !srcs.iter().any(|s| ct_eq(s, &theirs)),
            forced: self.role == Role::Initiator
                && self.config.nat_traversal == NatTraversal::Force,
        };
        if self.nat.any() && self.role == Role::Initiator {
            self.floated = true;
            self.remote.set_port(NAT_T_PORT);
            self.local.set_port(NAT_T_PORT);
        }
    }

    fn offered_ts(&self) -> (TrafficSelector, TrafficSelector) {
        let child = self.config.children.first();
        let cp = self.config.mode_config != ModeConfigMode::Off;
        let local = if cp {
            any_v4()
        } else {
            child
                .and_then(|c| c.local)
                .unwrap_or_else(|| TrafficSelector::host(self.local.ip()))
        };
        let remote = child.and_then(|c| c.remote).unwrap_or_else(any_v4);
        (local, remote)
    }

    fn send_auth(&mut self, now: Instant) {
        let Some(k) = &self.keys else {
            return;
        };
        let id = self.local_identity();
        let octets = keys::signed_octets(
            k.prf,
            &k.sk_pi,
            &self.init_request,
            &self.nr,
            id.kind.0,
            &id.data,
        );
        // With the user's login (EAP, RFC 7296 §2.16) our AUTH comes after EAP.
        let eap = self.config.xauth.is_some() || self.config.eap_tls;
        let auth = if eap {
            None
        } else {
            match self.our_auth(&octets) {
                Ok(a) => Some(a),
                Err(e) => return self.fail(e),
            }
        };
        let mut payloads = vec![Payload::Id {
            initiator: true,
            kind: id.kind.0,
            data: id.data.clone(),
        }];
        payloads.extend(self.cert_payloads(!eap));
        if self.config.initial_contact {
            payloads.push(notify_payload(notify::INITIAL_CONTACT, Vec::new()));
        }
        if let Some(r) = &self.config.remote_id {
            payloads.push(Payload::Id {
                initiator: false,
                kind: r.kind.0,
                data: r.data.clone(),
            });
        }
        payloads.extend(auth);
        self.mobike_offer(&mut payloads);
        if eap {
            match self.eap_client(now) {
                Ok(c) => self.eap = Some(c),
                Err(e) => return self.fail(e),
            }
        }
        if self.config.mode_config != ModeConfigMode::Off {
            let addr = self
                .config
                .requested_address
                .map(|a| a.octets().to_vec())
                .unwrap_or_default();
            payloads.push(Payload::Cp {
                cfg_type: cfg::CFG_REQUEST,
                attrs: vec![
                    CfgAttr {
                        kind: cfg::INTERNAL_IP4_ADDRESS,
                        value: addr,
                    },
                    CfgAttr {
                        kind: cfg::INTERNAL_IP4_DNS,
                        value: Vec::new(),
                    },
                ]
                .into_iter()
                .chain(self.cp_request_v6())
                .collect(),
            });
        }
        let spi = self.child_spi.to_be_bytes().to_vec();
        payloads.push(Payload::Sa(
            self.config
                .esp_proposals
                .iter()
                .enumerate()
                .map(|(i, p)| Proposal {
                    number: (i + 1).min(255) as u8,
                    protocol: proto::ESP,
                    spi: spi.clone(),
                    transforms: esp_transforms(p, None),
                })
                .collect(),
        ));
        payloads.extend(inner6::ts_payloads(&self.offered_pairs(), true));
        self.state = State::ExpectAuthReply;
        self.request(now, Request::Auth, exchange::IKE_AUTH, &payloads);
        self.next_id = self.next_id.wrapping_add(1);
    }

    fn on_auth_reply(&mut self, now: Instant, payloads: &[Payload]) {
        if self.eap.is_some() {
            return self.on_eap_auth_reply(now, payloads);
        }
        let has = |t: u8| payloads.iter().any(|p| p.kind() == t);
        let auth_ok_present = has(ptype::AUTH) && has(ptype::IDR);
        // Errors: AUTHENTICATION_FAILED ends everything; a child error after a good
        // AUTH leaves an IKE SA without a tunnel, which is a failure for us too.
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p
                && *kind < notify::STATUS_FIRST
            {
                let e = error_from_notify(*kind, data);
                if auth_ok_present && *kind != notify::AUTHENTICATION_FAILED {
                    // Tell the gateway we are gone, then fail.
                    self.state = State::Established;
                    self.close_quietly();
                }
                self.fail(e);
                return;
            }
        }
        let idr = payloads.iter().find_map(|p| match p {
            Payload::Id {
                initiator: false,
                kind,
                data,
            } => Some(Identity {
                kind: IdType(*kind),
                data: data.clone(),
            }),
            _ => None,
        });
        let Some(idr) = idr.filter(|_| has(ptype::AUTH)) else {
            self.fail(Error::Malformed(
                "IKE_AUTH reply without IDr or AUTH".into(),
            ));
            return;
        };
        if let Some(want) = &self.config.remote_id
            && *want != idr
        {
            self.fail(Error::InvalidId(format!(
                "the gateway is {idr}, the profile expects {want}"
            )));
            return;
        }
        let Some(k) = &self.keys else {
            return;
        };
        let octets = keys::signed_octets(
            k.prf,
            &k.sk_pr,
            &self.init_response,
            &self.ni,
            idr.kind.0,
            &idr.data,
        );
        if let Err(e) = self.check_peer_auth(now, &idr, payloads, &octets) {
            // The gateway holds an IKE SA (and child) it thinks is up: delete it
            // (§2.21.2 lets the initiator tell in a separate INFORMATIONAL).
            self.close_quietly();
            self.fail(e);
            return;
        }
        self.auth_done(now, idr, payloads);
    }

    /// The initiator's IKE SA is authenticated both ways: it is up, with the child
    /// (and configuration) the last IKE_AUTH reply carries.
    fn auth_done(&mut self, now: Instant, idr: Identity, payloads: &[Payload]) {
        // The IKE SA is up.
        self.state = State::Established;
        self.last_heard = Some(now);
        self.mobike_reply(payloads);
        let Some(info) = self.phase1_info(idr) else {
            return;
        };
        self.phase1 = Some(info.clone());
        self.outbox_ev.push_back(Event::Phase1Established(info));
        if let Some(mc) = payloads.iter().find_map(|p| match p {
            Payload::Cp {
                cfg_type: cfg::CFG_REPLY,
                attrs,
            } => Some(mode_config_from(attrs)),
            _ => None,
        }) {
            self.mode_config = Some(mc.clone());
            self.outbox_ev.push_back(Event::ModeConfig(mc));
        }
        match self.child_from_reply(payloads) {
            Ok(c) => {
                self.children.push(c.clone());
                self.outbox_ev
                    .push_back(Event::Phase2Established(c.clone()));
                self.set_rekey(c.spi_in, later(now, self.rekey_time()));
                self.ike_rekey_due = Some(later(now, self.ike_rekey_time()));
                self.plan_more_children(now, &c);
            }
            Err(e) => {
                self.close_quietly();
                self.fail(e);
            }
        }
    }

    fn child_from_reply(&mut self, payloads: &[Payload]) -> Result<ChildSa, Error> {
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let Some([chosen]) = sa.map(Vec::as_slice) else {
            return Err(Error::Malformed(
                "IKE_AUTH reply without exactly one child SA proposal".into(),
            ));
        };
        let Some(ours) = self
            .config
            .esp_proposals
            .iter()
            .find(|o| esp_matches(chosen, o))
            .copied()
        else {
            return Err(Error::NoProposalChosen(
                "the gateway chose an ESP proposal we did not offer".into(),
            ));
        };
        let spi_out = spi_of(chosen).ok_or_else(|| Error::Malformed("child SPI".into()))?;
        let ts = |init: bool| {
            payloads.iter().find_map(|p| match p {
                Payload::Ts {
                    initiator,
                    selectors,
                } if *initiator == init => Some(selectors.clone()),
                _ => None,
            })
        };
        let (Some(tsi), Some(tsr)) = (ts(true), ts(false)) else {
            return Err(Error::Malformed(
                "IKE_AUTH reply without traffic selectors".into(),
            ));
        };
        let pairs = inner6::pick_pairs(&tsi, &tsr, &self.offered_pairs());
        let Some(&(local_ts, remote_ts)) = pairs.first() else {
            return Err(Error::InvalidId(
                "the gateway's traffic selectors are not within ours (or not whole subnets)".into(),
            ));
        };
        let used: Vec<TrafficSelector> = pairs.iter().map(|p| p.1).collect();
        let unused = inner6::unused(&tsr, &used);
        if unused > 0 {
            let list: Vec<String> = used.iter().map(ToString::to_string).collect();
            self.outbox_ev.push_back(Event::Note(format!(
                "ike: the gateway offered {} remote selectors; only {} used",
                tsr.len(),
                list.join(", ")
            )));
        }
        let mut child = self.make_child(ours, self.child_spi, spi_out, local_ts, remote_ts);
        child.more_ts = pairs.get(1..).unwrap_or_default().to_vec();
        Ok(child)
    }

    fn make_child(
        &self,
        proposal: EspProposal,
        spi_in: u32,
        spi_out: u32,
        local_ts: TrafficSelector,
        remote_ts: TrafficSelector,
    ) -> ChildSa {
        let first = Keymat {
            ni: &self.ni,
            nr: &self.nr,
            g_ir: None,
            we_initiated: self.role == Role::Initiator,
        };
        self.make_child_with(proposal, spi_in, spi_out, local_ts, remote_ts, first)
    }

    /// A child with keys from `km` (the nonces and DH of the exchange that made it).
    fn make_child_with(
        &self,
        proposal: EspProposal,
        spi_in: u32,
        spi_out: u32,
        local_ts: TrafficSelector,
        remote_ts: TrafficSelector,
        km: Keymat<'_>,
    ) -> ChildSa {
        let (prf, sk_d) = match &self.keys {
            Some(k) => (k.prf, k.sk_d.as_slice()),
            None => (crate::algs::HashAlg::Sha256, &[][..]),
        };
        let enc_len = proposal.cipher.keymat_len();
        let integ_len = proposal.auth.map_or(0, |a| a.key_len());
        let [ei, ai, er, ar] =
            keys::child_keymat(prf, sk_d, km.g_ir, km.ni, km.nr, enc_len, integ_len);
        let i_to_r = EspKeys {
            encryption: ei,
            integrity: ai,
        };
        let r_to_i = EspKeys {
            encryption: er,
            integrity: ar,
        };
        let (keys_in, keys_out) = if km.we_initiated {
            (r_to_i, i_to_r)
        } else {
            (i_to_r, r_to_i)
        };
        ChildSa {
            proposal: EspProposal {
                group: None,
                ..proposal
            },
            encapsulation: Encapsulation::Tunnel,
            // IKE may be on 4500 for MOBIKE alone: ESP goes in UDP for a NAT.
            udp_encapsulation: self.nat.any(),
            spi_in,
            spi_out,
            keys_in,
            keys_out,
            local_ts: Some(local_ts),
            remote_ts: Some(remote_ts),
            more_ts: Vec::new(),
            lifetime: self.config.esp_lifetime,
            lifetime_kb: self.config.esp_lifetime_kb,
        }
    }

    /// Queues a DELETE of the IKE SA without waiting (we are failing anyway).
    fn close_quietly(&mut self) {
        if self.keys.is_none() {
            return;
        }
        let id = self.next_id;
        let d = self.seal_request(
            exchange::INFORMATIONAL,
            id,
            &[Payload::Delete {
                protocol: proto::IKE,
                spi_size: 0,
                spis: Vec::new(),
            }],
        );
        self.next_id = self.next_id.wrapping_add(1);
        self.send_raw(d);
    }

    fn on_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let id = msg.header.message_id;
        self.reply_to = Some(remote);
        self.on_request_from(now, local, remote, data, msg, id);
        self.reply_to = None;
    }

    fn on_request_from(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
        id: u32,
    ) {
        // A retransmission of the request we answered last: the same answer.
        if let Some((last, resp)) = &self.last_response
            && *last == id
        {
            let r = resp.clone();
            // The initiator may have floated to 4500 meanwhile.
            self.follow_float(local, remote);
            self.send_reply(r);
            return;
        }
        if id != self.peer_next_id {
            self.counters.dropped += 1;
            return;
        }
        if msg.header.exchange == exchange::IKE_SA_INIT {
            self.counters.dropped += 1;
            return;
        }
        let Some(payloads) = self.open(data, msg) else {
            return;
        };
        self.follow_float(local, remote);
        if let Some(kind) = codec::unsupported_critical(&codec::Chain {
            payloads: payloads
                .iter()
                .cloned()
                .map(|p| codec::Decoded {
                    critical: matches!(p, Payload::Raw { critical: true, .. }),
                    payload: p,
                })
                .collect(),
            sk_first: None,
        }) {
            self.respond_with(
                msg.header.exchange,
                id,
                &[notify_payload(
                    notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                    vec![kind],
                )],
            );
            return;
        }
        match (self.state, msg.header.exchange) {
            (State::ExpectAuth, exchange::IKE_AUTH) => self.on_auth_request(now, id, &payloads),
            (State::Established, exchange::INFORMATIONAL) => {
                self.last_heard = Some(now);
                if self.is_update_request(&payloads) {
                    self.on_update_request(local, remote, id, &payloads);
                } else {
                    self.on_informational(id, &payloads);
                }
            }
            (State::Established, exchange::CREATE_CHILD_SA) => {
                self.last_heard = Some(now);
                self.on_create_child_request(now, id, &payloads);
            }
            _ => self.counters.dropped += 1,
        }
    }

    /// A responder follows an initiator that floated to port 4500.
    fn follow_float(&mut self, local: SocketAddr, remote: SocketAddr) {
        if self.role == Role::Responder && local.port() == NAT_T_PORT && !self.floated {
            self.floated = true;
            self.remote = remote;
            self.local = local;
        }
    }

    fn on_informational(&mut self, id: u32, payloads: &[Payload]) {
        let mut answer = Vec::new();
        let mut ike_deleted = false;
        for p in payloads {
            if let Payload::Delete { protocol, spis, .. } = p {
                match *protocol {
                    proto::IKE => ike_deleted = true,
                    proto::ESP => {
                        let mut ours = Vec::new();
                        for s in spis {
                            let Ok(b) = <[u8; 4]>::try_from(s.as_slice()) else {
                                continue;
                            };
                            let out = u32::from_be_bytes(b);
                            if let Some(i) = self.children.iter().position(|c| c.spi_out == out) {
                                let c = self.children.remove(i);
                                ours.push(c.spi_in.to_be_bytes().to_vec());
                                self.outbox_ev.push_back(Event::Phase2Deleted {
                                    spi_in: c.spi_in,
                                    spi_out: c.spi_out,
                                    by_peer: true,
                                });
                            }
                        }
                        if !ours.is_empty() {
                            answer.push(Payload::Delete {
                                protocol: proto::ESP,
                                spi_size: 4,
                                spis: ours,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        if ike_deleted {
            self.respond_with(exchange::INFORMATIONAL, id, &[]);
            for c in std::mem::take(&mut self.children) {
                self.outbox_ev.push_back(Event::Phase2Deleted {
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    by_peer: true,
                });
            }
            self.outbox_ev.push_back(Event::Phase1Deleted);
            self.state = State::Dead;
            self.pending = None;
            return;
        }
        self.respond_with(exchange::INFORMATIONAL, id, &answer);
    }

    // ----- responder ----------------------------------------------------------------

    fn cookie_for(&self, ni: &[u8]) -> Vec<u8> {
        let ip = match self.remote.ip() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        crate::crypto::prf(
            crate::algs::HashAlg::Sha256,
            &self.cookie_secret,
            &[ni, &ip, &self.spi_i],
        )
    }

    fn on_init_request(&mut self, now: Instant, data: &[u8], msg: &Message) {
        let h = msg.header;
        let payloads: Vec<Payload> = msg.payloads().cloned().collect();
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group, data } => Some((*group, data)),
            _ => None,
        });
        let ni = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let (Some(sa), Some((group, ke)), Some(ni)) = (sa, ke, ni) else {
            self.counters.dropped += 1;
            return;
        };
        let stateless = |e: &mut Ike2, payloads: &[Payload]| {
            let hd = Header {
                spi_i: h.spi_i,
                spi_r: [0; 8],
                next_payload: 0,
                exchange: exchange::IKE_SA_INIT,
                flags: flags::RESPONSE,
                message_id: 0,
                length: 0,
            };
            let d = Message::encode(hd, payloads);
            e.send_raw(d);
        };
        self.spi_i = h.spi_i;
        if self.require_cookie {
            let want = self.cookie_for(ni);
            let got = payloads.iter().find_map(|p| match p {
                Payload::Notify {
                    kind: notify::COOKIE,
                    data,
                    ..
                } => Some(data),
                _ => None,
            });
            if !got.is_some_and(|g| ct_eq(g, &want)) {
                stateless(self, &[notify_payload(notify::COOKIE, want)]);
                return;
            }
        }
        // Our preference order: the first of our proposals the initiator offers.
        let offered: Vec<(u8, IkeProposal)> = sa
            .iter()
            .flat_map(|p| offered_ike(p).into_iter().map(move |o| (p.number, o)))
            .collect();
        let Some((number, chosen)) = self
            .config
            .ike_proposals
            .iter()
            .find_map(|o| offered.iter().find(|(_, t)| t == o).copied())
        else {
            stateless(
                self,
                &[notify_payload(notify::NO_PROPOSAL_CHOSEN, Vec::new())],
            );
            self.fail(Error::NoProposalChosen(
                "none of the initiator's IKE proposals is acceptable".into(),
            ));
            return;
        };
        if group != chosen.group.ike_id() {
            stateless(
                self,
                &[notify_payload(
                    notify::INVALID_KE_PAYLOAD,
                    chosen.group.ike_id().to_be_bytes().to_vec(),
                )],
            );
            return;
        }
        let dh = DhKeyPair::generate(chosen.group, &mut *self.rng);
        let shared = match dh.shared_secret(ke) {
            Ok(s) => s,
            Err(_) => {
                self.counters.dropped += 1;
                return;
            }
        };
        self.spi_r = loop {
            let s: [u8; 8] = random(&mut *self.rng);
            if s != [0; 8] {
                break s;
            }
        };
        self.ni = ni.clone();
        self.nr = random::<32>(&mut *self.rng).to_vec();
        self.proposal = Some(chosen);
        self.init_request = data.to_vec();
        self.detect_nat(&payloads, [0; 8]);
        let mut out = vec![
            Payload::Sa(vec![Proposal {
                number,
                protocol: proto::IKE,
                spi: Vec::new(),
                transforms: ike_transforms(&chosen),
            }]),
            Payload::Ke {
                group: chosen.group.ike_id(),
                data: dh.public().to_vec(),
            },
            Payload::Nonce(self.nr.clone()),
        ];
        if payloads.iter().any(|p| {
            matches!(
                p,
                Payload::Notify {
                    kind: notify::NAT_DETECTION_SOURCE_IP,
                    ..
                }
            )
        }) {
            let spi_r = self.spi_r;
            out.push(notify_payload(
                notify::NAT_DETECTION_SOURCE_IP,
                keys::nat_hash(&self.spi_i, &spi_r, self.local),
            ));
            out.push(notify_payload(
                notify::NAT_DETECTION_DESTINATION_IP,
                keys::nat_hash(&self.spi_i, &spi_r, self.remote),
            ));
        }
        if self.config.fragmentation && has_frag_notify(&payloads) {
            self.frag_ok = true;
            out.push(notify_payload(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        self.note_peer_hashes(&payloads);
        out.extend(self.auth_init_notifies());
        let hd = self.header(exchange::IKE_SA_INIT, 0, true);
        let d = Message::encode(hd, &out);
        self.init_response = d.clone();
        self.keys = Some(keys::derive(
            chosen.hash,
            chosen.cipher,
            &shared,
            &self.ni,
            &self.nr,
            &self.spi_i,
            &self.spi_r,
        ));
        self.last_response = Some((0, d.clone()));
        self.peer_next_id = 1;
        self.state = State::ExpectAuth;
        self.last_heard = Some(now);
        self.send_raw(d);
    }

    fn on_auth_request(&mut self, now: Instant, id: u32, payloads: &[Payload]) {
        if self.eap_server.is_some() {
            return self.on_eap_server_request(now, id, payloads);
        }
        let idi = payloads.iter().find_map(|p| match p {
            Payload::Id {
                initiator: true,
                kind,
                data,
            } => Some(Identity {
                kind: IdType(*kind),
                data: data.clone(),
            }),
            _ => None,
        });
        let has_auth = payloads.iter().any(|p| matches!(p, Payload::Auth { .. }));
        let idi = match idi {
            Some(i) if has_auth => i,
            // No AUTH: the initiator wants EAP (§2.16).
            Some(i) if self.config.xauth_server.is_some() => {
                return self.start_eap_server(now, id, i, payloads);
            }
            _ => {
                self.respond_with(
                    exchange::IKE_AUTH,
                    id,
                    &[notify_payload(notify::INVALID_SYNTAX, Vec::new())],
                );
                self.fail(Error::Malformed(
                    "IKE_AUTH request without IDi or AUTH".into(),
                ));
                return;
            }
        };
        let Some(k) = &self.keys else {
            return;
        };
        let octets = keys::signed_octets(
            k.prf,
            &k.sk_pi,
            &self.init_request,
            &self.nr,
            idi.kind.0,
            &idi.data,
        );
        let id_ok = self.config.remote_id.as_ref().is_none_or(|w| *w == idi);
        let checked = if id_ok {
            self.check_peer_auth(now, &idi, payloads, &octets)
        } else {
            Err(Error::AuthenticationFailed(
                "the initiator's AUTH does not match: wrong pre-shared key or identity".into(),
            ))
        };
        if let Err(e) = checked {
            self.respond_with(
                exchange::IKE_AUTH,
                id,
                &[notify_payload(notify::AUTHENTICATION_FAILED, Vec::new())],
            );
            self.fail(e);
            return;
        }
        let Some(out) = self.responder_id_and_auth(id) else {
            return;
        };
        self.finish_auth_request(now, id, idi, out, payloads);
    }

    /// The responder's IDr, CERTs and AUTH (None after failing).
    fn responder_id_and_auth(&mut self, id: u32) -> Option<Vec<Payload>> {
        let k = self.keys.as_ref()?;
        let me = self.local_identity();
        let octets = keys::signed_octets(
            k.prf,
            &k.sk_pr,
            &self.init_response,
            &self.ni,
            me.kind.0,
            &me.data,
        );
        let my_auth = match self.our_auth(&octets) {
            Ok(a) => a,
            Err(e) => {
                self.respond_with(
                    exchange::IKE_AUTH,
                    id,
                    &[notify_payload(notify::AUTHENTICATION_FAILED, Vec::new())],
                );
                self.fail(e);
                return None;
            }
        };
        let mut out = vec![Payload::Id {
            initiator: false,
            kind: me.kind.0,
            data: me.data.clone(),
        }];
        out.extend(self.cert_payloads(true));
        out.push(my_auth);
        Some(out)
    }

    /// The responder's IKE SA is authenticated both ways: answer with `out` (IDr and
    /// AUTH) and the child, configuration and selectors the request asked for.
    fn finish_auth_request(
        &mut self,
        now: Instant,
        id: u32,
        idi: Identity,
        mut out: Vec<Payload>,
        payloads: &[Payload],
    ) {
        self.state = State::Established;
        self.last_heard = Some(now);
        let Some(info) = self.phase1_info(idi) else {
            return;
        };
        self.phase1 = Some(info.clone());
        self.outbox_ev.push_back(Event::Phase1Established(info));
        self.mobike_answer(payloads, &mut out);
        // The child: CP, SA, TS.
        let mut vip = None;
        let mut vip6 = None;
        if payloads.iter().any(|p| {
            matches!(
                p,
                Payload::Cp {
                    cfg_type: cfg::CFG_REQUEST,
                    ..
                }
            )
        }) {
            match self.config.mode_config_server.clone() {
                Some(mc) => {
                    vip = mc.address;
                    self.extra.peer_vip = vip;
                    vip6 = mc.address6.map(|(a, _)| a);
                    out.push(Payload::Cp {
                        cfg_type: cfg::CFG_REPLY,
                        attrs: cp_reply(&mc),
                    });
                }
                None => {
                    out.push(notify_payload(notify::INTERNAL_ADDRESS_FAILURE, Vec::new()));
                    self.respond_with(exchange::IKE_AUTH, id, &out);
                    return;
                }
            }
        }
        match self.child_for_request(payloads, vip, vip6) {
            Ok((child, chosen)) => {
                out.push(Payload::Sa(vec![chosen]));
                let mut pairs = vec![(
                    child.local_ts.unwrap_or_else(any_v4),
                    child.remote_ts.unwrap_or_else(any_v4),
                )];
                pairs.extend(child.more_ts.iter().copied());
                out.extend(inner6::ts_payloads(&pairs, false));
                self.respond_with(exchange::IKE_AUTH, id, &out);
                self.children.push(child.clone());
                self.outbox_ev.push_back(Event::Phase2Established(child));
            }
            Err(n) => {
                out.push(notify_payload(n, Vec::new()));
                self.respond_with(exchange::IKE_AUTH, id, &out);
                self.outbox_ev
                    .push_back(Event::Phase2Failed(error_from_notify(n, &[])));
            }
        }
    }

    /// The responder's child: our ESP proposal the initiator offers, selectors
    /// narrowed to ours (the initiator's side to its virtual address, if assigned).
    fn child_for_request(
        &mut self,
        payloads: &[Payload],
        vip: Option<Ipv4Addr>,
        vip6: Option<std::net::Ipv6Addr>,
    ) -> Result<(ChildSa, Proposal), u16> {
        let sa = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Sa(v) => Some(v),
                _ => None,
            })
            .ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        let (theirs, ours) = self
            .config
            .esp_proposals
            .iter()
            .find_map(|o| sa.iter().find(|t| esp_matches(t, o)).map(|t| (t, *o)))
            .ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        let spi_out = spi_of(theirs).ok_or(notify::NO_PROPOSAL_CHOSEN)?;
        let ts = |init: bool| {
            payloads.iter().find_map(|p| match p {
                Payload::Ts {
                    initiator,
                    selectors,
                } if *initiator == init => Some(selectors.clone()),
                _ => None,
            })
        };
        let tsi = ts(true).ok_or(notify::TS_UNACCEPTABLE)?;
        let tsr = ts(false).ok_or(notify::TS_UNACCEPTABLE)?;
        // Narrowed to the first configured child both lists fit (children.rs).
        let (local_ts, remote_ts) = self
            .narrow_to_config(&tsi, &tsr, vip)
            .ok_or(notify::TS_UNACCEPTABLE)?;
        let spi_in = self.new_spi();
        let chosen = Proposal {
            number: theirs.number,
            protocol: proto::ESP,
            spi: spi_in.to_be_bytes().to_vec(),
            transforms: esp_transforms(
                &EspProposal {
                    group: None,
                    ..ours
                },
                None,
            ),
        };
        let mut child = self.make_child(ours, spi_in, spi_out, local_ts, remote_ts);
        // An IPv6 pair beside it (`inner6.rs`): our IPv6 side is a child config's.
        let v6 = self
            .config
            .children
            .iter()
            .find(|c| c.local.is_some_and(|l| l.addr.is_ipv6()));
        child.more_ts.extend(inner6::responder_v6(
            &tsi,
            &tsr,
            vip6,
            v6.and_then(|c| c.local),
            v6.and_then(|c| c.remote),
        ));
        Ok((child, chosen))
    }
}

fn has_frag_notify(payloads: &[Payload]) -> bool {
    payloads.iter().any(|p| {
        matches!(
            p,
            Payload::Notify {
                kind: notify::IKEV2_FRAGMENTATION_SUPPORTED,
                ..
            }
        )
    })
}

/// What a CFG_REPLY hands out.
fn mode_config_from(attrs: &[CfgAttr]) -> ModeConfigInfo {
    let mut mc = ModeConfigInfo::default();
    let v4 = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    for a in attrs {
        match a.kind {
            cfg::INTERNAL_IP4_ADDRESS => {
                if let Some(x) = v4(&a.value) {
                    mc.address = Some(x);
                }
            }
            cfg::INTERNAL_IP4_NETMASK => mc.netmask = v4(&a.value),
            cfg::INTERNAL_IP4_DNS => {
                if let Some(x) = v4(&a.value) {
                    mc.dns.push(IpAddr::V4(x));
                }
            }
            cfg::INTERNAL_IP4_SUBNET if a.value.len() == 8 => {
                if let (Some(addr), Some(mask)) = (v4(&a.value[..4]), v4(&a.value[4..])) {
                    let m = u32::from(mask);
                    if m.leading_ones() + m.trailing_zeros() == 32 {
                        mc.split_include.push(TrafficSelector {
                            addr: IpAddr::V4(addr),
                            prefix: m.leading_ones() as u8,
                        });
                    }
                }
            }
            _ => inner6::mode_config_v6(a, &mut mc),
        }
    }
    mc
}

fn cp_reply(mc: &ModeConfigInfo) -> Vec<CfgAttr> {
    let mut v = Vec::new();
    if let Some(a) = mc.address {
        v.push(CfgAttr {
            kind: cfg::INTERNAL_IP4_ADDRESS,
            value: a.octets().to_vec(),
        });
    }
    for d in &mc.dns {
        if let IpAddr::V4(a) = d {
            v.push(CfgAttr {
                kind: cfg::INTERNAL_IP4_DNS,
                value: a.octets().to_vec(),
            });
        }
    }
    for s in &mc.split_include {
        if let IpAddr::V4(a) = s.addr {
            let mask = if s.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(s.prefix.min(32)))
            };
            let mut value = a.octets().to_vec();
            value.extend_from_slice(&mask.to_be_bytes());
            v.push(CfgAttr {
                kind: cfg::INTERNAL_IP4_SUBNET,
                value,
            });
        }
    }
    inner6::cp_reply_v6(mc, &mut v);
    v
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Ike2>();
}
