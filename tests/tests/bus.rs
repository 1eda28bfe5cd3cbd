//! The D-Bus service for real (issue 5): a private system bus (dbus-daemon with
//! Postern's own packaging/org.postern.Helper1.conf and polkit's bus policy), Debian's
//! polkitd on it with Postern's packaging/org.postern.helper1.policy, `postern-helper
//! daemon` in the client namespace, and the `postern` CLI run as two unprivileged test
//! users: one that polkit allows (a rules file, as an admin would write for a user
//! without a graphical session) and one it does not. The first brings a tunnel to a
//! real strongSwan gateway up and down; the second can neither see nor close it, nor
//! connect. The PSK never shows in the helper's output. Root only.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, Result, Role, Tunnel, lab_ensure, run_scenario};

const USER_A: &str = "postern-lab-a";
const USER_B: &str = "postern-lab-b";
/// Runs `postern ARGS` as `user` (uid/gid), with its own config dir and the lab bus.
fn postern_as(
    user: (u32, &Path),
    sys: &SystemBus,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output> {
    let mut cmd = postern_cmd(user, sys, args);
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

/// The command line of `postern ARGS` as `user` (stdout and stderr piped, stdin null).
fn postern_cmd(user: (u32, &Path), sys: &SystemBus, args: &[&str]) -> Command {
    let (uid, home) = user;
    let (addr, cli) = (&sys.addr, sys.bin.join("postern"));
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg("timeout")
        .arg("60")
        .arg(&cli)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `script` with sh as `user` in a session bus of its own (`dbus-run-session`),
/// with the CLI on PATH and `vars` in the environment.
fn session_as(
    user: (u32, &Path),
    sys: &SystemBus,
    script: &str,
    vars: &[(&str, &str)],
) -> Result<Output> {
    let (uid, home) = user;
    let (addr, cli_dir) = (&sys.addr, &sys.bin);
    let run = home.join("run");
    fs::create_dir_all(&run)?;
    std::os::unix::fs::chown(&run, Some(uid), Some(uid))?;
    fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .args([
            "timeout",
            "90",
            "dbus-run-session",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", cli_dir.display()))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_RUNTIME_DIR", &run)
        .env("DBUS_SYSTEM_BUS_ADDRESS", addr)
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    Ok(cmd.output()?)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_through_the_system_bus_and_polkit() {
    let t = Tunnel::main_psk("office");
    run_scenario("bus", |lab: &Lab| {
        let mut host = HostChanges::default();
        let uid_a = host.ensure_user(USER_A)?;
        let uid_b = host.ensure_user(USER_B)?;
        // An admin's rule for a user without a graphical session: A may connect and
        // manage its own tunnels; B falls to the defaults (auth_admin: no agent, denied).
        let rules = format!(
            "polkit.addRule(function(action, subject) {{\n  if ((action.id == \"org.postern.helper1.connect\" || action.id == \"org.postern.helper1.manage-own\") && subject.user == \"{USER_A}\") {{\n    return polkit.Result.YES;\n  }}\n}});\n"
        );
        let sys = SystemBus::start(lab, &rules)?;
        let (addr, dir, helper) = (sys.addr.clone(), sys.dir.clone(), sys.helper.clone());
        let gw = lab.start_gateway(&t)?;

        // Each user's own config directory.
        let home_a = dir.join("home-a");
        let home_b = dir.join("home-b");
        for (h, uid) in [(&home_a, uid_a), (&home_b, uid_b)] {
            fs::create_dir_all(h)?;
            std::os::unix::fs::chown(h, Some(uid), Some(uid))?;
        }
        let a = (uid_a, home_a.as_path());
        let b = (uid_b, home_b.as_path());
        // The profile without its PSK (the CLI refuses secrets in profiles).
        let profile: String = t
            .postern_profile()
            .lines()
            .filter(|l| !l.starts_with("psk ="))
            .map(|l| format!("{l}\n"))
            .collect();
        for u in [a, b] {
            let o = postern_as(u, &sys, &["add", "office", "--from", "-"], Some(&profile))?;
            lab_ensure!(o.status.success(), "postern add: {}", text(&o));
        }
        let with_secret = profile.replace("[auth]\n", "[auth]\npsk = \"x\"\n");
        let o = postern_as(
            a,
            &sys,
            &["add", "leaky", "--from", "-"],
            Some(&with_secret),
        )?;
        lab_ensure!(
            o.status.code() == Some(2) && String::from_utf8_lossy(&o.stderr).contains("keyring"),
            "a profile with a PSK must be refused: {}",
            text(&o)
        );

        // Malformed calls straight on the bus (busctl as A), each refused with its reason
        // and nothing started: a control character in the profile, an oversized
        // profile, a certificate path instead of its contents.
        let busctl_as_a = |args: &[&str]| -> Result<Output> {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid_a}"))
                .arg(format!("--regid={uid_a}"))
                .args([
                    "--clear-groups",
                    "--",
                    "busctl",
                    "--address",
                    &addr,
                    "--timeout=5",
                ])
                .args(["call", "org.postern.Helper1", "/org/postern/Helper1"])
                .args(["org.postern.Helper1", "Connect", "sa{ss}"])
                .args(args);
            Ok(c.output()?)
        };
        // A newline in the name, written as a TOML escape (a raw one is a syntax error).
        let ctl = format!(
            "name = \"Off\\nice\"\ngateway = \"{}\"\n",
            postern_lab::config::GW_ADDR
        );
        let big = format!("{}# {}\n", profile, "x".repeat(70 * 1024));
        let certp = "name = \"c\"\ngateway = \"192.0.2.1\"\n[auth]\nmethod = \"rsa-sig\"\n";
        for (args, want) in [
            (vec![ctl.as_str(), "1", "psk", "x"], "control"),
            (vec![big.as_str(), "1", "psk", "x"], "bytes"),
            (
                vec![certp, "1", "cert", "/etc/ssl/private/laptop.pem"],
                "path",
            ),
        ] {
            let o = busctl_as_a(&args)?;
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            lab_ensure!(
                !o.status.success() && err.contains(want),
                "a malformed Connect ({want}) was not refused as such: {}",
                text(&o)
            );
        }
        let o = postern_as(a, &sys, &["--json", "status"], None)?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout).trim().is_empty(),
            "a refused call left a tunnel: {}",
            text(&o)
        );
        // Only root may own the helper's name (packaging/org.postern.Helper1.conf): a
        // user cannot stand in for the helper and collect secrets.
        // dbus-send (dbus-bin, with dbus-daemon) prints the bus's reason, busctl does not.
        let o = Command::new("setpriv")
            .arg(format!("--reuid={uid_a}"))
            .arg(format!("--regid={uid_a}"))
            .args(["--clear-groups", "--", "dbus-send"])
            .arg(format!("--bus={addr}"))
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
            ])
            .args([
                "org.freedesktop.DBus.RequestName",
                "string:org.postern.Helper1",
                "uint32:4",
            ])
            .output()?;
        lab_ensure!(
            !o.status.success()
                && String::from_utf8_lossy(&o.stderr)
                    .contains("not allowed to own the service \"org.postern.Helper1\""),
            "an ordinary user could ask for org.postern.Helper1: {}",
            text(&o)
        );

        // B (polkit says no) cannot connect.
        let o = postern_as(
            b,
            &sys,
            &["up", "office", "--secrets-stdin"],
            Some(&format!("{}\n", t.psk)),
        )?;
        lab_ensure!(
            o.status.code() == Some(3)
                && String::from_utf8_lossy(&o.stderr).contains("not authorized"),
            "B must be refused by polkit: {}",
            text(&o)
        );

        // A keeps the PSK in a real Secret Service (GNOME Keyring in A's session,
        // unlocked non-interactively) and brings the tunnel up through the helper.
        let o = session_as(
            a,
            &sys,
            "printf %s \"$KEYRING_PW\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1 \
             && printf '%s\\n' \"$LAB_PSK\" | postern secret set office --stdin \
             && postern up office",
            &[("KEYRING_PW", "lab-keyring-pw"), ("LAB_PSK", &t.psk)],
        )?;
        lab_ensure!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("stored the psk of office")
                && String::from_utf8_lossy(&o.stdout).contains("office is up"),
            "secret set + up as A (keyring): {}",
            text(&o)
        );
        lab.ping(Role::Client, None, postern_lab::config::LAN_HOST)?;
        gw.wait_established(Duration::from_secs(10))?;
        let o = postern_as(a, &sys, &["--json", "status"], None)?;
        let st = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            st.contains("\"name\":\"office\"")
                && st.contains("\"state\":\"connected\"")
                && st.contains("\"spi_in\""),
            "status as A: {}",
            text(&o)
        );
        // The ping went through the SA: its counters show it, both ways.
        let count = |key: &str| -> u64 {
            st.split(&format!("\"{key}\":"))
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        lab_ensure!(
            count("in_packets") >= 2
                && count("out_packets") >= 2
                && count("in_bytes") >= 2 * 84
                && count("out_bytes") >= 2 * 84,
            "the SA's traffic in status: {st}"
        );

        // `list` shows the profile with its tunnel's state; `show` the profile, no secret;
        // `log` follows the tunnel (bounded here by timeout: it runs until the tunnel ends).
        let o = postern_as(a, &sys, &["--json", "list"], None)?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout).contains("\"state\":\"connected\""),
            "list as A: {}",
            text(&o)
        );
        let o = postern_as(a, &sys, &["show", "office"], None)?;
        let shown = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            o.status.success() && shown.contains("gateway = ") && !shown.contains(&t.psk),
            "show as A: {}",
            text(&o)
        );

        // B sees nothing of it and cannot take it down.
        let o = postern_as(b, &sys, &["--json", "status"], None)?;
        lab_ensure!(
            !String::from_utf8_lossy(&o.stdout).contains("office"),
            "B sees A's tunnel: {}",
            text(&o)
        );
        let o = postern_as(b, &sys, &["down", "office"], None)?;
        lab_ensure!(!o.status.success(), "B took A's tunnel down: {}", text(&o));
        lab.ping(Role::Client, None, postern_lab::config::LAN_HOST)?;

        // `postern log` shows the tunnel's history (the phases that brought it up), then
        // follows it while A takes it down; nothing is left at the gateway.
        let mut log = postern_cmd(a, &sys, &["log", "office"]).spawn()?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = log.stdout.take().map(|out| {
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        });
        let mut shown = Vec::new();
        // The history arrives at once: up to the `connected` line, before any `down`.
        while !shown.iter().any(|l: &String| l.starts_with("connected")) {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => shown.push(l),
                Err(_) => {
                    let _ = log.kill();
                    postern_lab::lab_bail!(
                        "postern log showed no history up to `connected`: {shown:?}"
                    );
                }
            }
        }
        lab_ensure!(
            shown.iter().any(|l| l.starts_with("phase1 established")),
            "postern log's history lacks phase 1: {shown:?}"
        );
        let o = postern_as(a, &sys, &["down", "office"], None)?;
        lab_ensure!(o.status.success(), "postern down as A: {}", text(&o));
        // It ends by itself with the tunnel (bounded: `timeout 60` around the CLI).
        let st = log.wait()?;
        if let Some(r) = reader {
            let _ = r.join();
        }
        shown.extend(rx.try_iter());
        lab_ensure!(
            st.success()
                && shown
                    .iter()
                    .any(|l| l.contains("closing") || l.contains("disconnected")),
            "postern log as A did not follow the tunnel to its end ({st}): {shown:?}"
        );
        let n_connected = shown.iter().filter(|l| l.starts_with("connected")).count();
        lab_ensure!(
            n_connected == 1,
            "a line shown twice (history and signal): {shown:?}"
        );
        gw.wait_no_sas(Duration::from_secs(10))?;
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(
            !links.contains("postern"),
            "the TUN device was left:\n{links}"
        );

        // The keyring items go with `secret delete` and with the profile (`delete`).
        let o = session_as(
            a,
            &sys,
            "printf %s \"$KEYRING_PW\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1 \
             && postern secret delete office && postern secret delete office \
             && printf '%s\\n' \"$LAB_PSK\" | postern secret set office --stdin \
             && postern delete office && postern list",
            &[("KEYRING_PW", "lab-keyring-pw"), ("LAB_PSK", &t.psk)],
        )?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            o.status.success()
                && out.contains("removed the psk of office from the keyring")
                && out.contains("no psk of office in the keyring")
                && out.contains("deleted office and its 1 secret in the keyring")
                && !out.lines().any(|l| l.starts_with("office")),
            "secret delete / delete as A: {}",
            text(&o)
        );

        // The secret never appears in what the helper printed.
        let out = helper.tail(100_000);
        lab_ensure!(!out.contains(&t.psk), "the PSK is in the helper's output");
        drop(host);
        Ok(())
    });
}
