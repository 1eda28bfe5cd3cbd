//! IKEv2 MOBIKE (RFC 4555) against a real strongSwan gateway (swanctl `version = 2`,
//! `mobike = yes`, its default): the client's outer address replaced while a ping runs
//! through the tunnel. The helper moves the tunnel (UPDATE_SA_ADDRESSES from the new
//! address) instead of negotiating again: the gateway's `swanctl --list-sas` shows
//! the same IKE SA (SPIs) and CHILD_SA (SPIs) from the new address, the client never
//! says `connecting` or `connected` twice, and the ping goes on.
//!
//! Prints the time from the new address to the first ping answer through the tunnel
//! (the README's figure); no timed assertion beyond a generous bound. Root only.

use std::path::Path;
use std::time::{Duration, Instant};

use postern_lab::config::{LAN_HOST, POOL_FIRST};
use postern_lab::postern::exit;
use postern_lab::process::{Proc, Stream};
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

/// The client's new outer address, on the same link as the old one.
const NEW_CLIENT_ADDR: &str = "192.0.2.3";

/// Answers of the background ping, as moments.
fn replies(ping: &Proc) -> Vec<Instant> {
    ping.lines()
        .into_iter()
        .filter(|l| l.stream == Stream::Stdout && l.text.contains("bytes from"))
        .map(|l| ping.started() + l.at)
        .collect()
}

/// (initiator SPI, responder SPI, CHILD_SA inbound SPI, remote host) of the
/// gateway's one IKE SA.
fn gateway_view(gw: &postern_lab::Charon) -> postern_lab::Result<[String; 4]> {
    let sas = gw.list_sas()?;
    let [sa] = sas.as_slice() else {
        lab_bail!(
            "the gateway has {} IKE SAs:\n{}",
            sas.len(),
            gw.list_sas_text()
        )
    };
    let Some(child) = sa.installed_child() else {
        lab_bail!("no INSTALLED CHILD_SA:\n{}", gw.list_sas_text())
    };
    Ok([
        sa.get("initiator-spi").to_string(),
        sa.get("responder-spi").to_string(),
        child.get("spi-in").to_string(),
        sa.get("remote-host").to_string(),
    ])
}

#[test]
fn ikev2_mobike_outer_address_replaced_while_pinging() {
    let t = Tunnel::main_psk("v2-mobike").ikev2().mode_config(true);
    run_scenario("v2-mobike", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let before = gateway_view(&gw)?;
        lab_ensure!(
            before[3] == "192.0.2.2",
            "the gateway does not see the client at 192.0.2.2:\n{}",
            gw.list_sas_text()
        );

        // A ping through the tunnel for the whole scenario (bounded: 40 s).
        let mut cmd = lab.command(Role::Client, Path::new("ping"));
        cmd.args(["-n", "-i", "0.05", "-W", "1", "-w", "40", LAN_HOST]);
        let ping = Proc::spawn("ping", cmd, Some(&lab.dir.join("ping.out")))?;
        lab.adopt(&ping);
        std::thread::sleep(Duration::from_millis(500));
        lab_ensure!(!replies(&ping).is_empty(), "no answers before the change");

        // Another network: the old address goes, a new one comes.
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        let new_addr = Instant::now();
        lab.exec(
            Role::Client,
            &[
                "ip",
                "addr",
                "add",
                &format!("{NEW_CLIENT_ADDR}/24"),
                "dev",
                "c0",
            ],
        )?;
        let moved = client.wait_line("roaming: moved to", Duration::from_secs(15))?;
        lab_ensure!(
            moved.text.contains(NEW_CLIENT_ADDR),
            "the move does not name the new address: {moved}"
        );
        // Traffic again: the first answer after the new address.
        let deadline = Instant::now() + Duration::from_secs(20);
        let resumed = loop {
            if let Some(t) = replies(&ping).into_iter().find(|t| *t > new_addr) {
                break t;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "the ping did not resume within 20 s: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = resumed - new_addr;
        println!(
            "mobike figure: new outer address -> ping answered through the tunnel again in {} ms (IKEv2 MOBIKE, userspace datapath, veth link); {}",
            took.as_millis(),
            moved.text
        );
        // The same IKE SA, now from the new address.
        let after = gateway_view(&gw)?;
        lab_ensure!(
            after[..2] == before[..2],
            "the gateway's IKE SA changed (SPIs {before:?} -> {after:?}):\n{}",
            gw.list_sas_text()
        );
        lab_ensure!(
            after[3] == NEW_CLIENT_ADDR,
            "the gateway does not see the client at {NEW_CLIENT_ADDR}:\n{}",
            gw.list_sas_text()
        );
        // Nothing negotiated again on the client either.
        let out = client.stdout();
        let count = |p: &str| out.iter().filter(|l| l.starts_with(p)).count();
        lab_ensure!(
            count("connecting") == 1 && count("connected") == 1,
            "the client negotiated again: {out:?}"
        );
        lab_ensure!(count("network changed") == 0, "not a MOBIKE move: {out:?}");
        // The CHILD_SA: moved as it was, or (strongSwan on kernel-libipsec, which cannot
        // change an SA's addresses) rekeyed by the gateway right after the update,
        // make-before-break inside the same IKE SA.
        let child = if after[2] == before[2] {
            "the same CHILD_SA"
        } else {
            lab_ensure!(
                out.iter()
                    .any(|l| l.starts_with("phase2 deleted") && l.contains("by the gateway"))
                    && count("phase2 established") == 2,
                "the CHILD_SA changed without a rekey by the gateway: {out:?}"
            );
            "the CHILD_SA rekeyed by the gateway after the update"
        };
        println!("mobike: the same IKE SA from {NEW_CLIENT_ADDR}, {child}");
        // The inner address is the pool's first, as before.
        let addrs = lab.exec(Role::Client, &["ip", "-4", "addr"])?;
        lab_ensure!(
            addrs.contains(POOL_FIRST),
            "the inner address is gone:\n{addrs}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        // The ping's losses (SIGINT: it prints its summary and exits).
        ping.signal("INT")?;
        ping.exit_status(Duration::from_secs(5))?;
        let summary = ping
            .lines_of(Stream::Stdout)
            .into_iter()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default();
        println!("mobike figure: ping during the move: {summary}");
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// Without MOBIKE on one side, a gateway with `mobike = no` (the client still sends
/// IKE_AUTH from port 4500) or a profile with `network.mobike = false`: on the address
/// change the client says why it cannot move and negotiates again from the new address
/// (a new IKE SA), as an IKEv1 tunnel does; the ping resumes.
#[test]
fn ikev2_without_mobike_negotiates_again() {
    fallback("v2-nomobike-gw", true, "the gateway did not offer MOBIKE");
    fallback("v2-nomobike-cl", false, "network.mobike = false");
}

fn fallback(scenario: &str, gateway_off: bool, reason: &str) {
    let t = Tunnel::main_psk(scenario).ikev2().mode_config(true);
    run_scenario(scenario, |lab: &Lab| {
        let gw = if gateway_off {
            let conf = t.gateway_swanctl().replacen(
                "    version = 2\n",
                "    version = 2\n    mobike = no\n",
                1,
            );
            lab_ensure!(conf.contains("mobike = no"), "no version line in:\n{conf}");
            lab.start_gateway_as(&t, &conf)?
        } else {
            lab.start_gateway(&t)?
        };
        let client = if gateway_off {
            lab.start_postern(&t)?
        } else {
            let text =
                t.postern_profile()
                    .replacen("\n[network]\n", "\n[network]\nmobike = false\n", 1);
            lab_ensure!(text.contains("mobike = false"), "no [network] in:\n{text}");
            lab.start_postern_text(scenario, &text)?
        };
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let before = gateway_view(&gw)?;

        let mut cmd = lab.command(Role::Client, Path::new("ping"));
        cmd.args(["-n", "-i", "0.05", "-W", "1", "-w", "40", LAN_HOST]);
        let ping = Proc::spawn("ping", cmd, Some(&lab.dir.join("ping.out")))?;
        lab.adopt(&ping);
        std::thread::sleep(Duration::from_millis(500));
        lab_ensure!(!replies(&ping).is_empty(), "no answers before the change");

        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        let new_addr = Instant::now();
        lab.exec(
            Role::Client,
            &[
                "ip",
                "addr",
                "add",
                &format!("{NEW_CLIENT_ADDR}/24"),
                "dev",
                "c0",
            ],
        )?;
        let why = client.wait_line("roaming: no MOBIKE move", Duration::from_secs(15))?;
        lab_ensure!(why.text.contains(reason), "another reason: {why}");
        client.wait_line("network changed", Duration::from_secs(5))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let resumed = loop {
            if let Some(t) = replies(&ping).into_iter().find(|t| *t > new_addr) {
                break t;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "the ping did not resume within 30 s: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        println!(
            "mobike fallback: new outer address -> ping answered again in {} ms (a new IKE SA; {reason})",
            (resumed - new_addr).as_millis()
        );
        let out = client.stdout();
        lab_ensure!(
            out.iter().filter(|l| l.starts_with("connected")).count() == 2
                && !out.iter().any(|l| l.starts_with("roaming: moved")),
            "not negotiated again: {out:?}"
        );
        // A new IKE SA from the new address (the old one is gone or going).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sas = gw.list_sas()?;
            let fresh = sas.iter().any(|sa| {
                sa.get("remote-host") == NEW_CLIENT_ADDR
                    && sa.get("initiator-spi") != before[0]
                    && sa.installed_child().is_some()
            });
            if fresh {
                break;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "no new IKE SA from {NEW_CLIENT_ADDR}:\n{}",
                gw.list_sas_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ping.signal("INT")?;
        ping.exit_status(Duration::from_secs(5))?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}
