//! Dead peer detection (RFC 3706): R-U-THERE when the peer has been quiet for
//! `interval`, the peer declared dead when `timeout` passes without an answer.

use std::time::{Duration, Instant};

use crate::codec::{NotifyPayload, NotifyType, Payload, ProtocolId};

use super::phase1::Ike;
use super::sa::DOI_IPSEC;
use super::{Error, Event};

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
    pub peer_supports: bool,
    pub last_heard: Option<Instant>,
    /// A responder probes only once the initiator has shown it completed phase 1
    /// (sent something after it); before that the initiator cannot decrypt a probe.
    pub confirmed: bool,
    seq: u32,
    /// Waiting for an ACK: (sequence number, first sent, next send).
    outstanding: Option<(u32, Instant, Instant)>,
    probes: u32,
}

impl Dpd {
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }
}

impl Ike {
    fn dpd_active(&self) -> Option<DpdConfig> {
        let confirmed = self.role() == super::Role::Initiator || self.dpd.confirmed;
        self.config
            .dpd
            .filter(|_| self.dpd.peer_supports && self.is_established() && confirmed)
    }

    pub(super) fn dpd_deadline(&self) -> Option<Instant> {
        let cfg = self.dpd_active()?;
        match self.dpd.outstanding {
            Some((_, since, next)) => Some(next.min(super::now_plus(since, cfg.timeout))),
            None => self
                .dpd
                .last_heard
                .map(|t| super::now_plus(t, cfg.interval)),
        }
    }

    /// Tells the engine that traffic arrived from the peer (ESP), so the peer is alive.
    pub fn traffic_received(&mut self, now: Instant) {
        self.dpd.heard(now);
    }

    pub(super) fn dpd_timeout(&mut self, now: Instant) {
        let Some(cfg) = self.dpd_active() else { return };
        match self.dpd.outstanding {
            Some((_, since, _)) if now >= super::now_plus(since, cfg.timeout) => {
                let probes = self.dpd.probes;
                self.fail(Error::DeadPeer(probes));
            }
            Some((seq, since, next)) if now >= next => {
                self.dpd.outstanding = Some((seq, since, super::now_plus(now, RETRY)));
                self.dpd.probes += 1;
                self.send_dpd(NotifyType::R_U_THERE, seq);
            }
            Some(_) => {}
            None => {
                if self
                    .dpd
                    .last_heard
                    .is_some_and(|t| now >= super::now_plus(t, cfg.interval))
                {
                    self.dpd.seq = self.dpd.seq.wrapping_add(1);
                    let seq = self.dpd.seq;
                    self.dpd.outstanding = Some((seq, now, super::now_plus(now, RETRY)));
                    self.dpd.probes = 1;
                    self.send_dpd(NotifyType::R_U_THERE, seq);
                }
            }
        }
    }

    fn send_dpd(&mut self, kind: NotifyType, seq: u32) {
        let mut spi = self.icookie.to_vec();
        spi.extend_from_slice(&self.rcookie);
        let n = NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi,
            kind,
            data: seq.to_be_bytes().to_vec(),
        };
        self.send_informational(vec![Payload::Notify(n)]);
    }

    /// R-U-THERE gets its ACK; an ACK with the awaited number ends the probe.
    pub(super) fn on_dpd_notify(&mut self, now: Instant, n: &NotifyPayload) {
        let Ok(seq) = <[u8; 4]>::try_from(n.data.as_slice()).map(u32::from_be_bytes) else {
            return;
        };
        match n.kind {
            NotifyType::R_U_THERE => self.send_dpd(NotifyType::R_U_THERE_ACK, seq),
            NotifyType::R_U_THERE_ACK if self.dpd.outstanding.is_some_and(|(s, _, _)| s == seq) => {
                self.dpd.outstanding = None;
                self.dpd.probes = 0;
                self.dpd.heard(now);
            }
            _ => {}
        }
    }
}

#[allow(dead_code)]
fn _event_used(_: Event) {}
