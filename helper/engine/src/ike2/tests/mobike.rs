//! MOBIKE (RFC 4555) on the `Pair`: the client's outer address changes (and a NAT
//! appears) under an established IKE SA, which moves instead of being renegotiated.

use super::*;
use crate::ike2::mobike::{AddressChange, kind};

/// Where the client is on the simulated network.
#[derive(Clone, Copy)]
struct Net {
    /// The client's own address.
    client: Ipv4Addr,
    /// A NAT in front of it: (public address, port for 500, port for 4500).
    nat: Option<(Ipv4Addr, u16, u16)>,
    /// Datagrams to the gateway still to lose.
    lose_to_gateway: u32,
    /// Everything to the gateway is lost.
    gateway_gone: bool,
}

impl Net {
    fn at(client: Ipv4Addr) -> Net {
        Net {
            client,
            nat: None,
            lose_to_gateway: 0,
            gateway_gone: false,
        }
    }

    /// The client's datagrams as the gateway sees them.
    fn seen_from(&self, port: u16) -> SocketAddr {
        match self.nat {
            Some((ip, p500, p4500)) => sock(ip, if port == 4500 { p4500 } else { p500 }),
            None => sock(self.client, port),
        }
    }
}

/// Like `Pair::drive`, with the client at `net`: the gateway's datagrams to any other
/// address are lost (the old address is gone), the client's leave from `net`.
fn drive_net(p: &mut Pair, net: &mut Net, limit: Duration) {
    let end = p.now + limit;
    for _ in 0..10_000 {
        p.collect();
        let next_wire = p.wire.iter().map(|w| w.0).min();
        let next = [next_wire, p.client.poll_timeout(), p.gateway.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { return };
        if next > end {
            p.now = end;
            return;
        }
        p.now = p.now.max(next);
        if let Some(i) = p.wire.iter().position(|w| w.0 <= p.now) {
            let (_, to_gw, t) = p.wire.remove(i);
            let port = if t.nat_t { 4500 } else { 500 };
            if to_gw {
                if net.gateway_gone {
                    continue;
                }
                if net.lose_to_gateway > 0 {
                    net.lose_to_gateway -= 1;
                    continue;
                }
                p.gateway
                    .handle_datagram(p.now, sock(GATEWAY, port), net.seen_from(port), &t.data);
            } else {
                let reaches = t.destination == net.seen_from(port);
                if reaches {
                    p.client.handle_datagram(
                        p.now,
                        sock(net.client, port),
                        sock(GATEWAY, port),
                        &t.data,
                    );
                }
            }
            continue;
        }
        p.client.handle_timeout(p.now);
        p.gateway.handle_timeout(p.now);
    }
    panic!("the pair did not settle");
}

fn up() -> Pair {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    p
}

fn changes(events: &[Event]) -> Vec<AddressChange> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AddressesChanged(a) => Some(*a),
            _ => None,
        })
        .collect()
}

const MOVED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

#[test]
fn mobike_is_negotiated_and_ike_floats_to_4500_without_udp_esp() {
    let p = up();
    assert!(p.client.mobike() && p.gateway.mobike());
    // IKE_AUTH went to port 4500 (§3.3); with no NAT, ESP stays raw.
    assert!(p.client.floated() && p.gateway.floated());
    assert!(!p.client.children()[0].udp_encapsulation);
    assert!(!p.gateway.children()[0].udp_encapsulation);
    let auth = Message::decode(&p.sent_to_gateway[1]).unwrap();
    assert_eq!(auth.header.exchange, codec::exchange::IKE_AUTH);
    assert_eq!(p.client.addresses().0, sock(CLIENT, 4500));
    assert_eq!(p.gateway.addresses().1, sock(CLIENT, 4500));
}

#[test]
fn a_gateway_without_mobike_is_not_asked_to_move() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.gateway.set_mobike(false);
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    assert!(!p.client.mobike() && !p.gateway.mobike());
    // Refused: the driver negotiates again instead.
    let now = p.now;
    assert!(
        !p.client
            .update_addresses(now, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    assert!(p.client.poll_transmit().is_none());
}

#[test]
fn the_client_moves_and_the_same_sas_carry_on() {
    let mut p = up();
    let spis = p.client.spis();
    let child = p.client.children()[0].clone();
    let mut net = Net::at(MOVED);
    let now = p.now;
    assert!(
        p.client
            .update_addresses(now, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    assert!(p.client.moving());
    drive_net(&mut p, &mut net, Duration::from_secs(5));
    assert!(!p.client.moving());
    assert!(Pair::failure(&p.client_events).is_none());
    let c = changes(&p.client_events);
    assert_eq!(c.len(), 1, "{:?}", p.client_events);
    assert_eq!(c[0].local, sock(MOVED, 4500));
    assert_eq!(c[0].remote, sock(GATEWAY, 4500));
    assert!(!c[0].nat.any() && !c[0].udp_encapsulation);
    let g = changes(&p.gateway_events);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].remote, sock(MOVED, 4500));
    assert_eq!(p.gateway.addresses().1, sock(MOVED, 4500));
    // The same IKE SA and child: nothing negotiated again.
    assert_eq!(p.client.spis(), spis);
    assert_eq!(p.gateway.spis(), spis);
    assert_eq!(p.client.children().len(), 1);
    assert_eq!(p.client.children()[0].spi_in, child.spi_in);
    assert_eq!(
        p.client.children()[0].keys_out.encryption,
        child.keys_out.encryption
    );
    // The request carried UPDATE_SA_ADDRESSES, NAT notifies and a COOKIE2 (read by
    // the gateway: the request is sealed).
    let req = Message::decode(p.sent_to_gateway.last().unwrap()).unwrap();
    assert_eq!(req.header.exchange, codec::exchange::INFORMATIONAL);
    // The gateway's own requests now reach the new address: a liveness check.
    let now = p.now;
    assert!(p.gateway.check_peer(now, Duration::from_secs(3)));
    drive_net(&mut p, &mut net, Duration::from_secs(5));
    assert!(p.gateway.is_established() && !p.gateway.checking_peer());
    assert!(Pair::failure(&p.gateway_events).is_none());
    // And the client's DPD after a quiet minute.
    drive_net(&mut p, &mut net, Duration::from_secs(70));
    assert!(p.client.is_established());
    assert!(Pair::failure(&p.client_events).is_none());
}

#[test]
fn a_lost_update_is_retransmitted() {
    let mut p = up();
    let mut net = Net::at(MOVED);
    net.lose_to_gateway = 2;
    let now = p.now;
    let retransmits = p.client.counters().retransmits;
    assert!(
        p.client
            .update_addresses(now, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    drive_net(&mut p, &mut net, Duration::from_secs(8));
    assert_eq!(changes(&p.client_events).len(), 1, "{:?}", p.client_events);
    assert_eq!(p.client.counters().retransmits, retransmits + 2);
    assert_eq!(p.gateway.addresses().1, sock(MOVED, 4500));
}

#[test]
fn no_answer_to_the_update_fails_in_bounded_time() {
    let mut p = up();
    let mut net = Net::at(MOVED);
    net.gateway_gone = true;
    let start = p.now;
    assert!(
        p.client
            .update_addresses(start, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    // Given up at the budget (10 s), not after a whole retransmission series (25 s).
    drive_net(&mut p, &mut net, Duration::from_secs(11));
    assert!(
        matches!(
            Pair::failure(&p.client_events),
            Some(Error::NotResponding(_))
        ),
        "{:?}",
        p.client_events
    );
    assert!(p.client.is_dead());
    assert!(changes(&p.client_events).is_empty());
    assert!(p.client.poll_timeout().is_none());
}

#[test]
fn a_nat_appearing_on_the_new_path_turns_on_esp_in_udp() {
    let mut p = up();
    assert!(!p.client.children()[0].udp_encapsulation);
    let private = Ipv4Addr::new(10, 9, 0, 2);
    let public = Ipv4Addr::new(198, 51, 100, 9);
    let mut net = Net::at(private);
    net.nat = Some((public, 31_000, 31_001));
    let now = p.now;
    assert!(
        p.client
            .update_addresses(now, sock(private, 500), sock(GATEWAY, 500))
    );
    drive_net(&mut p, &mut net, Duration::from_secs(5));
    let c = changes(&p.client_events);
    assert_eq!(c.len(), 1, "{:?}", p.client_events);
    assert!(c[0].nat.local_behind_nat && !c[0].nat.remote_behind_nat);
    assert!(c[0].udp_encapsulation);
    assert!(p.client.children()[0].udp_encapsulation);
    let g = changes(&p.gateway_events);
    assert_eq!(g.len(), 1);
    assert!(g[0].nat.remote_behind_nat && g[0].udp_encapsulation);
    assert_eq!(g[0].remote, sock(public, 31_001));
    assert!(p.gateway.children()[0].udp_encapsulation);
    // The gateway reaches the client through the NAT's mapping.
    let now = p.now;
    assert!(p.gateway.check_peer(now, Duration::from_secs(3)));
    drive_net(&mut p, &mut net, Duration::from_secs(5));
    assert!(Pair::failure(&p.gateway_events).is_none());
    assert!(!p.gateway.checking_peer());
}

#[test]
fn a_move_during_a_rekey_waits_for_its_answer() {
    let mut p = up();
    let spi = p.client.children()[0].spi_in;
    let now = p.now;
    assert!(p.client.rekey(now, spi));
    let mut net = Net::at(MOVED);
    assert!(
        p.client
            .update_addresses(now, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    assert!(p.client.moving());
    drive_net(&mut p, &mut net, Duration::from_secs(10));
    assert!(
        Pair::failure(&p.client_events).is_none(),
        "{:?}",
        p.client_events
    );
    assert_eq!(changes(&p.client_events).len(), 1);
    assert_eq!(p.client.children().len(), 1);
    assert_ne!(p.client.children()[0].spi_in, spi);
    assert_eq!(p.gateway.addresses().1, sock(MOVED, 4500));
}

#[test]
fn an_update_before_mobike_was_agreed_moves_nothing() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.client.set_mobike(false);
    p.drive(Duration::from_secs(5));
    assert!(p.established() && !p.gateway.mobike());
    // A sealed UPDATE_SA_ADDRESSES from another address anyway: answered as an
    // ordinary INFORMATIONAL, the gateway stays where it was.
    let id = p.client.next_id;
    let d = p.client.seal_request(
        codec::exchange::INFORMATIONAL,
        id,
        &[notify_payload(kind::UPDATE_SA_ADDRESSES, Vec::new())],
    );
    let now = p.now;
    p.gateway
        .handle_datagram(now, sock(GATEWAY, 500), sock(MOVED, 500), &d);
    assert!(
        changes(&{
            p.collect();
            p.gateway_events.clone()
        })
        .is_empty()
    );
    assert_eq!(p.gateway.addresses().1, sock(CLIENT, 500));
}

#[test]
fn a_wrong_cookie2_echo_is_refused() {
    let mut p = up();
    let now = p.now;
    assert!(
        p.client
            .update_addresses(now, sock(MOVED, 500), sock(GATEWAY, 500))
    );
    let req = p.client.poll_transmit().unwrap();
    let id = Message::decode(&req.data).unwrap().header.message_id;
    // The gateway's answer with another COOKIE2 (as an off-path replay would have).
    let h = p.gateway.header(codec::exchange::INFORMATIONAL, id, true);
    let d = p
        .gateway
        .seal(h, &[notify_payload(kind::COOKIE2, vec![7; 16])]);
    p.client
        .handle_datagram(now, sock(MOVED, 4500), sock(GATEWAY, 4500), &d);
    p.collect();
    assert!(changes(&p.client_events).is_empty());
    assert!(matches!(
        Pair::failure(&p.client_events),
        Some(Error::Malformed(_))
    ));
}
