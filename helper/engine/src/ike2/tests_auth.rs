//! IKE_AUTH with certificates (RFC 7296 §2.15, RFC 7427) and with EAP (§2.16): a
//! `Pair` of two engines, both roles signing (RSA and ECDSA), the refusals (a CA we do
//! not trust, an identity the certificate does not name), and EAP-MSCHAPv2/GTC
//! against the responder's minimal EAP server (profile password, prompt, wrong
//! password, hybrid = gateway certificate + EAP).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::*;
use crate::cert::tests::{cert, fixture, in_2030};
use crate::cert::{CertError, PrivateKey};
use crate::ike::{
    Auth, Certs, Credentials, CredentialsRequest, XAuthConfig, XAuthField, XAuthServer,
};
use crate::ike2::auth::{self, method};

fn key(name: &str) -> PrivateKey {
    PrivateKey::parse(&fixture(name), None).unwrap()
}

#[allow(clippy::disallowed_methods)] // the Pair's clock starts at a real instant
fn clock() -> Option<(Instant, std::time::SystemTime)> {
    Some((Instant::now(), in_2030()))
}

fn certs(key_file: Option<&str>, chain: &[&str], trusted: &[&str]) -> Auth {
    Auth::Signature(Arc::new(Certs {
        key: key_file.map(key),
        chain: chain.iter().map(|c| cert(c)).collect(),
        trusted: trusted.iter().map(|c| cert(c)).collect(),
        crls: Vec::new(),
    }))
}

/// Client alice (RSA) and gateway gw.example (RSA), both under the test root.
fn sig_configs() -> (Config, Config) {
    let (mut c, mut s) = configs(
        &["aes128-sha256-modp2048"],
        &["aes128-sha256-modp2048"],
        b"shared secret",
    );
    c.auth = certs(Some("client.key"), &["client.pem"], &["ca.pem"]);
    c.local_id = Some(Identity::user_fqdn("alice@example.com"));
    c.wall_clock = clock();
    s.auth = certs(Some("gw.key"), &["gw.pem"], &["ca.pem"]);
    s.remote_id = None;
    s.wall_clock = clock();
    (c, s)
}

/// The client's IKE_AUTH request, opened with the client's keys.
fn client_auth_request(p: &Pair) -> Vec<Payload> {
    let data = p
        .sent_to_gateway
        .iter()
        .find(|d| Message::decode(d).is_ok_and(|m| m.header.exchange == exchange::IKE_AUTH))
        .expect("an IKE_AUTH request");
    let msg = Message::decode(data).unwrap();
    let k = p.client.keys.as_ref().unwrap();
    k.open(data, &msg, true)
        .unwrap()
        .payloads
        .into_iter()
        .map(|d| d.payload)
        .collect()
}

fn connected(p: &Pair) {
    assert!(
        p.established(),
        "client {:?}\ngateway {:?}",
        p.client_events,
        p.gateway_events
    );
    check_children_mirror(p);
}

#[test]
fn rsa_certificates_both_roles_with_rfc7427_signatures() {
    // Unfragmented, so the request can be read whole below
    // (`certificates_go_in_fragments` has them fragmented).
    let (mut c, mut s) = sig_configs();
    c.fragmentation = false;
    s.fragmentation = false;
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    connected(&p);
    assert_eq!(
        p.gateway.phase1().unwrap().peer_id,
        Identity::user_fqdn("alice@example.com")
    );
    // Both announced SHA-2 hashes: method 14 with sha256WithRSAEncryption; our
    // certificate and a CERTREQ naming the root by its key's SHA-1 go with it.
    let req = client_auth_request(&p);
    let (m, data) = req
        .iter()
        .find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(m, method::DIGITAL_SIGNATURE);
    assert_eq!(hex::encode(&data[..16]), "0f300d06092a864886f70d01010b0500");
    assert!(req.iter().any(|p| matches!(p,
        Payload::Cert { encoding: 4, data } if *data == cert("client.pem").der())));
    let want_req = crate::crypto::hash(HashAlg::Sha1, &[&cert("ca.pem").spki_der()]);
    assert!(req.iter().any(|p| matches!(p,
        Payload::CertReq { encoding: 4, data } if *data == want_req)));
}

#[test]
fn ecdsa_gateway_certificate_and_rsa_client() {
    let (mut c, mut s) = sig_configs();
    c.auth = certs(Some("client.key"), &["client.pem"], &["ec-ca.pem"]);
    c.remote_id = Some(Identity::fqdn("ec-gw.example"));
    s.auth = certs(Some("ec-gw.key"), &["ec-gw.pem"], &["ca.pem"]);
    s.local_id = Some(Identity::fqdn("ec-gw.example"));
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    connected(&p);
}

#[test]
fn classic_signature_methods_without_rfc7427() {
    let mut rng = crate::crypto::test_rng(5);
    let octets = b"the octets an IKE_AUTH signs";
    for (file, cert_file, want) in [
        ("client.key", "client.pem", method::RSA),
        ("ec-gw.key", "ec-gw.pem", method::ECDSA_256),
    ] {
        let k = key(file);
        let public = cert(cert_file).public_key().unwrap();
        // No SIGNATURE_HASH_ALGORITHMS from the peer: the key's classic method.
        let (m, sig) = auth::sign(&k, octets, &[], &mut rng).unwrap();
        assert_eq!(m, want);
        assert_eq!(auth::verify(&public, m, &sig, octets), Ok(true));
        assert_eq!(auth::verify(&public, m, &sig, b"other octets"), Ok(false));
        // RFC 7427 with each SHA-2.
        for h in [
            auth::hash::SHA2_256,
            auth::hash::SHA2_384,
            auth::hash::SHA2_512,
        ] {
            let (m, sig) = auth::sign(&k, octets, &[h], &mut rng).unwrap();
            assert_eq!(m, method::DIGITAL_SIGNATURE);
            assert_eq!(auth::verify(&public, m, &sig, octets), Ok(true));
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_ne!(auth::verify(&public, m, &bad, octets), Ok(true));
        }
    }
    // A method that does not fit the key, truncations and P-521: refused, no panic.
    let rsa = cert("client.pem").public_key().unwrap();
    assert!(auth::verify(&rsa, method::ECDSA_256, &[0; 64], octets).is_err());
    assert!(auth::verify(&rsa, method::ECDSA_521, &[0; 132], octets).is_err());
    let (_, sig) = auth::sign(&key("client.key"), octets, &[2], &mut rng).unwrap();
    for n in 0..sig.len() {
        assert_ne!(
            auth::verify(&rsa, method::DIGITAL_SIGNATURE, &sig[..n], octets),
            Ok(true)
        );
    }
}

#[test]
fn gateway_certificate_from_an_untrusted_ca_is_refused() {
    let (mut c, s) = sig_configs();
    c.auth = certs(Some("client.key"), &["client.pem"], &["other-ca.pem"]);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client refuses");
    assert!(
        matches!(e, Error::Certificate(CertError::UntrustedIssuer { .. })),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("certificate refused: "), "{e}");
    assert!(!p.client.is_established());
    // The gateway, up after its reply, is told by a DELETE.
    assert!(p.gateway.is_dead(), "{:?}", p.gateway_events);
    assert!(
        p.gateway_events
            .iter()
            .any(|e| matches!(e, Event::Phase1Deleted))
    );
}

#[test]
fn gateway_identity_the_certificate_does_not_name_is_refused() {
    let (mut c, mut s) = sig_configs();
    c.remote_id = Some(Identity::fqdn("evil.example"));
    s.local_id = Some(Identity::fqdn("evil.example"));
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client refuses");
    assert!(
        matches!(e, Error::Certificate(CertError::IdMismatch { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("fqdn:evil.example"), "{e}");
}

#[test]
fn client_certificate_the_gateway_does_not_trust_is_refused() {
    let (c, mut s) = sig_configs();
    s.auth = certs(Some("gw.key"), &["gw.pem"], &["other-ca.pem"]);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(matches!(
        Pair::failure(&p.gateway_events),
        Some(Error::Certificate(CertError::UntrustedIssuer { .. }))
    ));
    let e = Pair::failure(&p.client_events).expect("the client is told");
    assert!(matches!(e, Error::AuthenticationFailed(_)), "{e:?}");
}

// ----- EAP ------------------------------------------------------------------------

fn eap_configs(client_pw: Option<&str>, gw_pw: &str) -> (Config, Config) {
    let (mut c, mut s) = configs(
        &["aes128-sha256-modp2048"],
        &["aes128-sha256-modp2048"],
        b"shared secret",
    );
    c.xauth = Some(XAuthConfig {
        username: "alice".into(),
        password: client_pw.map(|p| Zeroizing::new(p.to_string())),
    });
    s.xauth_server = Some(XAuthServer {
        username: "alice".into(),
        password: Zeroizing::new(gw_pw.to_string()),
        passcode: None,
    });
    s.remote_id = None;
    (c, s)
}

fn asked(events: &[Event]) -> Vec<CredentialsRequest> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CredentialsRequired(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn answer(field: XAuthField, v: &str) -> Credentials {
    Credentials {
        values: vec![(field, Zeroizing::new(v.to_string()))],
    }
}

#[test]
fn eap_mschapv2_with_the_profile_password_and_a_psk_gateway() {
    let (c, s) = eap_configs(Some("alice-pw"), "alice-pw");
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    connected(&p);
    assert!(asked(&p.client_events).is_empty());
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::XAuthSucceeded))
    );
    assert_eq!(
        p.client.mode_config().unwrap().address,
        Some(Ipv4Addr::new(10, 200, 0, 5))
    );
    // The first IKE_AUTH request carries no AUTH (EAP follows, §2.16).
    assert!(
        !client_auth_request(&p)
            .iter()
            .any(|p| matches!(p, Payload::Auth { .. }))
    );
    // IKE_SA_INIT, first IKE_AUTH, Identity, MS-CHAPv2 response, success
    // acknowledgement, final AUTH: six exchanges.
    assert_eq!(p.count, 12);
}

#[test]
fn eap_password_is_asked_when_the_profile_has_none() {
    let (c, s) = eap_configs(None, "alice-pw");
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let q = asked(&p.client_events);
    assert_eq!(q.len(), 1, "{:?}", p.client_events);
    assert_eq!(q[0].fields, vec![XAuthField::Password]);
    assert!(!p.client.is_established() && !p.client.is_dead());
    let now = p.now;
    p.client
        .submit_credentials(now, answer(XAuthField::Password, "alice-pw"))
        .unwrap();
    p.drive(Duration::from_secs(5));
    connected(&p);
    // Nothing is pending any more: a second answer is refused.
    assert!(
        p.client
            .submit_credentials(p.now, answer(XAuthField::Password, "x"))
            .is_err()
    );
}

#[test]
fn eap_wrong_password_is_one_sentence() {
    let (c, s) = eap_configs(Some("not-her-password"), "alice-pw");
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client fails");
    assert_eq!(
        e.to_string(),
        "authentication failed (user name or password refused)"
    );
    assert!(p.client.is_dead());
    assert!(!p.gateway.is_established());
}

#[test]
fn hybrid_gateway_certificate_and_eap() {
    let (mut c, mut s) = eap_configs(Some("alice-pw"), "alice-pw");
    c.auth = Auth::Hybrid(Arc::new(Certs {
        key: None,
        chain: Vec::new(),
        trusted: vec![cert("ca.pem")],
        crls: Vec::new(),
    }));
    c.wall_clock = clock();
    s.auth = certs(Some("gw.key"), &["gw.pem"], &["ca.pem"]);
    s.wall_clock = clock();
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    connected(&p);
    // The hybrid client sends no certificate, only its CERTREQ.
    let req = client_auth_request(&p);
    assert!(!req.iter().any(|p| matches!(p, Payload::Cert { .. })));
    assert!(req.iter().any(|p| matches!(p, Payload::CertReq { .. })));
}

#[test]
fn hybrid_with_a_gateway_certificate_from_another_ca_is_refused() {
    let (mut c, mut s) = eap_configs(Some("alice-pw"), "alice-pw");
    c.auth = certs(None, &[], &["other-ca.pem"]);
    c.auth = match c.auth {
        Auth::Signature(x) => Auth::Hybrid(x),
        a => a,
    };
    c.wall_clock = clock();
    s.auth = certs(Some("gw.key"), &["gw.pem"], &["ca.pem"]);
    s.wall_clock = clock();
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("the client refuses");
    assert!(e.to_string().starts_with("certificate refused: "), "{e}");
    // No password went out: the gateway was refused before EAP.
    assert!(asked(&p.client_events).is_empty());
}

#[test]
fn eap_gtc_asks_for_a_passcode_every_time_even_with_a_profile_password() {
    for (typed, ok) in [("123456", true), ("654321", false)] {
        let (c, mut s) = eap_configs(Some("alice-pw"), "alice-pw");
        if let Some(x) = s.xauth_server.as_mut() {
            x.passcode = Some(Zeroizing::new("123456".into()));
        }
        let mut p = Pair::new(c, s, Faults::default());
        p.drive(Duration::from_secs(5));
        let q = asked(&p.client_events);
        assert_eq!(q.len(), 1, "{:?}", p.client_events);
        assert_eq!(q[0].fields, vec![XAuthField::Passcode]);
        assert_eq!(q[0].message.as_deref(), Some("Passcode:"));
        let now = p.now;
        p.client
            .submit_credentials(now, answer(XAuthField::Passcode, typed))
            .unwrap();
        p.drive(Duration::from_secs(5));
        if ok {
            connected(&p);
        } else {
            let e = Pair::failure(&p.client_events).expect("refused");
            assert_eq!(
                e.to_string(),
                "authentication failed (user name or password refused)"
            );
        }
    }
}

// ----- hostile IKE_AUTH replies -----------------------------------------------------

/// A client that has sent its IKE_AUTH request (the gateway did IKE_SA_INIT with it).
fn client_awaiting_auth(c: Config, s: Config) -> Pair {
    let mut p = Pair::new(c, s, Faults::default());
    let t = p.client.poll_transmit().expect("IKE_SA_INIT");
    p.gateway
        .handle_datagram(p.now, sock(GATEWAY, 500), sock(CLIENT, 500), &t.data);
    let r = p.gateway.poll_transmit().expect("IKE_SA_INIT reply");
    p.client
        .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &r.data);
    assert!(p.client.poll_transmit().is_some(), "IKE_AUTH request");
    while p.client.poll_event().is_some() {}
    p
}

/// `payloads` sealed by the gateway as its IKE_AUTH reply 1.
fn gateway_reply(p: &Pair, payloads: &[Payload], rng: &mut dyn crate::crypto::Rng) -> Vec<u8> {
    let (spi_i, spi_r) = p.gateway.spis();
    let h = Header {
        spi_i,
        spi_r,
        next_payload: 0,
        exchange: exchange::IKE_AUTH,
        flags: codec::flags::RESPONSE,
        message_id: 1,
        length: 0,
    };
    p.gateway
        .keys
        .as_ref()
        .unwrap()
        .seal(h, payloads, false, rng)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Authenticated (correctly sealed) but hostile IKE_AUTH replies: AUTH of every
/// method with random or truncated data, garbage and truncated certificates, random
/// EAP packets; for a certificate client, a hybrid client and an EAP client. Nothing
/// panics, nothing is established, every failure is a typed error.
#[test]
fn hostile_ike_auth_replies_are_refused_without_panics() {
    let gw_der = cert("gw.pem").der().to_vec();
    let mut lcg = Lcg(0x5eed);
    let mut rng = crate::crypto::test_rng(9);
    let variants: [fn() -> (Config, Config); 3] = [
        sig_configs,
        || eap_configs(Some("alice-pw"), "alice-pw"),
        || {
            let (mut c, mut s) = eap_configs(Some("alice-pw"), "alice-pw");
            c.auth = certs(None, &[], &["ca.pem"]);
            c.auth = match c.auth {
                Auth::Signature(x) => Auth::Hybrid(x),
                a => a,
            };
            c.wall_clock = clock();
            s.auth = certs(Some("gw.key"), &["gw.pem"], &["ca.pem"]);
            s.wall_clock = clock();
            (c, s)
        },
    ];
    for (v, make) in variants.iter().enumerate() {
        for round in 0..60u32 {
            let (mut c, s) = make();
            c.ike_proposals = vec![crate::proposal::parse_ike("aes128-sha256-ecp256").unwrap()];
            let mut s = s;
            s.ike_proposals = c.ike_proposals.clone();
            let mut p = client_awaiting_auth(c, s);
            let mut cert_data = gw_der.clone();
            cert_data.truncate((lcg.next() as usize) % (gw_der.len() + 1));
            let mut auth_data = lcg.bytes(300);
            if round % 3 == 0 {
                // A plausible RFC 7427 prefix with garbage after it.
                let mut d = hex::decode("0f300d06092a864886f70d01010b0500").unwrap();
                d.extend(lcg.bytes(260));
                auth_data = d;
            }
            let mut eap = lcg.bytes(64);
            if round % 2 == 0 && eap.len() >= 4 {
                eap[0] = 1 + (round % 4) as u8;
                let l = (eap.len() as u16).to_be_bytes();
                eap[2..4].copy_from_slice(&l);
            }
            let mut payloads = vec![Payload::Id {
                initiator: false,
                kind: 2,
                data: b"gw.example".to_vec(),
            }];
            if round % 4 != 1 {
                payloads.push(Payload::Cert {
                    encoding: 4,
                    data: cert_data,
                });
            }
            payloads.push(Payload::Auth {
                method: (round % 16) as u8,
                data: auth_data,
            });
            if round % 5 != 0 {
                payloads.push(Payload::Eap(eap));
            }
            let d = gateway_reply(&p, &payloads, &mut rng);
            let now = p.now;
            p.client
                .handle_datagram(now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
            p.client.handle_timeout(now + Duration::from_secs(1));
            while p.client.poll_transmit().is_some() {}
            let events: Vec<Event> = std::iter::from_fn(|| p.client.poll_event()).collect();
            assert!(
                !p.client.is_established(),
                "variant {v} round {round}: established on a hostile reply"
            );
            if let Some(e) = Pair::failure(&events) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// A gateway that asks for an EAP method we do not speak (EAP-TLS, 13): the client
/// answers with a Nak naming MS-CHAPv2 and GTC; when the gateway gives up, the error
/// names the method in one sentence.
#[test]
fn eap_method_we_do_not_speak_is_named() {
    let (mut c, s) = eap_configs(Some("alice-pw"), "alice-pw");
    c.ike_proposals = vec![crate::proposal::parse_ike("aes128-sha256-ecp256").unwrap()];
    let mut s = s;
    s.ike_proposals = c.ike_proposals.clone();
    let mut p = client_awaiting_auth(c, s);
    let mut first = p.gateway.responder_id_and_auth(1).expect("IDr and AUTH");
    first.push(Payload::Eap(vec![1, 7, 0, 6, 13, 0x20]));
    let d = p.gateway.seal_as_self(exchange::IKE_AUTH, 1, true, &first);
    let now = p.now;
    p.client
        .handle_datagram(now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
    let nak = p.client.poll_transmit().expect("the client answers");
    let msg = Message::decode(&nak.data).unwrap();
    let k = p.client.keys.as_ref().unwrap();
    let payloads: Vec<Payload> = k
        .open(&nak.data, &msg, true)
        .unwrap()
        .payloads
        .into_iter()
        .map(|d| d.payload)
        .collect();
    assert!(
        payloads
            .iter()
            .any(|p| matches!(p, Payload::Eap(e) if *e == [2, 7, 0, 7, 3, 26, 6])),
        "{payloads:?}"
    );
    let d = p.gateway.seal_as_self(
        exchange::IKE_AUTH,
        2,
        true,
        &[Payload::Eap(vec![4, 8, 0, 4])],
    );
    p.client
        .handle_datagram(now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
    let events: Vec<Event> = std::iter::from_fn(|| p.client.poll_event()).collect();
    let e = Pair::failure(&events).expect("the client fails");
    assert_eq!(
        e.to_string(),
        "authentication failed (the gateway asks for EAP method 13, which Postern does not speak)"
    );
}

/// With fragmentation announced by both (the default), an IKE_AUTH carrying a
/// certificate is larger than 1280 bytes: it goes in RFC 7383 fragments and connects.
#[test]
fn certificates_go_in_fragments() {
    let (c, s) = sig_configs();
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    connected(&p);
    let fragments = p
        .sent_to_gateway
        .iter()
        .filter(|d| {
            d.get(18) == Some(&exchange::IKE_AUTH) && d.get(16) == Some(&crate::ike2::frag::SKF)
        })
        .count();
    assert!(fragments >= 2, "{fragments} IKE_AUTH fragments");
}
