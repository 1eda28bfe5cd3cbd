//! The IKEv2-only suites against strongSwan (swanctl `version = 2`): AES-GCM and
//! ChaCha20-Poly1305 as the IKE SA's cipher with a PRF and no integrity, curve25519
//! and ecp521 key exchanges, and curve25519 as the PFS group of a child rekey. Each
//! is checked on the gateway (`swanctl --list-sas`: the algorithms it agreed to) and
//! by a ping through the tunnel (the client's userspace datapath). Root only.

use std::time::Duration;

use postern_lab::config::LAN_HOST;
use postern_lab::postern::exit;
use postern_lab::wait::wait_for;
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

/// Connects with `ike`/`esp` on both sides and checks the gateway's IKE SA shows
/// `want` (key, value) pairs, then pings through and disconnects.
fn suite(scenario: &str, ike: &str, esp: &str, want: &[(&str, &str)]) {
    let t = Tunnel::main_psk(scenario)
        .ikev2()
        .mode_config(true)
        .proposals(&[ike], &[esp]);
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(sa.get("version") == "2", "not IKEv2:\n{shown}");
        for (k, v) in want {
            lab_ensure!(sa.get(k) == *v, "{k} is not {v}:\n{shown}");
        }
        // AEAD: strongSwan shows no integrity algorithm for the IKE SA.
        if ike.contains("gcm") || ike.contains("chacha") {
            lab_ensure!(
                sa.get("integ-alg").is_empty(),
                "an integrity algorithm:\n{shown}"
            );
        }
        lab_ensure!(
            sa.installed_child().is_some(),
            "no installed child:\n{shown}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// strongSwan's newer default style: AES-256-GCM with PRF SHA-384 on curve25519.
#[test]
fn ikev2_aes256gcm16_prfsha384_x25519() {
    suite(
        "v2s-gcm",
        "aes256gcm16-prfsha384-x25519",
        "aes256gcm16",
        &[
            ("encr-alg", "AES_GCM_16"),
            ("encr-keysize", "256"),
            ("prf-alg", "PRF_HMAC_SHA2_384"),
            ("dh-group", "CURVE_25519"),
        ],
    );
}

/// CBC + HMAC on ecp521 (RFC 5903 group 21).
#[test]
fn ikev2_aes128_sha256_ecp521() {
    suite(
        "v2s-ecp521",
        "aes128-sha256-ecp521",
        "aes128-sha256",
        &[
            ("encr-alg", "AES_CBC"),
            ("integ-alg", "HMAC_SHA2_256_128"),
            ("dh-group", "ECP_521"),
        ],
    );
}

/// ChaCha20-Poly1305 (RFC 7634) for the IKE SA, AES-GCM for ESP.
#[test]
fn ikev2_chacha20poly1305_prfsha256_curve25519() {
    suite(
        "v2s-chacha",
        "chacha20poly1305-prfsha256-curve25519",
        "aes128gcm16",
        &[
            ("encr-alg", "CHACHA20_POLY1305"),
            ("prf-alg", "PRF_HMAC_SHA2_256"),
            ("dh-group", "CURVE_25519"),
        ],
    );
}

/// AES-GCM with the 8 octet ICV (ENCR_AES_GCM_8) and AES-128.
#[test]
fn ikev2_aes128gcm8_prfsha256_ecp256() {
    suite(
        "v2s-gcm8",
        "aes128gcm8-prfsha256-ecp256",
        "aes128-sha256",
        &[
            ("encr-alg", "AES_GCM_8"),
            ("encr-keysize", "128"),
            ("dh-group", "ECP_256"),
        ],
    );
}

/// ESP `aes256gcm16-x25519`: the child rekeys at 85 % of 20 s with a curve25519 key
/// exchange (CREATE_CHILD_SA with KE), and a ping crosses the new child.
#[test]
fn ikev2_child_rekey_with_x25519_pfs() {
    let t = Tunnel::main_psk("v2s-pfs")
        .ikev2()
        .mode_config(true)
        .proposals(&["aes256gcm16-prfsha384-x25519"], &["aes256gcm16"])
        .gateway_proposals(&["aes256gcm16-prfsha384-x25519"], &["aes256gcm16-x25519"])
        .pfs("curve25519")
        .lifetimes(3600, 20);
    run_scenario("v2s-pfs", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let first = gw.wait_established(Duration::from_secs(10))?;
        let first_spi = first
            .installed_child()
            .map(|c| c.get("spi-in").to_string())
            .unwrap_or_default();
        // The rekey is due at 17 s: wait up to 30 s for the second child.
        wait_for(
            "the child rekeyed with PFS",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let n = client
                    .stdout()
                    .iter()
                    .filter(|l| l.starts_with("phase2 established"))
                    .count();
                Ok((n >= 2).then_some(()))
            },
        )?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        let Some(child) = sa.installed_child() else {
            lab_bail!("no installed child after the rekey:\n{shown}")
        };
        lab_ensure!(
            child.get("spi-in") != first_spi,
            "the child was not rekeyed:\n{shown}"
        );
        lab_ensure!(
            child.get("dh-group") == "CURVE_25519",
            "the rekeyed child has no curve25519 PFS:\n{shown}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        lab_ensure!(
            client.error_line().is_none(),
            "the client failed: {:?}",
            client.stderr()
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

// ----- ECDSA P-521 certificates ---------------------------------------------------

use postern_lab::config::{CLIENT_VIP, CertSet};
use postern_lab::pki::{EC521_CLIENT_DN, EC521_GW_NAME, lab_pki};

/// ECDSA P-521 certificates on both sides (strongSwan `auth = pubkey`; RFC 7427
/// ecdsa-with-SHA512 both ways), with AES-GCM on ecp521, ping through.
#[test]
fn ikev2_ecdsa_p521_certificates() {
    let p = match lab_pki() {
        Ok(p) => p,
        Err(e) => panic!("cannot make the test certificates: {e}"),
    };
    let set = CertSet {
        gw_cert: p.path("ec521-gw.pem"),
        gw_key: p.path("ec521-gw.key"),
        gw_cas: vec![p.path("ec521-ca.pem")],
        client_ca: p.path("ec521-ca.pem"),
        client_cert: Some(p.path("ec521-client.pem")),
        client_key: Some(p.path("ec521-client.key")),
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("v2s-p521")
        .ikev2()
        .signatures(
            set,
            &format!("dn:{EC521_CLIENT_DN}"),
            &format!("fqdn:{EC521_GW_NAME}"),
        )
        .proposals(&["aes256gcm16-prfsha512-ecp521"], &["aes256gcm16"]);
    run_scenario("v2s-p521", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(
            sa.get("remote-id") == EC521_CLIENT_DN && sa.get("dh-group") == "ECP_521",
            "not the P-521 client on ecp521:\n{shown}"
        );
        let out = client.stdout();
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("phase2 established") && l.contains(CLIENT_VIP)),
            "no child for {CLIENT_VIP}: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

// ----- RSASSA-PSS from the gateway -----------------------------------------------

use postern_lab::pki::{CLIENT_DN, GW_NAME};

/// The gateway signs its AUTH with RSASSA-PSS (swanctl `local { auth =
/// rsa/pss-sha256 }`: RFC 7427 with id-RSASSA-PSS, SHA-256, salt 32); the client
/// verifies it (and signs with PKCS#1 v1.5, which the gateway's `auth = pubkey` takes).
#[test]
fn ikev2_gateway_signs_with_rsa_pss() {
    let p = match lab_pki() {
        Ok(p) => p,
        Err(e) => panic!("cannot make the test certificates: {e}"),
    };
    let set = CertSet {
        gw_cert: p.path("gw.pem"),
        gw_key: p.path("gw.key"),
        gw_cas: vec![p.path("ca.pem")],
        client_ca: p.path("ca.pem"),
        client_cert: Some(p.path("client.pem")),
        client_key: Some(p.path("client.key")),
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("v2s-pss").ikev2().signatures(
        set,
        &format!("dn:{CLIENT_DN}"),
        &format!("fqdn:{GW_NAME}"),
    );
    let plain = t.gateway_swanctl();
    let from = "auth = pubkey\n      certs = gw.pem";
    assert!(plain.contains(from), "{plain}");
    let swanctl = plain.replacen(from, "auth = rsa/pss-sha256\n      certs = gw.pem", 1);
    run_scenario("v2s-pss", |lab: &Lab| {
        let gw = lab.start_gateway_as(&t, &swanctl)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(
            sa.installed_child().is_some(),
            "no installed child:\n{shown}"
        );
        // The gateway did sign with PSS (its log names the scheme).
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.lines()
                .any(|l| l.contains("(myself) with RSA_EMSA_PSS_SHA2_256")
                    && l.contains("successful")),
            "the gateway did not sign with RSASSA-PSS:\n{}",
            gw.log_tail(20)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}
