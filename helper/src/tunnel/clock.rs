//! The engine's clock: tokio's (monotonic) clock plus the time the machine spent
//! asleep.
//!
//! `Instant` is CLOCK_MONOTONIC, which stops while the machine is suspended: an SA
//! whose hour ran out during a night in a bag would still look young in the morning.
//! The engine therefore gets `Instant::now()` moved forward by the time spent asleep
//! since the session began (CLOCK_BOOTTIME, which counts suspend, minus
//! CLOCK_MONOTONIC), so its lifetimes and DPD timers are judged on wall time; deadlines
//! it asks for are moved back by the same amount before tokio sleeps on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// Less than this of difference is noise between the two clock reads, not a sleep.
const NOISE: Duration = Duration::from_millis(20);

fn read(id: ClockId) -> Option<Duration> {
    let t = clock_gettime(id).ok()?;
    Some(Duration::new(
        u64::try_from(t.tv_sec()).ok()?,
        u32::try_from(t.tv_nsec()).ok()?,
    ))
}

/// CLOCK_BOOTTIME − CLOCK_MONOTONIC: the time spent suspended since boot.
fn suspended_since_boot() -> Duration {
    match (
        read(ClockId::CLOCK_BOOTTIME),
        read(ClockId::CLOCK_MONOTONIC),
    ) {
        (Some(b), Some(m)) => b.saturating_sub(m),
        _ => Duration::ZERO,
    }
}

/// One session's engine clock.
#[derive(Debug)]
pub struct Clock {
    base: Duration,
    /// The time asleep seen so far (ms), never decreasing.
    asleep_ms: AtomicU64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: suspended_since_boot(),
            asleep_ms: AtomicU64::new(0),
        }
    }

    /// Time spent asleep since the clock was made.
    pub fn asleep(&self) -> Duration {
        let measured = suspended_since_boot().saturating_sub(self.base);
        let ms = if measured < NOISE {
            0
        } else {
            u64::try_from(measured.as_millis()).unwrap_or(u64::MAX)
        };
        let ms = self.asleep_ms.fetch_max(ms, Ordering::Relaxed).max(ms);
        Duration::from_millis(ms)
    }

    /// The engine's now: monotonic time plus the time asleep.
    pub fn now(&self) -> Instant {
        shifted(Instant::now(), self.asleep())
    }

    /// When tokio must wake for the engine's `deadline`.
    pub fn to_tokio(&self, deadline: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(unshifted(deadline, self.asleep()))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn shifted(now: Instant, asleep: Duration) -> Instant {
    now.checked_add(asleep).unwrap_or(now)
}

fn unshifted(deadline: Instant, asleep: Duration) -> Instant {
    deadline.checked_sub(asleep).unwrap_or(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_sleep_the_engine_clock_is_the_monotonic_one() {
        let c = Clock::new();
        assert_eq!(c.asleep(), Duration::ZERO);
        let before = Instant::now();
        let now = c.now();
        assert!(now >= before && now - before < Duration::from_secs(1));
    }

    #[test]
    fn a_sleep_moves_the_engine_forward_and_its_deadlines_back() {
        // An SA made just before a 2 h sleep with a 1 h lifetime: on resume, the
        // engine's now is past the expiry, and tokio is told to wake at once.
        let made = Instant::now();
        let expiry = made + Duration::from_secs(3600);
        let asleep = Duration::from_secs(7200);
        let monotonic_after = made + Duration::from_secs(1);
        assert!(shifted(monotonic_after, asleep) > expiry);
        assert!(unshifted(expiry, asleep) < monotonic_after);
    }

    #[test]
    fn the_time_asleep_never_goes_back() {
        let c = Clock::new();
        c.asleep_ms.store(5000, Ordering::Relaxed);
        assert_eq!(c.asleep(), Duration::from_secs(5));
    }
}
