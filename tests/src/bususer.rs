//! An unprivileged test user on the lab's private system bus (`crate::sysbus`): the
//! `postern` CLI and `busctl` run as that user (`setpriv`), bounded by `timeout`.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::sysbus::{HostChanges, SystemBus};
use crate::{Lab, Result};

/// A polkit rules file letting `users` connect and manage their own tunnels (as an admin
/// would write for users without a graphical session).
pub fn allow_rules(users: &[&str]) -> String {
    let cond: Vec<String> = users
        .iter()
        .map(|u| format!("subject.user == \"{u}\""))
        .collect();
    format!(
        "polkit.addRule(function(action, subject) {{\n  if ((action.id == \"org.postern.helper1.connect\" || action.id == \"org.postern.helper1.manage-own\") && ({})) {{\n    return polkit.Result.YES;\n  }}\n}});\n",
        cond.join(" || ")
    )
}

/// A profile's text without its `psk = ...` line (the CLI refuses secrets in profiles).
pub fn without_psk(profile: &str) -> String {
    profile
        .lines()
        .filter(|l| !l.starts_with("psk ="))
        .map(|l| format!("{l}\n"))
        .collect()
}

pub struct BusUser {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
    pub addr: String,
    pub cli: PathBuf,
}

impl BusUser {
    /// Creates (or reuses) system user `name` with a config directory in the lab.
    pub fn new(lab: &Lab, host: &mut HostChanges, sys: &SystemBus, name: &str) -> Result<BusUser> {
        let uid = host.ensure_user(name)?;
        let home = lab.dir.join("bus").join(format!("home-{name}"));
        fs::create_dir_all(&home)?;
        std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
        Ok(BusUser {
            name: name.to_string(),
            uid,
            home,
            addr: sys.addr.clone(),
            cli: sys.bin.join("postern"),
        })
    }

    fn setpriv(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--clear-groups", "--"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.addr)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// `postern ARGS` as this user (60 s at most), `stdin` written to it.
    pub fn postern_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.setpriv();
        c.args(["timeout", "60"]).arg(&self.cli).args(args);
        c
    }

    pub fn postern(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        run_with_stdin(self.postern_cmd(args), stdin)
    }

    /// `busctl --address BUS --timeout=10 ARGS` as this user.
    pub fn busctl(&self, args: &[&str]) -> Result<Output> {
        let mut c = self.setpriv();
        c.args(["busctl", "--address", &self.addr, "--timeout=10"])
            .args(args)
            .stdin(Stdio::null());
        Ok(c.output()?)
    }
}

/// Runs `cmd` with `stdin` (or nothing) on its standard input; waits for it.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn()?;
    if let Some(s) = stdin {
        use std::io::Write as _;
        if let Some(mut w) = child.stdin.take() {
            w.write_all(s.as_bytes())?;
        }
    }
    Ok(child.wait_with_output()?)
}

/// Exit code, stdout and stderr of `o`, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
