//! `postern`: the unprivileged command-line front end.
//!
//! It talks to `postern-helper` over D-Bus, which arrives with the service
//! issue. Until then it says so instead of pretending.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "postern: the CLI front end needs the D-Bus service, which is not built yet.\n\
         For now run a profile in the foreground as root:  postern-helper up PROFILE.toml"
    );
    ExitCode::from(2)
}
