//! Rekeying the IKE SA (rekey_ike.rs): ours on the timer, the gateway's answered,
//! both at once, an INVALID_KE_PAYLOAD retry, on a lossy link.

use super::*;

/// Both sides run the same new IKE SA: equal SPIs, opposite I flags, the old gone.
fn check_same_sa(p: &Pair, old: ([u8; 8], [u8; 8])) {
    assert_eq!(p.client.spis(), p.gateway.spis(), "{:?}", p.client_events);
    assert_ne!(p.client.spis(), old);
    assert_ne!(p.client.ike_initiator, p.gateway.ike_initiator);
    assert!(p.client.is_established() && p.gateway.is_established());
    let (c, g) = (
        p.client.keys.as_ref().unwrap(),
        p.gateway.keys.as_ref().unwrap(),
    );
    assert_eq!(c.sk_d, g.sk_d);
    assert_eq!(c.sk_ei, g.sk_ei);
    assert_eq!(
        p.client.phase1().unwrap().initiator_cookie,
        p.client.spis().0
    );
}

/// The tunnel still works on the new SA: a liveness check is answered and the child
/// rekeys (its KEYMAT now from the new SK_d), mirrored on both sides.
fn check_usable(p: &mut Pair) {
    assert!(p.client.check_peer(p.now, Duration::from_secs(20)));
    p.drive(Duration::from_secs(3));
    let old = p.client.children()[0].spi_in;
    assert!(p.client.rekey(p.now, old));
    p.drive(Duration::from_secs(5));
    check_rekeyed(p, old);
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
}

fn renewed(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Phase1Renewed(_)))
        .count()
}

#[test]
fn the_client_rekeys_the_ike_sa_before_its_lifetime() {
    let (mut c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.ike_lifetime = Duration::from_secs(100);
    let mut p = Pair::new(
        c,
        s,
        Faults {
            drop_every: 9,
            dup_every: 5,
            ..Default::default()
        },
    );
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    let first = p.client.spis();
    let child = p.client.children()[0].spi_in;
    // 88 % of 100 s.
    p.drive(Duration::from_secs(75));
    assert_eq!(p.client.spis(), first, "rekeyed too early");
    p.drive(Duration::from_secs(20));
    check_same_sa(&p, first);
    // We made it: we are its original initiator again; the old SA was deleted.
    assert!(p.client.ike_initiator);
    assert_eq!(renewed(&p.client_events), 1);
    assert_eq!(renewed(&p.gateway_events), 1);
    p.drive(Duration::from_secs(30));
    assert!(p.client.retiring.is_empty() && p.gateway.retiring.is_empty());
    // The child carried on untouched.
    assert_eq!(p.client.children()[0].spi_in, child);
    check_usable(&mut p);
    // And again one lifetime later.
    let second = p.client.spis();
    p.drive(Duration::from_secs(90));
    check_same_sa(&p, second);
    assert_eq!(renewed(&p.client_events), 2);
    check_usable(&mut p);
}

#[test]
fn the_gateway_rekeys_the_ike_sa_and_the_client_answers() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let first = p.client.spis();
    assert!(p.gateway.rekey_ike(p.now));
    p.drive(Duration::from_secs(5));
    check_same_sa(&p, first);
    // The gateway made the new SA: the client is now its original responder.
    assert!(!p.client.ike_initiator);
    assert!(
        p.client.retiring.is_empty(),
        "the gateway's DELETE answered"
    );
    check_usable(&mut p);
    // A DELETE from the client on the new SA (I flag clear) reaches the gateway.
    p.client.close(p.now);
    p.drive(Duration::from_secs(5));
    assert!(
        p.gateway_events
            .iter()
            .any(|e| matches!(e, Event::Phase1Deleted))
    );
}

#[test]
fn a_lost_rekey_answer_is_retransmitted_from_the_old_sa() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let first = p.client.spis();
    assert!(p.gateway.rekey_ike(p.now));
    // Deliver the gateway's request; lose the client's answer.
    p.collect();
    let (_, _, req) = p.wire.remove(0);
    p.client
        .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &req.data);
    let answer = p.client.poll_transmit().unwrap();
    assert!(p.client.poll_transmit().is_none());
    drop(answer);
    // The client switched; the gateway's retransmission gets the same answer.
    assert_ne!(p.client.spis(), first);
    p.drive(Duration::from_secs(10));
    check_same_sa(&p, first);
    check_usable(&mut p);
}

#[test]
fn simultaneous_ike_rekeys_keep_one_sa() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let mut winners = Vec::new();
    for round in 0..6 {
        let before = p.client.spis();
        assert!(p.client.rekey_ike(p.now), "round {round}");
        assert!(p.gateway.rekey_ike(p.now), "round {round}");
        p.drive(Duration::from_secs(10));
        check_same_sa(&p, before);
        winners.push(p.client.ike_initiator);
        // The redundant SA and the old one were deleted on both sides.
        p.drive(Duration::from_secs(30));
        assert!(p.client.retiring.is_empty(), "round {round}");
        assert!(p.gateway.retiring.is_empty(), "round {round}");
        check_usable(&mut p);
    }
    // Each side's SA won at least once over the rounds (the nonces decide).
    assert!(
        winners.contains(&true) && winners.contains(&false),
        "{winners:?}"
    );
}

#[test]
fn an_invalid_ke_answer_to_the_ike_rekey_is_retried_with_the_group_asked_for() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256", "aes128-sha256-modp2048"],
        &["aes128-sha256-ecp256", "aes128-sha256-modp2048"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let first = p.client.spis();
    // The gateway now prefers MODP 2048.
    p.gateway.config.ike_proposals.reverse();
    assert!(p.client.rekey_ike(p.now));
    p.drive(Duration::from_secs(5));
    check_same_sa(&p, first);
    assert_eq!(
        p.client.phase1().unwrap().proposal.group,
        crate::algs::DhGroup::Modp2048
    );
    check_usable(&mut p);
}

#[test]
fn a_child_rekey_during_the_ike_rekey_waits() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let first = p.client.spis();
    let child = p.gateway.children()[0].spi_in;
    let client_child = p.client.children()[0].spi_in;
    assert!(p.client.rekey_ike(p.now));
    assert!(p.gateway.rekey(p.now, child));
    p.drive(Duration::from_secs(5));
    // Each refused the other's (TEMPORARY_FAILURE, §2.25.2), nothing changed.
    let temporary = |events: &[Event]| {
        events.iter().any(|e| match e {
            Event::Phase2Failed(Error::PeerNotify { name, .. })
            | Event::Phase1RenewalFailed(Error::PeerNotify { name, .. }) => {
                name == "TEMPORARY_FAILURE"
            }
            _ => false,
        })
    };
    assert!(temporary(&p.gateway_events), "{:?}", p.gateway_events);
    assert!(temporary(&p.client_events), "{:?}", p.client_events);
    assert_eq!(p.client.spis(), first);
    assert!(p.established());
    // Both try again later, the IKE SA first (20-30 s), the child then.
    p.drive(Duration::from_secs(60));
    check_same_sa(&p, first);
    check_rekeyed(&p, client_child);
    assert_ne!(p.gateway.children()[0].spi_in, child);
    check_usable(&mut p);
}

#[test]
fn hostile_ike_rekey_requests_are_refused_without_harm() {
    let (c, s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    let first = p.client.spis();
    let group = crate::algs::DhGroup::Ecp256;
    let ke = DhKeyPair::generate(group, &mut test_rng(5));
    let prop = |spi: Vec<u8>| {
        Payload::Sa(vec![Proposal {
            number: 1,
            protocol: codec::proto::IKE,
            spi,
            transforms: ike_transforms(&p.client.proposal.unwrap()),
        }])
    };
    let cases: Vec<Vec<Payload>> = vec![
        // Zero SPI, short SPI, no nonce, no KE, KE of another group, a bad KE.
        vec![
            prop(vec![0; 8]),
            Payload::Nonce(vec![1; 32]),
            Payload::Ke {
                group: 19,
                data: ke.public().to_vec(),
            },
        ],
        vec![
            prop(vec![1; 4]),
            Payload::Nonce(vec![1; 32]),
            Payload::Ke {
                group: 19,
                data: ke.public().to_vec(),
            },
        ],
        vec![
            prop(vec![1; 8]),
            Payload::Ke {
                group: 19,
                data: ke.public().to_vec(),
            },
        ],
        vec![prop(vec![1; 8]), Payload::Nonce(vec![1; 32])],
        vec![
            prop(vec![1; 8]),
            Payload::Nonce(vec![1; 32]),
            Payload::Ke {
                group: 14,
                data: vec![2; 256],
            },
        ],
        vec![
            prop(vec![1; 8]),
            Payload::Nonce(vec![1; 32]),
            Payload::Ke {
                group: 19,
                data: vec![0; 64],
            },
        ],
    ];
    for (n, payloads) in cases.into_iter().enumerate() {
        let id = p.gateway.next_id;
        let d = p
            .gateway
            .seal_request(codec::exchange::CREATE_CHILD_SA, id, &payloads);
        p.gateway.next_id += 1;
        p.client
            .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
        let answer = p.client.poll_transmit().expect("an answer");
        let m = Message::decode(&answer.data).unwrap();
        let opened = p
            .gateway
            .keys
            .as_ref()
            .unwrap()
            .open(&answer.data, &m, true)
            .unwrap();
        assert!(
            opened.payloads.iter().any(|d| matches!(
                d.payload,
                Payload::Notify { kind, .. } if kind < notify::STATUS_FIRST
            )),
            "case {n}: {:?}",
            opened.payloads
        );
        assert_eq!(p.client.spis(), first, "case {n}");
    }
    // Still the same SA, nothing else sent, no event but notes and refusals.
    assert!(p.client.is_established());
    assert!(p.client.poll_transmit().is_none());
    while let Some(e) = p.client.poll_event() {
        assert!(
            matches!(e, Event::Note(_) | Event::MessageRefused(_)),
            "{e:?}"
        );
    }
}
