//! One connection attempt of a tunnel: the engine, its sockets and the datapath, with
//! one method per event source (the engine's outputs, port 500, port 4500, raw ESP,
//! the kernel's XFRM notifications, volume lifetimes, NAT keepalives, the front end's
//! commands). The driver (`super::Driver`) runs one session after another when it
//! reconnects.
//!
//! Nothing here blocks the runtime's thread: every call into the datapath (netlink,
//! XFRM, the system bus for DNS, the ESP probe) runs through `spawn_blocking`, so one
//! tunnel's setup never stalls another tunnel or the D-Bus service on the same thread.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use postern_dbus::failure::FailureKind;
use postern_dbus::profile::{self, Profile};
use postern_engine::ike::{self, Ike, NAT_T_PORT};
use postern_engine::ike2::Ike2;

use super::engine::Engine;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::clock::Clock;
use super::config::{engine_config, profile_children};
use super::logind::{self, Logind, Sleep};
use super::netwatch::{self, Verdict, Watcher};
use super::sockets::{bind_shared, flush, ike_peer_in_use, natt_readable, open_raw_esp, send};
use super::{Command, Driver, Event, Failure, IKE_PORT, phase1_summary, resolve, sa_summary};
use crate::datapath::{Active, RekeySender, Start, encap};
use crate::kernel::dns::DnsConfig;
use crate::kernel::firewall::{self, Rules};
use crate::kernel::xfrm::{EventListener, XfrmEvent};

mod mobike;

/// Which side of the negotiation this tunnel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client: resolves the gateway, starts main or aggressive mode.
    Initiator,
    /// The lab's one-peer responder (`postern-helper respond`): the profile's
    /// `gateway` is the peer's address; userspace datapath only.
    Responder,
}

/// What woke the session up.
enum Wake {
    Keepalive,
    Raw(io::Result<()>),
    Xfrm(io::Result<Vec<XfrmEvent>>),
    Ike(io::Result<usize>),
    Natt(io::Result<()>),
    Timeout,
    Volume(u32),
    Command(Command),
    /// The outer network changed and settled: look at the route to the gateway.
    Network,
    Sleep(Sleep),
}

/// After a resume, how long the gateway has to answer the R-U-THERE before it is
/// taken for one that forgot us (then the tunnel is negotiated again at once).
const RESUME_CHECK: Duration = Duration::from_secs(3);

/// Whether the session goes on after the engine's outputs.
enum Flow {
    Continue,
    /// Closed cleanly (on request, or by the peer for the responder).
    Closed,
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Failure::new(
            FailureKind::Internal,
            format!("a datapath task failed: {e}"),
        )
    })
}

pub(super) struct Session<'d> {
    driver: &'d mut Driver,
    role: Role,
    remote: SocketAddr,
    local: SocketAddr,
    natt_local: SocketAddr,
    socket: UdpSocket,
    natt: Option<UdpSocket>,
    /// Raw ESP (IP protocol 50) for the userspace datapath when NAT-T is not in use.
    raw: Option<UdpSocket>,
    ike: Engine,
    start: Instant,
    expected_children: usize,
    up_children: usize,
    awaiting_credentials: bool,
    /// The XAuth round the user is asked to answer.
    asked: Option<ike::CredentialsRequest>,
    /// This session's XAuth was answered from the driver's memory.
    xauth_from_memory: bool,
    /// Every expected SA came up at least once.
    pub(super) connected: bool,
    /// Created with the first SA.
    datapath: Option<Active>,
    /// Kernel or userspace, decided once with the first SA (or before phase 1, when
    /// the encapsulation to ask for depends on it).
    use_kernel: Option<bool>,
    /// ESP in UDP or raw ESP: what was asked for and why (initiator).
    encap: Option<encap::Plan>,
    /// The encapsulation the first SA got was said.
    encap_said: bool,
    /// NAT keepalives on port 4500 when the kernel carries ESP in UDP (the userspace
    /// datapath sends its own).
    keepalive: Option<tokio::time::Interval>,
    /// The kernel's notifications about our SAs (kernel datapath): a volume-limit
    /// expiry (soft = rekey) or an acquire (traffic found no SA: negotiate a pair).
    xfrm_events: Option<EventListener>,
    /// Pairs we asked the engine to replace (inbound SPIs): once each.
    replacing: Vec<u32>,
    /// The userspace datapath's SAs at 80 % of their volume lifetime (inbound SPIs).
    volume_tx: RekeySender,
    volume_rx: mpsc::UnboundedReceiver<u32>,
    /// DNS from Mode Config, set up with the first SA.
    pending_dns: Option<DnsConfig>,
    /// The DNS servers Mode Config gave (the kill switch pins port 53 to them).
    mode_config_dns: Vec<IpAddr>,
    buf: Vec<u8>,
    buf4500: Vec<u8>,
    /// The engine's clock, which counts the time asleep.
    clock: Clock,
    /// The outer network (initiator): the route to the gateway, and how the tunnel's
    /// packets leave now.
    net: Option<Watcher>,
    path: netwatch::Path,
    /// "No route to the gateway" was said (once per loss).
    no_route_said: bool,
    /// logind's signals, lent by the driver for the session.
    logind: Option<Logind>,
    /// Waiting for the gateway's answer to the check after a resume.
    resume_check: bool,
    /// An IKEv2 MOBIKE move in flight (`mobike.rs`).
    moving: Option<mobike::Move>,
}

impl<'d> Session<'d> {
    /// Resolves the gateway, binds and connects the sockets, starts the engine.
    pub(super) async fn open(driver: &'d mut Driver, role: Role) -> Result<Session<'d>, Failure> {
        let remote = match role {
            Role::Initiator => resolve(&driver.profile.gateway).await?,
            Role::Responder => peer_address(&driver.profile.gateway)?,
        };
        // The kill switch holds from the first attempt on: only the way to the
        // gateway until the tunnel is up.
        if role == Role::Initiator && driver.profile.network.kill_switch {
            driver.hold_while_connecting(remote.ip()).await?;
        }
        let p = &driver.profile;
        let bind: SocketAddr = match remote {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], IKE_PORT)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], IKE_PORT)),
        };
        // The shared port 500 carries one tunnel per gateway: a second socket connected
        // to the same gateway would take the first one's datagrams.
        if role == Role::Initiator && ike_peer_in_use(remote) {
            return Err(Failure::new(
                FailureKind::Datapath,
                format!(
                    "a tunnel to {} is already up (another profile uses this gateway); take it down first",
                    remote.ip()
                ),
            ));
        }
        let socket = connected_socket(
            bind,
            remote,
            "(run as root; is another IKE daemon running?)",
        )
        .await?;
        let local = socket
            .local_addr()
            .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
        // The NAT-T socket: IKE floats here when a NAT is found (RFC 3947), with the
        // 4-byte non-ESP marker in front of each IKE message.
        let natt = if role == Role::Initiator
            && matches!(p.network.nat_traversal, profile::NatTraversal::Off)
        {
            None
        } else {
            let (mut b, mut r) = (bind, remote);
            b.set_port(NAT_T_PORT);
            r.set_port(NAT_T_PORT);
            Some(connected_socket(b, r, "(is another IKE daemon running?)").await?)
        };
        let mut natt_local = local;
        natt_local.set_port(NAT_T_PORT);

        let mut config = engine_config(p, local.ip())?;
        if role == Role::Initiator && !matches!(p.network.mode_config, profile::ModeConfig::Off) {
            // Negotiating anew (network change, resume): the same inner address.
            config.requested_address = driver.requested_address;
        }
        // ESP in UDP or raw ESP, decided before phase 1: the userspace datapath asks for
        // UDP (much faster there), so `auto` may have to pick the datapath now.
        let encap = if role == Role::Initiator {
            let probed = if encap::needs_probe(p) {
                Some(crate::kernel::xfrm::probe_esp().await)
            } else {
                None
            };
            let plan = encap::plan(p, probed);
            config.nat_traversal = plan.nat_traversal;
            Some(plan)
        } else {
            None
        };
        // IKEv2: one child SA in IKE_AUTH, one CREATE_CHILD_SA per further network.
        let v2 = p.ike_version == 2;
        let expected_children = if v2 && role == Role::Initiator {
            postern_engine::ike2::planned_children(&config)
        } else if v2 {
            1
        } else {
            profile_children(p, local.ip()).len()
        };
        let rng = crate::rng::os_rng()
            .map_err(|e| Failure::new(FailureKind::Internal, format!("no randomness: {e}")))?;
        let start = Instant::now();
        let clock = Clock::new();
        let (net, path) = if role == Role::Initiator {
            watch_network(driver, remote.ip(), local.ip()).await
        } else {
            (
                None,
                netwatch::Path {
                    source: local.ip(),
                    oif: None,
                },
            )
        };
        let mut net = net;
        // A device kept from the last negotiation is no way to the gateway.
        if let (Some(w), Some(name)) = (
            net.as_mut(),
            driver
                .kept
                .as_mut()
                .and_then(Active::user)
                .map(|d| d.device_name().to_string()),
        ) && let Ok(index) = nix::net::if_::if_nametoindex(name.as_str())
        {
            w.ignore_device(index);
        }
        let ike = match role {
            Role::Initiator => {
                driver.emit(Event::Connecting {
                    name: p.name.clone(),
                    remote,
                    local: local.ip(),
                    mode: if v2 { "ikev2" } else { config.mode.name() },
                });
                if let Some(plan) = &encap {
                    for line in [plan.datapath_line.clone(), plan.asking_line()]
                        .into_iter()
                        .flatten()
                    {
                        driver.emit(Event::Note(line));
                    }
                }
                if v2 {
                    let mut e = Ike2::initiate(config, local, remote, clock.now(), Box::new(rng))?;
                    // MOBIKE is offered in IKE_AUTH, after this first message.
                    e.set_mobike(p.network.mobike);
                    Engine::V2(Box::new(e))
                } else {
                    Engine::V1(Box::new(Ike::initiate(
                        config,
                        local,
                        remote,
                        clock.now(),
                        Box::new(rng),
                    )?))
                }
            }
            Role::Responder => {
                driver.emit(Event::Responding {
                    local,
                    peer: remote,
                });
                if v2 {
                    let mut e = Ike2::respond(config, local, remote, Box::new(rng));
                    // The responder's sockets are connected to the peer's address: it
                    // could not follow a move, so it does not offer MOBIKE.
                    e.set_mobike(false);
                    Engine::V2(Box::new(e))
                } else {
                    Engine::V1(Box::new(Ike::respond(config, local, remote, Box::new(rng))))
                }
            }
        };
        let (volume_tx, volume_rx) = mpsc::unbounded_channel();
        if role == Role::Initiator {
            driver.gateway = Some(remote.ip());
        }
        Ok(Session {
            driver,
            role,
            remote,
            local,
            natt_local,
            socket,
            natt,
            raw: None,
            ike,
            start,
            expected_children,
            up_children: 0,
            awaiting_credentials: false,
            asked: None,
            xauth_from_memory: false,
            connected: false,
            datapath: None,
            use_kernel: if role == Role::Responder {
                Some(false)
            } else {
                encap.as_ref().and_then(|e| e.kernel)
            },
            encap,
            encap_said: false,
            keepalive: None,
            xfrm_events: None,
            replacing: Vec::new(),
            volume_tx,
            volume_rx,
            pending_dns: None,
            mode_config_dns: Vec::new(),
            buf: vec![0u8; 65536],
            buf4500: vec![0u8; 65536],
            clock,
            net,
            path,
            no_route_said: false,
            logind: None,
            resume_check: false,
            moving: None,
        })
    }

    fn profile(&self) -> &Profile {
        &self.driver.profile
    }

    /// Runs until the tunnel is closed or fails, then removes the datapath (its line is
    /// the last event before the driver's `disconnected`).
    ///
    /// A userspace datapath is kept instead (parked in the driver, device, inner
    /// address and routes in place) when the driver will negotiate again: the next
    /// session's SAs go into it, so applications' connections survive.
    pub(super) async fn run(&mut self) -> Result<(), Failure> {
        self.logind = self.driver.logind.take();
        let r = self.run_inner().await;
        self.driver.logind = self.logind.take();
        let again = self.driver.reconnects()
            && matches!(&r, Err(f) if f.lost || f.retry_now || f.kind == FailureKind::NotResponding);
        if let Some(dp) = self.datapath.take() {
            let r = blocking(move || {
                let mut dp = dp;
                if again && dp.park() {
                    (Some(dp), None)
                } else {
                    (None, Some(dp.stop()))
                }
            })
            .await;
            match r {
                Ok((kept, line)) => {
                    if let Some(line) = line {
                        self.driver.emit(Event::Datapath(line));
                    }
                    self.driver.kept = kept;
                }
                Err(f) => self.driver.emit(Event::Datapath(format!("datapath: {f}"))),
            }
        }
        r
    }

    async fn run_inner(&mut self) -> Result<(), Failure> {
        loop {
            if let Flow::Closed = self.drive_engine().await? {
                return Ok(());
            }
            let wake = self.wait().await;
            self.on_wake(wake).await?;
            if self.resume_check && !self.ike.checking_peer() && self.ike.is_established() {
                self.resume_check = false;
                self.driver.emit(Event::GatewayAnswered);
            }
        }
    }

    /// The engine's outputs, in its documented order: datagrams, then events; again
    /// after each event, since handling one may feed the engine (XAuth answered from
    /// memory) and its datagrams must not wait for the next wakeup.
    async fn drive_engine(&mut self) -> Result<Flow, Failure> {
        loop {
            self.send_datagrams().await?;
            let Some(ev) = self.ike.poll_event() else {
                return Ok(Flow::Continue);
            };
            if let Flow::Closed = self.on_engine_event(ev).await? {
                return Ok(Flow::Closed);
            }
        }
    }

    /// Sends what the engine has to send.
    async fn send_datagrams(&mut self) -> Result<(), Failure> {
        while let Some(t) = self.ike.poll_transmit() {
            if let Err(e) = send(&self.socket, self.natt.as_ref(), &t).await {
                // ICMP unreachable comes back as ECONNREFUSED on a connected socket:
                // keep retransmitting; the engine gives up in bounded time.
                if e.kind() != io::ErrorKind::ConnectionRefused {
                    return Err(Failure::new(
                        FailureKind::NotResponding,
                        format!("send to {}: {e}", self.remote),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits for the next thing to do.
    async fn wait(&mut self) -> Wake {
        let deadline = self.ike.poll_timeout().map(|d| self.clock.to_tokio(d));
        tokio::select! {
            _ = async {
                match self.keepalive.as_mut() {
                    Some(k) => { k.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            }, if self.keepalive.is_some() => Wake::Keepalive,
            r = natt_readable(self.raw.as_ref()), if self.raw.is_some() => Wake::Raw(r),
            r = async {
                match self.xfrm_events.as_mut() {
                    Some(l) => l.next().await,
                    None => std::future::pending().await,
                }
            }, if self.xfrm_events.is_some() => Wake::Xfrm(r),
            r = self.socket.recv(&mut self.buf) => Wake::Ike(r),
            r = natt_readable(self.natt.as_ref()) => Wake::Natt(r),
            _ = sleep_until(deadline) => Wake::Timeout,
            Some(spi_in) = self.volume_rx.recv() => Wake::Volume(spi_in),
            c = self.driver.next_command() => Wake::Command(c),
            _ = async {
                match self.net.as_mut() {
                    Some(n) => n.changed().await,
                    None => std::future::pending().await,
                }
            }, if self.net.is_some() => Wake::Network,
            s = logind::next(self.logind.as_mut()), if self.logind.is_some() => Wake::Sleep(s),
        }
    }

    async fn on_wake(&mut self, wake: Wake) -> Result<(), Failure> {
        match wake {
            Wake::Keepalive => {
                if let Some(s) = self.natt.as_ref() {
                    let _ = s.send(&[0xff]).await;
                }
            }
            Wake::Raw(r) => self.on_raw(r)?,
            Wake::Xfrm(r) => self.on_xfrm(r),
            Wake::Ike(r) => match r {
                Ok(n) => self.ike.handle_datagram(
                    self.clock.now(),
                    self.local,
                    self.remote,
                    &self.buf[..n],
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    return Err(Failure::new(FailureKind::Internal, format!("receive: {e}")));
                }
            },
            Wake::Natt(r) => self.on_natt(r)?,
            Wake::Timeout => self.ike.handle_timeout(self.clock.now()),
            Wake::Volume(spi_in) => {
                if !self.replacing.contains(&spi_in) {
                    self.replacing.push(spi_in);
                    self.driver.emit(Event::Datapath(format!(
                        "datapath: ESP SA pair {spi_in:#010x} used 80 % of its volume lifetime; rekeying"
                    )));
                    self.ike.rekey(self.clock.now(), spi_in);
                }
            }
            Wake::Command(c) => self.on_command(c).await?,
            Wake::Network => self.on_network().await?,
            Wake::Sleep(s) => self.on_sleep(s).await?,
        }
        Ok(())
    }

    /// The outer network changed: when the gateway is now reached from another
    /// address or by another interface, this session ends and the driver negotiates
    /// again at once from the new address (IKEv1 has no MOBIKE).
    async fn on_network(&mut self) -> Result<(), Failure> {
        let Some(w) = self.net.as_ref() else {
            return Ok(());
        };
        let now = w.path().await;
        match netwatch::judge(&self.path, now.as_ref()) {
            Verdict::Same => {
                self.no_route_said = false;
                Ok(())
            }
            Verdict::NoRoute => {
                if !self.no_route_said {
                    self.no_route_said = true;
                    self.driver.emit(Event::Note(format!(
                        "network: no route to the gateway {} now; waiting for a network",
                        self.remote.ip()
                    )));
                }
                Ok(())
            }
            Verdict::Moved { to } => {
                // IKEv2 with a gateway that does MOBIKE: the tunnel moves.
                if self.try_move(to).await? {
                    return Ok(());
                }
                self.driver.emit(Event::NetworkChanged {
                    from: self.path.source,
                    to: to.source,
                });
                let mut f = Failure::new(
                    FailureKind::NotResponding,
                    format!(
                        "the network changed (the gateway is now reached from {})",
                        to.source
                    ),
                );
                f.lost = true;
                f.retry_now = true;
                f.network_changed = true;
                Err(f)
            }
        }
    }

    /// logind: before a sleep, close the tunnel (`on_suspend = "disconnect"`, then let
    /// the machine sleep) or keep it; after it, ask the gateway at once and let the
    /// engine see the time that passed (lifetimes that ran out are renewed now).
    async fn on_sleep(&mut self, s: Sleep) -> Result<(), Failure> {
        match s {
            Sleep::Suspending
                if self.profile().network.on_suspend == profile::OnSuspend::Disconnect =>
            {
                self.on_command(Command::Disconnect {
                    reason: "the machine suspends".into(),
                })
                .await?;
                // The DELETEs are sent: the machine may sleep.
                if let Some(l) = self.logind.as_mut() {
                    l.release();
                }
            }
            Sleep::Suspending => self.driver.emit(Event::Note(
                "suspend: the tunnel is kept (network.on_suspend = \"keep\"); checked on resume"
                    .into(),
            )),
            Sleep::Resumed => {
                self.driver.emit(Event::Resumed);
                let asleep = self.clock.asleep();
                if !asleep.is_zero() {
                    self.driver.emit(Event::Note(format!(
                        "resumed after {} s asleep",
                        asleep.as_secs()
                    )));
                }
                // Timers first (what ran out during the sleep is renegotiated now),
                // then the question to the gateway.
                let now = self.clock.now();
                self.ike.handle_timeout(now);
                if self.ike.check_peer(now, RESUME_CHECK) {
                    self.resume_check = true;
                } else if self.ike.is_established() {
                    self.driver.emit(Event::Note(
                        "resumed: the gateway does not do dead peer detection; the tunnel is kept as it was".into(),
                    ));
                    self.driver.emit(Event::GatewayAnswered);
                }
                // The network may have changed during the sleep.
                self.on_network().await?;
            }
        }
        Ok(())
    }

    /// One engine event: the front end is told, the datapath follows.
    async fn on_engine_event(&mut self, ev: ike::Event) -> Result<Flow, Failure> {
        match ev {
            ike::Event::Phase1Established(i) => self
                .driver
                .emit(Event::Phase1Established(phase1_summary(&i))),
            ike::Event::Phase2Established(c) => self.on_phase2(c).await?,
            ike::Event::CredentialsRequired(req) => {
                // A reconnect: what the user gave at connect answers a password round
                // (never a one-time passcode, next PIN or challenge).
                if let Some(creds) = self.driver.xauth.answer(&req) {
                    self.driver.emit(Event::Note(
                        "xauth: answered with what was given at connect (reconnecting)".into(),
                    ));
                    self.xauth_from_memory = true;
                    self.ike.submit_credentials(self.clock.now(), creds)?;
                    return Ok(Flow::Continue);
                }
                self.awaiting_credentials = true;
                self.asked = Some(req.clone());
                self.driver.emit(Event::CredentialsRequired(req));
            }
            ike::Event::XAuthSucceeded => self.driver.emit(Event::XAuthSucceeded),
            ike::Event::Phase1Renewed(i) => self.driver.emit(Event::Phase1Renewed {
                proposal: i.proposal.to_string(),
                lifetime: i.lifetime,
            }),
            ike::Event::Phase1RenewalFailed(e) => {
                self.driver.emit(Event::Phase1RenewalFailed(e.into()))
            }
            ike::Event::ModeConfig(info) => {
                self.mode_config_dns = info.dns.clone();
                let dns_mode = &self.profile().network.dns;
                if !matches!(dns_mode, profile::DnsMode::Off) && !info.dns.is_empty() {
                    let mut domains: Vec<String> = info.default_domain.iter().cloned().collect();
                    domains.extend(info.split_dns.iter().cloned());
                    self.pending_dns = Some(DnsConfig {
                        servers: info.dns.clone(),
                        domains,
                        exclusive: matches!(dns_mode, profile::DnsMode::Full),
                    });
                }
                // The pairs the engine negotiates next (at least one is waited for).
                let networks: Vec<ike::TrafficSelector> = self
                    .profile()
                    .phase2
                    .remote_networks
                    .iter()
                    .map(super::config::ts)
                    .collect();
                // IKEv2 plans its children from the profile (set at the start).
                if !self.ike.is_v2() {
                    self.expected_children = info.children(&networks).len().max(1);
                }
                if info.address.is_some() {
                    self.driver.requested_address = info.address;
                }
                self.driver.emit(Event::ModeConfig(info));
            }
            ike::Event::Phase2Failed(e) => {
                let failure = Failure::from(e);
                self.driver.emit(Event::Phase2Failed(failure.clone()));
                if self.ike.children().is_empty() {
                    // Nothing usable is left: close phase 1 too, and fail.
                    return Err(self.abort(failure).await);
                }
                // IKEv2: a further child refused; the others carry the tunnel.
                if self.ike.is_v2() && !self.connected {
                    self.expected_children = self.expected_children.saturating_sub(1).max(1);
                    self.connected_if_all_up().await?;
                }
            }
            ike::Event::Phase2Deleted {
                spi_in,
                spi_out,
                by_peer,
            } => {
                self.driver.emit(Event::Phase2Deleted {
                    spi_in,
                    spi_out,
                    by_peer,
                });
                self.replacing.retain(|s| *s != spi_in);
                if self.datapath.as_ref().is_some_and(Active::is_kernel) {
                    // XFRM deletes: off the runtime's thread.
                    self.with_datapath(move |dp| dp.remove(spi_in, spi_out))
                        .await?;
                } else if let Some(dp) = self.datapath.as_mut() {
                    dp.remove(spi_in, spi_out);
                }
            }
            ike::Event::Phase1Deleted if self.role == Role::Responder => {
                self.driver.emit(Event::Closing {
                    reason: "closed by the peer".into(),
                });
                return Ok(Flow::Closed);
            }
            ike::Event::Phase1Deleted => {
                let mut f = Failure::new(
                    FailureKind::DroppedByPeer,
                    "the gateway closed the connection (deleted the IKE SA)",
                );
                f.lost = true;
                return Err(f);
            }
            ike::Event::MessageRefused(line) => self.driver.emit(Event::Datapath(line)),
            // Junk on the established SA: at most one line a minute (the engine's limit).
            ike::Event::Dropped(report) => self.driver.emit(Event::Datapath(report.to_string())),
            ike::Event::Failed(e) => {
                if self.xauth_from_memory && matches!(e, ike::Error::XAuthFailed(_)) {
                    // Refused now: the next connect asks the user.
                    self.driver.xauth.forget();
                }
                let mut f = Failure::from(e);
                // The gateway forgot us while we slept: negotiate again at once.
                f.retry_now = self.resume_check;
                // A MOBIKE move the gateway did not confirm: as a network change.
                self.move_failed(&mut f);
                return Err(f);
            }
            ike::Event::Closed => return Ok(Flow::Closed),
            ike::Event::Note(line) => self.driver.emit(Event::Note(line)),
            ike::Event::AddressesChanged(a) => self.on_moved(a).await?,
        }
        Ok(Flow::Continue)
    }

    /// An ESP SA pair is up: the datapath is created with the first one (kernel or
    /// userspace, decided then), each is installed, DNS set up once.
    async fn on_phase2(&mut self, c: ike::ChildSa) -> Result<(), Failure> {
        self.up_children += 1;
        self.driver.emit(Event::Phase2Established(sa_summary(
            &c,
            self.local,
            self.remote,
        )));
        if let Some(plan) = self.encap.as_ref().filter(|_| !self.encap_said) {
            let (nat_t, remote_nat) = self.ike.phase1().map_or((false, false), |i| {
                (i.nat_t.is_some(), i.nat.remote_behind_nat)
            });
            let line = plan.chosen_line(c.udp_encapsulation, nat_t, remote_nat);
            self.encap_said = true;
            self.driver.emit(Event::Note(line));
        }
        let installed = if self.datapath.is_some() {
            let c = c.clone();
            self.with_datapath(move |dp| dp.install(&c))
                .await?
                .unwrap_or(Ok(String::new()))
        } else {
            self.start_datapath(&c).await?
        };
        let line = match installed {
            Ok(line) => line,
            Err(e) => {
                let f = Failure::new(FailureKind::Datapath, format!("datapath: {e}"));
                return Err(self.abort(f).await);
            }
        };
        self.driver.emit(Event::Datapath(line));
        if let Some(info) = self.pending_dns.take() {
            let name = self.profile().name.clone();
            if let Some(line) = self
                .with_datapath(move |dp| dp.set_dns(&info, &name))
                .await?
            {
                self.driver.emit(Event::Datapath(line));
            }
        }
        self.connected_if_all_up().await
    }

    /// Says connected (and raises the firewall's rules) once every child the
    /// profile asks for is up or refused.
    async fn connected_if_all_up(&mut self) -> Result<(), Failure> {
        if self.up_children >= self.expected_children && !self.connected {
            let rules = self.firewall_rules();
            if let Err(f) = self.driver.shield(rules).await {
                return Err(self.abort(f).await);
            }
            self.driver.emit(Event::Connected {
                elapsed: self.start.elapsed(),
            });
            self.connected = true;
        }
        Ok(())
    }

    /// What the firewall should hold now that the tunnel is up: the kill switch when
    /// the profile asks for it, else the IPv6 leak block for a full tunnel that carries
    /// no IPv6; `None`: nothing.
    fn firewall_rules(&self) -> Option<Rules> {
        if self.role != Role::Initiator {
            return None;
        }
        let p = self.profile();
        let children = self.ike.children();
        // Every remote network of every SA (an IKEv2 SA may carry IPv6 beside IPv4).
        let remotes: Vec<ike::TrafficSelector> = children
            .iter()
            .flat_map(|c| c.ts_pairs())
            .map(|(_, r)| r)
            .collect();
        let full_tunnel =
            p.phase2.remote_networks.is_empty() && remotes.iter().any(|t| t.prefix == 0);
        let networks: Vec<(IpAddr, u8)> = remotes
            .iter()
            .filter(|t| t.prefix != 0)
            .map(|t| (t.addr, t.prefix))
            .collect();
        let carries_v6 = remotes.iter().any(|t| t.addr.is_ipv6());
        let block_ipv6 = full_tunnel && !carries_v6;
        let mode = if p.network.kill_switch {
            firewall::Mode::KillSwitch
        } else if block_ipv6 {
            firewall::Mode::Ipv6Block
        } else {
            return None;
        };
        let dns_on = !matches!(p.network.dns, profile::DnsMode::Off);
        Some(Rules {
            mode,
            gateway: self.remote.ip(),
            full_tunnel,
            networks,
            pin_dns: dns_on
                && !self.mode_config_dns.is_empty()
                && (full_tunnel || matches!(p.network.dns, profile::DnsMode::Full)),
            dns: self.mode_config_dns.clone(),
            allow_lan: p.network.allow_lan,
            block_ipv6,
            // No device with XFRM: the tunnel's packets are known by their source.
            inner: self
                .datapath
                .as_ref()
                .filter(|d| d.is_kernel())
                .map(Active::vip),
            connecting: false,
        })
    }

    /// Creates the datapath with the first SA. The outer error is the session's; the
    /// inner one the datapath's.
    async fn start_datapath(
        &mut self,
        c: &ike::ChildSa,
    ) -> Result<Result<String, crate::datapath::DatapathError>, Failure> {
        use crate::datapath::DatapathError;
        let kernel = match self.use_kernel {
            Some(k) => k,
            None => {
                let (k, line) = choose_datapath(self.profile().network.datapath).await;
                if let Some(line) = line {
                    self.driver.emit(Event::Datapath(line));
                }
                self.use_kernel = Some(k);
                k
            }
        };
        let mut esp_socket: Option<OwnedFd> = None;
        let mut kernel_encap = None;
        if kernel {
            if let Err(e) = self.kernel_sockets(c, &mut kernel_encap) {
                return Ok(Err(e));
            }
        } else {
            if !c.udp_encapsulation && self.raw.is_none() {
                match open_raw_esp(self.remote.ip()) {
                    Ok(s) => self.raw = Some(s),
                    Err(e) => {
                        let f = Failure::new(
                            FailureKind::Datapath,
                            format!("datapath: cannot open a raw ESP socket: {e}"),
                        );
                        return Err(self.abort(f).await);
                    }
                }
            }
            let sock = if c.udp_encapsulation {
                self.natt.as_ref()
            } else {
                self.raw.as_ref()
            };
            if let Some(s) = sock {
                match s.as_fd().try_clone_to_owned() {
                    Ok(fd) => esp_socket = Some(fd),
                    Err(e) => return Ok(Err(DatapathError::Socket(e))),
                }
            }
        }
        let p = self.profile();
        let start = Start {
            local: self.local.ip(),
            gateway: self.remote.ip(),
            fixed_vip: p.network.virtual_ip,
            full_tunnel: self.role == Role::Initiator && p.phase2.remote_networks.is_empty(),
            rekey: self.volume_tx.clone(),
            esp_socket,
            kernel_encap,
            nat_keepalive: p.network.nat_keepalive,
            allow_lan: p.network.allow_lan,
        };
        let nat_keepalive = p.network.nat_keepalive;
        let hold = lab_hold(&p.name);
        let mut start = start;
        // A datapath kept from the last negotiation (network change, lost gateway):
        // the same device, inner address and routes carry the new SAs.
        if let Some(kept) = self.driver.kept.take() {
            let child = c.clone();
            let was = kept.vip();
            let (kept, start_back, r) = blocking(move || {
                let mut kept = kept;
                let r = if kernel {
                    Ok(None)
                } else {
                    kept.resume(&mut start, &child)
                };
                (kept, start, r)
            })
            .await?;
            start = start_back;
            match r {
                Ok(Some(line)) => {
                    self.datapath = Some(kept);
                    self.driver.emit(Event::Note(format!(
                        "datapath: kept across the reconnect (the same device, inner address {was} and routes)"
                    )));
                    self.after_datapath_start(c, kernel, nat_keepalive);
                    return Ok(Ok(line));
                }
                Ok(None) => {
                    self.driver.emit(Event::Note(
                        "datapath: the tunnel's inner address or gateway changed: the device and routes are made anew".into(),
                    ));
                    match blocking(move || kept.stop()).await {
                        Ok(line) => self.driver.emit(Event::Datapath(line)),
                        Err(f) => self.driver.emit(Event::Datapath(format!("datapath: {f}"))),
                    }
                }
                Err(e) => {
                    self.datapath = Some(kept);
                    return Ok(Err(e));
                }
            }
        }
        let child = c.clone();
        let r = blocking(move || {
            if let Some(d) = hold {
                std::thread::sleep(d);
            }
            Active::start(kernel, start, &child)
        })
        .await?;
        let (dp, line) = match r {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        self.datapath = Some(dp);
        self.after_datapath_start(c, kernel, nat_keepalive);
        Ok(Ok(line))
    }

    /// What follows a datapath's start (or its resume): the network watcher ignores
    /// its device; the kernel's notifications and NAT keepalives.
    fn after_datapath_start(
        &mut self,
        c: &ike::ChildSa,
        kernel: bool,
        nat_keepalive: Option<Duration>,
    ) {
        // Routes through our own TUN device are no way to the gateway.
        if let (Some(w), Some(user)) = (
            self.net.as_mut(),
            self.datapath.as_mut().and_then(Active::user),
        ) && let Ok(index) = nix::net::if_::if_nametoindex(user.device_name())
        {
            w.ignore_device(index);
        }
        if kernel {
            if self.xfrm_events.is_none() {
                match EventListener::open() {
                    Ok(l) => self.xfrm_events = Some(l),
                    Err(e) => self.driver.emit(Event::Datapath(format!(
                        "kernel: no XFRM notifications ({e}); volume lifetimes end SAs without a rekey, lost SAs are not renegotiated"
                    ))),
                }
            }
            if c.udp_encapsulation
                && self.keepalive.is_none()
                && let Some(every) = nat_keepalive
            {
                let every = every.max(Duration::from_secs(1));
                self.keepalive = Some(tokio::time::interval_at(
                    tokio::time::Instant::now() + every,
                    every,
                ));
            }
        }
    }

    /// The kernel datapath's socket options: IKE itself never goes through the SAs (in
    /// transport mode they cover its addresses); ESP in UDP is decapsulated by the
    /// kernel on our port 4500 socket. Socket options only: nothing here waits.
    fn kernel_sockets(
        &self,
        c: &ike::ChildSa,
        encap: &mut Option<(u16, u16)>,
    ) -> Result<(), crate::datapath::DatapathError> {
        use crate::datapath::DatapathError;
        let v6 = self.remote.is_ipv6();
        let bypass = |s: &UdpSocket, what: &str| {
            crate::kernel::udp_encap::bypass_ipsec(s, v6).map_err(|e| {
                DatapathError::Socket(io::Error::new(
                    e.kind(),
                    format!("{what} socket IPsec bypass: {e}"),
                ))
            })
        };
        bypass(&self.socket, "IKE")?;
        if c.udp_encapsulation {
            let s = self.natt.as_ref().ok_or(DatapathError::Unsupported(
                "ESP in UDP without the NAT-T socket",
            ))?;
            crate::kernel::udp_encap::set_espinudp(s).map_err(DatapathError::Socket)?;
            bypass(s, "NAT-T")?;
            let ours = s.local_addr().map_err(DatapathError::Socket)?.port();
            let theirs = s.peer_addr().map_err(DatapathError::Socket)?.port();
            *encap = Some((ours, theirs));
        }
        Ok(())
    }

    /// Runs `f` on the datapath off the runtime's thread (`None`: no datapath yet).
    async fn with_datapath<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Active) -> T + Send + 'static,
    ) -> Result<Option<T>, Failure> {
        let Some(mut dp) = self.datapath.take() else {
            return Ok(None);
        };
        let (dp, r) = blocking(move || {
            let r = f(&mut dp);
            (dp, r)
        })
        .await?;
        self.datapath = Some(dp);
        Ok(Some(r))
    }

    /// Closes phase 1 (DELETEs sent) and returns `f`, for failures on our side.
    async fn abort(&mut self, f: Failure) -> Failure {
        self.ike.close(self.clock.now());
        flush(&self.socket, self.natt.as_ref(), &mut self.ike).await;
        f
    }

    /// The raw ESP socket is readable: everything waiting, in one recvmmsg, through
    /// the userspace datapath (the socket exists with it).
    fn on_raw(&mut self, r: io::Result<()>) -> Result<(), Failure> {
        let r = match (
            self.datapath.as_mut().and_then(Active::user),
            self.raw.as_ref(),
        ) {
            (Some(dp), Some(s)) => r.and_then(|()| dp.drain_raw(s)),
            // Not ours to read: drop what waits so the socket does not stay readable.
            (None, Some(s)) => r.and_then(|()| s.try_recv(&mut self.buf4500).map(|_| 0)),
            _ => Ok(0),
        };
        match r {
            Ok(0) => Ok(()),
            Ok(_) => {
                self.ike.traffic_received(self.clock.now());
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(Failure::new(
                FailureKind::Internal,
                format!("receive raw ESP: {e}"),
            )),
        }
    }

    /// Port 4500 is readable: IKE behind the non-ESP marker to the engine, ESP to the
    /// userspace datapath (everything waiting, in one recvmmsg).
    fn on_natt(&mut self, r: io::Result<()>) -> Result<(), Failure> {
        let mut from = self.remote;
        from.set_port(NAT_T_PORT);
        let now = self.clock.now();
        let (ike, natt_local) = (&mut self.ike, self.natt_local);
        let r = match (
            self.datapath.as_mut().and_then(Active::user),
            self.natt.as_ref(),
        ) {
            (Some(dp), Some(s)) => r.and_then(|()| {
                let esp = dp.drain_natt(s, |d| ike.handle_datagram(now, natt_local, from, d))?;
                // One write per coalesced packet (GRO) for the whole batch.
                dp.flush_inbound();
                // Anything from the gateway shows it alive: DPD probes only a quiet
                // tunnel.
                if esp > 0 {
                    ike.traffic_received(now);
                }
                Ok(())
            }),
            // No userspace datapath: only IKE comes here (the kernel takes ESP).
            (None, Some(s)) => r.and_then(|()| match s.try_recv(&mut self.buf4500) {
                Ok(n) if n > 4 && self.buf4500[..4] == [0, 0, 0, 0] => {
                    ike.handle_datagram(now, natt_local, from, &self.buf4500[4..n]);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }),
            _ => Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(Failure::new(
                FailureKind::Internal,
                format!("receive on port {NAT_T_PORT}: {e}"),
            )),
        }
    }

    /// The kernel's expire and acquire notifications: rekey the pair they name.
    fn on_xfrm(&mut self, r: io::Result<Vec<XfrmEvent>>) {
        let list = match r {
            Ok(list) => list,
            Err(_) => {
                self.xfrm_events = None;
                return;
            }
        };
        for ev in list {
            let Some(dp) = self.datapath.as_ref().and_then(Active::kernel) else {
                continue;
            };
            let (spi_in, line) = match ev {
                XfrmEvent::Expired(e) => {
                    let Some(spi_in) = dp.pair_of(e.spi) else {
                        continue;
                    };
                    (
                        spi_in,
                        format!(
                            "kernel: ESP SA {:#010x} reached its {} volume limit; rekeying",
                            e.spi,
                            if e.hard { "hard" } else { "soft" }
                        ),
                    )
                }
                XfrmEvent::Acquire { reqid, remote } => {
                    let Some(spi_in) = dp.pair_for_acquire(reqid, remote) else {
                        continue;
                    };
                    (
                        spi_in,
                        format!(
                            "kernel: traffic to {} found no ESP SA (acquire); negotiating phase 2 again",
                            remote.map_or_else(|| "the tunnel".to_string(), |r| r.to_string())
                        ),
                    )
                }
            };
            if self.replacing.contains(&spi_in) {
                continue;
            }
            self.driver.emit(Event::Datapath(line));
            // Not while phase 1 is down: a later acquire asks again.
            if self.ike.rekey(self.clock.now(), spi_in) {
                self.replacing.push(spi_in);
            }
        }
    }

    /// A front end's command.
    async fn on_command(&mut self, c: Command) -> Result<(), Failure> {
        match c {
            Command::Disconnect { reason } => {
                self.driver.emit(Event::Closing { reason });
                let c = self.ike.counters();
                if c.dropped > 0 || c.retransmits > 0 {
                    self.driver.emit(Event::Note(format!(
                        "ike: {} datagrams from the gateway dropped (malformed, unauthenticated or unexpected), {} retransmissions",
                        c.dropped, c.retransmits
                    )));
                }
                self.ike.close(self.clock.now());
                flush(&self.socket, self.natt.as_ref(), &mut self.ike).await;
            }
            Command::Credentials(creds) if self.awaiting_credentials => {
                self.awaiting_credentials = false;
                if let Some(req) = self.asked.take() {
                    self.driver.xauth.remember(&req, &creds);
                }
                self.ike.submit_credentials(self.clock.now(), creds)?;
            }
            Command::CredentialsRefused(msg) if self.awaiting_credentials => {
                let f = Failure::new(FailureKind::CredentialsMissing, msg);
                return Err(self.abort(f).await);
            }
            // Answers nobody asked for are dropped (and zeroized).
            Command::Credentials(_) | Command::CredentialsRefused(_) => {}
            Command::Counters(reply) => {
                let c = if self.datapath.as_ref().is_some_and(Active::is_kernel) {
                    // The kernel's SA counters come over XFRM: off the runtime's thread.
                    self.with_datapath(Active::counters)
                        .await?
                        .unwrap_or_default()
                } else {
                    self.datapath
                        .as_mut()
                        .map(Active::counters)
                        .unwrap_or_default()
                };
                let _ = reply.send(c);
            }
        }
        Ok(())
    }
}

/// Opens the outer-network watcher and takes the path the tunnel uses now (source
/// `local`, and the interface the kernel routes the gateway by). Without rtnetlink
/// notifications one line says so and network changes are found by DPD only.
async fn watch_network(
    driver: &Driver,
    gateway: IpAddr,
    local: IpAddr,
) -> (Option<Watcher>, netwatch::Path) {
    let mut path = netwatch::Path {
        source: local,
        oif: None,
    };
    match Watcher::open(gateway) {
        Ok(w) => {
            if let Some(p) = w.path().await.filter(|p| p.source == local) {
                path.oif = p.oif;
            }
            (Some(w), path)
        }
        Err(e) => {
            driver.emit(Event::Note(format!(
                "network changes not followed ({e}); a lost address is found by dead peer detection"
            )));
            (None, path)
        }
    }
}

/// Kernel or userspace ESP for this tunnel, and a line saying why when `auto` chose
/// (the probe runs on a thread of its own, in a scratch namespace; this task awaits it).
async fn choose_datapath(choice: profile::Datapath) -> (bool, Option<String>) {
    match choice {
        profile::Datapath::Kernel => (true, None),
        profile::Datapath::Userspace => (false, None),
        profile::Datapath::Auto => match crate::kernel::xfrm::probe_esp().await {
            Ok(why) => (true, Some(format!("datapath auto: kernel ({why})"))),
            Err(why) => (false, Some(format!("datapath auto: userspace ({why})"))),
        },
    }
}

/// The lab's stand-in for a slow netlink: `POSTERN_TEST_HOLD_DATAPATH=NAME:MS` (in
/// the helper's own environment, which only root sets) holds the datapath setup of
/// profile NAME for MS milliseconds (at most a minute) on the blocking pool, so a test
/// can show that no other tunnel and no D-Bus call waits for it
/// (`tests/tests/nonblocking.rs`).
fn lab_hold(profile: &str) -> Option<Duration> {
    let v = std::env::var("POSTERN_TEST_HOLD_DATAPATH").ok()?;
    let (name, ms) = v.split_once(':')?;
    let ms: u64 = ms.parse().ok()?;
    (name == profile).then(|| Duration::from_millis(ms.min(60_000)))
}

/// A UDP socket bound (shared) to `bind` and connected to `remote`.
async fn connected_socket(
    bind: SocketAddr,
    remote: SocketAddr,
    hint: &str,
) -> Result<UdpSocket, Failure> {
    let s = bind_shared(bind).map_err(|e| {
        Failure::new(
            FailureKind::Datapath,
            format!("cannot bind UDP port {}: {e} {hint}", bind.port()),
        )
    })?;
    s.connect(remote).await.map_err(|e| {
        Failure::new(
            FailureKind::NotResponding,
            format!("gateway {remote} unreachable: {e}"),
        )
    })?;
    Ok(s)
}

/// The responder's peer: an address, never a name.
fn peer_address(gateway: &str) -> Result<SocketAddr, Failure> {
    gateway
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, IKE_PORT))
        .map_err(|_| {
            Failure::new(
                FailureKind::BadProfile,
                format!("the peer must be an address: {gateway}"),
            )
        })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
