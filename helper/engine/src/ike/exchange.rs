//! Retransmission of the messages we initiate, and the per-exchange CBC IV chain.

use std::time::{Duration, Instant};

/// When to resend a request that got no answer, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Total sends of one message (the first included).
    pub tries: u32,
    /// Wait after the first send; doubled after each resend.
    pub base: Duration,
    /// Longest wait between two sends.
    pub cap: Duration,
}

impl Default for RetransmitConfig {
    /// 1, 2, 4, 8 s between sends and 10 s after the last: the peer is declared
    /// unresponsive 25 s after the first send.
    fn default() -> Self {
        RetransmitConfig {
            tries: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetransmitConfig {
    /// The wait after send number `sent` (1-based).
    pub fn wait_after(&self, sent: u32) -> Duration {
        let shift = sent.saturating_sub(1).min(16);
        let d = self.base.saturating_mul(1u32 << shift);
        d.min(self.cap)
    }

    /// Time from the first send until the peer is declared gone.
    pub fn total(&self) -> Duration {
        (1..=self.tries).map(|n| self.wait_after(n)).sum()
    }
}

/// A request of ours waiting for its answer.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The datagram as sent (resent verbatim).
    pub datagram: Vec<u8>,
    pub sent: u32,
    pub deadline: Instant,
}

impl Pending {
    pub fn new(datagram: Vec<u8>, now: Instant, cfg: &RetransmitConfig) -> Self {
        Pending {
            datagram,
            sent: 1,
            deadline: super::now_plus(now, cfg.wait_after(1)),
        }
    }

    /// On timeout: `Some(datagram)` to resend, or `None` when the tries are used up.
    pub fn on_timeout(&mut self, now: Instant, cfg: &RetransmitConfig) -> Option<Vec<u8>> {
        if self.sent >= cfg.tries {
            return None;
        }
        self.sent += 1;
        self.deadline = super::now_plus(now, cfg.wait_after(self.sent));
        Some(self.datagram.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_gives_up_within_30s() {
        let c = RetransmitConfig::default();
        assert_eq!(c.wait_after(1), Duration::from_secs(1));
        assert_eq!(c.wait_after(4), Duration::from_secs(8));
        assert_eq!(c.wait_after(5), Duration::from_secs(10));
        assert!(c.total() <= Duration::from_secs(31));
    }
}
