//! The outer network, followed over rtnetlink: which source address and interface the
//! route to the gateway uses, and when that changes.
//!
//! A multicast netlink socket joins the IPv4 address, link and route groups (and the
//! IPv6 address and route groups for a gateway reached over IPv6); no polling. Each
//! notification only says "look again": after a short quiet time ([`Debounce`]: a
//! Wi-Fi switch emits a burst of link, address and route messages) the watcher asks
//! the kernel for the route to the gateway (`ip route get GATEWAY`) and [`judge`]s the
//! answer against the path the tunnel uses. A changed source address or outgoing
//! interface means the tunnel must be negotiated again from the new address (IKEv1 has
//! no MOBIKE); no route at all means wait (the laptop is between networks).

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use netlink_packet_core::NetlinkMessage;
use netlink_sys::AsyncSocket;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::constants::{
    RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE, RTMGRP_LINK,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};

/// How the tunnel's outer packets leave: the source address and the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub source: IpAddr,
    /// The outgoing interface's index, when the kernel said.
    pub oif: Option<u32>,
}

/// What a new look at the route to the gateway means for the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same source and interface: nothing to do.
    Same,
    /// The gateway is now reached from another address or by another interface:
    /// negotiate again from `to.source`.
    Moved { to: Path },
    /// No route to the gateway (between networks): wait for one.
    NoRoute,
}

/// Judges the route the kernel gives now (`None`: no route, or only through one of
/// our own tunnel devices, which cannot carry IKE) against the path the tunnel uses.
pub fn judge(current: &Path, now: Option<&Path>) -> Verdict {
    match now {
        None => Verdict::NoRoute,
        Some(p) if p.source != current.source => Verdict::Moved { to: *p },
        // The interface counts only when both sides know it (the first look may have
        // been made without one).
        Some(p) if p.oif.is_some() && current.oif.is_some() && p.oif != current.oif => {
            Verdict::Moved { to: *p }
        }
        Some(_) => Verdict::Same,
    }
}

/// While waiting to try again: whether the route to the gateway now (`now`) is a new
/// way to it compared to the one when the wait began (`before`, `None`: there was
/// none): a route back, another source address or another interface.
pub fn judge_wait(before: Option<&Path>, now: &Path) -> bool {
    match before {
        None => true,
        Some(b) => judge(b, Some(now)) != Verdict::Same,
    }
}

/// Bursts of notifications folded into one look: due [`Debounce::QUIET`] after the
/// last notification, and never later than [`Debounce::MAX`] after the first, so a
/// network that keeps chattering is still looked at within a second.
#[derive(Debug, Default, Clone, Copy)]
pub struct Debounce {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    pub const QUIET: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_millis(800);

    /// A notification arrived at `now`.
    pub fn notify(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When to look, if a notification waits.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + Self::QUIET).min(first + Self::MAX))
    }

    /// Whether a look is due at `now`; if so the burst is over.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(d) if now >= d => {
                *self = Debounce::default();
                true
            }
            _ => false,
        }
    }
}

type Notifications = std::pin::Pin<
    Box<
        dyn Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>
            + Send
            + Sync,
    >,
>;

/// The kernel's notifications about the outer network, and the route to one gateway.
pub struct Watcher {
    gateway: IpAddr,
    handle: rtnetlink::Handle,
    messages: Notifications,
    conn: tokio::task::JoinHandle<()>,
    debounce: Debounce,
    /// Our own tunnel devices' indexes: a route through one of them is no route for IKE.
    own_devices: Vec<u32>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Watcher {
    /// Joins the multicast groups for the gateway's address family.
    pub fn open(gateway: IpAddr) -> io::Result<Watcher> {
        let (mut conn, handle, messages) = rtnetlink::new_connection()?;
        let groups = match gateway {
            IpAddr::V4(_) => RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE,
            IpAddr::V6(_) => RTMGRP_LINK | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE,
        };
        let addr = netlink_sys::SocketAddr::new(0, groups);
        conn.socket_mut().socket_mut().bind(&addr)?;
        let conn = tokio::spawn(conn);
        Ok(Watcher {
            gateway,
            handle,
            messages: Box::pin(messages),
            conn,
            debounce: Debounce::default(),
            own_devices: Vec::new(),
        })
    }

    /// A device of ours (the TUN of the userspace datapath): routes through it are not
    /// a way to the gateway.
    pub fn ignore_device(&mut self, index: u32) {
        if !self.own_devices.contains(&index) {
            self.own_devices.push(index);
        }
    }

    /// Waits until the network changed and settled (debounced); pending forever if
    /// the netlink socket closed.
    pub async fn changed(&mut self) {
        loop {
            let wait = self.debounce.deadline();
            tokio::select! {
                m = self.messages.next() => match m {
                    Some(_) => self.debounce.notify(Instant::now()),
                    None => std::future::pending::<()>().await,
                },
                _ = async {
                    match wait {
                        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            if self.debounce.take_due(Instant::now()) {
                return;
            }
        }
    }

    /// The route to the gateway now (`ip route get`): its source address and
    /// interface; `None` when there is none usable.
    pub async fn path(&self) -> Option<Path> {
        let msg = match self.gateway {
            IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let mut answers = self.handle.route().get(msg).execute();
        let route = match tokio::time::timeout(Duration::from_secs(2), answers.next()).await {
            Ok(Some(Ok(r))) => r,
            _ => return None,
        };
        let mut source = None;
        let mut oif = None;
        for a in &route.attributes {
            match a {
                RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => {
                    source = Some(IpAddr::V4(*ip))
                }
                RouteAttribute::PrefSource(RouteAddress::Inet6(ip)) => {
                    source = Some(IpAddr::V6(*ip))
                }
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        if oif.is_some_and(|i| self.own_devices.contains(&i)) {
            return None;
        }
        source.map(|source| Path { source, oif })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str, oif: Option<u32>) -> Path {
        Path {
            source: s.parse().expect("address"),
            oif,
        }
    }

    #[test]
    fn a_new_source_address_means_negotiate_again() {
        let cur = path("192.0.2.10", Some(2));
        let now = path("192.0.2.77", Some(2));
        assert_eq!(judge(&cur, Some(&now)), Verdict::Moved { to: now });
    }

    #[test]
    fn another_interface_with_the_same_address_means_negotiate_again() {
        let cur = path("192.0.2.10", Some(2));
        let now = path("192.0.2.10", Some(5));
        assert_eq!(judge(&cur, Some(&now)), Verdict::Moved { to: now });
    }

    #[test]
    fn the_same_path_or_an_unknown_interface_is_no_change() {
        let cur = path("192.0.2.10", Some(2));
        assert_eq!(
            judge(&cur, Some(&path("192.0.2.10", Some(2)))),
            Verdict::Same
        );
        assert_eq!(judge(&cur, Some(&path("192.0.2.10", None))), Verdict::Same);
        assert_eq!(
            judge(
                &path("192.0.2.10", None),
                Some(&path("192.0.2.10", Some(9)))
            ),
            Verdict::Same
        );
    }

    #[test]
    fn while_waiting_a_route_back_or_a_new_address_ends_the_wait() {
        let now = path("192.0.2.3", Some(2));
        // No route when the wait began: any route now is a way back.
        assert!(judge_wait(None, &now));
        // Another address, another interface: try at once.
        assert!(judge_wait(Some(&path("192.0.2.2", Some(2))), &now));
        assert!(judge_wait(Some(&path("192.0.2.3", Some(7))), &now));
        // The same way as before (a gateway that is down): the wait goes on.
        assert!(!judge_wait(Some(&path("192.0.2.3", Some(2))), &now));
    }

    #[test]
    fn no_route_means_wait() {
        assert_eq!(judge(&path("192.0.2.10", Some(2)), None), Verdict::NoRoute);
    }

    #[test]
    fn a_burst_is_looked_at_once_after_it_settles() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.deadline(), None);
        assert!(!d.take_due(t0 + Duration::from_secs(5)));
        // `ip addr del` + `ip addr add` + the route messages, 30 ms apart.
        for i in 0..4 {
            d.notify(t0 + Duration::from_millis(30 * i));
        }
        let due = t0 + Duration::from_millis(90) + Debounce::QUIET;
        assert_eq!(d.deadline(), Some(due));
        assert!(!d.take_due(due - Duration::from_millis(1)));
        assert!(d.take_due(due));
        // Over: nothing is due until the next notification.
        assert_eq!(d.deadline(), None);
        assert!(!d.take_due(due + Duration::from_secs(1)));
    }

    #[test]
    fn a_network_that_keeps_chattering_is_looked_at_within_a_second() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        let mut looked = None;
        // A notification every 100 ms, for 5 s: never quiet for 200 ms.
        for i in 0..50u64 {
            let now = t0 + Duration::from_millis(100 * i);
            if d.take_due(now) {
                looked = Some(now);
                break;
            }
            d.notify(now);
        }
        let looked = looked.expect("a look within the burst");
        assert!(looked - t0 <= Duration::from_secs(1), "{:?}", looked - t0);
        assert!(looked - t0 >= Debounce::MAX);
    }
}
