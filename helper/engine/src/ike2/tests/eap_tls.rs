//! EAP-TLS in IKE_AUTH on the `Pair` (`Config::eap_tls`): our first IKE_AUTH carries
//! no certificate and no AUTH (our certificate goes inside EAP-TLS), the gateway's
//! certificate is still checked from its AUTH, and a gateway that offers another EAP
//! method is answered with a Nak naming EAP-TLS and refused in one sentence. (The
//! TLS handshake itself is tested against rustls in `eap/tls_tests.rs` and against
//! strongSwan in `tests/tests/ikev2_eap.rs`.)

use std::sync::Arc;

use zeroize::Zeroizing;

use super::*;
use crate::cert::PrivateKey;
use crate::cert::tests::{cert, fixture, in_2030};
use crate::ike::{Auth, Certs, XAuthServer};

#[allow(clippy::disallowed_methods)] // the Pair's clock starts at a real instant
fn clock() -> Option<(Instant, std::time::SystemTime)> {
    Some((Instant::now(), in_2030()))
}

fn certs(key: Option<&str>, chain: &str, trusted: &str) -> Auth {
    Auth::Signature(Arc::new(Certs {
        key: key.map(|k| PrivateKey::parse(&fixture(k), None).unwrap()),
        chain: vec![cert(chain)],
        trusted: vec![cert(trusted)],
        crls: Vec::new(),
    }))
}

/// Client alice with EAP-TLS; a gateway (gw.example) whose EAP server speaks
/// MS-CHAPv2 only.
fn tls_configs() -> (Config, Config) {
    let (mut c, mut s) = configs(
        &["aes128-sha256-modp2048"],
        &["aes128-sha256-modp2048"],
        b"shared secret",
    );
    c.auth = certs(Some("client.key"), "client.pem", "ca.pem");
    c.eap_tls = true;
    c.local_id = Some(Identity::user_fqdn("alice@example.com"));
    c.wall_clock = clock();
    s.auth = certs(Some("gw.key"), "gw.pem", "ca.pem");
    s.xauth_server = Some(XAuthServer {
        username: "alice".into(),
        password: Zeroizing::new("pw".to_string()),
        passcode: None,
    });
    s.remote_id = None;
    s.wall_clock = clock();
    (c, s)
}

#[test]
fn eap_tls_sends_no_certificate_in_ike_and_naks_other_methods() {
    let (c, s) = tls_configs();
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client gives up");
    assert_eq!(
        e.to_string(),
        "authentication failed (the gateway asks for EAP method 26, which Postern does not speak)"
    );
    // Our first IKE_AUTH: identity and CERTREQ, no CERT, no AUTH.
    let data = p
        .sent_to_gateway
        .iter()
        .find(|d| Message::decode(d).is_ok_and(|m| m.header.exchange == exchange::IKE_AUTH))
        .expect("an IKE_AUTH request");
    let msg = Message::decode(data).unwrap();
    let k = p.client.keys.as_ref().unwrap();
    let payloads: Vec<Payload> = k
        .open(data, &msg, true)
        .unwrap()
        .payloads
        .into_iter()
        .map(|d| d.payload)
        .collect();
    assert!(!payloads.iter().any(|p| matches!(p, Payload::Cert { .. })));
    assert!(!payloads.iter().any(|p| matches!(p, Payload::Auth { .. })));
    assert!(
        payloads
            .iter()
            .any(|p| matches!(p, Payload::CertReq { .. }))
    );
    // Nothing was asked of the user.
    assert!(
        !p.client_events
            .iter()
            .any(|e| matches!(e, Event::CredentialsRequired(_)))
    );
}

#[test]
fn eap_tls_with_a_gateway_certificate_from_another_ca_is_refused_before_eap() {
    let (mut c, s) = tls_configs();
    c.auth = certs(Some("client.key"), "client.pem", "other-ca.pem");
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client refuses");
    assert!(e.to_string().starts_with("certificate refused: "), "{e}");
}

#[test]
fn eap_tls_needs_our_key_and_no_xauth() {
    let (mut c, _) = tls_configs();
    c.auth = certs(None, "client.pem", "ca.pem");
    let local: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let remote: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let rng = Box::new(test_rng(1));
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let Err(e) = Ike2::initiate(c, local, remote, now, rng) else {
        panic!("EAP-TLS without our key was accepted");
    };
    assert!(
        e.to_string()
            .contains("EAP-TLS needs our certificate and private key"),
        "{e}"
    );
}
