//! The Postern lab: network namespaces with real strongSwan gateways, the reference client
//! (strongSwan's charon as the client) and a runner for `postern-helper up`.
//!
//! Root only. Every test builds its own [`Lab`] (namespaces `pl-<scenario>-<pid>-<n>-<role>`),
//! so tests run side by side; [`run_scenario`] turns failures into panics that carry the
//! charon log tails.

#[macro_use]
mod error;
pub mod bench;
pub mod bususer;
pub mod config;
pub mod cycles;
pub mod desktop;
pub mod hoststate;
pub mod lab;
pub mod libreswan;
pub mod multi;
pub mod pki;
pub mod postern;
pub mod process;
pub mod signals;
pub mod strongswan;
pub mod sysbus;
pub mod wait;

pub use config::Tunnel;
pub use error::{LabError, Result};
pub use lab::{Lab, Role};
pub use postern::Client;
pub use strongswan::{Charon, ChildSa, IkeSa};

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Runs one scenario in a fresh lab. An `Err` or a panic fails the test with the lab's
/// diagnostics (charon log tails, process output) in the message; the lab is always torn
/// down, its directory kept on failure.
pub fn run_scenario(scenario: &str, f: impl FnOnce(&Lab) -> Result<()>) {
    run_in(scenario, Lab::new(scenario), f)
}

/// Like [`run_scenario`], in a lab with a NAT router between client and gateway.
pub fn run_nat_scenario(scenario: &str, f: impl FnOnce(&Lab) -> Result<()>) {
    run_in(scenario, Lab::new_nat(scenario), f)
}

fn run_in(scenario: &str, lab: Result<Lab>, f: impl FnOnce(&Lab) -> Result<()>) {
    let lab = match lab {
        Ok(lab) => lab,
        Err(e) => panic!("{scenario}: cannot build the lab: {e}"),
    };
    match catch_unwind(AssertUnwindSafe(|| f(&lab))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let diag = lab.diagnostics();
            panic!("{scenario}: {e}\n\n{diag}");
        }
        Err(p) => {
            eprintln!("{}", lab.diagnostics());
            drop(lab);
            resume_unwind(p);
        }
    }
}
