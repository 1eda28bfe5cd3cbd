//! One error type for the whole harness: a message meant for the person reading a failed test.

use std::fmt;

/// A lab failure: what went wrong, in words. Tests turn it into a panic that also carries
/// the charon log tails (see [`crate::run_scenario`]).
#[derive(Debug)]
pub struct LabError(pub String);

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabError {}

impl From<std::io::Error> for LabError {
    fn from(e: std::io::Error) -> Self {
        LabError(format!("I/O error: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, LabError>;

/// `Err(LabError(format!(...)))`.
#[macro_export]
macro_rules! lab_bail {
    ($($arg:tt)*) => { return Err($crate::LabError(format!($($arg)*))) };
}

/// Like `assert!`, but returns a [`LabError`] so the scenario runner can add diagnostics.
#[macro_export]
macro_rules! lab_ensure {
    ($cond:expr, $($arg:tt)*) => { if !$cond { $crate::lab_bail!($($arg)*) } };
}
