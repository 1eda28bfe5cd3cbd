//! IPv6 inside an IKEv2 tunnel: the configuration payload's IPv6 attributes
//! (INTERNAL_IP6_ADDRESS, INTERNAL_IP6_DNS, INTERNAL_IP6_SUBNET, RFC 7296 §3.15.1) and
//! the child's traffic selector pairs, an IPv6 pair (TS_IPV6_ADDR_RANGE) beside the
//! IPv4 one in the same CHILD_SA (one TSi and one TSr payload, each with a selector of
//! each family; the gateway narrows each family on its own).
//!
//! The first pair of a child is its `local_ts`/`remote_ts`; the others are
//! `ChildSa::more_ts`.

use std::net::{IpAddr, Ipv6Addr};

use super::codec::{CfgAttr, Payload, Selector, cfg};
use super::{Ike2, from_selector, to_selector};
use crate::ike::{ModeConfigInfo, ModeConfigMode, TrafficSelector};

/// A (local, remote) selector pair.
pub(super) type Pair = (TrafficSelector, TrafficSelector);

pub(super) fn any_v6() -> TrafficSelector {
    TrafficSelector {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    }
}

impl Ike2 {
    /// The selector pairs the first child is offered with: the IPv4 pair, then, with
    /// the configuration payload and a profile that wants IPv6 inside
    /// (`Config::request_ipv6`), our IPv6 address (any, narrowed by the gateway to the
    /// one it assigns) with the profile's first IPv6 network, or all of IPv6 when the
    /// profile names no network.
    ///
    /// With the configuration payload each pair keeps to one family: the children a
    /// profile gives are made from our outer address, so over an IPv6 gateway the first
    /// one's remote network is an IPv6 one; the IPv4 pair then takes the profile's
    /// first IPv4 network (all of IPv4 when it names none), and is left out when the
    /// profile names IPv6 networks only.
    pub(super) fn offered_pairs(&self) -> Vec<Pair> {
        let (local, remote) = self.offered_ts();
        let v6 = self.offered_v6();
        let mut pairs = Vec::with_capacity(2);
        if local.addr.is_ipv4() == remote.addr.is_ipv4() {
            pairs.push((local, remote));
        } else {
            let named = &self.config.remote_networks;
            match named.iter().find(|n| n.addr.is_ipv4()) {
                Some(n) => pairs.push((local, *n)),
                None if named.is_empty() => pairs.push((local, super::any_v4())),
                None if v6.is_none() => pairs.push((local, remote)),
                None => {}
            }
        }
        pairs.extend(v6);
        pairs
    }

    fn offered_v6(&self) -> Option<Pair> {
        if self.config.mode_config == ModeConfigMode::Off || !self.config.request_ipv6 {
            return None;
        }
        let named = &self.config.remote_networks;
        let remote = match named.iter().find(|n| n.addr.is_ipv6()) {
            Some(n) => *n,
            None if named.is_empty() => any_v6(),
            None => return None,
        };
        Some((any_v6(), remote))
    }

    /// The IPv6 attributes of our CFG_REQUEST (empty values: "give me one").
    pub(super) fn cp_request_v6(&self) -> Vec<CfgAttr> {
        if !self.config.request_ipv6 {
            return Vec::new();
        }
        [
            cfg::INTERNAL_IP6_ADDRESS,
            cfg::INTERNAL_IP6_DNS,
            cfg::INTERNAL_IP6_SUBNET,
        ]
        .into_iter()
        .map(|kind| CfgAttr {
            kind,
            value: Vec::new(),
        })
        .collect()
    }
}

/// The TSi and TSr payloads for `pairs` (ours first when we start the exchange:
/// `we_are_initiator`; else the peer's side is TSi).
pub(super) fn ts_payloads(pairs: &[Pair], we_are_initiator: bool) -> [Payload; 2] {
    let locals = pairs.iter().map(|(l, _)| to_selector(l)).collect();
    let remotes = pairs.iter().map(|(_, r)| to_selector(r)).collect();
    let (tsi, tsr) = if we_are_initiator {
        (locals, remotes)
    } else {
        (remotes, locals)
    };
    [
        Payload::Ts {
            initiator: true,
            selectors: tsi,
        },
        Payload::Ts {
            initiator: false,
            selectors: tsr,
        },
    ]
}

/// The gateway's answer to `offered` (initiator): for each offered pair, the first
/// selector of each list inside it, the pair left out when either side has none (the
/// gateway refused that family). The first pair found comes first.
pub(super) fn pick_pairs(local: &[Selector], remote: &[Selector], offered: &[Pair]) -> Vec<Pair> {
    let pick = |list: &[Selector], within: &TrafficSelector| {
        list.iter()
            .filter_map(from_selector)
            .find(|t| within.contains(t))
    };
    offered
        .iter()
        .filter_map(|(l, r)| Some((pick(local, l)?, pick(remote, r)?)))
        .filter(|(l, r)| l.addr.is_ipv4() == r.addr.is_ipv4())
        .collect()
}

/// How many selectors of `list` no pair uses (for a note: only one network per family
/// is negotiated).
pub(super) fn unused(list: &[Selector], used: &[TrafficSelector]) -> usize {
    list.len().saturating_sub(
        list.iter()
            .filter_map(from_selector)
            .filter(|t| used.contains(t))
            .count(),
    )
}

/// An INTERNAL_IP6_ADDRESS or INTERNAL_IP6_SUBNET value: 16 octets of address and a
/// prefix length (17 octets, §3.15.1); anything else, or a prefix above 128, is `None`.
pub(super) fn ip6_with_prefix(value: &[u8]) -> Option<(Ipv6Addr, u8)> {
    let (addr, prefix) = match value {
        [a @ .., p] if a.len() == 16 => (a, *p),
        _ => return None,
    };
    let addr = <[u8; 16]>::try_from(addr).ok()?;
    (prefix <= 128).then(|| (Ipv6Addr::from(addr), prefix))
}

/// The IPv6 attributes of a CFG_REPLY into `mc` (the address, DNS, split subnets).
pub(super) fn mode_config_v6(attr: &CfgAttr, mc: &mut ModeConfigInfo) {
    match attr.kind {
        cfg::INTERNAL_IP6_ADDRESS => {
            // The first one: the child's IPv6 selector is narrowed to one address.
            if mc.address6.is_none()
                && let Some((a, p)) = ip6_with_prefix(&attr.value)
                && !a.is_unspecified()
            {
                mc.address6 = Some((a, p));
            }
        }
        cfg::INTERNAL_IP6_DNS => {
            if let Ok(b) = <[u8; 16]>::try_from(attr.value.as_slice()) {
                mc.dns.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
        }
        cfg::INTERNAL_IP6_SUBNET => {
            if let Some((a, p)) = ip6_with_prefix(&attr.value) {
                let m = if p == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(p))
                };
                mc.split_include.push(TrafficSelector {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & m)),
                    prefix: p,
                });
            }
        }
        _ => {}
    }
}

/// The IPv6 attributes of a CFG_REPLY (our responder, for tests): the address with its
/// prefix, the DNS servers, the split subnets.
pub(super) fn cp_reply_v6(mc: &ModeConfigInfo, v: &mut Vec<CfgAttr>) {
    if let Some((a, p)) = mc.address6 {
        let mut value = a.octets().to_vec();
        value.push(p);
        v.push(CfgAttr {
            kind: cfg::INTERNAL_IP6_ADDRESS,
            value,
        });
    }
    for d in &mc.dns {
        if let IpAddr::V6(a) = d {
            v.push(CfgAttr {
                kind: cfg::INTERNAL_IP6_DNS,
                value: a.octets().to_vec(),
            });
        }
    }
    for s in &mc.split_include {
        if let IpAddr::V6(a) = s.addr {
            let mut value = a.octets().to_vec();
            value.push(s.prefix.min(128));
            v.push(CfgAttr {
                kind: cfg::INTERNAL_IP6_SUBNET,
                value,
            });
        }
    }
}

/// Responder: the IPv6 pair of the initiator's request, when it offers one and we have
/// an IPv6 side: its side narrowed to the address we assigned (or to what our config
/// allows), ours to our IPv6 network. `None`: no IPv6 in this child.
pub(super) fn responder_v6(
    tsi: &[Selector],
    tsr: &[Selector],
    vip6: Option<Ipv6Addr>,
    ours: Option<TrafficSelector>,
    theirs_allowed: Option<TrafficSelector>,
) -> Option<Pair> {
    let narrow = |list: &[Selector], within: &TrafficSelector| {
        list.iter().filter_map(from_selector).find_map(|t| {
            if within.contains(&t) {
                Some(t)
            } else if t.contains(within) {
                Some(*within)
            } else {
                None
            }
        })
    };
    let ours = ours.filter(|t| t.addr.is_ipv6())?;
    let theirs = match vip6 {
        Some(a) => TrafficSelector::host(IpAddr::V6(a)),
        None => theirs_allowed.filter(|t| t.addr.is_ipv6())?,
    };
    Some((narrow(tsr, &ours)?, narrow(tsi, &theirs)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip6_address_attribute_is_17_octets_with_a_prefix_up_to_128() {
        let mut v = "fd01::5".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        v.push(120);
        assert_eq!(ip6_with_prefix(&v), Some(("fd01::5".parse().unwrap(), 120)));
        assert_eq!(ip6_with_prefix(&v[..16]), None, "no prefix octet");
        let mut long = v.clone();
        long.push(0);
        assert_eq!(ip6_with_prefix(&long), None, "18 octets");
        v[16] = 129;
        assert_eq!(ip6_with_prefix(&v), None, "prefix above 128");
        assert_eq!(ip6_with_prefix(&[]), None);
    }

    #[test]
    fn reply_attributes_fill_address_dns_and_subnets() {
        let mut mc = ModeConfigInfo::default();
        let addr = |s: &str, p: Option<u8>| {
            let mut v = s.parse::<Ipv6Addr>().unwrap().octets().to_vec();
            v.extend(p);
            v
        };
        for (kind, value) in [
            (cfg::INTERNAL_IP6_ADDRESS, addr("fd01::2", Some(120))),
            (cfg::INTERNAL_IP6_ADDRESS, addr("fd01::3", Some(120))),
            (cfg::INTERNAL_IP6_DNS, addr("fd00:77::53", None)),
            (cfg::INTERNAL_IP6_DNS, vec![1, 2, 3]),
            (cfg::INTERNAL_IP6_SUBNET, addr("fd00:77::1", Some(64))),
            (cfg::INTERNAL_IP6_SUBNET, addr("fd00:78::", Some(200))),
        ] {
            mode_config_v6(&CfgAttr { kind, value }, &mut mc);
        }
        assert_eq!(mc.address6, Some(("fd01::2".parse().unwrap(), 120)));
        assert_eq!(mc.dns, vec!["fd00:77::53".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            mc.split_include,
            vec![TrafficSelector {
                addr: "fd00:77::".parse().unwrap(),
                prefix: 64
            }]
        );
        // What our responder sends reads back the same.
        let mut attrs = Vec::new();
        cp_reply_v6(&mc, &mut attrs);
        let mut again = ModeConfigInfo::default();
        for a in &attrs {
            mode_config_v6(a, &mut again);
        }
        assert_eq!(again, mc);
    }

    #[test]
    fn pairs_are_picked_per_family_and_a_refused_family_is_left_out() {
        let ts = |s: &str| {
            let (a, p) = s.split_once('/').unwrap();
            TrafficSelector {
                addr: a.parse().unwrap(),
                prefix: p.parse().unwrap(),
            }
        };
        let offered = [
            (ts("0.0.0.0/0"), ts("10.77.0.0/24")),
            (any_v6(), ts("::/0")),
        ];
        let sel = |s: &[&str]| s.iter().map(|x| to_selector(&ts(x))).collect::<Vec<_>>();
        let both = pick_pairs(
            &sel(&["10.3.0.1/32", "fd01::1/128"]),
            &sel(&["10.77.0.0/24", "fd00:77::/64"]),
            &offered,
        );
        assert_eq!(
            both,
            vec![
                (ts("10.3.0.1/32"), ts("10.77.0.0/24")),
                (ts("fd01::1/128"), ts("fd00:77::/64"))
            ]
        );
        // IPv4 only: the gateway has no IPv6 for us.
        let v4 = pick_pairs(&sel(&["10.3.0.1/32"]), &sel(&["10.77.0.0/24"]), &offered);
        assert_eq!(v4, vec![(ts("10.3.0.1/32"), ts("10.77.0.0/24"))]);
        // An IPv6 TSi without an IPv6 TSr is no pair.
        let half = pick_pairs(
            &sel(&["10.3.0.1/32", "fd01::1/128"]),
            &sel(&["10.77.0.0/24"]),
            &offered,
        );
        assert_eq!(half.len(), 1);
        // Outside what we offered: nothing.
        assert!(pick_pairs(&sel(&["10.3.0.1/32"]), &sel(&["10.78.0.0/24"]), &offered).is_empty());
    }
}
