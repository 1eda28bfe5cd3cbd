//! The kernel datapath: the negotiated ESP SAs go into the kernel's XFRM (through
//! [`crate::kernel::xfrm`]), with policies out / in / fwd for each pair of traffic
//! selectors, for kernels that have ESP. No device: the virtual IP becomes a secondary
//! address of the interface towards the gateway (the seed article's technique), and
//! the routes to the remote networks leave through it with `src` = virtual IP; the
//! kernel's policies then send that traffic through the SAs.
//!
//! Every SA, policy, address and route is journaled before it is made and undone when
//! the datapath is dropped, or by `postern-helper cleanup` after a crash.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use postern_engine::ike::{ChildSa, Encapsulation, TrafficSelector};

use super::DatapathError;
use crate::kernel::xfrm::{self, Dir, PolicySpec, SaSpec, Xfrm};
use crate::kernel::{self, Entry, Journal};

/// Anti-replay window of the kernel SAs (packets).
const REPLAY_WINDOW: u8 = 32;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct KernelDatapath {
    xfrm: Xfrm,
    journal: Option<Journal>,
    /// Our outer address and the gateway's.
    local: IpAddr,
    gateway: IpAddr,
    vip: IpAddr,
    /// The interface towards the gateway (holds the virtual IP).
    dev: String,
    reqid: u32,
    /// ESP in UDP: (our port, the gateway's port).
    encap: Option<(u16, u16)>,
    policies: Vec<(TrafficSelector, TrafficSelector)>,
    routes: Vec<TrafficSelector>,
    /// Installed pairs, oldest first: (inbound SPI, outbound SPI, remote selector).
    sas: Vec<(u32, u32, TrafficSelector)>,
    /// Inner addresses of the other family (IPv6 beside IPv4), added with their first SA.
    more_vips: Vec<IpAddr>,
    /// What the pairs deleted so far carried (sent, received: packets, bytes).
    retired: [u64; 4],
}

impl KernelDatapath {
    /// Puts the virtual IP on the interface towards `gateway`.
    pub fn start(
        local: IpAddr,
        gateway: IpAddr,
        vip: IpAddr,
        encap: Option<(u16, u16)>,
    ) -> Result<KernelDatapath, DatapathError> {
        let xfrm = Xfrm::open()?;
        let (dev, _via) = kernel::net::route_to(gateway)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let reqid = xfrm::REQID_BASE + ((std::process::id() & 0xff) << 8) + (n & 0xff);
        let mut journal = Journal::create(
            &kernel::journal::run_dir(),
            &format!("xfrm{:x}", reqid & 0xffff),
        )?;
        let prefix = if vip.is_ipv4() { 32 } else { 128 };
        if vip != local {
            kernel::net::add_addr(&mut journal, vip, prefix, &dev)?;
        }
        Ok(KernelDatapath {
            xfrm,
            journal: Some(journal),
            local,
            gateway,
            vip,
            more_vips: Vec::new(),
            dev,
            reqid,
            encap,
            policies: Vec::new(),
            routes: Vec::new(),
            sas: Vec::new(),
            retired: [0; 4],
        })
    }

    pub fn vip(&self) -> IpAddr {
        self.vip
    }

    pub fn reqid(&self) -> u32 {
        self.reqid
    }

    fn journal(&mut self) -> Result<&mut Journal, DatapathError> {
        self.journal
            .as_mut()
            .ok_or(DatapathError::Unsupported("SAs after teardown"))
    }

    /// Installs an SA pair, and the policies and route of its selectors (once). The
    /// XFRM requests run on tokio's blocking pool ([`Xfrm`]).
    pub async fn install(&mut self, c: &ChildSa) -> Result<(), DatapathError> {
        let mode = match c.encapsulation {
            Encapsulation::Tunnel => xfrm::MODE_TUNNEL,
            Encapsulation::Transport => xfrm::MODE_TRANSPORT,
        };
        let encap = if c.udp_encapsulation {
            self.encap
        } else {
            None
        };
        let (local, gateway, reqid) = (self.local, self.gateway, self.reqid);
        // Any pair of another family than the gateway's (IKEv2 may carry both in one SA).
        let cross_family = c
            .local_ts
            .or(c.remote_ts)
            .into_iter()
            .chain(c.more_ts.iter().map(|p| p.1))
            .any(|t| t.addr.is_ipv4() != gateway.is_ipv4());
        let host = |a: IpAddr| TrafficSelector {
            addr: a,
            prefix: if a.is_ipv4() { 32 } else { 128 },
        };
        let ours = c.local_ts.unwrap_or(host(local));
        let theirs = c.remote_ts.unwrap_or(host(gateway));
        // Tunnel mode: each SA carries its own selectors, so the pairs of several
        // remote networks (IKEv2 children, IKEv1 quick modes) under our one reqid
        // each take only their network's packets. An SA with more than one selector
        // pair (IKEv2's IPv4 + IPv6 in one child) keeps the any-selector: the kernel
        // matches an SA's selector on input, and one selector cannot name both.
        let selectors = mode == xfrm::MODE_TUNNEL && !cross_family && c.more_ts.is_empty();
        for (src, dst, spi, keys, sel) in [
            (gateway, local, c.spi_in, &c.keys_in, (theirs, ours)),
            (local, gateway, c.spi_out, &c.keys_out, (ours, theirs)),
        ] {
            self.journal()?.record(Entry::XfrmSa {
                dst: dst.to_string(),
                spi: format!("{spi:#010x}"),
            })?;
            let encap = encap.map(|(ours, theirs)| {
                if src == local {
                    (ours, theirs)
                } else {
                    (theirs, ours)
                }
            });
            let spec = SaSpec {
                src,
                dst,
                spi,
                reqid,
                mode,
                cipher: c.proposal.cipher,
                auth: c.proposal.auth,
                keys,
                encap,
                replay_window: REPLAY_WINDOW,
                lifetime_kb: c.lifetime_kb,
                cross_family,
            };
            if selectors {
                self.xfrm.add_sa_for(&spec, sel.0, sel.1).await?;
            } else {
                self.xfrm.add_sa(&spec).await?;
            }
        }
        self.sas.push((c.spi_in, c.spi_out, theirs));
        self.install_pair(mode, c.local_ts, ours, theirs).await?;
        for (l, r) in &c.more_ts {
            self.install_pair(mode, Some(*l), *l, *r).await?;
        }
        Ok(())
    }

    /// The policies and route of one selector pair (once).
    async fn install_pair(
        &mut self,
        mode: u8,
        local_ts: Option<TrafficSelector>,
        ours: TrafficSelector,
        theirs: TrafficSelector,
    ) -> Result<(), DatapathError> {
        let (local, gateway, reqid) = (self.local, self.gateway, self.reqid);
        if !self.policies.contains(&(ours, theirs)) {
            for (dir, src, dst, tsrc, tdst) in [
                (Dir::Out, ours, theirs, local, gateway),
                (Dir::In, theirs, ours, gateway, local),
                (Dir::Fwd, theirs, ours, gateway, local),
            ] {
                if mode == xfrm::MODE_TRANSPORT && dir == Dir::Fwd {
                    continue;
                }
                self.journal()?.record(Entry::XfrmPolicy {
                    dir: dir.name().into(),
                    src: src.to_string(),
                    dst: dst.to_string(),
                })?;
                self.xfrm
                    .add_policy(&PolicySpec {
                        src,
                        dst,
                        dir,
                        tmpl_src: tsrc,
                        tmpl_dst: tdst,
                        reqid,
                        mode,
                    })
                    .await?;
            }
            self.policies.push((ours, theirs));
        }
        // Tunnel mode: route the remote network out of the gateway's interface with the
        // virtual IP as source (a 0/0 network is left to the policies and the default
        // route). Transport mode needs no route.
        if mode == xfrm::MODE_TUNNEL && theirs.prefix > 0 && !self.routes.contains(&theirs) {
            // From our inner address of the network's family (an IPv6 one beside the
            // IPv4 one goes on the interface with its first SA).
            let src = match local_ts {
                Some(ts) if ts.is_host() && ts.addr.is_ipv4() == theirs.addr.is_ipv4() => ts.addr,
                _ if self.vip.is_ipv4() == theirs.addr.is_ipv4() => self.vip,
                _ => return Err(DatapathError::NoVirtualIp),
            };
            let dev = self.dev.clone();
            if src != self.vip && src != self.local && !self.more_vips.contains(&src) {
                let prefix = if src.is_ipv4() { 32 } else { 128 };
                kernel::net::add_addr(self.journal()?, src, prefix, &dev)?;
                self.more_vips.push(src);
            }
            kernel::net::add_route(self.journal()?, theirs.addr, theirs.prefix, &dev, src)?;
            self.routes.push(theirs);
        }
        Ok(())
    }

    /// The inbound SPI of the pair that holds `spi` (either direction).
    pub fn pair_of(&self, spi: u32) -> Option<u32> {
        self.sas
            .iter()
            .find(|(i, o, _)| *i == spi || *o == spi)
            .map(|(i, _, _)| *i)
    }

    /// For the kernel's acquire (`reqid`, the policy's remote selector): the inbound SPI
    /// of the newest pair that the policy's traffic should have used, if the acquire is
    /// about our policies.
    pub fn pair_for_acquire(&self, reqid: u32, remote: Option<TrafficSelector>) -> Option<u32> {
        if reqid != self.reqid {
            return None;
        }
        let newest = |want: Option<TrafficSelector>| {
            self.sas
                .iter()
                .rev()
                .find(|(_, _, r)| want.is_none_or(|w| *r == w))
                .map(|(i, _, _)| *i)
        };
        newest(remote).or_else(|| newest(None))
    }

    /// The installed SAs as (destination, SPI): inbound then outbound of each pair.
    fn sa_ids(&self) -> Vec<(IpAddr, u32)> {
        self.sas
            .iter()
            .flat_map(|s| [(self.local, s.0), (self.gateway, s.1)])
            .collect()
    }

    /// What each installed pair has carried, from the kernel's SA counters (inner
    /// bytes); the totals add what the deleted pairs had carried. Read on tokio's
    /// blocking pool.
    pub async fn counters(&self) -> crate::tunnel::Counters {
        let traffic = self.xfrm.sa_traffic(self.sa_ids()).await;
        self.fold_counters(&traffic)
    }

    /// [`Self::counters`] on the caller's thread (teardown).
    fn counters_blocking(&self) -> crate::tunnel::Counters {
        let x = self.xfrm.blocking();
        let traffic: Vec<_> = self
            .sa_ids()
            .into_iter()
            .map(|(dst, spi)| x.sa_traffic(dst, spi))
            .collect();
        self.fold_counters(&traffic)
    }

    /// The counters from `traffic`, (bytes, packets) of each SA in [`Self::sa_ids`]'s
    /// order.
    fn fold_counters(&self, traffic: &[Option<(u64, u64)>]) -> crate::tunnel::Counters {
        let [tx_packets, tx_bytes, rx_packets, rx_bytes] = self.retired;
        let mut c = crate::tunnel::Counters {
            tx_packets,
            tx_bytes,
            rx_packets,
            rx_bytes,
            ..Default::default()
        };
        for (i, (spi_in, spi_out, _)) in self.sas.iter().copied().enumerate() {
            let get = |k: usize| traffic.get(k).copied().flatten().unwrap_or_default();
            let (in_bytes, in_packets) = get(2 * i);
            let (out_bytes, out_packets) = get(2 * i + 1);
            c.rx_bytes += in_bytes;
            c.rx_packets += in_packets;
            c.tx_bytes += out_bytes;
            c.tx_packets += out_packets;
            c.sas.push(crate::tunnel::SaCounters {
                spi_in,
                spi_out,
                in_bytes,
                in_packets,
                out_bytes,
                out_packets,
            });
        }
        c
    }

    /// Deletes an SA pair (rekeyed away or deleted by the gateway); the policies stay
    /// for the other SAs and go at teardown.
    pub async fn remove(&mut self, spi_in: u32, spi_out: u32) {
        if !self.sas.iter().any(|s| (s.0, s.1) == (spi_in, spi_out)) {
            return;
        }
        self.sas.retain(|s| (s.0, s.1) != (spi_in, spi_out));
        let traffic = self
            .xfrm
            .sa_traffic(vec![(self.local, spi_in), (self.gateway, spi_out)])
            .await;
        let get = |k: usize| traffic.get(k).copied().flatten().unwrap_or_default();
        let ((rx_b, rx_p), (tx_b, tx_p)) = (get(0), get(1));
        for (r, v) in self.retired.iter_mut().zip([tx_p, tx_b, rx_p, rx_b]) {
            *r += v;
        }
        let _ = self.xfrm.del_sa(self.local, spi_in).await;
        let _ = self.xfrm.del_sa(self.gateway, spi_out).await;
    }

    /// Points DNS at the tunnel's servers (resolv.conf, journaled).
    pub fn set_dns(
        &mut self,
        cfg: &kernel::dns::DnsConfig,
        tunnel: &str,
    ) -> Result<String, DatapathError> {
        let Some(j) = self.journal.as_mut() else {
            return Ok("dns: no journal, left alone".into());
        };
        Ok(kernel::dns::apply(j, cfg, tunnel)?)
    }

    pub(super) fn teardown(&mut self) -> String {
        if self.journal.is_none() {
            return String::new();
        }
        let c = self.counters_blocking();
        let Some(j) = self.journal.take() else {
            return String::new();
        };
        let n = j.entries().len();
        let errors = kernel::net::undo(j.entries());
        if errors.is_empty() {
            j.finish();
        }
        let mut line = format!(
            "datapath stopped: kernel XFRM reqid {:#x}, {n} objects removed; sent {} packets ({} bytes), received {} packets ({} bytes)",
            self.reqid, c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes
        );
        if !errors.is_empty() {
            line.push_str(&format!("; errors: {}", errors.join("; ")));
        }
        line
    }
}

/// The safety net, as for the userspace datapath: silent (the driver stops it
/// explicitly and reports the line).
impl Drop for KernelDatapath {
    fn drop(&mut self) {
        if self.journal.is_some() {
            let _ = self.teardown();
        }
    }
}

/// IKEv2 MOBIKE: the tunnel's outer address moved.
impl KernelDatapath {
    /// Our outer address is now `local` (same gateway): every policy's template and
    /// every SA pair move there with `XFRM_MSG_MIGRATE` (why that request and not
    /// new states: [`xfrm::migrate`]), ESP in UDP with `encap` (our port, the
    /// gateway's) when given, else as the SAs were. `was_udp`: the SAs are in UDP now
    /// (a move cannot take that off). The journal names the moved SAs before the
    /// kernel moves them, and forgets the old names once they are gone, so `cleanup`
    /// after a crash removes exactly what is installed. Pairs the kernel did not move
    /// (a rekey's two pairs share the policies, and one request moves one SA per
    /// policy) are deleted: the newest pair carries the traffic. When another
    /// interface now reaches the gateway, the inner addresses and routes move to it
    /// (`move_device`). Returns the line saying what moved; an error leaves the
    /// journal naming both the old and the new SAs (the caller negotiates again and
    /// stops this datapath).
    pub async fn migrate(
        &mut self,
        local: IpAddr,
        encap: Option<(u16, u16)>,
        was_udp: bool,
    ) -> Result<String, DatapathError> {
        let old = self.local;
        if was_udp && encap.is_none() {
            return Err(DatapathError::CannotMove(
                "ESP in UDP cannot be turned off in place (the NAT is gone)",
            ));
        }
        if self.vip == self.local {
            return Err(DatapathError::CannotMove(
                "MOBIKE moves tunnel mode SAs only (RFC 4555)",
            ));
        }
        if local.is_ipv4() != self.gateway.is_ipv4() {
            return Err(DatapathError::CannotMove(
                "the new outer address is of the other family",
            ));
        }
        // Another interface towards the gateway: the inner address and the routes
        // follow once the SAs have moved.
        let (dev, _via) = kernel::net::route_to(self.gateway)?;
        let new_dev = (dev != self.dev).then_some(dev);
        if self.sas.is_empty() {
            return Err(DatapathError::CannotMove("no SA installed"));
        }
        let gateway = self.gateway;
        let pairs: Vec<(u32, u32)> = self.sas.iter().map(|s| (s.0, s.1)).collect();
        if old != local {
            for (spi_in, _) in &pairs {
                self.journal()?.record(Entry::XfrmSa {
                    dst: local.to_string(),
                    spi: format!("{spi_in:#010x}"),
                })?;
            }
        }
        let mut moves = Vec::new();
        for (ours, theirs) in self.policies.clone() {
            for (dir, src, dst, from, to, enc) in [
                (
                    Dir::Out,
                    ours,
                    theirs,
                    (old, gateway),
                    (local, gateway),
                    encap,
                ),
                (
                    Dir::In,
                    theirs,
                    ours,
                    (gateway, old),
                    (gateway, local),
                    encap.map(|(a, b)| (b, a)),
                ),
                (
                    Dir::Fwd,
                    theirs,
                    ours,
                    (gateway, old),
                    (gateway, local),
                    encap.map(|(a, b)| (b, a)),
                ),
            ] {
                moves.push(xfrm::migrate::MigrateSpec {
                    src,
                    dst,
                    dir,
                    old_src: from.0,
                    old_dst: from.1,
                    new_src: to.0,
                    new_dst: to.1,
                    reqid: self.reqid,
                    mode: xfrm::MODE_TUNNEL,
                    encap: enc,
                });
            }
        }
        if let Err(e) = self.xfrm.migrate(moves).await {
            return Err(match e {
                kernel::KernelError::Errno { errno, .. }
                    if errno == xfrm::migrate::MIGRATE_UNSUPPORTED =>
                {
                    DatapathError::CannotMove(
                        "this kernel cannot move SAs (built without CONFIG_XFRM_MIGRATE)",
                    )
                }
                e => e.into(),
            });
        }
        // Which pairs moved: the inbound SA is found at the new address, the outbound
        // one (same destination) has the new source.
        let ids: Vec<(IpAddr, u32)> = pairs
            .iter()
            .flat_map(|(i, o)| [(local, *i), (gateway, *o)])
            .collect();
        let found = self.xfrm.sa_sources(ids).await;
        let mut moved = 0;
        let mut dropped = 0;
        for (k, (spi_in, spi_out)) in pairs.iter().copied().enumerate() {
            let inb = found.get(2 * k).copied().flatten() == Some(gateway);
            let outb = found.get(2 * k + 1).copied().flatten() == Some(local);
            if inb && outb {
                moved += 1;
                continue;
            }
            // Left behind: deleted wherever its halves are now.
            self.sas.retain(|s| (s.0, s.1) != (spi_in, spi_out));
            for dst in [old, local] {
                let _ = self.xfrm.del_sa(dst, spi_in).await;
            }
            let _ = self.xfrm.del_sa(gateway, spi_out).await;
            dropped += 1;
        }
        if moved == 0 {
            return Err(DatapathError::CannotMove("the kernel moved no SA pair"));
        }
        self.local = local;
        if encap.is_some() {
            self.encap = encap;
        }
        if old != local {
            let gone = old.to_string();
            self.journal()?
                .retain(|e| !matches!(e, Entry::XfrmSa { dst, .. } if *dst == gone))?;
        }
        let moved_dev = match new_dev {
            Some(dev) => Some(self.move_device(dev)?),
            None => None,
        };
        let mut line = format!(
            "datapath kernel moved: {moved} SA pair(s) and {} policies moved to {local} <-> {gateway}{} (XFRM_MSG_MIGRATE)",
            self.policies.len() * 3,
            if encap.is_some() || was_udp {
                ", esp-in-udp"
            } else {
                ""
            }
        );
        if dropped > 0 {
            line.push_str(&format!(
                "; {dropped} older pair(s) left behind by the kernel deleted"
            ));
        }
        if let Some(m) = moved_dev {
            line.push_str(&format!("; {m}"));
        }
        Ok(line)
    }

    /// The gateway is now reached by `dev`: the inner addresses and the routes to the
    /// remote networks move there from the old interface (which may be gone, and its
    /// addresses and routes with it). Each new one is journaled before it is made; the
    /// old ones are removed and forgotten. Returns what moved, for the log line.
    fn move_device(&mut self, dev: String) -> Result<String, DatapathError> {
        const EEXIST: i32 = 17;
        let old = std::mem::replace(&mut self.dev, dev.clone());
        let local = self.local;
        let vips: Vec<IpAddr> = std::iter::once(self.vip)
            .chain(self.more_vips.iter().copied())
            .filter(|v| *v != local)
            .collect();
        for v in &vips {
            let prefix = if v.is_ipv4() { 32 } else { 128 };
            match kernel::net::add_addr(self.journal()?, *v, prefix, &dev) {
                Err(kernel::KernelError::Errno { errno, .. }) if errno == EEXIST => {}
                r => r?,
            }
        }
        // The routes: the old one out (the same destination in our table), the new
        // one in. Inner packets in between still match the XFRM policies.
        let old_routes: Vec<Entry> = self
            .journal()?
            .entries()
            .iter()
            .filter(|e| matches!(e, Entry::Route { dev: d, .. } if *d == old))
            .cloned()
            .collect();
        for e in &old_routes {
            let Entry::Route { dst, src, .. } = e else {
                continue;
            };
            let _ = kernel::net::undo(std::slice::from_ref(e));
            let forget = e.clone();
            self.journal()?.retain(|x| *x != forget)?;
            let (Some((addr, prefix)), Ok(src)) = (
                dst.split_once('/')
                    .and_then(|(a, p)| Some((a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?))),
                src.parse::<IpAddr>(),
            ) else {
                continue;
            };
            kernel::net::add_route(self.journal()?, addr, prefix, &dev, src)?;
        }
        let old_addrs: Vec<Entry> = self
            .journal()?
            .entries()
            .iter()
            .filter(|e| matches!(e, Entry::Addr { dev: d, .. } if *d == old))
            .cloned()
            .collect();
        for e in &old_addrs {
            let _ = kernel::net::undo(std::slice::from_ref(e));
            let forget = e.clone();
            self.journal()?.retain(|x| *x != forget)?;
        }
        Ok(format!(
            "inner address{} and {} route(s) moved from {old} to {dev}",
            if vips.len() == 1 { "" } else { "es" },
            old_routes.len()
        ))
    }
}
