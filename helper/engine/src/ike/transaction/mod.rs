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
//!
//! [`Transaction`] owns where the setup stands ([`Setup`]) and what Mode Config
//! gave; it is handed the [`IsakmpSa`] context and says what comes next as a
//! [`Step`]. Files: `mod.rs` (the types, dispatch, timeouts), `client.rs` (our
//! side as a client), `server.rs` (the gateway side), `attrs.rs` (attribute
//! encoding and decoding).

mod attrs;
mod client;
mod server;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::codec::{AttrPayload, ExchangeType, Header, Payload};

use super::exchange::Pending;
use super::sa_ctx::{IsakmpSa, split_hash};
use super::{ChildConfig, Error, Role, TrafficSelector};

/// How long the client waits for the gateway to start XAuth or push Mode Config.
pub(crate) const SETUP_PATIENCE: Duration = Duration::from_secs(30);

/// How long the client holds its next request after acknowledging the XAuth status.
///
/// The ACK ends the gateway's transaction and is never retransmitted on its own: the
/// gateway resends its SET until an ACK arrives, and we answer each copy. A quick
/// mode that reaches the gateway before the ACK is fatal with strongSwan (charon
/// destroys the IKE SA: "quick mode request for unestablished IKE_SA, ignored"), and
/// charon handles two datagrams that arrive together on two worker threads, in
/// either order. Holding our next message this long lets the ACK be processed
/// first; a repeated SET meanwhile restarts the wait.
pub(crate) const ACK_SETTLE: Duration = Duration::from_millis(250);

/// The hold on a path that lost or delayed datagrams during this negotiation (we
/// retransmitted, or answered a retransmission): a lost ACK is likely there, and the
/// gateway's repeated SET must come within the hold to repair it before our quick mode
/// reaches the gateway. strongSwan repeats its SET 4 s after the first.
pub(crate) const ACK_SETTLE_LOSSY: Duration = Duration::from_millis(4500);

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

impl ModeConfigInfo {
    /// The pairs quick mode negotiates after Mode Config: one per remote network (the
    /// profile's `remote_networks` when it names some, else the gateway's split
    /// networks, else everything in each family we got an address of), each from our
    /// address of its family; networks of a family we have no address of are left out.
    pub fn children(&self, remote_networks: &[TrafficSelector]) -> Vec<ChildConfig> {
        let vip4 = self.address.map(|a| TrafficSelector::host(IpAddr::V4(a)));
        let vip6 = self
            .address6
            .map(|(a, _)| TrafficSelector::host(IpAddr::V6(a)));
        let remotes: Vec<TrafficSelector> = if !remote_networks.is_empty() {
            remote_networks.to_vec()
        } else if !self.split_include.is_empty() {
            self.split_include.clone()
        } else {
            let mut all = Vec::new();
            if vip4.is_some() {
                all.push(TrafficSelector {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                });
            }
            if vip6.is_some() {
                all.push(TrafficSelector {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                });
            }
            all
        };
        remotes
            .into_iter()
            .filter_map(|r| {
                let local = if r.addr.is_ipv4() { vip4 } else { vip6 }?;
                Some(ChildConfig {
                    local: Some(local),
                    remote: Some(r),
                })
            })
            .collect()
    }
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
    /// Client: a SET of the gateway (XAuth status, Mode Config push) is
    /// acknowledged; what comes next starts at `until` ([`ACK_SETTLE`]).
    AckSettle {
        until: Instant,
        next: AfterAck,
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
            | Setup::AwaitModeConfigSet { deadline }
            | Setup::AckSettle {
                until: deadline, ..
            } => Some(*deadline),
            Setup::AwaitModeConfigReply { pending, .. }
            | Setup::ServerXAuth { pending, .. }
            | Setup::ServerModeConfigSet { pending, .. } => Some(pending.deadline),
            _ => None,
        }
    }
}

/// What the client starts once the hold after its ACK is over.
#[derive(Debug)]
pub(crate) enum AfterAck {
    /// XAuth is done: Mode Config (pull) or the quick modes (no Mode Config).
    ModeConfig,
    /// Mode Config (push) is done: these quick modes.
    Children(Vec<ChildConfig>),
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
    /// The path lost datagrams before this negotiation (it was started over):
    /// the longer hold after our ACK ([`ACK_SETTLE_LOSSY`]).
    pub(super) lossy: bool,
}

impl Transaction {
    pub fn new(renewal: bool) -> Transaction {
        Transaction {
            setup: Setup::NotStarted,
            mode_config: None,
            cfg_request_identifier: 0,
            renewal,
            lossy: false,
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

    pub(super) fn fail(&mut self, e: Error) -> Step {
        self.setup = Setup::Done;
        Step::Failed(e)
    }

    /// How long to hold our next request after an ACK: [`ACK_SETTLE`], or
    /// [`ACK_SETTLE_LOSSY`] when this path lost or delayed datagrams.
    pub(super) fn ack_settle(&self, ctx: &IsakmpSa) -> Duration {
        if self.lossy || ctx.counters().retransmits > 0 {
            ACK_SETTLE_LOSSY
        } else {
            ACK_SETTLE
        }
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

    /// The gateway repeated a request we had answered (our answer went out again):
    /// while our next request is held after the XAuth ACK, the hold starts over, so
    /// that it follows the repeated ACK. True when the setup is past that point and a
    /// request of ours may have reached the gateway before the ACK it was missing:
    /// the caller sends that request again now.
    pub fn answered_again(&mut self, now: Instant) -> bool {
        match &mut self.setup {
            Setup::AckSettle { until, .. } => {
                *until = super::now_plus(now, ACK_SETTLE_LOSSY);
                false
            }
            Setup::AwaitModeConfigReply { pending, .. } => {
                pending.deadline = now;
                false
            }
            Setup::Done => true,
            _ => false,
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
        if matches!(self.setup, Setup::AckSettle { .. })
            && let Setup::AckSettle { next, .. } = std::mem::replace(&mut self.setup, Setup::Done)
        {
            return match next {
                AfterAck::ModeConfig => self.after_xauth(ctx, now),
                AfterAck::Children(c) => Step::Done(c),
            };
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
pub(super) struct TxMsg<'a> {
    /// The datagram as received (remembered with our answer).
    pub(super) data: &'a [u8],
    pub(super) mid: u32,
    /// The IV after it.
    pub(super) iv: Vec<u8>,
}

/// One XAuth round: the attributes asked and how many rounds came before.
pub(super) struct Round<'a> {
    pub(super) asked: &'a [u16],
    pub(super) rounds: u32,
}

pub(super) fn cfg_identifier(ctx: &mut IsakmpSa) -> u16 {
    u16::from_be_bytes(ctx.random::<2>())
}

/// `HDR*, HASH, ATTR` for a transaction with `iv`; returns datagram and next IV.
pub(super) fn seal_transaction(
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
pub(super) fn answer_transaction(
    ctx: &mut IsakmpSa,
    msg: &TxMsg<'_>,
    attr: AttrPayload,
) -> Result<(), Error> {
    let (d, _) = seal_transaction(ctx, msg.mid, attr, &msg.iv)?;
    ctx.remember_answer(msg.data.to_vec(), d.clone());
    ctx.send(d);
    Ok(())
}
