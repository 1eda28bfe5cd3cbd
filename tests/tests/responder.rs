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
