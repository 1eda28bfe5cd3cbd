//! IKEv2: the codec (decode -> encode -> decode stable, no panics) and both engines
//! fed the input as a datagram (a gateway waiting for IKE_SA_INIT, a client waiting
//! for its answer): nothing may panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use postern_engine::ike::Config;
use postern_engine::ike2::Ike2;
use postern_engine::ike2::codec::{Message, Payload, decode_chain, encode_chain};
use postern_engine::proposal::{parse_esp, parse_ike};
use rand_chacha::rand_core::SeedableRng;

fn config() -> Config {
    let mut c = Config::psk(b"fuzz");
    c.ike_proposals = vec![parse_ike("aes128-sha256-ecp256").expect("proposal")];
    c.esp_proposals = vec![parse_esp("aes128-sha256").expect("proposal")];
    c
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
});
