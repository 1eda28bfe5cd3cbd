//! The kernel's IPsec (XFRM) over netlink: ESP SAs and the policies that send traffic
//! into them, for machines whose kernel has ESP.
//!
//! The messages are those of the `netlink-packet-xfrm` crate (rust-netlink, the family
//! of the rtnetlink in [`super::net`]): `XFRM_MSG_NEWSA` (`UserSaInfo` with the
//! algorithm, encapsulation attributes), `DELSA` / `GETSA` (`UserSaId`), `NEWPOLICY`
//! (`UserPolicyInfo` and one `UserTemplate`), `DELPOLICY` (`UserPolicyId`), and the
//! kernel's expire and acquire notifications. What the crate lacks is in [`ext`].
//! Every request asks for an ACK; replies are length-checked before they are read.
//! Postern's objects use reqids from [`REQID_BASE`] and policy priority [`PRIORITY`],
//! so they are told apart from others'.
//!
//! Requests go over a blocking netlink socket ([`XfrmSocket`]), one acknowledged
//! request at a time. [`Xfrm`] is the async face the tunnel driver uses: each request
//! runs on tokio's blocking pool, so the thread that serves D-Bus and drives the other
//! tunnels never waits on the kernel. The crate's async path (a netlink-proto
//! connection) is not used on purpose: its codec keeps the encoded `NEWSA` (the keys)
//! and the `GETSA` replies (the keys again) in buffers it frees without wiping, while
//! here every buffer that can hold a key is zeroized.

pub mod ext;
pub mod migrate;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlink_packet_core::{
    ErrorBuffer, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_xfrm::{
    AF_INET, AF_INET6, Address, EncapTmpl, IPPROTO_ESP, LifetimeConfig, Selector,
    UDP_ENCAP_ESPINUDP, UserPolicyId, UserPolicyInfo, UserSaId, UserSaInfo, UserTemplate,
    XFRM_MSG_ACQUIRE, XFRM_MSG_EXPIRE, XFRM_MSG_NEWSA, XFRM_POLICY_ALLOW, XFRM_POLICY_FWD,
    XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_STATE_AF_UNSPEC, XFRMNLGRP_ACQUIRE, XFRMNLGRP_EXPIRE,
    XfrmAttrs, XfrmMessage,
    policy::{DelGetMessage as PolicyDelGet, ModifyMessage as PolicyModify},
    state::{DelGetMessage as SaDelGet, ModifyMessage as SaModify},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_XFRM};
use postern_engine::algs::{EspAuth, EspCipher};
use postern_engine::ike::{EspKeys, TrafficSelector};
use zeroize::Zeroizing;

use self::ext::ZeroizeKeys;
use super::KernelError;

pub use netlink_packet_xfrm::{
    XFRM_MODE_TRANSPORT as MODE_TRANSPORT, XFRM_MODE_TUNNEL as MODE_TUNNEL,
};

/// Postern's reqids: `REQID_BASE + n`.
pub const REQID_BASE: u32 = 0x7057_0000;
/// Priority of Postern's policies (lower wins; strongSwan's defaults are larger).
pub const PRIORITY: u32 = 1500;

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EIO: i32 = 5;
const EINVAL: i32 = 22;
/// How long one request waits for the kernel's answer (it always answers at once;
/// the bound keeps a wedged socket from holding a blocking-pool thread forever).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Policy directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
    Fwd,
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

    /// `XFRM_POLICY_IN` / `OUT` / `FWD`.
    fn number(self) -> u8 {
        match self {
            Dir::In => XFRM_POLICY_IN,
            Dir::Out => XFRM_POLICY_OUT,
            Dir::Fwd => XFRM_POLICY_FWD,
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
    /// Tunnel mode with inner packets of the other family than the outer addresses
    /// (IPv4 inside IPv6 or the reverse): the SA's own selector is left "any family"
    /// (`XFRM_STATE_AF_UNSPEC`), else the kernel gives it the outer family and the
    /// inner packets find no SA.
    pub cross_family: bool,
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

/// The selector `src` → `dst` (any port, any protocol); both absent: anything.
fn selector(src: Option<TrafficSelector>, dst: Option<TrafficSelector>) -> Selector {
    let mut s = Selector {
        family: src.or(dst).map_or(0, |t| family(t.addr)),
        ..Default::default()
    };
    if let Some(t) = dst {
        s.daddr = Address::from_ip(&t.addr);
        s.prefixlen_d = t.prefix;
    }
    if let Some(t) = src {
        s.saddr = Address::from_ip(&t.addr);
        s.prefixlen_s = t.prefix;
    }
    s
}

/// The lifetime of an SA: time is the engine's (it rekeys and deletes); bytes are the
/// kernel's when `kb` is given (soft at 80 %, hard at 100 %). The crate's default is
/// "no limit": all ones for bytes and packets, 0 for the four time limits (all ones
/// there would read as a time already past and expire the SA within a second).
fn lifetime(kb: Option<u64>) -> LifetimeConfig {
    let mut l = LifetimeConfig::default();
    if let Some(kb) = kb {
        let hard = kb.saturating_mul(1024);
        l.soft_byte_limit = hard / 10 * 8;
        l.hard_byte_limit = hard;
    }
    l
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

/// `XFRM_MSG_NEWSA` for `sa`. It holds copies of the keys: encode it with
/// [`encode`], which wipes them.
pub fn newsa_message(sa: &SaSpec<'_>) -> Result<XfrmMessage, KernelError> {
    let aead = matches!(sa.cipher, EspCipher::AesGcm16 { .. });
    // Checked before any key is copied.
    let auth = match (aead, sa.auth) {
        (true, _) => None,
        (false, Some(a)) => Some(a),
        (false, None) => {
            return Err(KernelError::Errno {
                what: "ESP SA without an integrity algorithm".into(),
                errno: EINVAL,
            });
        }
    };
    let mut info = UserSaInfo {
        lifetime_cfg: lifetime(sa.lifetime_kb),
        reqid: sa.reqid,
        mode: sa.mode,
        replay_window: sa.replay_window,
        flags: if sa.mode == MODE_TUNNEL && sa.cross_family {
            XFRM_STATE_AF_UNSPEC
        } else {
            0
        },
        ..Default::default()
    };
    info.id.spi = sa.spi;
    info.id.proto = IPPROTO_ESP;
    info.source(&sa.src);
    info.destination(&sa.dst);
    let enc = &sa.keys.encryption;
    let mut nlas = Vec::with_capacity(3);
    nlas.push(match sa.cipher {
        // key || 4-byte salt, ICV 128 bits (RFC 4106)
        EspCipher::AesGcm16 { .. } => {
            XfrmAttrs::EncryptionAlgAead(ext::alg_aead("rfc4106(gcm(aes))", enc, 128))
        }
        EspCipher::AesCbc { .. } => XfrmAttrs::EncryptionAlg(ext::alg("cbc(aes)", enc)),
        EspCipher::TripleDes => XfrmAttrs::EncryptionAlg(ext::alg("cbc(des3_ede)", enc)),
        EspCipher::Null => XfrmAttrs::EncryptionAlg(ext::alg("ecb(cipher_null)", &[])),
    });
    if let Some(auth) = auth {
        let (name, trunc) = auth_alg(auth);
        nlas.push(XfrmAttrs::AuthenticationAlgTrunc(ext::alg_auth(
            name,
            &sa.keys.integrity,
            trunc,
        )));
    }
    if let Some((sport, dport)) = sa.encap {
        nlas.push(XfrmAttrs::EncapsulationTemplate(EncapTmpl {
            encap_type: UDP_ENCAP_ESPINUDP,
            encap_sport: sport,
            encap_dport: dport,
            encap_oa: Address::default(),
        }));
    }
    Ok(XfrmMessage::AddSa(SaModify {
        user_sa_info: info,
        nlas,
    }))
}

/// [`newsa_message`] for an SA that carries only `src` → `dst` (inner selectors,
/// tunnel mode): the kernel then picks it only for that traffic, so several SA pairs
/// to one gateway under one reqid (one per remote network) do not take each other's
/// packets, and checks decapsulated packets against it.
pub fn newsa_message_for(
    sa: &SaSpec<'_>,
    src: TrafficSelector,
    dst: TrafficSelector,
) -> Result<XfrmMessage, KernelError> {
    let mut m = newsa_message(sa)?;
    if let XfrmMessage::AddSa(SaModify { user_sa_info, .. }) = &mut m {
        user_sa_info.selector = selector(Some(src), Some(dst));
    }
    Ok(m)
}

fn sa_id(dst: IpAddr, spi: u32) -> SaDelGet {
    let mut id = UserSaId {
        spi,
        proto: IPPROTO_ESP,
        ..Default::default()
    };
    id.destination(&dst);
    SaDelGet {
        user_sa_id: id,
        nlas: Vec::new(),
    }
}

/// `XFRM_MSG_DELSA` for the ESP SA `spi` towards `dst`.
pub fn delsa_message(dst: IpAddr, spi: u32) -> XfrmMessage {
    XfrmMessage::DeleteSa(sa_id(dst, spi))
}

/// `XFRM_MSG_GETSA` for the ESP SA `spi` towards `dst`.
pub fn getsa_message(dst: IpAddr, spi: u32) -> XfrmMessage {
    XfrmMessage::GetSa(sa_id(dst, spi))
}

/// `XFRM_MSG_NEWPOLICY` with one ESP template.
pub fn newpolicy_message(p: &PolicySpec) -> XfrmMessage {
    let info = UserPolicyInfo {
        selector: selector(Some(p.src), Some(p.dst)),
        priority: PRIORITY,
        direction: p.dir.number(),
        action: XFRM_POLICY_ALLOW,
        ..Default::default()
    };
    // Any SPI, any algorithms (the crate's default masks are all ones).
    let mut t = UserTemplate::default();
    t.protocol(IPPROTO_ESP);
    t.source(&p.tmpl_src);
    t.destination(&p.tmpl_dst);
    t.reqid(p.reqid);
    t.mode(p.mode);
    XfrmMessage::AddPolicy(PolicyModify {
        user_policy_info: info,
        nlas: vec![XfrmAttrs::Template(vec![t])],
    })
}

/// `XFRM_MSG_DELPOLICY` of the policy `src` → `dst` in `dir`.
pub fn delpolicy_message(src: TrafficSelector, dst: TrafficSelector, dir: Dir) -> XfrmMessage {
    XfrmMessage::DeletePolicy(PolicyDelGet {
        user_policy_id: UserPolicyId {
            selector: selector(Some(src), Some(dst)),
            index: 0,
            direction: dir.number(),
        },
        nlas: Vec::new(),
    })
}

/// A per-socket policy (`IP_XFRM_POLICY`): the bytes of a `UserPolicyInfo` for `dir`
/// (in or out) that matches everything and allows it without IPsec, so the IKE
/// sockets' own datagrams never go through the tunnel's SAs (transport mode covers
/// the very addresses IKE uses).
pub fn socket_bypass_policy(dir: Dir, v6: bool) -> Vec<u8> {
    use netlink_packet_core::Emitable;
    let p = UserPolicyInfo {
        // Any address, but of the socket's family (the kernel refuses family 0).
        selector: Selector {
            family: if v6 { AF_INET6 } else { AF_INET },
            ..Default::default()
        },
        direction: dir.number(),
        action: XFRM_POLICY_ALLOW,
        ..Default::default()
    };
    let mut b = vec![0; p.buffer_len()];
    p.emit(&mut b);
    b
}

/// The whole netlink request (header and body) for `msg` with sequence number `seq`,
/// asking for an ACK. The keys the message held are wiped once they are copied into
/// the (zeroizing) result.
pub fn encode(seq: u32, flags: u16, msg: XfrmMessage) -> Zeroizing<Vec<u8>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let mut bytes = Zeroizing::new(vec![0u8; m.buffer_len()]);
    m.serialize(&mut bytes);
    if let NetlinkPayload::InnerMessage(inner) = &mut m.payload {
        inner.zeroize_keys();
    }
    bytes
}

/// One encoded request, ready for [`XfrmSocket::transact`] (on any thread).
pub struct Request {
    what: String,
    seq: u32,
    bytes: Zeroizing<Vec<u8>>,
    /// Errnos that count as success (deleting what is already gone).
    ok_errnos: &'static [i32],
}

/// `lifetime_cur` (bytes, packets) of the SA in a `NEWSA` reply body; only the fixed
/// `UserSaInfo` is parsed (the attributes after it hold the keys).
fn sa_reply_traffic(body: &[u8]) -> Option<(u64, u64)> {
    let info = UserSaInfo::parse(body).ok()?;
    Some((info.lifetime_cur.bytes, info.lifetime_cur.packets))
}

/// A blocking netlink XFRM socket; one request at a time, each acknowledged. Shared
/// by reference: requests from several threads take turns.
pub struct XfrmSocket {
    sock: Mutex<Socket>,
    seq: AtomicU32,
}

impl XfrmSocket {
    pub fn open() -> Result<XfrmSocket, KernelError> {
        let err = |e: std::io::Error| KernelError::Errno {
            what: "netlink XFRM socket".into(),
            errno: e.raw_os_error().unwrap_or(EIO),
        };
        let mut sock = Socket::new(NETLINK_XFRM).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        // Errors carry the code and our header, not the whole request back (a refused
        // NEWSA would otherwise come back with its keys).
        sock.set_cap_ack(true).map_err(err)?;
        let timeout = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| err(e.into()))?;
        Ok(XfrmSocket {
            sock: Mutex::new(sock),
            seq: AtomicU32::new(1),
        })
    }

    /// Encodes `msg` as this socket's next request.
    pub fn request(&self, what: String, msg: XfrmMessage, flags: u16) -> Request {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        Request {
            what,
            seq,
            bytes: encode(seq, flags, msg),
            ok_errnos: &[],
        }
    }

    /// Sends `req` and waits for its ACK; the errno of a refusal is returned. Each
    /// reply message of the request's sequence number before the ACK goes to
    /// `on_reply` (type, body). The receive buffers are zeroized (an SA's reply
    /// carries its keys).
    pub fn transact(
        &self,
        req: &Request,
        on_reply: &mut dyn FnMut(u16, &[u8]),
    ) -> Result<(), KernelError> {
        let what = req.what.as_str();
        let io = |e: std::io::Error| KernelError::Errno {
            what: what.to_string(),
            errno: e.raw_os_error().unwrap_or(EIO),
        };
        let malformed = |e: netlink_packet_core::DecodeError| KernelError::Netlink {
            what: format!("{what}: malformed netlink reply"),
            source: Box::new(e),
        };
        let sock = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        sock.send(&req.bytes, 0).map_err(io)?;
        // Bounded: replies to other sequence numbers are skipped, at most 16 datagrams.
        for _ in 0..16 {
            let mut buf = Zeroizing::new(Vec::with_capacity(8192));
            let n = sock.recv(&mut *buf, 0).map_err(io)?;
            for m in ext::messages(buf.get(..n).unwrap_or_default()) {
                let m = m.map_err(malformed)?;
                if m.sequence_number() != req.seq {
                    continue;
                }
                if m.message_type() != NLMSG_ERROR {
                    on_reply(m.message_type(), m.payload());
                    continue;
                }
                // The code only: the rest echoes our request (keys, for a NEWSA) and
                // is not copied out of the zeroized buffer.
                let e = ErrorBuffer::new_checked(m.payload()).map_err(malformed)?;
                return match e.code().map(|c| -c.get()) {
                    None => Ok(()),
                    Some(errno) if req.ok_errnos.contains(&errno) => Ok(()),
                    Some(errno) => Err(KernelError::Errno {
                        what: what.to_string(),
                        errno,
                    }),
                };
            }
        }
        Err(KernelError::Errno {
            what: format!("{what}: no acknowledgement"),
            errno: 62,
        })
    }

    fn run(&self, req: &Request) -> Result<(), KernelError> {
        self.transact(req, &mut |_, _| {})
    }

    fn add_sa_request(&self, sa: &SaSpec<'_>) -> Result<Request, KernelError> {
        Ok(self.request(
            format!("add ESP SA {:#010x} to {}", sa.spi, sa.dst),
            newsa_message(sa)?,
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }

    fn add_sa_for_request(
        &self,
        sa: &SaSpec<'_>,
        src: TrafficSelector,
        dst: TrafficSelector,
    ) -> Result<Request, KernelError> {
        Ok(self.request(
            format!(
                "add ESP SA {:#010x} to {} for {src} -> {dst}",
                sa.spi, sa.dst
            ),
            newsa_message_for(sa, src, dst)?,
            NLM_F_CREATE | NLM_F_EXCL,
        ))
    }

    /// Deleting an SA that is already gone counts as deleted.
    fn del_sa_request(&self, dst: IpAddr, spi: u32) -> Request {
        Request {
            ok_errnos: &[ESRCH, ENOENT],
            ..self.request(
                format!("delete ESP SA {spi:#010x} to {dst}"),
                delsa_message(dst, spi),
                0,
            )
        }
    }

    fn getsa_request(&self, dst: IpAddr, spi: u32) -> Request {
        self.request("read ESP SA".into(), getsa_message(dst, spi), 0)
    }

    fn add_policy_request(&self, p: &PolicySpec) -> Request {
        self.request(
            format!("add policy {} {} -> {}", p.dir.name(), p.src, p.dst),
            newpolicy_message(p),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Deleting a policy that is already gone counts as deleted.
    fn del_policy_request(&self, src: TrafficSelector, dst: TrafficSelector, dir: Dir) -> Request {
        Request {
            ok_errnos: &[ENOENT, ESRCH],
            ..self.request(
                format!("delete policy {} {src} -> {dst}", dir.name()),
                delpolicy_message(src, dst, dir),
                0,
            )
        }
    }

    /// The bytes and packets the SA has carried (the kernel's current lifetime), read
    /// with `req` (a GETSA); None when it is gone. Only the reply's fixed header is
    /// parsed: the attributes, which hold the keys, are never copied out of the
    /// (zeroized) receive buffer.
    fn traffic_of(&self, req: &Request) -> Option<(u64, u64)> {
        let mut got = None;
        self.transact(req, &mut |kind, body| {
            if kind == XFRM_MSG_NEWSA {
                got = sa_reply_traffic(body);
            }
        })
        .ok()?;
        got
    }

    pub fn add_sa(&self, sa: &SaSpec<'_>) -> Result<(), KernelError> {
        self.run(&self.add_sa_request(sa)?)
    }

    /// Deletes an SA; one that is already gone counts as deleted.
    pub fn del_sa(&self, dst: IpAddr, spi: u32) -> Result<(), KernelError> {
        self.run(&self.del_sa_request(dst, spi))
    }

    /// The bytes and packets an SA has carried so far; None when it is gone.
    pub fn sa_traffic(&self, dst: IpAddr, spi: u32) -> Option<(u64, u64)> {
        self.traffic_of(&self.getsa_request(dst, spi))
    }

    /// Deletes a policy; one that is already gone counts as deleted.
    pub fn del_policy(
        &self,
        src: TrafficSelector,
        dst: TrafficSelector,
        dir: Dir,
    ) -> Result<(), KernelError> {
        self.run(&self.del_policy_request(src, dst, dir))
    }
}

/// The async face of [`XfrmSocket`] for the tunnel driver: each request is encoded on
/// the caller's thread (so borrowed keys need not be `'static`) and sent and
/// acknowledged on tokio's blocking pool. Cheap to clone (one shared socket).
#[derive(Clone)]
pub struct Xfrm {
    sock: Arc<XfrmSocket>,
}

impl Xfrm {
    /// Opens the socket (socket(2) and bind(2): never waits).
    pub fn open() -> Result<Xfrm, KernelError> {
        Ok(Xfrm {
            sock: Arc::new(XfrmSocket::open()?),
        })
    }

    /// The blocking socket, for callers that may block (teardown in `Drop`).
    pub fn blocking(&self) -> &XfrmSocket {
        &self.sock
    }

    /// Runs `f` with the socket on tokio's blocking pool.
    async fn on_pool<R: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&XfrmSocket) -> R + Send + 'static,
    ) -> Result<R, KernelError> {
        let sock = self.sock.clone();
        tokio::task::spawn_blocking(move || f(&sock))
            .await
            .map_err(|e| KernelError::Netlink {
                what: what.to_string(),
                source: Box::new(e),
            })
    }

    async fn run(&self, req: Request) -> Result<(), KernelError> {
        let what = req.what.clone();
        self.on_pool(&what, move |s| s.run(&req)).await?
    }

    pub async fn add_sa(&self, sa: &SaSpec<'_>) -> Result<(), KernelError> {
        self.run(self.sock.add_sa_request(sa)?).await
    }

    /// [`Xfrm::add_sa`] for an SA that carries only `src` → `dst` ([`newsa_message_for`]).
    pub async fn add_sa_for(
        &self,
        sa: &SaSpec<'_>,
        src: TrafficSelector,
        dst: TrafficSelector,
    ) -> Result<(), KernelError> {
        self.run(self.sock.add_sa_for_request(sa, src, dst)?).await
    }

    /// Deletes an SA; one that is already gone counts as deleted.
    pub async fn del_sa(&self, dst: IpAddr, spi: u32) -> Result<(), KernelError> {
        self.run(self.sock.del_sa_request(dst, spi)).await
    }

    pub async fn add_policy(&self, p: &PolicySpec) -> Result<(), KernelError> {
        self.run(self.sock.add_policy_request(p)).await
    }

    /// What each SA `(destination, SPI)` has carried (bytes, packets), in order; None
    /// for one that is gone. One trip to the blocking pool for all of them.
    pub async fn sa_traffic(&self, sas: Vec<(IpAddr, u32)>) -> Vec<Option<(u64, u64)>> {
        let reqs: Vec<Request> = sas
            .iter()
            .map(|(dst, spi)| self.sock.getsa_request(*dst, *spi))
            .collect();
        let n = reqs.len();
        self.on_pool("read ESP SAs", move |s| {
            reqs.iter().map(|r| s.traffic_of(r)).collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; n])
    }
}

/// Undoes one journal entry of ours (an SA or a policy). Entries that do not parse are
/// left alone (the journal is only ever written by us, but it lives on disk).
pub fn undo(e: &super::Entry) -> Result<bool, KernelError> {
    let bad = |what: &str| KernelError::Errno {
        what: format!("journal: {what}"),
        errno: EINVAL,
    };
    match e {
        super::Entry::XfrmSa { dst, spi } => {
            let dst: IpAddr = dst.parse().map_err(|_| bad(dst))?;
            let spi =
                u32::from_str_radix(spi.trim_start_matches("0x"), 16).map_err(|_| bad(spi))?;
            XfrmSocket::open()?.del_sa(dst, spi).map(|_| true)
        }
        super::Entry::XfrmPolicy { dir, src, dst } => {
            let d = Dir::parse(dir).ok_or_else(|| bad(dir))?;
            let s = parse_ts(src).ok_or_else(|| bad(src))?;
            let t = parse_ts(dst).ok_or_else(|| bad(dst))?;
            XfrmSocket::open()?.del_policy(s, t, d).map(|_| true)
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

/// The destination of a selector, when its family and prefix make sense.
fn selector_destination(sel: &Selector) -> Option<TrafficSelector> {
    let addr: IpAddr = match sel.family {
        AF_INET if sel.prefixlen_d <= 32 => sel.daddr.to_ipv4().into(),
        AF_INET6 if sel.prefixlen_d <= 128 => sel.daddr.to_ipv6().into(),
        _ => return None,
    };
    Some(TrafficSelector {
        addr,
        prefix: sel.prefixlen_d,
    })
}

/// The expire and acquire messages of one netlink datagram, parsed by the crate
/// (lengths checked first, [`ext::parse_checked`]); anything else, anything cut
/// short, and anything after a malformed message is skipped.
pub fn parse_events(buf: &[u8]) -> Vec<XfrmEvent> {
    let mut out = Vec::new();
    for m in ext::messages(buf) {
        let Ok(m) = m else { break };
        let kind = m.message_type();
        if kind != XFRM_MSG_EXPIRE && kind != XFRM_MSG_ACQUIRE {
            continue;
        }
        match ext::parse_checked(kind, m.payload()) {
            Ok(XfrmMessage::Expire(e)) if e.expire.state.id.proto == IPPROTO_ESP => {
                out.push(XfrmEvent::Expired(Expired {
                    spi: e.expire.state.id.spi,
                    hard: e.expire.hard != 0,
                }));
            }
            Ok(XfrmMessage::Acquire(a)) if a.acquire.id.proto == IPPROTO_ESP => {
                // The reqid of the policy's first template.
                let reqid = a.nlas.iter().find_map(|n| match n {
                    XfrmAttrs::Template(t) => t.first().map(|t| t.reqid),
                    _ => None,
                });
                if let Some(reqid) = reqid {
                    out.push(XfrmEvent::Acquire {
                        reqid,
                        remote: selector_destination(&a.acquire.selector),
                    });
                }
            }
            _ => {}
        }
    }
    out
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
            errno: e.raw_os_error().unwrap_or(EIO),
        };
        let mut sock = netlink_sys::TokioSocket::new(NETLINK_XFRM).map_err(err)?;
        let groups = ext::group_mask(&[XFRMNLGRP_EXPIRE, XFRMNLGRP_ACQUIRE]);
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

/// How long [`probe_esp`] waits for its thread.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether this kernel can hold an ESP SA: adds and deletes a throwaway SA (loopback,
/// an SPI of our own range) in a scratch network namespace, made by a thread of its own
/// that unshares, so nothing is ever seen on the host and the namespace goes with the
/// thread (never a pooled thread, which would stay in the namespace). Where unsharing
/// is not allowed (no CAP_SYS_ADMIN), in ours: the SA lives for the moment between add
/// and delete and no policy points at it. The caller awaits the thread's answer
/// without blocking its own. `Ok` and `Err` are the sentence for the one log line of
/// `auto`.
pub async fn probe_esp() -> Result<String, String> {
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
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = std::thread::Builder::new()
        .name("postern-esp-probe".into())
        .spawn(move || {
            let _ = tx.send(probe());
        })
    {
        return Err(format!("cannot start the ESP probe thread: {e}"));
    }
    match tokio::time::timeout(PROBE_TIMEOUT, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the ESP probe thread failed".into()),
        Err(_) => Err(format!(
            "the ESP probe did not finish within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

fn probe_here() -> Result<(), KernelError> {
    let x = XfrmSocket::open()?;
    let keys = EspKeys {
        encryption: Zeroizing::new(vec![0x5a; 16]),
        integrity: Zeroizing::new(vec![0xa5; 32]),
    };
    let lo = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
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
        cross_family: false,
    };
    x.add_sa(&sa)?;
    x.del_sa(lo, spi)
}

#[cfg(test)]
mod live;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_migrate;
