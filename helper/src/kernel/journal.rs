//! The crash journal: one file per tunnel under /run/postern, written (and synced)
//! before each change to the host, removed after a clean teardown.
//!
//! ```text
//! postern-journal 1
//! pid 1234
//! netns 4026532281
//! link postern0
//! addr 10.200.0.5/32 postern0
//! route 10.77.0.0/24 postern0 10.200.0.5
//! ```
//!
//! Journals name the network namespace (its inode) they were written in: a helper only
//! cleans up after helpers of its own namespace.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::KernelError;

const MAGIC: &str = "postern-journal 1";

/// One change made to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A network device we created.
    Link { dev: String },
    /// An address (`addr/prefix`) on a device.
    Addr { cidr: String, dev: String },
    /// A route to `dst` (`net/prefix`) through a device, with source address `src`.
    Route {
        dst: String,
        dev: String,
        src: String,
    },
    /// A host route keeping the gateway outside a full tunnel: `dst` through `dev`,
    /// via the router `via` (`-`: on link).
    Bypass {
        dst: String,
        dev: String,
        via: String,
    },
    /// resolv.conf rewritten; the original is in `backup` (under the run directory).
    ResolvConf { backup: String },
    /// A `throw` route in Postern's routing table: lookups for `dst` (a local network,
    /// `network.allow_lan` with a full tunnel) fall through to the main table.
    Throw { dst: String },
    /// The policy rule sending lookups to Postern's routing table (`inet`/`inet6`).
    Rule { family: String, priority: String },
    /// A kernel ESP SA (to `dst`, SPI in hex).
    XfrmSa { dst: String, spi: String },
    /// A kernel XFRM policy (`in`/`out`/`fwd`, selector `src` -> `dst`).
    XfrmPolicy {
        dir: String,
        src: String,
        dst: String,
    },
    /// An nftables table of ours (the kill switch, the IPv6 leak block).
    NfTable { family: String, name: String },
}

impl Entry {
    /// For messages: what the entry installed.
    pub fn describe(&self) -> String {
        match self {
            Entry::Link { dev } => format!("device {dev}"),
            Entry::Addr { cidr, dev } => format!("address {cidr} on {dev}"),
            Entry::Route { dst, dev, src } => format!("route {dst} dev {dev} src {src}"),
            Entry::Bypass { dst, dev, via } => format!("route {dst} dev {dev} via {via}"),
            Entry::Throw { dst } => format!("throw route {dst} in Postern's routing table"),
            Entry::ResolvConf { backup } => format!("resolv.conf (backup {backup})"),
            Entry::Rule { family, priority } => {
                format!("{family} rule {priority} to Postern's routing table")
            }
            Entry::XfrmSa { dst, spi } => format!("ESP SA {spi} to {dst}"),
            Entry::XfrmPolicy { dir, src, dst } => format!("XFRM policy {dir} {src} -> {dst}"),
            Entry::NfTable { family, name } => format!("nftables table {family} {name}"),
        }
    }

    fn to_line(&self) -> String {
        match self {
            Entry::Link { dev } => format!("link {dev}"),
            Entry::Addr { cidr, dev } => format!("addr {cidr} {dev}"),
            Entry::Route { dst, dev, src } => format!("route {dst} {dev} {src}"),
            Entry::Bypass { dst, dev, via } => format!("bypass {dst} {dev} {via}"),
            Entry::Throw { dst } => format!("throw {dst}"),
            Entry::ResolvConf { backup } => format!("resolvconf {backup}"),
            Entry::Rule { family, priority } => format!("rule {family} {priority}"),
            Entry::XfrmSa { dst, spi } => format!("xfrm-sa {dst} {spi}"),
            Entry::XfrmPolicy { dir, src, dst } => format!("xfrm-policy {dir} {src} {dst}"),
            Entry::NfTable { family, name } => format!("nftable {family} {name}"),
        }
    }

    fn parse(line: &str) -> Option<Entry> {
        let w: Vec<&str> = line.split_whitespace().collect();
        // Only names and addresses as written by `to_line` (and `-` for "none").
        let ok = |s: &str| {
            s == "-"
                || !s.is_empty()
                    && !s.starts_with('-')
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".:/_".contains(&b))
        };
        if !w.iter().skip(1).all(|s| ok(s)) {
            return None;
        }
        match w.as_slice() {
            ["link", dev] => Some(Entry::Link {
                dev: dev.to_string(),
            }),
            ["addr", cidr, dev] => Some(Entry::Addr {
                cidr: cidr.to_string(),
                dev: dev.to_string(),
            }),
            ["bypass", dst, dev, via] => Some(Entry::Bypass {
                dst: dst.to_string(),
                dev: dev.to_string(),
                via: via.to_string(),
            }),
            ["throw", dst] => Some(Entry::Throw {
                dst: dst.to_string(),
            }),
            ["rule", family @ ("inet" | "inet6"), priority] => Some(Entry::Rule {
                family: family.to_string(),
                priority: priority.to_string(),
            }),
            ["xfrm-sa", dst, spi] => Some(Entry::XfrmSa {
                dst: dst.to_string(),
                spi: spi.to_string(),
            }),
            ["xfrm-policy", dir, src, dst] => Some(Entry::XfrmPolicy {
                dir: dir.to_string(),
                src: src.to_string(),
                dst: dst.to_string(),
            }),
            ["nftable", family @ ("inet" | "ip" | "ip6"), name]
                if name.starts_with(super::firewall::TABLE_PREFIX) =>
            {
                Some(Entry::NfTable {
                    family: family.to_string(),
                    name: name.to_string(),
                })
            }
            ["resolvconf", backup] => Some(Entry::ResolvConf {
                backup: backup.to_string(),
            }),
            ["route", dst, dev, src] => Some(Entry::Route {
                dst: dst.to_string(),
                dev: dev.to_string(),
                src: src.to_string(),
            }),
            _ => None,
        }
    }
}

/// `$POSTERN_RUN_DIR`, else /run/postern.
pub fn run_dir() -> PathBuf {
    std::env::var_os("POSTERN_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/postern"))
}

/// The inode of our network namespace (0 when it cannot be read).
pub fn netns_id() -> u64 {
    fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The journal of the running tunnel.
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Journal {
        path: path.display().to_string(),
        source,
    }
}

impl Journal {
    /// Creates the journal for tunnel device `dev` in `dir` (mode 0600).
    pub fn create(dir: &Path, dev: &str) -> Result<Journal, KernelError> {
        let ns = netns_id();
        let path = dir.join(format!("{ns}-{dev}.journal"));
        fs::create_dir_all(dir).map_err(err(dir))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err(&path))?;
        writeln!(file, "{MAGIC}\npid {}\nnetns {ns}", std::process::id()).map_err(err(&path))?;
        file.sync_data().map_err(err(&path))?;
        Ok(Journal {
            path,
            file,
            entries: Vec::new(),
        })
    }

    /// Like [`Journal::create`], but fails (`AlreadyExists`) when a journal for `dev`
    /// is there: a tunnel of a running helper has claimed the name (stale journals are
    /// removed at start by `cleanup_stale`).
    pub fn create_new(dir: &Path, dev: &str) -> Result<Journal, KernelError> {
        let ns = netns_id();
        let path = dir.join(format!("{ns}-{dev}.journal"));
        fs::create_dir_all(dir).map_err(err(dir))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(err(&path))?;
        writeln!(file, "{MAGIC}\npid {}\nnetns {ns}", std::process::id()).map_err(err(&path))?;
        file.sync_data().map_err(err(&path))?;
        Ok(Journal {
            path,
            file,
            entries: Vec::new(),
        })
    }

    /// Records `e` durably, before the change is made.
    pub fn record(&mut self, e: Entry) -> Result<(), KernelError> {
        writeln!(self.file, "{}", e.to_line()).map_err(err(&self.path))?;
        self.file.sync_data().map_err(err(&self.path))?;
        self.entries.push(e);
        Ok(())
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Takes back the last entry (its change was not made after all): the file is
    /// rewritten without it.
    pub fn forget_last(&mut self) -> Result<(), KernelError> {
        self.entries.pop();
        self.rewrite()
    }

    /// Keeps only the entries `keep` says yes to (what a change replaced, e.g. the SAs
    /// a MOBIKE move took to other addresses): the file is rewritten without the others.
    pub fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) -> Result<(), KernelError> {
        self.entries.retain(keep);
        self.rewrite()
    }

    /// Writes the file anew from `entries` (synced).
    fn rewrite(&mut self) -> Result<(), KernelError> {
        use std::io::{Seek, SeekFrom};
        self.file.set_len(0).map_err(err(&self.path))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(err(&self.path))?;
        writeln!(
            self.file,
            "{MAGIC}\npid {}\nnetns {}",
            std::process::id(),
            netns_id()
        )
        .map_err(err(&self.path))?;
        for e in &self.entries {
            writeln!(self.file, "{}", e.to_line()).map_err(err(&self.path))?;
        }
        self.file.sync_data().map_err(err(&self.path))
    }

    /// Removes the file: everything it named has been undone.
    pub fn finish(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A journal read back from disk.
#[derive(Debug)]
pub struct Stale {
    pub path: PathBuf,
    pub pid: u32,
    pub entries: Vec<Entry>,
}

fn parse(text: &str) -> Option<(u32, u64, Vec<Entry>)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let pid = lines.next()?.strip_prefix("pid ")?.parse().ok()?;
    let ns = lines.next()?.strip_prefix("netns ")?.parse().ok()?;
    // A torn last line (crash while writing) is skipped.
    Some((pid, ns, lines.filter_map(Entry::parse).collect()))
}

pub(crate) fn helper_alive(pid: u32) -> bool {
    pid == std::process::id()
        || fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end() == "postern-helper")
}

/// Journals in `dir` of this network namespace whose helper is no longer running.
pub fn stale_journals(dir: &Path) -> Vec<Stale> {
    let ns = netns_id();
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("journal") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Some((pid, jns, entries)) = parse(&text) else {
            continue;
        };
        if jns == ns && !helper_alive(pid) {
            out.push(Stale { path, pid, entries });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "postern-journal-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_staleness() {
        let dir = tmpdir("rt");
        let mut j = Journal::create(&dir, "postern7").expect("create");
        let es = [
            Entry::Link {
                dev: "postern7".into(),
            },
            Entry::Addr {
                cidr: "10.200.0.5/32".into(),
                dev: "postern7".into(),
            },
            Entry::Route {
                dst: "10.77.0.0/24".into(),
                dev: "postern7".into(),
                src: "10.200.0.5".into(),
            },
            Entry::Bypass {
                dst: "192.0.2.1/32".into(),
                dev: "eth0".into(),
                via: "-".into(),
            },
            Entry::Bypass {
                dst: "203.0.113.1/32".into(),
                dev: "eth0".into(),
                via: "192.0.2.254".into(),
            },
            Entry::Throw {
                dst: "192.168.0.0/16".into(),
            },
            Entry::Throw {
                dst: "fc00::/7".into(),
            },
        ];
        let es = [
            es.as_slice(),
            &[Entry::NfTable {
                family: "inet".into(),
                name: "postern_77_0".into(),
            }],
        ]
        .concat();
        for e in &es {
            j.record(e.clone()).expect("record");
        }
        // Our own journal is not stale.
        assert!(stale_journals(&dir).is_empty());
        // Rewrite it as if a dead helper wrote it.
        let p = dir.join(format!("{}-postern7.journal", netns_id()));
        let text = fs::read_to_string(&p).expect("read");
        let dead = text.replace(&format!("pid {}", std::process::id()), "pid 4194303");
        fs::write(&p, format!("{dead}route 10.1.0.0/16 postern7")).expect("write"); // torn line
        let stale = stale_journals(&dir);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].pid, 4194303);
        assert_eq!(stale[0].entries, es);
        // Another namespace's journal is left alone.
        fs::write(
            dir.join("1-postern9.journal"),
            dead.replace(&format!("netns {}", netns_id()), "netns 1"),
        )
        .expect("write");
        assert_eq!(stale_journals(&dir).len(), 1);
        j.finish();
        let _ = fs::remove_dir_all(&dir);
    }

    /// After a MOBIKE move the inbound SAs' old names go: the file read back (as
    /// `cleanup` reads it) names exactly what is installed.
    #[test]
    fn retain_rewrites_the_file() {
        let dir = tmpdir("retain");
        let mut j = Journal::create(&dir, "xfrm7").expect("create");
        let sa = |dst: &str, spi: &str| Entry::XfrmSa {
            dst: dst.into(),
            spi: spi.into(),
        };
        let policy = Entry::XfrmPolicy {
            dir: "out".into(),
            src: "10.200.1.1/32".into(),
            dst: "0.0.0.0/0".into(),
        };
        for e in [
            sa("192.0.2.2", "0xc0000001"),
            sa("192.0.2.1", "0xc0000002"),
            policy.clone(),
            sa("192.0.2.3", "0xc0000001"),
        ] {
            j.record(e).expect("record");
        }
        j.retain(|e| !matches!(e, Entry::XfrmSa { dst, .. } if dst == "192.0.2.2"))
            .expect("retain");
        let want = [
            sa("192.0.2.1", "0xc0000002"),
            policy,
            sa("192.0.2.3", "0xc0000001"),
        ];
        assert_eq!(j.entries(), want);
        let text = fs::read_to_string(&j.path).expect("read");
        let (pid, _, entries) = parse(&text).expect("parse");
        assert_eq!(pid, std::process::id());
        assert_eq!(entries, want);
        // Later records append after the rewritten lines.
        j.record(sa("192.0.2.4", "0xc0000003")).expect("record");
        let (_, _, entries) = parse(&fs::read_to_string(&j.path).unwrap()).unwrap();
        assert_eq!(entries.len(), 4);
        j.finish();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn hostile_lines_are_ignored() {
        for l in [
            "link -all",
            "addr 1.2.3.4/32 dev;rm",
            "route a b",
            "link",
            "unknown x",
            "link a b",
            "nftable inet filter",
            "nftable netdev postern_1_0",
        ] {
            assert_eq!(Entry::parse(l), None, "{l}");
        }
    }
}
