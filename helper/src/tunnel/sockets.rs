//! The tunnel's sockets: UDP 500 and 4500 shared between tunnels (each connected to its
//! gateway), raw ESP, and sending IKE on either port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use postern_engine::ike;

use super::engine::Engine;
use tokio::net::UdpSocket;

use super::IKE_PORT;

/// After a DELETE is queued on shutdown, give the socket this long to send it.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// Sends one datagram: on port 500, or on 4500 behind the non-ESP marker.
pub(crate) async fn send(
    socket: &UdpSocket,
    natt: Option<&UdpSocket>,
    t: &ike::Transmit,
) -> std::io::Result<()> {
    match (t.nat_t, natt) {
        (true, Some(s)) => {
            let mut d = Vec::with_capacity(t.data.len() + 4);
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&t.data);
            s.send(&d).await.map(drop)
        }
        _ => socket.send(&t.data).await.map(drop),
    }
}

/// A raw IP protocol 50 socket connected to the gateway (so it sees only its ESP), for
/// the userspace datapath without UDP encapsulation. Sending: the kernel adds the IP
/// header; receiving: IPv4 packets arrive with theirs
/// ([`crate::datapath::Datapath::drain_raw`]).
pub(crate) fn open_raw_esp(gateway: IpAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if gateway.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(50)))?;
    s.connect(&SocketAddr::new(gateway, 0).into())?;
    s.set_nonblocking(true)?;
    let fd: std::os::fd::OwnedFd = s.into();
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// A UDP socket on the IKE port that other tunnels may bind too (SO_REUSEADDR). Each
/// tunnel connects its sockets to its gateway, and the kernel hands a datagram to the
/// socket connected to its sender, so tunnels to different gateways run side by side,
/// in one helper or several.
pub(crate) fn bind_shared(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Whether a UDP socket in this network namespace already talks IKE with `remote`
/// (local port 500 connected to the gateway's 500), as another tunnel of this helper or
/// of another helper would.
pub(crate) fn ike_peer_in_use(remote: SocketAddr) -> bool {
    let table = if remote.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    std::fs::read_to_string(table).is_ok_and(|text| {
        text.lines()
            .skip(1)
            .any(|l| ike_socket_to(l, remote) == Some(true))
    })
}

/// One line of /proc/net/udp{,6}: whether it is a socket bound to port 500 and
/// connected to `remote` (`None`: not such a line).
fn ike_socket_to(line: &str, remote: SocketAddr) -> Option<bool> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, rem) = (f.get(1)?, f.get(2)?);
    let port = |a: &str| u16::from_str_radix(a.rsplit_once(':')?.1, 16).ok();
    if port(local)? != IKE_PORT || port(rem)? != remote.port() {
        return None;
    }
    let hex = rem.rsplit_once(':')?.0;
    // The address as the kernel prints it: each 32-bit word in host byte order.
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let w = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some(ip == remote.ip())
}

/// Waits until the NAT-T socket has something to read (never, without one).
pub(crate) async fn natt_readable(s: Option<&UdpSocket>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// Sends whatever the engine queued (the DELETEs) before we go.
pub(crate) async fn flush(socket: &UdpSocket, natt: Option<&UdpSocket>, ike: &mut Engine) {
    let mut pending = Vec::new();
    while let Some(t) = ike.poll_transmit() {
        pending.push(t);
    }
    let _ = tokio::time::timeout(FLUSH_GRACE, async {
        for t in pending {
            let _ = send(socket, natt, &t).await;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_lines_name_the_connected_gateway() {
        let gw: SocketAddr = "192.0.2.1:500".parse().expect("addr");
        // 192.0.2.1 as the kernel prints it on a little-endian machine.
        let word = u32::from_ne_bytes([192, 0, 2, 1]);
        let line = format!(
            "  12: 00000000:01F4 {word:08X}:01F4 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0"
        );
        assert_eq!(ike_socket_to(&line, gw), Some(true));
        let other: SocketAddr = "192.0.2.3:500".parse().expect("addr");
        assert_eq!(ike_socket_to(&line, other), Some(false));
        // Bound to 500 but not connected (remote 0.0.0.0:0), or another port.
        let unconnected = "  13: 00000000:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0 0";
        assert_eq!(ike_socket_to(unconnected, gw), None);
        assert_eq!(ike_socket_to("garbage", gw), None);
        assert_eq!(ike_socket_to("  1: 00000000:01F4 ZZZZ:01F4", gw), None);
        let v6: SocketAddr = "[2001:db8::1]:500".parse().expect("addr");
        let words: String = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        let line6 =
            format!("  3: 00000000000000000000000000000000:01F4 {words}:01F4 01 0 0 0 0 0 1");
        assert_eq!(ike_socket_to(&line6, v6), Some(true));
    }
}
