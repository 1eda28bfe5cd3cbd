//! What Postern may leave in the client namespace: addresses, routes (v4 and v6, every
//! table), rules, XFRM states and policies, links, nftables objects and resolv.conf.
//! A snapshot before a connect must equal one after the tunnel is gone (faults, cycles).

use crate::lab::{Lab, Role};
use crate::{LabError, Result};

/// The client namespace's kernel state Postern may touch, as text. Waits (5 s at
/// most) for IPv6 duplicate address detection on the lab's links to end first: its
/// link-local routes appear when it does, and they are not Postern's.
pub fn snapshot(lab: &Lab) -> Result<String> {
    for _ in 0..50 {
        if lab
            .exec(Role::Client, &["ip", "-6", "addr", "show", "tentative"])?
            .trim()
            .is_empty()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut s = String::new();
    for cmd in [
        &["ip", "addr"][..],
        &["ip", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["ip", "rule"],
        &["ip", "-6", "rule"],
        &["ip", "xfrm", "state"],
        &["ip", "xfrm", "policy"],
        &["ip", "link"],
        &["nft", "list", "ruleset"],
        &["cat", "/etc/resolv.conf"],
    ] {
        s.push_str(&format!("$ {}\n", cmd.join(" ")));
        // DAD may finish between two snapshots: the flag is not ours.
        s.push_str(&lab.exec(Role::Client, cmd)?.replace(" tentative", ""));
    }
    Ok(s)
}

/// Fails with the differing lines when `after` is not `before`.
pub fn ensure_same(before: &str, after: &str, when: &str) -> Result<()> {
    if before == after {
        return Ok(());
    }
    let diff: Vec<String> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(|l| format!("+ {l}"))
        .chain(
            before
                .lines()
                .filter(|b| !after.lines().any(|l| l == *b))
                .map(|l| format!("- {l}")),
        )
        .collect();
    Err(LabError(format!(
        "client kernel state differs {when}:\n{}",
        diff.join("\n")
    )))
}

/// Open file descriptors and resident memory (KiB) of a process.
pub fn fd_and_rss(pid: u32) -> Result<(usize, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| LabError(format!("no VmRSS for pid {pid}")))?;
    Ok((fds, rss))
}
