//! Hostile input against the engine, both roles (issue 15, point 1): each test
//! feeds one family of malformed, forged or replayed datagrams to a client and a
//! gateway engine of a [`Pair`] and asserts that nothing panics, that an
//! established SA stays established and still runs a quick mode afterwards, and
//! that the drop is counted (and reported at most once a minute).
//!
//! The lab half (`tests/tests/hostile.rs`) throws the same families at the running
//! helper from a real gateway's address.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::codec::{
    AttrValue, Attribute, DeletePayload, FragmentPayload, IdPayload, Message, NotifyPayload,
    Payload, PayloadType, Proposal, ProtocolId, SaPayload, Transform, attr,
};

fn up(mode: ExchangeMode, seed: u64) -> Pair {
    let (i, r) = configs(mode);
    let mut p = Pair::new(i, r, seed);
    p.drive();
    assert_matching(&p);
    p
}

fn to_client(p: &mut Pair, d: &[u8]) {
    p.i.handle_datagram(p.now, addr(2), addr(1), d);
    p.collect();
}

fn to_gateway(p: &mut Pair, d: &[u8]) {
    p.r.handle_datagram(p.now, addr(1), addr(2), d);
    p.collect();
}

fn ended(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Failed(_) | Event::Phase1Deleted | Event::Closed))
}

fn drop_reports(events: &[Event]) -> Vec<DropReport> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Dropped(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Both sides still up, nothing ended, and a quick mode (a rekey) still completes.
fn still_works(p: &mut Pair) {
    assert!(p.i.is_established() && p.r.is_established());
    assert!(!ended(&p.i_events), "client: {:?}", p.i_events);
    assert!(!ended(&p.r_events), "gateway: {:?}", p.r_events);
    let before = p.children_i().len();
    let spi = p.i.children()[0].spi_in;
    assert!(p.i.rekey(p.now, spi));
    p.drive_for(Duration::from_secs(5));
    assert_eq!(p.children_i().len(), before + 1, "{:?}", p.i_events);
    assert!(!ended(&p.i_events) && !ended(&p.r_events));
}

/// A datagram with the live cookies and the given header fields; `length` `None`
/// means the right one.
fn live(
    p: &Pair,
    exchange: ExchangeType,
    next: PayloadType,
    flags: u8,
    mid: u32,
    body: &[u8],
    length: Option<u32>,
) -> Vec<u8> {
    let info = p.i.phase1().unwrap();
    let h = Header {
        initiator_cookie: info.initiator_cookie,
        responder_cookie: info.responder_cookie,
        next_payload: next,
        version: 0x10,
        exchange,
        flags,
        message_id: mid,
        length: length.unwrap_or((Header::LEN + body.len()) as u32),
    };
    let mut d = Vec::new();
    h.encode(&mut d);
    d.extend_from_slice(body);
    d
}

/// Sends `junk` to both sides of an established pair; each datagram must be
/// dropped (counted), each side reports once at once and once a minute later.
fn throw_at_both(p: &mut Pair, junk: &[Vec<u8>]) {
    let (ci, ri) = (p.i.counters().dropped, p.r.counters().dropped);
    let (ei, er) = (
        drop_reports(&p.i_events).len(),
        drop_reports(&p.r_events).len(),
    );
    for d in junk {
        to_client(p, d);
        to_gateway(p, d);
    }
    assert!(
        p.i.counters().dropped - ci >= junk.len() as u32,
        "client dropped {} of {}",
        p.i.counters().dropped - ci,
        junk.len()
    );
    assert!(p.r.counters().dropped - ri >= junk.len() as u32);
    assert!(drop_reports(&p.i_events).len() - ei <= 1);
    assert!(drop_reports(&p.r_events).len() - er <= 1);
}

#[test]
fn lengths_below_above_and_inconsistent_both_roles() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let mut p = up(mode, 201);
        let mut junk: Vec<Vec<u8>> = (0..Header::LEN).map(|n| vec![0x5a; n]).collect();
        let body = [0u8; 40];
        for ex in [
            ExchangeType::INFORMATIONAL,
            ExchangeType::QUICK,
            ExchangeType::TRANSACTION,
            ExchangeType::IDENTITY_PROTECTION,
        ] {
            let n = PayloadType::NOTIFY;
            // Header length below the header, beyond the datagram, one off, huge.
            for len in [0, 27, 67, 69, u32::MAX] {
                junk.push(live(&p, ex, n, 0, 7, &body, Some(len)));
                junk.push(live(&p, ex, n, 1, 7, &body, Some(len)));
            }
            // A zero-length payload, one shorter than its header, one overrunning.
            junk.push(live(&p, ex, n, 0, 7, &[0, 0, 0, 0], None));
            junk.push(live(&p, ex, n, 0, 7, &[0, 0, 0, 2, 9, 9], None));
            junk.push(live(&p, ex, n, 0, 7, &[0, 0, 0xff, 0xff, 1, 2, 3, 4], None));
            // A chain announcing more payloads than there are.
            junk.push(live(&p, ex, n, 0, 7, &[11, 0, 0, 4], None));
            // 300 payloads chained.
            let mut chain = Vec::new();
            for k in 0..300 {
                let next = if k == 299 { 0 } else { 13 };
                chain.extend_from_slice(&[next, 0, 0, 8, 1, 2, 3, 4]);
            }
            junk.push(live(&p, ex, PayloadType::VENDOR_ID, 0, 7, &chain, None));
            // "Encrypted" bodies of every awkward size.
            for size in [0, 1, 15, 16, 17, 1000] {
                junk.push(live(
                    &p,
                    ex,
                    PayloadType::HASH,
                    1,
                    9,
                    &vec![0x42; size],
                    None,
                ));
            }
        }
        throw_at_both(&mut p, &junk);
        let reports = drop_reports(&p.i_events);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].count, 1);
        still_works(&mut p);
        // The rest of the minute's junk comes in one line at its end.
        p.drive_for(Duration::from_secs(61));
        let reports = drop_reports(&p.i_events);
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert!(reports[1].count as usize >= junk.len() - 1, "{reports:?}");
        assert!(reports[1].to_string().starts_with("ike: dropped "));
        assert!(p.i.is_established() && p.r.is_established());
    }
}

#[test]
fn an_ikev2_header_is_dropped_and_named() {
    let mut p = up(ExchangeMode::Main, 202);
    let mut d = live(
        &p,
        ExchangeType(34),
        PayloadType(33),
        0x08,
        0,
        &[0; 36],
        None,
    );
    d[17] = 0x20; // version 2.0
    throw_at_both(&mut p, &[d]);
    let r = drop_reports(&p.i_events);
    assert_eq!(r.len(), 1);
    assert!(r[0].last.contains("version 2.0"), "{}", r[0]);
    still_works(&mut p);
}

/// The initiator's first message of a pair that has not run yet, and the pair.
fn first_message(mode: ExchangeMode, seed: u64) -> (Pair, Vec<u8>) {
    let (i, r) = configs(mode);
    let mut p = Pair::new(i, r, seed);
    let mut m1 = None;
    while let Some(t) = p.i.poll_transmit() {
        m1 = Some(t.data);
    }
    let m1 = m1.unwrap();
    // Put it back on the wire for the genuine exchange later.
    p.wire.push_back((p.now, true, false, m1.clone()));
    (p, m1)
}

fn with_payloads(m: &[u8], f: impl FnOnce(&mut Vec<Payload>)) -> Vec<u8> {
    let mut msg = Message::decode(m).unwrap();
    f(&mut msg.payloads);
    msg.encode()
}

fn with_cookie(mut d: Vec<u8>, c: u8) -> Vec<u8> {
    d[..8].copy_from_slice(&[c; 8]);
    d
}

/// The SA payload an initiator offering only `proposal` sends.
fn sa_offered_for(mode: ExchangeMode, proposal: &str) -> SaPayload {
    let (mut i, _) = configs(mode);
    i.ike_proposals = vec![ike(proposal)];
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut e = Ike::initiate(i, addr(2), addr(1), now, Box::new(test_rng(1))).unwrap();
    let mut m = Message::decode(&e.poll_transmit().unwrap().data).unwrap();
    sa_of(&mut m.payloads).clone()
}

fn sa_of(payloads: &mut [Payload]) -> &mut SaPayload {
    payloads
        .iter_mut()
        .find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
        .unwrap()
}

/// Every datagram the responder sends in answer: none larger than 3x the request.
fn answers_not_amplified(p: &mut Pair, request: &[u8]) -> usize {
    let mut n = 0;
    while let Some(t) = p.r.poll_transmit() {
        assert!(
            t.data.len() <= 3 * request.len(),
            "{} bytes in answer to {}",
            t.data.len(),
            request.len()
        );
        n += 1;
    }
    n
}

#[test]
fn hostile_first_messages_do_not_stop_the_responder() {
    for (n, mode) in [ExchangeMode::Main, ExchangeMode::Aggressive]
        .into_iter()
        .enumerate()
    {
        let (mut p, m1) = first_message(mode, 210 + n as u64);
        let mut hostile = Vec::new();
        // An SA with no proposals.
        hostile.push(with_payloads(&m1, |ps| sa_of(ps).proposals.clear()));
        // Hundreds of transforms, hundreds of proposals.
        hostile.push(with_payloads(&m1, |ps| {
            let p0 = &mut sa_of(ps).proposals[0];
            let t = p0.transforms[0].clone();
            p0.transforms = (0..255)
                .map(|k| Transform {
                    number: k as u8,
                    ..t.clone()
                })
                .collect();
        }));
        hostile.push(with_payloads(&m1, |ps| {
            let sa = sa_of(ps);
            let p0 = sa.proposals[0].clone();
            sa.proposals = (0..200)
                .map(|k| Proposal {
                    number: k as u8,
                    ..p0.clone()
                })
                .collect();
        }));
        // Auth method 0, an unknown DH group, both in every transform.
        for (kind, value) in [
            (attr::AUTHENTICATION_METHOD, 0u16),
            (attr::GROUP_DESCRIPTION, 99),
        ] {
            hostile.push(with_payloads(&m1, |ps| {
                for t in &mut sa_of(ps).proposals[0].transforms {
                    for a in &mut t.attributes {
                        if a.kind == kind {
                            a.value = AttrValue::Basic(value);
                        }
                    }
                }
            }));
        }
        // Only unacceptable proposals, with the genuine initiator's cookie (reused
        // below by the genuine message 1).
        let weak_sa = sa_offered_for(mode, "3des-md5-modp768");
        let weak = with_payloads(&m1, |ps| *sa_of(ps) = weak_sa);
        // An attribute TLV overrunning its transform: patch the length of the first
        // variable-length attribute written, or make the first basic one variable.
        let mut overrun = m1.clone();
        let sa_at = Header::LEN; // the SA is the first payload of our message 1
        // generic(4) doi(4) sit(4) proposal hdr(4) num/proto/spisize/count(4) transform hdr(4) num/id/res(4)
        let first_attr = sa_at + 4 + 8 + 8 + 8;
        overrun[first_attr] &= 0x7f; // TLV...
        overrun[first_attr + 2] = 0xff; // ...of 65535 bytes
        overrun[first_attr + 3] = 0xff;
        hostile.push(overrun);
        // Nonces of 0 and 1000 bytes; IDs of FQDN type with NULs (aggressive).
        for size in [0, 1000] {
            hostile.push(with_payloads(&m1, |ps| {
                for p in ps.iter_mut() {
                    if let Payload::Nonce(nn) = p {
                        *nn = vec![7; size];
                    }
                }
            }));
        }
        hostile.push(with_payloads(&m1, |ps| {
            for p in ps.iter_mut() {
                if let Payload::Id(id) = p {
                    *id = IdPayload {
                        id_type: IdType::FQDN,
                        protocol: 0,
                        port: 0,
                        data: b"client\0.evil\0".to_vec(),
                    };
                }
            }
        }));
        let before = p.r.counters().dropped;
        for (k, d) in hostile.iter().enumerate() {
            let d = with_cookie(d.clone(), 0x80 + k as u8);
            to_gateway_raw(&mut p, &d);
            assert!(!p.r.is_dead(), "{mode:?} #{k}: {:?}", p.r_events);
            answers_not_amplified(&mut p, &d);
        }
        to_gateway_raw(&mut p, &weak);
        assert!(!p.r.is_dead() && p.r.phase1.expects_first_message());
        assert!(answers_not_amplified(&mut p, &weak) <= 1);
        assert!(p.r.counters().dropped > before);
        assert!(!ended(&p.r_events), "{mode:?}: {:?}", p.r_events);
        // The genuine initiator, with the cookie the weak offer used, gets through.
        p.drive();
        assert_matching(&p);
        still_works(&mut p);
    }
}

/// Delivers to the responder without collecting (the test reads its answers).
fn to_gateway_raw(p: &mut Pair, d: &[u8]) {
    p.r.handle_datagram(p.now, addr(1), addr(2), d);
    while let Some(e) = p.r.poll_event() {
        p.r_events.push(e);
    }
}

/// Runs main mode by hand up to the initiator's message 3 (KE, Ni) and returns it;
/// the responder is waiting for it.
fn main_mode_until_message_3(p: &mut Pair) -> Vec<u8> {
    let m1 = p.i.poll_transmit().unwrap().data;
    to_gateway_raw(p, &m1);
    let m2 = p.r.poll_transmit().unwrap().data;
    p.i.handle_datagram(p.now, addr(2), addr(1), &m2);
    p.i.poll_transmit().unwrap().data
}

fn with_ke(m: &[u8], ke: &[u8]) -> Vec<u8> {
    with_payloads(m, |ps| {
        for p in ps.iter_mut() {
            if let Payload::Ke(k) = p {
                *k = ke.to_vec();
            }
        }
    })
}

fn group_name(g: crate::algs::DhGroup) -> &'static str {
    g.name()
}

/// KE values a peer must not get away with: empty, zero, one, p - 1, p, all ones,
/// oversized (MODP); empty, zero, off the curve, oversized (ECP).
fn bad_public_values(g: crate::algs::DhGroup) -> Vec<(&'static str, Vec<u8>)> {
    let len = g.public_len();
    let mut v = vec![
        ("empty", Vec::new()),
        ("zero", vec![0; len]),
        ("oversized", vec![1; len + 1]),
        ("truncated", vec![1; len - 1]),
    ];
    if let Some(prime) = crate::crypto::modp_prime_for_test(g) {
        let mut one = vec![0; len];
        one[len - 1] = 1;
        let mut p_minus_1 = prime.to_vec();
        *p_minus_1.last_mut().unwrap() -= 1;
        v.push(("one", one));
        v.push(("p-1", p_minus_1));
        v.push(("p", prime.to_vec()));
        v.push(("all ones", vec![0xff; len]));
    } else {
        v.push(("off the curve", vec![1; len]));
        let mut g_off = crate::crypto::DhKeyPair::generate(g, &mut test_rng(5))
            .public()
            .to_vec();
        *g_off.last_mut().unwrap() ^= 1; // y changed: not on the curve
        v.push(("off the curve (y flipped)", g_off));
    }
    v
}

fn failed_with(events: &[Event]) -> Option<Error> {
    events.iter().find_map(|e| match e {
        Event::Failed(e) => Some(e.clone()),
        _ => None,
    })
}

#[test]
fn bad_key_exchange_values_are_refused_in_every_group_both_roles() {
    use crate::algs::DhGroup::*;
    for (n, g) in [
        Modp768, Modp1024, Modp1536, Modp2048, Modp3072, Modp4096, Modp6144, Modp8192, Ecp256,
        Ecp384, Ecp521,
    ]
    .into_iter()
    .enumerate()
    {
        let proposal = ike(&format!("aes128-sha256-{}", group_name(g)));
        for (what, value) in bad_public_values(g) {
            let seed = 300 + n as u64;
            // Responder: message 3 with the bad value.
            let (mut i, mut r) = configs(ExchangeMode::Main);
            i.ike_proposals = vec![proposal];
            r.ike_proposals = vec![proposal];
            let mut p = Pair::new(i.clone(), r.clone(), seed);
            let m3 = main_mode_until_message_3(&mut p);
            to_gateway_raw(&mut p, &with_ke(&m3, &value));
            let e = failed_with(&p.r_events);
            assert!(
                matches!(&e, Some(Error::Malformed(s)) if s.contains("key exchange value")),
                "{g:?} {what}: {e:?}"
            );
            assert!(p.r.ctx.keys().is_none(), "{g:?} {what}: keys derived");
            // Initiator: message 4 with the bad value.
            let mut p = Pair::new(i, r, seed);
            let m3 = main_mode_until_message_3(&mut p);
            to_gateway_raw(&mut p, &m3);
            let m4 = p.r.poll_transmit().unwrap().data;
            p.i.handle_datagram(p.now, addr(2), addr(1), &with_ke(&m4, &value));
            p.collect();
            let e = failed_with(&p.i_events);
            assert!(
                matches!(&e, Some(Error::Malformed(s)) if s.contains("key exchange value")),
                "{g:?} {what}: {e:?}"
            );
            assert!(p.i.ctx.keys().is_none(), "{g:?} {what}: keys derived");
        }
    }
    // Aggressive mode: the bad value in message 1 is refused and the responder
    // waits for the next initiator.
    for (what, value) in bad_public_values(crate::algs::DhGroup::Modp2048) {
        let (mut p, m1) = first_message(ExchangeMode::Aggressive, 320);
        let bad = with_cookie(with_ke(&m1, &value), 0x99);
        to_gateway_raw(&mut p, &bad);
        assert!(p.r.phase1.expects_first_message(), "{what}");
        assert!(p.r.ctx.keys().is_none(), "{what}: keys derived");
        assert!(answers_not_amplified(&mut p, &bad) <= 1);
        p.drive();
        assert_matching(&p);
    }
}

#[test]
fn phase1_nonces_of_0_and_1000_bytes_are_refused() {
    for size in [0usize, 1, 7, 257, 1000] {
        let mut p = Pair::new(
            configs(ExchangeMode::Main).0,
            configs(ExchangeMode::Main).1,
            330,
        );
        let m3 = main_mode_until_message_3(&mut p);
        let bad = with_payloads(&m3, |ps| {
            for p in ps.iter_mut() {
                if let Payload::Nonce(nn) = p {
                    *nn = vec![7; size];
                }
            }
        });
        to_gateway_raw(&mut p, &bad);
        let e = failed_with(&p.r_events);
        assert!(
            matches!(&e, Some(Error::Malformed(s)) if s.contains("nonce")),
            "{size}: {e:?}"
        );
        assert!(p.r.ctx.keys().is_none());
    }
}

/// A quick mode request the gateway starts (a rekey), decrypted: its message id
/// and payloads after the HASH. The gateway's exchange is left pending.
fn gateway_quick_request(p: &mut Pair) -> Vec<Payload> {
    let spi = p.r.children()[0].spi_in;
    assert!(p.r.rekey(p.now, spi));
    let d = p.r.poll_transmit().unwrap().data;
    let h = Header::decode(&d).unwrap();
    let iv = p.i.ctx.exchange_iv(h.message_id);
    let o = p.i.ctx.open(&h, &d, &iv).unwrap();
    o.payloads[1..].iter().map(|d| d.payload.clone()).collect()
}

fn sealed_by_gateway(p: &Pair, ex: ExchangeType, mid: u32, payloads: &[Payload]) -> Vec<u8> {
    let (first, body) = codec::encode_payloads(payloads);
    p.r.seal_as_peer(ex, mid, first, &body).unwrap()
}

fn phase2_failures(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Phase2Failed(_)))
        .count()
}

#[test]
fn quick_mode_nonces_and_fqdn_ids_with_nuls_are_refused_phase1_stays() {
    let mut p = up(ExchangeMode::Main, 340);
    let genuine = gateway_quick_request(&mut p);
    let mut cases: Vec<(&str, Vec<Payload>)> = Vec::new();
    for size in [0usize, 1, 7, 257, 1000] {
        let mut ps = genuine.clone();
        for q in ps.iter_mut() {
            if let Payload::Nonce(nn) = q {
                *nn = vec![9; size];
            }
        }
        cases.push(("nonce", ps));
    }
    let mut ps = genuine.clone();
    for q in ps.iter_mut() {
        if let Payload::Id(id) = q {
            *id = IdPayload {
                id_type: IdType::FQDN,
                protocol: 0,
                port: 0,
                data: b"gw\0\0.example\0".to_vec(),
            };
        }
    }
    cases.push(("fqdn id", ps));
    // An SA of no proposals, and one with an unknown transform.
    let mut ps = genuine.clone();
    sa_of(&mut ps).proposals.clear();
    cases.push(("empty SA", ps));
    for (k, (what, ps)) in cases.iter().enumerate() {
        let before = (phase2_failures(&p.i_events), p.i.counters().dropped);
        let d = sealed_by_gateway(&p, ExchangeType::QUICK, 0x4000 + k as u32, ps);
        to_client(&mut p, &d);
        // Refused with a reason (a failed quick mode) or dropped (counted).
        let after = (phase2_failures(&p.i_events), p.i.counters().dropped);
        assert!(
            after.0 == before.0 + 1 || after.1 == before.1 + 1,
            "{what}: {:?}",
            p.i_events
        );
        assert!(p.i.is_established(), "{what}");
    }
    assert!(p.i.children().len() == 1);
    // The gateway's own rekey was left pending: it gives up on it; all still works.
    p.drive_for(Duration::from_secs(60));
    still_works(&mut p);
}

/// Datagrams seen on the wire: (to the responder, bytes).
type Captured = Vec<(bool, Vec<u8>)>;

#[test]
fn replayed_and_out_of_order_messages_change_nothing() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (i, r) = configs(mode);
        let mut p = Pair::new(i, r, 350);
        let seen: Rc<RefCell<Captured>> = Rc::default();
        let s = seen.clone();
        p.filter = Box::new(move |to_r, _, d| {
            s.borrow_mut().push((to_r, d.to_vec()));
            true
        });
        p.drive();
        assert_matching(&p);
        let seen = seen.borrow().clone();
        assert!(seen.len() >= 4);
        let spis = (p.i.children()[0].spi_in, p.r.children()[0].spi_in);
        // Every message again, in order and backwards.
        for round in 0..2 {
            let order: Vec<&(bool, Vec<u8>)> = if round == 0 {
                seen.iter().collect()
            } else {
                seen.iter().rev().collect()
            };
            for (to_r, d) in order {
                if *to_r {
                    to_gateway(&mut p, d);
                } else {
                    to_client(&mut p, d);
                }
            }
        }
        p.drive_for(Duration::from_secs(5));
        assert_eq!(p.i.children()[0].spi_in, spis.0);
        assert_eq!(p.r.children()[0].spi_in, spis.1);
        assert_eq!(p.children_i().len(), 1, "a replay made a new SA");
        assert_eq!(p.children_r().len(), 1, "a replay made a new SA");
        // Out of order at fresh engines: later messages before the first.
        let (i, r) = configs(mode);
        let mut fresh_r = Ike::respond(r, addr(1), addr(2), Box::new(test_rng(351)));
        let mut fresh_i =
            Ike::initiate(i, addr(2), addr(1), p.now, Box::new(test_rng(352))).unwrap();
        while fresh_i.poll_transmit().is_some() {}
        for (to_r, d) in seen.iter().skip(1) {
            if *to_r {
                fresh_r.handle_datagram(p.now, addr(1), addr(2), d);
            } else {
                fresh_i.handle_datagram(p.now, addr(2), addr(1), d);
            }
        }
        assert!(!fresh_r.is_established() && !fresh_i.is_established());
        assert!(fresh_r.phase1.expects_first_message());
        still_works(&mut p);
    }
}

#[test]
fn unauthenticated_dpd_delete_and_notifies_with_the_live_cookies() {
    let mut p = up(ExchangeMode::Main, 360);
    let info = p.i.phase1().unwrap().clone();
    let spi: Vec<u8> = [info.initiator_cookie, info.responder_cookie].concat();
    let esp_spis = [
        p.i.children()[0].spi_in.to_be_bytes().to_vec(),
        p.i.children()[0].spi_out.to_be_bytes().to_vec(),
    ];
    let notify = |kind: NotifyType, spi: Vec<u8>, data: Vec<u8>| {
        Payload::Notify(NotifyPayload {
            doi: 1,
            protocol: ProtocolId::ISAKMP,
            spi,
            kind,
            data,
        })
    };
    let mut sets: Vec<Vec<Payload>> = vec![
        vec![Payload::Delete(DeletePayload {
            doi: 1,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![spi.clone()],
        })],
        vec![Payload::Delete(DeletePayload {
            doi: 1,
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: esp_spis.to_vec(),
        })],
        vec![notify(
            NotifyType::R_U_THERE,
            spi.clone(),
            1u32.to_be_bytes().to_vec(),
        )],
        vec![notify(
            NotifyType::R_U_THERE_ACK,
            spi.clone(),
            1u32.to_be_bytes().to_vec(),
        )],
    ];
    for kind in [
        NotifyType::AUTHENTICATION_FAILED,
        NotifyType::NO_PROPOSAL_CHOSEN,
        NotifyType::INVALID_SPI,
        NotifyType::PAYLOAD_MALFORMED,
    ] {
        sets.push(vec![notify(kind, spi.clone(), Vec::new())]);
    }
    let mut junk = Vec::new();
    for set in &sets {
        let (first, body) = codec::encode_payloads(set);
        // In the clear, with and without a HASH in front, and "encrypted" as is.
        junk.push(live(
            &p,
            ExchangeType::INFORMATIONAL,
            first,
            0,
            0,
            &body,
            None,
        ));
        junk.push(live(
            &p,
            ExchangeType::INFORMATIONAL,
            first,
            0,
            0x1234,
            &body,
            None,
        ));
        let mut hashed = Vec::new();
        Payload::Hash(vec![0; 32]).encode_with_next(first, &mut hashed);
        hashed.extend_from_slice(&body);
        junk.push(live(
            &p,
            ExchangeType::INFORMATIONAL,
            PayloadType::HASH,
            0,
            5,
            &hashed,
            None,
        ));
        let mut padded = hashed.clone();
        padded.resize(hashed.len().div_ceil(16) * 16, 0);
        junk.push(live(
            &p,
            ExchangeType::INFORMATIONAL,
            PayloadType::HASH,
            1,
            5,
            &padded,
            None,
        ));
    }
    throw_at_both(&mut p, &junk);
    assert_eq!(p.i.children().len(), 1);
    assert_eq!(p.r.children().len(), 1);
    still_works(&mut p);
}

#[test]
fn authenticated_delete_with_spi_size_0_or_a_huge_count_harms_nothing() {
    let mut p = up(ExchangeMode::Main, 370);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (proto, spi_size, count, spis) in [
        (3u8, 0u8, 65535u16, 0usize),
        (3, 0, 0, 0),
        (1, 0, 65535, 0),
        (3, 4, 65535, 1),
        (3, 4, 65535, 4000),
        (1, 16, 65535, 2),
        (3, 255, 1, 1),
    ] {
        let mut b = Vec::new();
        b.extend_from_slice(&[0, 0, 0, 0]); // generic header, length below
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&[proto, spi_size]);
        b.extend_from_slice(&count.to_be_bytes());
        b.extend(std::iter::repeat_n(
            0xab,
            usize::from(spi_size).max(1) * spis,
        ));
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        bodies.push(b);
    }
    // A valid DELETE of 4000 ESP SPIs, none of them ours.
    let many = Payload::Delete(DeletePayload {
        doi: 1,
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: (0..4000u32)
            .map(|k| (k | 0x4000_0000).to_be_bytes().to_vec())
            .collect(),
    });
    let (_, b) = codec::encode_payloads(&[many]);
    bodies.push(b);
    for (k, body) in bodies.iter().enumerate() {
        let d =
            p.r.seal_as_peer(
                ExchangeType::INFORMATIONAL,
                0x7000 + k as u32,
                PayloadType::DELETE,
                body,
            )
            .unwrap();
        to_client(&mut p, &d);
        let d =
            p.i.seal_as_peer(
                ExchangeType::INFORMATIONAL,
                0x7100 + k as u32,
                PayloadType::DELETE,
                body,
            )
            .unwrap();
        to_gateway(&mut p, &d);
        assert!(p.i.is_established() && p.r.is_established(), "#{k}");
    }
    assert_eq!(p.i.children().len(), 1);
    still_works(&mut p);
}

fn fragment(p: &Pair, id: u16, number: u8, last: bool, data: &[u8]) -> Vec<u8> {
    let f = Payload::Fragment(FragmentPayload {
        id,
        number,
        last,
        data: data.to_vec(),
    });
    let (first, body) = codec::encode_payloads(&[f]);
    live(
        p,
        ExchangeType::IDENTITY_PROTECTION,
        first,
        0,
        0,
        &body,
        None,
    )
}

#[test]
fn fragments_bounded_aged_out_and_harmless() {
    use super::super::fragment::{MAX_PENDING, REASSEMBLY_TIMEOUT};
    let mut p = up(ExchangeMode::Main, 380);
    let mut junk = Vec::new();
    // A FRAGMENT payload shorter than its fixed part (length < 8).
    for len in [4u16, 5, 7] {
        let mut body = vec![0, 0];
        body.extend_from_slice(&len.to_be_bytes());
        body.resize(usize::from(len), 1);
        junk.push(live(
            &p,
            ExchangeType::IDENTITY_PROTECTION,
            PayloadType::FRAGMENT,
            0,
            0,
            &body,
            None,
        ));
    }
    // Number 0, numbers beyond the limit, empty data.
    junk.push(fragment(&p, 1, 0, false, b"x"));
    junk.push(fragment(&p, 1, 255, true, b"x"));
    junk.push(fragment(&p, 1, 3, false, b""));
    throw_at_both(&mut p, &junk);
    // 255 fragments of one message, the last missing; duplicates; overlapping "last".
    for n in 1..=255u8 {
        let d = fragment(&p, 2, n, false, &[n; 100]);
        to_client(&mut p, &d);
        to_client(&mut p, &d);
    }
    let d = fragment(&p, 3, 2, true, b"end");
    to_client(&mut p, &d);
    let d = fragment(&p, 3, 1, true, b"another end");
    to_client(&mut p, &d);
    // 300 messages at once.
    for id in 100..400u16 {
        let d = fragment(&p, id, 1, false, &[0x33; 1000]);
        to_client(&mut p, &d);
        to_gateway(&mut p, &d);
    }
    let (held, bytes) = p.i.ctx.reassembly();
    assert!(held <= MAX_PENDING, "{held} messages held");
    assert!(bytes <= MAX_PENDING * 64 * 1024, "{bytes} bytes held");
    assert!(p.r.ctx.reassembly().0 <= MAX_PENDING);
    // Aged out by the timers alone.
    p.drive_for(REASSEMBLY_TIMEOUT + Duration::from_secs(2));
    assert_eq!(p.i.ctx.reassembly(), (0, 0));
    assert_eq!(p.r.ctx.reassembly(), (0, 0));
    // A message put together from fragments that is junk inside.
    let inner = live(
        &p,
        ExchangeType::QUICK,
        PayloadType::HASH,
        1,
        77,
        &[0x42; 64],
        None,
    );
    let (a, b) = inner.split_at(40);
    let (fa, fb) = (
        fragment(&p, 500, 1, false, a),
        fragment(&p, 500, 2, true, b),
    );
    to_client(&mut p, &fa);
    to_client(&mut p, &fb);
    still_works(&mut p);
}

#[test]
fn unauthenticated_transaction_messages_change_nothing() {
    let (i, r) = xauth_configs(ExchangeMode::Main, ModeConfigMode::Pull);
    let mut p = Pair::new(i, r, 390);
    p.drive();
    assert!(
        p.i.setup_done() && !p.children_i().is_empty(),
        "{:?}",
        p.i_events
    );
    let mode_config = p.i.mode_config().cloned();
    let mut junk = Vec::new();
    for size in [0usize, 16, 32, 1000] {
        junk.push(live(
            &p,
            ExchangeType::TRANSACTION,
            PayloadType::HASH,
            1,
            0x55,
            &vec![0x17; size],
            None,
        ));
    }
    junk.push(live(
        &p,
        ExchangeType::TRANSACTION,
        PayloadType::ATTRIBUTE,
        0,
        0x56,
        &[0, 0, 0, 8, 2, 0, 0, 0],
        None,
    ));
    throw_at_both(&mut p, &junk);
    // Authenticated but after the setup: a SET with an address, a REQUEST: nothing
    // changes what Mode Config gave.
    let attrs = Payload::Attr(codec::AttrPayload {
        cfg_type: 3,
        identifier: 1,
        attributes: vec![Attribute {
            kind: codec::cfg_attr::INTERNAL_IP4_ADDRESS,
            value: AttrValue::Variable(vec![6, 6, 6, 6]),
        }],
    });
    let d = sealed_by_gateway(&p, ExchangeType::TRANSACTION, 0x57, &[attrs]);
    to_client(&mut p, &d);
    assert_eq!(p.i.mode_config().cloned(), mode_config);
    assert!(p.i.is_established());
    assert!(!ended(&p.i_events));
}

#[test]
fn a_flood_of_first_messages_holds_one_half_open_sa_and_is_not_amplified() {
    for mode in [ExchangeMode::Main, ExchangeMode::Aggressive] {
        let (mut p, m1) = first_message(mode, 400);
        let mut answers = 0;
        for k in 0..1000u32 {
            let mut d = m1.clone();
            d[..4].copy_from_slice(&k.to_be_bytes());
            d[4..8].copy_from_slice(&[0xf1; 4]);
            to_gateway_raw(&mut p, &d);
            answers += answers_not_amplified(&mut p, &d);
            assert!(p.r.phase1.half_open());
        }
        assert_eq!(answers, 1000, "{mode:?}: one answer per first message");
        // Nothing of the flood is retransmitted in main mode; in aggressive mode
        // (where only the responder can repair the loss of message 3) only the
        // last answer is, within the retransmission budget.
        let mut resent = 0;
        for _ in 0..40 {
            p.now += Duration::from_secs(1);
            p.r.handle_timeout(p.now);
            while p.r.poll_transmit().is_some() {
                resent += 1;
            }
        }
        let budget = match mode {
            ExchangeMode::Main => 0,
            ExchangeMode::Aggressive => RetransmitConfig::default().tries - 1,
        };
        assert!(resent <= budget, "{mode:?}: {resent} retransmissions");
        // Aged out: waiting for a first message again.
        assert!(p.r.phase1.expects_first_message(), "{mode:?}");
        assert_eq!(p.r.ctx.icookie(), [0; 8]);
        // The genuine initiator (retransmitting) gets through.
        p.drive();
        assert_matching(&p);
        still_works(&mut p);
    }
}

#[test]
fn a_flood_during_a_genuine_negotiation_is_survived_by_retransmission() {
    let (mut p, m1) = first_message(ExchangeMode::Main, 410);
    // The genuine message 1 arrives, then a flood replaces it before message 3.
    p.collect();
    let genuine = p.wire.pop_front().unwrap().3;
    to_gateway_raw(&mut p, &genuine);
    while p.r.poll_transmit().is_some() {}
    for k in 0..50u8 {
        to_gateway_raw(&mut p, &with_cookie(m1.clone(), k));
        while p.r.poll_transmit().is_some() {}
    }
    // The initiator's retransmission of message 1 starts again and completes.
    p.drive();
    assert_matching(&p);
}
