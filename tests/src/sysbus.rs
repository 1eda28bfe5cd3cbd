//! A private system bus for the D-Bus scenarios and the footprint benchmark:
//! dbus-daemon with Postern's own packaging/org.postern.Helper1.conf (and polkit's bus
//! policy), Debian's polkitd on it with Postern's packaging/org.postern.helper1.policy,
//! and `postern-helper daemon` in the lab's client namespace.
//!
//! polkitd runs in a mount namespace of its own where the lab's copies of the polkit
//! actions and rules directories (the host's files plus Postern's actions and the
//! scenario's rules) are bind-mounted over /usr/share/polkit-1/actions and
//! /usr/share/polkit-1/rules.d: the host's polkit setup is never written. The test
//! users are the one host change, undone by [`HostChanges`] on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::lab::{Lab, Role};
use crate::postern::helper_path;
use crate::process::Proc;
use crate::{LabError, Result};

const ACTIONS_DIR: &str = "/usr/share/polkit-1/actions";
const RULES_DIR: &str = "/usr/share/polkit-1/rules.d";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Undoes the host changes of a scenario (test users) on drop.
#[derive(Default)]
pub struct HostChanges {
    users: Vec<String>,
}

impl Drop for HostChanges {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).status();
        }
    }
}

pub fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl HostChanges {
    /// A system user without home or shell (created unless it exists).
    pub fn ensure_user(&mut self, user: &str) -> Result<u32> {
        if let Some(u) = uid_of(user) {
            return Ok(u);
        }
        let st = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ])
            .status()?;
        if !st.success() {
            return Err(LabError(format!("useradd {user} failed")));
        }
        self.users.push(user.to_string());
        uid_of(user).ok_or_else(|| LabError(format!("no uid for {user}")))
    }
}

/// The lab's polkit directories: copies of the host's actions and rules plus Postern's
/// actions and `rules` (when not empty), readable by polkitd's own user.
fn polkit_dirs(dir: &Path, rules: &str) -> Result<(PathBuf, PathBuf)> {
    let actions = dir.join("polkit-actions");
    let rules_dir = dir.join("polkit-rules");
    for (from, to) in [(ACTIONS_DIR, &actions), (RULES_DIR, &rules_dir)] {
        fs::create_dir_all(to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
        if let Ok(entries) = fs::read_dir(from) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    fs::copy(e.path(), to.join(e.file_name()))?;
                }
            }
        }
    }
    let mut files = vec![(
        actions.join("org.postern.helper1.policy"),
        fs::read(repo().join("packaging/org.postern.helper1.policy"))?,
    )];
    if !rules.is_empty() {
        files.push((
            rules_dir.join("49-postern-lab.rules"),
            rules.as_bytes().to_vec(),
        ));
    }
    for (path, contents) in files {
        fs::write(&path, contents)?;
    }
    for d in [&actions, &rules_dir] {
        for e in fs::read_dir(d)?.flatten() {
            fs::set_permissions(e.path(), fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok((actions, rules_dir))
}

/// Waits until `name` is on the bus at `addr` (bounded).
pub fn wait_name(addr: &str, name: &str, p: &Proc) -> Result<()> {
    for _ in 0..100 {
        let out = Command::new("busctl")
            .args(["--address", addr, "--timeout=2", "list", "--no-pager"])
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains(name) {
            return Ok(());
        }
        if let Some(st) = p.try_status() {
            return Err(LabError(format!(
                "{name}: the process exited ({st}): {}",
                p.tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError(format!(
        "{name} did not appear on {addr}: {}",
        p.tail(20)
    )))
}

/// The private system bus of one lab, with polkitd and the helper daemon.
pub struct SystemBus {
    /// `unix:path=...`, for DBUS_SYSTEM_BUS_ADDRESS.
    pub addr: String,
    pub dir: PathBuf,
    /// A world-readable directory with a copy of the `postern` CLI: the test users run
    /// it from here, since the build's target directory may sit under a path only root
    /// can enter (a CI clone in /root).
    pub bin: PathBuf,
    pub helper: Arc<Proc>,
    /// How the helper was started: [`SystemBus::restart_helper`] starts it the same way.
    helper_env: Vec<(String, String)>,
    helper_args: Vec<String>,
}

impl SystemBus {
    /// Starts dbus-daemon, polkitd (with Postern's actions and `rules`, JavaScript for a
    /// rules file, in its own mount namespace) and `postern-helper daemon` (client
    /// namespace).
    pub fn start(lab: &Lab, rules: &str) -> Result<SystemBus> {
        Self::start_with(lab, rules, &[])
    }

    /// [`SystemBus::start`] with extra environment for the helper (lab hooks such as
    /// `POSTERN_TEST_HOLD_DATAPATH`).
    pub fn start_with(lab: &Lab, rules: &str, helper_env: &[(&str, &str)]) -> Result<SystemBus> {
        Self::start_helper_args(lab, rules, helper_env, &[])
    }

    /// [`SystemBus::start_with`], the helper started as `postern-helper daemon ARGS`
    /// (e.g. the unit's `--idle-exit 300`).
    pub fn start_helper_args(
        lab: &Lab,
        rules: &str,
        helper_env: &[(&str, &str)],
        helper_args: &[&str],
    ) -> Result<SystemBus> {
        let dir = lab.dir.join("bus");
        fs::create_dir_all(&dir)?;
        // Unprivileged test users enter this tree, whatever the umask was.
        for d in [crate::lab::lab_base_dir(), lab.dir.clone(), dir.clone()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        }
        let bin = dir.join("bin");
        fs::create_dir_all(&bin)?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        // A hard link where possible: a copy still open for writing while another
        // test thread forks makes its exec fail with "Text file busy".
        crate::desktop::install_bin(
            &helper_path()?.with_file_name("postern"),
            &bin.join("postern"),
        )?;
        let sock = dir.join("system_bus_socket");
        let conf = dir.join("system.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>{ours}</include>
  <include ignore_missing="yes">/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf</include>
</busconfig>
"#,
                sock = sock.display(),
                ours = repo().join("packaging/org.postern.Helper1.conf").display()
            ),
        )?;
        let mut c = Command::new("dbus-daemon");
        c.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"]);
        let bus = Proc::spawn("dbus-daemon", c, Some(&dir.join("dbus.out")))?;
        lab.adopt(&bus);
        let addr = format!("unix:path={}", sock.display());
        for _ in 0..50 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (actions, rules_dir) = polkit_dirs(&dir, rules)?;
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" \"$3\" && mount --bind \"$2\" \"$4\" \
                 && exec /usr/lib/polkit-1/polkitd --no-debug",
            )
            .arg("sh")
            .args([&actions, &rules_dir])
            .args([ACTIONS_DIR, RULES_DIR])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &addr);
        let polkitd = Proc::spawn("polkitd", c, Some(&dir.join("polkitd.out")))?;
        lab.adopt(&polkitd);
        wait_name(&addr, "org.freedesktop.PolicyKit1", &polkitd)?;
        let helper_env: Vec<(String, String)> = helper_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let helper_args: Vec<String> = helper_args.iter().map(|a| a.to_string()).collect();
        let log = dir.join("helper.out");
        let helper = start_helper(lab, &addr, &log, &helper_env, &helper_args)?;
        Ok(SystemBus {
            addr,
            dir,
            bin,
            helper,
            helper_env,
            helper_args,
        })
    }
}

/// A bare private system bus (dbus-daemon only, every name ownable, every call
/// allowed): for stand-ins of system services such as `fake-logind` next to
/// `postern-helper up`. Returns the address for DBUS_SYSTEM_BUS_ADDRESS.
pub fn bare_bus(lab: &Lab) -> Result<String> {
    let dir = lab.dir.join("bare-bus");
    fs::create_dir_all(&dir)?;
    let sock = dir.join("system_bus_socket");
    let conf = dir.join("system.conf");
    fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"#,
            sock = sock.display()
        ),
    )?;
    let mut c = Command::new("dbus-daemon");
    c.arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile"]);
    let bus = Proc::spawn("dbus-daemon", c, Some(&dir.join("dbus.out")))?;
    lab.adopt(&bus);
    for _ in 0..100 {
        if sock.exists() {
            return Ok(format!("unix:path={}", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError(
        "the bare system bus did not start within 2 s".into(),
    ))
}

/// `postern-helper daemon` in the client namespace on the bus at `addr`, output in `log`;
/// returns once it owns its name.
fn start_helper(
    lab: &Lab,
    addr: &str,
    log: &Path,
    env: &[(String, String)],
    args: &[String],
) -> Result<Arc<Proc>> {
    let mut c = lab.command(Role::Client, &helper_path()?);
    c.arg("daemon")
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", addr);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let helper = Proc::spawn("postern-helper daemon", c, Some(log))?;
    lab.adopt(&helper);
    wait_name(addr, "org.postern.Helper1", &helper)?;
    Ok(helper)
}

impl SystemBus {
    /// Starts the helper daemon again (after the previous one was killed), with the
    /// environment and arguments it was first started with: output in `helper-N.out`.
    /// The old process must be gone (its name released).
    pub fn restart_helper(&mut self, lab: &Lab, n: u32) -> Result<()> {
        if self.helper.try_status().is_none() {
            return Err(LabError("the previous helper daemon still runs".into()));
        }
        // The bus releases the dead helper's name when it notices the closed socket.
        for _ in 0..50 {
            let out = Command::new("busctl")
                .args(["--address", &self.addr, "--timeout=2", "list", "--no-pager"])
                .output()?;
            if !String::from_utf8_lossy(&out.stdout).contains("org.postern.Helper1") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.helper = start_helper(
            lab,
            &self.addr,
            &self.dir.join(format!("helper-{n}.out")),
            &self.helper_env,
            &self.helper_args,
        )?;
        Ok(())
    }
}
