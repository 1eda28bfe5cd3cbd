use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/src/cert/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn cert(name: &str) -> Certificate {
    parse_certificates(&fixture(name)).unwrap().remove(0)
}

/// 2030-01-01, inside the fixtures' validity (2025..2035).
pub(crate) fn in_2030() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

#[test]
fn keys_in_every_encoding() {
    let c = cert("client.pem");
    for (file, pass) in [
        ("client.key", None),
        ("client.pk8", None),
        ("client.key.der", None),
        ("client.enc.pk8", Some(&b"secret"[..])),
    ] {
        let k = PrivateKey::parse(&fixture(file), pass).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(k.kind(), SigKind::Rsa);
        k.matches(&c).unwrap();
    }
    assert_eq!(
        PrivateKey::parse(&fixture("client.enc.pk8"), None).unwrap_err(),
        CertError::PassphraseNeeded
    );
    assert_eq!(
        PrivateKey::parse(&fixture("client.enc.pk8"), Some(b"wrong")).unwrap_err(),
        CertError::WrongPassphrase
    );
    let ec = PrivateKey::parse(&fixture("ec-gw.key"), None).unwrap();
    assert_eq!(ec.kind(), SigKind::EcdsaP256);
    ec.matches(&cert("ec-gw.pem")).unwrap();
    assert!(matches!(ec.matches(&c), Err(CertError::KeyMismatch(_))));
    assert!(format!("{ec:?}").contains("redacted"));
}

#[test]
fn garbage_never_panics() {
    for bad in [
        &b""[..],
        b"\x30\x82\xff\xff",
        b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----",
    ] {
        assert!(parse_certificates(bad).is_err());
        assert!(PrivateKey::parse(bad, None).is_err());
    }
    let der = cert("gw.pem").der().to_vec();
    for cut in 0..der.len() {
        let _ = Certificate::from_der(&der[..cut]);
    }
}

#[test]
fn chain_to_the_root() {
    let ca = vec![cert("ca.pem")];
    let gw = vec![cert("gw.pem")];
    assert_eq!(
        validate_chain(&gw, &ca, &[], in_2030()).unwrap().subject(),
        "C=CH, O=Postern Test, CN=gw.example"
    );
    // Through an intermediate sent by the peer.
    let chain = vec![cert("gw-inter.pem"), cert("inter.pem")];
    validate_chain(&chain, &ca, &[], in_2030()).unwrap();
    // Without the intermediate: unknown issuer.
    let e = validate_chain(&chain[..1], &ca, &[], in_2030()).unwrap_err();
    assert!(matches!(e, CertError::UntrustedIssuer { .. }), "{e}");
    assert!(e.to_string().contains("Test Intermediate CA"), "{e}");
}

#[test]
fn refusals_name_what_did_not_match() {
    let ca = vec![cert("ca.pem")];
    let e = validate_chain(&[cert("gw-other.pem")], &ca, &[], in_2030()).unwrap_err();
    assert!(e.to_string().contains("Other CA"), "{e}");
    let e = validate_chain(&[cert("expired.pem")], &ca, &[], in_2030()).unwrap_err();
    assert!(matches!(e, CertError::Expired { .. }), "{e}");
    let before = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let e = validate_chain(&[cert("gw.pem")], &ca, &[], before).unwrap_err();
    assert!(matches!(e, CertError::NotYetValid { .. }), "{e}");
    // A leaf may not act as a CA.
    let leaf_chain = [cert("client.pem"), cert("gw.pem")];
    let e = validate_chain(&leaf_chain, &[cert("gw.pem")], &[], in_2030());
    assert!(e.is_err());
    // Revoked by the root's CRL.
    let crls = parse_crls(&fixture("ca.crl")).unwrap();
    let e = validate_chain(&[cert("client.pem")], &ca, &crls, in_2030()).unwrap_err();
    assert!(matches!(e, CertError::Revoked { .. }), "{e}");
    validate_chain(&[cert("gw.pem")], &ca, &crls, in_2030()).unwrap();
    // A tampered signature.
    let mut der = cert("gw.pem").der().to_vec();
    let n = der.len();
    der[n - 5] ^= 1;
    let e =
        validate_chain(&[Certificate::from_der(&der).unwrap()], &ca, &[], in_2030()).unwrap_err();
    assert!(matches!(e, CertError::BadSignature(_)), "{e}");
    // ECDSA chain.
    validate_chain(&[cert("ec-gw.pem")], &[cert("ec-ca.pem")], &[], in_2030()).unwrap();
}

#[test]
fn identities() {
    let gw = cert("gw.pem");
    check_identity(&gw, &Identity::fqdn("gw.example")).unwrap();
    check_identity(&gw, &Identity::fqdn("GW.Example")).unwrap();
    check_identity(&gw, &Identity::address("192.0.2.1".parse().unwrap())).unwrap();
    let dn = Identity {
        kind: IdType::DER_ASN1_DN,
        data: dn_der("C=CH, O=Postern Test, CN=gw.example").unwrap(),
    };
    check_identity(&gw, &dn).unwrap();
    let e = check_identity(&gw, &Identity::fqdn("evil.example")).unwrap_err();
    assert!(
        e.to_string().contains("fqdn:evil.example") && e.to_string().contains("fqdn:gw.example"),
        "{e}"
    );
    check_identity(
        &cert("client.pem"),
        &Identity::user_fqdn("alice@example.com"),
    )
    .unwrap();
    assert_eq!(
        dn_text(&gw.subject_der()).unwrap(),
        "C=CH, O=Postern Test, CN=gw.example"
    );
}

#[test]
fn ike_signatures() {
    let mut rng = crate::crypto::test_rng(7);
    let hash = [0x5au8; 20];
    for (key, crt) in [("gw.key", "gw.pem"), ("ec-gw.key", "ec-gw.pem")] {
        let k = PrivateKey::parse(&fixture(key), None).unwrap();
        let sig = k.sign_ike(&hash, &mut rng).unwrap();
        let pk = cert(crt).public_key().unwrap();
        assert!(pk.verify_ike(&hash, &sig));
        assert!(!pk.verify_ike(&[0u8; 20], &sig));
        assert!(!pk.verify_ike(&hash, &sig[1..]));
    }
    // RSA without DigestInfo: the padded block is 00 01 ff.. 00 HASH.
    let k = PrivateKey::parse(&fixture("gw.key"), None).unwrap();
    let PrivateKey::Rsa(rk) = &k else { panic!() };
    let sig = k.sign_ike(&hash, &mut rng).unwrap();
    assert_eq!(sig.len(), 256);
    let pk = rk.to_public_key();
    use rsa::traits::PublicKeyParts;
    // s^e mod n, by hand, to see the padded block.
    let n = num_bigint::BigUint::from_bytes_be(&pk.n().to_be_bytes());
    let e = num_bigint::BigUint::from_bytes_be(&pk.e().to_be_bytes());
    let em = num_bigint::BigUint::from_bytes_be(&sig)
        .modpow(&e, &n)
        .to_bytes_be();
    assert_eq!(em.len(), pk.size() - 1, "leading 00 dropped");
    assert_eq!(&em[..2], &[0x01, 0xff]);
    assert_eq!(&em[em.len() - 21..], &[&[0u8][..], &hash[..]].concat()[..]);
}

// ----- PKCS#12 (fixtures made by openssl 3, see fixtures/make.sh) -----------------

fn client_key_public() -> PublicKey {
    PrivateKey::parse(&fixture("client.key"), None)
        .unwrap()
        .public_key()
}

#[test]
fn pkcs12_aes_pbes2_opens_with_its_passphrase() {
    let b = super::pkcs12::parse(&fixture("client.p12"), "p12-secret").unwrap();
    assert_eq!(b.key.public_key(), client_key_public());
    assert_eq!(b.chain.len(), 2, "own certificate, then the CA");
    assert_eq!(b.chain[0], cert("client.pem"));
    assert_eq!(b.chain[1], cert("ca.pem"));
}

#[test]
fn pkcs12_legacy_3des_opens_with_its_passphrase() {
    let b = super::pkcs12::parse(&fixture("client-3des.p12"), "p12-secret").unwrap();
    assert_eq!(b.key.public_key(), client_key_public());
    assert_eq!(b.chain[0], cert("client.pem"));
}

#[test]
fn pkcs12_unencrypted_bags_ec_key() {
    let b = super::pkcs12::parse(&fixture("ec-plain.p12"), "p12-secret").unwrap();
    assert_eq!(b.key.kind(), SigKind::EcdsaP256);
    assert_eq!(b.chain, vec![cert("ec-gw.pem")]);
}

#[test]
fn pkcs12_wrong_passphrase_is_named() {
    for f in ["client.p12", "client-3des.p12"] {
        let e = super::pkcs12::parse(&fixture(f), "not-it").err().unwrap();
        assert!(matches!(e, CertError::WrongPassphrase), "{f}: {e}");
    }
}

#[test]
fn pkcs12_garbage_and_truncation_are_errors() {
    let good = fixture("client.p12");
    for n in [0, 1, 10, 100, good.len() / 2, good.len() - 1] {
        assert!(
            super::pkcs12::parse(&good[..n], "p12-secret").is_err(),
            "{n}"
        );
    }
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    assert!(super::pkcs12::parse(&flipped, "p12-secret").is_err());
    assert!(super::pkcs12::parse(b"-----BEGIN CERTIFICATE-----", "").is_err());
}
