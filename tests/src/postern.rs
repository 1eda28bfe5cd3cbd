//! `postern-helper up PROFILE.toml` (DESIGN.md contract 2) in the client namespace.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::Tunnel;
use crate::config::{CLIENT_ADDR, CLIENT_VIP, GW_ADDR, LAN_NET};
use crate::lab::{Lab, Role};
use crate::process::{Line, Proc, Stream};
use crate::{LabError, Result};

/// Exit codes of `postern-helper up`.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const AUTH_FAILED: i32 = 3;
    pub const NO_PROPOSAL: i32 = 4;
    pub const NOT_RESPONDING: i32 = 5;
}

/// The binary under test: `$POSTERN_HELPER`, else `<workspace>/target/debug/postern-helper`
/// (honouring `CARGO_TARGET_DIR`). Fails clearly when it is missing.
pub fn helper_path() -> Result<PathBuf> {
    helper_path_in("debug")
}

/// Like [`helper_path`], for a cargo profile directory (`"debug"`, `"release"`).
pub fn helper_path_in(cargo_profile: &str) -> Result<PathBuf> {
    let path = match std::env::var_os("POSTERN_HELPER") {
        Some(p) => PathBuf::from(p),
        None => {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            target.join(cargo_profile).join("postern-helper")
        }
    };
    if !path.is_file() {
        lab_bail!(
            "postern-helper not found at {} — build it first (`cargo build {}-p postern-helper`, \
             scripts/test.sh does) or set POSTERN_HELPER",
            path.display(),
            if cargo_profile == "release" {
                "--release "
            } else {
                ""
            }
        );
    }
    Ok(path)
}

/// `postern-helper cleanup` in the client namespace; returns its stdout.
pub fn cleanup(lab: &Lab) -> Result<String> {
    let helper = helper_path()?;
    let helper = helper.to_string_lossy();
    lab.exec(Role::Client, &[helper.as_ref(), "cleanup"])
}

/// A running `postern-helper up`.
pub struct Client {
    pub proc: Arc<Proc>,
    pub profile: PathBuf,
}

impl Client {
    pub fn start(lab: &Lab, profile: &Path) -> Result<Client> {
        Self::start_with(lab, &helper_path()?, profile)
    }

    pub fn start_with(lab: &Lab, helper: &Path, profile: &Path) -> Result<Client> {
        Self::start_with_env(lab, helper, profile, &[])
    }

    /// Like [`Client::start_with`], with extra environment variables (e.g.
    /// `DBUS_SYSTEM_BUS_ADDRESS` for a lab bus).
    pub fn start_with_env(
        lab: &Lab,
        helper: &Path,
        profile: &Path,
        env: &[(&str, &str)],
    ) -> Result<Client> {
        let mut cmd = lab.command(Role::Client, helper);
        cmd.arg("up").arg(profile);
        cmd.envs(env.iter().copied());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let proc = Proc::spawn("postern-helper", cmd, Some(&lab.dir.join("postern.out")))?;
        Ok(Client {
            proc,
            profile: profile.to_path_buf(),
        })
    }

    /// Waits for a stdout line containing `pattern`.
    pub fn wait_line(&self, pattern: &str, timeout: Duration) -> Result<Line> {
        self.proc.wait_line(Some(Stream::Stdout), pattern, timeout)
    }

    /// Waits for the `connected` line (20 s).
    pub fn wait_connected(&self) -> Result<Line> {
        self.wait_line("connected", Duration::from_secs(20))
    }

    pub fn sigterm(&self) -> Result<()> {
        self.proc.sigterm()
    }

    /// SIGKILL: no teardown at all (the crash case).
    pub fn sigkill(&self) -> Result<()> {
        self.proc.signal("KILL")
    }

    pub fn exit_status(&self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.exit_status(timeout)
    }

    /// Waits for the exit and returns the exit code (a signal death is an error).
    pub fn exit_code(&self, timeout: Duration) -> Result<i32> {
        let st = self.exit_status(timeout)?;
        st.code().ok_or_else(|| {
            LabError(format!(
                "postern-helper was killed by a signal ({st}); output:\n{}",
                self.proc.tail(30)
            ))
        })
    }

    pub fn stdout(&self) -> Vec<String> {
        self.proc.lines_of(Stream::Stdout)
    }

    pub fn stderr(&self) -> Vec<String> {
        self.proc.lines_of(Stream::Stderr)
    }

    /// The `error: ...` line on stderr, if any.
    pub fn error_line(&self) -> Option<String> {
        self.stderr().into_iter().find(|l| l.starts_with("error: "))
    }
}

/// `postern-helper respond` in the gateway namespace (instead of strongSwan), the mirror
/// of the client's profile `t`: the client's inner address behind it, the lan in front,
/// 10.77.0.254 on its TUN device. Postern at both ends.
pub fn start_responder(lab: &Lab, t: &Tunnel) -> Result<Arc<Proc>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = format!(
        "name = \"responder\"\ngateway = \"{CLIENT_ADDR}\"\n\n[auth]\nmethod = \"psk\"\npsk = \"{psk}\"\nlocal_id = \"address:{GW_ADDR}\"\nremote_id = \"address:{CLIENT_ADDR}\"\n\n[phase1]\nproposals = [\"aes128-sha256-modp2048\"]\n\n[phase2]\nproposals = [{esp}]\nlocal_networks = [\"{LAN_NET}\"]\nremote_networks = [\"{CLIENT_VIP}/32\"]\npfs = \"none\"\nmode = \"tunnel\"\n\n[network]\nmode_config = \"off\"\nvirtual_ip = \"10.77.0.254\"\n",
        psk = t.psk,
        esp = t
            .client_esp
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let path = lab.dir.join("responder.toml");
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    let mut c = lab.command(Role::Gw, &helper_path()?);
    c.arg("respond").arg(&path);
    let p = Proc::spawn(
        "postern-helper respond",
        c,
        Some(&lab.dir.join("responder.out")),
    )?;
    lab.adopt(&p);
    p.wait_line(None, "responding to", Duration::from_secs(10))?;
    Ok(p)
}
