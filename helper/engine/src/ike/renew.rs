//! Phase 1 renewal (initiator). IKEv1 has no phase 1 rekey: a new main or
//! aggressive mode (with XAuth again when configured) builds a new ISAKMP SA
//! beside the old one; the ESP SAs stay as they are; then the old ISAKMP SA is
//! deleted. Gateways that handed out a virtual IP (strongSwan among them) do not
//! renew phase 1 themselves and delete it at its lifetime, so the client renews
//! at 55 % of the lifetime.
//!
//! The renewal is an [`Ike`] of its own, driven from inside this one: datagrams
//! with its cookies go to it, its datagrams and questions come out of this one.

use std::net::SocketAddr;
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::codec::Header;

use super::phase1::Ike;
use super::{Error, Event, Role};

/// Renew at this share of the phase 1 lifetime.
const RENEW_PERCENT: u32 = 55;

impl Ike {
    /// Called when phase 1 (re)starts its life: schedules the renewal.
    pub(super) fn schedule_renewal(&mut self, now: Instant) {
        if self.role != Role::Initiator || self.is_renewal {
            return;
        }
        let Some(info) = &self.info else { return };
        let life = info.lifetime;
        self.p1_renew_at = Some(super::now_plus(now, life * RENEW_PERCENT / 100));
        self.p1_expire_at = Some(super::now_plus(now, life));
    }

    pub(super) fn renewal_deadline(&self) -> Option<Instant> {
        let inner = self.renewal.as_ref().and_then(|r| r.poll_timeout());
        [
            inner,
            self.p1_renew_at.filter(|_| self.renewal.is_none()),
            self.p1_expire_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn renewal_timeout(&mut self, now: Instant) {
        if let Some(r) = self.renewal.as_mut() {
            r.handle_timeout(now);
            self.pump_renewal(now);
        }
        if self.renewal.is_none() && self.p1_renew_at.is_some_and(|t| now >= t) && self.setup_done()
        {
            self.p1_renew_at = None;
            self.start_renewal(now);
        }
        if self.p1_expire_at.is_some_and(|t| now >= t) {
            self.p1_expire_at = None;
            self.fail(Error::Phase1Expired);
        }
    }

    fn start_renewal(&mut self, now: Instant) {
        let mut cfg = self.config.clone();
        cfg.children.clear();
        cfg.remote_networks.clear();
        // XAuth and Mode Config run again on the new ISAKMP SA (gateways tie the
        // virtual IP to it), asking for the address we have.
        cfg.requested_address = self.mode_config.as_ref().and_then(|m| m.address);
        let seed = super::random_bytes::<32>(&mut *self.rng);
        let rng = Box::new(ChaCha20Rng::from_seed(seed));
        match Ike::initiate(cfg, self.local_addr(), self.original_remote, now, rng) {
            Ok(mut r) => {
                r.is_renewal = true;
                self.renewal = Some(Box::new(r));
                self.pump_renewal(now);
            }
            Err(e) => self.out.events.push_back(Event::Phase1RenewalFailed(e)),
        }
    }

    /// Whether this datagram belongs to the renewal in progress.
    pub(super) fn for_renewal(&self, h: &Header) -> bool {
        self.renewal
            .as_ref()
            .is_some_and(|r| r.icookie == h.initiator_cookie)
    }

    pub(super) fn renewal_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if let Some(r) = self.renewal.as_mut() {
            r.handle_datagram(now, local, remote, data);
        }
        self.pump_renewal(now);
    }

    /// Moves the renewal's output out, and takes it over once it is complete.
    pub(super) fn pump_renewal(&mut self, now: Instant) {
        let Some(r) = self.renewal.as_mut() else {
            return;
        };
        while let Some(t) = r.poll_transmit() {
            self.out.transmits.push_back(t);
        }
        let mut failed = None;
        while let Some(e) = r.poll_event() {
            match e {
                Event::CredentialsRequired(c) => {
                    self.out.events.push_back(Event::CredentialsRequired(c))
                }
                Event::Failed(e) => failed = Some(e),
                Event::MessageRefused(m) => self
                    .out
                    .events
                    .push_back(Event::MessageRefused(format!("phase 1 renewal: {m}"))),
                _ => {}
            }
        }
        if let Some(e) = failed {
            self.renewal = None;
            self.out.events.push_back(Event::Phase1RenewalFailed(e));
            // Try again while the old phase 1 still lives.
            let retry = super::now_plus(now, self.config.retransmit.total());
            if self.p1_expire_at.is_some_and(|t| retry < t) {
                self.p1_renew_at = Some(retry);
            }
            return;
        }
        if r.is_established() && r.setup_done() && self.quick.is_empty() {
            self.take_over_renewal(now);
        }
    }

    /// The new phase 1 is complete: continue on it, move the ESP SAs over by
    /// rekeying them under it (make-before-break), and delete the old ISAKMP SA
    /// once they are (gateways delete an IKE SA's CHILD_SAs with it).
    fn take_over_renewal(&mut self, now: Instant) {
        let Some(r) = self.renewal.take() else { return };
        let old = self.adopt(*r);
        self.retired_p1 = Some(old);
        if let Some(info) = self.info.clone() {
            self.out.events.push_back(Event::Phase1Renewed(info));
        }
        // SAs already replaced (in their grace time) or being rekeyed need no move.
        let moving: Vec<(u32, super::ChildConfig)> = self
            .children
            .iter()
            .filter(|c| !self.retiring(c.spi_in))
            .map(|c| {
                (
                    c.spi_in,
                    super::ChildConfig {
                        local: c.local_ts,
                        remote: c.remote_ts,
                    },
                )
            })
            .collect();
        for (spi, cfg) in moving {
            self.superseded(spi);
            self.start_quick_for(now, cfg, Some(spi));
        }
        self.schedule_renewal(now);
        self.maybe_delete_retired_p1();
    }

    /// The old ISAKMP SA goes once no quick mode is under way any more.
    pub(super) fn maybe_delete_retired_p1(&mut self) {
        if self.retired_p1.is_some() && self.quick.is_empty() {
            self.delete_retired_p1();
        }
    }
}
