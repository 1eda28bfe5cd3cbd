use super::*;
use netlink_packet_core::Emitable;
use netlink_packet_xfrm::{XFRMA_ALG_AEAD, XFRMA_ENCAP};

/// The body (no netlink header) the crate emits for `msg`.
fn body(msg: &XfrmMessage) -> Vec<u8> {
    let mut b = vec![0; msg.buffer_len()];
    msg.emit(&mut b);
    b
}

fn newsa_body(sa: &SaSpec<'_>) -> Vec<u8> {
    body(&newsa_message(sa).unwrap())
}

/// The known-good bytes of the hand-written encoder (testdata/known_good.txt).
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

fn keys(e: u8, el: usize, i: u8, il: usize) -> EspKeys {
    EspKeys {
        encryption: Zeroizing::new(vec![e; el]),
        integrity: Zeroizing::new(vec![i; il]),
    }
}

const V4A: &str = "192.0.2.2";
const V4B: &str = "192.0.2.1";
const V6A: &str = "2001:db8::2";
const V6B: &str = "2001:db8::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every ESP SA shape the datapath installs (each cipher family, each integrity
/// algorithm, v4 and v6, with and without ESP in UDP, byte limits and replay window)
/// encodes to exactly the bytes the hand-written encoder produced.
#[test]
fn sa_messages_are_byte_identical_to_the_known_good_encoding() {
    use EspAuth::*;
    let k1 = keys(1, 20, 0, 0);
    let k2 = keys(2, 32, 3, 64);
    let k3 = keys(4, 24, 5, 16);
    let k4 = keys(0, 0, 6, 20);
    let k5 = keys(7, 16, 8, 32);
    let k6 = keys(9, 24, 10, 48);
    let k7 = keys(11, 36, 0, 0);
    #[rustfmt::skip]
    let specs = [
        ("newsa_gcm128_v4_encap_kb", SaSpec { src: ip(V4A), dst: ip(V4B), spi: 0xc0ffee01, reqid: REQID_BASE + 3, mode: MODE_TUNNEL, cipher: EspCipher::AesGcm16 { key_bits: 128 }, auth: None, keys: &k1, encap: Some((4500, 4500)), replay_window: 32, lifetime_kb: Some(100), cross_family: false }),
        ("newsa_cbc256_sha512_v4_transport", SaSpec { src: ip(V4B), dst: ip(V4A), spi: 0x12345678, reqid: REQID_BASE + 0x1ff, mode: MODE_TRANSPORT, cipher: EspCipher::AesCbc { key_bits: 256 }, auth: Some(HmacSha512_256), keys: &k2, encap: None, replay_window: 32, lifetime_kb: None, cross_family: false }),
        ("newsa_3des_md5_v6_encap", SaSpec { src: ip(V6A), dst: ip(V6B), spi: 0x0000abcd, reqid: REQID_BASE + 0x101, mode: MODE_TUNNEL, cipher: EspCipher::TripleDes, auth: Some(HmacMd5_96), keys: &k3, encap: Some((4500, 1234)), replay_window: 0, lifetime_kb: Some(1), cross_family: false }),
        ("newsa_null_sha1_v4", SaSpec { src: ip(V4A), dst: ip(V4B), spi: 0xffffffff, reqid: REQID_BASE, mode: MODE_TUNNEL, cipher: EspCipher::Null, auth: Some(HmacSha1_96), keys: &k4, encap: None, replay_window: 32, lifetime_kb: Some(64), cross_family: false }),
        ("newsa_cbc128_sha256_v4", SaSpec { src: ip(V4A), dst: ip(V4B), spi: 0x7057fff3, reqid: REQID_BASE | 0xffff, mode: MODE_TUNNEL, cipher: EspCipher::AesCbc { key_bits: 128 }, auth: Some(HmacSha256_128), keys: &k5, encap: None, replay_window: 0, lifetime_kb: None, cross_family: false }),
        ("newsa_cbc192_sha384_v6", SaSpec { src: ip(V6B), dst: ip(V6A), spi: 0x01020304, reqid: REQID_BASE + 2, mode: MODE_TRANSPORT, cipher: EspCipher::AesCbc { key_bits: 192 }, auth: Some(HmacSha384_192), keys: &k6, encap: None, replay_window: 32, lifetime_kb: Some(u64::MAX), cross_family: false }),
        ("newsa_gcm256_v6", SaSpec { src: ip(V6B), dst: ip(V6A), spi: 0x0a0b0c0d, reqid: REQID_BASE + 4, mode: MODE_TUNNEL, cipher: EspCipher::AesGcm16 { key_bits: 256 }, auth: None, keys: &k7, encap: Some((4500, 4500)), replay_window: 32, lifetime_kb: None, cross_family: false }),
    ];
    for (name, sa) in &specs {
        assert_eq!(
            hex::encode(newsa_body(sa)),
            hex::encode(known_good(name)),
            "{name}"
        );
    }
    assert_eq!(
        body(&delsa_message(ip(V4B), 0xc0ffee01)),
        known_good("delsa_v4")
    );
    assert_eq!(body(&delsa_message(ip(V6A), 7)), known_good("delsa_v6"));
    // GETSA has the same body as DELSA.
    assert_eq!(
        body(&getsa_message(ip(V4B), 0xc0ffee01)),
        known_good("delsa_v4")
    );
}

/// An outbound tunnel policy 10.200.0.5/32 -> 10.77.0.0/24 via 192.0.2.2 -> 192.0.2.1.
fn out_policy(reqid: u32) -> PolicySpec {
    PolicySpec {
        src: parse_ts("10.200.0.5/32").unwrap(),
        dst: parse_ts("10.77.0.0/24").unwrap(),
        dir: Dir::Out,
        tmpl_src: ip(V4A),
        tmpl_dst: ip(V4B),
        reqid,
        mode: MODE_TUNNEL,
    }
}

#[test]
fn policy_messages_are_byte_identical_to_the_known_good_encoding() {
    let p = out_policy(REQID_BASE + 1);
    assert_eq!(
        body(&newpolicy_message(&p)),
        known_good("newpolicy_out_tunnel_v4")
    );
    let p6 = PolicySpec {
        src: parse_ts("2001:db8::1/128").unwrap(),
        dst: parse_ts("2001:db8::2/128").unwrap(),
        dir: Dir::In,
        tmpl_src: ip(V6B),
        tmpl_dst: ip(V6A),
        reqid: REQID_BASE + 0x203,
        mode: MODE_TRANSPORT,
    };
    assert_eq!(
        body(&newpolicy_message(&p6)),
        known_good("newpolicy_in_transport_v6")
    );
    let fwd = PolicySpec {
        src: parse_ts("0.0.0.0/0").unwrap(),
        dst: parse_ts("10.200.0.5/32").unwrap(),
        dir: Dir::Fwd,
        tmpl_src: ip(V4B),
        tmpl_dst: ip(V4A),
        reqid: REQID_BASE + 5,
        mode: MODE_TUNNEL,
    };
    assert_eq!(
        body(&newpolicy_message(&fwd)),
        known_good("newpolicy_fwd_any_v4")
    );
    assert_eq!(
        body(&delpolicy_message(p.src, p.dst, Dir::Out)),
        known_good("delpolicy_out_v4")
    );
    assert_eq!(
        body(&delpolicy_message(p6.src, p6.dst, Dir::Fwd)),
        known_good("delpolicy_fwd_v6")
    );
    assert_eq!(
        socket_bypass_policy(Dir::In, false),
        known_good("bypass_in_v4")
    );
    assert_eq!(
        socket_bypass_policy(Dir::Out, true),
        known_good("bypass_out_v6")
    );
}

/// The ABI facts the known-good bytes rest on, checked on the crate's encoding.
#[test]
fn newsa_layout_matches_the_kernel_abi() {
    let k = keys(1, 20, 0, 0);
    let sa = SaSpec {
        src: ip(V4A),
        dst: ip(V4B),
        spi: 0xc0ffee01,
        reqid: REQID_BASE + 3,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesGcm16 { key_bits: 128 },
        auth: None,
        keys: &k,
        encap: Some((4500, 4500)),
        replay_window: 32,
        lifetime_kb: Some(100),
        cross_family: false,
    };
    let b = newsa_body(&sa);
    // xfrm_id.daddr at 56, spi big-endian at 72, proto at 76; saddr at 80
    assert_eq!(&b[56..60], &[192, 0, 2, 1]);
    assert_eq!(&b[72..76], &0xc0ffee01u32.to_be_bytes());
    assert_eq!(b[76], IPPROTO_ESP);
    assert_eq!(&b[80..84], &[192, 0, 2, 2]);
    // soft/hard byte limits: 80 % and 100 % of 100 kB
    assert_eq!(&b[96..104], &(102400u64 / 10 * 8).to_ne_bytes());
    assert_eq!(&b[104..112], &102400u64.to_ne_bytes());
    assert_eq!(&b[128..136], &0u64.to_ne_bytes(), "no time limit");
    // An expire message made of this SA parses back.
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + 224 + 8) as u32).to_ne_bytes());
    msg.extend_from_slice(&XFRM_MSG_EXPIRE.to_ne_bytes());
    msg.extend_from_slice(&[0; 10]);
    msg.extend_from_slice(&b[..224]);
    msg.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        parse_events(&msg),
        vec![XfrmEvent::Expired(Expired {
            spi: 0xc0ffee01,
            hard: true
        })]
    );
    assert!(parse_events(&msg[..100]).is_empty());
    // curlft (bytes, packets) at 160 and 168: zero in a new SA; read back when set.
    assert_eq!(sa_reply_traffic(&b), Some((0, 0)));
    let mut used = b.clone();
    used[160..168].copy_from_slice(&1234u64.to_ne_bytes());
    used[168..176].copy_from_slice(&5u64.to_ne_bytes());
    assert_eq!(sa_reply_traffic(&used), Some((1234, 5)));
    assert_eq!(sa_reply_traffic(&used[..170]), None);
    assert_eq!(&b[208..212], &(REQID_BASE + 3).to_ne_bytes());
    assert_eq!(&b[212..214], &AF_INET.to_ne_bytes());
    assert_eq!(b[214], MODE_TUNNEL);
    assert_eq!(b[215], 32);
    // AEAD attribute right after the 224-byte header: 4 + 64 + 4 + 4 + 20 bytes
    assert_eq!(&b[226..228], &XFRMA_ALG_AEAD.to_ne_bytes());
    assert_eq!(u16::from_ne_bytes([b[224], b[225]]), 96);
    assert!(b[228..].starts_with(b"rfc4106(gcm(aes))\0"));
    assert_eq!(&b[292..296], &160u32.to_ne_bytes(), "key bits incl. salt");
    assert_eq!(&b[296..300], &128u32.to_ne_bytes(), "ICV bits");
    // encapsulation attribute, ports in network order
    let e = 224 + 96;
    assert_eq!(&b[e + 2..e + 4], &XFRMA_ENCAP.to_ne_bytes());
    assert_eq!(&b[e + 6..e + 8], &4500u16.to_be_bytes());
    assert_eq!(b.len() % 4, 0);
    // No integrity algorithm for a cipher that needs one: refused before any key is
    // copied.
    let bad = SaSpec {
        cipher: EspCipher::AesCbc { key_bits: 128 },
        ..sa
    };
    assert!(matches!(
        newsa_message(&bad),
        Err(KernelError::Errno { errno: 22, .. })
    ));
}

#[test]
fn policy_layout_matches_the_kernel_abi() {
    let p = out_policy(REQID_BASE + 1);
    let b = body(&newpolicy_message(&p));
    assert_eq!(&b[0..4], &[10, 77, 0, 0], "selector daddr");
    assert_eq!(&b[16..20], &[10, 200, 0, 5], "selector saddr");
    assert_eq!(b[42], 24, "prefixlen_d");
    assert_eq!(b[43], 32, "prefixlen_s");
    assert_eq!(&b[152..156], &PRIORITY.to_ne_bytes());
    assert_eq!(b[160], XFRM_POLICY_OUT);
    assert_eq!(b.len(), 168 + 4 + 64);
    let t = &b[172..];
    assert_eq!(&t[0..4], &[192, 0, 2, 1], "template daddr");
    assert_eq!(t[20], IPPROTO_ESP);
    assert_eq!(&t[28..32], &[192, 0, 2, 2], "template saddr");
    assert_eq!(&t[44..48], &(REQID_BASE + 1).to_ne_bytes());
    assert_eq!(t[48], MODE_TUNNEL);
    assert_eq!(body(&delpolicy_message(p.src, p.dst, Dir::In)).len(), 64);
    assert_eq!(body(&delsa_message(p.tmpl_dst, 7)).len(), 24);
}

/// The whole request: netlink header (length, type, REQUEST|ACK and the caller's
/// flags, sequence number, port 0) and the known-good body.
#[test]
fn requests_carry_the_netlink_header() {
    let k = keys(1, 20, 0, 0);
    let sa = SaSpec {
        src: ip(V4A),
        dst: ip(V4B),
        spi: 0xc0ffee01,
        reqid: REQID_BASE + 3,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesGcm16 { key_bits: 128 },
        auth: None,
        keys: &k,
        encap: Some((4500, 4500)),
        replay_window: 32,
        lifetime_kb: Some(100),
        cross_family: false,
    };
    let m = encode(7, NLM_F_CREATE | NLM_F_EXCL, newsa_message(&sa).unwrap());
    let want = known_good("newsa_gcm128_v4_encap_kb");
    assert_eq!(&m[0..4], &((16 + want.len()) as u32).to_ne_bytes());
    assert_eq!(&m[4..6], &XFRM_MSG_NEWSA.to_ne_bytes());
    assert_eq!(&m[6..8], &0x605u16.to_ne_bytes(), "REQUEST|ACK|EXCL|CREATE");
    assert_eq!(&m[8..12], &7u32.to_ne_bytes());
    assert_eq!(&m[12..16], &[0; 4]);
    assert_eq!(&m[16..], &want[..]);
    let d = encode(
        8,
        0,
        delpolicy_message(out_policy(0).src, out_policy(0).dst, Dir::Out),
    );
    assert_eq!(&d[4..6], &0x14u16.to_ne_bytes(), "XFRM_MSG_DELPOLICY");
    assert_eq!(&d[6..8], &0x5u16.to_ne_bytes(), "REQUEST|ACK");
}

fn acquire_msg(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&XFRM_MSG_ACQUIRE.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(body);
    m
}

/// An acquire body as the kernel builds it (xfrm_user_acquire, then the policy's
/// templates), from the policy `p`.
fn acquire_body(p: &PolicySpec) -> Vec<u8> {
    let pol = body(&newpolicy_message(p));
    let mut body = vec![0u8; 40]; // id, saddr
    body[20] = IPPROTO_ESP;
    body.extend_from_slice(&pol[..56]); // the policy's selector
    body.extend_from_slice(&pol[..168]);
    body.extend_from_slice(&[0; 16]); // aalgos, ealgos, calgos, seq
    body.extend_from_slice(&pol[168..]); // XFRMA_TMPL
    body
}

/// The template's reqid comes out; cut short or of another protocol, nothing does.
#[test]
fn acquire_gives_the_template_reqid() {
    const USER_ACQUIRE_LEN: usize = netlink_packet_xfrm::XFRM_USER_ACQUIRE_LEN;
    let body = acquire_body(&out_policy(REQID_BASE + 7));
    assert_eq!(
        parse_events(&acquire_msg(&body)),
        vec![XfrmEvent::Acquire {
            reqid: REQID_BASE + 7,
            remote: parse_ts("10.77.0.0/24"),
        }]
    );
    // Two in one datagram.
    let two = [acquire_msg(&body), acquire_msg(&body)].concat();
    assert_eq!(parse_events(&two).len(), 2);
    // No template, a template cut short, another protocol, a lying length.
    assert!(parse_events(&acquire_msg(&body[..USER_ACQUIRE_LEN])).is_empty());
    assert!(parse_events(&acquire_msg(&body[..USER_ACQUIRE_LEN + 40])).is_empty());
    let mut ah = body.clone();
    ah[20] = 51;
    assert!(parse_events(&acquire_msg(&ah)).is_empty());
    let mut lying = acquire_msg(&body);
    lying[0..4].copy_from_slice(&9999u32.to_ne_bytes());
    assert!(parse_events(&lying).is_empty());
    for cut in 0..acquire_msg(&body).len() {
        let _ = parse_events(&acquire_msg(&body)[..cut]);
    }
    // An IPv6 policy's acquire names its v6 remote selector.
    let p6 = PolicySpec {
        src: parse_ts("2001:db8:1::5/128").unwrap(),
        dst: parse_ts("2001:db8:77::/48").unwrap(),
        dir: Dir::Out,
        tmpl_src: ip(V6A),
        tmpl_dst: ip(V6B),
        reqid: REQID_BASE + 8,
        mode: MODE_TUNNEL,
    };
    assert_eq!(
        parse_events(&acquire_msg(&acquire_body(&p6))),
        vec![XfrmEvent::Acquire {
            reqid: REQID_BASE + 8,
            remote: parse_ts("2001:db8:77::/48"),
        }]
    );
}

/// Kernel input never panics the parser: every byte of real acquire and expire
/// messages flipped, lengths rewritten, bounded and deterministic.
#[test]
fn mangled_events_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let k = keys(1, 20, 0, 0);
    let sa = SaSpec {
        src: ip(V4A),
        dst: ip(V4B),
        spi: 1,
        reqid: REQID_BASE,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesGcm16 { key_bits: 128 },
        auth: None,
        keys: &k,
        encap: None,
        replay_window: 0,
        lifetime_kb: None,
        cross_family: false,
    };
    let mut expire = Vec::new();
    expire.extend_from_slice(&((16 + 232) as u32).to_ne_bytes());
    expire.extend_from_slice(&XFRM_MSG_EXPIRE.to_ne_bytes());
    expire.extend_from_slice(&[0; 10]);
    expire.extend_from_slice(&newsa_body(&sa)[..224]);
    expire.extend_from_slice(&[0; 8]);
    let base = [acquire_msg(&acquire_body(&out_policy(REQID_BASE))), expire].concat();
    for _ in 0..20_000 {
        let mut m = base.clone();
        for _ in 0..1 + rnd() % 4 {
            let i = (rnd() as usize) % m.len();
            m[i] = rnd() as u8;
        }
        let cut = (rnd() as usize) % (m.len() + 1);
        let _ = parse_events(&m[..cut]);
        let _ = parse_events(&m);
    }
}

/// [`Xfrm`]'s requests run on tokio's blocking pool: while one is held there (a slow
/// kernel), the caller's current-thread runtime keeps serving its other tasks.
#[test]
fn requests_do_not_block_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let Ok(x) = Xfrm::open() else {
        eprintln!("no netlink XFRM socket here: skipped");
        return;
    };
    rt.block_on(async {
        let runtime_thread = std::thread::current().id();
        let ticks = std::sync::Arc::new(AtomicU32::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        let thread = x
            .on_pool("slow request", move |_| {
                std::thread::sleep(Duration::from_millis(300));
                std::thread::current().id()
            })
            .await
            .unwrap();
        assert_ne!(thread, runtime_thread, "ran on the runtime's thread");
        let n = ticks.load(Ordering::Relaxed);
        assert!(n >= 10, "the runtime stalled: {n} ticks in 300 ms");
        ticker.abort();
    });
}

/// The probe's namespace is its own thread's: the caller's stays what it was, and
/// the answer is one sentence either way (this machine's kernel may lack ESP).
#[test]
fn probe_leaves_the_callers_namespace_alone() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ns = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let before = ns();
    let r = rt.block_on(probe_esp());
    assert_eq!(ns(), before);
    let line = match r {
        Ok(l) | Err(l) => l,
    };
    assert!(
        line.contains("test ESP SA") || line.contains("probe"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
}

/// IPv4 inside IPv6 (tunnel mode): the SA says XFRM_STATE_AF_UNSPEC so the kernel
/// leaves its selector "any family"; same-family SAs keep flags 0 (the known-good bytes).
#[test]
fn cross_family_tunnel_sa_leaves_its_selector_to_any_family() {
    let k = keys(1, 16, 2, 32);
    let mut sa = SaSpec {
        src: ip(V6A),
        dst: ip(V6B),
        spi: 0x0102_0304,
        reqid: REQID_BASE + 5,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesCbc { key_bits: 128 },
        auth: Some(EspAuth::HmacSha256_128),
        keys: &k,
        encap: None,
        replay_window: 32,
        lifetime_kb: None,
        cross_family: true,
    };
    // family at 212, mode 214, replay window 215, flags 216.
    let b = newsa_body(&sa);
    assert_eq!(&b[212..214], &AF_INET6.to_ne_bytes());
    assert_eq!(b[216], XFRM_STATE_AF_UNSPEC);
    sa.cross_family = false;
    assert_eq!(newsa_body(&sa)[216], 0);
    sa.cross_family = true;
    sa.mode = MODE_TRANSPORT;
    assert_eq!(
        newsa_body(&sa)[216],
        0,
        "transport mode has no inner family"
    );
}

/// An SA for one remote network carries its selectors (so pairs of several networks
/// under one reqid each take only their packets); the rest of the message is the
/// plain one.
#[test]
fn sa_for_a_network_carries_its_selector() {
    let k = keys(1, 16, 2, 32);
    let sa = SaSpec {
        src: ip(V4A),
        dst: ip(V4B),
        spi: 0x0102_0304,
        reqid: REQID_BASE + 6,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesCbc { key_bits: 128 },
        auth: Some(EspAuth::HmacSha256_128),
        keys: &k,
        encap: None,
        replay_window: 32,
        lifetime_kb: None,
        cross_family: false,
    };
    let ts = |s: &str, p: u8| TrafficSelector {
        addr: ip(s),
        prefix: p,
    };
    let plain = newsa_body(&sa);
    let b = body(&newsa_message_for(&sa, ts("10.200.1.1", 32), ts("10.88.0.0", 24)).unwrap());
    // xfrm_selector: daddr 0, saddr 16, ports 32..40, family 40, prefixlen_d 42, _s 43.
    assert_eq!(&b[0..4], &[10, 88, 0, 0]);
    assert_eq!(&b[16..20], &[10, 200, 1, 1]);
    assert_eq!(&b[40..42], &AF_INET.to_ne_bytes());
    assert_eq!((b[42], b[43]), (24, 32));
    assert_eq!(plain.len(), b.len());
    assert_eq!(&plain[56..], &b[56..], "only the selector differs");
    assert!(plain[..56].iter().all(|x| *x == 0));
}
