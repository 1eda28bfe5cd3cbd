//! MOBIKE (RFC 4555): the IKE SA and its child SAs move to new outer addresses
//! instead of being negotiated again.
//!
//! * IKE_AUTH: both sides say `MOBIKE_SUPPORTED`; the initiator sends its IKE_AUTH
//!   from port 4500 already (§3.3, as strongSwan does), so a later move needs no
//!   float, and ESP goes in UDP only when a NAT is found (or forced).
//! * The initiator moves: [`Ike2::update_addresses`] sends an INFORMATIONAL with
//!   `UPDATE_SA_ADDRESSES`, fresh NAT detection notifies for the new addresses and a
//!   `COOKIE2` (§3.5, §3.8), from the new address, retransmitted like any request;
//!   the answer (its COOKIE2 checked, its NAT notifies judged) gives
//!   [`Event::AddressesChanged`]. No answer within [`UPDATE_GIVE_UP`]: the engine
//!   fails (`Event::Failed`), and the driver negotiates again as without MOBIKE.
//! * The responder moves its SAs to the addresses the request came from and answers
//!   with its own NAT notifies and the COOKIE2 echoed.
//!
//! Only the initiator decides a move (§3.1); the peer's other addresses
//! (`ADDITIONAL_IP4_ADDRESS`...) are not used.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::codec::{Payload, exchange, notify};
use super::{Ike2, Request, State, keys, later, notify_payload, random};
use crate::crypto::ct_eq;
use crate::ike::{Error, Event, NAT_T_PORT, NatState, NatTraversal, Role};

/// RFC 4555 §4 notify types (kept here, beside their only user).
pub mod kind {
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const ADDITIONAL_IP4_ADDRESS: u16 = 16397;
    pub const ADDITIONAL_IP6_ADDRESS: u16 = 16398;
    pub const NO_ADDITIONAL_ADDRESSES: u16 = 16399;
    pub const UPDATE_SA_ADDRESSES: u16 = 16400;
    pub const COOKIE2: u16 = 16401;
    pub const NO_NATS_ALLOWED: u16 = 16402;
    /// An error: the responder refuses a path with a NAT (we sent NO_NATS_ALLOWED).
    pub const UNEXPECTED_NAT_DETECTED: u16 = 41;
}

/// How long the gateway has to confirm a move before the tunnel is negotiated anew.
pub const UPDATE_GIVE_UP: Duration = Duration::from_secs(10);

/// The outer addresses the IKE SA and its children use after a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressChange {
    /// Our address and port (4500 once floated).
    pub local: SocketAddr,
    /// The peer's address and port as we send to it (a NAT's, if one is between).
    pub remote: SocketAddr,
    /// NAT detection on the new path.
    pub nat: NatState,
    /// ESP goes in UDP (port 4500) on the new path.
    pub udp_encapsulation: bool,
}

impl std::fmt::Display for AddressChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <-> {}", self.local, self.remote)?;
        if self.nat.local_behind_nat {
            f.write_str(", we are behind a NAT")?;
        }
        if self.nat.remote_behind_nat && !self.nat.forced {
            f.write_str(", the peer is behind a NAT")?;
        }
        if self.udp_encapsulation {
            f.write_str(", ESP in UDP")?;
        }
        Ok(())
    }
}

/// The engine's MOBIKE state.
#[derive(Debug, Clone)]
pub(super) struct Mobike {
    /// We offer (initiator) or accept (responder) MOBIKE.
    pub enabled: bool,
    /// The peer said MOBIKE_SUPPORTED in IKE_AUTH (and we did).
    pub peer: bool,
    /// A move asked for while another request was in flight: sent after its answer.
    pub queued: bool,
    /// The COOKIE2 of our UPDATE_SA_ADDRESSES in flight.
    pub cookie2: Option<Vec<u8>>,
}

impl Default for Mobike {
    fn default() -> Self {
        Mobike {
            enabled: true,
            peer: false,
            queued: false,
            cookie2: None,
        }
    }
}

fn has_notify(payloads: &[Payload], k: u16) -> bool {
    payloads
        .iter()
        .any(|p| matches!(p, Payload::Notify { kind, .. } if *kind == k))
}

fn notify_data(payloads: &[Payload], k: u16) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { kind, data, .. } if *kind == k => Some(data.as_slice()),
        _ => None,
    })
}

impl Ike2 {
    /// Offers (initiator) or accepts (responder) MOBIKE; on by default. Set before
    /// IKE_AUTH.
    pub fn set_mobike(&mut self, yes: bool) {
        self.mobike.enabled = yes;
    }

    /// Whether both sides said MOBIKE_SUPPORTED: [`Ike2::update_addresses`] can move
    /// the SAs.
    pub fn mobike(&self) -> bool {
        self.mobike.peer
    }

    /// The outer addresses the IKE SA uses now (ours, the peer's).
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// Initiator, building IKE_AUTH: MOBIKE_SUPPORTED, and the move to port 4500
    /// (§3.3) unless NAT traversal is off (then IKE stays on port 500).
    pub(super) fn mobike_offer(&mut self, payloads: &mut Vec<Payload>) {
        if !self.mobike.enabled || self.role != Role::Initiator {
            return;
        }
        payloads.push(notify_payload(kind::MOBIKE_SUPPORTED, Vec::new()));
        if self.config.nat_traversal != NatTraversal::Off && !self.floated {
            self.floated = true;
            self.local.set_port(NAT_T_PORT);
            self.remote.set_port(NAT_T_PORT);
        }
    }

    /// Initiator: the IKE_AUTH reply says whether the gateway does MOBIKE.
    pub(super) fn mobike_reply(&mut self, payloads: &[Payload]) {
        self.mobike.peer = self.mobike.enabled && has_notify(payloads, kind::MOBIKE_SUPPORTED);
    }

    /// Responder: the IKE_AUTH request's MOBIKE_SUPPORTED is answered with ours.
    pub(super) fn mobike_answer(&mut self, request: &[Payload], out: &mut Vec<Payload>) {
        if self.mobike.enabled && has_notify(request, kind::MOBIKE_SUPPORTED) {
            self.mobike.peer = true;
            out.push(notify_payload(kind::MOBIKE_SUPPORTED, Vec::new()));
        }
    }

    /// Command (initiator): the network moved; the IKE SA and its children go on
    /// from `new_local` to `new_remote` (ports are the engine's: 4500 once floated).
    /// The caller sends from the new address from now on. The UPDATE_SA_ADDRESSES
    /// request goes out at once, or after the answer to a request in flight; its
    /// answer gives [`Event::AddressesChanged`], no answer within [`UPDATE_GIVE_UP`]
    /// `Event::Failed`. False (nothing done): the IKE SA is not up or the peer does
    /// not do MOBIKE, and the caller negotiates again instead.
    pub fn update_addresses(
        &mut self,
        now: Instant,
        new_local: SocketAddr,
        new_remote: SocketAddr,
    ) -> bool {
        if self.role != Role::Initiator || self.state != State::Established || !self.mobike.peer {
            return false;
        }
        let port = if self.floated {
            NAT_T_PORT
        } else {
            self.local.port()
        };
        let rport = if self.floated {
            NAT_T_PORT
        } else {
            self.remote.port()
        };
        self.local = SocketAddr::new(new_local.ip(), port);
        self.remote = SocketAddr::new(new_remote.ip(), rport);
        match &self.pending {
            // An update in flight: its retransmissions carry NAT notifies for the old
            // address; a new one follows its answer.
            Some(_) => self.mobike.queued = true,
            None => self.send_update(now),
        }
        true
    }

    /// Whether a move waits for or is in its UPDATE_SA_ADDRESSES exchange.
    pub fn moving(&self) -> bool {
        self.mobike.queued
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.kind == Request::UpdateAddresses)
    }

    fn send_update(&mut self, now: Instant) {
        self.mobike.queued = false;
        let cookie2 = random::<16>(&mut *self.rng).to_vec();
        let mut payloads = vec![notify_payload(kind::UPDATE_SA_ADDRESSES, Vec::new())];
        if self.config.nat_traversal != NatTraversal::Off {
            payloads.extend(self.nat_notifies(self.spi_r));
        }
        payloads.push(notify_payload(kind::COOKIE2, cookie2.clone()));
        self.mobike.cookie2 = Some(cookie2);
        let id = self.next_id;
        let d = self.seal_request(exchange::INFORMATIONAL, id, &payloads);
        self.next_id = self.next_id.wrapping_add(1);
        self.start_pending(
            now,
            Request::UpdateAddresses,
            id,
            d,
            Some(later(now, UPDATE_GIVE_UP)),
        );
    }

    /// After any answer: a move asked for meanwhile is sent now.
    pub(super) fn mobike_after_response(&mut self, now: Instant) {
        if self.mobike.queued && self.pending.is_none() && self.state == State::Established {
            self.send_update(now);
        }
    }

    /// NAT detection (RFC 7296 §2.23) on a path, with the IKE SA's SPIs (§3.5);
    /// `None` when the peer sent no NAT notifies.
    fn judge_nat(&self, payloads: &[Payload]) -> Option<NatState> {
        let mut srcs = Vec::new();
        let mut dst = None;
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p {
                match *kind {
                    notify::NAT_DETECTION_SOURCE_IP => srcs.push(data.as_slice()),
                    notify::NAT_DETECTION_DESTINATION_IP => dst = Some(data.as_slice()),
                    _ => {}
                }
            }
        }
        let dst = dst?;
        let mine = keys::nat_hash(&self.spi_i, &self.spi_r, self.local);
        let theirs = keys::nat_hash(&self.spi_i, &self.spi_r, self.remote);
        Some(NatState {
            local_behind_nat: !ct_eq(dst, &mine),
            remote_behind_nat: !srcs.iter().any(|s| ct_eq(s, &theirs)),
            forced: self.role == Role::Initiator
                && self.config.nat_traversal == NatTraversal::Force,
        })
    }

    /// The SAs now run on the new path: NAT state, UDP encapsulation (turned on when
    /// a NAT appeared, kept on once on: the peer's datapath may not turn it off),
    /// the event.
    fn moved(&mut self, nat: Option<NatState>) {
        if let Some(n) = nat {
            self.nat = n;
        }
        let udp = self.nat.any() || self.children.iter().any(|c| c.udp_encapsulation);
        if udp && !self.floated && self.config.nat_traversal != NatTraversal::Off {
            self.floated = true;
            self.local.set_port(NAT_T_PORT);
            self.remote.set_port(NAT_T_PORT);
        }
        for c in &mut self.children {
            c.udp_encapsulation = udp;
        }
        if let Some(p) = self.phase1.as_mut() {
            p.nat = self.nat;
        }
        self.outbox_ev
            .push_back(Event::AddressesChanged(AddressChange {
                local: self.local,
                remote: self.remote,
                nat: self.nat,
                udp_encapsulation: udp,
            }));
    }

    /// Initiator: the answer to UPDATE_SA_ADDRESSES.
    pub(super) fn on_update_reply(&mut self, payloads: &[Payload]) {
        let cookie2 = self.mobike.cookie2.take();
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p
                && *kind < notify::STATUS_FIRST
            {
                let e = if *kind == kind::UNEXPECTED_NAT_DETECTED {
                    Error::Local(
                        "the gateway refused the new path (UNEXPECTED_NAT_DETECTED)".into(),
                    )
                } else {
                    super::error_from_notify(*kind, data)
                };
                self.fail(e);
                return;
            }
        }
        if let Some(c) = cookie2
            && !notify_data(payloads, kind::COOKIE2).is_some_and(|d| ct_eq(d, &c))
        {
            self.fail(Error::Malformed(
                "the gateway's answer to our address update did not echo its COOKIE2".into(),
            ));
            return;
        }
        if self.mobike.queued {
            // Moved again meanwhile: the newer update decides.
            return;
        }
        let nat = self.judge_nat(payloads);
        self.moved(nat);
    }

    /// Whether a request from the peer is a MOBIKE address update we handle.
    pub(super) fn is_update_request(&self, payloads: &[Payload]) -> bool {
        self.role == Role::Responder
            && self.mobike.peer
            && has_notify(payloads, kind::UPDATE_SA_ADDRESSES)
    }

    /// Responder: UPDATE_SA_ADDRESSES. The SAs move to the addresses the request
    /// came from (it is authenticated: it opened with the IKE SA's keys).
    pub(super) fn on_update_request(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        id: u32,
        payloads: &[Payload],
    ) {
        self.local = local;
        self.remote = remote;
        if local.port() == NAT_T_PORT {
            self.floated = true;
        }
        let nat = self.judge_nat(payloads);
        let mut out = Vec::new();
        if nat.is_some() {
            out.push(notify_payload(
                notify::NAT_DETECTION_SOURCE_IP,
                keys::nat_hash(&self.spi_i, &self.spi_r, self.local),
            ));
            out.push(notify_payload(
                notify::NAT_DETECTION_DESTINATION_IP,
                keys::nat_hash(&self.spi_i, &self.spi_r, self.remote),
            ));
        }
        if let Some(c) = notify_data(payloads, kind::COOKIE2) {
            out.push(notify_payload(kind::COOKIE2, c.to_vec()));
        }
        if nat.is_some_and(NatState::any) && has_notify(payloads, kind::NO_NATS_ALLOWED) {
            out = vec![notify_payload(kind::UNEXPECTED_NAT_DETECTED, Vec::new())];
            self.respond_with(exchange::INFORMATIONAL, id, &out);
            return;
        }
        self.respond_with(exchange::INFORMATIONAL, id, &out);
        self.moved(nat);
    }
}
