//! The kernel's IPsec (XFRM) over netlink: ESP SAs and the policies that send traffic
//! into them, for machines whose kernel has ESP.
//!
//! The messages are encoded here from `linux/xfrm.h` (the structures are fixed ABI):
//! `xfrm_usersa_info` + algorithm/encapsulation attributes for `XFRM_MSG_NEWSA`,
//! `xfrm_usersa_id` for `DELSA`, `xfrm_userpolicy_info` + one `xfrm_user_tmpl` for
//! `NEWPOLICY`, `xfrm_userpolicy_id` for `DELPOLICY`. Every request asks for an ACK and
//! every reply is length-checked before it is read. Postern's objects use reqids from
//! [`REQID_BASE`] and policy priority [`PRIORITY`], so they are told apart from others'.

use std::net::IpAddr;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_XFRM};
use postern_engine::algs::{EspAuth, EspCipher};
use postern_engine::ike::{EspKeys, TrafficSelector};

use super::KernelError;

/// Postern's reqids: `REQID_BASE + n`.
pub const REQID_BASE: u32 = 0x7057_0000;
/// Priority of Postern's policies (lower wins; strongSwan's defaults are larger).
pub const PRIORITY: u32 = 1500;

const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_DELSA: u16 = 0x11;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_DELPOLICY: u16 = 0x14;
const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_ESP: u8 = 50;
const UDP_ENCAP_ESPINUDP: u16 = 2;
pub const MODE_TRANSPORT: u8 = 0;
pub const MODE_TUNNEL: u8 = 1;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;

/// Policy directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In = 0,
    Out = 1,
    Fwd = 2,
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::Fwd => "fwd",
        }
    }

    pub fn parse(s: &str) -> Option<Dir> {
        match s {
            "in" => Some(Dir::In),
            "out" => Some(Dir::Out),
            "fwd" => Some(Dir::Fwd),
            _ => None,
        }
    }
}

/// One ESP SA to install.
pub struct SaSpec<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub spi: u32,
    pub reqid: u32,
    pub mode: u8,
    pub cipher: EspCipher,
    pub auth: Option<EspAuth>,
    pub keys: &'a EspKeys,
    /// ESP in UDP (RFC 3948): `(source port, destination port)`.
    pub encap: Option<(u16, u16)>,
    /// Anti-replay window in packets (at most 32 with the legacy replay state).
    pub replay_window: u8,
    /// Volume lifetime in kilobytes: the kernel signals a soft expiry at 80 % and
    /// deletes the SA at 100 % ([`EventListener`]).
    pub lifetime_kb: Option<u64>,
}

/// One policy: traffic from `src` to `dst` in direction `dir` goes through the SA
/// between the outer addresses `tmpl_src` → `tmpl_dst` with `reqid`.
pub struct PolicySpec {
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub dir: Dir,
    pub tmpl_src: IpAddr,
    pub tmpl_dst: IpAddr,
    pub reqid: u32,
    pub mode: u8,
}

fn family(a: IpAddr) -> u16 {
    if a.is_ipv4() { AF_INET } else { AF_INET6 }
}

/// `xfrm_address_t`: 16 bytes, an IPv4 address in the first 4.
fn put_addr(b: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            b.extend_from_slice(&v4.octets());
            b.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(v6) => b.extend_from_slice(&v6.octets()),
    }
}

fn pad_to(b: &mut Vec<u8>, len: usize) {
    b.resize(len.max(b.len()), 0);
}

/// `struct xfrm_selector` (56 bytes).
fn selector(b: &mut Vec<u8>, src: Option<TrafficSelector>, dst: Option<TrafficSelector>) {
    let start = b.len();
    let fam = src.or(dst).map_or(0, |t| family(t.addr));
    match dst {
        Some(t) => put_addr(b, t.addr),
        None => b.extend_from_slice(&[0; 16]),
    }
    match src {
        Some(t) => put_addr(b, t.addr),
        None => b.extend_from_slice(&[0; 16]),
    }
    b.extend_from_slice(&[0; 8]); // ports and masks: any
    b.extend_from_slice(&fam.to_ne_bytes());
    b.push(dst.map_or(0, |t| t.prefix));
    b.push(src.map_or(0, |t| t.prefix));
    b.push(0); // proto: any
    pad_to(b, start + 48);
    b.extend_from_slice(&0i32.to_ne_bytes()); // ifindex
    b.extend_from_slice(&0u32.to_ne_bytes()); // user
    debug_assert_eq!(b.len() - start, 56);
}

/// `struct xfrm_lifetime_cfg`: time is the engine's (it rekeys and deletes); bytes are
/// the kernel's when `kb` is given (soft at 80 %, hard at 100 %). No limit is all ones
/// for bytes and packets and 0 for the four time limits: all ones there would read as
/// a time already past and expire the object within a second.
fn lifetime_cfg(b: &mut Vec<u8>, kb: Option<u64>) {
    let (soft, hard) = match kb {
        Some(kb) => {
            let hard = kb.saturating_mul(1024);
            (hard / 10 * 8, hard)
        }
        None => (u64::MAX, u64::MAX),
    };
    for v in [soft, hard, u64::MAX, u64::MAX] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    for _ in 0..4 {
        b.extend_from_slice(&0u64.to_ne_bytes());
    }
}

fn attr(b: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(payload);
    pad_to(b, b.len().next_multiple_of(4));
}

/// `struct xfrm_algo` / `xfrm_algo_auth` / `xfrm_algo_aead`: name[64], key bits,
/// (truncation or ICV bits), key.
fn algo(name: &str, key: &[u8], extra_bits: Option<u32>) -> Vec<u8> {
    let mut v = Vec::with_capacity(72 + key.len());
    let mut n = [0u8; 64];
    n[..name.len()].copy_from_slice(name.as_bytes());
    v.extend_from_slice(&n);
    v.extend_from_slice(&((key.len() * 8) as u32).to_ne_bytes());
    if let Some(bits) = extra_bits {
        v.extend_from_slice(&bits.to_ne_bytes());
    }
    v.extend_from_slice(key);
    v
}

/// The kernel's name and truncation length of an ESP integrity algorithm.
fn auth_alg(a: EspAuth) -> (&'static str, u32) {
    match a {
        EspAuth::HmacMd5_96 => ("hmac(md5)", 96),
        EspAuth::HmacSha1_96 => ("hmac(sha1)", 96),
        EspAuth::HmacSha256_128 => ("hmac(sha256)", 128),
        EspAuth::HmacSha384_192 => ("hmac(sha384)", 192),
        EspAuth::HmacSha512_256 => ("hmac(sha512)", 256),
    }
}

/// The body of `XFRM_MSG_NEWSA` for `sa`.
pub fn newsa_body(sa: &SaSpec<'_>) -> Result<zeroize::Zeroizing<Vec<u8>>, KernelError> {
    let mut b = zeroize::Zeroizing::new(Vec::with_capacity(512));
    // xfrm_usersa_info (224 bytes)
    selector(&mut b, None, None);
    // xfrm_id: daddr, spi (network order), proto
    put_addr(&mut b, sa.dst);
    b.extend_from_slice(&sa.spi.to_be_bytes());
    b.push(IPPROTO_ESP);
    pad_to(&mut b, 80);
    put_addr(&mut b, sa.src); // saddr
    lifetime_cfg(&mut b, sa.lifetime_kb); // 96..160
    b.extend_from_slice(&[0; 32]); // curlft
    b.extend_from_slice(&[0; 12]); // stats
    b.extend_from_slice(&0u32.to_ne_bytes()); // seq
    b.extend_from_slice(&sa.reqid.to_ne_bytes());
    b.extend_from_slice(&family(sa.dst).to_ne_bytes());
    b.push(sa.mode);
    b.push(sa.replay_window);
    b.push(0); // flags
    pad_to(&mut b, 224);
    let enc = &sa.keys.encryption;
    match sa.cipher {
        EspCipher::AesGcm16 { .. } => {
            // key || 4-byte salt, ICV 128 bits (RFC 4106)
            let a = zeroize::Zeroizing::new(algo("rfc4106(gcm(aes))", enc, Some(128)));
            attr(&mut b, XFRMA_ALG_AEAD, &a);
        }
        EspCipher::AesCbc { .. } => {
            let a = zeroize::Zeroizing::new(algo("cbc(aes)", enc, None));
            attr(&mut b, XFRMA_ALG_CRYPT, &a);
        }
        EspCipher::TripleDes => {
            let a = zeroize::Zeroizing::new(algo("cbc(des3_ede)", enc, None));
            attr(&mut b, XFRMA_ALG_CRYPT, &a);
        }
        EspCipher::Null => {
            attr(
                &mut b,
                XFRMA_ALG_CRYPT,
                &algo("ecb(cipher_null)", &[], None),
            );
        }
    }
    if !matches!(sa.cipher, EspCipher::AesGcm16 { .. }) {
        let Some(auth) = sa.auth else {
            return Err(KernelError::Errno {
                what: "ESP SA without an integrity algorithm".into(),
                errno: 22,
            });
        };
        let (name, trunc) = auth_alg(auth);
        let a = zeroize::Zeroizing::new(algo(name, &sa.keys.integrity, Some(trunc)));
        attr(&mut b, XFRMA_ALG_AUTH_TRUNC, &a);
    }
    if let Some((sport, dport)) = sa.encap {
        // xfrm_encap_tmpl: type, sport, dport (network order), pad, original address
        let mut e = Vec::with_capacity(24);
        e.extend_from_slice(&UDP_ENCAP_ESPINUDP.to_ne_bytes());
        e.extend_from_slice(&sport.to_be_bytes());
        e.extend_from_slice(&dport.to_be_bytes());
        e.extend_from_slice(&[0; 2]);
        e.extend_from_slice(&[0; 16]);
        attr(&mut b, XFRMA_ENCAP, &e);
    }
    Ok(b)
}

/// `curlft.bytes` and `curlft.packets` of an `xfrm_usersa_info` (at 160 and 168).
fn usersa_traffic(body: &[u8]) -> Option<(u64, u64)> {
    let b: [u8; 8] = body.get(160..168)?.try_into().ok()?;
    let p: [u8; 8] = body.get(168..176)?.try_into().ok()?;
    Some((u64::from_ne_bytes(b), u64::from_ne_bytes(p)))
}

/// The body of `XFRM_MSG_DELSA` (and `GETSA`): `xfrm_usersa_id` (24 bytes).
pub fn delsa_body(dst: IpAddr, spi: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(24);
    put_addr(&mut b, dst);
    b.extend_from_slice(&spi.to_be_bytes());
    b.extend_from_slice(&family(dst).to_ne_bytes());
    b.push(IPPROTO_ESP);
    pad_to(&mut b, 24);
    b
}

/// The body of `XFRM_MSG_NEWPOLICY`: `xfrm_userpolicy_info` (168 bytes) + one template.
pub fn newpolicy_body(p: &PolicySpec) -> Vec<u8> {
    let mut b = Vec::with_capacity(168 + 68);
    selector(&mut b, Some(p.src), Some(p.dst));
    lifetime_cfg(&mut b, None); // 56..120
    b.extend_from_slice(&[0; 32]); // curlft 120..152
    b.extend_from_slice(&PRIORITY.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // index: the kernel picks
    b.push(p.dir as u8);
    b.push(0); // action: allow
    b.push(0); // flags
    b.push(0); // share
    pad_to(&mut b, 168);
    // xfrm_user_tmpl (64 bytes)
    let mut t = Vec::with_capacity(64);
    put_addr(&mut t, p.tmpl_dst); // id.daddr
    t.extend_from_slice(&0u32.to_be_bytes()); // id.spi: any
    t.push(IPPROTO_ESP);
    pad_to(&mut t, 24);
    t.extend_from_slice(&family(p.tmpl_dst).to_ne_bytes());
    pad_to(&mut t, 28);
    put_addr(&mut t, p.tmpl_src);
    t.extend_from_slice(&p.reqid.to_ne_bytes());
    t.push(p.mode);
    t.push(0); // share
    t.push(0); // optional
    pad_to(&mut t, 52);
    for _ in 0..3 {
        t.extend_from_slice(&u32::MAX.to_ne_bytes()); // aalgos, ealgos, calgos: any
    }
    debug_assert_eq!(t.len(), 64);
    attr(&mut b, XFRMA_TMPL, &t);
    b
}

/// A per-socket policy (`IP_XFRM_POLICY`): `xfrm_userpolicy_info` (168 bytes) for `dir`
/// (in or out) that matches everything and allows it without IPsec, so the IKE
/// sockets' own datagrams never go through the tunnel's SAs (transport mode covers
/// the very addresses IKE uses).
pub fn socket_bypass_policy(dir: Dir, v6: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(168);
    selector(&mut b, None, None);
    // Any address, but of the socket's family (the kernel refuses family 0).
    let fam = if v6 { AF_INET6 } else { AF_INET };
    b[40..42].copy_from_slice(&fam.to_ne_bytes());
    lifetime_cfg(&mut b, None);
    b.extend_from_slice(&[0; 32]); // curlft
    b.extend_from_slice(&0u32.to_ne_bytes()); // priority
    b.extend_from_slice(&0u32.to_ne_bytes()); // index
    b.push(dir as u8);
    b.push(0); // action: allow
    b.push(0); // flags
    b.push(0); // share
    pad_to(&mut b, 168);
    b
}

/// The body of `XFRM_MSG_DELPOLICY`: `xfrm_userpolicy_id` (64 bytes).
pub fn delpolicy_body(src: TrafficSelector, dst: TrafficSelector, dir: Dir) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    selector(&mut b, Some(src), Some(dst));
    b.extend_from_slice(&0u32.to_ne_bytes()); // index
    b.push(dir as u8);
    pad_to(&mut b, 64);
    b
}

/// A netlink XFRM socket; one request at a time, each acknowledged.
pub struct Xfrm {
    sock: Socket,
    seq: u32,
}

impl Xfrm {
    pub fn open() -> Result<Xfrm, KernelError> {
        let err = |e: std::io::Error| KernelError::Errno {
            what: "netlink XFRM socket".into(),
            errno: e.raw_os_error().unwrap_or(5),
        };
        let mut sock = Socket::new(NETLINK_XFRM).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        Ok(Xfrm { sock, seq: 1 })
    }

    /// Sends one request and waits for its ACK; the errno of a refusal is returned.
    fn request(
        &mut self,
        what: &str,
        kind: u16,
        flags: u16,
        body: &[u8],
    ) -> Result<(), KernelError> {
        self.request_with(what, kind, flags, body, &mut |_, _| {})
    }

    /// Like [`Xfrm::request`], handing each reply message of the request's sequence
    /// number before the ACK to `reply` (type, body). The receive buffers are zeroized
    /// (an SA's reply carries its keys).
    fn request_with(
        &mut self,
        what: &str,
        kind: u16,
        flags: u16,
        body: &[u8],
        on_reply: &mut dyn FnMut(u16, &[u8]),
    ) -> Result<(), KernelError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + body.len();
        let mut msg = zeroize::Zeroizing::new(Vec::with_capacity(len));
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        let io = |e: std::io::Error| KernelError::Errno {
            what: what.to_string(),
            errno: e.raw_os_error().unwrap_or(5),
        };
        self.sock.send(&msg, 0).map_err(io)?;
        // Bounded: replies to other sequence numbers are skipped, at most 16.
        for _ in 0..16 {
            let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(8192));
            let n = self.sock.recv(&mut *buf, 0).map_err(io)?;
            let reply = buf.get(..n).unwrap_or_default();
            let mut off = 0;
            while off + 16 <= reply.len() {
                let h = &reply[off..off + 16];
                let mlen = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let mtype = u16::from_ne_bytes([h[4], h[5]]);
                let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if mlen < 16 || off + mlen > reply.len() {
                    return Err(KernelError::Errno {
                        what: format!("{what}: malformed netlink reply"),
                        errno: 74,
                    });
                }
                if mseq == seq && mtype != NLMSG_ERROR {
                    on_reply(mtype, reply.get(off + 16..off + mlen).unwrap_or_default());
                }
                if mseq == seq && mtype == NLMSG_ERROR {
                    let e = reply.get(off + 16..off + 20).ok_or(KernelError::Errno {
                        what: format!("{what}: short netlink error"),
                        errno: 74,
                    })?;
                    let code = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(KernelError::Errno {
                            what: what.to_string(),
                            errno: -code,
                        })
                    };
                }
                off += mlen.next_multiple_of(4);
            }
        }
        Err(KernelError::Errno {
            what: format!("{what}: no acknowledgement"),
            errno: 62,
        })
    }

    pub fn add_sa(&mut self, sa: &SaSpec<'_>) -> Result<(), KernelError> {
        let body = newsa_body(sa)?;
        self.request(
            &format!("add ESP SA {:#010x} to {}", sa.spi, sa.dst),
            XFRM_MSG_NEWSA,
            NLM_F_CREATE | NLM_F_EXCL,
            &body,
        )
    }

    /// The bytes and packets an SA has carried so far (the kernel's `curlft`); None
    /// when it is gone.
    pub fn sa_traffic(&mut self, dst: IpAddr, spi: u32) -> Option<(u64, u64)> {
        let mut got = None;
        self.request_with(
            "read ESP SA",
            XFRM_MSG_GETSA,
            0,
            &delsa_body(dst, spi),
            &mut |kind, body| {
                if kind == XFRM_MSG_NEWSA {
                    got = usersa_traffic(body);
                }
            },
        )
        .ok()?;
        got
    }

    /// Deletes an SA; one that is already gone counts as deleted.
    pub fn del_sa(&mut self, dst: IpAddr, spi: u32) -> Result<(), KernelError> {
        match self.request(
            &format!("delete ESP SA {spi:#010x} to {dst}"),
            XFRM_MSG_DELSA,
            0,
            &delsa_body(dst, spi),
        ) {
            Err(KernelError::Errno { errno, .. }) if errno == ESRCH || errno == ENOENT => Ok(()),
            r => r,
        }
    }

    pub fn add_policy(&mut self, p: &PolicySpec) -> Result<(), KernelError> {
        self.request(
            &format!("add policy {} {} -> {}", p.dir.name(), p.src, p.dst),
            XFRM_MSG_NEWPOLICY,
            NLM_F_CREATE | NLM_F_EXCL,
            &newpolicy_body(p),
        )
    }

    /// Deletes a policy; one that is already gone counts as deleted.
    pub fn del_policy(
        &mut self,
        src: TrafficSelector,
        dst: TrafficSelector,
        dir: Dir,
    ) -> Result<(), KernelError> {
        match self.request(
            &format!("delete policy {} {src} -> {dst}", dir.name()),
            XFRM_MSG_DELPOLICY,
            0,
            &delpolicy_body(src, dst, dir),
        ) {
            Err(KernelError::Errno { errno, .. }) if errno == ENOENT || errno == ESRCH => Ok(()),
            r => r,
        }
    }
}

/// Undoes one journal entry of ours (an SA or a policy). Entries that do not parse are
/// left alone (the journal is only ever written by us, but it lives on disk).
pub fn undo(e: &super::Entry) -> Result<bool, KernelError> {
    let bad = |what: &str| KernelError::Errno {
        what: format!("journal: {what}"),
        errno: 22,
    };
    let mut x = Xfrm::open()?;
    match e {
        super::Entry::XfrmSa { dst, spi } => {
            let dst: IpAddr = dst.parse().map_err(|_| bad(dst))?;
            let spi =
                u32::from_str_radix(spi.trim_start_matches("0x"), 16).map_err(|_| bad(spi))?;
            x.del_sa(dst, spi).map(|_| true)
        }
        super::Entry::XfrmPolicy { dir, src, dst } => {
            let d = Dir::parse(dir).ok_or_else(|| bad(dir))?;
            let s = parse_ts(src).ok_or_else(|| bad(src))?;
            let t = parse_ts(dst).ok_or_else(|| bad(dst))?;
            x.del_policy(s, t, d).map(|_| true)
        }
        _ => Ok(false),
    }
}

/// `addr/prefix` as written by `TrafficSelector`'s `Display`.
pub fn parse_ts(s: &str) -> Option<TrafficSelector> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(TrafficSelector { addr, prefix })
}

/// XFRM_MSG_EXPIRE, multicast to the XFRMNLGRP_EXPIRE group; XFRM_MSG_ACQUIRE to
/// XFRMNLGRP_ACQUIRE.
const XFRM_MSG_ACQUIRE: u16 = 0x17;
const XFRM_MSG_EXPIRE: u16 = 0x18;
const XFRMNLGRP_ACQUIRE: u32 = 1;
const XFRMNLGRP_EXPIRE: u32 = 2;
/// `struct xfrm_user_acquire`: id, saddr, selector, policy info, three algorithm
/// masks and a sequence number; then attributes (the policy's templates).
const USER_ACQUIRE_LEN: usize = 280;
/// `struct xfrm_user_tmpl`; its `reqid` at byte 44.
const USER_TMPL_LEN: usize = 64;

/// An SA the kernel says has reached a volume limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub spi: u32,
    /// Hard: the kernel has deleted it; soft: time to rekey.
    pub hard: bool,
}

/// What the kernel tells the tunnel about its SAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfrmEvent {
    /// An SA reached a volume limit.
    Expired(Expired),
    /// Outbound traffic matched a policy of request id `reqid` towards `remote` (the
    /// policy selector's destination) and found no SA (it was deleted behind our back,
    /// or expired before its replacement came): the kernel asks for one.
    Acquire {
        reqid: u32,
        remote: Option<TrafficSelector>,
    },
}

/// The destination of an `xfrm_selector` (daddr at 0, family at 40, prefixlen_d at 42).
fn selector_destination(sel: &[u8]) -> Option<TrafficSelector> {
    let family = u16::from_ne_bytes([*sel.get(40)?, *sel.get(41)?]);
    let prefix = *sel.get(42)?;
    let addr: IpAddr = match family {
        AF_INET if prefix <= 32 => {
            let a: [u8; 4] = sel.get(0..4)?.try_into().ok()?;
            a.into()
        }
        AF_INET6 if prefix <= 128 => {
            let a: [u8; 16] = sel.get(0..16)?.try_into().ok()?;
            a.into()
        }
        _ => return None,
    };
    Some(TrafficSelector { addr, prefix })
}

/// Parses the expire and acquire messages of one netlink datagram (lengths checked;
/// anything else, or anything cut short, is skipped).
pub fn parse_events(buf: &[u8]) -> Vec<XfrmEvent> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let h = &buf[off..off + 16];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        if len < 16 || off + len > buf.len() {
            break;
        }
        let body = &buf[off + 16..off + len];
        match kind {
            // xfrm_user_expire: xfrm_usersa_info (224 bytes) then `hard`.
            XFRM_MSG_EXPIRE if body.len() > 224 && body[76] == IPPROTO_ESP => {
                out.push(XfrmEvent::Expired(Expired {
                    spi: u32::from_be_bytes([body[72], body[73], body[74], body[75]]),
                    hard: body[224] != 0,
                }))
            }
            XFRM_MSG_ACQUIRE if body.len() >= USER_ACQUIRE_LEN && body[20] == IPPROTO_ESP => {
                if let Some(reqid) = first_template_reqid(&body[USER_ACQUIRE_LEN..]) {
                    let remote = selector_destination(&body[40..96]);
                    out.push(XfrmEvent::Acquire { reqid, remote });
                }
            }
            _ => {}
        }
        off += len.next_multiple_of(4);
    }
    out
}

/// The `reqid` of the first template in the XFRMA_TMPL attribute of `attrs`.
fn first_template_reqid(attrs: &[u8]) -> Option<u32> {
    let mut off = 0;
    while off + 4 <= attrs.len() {
        let len = u16::from_ne_bytes([attrs[off], attrs[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[off + 2], attrs[off + 3]]) & 0x3fff;
        if len < 4 || off + len > attrs.len() {
            return None;
        }
        if kind == XFRMA_TMPL && len >= 4 + USER_TMPL_LEN {
            let t = &attrs[off + 4..off + 4 + USER_TMPL_LEN];
            return Some(u32::from_ne_bytes([t[44], t[45], t[46], t[47]]));
        }
        off += len.next_multiple_of(4);
    }
    None
}

/// Listens for the kernel's SA expiry notifications (volume limits) and acquires
/// (outbound traffic with no SA).
pub struct EventListener {
    sock: netlink_sys::TokioSocket,
}

impl EventListener {
    pub fn open() -> Result<EventListener, KernelError> {
        use netlink_sys::AsyncSocket;
        let err = |e: std::io::Error| KernelError::Errno {
            what: "netlink XFRM event socket".into(),
            errno: e.raw_os_error().unwrap_or(5),
        };
        let mut sock = netlink_sys::TokioSocket::new(NETLINK_XFRM).map_err(err)?;
        let groups = (1 << (XFRMNLGRP_EXPIRE - 1)) | (1 << (XFRMNLGRP_ACQUIRE - 1));
        sock.socket_mut()
            .bind(&SocketAddr::new(0, groups))
            .map_err(err)?;
        Ok(EventListener { sock })
    }

    /// The next events (waits for a datagram).
    pub async fn next(&mut self) -> std::io::Result<Vec<XfrmEvent>> {
        use netlink_sys::AsyncSocketExt;
        let (buf, _) = self.sock.recv_from_full().await?;
        Ok(parse_events(&buf))
    }
}

/// Whether this kernel can hold an ESP SA: adds and deletes a throwaway SA (loopback,
/// an SPI of our own range) in a scratch network namespace, made by a thread of its own
/// that unshares, so nothing is ever seen on the host and the namespace goes with the
/// thread. Where unsharing is not allowed (no CAP_SYS_ADMIN), in ours: the SA lives
/// for the moment between add and delete and no policy points at it.
/// `Ok` and `Err` are the sentence for the one log line of `auto`.
pub fn probe_esp() -> Result<String, String> {
    let probe = || {
        let scratch = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok();
        let place = if scratch {
            "a scratch network namespace"
        } else {
            "this network namespace (no scratch one allowed)"
        };
        match probe_here() {
            Ok(()) => Ok(format!("the kernel accepted a test ESP SA in {place}")),
            Err(e) => Err(format!("the kernel refused a test ESP SA in {place}: {e}")),
        }
    };
    match std::thread::Builder::new()
        .name("postern-esp-probe".into())
        .spawn(probe)
    {
        Ok(t) => t
            .join()
            .unwrap_or_else(|_| Err("the ESP probe thread failed".into())),
        Err(e) => Err(format!("cannot start the ESP probe thread: {e}")),
    }
}

fn probe_here() -> Result<(), KernelError> {
    let mut x = Xfrm::open()?;
    let keys = EspKeys {
        encryption: zeroize::Zeroizing::new(vec![0x5a; 16]),
        integrity: zeroize::Zeroizing::new(vec![0xa5; 32]),
    };
    let lo: IpAddr = "127.0.0.1".parse().map_err(|_| KernelError::Errno {
        what: "probe address".into(),
        errno: 22,
    })?;
    let spi = 0x7057_fff0 | (std::process::id() & 0xf);
    let sa = SaSpec {
        src: lo,
        dst: lo,
        spi,
        reqid: REQID_BASE | 0xffff,
        mode: MODE_TUNNEL,
        cipher: EspCipher::AesCbc { key_bits: 128 },
        auth: Some(EspAuth::HmacSha256_128),
        keys: &keys,
        encap: None,
        replay_window: 0,
        lifetime_kb: None,
    };
    x.add_sa(&sa)?;
    x.del_sa(lo, spi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> EspKeys {
        EspKeys {
            encryption: zeroize::Zeroizing::new(vec![1; 20]),
            integrity: zeroize::Zeroizing::new(Vec::new()),
        }
    }

    #[test]
    fn newsa_layout_matches_the_kernel_abi() {
        let k = keys();
        let sa = SaSpec {
            src: "192.0.2.2".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            spi: 0xc0ffee01,
            reqid: REQID_BASE + 3,
            mode: MODE_TUNNEL,
            cipher: EspCipher::AesGcm16 { key_bits: 128 },
            auth: None,
            keys: &k,
            encap: Some((4500, 4500)),
            replay_window: 32,
            lifetime_kb: Some(100),
        };
        let b = newsa_body(&sa).unwrap();
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
        assert_eq!(usersa_traffic(&b), Some((0, 0)));
        let mut used = b.clone();
        used[160..168].copy_from_slice(&1234u64.to_ne_bytes());
        used[168..176].copy_from_slice(&5u64.to_ne_bytes());
        assert_eq!(usersa_traffic(&used), Some((1234, 5)));
        assert_eq!(usersa_traffic(&used[..170]), None);
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
    }

    /// An outbound tunnel policy 10.200.0.5/32 -> 10.77.0.0/24 via 192.0.2.2 -> 192.0.2.1.
    fn out_policy(reqid: u32) -> PolicySpec {
        PolicySpec {
            src: parse_ts("10.200.0.5/32").unwrap(),
            dst: parse_ts("10.77.0.0/24").unwrap(),
            dir: Dir::Out,
            tmpl_src: "192.0.2.2".parse().unwrap(),
            tmpl_dst: "192.0.2.1".parse().unwrap(),
            reqid,
            mode: MODE_TUNNEL,
        }
    }

    #[test]
    fn policy_layout_matches_the_kernel_abi() {
        let p = out_policy(REQID_BASE + 1);
        let b = newpolicy_body(&p);
        assert_eq!(&b[0..4], &[10, 77, 0, 0], "selector daddr");
        assert_eq!(&b[16..20], &[10, 200, 0, 5], "selector saddr");
        assert_eq!(b[42], 24, "prefixlen_d");
        assert_eq!(b[43], 32, "prefixlen_s");
        assert_eq!(&b[152..156], &PRIORITY.to_ne_bytes());
        assert_eq!(b[160], Dir::Out as u8);
        assert_eq!(b.len(), 168 + 4 + 64);
        let t = &b[172..];
        assert_eq!(&t[0..4], &[192, 0, 2, 1], "template daddr");
        assert_eq!(t[20], IPPROTO_ESP);
        assert_eq!(&t[28..32], &[192, 0, 2, 2], "template saddr");
        assert_eq!(&t[44..48], &(REQID_BASE + 1).to_ne_bytes());
        assert_eq!(t[48], MODE_TUNNEL);
        assert_eq!(delpolicy_body(p.src, p.dst, Dir::In).len(), 64);
        assert_eq!(delsa_body(p.tmpl_dst, 7).len(), 24);
    }

    /// An acquire as the kernel builds it (xfrm_user_acquire, then the policy's
    /// templates): the template's reqid comes out; cut short or of another protocol,
    /// nothing does.
    #[test]
    fn acquire_gives_the_template_reqid() {
        let p = out_policy(REQID_BASE + 7);
        let pol = newpolicy_body(&p);
        let mut body = vec![0u8; 40]; // id, saddr
        body[20] = IPPROTO_ESP;
        body.extend_from_slice(&pol[..56]); // the policy's selector
        body.extend_from_slice(&pol[..168]);
        body.extend_from_slice(&[0; 16]); // aalgos, ealgos, calgos, seq
        body.extend_from_slice(&pol[168..]); // XFRMA_TMPL
        let msg = |body: &[u8]| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
            m.extend_from_slice(&XFRM_MSG_ACQUIRE.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(body);
            m
        };
        assert_eq!(
            parse_events(&msg(&body)),
            vec![XfrmEvent::Acquire {
                reqid: REQID_BASE + 7,
                remote: parse_ts("10.77.0.0/24"),
            }]
        );
        // Two in one datagram.
        let two = [msg(&body), msg(&body)].concat();
        assert_eq!(parse_events(&two).len(), 2);
        // No template, a template cut short, another protocol, a lying length.
        assert!(parse_events(&msg(&body[..USER_ACQUIRE_LEN])).is_empty());
        assert!(parse_events(&msg(&body[..USER_ACQUIRE_LEN + 40])).is_empty());
        let mut ah = body.clone();
        ah[20] = 51;
        assert!(parse_events(&msg(&ah)).is_empty());
        let mut lying = msg(&body);
        lying[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(parse_events(&lying).is_empty());
        for cut in 0..msg(&body).len() {
            let _ = parse_events(&msg(&body)[..cut]);
        }
    }
}

#[cfg(test)]
mod live {
    use super::*;

    /// As root (CI): runs [`inner_policy_installs_stays_and_goes`] and
    /// [`inner_acquire_reaches_the_listener`] in a scratch network namespace
    /// (`unshare -n`), since the host kernel has XFRM policies (and acquires) even without
    /// ESP.
    #[test]
    fn policies_install_and_go_for_real() {
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().nth(1) == Some("0"))
            });
        if uid != Some(true) {
            eprintln!("not root: the live XFRM policy test runs in CI (root) only");
            return;
        }
        let me = std::env::current_exe().unwrap();
        // Each in a namespace of its own.
        for inner in [
            "kernel::xfrm::live::inner_policy_installs_stays_and_goes",
            "kernel::xfrm::live::inner_acquire_reaches_the_listener",
        ] {
            let out = std::process::Command::new("unshare")
                .arg("-n")
                .arg(&me)
                .args(["--ignored", "--exact", inner])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && text.contains("1 passed"),
                "{inner}:\n{text}\n{err}"
            );
        }
    }

    /// In a scratch network namespace: a policy installs, stays, and goes.
    #[test]
    #[ignore = "run by policies_install_and_go_for_real in a scratch namespace"]
    fn inner_policy_installs_stays_and_goes() {
        let mut x = Xfrm::open().unwrap();
        let p = PolicySpec {
            src: parse_ts("10.200.0.5/32").unwrap(),
            dst: parse_ts("10.77.0.0/24").unwrap(),
            dir: Dir::Out,
            tmpl_src: "192.0.2.2".parse().unwrap(),
            tmpl_dst: "192.0.2.1".parse().unwrap(),
            reqid: REQID_BASE + 9,
            mode: MODE_TUNNEL,
        };
        x.add_policy(&p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let shown = std::process::Command::new("ip")
            .args(["xfrm", "policy"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.contains("10.200.0.5/32"), "{shown}");
        x.del_policy(p.src, p.dst, p.dir).unwrap();
        let shown = std::process::Command::new("ip")
            .args(["xfrm", "policy"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&shown.stdout).trim().is_empty());
    }

    /// In a scratch network namespace: traffic matching an outbound policy with no SA
    /// makes the kernel send an acquire, and the listener hands over the policy's reqid.
    #[test]
    #[ignore = "run by policies_install_and_go_for_real in a scratch namespace"]
    fn inner_acquire_reaches_the_listener() {
        // Not over loopback: the kernel never applies XFRM policies there.
        for args in [
            &["link", "add", "pv0", "type", "veth", "peer", "name", "pv1"][..],
            &["addr", "add", "198.51.100.1/24", "dev", "pv0"],
            &["link", "set", "pv0", "up"],
            &["link", "set", "pv1", "up"],
        ] {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(ok.success(), "ip {args:?}");
        }
        let mut x = Xfrm::open().unwrap();
        let p = PolicySpec {
            src: parse_ts("198.51.100.1/32").unwrap(),
            dst: parse_ts("198.51.100.2/32").unwrap(),
            dir: Dir::Out,
            tmpl_src: "198.51.100.1".parse().unwrap(),
            tmpl_dst: "198.51.100.2".parse().unwrap(),
            reqid: REQID_BASE + 10,
            mode: MODE_TUNNEL,
        };
        x.add_policy(&p).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut l = EventListener::open().unwrap();
            let s = std::net::UdpSocket::bind("198.51.100.1:0").unwrap();
            // Dropped (no SA yet): the send may fail; the acquire is what counts.
            let _ = s.send_to(b"hello", "198.51.100.2:9");
            tokio::time::timeout(std::time::Duration::from_secs(5), l.next()).await
        });
        let events = got.expect("no acquire within 5 s").unwrap();
        assert!(
            events.contains(&XfrmEvent::Acquire {
                reqid: REQID_BASE + 10,
                remote: parse_ts("198.51.100.2/32"),
            }),
            "{events:?}"
        );
        x.del_policy(p.src, p.dst, p.dir).unwrap();
    }
}
