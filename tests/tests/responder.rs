//! Postern at both ends: `postern-helper up` against `postern-helper respond` (the
//! engine's responder role with the userspace datapath, the benchmark's Postern-side
//! gateway) instead of strongSwan. ESP in UDP (NAT-T forced) both ways: ping, iperf3
//! and a 16 MB transfer checked by SHA-256 in both directions from the client
//! namespace to the lan host, then SIGTERM
//! to both and nothing left in either namespace. The interop tests against strongSwan
//! are what count for the client; this keeps the responder (and with it the benchmark)
//! honest. Root only.

use std::time::Duration;

use postern_lab::config::LAN_HOST;
use postern_lab::postern::{exit, start_responder};
use postern_lab::{Lab, Role, Tunnel, lab_ensure, run_scenario};

#[test]
fn postern_against_its_own_responder() {
    let mut t = Tunnel::main_psk("own-responder");
    t.nat_traversal = Some("force".into());
    run_scenario("own-responder", |lab: &Lab| {
        // Device names only (a link's carrier may change meanwhile).
        let links = |lab: &Lab| -> postern_lab::Result<Vec<String>> {
            Ok(lab
                .exec(Role::Gw, &["ip", "-o", "link"])?
                .lines()
                .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
                .collect())
        };
        let links_before = links(lab)?;
        let responder = start_responder(lab, &t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        responder.wait_line(None, "datapath userspace", Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let up = postern_lab::bench::iperf3_dir(lab, Role::Client, None, LAN_HOST, 2, false)?;
        let down = postern_lab::bench::iperf3_dir(lab, Role::Client, None, LAN_HOST, 2, true)?;
        eprintln!("own responder: iperf3 {up:.0} Mbit/s up, {down:.0} Mbit/s down");
        lab_ensure!(up > 0.0 && down > 0.0, "no throughput: {up} / {down}");
        // The bytes themselves, both ways: through both ends' GRO and TSO.
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 16 << 20, false)?;
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 16 << 20, true)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        responder.wait_line(None, "closed by the peer", Duration::from_secs(10))?;
        let st = responder.exit_status(Duration::from_secs(10))?;
        lab_ensure!(st.success(), "the responder ended with {st}");
        let links_after = links(lab)?;
        lab_ensure!(
            links_after == links_before,
            "the responder left a device: {links_before:?} -> {links_after:?}"
        );
        Ok(())
    });
}

/// Issue 19: the default profile (`nat_traversal = "auto"`) on a NAT-free path, with
/// the userspace datapath (this kernel has no ESP), asks for UDP encapsulation and gets
/// it from a gateway that does NAT-T but forces nothing (Postern's responder: it
/// floats only because the client claims a NAT). Seen from both sides: the responder's
/// datapath is ESP in UDP, the client says which encapsulation and why.
#[test]
fn default_profile_gets_esp_in_udp_without_nat() {
    let t = Tunnel::main_psk("udp-default");
    lab_ensure_default(&t);
    run_scenario("udp-default", |lab: &Lab| {
        let responder = start_responder(lab, &t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let line = responder.wait_line(None, "datapath userspace", Duration::from_secs(10))?;
        lab_ensure!(
            !line.text.contains("raw-esp"),
            "the responder uses raw ESP: {}",
            line.text
        );
        let out = client.stdout();
        for want in [
            "encapsulation: asking for ESP in UDP",
            "encapsulation: ESP in UDP (port 4500): asked for by the userspace datapath",
        ] {
            lab_ensure!(
                out.iter().any(|l| l.starts_with(want)),
                "no line `{want}...`: {out:?}"
            );
        }
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        responder.wait_line(None, "closed by the peer", Duration::from_secs(10))?;
        Ok(())
    });
}

/// With NAT-T off, raw ESP (IP protocol 50) both ways, received in batches: ping, and
/// 16 MB each way checked by SHA-256 (through the batched receive and GRO at both ends).
#[test]
fn raw_esp_with_nat_traversal_off() {
    let mut t = Tunnel::main_psk("raw-esp");
    t.nat_traversal = Some("off".into());
    run_scenario("raw-esp", |lab: &Lab| {
        let responder = start_responder(lab, &t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        responder.wait_line(None, "datapath userspace raw-esp", Duration::from_secs(10))?;
        let out = client.stdout();
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("datapath userspace raw-esp"))
                && out.iter().any(
                    |l| l == "encapsulation: raw ESP (IP protocol 50): nat_traversal = \"off\""
                ),
            "the client does not say raw ESP and why: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 16 << 20, false)?;
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 16 << 20, true)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        responder.wait_line(None, "closed by the peer", Duration::from_secs(10))?;
        Ok(())
    });
}

/// The scenario above means the defaults: nothing set that a new user would not set.
fn lab_ensure_default(t: &Tunnel) {
    assert_eq!(t.nat_traversal, None, "not the default NAT-T setting");
    assert_eq!(t.datapath, None, "not the default datapath");
}
