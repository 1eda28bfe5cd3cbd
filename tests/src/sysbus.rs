//! A private system bus for the D-Bus scenarios and the footprint benchmark:
//! dbus-daemon with Postern's own packaging/org.postern.Helper1.conf (and polkit's bus
//! policy), Debian's polkitd on it with Postern's packaging/org.postern.helper1.policy,
//! and `postern-helper daemon` in the lab's client namespace. Host changes (test users,
//! polkit files) are undone by [`HostChanges`] on drop.

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

pub const ACTIONS: &str = "/usr/share/polkit-1/actions/org.postern.helper1.policy";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Undoes the host changes of a scenario (users, polkit files) on drop.
#[derive(Default)]
pub struct HostChanges {
    users: Vec<String>,
    files: Vec<PathBuf>,
}

impl Drop for HostChanges {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
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

    /// Writes `contents` at `path` unless it is already there (installed by a package).
    pub fn install(&mut self, path: &str, contents: &[u8]) -> Result<()> {
        let p = Path::new(path);
        if p.exists() && fs::read(p)? == contents {
            return Ok(());
        }
        if let Some(d) = p.parent() {
            fs::create_dir_all(d)?;
        }
        fs::write(p, contents)?;
        self.files.push(p.to_path_buf());
        // polkitd reads them as its own user, whatever the umask was.
        fs::set_permissions(p, fs::Permissions::from_mode(0o644))?;
        Ok(())
    }

    /// Postern's polkit actions, as packaging/install.sh installs them.
    pub fn install_polkit_actions(&mut self) -> Result<()> {
        let a = fs::read(repo().join("packaging/org.postern.helper1.policy"))?;
        self.install(ACTIONS, &a)
    }
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
}

impl SystemBus {
    /// Starts dbus-daemon, polkitd and `postern-helper daemon` (client namespace).
    /// Postern's polkit actions must be installed first.
    pub fn start(lab: &Lab) -> Result<SystemBus> {
        let dir = lab.dir.join("bus");
        fs::create_dir_all(&dir)?;
        // Unprivileged test users enter this tree, whatever the umask was.
        for d in [crate::lab::lab_base_dir(), lab.dir.clone(), dir.clone()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        }
        let bin = dir.join("bin");
        fs::create_dir_all(&bin)?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        fs::copy(
            helper_path()?.with_file_name("postern"),
            bin.join("postern"),
        )?;
        fs::set_permissions(bin.join("postern"), fs::Permissions::from_mode(0o755))?;
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
        let mut c = Command::new("/usr/lib/polkit-1/polkitd");
        c.arg("--no-debug").env("DBUS_SYSTEM_BUS_ADDRESS", &addr);
        let polkitd = Proc::spawn("polkitd", c, Some(&dir.join("polkitd.out")))?;
        lab.adopt(&polkitd);
        wait_name(&addr, "org.freedesktop.PolicyKit1", &polkitd)?;
        let mut c = lab.command(Role::Client, &helper_path()?);
        c.arg("daemon").env("DBUS_SYSTEM_BUS_ADDRESS", &addr);
        let helper = Proc::spawn("postern-helper daemon", c, Some(&dir.join("helper.out")))?;
        lab.adopt(&helper);
        wait_name(&addr, "org.postern.Helper1", &helper)?;
        Ok(SystemBus {
            addr,
            dir,
            bin,
            helper,
        })
    }
}
