//! IKEv2 MOBIKE (RFC 4555) in the session: when the outer network changes under an
//! IKEv2 tunnel whose gateway does MOBIKE, the tunnel moves instead of being
//! negotiated again. New sockets are connected to the gateway (the kernel picks the
//! new source address), the userspace datapath's sending worker takes the new one
//! (its SAs, sequence numbers, device, inner address and routes stay), and the engine
//! tells the gateway (UPDATE_SA_ADDRESSES). The gateway's answer ends the move
//! ([`Event::Roamed`]); no answer within the engine's budget, and the session ends
//! as for any network change: the driver negotiates again at once.
//!
//! The kernel datapath follows too: its XFRM states and policies carry the outer
//! addresses, and the kernel moves them in place (`XFRM_MSG_MIGRATE`, at once when
//! the new sockets are made, before the gateway's answer: the old address is gone,
//! so nothing could be sent from it anyway); the inner address and routes follow to
//! another interface. A kernel that refuses (no `CONFIG_XFRM_MIGRATE`) or transport
//! mode makes the tunnel negotiate again, as without MOBIKE.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

use postern_engine::ike2::mobike::AddressChange;

use super::*;

/// A move in flight: where from, where to, since when (the network change was seen).
#[derive(Debug, Clone, Copy)]
pub(super) struct Move {
    pub from: IpAddr,
    pub to: IpAddr,
    pub since: Instant,
    /// The kernel datapath's SAs were moved in UDP (ESP in UDP).
    pub kernel_udp: bool,
}

impl Session<'_> {
    /// Why this tunnel cannot move by MOBIKE now (`None`: it can).
    fn cannot_move(&self) -> Option<&'static str> {
        let Engine::V2(e) = &self.ike else {
            return Some("IKEv1 has no MOBIKE");
        };
        if self.role != Role::Initiator || !self.connected || !e.is_established() {
            return Some("the tunnel is not up");
        }
        if !self.profile().network.mobike {
            return Some("network.mobike = false");
        }
        if !e.mobike() {
            return Some("the gateway did not offer MOBIKE");
        }
        if self.datapath.as_ref().is_some_and(Active::is_kernel)
            && self
                .ike
                .children()
                .iter()
                .any(|c| c.encapsulation == ike::Encapsulation::Transport)
        {
            return Some("MOBIKE moves tunnel mode SAs only (RFC 4555)");
        }
        None
    }

    /// The outer network moved to `to`: moves the tunnel there by MOBIKE. `Ok(false)`:
    /// it cannot (a line says why for IKEv2), and the caller negotiates again.
    pub(super) async fn try_move(&mut self, to: netwatch::Path) -> Result<bool, Failure> {
        if let Some(why) = self.cannot_move() {
            if self.ike.is_v2() {
                self.driver.emit(Event::Note(format!(
                    "roaming: no MOBIKE move ({why}); negotiating again"
                )));
            }
            return Ok(false);
        }
        let since = Instant::now();
        let from = self.moving.map_or(self.path.source, |m| m.from);
        // New sockets: a connected UDP socket keeps the source address it got at
        // connect time; new ones get the one the route to the gateway has now.
        let bind = |port| match self.remote {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], port)),
        };
        let socket = match connected_socket(bind(IKE_PORT), self.remote, "").await {
            Ok(s) => s,
            Err(f) => {
                self.driver.emit(Event::Note(format!(
                    "roaming: no MOBIKE move ({}); negotiating again",
                    f.message
                )));
                return Ok(false);
            }
        };
        let Ok(local) = socket.local_addr() else {
            return Ok(false);
        };
        let natt = match &self.natt {
            Some(_) => {
                let mut r = self.remote;
                r.set_port(NAT_T_PORT);
                match connected_socket(bind(NAT_T_PORT), r, "").await {
                    Ok(s) => Some(s),
                    Err(_) => return Ok(false),
                }
            }
            None => None,
        };
        self.socket = socket;
        self.natt = natt;
        self.local = local;
        self.natt_local = SocketAddr::new(local.ip(), NAT_T_PORT);
        self.path = to;
        // The userspace datapath sends from the new address too.
        let udp = self
            .ike
            .children()
            .first()
            .is_some_and(|c| c.udp_encapsulation);
        if let Err(line) = self.move_datapath(udp).await? {
            self.driver.emit(Event::Note(format!(
                "roaming: no MOBIKE move ({line}); negotiating again"
            )));
            return Ok(false);
        }
        let now = self.clock.now();
        let started = match &mut self.ike {
            Engine::V2(e) => e.update_addresses(now, local, self.remote),
            Engine::V1(_) => false,
        };
        if !started {
            return Ok(false);
        }
        self.moving = Some(Move {
            from,
            to: local.ip(),
            since,
            kernel_udp: udp,
        });
        self.driver.emit(Event::Note(format!(
            "roaming: the gateway is now reached from {} (was {from}); moving the tunnel there (MOBIKE)",
            local.ip()
        )));
        Ok(true)
    }

    /// Gives the userspace datapath the sending socket for the current path: a
    /// duplicate of the NAT-T socket (ESP in UDP) or a new raw ESP socket. The inner
    /// `Err` is the line saying why not.
    async fn move_datapath(&mut self, udp: bool) -> Result<Result<(), String>, Failure> {
        if self.datapath.is_none() {
            return Ok(Ok(()));
        }
        if self.datapath.as_ref().is_some_and(Active::is_kernel) {
            return self.move_kernel_datapath(udp, udp).await;
        }
        let fd = if udp {
            let Some(s) = self.natt.as_ref() else {
                return Ok(Err("ESP in UDP without the NAT-T socket".into()));
            };
            s.as_fd().try_clone_to_owned()
        } else {
            match open_raw_esp(self.remote.ip()) {
                Ok(s) => {
                    let fd = s.as_fd().try_clone_to_owned();
                    self.raw = Some(s);
                    fd
                }
                Err(e) => Err(e),
            }
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => return Ok(Err(format!("datapath socket: {e}"))),
        };
        if udp {
            self.raw = None;
        }
        match self
            .with_datapath(move |dp| dp.move_socket(fd, udp))
            .await?
        {
            Some(Ok(true)) | None => Ok(Ok(())),
            Some(Ok(false)) => Ok(Err("the kernel datapath does not follow".into())),
            Some(Err(e)) => Ok(Err(format!("datapath: {e}"))),
        }
    }

    /// The kernel datapath follows the move: the new sockets get the kernel's socket
    /// options (IKE bypasses the SAs; ESP in UDP is decapsulated on the NAT-T socket),
    /// then the SAs and policies move to our new address (`XFRM_MSG_MIGRATE`, see
    /// `kernel::xfrm::migrate`). `was_udp`: the SAs are in UDP now; `udp`: they go in
    /// UDP after the move. The inner `Err` is the line saying why not.
    async fn move_kernel_datapath(
        &mut self,
        was_udp: bool,
        udp: bool,
    ) -> Result<Result<(), String>, Failure> {
        let Some(mut c) = self.ike.children().first().cloned() else {
            return Ok(Err("no CHILD_SA".into()));
        };
        c.udp_encapsulation = udp;
        let mut encap = None;
        if let Err(e) = self.kernel_sockets(&c, &mut encap) {
            return Ok(Err(format!("datapath: {e}")));
        }
        // ESP in UDP from now on: the NAT keepalives the kernel does not send.
        if udp
            && !was_udp
            && self.keepalive.is_none()
            && let Some(every) = self.profile().network.nat_keepalive
        {
            let every = every.max(Duration::from_secs(1));
            self.keepalive = Some(tokio::time::interval_at(
                tokio::time::Instant::now() + every,
                every,
            ));
        }
        let local = self.local.ip();
        match self
            .with_datapath(move |dp| dp.migrate(local, encap, was_udp))
            .await?
        {
            Some(Ok(Some(line))) => {
                self.driver.emit(Event::Datapath(line));
                Ok(Ok(()))
            }
            Some(Ok(None)) | None => Ok(Ok(())),
            Some(Err(e)) => Ok(Err(format!("datapath: {e}"))),
        }
    }

    /// The engine's MOBIKE move is confirmed by the gateway.
    pub(super) async fn on_moved(&mut self, a: AddressChange) -> Result<(), Failure> {
        // A NAT on the new path turns ESP in UDP on (the kernel's SAs: in place).
        if a.udp_encapsulation
            && self.datapath.as_ref().is_some_and(Active::is_kernel)
            && self.moving.is_some_and(|m| !m.kernel_udp)
            && let Err(line) = self.move_kernel_datapath(false, true).await?
        {
            let mut f = Failure::new(
                FailureKind::NotResponding,
                format!("roaming: cannot switch to ESP in UDP ({line})"),
            );
            f.lost = true;
            f.retry_now = true;
            return Err(f);
        }
        if a.udp_encapsulation
            && self.raw.is_some()
            && let Err(line) = self.move_datapath(true).await?
        {
            let mut f = Failure::new(
                FailureKind::NotResponding,
                format!("roaming: cannot switch to ESP in UDP ({line})"),
            );
            f.lost = true;
            f.retry_now = true;
            return Err(f);
        }
        let Some(m) = self.moving.take() else {
            // Nothing of ours in flight (a responder followed its peer).
            self.driver
                .emit(Event::Note(format!("roaming: the SAs now run {a}")));
            return Ok(());
        };
        let mut path = Vec::new();
        if a.nat.local_behind_nat {
            path.push("behind a NAT");
        }
        if a.udp_encapsulation {
            path.push("ESP in UDP");
        } else {
            path.push("raw ESP");
        }
        self.driver.emit(Event::Roamed {
            from: m.from,
            to: a.local.ip(),
            elapsed: m.since.elapsed(),
            path: path.join(", "),
        });
        Ok(())
    }

    /// The engine failed while a move was in flight: the network change is handled
    /// as without MOBIKE (negotiate again at once, the datapath kept).
    pub(super) fn move_failed(&mut self, f: &mut Failure) {
        if let Some(m) = self.moving.take() {
            self.driver.emit(Event::Note(format!(
                "roaming: the gateway did not confirm the move to {} ({}); negotiating again",
                m.to, f.message
            )));
            self.driver.emit(Event::NetworkChanged {
                from: m.from,
                to: m.to,
            });
            f.lost = true;
            f.retry_now = true;
            f.network_changed = true;
        }
    }
}
