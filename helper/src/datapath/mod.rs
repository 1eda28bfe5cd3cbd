//! The userspace ESP datapath: ESP in UDP 4500 (RFC 3948) between a TUN device and
//! the gateway, for kernels without ESP (DESIGN.md, "Datapath and host networking").
//!
//! Two threads share the work, one per direction:
//! - outbound, a thread of its own: read from the TUN device, which does segmentation
//!   offload where the kernel allows (one read may be a 64 kB TCP segment, split by
//!   tun-rs into packets of the tunnel MTU), each packet in a reused buffer with room
//!   for the ESP header in front; pick the SA whose remote traffic selector holds the
//!   destination, count it against the SA's volume lifetime, encapsulate in place, and
//!   send up to 32 per `sendmmsg` ([`batch`]) on the NAT-T socket (a duplicate of the
//!   driver's); a NAT keepalive (one 0xFF byte) after 20 s without sending;
//! - inbound, in the tunnel driver's loop, which already receives on port 4500 (what
//!   is waiting is taken with one `recvmmsg`): IKE (behind the non-ESP marker) goes to
//!   the engine, everything else to [`Datapath::inbound`]: find the SA by SPI, check
//!   and decrypt in place, check the inner source against the SA's remote selector,
//!   write to the TUN device.
//!
//! Host changes (device, address, routes) go through [`crate::kernel`] and its
//! journal, and are undone when the [`Datapath`] is dropped.

mod active;
pub mod batch;
pub mod encap;
pub use postern_engine::esp;
pub mod gro;
pub mod kernel_esp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postern_engine::ike::{ChildSa, Encapsulation, TrafficSelector};
use tun_rs::{IDEAL_BATCH_SIZE, InterruptEvent, SyncDevice, VIRTIO_NET_HDR_LEN};

pub use active::{Active, Start};

use crate::kernel::{self, Entry, Journal, KernelError};
use esp::{EspError, InboundSa, OutboundSa};

/// RFC 3948 §4: keepalives every 20 s while nothing else is sent.
const NAT_KEEPALIVE: Duration = Duration::from_secs(20);
/// The outer path MTU we assume (the gateway's link).
const OUTER_MTU: usize = 1500;
/// Largest inner packet read from the TUN device.
const MAX_INNER: usize = 65535;
/// Most TUN reads gathered before the packets are sent (one small packet per read).
const MAX_GATHER_READS: usize = 64;
/// One receive buffer of the ESP socket: a UDP datagram, or a GRO run of them.
const RX_SLOT: usize = 65536;
/// Inbound packets staged for one GRO write at most (a receive batch and then some).
const STAGED: usize = 64;
const _: () = assert!(STAGED <= gro::MAX_BATCH && gro::HDR == VIRTIO_NET_HDR_LEN);

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("cannot create the TUN device: {0}")]
    Tun(#[source] std::io::Error),
    #[error("no free TUN device name (postern0..postern15 are taken)")]
    NoDeviceName,
    #[error("cannot share the NAT-T socket with the datapath: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot start the datapath thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("no randomness for ESP IVs: {0}")]
    Random(getrandom::Error),
    #[error("cannot install the ESP SA: {0}")]
    Esp(#[from] EspError),
    #[error(
        "no inner address: the gateway assigned none and the profile has no network.virtual_ip"
    )]
    NoVirtualIp,
    #[error("the userspace datapath does not do {0} yet")]
    Unsupported(&'static str),
    #[error("the kernel datapath cannot follow the move: {0}")]
    CannotMove(&'static str),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// Packet counters, shared by both directions.
#[derive(Default)]
struct Stats {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_dropped: AtomicU64,
}

struct Outbound {
    /// The remote networks the SA carries (IKEv2: an IPv6 one beside the IPv4 one).
    remotes: Vec<TrafficSelector>,
    sa: OutboundSa,
    life: ByteLife,
}

struct Inbound {
    /// Where inner packets may come from (any of them).
    remotes: Vec<TrafficSelector>,
    sa: InboundSa,
    life: ByteLife,
}

/// Where the datapath asks for a rekey (the inbound SPI of the pair), read by the
/// tunnel driver's loop.
pub type RekeySender = tokio::sync::mpsc::UnboundedSender<u32>;

/// The volume lifetime of one SA (the negotiated kilobytes, counted over the inner
/// packets as the kernel counts): a rekey of its pair is asked for once at 80 %, and
/// the SA carries nothing past 100 % (RFC 2407 4.5: the SA is then expired).
struct ByteLife {
    used: u64,
    packets: u64,
    /// 0: no volume lifetime.
    soft: u64,
    hard: u64,
    spi_in: u32,
    /// Until asked once.
    rekey: Option<RekeySender>,
}

impl ByteLife {
    fn new(kb: Option<u64>, spi_in: u32, rekey: Option<RekeySender>) -> ByteLife {
        let hard = kb.map_or(0, |k| k.saturating_mul(1024));
        ByteLife {
            used: 0,
            packets: 0,
            soft: hard - hard / 5,
            hard,
            spi_in,
            rekey,
        }
    }

    /// Counts a packet of `n` bytes; false when they would cross the hard limit (it
    /// must not go). Asks for the rekey when the soft limit is reached.
    fn charge(&mut self, n: usize) -> bool {
        let used = self.used.saturating_add(n as u64);
        if self.hard != 0 && used > self.hard {
            return false;
        }
        self.used = used;
        self.packets += 1;
        if self.hard == 0 {
            return true;
        }
        if used >= self.soft
            && let Some(tx) = self.rekey.take()
        {
            let _ = tx.send(self.spi_in);
        }
        true
    }
}

/// One tunnel's datapath: TUN device, SAs, worker thread, host changes.
pub struct Datapath {
    name: String,
    dev: Option<Arc<SyncDevice>>,
    journal: Option<Journal>,
    vip: IpAddr,
    /// Inner addresses of the other family on the device (an IPv6 address beside the
    /// IPv4 one, from Mode Config), added with the first SA that uses each.
    more_vips: Vec<IpAddr>,
    inbound: Vec<Inbound>,
    outbound: Arc<Mutex<Vec<Outbound>>>,
    routes: Vec<TrafficSelector>,
    /// Route everything (0.0.0.0/0 as 0/1 + 128/1) through the tunnel when an SA
    /// covers it; the gateway keeps its current path.
    full_tunnel: bool,
    /// `network.allow_lan`: with a full tunnel, the local networks stay routed outside
    /// it (`throw` routes in Postern's table; the tunnel's more specific networks win).
    pub allow_lan: bool,
    gateway: IpAddr,
    interrupt: Arc<InterruptEvent>,
    stopping: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    keepalive_ms: Arc<std::sync::atomic::AtomicU64>,
    /// ESP in UDP (else raw ESP, IP protocol 50).
    udp: bool,
    /// The TUN device does segmentation offload (virtio headers on every packet).
    vnet_hdr: bool,
    /// Decrypted inbound packets waiting for [`Datapath::flush_inbound`] (offload
    /// devices): each buffer a zero virtio header then the packet.
    staged: Vec<Vec<u8>>,
    n_staged: usize,
    /// Receive buffers of [`Datapath::drain_natt`], one area cut in [`RX_SLOT`] pieces
    /// (made at its first use; mapped, see [`big_area`], so its untouched pages cost
    /// no memory).
    rx_area: Option<memmap2::MmapMut>,
    /// The device's index when systemd-resolved holds our DNS settings for it.
    resolved_link: Option<u32>,
    /// Where volume-lifetime rekeys are asked for.
    rekey: Option<RekeySender>,
    /// The DNS settings made (a reconnect that keeps the device does not make them twice).
    dns_set: Option<kernel::dns::DnsConfig>,
}

/// A large zeroed buffer mapped from the kernel: its pages become resident only when
/// touched and go back to the system when it is dropped. A `Vec` of this size comes
/// from malloc, whose dynamic mmap threshold (raised by the first such free) serves the
/// next one from the heap, zeroed by hand and kept after the free: 16 MiB of RSS per
/// tunnel that stayed in the daemon after the tunnel closed (bench/cycles.sh).
fn big_area(len: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapMut::map_anon(len)
}

/// Device names not in use now, in order. Two tunnels starting at once may both see
/// a name free: the journal, created exclusively per name, decides which one takes it
/// ([`claim_device`]).
fn free_device_names() -> impl Iterator<Item = String> {
    (0..16)
        .map(|i| format!("postern{i}"))
        .filter(|n| !std::path::Path::new("/sys/class/net").join(n).exists())
}

/// Creates the TUN device under the first free name whose journal this helper could
/// create exclusively; a name another tunnel took between the look and the create
/// (journal there, or the device busy) is skipped.
fn claim_device(mtu: u16) -> Result<(String, Journal, tun_rs::SyncDevice), DatapathError> {
    let dir = kernel::journal::run_dir();
    for name in free_device_names() {
        let mut journal = match Journal::create_new(&dir, &name) {
            Ok(j) => j,
            Err(kernel::KernelError::Journal { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        journal.record(Entry::Link { dev: name.clone() })?;
        // With offload (IFF_VNET_HDR + TSO): the stack hands us TCP segments of up to
        // 64 kB in one read, which tun-rs splits; without it where the kernel refuses.
        let built = tun_rs::DeviceBuilder::new()
            .name(&name)
            .mtu(mtu)
            .offload(true)
            .build_sync()
            .or_else(|_| {
                tun_rs::DeviceBuilder::new()
                    .name(&name)
                    .mtu(mtu)
                    .build_sync()
            });
        match built {
            Ok(dev) => return Ok((name, journal, dev)),
            Err(e) => {
                journal.finish();
                if e.raw_os_error() == Some(16) {
                    // EBUSY: the device was made by someone else meanwhile.
                    continue;
                }
                return Err(DatapathError::Tun(e));
            }
        }
    }
    Err(DatapathError::NoDeviceName)
}

impl Datapath {
    /// Creates the TUN device with `vip` on it and starts the outbound worker, which
    /// sends on `socket`, a duplicate of the socket connected to the gateway (its port
    /// 4500 for ESP in UDP, or a raw IP protocol 50 socket for raw ESP).
    pub fn start(
        socket: OwnedFd,
        udp: bool,
        gateway: IpAddr,
        vip: IpAddr,
        mtu: u16,
        full_tunnel: bool,
    ) -> Result<Datapath, DatapathError> {
        let socket = UdpSocket::from(socket);
        let (name, journal, dev) = claim_device(mtu)?;
        let vnet_hdr = dev.tcp_gso();
        let dev = Arc::new(dev);
        let mut dp = Datapath {
            name,
            dev: Some(Arc::clone(&dev)),
            journal: Some(journal),
            vip,
            more_vips: Vec::new(),
            inbound: Vec::new(),
            outbound: Arc::new(Mutex::new(Vec::new())),
            routes: Vec::new(),
            full_tunnel,
            allow_lan: false,
            gateway,
            interrupt: Arc::new(InterruptEvent::new().map_err(DatapathError::Tun)?),
            stopping: Arc::new(AtomicBool::new(false)),
            worker: None,
            stats: Arc::new(Stats::default()),
            resolved_link: None,
            rekey: None,
            dns_set: None,
            udp,
            vnet_hdr,
            staged: Vec::new(),
            n_staged: 0,
            rx_area: None,
            keepalive_ms: Arc::new(std::sync::atomic::AtomicU64::new(
                NAT_KEEPALIVE.as_millis() as u64
            )),
        };
        // From here on, errors tear down through Drop.
        dev.set_nonblocking(true).map_err(DatapathError::Tun)?;
        let prefix = if vip.is_ipv4() { 32 } else { 128 };
        if let Some(j) = dp.journal.as_mut() {
            kernel::net::add_addr(j, vip, prefix, &dp.name)?;
        }
        kernel::net::link_up(&dp.name)?;
        // Room for bursts: the kernel's default receive buffer (~208 kB) holds only
        // three or four GSO trains of a fast sender, and what overflows is lost
        // (UdpRcvbufErrors; TCP inside then retransmits and backs off). Memory is
        // only used while packets wait. As root net.core.rmem_max does not apply (the
        // FORCE option); otherwise the kernel caps it there.
        raise_receive_buffer(&socket);
        // UDP GRO on the ESP socket: datagrams of a flow may arrive back to back in one
        // buffer ([`Datapath::drain_natt`] cuts them apart). Without it, one by one.
        if udp {
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::UdpGroSegment,
                &true,
            );
        }
        dp.spawn_worker(dev, socket)?;
        Ok(dp)
    }

    /// Starts the outbound worker sending on `socket`.
    fn spawn_worker(
        &mut self,
        dev: Arc<SyncDevice>,
        socket: UdpSocket,
    ) -> Result<(), DatapathError> {
        let worker = Outward {
            dev,
            socket,
            sas: Arc::clone(&self.outbound),
            interrupt: Arc::clone(&self.interrupt),
            stopping: Arc::clone(&self.stopping),
            stats: Arc::clone(&self.stats),
            keepalive_ms: Arc::clone(&self.keepalive_ms),
            gso: std::cell::Cell::new(self.udp),
        };
        self.worker = Some(
            std::thread::Builder::new()
                .name("postern-esp-out".into())
                .spawn(move || worker.run())
                .map_err(DatapathError::Thread)?,
        );
        Ok(())
    }

    /// Stops the outbound worker (its duplicate of the ESP socket is closed with it).
    fn stop_worker(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.interrupt.trigger();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// Between two negotiations (the network changed, the gateway was lost): the
    /// worker stops and closes its socket, every SA is forgotten, and the device, its
    /// address and the routes stay. What applications send meanwhile waits in the
    /// device's queue or is dropped there; nothing leaves outside the tunnel.
    pub fn park(&mut self) {
        self.stop_worker();
        self.inbound.clear();
        self.outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.n_staged = 0;
    }

    /// Whether a parked datapath can carry the next negotiation's SAs: the same
    /// gateway and the same inner address.
    pub fn can_resume(&self, gateway: IpAddr, vip: IpAddr) -> bool {
        self.journal.is_some() && self.dev.is_some() && self.gateway == gateway && self.vip == vip
    }

    /// Takes a parked datapath up again with the new negotiation's socket (a duplicate
    /// of its NAT-T socket, or its raw ESP socket); the SAs follow with
    /// [`Datapath::install`].
    pub fn resume(&mut self, socket: OwnedFd, udp: bool) -> Result<(), DatapathError> {
        self.park();
        self.move_socket(socket, udp)
    }

    /// The tunnel moved to another outer address (IKEv2 MOBIKE): the outbound worker
    /// sends on `socket` from now on (a duplicate of the new NAT-T socket, or a new
    /// raw ESP socket); the SAs with their sequence numbers and replay windows, the
    /// device, the inner address and the routes stay.
    pub fn move_socket(&mut self, socket: OwnedFd, udp: bool) -> Result<(), DatapathError> {
        self.stop_worker();
        let dev = self
            .dev
            .as_ref()
            .map(Arc::clone)
            .ok_or(DatapathError::Unsupported("a resume after teardown"))?;
        let socket = UdpSocket::from(socket);
        raise_receive_buffer(&socket);
        if udp {
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::UdpGroSegment,
                &true,
            );
        }
        self.udp = udp;
        self.stopping = Arc::new(AtomicBool::new(false));
        self.interrupt = Arc::new(InterruptEvent::new().map_err(DatapathError::Tun)?);
        self.spawn_worker(dev, socket)
    }

    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The packet counters so far (both directions), and each SA pair's.
    pub fn counters(&self) -> crate::tunnel::Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut sas: Vec<crate::tunnel::SaCounters> = self
            .inbound
            .iter()
            .map(|i| crate::tunnel::SaCounters {
                spi_in: i.sa.spi(),
                in_bytes: i.life.used,
                in_packets: i.life.packets,
                ..Default::default()
            })
            .collect();
        for o in self
            .outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if let Some(s) = sas.iter_mut().find(|s| s.spi_in == o.life.spi_in) {
                s.spi_out = o.sa.spi();
                s.out_bytes = o.life.used;
                s.out_packets = o.life.packets;
            }
        }
        crate::tunnel::Counters {
            tx_packets: get(&self.stats.tx_packets),
            tx_bytes: get(&self.stats.tx_bytes),
            tx_dropped: get(&self.stats.tx_dropped),
            rx_packets: get(&self.stats.rx_packets),
            rx_bytes: get(&self.stats.rx_bytes),
            rx_dropped: get(&self.stats.rx_dropped),
            sas,
        }
    }

    /// Installs an SA pair and routes its remote networks through the device (once).
    /// A newer SA for the same remote network takes over sending (rekey); the older
    /// inbound SA keeps receiving until it is deleted.
    pub fn install(&mut self, c: &ChildSa) -> Result<(), DatapathError> {
        if c.encapsulation != Encapsulation::Tunnel {
            return Err(DatapathError::Unsupported("transport mode"));
        }
        let pairs = c.ts_pairs();
        if pairs.is_empty() {
            return Err(DatapathError::Unsupported("SAs without traffic selectors"));
        }
        let remotes: Vec<TrafficSelector> = pairs.iter().map(|p| p.1).collect();
        let rng = crate::rng::os_rng().map_err(DatapathError::Random)?;
        let out = OutboundSa::new(c.spi_out, &c.proposal, &c.keys_out, rng)?;
        let inb = InboundSa::new(c.spi_in, &c.proposal, &c.keys_in)?;
        let lifetime_kb = c.lifetime_kb;
        self.inbound.push(Inbound {
            remotes: remotes.clone(),
            sa: inb,
            life: ByteLife::new(lifetime_kb, c.spi_in, self.rekey.clone()),
        });
        {
            let mut sas = self.outbound.lock().unwrap_or_else(|e| e.into_inner());
            sas.retain(|o| !o.remotes.iter().any(|r| remotes.contains(r)));
            sas.push(Outbound {
                remotes,
                sa: out,
                life: ByteLife::new(lifetime_kb, c.spi_in, self.rekey.clone()),
            });
        }
        for (local, remote) in pairs {
            self.route_network(local, remote)?;
        }
        Ok(())
    }

    /// Routes one remote network of an SA through the device (once), from our inner
    /// address of its family (`local`, else the device's address).
    fn route_network(
        &mut self,
        local: Option<TrafficSelector>,
        remote: TrafficSelector,
    ) -> Result<(), DatapathError> {
        // A gateway may propose 0.0.0.0/0 for its side (Cisco Unity): the SA can carry
        // anything, but only the profile's split networks are routed, unless the
        // profile asked for a full tunnel.
        if self.routes.contains(&remote) || (remote.prefix == 0 && !self.full_tunnel) {
            return Ok(());
        }
        // The source of the routes: our inner address of the network's family (an
        // IPv6 one beside the IPv4 one goes on the device with its first SA).
        let src = match local {
            Some(ts) if ts.is_host() && ts.addr.is_ipv4() == remote.addr.is_ipv4() => ts.addr,
            _ if self.vip.is_ipv4() == remote.addr.is_ipv4() => self.vip,
            _ => return Err(DatapathError::NoVirtualIp),
        };
        let Some(j) = self.journal.as_mut() else {
            return Ok(());
        };
        if src != self.vip && !self.more_vips.contains(&src) {
            let prefix = if src.is_ipv4() { 32 } else { 128 };
            kernel::net::add_addr(j, src, prefix, &self.name)?;
            self.more_vips.push(src);
        }
        if remote.prefix == 0 {
            // The gateway keeps the path it has now, then two halves of the address
            // space (more specific than any default route, which stays untouched).
            // A gateway of the other family needs no exception.
            if remote.addr.is_ipv4() == self.gateway.is_ipv4() {
                let (dev, via) = kernel::net::route_to(self.gateway)?;
                kernel::net::add_bypass(j, self.gateway, &dev, via)?;
            }
            let halves: [(IpAddr, u8); 2] = if remote.addr.is_ipv4() {
                [
                    (Ipv4Addr::UNSPECIFIED.into(), 1),
                    (Ipv4Addr::new(128, 0, 0, 0).into(), 1),
                ]
            } else {
                [
                    (Ipv6Addr::UNSPECIFIED.into(), 1),
                    (Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0).into(), 1),
                ]
            };
            for (addr, prefix) in halves {
                kernel::net::add_route(j, addr, prefix, &self.name, src)?;
            }
            if self.allow_lan {
                for (addr, prefix) in kernel::firewall::lan(remote.addr.is_ipv6()) {
                    kernel::net::add_throw(j, addr, prefix)?;
                }
            }
        } else {
            kernel::net::add_route(j, remote.addr, remote.prefix, &self.name, src)?;
        }
        self.routes.push(remote);
        Ok(())
    }

    /// Forgets an SA pair (deleted by us or by the gateway).
    /// Points DNS at the tunnel's servers (recorded in the journal, undone with the rest).
    pub fn set_dns(
        &mut self,
        cfg: &kernel::dns::DnsConfig,
        tunnel: &str,
    ) -> Result<String, DatapathError> {
        // Kept across a reconnect: the same settings are in place already.
        if self.dns_set.as_ref() == Some(cfg) {
            return Ok("dns: unchanged (kept with the device)".into());
        }
        let Some(j) = self.journal.as_mut() else {
            return Ok("dns: no journal, left alone".into());
        };
        // systemd-resolved when it owns this namespace's resolv.conf and is on the bus;
        // else resolv.conf itself.
        if kernel::resolved::manages_resolv_conf() && kernel::resolved::running() {
            let idx = kernel::net::device_index(&self.name)?;
            let line = kernel::resolved::apply(idx, &self.name, cfg)?;
            self.resolved_link = Some(idx);
            self.dns_set = Some(cfg.clone());
            return Ok(line);
        }
        let line = kernel::dns::apply(j, cfg, tunnel)?;
        self.dns_set = Some(cfg.clone());
        Ok(line)
    }

    /// Sets the NAT keepalive interval (`None`: no keepalives).
    pub fn set_nat_keepalive(&self, every: Option<Duration>) {
        // Raw ESP goes through no NAT mapping to keep alive.
        let every = every.filter(|_| self.udp);
        let ms = every
            .map(|d| d.as_millis().clamp(1000, 3_600_000) as u64)
            .unwrap_or(0);
        self.keepalive_ms.store(ms, Ordering::Relaxed);
    }

    pub fn remove(&mut self, spi_in: u32, spi_out: u32) {
        self.inbound.retain(|i| i.sa.spi() != spi_in);
        self.outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|o| o.sa.spi() != spi_out);
    }

    /// A datagram from the raw ESP socket: an IPv4 packet (header included, as raw IPv4
    /// sockets deliver it) or, for IPv6, the ESP payload itself. Staged until
    /// [`Datapath::flush_inbound`].
    fn inbound_raw_deferred(&mut self, pkt: &mut [u8]) {
        match raw_esp_payload(pkt, self.gateway.is_ipv4()) {
            Some(esp) => self.inbound_deferred(esp),
            None => {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Handles one ESP packet (or, from port 4500, a NAT keepalive), decrypted in
    /// place in `pkt`; the result may wait in the GRO stage until
    /// [`Datapath::flush_inbound`] (the caller's end of a batch).
    pub fn inbound_deferred(&mut self, pkt: &mut [u8]) {
        if pkt == [0xff] {
            return;
        }
        if self.inbound_esp(pkt).is_err() {
            self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes what waits on the NAT-T socket `sock` with one `recvmmsg` (no waiting;
    /// a buffer that UDP GRO filled with several datagrams is cut back into them): IKE
    /// messages (behind the non-ESP marker, which is cut off) go to `ike`, the rest is
    /// staged like [`Datapath::inbound_deferred`]. Returns how many were not IKE; the
    /// caller then calls [`Datapath::flush_inbound`]. Nothing waiting and ICMP errors
    /// (refused) are not errors.
    pub fn drain_natt(
        &mut self,
        sock: &tokio::net::UdpSocket,
        mut ike: impl FnMut(&[u8]),
    ) -> std::io::Result<usize> {
        let mut area = match self.rx_area.take() {
            Some(a) => a,
            None => big_area(batch::BATCH * RX_SLOT)?,
        };
        let mut pieces = area.chunks_mut(RX_SLOT);
        let mut bufs: [&mut [u8]; batch::BATCH] =
            std::array::from_fn(|_| pieces.next().unwrap_or(&mut []));
        let mut lens = [0usize; batch::BATCH];
        let mut segs = [0usize; batch::BATCH];
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
        let got = match sock.try_io(tokio::io::Interest::READABLE, || {
            batch::recv_segments(fd, &mut bufs, &mut lens, &mut segs)
        }) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                0
            }
            Err(e) => {
                self.rx_area = Some(area);
                return Err(e);
            }
        };
        let mut esp = 0;
        for ((b, &l), &seg) in bufs.iter_mut().zip(&lens).zip(&segs).take(got) {
            let Some(all) = b.get_mut(..l) else {
                continue;
            };
            let seg = if seg == 0 { l.max(1) } else { seg };
            for d in all.chunks_mut(seg) {
                if d.len() > 4 && d[..4] == [0, 0, 0, 0] {
                    ike(&d[4..]);
                } else if !d.is_empty() {
                    esp += 1;
                    self.inbound_deferred(d);
                }
            }
        }
        self.rx_area = Some(area);
        Ok(esp)
    }

    /// Takes what waits on the raw ESP socket `sock` with one `recvmmsg` (no waiting),
    /// decrypts it and writes the result to the device (coalesced like
    /// [`Datapath::drain_natt`]'s, one write per flow run). Returns how many ESP packets
    /// came; nothing waiting and ICMP errors (refused) are not errors.
    pub fn drain_raw(&mut self, sock: &tokio::net::UdpSocket) -> std::io::Result<usize> {
        let mut area = match self.rx_area.take() {
            Some(a) => a,
            None => big_area(batch::BATCH * RX_SLOT)?,
        };
        let mut pieces = area.chunks_mut(RX_SLOT);
        let mut bufs: [&mut [u8]; batch::BATCH] =
            std::array::from_fn(|_| pieces.next().unwrap_or(&mut []));
        let mut lens = [0usize; batch::BATCH];
        let mut segs = [0usize; batch::BATCH];
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
        let got = match sock.try_io(tokio::io::Interest::READABLE, || {
            batch::recv_segments(fd, &mut bufs, &mut lens, &mut segs)
        }) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                0
            }
            Err(e) => {
                self.rx_area = Some(area);
                return Err(e);
            }
        };
        for (b, &l) in bufs.iter_mut().zip(&lens).take(got) {
            match b.get_mut(..l) {
                Some(pkt) if l > 0 => self.inbound_raw_deferred(pkt),
                _ => {
                    self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.rx_area = Some(area);
        self.flush_inbound();
        Ok(got)
    }

    /// Writes the staged inbound packets to the TUN device, TCP segments of one flow
    /// coalesced ([`gro`]), one write per resulting packet.
    pub fn flush_inbound(&mut self) {
        let n = std::mem::take(&mut self.n_staged);
        if n == 0 {
            return;
        }
        let (Some(dev), Some(staged)) = (self.dev.as_ref(), self.staged.get_mut(..n)) else {
            return;
        };
        let write = gro::coalesce(staged);
        for (i, b) in staged.iter().enumerate() {
            if write & (1 << i) != 0 && dev.send(b).is_err() {
                self.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn inbound_esp(&mut self, pkt: &mut [u8]) -> Result<(), ()> {
        let spi = u32::from_be_bytes(pkt.get(..4).ok_or(())?.try_into().map_err(|_| ())?);
        let sa = self
            .inbound
            .iter_mut()
            .find(|i| i.sa.spi() == spi)
            .ok_or(())?;
        let (range, next_header) = sa.sa.decapsulate(pkt).map_err(|_| ())?;
        let inner = &pkt[range.clone()];
        if next_header == esp::NEXT_HEADER_NONE {
            return Ok(());
        }
        if !sa.life.charge(inner.len()) {
            return Err(());
        }
        let src = inner_address(inner, next_header, false).ok_or(())?;
        let src = TrafficSelector::host(src);
        if !sa.remotes.iter().any(|r| r.contains(&src)) {
            return Err(());
        }
        let n = inner.len();
        if self.vnet_hdr {
            // Staged for [`Datapath::flush_inbound`], which coalesces TCP segments of
            // one flow (GRO) and writes each result behind its virtio header.
            if self.n_staged >= STAGED {
                self.flush_inbound();
            }
            if self.n_staged >= self.staged.len() {
                // Warm-up only: at most STAGED buffers, reused from then on.
                self.staged
                    .push(Vec::with_capacity(VIRTIO_NET_HDR_LEN + MAX_INNER + 1));
            }
            let b = self.staged.get_mut(self.n_staged).ok_or(())?;
            b.clear();
            b.resize(VIRTIO_NET_HDR_LEN, 0);
            b.extend_from_slice(inner);
            self.n_staged += 1;
        } else {
            let dev = self.dev.as_ref().ok_or(())?;
            dev.send(inner).map_err(|_| ())?;
        }
        self.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.stats.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Stops the worker, removes the device, the address and the routes (exactly what
    /// the journal names), and removes the journal. Returns a summary line.
    fn teardown(&mut self) -> String {
        self.stop_worker();
        let mut errors = Vec::new();
        if let Some(idx) = self.resolved_link.take()
            && let Err(e) = kernel::resolved::revert(idx)
        {
            errors.push(e.to_string());
        }
        if let Some(j) = self.journal.take() {
            // Routes and the address first, while the device exists; then the device
            // (closing our descriptor deletes it; `ip link del` catches the rest).
            let (links, others): (Vec<Entry>, Vec<Entry>) = j
                .entries()
                .iter()
                .cloned()
                .partition(|e| matches!(e, Entry::Link { .. }));
            errors.extend(kernel::net::undo(&others));
            self.dev = None;
            errors.extend(kernel::net::undo(&links));
            if errors.is_empty() {
                j.finish();
            }
        }
        self.inbound.clear();
        self.outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let s = &self.stats;
        let mut line = format!(
            "datapath stopped: {} removed; sent {} packets ({} bytes, {} dropped), received {} packets ({} bytes, {} dropped)",
            self.name,
            s.tx_packets.load(Ordering::Relaxed),
            s.tx_bytes.load(Ordering::Relaxed),
            s.tx_dropped.load(Ordering::Relaxed),
            s.rx_packets.load(Ordering::Relaxed),
            s.rx_bytes.load(Ordering::Relaxed),
            s.rx_dropped.load(Ordering::Relaxed),
        );
        if !errors.is_empty() {
            line.push_str(&format!(
                "; teardown errors (journal kept): {}",
                errors.join("; ")
            ));
        }
        line
    }
}

/// The safety net: a datapath dropped without [`Active::stop`] (a panic, an early
/// return) still removes everything it installed; nobody is told, so the driver always
/// stops it explicitly and reports the line.
impl Drop for Datapath {
    fn drop(&mut self) {
        if self.journal.is_some() || self.worker.is_some() {
            let _ = self.teardown();
        }
    }
}

/// The source (`dst == false`) or destination address of an inner IP packet whose
/// version agrees with the ESP next header; `None` if it is not such a packet.
fn inner_address(p: &[u8], next_header: u8, dst: bool) -> Option<IpAddr> {
    match (next_header, p.first()? >> 4) {
        (esp::NEXT_HEADER_IPV4, 4) => {
            let at = if dst { 16 } else { 12 };
            let b: [u8; 4] = p.get(at..at + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        (esp::NEXT_HEADER_IPV6, 6) => {
            let at = if dst { 24 } else { 8 };
            let b: [u8; 16] = p.get(at..at + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The outbound worker: TUN → ESP → UDP.
struct Outward {
    dev: Arc<SyncDevice>,
    socket: UdpSocket,
    sas: Arc<Mutex<Vec<Outbound>>>,
    interrupt: Arc<InterruptEvent>,
    stopping: Arc<AtomicBool>,
    stats: Arc<Stats>,
    /// NAT keepalive interval in ms; 0: none.
    keepalive_ms: Arc<std::sync::atomic::AtomicU64>,
    /// UDP GSO for ESP in UDP, until the kernel refuses it once (raw ESP: never).
    gso: std::cell::Cell<bool>,
}

impl Outward {
    /// Waits until the TUN device has packets, then reads them: with offload one read
    /// may carry a 64 kB TCP segment that tun-rs splits into packets of the tunnel's
    /// MTU (up to [`IDEAL_BATCH_SIZE`]). What is queued is gathered over several reads
    /// (small packets such as TCP ACKs come one per read) before any is sent; each is
    /// encapsulated in place in a buffer of its own and they go out together: runs of
    /// one size as one UDP GSO send (so the peer takes a train of ACKs in one wakeup),
    /// the rest [`batch::BATCH`] per `sendmmsg`.
    fn run(self) {
        let start = esp::MAX_HEADER;
        // Allocated once; only the pages packets touch become resident.
        let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_INNER];
        // One large allocation cut into slots: only the pages packets touch become
        // resident. Room for what one gathering may bring: reads go on while a whole
        // read's worth of slots is left.
        const SLOT: usize = esp::MAX_HEADER + MAX_INNER + esp::MAX_TRAILER;
        const SLOTS: usize = 2 * IDEAL_BATCH_SIZE;
        let (mut mapped, mut heap);
        let area: &mut [u8] = match big_area(SLOTS * SLOT) {
            Ok(m) => {
                mapped = m;
                &mut mapped[..]
            }
            Err(_) => {
                heap = vec![0u8; SLOTS * SLOT];
                &mut heap[..]
            }
        };
        let mut slots: Vec<&mut [u8]> = area.chunks_mut(SLOT).collect();
        let mut sizes = vec![0usize; SLOTS];
        let mut out: Vec<(std::ops::Range<usize>, usize)> = Vec::with_capacity(SLOTS);
        let mut headers = batch::Headers::new();
        let mut last_send = Instant::now();
        while !self.stopping.load(Ordering::Relaxed) {
            let every = match self.keepalive_ms.load(Ordering::Relaxed) {
                0 => Duration::from_secs(3600),
                ms => Duration::from_millis(ms),
            };
            let wait = every.saturating_sub(last_send.elapsed());
            match self
                .dev
                .wait_readable_intr_timeout(&self.interrupt, Some(wait))
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if self.keepalive_ms.load(Ordering::Relaxed) != 0 {
                        self.send(&[0xff]);
                    }
                    last_send = Instant::now();
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue;
                }
                Err(_) => {
                    // The device is gone (teardown, or deleted under us).
                    if !self.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    continue;
                }
            }
            // What is queued now, in a bounded number of gatherings of a bounded number
            // of reads (the device is non-blocking).
            let mut drained = false;
            for _ in 0..8 {
                let mut k = 0;
                let mut reads = 0;
                while !drained && k + IDEAL_BATCH_SIZE <= SLOTS && reads < MAX_GATHER_READS {
                    let end = k + IDEAL_BATCH_SIZE;
                    match self.dev.recv_multiple(
                        &mut original,
                        &mut slots[k..end],
                        &mut sizes[k..end],
                        start,
                    ) {
                        Ok(n) => k += n.min(IDEAL_BATCH_SIZE),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => drained = true,
                        Err(_) => {
                            self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                            drained = true;
                        }
                    }
                    reads += 1;
                }
                if k == 0 {
                    break;
                }
                out.clear();
                for (slot, &n) in slots.iter_mut().zip(&sizes).take(k) {
                    match self.encapsulate(slot, start, n) {
                        Some(r) => out.push((r, n)),
                        None => {
                            // An empty range: nothing to send from this slot.
                            out.push((0..0, 0));
                            self.stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                for (chunk_slots, chunk_out) in slots[..k]
                    .chunks(batch::BATCH)
                    .zip(out.chunks(batch::BATCH))
                {
                    if self.send_batch(&mut headers, chunk_slots, chunk_out) {
                        last_send = Instant::now();
                    }
                }
                if drained {
                    break;
                }
            }
        }
    }

    /// Encapsulates the packet of `n` bytes at `buf[start..]` in place with the SA of
    /// its destination; the ESP packet's range, or `None` to drop it.
    fn encapsulate(
        &self,
        buf: &mut [u8],
        start: usize,
        n: usize,
    ) -> Option<std::ops::Range<usize>> {
        let inner = buf.get(start..start + n)?;
        let next_header = match inner.first().map(|b| b >> 4) {
            Some(4) => esp::NEXT_HEADER_IPV4,
            Some(6) => esp::NEXT_HEADER_IPV6,
            _ => return None,
        };
        let dst = TrafficSelector::host(inner_address(inner, next_header, true)?);
        let mut sas = self.sas.lock().unwrap_or_else(|e| e.into_inner());
        // The most specific remote network holding the destination.
        let o = sas
            .iter_mut()
            .filter_map(|o| {
                let p = o
                    .remotes
                    .iter()
                    .filter(|r| r.contains(&dst))
                    .map(|r| r.prefix)
                    .max()?;
                Some((p, o))
            })
            .max_by_key(|(p, _)| *p)
            .map(|(_, o)| o)?;
        if !o.life.charge(n) {
            return None;
        }
        o.sa.encapsulate(buf, start, n, next_header).ok()
    }

    /// Sends the encapsulated packets (`(range in its slot, inner length)`), as many
    /// per `sendmmsg` as the socket takes; a full send buffer is waited out a little,
    /// as in [`Outward::send`]. False when some were dropped.
    fn send_batch(
        &self,
        headers: &mut batch::Headers,
        slots: &[&mut [u8]],
        out: &[(std::ops::Range<usize>, usize)],
    ) -> bool {
        // The packets that were encapsulated (a dropped one has an empty range), in order.
        let empty: &[u8] = &[];
        let mut packets: [&[u8]; batch::BATCH] = [empty; batch::BATCH];
        let mut inner = [0usize; batch::BATCH];
        let mut total = 0;
        for (slot, (r, n)) in slots.iter().zip(out).take(batch::BATCH) {
            if let Some(p) = slot.get(r.clone()).filter(|p| !p.is_empty()) {
                packets[total] = p;
                inner[total] = *n;
                total += 1;
            }
        }
        if total == 0 {
            return false;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.socket);
        let mut done = 0;
        let mut waits = 0;
        while done < total {
            // ESP in UDP: a run of packets of one size (the last may be shorter) goes as
            // one UDP GSO send; the rest, or everything where the kernel refuses GSO,
            // with sendmmsg.
            let run = if self.gso.get() {
                gso_run(&packets[done..total])
            } else {
                0
            };
            let sent = if run >= 2 {
                let size = u16::try_from(packets[done].len()).unwrap_or(u16::MAX);
                match batch::send_gso(fd, &packets[done..done + run], size) {
                    Ok(_) => Ok(run),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(e),
                    Err(_) => {
                        self.gso.set(false);
                        continue;
                    }
                }
            } else {
                // Up to where the next GSO run starts (or all, without GSO): one sendmmsg.
                let mut end = done + 1;
                while end < total && !(self.gso.get() && gso_run(&packets[end..total]) >= 2) {
                    end += 1;
                }
                batch::send(fd, headers, &packets[done..end])
            };
            match sent {
                Ok(k) if k > 0 => {
                    for n in &inner[done..done + k] {
                        self.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                        self.stats.tx_bytes.fetch_add(*n as u64, Ordering::Relaxed);
                    }
                    done += k;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && waits < 400 => {
                    waits += 1;
                    std::thread::sleep(Duration::from_micros(50));
                }
                _ => break,
            }
        }
        let dropped = total - done;
        self.stats
            .tx_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped == 0
    }

    /// Sends one datagram. The socket is non-blocking (it is shared with the driver's tokio
    /// loop): when the send buffer is full, wait a little and retry, up to ~20 ms.
    fn send(&self, d: &[u8]) -> bool {
        for _ in 0..400 {
            match self.socket.send(d) {
                Ok(_) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(_) => return false,
            }
        }
        false
    }
}

/// The ESP packet in what a raw IP protocol 50 socket delivers: IPv4 with its header
/// (skipped by its IHL), IPv6 without (so an SPI starting 0x4. is not taken for one). `None` when too short to be ESP (SPI and
/// sequence number) or the header length is impossible.
fn raw_esp_payload(pkt: &mut [u8], ipv4: bool) -> Option<&mut [u8]> {
    let start = if ipv4 {
        let first = *pkt.first()?;
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < 20 {
            return None;
        }
        ihl
    } else {
        0
    };
    pkt.get_mut(start..).filter(|esp| esp.len() >= 8)
}

/// How many of `packets` from the first make one UDP GSO send: equal sizes, the last
/// possibly shorter, within the kernel's limits. 1: the first goes alone.
fn gso_run(packets: &[&[u8]]) -> usize {
    let Some(size) = packets.first().map(|p| p.len()) else {
        return 0;
    };
    if size == 0 || size > usize::from(u16::MAX) {
        return 1;
    }
    let mut end = 1;
    let mut bytes = size;
    let fits = |end: usize, bytes: usize, next: usize| {
        end < batch::GSO_MAX_SEGMENTS && bytes + next <= batch::GSO_MAX_BYTES
    };
    while end < packets.len() && packets[end].len() == size && fits(end, bytes, size) {
        bytes += size;
        end += 1;
    }
    if end < packets.len() && packets[end].len() < size && fits(end, bytes, packets[end].len()) {
        end += 1;
    }
    end
}

/// The TUN MTU for a proposal: the outer MTU less IP, UDP and ESP overhead.
pub fn tunnel_mtu(c: &ChildSa, gateway_v6: bool) -> u16 {
    let ip = if gateway_v6 { 40 } else { 20 };
    let udp = if c.udp_encapsulation { 8 } else { 0 };
    let mtu = OUTER_MTU.saturating_sub(ip + udp + esp::max_overhead(&c.proposal));
    // Keep it a multiple of 4 (sane for every cipher's alignment) and at least IPv4's minimum.
    u16::try_from(mtu & !3).unwrap_or(1280).max(576)
}

/// The inner address for a CHILD_SA: its local selector when that is one host, else
/// the profile's fixed `virtual_ip`.
pub fn virtual_ip(c: &ChildSa, fixed: Option<Ipv4Addr>) -> Result<IpAddr, DatapathError> {
    match c.local_ts {
        Some(ts) if ts.is_host() => Ok(ts.addr),
        _ => fixed.map(IpAddr::V4).ok_or(DatapathError::NoVirtualIp),
    }
}

/// The ESP socket's receive buffer.
const ESP_SOCKET_BUFFER: usize = 4 << 20;

/// Raises the ESP socket's receive buffer to [`ESP_SOCKET_BUFFER`] (best effort: the
/// FORCE option needs CAP_NET_ADMIN; without it the plain one, capped by the sysctl).
/// The send buffer stays as it is: bigger, it would only let more wait in the queues
/// of a slow link (and made no difference on the bench).
fn raise_receive_buffer<F: std::os::fd::AsFd>(socket: &F) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &ESP_SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &ESP_SOCKET_BUFFER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_socket_receive_buffer_is_raised() {
        use nix::sys::socket::{getsockopt, sockopt};
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = getsockopt(&s, sockopt::RcvBuf).expect("rcvbuf");
        raise_receive_buffer(&s);
        let rcv = getsockopt(&s, sockopt::RcvBuf).expect("rcvbuf");
        // /proc/self belongs to the effective uid.
        let root = std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata("/proc/self").expect("/proc/self"),
        ) == 0;
        if root {
            // The kernel reports twice what was set (its bookkeeping overhead).
            assert!(rcv >= ESP_SOCKET_BUFFER, "receive buffer {rcv}");
        } else {
            assert!(rcv >= before, "receive buffer {rcv} < {before}");
        }
    }

    #[test]
    fn inner_addresses_of_short_or_mismatched_packets_are_none() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 77, 0, 10]);
        v4[16..20].copy_from_slice(&[10, 200, 0, 5]);
        assert_eq!(
            inner_address(&v4, 4, false),
            Some("10.77.0.10".parse().expect("ip"))
        );
        assert_eq!(
            inner_address(&v4, 4, true),
            Some("10.200.0.5".parse().expect("ip"))
        );
        assert_eq!(
            inner_address(&v4, 41, false),
            None,
            "version/next header mismatch"
        );
        for n in 0..20 {
            assert_eq!(inner_address(&v4[..n], 4, true), None);
        }
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8] = 0xfd;
        assert!(inner_address(&v6, 41, false).is_some());
        assert_eq!(inner_address(&v6[..39], 41, true), None);
    }

    #[test]
    fn raw_esp_payload_skips_the_ipv4_header_only() {
        // IPv4, IHL 5 then 6 (an option), then ESP (SPI 0x01020304, seq 1).
        let mut v4 = vec![0x45u8; 20];
        v4.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 1, 0xaa]);
        assert_eq!(
            raw_esp_payload(&mut v4, true).map(|e| e.to_vec()),
            Some(vec![1, 2, 3, 4, 0, 0, 0, 1, 0xaa])
        );
        let mut opt = vec![0x46u8; 24];
        opt.extend_from_slice(&[9; 8]);
        assert_eq!(raw_esp_payload(&mut opt, true).map(|e| e.len()), Some(8));
        // IPv6 raw sockets give the payload itself, whatever its first byte.
        let mut v6 = vec![0x45, 0, 0x10, 0, 0, 0, 0, 1, 7];
        assert_eq!(raw_esp_payload(&mut v6, false).map(|e| e.len()), Some(9));
        // Too short, not IPv4, or an IHL below 5: dropped, never a panic.
        assert!(raw_esp_payload(&mut [0x45; 27], true).is_none());
        assert!(raw_esp_payload(&mut [0x41; 40], true).is_none());
        assert!(raw_esp_payload(&mut [0x65; 40], true).is_none());
        assert!(raw_esp_payload(&mut [0x4f; 30], true).is_none());
        assert!(raw_esp_payload(&mut [], true).is_none());
        assert!(raw_esp_payload(&mut [1, 2, 3], false).is_none());
    }

    #[test]
    fn gso_runs_are_one_size_with_a_shorter_last() {
        let (a, b, c) = (vec![0u8; 100], vec![0u8; 100], vec![0u8; 60]);
        let big = vec![0u8; 1500];
        assert_eq!(gso_run(&[]), 0);
        assert_eq!(gso_run(&[&a]), 1);
        assert_eq!(
            gso_run(&[&a, &b, &c, &a]),
            3,
            "the shorter one ends the run"
        );
        assert_eq!(gso_run(&[&c, &a]), 1, "a longer one does not join");
        assert_eq!(gso_run(&[&a, &b, &b, &a]), 4);
        let many: Vec<&[u8]> = (0..100).map(|_| big.as_slice()).collect();
        let n = gso_run(&many);
        assert!(
            n * 1500 <= batch::GSO_MAX_BYTES && n < batch::GSO_MAX_SEGMENTS,
            "{n}"
        );
        let tiny = vec![0u8; 10];
        let small: Vec<&[u8]> = (0..100).map(|_| tiny.as_slice()).collect();
        assert_eq!(gso_run(&small), batch::GSO_MAX_SEGMENTS);
    }

    #[test]
    fn volume_lifetime_asks_for_a_rekey_once_then_stops_the_sa() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = ByteLife::new(Some(10), 0x1234, Some(tx));
        // 10 KiB: soft at 8192 bytes, hard at 10240.
        assert!(l.charge(8000));
        assert!(rx.try_recv().is_err());
        assert!(l.charge(500));
        assert_eq!(rx.try_recv().ok(), Some(0x1234));
        assert!(l.charge(1000));
        assert!(rx.try_recv().is_err(), "asked once only");
        assert!(l.charge(740));
        assert!(!l.charge(1), "past the hard limit");
        assert_eq!(l.used, 10240, "a refused packet is not counted");
        assert_eq!(l.packets, 4);
        // Without a volume lifetime the bytes and packets are still counted (status).
        let mut none = ByteLife::new(None, 1, None);
        assert!(none.charge(1400) && none.charge(60));
        assert_eq!((none.used, none.packets), (1460, 2));
        assert!(none.charge(usize::MAX));
        let mut huge = ByteLife::new(Some(u64::MAX), 1, None);
        assert!(huge.charge(usize::MAX));
    }

    #[test]
    fn mtu_leaves_room_for_the_worst_case_overhead() {
        use postern_engine::algs::{EspAuth, EspCipher, EspProposal};
        for (cipher, auth) in [
            (
                EspCipher::AesCbc { key_bits: 256 },
                Some(EspAuth::HmacSha512_256),
            ),
            (EspCipher::TripleDes, Some(EspAuth::HmacMd5_96)),
            (EspCipher::AesGcm16 { key_bits: 128 }, None),
        ] {
            let p = EspProposal {
                cipher,
                auth,
                group: None,
            };
            let c = ChildSa {
                proposal: p,
                encapsulation: Encapsulation::Tunnel,
                udp_encapsulation: true,
                spi_in: 1,
                spi_out: 2,
                keys_in: postern_engine::ike::EspKeys {
                    encryption: Default::default(),
                    integrity: Default::default(),
                },
                keys_out: postern_engine::ike::EspKeys {
                    encryption: Default::default(),
                    integrity: Default::default(),
                },
                local_ts: None,
                remote_ts: None,
                more_ts: Vec::new(),
                lifetime: Duration::from_secs(1),
                lifetime_kb: None,
            };
            let mtu = usize::from(tunnel_mtu(&c, false));
            assert!(
                20 + 8 + esp::max_overhead(&p) + mtu <= OUTER_MTU,
                "{p}: {mtu}"
            );
            assert!(mtu >= 1390, "{p}: {mtu} needlessly small");
        }
    }
}

/// Our GRO ([`gro`]) and the kernel's checks of what it writes: batches of odd
/// IPv4/IPv6 TCP and UDP packets, truncated or with nonsense header fields, and of
/// good TCP runs, coalesced and written to an offload TUN device (up, in a scratch
/// network namespace): no panic, and every coalesced run the kernel accepts. Root only
/// (skipped otherwise).
#[cfg(test)]
mod gro_tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};

    fn packet(rng: &mut ChaCha20Rng, flow: u8) -> Vec<u8> {
        let v6 = rng.next_u32().is_multiple_of(3);
        let udp = rng.next_u32().is_multiple_of(4);
        let payload = (rng.next_u32() % 1400) as usize;
        let (ip_len, l4_len) = (if v6 { 40 } else { 20 }, if udp { 8 } else { 20 });
        let mut p = vec![0u8; ip_len + l4_len + payload];
        rng.fill_bytes(&mut p);
        let total = p.len();
        if v6 {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            p[6] = if udp { 17 } else { 6 };
            p[8..24].fill(flow);
        } else {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[6] = 0x40; // DF
            p[9] = if udp { 17 } else { 6 };
            p[12..16].copy_from_slice(&[10, 77, 0, flow]);
            p[16..20].copy_from_slice(&[10, 200, 0, 5]);
        }
        if !udp {
            // Data offset 5 words, ACK (and sometimes PSH/FIN/SYN from the noise).
            p[ip_len + 12] = 0x50;
            p[ip_len + 13] = (p[ip_len + 13] & 0x0b) | 0x10;
        }
        // Sometimes a lie: a length field that disagrees, or a cut.
        match rng.next_u32() % 8 {
            0 => p.truncate((rng.next_u32() as usize) % total.max(1)),
            1 if !v6 => p[2..4].copy_from_slice(&(rng.next_u32() as u16).to_be_bytes()),
            2 if !v6 => p[0] = 0x40 | (rng.next_u32() as u8 & 0x0f),
            _ => {}
        }
        p
    }

    #[test]
    fn gro_never_panics_on_odd_packets() {
        let t = std::thread::spawn(|| {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                eprintln!("skipped: cannot unshare a network namespace (not root)");
                return;
            }
            let dev = match tun_rs::DeviceBuilder::new()
                .name("grotest0")
                .offload(true)
                .build_sync()
            {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("skipped: no offload TUN device: {e}");
                    return;
                }
            };
            assert!(dev.tcp_gso(), "the test device has no offload");
            let up = std::process::Command::new("ip")
                .args(["link", "set", "grotest0", "up"])
                .status();
            assert!(up.is_ok_and(|s| s.success()), "ip link set grotest0 up");
            let mut rng = ChaCha20Rng::seed_from_u64(4242);
            let mut bufs: Vec<Vec<u8>> = Vec::new();
            for _ in 0..2000 {
                bufs.clear();
                let flows = 1 + (rng.next_u32() % 3) as u8;
                for _ in 0..(1 + rng.next_u32() % 40) {
                    let flow = (rng.next_u32() % u32::from(flows)) as u8;
                    let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
                    b.extend_from_slice(&packet(&mut rng, flow));
                    bufs.push(b);
                }
                let write = gro::coalesce(&mut bufs);
                for (i, b) in bufs.iter().enumerate() {
                    if write & (1 << i) != 0 {
                        // Odd packets may be refused; what matters is no panic.
                        let _ = dev.send(b);
                    }
                }
            }
            // A good run of 20 segments: one GSO packet the kernel takes.
            let mut bufs: Vec<Vec<u8>> = (0..20u32)
                .map(|k| {
                    let mut b = vec![0u8; VIRTIO_NET_HDR_LEN];
                    b.extend_from_slice(&gro::test_segment(k * 1000, 1000));
                    b
                })
                .collect();
            let write = gro::coalesce(&mut bufs);
            assert_eq!(write, 1, "one packet");
            assert_eq!(bufs[0][1], 1, "GSO TCPv4");
            let n = dev.send(&bufs[0]).expect("the kernel takes the GSO packet");
            assert_eq!(n, bufs[0].len());
        });
        t.join().expect("GRO panicked on odd packets");
    }
}
