//! What the engine targets share: a fuzz input is a short script of steps played
//! against one side of a [`Harness`] (a client and a gateway engine that ran a real
//! phase 1 first), so the fuzzer reaches the state machines behind decryption and
//! the HASH check, not only the codec.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use postern_engine::codec::{ExchangeType, Header, PayloadType};
use postern_engine::ike::harness::Harness;
use postern_engine::ike::{Config, Event, Ike};

/// One step of a script.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// A datagram as it is (from the peer's address).
    Raw { natt: bool, data: Vec<u8> },
    /// A datagram with the live cookies written over its first 16 bytes and its
    /// length field set right, so it passes the first checks.
    Cookied { natt: bool, data: Vec<u8> },
    /// A payload chain the peer seals with the live keys and a correct HASH(1).
    Sealed {
        exchange: Exch,
        mid: u32,
        first: u8,
        body: Vec<u8>,
    },
    /// Let the two sides talk (what the victim said reaches the peer and back).
    Pump(u8),
    /// Time passes (seconds), timers run.
    Wait(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Exch {
    Quick,
    Informational,
    Transaction,
    Other(u8),
}

impl Exch {
    fn kind(self) -> ExchangeType {
        match self {
            Exch::Quick => ExchangeType::QUICK,
            Exch::Informational => ExchangeType::INFORMATIONAL,
            Exch::Transaction => ExchangeType::TRANSACTION,
            Exch::Other(x) => ExchangeType(x),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Script {
    pub seed: u8,
    pub steps: Vec<Step>,
}

/// Which side the script talks to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    Client,
    Gateway,
}

#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    // Only durations matter to the engines.
    Instant::now()
}

/// A harness whose phase 1 (and whatever `settle` gets through) ran to completion.
pub fn harness(client: Config, gateway: Config, seed: u64, settle: bool) -> Option<Harness> {
    let mut h = Harness::new(client, gateway, seed, start()).ok()?;
    if settle {
        h.settle(Duration::from_secs(60), 200);
    } else {
        // Only phase 1: stop as soon as both sides have it.
        for _ in 0..50 {
            if h.client.is_established() && h.gateway.is_established() {
                break;
            }
            h.pump(1);
        }
        h.clear_wire();
    }
    Some(h)
}

fn victim(h: &mut Harness, v: Victim) -> &mut Ike {
    match v {
        Victim::Client => &mut h.client,
        Victim::Gateway => &mut h.gateway,
    }
}

/// Plays `script` against `v`; at most 64 steps. Asserts what must hold whatever
/// came in: no panic (implicit), events in order, bounded output.
pub fn play(h: &mut Harness, v: Victim, script: &Script) {
    let (ic, rc) = h.client.cookies();
    for step in script.steps.iter().take(64) {
        let port = |natt: bool| if natt { 4500 } else { 500 };
        let datagram: Option<(u16, Vec<u8>)> = match step {
            Step::Raw { natt, data } => Some((port(*natt), data.clone())),
            Step::Cookied { natt, data } => {
                let mut d = data.clone();
                if d.len() >= Header::LEN {
                    d[..8].copy_from_slice(&ic);
                    d[8..16].copy_from_slice(&rc);
                    let len = (d.len() as u32).to_be_bytes();
                    d[24..28].copy_from_slice(&len);
                }
                Some((port(*natt), d))
            }
            Step::Sealed {
                exchange,
                mid,
                first,
                body,
            } => {
                let peer = match v {
                    Victim::Client => &h.gateway,
                    Victim::Gateway => &h.client,
                };
                peer.seal_as_peer(exchange.kind(), *mid, PayloadType(*first), body)
                    .map(|d| (port(peer.udp_encapsulation().is_some()), d))
            }
            Step::Pump(n) => {
                h.pump(usize::from(*n % 16));
                None
            }
            Step::Wait(s) => {
                h.wait(Duration::from_secs(u64::from(*s % 600)));
                None
            }
        };
        if let Some((port, d)) = datagram {
            match v {
                Victim::Client => h.to_client(port, &d),
                Victim::Gateway => h.to_gateway(port, &d),
            }
        }
        let ike = victim(h, v);
        // An engine answers, it does not amplify: a handful of datagrams per input.
        let mut out = 0usize;
        while ike.poll_transmit().is_some() {
            out += 1;
        }
        assert!(out <= 64, "{out} datagrams for one input");
    }
    let events = match v {
        Victim::Client => &h.client_events,
        Victim::Gateway => &h.gateway_events,
    };
    // Nothing happens after the end.
    if let Some(end) = events
        .iter()
        .position(|e| matches!(e, Event::Failed(_) | Event::Closed | Event::Phase1Deleted))
    {
        assert!(
            !events[end + 1..]
                .iter()
                .any(|e| matches!(e, Event::Phase1Established(_) | Event::Phase2Established(_))),
            "an SA came up after the engine ended"
        );
    }
}
