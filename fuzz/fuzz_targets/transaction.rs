//! The transaction exchange (XAuth, Mode Config), both sides: phase 1 ran with an
//! XAuth + Mode Config (pull) setup, then scripts of TRANSACTION messages sealed
//! with the live keys (any attribute payloads) reach the client (seed even) or the
//! gateway (seed odd).
#![no_main]

mod common;

use common::{Script, Victim, harness, play};
use libfuzzer_sys::fuzz_target;
use postern_engine::ike::ExchangeMode;
use postern_engine::ike::harness::psk_configs;

fuzz_target!(|script: Script| {
    let mode = if script.seed & 2 == 0 {
        ExchangeMode::Main
    } else {
        ExchangeMode::Aggressive
    };
    let (c, g) = psk_configs(mode, true);
    // Phase 1 only: the gateway's XAuth request is dropped, the setup waits for us.
    let Some(mut h) = harness(c, g, u64::from(script.seed >> 2), false) else {
        return;
    };
    let v = if script.seed & 1 == 0 {
        Victim::Client
    } else {
        Victim::Gateway
    };
    play(&mut h, v, &script);
});
