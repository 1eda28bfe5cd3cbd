//! Traffic selectors as quick mode ID payloads (IDci/IDcr) and back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::codec::{IdPayload, IdType};

use super::super::TrafficSelector;

/// The ID payload for a traffic selector (a host address or a subnet).
pub(crate) fn ts_to_id(ts: &TrafficSelector) -> IdPayload {
    let (id_type, data) = match (ts.addr, ts.is_host()) {
        (IpAddr::V4(a), true) => (IdType::IPV4_ADDR, a.octets().to_vec()),
        (IpAddr::V6(a), true) => (IdType::IPV6_ADDR, a.octets().to_vec()),
        (IpAddr::V4(a), false) => {
            let mask = if ts.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - ts.prefix as u32)
            };
            let mut d = a.octets().to_vec();
            d.extend_from_slice(&mask.to_be_bytes());
            (IdType::IPV4_ADDR_SUBNET, d)
        }
        (IpAddr::V6(a), false) => {
            let mask = if ts.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - ts.prefix as u32)
            };
            let mut d = a.octets().to_vec();
            d.extend_from_slice(&mask.to_be_bytes());
            (IdType::IPV6_ADDR_SUBNET, d)
        }
    };
    IdPayload {
        id_type,
        protocol: 0,
        port: 0,
        data,
    }
}

/// The traffic selector an ID payload names; `None` for types that are not
/// addresses or for masks that are not a prefix.
pub(crate) fn id_to_ts(id: &IdPayload) -> Option<TrafficSelector> {
    let d = id.data.as_slice();
    match id.id_type {
        IdType::IPV4_ADDR => {
            let a: [u8; 4] = d.try_into().ok()?;
            Some(TrafficSelector::host(IpAddr::V4(Ipv4Addr::from(a))))
        }
        IdType::IPV6_ADDR => {
            let a: [u8; 16] = d.try_into().ok()?;
            Some(TrafficSelector::host(IpAddr::V6(Ipv6Addr::from(a))))
        }
        IdType::IPV4_ADDR_SUBNET => {
            let (a, m) = (d.get(..4)?, d.get(4..)?);
            let a: [u8; 4] = a.try_into().ok()?;
            let m = u32::from_be_bytes(m.try_into().ok()?);
            let prefix = m.leading_ones();
            (m.checked_shl(prefix).unwrap_or(0) == 0).then_some(())?;
            Some(TrafficSelector {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(a) & m)),
                prefix: prefix as u8,
            })
        }
        IdType::IPV6_ADDR_SUBNET => {
            let (a, m) = (d.get(..16)?, d.get(16..)?);
            let a: [u8; 16] = a.try_into().ok()?;
            let m = u128::from_be_bytes(m.try_into().ok()?);
            let prefix = m.leading_ones();
            (m.checked_shl(prefix).unwrap_or(0) == 0).then_some(())?;
            Some(TrafficSelector {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(a) & m)),
                prefix: prefix as u8,
            })
        }
        _ => None,
    }
}
