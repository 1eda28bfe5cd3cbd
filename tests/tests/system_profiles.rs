//! System profiles (issue 17, points 1 and 2): root-owned profiles in a directory the
//! helper reads itself (`POSTERN_PROFILES_DIR`, /etc/postern/profiles in a package),
//! on the lab's private system bus with Debian's polkitd and two unprivileged test
//! users, against a real strongSwan gateway. Root only.
//!
//! * `a_system_profile_is_shared_by_every_user`: listed for both users (marked as a
//!   system profile), connected by one and disconnected by the other, a save refused
//!   without an admin, a world-writable one refused with its file named;
//! * `a_boot_profile_comes_up_with_no_user_and_stays_up`: the helper started as its
//!   unit starts it brings an `autoconnect = "boot"` profile up with nobody asking,
//!   and brings it back after the gateway is killed and restarted;
//! * `a_boot_profile_waits_for_a_gateway_that_is_down_at_boot`: the helper starts
//!   while the gateway's namespace has no IKE daemon; the first attempts fail, the
//!   gateway starts, and the tunnel comes up by itself within the backoff.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, Result, Role, Tunnel, lab_ensure, run_scenario};

const USER_A: &str = "postern-lab-sa";
const USER_B: &str = "postern-lab-sb";

/// The tests that make the lab's test users hold this: a test removes the users it
/// created when it ends, which took USER_B away from a test running beside it (its
/// `postern` could no longer reach the bus: CI, --test-threads=2).
static TEST_USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock_users() -> std::sync::MutexGuard<'static, ()> {
    TEST_USERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `postern ARGS` as `uid`, with its own (empty) config dir and the lab bus.
fn postern_as(uid: u32, home: &Path, sys: &SystemBus, args: &[&str]) -> Result<Output> {
    Ok(Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--", "timeout", "60"])
        .arg(sys.bin.join("postern"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &sys.addr)
        .stdin(Stdio::null())
        .output()?)
}

/// `busctl call` on the helper's manager as `uid`.
fn busctl_as(uid: u32, sys: &SystemBus, method: &str, sig: &str, args: &[&str]) -> Result<Output> {
    Ok(Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--", "busctl", "--address", &sys.addr])
        .args([
            "--timeout=10",
            "call",
            "org.postern.Helper1",
            "/org/postern/Helper1",
        ])
        .args(["org.postern.Helper1", method, sig])
        .args(args)
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lab tunnel's profile as an admin would roll it out: with its PSK, root-owned,
/// mode 0600, in `dir/NAME.toml`; `extra` top-level keys after the name.
fn write_system_profile(dir: &Path, name: &str, t: &Tunnel, extra: &str, mode: u32) -> Result<()> {
    let text = t.postern_profile().replacen('\n', &format!("\n{extra}"), 1);
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, text)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn profiles_dir(lab: &Lab) -> Result<std::path::PathBuf> {
    let dir = lab.dir.join("system-profiles");
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[test]
fn a_system_profile_is_shared_by_every_user() {
    let _users = lock_users();
    let t = Tunnel::main_psk("shared");
    run_scenario("sysprof", |lab: &Lab| {
        let mut host = HostChanges::default();
        let uid_a = host.ensure_user(USER_A)?;
        let uid_b = host.ensure_user(USER_B)?;
        // Both users may connect system profiles (an admin's rule for users without a
        // graphical session: polkit sees no active session here); nobody is an admin,
        // so edit-system (auth_admin) finds no agent and is denied.
        let rules = format!(
            "polkit.addRule(function(action, subject) {{\n  if (action.id == \"org.postern.helper1.connect-system\" && (subject.user == \"{USER_A}\" || subject.user == \"{USER_B}\")) {{\n    return polkit.Result.YES;\n  }}\n}});\n"
        );
        let dir = profiles_dir(lab)?;
        write_system_profile(&dir, "office", &t, "", 0o600)?;
        // World-writable: anyone could change where it connects.
        write_system_profile(&dir, "open", &t, "", 0o666)?;
        let d = dir.to_string_lossy().into_owned();
        let sys = SystemBus::start_with(lab, &rules, &[("POSTERN_PROFILES_DIR", &d)])?;
        let gw = lab.start_gateway(&t)?;
        let home_a = sys.dir.join("home-sa");
        let home_b = sys.dir.join("home-sb");
        for (h, uid) in [(&home_a, uid_a), (&home_b, uid_b)] {
            fs::create_dir_all(h)?;
            std::os::unix::fs::chown(h, Some(uid), Some(uid))?;
        }

        // Both users see both, marked as system profiles; the open one refused, its
        // file named.
        for (uid, home) in [(uid_a, &home_a), (uid_b, &home_b)] {
            let o = postern_as(uid, home, &sys, &["list"])?;
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            lab_ensure!(
                o.status.success()
                    && out.lines().any(|l| l.starts_with("system:office")
                        && l.contains(" down ")
                        && l.contains("[system]"))
                    && out
                        .lines()
                        .any(|l| l.starts_with("system:open") && l.contains("refused"))
                    && out.contains(&format!(
                        "refused: {d}/open.toml: mode 0666: group or others may change it"
                    )),
                "list as uid {uid}: {}",
                text(&o)
            );
        }
        let o = postern_as(uid_a, &home_a, &sys, &["up", "system:open"])?;
        lab_ensure!(
            !o.status.success()
                && String::from_utf8_lossy(&o.stderr).contains("open.toml: mode 0666"),
            "a world-writable profile was connected: {}",
            text(&o)
        );

        // A brings it up (the name only: no secret leaves the helper's files).
        let started = Instant::now();
        let o = postern_as(uid_a, &home_a, &sys, &["up", "system:office"])?;
        lab_ensure!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("system:office is up"),
            "up as A: {}",
            text(&o)
        );
        eprintln!("system profile up in {:?}", started.elapsed());
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping_within(
            Role::Client,
            None,
            postern_lab::config::LAN_HOST,
            Duration::from_secs(5),
        )?;
        // B sees it up, and takes it down.
        let o = postern_as(uid_b, &home_b, &sys, &["list"])?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("system:office") && l.contains("connected")),
            "B's list: {}",
            text(&o)
        );
        let o = postern_as(uid_b, &home_b, &sys, &["down", "system:office"])?;
        lab_ensure!(o.status.success(), "down as B: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;

        // Editing needs an admin: A's save is refused and the file is unchanged.
        let before = fs::read(dir.join("office.toml"))?;
        let o = busctl_as(
            uid_a,
            &sys,
            "SaveSystemProfile",
            "ss",
            &["office", "name = \"office\"\ngateway = \"192.0.2.66\"\n"],
        )?;
        lab_ensure!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not authorized"),
            "a save without admin: {}",
            text(&o)
        );
        lab_ensure!(
            fs::read(dir.join("office.toml"))? == before,
            "the file changed"
        );
        // A may read it (without its secret) for the app's read-only editor.
        let o = busctl_as(uid_a, &sys, "SystemProfileText", "s", &["office"])?;
        let shown = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            o.status.success() && shown.contains("gateway") && !shown.contains(&t.psk),
            "SystemProfileText: {}",
            text(&o)
        );
        let out = sys.helper.tail(100_000);
        lab_ensure!(!out.contains(&t.psk), "the PSK is in the helper's output");
        drop(host);
        Ok(())
    });
}

#[test]
fn a_boot_profile_comes_up_with_no_user_and_stays_up() {
    // DPD every 2 s, dead after 8 s: the killed gateway is noticed quickly.
    let t = Tunnel::main_psk("boot").dpd(2, 8);
    run_scenario("sysboot", |lab: &Lab| {
        let dir = profiles_dir(lab)?;
        write_system_profile(&dir, "site", &t, "autoconnect = \"boot\"\n", 0o600)?;
        let d = dir.to_string_lossy().into_owned();
        // The gateway first, as at a branch office whose machine reboots.
        let gw = lab.start_gateway(&t)?;
        let started = Instant::now();
        // As postern-helper.service starts it (D-Bus activation by
        // postern-autoconnect.service): `daemon --idle-exit 300`. No rules: no user
        // asks for anything.
        let sys = SystemBus::start_helper_args(
            lab,
            "",
            &[("POSTERN_PROFILES_DIR", &d)],
            &["--idle-exit", "300"],
        )?;
        gw.wait_established(Duration::from_secs(30))?;
        eprintln!(
            "boot profile up {:?} after the helper's start",
            started.elapsed()
        );
        lab.ping_within(
            Role::Client,
            None,
            postern_lab::config::LAN_HOST,
            Duration::from_secs(5),
        )?;
        lab_ensure!(
            sys.helper.tail(200).contains("autoconnect: site (boot)"),
            "the helper did not say it brought the boot profile up: {}",
            sys.helper.tail(50)
        );

        // The gateway dies (no DELETE) and comes back: the tunnel comes back by itself.
        gw.kill()?;
        std::thread::sleep(Duration::from_secs(2));
        let killed = Instant::now();
        let gw2 = lab.start_gateway(&t)?;
        gw2.wait_established(Duration::from_secs(90))?;
        eprintln!("back {:?} after the gateway's restart", killed.elapsed());
        lab.ping_within(
            Role::Client,
            None,
            postern_lab::config::LAN_HOST,
            Duration::from_secs(5),
        )?;
        drop(gw);
        Ok(())
    });
}

/// The attempts of the helper's boot tunnel that failed so far (its `error:` lines).
fn failed_attempts(sys: &SystemBus) -> usize {
    sys.helper
        .tail(100_000)
        .lines()
        .filter(|l| l.contains("/org/postern/Helper1/Connection/") && l.contains(": error: "))
        .count()
}

#[test]
fn a_boot_profile_waits_for_a_gateway_that_is_down_at_boot() {
    let t = Tunnel::main_psk("late");
    run_scenario("syslate", |lab: &Lab| {
        let dir = profiles_dir(lab)?;
        write_system_profile(&dir, "site", &t, "autoconnect = \"boot\"\n", 0o600)?;
        // An attempt gives up after 3 sends in 3.5 s (the default, 5 in 31 s, makes the
        // same story last a minute longer).
        let file = dir.join("site.toml");
        let text = fs::read_to_string(&file)?.replacen(
            "[network]\n",
            "[network]\nretransmit = { tries = 3, base = \"500ms\", cap = \"2s\" }\n",
            1,
        );
        lab_ensure!(text.contains("retransmit = "), "no [network] table: {text}");
        fs::write(&file, text)?;
        let d = dir.to_string_lossy().into_owned();
        // The machine boots before the gateway: its namespace is there (the address
        // answers, with port unreachable), no IKE daemon in it yet.
        let started = Instant::now();
        let sys = SystemBus::start_helper_args(
            lab,
            "",
            &[("POSTERN_PROFILES_DIR", &d)],
            &["--idle-exit", "300"],
        )?;
        // The first attempts fail (bounded: the backoff is 1 s, 2 s, 4 s ... and an
        // unanswered attempt gives up by itself).
        postern_lab::wait::wait_for(
            "two failed attempts of the boot profile",
            Duration::from_secs(150),
            Duration::from_millis(250),
            || Ok((failed_attempts(&sys) >= 2).then_some(())),
        )
        .map_err(|e| postern_lab::LabError(format!("{e}: {}", sys.helper.tail(40))))?;
        let failed = failed_attempts(&sys);
        eprintln!(
            "{failed} attempts failed in {:?} with the gateway down",
            started.elapsed()
        );
        lab_ensure!(
            sys.helper.tail(400).contains("autoconnect: site (boot)"),
            "the helper did not start the boot profile: {}",
            sys.helper.tail(50)
        );
        // The gateway comes up: the tunnel follows with nobody asking.
        let gw_start = Instant::now();
        let gw = lab.start_gateway(&t)?;
        gw.wait_established(Duration::from_secs(120))?;
        eprintln!(
            "boot profile up {:?} after the gateway started ({:?} after the helper's start, {} failed attempts before)",
            gw_start.elapsed(),
            started.elapsed(),
            failed_attempts(&sys)
        );
        lab.ping_within(
            Role::Client,
            None,
            postern_lab::config::LAN_HOST,
            Duration::from_secs(5),
        )?;
        Ok(())
    });
}

/// A system profile changed, added or replaced on disk while the helper runs is seen
/// by the next `postern list` and used by the next connect, with no restart.
#[test]
fn a_system_profile_changed_on_disk_is_used_without_a_restart() {
    let _users = lock_users();
    let t = Tunnel::main_psk("edited");
    run_scenario("sysedit", |lab: &Lab| {
        let mut host = HostChanges::default();
        let uid = host.ensure_user(USER_A)?;
        let rules = format!(
            "polkit.addRule(function(action, subject) {{\n  if (action.id == \"org.postern.helper1.connect-system\" && subject.user == \"{USER_A}\") {{\n    return polkit.Result.YES;\n  }}\n}});\n"
        );
        let dir = profiles_dir(lab)?;
        // Rolled out first with a gateway that does not exist.
        let wrong = "198.51.100.77";
        let text0 = t.postern_profile().replace(
            &format!("gateway = \"{}\"", postern_lab::config::GW_ADDR),
            &format!("gateway = \"{wrong}\""),
        );
        lab_ensure!(text0.contains(wrong), "no gateway line in: {text0}");
        let file = dir.join("office.toml");
        fs::write(&file, &text0)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
        let d = dir.to_string_lossy().into_owned();
        let sys = SystemBus::start_with(lab, &rules, &[("POSTERN_PROFILES_DIR", &d)])?;
        let gw = lab.start_gateway(&t)?;
        let home = sys.dir.join("home-sa");
        fs::create_dir_all(&home)?;
        std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
        let list = || -> Result<String> {
            let o = postern_as(uid, &home, &sys, &["list"])?;
            lab_ensure!(o.status.success(), "list: {}", text(&o));
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let out = list()?;
        lab_ensure!(
            out.lines()
                .any(|l| l.starts_with("system:office") && l.contains(wrong)),
            "first list: {out}"
        );

        // Configuration management fixes the gateway (a rename over the file, as
        // Ansible does) and adds a second profile: both seen at once.
        let tmp = dir.join(".office.toml.tmp");
        fs::write(&tmp, t.postern_profile())?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, &file)?;
        write_system_profile(&dir, "second", &t, "", 0o600)?;
        let out = list()?;
        lab_ensure!(
            out.lines().any(|l| l.starts_with("system:office")
                && l.contains(postern_lab::config::GW_ADDR)
                && l.contains(" down "))
                && !out.contains(wrong)
                && out.lines().any(|l| l.starts_with("system:second")),
            "the change on disk was not seen: {out}"
        );
        // And the connect uses the new gateway.
        let o = postern_as(uid, &home, &sys, &["up", "system:office"])?;
        lab_ensure!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("system:office is up"),
            "up after the edit: {}",
            text(&o)
        );
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, postern_lab::config::LAN_HOST)?;
        let o = postern_as(uid, &home, &sys, &["down", "system:office"])?;
        lab_ensure!(o.status.success(), "down: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;
        // Removed on disk: gone from the list, and not connectable.
        fs::remove_file(dir.join("second.toml"))?;
        let out = list()?;
        lab_ensure!(
            !out.contains("system:second"),
            "a removed profile listed: {out}"
        );
        drop(host);
        Ok(())
    });
}

/// A system profile owned by an ordinary user is refused (CI runs as root, so the
/// helper really sees a non-root owner): `postern list` and `postern up` say so in one
/// line naming the file.
#[test]
fn a_system_profile_owned_by_a_user_is_refused_naming_the_file() {
    let _users = lock_users();
    let t = Tunnel::main_psk("owned");
    run_scenario("sysowner", |lab: &Lab| {
        let mut host = HostChanges::default();
        let uid = host.ensure_user(USER_B)?;
        let rules = format!(
            "polkit.addRule(function(action, subject) {{\n  if (action.id == \"org.postern.helper1.connect-system\" && subject.user == \"{USER_B}\") {{\n    return polkit.Result.YES;\n  }}\n}});\n"
        );
        let dir = profiles_dir(lab)?;
        write_system_profile(&dir, "mine", &t, "", 0o600)?;
        let file = dir.join("mine.toml");
        // The user may write it: it could send everyone's traffic elsewhere.
        std::os::unix::fs::chown(&file, Some(uid), Some(uid))?;
        let d = dir.to_string_lossy().into_owned();
        let sys = SystemBus::start_with(lab, &rules, &[("POSTERN_PROFILES_DIR", &d)])?;
        let gw = lab.start_gateway(&t)?;
        let home = sys.dir.join("home-sb");
        fs::create_dir_all(&home)?;
        std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
        let want =
            format!("{d}/mine.toml: owned by uid {uid}: a system profile must be owned by root");
        // (The daemon may still be starting: a few tries, 1 s apart.)
        let listed = |o: &std::process::Output| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            o.status.success()
                && out
                    .lines()
                    .any(|l| l.starts_with("system:mine") && l.contains("refused"))
                && out.contains(&format!("refused: {want}"))
        };
        let mut o = postern_as(uid, &home, &sys, &["list"])?;
        for _ in 0..5 {
            if listed(&o) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            o = postern_as(uid, &home, &sys, &["list"])?;
        }
        lab_ensure!(listed(&o), "list: {}", text(&o));
        let o = postern_as(uid, &home, &sys, &["up", "system:mine"])?;
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        eprintln!("refusal: {err}");
        lab_ensure!(
            !o.status.success() && err.contains(&want) && err.trim().lines().count() == 1,
            "a user-owned system profile was not refused in one line: {}",
            text(&o)
        );
        lab_ensure!(
            gw.list_sas()?.is_empty(),
            "the refused profile reached the gateway"
        );
        // Given back to root, the same file connects.
        std::os::unix::fs::chown(&file, Some(0), Some(0))?;
        let o = postern_as(uid, &home, &sys, &["up", "system:mine"])?;
        lab_ensure!(o.status.success(), "up after chown root: {}", text(&o));
        gw.wait_established(Duration::from_secs(10))?;
        let o = postern_as(uid, &home, &sys, &["down", "system:mine"])?;
        lab_ensure!(o.status.success(), "down: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;
        drop(host);
        Ok(())
    });
}
