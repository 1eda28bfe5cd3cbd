//! Phase 2 lifetimes: rekey before the soft lifetime (make-before-break: the new
//! SA pair is up before the old one is deleted), delete at the hard lifetime, and
//! the selectors accepted when the peer starts a quick mode (its rekeys).

use std::time::{Duration, Instant};

use crate::codec::{DeletePayload, Payload, ProtocolId};

use super::phase1::Ike;
use super::sa::DOI_IPSEC;
use super::{ChildConfig, ChildSa, Event, Role, TrafficSelector};

/// Rekey at this share of the lifetime (minus up to `JITTER_PERCENT` more).
const REKEY_PERCENT: u32 = 80;
const JITTER_PERCENT: u32 = 5;
/// How long an SA that was replaced keeps receiving (packets in flight).
pub(crate) const RETIRE_GRACE: Duration = Duration::from_secs(3);

/// Timers of one established SA pair.
#[derive(Debug, Clone)]
pub(crate) struct ChildTimer {
    pub spi_in: u32,
    pub config: ChildConfig,
    /// `None` once a rekey started or the peer replaced it.
    pub rekey_at: Option<Instant>,
    pub expire_at: Instant,
    /// Replaced by a newer SA; kept only for its grace time.
    pub retiring: bool,
}

impl Ike {
    /// Records a new SA pair, reports it, and retires the one it replaces.
    pub(super) fn child_established(
        &mut self,
        now: Instant,
        child: ChildSa,
        config: ChildConfig,
        replaces: Option<u32>,
    ) {
        let life = child.lifetime.max(Duration::from_secs(10));
        let jitter_max = life * JITTER_PERCENT / 100;
        let jitter = {
            let r = u32::from_be_bytes(super::random_bytes::<4>(&mut *self.rng));
            jitter_max.mul_f64(f64::from(r) / f64::from(u32::MAX))
        };
        // Only the initiator of the IKE SA rekeys on its own: two sides rekeying at
        // the same moment only make duplicates.
        let rekey_at = (self.role == Role::Initiator)
            .then(|| super::now_plus(now, (life * REKEY_PERCENT / 100).saturating_sub(jitter)));
        self.child_timers.push(ChildTimer {
            spi_in: child.spi_in,
            config,
            rekey_at,
            expire_at: super::now_plus(now, life),
            retiring: false,
        });
        self.children.push(child.clone());
        self.out.events.push_back(Event::Phase2Established(child));
        if let Some(old) = replaces {
            self.superseded(old);
            if let Some(t) = self.child_timers.iter_mut().find(|t| t.spi_in == old) {
                t.expire_at = super::now_plus(now, RETIRE_GRACE);
                t.retiring = true;
            }
        }
    }

    /// Whether the SA pair is being replaced (in its grace time).
    pub(super) fn retiring(&self, spi_in: u32) -> bool {
        self.child_timers.iter().any(|t| {
            t.spi_in == spi_in
                && (t.retiring || t.rekey_at.is_none() && self.role == Role::Initiator)
        })
    }

    /// The SA pair with inbound SPI `spi_in` no longer needs a rekey of ours.
    pub(super) fn superseded(&mut self, spi_in: u32) {
        if let Some(t) = self.child_timers.iter_mut().find(|t| t.spi_in == spi_in) {
            t.rekey_at = None;
        }
    }

    pub(super) fn child_deadline(&self) -> Option<Instant> {
        self.child_timers
            .iter()
            .flat_map(|t| [t.rekey_at, Some(t.expire_at)])
            .flatten()
            .min()
    }

    pub(super) fn child_timeouts(&mut self, now: Instant) {
        let mut rekey = Vec::new();
        let mut expire = Vec::new();
        for t in &mut self.child_timers {
            if t.expire_at <= now {
                expire.push(t.spi_in);
            } else if t.rekey_at.is_some_and(|r| r <= now) {
                t.rekey_at = None;
                rekey.push((t.spi_in, t.config.clone()));
            }
        }
        for (spi, cfg) in rekey {
            self.start_quick_for(now, cfg, Some(spi));
        }
        for spi in expire {
            self.delete_child(spi);
        }
    }

    /// Sends DELETE for one SA pair and reports it gone.
    pub(super) fn delete_child(&mut self, spi_in: u32) {
        self.child_timers.retain(|t| t.spi_in != spi_in);
        let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) else {
            return;
        };
        let c = self.children.remove(i);
        let d = DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![c.spi_in.to_be_bytes().to_vec()],
        };
        self.send_informational(vec![Payload::Delete(d)]);
        self.out.events.push_back(Event::Phase2Deleted {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            by_peer: false,
        });
    }

    /// Selectors of a quick mode the peer starts: `peer` is its side, `ours` ours.
    pub(super) fn accepts_selectors(&self, peer: &TrafficSelector, ours: &TrafficSelector) -> bool {
        let by_config = self.config.children.iter().any(|c| {
            c.remote.is_some_and(|r| r.contains(peer)) && c.local.is_some_and(|l| l.contains(ours))
        });
        // As the client: the peer rekeys an SA we have. A Cisco Unity gateway widens
        // its side to 0.0.0.0/0 when it rekeys; that is accepted (we still route
        // only the split networks).
        let by_existing = self.role == Role::Initiator
            && self.children.iter().any(|c| {
                c.local_ts.as_ref() == Some(ours)
                    && c.remote_ts
                        .is_some_and(|r| r.contains(peer) || peer.contains(&r))
            });
        by_config || by_existing
    }
}

impl Ike {
    /// Command: rekey the SA pair with inbound SPI `spi_in` now (make-before-break).
    /// Returns false when there is no such SA or phase 1 is not up.
    pub fn rekey(&mut self, now: Instant, spi_in: u32) -> bool {
        if !self.is_established() {
            return false;
        }
        let Some(c) = self.children.iter().find(|c| c.spi_in == spi_in) else {
            return false;
        };
        let cfg = ChildConfig {
            local: c.local_ts,
            remote: c.remote_ts,
        };
        self.superseded(spi_in);
        self.start_quick_for(now, cfg, Some(spi_in));
        true
    }
}
