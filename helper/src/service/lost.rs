//! Tunnels a killed helper had: one small record per D-Bus connection under the run
//! directory (beside the crash journals), written when the connection is created and
//! removed when it ends. A helper that starts and finds records of a dead helper of its
//! own network namespace tells each owner that the tunnel was lost (a connection object
//! in state `failed`, `LastError` kind `helper-restarted`), after `cleanup_stale` has
//! removed what the journals name.
//!
//! ```text
//! postern-conn 1
//! pid 1234
//! netns 4026532281
//! owner 1000
//! gateway 192.0.2.1
//! name office
//! ```
//!
//! No secret is written: the owner's uid, the gateway and the profile's name.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::kernel::journal::{helper_alive, netns_id};

const MAGIC: &str = "postern-conn 1";

/// A tunnel the dead helper had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub owner: u32,
    pub gateway: String,
    pub name: String,
}

/// Writes the record of connection `id` (mode 0600); returns its path.
pub fn record(dir: &Path, id: u64, t: &Lost) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let pid = std::process::id();
    let path = dir.join(format!("{}-conn-{pid}-{id}.owner", netns_id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    write!(
        f,
        "{MAGIC}\npid {pid}\nnetns {}\nowner {}\ngateway {}\nname {}\n",
        netns_id(),
        t.owner,
        t.gateway,
        t.name
    )?;
    f.sync_data()?;
    Ok(path)
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= 255 && !s.chars().any(char::is_control)
}

fn parse(text: &str) -> Option<(u32, u64, Lost)> {
    let mut l = text.lines();
    if l.next()? != MAGIC {
        return None;
    }
    let pid = l.next()?.strip_prefix("pid ")?.parse().ok()?;
    let ns = l.next()?.strip_prefix("netns ")?.parse().ok()?;
    let owner = l.next()?.strip_prefix("owner ")?.parse().ok()?;
    let gateway = l.next()?.strip_prefix("gateway ")?.to_string();
    let name = l.next()?.strip_prefix("name ")?.to_string();
    (printable(&gateway) && printable(&name)).then_some((
        pid,
        ns,
        Lost {
            owner,
            gateway,
            name,
        },
    ))
}

/// Reads and removes the records in `dir` of dead helpers of this network namespace.
/// Records that do not parse (torn by the crash) are removed too.
pub fn take_stale(dir: &Path) -> Vec<Lost> {
    let ns = netns_id();
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("owner") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        match parse(&text) {
            Some((pid, rns, lost)) if rns == ns && !helper_alive(pid) => {
                let _ = fs::remove_file(&path);
                out.push(lost);
            }
            Some(_) => {}
            None => {
                // Only a torn record of our own namespace is ours to remove.
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(&format!("{ns}-conn-")) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
    out.sort_by(|a, b| (a.owner, &a.name).cmp(&(b.owner, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_dead_helpers_are_taken_once() {
        let dir = std::env::temp_dir().join(format!("postern-lost-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let t = Lost {
            owner: 1000,
            gateway: "192.0.2.1".into(),
            name: "office ../x".into(),
        };
        let p = record(&dir, 7, &t).expect("record");
        // Ours (alive): left alone.
        assert!(take_stale(&dir).is_empty());
        let text = fs::read_to_string(&p).expect("read");
        let dead = text.replace(&format!("pid {}", std::process::id()), "pid 4194303");
        fs::write(&p, dead).expect("write");
        assert_eq!(take_stale(&dir), vec![t]);
        assert!(!p.exists());
        assert!(take_stale(&dir).is_empty());
        // A name with a control character does not parse (and the record goes).
        let torn = dir.join(format!("{}-conn-1-1.owner", netns_id()));
        fs::write(
            &torn,
            "postern-conn 1\npid 4194303\nnetns 1\nowner 0\ngateway g\nname a\u{1b}b\n",
        )
        .expect("write");
        assert!(take_stale(&dir).is_empty());
        assert!(!torn.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
