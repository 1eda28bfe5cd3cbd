//! Two tunnels at once from one client to two gateways (two addresses of one strongSwan,
//! two connections): both `postern-helper up` share UDP 500/4500 (SO_REUSEADDR, each
//! socket connected to its gateway), each gets its own TUN device, virtual IP and
//! routes, and traffic to each remote network crosses its own tunnel. A third profile
//! to a gateway already in use is refused with one line. Root only.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use postern_lab::config::{CLIENT_VIP, LAN_HOST};
use postern_lab::multi::{CLIENT2_VIP, LAN_HOST2, two_gateways};
use postern_lab::postern::exit;
use postern_lab::{Client, Lab, Result, Role, lab_ensure, run_scenario};

fn write_0600(lab: &Lab, name: &str, text: &str) -> Result<PathBuf> {
    let path = lab.dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    Ok(path)
}

#[test]
fn two_tunnels_to_two_gateways_at_once() {
    run_scenario("multi", |lab: &Lab| {
        let (gw, prof_a, prof_b) = two_gateways(lab, "multi-a", "multi-b")?;
        let client_a = Client::start(lab, &write_0600(lab, "multi-a.toml", &prof_a)?)?;
        lab.adopt(&client_a.proc);
        client_a.wait_connected()?;
        let client_b = Client::start(lab, &write_0600(lab, "multi-b.toml", &prof_b)?)?;
        lab.adopt(&client_b.proc);
        client_b.wait_connected()?;

        // The gateway has both IKE SAs, each with its CHILD_SA.
        let mut both = false;
        for _ in 0..50 {
            let sas = gw.list_sas()?;
            if sas.len() == 2 && sas.iter().all(|s| s.installed_child().is_some()) {
                both = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        lab_ensure!(
            both,
            "the gateway does not show two tunnels:\n{}",
            gw.list_sas_text()
        );
        // Traffic to each network crosses its own tunnel, from its own address.
        lab.ping(Role::Client, Some(CLIENT_VIP), LAN_HOST)?;
        lab.ping(Role::Client, Some(CLIENT2_VIP), LAN_HOST2)?;
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(
            links.contains("postern0") && links.contains("postern1"),
            "expected two TUN devices:\n{links}"
        );

        // A third profile to A's gateway is refused in one line: it would share A's
        // IKE socket pair and take its datagrams. A and B stay up.
        let prof_c = prof_a.replace("name = \"multi-a\"", "name = \"multi-c\"");
        let client_c = Client::start(lab, &write_0600(lab, "multi-c.toml", &prof_c)?)?;
        lab.adopt(&client_c.proc);
        let code = client_c.exit_code(Duration::from_secs(15))?;
        let err = client_c.error_line().unwrap_or_default();
        lab_ensure!(
            code != exit::OK && err.contains("already up"),
            "a second tunnel to the same gateway was not refused (exit {code}): {err:?} {:?}",
            client_c.stdout()
        );
        lab.ping(Role::Client, Some(CLIENT_VIP), LAN_HOST)?;
        lab.ping(Role::Client, Some(CLIENT2_VIP), LAN_HOST2)?;

        // Taking A down leaves B up.
        client_a.sigterm()?;
        let code = client_a.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "tunnel A: exit code {code} after SIGTERM");
        lab.ping(Role::Client, Some(CLIENT2_VIP), LAN_HOST2)?;
        client_b.sigterm()?;
        let code = client_b.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "tunnel B: exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))?;
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(
            !links.contains("postern"),
            "a TUN device was left behind:\n{links}"
        );
        Ok(())
    });
}
