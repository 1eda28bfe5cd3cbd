//! ESP decapsulation of the userspace datapath (`postern_engine::esp`): any bytes as
//! an inbound packet for each transform, and a round trip (what our outbound SA
//! builds from any inner packet, our inbound SA gives back as it was, once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_engine::esp::{InboundSa, MAX_HEADER, MAX_TRAILER, OutboundSa};
use postern_engine::ike::EspKeys;
use rand_chacha::rand_core::SeedableRng;

const SUITES: [&str; 6] = [
    "aes128-sha256",
    "aes256-sha1",
    "3des-md5",
    "aes128gcm16",
    "aes192gcm16",
    "aes256-sha512",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(proposal) = postern_engine::proposal::parse_esp(SUITES[usize::from(sel) % SUITES.len()])
    else {
        return;
    };
    let (ek, ik) = (
        proposal.cipher.keymat_len(),
        proposal.auth.map_or(0, |a| a.key_len()),
    );
    let keys = EspKeys {
        encryption: zeroize::Zeroizing::new(vec![0x11; ek]),
        integrity: zeroize::Zeroizing::new(vec![0x22; ik]),
    };
    let Ok(mut inbound) = InboundSa::new(0x0102_0304, &proposal, &keys) else {
        return;
    };
    // Whatever comes in: refused or accepted, never a panic, the range inside.
    let mut pkt = rest.to_vec();
    if let Ok((range, _)) = inbound.decapsulate(&mut pkt) {
        assert!(range.end <= pkt.len() && range.start <= range.end);
    }
    // Round trip.
    let mut out = OutboundSa::new(
        0x0102_0304,
        &proposal,
        &keys,
        rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(sel)),
    )
    .expect("the same keys make an outbound SA");
    let inner = &rest[..rest.len().min(1500)];
    let mut buf = vec![0u8; MAX_HEADER + inner.len() + MAX_TRAILER];
    buf[MAX_HEADER..MAX_HEADER + inner.len()].copy_from_slice(inner);
    let r = out
        .encapsulate(&mut buf, MAX_HEADER, inner.len(), 4)
        .expect("room was reserved");
    let mut fresh = InboundSa::new(0x0102_0304, &proposal, &keys).expect("inbound SA");
    let mut esp = buf[r].to_vec();
    let copy = esp.clone();
    let (range, nh) = fresh
        .decapsulate(&mut esp)
        .expect("our own packet decapsulates");
    assert_eq!(nh, 4);
    assert_eq!(&esp[range], inner);
    // A replay of it is refused.
    let mut again = copy;
    assert!(fresh.decapsulate(&mut again).is_err());
});
