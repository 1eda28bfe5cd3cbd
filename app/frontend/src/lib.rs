//! What Postern's front ends share, with no user interface in it: the `postern` CLI
//! (`app/cli`) and the desktop app (`app/gui`) are both built on this.
//!
//! * [`profiles`]: the user's profile directory (`$XDG_CONFIG_HOME/postern/profiles`),
//!   checked with the contract's parser; a profile never holds a secret.
//! * [`keyring`]: secrets in the user's keyring (Secret Service).
//! * [`explain`]: each [`FailureKind`] in plain words, with what to check.
//! * [`watcher`]: the helper's tunnels as a stream of typed updates, and the commands
//!   (connect, disconnect, answer a prompt, read counters) that drive them.
//!
//! Failures are the contract's [`Fail`] (a [`FailureKind`] and one sentence): front ends
//! explain them by kind and derive exit codes from it, never from the text.
#![forbid(unsafe_code)]

pub mod explain;
pub mod export;
pub mod import;
pub mod keyring;
pub mod profiles;
pub mod watcher;

pub use postern_dbus::failure::{Failure as Fail, FailureKind};
