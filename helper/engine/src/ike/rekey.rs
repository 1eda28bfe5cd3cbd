//! Phase 2 lifetimes: rekey before the soft lifetime (make-before-break: the new
//! SA pair is up before the old one is deleted), delete at the hard lifetime, and
//! the selectors accepted when the peer starts a quick mode (its rekeys).

use std::time::{Duration, Instant};

use crate::codec::{DeletePayload, Payload, ProtocolId};

use super::sa::{self, DOI_IPSEC};
use super::sa_ctx::IsakmpSa;
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

/// The established ESP SA pairs of one IKE SA and their timers.
#[derive(Debug, Default)]
pub(crate) struct Children {
    pub sas: Vec<ChildSa>,
    pub timers: Vec<ChildTimer>,
}

/// A quick mode completed: the SA pair it made.
pub(crate) struct NewChild {
    pub child: ChildSa,
    pub config: ChildConfig,
    /// Our rekey: the inbound SPI of the SA pair it replaces.
    pub rekey_of: Option<u32>,
    /// The peer started it (it may be the peer's rekey of one of ours).
    pub by_peer: bool,
}

impl Children {
    /// Records a new SA pair, reports it, and retires the one it replaces.
    pub fn established(&mut self, ctx: &mut IsakmpSa, now: Instant, new: NewChild) {
        let NewChild {
            child,
            config,
            rekey_of,
            by_peer,
        } = new;
        // A quick mode the peer started replaces ours with the same selectors (its rekey).
        let replaced_by_peer = if by_peer {
            self.sas
                .iter()
                .find(|c| {
                    c.local_ts == child.local_ts
                        && match (c.remote_ts, child.remote_ts) {
                            (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
                            (a, b) => a == b,
                        }
                })
                .map(|c| c.spi_in)
        } else {
            None
        };
        let life = child.lifetime.max(Duration::from_secs(10));
        let jitter_max = life * JITTER_PERCENT / 100;
        let jitter = {
            let r = u32::from_be_bytes(ctx.random::<4>());
            jitter_max.mul_f64(f64::from(r) / f64::from(u32::MAX))
        };
        // Only the initiator of the IKE SA rekeys on its own: two sides rekeying at
        // the same moment only make duplicates.
        let rekey_at = (ctx.role() == Role::Initiator)
            .then(|| super::now_plus(now, (life * REKEY_PERCENT / 100).saturating_sub(jitter)));
        self.timers.push(ChildTimer {
            spi_in: child.spi_in,
            config,
            rekey_at,
            expire_at: super::now_plus(now, life),
            retiring: false,
        });
        self.sas.push(child.clone());
        ctx.event(Event::Phase2Established(child));
        if let Some(old) = rekey_of {
            self.superseded(old);
            if let Some(t) = self.timers.iter_mut().find(|t| t.spi_in == old) {
                t.expire_at = super::now_plus(now, RETIRE_GRACE);
                t.retiring = true;
            }
        }
        if let Some(old) = replaced_by_peer {
            // The peer deletes the old SA itself; we only stop rekeying it.
            self.superseded(old);
        }
    }

    /// Whether the SA pair is being replaced (in its grace time).
    pub fn retiring(&self, role: Role, spi_in: u32) -> bool {
        self.timers.iter().any(|t| {
            t.spi_in == spi_in && (t.retiring || t.rekey_at.is_none() && role == Role::Initiator)
        })
    }

    /// The SA pair with inbound SPI `spi_in` no longer needs a rekey of ours.
    pub fn superseded(&mut self, spi_in: u32) {
        if let Some(t) = self.timers.iter_mut().find(|t| t.spi_in == spi_in) {
            t.rekey_at = None;
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flat_map(|t| [t.rekey_at, Some(t.expire_at)])
            .flatten()
            .min()
    }

    /// Due timers: the SA pairs to rekey now (inbound SPI and selectors), and
    /// those past their lifetime (inbound SPIs), to delete after the rekeys start.
    pub fn due(&mut self, now: Instant) -> (Vec<(u32, ChildConfig)>, Vec<u32>) {
        let mut rekey = Vec::new();
        let mut expire = Vec::new();
        for t in &mut self.timers {
            if t.expire_at <= now {
                expire.push(t.spi_in);
            } else if t.rekey_at.is_some_and(|r| r <= now) {
                t.rekey_at = None;
                rekey.push((t.spi_in, t.config.clone()));
            }
        }
        (rekey, expire)
    }

    /// Sends DELETE for one SA pair and reports it gone.
    pub fn delete(&mut self, ctx: &mut IsakmpSa, spi_in: u32) {
        self.timers.retain(|t| t.spi_in != spi_in);
        let Some(i) = self.sas.iter().position(|c| c.spi_in == spi_in) else {
            return;
        };
        let c = self.sas.remove(i);
        ctx.send_informational(vec![Payload::Delete(esp_delete(c.spi_in))]);
        ctx.event(Event::Phase2Deleted {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            by_peer: false,
        });
    }

    /// Closing: DELETE for every SA pair, each reported gone.
    pub fn delete_all(&mut self, ctx: &mut IsakmpSa) {
        self.timers.clear();
        for c in std::mem::take(&mut self.sas) {
            ctx.send_informational(vec![Payload::Delete(esp_delete(c.spi_in))]);
            ctx.event(Event::Phase2Deleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                by_peer: false,
            });
        }
    }

    /// The peer deleted the SA pairs it receives on these SPIs (our outbound ones).
    pub fn deleted_by_peer(&mut self, ctx: &mut IsakmpSa, spis_out: &[Vec<u8>]) {
        for spi in spis_out {
            let Some(spi) = sa::spi_u32(spi) else {
                continue;
            };
            if let Some(i) = self.sas.iter().position(|c| c.spi_out == spi) {
                let c = self.sas.remove(i);
                self.timers.retain(|t| t.spi_in != c.spi_in);
                ctx.event(Event::Phase2Deleted {
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    by_peer: true,
                });
            }
        }
    }

    /// The peer deleted the ISAKMP SA: every SA pair is gone with it.
    pub fn all_gone(&mut self, ctx: &mut IsakmpSa) {
        for c in std::mem::take(&mut self.sas) {
            ctx.event(Event::Phase2Deleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                by_peer: true,
            });
        }
    }

    /// Selectors of a quick mode the peer starts: `peer` is its side, `ours` ours.
    pub fn accepts_selectors(
        &self,
        ctx: &IsakmpSa,
        peer: &TrafficSelector,
        ours: &TrafficSelector,
    ) -> bool {
        let by_config = ctx.config().children.iter().any(|c| {
            c.remote.is_some_and(|r| r.contains(peer)) && c.local.is_some_and(|l| l.contains(ours))
        });
        // As the client: the peer rekeys an SA we have. A Cisco Unity gateway widens
        // its side to 0.0.0.0/0 when it rekeys; that is accepted (we still route
        // only the split networks).
        let by_existing = ctx.role() == Role::Initiator
            && self.sas.iter().any(|c| {
                c.local_ts.as_ref() == Some(ours)
                    && c.remote_ts
                        .is_some_and(|r| r.contains(peer) || peer.contains(&r))
            });
        by_config || by_existing
    }

    /// Whether an inbound SPI is taken.
    pub fn uses_spi(&self, spi_in: u32) -> bool {
        self.sas.iter().any(|c| c.spi_in == spi_in)
    }

    /// The selectors of the SA pair with this inbound SPI.
    pub fn config_of(&self, spi_in: u32) -> Option<ChildConfig> {
        self.sas
            .iter()
            .find(|c| c.spi_in == spi_in)
            .map(|c| ChildConfig {
                local: c.local_ts,
                remote: c.remote_ts,
            })
    }
}

fn esp_delete(spi_in: u32) -> DeletePayload {
    DeletePayload {
        doi: DOI_IPSEC,
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![spi_in.to_be_bytes().to_vec()],
    }
}
