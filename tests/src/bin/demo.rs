//! The demo office: client/gw/lan namespaces, a strongSwan gateway (main mode PSK), a
//! Postern profile, and `postern-helper up` in the client namespace in the foreground.
//! Ctrl-C (or SIGTERM) is passed on to postern-helper once; when it has exited the
//! namespaces and the gateway are removed.
//!
//! `demo --reference` does the same with strongSwan's charon as the client (works without
//! postern-helper), pinging the office LAN through the tunnel.
//!
//! `demo --gui` (scripts/demo.sh picks it when run with sudo from a desktop session):
//! the gateway also asks for an XAuth login and hands out an address (Mode Config);
//! `postern-helper daemon` serves a private system bus (the project's bus policy, polkitd
//! with its actions and a rule letting the invoking user connect) in the client
//! namespace for the demo's length; a `demo-office` profile (no secrets) goes into the
//! invoking user's profile directory; and `postern-gui` opens on their display, as
//! them, pointed at that bus. The user clicks Connect and answers the prompts; the demo
//! pings the office host through the tunnel once it is up. Ctrl-C, or quitting the app,
//! removes everything: the app, the helper, the gateway, the namespaces, the profile and
//! any secret the app was told to remember.

use std::process::{Command, ExitCode};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use postern_lab::config::{CHILD, CLIENT_VIP, CONN, LAN_HOST};
use postern_lab::postern::helper_path_in;
use postern_lab::process::Proc;
use postern_lab::sysbus::SystemBus;
use postern_lab::{Lab, LabError, Result, Role, Tunnel, signals};

/// The demo stops by itself after this long (every wait in the lab is bounded).
const MAX_RUN: Duration = Duration::from_secs(12 * 3600);

/// The demo profile's name in the user's profile directory, and its XAuth login.
const GUI_PROFILE: &str = "demo-office";
const XAUTH_USER: &str = "alice";
const XAUTH_PASSWORD: &str = "demo-password";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Postern,
    Reference,
    Gui,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.iter().any(|a| a == "--reference") {
        Mode::Reference
    } else if args.iter().any(|a| a == "--gui") {
        Mode::Gui
    } else {
        Mode::Postern
    };
    match run(mode) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mode: Mode) -> Result<ExitCode> {
    let sig = signals::install()?;
    // Found before anything is built: without a desktop session there is no app demo.
    let session = match mode {
        Mode::Gui => Some(Session::of_sudo_user()?),
        _ => None,
    };
    let tunnel = match mode {
        Mode::Gui => Tunnel::main_psk(GUI_PROFILE)
            .xauth(XAUTH_USER, XAUTH_PASSWORD, XAUTH_PASSWORD)
            .mode_config(true),
        _ => Tunnel::main_psk("office"),
    };
    let lab = Lab::new("demo")?;
    println!("demo: office network up:");
    println!("  {}   192.0.2.2   (you: the laptop)", lab.ns(Role::Client));
    println!(
        "  {}       192.0.2.1 | 10.77.0.1   (strongSwan gateway)",
        lab.ns(Role::Gw)
    );
    println!(
        "  {}      10.77.0.10  (a server in the office)",
        lab.ns(Role::Lan)
    );
    let gw = lab.start_gateway(&tunnel)?;
    if mode == Mode::Gui {
        println!(
            "demo: strongSwan gateway running (main mode, PSK, XAuth user {XAUTH_USER}, Mode Config addresses from 10.200.1.0/28)"
        );
    } else {
        println!("demo: strongSwan gateway running (main mode, PSK, aes128-sha256-modp2048)");
    }
    println!(
        "demo: gateway SAs: STRONGSWAN_CONF={0}/strongswan.conf swanctl --list-sas --uri unix://{0}/charon.vici",
        gw.dir.display()
    );
    let code = match (mode, session) {
        (Mode::Reference, _) => run_reference(&lab, &tunnel, &sig)?,
        (Mode::Gui, Some(session)) => run_gui(&lab, &tunnel, &session, &sig)?,
        _ => run_postern(&lab, &tunnel, &sig)?,
    };
    println!("demo: tearing down (gateway, namespaces)");
    drop(gw);
    drop(lab);
    println!("demo: done");
    Ok(code)
}

fn run_postern(lab: &Lab, tunnel: &Tunnel, sig: &Receiver<&'static str>) -> Result<ExitCode> {
    let helper = match std::env::var_os("POSTERN_HELPER") {
        Some(_) => postern_lab::postern::helper_path()?,
        None => helper_path_in("release")?,
    };
    let profile = lab.write_profile(tunnel)?;
    println!(
        "demo: profile {} (mode 0600, holds the PSK):",
        profile.display()
    );
    for line in tunnel.postern_profile().lines() {
        if line.starts_with("psk") {
            println!("  psk = \"********\"");
        } else {
            println!("  {line}");
        }
    }
    println!(
        "demo: try in another terminal: ip netns exec {} ping {LAN_HOST}",
        lab.ns(Role::Client)
    );
    println!("demo: starting postern-helper up (Ctrl-C disconnects)\n");
    let mut cmd = lab.command(Role::Client, &helper);
    cmd.arg("up").arg(&profile);
    // Its own process group: the demo passes on exactly one signal (a second one could
    // cut its teardown short).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError(format!("cannot start {}: {e}", helper.display())))?;
    let start = Instant::now();
    let mut forwarded = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Ok(name) = sig.recv_timeout(Duration::from_millis(100))
            && !forwarded
        {
            {
                println!("\ndemo: {name} received, asking postern-helper to disconnect");
                let _ = Command::new("kill")
                    .arg(format!("-{name}"))
                    .arg(child.id().to_string())
                    .status();
                forwarded = true;
            }
        }
        if start.elapsed() > MAX_RUN {
            let _ = child.kill();
            break child.wait()?;
        }
    };
    println!("\ndemo: postern-helper exited: {status}");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_reference(lab: &Lab, tunnel: &Tunnel, sig: &Receiver<&'static str>) -> Result<ExitCode> {
    println!("demo: reference mode: strongSwan's charon as the client");
    let client = lab.start_charon_client(tunnel)?;
    let took = client.initiate(CHILD, 20)?;
    println!(
        "demo: connected in {} ms (swanctl --initiate)",
        took.as_millis()
    );
    println!("{}", client.list_sas_text());
    lab.ping(Role::Client, Some(CLIENT_VIP), LAN_HOST)?;
    println!("demo: ping {LAN_HOST} through the tunnel: ok. Ctrl-C disconnects.");
    let got = sig.recv_timeout(MAX_RUN);
    if let Ok(name) = got {
        println!("\ndemo: {name} received, disconnecting");
    }
    client.terminate(CONN)?;
    Ok(ExitCode::SUCCESS)
}

/// The invoking user's desktop session (sudo keeps DISPLAY and XAUTHORITY; the rest is
/// found under /run/user/UID).
struct Session {
    user: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Session {
    fn of_sudo_user() -> Result<Session> {
        let user = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root")
            .ok_or_else(|| {
                LabError("--gui: run it with sudo from your desktop session (no SUDO_USER)".into())
            })?;
        let id = |flag: &str| -> Result<u32> {
            let out = Command::new("id").args([flag, &user]).output()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| LabError(format!("id {flag} {user}: no such user")))
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        let passwd = Command::new("getent").args(["passwd", &user]).output()?;
        let home = String::from_utf8_lossy(&passwd.stdout)
            .trim()
            .split(':')
            .nth(5)
            .map(PathBuf::from)
            .ok_or_else(|| LabError(format!("getent passwd {user}: no home")))?;
        let runtime = PathBuf::from(format!("/run/user/{uid}"));
        let mut env: Vec<(&'static str, String)> = vec![
            ("HOME", home.display().to_string()),
            ("USER", user.clone()),
            ("LOGNAME", user.clone()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            (
                "LANG",
                std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
            ),
        ];
        if runtime.is_dir() {
            env.push(("XDG_RUNTIME_DIR", runtime.display().to_string()));
        }
        let wayland = std::env::var("WAYLAND_DISPLAY")
            .ok()
            .filter(|w| !w.is_empty())
            .or_else(|| {
                runtime
                    .join("wayland-0")
                    .exists()
                    .then(|| "wayland-0".into())
            });
        let display = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
        if wayland.is_none() && display.is_none() {
            lab_bail(format!(
                "--gui: no display for {user} (neither DISPLAY nor a Wayland socket in {})",
                runtime.display()
            ))?;
        }
        if let Some(w) = wayland {
            env.push(("WAYLAND_DISPLAY", w));
        }
        if let Some(d) = display {
            env.push(("DISPLAY", d));
        }
        if let Ok(x) = std::env::var("XAUTHORITY") {
            env.push(("XAUTHORITY", x));
        }
        let session_bus = std::env::var("DBUS_SESSION_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .or_else(|| {
                let sock = runtime.join("bus");
                sock.exists()
                    .then(|| format!("unix:path={}", sock.display()))
            });
        if let Some(a) = session_bus {
            env.push(("DBUS_SESSION_BUS_ADDRESS", a));
        }
        Ok(Session {
            user,
            uid,
            gid,
            home,
            env,
        })
    }

    /// `program` as the user, with the session's environment and the demo's system bus.
    fn command(&self, program: &Path, system_bus: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--"])
            .arg(program)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("DBUS_SYSTEM_BUS_ADDRESS", system_bus);
        c
    }
}

fn lab_bail(msg: String) -> Result<()> {
    Err(LabError(msg))
}

/// The profile file the demo put in the user's directory, removed (or the user's own
/// file of that name put back) on drop.
struct UserProfile {
    path: PathBuf,
    backup: Option<PathBuf>,
}

impl UserProfile {
    fn write(session: &Session, text: &str) -> Result<UserProfile> {
        let dir = session.home.join(".config/postern/profiles");
        let path = dir.join(format!("{GUI_PROFILE}.toml"));
        let backup = if path.exists() {
            let b = path.with_extension("toml.before-demo");
            std::fs::rename(&path, &b)?;
            println!(
                "demo: your own {} is kept as {} meanwhile",
                path.display(),
                b.display()
            );
            Some(b)
        } else {
            None
        };
        // As the user, so the directories and the file are theirs.
        let mut c = session.command(Path::new("/bin/sh"), "");
        c.args(["-c", "umask 077 && mkdir -p \"$1\" && cat > \"$2\"", "sh"])
            .arg(&dir)
            .arg(&path)
            .stdin(std::process::Stdio::piped());
        let mut child = c.spawn()?;
        if let Some(mut w) = child.stdin.take() {
            std::io::Write::write_all(&mut w, text.as_bytes())?;
        }
        let st = child.wait()?;
        if !st.success() {
            return Err(LabError(format!(
                "cannot write {} as {}",
                path.display(),
                session.user
            )));
        }
        Ok(UserProfile { path, backup })
    }
}

impl Drop for UserProfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(b) = &self.backup {
            let _ = std::fs::rename(b, &self.path);
        }
        println!("demo: removed the demo profile {}", self.path.display());
    }
}

/// The tunnel's state as the helper shows it to root: the newest connection's State.
fn helper_state(addr: &str) -> Option<String> {
    let out = Command::new("busctl")
        .args(["--address", addr, "--timeout=2", "call"])
        .args([
            "org.postern.Helper1",
            "/org/postern/Helper1",
            "org.postern.Helper1",
            "List",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text.split_whitespace().rfind(|w| w.starts_with("\"/"))?;
    let out = Command::new("busctl")
        .args(["--address", addr, "--timeout=2", "get-property"])
        .args(["org.postern.Helper1", path.trim_matches('"')])
        .args(["org.postern.Helper1.Connection", "State"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(|s| s.trim_matches('"').to_string())
}

fn run_gui(
    lab: &Lab,
    tunnel: &Tunnel,
    session: &Session,
    sig: &Receiver<&'static str>,
) -> Result<ExitCode> {
    let rule = format!(
        "polkit.addRule(function(action, subject) {{\n  if (action.id.indexOf(\"org.postern.helper1.\") == 0 && action.id != \"org.postern.helper1.manage-any\" && subject.user == \"{}\") {{\n    return polkit.Result.YES;\n  }}\n}});\n",
        session.user
    );
    println!(
        "demo: starting a private system bus with polkitd and postern-helper daemon (client namespace)"
    );
    let sys = SystemBus::start(lab, &rule)?;
    println!(
        "demo: postern-helper serves org.postern.Helper1 on {}",
        sys.addr
    );
    let gui_built = postern_lab::postern::helper_path()?.with_file_name("postern-gui");
    let gui = sys.bin.join("postern-gui");
    postern_lab::desktop::install_bin(&gui_built, &gui)?;
    // The profile as a user keeps it: no PSK, no XAuth password (the app asks).
    let profile: String = tunnel
        .postern_profile()
        .lines()
        .filter(|l| !l.starts_with("psk =") && !l.starts_with("password ="))
        .map(|l| format!("{l}\n"))
        .collect();
    let written = UserProfile::write(session, &profile)?;
    println!(
        "demo: profile {} written for {}",
        written.path.display(),
        session.user
    );
    println!(
        "demo: opening postern-gui on your display as {}",
        session.user
    );
    let mut c = session.command(&gui, &sys.addr);
    c.arg("--no-tray");
    let app = Proc::spawn("postern-gui", c, Some(&lab.dir.join("postern-gui.out")))?;
    lab.adopt(&app);
    std::thread::sleep(Duration::from_millis(1500));
    if let Some(st) = app.try_status() {
        return Err(LabError(format!(
            "postern-gui exited at once ({st}); is Postern already running on your desktop? Quit it and run the demo again.\n{}",
            app.tail(10)
        )));
    }
    let psk = tunnel.client_secret();
    println!();
    println!(
        "demo: in the Postern window, select \"{GUI_PROFILE}\" and click Connect. When asked:"
    );
    println!("        pre-shared key:  {psk}");
    println!("        XAuth password:  {XAUTH_PASSWORD}   (user {XAUTH_USER})");
    println!(
        "demo: once connected, ping the office host yourself: sudo ip netns exec {} ping {LAN_HOST}",
        lab.ns(Role::Client)
    );
    println!("demo: Ctrl-C here, or quitting the app, removes everything.\n");

    let start = Instant::now();
    let mut shown = 0;
    let mut last_state = String::new();
    let mut pinged = false;
    let reason = loop {
        if let Ok(name) = sig.recv_timeout(Duration::from_millis(700)) {
            break format!("{name} received");
        }
        if let Some(st) = app.try_status() {
            break format!("postern-gui exited ({st})");
        }
        if start.elapsed() > MAX_RUN {
            break "the demo's time is up".into();
        }
        // The helper's own lines, as they come.
        let lines = sys.helper.lines();
        for l in lines.iter().skip(shown) {
            println!("helper: {}", l.text);
        }
        shown = lines.len();
        let state = helper_state(&sys.addr).unwrap_or_default();
        if state != last_state && !state.is_empty() {
            println!("demo: the tunnel is {state}");
            last_state = state.clone();
            if state != "connected" {
                pinged = false;
            }
        }
        if state == "connected" && !pinged {
            pinged = true;
            match lab.ping(Role::Client, None, LAN_HOST) {
                Ok(()) => {
                    println!("demo: ping {LAN_HOST} (the office host) through the tunnel: ok")
                }
                Err(e) => println!("demo: ping {LAN_HOST} through the tunnel failed: {e}"),
            }
        }
    };
    println!("\ndemo: {reason}: closing the app and the helper");
    app.stop(Duration::from_secs(3));
    // A secret the app was told to remember goes too (the user's keyring).
    let cli = sys.bin.join("postern");
    for extra in [&[][..], &["--xauth"][..]] {
        let mut c = session.command(&cli, &sys.addr);
        c.args(["secret", "delete", GUI_PROFILE]).args(extra);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = c.status();
    }
    // SIGTERM: the helper closes the tunnel (DELETE sent) before it exits.
    sys.helper.stop(Duration::from_secs(10));
    drop(written);
    drop(sys);
    Ok(ExitCode::SUCCESS)
}
