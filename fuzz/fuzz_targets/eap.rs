//! The EAP peer (`postern_engine::eap`): any sequence of gateway packets is answered
//! or refused with a typed error; answers are well-formed EAP responses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_engine::eap::{Credentials, Peer, Step};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

fuzz_target!(|packets: Vec<Vec<u8>>| {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut peer = Peer::new(Credentials {
        identity: b"user@example.org".to_vec(),
        user: b"user".to_vec(),
        password: Zeroizing::new("password".to_string()),
    });
    for p in packets.iter().take(16) {
        match peer.on_request(p, &mut rng) {
            Ok(Step::Respond(r)) => {
                assert!(r.len() >= 5 && r[0] == 2 && r[1] == p[1]);
                assert_eq!(usize::from(u16::from_be_bytes([r[2], r[3]])), r.len());
            }
            Ok(Step::Success(_)) => break,
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
