//! Laptop life against a real strongSwan gateway: the client's outer address replaced
//! while a ping runs through the tunnel (the helper follows rtnetlink and negotiates
//! again at once from the new address, asking Mode Config for the same inner address).
//!
//! Prints the time from the new address to the first ping answer through the tunnel
//! (the README's figure); no timed assertion beyond a generous bound. Root only.

use std::path::Path;
use std::time::{Duration, Instant};

use postern_lab::config::{LAN_HOST, POOL_FIRST};
use postern_lab::postern::exit;
use postern_lab::process::{Proc, Stream};
use postern_lab::{Lab, Role, Tunnel, lab_ensure, run_scenario};

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

#[test]
fn outer_address_replaced_while_pinging() {
    let t = Tunnel::main_psk("roam-addr")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .dpd(10, 30);
    run_scenario("roam-addr", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;

        // A ping through the tunnel for the whole scenario (bounded: 60 s).
        let mut cmd = lab.command(Role::Client, Path::new("ping"));
        cmd.args(["-n", "-i", "0.05", "-W", "1", "-w", "60", LAN_HOST]);
        let ping = Proc::spawn("ping", cmd, Some(&lab.dir.join("ping.out")))?;
        lab.adopt(&ping);
        std::thread::sleep(Duration::from_millis(500));
        lab_ensure!(!replies(&ping).is_empty(), "no answers before the change");

        // Another network: the old address goes, a new one comes (the gateway's link
        // and route stay as they were).
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
        let changed = client.wait_line("network changed", Duration::from_secs(5))?;
        lab_ensure!(
            changed.text.contains(NEW_CLIENT_ADDR),
            "the change does not name the new address: {changed}"
        );
        // Traffic again: the first answer after the new address.
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
        let took = resumed - new_addr;
        let connected = client
            .stdout()
            .iter()
            .filter(|l| l.starts_with("connected"))
            .count();
        println!(
            "roaming figure: new outer address -> ping answered through the tunnel again in {} ms (userspace datapath, XAuth + Mode Config, veth link)",
            took.as_millis()
        );
        let out = client.stdout();
        lab_ensure!(connected >= 2, "no second `connected`: {out:?}");
        // Negotiated from the new address, the same inner address given back.
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("connecting") && l.contains(NEW_CLIENT_ADDR)),
            "no negotiation from {NEW_CLIENT_ADDR}: {out:?}"
        );
        let mode_configs: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("mode-config"))
            .collect();
        lab_ensure!(
            mode_configs.len() >= 2
                && mode_configs
                    .iter()
                    .all(|l| l.starts_with(&format!("mode-config {POOL_FIRST} "))),
            "the inner address changed: {mode_configs:?}"
        );
        // The gateway sees the tunnel from the new address.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = gw.list_sas_text();
            if shown.contains(NEW_CLIENT_ADDR) && shown.contains("INSTALLED") {
                break;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "the gateway has no tunnel from {NEW_CLIENT_ADDR}:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}
