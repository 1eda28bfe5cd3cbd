//! A client and a gateway engine on a perfect simulated link, for the fuzz targets
//! (`fuzz/`, feature `fuzzing`) and the hostile-input tests: run a real phase 1 (and
//! what follows), then feed one side datagrams that are garbage, or that the other
//! side seals with the live keys ([`Ike::seal_as_peer`]) so they pass decryption and
//! the HASH check and reach the state machines.
//!
//! Every loop is bounded; time only moves when the caller says so.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_core::SeedableRng;
use zeroize::Zeroizing;

use super::{
    ChildConfig, Config, Error, Event, ExchangeMode, Ike, ModeConfigInfo, ModeConfigMode,
    TrafficSelector, XAuthConfig, XAuthServer,
};

/// The client's address (port 500; 4500 after a float).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The gateway's address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn selector(a: [u8; 4], prefix: u8) -> TrafficSelector {
    TrafficSelector {
        addr: IpAddr::V4(Ipv4Addr::from(a)),
        prefix,
    }
}

/// PSK configs for both sides: `aes128-sha256-ecp256` (the cheapest group to run
/// thousands of times a second under a sanitizer), ESP `aes128-sha256`, one
/// host-to-net SA; with `setup`, XAuth and Mode Config (pull) instead of a fixed
/// selector.
pub fn psk_configs(mode: ExchangeMode, setup: bool) -> (Config, Config) {
    let mut c = Config::psk(b"correct horse battery staple");
    c.mode = mode;
    c.ike_proposals = crate::proposal::parse_ike("aes128-sha256-ecp256")
        .into_iter()
        .collect();
    c.esp_proposals = crate::proposal::parse_esp("aes128-sha256")
        .into_iter()
        .collect();
    c.children = vec![ChildConfig {
        local: Some(selector([10, 200, 0, 5], 32)),
        remote: Some(selector([10, 77, 0, 0], 24)),
    }];
    let mut g = c.clone();
    g.children = vec![ChildConfig {
        local: Some(selector([10, 77, 0, 0], 24)),
        remote: Some(selector([10, 200, 0, 0], 24)),
    }];
    if setup {
        c.xauth = Some(XAuthConfig {
            username: "alice".into(),
            password: Some(Zeroizing::new("s3cret".into())),
        });
        c.mode_config = ModeConfigMode::Pull;
        c.children.clear();
        g.xauth_server = Some(XAuthServer {
            username: "alice".into(),
            password: Zeroizing::new("s3cret".into()),
            passcode: None,
        });
        g.mode_config = ModeConfigMode::Pull;
        g.mode_config_server = Some(ModeConfigInfo {
            address: Some(Ipv4Addr::new(10, 200, 0, 7)),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 255)),
            dns: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 53))],
            split_include: vec![selector([10, 77, 0, 0], 24)],
            default_domain: Some("office.example".into()),
            ..Default::default()
        });
        g.children = vec![ChildConfig {
            local: Some(selector([10, 0, 0, 0], 8)),
            remote: Some(selector([10, 200, 0, 0], 24)),
        }];
    }
    (c, g)
}

/// Two engines and the datagrams between them.
pub struct Harness {
    pub now: Instant,
    pub client: Ike,
    pub gateway: Ike,
    pub client_events: Vec<Event>,
    pub gateway_events: Vec<Event>,
    /// Whether what one side sends reaches the other (else it is dropped).
    pub link_up: bool,
    /// In flight: (to the gateway, over port 4500, bytes).
    wire: VecDeque<(bool, bool, Vec<u8>)>,
}

impl Harness {
    /// A client initiating to a gateway, seeded RNGs (`seed`, `seed + 1`).
    pub fn new(client: Config, gateway: Config, seed: u64, now: Instant) -> Result<Self, Error> {
        let rng = |s: u64| Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(s));
        let c = Ike::initiate(
            client,
            sock(CLIENT, 500),
            sock(GATEWAY, 500),
            now,
            rng(seed),
        )?;
        let g = Ike::respond(
            gateway,
            sock(GATEWAY, 500),
            sock(CLIENT, 500),
            rng(seed + 1),
        );
        Ok(Harness {
            now,
            client: c,
            gateway: g,
            client_events: Vec::new(),
            gateway_events: Vec::new(),
            link_up: true,
            wire: VecDeque::new(),
        })
    }

    /// Takes what both sides queued: datagrams onto the wire (or dropped), events
    /// into the lists.
    pub fn collect(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            if self.link_up {
                self.wire.push_back((true, t.nat_t, t.data));
            }
        }
        while let Some(t) = self.gateway.poll_transmit() {
            if self.link_up {
                self.wire.push_back((false, t.nat_t, t.data));
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.gateway.poll_event() {
            self.gateway_events.push(e);
        }
    }

    /// Delivers up to `budget` datagrams in flight (and what they provoke); no time
    /// passes. Returns how many were delivered.
    pub fn pump(&mut self, budget: usize) -> usize {
        let mut n = 0;
        self.collect();
        while n < budget {
            let Some((to_gw, nat_t, d)) = self.wire.pop_front() else {
                break;
            };
            let port = if nat_t { 4500 } else { 500 };
            if to_gw {
                self.gateway
                    .handle_datagram(self.now, sock(GATEWAY, port), sock(CLIENT, port), &d);
            } else {
                self.client
                    .handle_datagram(self.now, sock(CLIENT, port), sock(GATEWAY, port), &d);
            }
            n += 1;
            self.collect();
        }
        n
    }

    /// Moves the clock by `d` and runs both sides' timers.
    pub fn wait(&mut self, d: Duration) {
        self.now = super::now_plus(self.now, d);
        self.client.handle_timeout(self.now);
        self.gateway.handle_timeout(self.now);
        self.collect();
    }

    /// Exchanges datagrams and runs timers until nothing is in flight and no timer
    /// is due within `horizon` (at most `rounds` steps).
    pub fn settle(&mut self, horizon: Duration, rounds: usize) {
        let end = super::now_plus(self.now, horizon);
        for _ in 0..rounds {
            if self.pump(64) > 0 {
                continue;
            }
            let next = [self.client.poll_timeout(), self.gateway.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.gateway.handle_timeout(self.now);
                    self.collect();
                }
                _ => return,
            }
        }
    }

    /// A datagram from the gateway's address to the client (port 500 or 4500).
    pub fn to_client(&mut self, port: u16, d: &[u8]) {
        self.client
            .handle_datagram(self.now, sock(CLIENT, port), sock(GATEWAY, port), d);
        self.collect();
    }

    /// A datagram from the client's address to the gateway.
    pub fn to_gateway(&mut self, port: u16, d: &[u8]) {
        self.gateway
            .handle_datagram(self.now, sock(GATEWAY, port), sock(CLIENT, port), d);
        self.collect();
    }

    /// Drops everything in flight.
    pub fn clear_wire(&mut self) {
        self.wire.clear();
    }

    /// ESP SA pairs the client has up.
    pub fn client_children(&self) -> usize {
        self.client.children().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{ExchangeType, NotifyPayload, NotifyType, Payload, ProtocolId};

    #[test]
    #[allow(clippy::disallowed_methods)] // the simulated clock starts at some real instant
    fn phase1_runs_and_a_sealed_message_reaches_the_state_machine() {
        for (mode, setup) in [
            (ExchangeMode::Main, false),
            (ExchangeMode::Aggressive, false),
            (ExchangeMode::Main, true),
        ] {
            let (c, g) = psk_configs(mode, setup);
            let mut h = Harness::new(c, g, 5, Instant::now()).unwrap();
            h.settle(Duration::from_secs(60), 200);
            assert!(h.client.is_established() && h.gateway.is_established());
            assert_eq!(h.client_children(), 1, "{:?}", h.client_events);
            // A DPD request sealed by the gateway's keys is answered (it passed the
            // decryption and the HASH check), one built otherwise is dropped.
            let (ic, rc) = h.client.cookies();
            let ping = Payload::Notify(NotifyPayload {
                doi: 1,
                protocol: ProtocolId::ISAKMP,
                spi: [ic, rc].concat(),
                kind: NotifyType::R_U_THERE,
                data: 7u32.to_be_bytes().to_vec(),
            });
            let (first, body) = crate::codec::encode_payloads(&[ping]);
            let d = h
                .gateway
                .seal_as_peer(ExchangeType::INFORMATIONAL, 99, first, &body)
                .unwrap();
            let dropped = h.client.counters().dropped;
            h.client
                .handle_datagram(h.now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
            assert_eq!(h.client.counters().dropped, dropped);
            assert!(h.client.poll_transmit().is_some(), "no R-U-THERE-ACK");
            let mut forged = d.clone();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            h.client
                .handle_datagram(h.now, sock(CLIENT, 500), sock(GATEWAY, 500), &forged);
            assert_eq!(h.client.counters().dropped, dropped + 1);
            assert!(h.client.poll_transmit().is_none());
        }
    }
}
