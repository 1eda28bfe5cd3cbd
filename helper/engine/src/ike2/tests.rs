//! IKEv2: codec strictness, the key schedule against independently computed values,
//! and a `Pair` of two engines on a simulated link with loss, duplication and
//! reordering.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::codec::{self, Header, Message, Payload, Proposal, Transform, notify, ptype};
use super::keys;
use super::*;
use crate::algs::{EspAuth, EspCipher, HashAlg};
use crate::crypto::test_rng;
use crate::ike::{ChildConfig, Config, DpdConfig, Error, Event, ModeConfigInfo};
use crate::proposal::{parse_esp, parse_ike};

mod children;
mod eap_tls;
mod frag;
mod ike_sa;
mod inner6;
mod mobike;
mod suites;

// ----- codec ----------------------------------------------------------------------

fn sample_message() -> Vec<u8> {
    let h = Header {
        spi_i: [1; 8],
        spi_r: [0; 8],
        next_payload: 0,
        exchange: codec::exchange::IKE_SA_INIT,
        flags: codec::flags::INITIATOR,
        message_id: 0,
        length: 0,
    };
    let payloads = vec![
        Payload::Sa(vec![
            Proposal {
                number: 1,
                protocol: codec::proto::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_len(codec::transform::ENCR, 12, Some(256)),
                    Transform::new(codec::transform::PRF, 5),
                    Transform::new(codec::transform::INTEG, 12),
                    Transform::new(codec::transform::DH, 14),
                ],
            },
            Proposal {
                number: 2,
                protocol: codec::proto::ESP,
                spi: vec![1, 2, 3, 4],
                transforms: vec![Transform::new(codec::transform::ENCR, 3)],
            },
        ]),
        Payload::Ke {
            group: 14,
            data: vec![7; 256],
        },
        Payload::Nonce(vec![9; 32]),
        Payload::Notify {
            protocol: 3,
            spi: vec![0, 0, 1, 0],
            kind: notify::REKEY_SA,
            data: vec![],
        },
        Payload::Ts {
            initiator: true,
            selectors: vec![to_selector(&TrafficSelector {
                addr: "10.0.0.0".parse().unwrap(),
                prefix: 8,
            })],
        },
        Payload::Cp {
            cfg_type: codec::cfg::CFG_REQUEST,
            attrs: vec![codec::CfgAttr {
                kind: codec::cfg::INTERNAL_IP4_ADDRESS,
                value: vec![],
            }],
        },
        Payload::Delete {
            protocol: 3,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        },
        Payload::Raw {
            kind: 200,
            critical: false,
            body: vec![1, 2, 3],
        },
    ];
    Message::encode(h, &payloads)
}

#[test]
fn codec_round_trips() {
    let bytes = sample_message();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.chain.payloads.len(), 8);
    let payloads: Vec<Payload> = m.payloads().cloned().collect();
    assert_eq!(Message::encode(m.header, &payloads), bytes);
    match &payloads[0] {
        Payload::Sa(p) => {
            assert_eq!(p[0].transforms[0].key_len(), Some(256));
            assert_eq!(p[1].spi, vec![1, 2, 3, 4]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn codec_refuses_every_truncation_without_panicking() {
    let bytes = sample_message();
    for n in 0..bytes.len() {
        assert!(Message::decode(&bytes[..n]).is_err(), "length {n}");
        // The header length still claims the whole message: fixing it must not help
        // a cut chain either.
        let mut cut = bytes[..n].to_vec();
        if cut.len() >= codec::HEADER_LEN {
            cut[24..28].copy_from_slice(&(n as u32).to_be_bytes());
            if n != bytes.len() {
                assert!(Message::decode(&cut).is_err(), "fixed length {n}");
            }
        }
    }
}

#[test]
fn codec_refuses_overrunning_lengths() {
    let bytes = sample_message();
    // The first payload header's length one more than there is / below 4.
    for bad in [u16::MAX, 3, 0] {
        let mut b = bytes.clone();
        b[30..32].copy_from_slice(&bad.to_be_bytes());
        assert!(Message::decode(&b).is_err(), "payload length {bad}");
    }
    // Trailing bytes after the chain.
    let mut b = bytes.clone();
    b.push(0);
    let n = b.len() as u32;
    b[24..28].copy_from_slice(&n.to_be_bytes());
    assert!(Message::decode(&b).is_err());
    // Version 1.0 is not IKEv2.
    let mut b = bytes.clone();
    b[17] = 0x10;
    assert!(matches!(
        Message::decode(&b),
        Err(crate::codec::DecodeError::UnsupportedVersion(0x10))
    ));
    // A proposal whose length runs past its SA payload.
    let mut b = bytes.clone();
    b[34..36].copy_from_slice(&1000u16.to_be_bytes());
    assert!(Message::decode(&b).is_err());
}

#[test]
fn codec_every_byte_flipped_never_panics() {
    let bytes = sample_message();
    for i in 0..bytes.len() {
        for v in [0u8, 0xff, 0x80, 1] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = Message::decode(&b);
        }
    }
}

#[test]
fn nonce_length_is_checked() {
    assert!(Payload::decode_body(ptype::NONCE, false, &[0; 15]).is_err());
    assert!(Payload::decode_body(ptype::NONCE, false, &[0; 16]).is_ok());
    assert!(Payload::decode_body(ptype::NONCE, false, &[0; 257]).is_err());
}

#[test]
fn critical_unknown_payload_is_found() {
    let h = Header {
        spi_i: [1; 8],
        spi_r: [2; 8],
        next_payload: 0,
        exchange: codec::exchange::INFORMATIONAL,
        flags: 0,
        message_id: 3,
        length: 0,
    };
    let b = Message::encode(
        h,
        &[Payload::Raw {
            kind: 250,
            critical: true,
            body: vec![],
        }],
    );
    let m = Message::decode(&b).unwrap();
    assert_eq!(codec::unsupported_critical(&m.chain), Some(250));
}

#[test]
fn selectors_convert_both_ways() {
    let t = TrafficSelector {
        addr: "10.77.0.0".parse().unwrap(),
        prefix: 24,
    };
    let s = to_selector(&t);
    assert_eq!(s.end, "10.77.0.255".parse::<IpAddr>().unwrap());
    assert_eq!(from_selector(&s), Some(t));
    assert_eq!(from_selector(&to_selector(&any_v4())), Some(any_v4()));
    let host = TrafficSelector::host("10.1.2.3".parse().unwrap());
    assert_eq!(from_selector(&to_selector(&host)), Some(host));
    // 10.0.0.1-10.0.0.6 is no prefix.
    let mut odd = to_selector(&host);
    odd.start = "10.0.0.1".parse().unwrap();
    odd.end = "10.0.0.6".parse().unwrap();
    assert_eq!(from_selector(&odd), None);
}

// ----- keys -----------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Values computed independently (Python's hmac module, prf+ written from §2.13).
#[test]
fn prf_plus_and_key_schedule_match_independent_values() {
    let k: Vec<u8> = (0..32).collect();
    assert_eq!(
        keys::prf_plus(HashAlg::Sha256, &k, b"seed-for-prf-plus", 80).to_vec(),
        unhex(
            "48d2cda6203428b722038088b35697ceed0de848d4e0708a7237d506f6ef94bdc3336c504e7bae231084a2446fb33f766e23e74892dfd01211b1e8a5f9a949c875cf606dbf67adbe22315c1f1d0cac5d"
        )
    );
    let ks = keys::derive(
        HashAlg::Sha256,
        crate::algs::IkeCipher::AesCbc { key_bits: 128 },
        &[0x33; 256],
        &[0x11; 32],
        &[0x22; 32],
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[9, 10, 11, 12, 13, 14, 15, 16],
    );
    assert_eq!(
        ks.sk_d.to_vec(),
        unhex("9f903712f48381691f886c084aab2b360cceb8a762fb95d62d2712161ea3045f")
    );
    assert_eq!(ks.sk_ei.to_vec(), unhex("f03bb0fb11dc78d12036c08ba20b7900"));
    assert_eq!(ks.sk_er.to_vec(), unhex("5d6883238ff30e6a04c612092de042db"));
    assert_eq!(
        ks.sk_pr.to_vec(),
        unhex("c7db76553359222b840d149aebd915cc7c0ad22fa03ea6fddb6d6b97a5403712")
    );
    assert_eq!(
        keys::psk_auth(HashAlg::Sha256, b"secret", b"octets"),
        unhex("93d6b432e988c4c184f49457ef7ddfef938f1179de4120120d1cc523b368d33b")
    );
}

#[test]
fn sk_seal_open_and_tamper() {
    let ks = keys::derive(
        HashAlg::Sha256,
        crate::algs::IkeCipher::AesCbc { key_bits: 256 },
        &[5; 64],
        &[1; 32],
        &[2; 32],
        &[3; 8],
        &[4; 8],
    );
    let h = Header {
        spi_i: [3; 8],
        spi_r: [4; 8],
        next_payload: 0,
        exchange: codec::exchange::INFORMATIONAL,
        flags: codec::flags::INITIATOR,
        message_id: 7,
        length: 0,
    };
    let mut rng = test_rng(1);
    let inner = vec![Payload::Delete {
        protocol: 1,
        spi_size: 0,
        spis: vec![],
    }];
    let d = ks.seal(h, &inner, true, &mut rng);
    let m = Message::decode(&d).unwrap();
    let chain = ks.open(&d, &m, true).unwrap();
    assert_eq!(chain.payloads[0].payload, inner[0]);
    // The other direction's keys do not open it.
    assert_eq!(ks.open(&d, &m, false), Err(keys::SkError::Integrity));
    // Any flipped byte fails the integrity check (or the decoding).
    for i in 0..d.len() {
        let mut t = d.clone();
        t[i] ^= 0x01;
        if let Ok(m) = Message::decode(&t) {
            assert!(ks.open(&t, &m, true).is_err(), "byte {i}");
        }
    }
    // An empty chain round-trips too (a liveness check).
    let d = ks.seal(h, &[], true, &mut rng);
    let m = Message::decode(&d).unwrap();
    assert!(ks.open(&d, &m, true).unwrap().payloads.is_empty());
}

// ----- the Pair -------------------------------------------------------------------

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn configs(ike_i: &[&str], ike_r: &[&str], psk_r: &[u8]) -> (Config, Config) {
    let mut c = Config::psk(b"shared secret");
    c.ike_proposals = ike_i.iter().map(|s| parse_ike(s).unwrap()).collect();
    c.esp_proposals = vec![
        parse_esp("aes256gcm16").unwrap(),
        parse_esp("aes128-sha256").unwrap(),
    ];
    c.mode_config = crate::ike::ModeConfigMode::Pull;
    c.local_id = Some(Identity::fqdn("client.example"));
    c.remote_id = Some(Identity::fqdn("gw.example"));
    c.dpd = Some(DpdConfig {
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(150),
    });
    let mut s = Config::psk(psk_r);
    s.ike_proposals = ike_r.iter().map(|s| parse_ike(s).unwrap()).collect();
    s.esp_proposals = vec![parse_esp("aes128-sha256").unwrap()];
    s.local_id = Some(Identity::fqdn("gw.example"));
    s.children = vec![ChildConfig {
        local: Some(TrafficSelector {
            addr: "10.77.0.0".parse().unwrap(),
            prefix: 24,
        }),
        remote: None,
    }];
    s.mode_config_server = Some(ModeConfigInfo {
        address: Some(Ipv4Addr::new(10, 200, 0, 5)),
        dns: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 53))],
        ..Default::default()
    });
    s.dpd = None;
    (c, s)
}

/// The link's misbehaviour, decided per datagram from a seeded counter.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Drop every n-th datagram (0: none).
    drop_every: u32,
    /// Duplicate every n-th datagram.
    dup_every: u32,
    /// Delay every n-th datagram by 300 ms (so later ones overtake it).
    delay_every: u32,
}

struct Pair {
    client: Ike2,
    gateway: Ike2,
    now: Instant,
    /// (deliver at, to the gateway?, datagram)
    wire: Vec<(Instant, bool, Transmit)>,
    faults: Faults,
    count: u32,
    client_events: Vec<Event>,
    gateway_events: Vec<Event>,
    sent_to_gateway: Vec<Vec<u8>>,
}

impl Pair {
    // The simulated clock starts at a real instant; nothing reads it afterwards.
    #[allow(clippy::disallowed_methods)]
    fn new(c: Config, s: Config, faults: Faults) -> Pair {
        let now = Instant::now();
        let client = Ike2::initiate(
            c,
            sock(CLIENT, 500),
            sock(GATEWAY, 500),
            now,
            Box::new(test_rng(11)),
        )
        .unwrap();
        let gateway = Ike2::respond(
            s,
            sock(GATEWAY, 500),
            sock(CLIENT, 500),
            Box::new(test_rng(22)),
        );
        Pair {
            client,
            gateway,
            now,
            wire: Vec::new(),
            faults,
            count: 0,
            client_events: Vec::new(),
            gateway_events: Vec::new(),
            sent_to_gateway: Vec::new(),
        }
    }

    fn collect(&mut self) {
        let f = self.faults;
        let hit = |n: u32, every: u32| every != 0 && n.is_multiple_of(every);
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit() {
            out.push((true, t));
        }
        while let Some(t) = self.gateway.poll_transmit() {
            out.push((false, t));
        }
        for (to_gw, t) in out {
            self.count += 1;
            let n = self.count;
            if to_gw {
                self.sent_to_gateway.push(t.data.clone());
            }
            if hit(n, f.drop_every) {
                continue;
            }
            let delay = if hit(n, f.delay_every) {
                Duration::from_millis(300)
            } else {
                Duration::from_millis(5)
            };
            if hit(n, f.dup_every) {
                self.wire.push((
                    self.now + delay + Duration::from_millis(1),
                    to_gw,
                    t.clone(),
                ));
            }
            self.wire.push((self.now + delay, to_gw, t));
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.gateway.poll_event() {
            self.gateway_events.push(e);
        }
    }

    /// Runs until both sides are quiet or `limit` of simulated time has passed.
    fn drive(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..10_000 {
            self.collect();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next = [
                next_wire,
                self.client.poll_timeout(),
                self.gateway.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            if let Some(i) = self.wire.iter().position(|w| w.0 <= self.now) {
                let (_, to_gw, t) = self.wire.remove(i);
                let port = if t.nat_t { 4500 } else { 500 };
                if to_gw {
                    self.gateway.handle_datagram(
                        self.now,
                        sock(GATEWAY, port),
                        sock(CLIENT, port),
                        &t.data,
                    );
                } else {
                    self.client.handle_datagram(
                        self.now,
                        sock(CLIENT, port),
                        sock(GATEWAY, port),
                        &t.data,
                    );
                }
                continue;
            }
            self.client.handle_timeout(self.now);
            self.gateway.handle_timeout(self.now);
        }
        panic!("the pair did not settle");
    }

    fn established(&self) -> bool {
        self.client.is_established()
            && self.gateway.is_established()
            && self.client.children().len() == 1
            && self.gateway.children().len() == 1
    }

    fn failure(events: &[Event]) -> Option<&Error> {
        events.iter().find_map(|e| match e {
            Event::Failed(e) => Some(e),
            _ => None,
        })
    }
}

fn check_children_mirror(p: &Pair) {
    let c = &p.client.children()[0];
    let g = &p.gateway.children()[0];
    assert_eq!(c.spi_in, g.spi_out);
    assert_eq!(c.spi_out, g.spi_in);
    assert_eq!(c.keys_in.encryption, g.keys_out.encryption);
    assert_eq!(c.keys_in.integrity, g.keys_out.integrity);
    assert_eq!(c.keys_out.encryption, g.keys_in.encryption);
    assert_ne!(c.keys_in.encryption, c.keys_out.encryption);
    assert_eq!(c.proposal.cipher, EspCipher::AesCbc { key_bits: 128 });
    assert_eq!(c.proposal.auth, Some(EspAuth::HmacSha256_128));
    assert_eq!(c.keys_out.encryption.len(), 16);
    assert_eq!(c.keys_out.integrity.len(), 32);
    // Narrowed: the client's side to its virtual address, the gateway's subnet.
    assert_eq!(c.local_ts.unwrap().to_string(), "10.200.0.5/32");
    assert_eq!(c.remote_ts.unwrap().to_string(), "10.77.0.0/24");
    assert_eq!(g.remote_ts, c.local_ts);
}

#[test]
fn pair_connects_on_a_clean_link() {
    let (c, s) = configs(
        &["aes256-sha256-modp2048"],
        &["aes256-sha256-modp2048"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(
        p.established(),
        "{:?} / {:?}",
        p.client_events,
        p.gateway_events
    );
    check_children_mirror(&p);
    // Event order for the driver: IKE SA, mode config, child.
    let kinds: Vec<&str> = p
        .client_events
        .iter()
        .map(|e| match e {
            Event::Phase1Established(_) => "ike",
            Event::ModeConfig(_) => "cp",
            Event::Phase2Established(_) => "child",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["ike", "cp", "child"]);
    let mc = p.client.mode_config().unwrap();
    assert_eq!(mc.address, Some(Ipv4Addr::new(10, 200, 0, 5)));
    assert_eq!(mc.dns, vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 53))]);
    let info = p.client.phase1().unwrap();
    assert_eq!(info.peer_id, Identity::fqdn("gw.example"));
    assert!(!info.nat.any());
    // Four datagrams in all: two exchanges.
    assert_eq!(p.count, 4);
    // IKEv2 transform numbers (not IKEv1's): ENCR_AES_CBC 12 with 256-bit keys,
    // PRF_HMAC_SHA2_256 5, AUTH_HMAC_SHA2_256_128 12, MODP 2048 14.
    let init = Message::decode(&p.sent_to_gateway[0]).unwrap();
    let Some(Payload::Sa(props)) = init.payloads().find(|p| p.kind() == ptype::SA) else {
        panic!("no SA")
    };
    let ids: Vec<(u8, u16, Option<u16>)> = props[0]
        .transforms
        .iter()
        .map(|t| (t.kind, t.id, t.key_len()))
        .collect();
    assert_eq!(
        ids,
        [
            (1, 12, Some(256)),
            (2, 5, None),
            (3, 12, None),
            (4, 14, None)
        ]
    );
}

#[test]
fn pair_connects_through_loss_duplication_and_reordering() {
    for (seed, faults) in [
        // (Every second datagram would drop every answer of an alternating
        // exchange: no protocol survives that.)
        Faults {
            drop_every: 3,
            ..Default::default()
        },
        Faults {
            dup_every: 1,
            ..Default::default()
        },
        Faults {
            drop_every: 3,
            dup_every: 2,
            delay_every: 2,
        },
        Faults {
            drop_every: 4,
            dup_every: 3,
            delay_every: 1,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let (c, s) = configs(
            &["aes128-sha256-ecp256"],
            &["aes128-sha256-ecp256"],
            b"shared secret",
        );
        let mut p = Pair::new(c, s, faults);
        p.drive(Duration::from_secs(30));
        assert!(p.established(), "case {seed}: {:?}", p.client_events);
        check_children_mirror(&p);
        // Exactly one IKE SA and one child on each side, whatever was duplicated.
        let n = |ev: &[Event]| {
            ev.iter()
                .filter(|e| matches!(e, Event::Phase2Established(_)))
                .count()
        };
        assert_eq!(n(&p.client_events), 1, "case {seed}");
        assert_eq!(n(&p.gateway_events), 1, "case {seed}");
        if faults.drop_every != 0 && faults.dup_every == 0 {
            assert!(p.client.counters().retransmits > 0, "case {seed}");
        }
    }
}

#[test]
fn invalid_ke_payload_retry_uses_the_group_asked_for() {
    let (c, s) = configs(
        &["aes128-sha256-modp2048", "aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    assert_eq!(
        p.client.phase1().unwrap().proposal.group,
        crate::algs::DhGroup::Ecp256
    );
    // Two IKE_SA_INIT requests: the first with a 2048-bit KE, the second with P-256.
    let ke_groups: Vec<u16> = p
        .sent_to_gateway
        .iter()
        .filter_map(|d| Message::decode(d).ok())
        .filter(|m| m.header.exchange == codec::exchange::IKE_SA_INIT)
        .filter_map(|m| {
            m.payloads().find_map(|p| match p {
                Payload::Ke { group, .. } => Some(*group),
                _ => None,
            })
        })
        .collect();
    assert_eq!(ke_groups, [14, 19]);
}

#[test]
fn cookie_retry() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.gateway.set_require_cookie(true);
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    let first: Vec<Message> = p
        .sent_to_gateway
        .iter()
        .filter_map(|d| Message::decode(d).ok())
        .filter(|m| m.header.exchange == codec::exchange::IKE_SA_INIT)
        .collect();
    assert_eq!(first.len(), 2);
    // The retry starts with the COOKIE notify (§2.6).
    assert!(matches!(
        first[1].payloads().next(),
        Some(Payload::Notify {
            kind: notify::COOKIE,
            ..
        })
    ));
}

#[test]
fn wrong_psk_is_authentication_failed_on_both_sides() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"another secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let e = Pair::failure(&p.client_events).expect("client fails");
    assert_eq!(
        e.to_string(),
        "authentication failed (wrong pre-shared key or identity)"
    );
    assert!(matches!(
        Pair::failure(&p.gateway_events),
        Some(Error::AuthenticationFailed(_))
    ));
    assert!(p.client.is_dead());
}

#[test]
fn no_proposal_chosen_is_reported() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes256-sha512-modp4096"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(matches!(
        Pair::failure(&p.client_events),
        Some(Error::NoProposalChosen(_))
    ));
}

#[test]
fn unreachable_gateway_gives_up_after_the_retransmissions() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(
        c,
        s,
        Faults {
            drop_every: 1,
            ..Default::default()
        },
    );
    p.drive(Duration::from_secs(60));
    assert_eq!(
        Pair::failure(&p.client_events),
        Some(&Error::NotResponding(4))
    );
    // 1, 2, 4, 8 s between the 5 sends, then 10 s: 25 s.
    assert_eq!(p.sent_to_gateway.len(), 5);
}

#[test]
fn liveness_checks_keep_a_quiet_tunnel_and_find_a_dead_peer() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    // Two DPD intervals of silence: the client asks, the gateway answers.
    let before = p.sent_to_gateway.len();
    p.drive(Duration::from_secs(65));
    assert!(p.client.is_established());
    assert!(p.sent_to_gateway.len() >= before + 2);
    assert!(Pair::failure(&p.client_events).is_none());
    // Now the gateway vanishes.
    p.faults.drop_every = 1;
    p.drive(Duration::from_secs(120));
    assert!(matches!(
        Pair::failure(&p.client_events),
        Some(Error::DeadPeer(_))
    ));
}

#[test]
fn check_peer_after_resume() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.client.check_peer(p.now, Duration::from_secs(10)));
    assert!(p.client.checking_peer());
    p.drive(Duration::from_secs(1));
    assert!(!p.client.checking_peer());
    assert!(p.client.is_established());
}

#[test]
fn close_deletes_the_ike_sa_at_the_peer() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let spi = p.client.children()[0].spi_in;
    p.client.close(p.now);
    p.drive(Duration::from_secs(5));
    assert!(p.client_events.iter().any(|e| matches!(e, Event::Closed)));
    assert!(p.client_events.iter().any(
        |e| matches!(e, Event::Phase2Deleted { spi_in, by_peer: false, .. } if *spi_in == spi)
    ));
    assert!(
        p.gateway_events
            .iter()
            .any(|e| matches!(e, Event::Phase1Deleted))
    );
    assert!(p.gateway.is_dead());
}

#[test]
fn gateway_delete_of_the_ike_sa_reaches_the_client() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    p.gateway.close(p.now);
    p.drive(Duration::from_secs(5));
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Phase1Deleted))
    );
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Phase2Deleted { by_peer: true, .. }))
    );
}

#[test]
fn forced_nat_traversal_floats_to_4500() {
    let (mut c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.nat_traversal = crate::ike::NatTraversal::Force;
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    assert!(p.client.floated());
    assert!(p.gateway.floated());
    assert!(p.client.children()[0].udp_encapsulation);
    assert!(p.gateway.children()[0].udp_encapsulation);
    assert!(p.gateway.phase1().unwrap().nat.remote_behind_nat);
    // No NAT was detected: the float is ours.
    let nat = p.client.phase1().unwrap().nat;
    assert!(nat.forced && !nat.local_behind_nat && !nat.remote_behind_nat);
}

#[test]
fn garbage_and_replays_do_not_disturb_an_established_sa() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let old = p.sent_to_gateway.clone();
    let mut rng = test_rng(3);
    for i in 0..200u32 {
        let mut junk = old[(i as usize) % old.len()].clone();
        let n = junk.len();
        let at = (crate::crypto::rand_core::Rng::next_u32(&mut rng) as usize) % n;
        junk[at] ^= (i as u8) | 1;
        p.client
            .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &junk);
        p.gateway
            .handle_datagram(p.now, sock(GATEWAY, 500), sock(CLIENT, 500), &junk);
    }
    // Replayed requests are answered from the cache, nothing more.
    for d in &old {
        p.gateway
            .handle_datagram(p.now, sock(GATEWAY, 500), sock(CLIENT, 500), d);
    }
    p.drive(Duration::from_secs(2));
    assert!(p.established());
    assert!(Pair::failure(&p.client_events).is_none());
    assert!(Pair::failure(&p.gateway_events).is_none());
}

/// Both sides hold exactly one child, with mirrored SPIs and keys, and it is not `old`.
fn check_rekeyed(p: &Pair, old_spi_in: u32) {
    assert_eq!(p.client.children().len(), 1, "{:?}", p.client_events);
    assert_eq!(p.gateway.children().len(), 1, "{:?}", p.gateway_events);
    let c = &p.client.children()[0];
    let g = &p.gateway.children()[0];
    assert_ne!(c.spi_in, old_spi_in);
    assert_eq!(c.spi_in, g.spi_out);
    assert_eq!(c.spi_out, g.spi_in);
    assert_eq!(c.keys_in.encryption, g.keys_out.encryption);
    assert_eq!(c.keys_in.integrity, g.keys_out.integrity);
    assert_eq!(c.keys_out.encryption, g.keys_in.encryption);
    assert_eq!(c.local_ts, g.remote_ts);
    assert_eq!(c.remote_ts, g.local_ts);
}

#[test]
fn the_client_rekeys_its_child_before_the_lifetime_with_and_without_pfs() {
    for pfs in [None, Some(crate::algs::DhGroup::Ecp256)] {
        let (mut c, s) = configs(
            &["aes128-sha256-ecp256"],
            &["aes128-sha256-ecp256"],
            b"shared secret",
        );
        c.esp_lifetime = Duration::from_secs(100);
        for e in &mut c.esp_proposals {
            e.group = pfs;
        }
        let mut p = Pair::new(
            c,
            s,
            Faults {
                drop_every: 7,
                ..Default::default()
            },
        );
        p.drive(Duration::from_secs(5));
        assert!(p.established());
        let first = p.client.children()[0].clone();
        // 85 % of 100 s.
        p.drive(Duration::from_secs(60));
        assert_eq!(
            p.client.children()[0].spi_in,
            first.spi_in,
            "rekeyed too early"
        );
        p.drive(Duration::from_secs(40));
        check_rekeyed(&p, first.spi_in);
        // The new keys differ from the old ones.
        assert_ne!(
            p.client.children()[0].keys_out.encryption,
            first.keys_out.encryption
        );
        // The old pair was deleted by us, the gateway saw the DELETE.
        assert!(p.client_events.iter().any(|e| matches!(
            e,
            Event::Phase2Deleted { spi_in, by_peer: false, .. } if *spi_in == first.spi_in
        )));
        assert!(p.gateway_events.iter().any(|e| matches!(
            e,
            Event::Phase2Deleted { spi_out, by_peer: true, .. } if *spi_out == first.spi_in
        )));
        // And again one lifetime later.
        let second = p.client.children()[0].spi_in;
        p.drive(Duration::from_secs(90));
        check_rekeyed(&p, second);
        assert!(Pair::failure(&p.client_events).is_none(), "pfs {pfs:?}");
    }
}

#[test]
fn the_gateway_rekeys_the_child_and_the_client_answers() {
    let (mut c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    for e in &mut c.esp_proposals {
        e.group = Some(crate::algs::DhGroup::Ecp256);
    }
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let old = p.gateway.children()[0].spi_in;
    let client_old = p.client.children()[0].spi_in;
    assert!(p.gateway.rekey(p.now, old));
    p.drive(Duration::from_secs(5));
    check_rekeyed(&p, client_old);
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Phase2Deleted { spi_in, by_peer: true, .. } if *spi_in == client_old
    )));
}

#[path = "tests_auth.rs"]
mod auth_tests;
