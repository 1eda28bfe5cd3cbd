//! What the peer's address sends that we drop on an established SA (malformed,
//! unauthenticated, for no SA of ours, not expected now) is counted and reported in
//! at most one [`Event::Dropped`] per [`REPORT_INTERVAL`]: the first drop after a
//! quiet minute at once, what follows in the same minute in one line at its end.
//! A peer (or someone forging its address) cannot flood the log, and a person
//! reading it still learns that junk arrives and why the last one was dropped.

use std::fmt;
use std::time::{Duration, Instant};

/// At most one report per this interval.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Datagrams dropped since the last report, and why the last one was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReport {
    pub count: u32,
    pub last: String,
}

impl fmt::Display for DropReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        write!(
            f,
            "ike: dropped {} malformed/unauthenticated datagram{s} from the gateway in the last minute (last: {})",
            self.count, self.last
        )
    }
}

/// The rate limit of [`DropReport`]s.
#[derive(Debug, Default)]
pub(crate) struct JunkLog {
    last_report: Option<Instant>,
    count: u32,
    last: String,
}

impl JunkLog {
    /// `n` datagrams were dropped at `now`, the last because of `why`: a report now
    /// if none was made in the last interval.
    pub fn dropped(&mut self, now: Instant, n: u32, why: &str) -> Option<DropReport> {
        self.count = self.count.saturating_add(n);
        why.clone_into(&mut self.last);
        self.due(now)
    }

    /// When the drops held back must be reported.
    pub fn deadline(&self) -> Option<Instant> {
        match self.last_report {
            Some(t) if self.count > 0 => Some(super::now_plus(t, REPORT_INTERVAL)),
            _ => None,
        }
    }

    /// The report, if one is due at `now`.
    pub fn due(&mut self, now: Instant) -> Option<DropReport> {
        if self.count == 0 {
            return None;
        }
        if self
            .last_report
            .is_some_and(|t| now < super::now_plus(t, REPORT_INTERVAL))
        {
            return None;
        }
        self.last_report = Some(now);
        let count = std::mem::take(&mut self.count);
        Some(DropReport {
            count,
            last: std::mem::take(&mut self.last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // the fake clock starts at some real instant
    fn at_most_one_report_per_minute_and_nothing_lost() {
        let t0 = Instant::now();
        let mut log = JunkLog::default();
        assert_eq!(log.deadline(), None);
        // The first drop is reported at once.
        let r = log.dropped(t0, 1, "not an ISAKMP message").unwrap();
        assert_eq!(r.count, 1);
        assert_eq!(
            r.to_string(),
            "ike: dropped 1 malformed/unauthenticated datagram from the gateway in the last minute (last: not an ISAKMP message)"
        );
        assert_eq!(log.deadline(), None);
        // A flood in the same minute: held back, one line at the end of it.
        let mut lines = 0;
        for i in 1..=3000u64 {
            let now = t0 + Duration::from_millis(i * 10); // 30 s
            lines += log
                .dropped(now, 1, "its HASH does not verify")
                .iter()
                .count();
        }
        assert_eq!(lines, 0);
        assert_eq!(log.deadline(), Some(t0 + REPORT_INTERVAL));
        assert_eq!(log.due(t0 + Duration::from_secs(59)), None);
        let r = log.due(t0 + REPORT_INTERVAL).unwrap();
        assert_eq!(r.count, 3000);
        assert_eq!(r.last, "its HASH does not verify");
        assert!(r.to_string().contains("dropped 3000 malformed"));
        // Quiet: no deadline, nothing due.
        assert_eq!(log.deadline(), None);
        assert_eq!(log.due(t0 + Duration::from_secs(600)), None);
        // Junk after a quiet period: at once again, then held for a minute.
        let t1 = t0 + Duration::from_secs(600);
        assert_eq!(log.dropped(t1, 2, "x").unwrap().count, 2);
        assert!(log.dropped(t1 + Duration::from_secs(1), 1, "y").is_none());
        // Over ten minutes of steady junk, at most one line per minute.
        let mut reports = Vec::new();
        for s in 2..600u64 {
            let now = t1 + Duration::from_secs(s);
            reports.extend(log.dropped(now, 1, "z"));
        }
        assert!(reports.len() <= 10, "{}", reports.len());
        assert!(reports.len() >= 9, "{}", reports.len());
    }
}
