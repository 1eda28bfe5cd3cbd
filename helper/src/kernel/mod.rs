//! Host networking: the virtual IP, the routes to the remote networks, and the crash
//! journal that lets a later helper remove what a killed one left behind.
//!
//! Changes are made over rtnetlink ([`net`]); the kernel datapath's SAs and policies
//! over XFRM netlink with the netlink-packet-xfrm crate ([`xfrm`]).

pub mod dns;
pub mod firewall;
pub mod journal;
pub mod net;
pub mod resolved;
pub mod udp_encap;
pub mod xfrm;

pub use journal::{Entry, Journal};

/// Why host networking could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Errno { what: String, errno: i32 },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("crash journal {path}: {source}")]
    Journal {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Undoes what stale journals (of helpers that are gone) in this network namespace
/// recorded. Returns one line per journal handled.
pub fn cleanup_stale() -> Vec<String> {
    cleanup_stale_in(&journal::run_dir())
}

pub fn cleanup_stale_in(dir: &std::path::Path) -> Vec<String> {
    let mut report = Vec::new();
    for j in journal::stale_journals(dir) {
        let errors = net::undo(&j.entries);
        let _ = std::fs::remove_file(&j.path);
        report.push(format!(
            "cleanup: removed what pid {} left ({} entries{}) from {}",
            j.pid,
            j.entries.len(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(", {} errors: {}", errors.len(), errors.join("; "))
            },
            j.path.display()
        ));
    }
    report
}
