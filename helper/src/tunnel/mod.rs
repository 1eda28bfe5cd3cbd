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

pub mod status;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use postern_dbus::profile::{self, Profile};
use postern_engine::ike::{
    self, Credentials, CredentialsRequest, Encapsulation, Ike, ModeConfigInfo, NAT_T_PORT,
    XAuthField,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use postern_dbus::failure::FailureKind;

use crate::up::{engine_config, profile_children};

pub(crate) const IKE_PORT: u16 = 500;
/// After a DELETE is queued on shutdown, give the socket this long to send it.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

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
    Phase1Established(Phase1Summary),
    Phase2Established(SaSummary),
    /// The datapath installed an SA pair (the line says where).
    Datapath(String),
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
                "phase2 established spi_in=0x{:08x} spi_out=0x{:08x} esp={} mode={}{} local_ts={} remote_ts={} lifetime={}s",
                c.spi_in,
                c.spi_out,
                c.proposal,
                c.mode,
                if c.udp_encapsulation { "-in-udp" } else { "" },
                c.local_ts,
                c.remote_ts,
                c.lifetime.as_secs()
            ),
            Event::Datapath(line) => f.write_str(line),
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
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            lost: false,
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
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut d = Driver {
            profile,
            commands: cmd_rx,
            events: ev_tx,
            commands_open: true,
        };
        d.run().await
    });
    Handle {
        commands: cmd_tx,
        events: ev_rx,
        task,
    }
}

struct Driver {
    profile: Profile,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    /// False once every sender is gone (then the tunnel closes).
    commands_open: bool,
}

/// What the command channel said while waiting between attempts.
enum Interrupt {
    Disconnect,
}

impl Driver {
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
        loop {
            let mut connected = false;
            let r = self.connect_once(&mut connected).await;
            ever_connected |= connected;
            match r {
                Err(f) if f.lost && self.profile.network.reconnect => {
                    if connected {
                        wait = Duration::from_secs(1);
                    }
                    self.emit(Event::ConnectionLost { failure: f, wait });
                }
                // A reconnect attempt that fails the way a dead gateway does: keep trying.
                Err(f)
                    if ever_connected
                        && self.profile.network.reconnect
                        && f.kind == FailureKind::NotResponding =>
                {
                    self.emit(Event::ReconnectFailed { failure: f, wait });
                }
                other => return other,
            }
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                let interrupt = tokio::select! {
                    _ = &mut sleep => None,
                    c = self.next_command() => match c {
                        Command::Disconnect { .. } => Some(Interrupt::Disconnect),
                        Command::Counters(reply) => { let _ = reply.send(Counters::default()); continue; }
                        // Nothing is asking: stale answers are dropped (zeroized).
                        Command::Credentials(_) | Command::CredentialsRefused(_) => continue,
                    },
                };
                match interrupt {
                    Some(Interrupt::Disconnect) => {
                        self.emit(Event::Disconnected);
                        return Ok(());
                    }
                    None => break,
                }
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    /// One connection attempt, until it is closed or fails.
    async fn connect_once(&mut self, connected: &mut bool) -> Result<(), Failure> {
        let r = self.connect_inner(connected).await;
        match r {
            Err(mut f) if *connected => {
                f.lost = f.lost || f.kind == FailureKind::NotResponding;
                Err(f)
            }
            other => other,
        }
    }

    async fn connect_inner(&mut self, connected: &mut bool) -> Result<(), Failure> {
        let remote = resolve(&self.profile.gateway).await?;
        let bind: SocketAddr = match remote {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], IKE_PORT)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], IKE_PORT)),
        };
        // The shared port 500 carries one tunnel per gateway: a second socket connected
        // to the same gateway would take the first one's datagrams.
        if ike_peer_in_use(remote) {
            return Err(Failure::new(
                FailureKind::Datapath,
                format!(
                    "a tunnel to {} is already up (another profile uses this gateway); take it down first",
                    remote.ip()
                ),
            ));
        }
        let socket = bind_shared(bind).map_err(|e| {
            Failure::new(
                FailureKind::Datapath,
                format!(
                    "cannot bind UDP port {IKE_PORT}: {e} (run as root; is another IKE daemon running?)"
                ),
            )
        })?;
        socket.connect(remote).await.map_err(|e| {
            Failure::new(
                FailureKind::NotResponding,
                format!("gateway {remote} unreachable: {e}"),
            )
        })?;
        let local = socket
            .local_addr()
            .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
        // The NAT-T socket: IKE floats here when a NAT is found (RFC 3947), with the
        // 4-byte non-ESP marker in front of each IKE message.
        let natt_socket = if matches!(
            self.profile.network.nat_traversal,
            profile::NatTraversal::Off
        ) {
            None
        } else {
            let mut b = bind;
            b.set_port(NAT_T_PORT);
            let s = bind_shared(b).map_err(|e| {
                Failure::new(
                    FailureKind::Datapath,
                    format!(
                        "cannot bind UDP port {NAT_T_PORT}: {e} (is another IKE daemon running?)"
                    ),
                )
            })?;
            let mut r = remote;
            r.set_port(NAT_T_PORT);
            s.connect(r).await.map_err(|e| {
                Failure::new(
                    FailureKind::NotResponding,
                    format!("gateway {r} unreachable: {e}"),
                )
            })?;
            Some(s)
        };
        let mut natt_local = local;
        natt_local.set_port(NAT_T_PORT);

        let config = engine_config(&self.profile, local.ip())?;
        self.emit(Event::Connecting {
            name: self.profile.name.clone(),
            remote,
            local: local.ip(),
            mode: config.mode.name(),
        });
        let start = Instant::now();
        let rng = crate::rng::os_rng()
            .map_err(|e| Failure::new(FailureKind::Internal, format!("no randomness: {e}")))?;
        let mut ike = Ike::initiate(config, local, remote, start, Box::new(rng))?;

        let mut expected_children = profile_children(&self.profile, local.ip()).len();
        let mut up_children = 0usize;
        let mut awaiting_credentials = false;
        let mut buf = vec![0u8; 65536];
        let mut buf4500 = vec![0u8; 65536];
        // The datapath: created with the first SA; dropping it tears it down.
        let mut datapath: Option<crate::datapath::Datapath> = None;
        // Or the kernel's, when the profile asks for it or `auto` finds ESP in the kernel
        // (decided once, with the first SA).
        let mut kernel_dp: Option<crate::datapath::kernel_esp::KernelDatapath> = None;
        let mut use_kernel: Option<bool> = None;
        // NAT keepalives on port 4500 when the kernel carries ESP in UDP (the userspace
        // datapath sends its own).
        let mut keepalive: Option<tokio::time::Interval> = None;
        // The kernel's notifications about our SAs (kernel datapath): a volume-limit
        // expiry (soft = rekey) or an acquire (traffic found no SA: negotiate a pair).
        let mut xfrm_events: Option<crate::kernel::xfrm::EventListener> = None;
        // Pairs we asked the engine to replace for the kernel's sake (inbound SPIs): once.
        let mut replacing: Vec<u32> = Vec::new();
        // The userspace datapath's SAs at 80 % of their volume lifetime (inbound SPIs).
        let (volume_tx, mut volume_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        // Raw ESP (IP protocol 50) for the userspace datapath when NAT-T is not in use.
        let mut raw_socket: Option<UdpSocket> = None;
        let mut buf_raw = vec![0u8; 65536];
        let mut pending_dns: Option<crate::kernel::dns::DnsConfig> = None;
        loop {
            // Outputs, in the engine's documented order.
            while let Some(t) = ike.poll_transmit() {
                if let Err(e) = send(&socket, natt_socket.as_ref(), &t).await {
                    // ICMP unreachable comes back as ECONNREFUSED on a connected socket:
                    // keep retransmitting; the engine gives up in bounded time.
                    if e.kind() != std::io::ErrorKind::ConnectionRefused {
                        return Err(Failure::new(
                            FailureKind::NotResponding,
                            format!("send to {remote}: {e}"),
                        ));
                    }
                }
            }
            while let Some(ev) = ike.poll_event() {
                match ev {
                    ike::Event::Phase1Established(i) => {
                        self.emit(Event::Phase1Established(phase1_summary(&i)))
                    }
                    ike::Event::Phase2Established(c) => {
                        up_children += 1;
                        self.emit(Event::Phase2Established(sa_summary(&c, local, remote)));
                        let kernel = match use_kernel {
                            Some(k) => k,
                            None => {
                                let (k, line) = choose_datapath(&self.profile).await;
                                if let Some(line) = line {
                                    self.emit(Event::Datapath(line));
                                }
                                use_kernel = Some(k);
                                k
                            }
                        };
                        if kernel {
                            match kernel_on_established(
                                &mut kernel_dp,
                                &socket,
                                natt_socket.as_ref(),
                                local.ip(),
                                remote.ip(),
                                self.profile.network.virtual_ip,
                                &c,
                            )
                            .await
                            {
                                Ok(line) => {
                                    self.emit(Event::Datapath(line));
                                    if xfrm_events.is_none() {
                                        match crate::kernel::xfrm::EventListener::open() {
                                            Ok(l) => xfrm_events = Some(l),
                                            Err(e) => self.emit(Event::Datapath(format!(
                                                "kernel: no XFRM notifications ({e}); volume lifetimes end SAs without a rekey, lost SAs are not renegotiated"
                                            ))),
                                        }
                                    }
                                    if c.udp_encapsulation
                                        && keepalive.is_none()
                                        && let Some(every) = self.profile.network.nat_keepalive
                                    {
                                        let every = every.max(Duration::from_secs(1));
                                        keepalive = Some(tokio::time::interval_at(
                                            tokio::time::Instant::now() + every,
                                            every,
                                        ));
                                    }
                                    if let (Some(dp), Some(info)) =
                                        (kernel_dp.as_mut(), pending_dns.take())
                                    {
                                        let line = match dp.set_dns(&info, &self.profile.name) {
                                            Ok(l) => l,
                                            Err(e) => format!("dns: not set up: {e}"),
                                        };
                                        self.emit(Event::Datapath(line));
                                    }
                                }
                                Err(e) => {
                                    ike.close(Instant::now());
                                    flush(&socket, natt_socket.as_ref(), &mut ike).await;
                                    return Err(Failure::new(
                                        FailureKind::Datapath,
                                        format!("kernel datapath: {e}"),
                                    ));
                                }
                            }
                        } else {
                            if !c.udp_encapsulation && raw_socket.is_none() {
                                match open_raw_esp(remote.ip()) {
                                    Ok(s) => raw_socket = Some(s),
                                    Err(e) => {
                                        ike.close(Instant::now());
                                        flush(&socket, natt_socket.as_ref(), &mut ike).await;
                                        return Err(Failure::new(
                                            FailureKind::Datapath,
                                            format!("datapath: cannot open a raw ESP socket: {e}"),
                                        ));
                                    }
                                }
                            }
                            match crate::datapath::on_established(
                                &mut datapath,
                                if c.udp_encapsulation {
                                    natt_socket.as_ref()
                                } else {
                                    raw_socket.as_ref()
                                },
                                remote.ip(),
                                self.profile.network.virtual_ip,
                                self.profile.phase2.remote_networks.is_empty(),
                                &volume_tx,
                                &c,
                            ) {
                                Ok(line) => {
                                    self.emit(Event::Datapath(line));
                                    if let Some(dp) = datapath.as_ref() {
                                        dp.set_nat_keepalive(self.profile.network.nat_keepalive);
                                    }
                                    // DNS from Mode Config, once, with the first SA.
                                    if let (Some(dp), Some(info)) =
                                        (datapath.as_mut(), pending_dns.take())
                                    {
                                        let line = match dp.set_dns(&info, &self.profile.name) {
                                            Ok(l) => l,
                                            Err(e) => format!("dns: not set up: {e}"),
                                        };
                                        self.emit(Event::Datapath(line));
                                    }
                                }
                                Err(e) => {
                                    ike.close(Instant::now());
                                    flush(&socket, natt_socket.as_ref(), &mut ike).await;
                                    return Err(Failure::new(
                                        FailureKind::Datapath,
                                        format!("datapath: {e}"),
                                    ));
                                }
                            }
                        }
                        if up_children == expected_children {
                            self.emit(Event::Connected {
                                elapsed: start.elapsed(),
                            });
                            *connected = true;
                        }
                    }
                    ike::Event::CredentialsRequired(req) => {
                        awaiting_credentials = true;
                        self.emit(Event::CredentialsRequired(req));
                    }
                    ike::Event::XAuthSucceeded => self.emit(Event::XAuthSucceeded),
                    ike::Event::Phase1Renewed(i) => self.emit(Event::Phase1Renewed {
                        proposal: i.proposal.to_string(),
                        lifetime: i.lifetime,
                    }),
                    ike::Event::Phase1RenewalFailed(e) => {
                        self.emit(Event::Phase1RenewalFailed(e.into()))
                    }
                    ike::Event::ModeConfig(info) => {
                        let dns_mode = &self.profile.network.dns;
                        if !matches!(dns_mode, profile::DnsMode::Off) && !info.dns.is_empty() {
                            let mut domains: Vec<String> =
                                info.default_domain.iter().cloned().collect();
                            domains.extend(info.split_dns.iter().cloned());
                            pending_dns = Some(crate::kernel::dns::DnsConfig {
                                servers: info.dns.clone(),
                                domains,
                                exclusive: matches!(dns_mode, profile::DnsMode::Full),
                            });
                        }
                        expected_children = if !self.profile.phase2.remote_networks.is_empty() {
                            self.profile.phase2.remote_networks.len()
                        } else {
                            info.split_include
                                .iter()
                                .filter(|t| t.addr.is_ipv4())
                                .count()
                                .max(1)
                        };
                        self.emit(Event::ModeConfig(info));
                    }
                    ike::Event::Phase2Failed(e) => {
                        let failure = Failure::from(e);
                        self.emit(Event::Phase2Failed(failure.clone()));
                        if ike.children().is_empty() {
                            // Nothing usable is left: close phase 1 too, and fail.
                            ike.close(Instant::now());
                            flush(&socket, natt_socket.as_ref(), &mut ike).await;
                            return Err(failure);
                        }
                    }
                    ike::Event::Phase2Deleted {
                        spi_in,
                        spi_out,
                        by_peer,
                    } => {
                        self.emit(Event::Phase2Deleted {
                            spi_in,
                            spi_out,
                            by_peer,
                        });
                        replacing.retain(|s| *s != spi_in);
                        if let Some(dp) = datapath.as_mut() {
                            dp.remove(spi_in, spi_out);
                        }
                        if let Some(dp) = kernel_dp.as_mut() {
                            dp.remove(spi_in, spi_out).await;
                        }
                    }
                    ike::Event::Phase1Deleted => {
                        let mut f = Failure::new(
                            FailureKind::DroppedByPeer,
                            "the gateway closed the connection (deleted the IKE SA)",
                        );
                        f.lost = true;
                        return Err(f);
                    }
                    ike::Event::Failed(e) => return Err(e.into()),
                    ike::Event::Closed => {
                        self.emit(Event::Disconnected);
                        return Ok(());
                    }
                }
            }
            let deadline = ike.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = async {
                    match keepalive.as_mut() {
                        Some(k) => {
                            k.tick().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }, if keepalive.is_some() => {
                    if let Some(s) = natt_socket.as_ref() {
                        let _ = s.send(&[0xff]).await;
                    }
                }
                r = async {
                    match raw_socket.as_ref() {
                        Some(s) => s.recv(&mut buf_raw).await,
                        None => std::future::pending().await,
                    }
                }, if raw_socket.is_some() => match r {
                    Ok(n) => if let Some(dp) = datapath.as_mut() {
                        dp.inbound_raw(&mut buf_raw[..n]);
                        ike.traffic_received(Instant::now());
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(Failure::new(FailureKind::Internal, format!("receive raw ESP: {e}"))),
                },
                r = async {
                    match xfrm_events.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                }, if xfrm_events.is_some() => match r {
                    Ok(list) => {
                        for ev in list {
                            let Some(dp) = kernel_dp.as_ref() else { continue };
                            let (spi_in, line) = match ev {
                                crate::kernel::xfrm::XfrmEvent::Expired(e) => {
                                    let Some(spi_in) = dp.pair_of(e.spi) else { continue };
                                    (spi_in, format!(
                                        "kernel: ESP SA {:#010x} reached its {} volume limit; rekeying",
                                        e.spi,
                                        if e.hard { "hard" } else { "soft" }
                                    ))
                                }
                                crate::kernel::xfrm::XfrmEvent::Acquire { reqid, remote } => {
                                    let Some(spi_in) = dp.pair_for_acquire(reqid, remote) else {
                                        continue;
                                    };
                                    (spi_in, format!(
                                        "kernel: traffic to {} found no ESP SA (acquire); negotiating phase 2 again",
                                        remote.map_or_else(|| "the tunnel".to_string(), |r| r.to_string())
                                    ))
                                }
                            };
                            if replacing.contains(&spi_in) {
                                continue;
                            }
                            self.emit(Event::Datapath(line));
                            // Not while phase 1 is down: a later acquire asks again.
                            if ike.rekey(Instant::now(), spi_in) {
                                replacing.push(spi_in);
                            }
                        }
                    }
                    Err(_) => xfrm_events = None,
                },
                r = socket.recv(&mut buf) => match r {
                    Ok(n) => ike.handle_datagram(Instant::now(), local, remote, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(Failure::new(FailureKind::Internal, format!("receive: {e}"))),
                },
                r = natt_readable(natt_socket.as_ref()) => {
                    let mut from = remote;
                    from.set_port(NAT_T_PORT);
                    let r = match (datapath.as_mut(), natt_socket.as_ref()) {
                        // The userspace datapath: everything waiting, in one recvmmsg; IKE
                        // (behind the non-ESP marker) to the engine, the rest to ESP.
                        (Some(dp), Some(s)) => r.and_then(|()| {
                            let esp = dp.drain_natt(s, |d| {
                                ike.handle_datagram(Instant::now(), natt_local, from, d)
                            })?;
                            // One write per coalesced packet (GRO) for the whole batch.
                            dp.flush_inbound();
                            // Anything from the gateway shows it alive: DPD probes only a
                            // quiet tunnel.
                            if esp > 0 {
                                ike.traffic_received(Instant::now());
                            }
                            Ok(())
                        }),
                        // No userspace datapath: only IKE comes here (the kernel takes ESP).
                        (None, Some(s)) => r.and_then(|()| match s.try_recv(&mut buf4500) {
                            Ok(n) if n > 4 && buf4500[..4] == [0, 0, 0, 0] => {
                                ike.handle_datagram(Instant::now(), natt_local, from, &buf4500[4..n]);
                                Ok(())
                            }
                            Ok(_) => Ok(()),
                            Err(e) => Err(e),
                        }),
                        _ => Ok(()),
                    };
                    match r {
                        Ok(()) => {}
                        Err(e) if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::ConnectionRefused
                        ) => {}
                        Err(e) => return Err(Failure::new(FailureKind::Internal, format!("receive on port {NAT_T_PORT}: {e}"))),
                    }
                },
                _ = sleep_until(deadline) => ike.handle_timeout(Instant::now()),
                Some(spi_in) = volume_rx.recv() => {
                    if !replacing.contains(&spi_in) {
                        replacing.push(spi_in);
                        self.emit(Event::Datapath(format!(
                            "datapath: ESP SA pair {spi_in:#010x} used 80 % of its volume lifetime; rekeying"
                        )));
                        ike.rekey(Instant::now(), spi_in);
                    }
                }
                c = self.next_command() => match c {
                    Command::Disconnect { reason } => {
                        self.emit(Event::Closing { reason });
                        ike.close(Instant::now());
                        flush(&socket, natt_socket.as_ref(), &mut ike).await;
                    }
                    Command::Credentials(creds) if awaiting_credentials => {
                        awaiting_credentials = false;
                        ike.submit_credentials(Instant::now(), creds)?;
                    }
                    Command::CredentialsRefused(msg) if awaiting_credentials => {
                        ike.close(Instant::now());
                        flush(&socket, natt_socket.as_ref(), &mut ike).await;
                        return Err(Failure::new(FailureKind::CredentialsMissing, msg));
                    }
                    // Answers nobody asked for are dropped (and zeroized).
                    Command::Credentials(_) | Command::CredentialsRefused(_) => {}
                    Command::Counters(reply) => {
                        let c = match (datapath.as_ref(), kernel_dp.as_mut()) {
                            (Some(d), _) => d.counters(),
                            (None, Some(k)) => k.counters().await,
                            (None, None) => Counters::default(),
                        };
                        let _ = reply.send(c);
                    }
                },
            }
        }
    }
}

/// Kernel or userspace ESP for this tunnel, and a line saying why when `auto` chose
/// (the probe runs on a thread of its own; this task awaits it).
async fn choose_datapath(p: &Profile) -> (bool, Option<String>) {
    match p.network.datapath {
        profile::Datapath::Kernel => (true, None),
        profile::Datapath::Userspace => (false, None),
        profile::Datapath::Auto => match crate::kernel::xfrm::probe_esp().await {
            Ok(why) => (true, Some(format!("datapath auto: kernel ({why})"))),
            Err(why) => (false, Some(format!("datapath auto: userspace ({why})"))),
        },
    }
}

/// Creates the kernel datapath with the first SA, then installs each SA pair.
async fn kernel_on_established(
    dp: &mut Option<crate::datapath::kernel_esp::KernelDatapath>,
    ike: &UdpSocket,
    natt: Option<&UdpSocket>,
    local: IpAddr,
    gateway: IpAddr,
    fixed_vip: Option<std::net::Ipv4Addr>,
    c: &ike::ChildSa,
) -> Result<String, crate::datapath::DatapathError> {
    use crate::datapath::DatapathError;
    // IKE itself never goes through the SAs (in transport mode they cover its addresses).
    if dp.is_none() {
        crate::kernel::udp_encap::bypass_ipsec(ike, gateway.is_ipv6()).map_err(|e| {
            DatapathError::Socket(std::io::Error::new(
                e.kind(),
                format!("IKE socket IPsec bypass: {e}"),
            ))
        })?;
    }
    // ESP in UDP: the kernel decapsulates what arrives on our port 4500 socket.
    let mut ports = None;
    if c.udp_encapsulation {
        let s = natt.ok_or(DatapathError::Unsupported(
            "ESP in UDP without the NAT-T socket",
        ))?;
        crate::kernel::udp_encap::set_espinudp(s).map_err(DatapathError::Socket)?;
        crate::kernel::udp_encap::bypass_ipsec(s, gateway.is_ipv6()).map_err(|e| {
            DatapathError::Socket(std::io::Error::new(
                e.kind(),
                format!("NAT-T socket IPsec bypass: {e}"),
            ))
        })?;
        let ours = s.local_addr().map_err(DatapathError::Socket)?.port();
        let theirs = s.peer_addr().map_err(DatapathError::Socket)?.port();
        ports = Some((ours, theirs));
    }
    let d = match dp {
        Some(d) => d,
        None => {
            let vip = match c.encapsulation {
                ike::Encapsulation::Transport => local,
                ike::Encapsulation::Tunnel => crate::datapath::virtual_ip(c, fixed_vip)?,
            };
            dp.insert(crate::datapath::kernel_esp::KernelDatapath::start(
                local, gateway, vip, ports,
            )?)
        }
    };
    d.install(c).await?;
    Ok(format!(
        "datapath kernel reqid={:#x}{} vip={} remote={}",
        d.reqid(),
        if c.udp_encapsulation {
            " esp-in-udp"
        } else {
            ""
        },
        d.vip(),
        c.remote_ts.map(|t| t.to_string()).unwrap_or_default()
    ))
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
    Phase1Summary {
        mode: i.mode.name(),
        proposal: i.proposal.to_string(),
        lifetime: i.lifetime,
        local_id: i.local_id.to_string(),
        peer_id: i.peer_id.to_string(),
        nat_t: match (i.nat_t, i.nat.local_behind_nat, i.nat.remote_behind_nat) {
            (None, _, _) => "no",
            (Some(_), true, true) => "yes (both sides behind NAT)",
            (Some(_), true, false) => "yes (we are behind NAT)",
            (Some(_), false, true) => "yes (gateway behind NAT)",
            (Some(_), false, false) => "available (no NAT)",
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
        lifetime: c.lifetime,
        lifetime_kb: c.lifetime_kb,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
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
        None => s.push_str(" (no address)"),
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

/// Sends one datagram: on port 500, or on 4500 behind the non-ESP marker.
pub(crate) async fn send(
    socket: &UdpSocket,
    natt: Option<&UdpSocket>,
    t: &ike::Transmit,
) -> std::io::Result<()> {
    match (t.nat_t, natt) {
        (true, Some(s)) => {
            let mut d = Vec::with_capacity(t.data.len() + 4);
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&t.data);
            s.send(&d).await.map(drop)
        }
        _ => socket.send(&t.data).await.map(drop),
    }
}

/// A raw IP protocol 50 socket connected to the gateway (so it sees only its ESP), for
/// the userspace datapath without UDP encapsulation. Sending: the kernel adds the IP
/// header; receiving: IPv4 packets arrive with theirs
/// ([`crate::datapath::Datapath::inbound_raw`]).
pub(crate) fn open_raw_esp(gateway: IpAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if gateway.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(50)))?;
    s.connect(&SocketAddr::new(gateway, 0).into())?;
    s.set_nonblocking(true)?;
    let fd: std::os::fd::OwnedFd = s.into();
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// A UDP socket on the IKE port that other tunnels may bind too (SO_REUSEADDR). Each
/// tunnel connects its sockets to its gateway, and the kernel hands a datagram to the
/// socket connected to its sender, so tunnels to different gateways run side by side,
/// in one helper or several.
pub(crate) fn bind_shared(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Whether a UDP socket in this network namespace already talks IKE with `remote`
/// (local port 500 connected to the gateway's 500), as another tunnel of this helper or
/// of another helper would.
fn ike_peer_in_use(remote: SocketAddr) -> bool {
    let table = if remote.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    std::fs::read_to_string(table).is_ok_and(|text| {
        text.lines()
            .skip(1)
            .any(|l| ike_socket_to(l, remote) == Some(true))
    })
}

/// One line of /proc/net/udp{,6}: whether it is a socket bound to port 500 and
/// connected to `remote` (`None`: not such a line).
fn ike_socket_to(line: &str, remote: SocketAddr) -> Option<bool> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, rem) = (f.get(1)?, f.get(2)?);
    let port = |a: &str| u16::from_str_radix(a.rsplit_once(':')?.1, 16).ok();
    if port(local)? != IKE_PORT || port(rem)? != remote.port() {
        return None;
    }
    let hex = rem.rsplit_once(':')?.0;
    // The address as the kernel prints it: each 32-bit word in host byte order.
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let w = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some(ip == remote.ip())
}

/// Waits until the NAT-T socket has something to read (never, without one).
async fn natt_readable(s: Option<&UdpSocket>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// Sends whatever the engine queued (the DELETEs) before we go.
async fn flush(socket: &UdpSocket, natt: Option<&UdpSocket>, ike: &mut Ike) {
    let mut pending = Vec::new();
    while let Some(t) = ike.poll_transmit() {
        pending.push(t);
    }
    let _ = tokio::time::timeout(FLUSH_GRACE, async {
        for t in pending {
            let _ = send(socket, natt, &t).await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_lines_name_the_connected_gateway() {
        let gw: SocketAddr = "192.0.2.1:500".parse().expect("addr");
        // 192.0.2.1 as the kernel prints it on a little-endian machine.
        let word = u32::from_ne_bytes([192, 0, 2, 1]);
        let line = format!(
            "  12: 00000000:01F4 {word:08X}:01F4 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0"
        );
        assert_eq!(ike_socket_to(&line, gw), Some(true));
        let other: SocketAddr = "192.0.2.3:500".parse().expect("addr");
        assert_eq!(ike_socket_to(&line, other), Some(false));
        // Bound to 500 but not connected (remote 0.0.0.0:0), or another port.
        let unconnected = "  13: 00000000:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0";
        assert_eq!(ike_socket_to(unconnected, gw), None);
        assert_eq!(ike_socket_to("garbage", gw), None);
        assert_eq!(ike_socket_to("  1: 00000000:01F4 ZZZZ:01F4", gw), None);
        let v6: SocketAddr = "[2001:db8::1]:500".parse().expect("addr");
        let words: String = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let line6 =
            format!("  3: 00000000000000000000000000000000:01F4 {words}:01F4 01 0 0 0 0 0 1");
        assert_eq!(ike_socket_to(&line6, v6), Some(true));
    }
}
