//! Bounded waiting: every loop here ends after a fixed number of tries *and* a deadline.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{LabError, Result};

/// Calls `probe` every `interval` until it returns `Some`, an error, or `timeout` passes.
/// The number of tries is bounded too (`timeout / interval + 2`), so a probe that itself
/// takes long cannot make the loop spin forever.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start + timeout;
    let tries = timeout.as_millis() / interval.as_millis().max(1) + 2;
    for _ in 0..tries {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        sleep(interval.min(deadline - now));
    }
    Err(LabError(format!(
        "timed out after {:.1?} waiting for {what}",
        start.elapsed()
    )))
}
