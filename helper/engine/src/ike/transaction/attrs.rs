//! Transaction attributes: XAuth fields, and Mode Config requests, replies and
//! the attributes a gateway hands out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::{AttrValue, Attribute, cfg_attr};

use super::super::TrafficSelector;
use super::{ModeConfigInfo, XAuthField};

/// Strings from the gateway (banner, messages) are cut to this many characters.
const MAX_TEXT: usize = 2048;

pub(super) fn field_of(kind: u16) -> Option<XAuthField> {
    Some(match kind {
        cfg_attr::XAUTH_USER_NAME => XAuthField::UserName,
        cfg_attr::XAUTH_USER_PASSWORD => XAuthField::Password,
        cfg_attr::XAUTH_PASSCODE => XAuthField::Passcode,
        cfg_attr::XAUTH_NEXT_PIN => XAuthField::NextPin,
        cfg_attr::XAUTH_ANSWER => XAuthField::Answer,
        _ => return None,
    })
}

pub(super) fn kind_of(f: XAuthField) -> u16 {
    match f {
        XAuthField::UserName => cfg_attr::XAUTH_USER_NAME,
        XAuthField::Password => cfg_attr::XAUTH_USER_PASSWORD,
        XAuthField::Passcode => cfg_attr::XAUTH_PASSCODE,
        XAuthField::NextPin => cfg_attr::XAUTH_NEXT_PIN,
        XAuthField::Answer => cfg_attr::XAUTH_ANSWER,
    }
}

/// Printable text from the gateway: control characters dropped, bounded.
pub(crate) fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

pub(super) fn bytes(a: &Attribute) -> &[u8] {
    match &a.value {
        AttrValue::Variable(v) => v,
        AttrValue::Basic(_) => &[],
    }
}

fn mask_prefix(m: u32) -> Option<u8> {
    let p = m.leading_ones();
    (m.checked_shl(p).unwrap_or(0) == 0).then_some(p as u8)
}

/// Reads the Mode Config attributes of a REPLY or SET.
pub(crate) fn parse_mode_config(attrs: &[Attribute]) -> ModeConfigInfo {
    let mut info = ModeConfigInfo::default();
    let v4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    let nets = |b: &[u8], out: &mut Vec<TrafficSelector>| {
        // Cisco Unity: 14 bytes per network: address, mask, 6 bytes of padding.
        for e in b.chunks_exact(14) {
            let (Some(a), Some(m)) = (v4(&e[..4]), v4(&e[4..8])) else {
                continue;
            };
            if let Some(prefix) = mask_prefix(u32::from(m)) {
                let addr = Ipv4Addr::from(u32::from(a) & u32::from(m));
                out.push(TrafficSelector {
                    addr: IpAddr::V4(addr),
                    prefix,
                });
            }
        }
    };
    for a in attrs {
        let b = bytes(a);
        match a.kind {
            cfg_attr::INTERNAL_IP4_ADDRESS if info.address.is_none() => info.address = v4(b),
            cfg_attr::INTERNAL_IP4_NETMASK => info.netmask = v4(b),
            cfg_attr::INTERNAL_IP4_DNS => info.dns.extend(v4(b).map(IpAddr::V4)),
            cfg_attr::INTERNAL_IP4_NBNS => info.nbns.extend(v4(b)),
            // 17 bytes, address and prefix length (RFC 4306 style); strongSwan's IKEv1
            // sends the 16-byte address alone.
            cfg_attr::INTERNAL_IP6_ADDRESS if b.len() == 16 || b.len() == 17 => {
                if let Ok(a) = <[u8; 16]>::try_from(&b[..16]) {
                    let prefix = b.get(16).copied().unwrap_or(128).min(128);
                    info.address6 = Some((Ipv6Addr::from(a), prefix));
                }
            }
            cfg_attr::INTERNAL_IP6_DNS => {
                if let Ok(a) = <[u8; 16]>::try_from(b) {
                    info.dns.push(IpAddr::V6(Ipv6Addr::from(a)));
                }
            }
            cfg_attr::INTERNAL_IP4_SUBNET if b.len() == 8 => {
                if let (Some(ad), Some(m)) = (v4(&b[..4]), v4(&b[4..]))
                    && let Some(prefix) = mask_prefix(u32::from(m))
                {
                    let addr = Ipv4Addr::from(u32::from(ad) & u32::from(m));
                    info.split_include.push(TrafficSelector {
                        addr: IpAddr::V4(addr),
                        prefix,
                    });
                }
            }
            cfg_attr::INTERNAL_IP6_SUBNET if b.len() == 17 => {
                if let Ok(a) = <[u8; 16]>::try_from(&b[..16]) {
                    let prefix = b[16].min(128);
                    let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    info.split_include.push(TrafficSelector {
                        addr: IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(a) & m)),
                        prefix,
                    });
                }
            }
            cfg_attr::UNITY_SPLIT_INCLUDE => nets(b, &mut info.split_include),
            cfg_attr::UNITY_LOCAL_LAN => nets(b, &mut info.split_exclude),
            cfg_attr::UNITY_DEF_DOMAIN if !b.is_empty() => info.default_domain = Some(text(b)),
            cfg_attr::UNITY_SPLITDNS_NAME => info.split_dns.extend(
                text(b)
                    .split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            cfg_attr::UNITY_BANNER if !b.is_empty() => info.banner = Some(text(b)),
            cfg_attr::UNITY_SAVE_PASSWD => info.save_password = a.as_u64().unwrap_or(0) != 0,
            _ => {}
        }
    }
    info.split_include.dedup();
    info
}

/// The attributes a gateway sends for `info` (our responder side).
pub(crate) fn mode_config_attributes(info: &ModeConfigInfo) -> Vec<Attribute> {
    let mut v = Vec::new();
    if let Some(a) = info.address {
        v.push(Attribute::variable(
            cfg_attr::INTERNAL_IP4_ADDRESS,
            a.octets().to_vec(),
        ));
    }
    if let Some(m) = info.netmask {
        v.push(Attribute::variable(
            cfg_attr::INTERNAL_IP4_NETMASK,
            m.octets().to_vec(),
        ));
    }
    if let Some((a, prefix)) = info.address6 {
        let mut b = a.octets().to_vec();
        b.push(prefix);
        v.push(Attribute::variable(cfg_attr::INTERNAL_IP6_ADDRESS, b));
    }
    for t in &info.split_include {
        if let IpAddr::V6(a) = t.addr {
            let mut b = a.octets().to_vec();
            b.push(t.prefix);
            v.push(Attribute::variable(cfg_attr::INTERNAL_IP6_SUBNET, b));
        }
    }
    for d in &info.dns {
        match d {
            IpAddr::V4(a) => v.push(Attribute::variable(
                cfg_attr::INTERNAL_IP4_DNS,
                a.octets().to_vec(),
            )),
            IpAddr::V6(a) => v.push(Attribute::variable(
                cfg_attr::INTERNAL_IP6_DNS,
                a.octets().to_vec(),
            )),
        }
    }
    if info.split_include.iter().any(|t| t.addr.is_ipv4()) {
        let mut b = Vec::new();
        for t in &info.split_include {
            if let IpAddr::V4(a) = t.addr {
                let m = if t.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - t.prefix as u32)
                };
                b.extend_from_slice(&a.octets());
                b.extend_from_slice(&m.to_be_bytes());
                b.extend_from_slice(&[0; 6]);
            }
        }
        v.push(Attribute::variable(cfg_attr::UNITY_SPLIT_INCLUDE, b));
    }
    if let Some(d) = &info.default_domain {
        v.push(Attribute::variable(
            cfg_attr::UNITY_DEF_DOMAIN,
            d.as_bytes().to_vec(),
        ));
    }
    if !info.split_dns.is_empty() {
        v.push(Attribute::variable(
            cfg_attr::UNITY_SPLITDNS_NAME,
            info.split_dns.join(",").into_bytes(),
        ));
    }
    if let Some(b) = &info.banner {
        v.push(Attribute::variable(
            cfg_attr::UNITY_BANNER,
            b.as_bytes().to_vec(),
        ));
    }
    v
}

/// What a client asks for in a Mode Config REQUEST.
pub(super) fn mode_config_request(want: Option<Ipv4Addr>, ipv6: bool) -> Vec<Attribute> {
    let empty = |k| Attribute::variable(k, Vec::new());
    let address = want.map(|a| a.octets().to_vec()).unwrap_or_default();
    let mut v = vec![
        Attribute::variable(cfg_attr::INTERNAL_IP4_ADDRESS, address),
        empty(cfg_attr::INTERNAL_IP4_NETMASK),
        empty(cfg_attr::INTERNAL_IP4_DNS),
        empty(cfg_attr::INTERNAL_IP4_NBNS),
        empty(cfg_attr::INTERNAL_IP6_DNS),
        empty(cfg_attr::UNITY_BANNER),
        empty(cfg_attr::UNITY_DEF_DOMAIN),
        empty(cfg_attr::UNITY_SPLITDNS_NAME),
        empty(cfg_attr::UNITY_SPLIT_INCLUDE),
        empty(cfg_attr::UNITY_LOCAL_LAN),
        Attribute::basic(cfg_attr::UNITY_SAVE_PASSWD, 0),
        Attribute::variable(
            cfg_attr::APPLICATION_VERSION,
            format!("Postern {}", env!("CARGO_PKG_VERSION")).into_bytes(),
        ),
    ];
    if ipv6 {
        // Empty: any address (17 bytes, address and prefix length, when it has one).
        v.insert(1, empty(cfg_attr::INTERNAL_IP6_ADDRESS));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_address_and_subnets() {
        let addr: Ipv6Addr = "fd01::1".parse().unwrap();
        let with_prefix = |a: Ipv6Addr, p: u8| {
            let mut b = a.octets().to_vec();
            b.push(p);
            b
        };
        // strongSwan's IKEv1: the address alone (16 bytes) means /128.
        let info = parse_mode_config(&[Attribute::variable(
            cfg_attr::INTERNAL_IP6_ADDRESS,
            addr.octets().to_vec(),
        )]);
        assert_eq!(info.address6, Some((addr, 128)));
        let info = parse_mode_config(&[
            Attribute::variable(cfg_attr::INTERNAL_IP6_ADDRESS, with_prefix(addr, 64)),
            // Host bits are cut off; a prefix over 128 is taken as 128.
            Attribute::variable(
                cfg_attr::INTERNAL_IP6_SUBNET,
                with_prefix("fd00:77::99".parse().unwrap(), 64),
            ),
            Attribute::variable(
                cfg_attr::INTERNAL_IP6_SUBNET,
                with_prefix("fd00:78::1".parse().unwrap(), 200),
            ),
            // Wrong lengths are ignored, never a panic.
            Attribute::variable(cfg_attr::INTERNAL_IP6_SUBNET, vec![1; 5]),
            Attribute::variable(cfg_attr::INTERNAL_IP6_ADDRESS, vec![1; 15]),
        ]);
        assert_eq!(info.address6, Some((addr, 64)));
        let nets: Vec<String> = info.split_include.iter().map(|t| t.to_string()).collect();
        assert_eq!(nets, ["fd00:77::/64", "fd00:78::1/128"]);
        // Asked for only when wanted.
        let has6 = |v: &[Attribute]| v.iter().any(|a| a.kind == cfg_attr::INTERNAL_IP6_ADDRESS);
        assert!(has6(&mode_config_request(None, true)));
        assert!(!has6(&mode_config_request(None, false)));
    }
}
