//! The EAP peer (`postern_engine::eap`): any sequence of gateway packets is answered
//! or refused with a typed error; answers are well-formed EAP responses. The first
//! byte picks the peer: a password one (MS-CHAPv2, GTC), an EAP-TLS one (the framing's
//! fragments, acknowledgements and bounds, then rustls on what was put together), or
//! the EAP-TLS framing alone with its 64 KiB bound checked.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use postern_engine::cert::{self, PrivateKey};
use postern_engine::eap::tls::{Framing, Incoming, MAX_MESSAGE, TlsPeer, TlsSetup};
use postern_engine::eap::{Credentials, Peer, Step};
use postern_engine::ike::Certs;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

const CA: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/ca.pem");
const CLIENT: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/client.key");

fn creds() -> Credentials {
    Credentials {
        identity: b"user@example.org".to_vec(),
        user: b"user".to_vec(),
        password: Zeroizing::new("password".to_string()),
    }
}

fn tls_peer(rng: &mut ChaCha20Rng) -> Option<Peer> {
    let certs = Arc::new(Certs {
        key: Some(PrivateKey::parse(CLIENT_KEY, None).ok()?),
        chain: cert::parse_certificates(CLIENT).ok()?,
        trusted: cert::parse_certificates(CA).ok()?,
        crls: Vec::new(),
    });
    let setup = TlsSetup {
        certs,
        server_id: None,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
        allow_tls13: true,
    };
    let tls = TlsPeer::new(setup, rng).ok()?;
    Some(Peer::with_tls(creds(), tls))
}

fuzz_target!(|input: (u8, Vec<Vec<u8>>)| {
    let (mode, packets) = input;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    if mode % 3 == 2 {
        let mut f = Framing::new(1000);
        for p in packets.iter().take(200) {
            match f.receive(p) {
                Ok(Incoming::Message(m)) => assert!(m.len() <= MAX_MESSAGE),
                Ok(_) => {
                    let r = f.next_response();
                    assert!(!r.is_empty() && r.len() <= 1005);
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        return;
    }
    let mut peer = if mode % 3 == 1 {
        match tls_peer(&mut rng) {
            Some(p) => p,
            None => return,
        }
    } else {
        Peer::new(creds())
    };
    for p in packets.iter().take(16) {
        match peer.on_request(p, &mut rng) {
            Ok(Step::Respond(r)) => {
                assert!(r.len() >= 5 && r[0] == 2 && r[1] == p[1]);
                assert_eq!(usize::from(u16::from_be_bytes([r[2], r[3]])), r.len());
                assert!(r.len() <= 5 + 5 + 1000);
            }
            Ok(Step::Success(_)) => break,
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
