//! The transaction exchange (ISAKMP exchange type 6) after phase 1: XAuth
//! (draft-beaulieu-ike-xauth-02) and Mode Config (draft-dukes-ike-mode-cfg-02),
//! both roles.
//!
//! ```text
//! XAuth (gateway asks):        REQUEST(USER_NAME, USER_PASSWORD) -> REPLY(values)
//!                              SET(XAUTH_STATUS)                 -> ACK
//! Mode Config, pull:  client   REQUEST(INTERNAL_IP4_ADDRESS, ...) -> REPLY(values)
//! Mode Config, push:  gateway  SET(values)                         -> ACK
//! ```
//! Every message is `HDR*, HASH, ATTR` with HASH = prf(SKEYID_a, M-ID | ATTR).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::codec::{
    self, AttrPayload, AttrValue, Attribute, ExchangeType, Header, Payload, PayloadType, cfg_attr,
};
use crate::crypto;

use super::exchange::Pending;
use super::phase1::{Ike, split_hash};
use super::{ChildConfig, Error, Event, Role, TrafficSelector};

/// How long the client waits for the gateway to start XAuth or push Mode Config.
pub(crate) const SETUP_PATIENCE: Duration = Duration::from_secs(30);
/// Strings from the gateway (banner, messages) are cut to this many characters.
const MAX_TEXT: usize = 2048;

/// XAuth credentials of the client. The password is optional: without it the
/// engine asks with [`Event::CredentialsRequired`].
#[derive(Clone)]
pub struct XAuthConfig {
    pub username: String,
    pub password: Option<Zeroizing<String>>,
}

impl fmt::Debug for XAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XAuthConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The gateway side of XAuth (used by the responder in tests and by our own responder).
#[derive(Clone)]
pub struct XAuthServer {
    pub username: String,
    pub password: Zeroizing<String>,
    /// Further rounds asking for a one-time passcode after the password.
    pub passcode: Option<Zeroizing<String>>,
}

impl fmt::Debug for XAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XAuthServer")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How the virtual address and DNS are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeConfigMode {
    #[default]
    Off,
    /// We ask (REQUEST/REPLY).
    Pull,
    /// The gateway sends (SET/ACK).
    Push,
}

/// What the gateway handed out by Mode Config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModeConfigInfo {
    pub address: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub address6: Option<(Ipv6Addr, u8)>,
    pub dns: Vec<IpAddr>,
    pub nbns: Vec<Ipv4Addr>,
    /// Networks to send through the tunnel (Cisco Unity split-include, INTERNAL_IP4_SUBNET).
    pub split_include: Vec<TrafficSelector>,
    /// Networks to keep outside the tunnel (Unity local LAN / split-exclude).
    pub split_exclude: Vec<TrafficSelector>,
    pub default_domain: Option<String>,
    pub split_dns: Vec<String>,
    pub banner: Option<String>,
    pub save_password: bool,
}

pub use postern_algs::xauth::{Credentials, XAuthField};

/// An XAuth round to answer with [`Ike::submit_credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsRequest {
    pub fields: Vec<XAuthField>,
    /// The gateway's message or challenge, if any.
    pub message: Option<String>,
}

/// Where the post-phase-1 setup stands.
#[derive(Debug)]
pub(crate) enum Setup {
    /// Phase 1 not done yet.
    NotStarted,
    /// Client: waiting for the gateway's XAuth REQUEST.
    AwaitXAuth {
        deadline: Instant,
    },
    /// Client: the user must answer this round (message id of the REQUEST, the IV after it).
    Prompting {
        mid: u32,
        iv: Vec<u8>,
        request: Vec<u8>,
        asked: Vec<u16>,
        rounds: u32,
    },
    /// Client: answered; waiting for another REQUEST or the SET with the status.
    AwaitXAuthStatus {
        deadline: Instant,
        rounds: u32,
    },
    /// Client, pull: REQUEST sent.
    AwaitModeConfigReply {
        mid: u32,
        iv: Vec<u8>,
        pending: Pending,
    },
    /// Client, push: waiting for SET.
    AwaitModeConfigSet {
        deadline: Instant,
    },
    /// Gateway: XAuth REQUEST (round `round`) or SET(status) sent, answer awaited.
    ServerXAuth {
        mid: u32,
        iv: Vec<u8>,
        pending: Pending,
        round: u32,
        status_sent: Option<bool>,
    },
    /// Gateway: waiting for the client's Mode Config REQUEST (pull).
    ServerAwaitModeConfig,
    /// Gateway: SET sent (push), ACK awaited.
    ServerModeConfigSet {
        mid: u32,
        iv: Vec<u8>,
        pending: Pending,
    },
    Done,
}

impl Setup {
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Setup::AwaitXAuth { deadline }
            | Setup::AwaitXAuthStatus { deadline, .. }
            | Setup::AwaitModeConfigSet { deadline } => Some(*deadline),
            Setup::AwaitModeConfigReply { pending, .. }
            | Setup::ServerXAuth { pending, .. }
            | Setup::ServerModeConfigSet { pending, .. } => Some(pending.deadline),
            _ => None,
        }
    }
}

fn field_of(kind: u16) -> Option<XAuthField> {
    Some(match kind {
        cfg_attr::XAUTH_USER_NAME => XAuthField::UserName,
        cfg_attr::XAUTH_USER_PASSWORD => XAuthField::Password,
        cfg_attr::XAUTH_PASSCODE => XAuthField::Passcode,
        cfg_attr::XAUTH_NEXT_PIN => XAuthField::NextPin,
        cfg_attr::XAUTH_ANSWER => XAuthField::Answer,
        _ => return None,
    })
}

fn kind_of(f: XAuthField) -> u16 {
    match f {
        XAuthField::UserName => cfg_attr::XAUTH_USER_NAME,
        XAuthField::Password => cfg_attr::XAUTH_USER_PASSWORD,
        XAuthField::Passcode => cfg_attr::XAUTH_PASSCODE,
        XAuthField::NextPin => cfg_attr::XAUTH_NEXT_PIN,
        XAuthField::Answer => cfg_attr::XAUTH_ANSWER,
    }
}

/// Printable text from the gateway: control characters dropped, bounded.
pub(crate) fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

fn bytes(a: &Attribute) -> &[u8] {
    match &a.value {
        AttrValue::Variable(v) => v,
        AttrValue::Basic(_) => &[],
    }
}

fn mask_prefix(m: u32) -> Option<u8> {
    let p = m.leading_ones();
    (m.checked_shl(p).unwrap_or(0) == 0).then_some(p as u8)
}

/// Reads the Mode Config attributes of a REPLY or SET.
pub(crate) fn parse_mode_config(attrs: &[Attribute]) -> ModeConfigInfo {
    let mut info = ModeConfigInfo::default();
    let v4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    let nets = |b: &[u8], out: &mut Vec<TrafficSelector>| {
        // Cisco Unity: 14 bytes per network: address, mask, 6 bytes of padding.
        for e in b.chunks_exact(14) {
            let (Some(a), Some(m)) = (v4(&e[..4]), v4(&e[4..8])) else {
                continue;
            };
            if let Some(prefix) = mask_prefix(u32::from(m)) {
                let addr = Ipv4Addr::from(u32::from(a) & u32::from(m));
                out.push(TrafficSelector {
                    addr: IpAddr::V4(addr),
                    prefix,
                });
            }
        }
    };
    for a in attrs {
        let b = bytes(a);
        match a.kind {
            cfg_attr::INTERNAL_IP4_ADDRESS if info.address.is_none() => info.address = v4(b),
            cfg_attr::INTERNAL_IP4_NETMASK => info.netmask = v4(b),
            cfg_attr::INTERNAL_IP4_DNS => info.dns.extend(v4(b).map(IpAddr::V4)),
            cfg_attr::INTERNAL_IP4_NBNS => info.nbns.extend(v4(b)),
            cfg_attr::INTERNAL_IP6_ADDRESS if b.len() == 17 => {
                if let Ok(a) = <[u8; 16]>::try_from(&b[..16]) {
                    info.address6 = Some((Ipv6Addr::from(a), b[16].min(128)));
                }
            }
            cfg_attr::INTERNAL_IP6_DNS => {
                if let Ok(a) = <[u8; 16]>::try_from(b) {
                    info.dns.push(IpAddr::V6(Ipv6Addr::from(a)));
                }
            }
            cfg_attr::INTERNAL_IP4_SUBNET if b.len() == 8 => {
                if let (Some(ad), Some(m)) = (v4(&b[..4]), v4(&b[4..]))
                    && let Some(prefix) = mask_prefix(u32::from(m))
                {
                    let addr = Ipv4Addr::from(u32::from(ad) & u32::from(m));
                    info.split_include.push(TrafficSelector {
                        addr: IpAddr::V4(addr),
                        prefix,
                    });
                }
            }
            cfg_attr::UNITY_SPLIT_INCLUDE => nets(b, &mut info.split_include),
            cfg_attr::UNITY_LOCAL_LAN => nets(b, &mut info.split_exclude),
            cfg_attr::UNITY_DEF_DOMAIN if !b.is_empty() => info.default_domain = Some(text(b)),
            cfg_attr::UNITY_SPLITDNS_NAME => info.split_dns.extend(
                text(b)
                    .split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            cfg_attr::UNITY_BANNER if !b.is_empty() => info.banner = Some(text(b)),
            cfg_attr::UNITY_SAVE_PASSWD => info.save_password = a.as_u64().unwrap_or(0) != 0,
            _ => {}
        }
    }
    info.split_include.dedup();
    info
}

/// The attributes a gateway sends for `info` (our responder side).
pub(crate) fn mode_config_attributes(info: &ModeConfigInfo) -> Vec<Attribute> {
    let mut v = Vec::new();
    if let Some(a) = info.address {
        v.push(Attribute::variable(
            cfg_attr::INTERNAL_IP4_ADDRESS,
            a.octets().to_vec(),
        ));
    }
    if let Some(m) = info.netmask {
        v.push(Attribute::variable(
            cfg_attr::INTERNAL_IP4_NETMASK,
            m.octets().to_vec(),
        ));
    }
    for d in &info.dns {
        match d {
            IpAddr::V4(a) => v.push(Attribute::variable(
                cfg_attr::INTERNAL_IP4_DNS,
                a.octets().to_vec(),
            )),
            IpAddr::V6(a) => v.push(Attribute::variable(
                cfg_attr::INTERNAL_IP6_DNS,
                a.octets().to_vec(),
            )),
        }
    }
    if !info.split_include.is_empty() {
        let mut b = Vec::new();
        for t in &info.split_include {
            if let IpAddr::V4(a) = t.addr {
                let m = if t.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - t.prefix as u32)
                };
                b.extend_from_slice(&a.octets());
                b.extend_from_slice(&m.to_be_bytes());
                b.extend_from_slice(&[0; 6]);
            }
        }
        v.push(Attribute::variable(cfg_attr::UNITY_SPLIT_INCLUDE, b));
    }
    if let Some(d) = &info.default_domain {
        v.push(Attribute::variable(
            cfg_attr::UNITY_DEF_DOMAIN,
            d.as_bytes().to_vec(),
        ));
    }
    if !info.split_dns.is_empty() {
        v.push(Attribute::variable(
            cfg_attr::UNITY_SPLITDNS_NAME,
            info.split_dns.join(",").into_bytes(),
        ));
    }
    if let Some(b) = &info.banner {
        v.push(Attribute::variable(
            cfg_attr::UNITY_BANNER,
            b.as_bytes().to_vec(),
        ));
    }
    v
}

/// What a client asks for in a Mode Config REQUEST.
fn mode_config_request(want: Option<Ipv4Addr>) -> Vec<Attribute> {
    let empty = |k| Attribute::variable(k, Vec::new());
    let address = want.map(|a| a.octets().to_vec()).unwrap_or_default();
    vec![
        Attribute::variable(cfg_attr::INTERNAL_IP4_ADDRESS, address),
        empty(cfg_attr::INTERNAL_IP4_NETMASK),
        empty(cfg_attr::INTERNAL_IP4_DNS),
        empty(cfg_attr::INTERNAL_IP4_NBNS),
        empty(cfg_attr::INTERNAL_IP6_DNS),
        empty(cfg_attr::UNITY_BANNER),
        empty(cfg_attr::UNITY_DEF_DOMAIN),
        empty(cfg_attr::UNITY_SPLITDNS_NAME),
        empty(cfg_attr::UNITY_SPLIT_INCLUDE),
        empty(cfg_attr::UNITY_LOCAL_LAN),
        Attribute::basic(cfg_attr::UNITY_SAVE_PASSWD, 0),
        Attribute::variable(
            cfg_attr::APPLICATION_VERSION,
            format!("Postern {}", env!("CARGO_PKG_VERSION")).into_bytes(),
        ),
    ]
}

impl Ike {
    /// After phase 1: what comes next (XAuth, Mode Config, or quick mode).
    pub(super) fn begin_setup(&mut self, now: Instant) {
        self.last_refusal = None;
        match self.role {
            Role::Initiator => {
                if self.config.xauth.is_some() {
                    self.setup = Setup::AwaitXAuth {
                        deadline: super::now_plus(now, SETUP_PATIENCE),
                    };
                } else {
                    self.after_xauth(now);
                }
            }
            Role::Responder => {
                if self.config.xauth_server.is_some() {
                    self.server_xauth_round(now, 0);
                } else {
                    self.server_after_xauth(now);
                }
            }
        }
    }

    /// Client: XAuth done (or not used): Mode Config, then quick mode.
    fn after_xauth(&mut self, now: Instant) {
        match self.config.mode_config {
            ModeConfigMode::Off => {
                self.setup = Setup::Done;
                let children = self.config.children.clone();
                for c in children {
                    self.start_quick(now, c);
                }
            }
            ModeConfigMode::Push => {
                self.setup = Setup::AwaitModeConfigSet {
                    deadline: super::now_plus(now, SETUP_PATIENCE),
                };
            }
            ModeConfigMode::Pull => {
                let mid = self.new_message_id();
                let attr = AttrPayload {
                    cfg_type: cfg_attr::REQUEST,
                    identifier: self.cfg_identifier(),
                    attributes: mode_config_request(self.config.requested_address),
                };
                let iv = self.exchange_iv(mid);
                match self.seal_transaction(mid, attr, &iv) {
                    Ok((d, last)) => {
                        let pending = Pending::new(d.clone(), now, &self.config.retransmit);
                        self.setup = Setup::AwaitModeConfigReply {
                            mid,
                            iv: last,
                            pending,
                        };
                        self.send_raw(d);
                    }
                    Err(e) => self.fail_setup(e),
                }
            }
        }
    }

    /// Client: Mode Config result in hand: report it and start quick mode with
    /// the virtual IP as our selector and the split networks as the peer's.
    fn mode_config_done(&mut self, now: Instant, info: ModeConfigInfo) {
        self.setup = Setup::Done;
        if self.is_renewal {
            // A renewal only re-establishes the address on the new ISAKMP SA; the
            // ESP SAs are moved over by the SA it renews.
            self.mode_config = Some(info);
            return;
        }
        self.out.events.push_back(Event::ModeConfig(info.clone()));
        let Some(vip) = info.address else {
            self.fail_setup(Error::Local(
                "the gateway assigned no virtual IP address (Mode Config)".into(),
            ));
            return;
        };
        let local = TrafficSelector::host(IpAddr::V4(vip));
        let remotes: Vec<TrafficSelector> = if !self.config.remote_networks.is_empty() {
            self.config.remote_networks.clone()
        } else if !info.split_include.is_empty() {
            info.split_include.clone()
        } else {
            vec![TrafficSelector {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 0,
            }]
        };
        self.mode_config = Some(info);
        for r in remotes.into_iter().filter(|r| r.addr.is_ipv4()) {
            self.start_quick(
                now,
                ChildConfig {
                    local: Some(local),
                    remote: Some(r),
                },
            );
        }
    }

    fn fail_setup(&mut self, e: Error) {
        self.setup = Setup::Done;
        self.fail(e);
    }

    fn cfg_identifier(&mut self) -> u16 {
        u16::from_be_bytes(super::random_bytes::<2>(&mut *self.rng))
    }

    /// `HDR*, HASH, ATTR` for a transaction with `iv`; returns datagram and next IV.
    fn seal_transaction(
        &self,
        mid: u32,
        attr: AttrPayload,
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let keys = self
            .phase1_keys()
            .ok_or_else(|| Error::Local("no phase 1 keys".into()))?;
        let (first, body) = codec::encode_payloads(&[Payload::Attr(attr)]);
        let hash = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), &body]);
        let mut all = Vec::new();
        Payload::Hash(hash).encode_with_next(first, &mut all);
        all.extend_from_slice(&body);
        self.seal(ExchangeType::TRANSACTION, mid, PayloadType::HASH, all, iv)
    }

    /// Answers a request of the peer in the same transaction and remembers the
    /// answer for retransmitted requests.
    fn answer_transaction(
        &mut self,
        request: &[u8],
        mid: u32,
        iv: &[u8],
        attr: AttrPayload,
    ) -> Result<(), Error> {
        let (d, _) = self.seal_transaction(mid, attr, iv)?;
        self.set_last_exchange(request.to_vec(), d.clone());
        self.send_raw(d);
        Ok(())
    }

    pub(super) fn handle_transaction(
        &mut self,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<(), Error> {
        let mid = header.message_id;
        let iv = match &self.setup {
            Setup::Prompting { mid: m, .. } if *m == mid => {
                // A retransmitted REQUEST while the user is typing: ignore.
                self.counters.dropped += 1;
                return Ok(());
            }
            Setup::AwaitModeConfigReply { mid: m, iv, .. }
            | Setup::ServerXAuth { mid: m, iv, .. }
            | Setup::ServerModeConfigSet { mid: m, iv, .. }
                if *m == mid =>
            {
                iv.clone()
            }
            _ => self.exchange_iv(mid),
        };
        let opened = match self.open(header, data, &iv) {
            Ok(o) => o,
            Err(e) => {
                self.refuse_transaction(mid, e);
                return Ok(());
            }
        };
        let Some((hash, rest)) = split_hash(&opened) else {
            self.refuse_transaction(mid, "it does not start with a HASH payload");
            return Ok(());
        };
        let Some(keys) = self.phase1_keys() else {
            return Ok(());
        };
        let expected = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), rest]);
        if !crypto::ct_eq(&expected, hash) {
            self.refuse_transaction(
                mid,
                "its HASH does not match prf(SKEYID_a, M-ID | payloads after HASH)",
            );
            return Ok(());
        }
        let Some(attr) = opened.payloads.iter().find_map(|d| match &d.payload {
            Payload::Attr(a) => Some(a.clone()),
            _ => None,
        }) else {
            self.refuse_transaction(mid, "it has no attribute payload");
            return Ok(());
        };
        let next_iv = opened.last_block.clone();
        match self.role {
            Role::Initiator => self.client_transaction(now, data, mid, next_iv, attr),
            Role::Responder => self.server_transaction(now, data, mid, next_iv, attr),
        }
    }

    /// A transaction message (XAuth / Mode Config) that could not be used. While
    /// the setup waits for something it is reported ([`Ike::refuse`]), named after
    /// what we wait for; afterwards (a late retransmission) it is only counted.
    fn refuse_transaction(&mut self, mid: u32, why: impl fmt::Display) {
        let what = match &self.setup {
            Setup::AwaitModeConfigReply { mid: m, .. } if *m == mid => "the Mode Config reply",
            Setup::AwaitModeConfigReply { .. } | Setup::AwaitModeConfigSet { .. } => {
                "a Mode Config message"
            }
            Setup::AwaitXAuth { .. } | Setup::AwaitXAuthStatus { .. } => "an XAuth message",
            Setup::ServerXAuth { .. } => "an XAuth reply",
            Setup::ServerModeConfigSet { .. } => "a Mode Config acknowledgement",
            _ => {
                self.counters.dropped += 1;
                return;
            }
        };
        self.refuse(what, why);
    }

    // ----- client ----------------------------------------------------------

    fn client_transaction(
        &mut self,
        now: Instant,
        data: &[u8],
        mid: u32,
        iv: Vec<u8>,
        attr: AttrPayload,
    ) -> Result<(), Error> {
        let is_xauth = attr
            .attributes
            .iter()
            .any(|a| (16520..=16529).contains(&a.kind));
        match (attr.cfg_type, is_xauth) {
            (cfg_attr::REQUEST, true) => {
                let rounds = match &self.setup {
                    Setup::AwaitXAuth { .. } => 0,
                    Setup::AwaitXAuthStatus { rounds, .. } => *rounds,
                    _ => {
                        self.counters.dropped += 1;
                        return Ok(());
                    }
                };
                self.on_xauth_request(now, data, mid, iv, attr, rounds)
            }
            (cfg_attr::SET, true) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitXAuthStatus { .. } | Setup::AwaitXAuth { .. }
                ) {
                    self.counters.dropped += 1;
                    return Ok(());
                }
                let status = attr
                    .attributes
                    .iter()
                    .find(|a| a.kind == cfg_attr::XAUTH_STATUS)
                    .and_then(Attribute::as_u64);
                let message = attr
                    .attributes
                    .iter()
                    .find(|a| a.kind == cfg_attr::XAUTH_MESSAGE)
                    .map(|a| text(bytes(a)))
                    .filter(|s| !s.is_empty());
                let ack = AttrPayload {
                    cfg_type: cfg_attr::ACK,
                    identifier: attr.identifier,
                    attributes: vec![Attribute::basic(
                        cfg_attr::XAUTH_STATUS,
                        status.unwrap_or(0) as u16,
                    )],
                };
                self.answer_transaction(data, mid, &iv, ack)?;
                if status == Some(cfg_attr::XAUTH_STATUS_OK as u64) {
                    self.out.events.push_back(Event::XAuthSucceeded);
                    self.after_xauth(now);
                    Ok(())
                } else {
                    Err(Error::XAuthFailed(
                        message.unwrap_or_else(|| "the gateway refused the login".into()),
                    ))
                }
            }
            (cfg_attr::REPLY, false) => {
                let Setup::AwaitModeConfigReply { mid: m, .. } = &self.setup else {
                    self.counters.dropped += 1;
                    return Ok(());
                };
                if *m != mid {
                    self.counters.dropped += 1;
                    return Ok(());
                }
                let info = parse_mode_config(&attr.attributes);
                self.mode_config_done(now, info);
                Ok(())
            }
            (cfg_attr::SET, false) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitModeConfigSet { .. } | Setup::AwaitModeConfigReply { .. }
                ) {
                    self.counters.dropped += 1;
                    return Ok(());
                }
                let info = parse_mode_config(&attr.attributes);
                // ACK names the attributes we accept.
                let acked: Vec<Attribute> = attr
                    .attributes
                    .iter()
                    .map(|a| Attribute::variable(a.kind, Vec::new()))
                    .collect();
                let ack = AttrPayload {
                    cfg_type: cfg_attr::ACK,
                    identifier: attr.identifier,
                    attributes: acked,
                };
                self.answer_transaction(data, mid, &iv, ack)?;
                self.mode_config_done(now, info);
                Ok(())
            }
            _ => {
                self.counters.dropped += 1;
                Ok(())
            }
        }
    }

    fn on_xauth_request(
        &mut self,
        now: Instant,
        data: &[u8],
        mid: u32,
        iv: Vec<u8>,
        attr: AttrPayload,
        rounds: u32,
    ) -> Result<(), Error> {
        let asked: Vec<u16> = attr.attributes.iter().map(|a| a.kind).collect();
        let message = attr
            .attributes
            .iter()
            .filter(|a| a.kind == cfg_attr::XAUTH_MESSAGE || a.kind == cfg_attr::XAUTH_CHALLENGE)
            .map(|a| text(bytes(a)))
            .find(|s| !s.is_empty());
        let fields: Vec<XAuthField> = asked.iter().filter_map(|k| field_of(*k)).collect();
        self.cfg_request_identifier = attr.identifier;
        let cfg = self.config.xauth.clone();
        // The first round answers itself when the profile holds everything asked.
        let automatic = rounds == 0
            && cfg.as_ref().is_some_and(|c| {
                fields.iter().all(|f| match f {
                    XAuthField::UserName => true,
                    XAuthField::Password => c.password.is_some(),
                    _ => false,
                })
            });
        if automatic {
            let c = cfg.unwrap_or(XAuthConfig {
                username: String::new(),
                password: None,
            });
            let mut values = Vec::new();
            for f in &fields {
                match f {
                    XAuthField::UserName => values.push((*f, Zeroizing::new(c.username.clone()))),
                    XAuthField::Password => values.push((
                        *f,
                        c.password
                            .clone()
                            .unwrap_or_else(|| Zeroizing::new(String::new())),
                    )),
                    _ => {}
                }
            }
            self.send_xauth_reply(now, data, mid, &iv, &asked, Credentials { values }, rounds)
        } else {
            self.setup = Setup::Prompting {
                mid,
                iv,
                request: data.to_vec(),
                asked,
                rounds,
            };
            self.out
                .events
                .push_back(Event::CredentialsRequired(CredentialsRequest {
                    fields,
                    message,
                }));
            Ok(())
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_xauth_reply(
        &mut self,
        now: Instant,
        request: &[u8],
        mid: u32,
        iv: &[u8],
        asked: &[u16],
        creds: Credentials,
        rounds: u32,
    ) -> Result<(), Error> {
        let mut attributes = Vec::new();
        for k in asked {
            if *k == cfg_attr::XAUTH_TYPE {
                attributes.push(Attribute::basic(
                    cfg_attr::XAUTH_TYPE,
                    cfg_attr::XAUTH_TYPE_GENERIC,
                ));
                continue;
            }
            let Some(f) = field_of(*k) else { continue };
            let value = creds
                .values
                .iter()
                .find(|(g, _)| *g == f)
                .map(|(_, v)| v.as_bytes().to_vec());
            let value = match (f, value) {
                (_, Some(v)) => v,
                (XAuthField::UserName, None) => self
                    .config
                    .xauth
                    .as_ref()
                    .map(|c| c.username.clone().into_bytes())
                    .unwrap_or_default(),
                (_, None) => Vec::new(),
            };
            attributes.push(Attribute::variable(kind_of(f), value));
        }
        let reply = AttrPayload {
            cfg_type: cfg_attr::REPLY,
            identifier: self.cfg_request_identifier,
            attributes,
        };
        let (d, _) = self.seal_transaction(mid, reply, iv)?;
        // The reply may hold a password: it is not kept for retransmission beyond the SA.
        self.set_last_exchange(request.to_vec(), d.clone());
        self.send_raw(d);
        self.setup = Setup::AwaitXAuthStatus {
            deadline: super::now_plus(now, SETUP_PATIENCE),
            rounds: rounds + 1,
        };
        Ok(())
    }

    /// Answers the pending XAuth round (after [`Event::CredentialsRequired`]).
    pub fn submit_credentials(&mut self, now: Instant, creds: Credentials) -> Result<(), Error> {
        // A phase 1 renewal asking again (XAuth on the new ISAKMP SA).
        if let Some(r) = self.renewal.as_mut()
            && matches!(r.setup, Setup::Prompting { .. })
        {
            let res = r.submit_credentials(now, creds);
            self.pump_renewal(now);
            return res;
        }
        let Setup::Prompting {
            mid,
            iv,
            request,
            asked,
            rounds,
        } = std::mem::replace(&mut self.setup, Setup::NotStarted)
        else {
            return Err(Error::Local(
                "no XAuth question is waiting for an answer".into(),
            ));
        };
        let r = self.send_xauth_reply(now, &request, mid, &iv, &asked, creds, rounds);
        if let Err(e) = &r {
            self.fail(e.clone());
        }
        r
    }

    // ----- gateway (responder) ----------------------------------------------

    fn server_xauth_round(&mut self, now: Instant, round: u32) {
        let mut attributes = vec![Attribute::basic(
            cfg_attr::XAUTH_TYPE,
            cfg_attr::XAUTH_TYPE_GENERIC,
        )];
        if round == 0 {
            attributes.push(Attribute::variable(cfg_attr::XAUTH_USER_NAME, Vec::new()));
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_USER_PASSWORD,
                Vec::new(),
            ));
        } else {
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_MESSAGE,
                b"Enter your one-time passcode".to_vec(),
            ));
            attributes.push(Attribute::variable(cfg_attr::XAUTH_PASSCODE, Vec::new()));
        }
        let attr = AttrPayload {
            cfg_type: cfg_attr::REQUEST,
            identifier: self.cfg_identifier(),
            attributes,
        };
        self.server_send(now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round,
            status_sent: None,
        });
    }

    fn server_status(&mut self, now: Instant, ok: bool) {
        let mut attributes = vec![Attribute::basic(cfg_attr::XAUTH_STATUS, u16::from(ok))];
        if !ok {
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_MESSAGE,
                b"Login incorrect".to_vec(),
            ));
        }
        let attr = AttrPayload {
            cfg_type: cfg_attr::SET,
            identifier: self.cfg_identifier(),
            attributes,
        };
        self.server_send(now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round: 0,
            status_sent: Some(ok),
        });
    }

    fn server_send(
        &mut self,
        now: Instant,
        attr: AttrPayload,
        state: impl FnOnce(u32, Vec<u8>, Pending) -> Setup,
    ) {
        let mid = self.new_message_id();
        let iv = self.exchange_iv(mid);
        match self.seal_transaction(mid, attr, &iv) {
            Ok((d, last)) => {
                let pending = Pending::new(d.clone(), now, &self.config.retransmit);
                self.setup = state(mid, last, pending);
                self.send_raw(d);
            }
            Err(e) => self.fail_setup(e),
        }
    }

    fn server_after_xauth(&mut self, now: Instant) {
        match (
            self.config.mode_config,
            self.config.mode_config_server.clone(),
        ) {
            (ModeConfigMode::Push, Some(info)) => {
                let attr = AttrPayload {
                    cfg_type: cfg_attr::SET,
                    identifier: self.cfg_identifier(),
                    attributes: mode_config_attributes(&info),
                };
                self.server_send(now, attr, |mid, iv, pending| Setup::ServerModeConfigSet {
                    mid,
                    iv,
                    pending,
                });
            }
            (ModeConfigMode::Pull, Some(_)) => self.setup = Setup::ServerAwaitModeConfig,
            _ => self.setup = Setup::Done,
        }
    }

    fn server_transaction(
        &mut self,
        now: Instant,
        data: &[u8],
        mid: u32,
        iv: Vec<u8>,
        attr: AttrPayload,
    ) -> Result<(), Error> {
        let setup = std::mem::replace(&mut self.setup, Setup::NotStarted);
        match (setup, attr.cfg_type) {
            (
                Setup::ServerXAuth {
                    mid: m,
                    round,
                    status_sent: None,
                    ..
                },
                cfg_attr::REPLY,
            ) if m == mid => {
                let Some(server) = self.config.xauth_server.clone() else {
                    return Ok(());
                };
                let get = |k: u16| {
                    attr.attributes
                        .iter()
                        .find(|a| a.kind == k)
                        .map(|a| bytes(a).to_vec())
                };
                let ok = if round == 0 {
                    get(cfg_attr::XAUTH_USER_NAME).as_deref() == Some(server.username.as_bytes())
                        && get(cfg_attr::XAUTH_USER_PASSWORD)
                            .is_some_and(|p| crypto::ct_eq(&p, server.password.as_bytes()))
                } else {
                    let want = server
                        .passcode
                        .as_ref()
                        .map(|p| p.as_bytes().to_vec())
                        .unwrap_or_default();
                    get(cfg_attr::XAUTH_PASSCODE).is_some_and(|p| crypto::ct_eq(&p, &want))
                };
                if ok && round == 0 && server.passcode.is_some() {
                    self.server_xauth_round(now, 1);
                } else {
                    self.server_status(now, ok);
                }
                Ok(())
            }
            (
                Setup::ServerXAuth {
                    mid: m,
                    status_sent: Some(ok),
                    ..
                },
                cfg_attr::ACK,
            ) if m == mid => {
                if ok {
                    self.server_after_xauth(now);
                    Ok(())
                } else {
                    Err(Error::XAuthFailed("the client's login was refused".into()))
                }
            }
            (Setup::ServerAwaitModeConfig, cfg_attr::REQUEST) => {
                let info = self.config.mode_config_server.clone().unwrap_or_default();
                let reply = AttrPayload {
                    cfg_type: cfg_attr::REPLY,
                    identifier: attr.identifier,
                    attributes: mode_config_attributes(&info),
                };
                self.answer_transaction(data, mid, &iv, reply)?;
                self.setup = Setup::Done;
                Ok(())
            }
            (Setup::ServerModeConfigSet { mid: m, .. }, cfg_attr::ACK) if m == mid => {
                self.setup = Setup::Done;
                Ok(())
            }
            (other, _) => {
                self.setup = other;
                self.counters.dropped += 1;
                Ok(())
            }
        }
    }

    /// Timeouts of the setup phase: resend our pending message or give up.
    pub(super) fn setup_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.setup.deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        let cfg = self.config.retransmit;
        let resend = match &mut self.setup {
            Setup::AwaitModeConfigReply { pending, .. }
            | Setup::ServerXAuth { pending, .. }
            | Setup::ServerModeConfigSet { pending, .. } => pending.on_timeout(now, &cfg).ok_or(()),
            _ => Err(()),
        };
        match resend {
            Ok(d) => {
                self.counters.retransmits += 1;
                self.send_raw(d);
            }
            Err(()) => {
                let e = match &self.setup {
                    Setup::AwaitXAuth { .. } => Error::Local(
                        "the gateway did not start XAuth (is XAuth configured on the gateway? remove [xauth] otherwise)".into(),
                    ),
                    Setup::AwaitXAuthStatus { .. } => Error::XAuthFailed("the gateway never answered our login".into()),
                    Setup::AwaitModeConfigSet { .. } => Error::Local(
                        "the gateway pushed no Mode Config (try mode_config = \"pull\")".into(),
                    ),
                    Setup::AwaitModeConfigReply { .. } => Error::Local("the gateway did not answer the Mode Config request".into()),
                    _ => Error::NotResponding(cfg.tries.saturating_sub(1)),
                };
                // A message that came and was refused is the likelier story than
                // silence: say so in the one line the user gets.
                let e = match (e, self.last_refusal.take()) {
                    (Error::Local(_), Some(r)) => {
                        Error::Local(format!("{r}; gave up waiting for a usable one"))
                    }
                    (Error::XAuthFailed(m), Some(r)) => Error::XAuthFailed(format!("{m} ({r})")),
                    (e, _) => e,
                };
                self.fail_setup(e);
            }
        }
    }
}
