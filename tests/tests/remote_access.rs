//! Remote-access scenarios against a real strongSwan gateway: XAuth, Mode Config
//! (pull and push, Cisco Unity split-include), dead peer detection.
//!
//! Checked from both sides: the client's lines (`xauth ok`, `mode-config ...`) and the
//! gateway's `swanctl --list-sas` (the virtual IP from the pool as the remote selector,
//! the XAuth identity). Root only, like interop.rs.

use std::time::{Duration, Instant};

use postern_lab::config::{LAN_HOST, LAN_NET, POOL_DNS, POOL_FIRST};
use postern_lab::postern::exit;
use postern_lab::{Charon, IkeSa, Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

/// The gateway shows the tunnel with the pool address as the client's side.
fn check_gateway_pool(gw: &Charon) -> Result<IkeSa> {
    let sa = gw.wait_established(Duration::from_secs(10))?;
    let shown = gw.list_sas_text();
    let Some(child) = sa.installed_child() else {
        lab_bail!("no INSTALLED CHILD_SA on the gateway:\n{shown}")
    };
    lab_ensure!(
        child.ts("local-ts") == [LAN_NET] && child.ts("remote-ts") == [format!("{POOL_FIRST}/32")],
        "the gateway's CHILD_SA does not use the pool address:\n{shown}"
    );
    Ok(sa)
}

fn connects_with_mode_config(scenario: &str, t: Tunnel) {
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let out = client.stdout();
        if t.xauth.is_some() {
            lab_ensure!(
                out.iter().any(|l| l == "xauth ok"),
                "no `xauth ok` line: {out:?}"
            );
        }
        let want = format!("mode-config {POOL_FIRST} dns {POOL_DNS} split {LAN_NET}");
        lab_ensure!(
            out.iter().any(|l| l.starts_with(&want)),
            "no line starting `{want}`: {out:?}"
        );
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase2 established")
                && l.contains(&format!("local_ts={POOL_FIRST}/32"))
                && l.contains(&format!("remote_ts={LAN_NET}"))),
            "quick mode did not use the virtual IP and the split network: {out:?}"
        );
        let sa = check_gateway_pool(&gw)?;
        if let Some(x) = &t.xauth {
            let shown = gw.list_sas_text();
            lab_ensure!(
                shown.contains(&x.user),
                "the gateway does not show the XAuth identity {}:\n{shown}",
                x.user
            );
        }
        lab_ensure!(sa.get("version") == "1", "not IKEv1");
        // Traffic crosses from the Mode Config address (userspace datapath).
        lab.ping(Role::Client, None, LAN_HOST)?;
        let addrs = lab.exec(Role::Client, &["ip", "-4", "addr"])?;
        lab_ensure!(
            addrs.contains(POOL_FIRST),
            "the pool address is not on the client:\n{addrs}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// Aggressive mode PSK + XAuth + Mode Config (pull): the classic Cisco-style remote access.
#[test]
fn aggressive_psk_xauth_mode_config_pull() {
    connects_with_mode_config(
        "ra-aggr-xauth",
        Tunnel::main_psk("ra-aggressive")
            .aggressive("fqdn:client.postern.test", "fqdn:gw.postern.test")
            .xauth("alice", "alice-pass-7", "alice-pass-7")
            .mode_config(true),
    );
}

/// Main mode PSK + XAuth, the gateway pushes Mode Config (SET/ACK).
#[test]
fn main_psk_xauth_mode_config_push() {
    connects_with_mode_config(
        "ra-main-push",
        Tunnel::main_psk("ra-main-push")
            .xauth("bob", "bob-pass-9", "bob-pass-9")
            .mode_config(false),
    );
}

/// Main mode PSK + Mode Config without XAuth.
#[test]
fn main_psk_mode_config_pull_without_xauth() {
    connects_with_mode_config(
        "ra-main-pull",
        Tunnel::main_psk("ra-main-pull").mode_config(true),
    );
}

/// A wrong XAuth password ends with a clear error, not a hang.
#[test]
fn wrong_xauth_password() {
    let t = Tunnel::main_psk("ra-wrong-xauth")
        .xauth("alice", "alice-pass-7", "not-her-password")
        .mode_config(true);
    run_scenario("ra-wrongx", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let start = Instant::now();
        let client = lab.start_postern(&t)?;
        let code = client.exit_code(Duration::from_secs(40))?;
        let err = client.error_line().unwrap_or_default();
        lab_ensure!(
            code == exit::AUTH_FAILED,
            "exit code {code}; stderr {:?}",
            client.stderr()
        );
        lab_ensure!(err.contains("XAuth failed"), "stderr {:?}", client.stderr());
        lab_ensure!(
            start.elapsed() < Duration::from_secs(40),
            "took {:?}",
            start.elapsed()
        );
        let sas = gw.list_sas()?;
        lab_ensure!(
            sas.iter().all(|s| s.installed_child().is_none()),
            "the gateway installed a CHILD_SA:\n{}",
            gw.list_sas_text()
        );
        Ok(())
    });
}

/// The gateway dies: dead peer detection tells the user within its timeout; when the
/// gateway comes back, the tunnel comes back by itself.
#[test]
fn dead_gateway_is_detected_and_the_tunnel_comes_back() {
    let t = Tunnel::main_psk("ra-dpd").dpd(2, 8);
    run_scenario("ra-dpd", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        // A quiet tunnel with a live gateway stays up across several DPD intervals.
        std::thread::sleep(Duration::from_secs(7));
        lab_ensure!(
            !client
                .stdout()
                .iter()
                .any(|l| l.starts_with("connection lost")),
            "lost while the gateway lives: {:?}",
            client.stdout()
        );
        gw.kill()?;
        let killed = Instant::now();
        let lost = client.wait_line("connection lost: dead peer", Duration::from_secs(20))?;
        let took = killed.elapsed();
        // interval 2 s + timeout 8 s, plus slack.
        lab_ensure!(
            took < Duration::from_secs(14),
            "dead peer declared after {took:?}: {lost:?}"
        );
        // The gateway returns; the client reconnects on its own.
        let gw2 = lab.start_gateway(&t)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = client
                .stdout()
                .iter()
                .filter(|l| l.starts_with("connected"))
                .count();
            if n >= 2 {
                break;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "no reconnect within 60 s: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        gw2.wait_established(Duration::from_secs(10))?;
        // Traffic crosses the tunnel again after the reconnect.
        lab.ping(
            postern_lab::Role::Client,
            None,
            postern_lab::config::LAN_HOST,
        )?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

/// Dead peer detection can be turned off together with reconnecting: then the
/// client ends with a clear error when the gateway deletes the tunnel.
#[test]
fn gateway_delete_without_reconnect_ends_clearly() {
    let t = Tunnel::main_psk("ra-del");
    run_scenario("ra-del", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let profile = lab.write_profile(&t)?;
        let mut text = std::fs::read_to_string(&profile)?;
        text = text.replace("[network]\n", "[network]\nreconnect = false\n");
        std::fs::write(&profile, text)?;
        let client = postern_lab::Client::start(lab, &profile)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        gw.terminate(postern_lab::config::CONN)?;
        let code = client.exit_code(Duration::from_secs(20))?;
        let err = client.error_line().unwrap_or_default();
        lab_ensure!(
            code == exit::OTHER,
            "exit code {code}; stderr {:?}",
            client.stderr()
        );
        lab_ensure!(
            err.contains("closed the connection"),
            "stderr {:?}",
            client.stderr()
        );
        Ok(())
    });
}

/// A gateway that fragments its IKE messages (strongSwan `fragmentation = force`,
/// 300-byte fragments): Postern puts them together, and the whole remote-access
/// exchange (modp4096 key exchange, XAuth, Mode Config) goes through.
#[test]
fn gateway_forcing_ike_fragmentation() {
    let t = Tunnel::main_psk("ra-frag")
        .proposals(&["aes256-sha256-modp4096"], &["aes256-sha256"])
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .gateway_fragments(300);
    run_scenario("ra-frag", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        check_gateway_pool(&gw)?;
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.contains("splitting IKE message"),
            "the gateway log shows no IKE fragments: {}",
            gw.log_tail(40)
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

/// Removes the namespace's private resolv.conf directory (`ip netns exec` bind-mounts
/// /etc/netns/NAME/resolv.conf over /etc/resolv.conf), also when the test fails.
struct NetnsEtc(std::path::PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// DNS from Mode Config goes into the client's resolv.conf (the tunnel's server first,
/// its domain searched), and the original comes back after SIGTERM and after SIGKILL +
/// `postern-helper cleanup`.
#[test]
fn mode_config_dns_in_resolv_conf_and_restored() {
    let t = Tunnel::main_psk("ra-dns")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true);
    run_scenario("ra-dns", |lab: &Lab| {
        let dir = std::path::PathBuf::from("/etc/netns").join(lab.ns(postern_lab::Role::Client));
        std::fs::create_dir_all(&dir)?;
        let _guard = NetnsEtc(dir.clone());
        let file = dir.join("resolv.conf");
        let original = "# the user's own\nnameserver 192.0.2.53\nsearch home.example\n";
        std::fs::write(&file, original)?;
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let during = std::fs::read_to_string(&file)?;
        let ns: Vec<&str> = during
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect();
        lab_ensure!(
            ns == ["nameserver 10.77.0.53", "nameserver 192.0.2.53"],
            "resolv.conf during the tunnel:\n{during}\nclient: {:?}",
            client.stdout()
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        let after = std::fs::read_to_string(&file)?;
        lab_ensure!(after == original, "resolv.conf after SIGTERM:\n{after}");
        gw.wait_no_sas(Duration::from_secs(10))?;

        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab_ensure!(
            std::fs::read_to_string(&file)?.contains("10.77.0.53"),
            "DNS not set the second time"
        );
        client.sigkill()?;
        let _ = client.exit_status(Duration::from_secs(10))?;
        postern_lab::postern::cleanup(lab)?;
        let after = std::fs::read_to_string(&file)?;
        lab_ensure!(
            after == original,
            "resolv.conf after SIGKILL + cleanup:\n{after}"
        );
        Ok(())
    });
}
