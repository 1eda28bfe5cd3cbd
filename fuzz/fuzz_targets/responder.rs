//! The engine as responder (the gateway of a harness): a real main or aggressive mode
//! and quick mode ran, then a script of raw, cookied and sealed datagrams, pumps
//! and waits. Half the inputs instead hit a fresh engine that has only just
//! started (its first exchange in progress).
#![no_main]

mod common;

use common::{Script, Victim, harness, play};
use libfuzzer_sys::fuzz_target;
use postern_engine::ike::ExchangeMode;
use postern_engine::ike::harness::psk_configs;

fuzz_target!(|script: Script| {
    let mode = if script.seed & 1 == 0 {
        ExchangeMode::Main
    } else {
        ExchangeMode::Aggressive
    };
    let (c, g) = psk_configs(mode, false);
    let settle = script.seed & 2 == 0;
    let Some(mut h) = harness(c, g, u64::from(script.seed >> 2), settle) else {
        return;
    };
    if script.seed & 4 != 0 {
        // A fresh exchange: the engines only swapped what phase 1 needed so far.
        let (c, g) = psk_configs(mode, false);
        let Some(fresh) = postern_engine::ike::harness::Harness::new(c, g, 7, h.now).ok() else {
            return;
        };
        h = fresh;
        h.pump(usize::from(script.seed >> 4));
        h.link_up = false;
    }
    play(&mut h, Victim::Gateway, &script);
});
