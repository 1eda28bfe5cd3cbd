//! More than one CHILD_SA (children.rs): the further networks of a profile asked for
//! with CREATE_CHILD_SA, with and without PFS, one refused, each rekeyed and deleted
//! on its own, on a lossy link.

use super::*;
use crate::algs::DhGroup;

const NETS: [&str; 3] = ["10.77.0.0/24", "10.78.0.0/24", "10.79.0.0/24"];

fn net(s: &str) -> TrafficSelector {
    let (a, p) = s.split_once('/').unwrap();
    TrafficSelector {
        addr: a.parse().unwrap(),
        prefix: p.parse().unwrap(),
    }
}

/// A client asking for `wanted` (the first in IKE_AUTH) and a gateway with the three
/// networks of `NETS` as three children; the client's ESP proposals with `pfs`.
fn configs_for(wanted: &[&str], pfs: Option<DhGroup>) -> (Config, Config) {
    let (mut c, mut s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.children = wanted
        .iter()
        .map(|n| ChildConfig {
            local: Some(TrafficSelector::host(IpAddr::V4(CLIENT))),
            remote: Some(net(n)),
        })
        .collect();
    for e in &mut c.esp_proposals {
        e.group = pfs;
    }
    s.children = NETS
        .iter()
        .map(|n| ChildConfig {
            local: Some(net(n)),
            remote: None,
        })
        .collect();
    (c, s)
}

/// Every child of the client has its mirror at the gateway (SPIs crossed, keys
/// crossed, selectors swapped), our side is the virtual address, and the networks
/// are `nets`, each once; SPIs and keys differ between children.
fn check_children(p: &Pair, nets: &[&str]) {
    let (cs, gs) = (p.client.children(), p.gateway.children());
    assert_eq!(cs.len(), nets.len(), "{:?}", p.client_events);
    assert_eq!(gs.len(), nets.len(), "{:?}", p.gateway_events);
    for c in cs {
        let g = gs
            .iter()
            .find(|g| g.spi_in == c.spi_out)
            .expect("the gateway's side of the child");
        assert_eq!(g.spi_out, c.spi_in);
        assert_eq!(c.keys_in.encryption, g.keys_out.encryption);
        assert_eq!(c.keys_in.integrity, g.keys_out.integrity);
        assert_eq!(c.keys_out.encryption, g.keys_in.encryption);
        assert_eq!(c.keys_out.integrity, g.keys_in.integrity);
        assert_eq!(c.local_ts, g.remote_ts);
        assert_eq!(c.remote_ts, g.local_ts);
        assert_eq!(c.local_ts.unwrap().to_string(), "10.200.0.5/32");
    }
    let mut got: Vec<String> = cs
        .iter()
        .map(|c| c.remote_ts.unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = nets.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    for (i, a) in cs.iter().enumerate() {
        for b in &cs[i + 1..] {
            assert_ne!(a.spi_in, b.spi_in);
            assert_ne!(a.spi_out, b.spi_out);
            assert_ne!(a.keys_out.encryption, b.keys_out.encryption);
        }
    }
}

fn established(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Phase2Established(_)))
        .count()
}

fn no_failure(p: &Pair) {
    assert!(
        Pair::failure(&p.client_events).is_none(),
        "{:?}",
        p.client_events
    );
    assert!(
        Pair::failure(&p.gateway_events).is_none(),
        "{:?}",
        p.gateway_events
    );
    assert!(p.client.is_established() && p.gateway.is_established());
}

fn child_for<'a>(e: &'a Ike2, network: &str) -> &'a ChildSa {
    e.children()
        .iter()
        .find(|c| {
            c.remote_ts.map(|t| t.to_string()).as_deref() == Some(network)
                || c.local_ts.map(|t| t.to_string()).as_deref() == Some(network)
        })
        .unwrap_or_else(|| panic!("no child for {network}"))
}

#[test]
fn two_and_three_children_with_and_without_pfs() {
    for n in [2, 3] {
        for pfs in [None, Some(DhGroup::Ecp256), Some(DhGroup::Modp2048)] {
            let (c, s) = configs_for(&NETS[..n], pfs);
            assert_eq!(planned_children(&c), n);
            let mut p = Pair::new(c, s, Faults::default());
            p.drive(Duration::from_secs(5));
            no_failure(&p);
            check_children(&p, &NETS[..n]);
            assert_eq!(established(&p.client_events), n, "{pfs:?}");
            assert_eq!(established(&p.gateway_events), n);
            // The first in IKE_AUTH, the others each in its own CREATE_CHILD_SA.
            assert_eq!(p.client.next_id, 2 + n as u32 - 1, "{:?}", p.client_events);
        }
    }
}

#[test]
fn pfs_is_sent_when_the_profile_asks_for_it_and_a_refusal_stays_with_its_child() {
    // The gateway insists on PFS for new children: a client without it gets the
    // IKE_AUTH child only, and one clear refusal per further network.
    for (pfs, up) in [(Some(DhGroup::Ecp256), 3), (None, 1)] {
        let (c, mut s) = configs_for(&NETS, pfs);
        for e in &mut s.esp_proposals {
            e.group = Some(DhGroup::Ecp256);
        }
        let mut p = Pair::new(c, s, Faults::default());
        p.drive(Duration::from_secs(5));
        no_failure(&p);
        assert_eq!(p.client.children().len(), up, "{:?}", p.client_events);
        let refused: Vec<String> = p
            .client_events
            .iter()
            .filter_map(|e| match e {
                Event::Phase2Failed(e) => Some(e.to_string()),
                _ => None,
            })
            .collect();
        if pfs.is_some() {
            assert!(refused.is_empty(), "{refused:?}");
        } else {
            assert_eq!(
                refused,
                vec![
                    "no proposal chosen: the gateway accepted none of our ESP proposals for 10.78.0.0/24 (a second child SA)",
                    "no proposal chosen: the gateway accepted none of our ESP proposals for 10.79.0.0/24 (a second child SA)",
                ]
            );
        }
    }
}

#[test]
fn a_network_the_gateway_does_not_have_is_refused_and_the_others_come_up() {
    let (c, s) = configs_for(&["10.77.0.0/24", "10.99.0.0/24", "10.79.0.0/24"], None);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    no_failure(&p);
    check_children(&p, &["10.77.0.0/24", "10.79.0.0/24"]);
    let failed: Vec<&Error> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Phase2Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(failed[0], Error::InvalidId(_)));
    assert_eq!(
        failed[0].to_string(),
        "invalid ID information: the gateway refused a child SA for 10.99.0.0/24 (no such network in its configuration: check remote_networks)"
    );
    // The gateway said why in one line.
    assert!(p.gateway_events.iter().any(|e| matches!(
        e,
        Event::Note(l) if l.contains("match no configured network")
    )));
}

#[test]
fn a_client_narrowed_to_a_smaller_network_keeps_it() {
    // The client asks for a /16 holding the gateway's 10.78.0.0/24: narrowed to it.
    let (c, s) = configs_for(&["10.77.0.0/24", "10.78.0.0/16"], None);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    no_failure(&p);
    check_children(&p, &["10.77.0.0/24", "10.78.0.0/24"]);
}

#[test]
fn each_child_rekeys_on_its_own_and_the_others_keep_their_spis() {
    for pfs in [None, Some(DhGroup::Ecp256)] {
        let (mut c, s) = configs_for(&NETS[..2], pfs);
        c.esp_lifetime = Duration::from_secs(100);
        let mut p = Pair::new(c, s, Faults::default());
        p.drive(Duration::from_secs(5));
        check_children(&p, &NETS[..2]);
        let a = child_for(&p.client, NETS[0]).clone();
        let b = child_for(&p.client, NETS[1]).clone();
        // Ours, on one child: the other keeps its SPIs at both ends.
        assert!(p.client.rekey(p.now, a.spi_in));
        p.drive(Duration::from_secs(5));
        no_failure(&p);
        check_children(&p, &NETS[..2]);
        let a2 = child_for(&p.client, NETS[0]).clone();
        assert_ne!(a2.spi_in, a.spi_in);
        assert_ne!(a2.keys_out.encryption, a.keys_out.encryption);
        let b_now = child_for(&p.client, NETS[1]);
        assert_eq!((b_now.spi_in, b_now.spi_out), (b.spi_in, b.spi_out));
        assert_eq!(child_for(&p.gateway, NETS[1]).spi_in, b.spi_out);
        // The gateway's, on the other one.
        let gb = child_for(&p.gateway, NETS[1]).spi_in;
        assert!(p.gateway.rekey(p.now, gb));
        p.drive(Duration::from_secs(5));
        no_failure(&p);
        check_children(&p, &NETS[..2]);
        assert_ne!(child_for(&p.client, NETS[1]).spi_in, b.spi_in);
        assert_eq!(child_for(&p.client, NETS[0]).spi_in, a2.spi_in);
        // Then each on its own timer (85 % of 100 s), both rekeyed again, in turn.
        let (a3, b3) = (
            child_for(&p.client, NETS[0]).spi_in,
            child_for(&p.client, NETS[1]).spi_in,
        );
        p.drive(Duration::from_secs(100));
        no_failure(&p);
        check_children(&p, &NETS[..2]);
        assert_ne!(child_for(&p.client, NETS[0]).spi_in, a3);
        assert_ne!(child_for(&p.client, NETS[1]).spi_in, b3);
        // Every replaced pair was deleted, and only those.
        let deleted = p
            .client_events
            .iter()
            .filter(|e| matches!(e, Event::Phase2Deleted { .. }))
            .count();
        assert_eq!(deleted, 4, "{:?}", p.client_events);
    }
}

#[test]
fn the_gateway_deleting_one_child_removes_only_that_child() {
    let (c, s) = configs_for(&NETS, None);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    check_children(&p, &NETS);
    let gone = child_for(&p.client, NETS[1]).clone();
    let at_gw = child_for(&p.gateway, NETS[1]).spi_in;
    assert!(p.gateway.delete_child(p.now, at_gw));
    p.drive(Duration::from_secs(5));
    no_failure(&p);
    check_children(&p, &[NETS[0], NETS[2]]);
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Phase2Deleted { spi_in, spi_out, by_peer: true }
            if *spi_in == gone.spi_in && *spi_out == gone.spi_out
    )));
    assert!(p.gateway_events.iter().any(|e| matches!(
        e,
        Event::Phase2Deleted { spi_in, by_peer: false, .. } if *spi_in == at_gw
    )));
    // Our own delete of one child works the same way, and the last one stays up.
    let ours = child_for(&p.client, NETS[0]).spi_in;
    assert!(p.client.delete_child(p.now, ours));
    p.drive(Duration::from_secs(5));
    no_failure(&p);
    check_children(&p, &[NETS[2]]);
    assert!(!p.client.delete_child(p.now, ours), "already gone");
}

#[test]
fn three_children_with_pfs_through_loss_duplication_and_reordering() {
    for seed in 0..4u32 {
        let (mut c, s) = configs_for(&NETS, Some(DhGroup::Ecp256));
        c.esp_lifetime = Duration::from_secs(200);
        let mut p = Pair::new(
            c,
            s,
            Faults {
                drop_every: 4 + seed,
                dup_every: 3,
                delay_every: 5 + seed,
            },
        );
        p.drive(Duration::from_secs(60));
        no_failure(&p);
        check_children(&p, &NETS);
        // And through the rekeys of all three on the same bad link.
        let before: Vec<u32> = p.client.children().iter().map(|c| c.spi_in).collect();
        p.drive(Duration::from_secs(200));
        no_failure(&p);
        check_children(&p, &NETS);
        for c in p.client.children() {
            assert!(!before.contains(&c.spi_in), "seed {seed}: not rekeyed");
        }
    }
}

#[test]
fn with_a_configuration_payload_each_network_is_asked_for_once() {
    // Two local selectors for one network (profile_children's product) are one child
    // when the gateway gives the inner address.
    let (mut c, s) = configs_for(&NETS[..2], None);
    let extra = ChildConfig {
        local: Some(TrafficSelector::host("192.0.2.99".parse().unwrap())),
        remote: Some(net(NETS[1])),
    };
    c.children.push(extra);
    assert_eq!(planned_children(&c), 2);
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    no_failure(&p);
    check_children(&p, &NETS[..2]);
}

#[test]
fn hostile_answers_to_a_new_child_fail_that_child_only() {
    // Selectors outside ours, no nonce, two proposals: each is refused for that
    // child, the IKE SA stays.
    let (c, s) = configs_for(&NETS[..2], None);
    let mut p = Pair::new(c, s, Faults::default());
    // Stop before the second child's answer reaches the client: drive until the
    // client has sent its CREATE_CHILD_SA.
    p.drive(Duration::from_millis(27));
    assert_eq!(p.client.children().len(), 1, "{:?}", p.client_events);
    let nc = p.client.extra.in_flight.as_ref().expect("asking").spi_in;
    let answers: [Vec<Payload>; 3] = [
        vec![
            Payload::Sa(vec![Proposal {
                number: 2,
                protocol: codec::proto::ESP,
                spi: vec![0, 0, 9, 9],
                transforms: esp_transforms(&parse_esp("aes128-sha256").unwrap(), None),
            }]),
            Payload::Nonce(vec![5; 32]),
            Payload::Ts {
                initiator: true,
                selectors: vec![to_selector(&net("10.200.0.5/32"))],
            },
            Payload::Ts {
                initiator: false,
                selectors: vec![to_selector(&net("10.1.0.0/24"))],
            },
        ],
        vec![Payload::Sa(vec![])],
        vec![Payload::Sa(vec![Proposal {
            number: 2,
            protocol: codec::proto::ESP,
            spi: vec![0, 0, 9, 9],
            transforms: esp_transforms(&parse_esp("aes128-sha256").unwrap(), None),
        }])],
    ];
    let rk = p.client.extra.in_flight.take().unwrap();
    for a in &answers {
        p.client.extra.in_flight = Some(crate::ike2::children::NewChild {
            spi_in: nc,
            ni: rk.ni.clone(),
            dh: None,
            local_ts: rk.local_ts,
            remote_ts: rk.remote_ts,
        });
        p.client.on_new_child_reply(p.now, a);
    }
    p.collect();
    let failed = p
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::Phase2Failed(_)))
        .count();
    assert_eq!(failed, 3, "{:?}", p.client_events);
    assert!(p.client.is_established());
    assert_eq!(p.client.children().len(), 1);
}
