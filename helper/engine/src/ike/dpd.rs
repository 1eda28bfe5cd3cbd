//! Dead peer detection (RFC 3706): R-U-THERE when the peer has been quiet for
//! `interval`, the peer declared dead when `timeout` passes without an answer.

use std::time::{Duration, Instant};

use crate::codec::{NotifyPayload, NotifyType, Payload, ProtocolId};

use super::sa::DOI_IPSEC;
use super::sa_ctx::IsakmpSa;
use super::{Error, Role};

/// The DPD vendor ID (RFC 3706 §5.1, major 1 minor 0).
pub(crate) const VID_DPD: [u8; 16] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00,
];
/// Between two R-U-THERE while waiting for the answer.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpdConfig {
    /// Quiet time after which we ask.
    pub interval: Duration,
    /// How long without an answer before the peer is declared dead.
    pub timeout: Duration,
}

impl Default for DpdConfig {
    fn default() -> Self {
        DpdConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(150),
        }
    }
}

/// DPD state of one phase 1 SA.
#[derive(Debug, Default)]
pub(crate) struct Dpd {
    pub last_heard: Option<Instant>,
    /// A responder probes only once the initiator has shown it completed phase 1
    /// (sent something after it); before that the initiator cannot decrypt a probe.
    pub confirmed: bool,
    seq: u32,
    /// Waiting for an ACK: (sequence number, first sent, next send).
    outstanding: Option<(u32, Instant, Instant)>,
    probes: u32,
    /// A check asked for by the driver ([`Dpd::check_now`], after a resume): the
    /// peer is declared dead at this moment if it has not answered, and asked again
    /// every [`CHECK_RETRY`] meanwhile.
    check_until: Option<Instant>,
}

/// Between two R-U-THERE of a check asked for by the driver.
const CHECK_RETRY: Duration = Duration::from_secs(1);

impl Dpd {
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// DPD runs when configured, the peer announced it, phase 1 is up (`established`)
    /// and, for a responder, confirmed.
    fn active(&self, ctx: &IsakmpSa, established: bool) -> Option<DpdConfig> {
        let confirmed = ctx.role() == Role::Initiator || self.confirmed;
        ctx.config()
            .dpd
            .filter(|_| ctx.peer_dpd() && established && confirmed)
    }

    pub fn deadline(&self, ctx: &IsakmpSa, established: bool) -> Option<Instant> {
        let cfg = self.active(ctx, established)?;
        match self.outstanding {
            Some((_, since, next)) => {
                let dead = super::now_plus(since, cfg.timeout);
                Some(next.min(self.check_until.map_or(dead, |c| c.min(dead))))
            }
            None => self.last_heard.map(|t| super::now_plus(t, cfg.interval)),
        }
    }

    /// Probes when the peer has been quiet; an error when it is dead.
    pub fn timeout(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Result<(), Error> {
        let Some(cfg) = self.active(ctx, true) else {
            return Ok(());
        };
        match self.outstanding {
            Some((_, since, _))
                if now >= super::now_plus(since, cfg.timeout)
                    || self.check_until.is_some_and(|c| now >= c) =>
            {
                return Err(Error::DeadPeer(self.probes));
            }
            Some((seq, since, next)) if now >= next => {
                let retry = if self.check_until.is_some() {
                    CHECK_RETRY
                } else {
                    RETRY
                };
                self.outstanding = Some((seq, since, super::now_plus(now, retry)));
                self.probes += 1;
                send(ctx, NotifyType::R_U_THERE, seq);
            }
            Some(_) => {}
            None => {
                if self
                    .last_heard
                    .is_some_and(|t| now >= super::now_plus(t, cfg.interval))
                {
                    self.seq = self.seq.wrapping_add(1);
                    let seq = self.seq;
                    self.outstanding = Some((seq, now, super::now_plus(now, RETRY)));
                    self.probes = 1;
                    send(ctx, NotifyType::R_U_THERE, seq);
                }
            }
        }
        Ok(())
    }

    /// Asks the peer now (R-U-THERE at once, again every second), whatever the quiet
    /// time: the driver's check after a resume. The peer is declared dead when
    /// `give_up` passes without an answer. False when DPD is not in use (not
    /// configured, not announced by the peer, or phase 1 not up).
    pub fn check_now(&mut self, ctx: &mut IsakmpSa, now: Instant, give_up: Duration) -> bool {
        if self.active(ctx, true).is_none() {
            return false;
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.outstanding = Some((seq, now, super::now_plus(now, CHECK_RETRY)));
        self.probes = 1;
        self.check_until = Some(super::now_plus(now, give_up));
        send(ctx, NotifyType::R_U_THERE, seq);
        true
    }

    /// Whether a check asked for with [`Dpd::check_now`] still waits for its answer.
    pub fn checking(&self) -> bool {
        self.check_until.is_some()
    }

    /// R-U-THERE gets its ACK; an ACK with the awaited number ends the probe.
    pub fn on_notify(&mut self, ctx: &mut IsakmpSa, now: Instant, n: &NotifyPayload) {
        let Ok(seq) = <[u8; 4]>::try_from(n.data.as_slice()).map(u32::from_be_bytes) else {
            return;
        };
        match n.kind {
            NotifyType::R_U_THERE => send(ctx, NotifyType::R_U_THERE_ACK, seq),
            NotifyType::R_U_THERE_ACK if self.outstanding.is_some_and(|(s, _, _)| s == seq) => {
                self.outstanding = None;
                self.probes = 0;
                self.check_until = None;
                self.heard(now);
            }
            _ => {}
        }
    }
}

fn send(ctx: &mut IsakmpSa, kind: NotifyType, seq: u32) {
    let n = NotifyPayload {
        doi: DOI_IPSEC,
        protocol: ProtocolId::ISAKMP,
        spi: ctx.spi(),
        kind,
        data: seq.to_be_bytes().to_vec(),
    };
    ctx.send_informational(vec![Payload::Notify(n)]);
}
