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

use crate::codec::{AttrPayload, AttrValue, Attribute, ExchangeType, Header, Payload, cfg_attr};
use crate::crypto;

use super::exchange::Pending;
use super::sa_ctx::{IsakmpSa, split_hash};
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

/// What the setup asks of the IKE SA after a step.
#[derive(Debug)]
pub(crate) enum Step {
    /// Waiting for the peer or the user.
    Wait,
    /// The setup is complete: start quick modes for these children.
    Done(Vec<ChildConfig>),
    /// The setup failed for good: the IKE SA fails with this error.
    Failed(Error),
}

/// The transaction exchanges after phase 1 (XAuth, Mode Config), either role.
#[derive(Debug)]
pub(crate) struct Transaction {
    setup: Setup,
    /// What Mode Config gave us.
    mode_config: Option<ModeConfigInfo>,
    /// The identifier of the gateway's last XAuth REQUEST (our REPLY repeats it).
    cfg_request_identifier: u16,
    /// This setup runs on a phase 1 renewal: the result only re-establishes the
    /// address; the renewed SA moves the ESP SAs.
    renewal: bool,
}

impl Transaction {
    pub fn new(renewal: bool) -> Transaction {
        Transaction {
            setup: Setup::NotStarted,
            mode_config: None,
            cfg_request_identifier: 0,
            renewal,
        }
    }

    /// Phase 1, XAuth and Mode Config are all done.
    pub fn is_done(&self) -> bool {
        matches!(self.setup, Setup::Done)
    }
    /// An XAuth question waits for the user's answer.
    pub fn is_prompting(&self) -> bool {
        matches!(self.setup, Setup::Prompting { .. })
    }
    pub fn deadline(&self) -> Option<Instant> {
        self.setup.deadline()
    }
    pub fn mode_config(&self) -> Option<&ModeConfigInfo> {
        self.mode_config.as_ref()
    }
    /// A renewal's Mode Config result replaces ours (the same address, normally).
    pub fn adopt_mode_config(&mut self, other: Transaction) {
        if other.mode_config.is_some() {
            self.mode_config = other.mode_config;
        }
    }

    /// After phase 1: what comes next (XAuth, Mode Config, or quick mode).
    pub fn begin(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        ctx.take_refusal();
        match ctx.role() {
            Role::Initiator => {
                if ctx.config().xauth.is_some() {
                    self.setup = Setup::AwaitXAuth {
                        deadline: super::now_plus(now, SETUP_PATIENCE),
                    };
                    Step::Wait
                } else {
                    self.after_xauth(ctx, now)
                }
            }
            Role::Responder => {
                if ctx.config().xauth_server.is_some() {
                    self.server_xauth_round(ctx, now, 0)
                } else {
                    self.server_after_xauth(ctx, now)
                }
            }
        }
    }

    /// Client: XAuth done (or not used): Mode Config, then quick mode.
    fn after_xauth(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        match ctx.config().mode_config {
            ModeConfigMode::Off => {
                self.setup = Setup::Done;
                Step::Done(ctx.config().children.clone())
            }
            ModeConfigMode::Push => {
                self.setup = Setup::AwaitModeConfigSet {
                    deadline: super::now_plus(now, SETUP_PATIENCE),
                };
                Step::Wait
            }
            ModeConfigMode::Pull => {
                let mid = ctx.new_message_id();
                let attr = AttrPayload {
                    cfg_type: cfg_attr::REQUEST,
                    identifier: cfg_identifier(ctx),
                    attributes: mode_config_request(ctx.config().requested_address),
                };
                let iv = ctx.exchange_iv(mid);
                match seal_transaction(ctx, mid, attr, &iv) {
                    Ok((d, last)) => {
                        let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
                        self.setup = Setup::AwaitModeConfigReply {
                            mid,
                            iv: last,
                            pending,
                        };
                        ctx.send(d);
                        Step::Wait
                    }
                    Err(e) => self.fail(e),
                }
            }
        }
    }

    /// Client: Mode Config result in hand: report it and start quick mode with
    /// the virtual IP as our selector and the split networks as the peer's.
    fn mode_config_done(&mut self, ctx: &mut IsakmpSa, info: ModeConfigInfo) -> Step {
        self.setup = Setup::Done;
        if self.renewal {
            // A renewal only re-establishes the address on the new ISAKMP SA; the
            // ESP SAs are moved over by the SA it renews.
            self.mode_config = Some(info);
            return Step::Done(Vec::new());
        }
        ctx.event(Event::ModeConfig(info.clone()));
        let Some(vip) = info.address else {
            return self.fail(Error::Local(
                "the gateway assigned no virtual IP address (Mode Config)".into(),
            ));
        };
        let local = TrafficSelector::host(IpAddr::V4(vip));
        let cfg = ctx.config();
        let remotes: Vec<TrafficSelector> = if !cfg.remote_networks.is_empty() {
            cfg.remote_networks.clone()
        } else if !info.split_include.is_empty() {
            info.split_include.clone()
        } else {
            vec![TrafficSelector {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 0,
            }]
        };
        self.mode_config = Some(info);
        Step::Done(
            remotes
                .into_iter()
                .filter(|r| r.addr.is_ipv4())
                .map(|r| ChildConfig {
                    local: Some(local),
                    remote: Some(r),
                })
                .collect(),
        )
    }

    fn fail(&mut self, e: Error) -> Step {
        self.setup = Setup::Done;
        Step::Failed(e)
    }

    /// A transaction message (exchange type 6).
    pub fn handle(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<Step, Error> {
        let mid = header.message_id;
        let iv = match &self.setup {
            Setup::Prompting { mid: m, .. } if *m == mid => {
                // A retransmitted REQUEST while the user is typing: ignore.
                ctx.dropped();
                return Ok(Step::Wait);
            }
            Setup::AwaitModeConfigReply { mid: m, iv, .. }
            | Setup::ServerXAuth { mid: m, iv, .. }
            | Setup::ServerModeConfigSet { mid: m, iv, .. }
                if *m == mid =>
            {
                iv.clone()
            }
            _ => ctx.exchange_iv(mid),
        };
        let opened = match ctx.open(header, data, &iv) {
            Ok(o) => o,
            Err(e) => {
                self.refuse(ctx, mid, e);
                return Ok(Step::Wait);
            }
        };
        if split_hash(&opened).is_none() {
            self.refuse(ctx, mid, "it does not start with a HASH payload");
            return Ok(Step::Wait);
        }
        if ctx.keys().is_none() {
            return Ok(Step::Wait);
        }
        if !ctx.verify_hash(header, &opened, &[]) {
            self.refuse(
                ctx,
                mid,
                "its HASH does not match prf(SKEYID_a, M-ID | payloads after HASH)",
            );
            return Ok(Step::Wait);
        }
        let Some(attr) = opened.payloads.iter().find_map(|d| match &d.payload {
            Payload::Attr(a) => Some(a.clone()),
            _ => None,
        }) else {
            self.refuse(ctx, mid, "it has no attribute payload");
            return Ok(Step::Wait);
        };
        let msg = TxMsg {
            data,
            mid,
            iv: opened.last_block.clone(),
        };
        match ctx.role() {
            Role::Initiator => self.client_transaction(ctx, now, msg, attr),
            Role::Responder => self.server_transaction(ctx, now, msg, attr),
        }
    }

    /// A transaction message (XAuth / Mode Config) that could not be used. While
    /// the setup waits for something it is reported ([`IsakmpSa::refuse`]), named
    /// after what we wait for; afterwards (a late retransmission) it is only counted.
    fn refuse(&self, ctx: &mut IsakmpSa, mid: u32, why: impl fmt::Display) {
        let what = match &self.setup {
            Setup::AwaitModeConfigReply { mid: m, .. } if *m == mid => "the Mode Config reply",
            Setup::AwaitModeConfigReply { .. } | Setup::AwaitModeConfigSet { .. } => {
                "a Mode Config message"
            }
            Setup::AwaitXAuth { .. } | Setup::AwaitXAuthStatus { .. } => "an XAuth message",
            Setup::ServerXAuth { .. } => "an XAuth reply",
            Setup::ServerModeConfigSet { .. } => "a Mode Config acknowledgement",
            _ => {
                ctx.dropped();
                return;
            }
        };
        ctx.refuse(what, why);
    }

    // ----- client ----------------------------------------------------------

    fn client_transaction(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
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
                        ctx.dropped();
                        return Ok(Step::Wait);
                    }
                };
                self.on_xauth_request(ctx, now, msg, attr, rounds)
                    .map(|()| Step::Wait)
            }
            (cfg_attr::SET, true) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitXAuthStatus { .. } | Setup::AwaitXAuth { .. }
                ) {
                    ctx.dropped();
                    return Ok(Step::Wait);
                }
                self.on_xauth_status(ctx, now, msg, attr)
            }
            (cfg_attr::REPLY, false) => {
                let Setup::AwaitModeConfigReply { mid: m, .. } = &self.setup else {
                    ctx.dropped();
                    return Ok(Step::Wait);
                };
                if *m != msg.mid {
                    ctx.dropped();
                    return Ok(Step::Wait);
                }
                let info = parse_mode_config(&attr.attributes);
                Ok(self.mode_config_done(ctx, info))
            }
            (cfg_attr::SET, false) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitModeConfigSet { .. } | Setup::AwaitModeConfigReply { .. }
                ) {
                    ctx.dropped();
                    return Ok(Step::Wait);
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
                answer_transaction(ctx, &msg, ack)?;
                Ok(self.mode_config_done(ctx, info))
            }
            _ => {
                ctx.dropped();
                Ok(Step::Wait)
            }
        }
    }

    /// The gateway's SET with the XAuth status: ACK it; on success Mode Config next.
    fn on_xauth_status(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
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
        answer_transaction(ctx, &msg, ack)?;
        if status == Some(cfg_attr::XAUTH_STATUS_OK as u64) {
            ctx.event(Event::XAuthSucceeded);
            Ok(self.after_xauth(ctx, now))
        } else {
            Err(Error::XAuthFailed(
                message.unwrap_or_else(|| "the gateway refused the login".into()),
            ))
        }
    }

    fn on_xauth_request(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
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
        let cfg = ctx.config().xauth.clone();
        // The first round answers itself when the profile holds everything asked.
        let automatic = rounds == 0
            && cfg.as_ref().is_some_and(|c| {
                fields.iter().all(|f| match f {
                    XAuthField::UserName => true,
                    XAuthField::Password => c.password.is_some(),
                    _ => false,
                })
            });
        if !automatic {
            self.setup = Setup::Prompting {
                mid: msg.mid,
                iv: msg.iv,
                request: msg.data.to_vec(),
                asked,
                rounds,
            };
            ctx.event(Event::CredentialsRequired(CredentialsRequest {
                fields,
                message,
            }));
            return Ok(());
        }
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
        let round = Round {
            asked: &asked,
            rounds,
        };
        self.send_xauth_reply(ctx, now, &msg, &round, Credentials { values })
    }

    fn send_xauth_reply(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: &TxMsg<'_>,
        round: &Round<'_>,
        creds: Credentials,
    ) -> Result<(), Error> {
        let mut attributes = Vec::new();
        for k in round.asked {
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
                (XAuthField::UserName, None) => ctx
                    .config()
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
        // The reply may hold a password: it is not kept for retransmission beyond the SA.
        answer_transaction(ctx, msg, reply)?;
        self.setup = Setup::AwaitXAuthStatus {
            deadline: super::now_plus(now, SETUP_PATIENCE),
            rounds: round.rounds + 1,
        };
        Ok(())
    }

    /// Answers the pending XAuth round (after [`Event::CredentialsRequired`]).
    /// `Ok(Step::Failed)` when the answer could not be sent.
    pub fn submit_credentials(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        creds: Credentials,
    ) -> Result<Step, Error> {
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
        let msg = TxMsg {
            data: &request,
            mid,
            iv,
        };
        let round = Round {
            asked: &asked,
            rounds,
        };
        Ok(match self.send_xauth_reply(ctx, now, &msg, &round, creds) {
            Ok(()) => Step::Wait,
            Err(e) => Step::Failed(e),
        })
    }

    // ----- gateway (responder) ----------------------------------------------

    fn server_xauth_round(&mut self, ctx: &mut IsakmpSa, now: Instant, round: u32) -> Step {
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
            identifier: cfg_identifier(ctx),
            attributes,
        };
        self.server_send(ctx, now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round,
            status_sent: None,
        })
    }

    fn server_status(&mut self, ctx: &mut IsakmpSa, now: Instant, ok: bool) -> Step {
        let mut attributes = vec![Attribute::basic(cfg_attr::XAUTH_STATUS, u16::from(ok))];
        if !ok {
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_MESSAGE,
                b"Login incorrect".to_vec(),
            ));
        }
        let attr = AttrPayload {
            cfg_type: cfg_attr::SET,
            identifier: cfg_identifier(ctx),
            attributes,
        };
        self.server_send(ctx, now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round: 0,
            status_sent: Some(ok),
        })
    }

    fn server_send(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        attr: AttrPayload,
        state: impl FnOnce(u32, Vec<u8>, Pending) -> Setup,
    ) -> Step {
        let mid = ctx.new_message_id();
        let iv = ctx.exchange_iv(mid);
        match seal_transaction(ctx, mid, attr, &iv) {
            Ok((d, last)) => {
                let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
                self.setup = state(mid, last, pending);
                ctx.send(d);
                Step::Wait
            }
            Err(e) => self.fail(e),
        }
    }

    fn server_after_xauth(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        let cfg = ctx.config();
        match (cfg.mode_config, cfg.mode_config_server.clone()) {
            (ModeConfigMode::Push, Some(info)) => {
                let attr = AttrPayload {
                    cfg_type: cfg_attr::SET,
                    identifier: cfg_identifier(ctx),
                    attributes: mode_config_attributes(&info),
                };
                self.server_send(ctx, now, attr, |mid, iv, pending| {
                    Setup::ServerModeConfigSet { mid, iv, pending }
                })
            }
            (ModeConfigMode::Pull, Some(_)) => {
                self.setup = Setup::ServerAwaitModeConfig;
                Step::Wait
            }
            _ => {
                self.setup = Setup::Done;
                Step::Done(Vec::new())
            }
        }
    }

    fn server_transaction(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
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
            ) if m == msg.mid => Ok(self.server_check_login(ctx, now, &attr, round)),
            (
                Setup::ServerXAuth {
                    mid: m,
                    status_sent: Some(ok),
                    ..
                },
                cfg_attr::ACK,
            ) if m == msg.mid => {
                if ok {
                    Ok(self.server_after_xauth(ctx, now))
                } else {
                    Err(Error::XAuthFailed("the client's login was refused".into()))
                }
            }
            (Setup::ServerAwaitModeConfig, cfg_attr::REQUEST) => {
                let info = ctx.config().mode_config_server.clone().unwrap_or_default();
                let reply = AttrPayload {
                    cfg_type: cfg_attr::REPLY,
                    identifier: attr.identifier,
                    attributes: mode_config_attributes(&info),
                };
                answer_transaction(ctx, &msg, reply)?;
                self.setup = Setup::Done;
                Ok(Step::Done(Vec::new()))
            }
            (Setup::ServerModeConfigSet { mid: m, .. }, cfg_attr::ACK) if m == msg.mid => {
                self.setup = Setup::Done;
                Ok(Step::Done(Vec::new()))
            }
            (other, _) => {
                self.setup = other;
                ctx.dropped();
                Ok(Step::Wait)
            }
        }
    }

    /// Gateway: the client's XAuth REPLY: another round, or the status.
    fn server_check_login(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        attr: &AttrPayload,
        round: u32,
    ) -> Step {
        let Some(server) = ctx.config().xauth_server.clone() else {
            return Step::Wait;
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
            self.server_xauth_round(ctx, now, 1)
        } else {
            self.server_status(ctx, now, ok)
        }
    }

    /// Timeouts of the setup phase: resend our pending message or give up.
    pub fn timeout(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        let Some(deadline) = self.setup.deadline() else {
            return Step::Wait;
        };
        if now < deadline {
            return Step::Wait;
        }
        let cfg = ctx.config().retransmit;
        let resend = match &mut self.setup {
            Setup::AwaitModeConfigReply { pending, .. }
            | Setup::ServerXAuth { pending, .. }
            | Setup::ServerModeConfigSet { pending, .. } => pending.on_timeout(now, &cfg),
            _ => None,
        };
        if let Some(d) = resend {
            ctx.resend(d);
            return Step::Wait;
        }
        let e = match &self.setup {
            Setup::AwaitXAuth { .. } => Error::Local(
                "the gateway did not start XAuth (is XAuth configured on the gateway? remove [xauth] otherwise)".into(),
            ),
            Setup::AwaitXAuthStatus { .. } => {
                Error::XAuthFailed("the gateway never answered our login".into())
            }
            Setup::AwaitModeConfigSet { .. } => Error::Local(
                "the gateway pushed no Mode Config (try mode_config = \"pull\")".into(),
            ),
            Setup::AwaitModeConfigReply { .. } => {
                Error::Local("the gateway did not answer the Mode Config request".into())
            }
            _ => Error::NotResponding(cfg.tries.saturating_sub(1)),
        };
        // A message that came and was refused is the likelier story than
        // silence: say so in the one line the user gets.
        let e = match (e, ctx.take_refusal()) {
            (Error::Local(_), Some(r)) => {
                Error::Local(format!("{r}; gave up waiting for a usable one"))
            }
            (Error::XAuthFailed(m), Some(r)) => Error::XAuthFailed(format!("{m} ({r})")),
            (e, _) => e,
        };
        self.fail(e)
    }
}

/// The transaction message being answered.
struct TxMsg<'a> {
    /// The datagram as received (remembered with our answer).
    data: &'a [u8],
    mid: u32,
    /// The IV after it.
    iv: Vec<u8>,
}

/// One XAuth round: the attributes asked and how many rounds came before.
struct Round<'a> {
    asked: &'a [u16],
    rounds: u32,
}

fn cfg_identifier(ctx: &mut IsakmpSa) -> u16 {
    u16::from_be_bytes(ctx.random::<2>())
}

/// `HDR*, HASH, ATTR` for a transaction with `iv`; returns datagram and next IV.
fn seal_transaction(
    ctx: &IsakmpSa,
    mid: u32,
    attr: AttrPayload,
    iv: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    ctx.seal_hashed(
        ExchangeType::TRANSACTION,
        mid,
        &[],
        &[Payload::Attr(attr)],
        iv,
    )
}

/// Answers a request of the peer in the same transaction and remembers the
/// answer for retransmitted requests.
fn answer_transaction(ctx: &mut IsakmpSa, msg: &TxMsg<'_>, attr: AttrPayload) -> Result<(), Error> {
    let (d, _) = seal_transaction(ctx, msg.mid, attr, &msg.iv)?;
    ctx.remember_answer(msg.data.to_vec(), d.clone());
    ctx.send(d);
    Ok(())
}
