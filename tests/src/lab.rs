//! The lab: three network namespaces with a per-test unique prefix and everything started
//! in them. `Drop` stops every process the lab started and deletes the namespaces, also
//! when the test panics; [`cleanup_stale`] removes what crashed runs left behind.
//!
//! ```text
//!  client 192.0.2.2/24 ──veth── 192.0.2.1/24 gw 10.77.0.1/24 ──veth── 10.77.0.10/24 lan
//!  (postern / charon client)   (charon gateway, forwarding)        (default via gw)
//! ```
//!
//! [`Lab::new_nat`] puts a masquerading router between client and gateway:
//!
//! ```text
//!  client 198.51.100.2/24 ── 198.51.100.1/24 nat 192.0.2.2/24 ── 192.0.2.1/24 gw ...
//!  (default via nat)         (nftables masquerade out of n1)
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{self, Tunnel};
use crate::postern::Client;
use crate::process::{Proc, run};
use crate::strongswan::{Charon, CharonOptions};
use crate::{LabError, Result};

/// The client's outer address behind the NAT router (NAT labs).
pub const NAT_CLIENT_ADDR: &str = "198.51.100.2";

/// Every lab namespace starts with this.
pub const PREFIX: &str = "pl-";

static SEQ: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Gw,
    Lan,
    /// Only in NAT labs: the masquerading router between client and gw.
    Nat,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Gw => "gw",
            Role::Lan => "lan",
            Role::Nat => "nat",
        }
    }
    const ALL: [Role; 3] = [Role::Client, Role::Gw, Role::Lan];
}

/// Fails clearly when not root: the lab needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub fn require_root() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        lab_bail!(
            "the lab tests need root (network namespaces, charon); effective uid is {euid}. \
             Run them through scripts/test.sh as root."
        );
    }
    Ok(())
}

fn list_netns() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The per-namespace /etc overlay directory of `ip netns exec`.
fn netns_etc(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Deletes one namespace after killing what runs in it. Only used on our own `pl-`
/// namespaces, whose processes this harness started.
fn delete_netns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "delete", ns]).status();
}

/// Removes `pl-*` namespaces whose creating process (the pid in the name) is gone.
/// Namespaces of labs running right now (ours or another test binary's) are left alone.
pub fn cleanup_stale() {
    // pl-<scenario>-<pid>-<seq>-<role>
    let alive = |ns: &str| {
        let parts: Vec<&str> = ns.rsplitn(4, '-').collect();
        parts
            .get(2)
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(entries) = fs::read_dir("/etc/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && !alive(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    for ns in list_netns() {
        if !ns.starts_with(PREFIX) {
            continue;
        }
        if !alive(&ns) {
            eprintln!("postern-lab: removing stale namespace {ns}");
            delete_netns(&ns);
            let _ = fs::remove_dir_all(netns_etc(&ns));
        }
    }
    prune_old_dirs();
}

/// Lab directories are kept after failures; remove those older than a day.
fn prune_old_dirs() {
    let Ok(entries) = fs::read_dir(lab_base_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old && e.file_name().to_string_lossy().starts_with(PREFIX) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// When set, every lab copies the output of the processes it ran into
/// `$POSTERN_LAB_LOGS/<lab name>/` before its directory is removed (scripts/test.sh:
/// `target/lab-logs`, which `lab_secret_grep` then searches for the test secrets).
pub const LOGS_ENV: &str = "POSTERN_LAB_LOGS";

/// Copies the captured output (`*.out`, `*.log`) under `dir` to `dest`, keeping the
/// relative paths, except the gateways' own logs (charon, pluto: the gateway knows the
/// PSK and may log it).
pub fn keep_logs(dir: &Path, dest: &Path) -> std::io::Result<usize> {
    let mut kept = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)?.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let output = name.ends_with(".out") || name.ends_with(".log");
            let gateway = name.starts_with("charon") || name.starts_with("pluto");
            if !t.is_file() || !output || gateway {
                continue;
            }
            let Ok(rel) = p.strip_prefix(dir) else {
                continue;
            };
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(&p, &to)?;
            kept += 1;
        }
    }
    Ok(kept)
}

/// `$POSTERN_LAB_DIR`, else `$TMPDIR/postern-lab`.
pub fn lab_base_dir() -> PathBuf {
    std::env::var_os("POSTERN_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("postern-lab"))
}

/// One lab: its namespaces, its directory and the processes it started.
pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    procs: Mutex<Vec<Arc<Proc>>>,
    charon_logs: Mutex<Vec<(String, PathBuf)>>,
    keep_dir: bool,
}

impl Lab {
    /// Creates the client/gw/lan namespaces for `scenario`.
    pub fn new(scenario: &str) -> Result<Lab> {
        Self::create(scenario, false)
    }

    /// Like [`Lab::new`], with a NAT router (namespace `nat`) between client and gw.
    pub fn new_nat(scenario: &str) -> Result<Lab> {
        Self::create(scenario, true)
    }

    fn create(scenario: &str, nat: bool) -> Result<Lab> {
        require_root()?;
        cleanup_stale();
        let scenario: String = scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = format!(
            "{PREFIX}{scenario}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = lab_base_dir().join(&name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            namespaces: Vec::new(),
            name,
            dir,
            procs: Mutex::new(Vec::new()),
            charon_logs: Mutex::new(Vec::new()),
            keep_dir: std::env::var_os("POSTERN_LAB_KEEP").is_some(),
        };
        if nat {
            lab.build_nat_topology()?;
        } else {
            lab.build_topology()?;
        }
        lab.private_resolv_conf()?;
        Ok(lab)
    }

    /// Gives the client namespace its own resolv.conf (`ip netns exec` bind-mounts
    /// /etc/netns/NAME/resolv.conf over /etc/resolv.conf), a copy of the host's, so DNS
    /// from Mode Config never touches the host's file. Removed with the lab.
    fn private_resolv_conf(&self) -> Result<()> {
        let dir = netns_etc(&self.ns(Role::Client));
        fs::create_dir_all(&dir)?;
        let host = fs::read("/etc/resolv.conf").unwrap_or_default();
        fs::write(dir.join("resolv.conf"), host)?;
        Ok(())
    }

    pub fn ns(&self, role: Role) -> String {
        format!("{}-{}", self.name, role.as_str())
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip").args(args)).map(|_| ())
    }

    fn build_topology(&mut self) -> Result<()> {
        for role in Role::ALL {
            let ns = self.ns(role);
            self.ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            self.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let (c, g, l) = (self.ns(Role::Client), self.ns(Role::Gw), self.ns(Role::Lan));
        // Created inside the namespaces, so equal names in parallel labs cannot clash.
        self.ip(&[
            "-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "g0", "netns", &g,
        ])?;
        self.ip(&[
            "-n", &g, "link", "add", "g1", "type", "veth", "peer", "name", "l0", "netns", &l,
        ])?;
        let client = format!("{}/24", config::CLIENT_ADDR);
        let gw = format!("{}/24", config::GW_ADDR);
        let gw_lan = format!("{}/24", config::GW_LAN_ADDR);
        let lan = format!("{}/24", config::LAN_HOST);
        self.ip(&["-n", &c, "addr", "add", &client, "dev", "c0"])?;
        self.ip(&["-n", &c, "link", "set", "c0", "up"])?;
        self.ip(&["-n", &g, "addr", "add", &gw, "dev", "g0"])?;
        self.ip(&["-n", &g, "addr", "add", &gw_lan, "dev", "g1"])?;
        self.ip(&["-n", &g, "link", "set", "g0", "up"])?;
        self.ip(&["-n", &g, "link", "set", "g1", "up"])?;
        self.ip(&["-n", &l, "addr", "add", &lan, "dev", "l0"])?;
        self.ip(&["-n", &l, "link", "set", "l0", "up"])?;
        self.ip(&[
            "-n",
            &l,
            "route",
            "add",
            "default",
            "via",
            config::GW_LAN_ADDR,
        ])?;
        self.exec(Role::Gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(())
    }

    /// The usual topology, then the client moved behind a masquerading `nat` namespace
    /// that takes over the client's old address on the gateway's link.
    fn build_nat_topology(&mut self) -> Result<()> {
        self.build_topology()?;
        let n = self.ns(Role::Nat);
        self.ip(&["netns", "add", &n])?;
        self.namespaces.push(n.clone());
        let (c, g) = (self.ns(Role::Client), self.ns(Role::Gw));
        self.ip(&["-n", &n, "link", "set", "lo", "up"])?;
        // Re-plumb: client c0 <-> n0 (nat), nat n1 <-> g0 (gw).
        self.ip(&["-n", &c, "link", "del", "c0"])?;
        self.ip(&[
            "-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "n0", "netns", &n,
        ])?;
        self.ip(&[
            "-n", &n, "link", "add", "n1", "type", "veth", "peer", "name", "g0", "netns", &g,
        ])?;
        let gw = format!("{}/24", config::GW_ADDR);
        self.ip(&["-n", &g, "addr", "add", &gw, "dev", "g0"])?;
        self.ip(&["-n", &g, "link", "set", "g0", "up"])?;
        let nat_out = format!("{}/24", config::CLIENT_ADDR);
        self.ip(&["-n", &n, "addr", "add", &nat_out, "dev", "n1"])?;
        self.ip(&["-n", &n, "addr", "add", "198.51.100.1/24", "dev", "n0"])?;
        self.ip(&["-n", &n, "link", "set", "n0", "up"])?;
        self.ip(&["-n", &n, "link", "set", "n1", "up"])?;
        self.ip(&[
            "-n",
            &c,
            "addr",
            "add",
            &format!("{NAT_CLIENT_ADDR}/24"),
            "dev",
            "c0",
        ])?;
        self.ip(&["-n", &c, "link", "set", "c0", "up"])?;
        self.ip(&["-n", &c, "route", "add", "default", "via", "198.51.100.1"])?;
        self.exec(Role::Nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        self.exec(
            Role::Nat,
            &[
                "nft",
                "add table ip nat; \
                 add chain ip nat post { type nat hook postrouting priority 100; }; \
                 add rule ip nat post oifname n1 masquerade",
            ],
        )?;
        Ok(())
    }

    /// IPv6 beside IPv4: [`config::CLIENT6`]/[`config::GW6`] on the client–gateway
    /// link, [`config::GW_LAN6`]/[`config::LAN_HOST6`] on the LAN (default route via the
    /// gateway, which forwards), all `nodad` (no duplicate address detection wait);
    /// returns once the client reaches the gateway over IPv6.
    pub fn add_ipv6(&self) -> Result<()> {
        for (role, addr, dev) in [
            (Role::Client, config::CLIENT6, "c0"),
            (Role::Gw, config::GW6, "g0"),
            (Role::Gw, config::GW_LAN6, "g1"),
            (Role::Lan, config::LAN_HOST6, "l0"),
        ] {
            let cidr = format!("{addr}/64");
            self.exec(
                role,
                &["ip", "-6", "addr", "add", &cidr, "dev", dev, "nodad"],
            )?;
        }
        self.exec(
            Role::Lan,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                config::GW_LAN6,
            ],
        )?;
        self.exec(
            Role::Gw,
            &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        )?;
        for _ in 0..20 {
            let ping = ["ping", "-6", "-n", "-c", "1", "-W", "1", config::GW6];
            if self.exec(Role::Client, &ping).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        lab_bail!("no IPv6 between client and gateway")
    }

    /// Runs a short command in a namespace; returns stdout.
    pub fn exec(&self, role: Role, args: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(args))
    }

    /// A Command that will run `program` in the namespace of `role`.
    pub fn command(&self, role: Role, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(role)]).arg(program);
        cmd
    }

    /// Keeps track of a process so `Drop` stops it.
    pub fn adopt(&self, p: &Arc<Proc>) {
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(p));
    }

    fn start_charon(
        &self,
        role: Role,
        label: &str,
        swanctl: &str,
        opts: &CharonOptions,
    ) -> Result<Charon> {
        let dir = self.dir.join(label);
        self.charon_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.to_string(), dir.join("charon.log")));
        let c = Charon::start(label, &self.ns(role), &dir, swanctl, opts)?;
        self.adopt(&c.proc);
        Ok(c)
    }

    /// Shows the tail of `log` (a gateway's log file) in [`Lab::diagnostics`].
    pub fn add_log(&self, label: &str, log: &Path) {
        self.charon_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.to_string(), log.to_path_buf()));
    }

    /// strongSwan as the gateway of `tunnel`, in the gw namespace.
    pub fn start_gateway(&self, tunnel: &Tunnel) -> Result<Charon> {
        self.start_charon(
            Role::Gw,
            "gateway",
            &tunnel.gateway_swanctl(),
            &CharonOptions {
                fragment_size: tunnel.gw_fragment_size,
                files: tunnel.auth.gateway_files(),
                kernel_esp: tunnel.gw_kernel_esp,
                ..CharonOptions::default()
            },
        )
    }

    /// strongSwan as the gateway of `tunnel` (its options: kernel ESP, fragments,
    /// certificates) with `swanctl`, a changed version of its swanctl.conf (e.g.
    /// [`config::over_ipv6`]).
    pub fn start_gateway_as(&self, tunnel: &Tunnel, swanctl: &str) -> Result<Charon> {
        self.start_charon(
            Role::Gw,
            "gateway",
            swanctl,
            &CharonOptions {
                fragment_size: tunnel.gw_fragment_size,
                files: tunnel.auth.gateway_files(),
                kernel_esp: tunnel.gw_kernel_esp,
                ..CharonOptions::default()
            },
        )
    }

    /// [`Lab::start_gateway_as`] with more `charon.plugins` settings in strongswan.conf
    /// (e.g. EAP-GTC's XAuth backend).
    pub fn start_gateway_plugins(
        &self,
        tunnel: &Tunnel,
        swanctl: &str,
        plugin_settings: &str,
    ) -> Result<Charon> {
        self.start_charon(
            Role::Gw,
            "gateway",
            swanctl,
            &CharonOptions {
                fragment_size: tunnel.gw_fragment_size,
                files: tunnel.auth.gateway_files(),
                kernel_esp: tunnel.gw_kernel_esp,
                plugin_settings: plugin_settings.to_string(),
                ..CharonOptions::default()
            },
        )
    }

    /// strongSwan as the gateway with a hand-made swanctl.conf (scenarios with several
    /// connections), in the gw namespace.
    pub fn start_gateway_conf(&self, swanctl: &str) -> Result<Charon> {
        self.start_charon(Role::Gw, "gateway", swanctl, &CharonOptions::default())
    }

    /// strongSwan's charon as the client (reference client), in the client namespace. The
    /// client's inner address is put on its loopback (charon sources the tunnel from it).
    pub fn start_charon_client(&self, tunnel: &Tunnel) -> Result<Charon> {
        self.add_client_vip()?;
        self.start_charon(
            Role::Client,
            "charon-client",
            &tunnel.charon_client_swanctl(),
            &CharonOptions {
                fast_retransmit: true,
                ..CharonOptions::default()
            },
        )
    }

    /// Adds the client's fixed inner address (10.200.0.5/32) to its loopback.
    pub fn add_client_vip(&self) -> Result<()> {
        let vip = format!("{}/32", config::CLIENT_VIP);
        self.ip(&[
            "-n",
            &self.ns(Role::Client),
            "addr",
            "replace",
            &vip,
            "dev",
            "lo",
        ])
    }

    /// Removes it again (before handing the namespace to postern-helper).
    pub fn remove_client_vip(&self) -> Result<()> {
        let vip = format!("{}/32", config::CLIENT_VIP);
        self.ip(&[
            "-n",
            &self.ns(Role::Client),
            "addr",
            "del",
            &vip,
            "dev",
            "lo",
        ])
    }

    /// Writes `tunnel`'s Postern profile (mode 0600: it holds the PSK).
    pub fn write_profile(&self, tunnel: &Tunnel) -> Result<PathBuf> {
        let path = self.dir.join(format!("{}.toml", tunnel.name));
        let _ = fs::remove_file(&path);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(tunnel.postern_profile().as_bytes())?;
        Ok(path)
    }

    /// `postern-helper up PROFILE` in the client namespace, output captured.
    pub fn start_postern(&self, tunnel: &Tunnel) -> Result<Client> {
        let profile = self.write_profile(tunnel)?;
        let c = Client::start(self, &profile)?;
        self.adopt(&c.proc);
        Ok(c)
    }

    /// `postern-helper up` on the profile text `text` (written 0600 as NAME.toml: it
    /// may hold the PSK), for scenarios that change a generated profile.
    pub fn start_postern_text(&self, name: &str, text: &str) -> Result<Client> {
        let path = self.dir.join(format!("{name}.toml"));
        let _ = fs::remove_file(&path);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        let c = Client::start(self, &path)?;
        self.adopt(&c.proc);
        Ok(c)
    }

    /// One ping from `role` (source `src` when given) to `dst`; fails unless answered.
    pub fn ping(&self, role: Role, src: Option<&str>, dst: &str) -> Result<()> {
        let mut args = vec!["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2"];
        if let Some(s) = src {
            args.extend(["-I", s]);
        }
        args.push(dst);
        self.exec(role, &args)
            .map(|_| ())
            .map_err(|e| LabError(format!("ping {dst} from {} failed: {e}", role.as_str())))
    }

    /// Like [`Lab::ping`], tried again until `within` has passed: for a tunnel the
    /// gateway already counts as established while the client is still installing its
    /// side (its routes come a few milliseconds after the last quick mode message).
    pub fn ping_within(
        &self,
        role: Role,
        src: Option<&str>,
        dst: &str,
        within: std::time::Duration,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match self.ping(role, src, dst) {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }

    /// Log tails of every charon and the output of every process: for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut s = format!(
            "==== lab {} (files in {}) ====\n",
            self.name,
            self.dir.display()
        );
        for (label, log) in self
            .charon_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            s.push_str(&format!(
                "---- {label}: last lines of {} ----\n",
                log.display()
            ));
            s.push_str(&crate::process::file_tail(log, 40));
        }
        for p in self.procs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.push_str(&format!(
                "---- {} (pid {}) output ----\n",
                p.name(),
                p.pid()
            ));
            s.push_str(&p.tail(30));
        }
        s
    }

    /// Keep the lab directory after a successful run too.
    pub fn keep_dir(&mut self) {
        self.keep_dir = true;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let procs: Vec<Arc<Proc>> = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        // Clients first (they may still want to send DELETE), then the charons.
        for p in procs.iter().rev() {
            p.stop(Duration::from_secs(5));
        }
        for ns in self.namespaces.drain(..).rev() {
            delete_netns(&ns);
        }
        let _ = fs::remove_dir_all(netns_etc(&self.ns(Role::Client)));
        if let Some(dest) = std::env::var_os(LOGS_ENV)
            && let Err(e) = keep_logs(&self.dir, &PathBuf::from(dest).join(&self.name))
        {
            eprintln!("postern-lab: the logs of {} not kept: {e}", self.name);
        }
        if std::thread::panicking() || self.keep_dir {
            eprintln!(
                "postern-lab: files of {} kept in {}",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
