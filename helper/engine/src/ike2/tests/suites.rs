//! The IKEv2-only suites: AES-GCM (RFC 5282) and ChaCha20-Poly1305 (RFC 7634) as the
//! SK payload's cipher, curve25519 (RFC 8031) and ecp521 as the key exchange.
//! Known answers for the primitives (McGrew-Viega GCM test cases 4/10/16, computed
//! again with Python's `cryptography`; RFC 8439 §2.8.2; RFC 7748 §6.1), then the SK
//! payload both ways and whole Pairs.

use super::*;
use crate::algs::{DhGroup, IkeCipher};
use crate::crypto::{CryptoError, DhKeyPair, aead_open, aead_seal};

const GCM_KEY: &str = "feffe9928665731c6d6a8f9467308308";
const GCM_NONCE: &str = "cafebabefacedbaddecaf888";
const GCM_PLAIN: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
const GCM_AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";

/// (key bits, ciphertext | full 16 octet tag)
const GCM_CASES: [(u16, &str); 3] = [
    (
        128,
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e0915bc94fbc3221a5db94fae95ae7121a47",
    ),
    (
        192,
        "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda27102519498e80f1478f37ba55bd6d27618c",
    ),
    (
        256,
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b",
    ),
];

/// The test cases' key repeated to the key size (test cases 10 and 16 do so).
fn gcm_key(bits: u16) -> Vec<u8> {
    let k = unhex(GCM_KEY);
    k.iter()
        .chain(k.iter())
        .take(usize::from(bits) / 8)
        .copied()
        .collect()
}

#[test]
fn aes_gcm_known_answers_with_each_icv() {
    let nonce = unhex(GCM_NONCE);
    let (salt, iv) = nonce.split_at(4);
    for (bits, want) in GCM_CASES {
        let want = unhex(want);
        for icv in [8u8, 12, 16] {
            let c = IkeCipher::AesGcm {
                key_bits: bits,
                icv,
            };
            // SK_e is the key and the salt (RFC 5282 §7.1).
            let keymat = [gcm_key(bits), salt.to_vec()].concat();
            assert_eq!(keymat.len(), c.keymat_len());
            let plain = unhex(GCM_PLAIN);
            let sealed = aead_seal(c, &keymat, iv, &unhex(GCM_AAD), &plain).unwrap();
            // A shorter ICV is the full tag's leading octets.
            let n = plain.len() + usize::from(icv);
            assert_eq!(sealed, want[..n], "aes{bits}gcm{icv}");
            assert_eq!(
                aead_open(c, &keymat, iv, &unhex(GCM_AAD), &sealed).unwrap(),
                plain
            );
            let mut bad = sealed.clone();
            bad[n - 1] ^= 1;
            assert_eq!(
                aead_open(c, &keymat, iv, &unhex(GCM_AAD), &bad),
                Err(CryptoError::AeadIntegrity)
            );
            // Other associated data fails too.
            assert_eq!(
                aead_open(c, &keymat, iv, b"other", &sealed),
                Err(CryptoError::AeadIntegrity)
            );
            // Shorter than the ICV: an error, not a panic.
            assert!(aead_open(c, &keymat, iv, b"", &sealed[..usize::from(icv) - 1]).is_err());
        }
    }
}

#[test]
fn chacha20_poly1305_rfc8439_known_answer() {
    let c = IkeCipher::ChaCha20Poly1305;
    let key: Vec<u8> = (0x80..0xa0).collect();
    // Nonce 07000000 | 4041424344454647: the salt and the payload's IV.
    let keymat = [key, unhex("07000000")].concat();
    let iv = unhex("4041424344454647");
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let sealed = aead_seal(c, &keymat, &iv, &aad, plain).unwrap();
    assert_eq!(
        sealed,
        unhex(
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b61161ae10b594f09e26a7e902ecbd0600691"
        )
    );
    assert_eq!(aead_open(c, &keymat, &iv, &aad, &sealed).unwrap(), plain);
    let mut bad = sealed;
    bad[0] ^= 0x80;
    assert_eq!(
        aead_open(c, &keymat, &iv, &aad, &bad),
        Err(CryptoError::AeadIntegrity)
    );
    // Wrong key material length: refused, no panic.
    assert!(aead_seal(c, &keymat[..32], &iv, &aad, plain).is_err());
}

#[test]
fn x25519_rfc7748_known_answer() {
    let alice = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let bob = unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let a = DhKeyPair::from_private_for_test(DhGroup::Curve25519, &alice).unwrap();
    let b = DhKeyPair::from_private_for_test(DhGroup::Curve25519, &bob).unwrap();
    assert_eq!(
        a.public(),
        unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        b.public(),
        unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let shared = unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(a.shared_secret(b.public()).unwrap().to_vec(), shared);
    assert_eq!(b.shared_secret(a.public()).unwrap().to_vec(), shared);
    // A low-order point (0) gives the all-zero secret: refused (RFC 8031 §2.3).
    assert_eq!(
        a.shared_secret(&[0; 32]),
        Err(CryptoError::InvalidPublicValue)
    );
    // A wrong length is refused before any arithmetic.
    assert_eq!(
        a.shared_secret(&[9; 31]),
        Err(CryptoError::InvalidPublicValue)
    );
    // Fresh pairs from the injected RNG agree.
    let mut rng = test_rng(5);
    let x = DhKeyPair::generate(DhGroup::Curve25519, &mut rng);
    let y = DhKeyPair::generate(DhGroup::Curve25519, &mut rng);
    assert_eq!(x.public().len(), 32);
    assert_eq!(
        x.shared_secret(y.public()).unwrap(),
        y.shared_secret(x.public()).unwrap()
    );
}

fn header() -> Header {
    Header {
        spi_i: [3; 8],
        spi_r: [4; 8],
        next_payload: 0,
        exchange: codec::exchange::INFORMATIONAL,
        flags: codec::flags::INITIATOR,
        message_id: 7,
        length: 0,
    }
}

const AEADS: [IkeCipher; 4] = [
    IkeCipher::AesGcm {
        key_bits: 256,
        icv: 16,
    },
    IkeCipher::AesGcm {
        key_bits: 128,
        icv: 8,
    },
    IkeCipher::AesGcm {
        key_bits: 192,
        icv: 12,
    },
    IkeCipher::ChaCha20Poly1305,
];

#[test]
fn aead_key_schedule_has_salt_and_no_integrity_keys() {
    for c in AEADS {
        let ks = keys::derive(
            HashAlg::Sha384,
            c,
            &[5; 32],
            &[1; 32],
            &[2; 32],
            &[3; 8],
            &[4; 8],
        );
        assert_eq!(ks.integ, None);
        assert!(ks.sk_ai.is_empty() && ks.sk_ar.is_empty());
        assert_eq!(ks.sk_ei.len(), c.key_len() + 4);
        assert_eq!(ks.sk_d.len(), 48);
        // SK_ei follows SK_d directly in the keying material (no SK_a* between).
        let km = keys::prf_plus(
            HashAlg::Sha384,
            &crate::crypto::prf(HashAlg::Sha384, &[[1u8; 32], [2; 32]].concat(), &[&[5; 32]]),
            &[[1u8; 32].as_slice(), &[2; 32], &[3; 8], &[4; 8]].concat(),
            48 + 2 * (c.key_len() + 4),
        );
        assert_eq!(ks.sk_ei.to_vec(), km[48..48 + c.key_len() + 4]);
    }
}

#[test]
fn aead_sk_payload_both_ways_and_tamper() {
    for c in AEADS {
        let ks = keys::derive(
            HashAlg::Sha256,
            c,
            &[5; 32],
            &[1; 32],
            &[2; 32],
            &[3; 8],
            &[4; 8],
        );
        let mut rng = test_rng(1);
        let inner = vec![Payload::Delete {
            protocol: 1,
            spi_size: 0,
            spis: vec![],
        }];
        for from_initiator in [true, false] {
            let d = ks.seal(header(), &inner, from_initiator, &mut rng);
            // Header, SK header, 8 octet IV, Delete (8) + Pad Length, ICV.
            let icv = crate::crypto::aead_icv_len(c);
            assert_eq!(d.len(), 28 + 4 + 8 + 9 + icv, "{c:?}");
            let m = Message::decode(&d).unwrap();
            let chain = ks.open(&d, &m, from_initiator).unwrap();
            assert_eq!(chain.payloads[0].payload, inner[0]);
            // The other direction's keys do not open it.
            assert_eq!(
                ks.open(&d, &m, !from_initiator),
                Err(keys::SkError::Integrity)
            );
            // Any flipped octet, the header (associated data) included, fails.
            for i in 0..d.len() {
                let mut t = d.clone();
                t[i] ^= 0x01;
                if let Ok(m) = Message::decode(&t) {
                    assert!(ks.open(&t, &m, from_initiator).is_err(), "{c:?} byte {i}");
                }
            }
            // Cut short anywhere: an error, never a panic.
            for n in 28..d.len() {
                let mut t = d[..n].to_vec();
                let len = (n as u32).to_be_bytes();
                t[24..28].copy_from_slice(&len);
                if let Ok(m) = Message::decode(&t) {
                    assert!(ks.open(&t, &m, from_initiator).is_err(), "{c:?} cut {n}");
                }
            }
        }
    }
}

/// The SA payload of the IKE_SA_INIT request: ENCR with its key length, PRF, no
/// INTEG, DH.
fn offered_transforms(p: &Pair) -> Vec<(u8, u16, Option<u16>)> {
    let init = Message::decode(&p.sent_to_gateway[0]).unwrap();
    let Some(Payload::Sa(props)) = init.payloads().find(|p| p.kind() == ptype::SA) else {
        panic!("no SA")
    };
    props[0]
        .transforms
        .iter()
        .map(|t| (t.kind, t.id, t.key_len()))
        .collect()
}

fn connect(ike: &str) -> Pair {
    let (c, s) = configs(&[ike], &[ike], b"shared secret");
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(
        p.established(),
        "{ike}: {:?} / {:?}",
        p.client_events,
        p.gateway_events
    );
    check_children_mirror(&p);
    p
}

#[test]
fn pair_connects_with_aes_gcm_and_curve25519() {
    let p = connect("aes256gcm16-prfsha384-x25519");
    use codec::transform::{DH, ENCR, PRF};
    // ENCR_AES_GCM_16 (20) with 256-bit keys, PRF_HMAC_SHA2_384 (6), curve25519 (31).
    assert_eq!(
        offered_transforms(&p),
        [(ENCR, 20, Some(256)), (PRF, 6, None), (DH, 31, None)]
    );
    let k = p.client.keys.as_ref().unwrap();
    assert_eq!(k.integ, None);
    assert_eq!(k.sk_ei, p.gateway.keys.as_ref().unwrap().sk_ei);
    assert_eq!(k.sk_ei.len(), 36);
    // Four datagrams: two exchanges, no retransmission.
    assert_eq!(p.count, 4);
}

#[test]
fn pair_connects_with_chacha20_poly1305_and_gcm8_on_ecp521() {
    let p = connect("chacha20poly1305-prfsha256-curve25519");
    use codec::transform::{DH, ENCR, PRF};
    assert_eq!(
        offered_transforms(&p),
        [(ENCR, 28, None), (PRF, 5, None), (DH, 31, None)]
    );
    let p = connect("aes128gcm8-prfsha512-ecp521");
    assert_eq!(
        offered_transforms(&p),
        [(ENCR, 18, Some(128)), (PRF, 7, None), (DH, 21, None)]
    );
    let p = connect("aes192gcm12-prfsha256-ecp384");
    assert_eq!(offered_transforms(&p)[0], (ENCR, 19, Some(192)));
    // CBC with ecp521 (strongSwan's aes128-sha256-ecp521).
    let p = connect("aes128-sha256-ecp521");
    assert_eq!(
        offered_transforms(&p),
        [
            (ENCR, 12, Some(128)),
            (PRF, 5, None),
            (codec::transform::INTEG, 12, None),
            (DH, 21, None)
        ]
    );
}

#[test]
fn the_gateway_picks_the_aead_proposal_it_shares() {
    // The client offers CBC first, then GCM; the gateway only has GCM.
    let (c, s) = configs(
        &["aes128-sha256-modp2048", "aes256gcm16-prfsha256-x25519"],
        &["aes256gcm16-prfsha256-x25519"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    let k = p.client.keys.as_ref().unwrap();
    assert_eq!(
        k.cipher,
        IkeCipher::AesGcm {
            key_bits: 256,
            icv: 16
        }
    );
    // The KE payload guessed modp2048: INVALID_KE_PAYLOAD, then curve25519.
    assert!(p.count > 4);
    // Offering GCM with an INTEG transform would be a peer's error: a GCM-only
    // gateway and a CBC-only client find nothing in common.
    let (c, s) = configs(
        &["aes256-sha256-x25519"],
        &["aes256gcm16-prfsha256-x25519"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(!p.client.is_established());
    assert!(Pair::failure(&p.client_events).is_some());
}

#[test]
fn aead_ike_auth_in_fragments_on_a_lossy_link_and_a_child_rekey() {
    for ike in [
        "aes256gcm16-prfsha384-x25519",
        "chacha20poly1305-prfsha256-x25519",
    ] {
        let (mut c, mut s) = configs(&[ike], &[ike], b"shared secret");
        c.fragment_size = 200;
        s.fragment_size = 200;
        let mut p = Pair::new(
            c,
            s,
            Faults {
                drop_every: 7,
                dup_every: 3,
                delay_every: 4,
            },
        );
        p.drive(Duration::from_secs(60));
        assert!(p.established(), "{ike}: {:?}", p.client_events);
        assert!(
            p.sent_to_gateway
                .iter()
                .any(|d| d.get(16) == Some(&crate::ike2::frag::SKF)),
            "{ike}: not fragmented"
        );
        // Each fragment fits 200 octets of IPv4 datagram.
        assert!(
            p.sent_to_gateway
                .iter()
                .filter(|d| d.get(16) == Some(&crate::ike2::frag::SKF))
                .all(|d| d.len() <= 200 - 28),
            "{ike}"
        );
        let old = p.client.children()[0].spi_in;
        assert!(p.client.rekey(p.now, old));
        p.drive(Duration::from_secs(30));
        check_rekeyed(&p, old);
    }
}

#[test]
fn the_ike_sa_rekeys_onto_gcm_and_curve25519() {
    let ike = "aes128gcm16-prfsha256-curve25519";
    let (mut c, s) = configs(&[ike], &[ike], b"shared secret");
    c.ike_lifetime = Duration::from_secs(100);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    let first = p.client.spis();
    p.drive(Duration::from_secs(95));
    assert_ne!(p.client.spis(), first, "{:?}", p.client_events);
    assert_eq!(p.client.spis(), p.gateway.spis());
    let (c, g) = (
        p.client.keys.as_ref().unwrap(),
        p.gateway.keys.as_ref().unwrap(),
    );
    assert_eq!(c.sk_ei, g.sk_ei);
    assert_eq!(c.integ, None);
    // Still usable: a liveness check is answered on the new SA.
    assert!(p.client.check_peer(p.now, Duration::from_secs(20)));
    p.drive(Duration::from_secs(3));
    assert!(
        Pair::failure(&p.client_events).is_none(),
        "{:?}",
        p.client_events
    );
}

// ----- ECDSA P-521 (AUTH method 11, RFC 4754; RFC 7427 with ecdsa-with-SHA*) -------

mod p521_signatures {
    use std::sync::Arc;

    use super::*;
    use crate::cert::PrivateKey;
    use crate::cert::tests::{cert, fixture, in_2030};
    use crate::ike::{Auth, Certs};
    use crate::ike2::auth::{self, method};

    fn certs(key_file: &str, chain: &str, trusted: &str) -> Auth {
        Auth::Signature(Arc::new(Certs {
            key: Some(PrivateKey::parse(&fixture(key_file), None).unwrap()),
            chain: vec![cert(chain)],
            trusted: vec![cert(trusted)],
            crls: Vec::new(),
        }))
    }

    #[test]
    fn p521_classic_method_11_and_rfc7427() {
        let mut rng = test_rng(9);
        let octets = b"the octets an IKE_AUTH signs";
        let k = PrivateKey::parse(&fixture("ec521-gw.key"), None).unwrap();
        let public = cert("ec521-gw.pem").public_key().unwrap();
        assert_eq!(k.public_key(), public);
        // No SIGNATURE_HASH_ALGORITHMS: method 11, r | s of 66 octets each.
        let (m, sig) = auth::sign(&k, octets, &[], &mut rng).unwrap();
        assert_eq!(m, method::ECDSA_521);
        assert_eq!(sig.len(), 132);
        assert_eq!(auth::verify(&public, m, &sig, octets), Ok(true));
        assert_eq!(auth::verify(&public, m, &sig, b"other"), Ok(false));
        // RFC 7427: SHA-512 preferred for P-521 (ecdsa-with-SHA512, DER).
        let (m, sig) = auth::sign(
            &k,
            octets,
            &[auth::hash::SHA2_256, auth::hash::SHA2_512],
            &mut rng,
        )
        .unwrap();
        assert_eq!(m, method::DIGITAL_SIGNATURE);
        // Length octet, then SEQUENCE { OID 1.2.840.10045.4.3.4 }.
        assert_eq!(hex::encode(&sig[..13]), "0c300a06082a8648ce3d040304");
        assert_eq!(auth::verify(&public, m, &sig, octets), Ok(true));
        for n in 0..sig.len() {
            assert_ne!(auth::verify(&public, m, &sig[..n], octets), Ok(true));
        }
        // Method 11 with another curve's key, or garbage: refused, no panic.
        let p256 = cert("ec-gw.pem").public_key().unwrap();
        assert!(auth::verify(&p256, method::ECDSA_521, &sig, octets).is_err());
        assert_eq!(
            auth::verify(&public, method::ECDSA_521, &[0; 132], octets),
            Ok(false)
        );
        assert_eq!(
            auth::verify(&public, method::ECDSA_521, &[1; 7], octets),
            Ok(false)
        );
    }

    /// The chain (a P-521 root signing with ecdsa-with-SHA512) is validated on both
    /// sides and each signs its AUTH with RFC 7427 ecdsa-with-SHA512.
    #[test]
    fn p521_gateway_and_client_certificates_both_ways() {
        {
            let (mut c, mut s) = configs(
                &["aes256gcm16-prfsha512-ecp521"],
                &["aes256gcm16-prfsha512-ecp521"],
                b"shared secret",
            );
            // Both sides sign with the gateway's P-521 key (the test PKI has one).
            c.auth = certs("ec521-gw.key", "ec521-gw.pem", "ec521-ca.pem");
            c.local_id = Some(Identity::fqdn("ec521-gw.example"));
            c.remote_id = Some(Identity::fqdn("ec521-gw.example"));
            c.wall_clock = Some((p_now(), in_2030()));
            s.auth = certs("ec521-gw.key", "ec521-gw.pem", "ec521-ca.pem");
            s.local_id = Some(Identity::fqdn("ec521-gw.example"));
            s.remote_id = None;
            s.wall_clock = Some((p_now(), in_2030()));
            let mut p = Pair::new(c, s, Faults::default());
            p.drive(Duration::from_secs(5));
            assert!(
                p.established(),
                "{:?} / {:?}",
                p.client_events,
                p.gateway_events
            );
        }
    }

    #[allow(clippy::disallowed_methods)] // the Pair's clock starts at a real instant
    fn p_now() -> Instant {
        Instant::now()
    }
}

// ----- RSASSA-PSS from the gateway (RFC 7427 with id-RSASSA-PSS) ------------------

mod rsa_pss {
    use super::*;
    use crate::cert::tests::cert;
    use crate::ike2::auth::{self, method};

    const OCTETS: &[u8] = b"the octets an IKE_AUTH signs";
    /// RSASSA-PSS AlgorithmIdentifiers as RFC 7427 Appendix A.4 writes them (hash
    /// with NULL parameters, MGF1 with the same hash, salt = the hash's length).
    const ALGID_256: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120";
    const ALGID_512: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402030500a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140";
    /// `openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
    /// -sign client.key` over OCTETS (and the same with SHA-512, salt 64).
    const SIG_256: &str = "7cf81571819aad7f36216d7d210eb403d46f43d505769c5e045450074e18f451789badf6dc50da6c5f70addb2094f67cfec1c30a6acd6019991652fc63f15692370871d55f77613e79440e6b6acd64d1ebb290f353c7ac86fc784e403a5c47d166426d1bbfe3a8b2ff18e3a3b9ada75b49808f6cdbdb3c8e410956802373369469b17f03b3204b7278772cfe06d9ef6a394eeca830c330e4fb44b21592fa4eae1d9e3c659fbedfdac177fcd181cdb72db654f9742273fe50f6a7cc54ca159bc10483c214f0b458de91595f56afb1288e4487d9bce5501035141aa42fb65190b367593eb89632e95c017d1ec8d54838a18c648c8f1524353bc46ef406517124d2";
    const SIG_512: &str = "0572a9e75d5e400769b45b1c307e58b803ec96f7dc4d572faf9274d210804ea0067a7ffe114ffd05701aa24b3b8ad5dfe70eafdae85d95deef86d3ad71efae60df6a03fc3be034028227087d59be9c2a884b7e4ff6ae5d731e382d7bd19b063d4b0774ef22955b460ff5406e0b1c5f86fc49ac866866afb8babcc1bb9836fe995e6ee429ecb9e0c347bd28ca3e1c627f8399ebcd5cd0059cdba8d02e9106613192b8a03fc63f6a76b8012f743850eab6313c98dc59d30c280810f9985359dc948665aa74ea6190189129b25f90959f47fdb538d644f12333ecf6fbd23ea2f2536eca619a1545a43dae9fa8d127ff2a4ba7e532dab30a904ec7416f75e0397abc";

    fn auth_data(algid: &str, sig: &str) -> Vec<u8> {
        let a = unhex(algid);
        [vec![a.len() as u8], a, unhex(sig)].concat()
    }

    #[test]
    fn rsassa_pss_signatures_made_by_openssl_verify() {
        let public = cert("client.pem").public_key().unwrap();
        for (algid, sig) in [(ALGID_256, SIG_256), (ALGID_512, SIG_512)] {
            let data = auth_data(algid, sig);
            assert_eq!(
                auth::verify(&public, method::DIGITAL_SIGNATURE, &data, OCTETS),
                Ok(true)
            );
            assert_eq!(
                auth::verify(&public, method::DIGITAL_SIGNATURE, &data, b"other"),
                Ok(false)
            );
            let mut bad = data.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                auth::verify(&public, method::DIGITAL_SIGNATURE, &bad, OCTETS),
                Ok(false)
            );
            for n in 0..data.len() {
                assert_ne!(
                    auth::verify(&public, method::DIGITAL_SIGNATURE, &data[..n], OCTETS),
                    Ok(true)
                );
            }
        }
        // The SHA-256 signature under SHA-512 parameters: no.
        assert_eq!(
            auth::verify(
                &public,
                method::DIGITAL_SIGNATURE,
                &auth_data(ALGID_512, SIG_256),
                OCTETS
            ),
            Ok(false)
        );
        // A wrong salt length in the parameters: no.
        let wrong_salt = ALGID_256.replace("a203020120", "a203020114");
        assert_eq!(
            auth::verify(
                &public,
                method::DIGITAL_SIGNATURE,
                &auth_data(&wrong_salt, SIG_256),
                OCTETS
            ),
            Ok(false)
        );
        // MGF1 with another hash than the signature's: refused as unsupported.
        let mixed = ALGID_256.replacen(
            "a11c301a06092a864886f70d010108300d0609608648016503040201",
            "a11c301a06092a864886f70d010108300d0609608648016503040203",
            1,
        );
        let e = auth::verify(
            &public,
            method::DIGITAL_SIGNATURE,
            &auth_data(&mixed, SIG_256),
            OCTETS,
        )
        .unwrap_err();
        assert!(e.0.contains("MGF1"), "{e:?}");
        // PSS with an EC key: the method does not fit.
        let ec = cert("ec-gw.pem").public_key().unwrap();
        assert!(
            auth::verify(
                &ec,
                method::DIGITAL_SIGNATURE,
                &auth_data(ALGID_256, SIG_256),
                OCTETS
            )
            .is_err()
        );
    }
}
