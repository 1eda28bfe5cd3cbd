//! IPv6 inside an IKEv2 tunnel (inner6.rs): the client asks for an IPv6 address by the
//! configuration payload and offers an IPv6 selector pair beside the IPv4 one in the
//! same child; a gateway with IPv6 assigns one and narrows both families, a gateway
//! without leaves the child IPv4 only; rekeys of either side keep both pairs.

use super::*;

fn ts(s: &str) -> TrafficSelector {
    let (a, p) = s.split_once('/').unwrap();
    TrafficSelector {
        addr: a.parse().unwrap(),
        prefix: p.parse().unwrap(),
    }
}

/// A client that wants IPv6 inside; a gateway with an IPv6 pool address, IPv6 DNS,
/// an IPv6 split subnet and an IPv6 LAN when `gateway_v6`.
fn dual_stack(client_v6: bool, gateway_v6: bool) -> Pair {
    let (mut c, mut s) = configs(
        &["aes128-sha256-ecp256"],
        &["aes128-sha256-ecp256"],
        b"shared secret",
    );
    c.request_ipv6 = client_v6;
    if gateway_v6 {
        s.children.push(ChildConfig {
            local: Some(ts("fd00:77::/64")),
            remote: None,
        });
        let mc = s.mode_config_server.as_mut().unwrap();
        mc.address6 = Some(("fd01::5".parse().unwrap(), 120));
        mc.dns.push("fd00:77::53".parse().unwrap());
        mc.split_include = vec![ts("10.77.0.0/24"), ts("fd00:77::/64")];
    }
    Pair::new(c, s, Faults::default())
}

fn mode_config(events: &[Event]) -> &ModeConfigInfo {
    events
        .iter()
        .find_map(|e| match e {
            Event::ModeConfig(mc) => Some(mc),
            _ => None,
        })
        .expect("no ModeConfig event")
}

#[test]
fn one_child_carries_an_ipv4_and_an_ipv6_pair() {
    let mut p = dual_stack(true, true);
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    check_children_mirror(&p);
    let mc = mode_config(&p.client_events);
    assert_eq!(mc.address, Some(Ipv4Addr::new(10, 200, 0, 5)));
    assert_eq!(mc.address6, Some(("fd01::5".parse().unwrap(), 120)));
    assert_eq!(
        mc.dns,
        vec![
            "10.77.0.53".parse::<IpAddr>().unwrap(),
            "fd00:77::53".parse().unwrap()
        ]
    );
    assert_eq!(
        mc.split_include,
        vec![ts("10.77.0.0/24"), ts("fd00:77::/64")]
    );
    let c = &p.client.children()[0];
    let g = &p.gateway.children()[0];
    assert_eq!(c.more_ts, vec![(ts("fd01::5/128"), ts("fd00:77::/64"))]);
    // The gateway's side mirrors it.
    assert_eq!(g.more_ts, vec![(ts("fd00:77::/64"), ts("fd01::5/128"))]);
    assert_eq!(
        c.ts_pairs(),
        vec![
            (Some(ts("10.200.0.5/32")), ts("10.77.0.0/24")),
            (Some(ts("fd01::5/128")), ts("fd00:77::/64"))
        ]
    );
    assert!(Pair::failure(&p.client_events).is_none());
}

#[test]
fn a_gateway_without_ipv6_leaves_the_child_ipv4_only() {
    let mut p = dual_stack(true, false);
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    check_children_mirror(&p);
    assert_eq!(mode_config(&p.client_events).address6, None);
    assert!(p.client.children()[0].more_ts.is_empty());
    assert!(p.gateway.children()[0].more_ts.is_empty());
}

#[test]
fn no_ipv6_is_offered_unless_the_profile_wants_it() {
    let mut p = dual_stack(false, true);
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    // Not asked for: the gateway's responder hands out its address anyway (it is in
    // its reply), but no IPv6 selector was offered, so the child has none.
    assert!(p.client.children()[0].more_ts.is_empty());
    assert!(p.gateway.children()[0].more_ts.is_empty());
}

#[test]
fn rekeys_by_either_side_keep_both_pairs() {
    let mut p = dual_stack(true, true);
    p.drive(Duration::from_secs(5));
    assert!(p.established());
    let want = p.client.children()[0].more_ts.clone();
    assert_eq!(want.len(), 1);
    // The client's rekey.
    let old = p.client.children()[0].spi_in;
    assert!(p.client.rekey(p.now, old));
    p.drive(Duration::from_secs(5));
    check_rekeyed(&p, old);
    assert_eq!(p.client.children()[0].more_ts, want);
    assert_eq!(
        p.gateway.children()[0].more_ts,
        vec![(want[0].1, want[0].0)]
    );
    // The gateway's rekey.
    let old = p.client.children()[0].spi_in;
    let gw_old = p.gateway.children()[0].spi_in;
    assert!(p.gateway.rekey(p.now, gw_old));
    p.drive(Duration::from_secs(5));
    check_rekeyed(&p, old);
    assert_eq!(p.client.children()[0].more_ts, want);
    assert!(Pair::failure(&p.client_events).is_none());
    assert!(Pair::failure(&p.gateway_events).is_none());
}

/// Over an IPv6 gateway the profile's children are made from the IPv6 outer address
/// (their first remote network is the IPv6 one): the IPv4 pair still takes the
/// profile's IPv4 network, each pair keeps to its family.
#[test]
fn over_an_ipv6_gateway_each_pair_keeps_to_its_family() {
    let mut p = dual_stack(true, true);
    let c = &mut p.client;
    c.config.children = vec![ChildConfig {
        local: Some(ts("fd00:2::2/128")),
        remote: Some(ts("fd00:77::/64")),
    }];
    c.config.remote_networks = vec![ts("10.77.0.0/24"), ts("fd00:77::/64")];
    assert_eq!(
        c.offered_pairs(),
        vec![
            (ts("0.0.0.0/0"), ts("10.77.0.0/24")),
            (ts("::/0"), ts("fd00:77::/64"))
        ]
    );
    p.drive(Duration::from_secs(5));
    assert!(p.established(), "{:?}", p.client_events);
    let c = &p.client.children()[0];
    assert_eq!(
        c.ts_pairs(),
        vec![
            (Some(ts("10.200.0.5/32")), ts("10.77.0.0/24")),
            (Some(ts("fd01::5/128")), ts("fd00:77::/64"))
        ]
    );
}
