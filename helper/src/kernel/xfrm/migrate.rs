//! Moving the kernel's SAs and policies to new outer addresses (IKEv2 MOBIKE, RFC 4555)
//! with `XFRM_MSG_MIGRATE`.
//!
//! Why MIGRATE and not "add the new states, update the policies, delete the old ones":
//!
//! - **It loses nothing.** For each policy the kernel, under its own locks, clones the
//!   SA with the new addresses, inserts it, points the policy's template at the new
//!   addresses and only then deletes the old SA. From userspace the outbound SA cannot
//!   be made before it is broken: the new one has the same (destination, SPI, ESP)
//!   triple, so `NEWSA` is refused (`EEXIST`) until the old one is deleted, and in that
//!   gap outbound packets find no SA (dropped, and an acquire that would make us
//!   negotiate a needless CHILD_SA).
//! - **The sequence numbers and the replay window are exact.** The clone carries the
//!   outbound sequence number, the replay state and the lifetime counters (bytes,
//!   packets: the volume lifetime goes on). Reading them with `GETSA` and writing them
//!   into a `NEWSA` races the packets sent in between (sequence numbers sent twice,
//!   which the gateway's replay window drops), unless a margin is skipped.
//! - **The keys stay in the kernel**: nothing is copied out of the engine again.
//!
//! What it costs: a kernel built with `CONFIG_XFRM_MIGRATE` (Debian's and Fedora's
//! are; without it the kernel answers `ENOPROTOOPT` and the tunnel is negotiated
//! again, [`MIGRATE_UNSUPPORTED`]); the encapsulation can be turned on or its ports
//! changed (`XFRMA_ENCAP`, kernels since 4.15) but not turned off (a clone without
//! `XFRMA_ENCAP` keeps the old one), so a NAT that disappears means a new negotiation;
//! and one request moves at most one SA per policy (the first state the kernel finds
//! with the old addresses and our reqid), so while a CHILD_SA rekey overlaps, the
//! datapath checks which SAs moved and deletes the ones left behind
//! (`KernelDatapath::migrate`).

use std::net::IpAddr;

use netlink_packet_xfrm::{
    Address, EncapTmpl, IPPROTO_ESP, MigrateMessage, UDP_ENCAP_ESPINUDP, UserMigrate, UserPolicyId,
    UserSaInfo, XFRM_MSG_NEWSA, XfrmAttrs, XfrmMessage,
};
use postern_engine::ike::TrafficSelector;

use super::{AF_INET, AF_INET6, Dir, Request, Xfrm, XfrmSocket, family, selector};
use crate::kernel::KernelError;

/// The errno of a kernel built without `CONFIG_XFRM_MIGRATE`.
pub const MIGRATE_UNSUPPORTED: i32 = 92; // ENOPROTOOPT

/// One policy (and the one SA of ours it finds) to move: the policy `src` → `dst` in
/// `dir`, whose template (and SA) runs `old_src` → `old_dst`, now `new_src` →
/// `new_dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateSpec {
    pub src: TrafficSelector,
    pub dst: TrafficSelector,
    pub dir: Dir,
    pub old_src: IpAddr,
    pub old_dst: IpAddr,
    pub new_src: IpAddr,
    pub new_dst: IpAddr,
    pub reqid: u32,
    pub mode: u8,
    /// ESP in UDP for the moved SA, `(source port, destination port)` as the SA
    /// sends; `None` keeps the SA's encapsulation as it is.
    pub encap: Option<(u16, u16)>,
}

/// `XFRM_MSG_MIGRATE` for `m`: the policy's id (selector and direction), one
/// `XFRMA_MIGRATE` entry (old and new addresses, ESP, mode, reqid), and the new
/// `XFRMA_ENCAP` when ESP goes in UDP.
pub fn migrate_message(m: &MigrateSpec) -> XfrmMessage {
    let entry = UserMigrate {
        old_daddr: Address::from_ip(&m.old_dst),
        old_saddr: Address::from_ip(&m.old_src),
        new_daddr: Address::from_ip(&m.new_dst),
        new_saddr: Address::from_ip(&m.new_src),
        proto: IPPROTO_ESP,
        mode: m.mode,
        reserved: 0,
        reqid: m.reqid,
        old_family: family(m.old_dst),
        new_family: family(m.new_dst),
    };
    let mut nlas = vec![XfrmAttrs::Migrate(entry)];
    if let Some((sport, dport)) = m.encap {
        nlas.push(XfrmAttrs::EncapsulationTemplate(EncapTmpl {
            encap_type: UDP_ENCAP_ESPINUDP,
            encap_sport: sport,
            encap_dport: dport,
            encap_oa: Address::default(),
        }));
    }
    XfrmMessage::Migrate(MigrateMessage {
        user_policy_id: UserPolicyId {
            selector: selector(Some(m.src), Some(m.dst)),
            index: 0,
            direction: m.dir.number(),
        },
        nlas,
    })
}

/// The source address of the SA in a `NEWSA` reply body (the fixed `UserSaInfo`
/// only; the attributes, with the keys, are not parsed).
pub fn sa_reply_source(body: &[u8]) -> Option<IpAddr> {
    let info = UserSaInfo::parse(body).ok()?;
    match info.family {
        AF_INET => Some(info.saddr.to_ipv4().into()),
        AF_INET6 => Some(info.saddr.to_ipv6().into()),
        _ => None,
    }
}

impl XfrmSocket {
    fn migrate_request(&self, m: &MigrateSpec) -> Request {
        self.request(
            format!(
                "move policy {} {} -> {} from {} -> {} to {} -> {}",
                m.dir.name(),
                m.src,
                m.dst,
                m.old_src,
                m.old_dst,
                m.new_src,
                m.new_dst
            ),
            migrate_message(m),
            0,
        )
    }

    /// Moves one policy and the SA of ours it finds (see the module's comment).
    pub fn migrate(&self, m: &MigrateSpec) -> Result<(), KernelError> {
        self.run(&self.migrate_request(m))
    }

    /// The source address of the ESP SA `spi` towards `dst`; None when there is none.
    pub fn sa_source(&self, dst: IpAddr, spi: u32) -> Option<IpAddr> {
        let mut got = None;
        self.transact(&self.getsa_request(dst, spi), &mut |kind, body| {
            if kind == XFRM_MSG_NEWSA {
                got = sa_reply_source(body);
            }
        })
        .ok()?;
        got
    }
}

impl Xfrm {
    /// Moves the policies (and the SAs they find) in order, on one trip to the
    /// blocking pool; stops at the first refusal.
    pub async fn migrate(&self, moves: Vec<MigrateSpec>) -> Result<(), KernelError> {
        self.on_pool("move XFRM policies", move |s| {
            moves.iter().try_for_each(|m| s.migrate(m))
        })
        .await?
    }

    /// The source address of each SA `(destination, SPI)`, in order; None for one
    /// that is not there.
    pub async fn sa_sources(&self, sas: Vec<(IpAddr, u32)>) -> Vec<Option<IpAddr>> {
        let n = sas.len();
        let sock = self.sock.clone();
        self.on_pool("read ESP SAs", move |_| {
            sas.iter()
                .map(|(dst, spi)| sock.sa_source(*dst, *spi))
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; n])
    }
}
