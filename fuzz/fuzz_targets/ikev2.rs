//! IKEv2: the codec (decode -> encode -> decode stable, no panics) and both engines
//! fed the input as a datagram (a gateway waiting for IKE_SA_INIT, a client waiting
//! for its answer); then the AUTH paths: the input's payload chain, sealed by a
//! gateway that did IKE_SA_INIT with the client, as its IKE_AUTH reply to a client
//! with certificates and to a hybrid client doing EAP. Nothing may panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

use postern_engine::cert::{PrivateKey, parse_certificates};
use postern_engine::ike::{Auth, Certs, Config, Identity, XAuthConfig};
use postern_engine::ike2::Ike2;
use postern_engine::ike2::codec::{Message, Payload, decode_chain, encode_chain, exchange};
use postern_engine::proposal::{parse_esp, parse_ike};
use rand_chacha::rand_core::SeedableRng;

fn config() -> Config {
    let mut c = Config::psk(b"fuzz");
    c.ike_proposals = vec![parse_ike("aes128-sha256-ecp256").expect("proposal")];
    c.esp_proposals = vec![parse_esp("aes128-sha256").expect("proposal")];
    c
}

const CA: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/ca.pem");
const CLIENT_KEY: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/client.key");
const CLIENT_CERT: &[u8] = include_bytes!("../../helper/engine/src/cert/fixtures/client.pem");

/// A client with the test fixtures' certificate (`hybrid`: none, with EAP).
fn cert_client(hybrid: bool, now: Instant) -> Option<Config> {
    let trusted = parse_certificates(CA).ok()?;
    let certs = if hybrid {
        Certs {
            key: None,
            chain: Vec::new(),
            trusted,
            crls: Vec::new(),
        }
    } else {
        Certs {
            key: Some(PrivateKey::parse(CLIENT_KEY, None).ok()?),
            chain: parse_certificates(CLIENT_CERT).ok()?,
            trusted,
            crls: Vec::new(),
        }
    };
    let mut c = config();
    c.auth = if hybrid {
        Auth::Hybrid(Arc::new(certs))
    } else {
        Auth::Signature(Arc::new(certs))
    };
    if hybrid {
        c.xauth = Some(XAuthConfig {
            username: "alice".into(),
            password: Some(zeroize::Zeroizing::new("pw".into())),
        });
    }
    c.local_id = Some(Identity::user_fqdn("alice@example.com"));
    // 2030, inside the fixtures' validity.
    c.wall_clock = Some((
        now,
        std::time::UNIX_EPOCH + Duration::from_secs(1_893_456_000),
    ));
    Some(c)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(first) = Message::decode(data) {
        let payloads: Vec<Payload> = first.payloads().cloned().collect();
        // Without an SK payload the message re-encodes to a decodable equal.
        if first.chain.sk_first.is_none() {
            let bytes = Message::encode(first.header, &payloads);
            let second = Message::decode(&bytes).expect("re-encoded message decodes");
            let again: Vec<Payload> = second.payloads().cloned().collect();
            assert_eq!(payloads, again);
        }
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(chain) = decode_chain(first, rest) {
            if chain.sk_first.is_none() {
                let payloads: Vec<Payload> =
                    chain.payloads.iter().map(|d| d.payload.clone()).collect();
                let (kind, bytes) = encode_chain(&payloads, None);
                let second = decode_chain(kind, &bytes).expect("re-encoded chain decodes");
                let again: Vec<Payload> =
                    second.payloads.iter().map(|d| d.payload.clone()).collect();
                assert_eq!(payloads, again);
            }
        }
    }

    let now = Instant::now();
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);
    let gateway = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 500);
    let rng = || Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(7));
    let mut gw = Ike2::respond(config(), gateway, client, rng());
    gw.handle_datagram(now, gateway, client, data);
    while gw.poll_transmit().is_some() {}
    while gw.poll_event().is_some() {}
    if let Ok(mut c) = Ike2::initiate(config(), client, gateway, now, rng()) {
        while c.poll_transmit().is_some() {}
        c.handle_datagram(now, client, gateway, data);
        c.handle_timeout(now + Duration::from_secs(1));
        while c.poll_transmit().is_some() {}
        while c.poll_event().is_some() {}
    }

    // The AUTH paths: the input as the gateway's (correctly sealed) IKE_AUTH reply.
    if let Some((&first, rest)) = data.split_first()
        && let Ok(chain) = decode_chain(first, rest)
    {
        let payloads: Vec<Payload> = chain.payloads.iter().map(|d| d.payload.clone()).collect();
        for hybrid in [false, true] {
            let Some(cc) = cert_client(hybrid, now) else {
                continue;
            };
            let Ok(mut c) = Ike2::initiate(cc, client, gateway, now, rng()) else {
                continue;
            };
            let mut gw = Ike2::respond(config(), gateway, client, rng());
            let Some(t) = c.poll_transmit() else { continue };
            gw.handle_datagram(now, gateway, client, &t.data);
            let Some(r) = gw.poll_transmit() else {
                continue;
            };
            c.handle_datagram(now, client, gateway, &r.data);
            while c.poll_transmit().is_some() {}
            let reply = gw.seal_as_self(exchange::IKE_AUTH, 1, true, &payloads);
            c.handle_datagram(now, client, gateway, &reply);
            c.handle_timeout(now + Duration::from_secs(1));
            while c.poll_transmit().is_some() {}
            while c.poll_event().is_some() {}
        }
    }
});
