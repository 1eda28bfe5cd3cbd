//! The IKE version over D-Bus: the helper carries the tunnel's IKE version (the
//! `IkeVersion` property of `org.postern.Helper1.Connection`), and `postern status`
//! reads it from there rather than from the profile file. An IKEv2 tunnel through the
//! real D-Bus service (the lab's private system bus, polkitd, the CLI as an
//! unprivileged test user, a strongSwan gateway): `postern status` says `ike IKEv2 ...`
//! and `--json` has `"ike_version":2`, still so after the profile file was changed to
//! IKEv1 behind the tunnel's back. Root only.

use std::time::{Duration, Instant};

use postern_lab::bususer::{BusUser, allow_rules, text, without_psk};
use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, Result, Tunnel, lab_bail, lab_ensure, run_scenario};

const USER: &str = "postern-lab-v2v";

/// Polls `postern status` (every 100 ms, 10 s at most) until its first line says the
/// tunnel is connected; the output.
fn connected_status(u: &BusUser) -> Result<String> {
    let start = Instant::now();
    loop {
        let o = u.postern(&["status"], None)?;
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() && s.starts_with("v2office: connected") {
            return Ok(s);
        }
        if start.elapsed() > Duration::from_secs(10) {
            lab_bail!("not connected in 10 s: {}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ikev2_status_says_the_version_the_helper_carries() {
    let t = Tunnel::main_psk("v2office").ikev2().mode_config(true);
    run_scenario("v2-busver", |lab: &Lab| {
        let mut host = HostChanges::default();
        let sys = SystemBus::start(lab, &allow_rules(&[USER]))?;
        let u = BusUser::new(lab, &mut host, &sys, USER)?;
        let gw = lab.start_gateway(&t)?;
        let profile = without_psk(&t.postern_profile());
        lab_ensure!(profile.contains("ike_version = 2\n"), "{profile}");
        let o = u.postern(&["add", "v2office", "--from", "-"], Some(&profile))?;
        lab_ensure!(o.status.success(), "postern add: {}", text(&o));
        let secrets = format!("{}\n", t.psk);
        let o = u.postern(&["up", "v2office", "--secrets-stdin"], Some(&secrets))?;
        lab_ensure!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("v2office is up"),
            "up: {}",
            text(&o)
        );
        gw.wait_established(Duration::from_secs(10))?;
        let up = connected_status(&u)?;
        lab_ensure!(
            up.lines().next().is_some_and(|l| l.contains(" ike IKEv2 ")),
            "status does not say IKEv2:\n{up}"
        );
        // The profile file now says IKEv1: the helper's word still counts.
        let file = u.home.join("config/postern/profiles/v2office.toml");
        let old = std::fs::read_to_string(&file)?;
        lab_ensure!(
            old.contains("ike_version = 2\n"),
            "{}: {old}",
            file.display()
        );
        std::fs::write(&file, old.replace("ike_version = 2\n", "ike_version = 1\n"))?;
        let again = connected_status(&u)?;
        lab_ensure!(
            again
                .lines()
                .next()
                .is_some_and(|l| l.contains(" ike IKEv2 ")),
            "status read the version from the profile file:\n{again}"
        );
        let o = u.postern(&["status", "--json"], None)?;
        let json = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            o.status.success() && json.contains("\"ike_version\":2"),
            "status --json: {}",
            text(&o)
        );
        eprintln!("v2-busver: {}", again.lines().next().unwrap_or_default());
        let o = u.postern(&["down", "v2office"], None)?;
        lab_ensure!(o.status.success(), "postern down: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;
        drop(host);
        Ok(())
    });
}
