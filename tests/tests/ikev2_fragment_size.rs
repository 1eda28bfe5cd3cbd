//! `network.ike_fragment_size` with IKEv2 against a real strongSwan gateway: a
//! certificate profile with a fragment size of 500 bytes sends its IKE_AUTH request
//! (certificate, CERTREQ, signature) in RFC 7383 fragments of at most 500 bytes, and
//! strongSwan's log shows it reassembled them; the tunnel comes up and a ping crosses.
//! Root only.

use std::time::Duration;

use postern_lab::config::{CertSet, LAN_HOST, POOL_FIRST};
use postern_lab::pki::{CLIENT_DN, GW_NAME, lab_pki};
use postern_lab::postern::exit;
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

#[test]
fn ikev2_client_sends_fragments() {
    let p = match lab_pki() {
        Ok(p) => p,
        Err(e) => panic!("cannot make the test certificates: {e}"),
    };
    let certs = CertSet {
        gw_cert: p.path("gw.pem"),
        gw_key: p.path("gw.key"),
        gw_cas: vec![p.path("ca.pem")],
        client_ca: p.path("ca.pem"),
        client_cert: Some(p.path("client.pem")),
        client_key: Some(p.path("client.key")),
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("v2-fragsz")
        .ikev2()
        .signatures(
            certs,
            &format!("dn:{CLIENT_DN}"),
            &format!("fqdn:{GW_NAME}"),
        )
        .mode_config(true);
    run_scenario("v2-fragsz", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let text = t.postern_profile();
        lab_ensure!(
            text.contains("\n[network]\n"),
            "the lab profile has no [network] table:\n{text}"
        );
        let profile = text.replacen("\n[network]\n", "\n[network]\nike_fragment_size = 500\n", 1);
        let client = lab.start_postern_text("v2-fragsz", &profile)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        let got: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("received fragment"))
            .collect();
        if got.len() < 2 {
            lab_bail!(
                "the gateway received no fragments from us: {}",
                gw.log_tail(40)
            );
        }
        lab_ensure!(
            log.lines()
                .any(|l| l.contains("reassembled fragmented IKE message")),
            "the gateway did not reassemble our fragments: {}",
            gw.log_tail(40)
        );
        // Each fragment fits the size: strongSwan logs the datagram sizes it received.
        let sizes: Vec<usize> = log
            .lines()
            .filter(|l| l.contains("received packet: from") && l.contains("bytes)"))
            .filter_map(|l| {
                let inside = l.rsplit_once('(')?.1;
                inside.split_whitespace().next()?.parse().ok()
            })
            .collect();
        lab_ensure!(
            sizes.iter().all(|s| s + 28 <= 500),
            "a datagram from us was above 500 bytes with its headers: {sizes:?}"
        );
        eprintln!("v2-fragsz: {} fragment lines, sizes {sizes:?}", got.len());
        let out = client.stdout();
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with(&format!("mode-config {POOL_FIRST}"))),
            "no pool address: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}
