//! The tunnel driver: one tokio task per tunnel, shared by `postern-helper up` (the
//! terminal front end, `up.rs`) and the D-Bus service (`service/`).
//!
//! [`spawn`] starts the task for a validated profile (secrets filled in) and returns a
//! [`Handle`]: commands go in ([`Command`]: disconnect, XAuth answers), typed
//! [`Event`]s come out, in order, on an unbounded channel (the driver never waits for
//! a slow consumer), and the task's result says how it ended ([`Failure`]).
//! Each event's `Display` is the line `postern-helper up` prints (DESIGN.md contract 2),
//! so both front ends say the same thing. Events never carry keys.
//!
//! The task drives the sans-IO engine with the UDP sockets (500 and 4500), the tokio
//! clock and the OS RNG, and owns the userspace datapath (created with the first SA,
//! torn down when dropped). When the gateway is lost after the tunnel was up, it
//! reconnects with growing waits unless the profile says `reconnect = false`.

mod clock;
pub mod config;
mod engine;
pub mod logind;
pub mod netwatch;
mod session;
mod sockets;
pub mod status;
mod xauth;

pub use session::Role;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use postern_dbus::profile::{OnSuspend, Profile};
use postern_engine::ike::{
    self, Credentials, CredentialsRequest, Encapsulation, ModeConfigInfo, XAuthField,
};
use tokio::sync::{mpsc, oneshot};

use crate::datapath::Active;
use crate::kernel::firewall::{self, Firewall, Rules};
use xauth::XAuthCache;

use postern_dbus::failure::FailureKind;

pub(crate) const IKE_PORT: u16 = 500;

/// What a front end asks of a running tunnel.
pub enum Command {
    /// Close the tunnel (DELETEs sent, everything installed removed). `reason` is shown
    /// in the `closing (...)` line.
    Disconnect { reason: String },
    /// Answers to the pending [`Event::CredentialsRequired`].
    Credentials(Credentials),
    /// The user could not or would not answer: the tunnel fails with this message
    /// (an authentication failure).
    CredentialsRefused(String),
    /// The traffic counters of the datapath (zero before it exists).
    Counters(oneshot::Sender<Counters>),
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Disconnect { reason } => write!(f, "Disconnect({reason})"),
            // Never the answers themselves.
            Command::Credentials(c) => write!(f, "Credentials({c:?})"),
            Command::CredentialsRefused(m) => write!(f, "CredentialsRefused({m})"),
            Command::Counters(_) => f.write_str("Counters"),
        }
    }
}

/// Traffic through the datapath since it started, and per SA pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub sas: Vec<SaCounters>,
}

/// What one SA pair has carried: the contract's type (inner bytes, as the kernel
/// counts them), filled by either datapath.
pub use postern_dbus::interface::SaTraffic as SaCounters;

/// Phase 1 as the user sees it (no cookies, no keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase1Summary {
    pub mode: &'static str,
    pub proposal: String,
    pub lifetime: Duration,
    pub local_id: String,
    pub peer_id: String,
    /// `no`, `available (no NAT)`, `yes (we are behind NAT)`, ...
    pub nat_t: &'static str,
}

/// One ESP SA pair as the user sees it: SPIs, algorithms, selectors, lifetimes. Never keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSummary {
    pub spi_in: u32,
    pub spi_out: u32,
    /// strongSwan syntax, e.g. `aes128-sha256`.
    pub proposal: String,
    /// `tunnel` or `transport`.
    pub mode: &'static str,
    pub udp_encapsulation: bool,
    pub local_ts: String,
    pub remote_ts: String,
    /// Further (local, remote) selector pairs of the same SA (IKEv2: IPv6 beside IPv4).
    pub more_ts: Vec<(String, String)>,
    pub lifetime: Duration,
    pub lifetime_kb: Option<u64>,
}

/// What happened to a tunnel, in order. `Display` gives the `postern-helper up` line.
#[derive(Debug, Clone)]
pub enum Event {
    Connecting {
        name: String,
        remote: SocketAddr,
        local: IpAddr,
        mode: &'static str,
    },
    /// The responder (lab only) waits for its peer.
    Responding {
        local: SocketAddr,
        peer: SocketAddr,
    },
    Phase1Established(Phase1Summary),
    Phase2Established(SaSummary),
    /// The datapath installed an SA pair (the line says where).
    Datapath(String),
    /// The kill switch or the IPv6 leak block holds (one line each, e.g. `kill switch
    /// on: nothing leaves outside the tunnel`), or was lifted (`kill switch off`).
    Protection(Vec<String>),
    /// A line for the log: the engine's notes (phase 2 proposals left out of an offer),
    /// the encapsulation asked for and why.
    Note(String),
    /// Every expected SA is up.
    Connected {
        elapsed: Duration,
    },
    /// The gateway asks for XAuth credentials: answer with [`Command::Credentials`].
    CredentialsRequired(CredentialsRequest),
    XAuthSucceeded,
    Phase1Renewed {
        proposal: String,
        lifetime: Duration,
    },
    Phase1RenewalFailed(Failure),
    ModeConfig(ModeConfigInfo),
    Phase2Failed(Failure),
    Phase2Deleted {
        spi_in: u32,
        spi_out: u32,
        by_peer: bool,
    },
    /// The gateway went away after the tunnel was up; reconnecting after `wait`.
    ConnectionLost {
        failure: Failure,
        wait: Duration,
    },
    /// A reconnect attempt failed; next one after `wait`.
    ReconnectFailed {
        failure: Failure,
        wait: Duration,
    },
    /// The gateway is now reached from another address or by another interface
    /// (the outer network changed): negotiating again at once from `to`.
    NetworkChanged {
        from: IpAddr,
        to: IpAddr,
    },
    /// IKEv2 MOBIKE: the tunnel moved to the outer address `to` (the same IKE SA and
    /// ESP SAs, the datapath kept), `elapsed` after the network change was seen.
    Roamed {
        from: IpAddr,
        to: IpAddr,
        elapsed: Duration,
        /// How the new path is: NAT found, ESP in UDP.
        path: String,
    },
    /// The machine woke up: the gateway is being asked at once whether it still
    /// knows the tunnel.
    Resumed,
    /// The gateway answered the check after a resume: the tunnel is up as it was.
    GatewayAnswered,
    /// The tunnel failed and will not be tried again, but the kill switch holds until
    /// the user disconnects (then the task ends with this failure).
    FailedHolding(Failure),
    /// Closing on request; `reason` as given in [`Command::Disconnect`].
    Closing {
        reason: String,
    },
    /// Closed cleanly; the task ends with `Ok(())`.
    Disconnected,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connecting {
                name,
                remote,
                local,
                mode,
            } => write!(
                f,
                "connecting {name} to {remote} from {local} ({mode} mode)"
            ),
            Event::Responding { local, peer } => write!(f, "responding to {peer} on {local}"),
            Event::Phase1Established(i) => write!(
                f,
                "phase1 established {} ike={} lifetime={}s local_id={} peer_id={} nat-t={}",
                i.mode,
                i.proposal,
                i.lifetime.as_secs(),
                i.local_id,
                i.peer_id,
                i.nat_t
            ),
            Event::Phase2Established(c) => write!(
                f,
                "phase2 established spi_in=0x{:08x} spi_out=0x{:08x} esp={} mode={}{} local_ts={} remote_ts={}{} lifetime={}s",
                c.spi_in,
                c.spi_out,
                c.proposal,
                c.mode,
                if c.udp_encapsulation { "-in-udp" } else { "" },
                c.local_ts,
                c.remote_ts,
                c.more_ts
                    .iter()
                    .map(|(l, r)| format!(" local_ts={l} remote_ts={r}"))
                    .collect::<String>(),
                c.lifetime.as_secs()
            ),
            Event::Datapath(line) | Event::Note(line) => f.write_str(line),
            Event::Protection(lines) if lines.is_empty() => {
                f.write_str("kill switch off: the firewall table is removed")
            }
            Event::Protection(lines) => f.write_str(&lines.join("\n")),
            Event::Connected { elapsed } => write!(f, "connected in {} ms", elapsed.as_millis()),
            Event::CredentialsRequired(req) => {
                write!(f, "xauth: the gateway asks for {}", describe_fields(req))
            }
            Event::XAuthSucceeded => f.write_str("xauth ok"),
            Event::Phase1Renewed { proposal, lifetime } => write!(
                f,
                "phase1 renewed ike={proposal} lifetime={}s (ESP SAs unchanged)",
                lifetime.as_secs()
            ),
            Event::Phase1RenewalFailed(e) => write!(f, "phase1 renewal failed: {e} (will retry)"),
            Event::ModeConfig(info) => {
                f.write_str(&describe_mode_config(info))?;
                if let Some(b) = &info.banner {
                    for line in b.lines() {
                        write!(f, "\nbanner: {line}")?;
                    }
                }
                Ok(())
            }
            Event::Phase2Failed(e) => write!(f, "phase2 failed: {e}"),
            Event::Phase2Deleted {
                spi_in,
                spi_out,
                by_peer,
            } => write!(
                f,
                "phase2 deleted spi_in=0x{spi_in:08x} spi_out=0x{spi_out:08x}{}",
                if *by_peer { " by the gateway" } else { "" }
            ),
            Event::ConnectionLost {
                failure: message,
                wait,
            } => write!(
                f,
                "connection lost: {message}; reconnecting in {} s",
                wait.as_secs()
            ),
            Event::ReconnectFailed {
                failure: message,
                wait,
            } => write!(
                f,
                "reconnect failed: {message}; next try in {} s",
                wait.as_secs()
            ),
            Event::NetworkChanged { from, to } => write!(
                f,
                "network changed: the gateway is now reached from {to} (was {from}); negotiating again"
            ),
            Event::Roamed {
                from,
                to,
                elapsed,
                path,
            } => write!(
                f,
                "roaming: moved to {to} (was {from}) in {} ms by MOBIKE, the same IKE SA and ESP SAs ({path})",
                elapsed.as_millis()
            ),
            Event::Resumed => f.write_str("resumed: checking the gateway"),
            Event::GatewayAnswered => {
                f.write_str("resumed: the gateway answered; the tunnel is up")
            }
            Event::FailedHolding(e) => {
                write!(f, "failed: {e}; the kill switch holds until you disconnect")
            }
            Event::Closing { reason } => write!(f, "closing ({reason})"),
            Event::Disconnected => f.write_str("disconnected"),
        }
    }
}

/// How a tunnel ended when it did not close cleanly: its kind (the contract's
/// [`FailureKind`], from which front ends derive their explanation and exit code) and
/// one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The tunnel had been up and the gateway went away (dead peer, deleted):
    /// worth reconnecting.
    pub lost: bool,
    /// Reconnect at once, without the growing wait (the network changed, or the
    /// gateway forgot us while the machine slept).
    pub retry_now: bool,
    /// The session ended because the outer network changed (the driver said so
    /// already with [`Event::NetworkChanged`]).
    pub network_changed: bool,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            lost: false,
            retry_now: false,
            network_changed: false,
        }
    }

    /// The exit code of `postern-helper up` for it.
    pub fn code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// The contract's form (kind and sentence), for `LastError`.
    pub fn public(&self) -> postern_dbus::failure::Failure {
        postern_dbus::failure::Failure::new(self.kind, self.message.clone())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of failure an engine error is, for the user.
pub fn kind_of(e: &ike::Error) -> FailureKind {
    match e {
        ike::Error::AuthenticationFailed(_)
        | ike::Error::XAuthFailed(_)
        | ike::Error::InvalidId(_) => FailureKind::AuthenticationFailed,
        ike::Error::Certificate(_) => FailureKind::CertificateRefused,
        ike::Error::NoProposalChosen(_) => FailureKind::NoProposalChosen,
        // A phase 1 that could not be renewed: the gateway stopped answering.
        ike::Error::NotResponding(_) | ike::Error::DeadPeer(_) | ike::Error::Phase1Expired => {
            FailureKind::NotResponding
        }
        ike::Error::DeletedByPeer => FailureKind::DroppedByPeer,
        ike::Error::PeerNotify { .. } | ike::Error::Malformed(_) => FailureKind::PeerError,
        ike::Error::Local(_) => FailureKind::Internal,
    }
}

impl From<ike::Error> for Failure {
    fn from(e: ike::Error) -> Self {
        Failure::new(kind_of(&e), e.to_string())
    }
}

/// A running tunnel task.
pub struct Handle {
    pub commands: mpsc::UnboundedSender<Command>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub task: tokio::task::JoinHandle<Result<(), Failure>>,
}

/// Starts the tunnel task on the current tokio runtime. Dropping every command sender
/// closes the tunnel as a `Disconnect` would.
pub fn spawn(profile: Profile) -> Handle {
    spawn_as(profile, Role::Initiator)
}

/// Starts a tunnel task in either role (the responder is the lab's
/// `postern-helper respond`).
pub fn spawn_as(profile: Profile, role: Role) -> Handle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut d = Driver {
            profile,
            role,
            commands: cmd_rx,
            events: ev_tx,
            commands_open: true,
            firewall: None,
            logind: None,
            requested_address: None,
            kept: None,
            xauth: XAuthCache::default(),
            gateway: None,
        };
        let r = d.run().await;
        d.stop_kept().await;
        if let Err(f) = &r
            && d.firewall
                .as_ref()
                .is_some_and(|f| f.rules().mode == firewall::Mode::KillSwitch)
        {
            // Failed, not disconnected: the kill switch holds until the user says.
            d.emit(Event::FailedHolding(f.clone()));
            d.wait_for_disconnect().await;
        }
        d.lift_firewall().await;
        r
    });
    Handle {
        commands: cmd_tx,
        events: ev_rx,
        task,
    }
}

/// The tunnel: the profile, the front end's channels, and the reconnect loop around
/// one [`session::Session`] per attempt.
struct Driver {
    profile: Profile,
    role: Role,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    /// False once every sender is gone (then the tunnel closes).
    commands_open: bool,
    /// The kill switch or IPv6 leak block: made when the tunnel first connects, kept
    /// across the reconnect loop, removed when the task ends.
    firewall: Option<Firewall>,
    /// logind's sleep signals (initiator, when there is a system bus); lent to the
    /// running session.
    logind: Option<logind::Logind>,
    /// The inner address the gateway gave last: asked for again when the tunnel is
    /// negotiated anew (network change, resume), so applications' connections survive.
    requested_address: Option<Ipv4Addr>,
    /// The userspace datapath parked between two negotiations (device, inner address
    /// and routes in place, no SAs): the next session takes it up.
    kept: Option<Active>,
    /// XAuth answers the user gave, for the reconnects of this tunnel (memory only,
    /// dropped, zeroized, when the task ends).
    xauth: XAuthCache,
    /// The gateway's address as last resolved: the network is watched for a way to it
    /// while waiting between attempts.
    gateway: Option<IpAddr>,
}

/// What the command channel said while waiting between attempts.
enum Interrupt {
    Disconnect,
}

/// The outer network while waiting between attempts: a new way to the gateway (a new
/// address, the default route back) ends the wait at once.
struct BackoffWatch {
    watcher: netwatch::Watcher,
    /// The route to the gateway when the wait began (`None`: none).
    before: Option<netwatch::Path>,
}

impl BackoffWatch {
    async fn open(gateway: Option<IpAddr>, kept: Option<&mut Active>) -> Option<BackoffWatch> {
        let mut watcher = netwatch::Watcher::open(gateway?).ok()?;
        if let Some(name) = kept
            .and_then(Active::user)
            .map(|d| d.device_name().to_string())
            && let Ok(index) = nix::net::if_::if_nametoindex(name.as_str())
        {
            watcher.ignore_device(index);
        }
        let before = watcher.path().await;
        Some(BackoffWatch { watcher, before })
    }

    /// Waits until the network changed into one with another way to the gateway;
    /// returns the address it is now reached from.
    async fn new_way(&mut self) -> IpAddr {
        loop {
            self.watcher.changed().await;
            if let Some(now) = self.watcher.path().await
                && netwatch::judge_wait(self.before.as_ref(), &now)
            {
                return now.source;
            }
        }
    }
}

impl Driver {
    /// Makes or updates the firewall table for a tunnel that just connected; returns
    /// the lines describing it (none: nothing to hold).
    async fn shield(&mut self, rules: Option<Rules>) -> Result<(), Failure> {
        let Some(rules) = rules else {
            self.lift_firewall().await;
            return Ok(());
        };
        let current = self.firewall.take();
        let same = current.as_ref().is_some_and(|f| *f.rules() == rules);
        let kill_switch = rules.mode == firewall::Mode::KillSwitch;
        let lines = rules.describe();
        let joined = tokio::task::spawn_blocking(move || match current {
            Some(mut f) => {
                let r = f.update(rules);
                (Some(f), r)
            }
            None => match Firewall::install(rules) {
                Ok(f) => (Some(f), Ok(())),
                Err(e) => (None, Err(e)),
            },
        })
        .await;
        let (fw, r) = joined
            .map_err(|e| Failure::new(FailureKind::Internal, format!("firewall task: {e}")))?;
        self.firewall = fw;
        match r {
            Ok(()) => {
                if !same {
                    self.emit(Event::Protection(lines));
                }
                Ok(())
            }
            Err(e) if kill_switch => Err(Failure::new(
                FailureKind::Datapath,
                format!("the kill switch cannot be set up: {e}"),
            )),
            Err(e) => {
                self.emit(Event::Note(format!(
                    "IPv6 not blocked (the firewall table cannot be made: {e}): IPv6 traffic may leave outside the tunnel"
                )));
                Ok(())
            }
        }
    }

    /// The kill switch while a negotiation runs: made at the first attempt (only the
    /// way to `gateway` open until the tunnel's networks are known); a table already
    /// there (a reconnect) stays as it is, following a gateway that moved.
    async fn hold_while_connecting(&mut self, gateway: IpAddr) -> Result<(), Failure> {
        let rules = match self.firewall.as_ref() {
            Some(f) if f.rules().gateway == gateway => return Ok(()),
            Some(f) => Rules {
                gateway,
                ..f.rules().clone()
            },
            None => Rules {
                mode: firewall::Mode::KillSwitch,
                gateway,
                full_tunnel: true,
                networks: Vec::new(),
                pin_dns: false,
                dns: Vec::new(),
                allow_lan: self.profile.network.allow_lan,
                block_ipv6: false,
                inner: None,
                connecting: true,
            },
        };
        self.shield(Some(rules)).await
    }

    /// Failed with the kill switch on: waits for the user's disconnect (or the front
    /// end going away); nothing else is done meanwhile.
    async fn wait_for_disconnect(&mut self) {
        if let Some(l) = self.logind.as_mut() {
            // No DELETE to send before a sleep any more.
            l.release();
        }
        // Bounded by the front end: a disconnect, or its channel closing.
        loop {
            match self.next_command().await {
                Command::Disconnect { .. } => return,
                Command::Counters(reply) => {
                    let _ = reply.send(Counters::default());
                }
                Command::Credentials(_) | Command::CredentialsRefused(_) => {}
            }
        }
    }

    /// Removes the firewall table, if any.
    async fn lift_firewall(&mut self) {
        let Some(f) = self.firewall.take() else {
            return;
        };
        let table = f.table().to_string();
        let r = tokio::task::spawn_blocking(move || f.remove()).await;
        match r {
            Ok(Ok(())) => self.emit(Event::Protection(Vec::new())),
            Ok(Err(e)) => self.emit(Event::Note(format!(
                "the firewall table {table} could not be removed ({e}); `postern-helper cleanup` removes it"
            ))),
            Err(e) => self.emit(Event::Note(format!("firewall task: {e}"))),
        }
    }

    /// Whether a lost tunnel is negotiated again.
    fn reconnects(&self) -> bool {
        self.profile.network.reconnect && self.role == Role::Initiator
    }

    /// Removes a parked datapath (the tunnel ends without another negotiation).
    async fn stop_kept(&mut self) {
        let Some(dp) = self.kept.take() else {
            return;
        };
        match tokio::task::spawn_blocking(move || dp.stop()).await {
            Ok(line) => self.emit(Event::Datapath(line)),
            Err(e) => self.emit(Event::Datapath(format!("datapath: {e}"))),
        }
    }

    fn emit(&self, e: Event) {
        // A consumer that went away does not stop the tunnel; its commands do.
        let _ = self.events.send(e);
    }

    /// The next command; pending forever once the channel is closed (that closure is
    /// reported once, as a disconnect).
    async fn next_command(&mut self) -> Command {
        if !self.commands_open {
            return std::future::pending().await;
        }
        match self.commands.recv().await {
            Some(c) => c,
            None => {
                self.commands_open = false;
                Command::Disconnect {
                    reason: "front end gone".into(),
                }
            }
        }
    }

    /// Runs the tunnel; when the gateway is lost after the tunnel was up, reconnects
    /// with growing waits (1 s doubling to 60 s) unless the profile says
    /// `reconnect = false`. A disconnect ends it cleanly at any point.
    async fn run(&mut self) -> Result<(), Failure> {
        let mut wait = Duration::from_secs(1);
        let mut ever_connected = false;
        let reconnect = self.reconnects();
        if self.role == Role::Initiator {
            self.follow_sleep().await;
        }
        loop {
            let mut connected = false;
            let r = self.connect_once(&mut connected).await;
            ever_connected |= connected;
            match r {
                Err(f) if f.lost && reconnect => {
                    if connected {
                        wait = Duration::from_secs(1);
                    }
                    if f.retry_now {
                        wait = Duration::ZERO;
                    }
                    // A network change was said already, with its own line.
                    if !f.network_changed {
                        self.emit(Event::ConnectionLost { failure: f, wait });
                    }
                }
                // A reconnect attempt that fails the way a dead gateway does: keep trying.
                Err(f) if ever_connected && reconnect && f.kind == FailureKind::NotResponding => {
                    self.emit(Event::ReconnectFailed { failure: f, wait });
                }
                other => return other,
            }
            if wait.is_zero() {
                wait = Duration::from_secs(1);
                continue;
            }
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            let mut net = BackoffWatch::open(self.gateway, self.kept.as_mut()).await;
            // Lent out of `self` while `next_command` borrows it.
            let mut sleeps = self.logind.take();
            loop {
                let interrupt = tokio::select! {
                    _ = &mut sleep => None,
                    from = async {
                        match net.as_mut() {
                            Some(n) => n.new_way().await,
                            None => std::future::pending().await,
                        }
                    }, if net.is_some() => {
                        self.emit(Event::Note(format!(
                            "network: the gateway is reached from {from} now; trying again at once"
                        )));
                        None
                    },
                    s = logind::next(sleeps.as_mut()), if sleeps.is_some() => match s {
                        // Woken up while waiting: try now, the network may be back.
                        logind::Sleep::Resumed => None,
                        logind::Sleep::Suspending
                            if self.profile.network.on_suspend == OnSuspend::Disconnect =>
                        {
                            Some(Interrupt::Disconnect)
                        }
                        logind::Sleep::Suspending => continue,
                    },
                    c = self.next_command() => match c {
                        Command::Disconnect { .. } => Some(Interrupt::Disconnect),
                        Command::Counters(reply) => { let _ = reply.send(Counters::default()); continue; }
                        // Nothing is asking: stale answers are dropped (zeroized).
                        Command::Credentials(_) | Command::CredentialsRefused(_) => continue,
                    },
                };
                match interrupt {
                    Some(Interrupt::Disconnect) => {
                        if let Some(l) = sleeps.as_mut() {
                            l.release();
                        }
                        self.stop_kept().await;
                        self.emit(Event::Disconnected);
                        return Ok(());
                    }
                    None => break,
                }
            }
            self.logind = sleeps;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    /// Follows logind's sleep signals, and with `network.on_suspend = "disconnect"`
    /// holds a delay inhibitor until the DELETEs are sent. Without a system bus or
    /// logind, one line says so and the tunnel runs as before.
    async fn follow_sleep(&mut self) {
        let mut l = match logind::Logind::open().await {
            Ok(l) => l,
            Err(e) => {
                self.emit(Event::Note(format!(
                    "suspend and resume not followed: {e}; after a sleep dead peer detection finds a lost gateway"
                )));
                return;
            }
        };
        if self.profile.network.on_suspend == OnSuspend::Disconnect {
            let name = self.profile.name.clone();
            if let Err(e) = l.inhibit(&name).await {
                self.emit(Event::Note(format!(
                    "suspend: {e}; the tunnel may not be closed before the machine sleeps"
                )));
            }
        }
        self.logind = Some(l);
    }

    /// One connection attempt, until it is closed or fails.
    async fn connect_once(&mut self, connected: &mut bool) -> Result<(), Failure> {
        let role = self.role;
        let r = match session::Session::open(self, role).await {
            Ok(mut s) => {
                let r = s.run().await;
                *connected = s.connected;
                r
            }
            Err(f) => Err(f),
        };
        if r.is_ok() {
            // After the datapath's teardown line: everything is removed.
            self.emit(Event::Disconnected);
        }
        match r {
            Err(mut f) if *connected => {
                f.lost = f.lost || f.kind == FailureKind::NotResponding;
                Err(f)
            }
            other => other,
        }
    }
}

async fn resolve(gateway: &str) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = gateway.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, IKE_PORT));
    }
    let mut addrs = tokio::net::lookup_host((gateway, IKE_PORT))
        .await
        .map_err(|e| {
            Failure::new(
                FailureKind::NotResponding,
                format!("cannot resolve gateway {gateway}: {e}"),
            )
        })?;
    addrs.next().ok_or_else(|| {
        Failure::new(
            FailureKind::NotResponding,
            format!("gateway {gateway} has no address"),
        )
    })
}

fn phase1_summary(i: &ike::Phase1Info) -> Phase1Summary {
    let n = i.nat;
    Phase1Summary {
        mode: i.mode.name(),
        proposal: i.proposal.to_string(),
        lifetime: i.lifetime,
        local_id: i.local_id.to_string(),
        peer_id: i.peer_id.to_string(),
        nat_t: match (i.nat_t, n.forced, n.local_behind_nat, n.remote_behind_nat) {
            (None, ..) => "no",
            (Some(_), false, true, true) => "yes (both sides behind NAT)",
            (Some(_), false, true, false) => "yes (we are behind NAT)",
            (Some(_), false, false, true) => "yes (gateway behind NAT)",
            (Some(_), false, false, false) => "available (no NAT)",
            // Our own NAT-D was faked to have ESP in UDP: what the peer's say is real.
            (Some(_), true, true, true) => "yes, forced (both sides behind NAT)",
            (Some(_), true, true, false) => "yes, forced (we are behind NAT)",
            (Some(_), true, false, true) => "yes, forced (gateway behind NAT)",
            (Some(_), true, false, false) => "yes, forced (no NAT)",
        },
    }
}

fn sa_summary(c: &ike::ChildSa, local: SocketAddr, remote: SocketAddr) -> SaSummary {
    SaSummary {
        spi_in: c.spi_in,
        spi_out: c.spi_out,
        proposal: c.proposal.to_string(),
        mode: match c.encapsulation {
            Encapsulation::Tunnel => "tunnel",
            Encapsulation::Transport => "transport",
        },
        udp_encapsulation: c.udp_encapsulation,
        local_ts: c
            .local_ts
            .map(|t| t.to_string())
            .unwrap_or_else(|| local.ip().to_string()),
        remote_ts: c
            .remote_ts
            .map(|t| t.to_string())
            .unwrap_or_else(|| remote.ip().to_string()),
        more_ts: c
            .more_ts
            .iter()
            .map(|(l, r)| (l.to_string(), r.to_string()))
            .collect(),
        lifetime: c.lifetime,
        lifetime_kb: c.lifetime_kb,
    }
}

/// The user-facing name of an XAuth field.
pub fn field_name(f: XAuthField) -> &'static str {
    match f {
        XAuthField::UserName => "user name",
        XAuthField::Password => "password",
        XAuthField::Passcode => "passcode",
        XAuthField::NextPin => "next PIN",
        XAuthField::Answer => "answer",
    }
}

fn describe_fields(req: &CredentialsRequest) -> String {
    let names: Vec<&str> = req.fields.iter().map(|f| field_name(*f)).collect();
    match &req.message {
        Some(m) => format!("{} ({m})", names.join(", ")),
        None => names.join(", "),
    }
}

fn describe_mode_config(info: &ModeConfigInfo) -> String {
    let mut s = String::from("mode-config");
    match info.address {
        Some(a) => s.push_str(&format!(" {a}")),
        None if info.address6.is_none() => s.push_str(" (no address)"),
        None => {}
    }
    if let Some((a, prefix)) = info.address6 {
        s.push_str(&format!(" {a}/{prefix}"));
    }
    let join = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    s.push_str(&format!(
        " dns {}",
        join(info.dns.iter().map(|d| d.to_string()).collect())
    ));
    s.push_str(&format!(
        " split {}",
        join(info.split_include.iter().map(|t| t.to_string()).collect())
    ));
    if !info.split_exclude.is_empty() {
        s.push_str(&format!(
            " exclude {}",
            join(info.split_exclude.iter().map(|t| t.to_string()).collect())
        ));
    }
    if let Some(d) = &info.default_domain {
        s.push_str(&format!(" domain {d}"));
    }
    if !info.split_dns.is_empty() {
        s.push_str(&format!(" split-dns {}", info.split_dns.join(",")));
    }
    s
}
