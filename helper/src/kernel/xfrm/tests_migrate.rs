//! `XFRM_MSG_MIGRATE` (MOBIKE with the kernel datapath): the bytes against the kernel's
//! ABI (`struct xfrm_userpolicy_id`, `struct xfrm_user_migrate`, `struct
//! xfrm_encap_tmpl` in `linux/xfrm.h`), the known-good vectors, and the reply parser.

use super::migrate::*;
use super::*;
use netlink_packet_core::Emitable;
use netlink_packet_xfrm::{XFRM_MSG_MIGRATE, XFRMA_ENCAP, XFRMA_MIGRATE};

fn body(msg: &XfrmMessage) -> Vec<u8> {
    let mut b = vec![0; msg.buffer_len()];
    msg.emit(&mut b);
    b
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn known_good(name: &str) -> Vec<u8> {
    include_str!("testdata/known_good.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, h) = l.split_once(' ')?;
            (n == name).then(|| hex::decode(h).unwrap())
        })
        .unwrap_or_else(|| panic!("no known-good vector {name}"))
}

/// The outbound policy 10.200.0.5/32 -> 10.77.0.0/24 moving from 192.0.2.2 ->
/// 192.0.2.1 to 192.0.2.3 -> 192.0.2.1.
fn out_move(encap: Option<(u16, u16)>) -> MigrateSpec {
    MigrateSpec {
        src: parse_ts("10.200.0.5/32").unwrap(),
        dst: parse_ts("10.77.0.0/24").unwrap(),
        dir: Dir::Out,
        old_src: ip("192.0.2.2"),
        old_dst: ip("192.0.2.1"),
        new_src: ip("192.0.2.3"),
        new_dst: ip("192.0.2.1"),
        reqid: REQID_BASE + 1,
        mode: MODE_TUNNEL,
        encap,
    }
}

/// The policy id is the one `DELPOLICY` sends (known-good bytes); then one
/// `XFRMA_MIGRATE` of `struct xfrm_user_migrate` (76 bytes: old daddr, old saddr, new
/// daddr, new saddr, proto, mode, reserved, reqid, old family, new family), then the
/// `XFRMA_ENCAP` template with the ports in network order.
#[test]
fn migrate_layout_matches_the_kernel_abi() {
    let m = out_move(Some((4500, 4501)));
    let b = body(&migrate_message(&m));
    assert_eq!(&b[..64], &known_good("delpolicy_out_v4")[..], "policy id");
    assert_eq!(b.len(), 64 + 4 + 76 + 4 + 24);
    assert_eq!(&b[64..66], &80u16.to_ne_bytes(), "attribute length");
    assert_eq!(&b[66..68], &XFRMA_MIGRATE.to_ne_bytes());
    let u = &b[68..144];
    assert_eq!(&u[0..4], &[192, 0, 2, 1], "old daddr");
    assert_eq!(&u[4..16], &[0; 12]);
    assert_eq!(&u[16..20], &[192, 0, 2, 2], "old saddr");
    assert_eq!(&u[32..36], &[192, 0, 2, 1], "new daddr");
    assert_eq!(&u[48..52], &[192, 0, 2, 3], "new saddr");
    assert_eq!(u[64], IPPROTO_ESP);
    assert_eq!(u[65], MODE_TUNNEL);
    assert_eq!(&u[66..68], &[0, 0], "reserved");
    assert_eq!(&u[68..72], &(REQID_BASE + 1).to_ne_bytes());
    assert_eq!(&u[72..74], &AF_INET.to_ne_bytes(), "old family");
    assert_eq!(&u[74..76], &AF_INET.to_ne_bytes(), "new family");
    let e = &b[144..];
    assert_eq!(&e[0..2], &28u16.to_ne_bytes());
    assert_eq!(&e[2..4], &XFRMA_ENCAP.to_ne_bytes());
    assert_eq!(&e[4..6], &2u16.to_ne_bytes(), "UDP_ENCAP_ESPINUDP");
    assert_eq!(&e[6..8], &4500u16.to_be_bytes(), "sport");
    assert_eq!(&e[8..10], &4501u16.to_be_bytes(), "dport");
    assert_eq!(&e[12..28], &[0; 16], "no original address");
    // Raw ESP: no template, the SA keeps its encapsulation.
    let raw = body(&migrate_message(&out_move(None)));
    assert_eq!(raw, b[..144]);
    // The whole request: type 0x21, REQUEST|ACK, no CREATE/EXCL.
    let req = encode(9, 0, migrate_message(&out_move(None)));
    assert_eq!(&req[4..6], &XFRM_MSG_MIGRATE.to_ne_bytes());
    assert_eq!(&req[6..8], &0x5u16.to_ne_bytes());
    assert_eq!(&req[16..], &raw[..]);
}

/// IPv6 outer addresses, the inbound direction: families 10, the addresses' 16 bytes;
/// what we encode parses back to the same message (the crate's parser, length-checked
/// first).
#[test]
fn migrate_v6_inbound_round_trips() {
    let m = MigrateSpec {
        src: parse_ts("::/0").unwrap(),
        dst: parse_ts("fd00:200::5/128").unwrap(),
        dir: Dir::In,
        old_src: ip("2001:db8::1"),
        old_dst: ip("2001:db8::2"),
        new_src: ip("2001:db8::1"),
        new_dst: ip("2001:db8:1::7"),
        reqid: REQID_BASE + 0x203,
        mode: MODE_TUNNEL,
        encap: Some((4500, 4500)),
    };
    let msg = migrate_message(&m);
    let b = body(&msg);
    assert_eq!(b[60], XFRM_POLICY_IN);
    let u = &b[68..144];
    assert_eq!(&u[0..16], &ip6("2001:db8::2"));
    assert_eq!(&u[32..48], &ip6("2001:db8:1::7"));
    assert_eq!(&u[72..74], &AF_INET6.to_ne_bytes());
    assert_eq!(&u[74..76], &AF_INET6.to_ne_bytes());
    assert_eq!(ext::parse_checked(XFRM_MSG_MIGRATE, &b).unwrap(), msg);
    for cut in 0..64 {
        assert!(ext::parse_checked(XFRM_MSG_MIGRATE, &b[..cut]).is_err());
    }
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// The moved SA's source address is read from a GETSA reply's fixed header (the
/// attributes with the keys are not parsed); a short or foreign reply gives None.
#[test]
fn sa_source_is_read_from_the_reply_header() {
    let k = EspKeys {
        encryption: Zeroizing::new(vec![1; 20]),
        integrity: Zeroizing::new(Vec::new()),
    };
    let mut sa = SaSpec {
        src: ip("192.0.2.3"),
        dst: ip("192.0.2.1"),
        spi: 0xc0ffee01,
        reqid: REQID_BASE + 3,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesGcm16 { key_bits: 128 },
        auth: None,
        keys: &k,
        encap: None,
        replay_window: 32,
        lifetime_kb: None,
        cross_family: false,
    };
    let b = body(&newsa_message(&sa).unwrap());
    assert_eq!(sa_reply_source(&b), Some(ip("192.0.2.3")));
    assert_eq!(sa_reply_source(&b[..223]), None);
    sa.src = ip("2001:db8::3");
    sa.dst = ip("2001:db8::1");
    let b6 = body(&newsa_message(&sa).unwrap());
    assert_eq!(sa_reply_source(&b6), Some(ip("2001:db8::3")));
    let mut other = b.clone();
    other[212..214].copy_from_slice(&7u16.to_ne_bytes());
    assert_eq!(sa_reply_source(&other), None, "unknown family");
}
