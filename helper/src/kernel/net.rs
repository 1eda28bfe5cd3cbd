//! Addresses, routes and devices through iproute2's `ip` command. Each change is
//! recorded in the journal before it is made.

use std::net::IpAddr;
use std::process::Command;

use super::{Entry, Journal, KernelError};

fn ip(args: &[&str]) -> Result<(), KernelError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(KernelError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KernelError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Brings the device up.
pub fn link_up(dev: &str) -> Result<(), KernelError> {
    ip(&["link", "set", "dev", dev, "up"])
}

/// Adds `addr/prefix` to `dev`.
pub fn add_addr(j: &mut Journal, addr: IpAddr, prefix: u8, dev: &str) -> Result<(), KernelError> {
    let cidr = format!("{addr}/{prefix}");
    j.record(Entry::Addr {
        cidr: cidr.clone(),
        dev: dev.to_string(),
    })?;
    ip(&["addr", "add", &cidr, "dev", dev])
}

/// Routes `dst/prefix` through `dev` with source address `src`.
pub fn add_route(
    j: &mut Journal,
    dst: IpAddr,
    prefix: u8,
    dev: &str,
    src: IpAddr,
) -> Result<(), KernelError> {
    let dst = format!("{dst}/{prefix}");
    let src = src.to_string();
    j.record(Entry::Route {
        dst: dst.clone(),
        dev: dev.to_string(),
        src: src.clone(),
    })?;
    ip(&["route", "add", &dst, "dev", dev, "src", &src])
}

fn gone(e: &KernelError) -> bool {
    match e {
        KernelError::Command { stderr, .. } => {
            // What `ip` says when the object (or its device) is already gone.
            [
                "No such process",
                "Cannot find device",
                "Cannot assign requested address",
                "No such device",
                "does not exist",
            ]
            .iter()
            .any(|m| stderr.contains(m))
        }
        _ => false,
    }
}

/// Undoes `entries` in reverse order. Objects already gone (a TUN device takes its
/// addresses and routes with it) are not errors. Returns the errors.
pub fn undo(entries: &[Entry]) -> Vec<String> {
    let mut errors = Vec::new();
    for e in entries.iter().rev() {
        let r = match e {
            Entry::Route { dst, dev, src } => ip(&["route", "del", dst, "dev", dev, "src", src]),
            Entry::Addr { cidr, dev } => ip(&["addr", "del", cidr, "dev", dev]),
            Entry::Link { dev } => ip(&["link", "del", "dev", dev]),
        };
        match r {
            Err(e) if !gone(&e) => errors.push(e.to_string()),
            _ => {}
        }
    }
    errors
}
