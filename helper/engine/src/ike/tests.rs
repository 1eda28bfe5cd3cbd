//! Two engines in one test: initiator and responder over a simulated link
//! with a simulated clock, latency, loss and reordering (after quinn-proto's `Pair`).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::algs::*;
use crate::codec::{self, ExchangeType, Header};
use crate::crypto::test_rng;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 500)
}

fn addr6(last: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)),
        500,
    )
}

fn ts(s: &str) -> TrafficSelector {
    let (a, p) = s.split_once('/').unwrap();
    TrafficSelector {
        addr: a.parse().unwrap(),
        prefix: p.parse().unwrap(),
    }
}

fn ike(s: &str) -> IkeProposal {
    crate::proposal::parse_ike(s).unwrap()
}
fn esp(s: &str) -> EspProposal {
    crate::proposal::parse_esp(s).unwrap()
}

/// Decides the fate of each datagram: `(from_initiator, index, bytes) -> deliver?`.
type Filter = Box<dyn FnMut(bool, usize, &[u8]) -> bool>;

struct Pair {
    now: Instant,
    latency: Duration,
    /// Deliver datagrams in each batch in reverse order.
    reorder: bool,
    filter: Filter,
    i: Ike,
    r: Ike,
    /// Further responders for new ISAKMP SAs (phase 1 renewals), like a gateway has.
    r_more: Vec<Ike>,
    r_config: Config,
    /// In flight: (arrival, to_responder, over port 4500, bytes).
    wire: VecDeque<(Instant, bool, bool, Vec<u8>)>,
    /// The initiator sits behind a NAT: the responder sees it as 192.0.2.2 with
    /// remapped ports.
    nat: bool,
    /// The gateway's and the client's outer addresses (192.0.2.1 and .2, or IPv6).
    gw_ip: IpAddr,
    client_ip: IpAddr,
    sent: usize,
    i_events: Vec<Event>,
    r_events: Vec<Event>,
    /// What the first responder does with a quick mode that comes before its setup
    /// (XAuth, Mode Config) is complete.
    early_quick: EarlyQuick,
    /// The first responder was destroyed ([`EarlyQuick::Destroys`]): it hears nothing more.
    r_gone: bool,
    /// The datagram of this index (as counted by `sent`) is delivered twice.
    dup: Option<usize>,
    /// The datagram of this index takes this much longer than the others.
    slow: Option<(usize, Duration)>,
}

/// A gateway's handling of a quick mode that arrives before its setup is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EarlyQuick {
    /// Our own responder: answers it.
    Answers,
    /// Drops it and waits for the setup to complete.
    Ignores,
    /// Destroys the IKE SA without a word, as strongSwan's charon does ("received
    /// quick mode request for unestablished IKE_SA, ignored", then DESTROYING).
    Destroys,
}

impl Pair {
    fn new(ic: Config, rc: Config, seed: u64) -> Pair {
        Pair::build(ic, rc, seed, false)
    }

    fn behind_nat(ic: Config, rc: Config, seed: u64) -> Pair {
        Pair::build(ic, rc, seed, true)
    }

    /// Both outer addresses IPv6 (2001:db8::1 the gateway, ::2 the client).
    fn over_ipv6(ic: Config, rc: Config, seed: u64) -> Pair {
        Pair::build_at(ic, rc, seed, false, addr6(1), addr6(2))
    }

    fn build(ic: Config, rc: Config, seed: u64, nat: bool) -> Pair {
        Pair::build_at(ic, rc, seed, nat, addr(1), addr(2))
    }

    #[allow(clippy::disallowed_methods)] // the simulated clock starts at some real instant
    fn build_at(
        ic: Config,
        rc: Config,
        seed: u64,
        nat: bool,
        gw: SocketAddr,
        client: SocketAddr,
    ) -> Pair {
        let now = Instant::now();
        let local = if nat {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 500)
        } else {
            client
        };
        let i = Ike::initiate(ic, local, gw, now, Box::new(test_rng(seed))).unwrap();
        let r = Ike::respond(rc.clone(), gw, client, Box::new(test_rng(seed + 1000)));
        Pair {
            now,
            latency: Duration::from_millis(10),
            reorder: false,
            filter: Box::new(|_, _, _| true),
            i,
            r,
            r_more: Vec::new(),
            r_config: rc,
            wire: VecDeque::new(),
            nat,
            gw_ip: gw.ip(),
            client_ip: client.ip(),
            sent: 0,
            i_events: Vec::new(),
            r_events: Vec::new(),
            early_quick: EarlyQuick::Answers,
            r_gone: false,
            dup: None,
            slow: None,
        }
    }

    fn collect(&mut self) {
        let mut batch = Vec::new();
        while let Some(t) = self.i.poll_transmit() {
            assert_eq!(t.destination.ip(), self.gw_ip);
            assert_eq!(t.destination.port(), if t.nat_t { 4500 } else { 500 });
            batch.push((true, t.nat_t, t.data));
        }
        while let Some(t) = self.r.poll_transmit() {
            if !self.r_gone {
                batch.push((false, t.nat_t, t.data));
            }
        }
        for r in &mut self.r_more {
            while let Some(t) = r.poll_transmit() {
                batch.push((false, t.nat_t, t.data));
            }
        }
        if self.reorder {
            batch.reverse();
        }
        for (to_r, nat_t, d) in batch {
            let n = self.sent;
            self.sent += 1;
            if (self.filter)(to_r, n, &d) {
                let latency = match self.slow {
                    Some((i, extra)) if i == n => self.latency + extra,
                    _ => self.latency,
                };
                if self.dup == Some(n) {
                    self.wire
                        .push_back((self.now + self.latency, to_r, nat_t, d.clone()));
                }
                self.wire.push_back((self.now + latency, to_r, nat_t, d));
            }
        }
        while let Some(e) = self.i.poll_event() {
            self.i_events.push(e);
        }
        while let Some(e) = self.r.poll_event() {
            self.r_events.push(e);
        }
        for r in &mut self.r_more {
            while let Some(e) = r.poll_event() {
                self.r_events.push(e);
            }
        }
    }

    /// Runs until nothing is in flight and no timer is due within `horizon`.
    fn drive_for(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        for _ in 0..10_000 {
            self.collect();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next_timer = [self.i.poll_timeout(), self.r.poll_timeout()]
                .into_iter()
                .chain(self.r_more.iter().map(|r| r.poll_timeout()))
                .flatten()
                .min();
            let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else {
                return;
            };
            if next > end {
                return;
            }
            self.now = self.now.max(next);
            if let Some(pos) = self.wire.iter().position(|w| w.0 <= self.now) {
                let (_, to_r, nat_t, d) = self.wire.remove(pos).unwrap();
                let port = if nat_t { 4500 } else { 500 };
                let gw = SocketAddr::new(self.gw_ip, port);
                // What the responder sees as the initiator's address.
                let client = match (self.nat, nat_t) {
                    (false, _) => SocketAddr::new(self.client_ip, port),
                    (true, false) => SocketAddr::new(self.client_ip, 31000),
                    (true, true) => SocketAddr::new(self.client_ip, 31001),
                };
                if to_r {
                    let h = Header::decode(&d).ok();
                    let first = self.r.phase1().map(|i| i.initiator_cookie);
                    let cookie = h.as_ref().map(|h| h.initiator_cookie);
                    let for_first = first.is_none() || first == cookie;
                    let early = !self.r.setup_done()
                        && h.as_ref()
                            .is_some_and(|h| h.exchange == ExchangeType::QUICK);
                    if for_first && early && self.early_quick != EarlyQuick::Answers {
                        self.r_gone |= self.early_quick == EarlyQuick::Destroys;
                    } else if for_first && !self.r_gone {
                        self.r.handle_datagram(self.now, gw, client, &d);
                    } else if for_first {
                        // Destroyed: the datagram finds no IKE SA.
                    } else if let Some(r) = self.r_more.iter_mut().find(|r| {
                        r.phase1().map(|i| i.initiator_cookie) == cookie
                            || !r.is_established() && !r.is_dead()
                    }) {
                        r.handle_datagram(self.now, gw, client, &d);
                    } else if h.is_some_and(|h| h.responder_cookie == [0; 8]) {
                        let seed = 7000 + self.r_more.len() as u64;
                        let mut r = Ike::respond(
                            self.r_config.clone(),
                            gw,
                            client,
                            Box::new(test_rng(seed)),
                        );
                        r.handle_datagram(self.now, gw, client, &d);
                        self.r_more.push(r);
                    }
                } else {
                    let local = if self.nat {
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), port)
                    } else {
                        client
                    };
                    self.i.handle_datagram(self.now, local, gw, &d);
                }
            } else {
                self.i.handle_timeout(self.now);
                self.r.handle_timeout(self.now);
                for r in &mut self.r_more {
                    r.handle_timeout(self.now);
                }
            }
        }
        panic!("drive did not settle");
    }

    fn drive(&mut self) {
        self.drive_for(Duration::from_secs(300));
    }

    fn children_i(&self) -> Vec<ChildSa> {
        self.i_events
            .iter()
            .filter_map(|e| match e {
                Event::Phase2Established(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
    fn children_r(&self) -> Vec<ChildSa> {
        self.r_events
            .iter()
            .filter_map(|e| match e {
                Event::Phase2Established(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
    fn failure_i(&self) -> Option<Error> {
        self.i_events.iter().find_map(|e| match e {
            Event::Failed(e) => Some(e.clone()),
            _ => None,
        })
    }
}

fn configs(mode: ExchangeMode) -> (Config, Config) {
    let mut i = Config::psk(b"correct horse battery staple");
    i.mode = mode;
    i.ike_proposals = vec![ike("aes128-sha256-modp2048")];
    i.esp_proposals = vec![esp("aes128-sha256")];
    i.children = vec![ChildConfig {
        local: Some(ts("10.200.0.5/32")),
        remote: Some(ts("10.77.0.0/24")),
    }];
    let mut r = i.clone();
    r.children = vec![ChildConfig {
        local: Some(ts("10.77.0.0/24")),
        remote: Some(ts("10.200.0.0/24")),
    }];
    (i, r)
}

/// Both sides derived the same keys, crosswise.
fn assert_matching(p: &Pair) {
    let (ci, cr) = (p.children_i(), p.children_r());
    assert_eq!(ci.len(), 1, "initiator events: {:?}", p.i_events);
    assert_eq!(cr.len(), 1, "responder events: {:?}", p.r_events);
    let (a, b) = (&ci[0], &cr[0]);
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(*a.keys_in.encryption, *b.keys_out.encryption);
    assert_eq!(*a.keys_in.integrity, *b.keys_out.integrity);
    assert_eq!(*a.keys_out.encryption, *b.keys_in.encryption);
    assert_eq!(*a.keys_out.integrity, *b.keys_in.integrity);
    // The two directions have different keys.
    assert_ne!(
        (&*a.keys_in.encryption, &*a.keys_in.integrity),
        (&*a.keys_out.encryption, &*a.keys_out.integrity)
    );
    assert_eq!(a.proposal, b.proposal);
    assert_eq!(a.local_ts, b.remote_ts);
    assert_eq!(a.remote_ts, b.local_ts);
    assert!(p.i.is_established() && p.r.is_established());
}

#[test]
fn main_mode_psk_and_quick_mode() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 1);
    p.drive();
    assert_matching(&p);
    let info = p.i.phase1().unwrap();
    assert_eq!(info.mode, ExchangeMode::Main);
    assert_eq!(info.peer_id, Identity::address(addr(1).ip()));
    assert_eq!(
        p.r.phase1().unwrap().peer_id,
        Identity::address(addr(2).ip())
    );
    assert_eq!(p.children_i()[0].keys_out.encryption.len(), 16);
    assert_eq!(p.children_i()[0].keys_out.integrity.len(), 32);
}

#[test]
fn aggressive_mode_fqdn_ids() {
    let (mut i, mut r) = configs(ExchangeMode::Aggressive);
    i.local_id = Some(Identity::fqdn("client.postern.test"));
    i.remote_id = Some(Identity::fqdn("gw.postern.test"));
    r.local_id = Some(Identity::fqdn("gw.postern.test"));
    r.remote_id = Some(Identity::fqdn("client.postern.test"));
    let mut p = Pair::new(i, r, 2);
    p.drive();
    assert_matching(&p);
    assert_eq!(
        p.i.phase1().unwrap().peer_id,
        Identity::fqdn("gw.postern.test")
    );
}

#[test]
fn every_id_type() {
    for (n, id) in [
        Identity::user_fqdn("alice@example.com"),
        Identity::key_id(b"office-group"),
        Identity::address("2001:db8::2".parse().unwrap()),
        Identity::fqdn("laptop.example.com"),
    ]
    .into_iter()
    .enumerate()
    {
        for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
            let (mut i, mut r) = configs(mode);
            i.local_id = Some(id.clone());
            r.remote_id = Some(id.clone());
            let mut p = Pair::new(i, r, 10 + n as u64);
            p.drive();
            assert_matching(&p);
            assert_eq!(p.r.phase1().unwrap().peer_id, id);
        }
    }
}

#[test]
fn legacy_and_modern_suites_with_pfs() {
    for (n, (p1, p2)) in [
        ("3des-sha1-modp1024", "3des-sha1"),
        ("3des-md5-modp768", "3des-md5"),
        ("aes256-sha256-modp2048", "aes256-sha256-modp2048"),
        ("aes192-sha384-ecp384", "aes192gcm16-ecp256"),
        ("aes256-sha512-ecp521", "aes256-sha512-modp1536"),
        ("aes128-sha1-ecp256", "null-sha1"),
    ]
    .into_iter()
    .enumerate()
    {
        for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
            let (mut i, mut r) = configs(mode);
            i.ike_proposals = vec![ike(p1)];
            i.esp_proposals = vec![esp(p2)];
            r.ike_proposals = i.ike_proposals.clone();
            r.esp_proposals = i.esp_proposals.clone();
            let mut p = Pair::new(i, r, 20 + n as u64);
            p.drive();
            assert_matching(&p);
            assert_eq!(p.children_i()[0].proposal, esp(p2), "{p1} {p2}");
        }
    }
}

#[test]
fn responder_picks_the_last_acceptable_proposal() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.ike_proposals = vec![
        ike("aes256-sha512-modp4096"),
        ike("aes128-sha1-modp2048"),
        ike("3des-sha1-modp1024"),
    ];
    i.esp_proposals = vec![esp("aes256-sha512"), esp("aes128gcm16"), esp("3des-sha1")];
    r.ike_proposals = vec![ike("3des-sha1-modp1024")];
    r.esp_proposals = vec![esp("3des-sha1")];
    let mut p = Pair::new(i, r, 3);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.i.phase1().unwrap().proposal, ike("3des-sha1-modp1024"));
    assert_eq!(p.children_i()[0].proposal, esp("3des-sha1"));
}

#[test]
fn no_proposal_chosen_phase1() {
    let (i, mut r) = configs(ExchangeMode::Main);
    r.ike_proposals = vec![ike("3des-md5-modp768")];
    let mut p = Pair::new(i, r, 4);
    p.drive();
    assert!(
        matches!(p.failure_i(), Some(Error::NoProposalChosen(_))),
        "{:?}",
        p.i_events
    );
    assert!(p.i.is_dead());
}

#[test]
fn no_proposal_chosen_phase2_keeps_phase1() {
    let (i, mut r) = configs(ExchangeMode::Main);
    r.esp_proposals = vec![esp("3des-md5")];
    let mut p = Pair::new(i, r, 5);
    p.drive();
    assert!(p.i.is_established());
    let f = p.i_events.iter().find_map(|e| match e {
        Event::Phase2Failed(e) => Some(e.clone()),
        _ => None,
    });
    assert!(
        matches!(f, Some(Error::NoProposalChosen(_))),
        "{:?}",
        p.i_events
    );
}

#[test]
fn wrong_psk_is_authentication_failed() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (i, mut r) = configs(mode);
        r.auth = Auth::Psk(zeroize::Zeroizing::new(b"another key".to_vec()));
        let mut p = Pair::new(i, r, 6);
        p.drive();
        assert!(
            matches!(p.failure_i(), Some(Error::AuthenticationFailed(_))),
            "{mode:?}: {:?}",
            p.i_events
        );
        assert!(p.children_r().is_empty());
    }
}

#[test]
fn wrong_psk_with_a_silent_gateway_is_authentication_failed() {
    let (i, mut r) = configs(ExchangeMode::Main);
    r.auth = Auth::Psk(zeroize::Zeroizing::new(b"another key".to_vec()));
    let mut p = Pair::new(i, r, 7);
    // The gateway never answers message 5 (like some strongSwan versions).
    p.filter = Box::new(|to_r, _, d| {
        let h = Header::decode(d).unwrap();
        to_r || h.exchange != ExchangeType::INFORMATIONAL
    });
    p.drive();
    assert!(
        matches!(p.failure_i(), Some(Error::AuthenticationFailed(_))),
        "{:?}",
        p.i_events
    );
}

#[test]
fn remote_id_mismatch() {
    let (mut i, r) = configs(ExchangeMode::Main);
    i.remote_id = Some(Identity::fqdn("someone.else"));
    let mut p = Pair::new(i, r, 8);
    p.drive();
    assert!(
        matches!(p.failure_i(), Some(Error::InvalidId(_))),
        "{:?}",
        p.i_events
    );
}

#[test]
fn gateway_not_responding_gives_up_in_bounded_time() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 9);
    let start = p.now;
    p.filter = Box::new(|to_r, _, _| !to_r);
    p.drive();
    assert_eq!(p.failure_i(), Some(Error::NotResponding(4)));
    assert!(p.now - start <= Duration::from_secs(30));
    // 1 send + 4 retransmissions, nothing more.
    assert_eq!(p.sent, 5);
}

#[test]
fn thirty_percent_loss() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        for seed in 0..4u64 {
            let (mut i, mut r) = configs(mode);
            i.retransmit.tries = 10;
            r.retransmit.tries = 10;
            let mut p = Pair::new(i, r, 11 + seed);
            let mut lcg = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            p.filter = Box::new(move |_, _, _| {
                lcg = lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (lcg >> 33) % 10 >= 3
            });
            p.drive();
            assert_matching(&p);
        }
    }
}

#[test]
fn loss_of_the_last_message_of_each_exchange() {
    // Main mode 5 and quick mode 3 from the initiator are the ones without an
    // answer of their own: losing them must be repaired by retransmissions.
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 12);
    let mut seen_qm = 0;
    p.filter = Box::new(move |to_r, _, d| {
        let h = Header::decode(d).unwrap();
        if to_r && h.exchange == ExchangeType::QUICK {
            seen_qm += 1;
            return seen_qm != 2; // drop the first QM3
        }
        true
    });
    p.drive();
    assert_matching(&p);
}

#[test]
fn duplicates_and_reordering() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (mut i, r) = configs(mode);
        // Two children, so quick modes run side by side and can be reordered.
        i.children.push(ChildConfig {
            local: Some(ts("10.200.0.5/32")),
            remote: Some(ts("10.77.0.128/25")),
        });
        let mut p = Pair::new(i, r, 13);
        p.reorder = true;
        p.latency = Duration::from_millis(1500); // longer than the first retransmission wait
        p.drive();
        assert_eq!(p.children_i().len(), 2, "{:?}", p.i_events);
        assert_eq!(p.children_r().len(), 2, "{:?}", p.r_events);
        for c in p.children_i() {
            let peer = p
                .children_r()
                .into_iter()
                .find(|r| r.spi_in == c.spi_out)
                .unwrap();
            assert_eq!(*c.keys_out.encryption, *peer.keys_in.encryption);
        }
    }
}

#[test]
fn transport_mode_without_ids() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.encapsulation = Encapsulation::Transport;
    r.encapsulation = Encapsulation::Transport;
    i.children = vec![ChildConfig {
        local: None,
        remote: None,
    }];
    let mut p = Pair::new(i, r, 14);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.children_i()[0].encapsulation, Encapsulation::Transport);
    assert_eq!(p.children_i()[0].local_ts, None);
}

#[test]
fn traffic_selectors_outside_policy_are_refused() {
    let (mut i, r) = configs(ExchangeMode::Main);
    i.children = vec![ChildConfig {
        local: Some(ts("10.9.9.9/32")),
        remote: Some(ts("10.77.0.0/24")),
    }];
    let mut p = Pair::new(i, r, 15);
    p.drive();
    let f = p.i_events.iter().find_map(|e| match e {
        Event::Phase2Failed(e) => Some(e.clone()),
        _ => None,
    });
    assert!(matches!(f, Some(Error::InvalidId(_))), "{:?}", p.i_events);
}

#[test]
fn responder_lifetime_is_honoured_and_kilobytes_pass() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.esp_lifetime = Duration::from_secs(3600);
    i.esp_lifetime_kb = Some(100_000);
    r.esp_lifetime = Duration::from_secs(600);
    let mut p = Pair::new(i, r, 16);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.children_i()[0].lifetime, Duration::from_secs(600));
    assert_eq!(p.children_i()[0].lifetime_kb, Some(100_000));
}

#[test]
fn close_sends_deletes_that_the_peer_honours() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 17);
    p.drive();
    assert_matching(&p);
    let spi = p.children_i()[0].spi_in;
    p.i.close(p.now);
    p.drive();
    assert!(p.i_events.iter().any(|e| matches!(e, Event::Closed)));
    assert!(p.r_events.iter().any(
        |e| matches!(e, Event::Phase2Deleted { spi_out, by_peer: true, .. } if *spi_out == spi)
    ));
    assert!(p.r_events.iter().any(|e| matches!(e, Event::Phase1Deleted)));
    assert!(p.r.is_dead());
}

#[test]
fn unauthenticated_notify_never_tears_down_an_established_sa() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 18);
    p.drive();
    assert_matching(&p);
    let info = p.i.phase1().unwrap().clone();
    for kind in [
        codec::NotifyType::NO_PROPOSAL_CHOSEN,
        codec::NotifyType::AUTHENTICATION_FAILED,
    ] {
        let forged = codec::Message {
            header: Header {
                initiator_cookie: info.initiator_cookie,
                responder_cookie: info.responder_cookie,
                next_payload: codec::PayloadType::NONE,
                version: 0x10,
                exchange: ExchangeType::INFORMATIONAL,
                flags: 0,
                message_id: 77,
                length: 0,
            },
            payloads: vec![codec::Payload::Notify(codec::NotifyPayload {
                doi: 1,
                protocol: codec::ProtocolId::ISAKMP,
                spi: Vec::new(),
                kind,
                data: Vec::new(),
            })],
        }
        .encode();
        p.i.handle_datagram(p.now, addr(2), addr(1), &forged);
    }
    // A forged "encrypted" delete with garbage is dropped too.
    let garbage = Header {
        initiator_cookie: info.initiator_cookie,
        responder_cookie: info.responder_cookie,
        next_payload: codec::PayloadType::HASH,
        version: 0x10,
        exchange: ExchangeType::INFORMATIONAL,
        flags: Header::FLAG_ENCRYPTION,
        message_id: 78,
        length: (Header::LEN + 32) as u32,
    };
    let mut d = Vec::new();
    garbage.encode(&mut d);
    d.extend_from_slice(&[0x42; 32]);
    p.i.handle_datagram(p.now, addr(2), addr(1), &d);
    p.i.handle_datagram(p.now, addr(2), addr(1), &d[..30]);
    p.collect();
    assert!(p.i.is_established());
    assert!(
        !p.i_events
            .iter()
            .any(|e| matches!(e, Event::Failed(_) | Event::Phase1Deleted))
    );
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 19);
    let mut captured = Vec::new();
    p.filter = Box::new(|_, _, _| true);
    // Capture a whole negotiation first.
    for _ in 0..20 {
        p.collect();
        for w in &p.wire {
            captured.push(w.3.clone());
        }
        if p.wire.is_empty() {
            break;
        }
        p.drive_for(Duration::from_millis(20));
    }
    let (i, r) = configs(ExchangeMode::Main);
    let mut victim_i = Ike::initiate(i, addr(2), addr(1), p.now, Box::new(test_rng(99))).unwrap();
    let mut victim_r = Ike::respond(r, addr(1), addr(2), Box::new(test_rng(98)));
    for d in &captured {
        for cut in [0, 1, 27, 28, 29, d.len() / 2, d.len().saturating_sub(1)] {
            victim_i.handle_datagram(p.now, addr(2), addr(1), &d[..cut.min(d.len())]);
            victim_r.handle_datagram(p.now, addr(1), addr(2), &d[..cut.min(d.len())]);
        }
        for bit in (0..d.len() * 8).step_by(7) {
            let mut m = d.clone();
            m[bit / 8] ^= 1 << (bit % 8);
            victim_i.handle_datagram(p.now, addr(2), addr(1), &m);
            victim_r.handle_datagram(p.now, addr(1), addr(2), &m);
        }
    }
}

#[test]
fn no_nat_stays_on_port_500() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 30);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.i.udp_encapsulation(), None);
    assert!(!p.children_i()[0].udp_encapsulation);
    assert_eq!(p.i.phase1().unwrap().nat_t, None);
}

#[test]
fn behind_nat_floats_to_4500_and_encapsulates() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (i, r) = configs(mode);
        let mut p = Pair::behind_nat(i, r, 31);
        p.drive();
        assert_matching(&p);
        assert_eq!(p.i.udp_encapsulation(), Some(NattVersion::Rfc3947));
        assert!(p.i.nat().local_behind_nat && !p.i.nat().remote_behind_nat);
        assert!(p.r.nat().remote_behind_nat && !p.r.nat().local_behind_nat);
        assert!(p.children_i()[0].udp_encapsulation && p.children_r()[0].udp_encapsulation);
        // The responder answers where the NAT maps our port 4500.
        assert_eq!(p.r.remote().port(), 31001);
        // DELETE on close still arrives through the NAT.
        p.i.close(p.now);
        p.drive();
        assert!(
            p.r_events.iter().any(|e| matches!(e, Event::Phase1Deleted)),
            "{mode:?}"
        );
    }
}

#[test]
fn forced_encapsulation_without_nat() {
    let (mut i, r) = configs(ExchangeMode::Main);
    i.nat_traversal = NatTraversal::Force;
    let mut p = Pair::new(i, r, 32);
    p.drive();
    assert_matching(&p);
    assert!(p.children_i()[0].udp_encapsulation);
    assert!(p.r.nat().remote_behind_nat);
    // The client knows it forced, and that there is no NAT.
    let n = p.i.nat();
    assert!(n.forced && !n.local_behind_nat && !n.remote_behind_nat);
}

#[test]
fn nat_traversal_off_sends_no_vendor_ids() {
    let (mut i, r) = configs(ExchangeMode::Main);
    i.nat_traversal = NatTraversal::Off;
    let mut p = Pair::behind_nat(i, r, 33);
    let mut vids = 0;
    let rfc3947 = crate::crypto::hash(HashAlg::Md5, &[b"RFC 3947"]);
    p.filter = Box::new(move |_, _, d| {
        if let Ok(m) = codec::Message::decode(d) {
            vids += m
                .payloads
                .iter()
                .filter(|p| matches!(p, codec::Payload::VendorId(v) if *v == rfc3947))
                .count();
            assert_eq!(vids, 0, "a NAT-T vendor ID was sent");
        }
        true
    });
    p.drive();
    assert_matching(&p);
    assert!(!p.children_i()[0].udp_encapsulation);
}

fn xauth_configs(mode: ExchangeMode, mc: ModeConfigMode) -> (Config, Config) {
    let (mut i, mut r) = configs(mode);
    i.xauth = Some(XAuthConfig {
        username: "alice".into(),
        password: Some(zeroize::Zeroizing::new("s3cret".into())),
    });
    i.mode_config = mc;
    i.children.clear();
    r.xauth_server = Some(XAuthServer {
        username: "alice".into(),
        password: zeroize::Zeroizing::new("s3cret".into()),
        passcode: None,
    });
    r.mode_config = mc;
    r.mode_config_server = Some(ModeConfigInfo {
        address: Some("10.200.0.7".parse().unwrap()),
        netmask: Some("255.255.255.255".parse().unwrap()),
        dns: vec!["10.77.0.53".parse().unwrap()],
        split_include: vec![ts("10.77.0.0/24"), ts("10.78.0.0/16")],
        default_domain: Some("office.example".into()),
        split_dns: vec!["office.example".into(), "corp.example".into()],
        banner: Some("Welcome\nto the office".into()),
        ..Default::default()
    });
    r.children = vec![ChildConfig {
        local: Some(ts("10.0.0.0/8")),
        remote: Some(ts("10.200.0.0/24")),
    }];
    (i, r)
}

#[test]
fn xauth_and_mode_config_pull_and_push() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        for mc in [ModeConfigMode::Pull, ModeConfigMode::Push] {
            let (i, r) = xauth_configs(mode, mc);
            let mut p = Pair::new(i, r, 40);
            p.drive();
            assert!(
                p.i_events
                    .iter()
                    .any(|e| matches!(e, Event::XAuthSucceeded)),
                "{mode:?} {mc:?}: {:?}",
                p.i_events
            );
            let info = p
                .i_events
                .iter()
                .find_map(|e| match e {
                    Event::ModeConfig(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(info.address, Some("10.200.0.7".parse().unwrap()));
            assert_eq!(info.dns, vec!["10.77.0.53".parse::<IpAddr>().unwrap()]);
            assert_eq!(
                info.split_include,
                vec![ts("10.77.0.0/24"), ts("10.78.0.0/16")]
            );
            assert_eq!(
                info.split_dns,
                vec!["office.example".to_string(), "corp.example".to_string()]
            );
            assert_eq!(info.banner.as_deref(), Some("Welcome\nto the office"));
            // One child per split network, with the virtual IP as our side.
            let children = p.children_i();
            assert_eq!(children.len(), 2, "{:?}", p.i_events);
            assert!(
                children
                    .iter()
                    .all(|c| c.local_ts == Some(ts("10.200.0.7/32")))
            );
            assert_eq!(p.children_r().len(), 2);
            assert!(p.i.setup_done());
        }
    }
}

#[test]
fn mode_config_without_xauth_and_profile_networks_win() {
    let (mut i, mut r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Pull);
    i.xauth = None;
    r.xauth_server = None;
    i.remote_networks = vec![ts("10.77.0.0/24")];
    let mut p = Pair::new(i, r, 41);
    p.drive();
    let c = p.children_i();
    assert_eq!(c.len(), 1, "{:?}", p.i_events);
    assert_eq!(c[0].remote_ts, Some(ts("10.77.0.0/24")));
}

/// A gateway reached over IPv6: phase 1 with IPv6 address identities (ID_IPV6_ADDR)
/// and 16-byte NAT-D hashes (no NAT found), quick mode, in main and aggressive mode.
#[test]
fn phase1_and_quick_mode_over_ipv6() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (i, r) = configs(mode);
        let mut p = Pair::over_ipv6(i, r, 44);
        p.drive();
        assert_matching(&p);
        let info = p.i.phase1().expect("phase 1").clone();
        assert_eq!(info.local_id.to_string(), "address:2001:db8::2", "{mode:?}");
        assert_eq!(info.peer_id.to_string(), "address:2001:db8::1", "{mode:?}");
        // The NAT-D hashes (address and port, 16-byte addresses) match: no NAT, no
        // encapsulation.
        assert!(
            !p.i.nat().local_behind_nat && !p.i.nat().remote_behind_nat,
            "{mode:?}: a NAT found between unchanged IPv6 addresses: {:?}",
            p.i.nat()
        );
        assert!(!p.r.nat().local_behind_nat && !p.r.nat().remote_behind_nat);
        assert_eq!(p.i.udp_encapsulation(), None, "{mode:?}");
    }
    // ESP in UDP over IPv6 when asked for: IKE floats to port 4500.
    let (mut i, r) = configs(ExchangeMode::Main);
    i.nat_traversal = NatTraversal::Force;
    let mut p = Pair::over_ipv6(i, r, 48);
    p.drive();
    assert_matching(&p);
    assert!(p.children_i()[0].udp_encapsulation && p.children_r()[0].udp_encapsulation);
    assert_eq!(p.r.remote(), SocketAddr::new(addr6(2).ip(), 4500));
}

/// Mode Config with IPv6 (asked for): INTERNAL_IP6_ADDRESS and INTERNAL_IP6_SUBNET from
/// the gateway; quick mode negotiates one pair per family, IPv6 IDs (ID_IPV6_ADDR,
/// ID_IPV6_ADDR_SUBNET) for the IPv6 one; a dual-stack full tunnel when nothing is split.
#[test]
fn mode_config_with_ipv6_inside() {
    let (mut i, mut r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Pull);
    i.request_ipv6 = true;
    let server = r.mode_config_server.as_mut().unwrap();
    server.address6 = Some(("fd01::7".parse().unwrap(), 128));
    server.split_include = vec![ts("10.77.0.0/24"), ts("fd00:77::/64")];
    r.children.push(ChildConfig {
        local: Some(ts("fd00::/8")),
        remote: Some(ts("fd01::/64")),
    });
    let mut p = Pair::new(i.clone(), r.clone(), 45);
    p.drive();
    let info = p
        .i_events
        .iter()
        .find_map(|e| match e {
            Event::ModeConfig(m) => Some(m.clone()),
            _ => None,
        })
        .expect("mode config");
    assert_eq!(info.address6, Some(("fd01::7".parse().unwrap(), 128)));
    let mut split = info.split_include.clone();
    split.sort_by_key(|t| t.addr.is_ipv6());
    assert_eq!(split, vec![ts("10.77.0.0/24"), ts("fd00:77::/64")]);
    let mut pairs: Vec<(TrafficSelector, TrafficSelector)> = p
        .children_i()
        .iter()
        .map(|c| (c.local_ts.unwrap(), c.remote_ts.unwrap()))
        .collect();
    pairs.sort_by_key(|(l, _)| l.addr.is_ipv6());
    assert_eq!(
        pairs,
        vec![
            (ts("10.200.0.7/32"), ts("10.77.0.0/24")),
            (ts("fd01::7/128"), ts("fd00:77::/64")),
        ],
        "{:?}",
        p.i_events
    );
    assert_eq!(p.children_r().len(), 2);

    // Nothing split: everything, in both families.
    r.mode_config_server.as_mut().unwrap().split_include.clear();
    r.children = vec![
        ChildConfig {
            local: Some(ts("0.0.0.0/0")),
            remote: Some(ts("10.200.0.0/24")),
        },
        ChildConfig {
            local: Some(ts("::/0")),
            remote: Some(ts("fd01::/64")),
        },
    ];
    let mut p = Pair::new(i, r, 46);
    p.drive();
    let mut remotes: Vec<TrafficSelector> = p
        .children_i()
        .iter()
        .map(|c| c.remote_ts.unwrap())
        .collect();
    remotes.sort_by_key(|t| t.addr.is_ipv6());
    assert_eq!(
        remotes,
        vec![ts("0.0.0.0/0"), ts("::/0")],
        "{:?}",
        p.i_events
    );
}

/// An IPv6 split network without an IPv6 address of ours is left out, not negotiated
/// from the IPv4 address.
#[test]
fn mode_config_ipv6_only_when_asked() {
    let (i, mut r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Pull);
    r.mode_config_server.as_mut().unwrap().split_include =
        vec![ts("10.77.0.0/24"), ts("fd00:77::/64")];
    let mut p = Pair::new(i, r, 47);
    p.drive();
    let c = p.children_i();
    assert_eq!(c.len(), 1, "{:?}", p.i_events);
    assert_eq!(c[0].remote_ts, Some(ts("10.77.0.0/24")));
}

#[test]
fn wrong_xauth_password_is_a_clear_failure() {
    let (mut i, r) = xauth_configs(ExchangeMode::Aggressive, ModeConfigMode::Pull);
    i.xauth.as_mut().unwrap().password = Some(zeroize::Zeroizing::new("guess".into()));
    let mut p = Pair::new(i, r, 42);
    p.drive();
    let f = p.failure_i();
    assert_eq!(
        f,
        Some(Error::XAuthFailed("Login incorrect".into())),
        "{:?}",
        p.i_events
    );
    assert_eq!(f.unwrap().to_string(), "XAuth failed: Login incorrect");
    assert!(p.children_i().is_empty());
}

#[test]
fn xauth_prompts_when_the_profile_has_no_password_and_for_a_passcode() {
    let (mut i, mut r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Push);
    i.xauth.as_mut().unwrap().password = None;
    r.xauth_server.as_mut().unwrap().passcode = Some(zeroize::Zeroizing::new("123456".into()));
    let mut p = Pair::new(i, r, 43);
    // Round 1: the password.
    p.drive_for(Duration::from_secs(5));
    let ask = p.i_events.iter().find_map(|e| match e {
        Event::CredentialsRequired(c) => Some(c.clone()),
        _ => None,
    });
    let ask = ask.expect("credentials asked");
    assert_eq!(ask.fields, vec![XAuthField::UserName, XAuthField::Password]);
    let pw = Credentials {
        values: vec![
            (
                XAuthField::UserName,
                zeroize::Zeroizing::new("alice".into()),
            ),
            (
                XAuthField::Password,
                zeroize::Zeroizing::new("s3cret".into()),
            ),
        ],
    };
    p.i.submit_credentials(p.now, pw).unwrap();
    p.i_events.clear();
    // Round 2: the one-time passcode, with the gateway's message.
    p.drive_for(Duration::from_secs(5));
    let ask = p.i_events.iter().find_map(|e| match e {
        Event::CredentialsRequired(c) => Some(c.clone()),
        _ => None,
    });
    let ask = ask.expect("passcode asked");
    assert_eq!(ask.fields, vec![XAuthField::Passcode]);
    assert_eq!(ask.message.as_deref(), Some("Enter your one-time passcode"));
    let code = Credentials {
        values: vec![(
            XAuthField::Passcode,
            zeroize::Zeroizing::new("123456".into()),
        )],
    };
    p.i.submit_credentials(p.now, code).unwrap();
    p.drive();
    assert!(
        p.i_events
            .iter()
            .any(|e| matches!(e, Event::XAuthSucceeded)),
        "{:?}",
        p.i_events
    );
    assert_eq!(p.children_i().len(), 2);
    // Nothing to answer any more.
    assert!(
        p.i.submit_credentials(p.now, Credentials::default())
            .is_err()
    );
}

#[test]
fn gateway_without_xauth_is_reported() {
    let (i, r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Off);
    let mut p = Pair::new(i, r, 44);
    // The gateway never starts XAuth (its requests are lost for good).
    p.filter = Box::new(|to_r, _, d| {
        to_r || Header::decode(d)
            .map(|h| h.exchange != ExchangeType::TRANSACTION)
            .unwrap_or(true)
    });
    p.drive();
    assert!(
        matches!(p.failure_i(), Some(Error::Local(m)) if m.contains("did not start XAuth")),
        "{:?}",
        p.i_events
    );
}

#[test]
fn dpd_keeps_a_quiet_tunnel_and_detects_a_dead_gateway() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    let dpd = DpdConfig {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(30),
    };
    i.dpd = Some(dpd);
    r.dpd = Some(dpd);
    let mut p = Pair::new(i, r, 45);
    p.drive_for(Duration::from_secs(120));
    assert_matching(&p);
    // Two minutes of silence answered by R-U-THERE / ACK: still up.
    assert!(
        p.i.is_established() && p.failure_i().is_none(),
        "{:?}",
        p.i_events
    );
    // The gateway dies: silence both ways.
    p.filter = Box::new(|_, _, _| false);
    let start = p.now;
    p.drive_for(Duration::from_secs(120));
    assert!(
        matches!(p.failure_i(), Some(Error::DeadPeer(_))),
        "{:?}",
        p.i_events
    );
    assert!(p.now - start <= Duration::from_secs(45));
}

/// After a resume the driver asks at once: a live gateway answers within a round trip
/// (the check ends, the tunnel stays), a gateway that forgot us is declared dead within
/// the check's few seconds, not after the DPD timeout.
#[test]
fn a_check_after_resume_asks_at_once_and_gives_up_quickly() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    let dpd = DpdConfig {
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(150),
    };
    i.dpd = Some(dpd);
    r.dpd = Some(dpd);
    let mut p = Pair::new(i, r, 46);
    p.drive_for(Duration::from_secs(5));
    assert!(p.i.is_established(), "{:?}", p.i_events);
    let sent = p.sent;
    assert!(p.i.check_peer(p.now, Duration::from_secs(3)));
    assert!(p.i.checking_peer());
    // The R-U-THERE leaves now, not after the 30 s interval, and its ACK ends the check.
    p.drive_for(Duration::from_millis(500));
    assert!(p.sent > sent, "no R-U-THERE sent at once");
    assert!(!p.i.checking_peer(), "the ACK did not end the check");
    assert!(p.failure_i().is_none(), "{:?}", p.i_events);
    // The gateway forgot us: silence. Dead within the check's 3 s (plus a retry).
    p.filter = Box::new(|_, _, _| false);
    let start = p.now;
    assert!(p.i.check_peer(p.now, Duration::from_secs(3)));
    p.drive_for(Duration::from_secs(20));
    assert!(
        matches!(p.failure_i(), Some(Error::DeadPeer(_))),
        "{:?}",
        p.i_events
    );
    let took = p.now - start;
    assert!(took <= Duration::from_secs(3), "dead after {took:?}");
}

#[test]
fn phase2_rekeys_make_before_break_without_piling_up() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.esp_lifetime = Duration::from_secs(30);
    r.esp_lifetime = Duration::from_secs(30);
    i.esp_proposals = vec![esp("aes128-sha256-modp2048")];
    r.esp_proposals = i.esp_proposals.clone();
    let mut p = Pair::new(i, r, 50);
    p.drive_for(Duration::from_secs(180));
    let established = p.children_i().len();
    assert!(
        established >= 6,
        "only {established} SAs in 3 minutes: {:?}",
        p.i_events
    );
    // The previous SA pair goes only after its successor is up, and never more than
    // two pairs exist at once (old one in its grace time, new one).
    let mut alive: Vec<u32> = Vec::new();
    for e in &p.i_events {
        match e {
            Event::Phase2Established(c) => {
                alive.push(c.spi_in);
                assert!(alive.len() <= 2, "{alive:?}");
            }
            Event::Phase2Deleted {
                spi_in,
                by_peer: false,
                ..
            } => {
                assert!(
                    alive.len() >= 2,
                    "deleted {spi_in:#x} before its successor was up"
                );
                alive.retain(|s| s != spi_in);
            }
            _ => {}
        }
    }
    assert_eq!(p.i.children().len(), 1, "{:?}", p.i.children());
    assert_eq!(p.r.children().len(), 1, "{:?}", p.r.children());
    let (a, b) = (&p.i.children()[0], &p.r.children()[0]);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(*a.keys_out.encryption, *b.keys_in.encryption);
    assert!(p.i.is_established() && p.failure_i().is_none());
}

#[test]
fn gateway_started_rekey_with_a_wider_selector_is_accepted() {
    let (i, r) = configs(ExchangeMode::Main);
    let mut p = Pair::new(i, r, 51);
    p.drive();
    assert_matching(&p);
    let old = p.children_r()[0].clone();
    // The gateway rekeys, widening its side to 0.0.0.0/0 like a Cisco Unity gateway.
    p.r.ctx.config_mut().children.push(ChildConfig {
        local: Some(ts("0.0.0.0/0")),
        remote: old.remote_ts,
    });
    p.r.start_quick_for(
        p.now,
        ChildConfig {
            local: Some(ts("0.0.0.0/0")),
            remote: old.remote_ts,
        },
        None,
    );
    p.drive();
    let ci = p.children_i();
    assert_eq!(ci.len(), 2, "{:?}", p.i_events);
    assert_eq!(ci[1].remote_ts, Some(ts("0.0.0.0/0")));
    assert_eq!(ci[1].local_ts, Some(ts("10.200.0.5/32")));
    // The client does not start a rekey of its own for the replaced SA.
    assert!(
        p.i.children
            .timers
            .iter()
            .find(|t| t.spi_in == ci[0].spi_in)
            .is_none_or(|t| t.rekey_at.is_none())
    );
}

#[test]
fn rekey_command_replaces_an_sa() {
    let (i, r) = configs(ExchangeMode::Aggressive);
    let mut p = Pair::new(i, r, 52);
    p.drive_for(Duration::from_secs(5));
    let old = p.children_i()[0].spi_in;
    assert!(p.i.rekey(p.now, old));
    p.drive_for(Duration::from_secs(10));
    assert_eq!(p.children_i().len(), 2);
    assert!(
        p.i_events
            .iter()
            .any(|e| matches!(e, Event::Phase2Deleted { spi_in, .. } if *spi_in == old))
    );
    assert!(p.r_events.iter().any(
        |e| matches!(e, Event::Phase2Deleted { spi_out, by_peer: true, .. } if *spi_out == old)
    ));
    assert_eq!(p.i.children().len(), 1);
    assert!(!p.i.rekey(p.now, 12345));
}

#[test]
fn phase1_is_renewed_before_it_expires_and_esp_sas_survive() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (mut i, mut r) = xauth_configs(mode, ModeConfigMode::Pull);
        i.ike_lifetime = Duration::from_secs(90);
        r.ike_lifetime = Duration::from_secs(90);
        i.esp_lifetime = Duration::from_secs(30);
        r.esp_lifetime = Duration::from_secs(30);
        let mut p = Pair::new(i, r, 60);
        p.drive_for(Duration::from_secs(240));
        if std::env::var("DEBUG_EVENTS").is_ok() {
            for e in &p.i_events {
                match e {
                    Event::Phase2Established(c) => {
                        eprintln!("est {:x} {:?}", c.spi_in, c.remote_ts)
                    }
                    Event::Phase2Deleted { spi_in, .. } => eprintln!("del {spi_in:x}"),
                    other => eprintln!("{other:?}"),
                }
            }
        }
        let renewed = p
            .i_events
            .iter()
            .filter(|e| matches!(e, Event::Phase1Renewed(_)))
            .count();
        assert!(
            renewed >= 3,
            "{mode:?}: {renewed} renewals in 4 minutes: {:?}",
            p.i_events
        );
        assert!(p.failure_i().is_none(), "{:?}", p.i_events);
        assert!(p.i.is_established());
        // ESP SAs went on being rekeyed under the new ISAKMP SAs, none lost in between.
        assert_eq!(p.i.children().len(), 2, "{:?}", p.i.children());
        assert!(p.children_i().len() >= 2 * 6);
        // The old ISAKMP SAs were deleted on the gateway side.
        let deleted = p
            .r_events
            .iter()
            .filter(|e| matches!(e, Event::Phase1Deleted))
            .count();
        assert_eq!(deleted, renewed);
    }
}

#[test]
fn ike_fragmentation_both_ways_with_loss_and_reordering() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (mut i, mut r) = xauth_configs(mode, ModeConfigMode::Pull);
        i.fragment_size = 200;
        r.fragment_size = 200;
        i.ike_proposals = vec![ike("aes256-sha512-modp4096")];
        r.ike_proposals = i.ike_proposals.clone();
        let mut p = Pair::new(i, r, 70);
        p.reorder = true;
        let mut n = 0;
        p.filter = Box::new(move |_to_r, _, d| {
            let h = Header::decode(d).unwrap();
            let frag = h.next_payload == codec::PayloadType::FRAGMENT;
            if std::env::var("DEBUG_FRAG").is_ok() {
                eprintln!(
                    "{} {:?} {:?} len={} n={n}",
                    if _to_r { ">" } else { "<" },
                    h.exchange,
                    h.next_payload,
                    d.len()
                );
            }
            if frag {
                assert!(d.len() <= 200, "fragment of {} bytes", d.len());
                n += 1;
                // Lose one fragment in seven (never the same one of a message every
                // time): retransmissions, which resend the same fragments, repair it.
                return n % 7 != 3;
            }
            true
        });
        p.drive();
        assert!(
            p.i_events
                .iter()
                .any(|e| matches!(e, Event::XAuthSucceeded)),
            "{mode:?}: {:?}",
            p.i_events
        );
        assert_eq!(p.children_i().len(), 2, "{mode:?}: {:?}", p.i_events);
    }
}

#[test]
fn no_fragments_to_a_peer_that_does_not_announce_them() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.fragment_size = 200;
    r.fragmentation = false;
    let mut p = Pair::new(i, r, 71);
    p.filter = Box::new(|_, _, d| {
        assert_ne!(
            Header::decode(d).unwrap().next_payload,
            codec::PayloadType::FRAGMENT
        );
        true
    });
    p.drive();
    assert_matching(&p);
}

#[test]
fn transport_mode_behind_nat_sends_nat_oa() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.encapsulation = Encapsulation::Transport;
    r.encapsulation = Encapsulation::Transport;
    i.children = vec![ChildConfig {
        local: None,
        remote: None,
    }];
    let mut p = Pair::behind_nat(i, r, 80);
    p.drive();
    assert_matching(&p);
    let c = &p.children_i()[0];
    assert!(c.udp_encapsulation);
    assert_eq!(c.encapsulation, Encapsulation::Transport);
}

// ----- signature and hybrid authentication ---------------------------------

mod certs {
    use std::sync::Arc;

    use super::*;
    use crate::cert::tests::{cert, fixture, in_2030};
    use crate::cert::{CertError, PrivateKey};

    fn key(name: &str) -> PrivateKey {
        PrivateKey::parse(&fixture(name), None).unwrap()
    }

    #[allow(clippy::disallowed_methods)] // the Pair's clock starts at a real instant
    fn clock() -> Option<(Instant, std::time::SystemTime)> {
        Some((Instant::now(), in_2030()))
    }

    /// Client (alice, RSA) and gateway (gw.example) under the test root CA.
    fn sig_configs(mode: ExchangeMode) -> (Config, Config) {
        let (mut i, mut r) = configs(mode);
        i.auth = Auth::Signature(Arc::new(Certs {
            key: Some(key("client.key")),
            chain: vec![cert("client.pem")],
            trusted: vec![cert("ca.pem")],
            crls: Vec::new(),
        }));
        i.local_id = Some(Identity::user_fqdn("alice@example.com"));
        i.wall_clock = clock();
        r.auth = Auth::Signature(Arc::new(Certs {
            key: Some(key("gw.key")),
            chain: vec![cert("gw.pem")],
            trusted: vec![cert("ca.pem")],
            crls: Vec::new(),
        }));
        r.local_id = Some(Identity::fqdn("gw.example"));
        r.wall_clock = clock();
        (i, r)
    }

    fn gateway(r: &mut Config, key_file: &str, chain: &[&str], id: Identity) {
        let trusted = r.auth.certs().unwrap().trusted.clone();
        r.auth = Auth::Signature(Arc::new(Certs {
            key: Some(key(key_file)),
            chain: chain.iter().map(|c| cert(c)).collect(),
            trusted,
            crls: Vec::new(),
        }));
        r.local_id = Some(id);
    }

    fn cert_failure(p: &Pair) -> CertError {
        match p.failure_i() {
            Some(Error::Certificate(e)) => e,
            other => panic!(
                "expected a certificate error, got {other:?}: {:?}",
                p.i_events
            ),
        }
    }

    #[test]
    fn rsa_signatures_main_and_aggressive() {
        for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
            let (i, r) = sig_configs(mode);
            let mut p = Pair::new(i, r, 60);
            p.drive();
            assert_matching(&p);
            assert_eq!(p.i.phase1().unwrap().peer_id, Identity::fqdn("gw.example"));
            assert_eq!(
                p.r.phase1().unwrap().peer_id,
                Identity::user_fqdn("alice@example.com")
            );
        }
    }

    #[test]
    fn signature_messages_carry_cert_sig_and_certreq() {
        let (mut i, mut r) = sig_configs(ExchangeMode::Aggressive);
        // Whole messages on the wire, to look at their payloads.
        i.fragmentation = false;
        r.fragmentation = false;
        let mut p = Pair::new(i, r, 61);
        p.filter = Box::new(|_, _, d| {
            if let Ok(m) = codec::Message::decode(d)
                && m.header.exchange == ExchangeType::AGGRESSIVE
                && m.header.flags & Header::FLAG_ENCRYPTION == 0
            {
                let kinds: Vec<_> = m.payloads.iter().map(|p| p.kind()).collect();
                assert!(kinds.contains(&codec::PayloadType::CERTREQ), "{kinds:?}");
                if m.header.responder_cookie != [0; 8] {
                    assert!(kinds.contains(&codec::PayloadType::CERT), "{kinds:?}");
                    assert!(kinds.contains(&codec::PayloadType::SIG), "{kinds:?}");
                    assert!(!kinds.contains(&codec::PayloadType::HASH), "{kinds:?}");
                }
            }
            true
        });
        p.drive();
        assert_matching(&p);
    }

    #[test]
    fn ecdsa_gateway_and_intermediate_ca() {
        // ECDSA P-256 on both sides (the EC CA trusted for the gateway; the client
        // uses the EC gateway key and certificate just as well).
        let (mut i, mut r) = sig_configs(ExchangeMode::Main);
        let ec = |k: &str, c: &str| {
            Auth::Signature(Arc::new(Certs {
                key: Some(key(k)),
                chain: vec![cert(c)],
                trusted: vec![cert("ec-ca.pem")],
                crls: Vec::new(),
            }))
        };
        i.auth = ec("ec-gw.key", "ec-gw.pem");
        i.local_id = Some(Identity::fqdn("ec-gw.example"));
        r.auth = ec("ec-gw.key", "ec-gw.pem");
        r.local_id = Some(Identity::fqdn("ec-gw.example"));
        let mut p = Pair::new(i, r, 62);
        p.drive();
        assert_matching(&p);
        // RSA with the gateway certificate under an intermediate it sends along.
        let (i, mut r) = sig_configs(ExchangeMode::Main);
        gateway(
            &mut r,
            "gw.key",
            &["gw-inter.pem", "inter.pem"],
            Identity::fqdn("gw.example"),
        );
        let mut p = Pair::new(i, r, 63);
        p.drive();
        assert_matching(&p);
    }

    #[test]
    fn gateway_from_another_ca_is_refused() {
        let (i, mut r) = sig_configs(ExchangeMode::Main);
        gateway(
            &mut r,
            "gw.key",
            &["gw-other.pem"],
            Identity::fqdn("gw.example"),
        );
        let mut p = Pair::new(i, r, 64);
        p.drive();
        let e = cert_failure(&p);
        assert!(matches!(e, CertError::UntrustedIssuer { .. }), "{e}");
        assert!(p.children_r().is_empty());
    }

    #[test]
    fn expired_gateway_certificate_is_refused() {
        let (i, mut r) = sig_configs(ExchangeMode::Aggressive);
        gateway(
            &mut r,
            "gw.key",
            &["expired.pem"],
            Identity::fqdn("gw.example"),
        );
        let mut p = Pair::new(i, r, 65);
        p.drive();
        assert!(matches!(cert_failure(&p), CertError::Expired { .. }));
    }

    #[test]
    fn id_not_in_the_certificate_is_refused() {
        let (i, mut r) = sig_configs(ExchangeMode::Main);
        r.local_id = Some(Identity::fqdn("other.example"));
        let mut p = Pair::new(i, r, 66);
        p.drive();
        let e = cert_failure(&p);
        assert!(e.to_string().contains("fqdn:other.example"), "{e}");
        // The responder refuses a client whose ID is not in its certificate too.
        let (mut i, r) = sig_configs(ExchangeMode::Main);
        i.local_id = Some(Identity::user_fqdn("mallory@example.com"));
        let mut p = Pair::new(i, r, 67);
        p.drive();
        assert!(
            p.r_events.iter().any(|e| matches!(
                e,
                Event::Failed(Error::Certificate(CertError::IdMismatch { .. }))
            )),
            "{:?}",
            p.r_events
        );
        assert!(p.children_i().is_empty());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_fails_the_signature() {
        let (i, mut r) = sig_configs(ExchangeMode::Main);
        gateway(
            &mut r,
            "client.key",
            &["gw.pem"],
            Identity::fqdn("gw.example"),
        );
        let mut p = Pair::new(i, r, 68);
        p.drive();
        assert!(matches!(cert_failure(&p), CertError::BadIkeSignature(_)));
    }

    #[test]
    fn hybrid_gateway_signs_client_uses_xauth() {
        for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
            let (mut i, mut r) = xauth_configs(mode, ModeConfigMode::Pull);
            i.auth = Auth::Hybrid(Arc::new(Certs {
                key: None,
                chain: Vec::new(),
                trusted: vec![cert("ca.pem")],
                crls: Vec::new(),
            }));
            i.wall_clock = clock();
            i.remote_id = Some(Identity::fqdn("gw.example"));
            r.auth = Auth::Hybrid(Arc::new(Certs {
                key: Some(key("gw.key")),
                chain: vec![cert("gw.pem")],
                trusted: Vec::new(),
                crls: Vec::new(),
            }));
            r.local_id = Some(Identity::fqdn("gw.example"));
            r.wall_clock = clock();
            let mut p = Pair::new(i, r, 69);
            p.drive();
            assert!(
                p.i_events
                    .iter()
                    .any(|e| matches!(e, Event::XAuthSucceeded)),
                "{mode:?}: {:?}",
                p.i_events
            );
            assert_eq!(p.children_i().len(), 2, "{mode:?}");
        }
    }

    #[test]
    fn hybrid_client_refuses_a_gateway_from_another_ca() {
        let (mut i, mut r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Pull);
        i.auth = Auth::Hybrid(Arc::new(Certs {
            key: None,
            chain: Vec::new(),
            trusted: vec![cert("ca.pem")],
            crls: Vec::new(),
        }));
        i.wall_clock = clock();
        r.auth = Auth::Hybrid(Arc::new(Certs {
            key: Some(key("gw.key")),
            chain: vec![cert("gw-other.pem")],
            trusted: Vec::new(),
            crls: Vec::new(),
        }));
        r.local_id = Some(Identity::fqdn("gw.example"));
        let mut p = Pair::new(i, r, 70);
        p.drive();
        assert!(matches!(
            cert_failure(&p),
            CertError::UntrustedIssuer { .. }
        ));
    }
}

// ----- what libreswan (before 5.2) with its default ikepad=yes sends ---------------
//
// Measured against libreswan 4.10 (tests/tests/kernel_vm.rs): pluto pads a plaintext
// message to 4 octets after its last payload, inside the header's length (an
// aggressive mode reply with a 6-byte FQDN ID ends in 2 zero bytes), and pads the
// ATTRIBUTE payload of its Mode Config reply inside the payload's length (a 14-byte
// Cisco Unity split network leaves 2 zero bytes after the last attribute), with the
// HASH over the padded payload.

/// State a test's link filter shares with the test.
type Shared<T> = std::rc::Rc<std::cell::RefCell<T>>;

/// Drives an aggressive mode XAuth + Mode Config pull negotiation but holds back the
/// gateway's Mode Config reply: the pair, the reply and the IV it was sealed with (the
/// last cipher block of our request).
fn hold_mode_config_reply(seed: u64) -> (Pair, Vec<u8>, Vec<u8>) {
    use std::rc::Rc;
    let (i, r) = xauth_configs(ExchangeMode::Aggressive, ModeConfigMode::Pull);
    let mut p = Pair::new(i, r, seed);
    // Exchanges we started: (message id, our request); message ids the gateway
    // used first (XAuth); the reply held back.
    let ours: Shared<Vec<(u32, Vec<u8>)>> = Rc::default();
    let theirs: Shared<Vec<u32>> = Rc::default();
    let held: Shared<Option<Vec<u8>>> = Rc::default();
    let (o, t, h) = (Rc::clone(&ours), Rc::clone(&theirs), Rc::clone(&held));
    p.filter = Box::new(move |to_r, _, d| {
        let Ok(hd) = Header::decode(d) else {
            return true;
        };
        if hd.exchange != ExchangeType::TRANSACTION {
            return true;
        }
        let mid = hd.message_id;
        let started_by_us = o.borrow().iter().any(|(m, _)| *m == mid);
        if to_r {
            if !started_by_us && !t.borrow().contains(&mid) {
                o.borrow_mut().push((mid, d.to_vec()));
            }
            true
        } else if started_by_us {
            h.borrow_mut().get_or_insert_with(|| d.to_vec());
            false
        } else {
            t.borrow_mut().push(mid);
            true
        }
    });
    // The request leaves ACK_SETTLE (0.25 s) after the XAuth ACK.
    p.drive_for(Duration::from_millis(1200));
    let reply = held
        .borrow()
        .clone()
        .expect("the gateway sent a Mode Config reply");
    let mid = Header::decode(&reply).unwrap().message_id;
    let request = ours
        .borrow()
        .iter()
        .find(|(m, _)| *m == mid)
        .map(|(_, d)| d.clone())
        .unwrap();
    let iv = request[request.len() - 16..].to_vec();
    p.filter = Box::new(|_, _, _| true);
    (p, reply, iv)
}

/// The gateway's reply re-sealed with `pad` appended inside its ATTRIBUTE payload
/// (length adjusted); the HASH recomputed over the padded payload when `rehash`.
fn padded_reply(p: &Pair, reply: &[u8], iv: &[u8], pad: &[u8], rehash: bool) -> Vec<u8> {
    let h = Header::decode(reply).unwrap();
    let opened = p.r.ctx.open(&h, reply, iv).unwrap();
    let old_hash = match &opened.payloads[0].payload {
        codec::Payload::Hash(x) => x.clone(),
        other => panic!("not a HASH first: {other:?}"),
    };
    let a = opened
        .payloads
        .iter()
        .find(|d| matches!(d.payload, codec::Payload::Attr(_)))
        .unwrap();
    let mut attr = opened.plain[a.span.clone()].to_vec();
    assert_ne!(attr.len() % 4, 0, "the reply should need padding: {attr:?}");
    attr.extend_from_slice(pad);
    let len = u16::try_from(attr.len()).unwrap().to_be_bytes();
    attr[2..4].copy_from_slice(&len);
    let keys = p.r.ctx.keys().unwrap();
    let hash = if rehash {
        crate::crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&h.message_id.to_be_bytes(), &attr],
        )
    } else {
        old_hash
    };
    let mut body = Vec::new();
    codec::Payload::Hash(hash).encode_with_next(codec::PayloadType::ATTRIBUTE, &mut body);
    body.extend_from_slice(&attr);
    p.r.ctx
        .seal(
            ExchangeType::TRANSACTION,
            h.message_id,
            codec::PayloadType::HASH,
            body,
            iv,
        )
        .unwrap()
        .0
}

fn deliver_to_initiator(p: &mut Pair, d: &[u8]) {
    p.i.handle_datagram(p.now, addr(2), addr(1), d);
    p.collect();
}

fn refusals(p: &Pair) -> Vec<String> {
    p.i_events
        .iter()
        .filter_map(|e| match e {
            Event::MessageRefused(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn mode_config_reply_padded_inside_the_attribute_payload_is_accepted() {
    let (mut p, reply, iv) = hold_mode_config_reply(90);
    // 1 to 3 zero bytes, whatever makes the payload a multiple of 4 octets.
    let h = Header::decode(&reply).unwrap();
    let opened = p.r.ctx.open(&h, &reply, &iv).unwrap();
    let attr_len = opened.payloads.last().unwrap().span.len();
    let pad = vec![0u8; (4 - attr_len % 4) % 4];
    let padded = padded_reply(&p, &reply, &iv, &pad, true);
    deliver_to_initiator(&mut p, &padded);
    p.drive();
    assert!(refusals(&p).is_empty(), "{:?}", p.i_events);
    let info = p
        .i_events
        .iter()
        .find_map(|e| match e {
            Event::ModeConfig(m) => Some(m.clone()),
            _ => None,
        })
        .expect("the padded Mode Config reply was taken");
    assert_eq!(info.address, Some("10.200.0.7".parse().unwrap()));
    assert_eq!(
        info.split_include,
        vec![ts("10.77.0.0/24"), ts("10.78.0.0/16")]
    );
    assert_eq!(info.banner.as_deref(), Some("Welcome\nto the office"));
    assert_eq!(p.children_i().len(), 2, "{:?}", p.i_events);
}

#[test]
fn refused_mode_config_reply_is_named_at_once_and_in_the_failure() {
    // Padding that is not padding (non-zero bytes): refused, said so once although
    // the gateway answers each retransmission of our request with it, and the
    // setup's failure names it instead of "did not answer".
    let (mut p, reply, iv) = hold_mode_config_reply(91);
    let bad = padded_reply(&p, &reply, &iv, &[0, 7], true);
    deliver_to_initiator(&mut p, &bad);
    deliver_to_initiator(&mut p, &bad);
    // The gateway's answers to our retransmissions: the same bad bytes.
    p.filter = Box::new(move |to_r, _, d| {
        let tx = Header::decode(d).is_ok_and(|h| h.exchange == ExchangeType::TRANSACTION);
        !tx || to_r
    });
    for _ in 0..10 {
        p.drive_for(Duration::from_secs(10));
        deliver_to_initiator(&mut p, &bad);
        if p.failure_i().is_some() {
            break;
        }
    }
    let r = refusals(&p);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        r[0],
        "the Mode Config reply from the gateway was refused: malformed message from the peer: \
         2 trailing bytes after last attribute"
    );
    let f = p.failure_i().expect("the setup gave up");
    assert_eq!(
        f.to_string(),
        format!("{}; gave up waiting for a usable one", r[0])
    );
    assert!(p.children_i().is_empty());
}

#[test]
fn mode_config_reply_whose_hash_misses_the_padding_is_refused_with_the_reason() {
    let (mut p, reply, iv) = hold_mode_config_reply(92);
    let h = Header::decode(&reply).unwrap();
    let opened = p.r.ctx.open(&h, &reply, &iv).unwrap();
    let attr_len = opened.payloads.last().unwrap().span.len();
    let pad = vec![0u8; 4 - attr_len % 4];
    // The HASH of the unpadded payload: it does not cover what was received.
    let bad = padded_reply(&p, &reply, &iv, &pad, false);
    deliver_to_initiator(&mut p, &bad);
    let r = refusals(&p);
    assert_eq!(r.len(), 1, "{:?}", p.i_events);
    assert!(
        r[0].starts_with(
            "the Mode Config reply from the gateway was refused: its HASH does not match"
        ),
        "{r:?}"
    );
    assert!(!p.i.setup_done());
}

/// Holds back the responder's aggressive mode message 2 and returns it.
fn hold_aggressive_reply(p: &mut Pair) -> Vec<u8> {
    use std::rc::Rc;
    let held: Shared<Option<Vec<u8>>> = Rc::default();
    let h = Rc::clone(&held);
    p.filter = Box::new(move |to_r, _, d| {
        if to_r {
            return true;
        }
        h.borrow_mut().get_or_insert_with(|| d.to_vec());
        false
    });
    p.drive_for(Duration::from_millis(100));
    p.filter = Box::new(|_, _, _| true);
    let m = held.borrow().clone();
    m.expect("the responder answered")
}

#[test]
fn aggressive_reply_padded_after_its_last_payload_is_accepted() {
    let (mut i, mut r) = configs(ExchangeMode::Aggressive);
    // A 6-byte FQDN: the gateway's message 2 is not a multiple of 4 octets.
    i.local_id = Some(Identity::fqdn("client.lab"));
    i.remote_id = Some(Identity::fqdn("gw.lab"));
    r.local_id = Some(Identity::fqdn("gw.lab"));
    r.remote_id = Some(Identity::fqdn("client.lab"));
    let mut p = Pair::new(i, r, 93);
    let msg2 = hold_aggressive_reply(&mut p);
    assert_ne!(msg2.len() % 4, 0, "message 2 should need padding");
    let mut padded = msg2.clone();
    padded.resize(msg2.len().div_ceil(4) * 4, 0);
    let len = u32::try_from(padded.len()).unwrap().to_be_bytes();
    padded[24..28].copy_from_slice(&len);
    p.filter = Box::new(|_, _, _| true);
    deliver_to_initiator(&mut p, &padded);
    p.drive();
    assert!(refusals(&p).is_empty(), "{:?}", p.i_events);
    assert_matching(&p);
}

#[test]
fn aggressive_reply_with_junk_after_its_last_payload_is_refused_with_the_reason() {
    let (i, r) = configs(ExchangeMode::Aggressive);
    let mut p = Pair::new(i, r, 94);
    let msg2 = hold_aggressive_reply(&mut p);
    let mut junk = msg2.clone();
    junk.extend_from_slice(&[0, 0, 0, 1]);
    let len = u32::try_from(junk.len()).unwrap().to_be_bytes();
    junk[24..28].copy_from_slice(&len);
    deliver_to_initiator(&mut p, &junk);
    let r = refusals(&p);
    assert_eq!(
        r,
        vec![
            "a phase 1 message from the gateway was refused: 4 trailing bytes after last payload"
                .to_string()
        ]
    );
}

/// Issue 19: phase 1 settles on ECP384; the phase 2 proposals name three PFS groups.
/// One KE payload means one group per quick mode: the offer takes phase 1's group
/// (every proposal naming it, in order), and a note names the ones left out.
#[test]
fn pfs_group_follows_phase1_when_phase2_proposals_differ() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (mut i, mut r) = configs(mode);
        // Aggressive mode sends its KE first: one group in phase 1 there.
        i.ike_proposals = match mode {
            ExchangeMode::Main => vec![
                ike("aes128-sha1-modp1024"),
                ike("aes256-sha512-modp4096"),
                ike("aes192-sha384-ecp384"),
            ],
            ExchangeMode::Aggressive => vec![ike("aes192-sha384-ecp384")],
        };
        i.esp_proposals = vec![
            esp("aes128-sha1-modp1024"),
            esp("aes256-sha512-modp4096"),
            esp("aes128gcm16-ecp384"),
            esp("aes192-sha384-ecp384"),
        ];
        r.ike_proposals = vec![ike("aes192-sha384-ecp384")];
        // Only the last one: both ECP384 proposals must be in the offer.
        r.esp_proposals = vec![esp("aes192-sha384-ecp384")];
        let mut p = Pair::new(i, r, 60);
        p.drive();
        assert_matching(&p);
        assert_eq!(p.i.phase1().unwrap().proposal, ike("aes192-sha384-ecp384"));
        assert_eq!(p.children_i()[0].proposal, esp("aes192-sha384-ecp384"));
        let notes: Vec<&String> = p
            .i_events
            .iter()
            .filter_map(|e| match e {
                Event::Note(l) => Some(l),
                _ => None,
            })
            .collect();
        assert_eq!(notes.len(), 1, "{mode:?}: {:?}", p.i_events);
        assert_eq!(
            notes[0].as_str(),
            "phase2 offer: aes128gcm16-ecp384, aes192-sha384-ecp384 (PFS ecp384, the group phase 1 agreed on); \
             left out: aes128-sha1-modp1024, aes256-sha512-modp4096 (a quick mode carries one key exchange, so one PFS group)"
        );
    }
}

/// When no phase 2 proposal names phase 1's group, the first proposal's group decides
/// (here: no PFS at all), and the proposals with a group are left out.
#[test]
fn pfs_group_of_the_first_proposal_when_phase1_group_is_not_offered() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.ike_proposals = vec![ike("aes128-sha256-modp2048")];
    i.esp_proposals = vec![
        esp("aes256-sha256"),
        esp("aes128-sha1-ecp256"),
        esp("aes128gcm16"),
    ];
    r.ike_proposals = i.ike_proposals.clone();
    r.esp_proposals = vec![esp("aes128gcm16"), esp("aes128-sha1-ecp256")];
    let mut p = Pair::new(i, r, 61);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.children_i()[0].proposal, esp("aes128gcm16"));
    assert!(
        p.i_events.iter().any(|e| matches!(e, Event::Note(l)
            if l.contains("(no PFS, as the first proposal asks)") && l.contains("left out: aes128-sha1-ecp256 ("))),
        "{:?}",
        p.i_events
    );
}

/// One group for all (the profile's `pfs` key): nothing left out, no note; a rekey
/// offers the same again.
#[test]
fn one_pfs_group_for_all_proposals_needs_no_note() {
    let (mut i, mut r) = configs(ExchangeMode::Main);
    i.ike_proposals = vec![ike("aes128-sha256-ecp256")];
    i.esp_proposals = vec![esp("aes256-sha256-modp2048"), esp("aes128gcm16-modp2048")];
    r.ike_proposals = i.ike_proposals.clone();
    r.esp_proposals = vec![esp("aes128gcm16-modp2048")];
    let mut p = Pair::new(i, r, 62);
    p.drive();
    assert_matching(&p);
    assert_eq!(p.children_i()[0].proposal, esp("aes128gcm16-modp2048"));
    assert!(
        !p.i_events.iter().any(|e| matches!(e, Event::Note(_))),
        "{:?}",
        p.i_events
    );
}

#[test]
fn esp_selection_rules() {
    use super::sa::select_esp;
    let ps = [
        esp("aes128-sha1-modp1024"),
        esp("aes256-sha256"),
        esp("aes192-sha384-ecp384"),
        esp("aes128gcm16-modp1024"),
    ];
    // Phase 1's group named by a proposal: it wins over the first proposal's.
    let s = select_esp(&ps, Some(DhGroup::Ecp384));
    assert_eq!(s.group, Some(DhGroup::Ecp384));
    assert_eq!(s.offered, vec![ps[2]]);
    assert_eq!(s.left_out, vec![ps[0], ps[1], ps[3]]);
    assert!(s.from_phase1);
    // Phase 1's group is the first proposal's anyway.
    let s = select_esp(&ps, Some(DhGroup::Modp1024));
    assert_eq!(s.offered, vec![ps[0], ps[3]]);
    assert!(!s.from_phase1);
    assert!(
        s.note()
            .unwrap()
            .contains("(PFS modp1024, the first proposal's group)")
    );
    // Not named: the first proposal's group.
    let s = select_esp(&ps, Some(DhGroup::Modp2048));
    assert_eq!(s.group, Some(DhGroup::Modp1024));
    assert_eq!(s.left_out, vec![ps[1], ps[2]]);
    // No phase 1 yet (never happens, but defined): the first proposal's group.
    assert_eq!(select_esp(&ps, None).group, Some(DhGroup::Modp1024));
    // All fit: no note.
    let s = select_esp(&ps[..1], Some(DhGroup::Ecp384));
    assert!(s.left_out.is_empty() && s.note().is_none());
    assert!(select_esp(&[], Some(DhGroup::Ecp384)).offered.is_empty());
}

mod hostile;
mod setup_loss;
