//! EAP-TLS: the framing's bounds, and whole handshakes against an in-process rustls
//! server behind a small EAP-TLS server loop (TLS 1.2 as strongSwan negotiates by
//! default, TLS 1.3 with RFC 9190's success indication).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};

use super::*;
use crate::codec::IdType;

const CA: &[u8] = include_bytes!("../cert/fixtures/ca.pem");
const GW: &[u8] = include_bytes!("../cert/fixtures/gw.pem");
const GW_KEY: &[u8] = include_bytes!("../cert/fixtures/gw.key");
const CLIENT: &[u8] = include_bytes!("../cert/fixtures/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("../cert/fixtures/client.key");
const EC_CA: &[u8] = include_bytes!("../cert/fixtures/ec-ca.pem");
const EC_GW: &[u8] = include_bytes!("../cert/fixtures/ec-gw.pem");
const EC_GW_KEY: &[u8] = include_bytes!("../cert/fixtures/ec-gw.key");
const OTHER_CA: &[u8] = include_bytes!("../cert/fixtures/other-ca.pem");

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

// ----- framing ----------------------------------------------------------------------

#[test]
fn our_flight_goes_out_in_bounded_fragments_with_the_length_first() {
    let mut f = Framing::new(1000);
    let flight: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    f.queue(flight.clone());
    let a = f.next_response();
    assert_eq!(a[0], FLAG_L | FLAG_M);
    assert_eq!(&a[1..5], &2500u32.to_be_bytes());
    assert_eq!(a.len(), 5 + 1000);
    assert!(f.sending());
    assert_eq!(f.receive(&[0]).unwrap(), Incoming::Ack);
    let b = f.next_response();
    assert_eq!(b[0], FLAG_M);
    assert_eq!(b.len(), 1 + 1000);
    assert_eq!(f.receive(&[0]).unwrap(), Incoming::Ack);
    let c = f.next_response();
    assert_eq!(c[0], 0);
    assert_eq!(c.len(), 1 + 500);
    assert!(!f.sending());
    let mut all = a[5..].to_vec();
    all.extend_from_slice(&b[1..]);
    all.extend_from_slice(&c[1..]);
    assert_eq!(all, flight);
    // Nothing queued: an acknowledgement.
    assert_eq!(f.next_response(), vec![0]);
}

#[test]
fn a_short_flight_is_one_packet_without_flags() {
    let mut f = Framing::new(1000);
    f.queue(vec![7; 10]);
    let a = f.next_response();
    assert_eq!(a[0], 0);
    assert_eq!(&a[1..], &[7; 10]);
}

#[test]
fn the_gateways_fragments_are_acknowledged_and_put_together() {
    let mut f = Framing::new(1000);
    let mut first = vec![FLAG_L | FLAG_M];
    first.extend_from_slice(&6u32.to_be_bytes());
    first.extend_from_slice(&[1, 2, 3]);
    assert_eq!(f.receive(&first).unwrap(), Incoming::Fragment);
    assert_eq!(f.next_response(), vec![0]);
    assert_eq!(
        f.receive(&[0, 4, 5, 6]).unwrap(),
        Incoming::Message(vec![1, 2, 3, 4, 5, 6])
    );
    // And the next message starts afresh.
    assert_eq!(f.receive(&[0, 9]).unwrap(), Incoming::Message(vec![9]));
}

#[test]
fn start_and_empty_requests() {
    let mut f = Framing::new(1000);
    assert_eq!(f.receive(&[FLAG_S]).unwrap(), Incoming::Start);
    assert_eq!(f.receive(&[0]).unwrap(), Incoming::Ack);
}

#[test]
fn hostile_lengths_are_refused() {
    let malformed = |r: Result<Incoming, EapError>| {
        assert!(matches!(r, Err(EapError::Malformed(_))), "{r:?}");
    };
    // No flags at all.
    malformed(Framing::new(1000).receive(&[]));
    // A length field cut short.
    malformed(Framing::new(1000).receive(&[FLAG_L, 0, 0]));
    // Announced beyond 64 KiB.
    let mut big = vec![FLAG_L | FLAG_M];
    big.extend_from_slice(&(MAX_MESSAGE as u32 + 1).to_be_bytes());
    malformed(Framing::new(1000).receive(&big));
    let mut huge = vec![FLAG_L];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    malformed(Framing::new(1000).receive(&huge));
    // Fragments adding up to more than announced.
    let mut f = Framing::new(1000);
    let mut first = vec![FLAG_L | FLAG_M];
    first.extend_from_slice(&4u32.to_be_bytes());
    first.extend_from_slice(&[1, 2, 3]);
    f.receive(&first).unwrap();
    malformed(f.receive(&[0, 4, 5]));
    // A message ending short of its announced length.
    let mut f = Framing::new(1000);
    f.receive(&first).unwrap();
    malformed(f.receive(&[0]));
    // The announced length changing between fragments.
    let mut f = Framing::new(1000);
    f.receive(&first).unwrap();
    let mut second = vec![FLAG_L | FLAG_M];
    second.extend_from_slice(&5u32.to_be_bytes());
    malformed(f.receive(&second));
    // Fragments without a length: bounded by 64 KiB all the same.
    let mut f = Framing::new(1000);
    let mut chunk = vec![FLAG_M];
    chunk.extend_from_slice(&[0u8; 1000]);
    let mut refused = false;
    for _ in 0..100 {
        if f.receive(&chunk).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "unbounded reassembly");
    // Data from the gateway while our flight is half sent.
    let mut f = Framing::new(10);
    f.queue(vec![0; 30]);
    f.next_response();
    malformed(f.receive(&[0, 1]));
    malformed(f.receive(&[FLAG_M]));
    // A start in the middle of a message.
    let mut f = Framing::new(1000);
    f.receive(&first).unwrap();
    malformed(f.receive(&[FLAG_S]));
}

// ----- handshakes against rustls ----------------------------------------------------

#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(cert: &[u8], key: &[u8], ca: &[u8]) -> Arc<Certs> {
    Arc::new(Certs {
        key: Some(PrivateKey::parse(key, None).unwrap()),
        chain: cert::parse_certificates(cert).unwrap(),
        trusted: cert::parse_certificates(ca).unwrap(),
        crls: Vec::new(),
    })
}

fn server(
    cert: &[u8],
    key: &[u8],
    client_ca: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ServerConnection {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(cert)
        .map(|c| c.unwrap())
        .collect();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_slice(key).unwrap())
        .unwrap();
    config.send_tls13_tickets = 0;
    ServerConnection::new(Arc::new(config)).unwrap()
}

struct Outcome {
    result: Result<Zeroizing<Vec<u8>>, EapError>,
    server: ServerConnection,
    /// The flags of each of our responses.
    our_flags: Vec<u8>,
}

/// An EAP-TLS server loop (fragments of 300 bytes) around `server`, against our peer.
fn run(setup: TlsSetup, mut server: ServerConnection) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut peer = TlsPeer::new(setup, &mut rng).unwrap();
    let mut sf = Framing::new(300);
    let mut req = vec![FLAG_S];
    let mut our_flags = Vec::new();
    let mut indicated = false;
    for _ in 0..200 {
        let resp = match peer.on_request(&req) {
            Ok(r) => r,
            Err(e) => {
                return Outcome {
                    result: Err(e),
                    server,
                    our_flags,
                };
            }
        };
        our_flags.push(resp[0]);
        match sf.receive(&resp).unwrap() {
            Incoming::Start => panic!("a start from the peer"),
            Incoming::Ack if sf.sending() => req = sf.next_response(),
            Incoming::Ack => {
                // Our last flight taken: EAP Success, with the key the peer must have.
                let result = peer.msk().cloned().ok_or(EapError::Failure).and_then(|m| {
                    if server.is_handshaking() {
                        Err(EapError::Failure)
                    } else {
                        Ok(m)
                    }
                });
                return Outcome {
                    result,
                    server,
                    our_flags,
                };
            }
            Incoming::Fragment => req = vec![0],
            Incoming::Message(m) => {
                let mut rd = &m[..];
                while !rd.is_empty() {
                    server.read_tls(&mut rd).unwrap();
                    if server.process_new_packets().is_err() {
                        break;
                    }
                }
                if !server.is_handshaking()
                    && server.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
                    && !indicated
                {
                    server.writer().write_all(&[0]).unwrap();
                    indicated = true;
                }
                let mut out = Vec::new();
                while server.wants_write() {
                    server.write_tls(&mut out).unwrap();
                }
                sf.queue(out);
                req = sf.next_response();
            }
        }
    }
    panic!("EAP-TLS did not end in 200 rounds");
}

fn setup(c: Arc<Certs>, server_id: Option<Identity>, tls13: bool) -> TlsSetup {
    TlsSetup {
        certs: c,
        server_id,
        at: at(),
        allow_tls13: tls13,
    }
}

#[test]
fn tls12_handshake_gives_the_rfc5216_msk_with_fragments_both_ways() {
    let s = server(GW, GW_KEY, CA, &[&rustls::version::TLS12]);
    let id = Identity {
        kind: IdType::FQDN,
        data: b"gw.example".to_vec(),
    };
    let o = run(setup(certs(CLIENT, CLIENT_KEY, CA), Some(id), true), s);
    let msk = o.result.expect("EAP-TLS succeeds");
    assert_eq!(msk.len(), 64);
    let want = o
        .server
        .export_keying_material([0u8; 64], b"client EAP encryption", None)
        .unwrap();
    assert_eq!(&msk[..], &want[..]);
    assert_eq!(
        o.server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // Our second flight (certificate, key exchange, signature, finished) needed
    // more than one packet: the first with L and M.
    assert!(
        o.our_flags.contains(&(FLAG_L | FLAG_M)),
        "{:?}",
        o.our_flags
    );
    // And the server's peer certificate is ours.
    let theirs = o.server.peer_certificates().unwrap();
    assert_eq!(
        theirs[0].as_ref(),
        cert::parse_certificates(CLIENT).unwrap()[0].der()
    );
}

#[test]
fn tls13_handshake_gives_the_rfc9190_msk_after_the_success_indication() {
    let s = server(GW, GW_KEY, CA, &[&rustls::version::TLS13]);
    let o = run(setup(certs(CLIENT, CLIENT_KEY, CA), None, true), s);
    let msk = o.result.expect("EAP-TLS succeeds");
    let want = o
        .server
        .export_keying_material([0u8; 128], b"EXPORTER_EAP_TLS_Key_Material", Some(&[13]))
        .unwrap();
    assert_eq!(&msk[..], &want[..64]);
}

#[test]
fn an_ecdsa_client_certificate_signs_in_tls12() {
    let s = server(GW, GW_KEY, EC_CA, &[&rustls::version::TLS12]);
    let o = run(setup(certs(EC_GW, EC_GW_KEY, CA), None, false), s);
    o.result.expect("EAP-TLS with ECDSA succeeds");
}

#[test]
fn a_gateway_certificate_from_an_untrusted_ca_is_refused_in_one_sentence() {
    let s = server(GW, GW_KEY, CA, &[&rustls::version::TLS12]);
    let mut c = certs(CLIENT, CLIENT_KEY, OTHER_CA);
    Arc::get_mut(&mut c).unwrap().trusted = cert::parse_certificates(OTHER_CA).unwrap();
    let o = run(setup(c, None, true), s);
    let Err(EapError::ServerCertificate(e)) = &o.result else {
        panic!("{:?}", o.result.map(|_| ()));
    };
    assert!(matches!(e, CertError::UntrustedIssuer { .. }), "{e}");
    let text = crate::ike::Error::Certificate(e.clone()).to_string();
    assert!(text.starts_with("certificate refused: "), "{text}");
}

#[test]
fn a_gateway_certificate_for_another_name_is_refused() {
    let s = server(GW, GW_KEY, CA, &[&rustls::version::TLS12]);
    let id = Identity {
        kind: IdType::FQDN,
        data: b"vpn.elsewhere.example".to_vec(),
    };
    let o = run(setup(certs(CLIENT, CLIENT_KEY, CA), Some(id), true), s);
    assert!(
        matches!(
            o.result,
            Err(EapError::ServerCertificate(CertError::IdMismatch { .. }))
        ),
        "{:?}",
        o.result.map(|_| ())
    );
}

#[test]
fn our_certificate_refused_by_the_gateway_is_said_so() {
    // The server trusts another CA for clients: it answers our flight with an alert.
    let s = server(GW, GW_KEY, OTHER_CA, &[&rustls::version::TLS12]);
    let o = run(setup(certs(CLIENT, CLIENT_KEY, CA), None, true), s);
    let Err(e @ EapError::TlsRefused(_)) = &o.result else {
        panic!("{:?}", o.result.map(|_| ()));
    };
    assert!(
        e.to_string()
            .starts_with("the gateway refused our certificate in EAP-TLS"),
        "{e}"
    );
}
