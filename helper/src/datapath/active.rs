//! The tunnel's datapath, whichever it is: the userspace one ([`Datapath`], ESP over a
//! TUN device) or the kernel's ([`KernelDatapath`], XFRM). It owns the SAs, the
//! virtual IP, the routes and the DNS settings it installed, and answers with the line
//! that says what it did; the tunnel driver turns that into its events (nothing here
//! prints). [`Active::stop`] removes everything and says so; dropping it without
//! `stop` (a panic, an early return) still removes everything, silently.
//!
//! Every method may wait on netlink or the system bus: the driver calls them through
//! `spawn_blocking`, never on the thread that serves D-Bus and drives other tunnels.
//! The kernel datapath's XFRM requests are async (`kernel::xfrm::Xfrm`, itself on the
//! blocking pool): from here they are awaited with the runtime's handle, which a
//! blocking-pool thread may do.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;

use postern_engine::ike::{ChildSa, Encapsulation};

use super::kernel_esp::KernelDatapath;
use super::{Datapath, DatapathError, RekeySender, tunnel_mtu, virtual_ip};
use crate::kernel;
use crate::tunnel::Counters;

/// Kernel or userspace ESP.
pub enum Active {
    User(Datapath),
    Kernel(KernelDatapath),
}

/// What creating the datapath needs from the tunnel, beyond the first SA.
pub struct Start {
    /// Our outer address and the gateway's.
    pub local: IpAddr,
    pub gateway: IpAddr,
    /// The profile's fixed inner address, when the gateway assigns none.
    pub fixed_vip: Option<Ipv4Addr>,
    /// The profile names no remote network (a full tunnel if the SA covers all).
    pub full_tunnel: bool,
    /// Where the userspace datapath asks for volume-lifetime rekeys.
    pub rekey: RekeySender,
    /// The userspace datapath's sending socket, duplicated: the NAT-T socket (ESP in
    /// UDP) or the raw ESP socket.
    pub esp_socket: Option<OwnedFd>,
    /// ESP in UDP through the kernel: (our port, the gateway's port).
    pub kernel_encap: Option<(u16, u16)>,
    /// The userspace datapath's NAT keepalive interval (ESP in UDP only).
    pub nat_keepalive: Option<std::time::Duration>,
    /// `network.allow_lan`: the local networks stay outside a full tunnel's routes.
    pub allow_lan: bool,
}

impl Active {
    /// Creates the datapath with its first SA (`kernel`: XFRM, else userspace) and
    /// installs that SA; returns the line saying where it went.
    pub fn start(kernel: bool, s: Start, c: &ChildSa) -> Result<(Active, String), DatapathError> {
        let mut dp = if kernel {
            let vip = match c.encapsulation {
                Encapsulation::Transport => s.local,
                Encapsulation::Tunnel => virtual_ip(c, s.fixed_vip)?,
            };
            Active::Kernel(KernelDatapath::start(
                s.local,
                s.gateway,
                vip,
                s.kernel_encap,
            )?)
        } else {
            let socket =
                s.esp_socket
                    .ok_or(DatapathError::Unsupported(if c.udp_encapsulation {
                        "ESP in UDP without the NAT-T socket"
                    } else {
                        "raw ESP without its socket"
                    }))?;
            let vip = virtual_ip(c, s.fixed_vip)?;
            // A full tunnel only when the profile names no network and the first SA
            // covers everything: a later 0.0.0.0/0 (a Unity gateway widening its side
            // on rekey) keeps routing the split networks only.
            let full_tunnel = s.full_tunnel && c.remote_ts.is_some_and(|t| t.prefix == 0);
            let mut d = Datapath::start(
                socket,
                c.udp_encapsulation,
                s.gateway,
                vip,
                tunnel_mtu(c, s.gateway.is_ipv6()),
                full_tunnel,
            )?;
            d.rekey = Some(s.rekey);
            d.allow_lan = s.allow_lan;
            d.set_nat_keepalive(s.nat_keepalive);
            Active::User(d)
        };
        let line = dp.install(c)?;
        Ok((dp, line))
    }

    /// Parks a userspace datapath between two negotiations ([`Datapath::park`]: the
    /// device, inner address and routes stay); `false` for the kernel's, which the
    /// caller stops instead.
    pub fn park(&mut self) -> bool {
        match self {
            Active::User(d) => {
                d.park();
                true
            }
            Active::Kernel(_) => false,
        }
    }

    /// Takes a parked datapath up again with the next negotiation's first SA and
    /// installs it. `Ok(None)`: it cannot carry it (another gateway, another inner
    /// address, the kernel's): the caller stops it and starts a new one.
    /// The socket is taken out of `s` only when it is used.
    pub fn resume(&mut self, s: &mut Start, c: &ChildSa) -> Result<Option<String>, DatapathError> {
        let Active::User(d) = self else {
            return Ok(None);
        };
        let vip = virtual_ip(c, s.fixed_vip)?;
        if !d.can_resume(s.gateway, vip) {
            return Ok(None);
        }
        let socket = s.esp_socket.take().ok_or(DatapathError::Unsupported(
            "a resume without the ESP socket",
        ))?;
        d.resume(socket, c.udp_encapsulation)?;
        d.rekey = Some(s.rekey.clone());
        d.set_nat_keepalive(s.nat_keepalive);
        self.install(c).map(Some)
    }

    /// IKEv2 MOBIKE moved the tunnel: the userspace datapath sends on the new socket
    /// ([`Datapath::move_socket`]); `Ok(false)` for the kernel's, which does not
    /// follow yet (the caller negotiates again).
    pub fn move_socket(&mut self, socket: OwnedFd, udp: bool) -> Result<bool, DatapathError> {
        match self {
            Active::User(d) => d.move_socket(socket, udp).map(|()| true),
            Active::Kernel(_) => Ok(false),
        }
    }

    /// IKEv2 MOBIKE moved the tunnel to our outer address `local`: the kernel
    /// datapath moves its SAs and policies there ([`KernelDatapath::migrate`]: ESP in
    /// UDP with `encap`, our port and the gateway's, when given; `was_udp`: the SAs
    /// are in UDP now). The line says what moved. The userspace datapath follows by
    /// [`Active::move_socket`] instead: nothing to do here.
    pub fn migrate(
        &mut self,
        local: IpAddr,
        encap: Option<(u16, u16)>,
        was_udp: bool,
    ) -> Result<Option<String>, DatapathError> {
        match self {
            Active::User(_) => Ok(None),
            Active::Kernel(d) => on_runtime(d.migrate(local, encap, was_udp)).map(Some),
        }
    }

    /// The inner address it holds.
    pub fn vip(&self) -> IpAddr {
        match self {
            Active::User(d) => d.vip,
            Active::Kernel(d) => d.vip(),
        }
    }

    pub fn is_kernel(&self) -> bool {
        matches!(self, Active::Kernel(_))
    }

    /// Installs one more SA pair (a rekey, another remote network).
    pub fn install(&mut self, c: &ChildSa) -> Result<String, DatapathError> {
        let remote = c.remote_ts.map(|t| t.to_string()).unwrap_or_default();
        match self {
            Active::User(d) => {
                d.install(c)?;
                Ok(format!(
                    "datapath userspace{} dev={} vip={} remote={remote} offload={}",
                    if c.udp_encapsulation { "" } else { " raw-esp" },
                    d.device_name(),
                    d.vip,
                    if d.vnet_hdr { "tso" } else { "none" }
                ))
            }
            Active::Kernel(d) => {
                on_runtime(d.install(c))?;
                Ok(format!(
                    "datapath kernel reqid={:#x}{} vip={} remote={remote}",
                    d.reqid(),
                    if c.udp_encapsulation {
                        " esp-in-udp"
                    } else {
                        ""
                    },
                    d.vip(),
                ))
            }
        }
    }

    /// Forgets an SA pair (rekeyed away or deleted by the gateway).
    pub fn remove(&mut self, spi_in: u32, spi_out: u32) {
        match self {
            Active::User(d) => d.remove(spi_in, spi_out),
            Active::Kernel(d) => on_runtime(d.remove(spi_in, spi_out)),
        }
    }

    /// Points DNS at the tunnel's servers; the line says where, or why not.
    pub fn set_dns(&mut self, cfg: &kernel::dns::DnsConfig, tunnel: &str) -> String {
        let r = match self {
            Active::User(d) => d.set_dns(cfg, tunnel),
            Active::Kernel(d) => d.set_dns(cfg, tunnel),
        };
        r.unwrap_or_else(|e| format!("dns: not set up: {e}"))
    }

    /// The traffic so far, in all and per SA pair.
    pub fn counters(&mut self) -> Counters {
        match self {
            Active::User(d) => d.counters(),
            Active::Kernel(d) => on_runtime(d.counters()),
        }
    }

    /// The userspace datapath, for the inbound packets the driver hands it.
    pub fn user(&mut self) -> Option<&mut Datapath> {
        match self {
            Active::User(d) => Some(d),
            Active::Kernel(_) => None,
        }
    }

    /// The kernel datapath, for the kernel's expire and acquire notifications.
    pub fn kernel(&self) -> Option<&KernelDatapath> {
        match self {
            Active::Kernel(d) => Some(d),
            Active::User(_) => None,
        }
    }

    /// Removes everything it installed; the line says what, and what it carried.
    pub fn stop(mut self) -> String {
        match &mut self {
            Active::User(d) => d.teardown(),
            Active::Kernel(d) => d.teardown(),
        }
    }
}

/// Awaits an async datapath call from a blocking-pool thread (never from a runtime
/// worker: `Handle::block_on` would panic there, which is why only the driver's
/// `spawn_blocking` closures call into [`Active`]).
fn on_runtime<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}
