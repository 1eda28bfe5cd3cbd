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
