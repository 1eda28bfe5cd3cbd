//! IKEv2 fragmentation (frag.rs): IKE_AUTH both ways in fragments through loss,
//! duplicates and reordering, no fragments unless both announce, and hostile
//! fragments (number 0, total 0, beyond the total, a changing total, forged).

use super::*;
use crate::ike2::frag::{Fragment, MAX_FRAGMENTS, Reassembly, SKF, Taken};

fn is_fragment(d: &[u8]) -> bool {
    d.get(16) == Some(&SKF)
}

fn small_fragments(faults: Faults) -> Pair {
    let (mut c, mut s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.fragment_size = 200;
    s.fragment_size = 200;
    Pair::new(c, s, faults)
}

#[test]
fn ike_auth_in_fragments_both_ways() {
    let mut p = small_fragments(Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(
        p.established(),
        "{:?} / {:?}",
        p.client_events,
        p.gateway_events
    );
    check_children_mirror(&p);
    assert!(p.client.frag_ok && p.gateway.frag_ok);
    let frags: Vec<&Vec<u8>> = p
        .sent_to_gateway
        .iter()
        .filter(|d| is_fragment(d))
        .collect();
    assert!(frags.len() >= 2, "the IKE_AUTH request was not fragmented");
    // Each fragment fits 200 bytes of IPv4 datagram.
    assert!(
        frags.iter().all(|d| d.len() <= 200 - 28),
        "{:?}",
        frags.iter().map(|d| d.len()).collect::<Vec<_>>()
    );
    // The gateway's answer came in fragments too.
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("reassembled")))
    );
    assert!(
        p.gateway_events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("reassembled")))
    );
}

#[test]
fn fragments_through_loss_duplication_and_reordering() {
    // (A drop period that divides an exchange's datagram count, fragments of the
    // request and of the answer, would lose the same fragment on every try.)
    for (drop_every, dup_every, delay_every) in [(7, 0, 0), (0, 2, 0), (0, 0, 2), (7, 3, 4)] {
        let mut p = small_fragments(Faults {
            drop_every,
            dup_every,
            delay_every,
        });
        p.drive(Duration::from_secs(60));
        assert!(
            p.established(),
            "faults {drop_every}/{dup_every}/{delay_every}: {:?} / {:?}",
            p.client_events,
            p.gateway_events
        );
        check_children_mirror(&p);
        // A child rekey (CREATE_CHILD_SA) goes in fragments as well.
        let old = p.client.children()[0].spi_in;
        assert!(p.client.rekey(p.now, old));
        p.drive(Duration::from_secs(60));
        check_rekeyed(&p, old);
    }
}

#[test]
fn no_fragments_unless_both_announce() {
    let (mut c, mut s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.fragment_size = 200;
    s.fragment_size = 200;
    s.fragmentation = false;
    let mut p = Pair::new(c, s, Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    assert!(!p.client.frag_ok && !p.gateway.frag_ok);
    assert!(!p.sent_to_gateway.iter().any(|d| is_fragment(d)));
}

fn frag(id: u32, number: u16, total: u16, first: u8, body: &[u8]) -> Fragment {
    Fragment {
        header: Header {
            spi_i: [1; 8],
            spi_r: [2; 8],
            next_payload: SKF,
            exchange: codec::exchange::IKE_AUTH,
            flags: codec::flags::RESPONSE,
            message_id: id,
            length: 0,
        },
        first,
        number,
        total,
        plain: zeroize::Zeroizing::new(body.to_vec()),
    }
}

#[test]
fn reassembly_refuses_hostile_fragments_and_keeps_bounds() {
    let t0 = p_now();
    let mut slot = None;
    let refused = |t: Taken| matches!(t, Taken::Refused(_));
    // Number 0, total 0, beyond the total, too many, Next Payload after the first.
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 0, 2, 0, b"x")
    )));
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 1, 0, 35, b"x")
    )));
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 3, 2, 0, b"x")
    )));
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 1, MAX_FRAGMENTS + 1, 35, b"x")
    )));
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 2, 2, 35, b"x")
    )));
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(1, 1, 2, 0, b"x")
    )));
    // Out of order, with a duplicate: whole once all are there.
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(1, 3, 3, 0, b"cc")),
        Taken::More
    );
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(1, 3, 3, 0, b"zz")),
        Taken::More
    );
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(1, 1, 3, 35, b"aa")),
        Taken::More
    );
    match Reassembly::take(&mut slot, t0, frag(1, 2, 3, 0, b"bb")) {
        Taken::Whole(first, b) => {
            assert_eq!(first, 35);
            assert_eq!(b.as_slice(), b"aabbcc");
        }
        other => panic!("{other:?}"),
    }
    assert!(slot.is_none());
    // The total changes: larger starts over, smaller is refused.
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(2, 1, 2, 35, b"a")),
        Taken::More
    );
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(2, 1, 3, 35, b"A")),
        Taken::More
    );
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(2, 2, 2, 0, b"b")
    )));
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(2, 2, 3, 0, b"B")),
        Taken::More
    );
    assert!(matches!(
        Reassembly::take(&mut slot, t0, frag(2, 3, 3, 0, b"C")),
        Taken::Whole(35, ref b) if b.as_slice() == b"ABC"
    ));
    // Too old: a late fragment starts a new message; the old parts are gone.
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(3, 1, 2, 35, b"a")),
        Taken::More
    );
    let late = t0 + crate::ike2::frag::REASSEMBLY_TIMEOUT + Duration::from_secs(1);
    assert_eq!(
        Reassembly::take(&mut slot, late, frag(3, 2, 2, 0, b"b")),
        Taken::More
    );
    // Too many bytes.
    let big = vec![0u8; crate::ike2::frag::MAX_BYTES / 2 + 1];
    assert_eq!(
        Reassembly::take(&mut slot, t0, frag(4, 1, 3, 35, &big)),
        Taken::More
    );
    assert!(refused(Reassembly::take(
        &mut slot,
        t0,
        frag(4, 2, 3, 0, &big)
    )));
    assert!(slot.is_none());
}

#[allow(clippy::disallowed_methods)]
fn p_now() -> Instant {
    Instant::now()
}

#[test]
fn forged_and_misplaced_fragments_do_not_disturb_the_sa() {
    let mut p = small_fragments(Faults::default());
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    let spis = p.client.spis();
    let id = p.gateway.next_id;
    let h = p.gateway.header(codec::exchange::INFORMATIONAL, id, false);
    let keys = p.gateway.keys.as_ref().unwrap();
    let mut rng = test_rng(9);
    let good = keys.seal_fragment(h, ptype::DELETE, 1, 1, &[0u8; 8], false, &mut rng);
    // Forged ICV, truncated, lengths lying: dropped before reassembly.
    let mut forged = good.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let before = p.client.counters().dropped;
    for bad in [forged, good[..good.len() - 3].to_vec(), good[..40].to_vec()] {
        p.client
            .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &bad);
    }
    assert!(p.client.reassembly.is_none());
    assert!(p.client.poll_transmit().is_none());
    assert!(p.client.counters().dropped >= before + 3);
    // Hostile numbering, authenticated: refused, nothing answered.
    for (num, total) in [(0u16, 1u16), (1, 0), (2, 1)] {
        let d = keys.seal_fragment(h, ptype::NOTIFY, num, total, &[0u8; 8], false, &mut rng);
        p.client
            .handle_datagram(p.now, sock(CLIENT, 500), sock(GATEWAY, 500), &d);
        assert!(p.client.poll_transmit().is_none(), "{num}/{total}");
    }
    assert!(p.client.is_established());
    assert_eq!(p.client.spis(), spis);
    // A liveness check in both directions still works.
    assert!(p.client.check_peer(p.now, Duration::from_secs(10)));
    p.drive(Duration::from_secs(3));
    assert!(Pair::failure(&p.client_events).is_none());
}
