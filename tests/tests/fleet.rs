//! Fleets (issue 17): `postern-helper check` on the files an admin is about to roll
//! out, and the site policy applied by the running helper. Root only (the files are
//! checked for root ownership, the helper runs on the lab's private system bus).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use postern_dbus::interface::HelperProxy;
use postern_lab::postern::helper_path;
use postern_lab::sysbus::SystemBus;
use postern_lab::{Lab, LabError, Result, lab_ensure, run_scenario};

const GOOD: &str =
    "name = \"good\"\ngateway = \"192.0.2.1\"\n\n[auth]\nmethod = \"psk\"\npsk = \"s3cret\"\n";
const BAD_KEY: &str = "name = \"typo\"\ngateway = \"192.0.2.1\"\n\n[auth]\nmethod = \"psk\"\npsk = \"s3cret\"\n\n[network]\ndatpath = \"kernel\"\n";
const NO_CERT: &str = "name = \"certs\"\ngateway = \"192.0.2.1\"\n\n[auth]\nmethod = \"rsa-sig\"\nca = \"/etc/postern/missing-ca.pem\"\ncert = \"/etc/postern/missing.pem\"\nkey = \"/etc/postern/missing.key\"\n";
const WEAK: &str = "name = \"weak\"\ngateway = \"192.0.2.1\"\n\n[auth]\nmethod = \"psk\"\npsk = \"s3cret\"\n\n[phase1]\nproposals = [\"aes128-sha1-modp2048\", \"3des-sha1-modp1024\"]\n";
const POLICY: &str = "[algorithms]\nforbid = [\"modp1024\"]\n";

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn check(args: &[&str]) -> Result<(i32, String)> {
    let out = Command::new(helper_path()?)
        .arg("check")
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn check_catches_bad_keys_permissions_missing_certificates_and_the_policy() {
    run_scenario("fleet-check", |lab: &Lab| {
        let dir = lab.dir.join("profiles");
        std::fs::create_dir_all(&dir)?;
        let policy = lab.dir.join("policy.toml");
        std::fs::write(&policy, POLICY)?;
        let policy = policy.to_string_lossy().into_owned();
        write(&dir, "good.toml", GOOD, 0o600)?;
        let d = dir.to_string_lossy().into_owned();

        // A good file alone passes.
        let (code, out) = check(&["--policy", &policy, &format!("{d}/good.toml")])?;
        lab_ensure!(
            code == 0 && out.contains("1 file checked, 0 problems"),
            "good: {code}\n{out}"
        );

        write(&dir, "typo.toml", BAD_KEY, 0o600)?;
        write(&dir, "certs.toml", NO_CERT, 0o644)?;
        write(&dir, "weak.toml", WEAK, 0o600)?;
        // Writable by others (and holding a secret).
        write(&dir, "open.toml", GOOD, 0o666)?;
        let (code, out) = check(&["--policy", &policy, &d])?;
        eprintln!("{out}");
        lab_ensure!(code == 2, "exit {code}, want 2:\n{out}");
        for want in [
            format!("{d}/typo.toml:9: network.datpath:"),
            format!(
                "{d}/certs.toml:6: auth.ca: the CA certificate /etc/postern/missing-ca.pem: cannot open"
            ),
            format!("{d}/weak.toml:9: phase1.proposals: 3des-sha1-modp1024 uses modp1024"),
            format!("{d}/open.toml: mode 0666: group or others may change it"),
        ] {
            lab_ensure!(
                out.lines().any(|l| l.starts_with(&want)),
                "no line starting with {want:?} in:\n{out}"
            );
        }
        lab_ensure!(
            !out.contains("good.toml") && out.contains("5 files checked"),
            "good.toml flagged, or files missed:\n{out}"
        );
        lab_ensure!(!out.contains("s3cret"), "a secret in the output:\n{out}");

        // --json for tools.
        let (code, out) = check(&["--json", "--policy", &policy, &d])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| LabError(format!("--json: {e}\n{out}")))?;
        let problems = v["problems"].as_array().cloned().unwrap_or_default();
        lab_ensure!(
            code == 2 && v["files"] == 5 && problems.len() >= 4,
            "--json: {code}\n{out}"
        );
        lab_ensure!(
            problems
                .iter()
                .any(|p| p["key"] == "phase1.proposals" && p["line"] == 9),
            "--json lacks the policy problem:\n{out}"
        );
        Ok(())
    });
}

#[test]
fn the_running_helper_applies_the_site_policy() {
    run_scenario("fleet-policy", |lab: &Lab| {
        let policy = lab.dir.join("policy.toml");
        std::fs::write(&policy, POLICY)?;
        let rules = "polkit.addRule(function(action, subject) {\n  if (action.id.indexOf(\"org.postern.helper1.\") == 0 && subject.user == \"root\") {\n    return polkit.Result.YES;\n  }\n});\n";
        let policy_env = policy.to_string_lossy().into_owned();
        let sys = SystemBus::start_with(lab, rules, &[("POSTERN_POLICY", &policy_env)])?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let conn = zbus::connection::Builder::address(sys.addr.as_str())
                .map_err(|e| LabError(e.to_string()))?
                .build()
                .await
                .map_err(|e| LabError(e.to_string()))?;
            let helper = HelperProxy::new(&conn)
                .await
                .map_err(|e| LabError(e.to_string()))?;
            let weak = WEAK.replace("psk = \"s3cret\"\n", "");
            match helper
                .connect(&weak, HashMap::from([("psk", "s3cret")]))
                .await
            {
                Ok(p) => lab_ensure!(false, "a forbidden proposal was connected: {p:?}"),
                Err(e) => {
                    let s = e.to_string();
                    lab_ensure!(
                        s.contains("InvalidProfile")
                            && s.contains("phase1.proposals: 3des-sha1-modp1024 uses modp1024"),
                        "refusal: {s}"
                    );
                }
            }
            Ok::<(), LabError>(())
        })
    });
}

/// A polkit rule letting `users` connect their own profiles and the system ones.
fn connect_rules(users: &[&str]) -> String {
    let cond: Vec<String> = users
        .iter()
        .map(|u| format!("subject.user == \"{u}\""))
        .collect();
    format!(
        "polkit.addRule(function(action, subject) {{\n  if ((action.id == \"org.postern.helper1.connect\" || action.id == \"org.postern.helper1.manage-own\" || action.id == \"org.postern.helper1.connect-system\") && ({})) {{\n    return polkit.Result.YES;\n  }}\n}});\n",
        cond.join(" || ")
    )
}

/// `[profiles] user_profiles = false`: a user's own profile is refused at `postern up`
/// in one sentence (and `postern list` says so), while `system:NAME` still connects.
#[test]
fn user_profiles_off_refuses_a_user_profile_but_not_a_system_one() {
    use postern_lab::bususer::{BusUser, text, without_psk};
    use postern_lab::sysbus::HostChanges;
    let t = postern_lab::Tunnel::main_psk("site");
    run_scenario("fleet-nouser", |lab: &Lab| {
        let policy = lab.dir.join("policy.toml");
        std::fs::write(&policy, "[profiles]\nuser_profiles = false\n")?;
        let dir = lab.dir.join("system-profiles");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        write(&dir, "site.toml", &t.postern_profile(), 0o600)?;
        let mut host = HostChanges::default();
        let user = "postern-lab-fu";
        let (p, d) = (
            policy.to_string_lossy().into_owned(),
            dir.to_string_lossy().into_owned(),
        );
        let sys = SystemBus::start_with(
            lab,
            &connect_rules(&[user]),
            &[("POSTERN_POLICY", &p), ("POSTERN_PROFILES_DIR", &d)],
        )?;
        let u = BusUser::new(lab, &mut host, &sys, user)?;
        let gw = lab.start_gateway(&t)?;
        let o = u.postern(
            &["add", "office", "--from", "-"],
            Some(&without_psk(&t.postern_profile())),
        )?;
        lab_ensure!(o.status.success(), "postern add: {}", text(&o));

        // The user's own profile: refused, in one sentence, before anything is sent.
        let o = u.postern(
            &["up", "office", "--secrets-stdin"],
            Some(&format!("{}\n", t.psk)),
        )?;
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        eprintln!("refusal: {err}");
        lab_ensure!(
            !o.status.success()
                && err.contains("this machine's policy allows system profiles only")
                && err.trim().lines().count() == 1,
            "a user profile was not refused in one line: {}",
            text(&o)
        );
        let o = u.postern(&["list"], None)?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            out.lines()
                .any(|l| l.starts_with("office") && l.contains("refused"))
                && out.contains("refused: this machine's policy allows system profiles only")
                && out
                    .lines()
                    .any(|l| l.starts_with("system:site") && l.contains(" down ")),
            "list: {}",
            text(&o)
        );
        lab_ensure!(
            gw.list_sas()?.is_empty(),
            "the refused profile reached the gateway"
        );

        // The system profile connects (its PSK stays in root's file).
        let o = u.postern(&["up", "system:site"], None)?;
        lab_ensure!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("system:site is up"),
            "up system:site: {}",
            text(&o)
        );
        gw.wait_established(std::time::Duration::from_secs(10))?;
        lab.ping(
            postern_lab::Role::Client,
            None,
            postern_lab::config::LAN_HOST,
        )?;
        let o = u.postern(&["down", "system:site"], None)?;
        lab_ensure!(o.status.success(), "down system:site: {}", text(&o));
        gw.wait_no_sas(std::time::Duration::from_secs(10))?;
        drop(host);
        Ok(())
    });
}

/// `postern list` shows why the site policy refuses a user profile (a proposal with
/// MODP1024 under `forbid = ["modp1024"]`), and lists an acceptable one as down.
#[test]
fn postern_list_shows_the_policy_refusal_of_a_user_profile() {
    use postern_lab::bususer::{BusUser, text};
    use postern_lab::sysbus::HostChanges;
    run_scenario("fleet-list", |lab: &Lab| {
        let policy = lab.dir.join("policy.toml");
        std::fs::write(&policy, POLICY)?;
        let mut host = HostChanges::default();
        let user = "postern-lab-fl";
        let p = policy.to_string_lossy().into_owned();
        let sys = SystemBus::start_with(lab, &connect_rules(&[user]), &[("POSTERN_POLICY", &p)])?;
        let u = BusUser::new(lab, &mut host, &sys, user)?;
        for (name, text_) in [("weak", WEAK), ("good", GOOD)] {
            let o = u.postern(
                &["add", name, "--from", "-"],
                Some(&text_.replace("psk = \"s3cret\"\n", "")),
            )?;
            lab_ensure!(o.status.success(), "postern add {name}: {}", text(&o));
        }
        let o = u.postern(&["list"], None)?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        eprintln!("{out}");
        lab_ensure!(
            o.status.success()
                && out
                    .lines()
                    .any(|l| l.starts_with("weak") && l.contains("refused"))
                && out.lines().any(|l| l.trim_start().starts_with(
                    "refused: phase1.proposals: 3des-sha1-modp1024 uses modp1024, which this machine's policy forbids"
                ))
                && out
                    .lines()
                    .any(|l| l.starts_with("good") && l.contains(" down ")),
            "list: {}",
            text(&o)
        );
        // --json carries the state too.
        let o = u.postern(&["--json", "list"], None)?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            out.lines()
                .any(|l| l.contains("\"name\":\"weak\"") && l.contains("\"state\":\"refused\"")),
            "list --json: {}",
            text(&o)
        );
        drop(host);
        Ok(())
    });
}
