//! IKEv2 EAP methods against a real strongSwan gateway (issue 18): EAP-TLS
//! (`auth.method = "eap-tls"`: the gateway proves itself with its certificate in
//! AUTH, the user with the lab PKI's client certificate inside EAP-TLS; strongSwan
//! `remote { auth = eap-tls }`, TLS 1.2 as its libtls negotiates by default), a pool
//! address and a ping through; a client certificate from a CA the gateway does not
//! trust refused in one sentence. Root only.

use std::time::{Duration, Instant};

use postern_lab::config::{CertSet, LAN_HOST, POOL_FIRST};
use postern_lab::pki::{CLIENT_DN, EC_CLIENT_DN, GW_NAME, Pki, lab_pki};
use postern_lab::postern::exit;
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

fn pki() -> &'static Pki {
    match lab_pki() {
        Ok(p) => p,
        Err(e) => panic!("cannot make the test certificates: {e}"),
    }
}

fn cert_set(gw: &str, ca: &str, client: &str) -> CertSet {
    let p = pki();
    CertSet {
        gw_cert: p.path(&format!("{gw}.pem")),
        gw_key: p.path(&format!("{gw}.key")),
        gw_cas: vec![p.path(ca)],
        client_ca: p.path(ca),
        client_cert: Some(p.path(&format!("{client}.pem"))),
        client_key: Some(p.path(&format!("{client}.key"))),
        client_pkcs12: None,
        client_crl: None,
    }
}

/// A certificate tunnel turned into EAP-TLS: the gateway's remote round is
/// `auth = eap-tls` instead of `pubkey`, the profile's method "eap-tls".
fn eap_tls(name: &str, client: &str, client_dn: &str) -> (Tunnel, String, String) {
    let t = Tunnel::main_psk(name)
        .ikev2()
        .signatures(
            cert_set("gw", "ca.pem", client),
            &format!("dn:{client_dn}"),
            &format!("fqdn:{GW_NAME}"),
        )
        .mode_config(true);
    let swanctl = t.gateway_swanctl();
    let from = "    remote {\n      auth = pubkey\n";
    assert!(swanctl.contains(from), "{swanctl}");
    let swanctl = swanctl.replace(from, "    remote {\n      auth = eap-tls\n");
    let profile = t.postern_profile();
    let from = "method = \"rsa-sig\"";
    assert!(profile.contains(from), "{profile}");
    let profile = profile.replace(from, "method = \"eap-tls\"");
    (t, swanctl, profile)
}

/// EAP-TLS with the lab's RSA client certificate: the gateway's log shows EAP-TLS
/// succeeded, the SA is IKEv2 with the client's DN, a pool address, ping through.
#[test]
fn ikev2_eap_tls_client_certificate() {
    let (t, swanctl, profile) = eap_tls("v2-eaptls", "client", CLIENT_DN);
    run_scenario("v2-eaptls", |lab: &Lab| {
        let gw = lab.start_gateway_as(&t, &swanctl)?;
        let start = Instant::now();
        let client = lab.start_postern_text("v2-eaptls", &profile)?;
        client.wait_connected()?;
        let took = start.elapsed();
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l == "xauth ok"),
            "no `xauth ok` line (EAP success): {out:?}"
        );
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with(&format!("mode-config {POOL_FIRST}"))),
            "no virtual IP: {out:?}"
        );
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(sa.get("version") == "2", "not IKEv2:\n{shown}");
        lab_ensure!(
            shown.contains("client.postern.lab"),
            "the gateway does not show the client's DN:\n{shown}"
        );
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.contains("EAP method EAP_TLS succeeded"),
            "the gateway's log has no EAP-TLS success:\n{}",
            gw.log_tail(40)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        println!("v2-eaptls: connected in {} ms", took.as_millis());
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// A gateway that allows TLS 1.3 (`libtls.version_max = 1.3`): Postern offers TLS 1.2
/// only (strongSwan 5.9's TLS 1.3 server signs its CertificateVerify with a scheme
/// rustls refuses), so EAP-TLS runs over 1.2 and connects. The setting is top-level in
/// strongswan.conf: the plugin-settings text closes `charon.plugins` and `charon`,
/// adds `libtls`, and reopens both (strongSwan merges sections of the same name).
#[test]
fn ikev2_eap_tls_with_a_gateway_allowing_tls13_runs_over_tls12() {
    let (t, swanctl, profile) = eap_tls("v2-eaptls13", "client", CLIENT_DN);
    let tls13 = "  }\n}\nlibtls {\n  version_max = 1.3\n}\ncharon {\n  plugins {";
    run_scenario("v2-eaptls13", |lab: &Lab| {
        let gw = lab.start_gateway_plugins(&t, &swanctl, tls13)?;
        let client = lab.start_postern_text("v2-eaptls13", &profile)?;
        client.wait_connected()?;
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.contains("negotiated TLS 1.2"),
            "the gateway's log does not show TLS 1.2:\n{}",
            gw.log_tail(60)
        );
        lab_ensure!(
            log.contains("EAP method EAP_TLS succeeded"),
            "the gateway's log has no EAP-TLS success:\n{}",
            gw.log_tail(40)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// A client certificate from a CA the gateway does not trust (the lab's ECDSA CA):
/// refused at once in one sentence, no CHILD_SA on the gateway.
#[test]
fn ikev2_eap_tls_client_certificate_from_another_ca_is_refused() {
    let (t, swanctl, profile) = eap_tls("v2-eaptls-ca", "ec-client", EC_CLIENT_DN);
    run_scenario("v2-eaptls-ca", |lab: &Lab| {
        let gw = lab.start_gateway_as(&t, &swanctl)?;
        let start = Instant::now();
        let client = lab.start_postern_text("v2-eaptls-ca", &profile)?;
        let code = client.exit_code(Duration::from_secs(30))?;
        let err = client.error_line().unwrap_or_default();
        let want = "the gateway refused our certificate in EAP-TLS";
        lab_ensure!(
            code == exit::AUTH_FAILED && err.contains(want),
            "exit {code} with {err:?}, expected {} with {want:?}; stderr {:?}",
            exit::AUTH_FAILED,
            client.stderr()
        );
        lab_ensure!(
            start.elapsed() < Duration::from_secs(15),
            "took {:?}",
            start.elapsed()
        );
        println!("v2-eaptls-ca: {err}");
        let sas = gw.list_sas()?;
        if sas.iter().any(|s| s.installed_child().is_some()) {
            lab_bail!("the gateway installed a CHILD_SA:\n{}", gw.list_sas_text());
        }
        Ok(())
    });
}

// ----- EAP-GTC against strongSwan ----------------------------------------------------

/// The client's address after the network change (the lab's outer /24).
const NEW_CLIENT_ADDR: &str = "192.0.2.3";

/// EAP-GTC with a one-time passcode: strongSwan `remote { auth = eap-gtc }` checks it
/// with its XAuth backend `generic` (`charon.plugins.eap-gtc.backend`, the `eap`
/// secret of the user), no PAM. The profile has no password; `postern-helper up` asks
/// for the passcode on its terminal (a pty made by `script`), connects, and after a
/// network change (MOBIKE off: a new negotiation) asks again: a passcode is never kept.
#[test]
fn ikev2_eap_gtc_passcode_asked_each_time() {
    use postern_lab::process::{Proc, Stream};
    let t = Tunnel::main_psk("v2-gtc")
        .ikev2()
        .xauth("alice", "gtc-8642-pass", "gtc-8642-pass")
        .mode_config(true);
    let swanctl = t.gateway_swanctl();
    let from = "auth = eap-mschapv2";
    assert!(swanctl.contains(from), "{swanctl}");
    let swanctl = swanctl.replace(from, "auth = eap-gtc");
    run_scenario("v2-gtc", |lab: &Lab| {
        let gw = lab.start_gateway_plugins(
            &t,
            &swanctl,
            "    eap-gtc {\n      backend = generic\n    }",
        )?;
        let profile = lab.write_profile(&t)?;
        let text = std::fs::read_to_string(&profile)?;
        let text = text.replace("password = \"gtc-8642-pass\"\n", "");
        let text = text.replace("[network]\n", "[network]\nmobike = false\n");
        lab_ensure!(
            !text.contains("gtc-8642-pass") && text.contains("mobike = false"),
            "profile not as expected:\n{text}"
        );
        std::fs::write(&profile, text)?;
        let helper = postern_lab::postern::helper_path()?;
        // The passcode typed twice (the pty keeps the second line until it is read);
        // the pipe stays open, bounded: 45 s.
        let line = format!(
            "(sleep 1; printf 'gtc-8642-pass\\r'; sleep 8; printf 'gtc-8642-pass\\r'; sleep 36) | script -qfec 'exec {} up {}' /dev/null",
            helper.display(),
            profile.display()
        );
        let mut cmd = lab.command(Role::Client, std::path::Path::new("sh"));
        cmd.args(["-c", &line]);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let up = Proc::spawn("postern-helper-gtc", cmd, Some(&lab.dir.join("pty.out")))?;
        lab.adopt(&up);
        let count = |p: &Proc, what: &str| {
            p.lines_of(Stream::Stdout)
                .iter()
                .filter(|l| l.starts_with(what))
                .count()
        };
        up.wait_line(Some(Stream::Stdout), "connected", Duration::from_secs(20))?;
        let asked = count(&up, "xauth: the gateway asks for passcode");
        lab_ensure!(
            asked == 1,
            "asked {asked} times: {:?}",
            up.lines_of(Stream::Stdout)
        );
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.contains("EAP method EAP_GTC succeeded"),
            "the gateway's log has no EAP-GTC success:\n{}",
            gw.log_tail(40)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&up, "connected") < 2 {
            lab_ensure!(
                Instant::now() < deadline,
                "not connected again: {:?}",
                up.lines_of(Stream::Stdout)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        let gtc = log.matches("EAP method EAP_GTC succeeded").count();
        lab_ensure!(gtc == 2, "{gtc} EAP-GTC successes in the gateway's log");
        let asked = count(&up, "xauth: the gateway asks for passcode");
        lab_ensure!(
            asked == 2,
            "the passcode was asked {asked} times (want 2: never kept): {:?}",
            up.lines_of(Stream::Stdout)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        let all = up.lines();
        lab_ensure!(
            !all.iter().any(|l| l.text.contains("gtc-8642-pass")),
            "the passcode was printed"
        );
        // The end: SIGTERM to the helper (found by its parent, `script`, by pid),
        // then to our process group (the feeding shell, script).
        let group = up.pid();
        let script = std::process::Command::new("pgrep")
            .args(["-P", &group.to_string()])
            .output()?;
        for spid in String::from_utf8_lossy(&script.stdout).split_whitespace() {
            let helper_pids = std::process::Command::new("pgrep")
                .args(["-x", "postern-helper", "-P", spid])
                .output()?;
            for hpid in String::from_utf8_lossy(&helper_pids.stdout).split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", hpid])
                    .status();
            }
        }
        let ended = up.wait_line(
            Some(Stream::Stdout),
            "disconnected",
            Duration::from_secs(15),
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{group}")])
            .status();
        ended?;
        Ok(())
    });
}
