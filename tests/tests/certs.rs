//! Certificate scenarios against a real strongSwan gateway (issue 6): RSA signatures in
//! main and aggressive mode, an intermediate CA that only the gateway's CERT payloads
//! carry, hybrid authentication (gateway certificate + XAuth), ECDSA P-256, and the
//! refusals (gateway certificate from another CA, expired, gateway ID that the
//! certificate does not name). Certificates are made at test time with strongSwan's
//! `pki` (postern_lab::pki). Root only, like interop.rs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_lab::config::{CertSet, LAN_HOST, LAN_NET, POOL_DNS, POOL_FIRST};
use postern_lab::pki::{
    CLIENT_DN, EC_CLIENT_DN, EC_GW_NAME, GW_NAME, P12_PASSPHRASE, Pki, lab_pki,
};
use postern_lab::postern::exit;
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

fn pki() -> &'static Pki {
    match lab_pki() {
        Ok(p) => p,
        Err(e) => panic!("cannot make the test certificates: {e}"),
    }
}

/// RSA: the gateway's certificate from the lab root, the client's too.
fn rsa_set(gw_cert: &str, gw_cas: &[&str]) -> CertSet {
    let p = pki();
    CertSet {
        gw_cert: p.path(gw_cert),
        gw_key: p.path("gw.key"),
        gw_cas: gw_cas.iter().map(|c| p.path(c)).collect::<Vec<PathBuf>>(),
        client_ca: p.path("ca.pem"),
        client_cert: Some(p.path("client.pem")),
        client_key: Some(p.path("client.key")),
        client_pkcs12: None,
        client_crl: None,
    }
}

fn client_id() -> String {
    format!("dn:{CLIENT_DN}")
}

fn gw_id() -> String {
    format!("fqdn:{GW_NAME}")
}

/// Connects, checks both sides, pings, disconnects.
fn connects(scenario: &str, t: Tunnel, want_remote_id: &str) {
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase1 established")),
            "no `phase1 established` line: {out:?}"
        );
        if t.xauth.is_some() {
            lab_ensure!(
                out.iter().any(|l| l == "xauth ok"),
                "no `xauth ok` line: {out:?}"
            );
        }
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(sa.get("version") == "1", "not IKEv1:\n{shown}");
        lab_ensure!(
            sa.get("remote-id") == want_remote_id,
            "the gateway sees the client as {:?}, expected {want_remote_id:?}:\n{shown}",
            sa.get("remote-id")
        );
        lab_ensure!(
            sa.installed_child().is_some(),
            "no INSTALLED CHILD_SA on the gateway:\n{shown}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// A client that must be refused: exit code 3 and an error line naming the cause,
/// within 40 s, and no CHILD_SA on the gateway.
fn refused(scenario: &str, t: Tunnel, want_msgs: &[&str]) {
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let start = Instant::now();
        let client = lab.start_postern(&t)?;
        let code = client.exit_code(Duration::from_secs(40))?;
        let took = start.elapsed();
        let err = client.error_line().unwrap_or_default();
        lab_ensure!(
            code == exit::AUTH_FAILED,
            "exit code {code}, expected {}; stderr: {:?}",
            exit::AUTH_FAILED,
            client.stderr()
        );
        for want in want_msgs {
            lab_ensure!(
                err.contains(want),
                "expected `{want}` in the error line, got {err:?}"
            );
        }
        lab_ensure!(took < Duration::from_secs(40), "took {took:?}");
        let sas = gw.list_sas()?;
        if sas.iter().any(|s| s.installed_child().is_some()) {
            lab_bail!("the gateway installed a CHILD_SA:\n{}", gw.list_sas_text());
        }
        Ok(())
    });
}

#[test]
fn main_mode_rsa_signatures() {
    let t = Tunnel::main_psk("cert-main").signatures(
        rsa_set("gw.pem", &["ca.pem"]),
        &client_id(),
        &gw_id(),
    );
    connects("cert-main", t, CLIENT_DN);
}

/// The client trusts only the root; the intermediate comes in the gateway's CERT payloads.
#[test]
fn intermediate_ca_from_cert_payloads() {
    let t = Tunnel::main_psk("cert-inter").signatures(
        rsa_set("gw-inter.pem", &["ca.pem", "inter.pem"]),
        &client_id(),
        &gw_id(),
    );
    connects("cert-inter", t, CLIENT_DN);
}

#[test]
fn aggressive_mode_rsa_signatures() {
    let mut t = Tunnel::main_psk("cert-aggr").signatures(
        rsa_set("gw.pem", &["ca.pem"]),
        &client_id(),
        &gw_id(),
    );
    t.aggressive = true;
    connects("cert-aggr", t, CLIENT_DN);
}

/// Cisco-style hybrid: the gateway signs, the user logs in with XAuth; Mode Config
/// gives the address, DNS and split network.
#[test]
fn hybrid_gateway_certificate_and_xauth() {
    let p = pki();
    let set = CertSet {
        gw_cert: p.path("gw.pem"),
        gw_key: p.path("gw.key"),
        gw_cas: vec![p.path("ca.pem")],
        client_ca: p.path("ca.pem"),
        client_cert: None,
        client_key: None,
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("cert-hybrid")
        .hybrid(set, "fqdn:laptop.postern.lab", &gw_id())
        .xauth("alice", "alice-pass-71", "alice-pass-71")
        .mode_config(true);
    run_scenario("cert-hybrid", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l == "xauth ok"),
            "no `xauth ok` line: {out:?}"
        );
        let want = format!("mode-config {POOL_FIRST} dns {POOL_DNS} split {LAN_NET}");
        lab_ensure!(
            out.iter().any(|l| l.starts_with(&want)),
            "no line starting `{want}`: {out:?}"
        );
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(
            shown.contains("alice"),
            "the gateway does not show the XAuth identity:\n{shown}"
        );
        lab_ensure!(
            sa.installed_child().is_some(),
            "no INSTALLED CHILD_SA on the gateway:\n{shown}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

#[test]
fn ecdsa_p256_certificates() {
    let p = pki();
    let set = CertSet {
        gw_cert: p.path("ec-gw.pem"),
        gw_key: p.path("ec-gw.key"),
        gw_cas: vec![p.path("ec-ca.pem")],
        client_ca: p.path("ec-ca.pem"),
        client_cert: Some(p.path("ec-client.pem")),
        client_key: Some(p.path("ec-client.key")),
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("cert-ecdsa").signatures(
        set,
        &format!("dn:{EC_CLIENT_DN}"),
        &format!("fqdn:{EC_GW_NAME}"),
    );
    connects("cert-ecdsa", t, EC_CLIENT_DN);
}

#[test]
fn gateway_certificate_from_another_ca_is_refused() {
    let t = Tunnel::main_psk("cert-otherca").signatures(
        rsa_set("gw-other.pem", &["other-ca.pem", "ca.pem"]),
        &client_id(),
        &gw_id(),
    );
    refused(
        "cert-otherca",
        t,
        &["certificate refused", "Other CA", "neither a trusted CA"],
    );
}

#[test]
fn expired_gateway_certificate_is_refused() {
    let t = Tunnel::main_psk("cert-expired").signatures(
        rsa_set("gw-expired.pem", &["ca.pem"]),
        &client_id(),
        &gw_id(),
    );
    refused("cert-expired", t, &["certificate refused", "expired on"]);
}

/// The profile names the gateway `vpn.elsewhere.lab`; the gateway's certificate (and
/// the ID it proves with it) says `gw.postern.lab`. (A strongSwan gateway cannot be made
/// to send an ID its certificate lacks: it finds no key for it and refuses to sign.)
#[test]
fn gateway_id_other_than_the_profile_expects_is_refused() {
    let t = Tunnel::main_psk("cert-badid")
        .signatures(rsa_set("gw.pem", &["ca.pem"]), &client_id(), &gw_id())
        .expect_gateway_id("fqdn:vpn.elsewhere.lab");
    refused("cert-badid", t, &["gw.postern.lab", "vpn.elsewhere.lab"]);
}

/// The client's key and certificate from a PKCS#12 bundle with a passphrase (the root
/// CA inside it is not sent; the profile's `ca` is the trust anchor).
#[test]
fn pkcs12_bundle_with_passphrase() {
    let p = pki();
    let mut set = rsa_set("gw.pem", &["ca.pem"]);
    set.client_cert = None;
    set.client_key = None;
    set.client_pkcs12 = Some((p.path("client.p12"), P12_PASSPHRASE.to_string()));
    let t = Tunnel::main_psk("cert-p12").signatures(set, &client_id(), &gw_id());
    connects("cert-p12", t, CLIENT_DN);
}

/// The profile gives the CA's CRL, which revokes the gateway's certificate.
#[test]
fn revoked_gateway_certificate_is_refused() {
    let mut set = rsa_set("gw-revoked.pem", &["ca.pem"]);
    set.client_crl = Some(pki().path("ca.crl"));
    let t = Tunnel::main_psk("cert-revoked").signatures(set, &client_id(), &gw_id());
    refused("cert-revoked", t, &["certificate refused", "revoked"]);
}
