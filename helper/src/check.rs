//! "Check the tunnel": what users call "connected but nothing works", tested step by
//! step from the helper (root: raw ICMP) while the tunnel is up.
//!
//! The steps, in the order they are reported ([`postern_dbus::interface::check`]):
//! - **traffic**: the tunnel's counters before and after the probes below: did packets
//!   go in, did answers come back?
//! - **host**: ping (ICMP echo from the virtual address) to `network.check_host`, else the
//!   first DNS server the gateway gave.
//! - **dns**: a query to each of the tunnel's DNS servers (at most two) for
//!   `network.check_domain`, else the gateway's domain, else the root.
//! - **mtu**: the largest echo that crosses the tunnel with Don't Fragment set (a binary
//!   search between 576 and 1500 bytes), when the host answered.
//! - **portal**: a captive portal in front of the gateway: `network.portal_url` fetched
//!   outside the tunnel (a portal answers with a redirect or a login page), else
//!   NetworkManager's own connectivity verdict, else skipped.
//!
//! Every probe is bounded in count and time (the whole check takes 15 s at most); the
//! blocking sockets run on tokio's blocking pool. Nothing is sent except to the
//! addresses named above.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use postern_dbus::interface::{CheckStep, check};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What the check needs to know of the tunnel.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The tunnel's inner address (the probes' source), if it has one.
    pub virtual_ip: Option<IpAddr>,
    /// The DNS servers the gateway gave.
    pub dns: Vec<IpAddr>,
    /// The domain the gateway gave (default domain or first split-DNS name).
    pub domain: Option<String>,
    /// The profile's `network.check_host`, `check_domain`, `portal_url`.
    pub check_host: Option<Ipv4Addr>,
    pub check_domain: Option<String>,
    pub portal_url: Option<String>,
}

/// Packets in and out of the tunnel at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// NetworkManager's connectivity verdict (`NMConnectivityState`), when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    None,
    Portal,
    Limited,
    Full,
}

const PING_TRIES: u16 = 3;
const PING_WAIT: Duration = Duration::from_millis(1000);
const DNS_WAIT: Duration = Duration::from_millis(2000);
const HTTP_WAIT: Duration = Duration::from_secs(3);
/// The MTU search: from the IPv4 minimum every host takes to Ethernet's 1500.
const MTU_MIN: usize = 576;
const MTU_MAX: usize = 1500;

fn step(name: &str, outcome: &str, detail: impl Into<String>) -> CheckStep {
    CheckStep {
        name: name.to_string(),
        outcome: outcome.to_string(),
        detail: detail.into(),
    }
}

/// Results of the probes that run through the tunnel, before the counters are read again.
struct Probes {
    host: CheckStep,
    dns: CheckStep,
    mtu: CheckStep,
    portal: CheckStep,
    /// The host answered ping (so traffic came back for sure).
    host_answered: bool,
}

/// Runs every step. `counters` reads the tunnel's counters (before and after the probes);
/// `nm` is NetworkManager's verdict, asked by the caller on the system bus.
pub async fn run<F, Fut>(target: Target, counters: F, nm: Option<Connectivity>) -> Vec<CheckStep>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<Count>>,
{
    let before = counters().await;
    let t = target.clone();
    let probes = tokio::task::spawn_blocking(move || probe(&t, nm))
        .await
        .unwrap_or_else(|_| Probes {
            host: step(check::HOST, check::FAILED, "the check stopped unexpectedly"),
            dns: step(check::DNS, check::SKIPPED, "not tried"),
            mtu: step(check::MTU, check::SKIPPED, "not tried"),
            portal: step(check::PORTAL, check::SKIPPED, "not tried"),
            host_answered: false,
        });
    let after = counters().await;
    vec![
        traffic(before, after, probes.host_answered, &target),
        probes.host,
        probes.dns,
        probes.mtu,
        probes.portal,
    ]
}

fn probe(t: &Target, nm: Option<Connectivity>) -> Probes {
    let source = match t.virtual_ip {
        Some(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    let host = t.check_host.or_else(|| {
        t.dns.iter().find_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
    });
    let (host_step, rtt) = match host {
        None => (
            step(
                check::HOST,
                check::SKIPPED,
                "no host to ask: the gateway gave no DNS server; set network.check_host to an office host that answers ping",
            ),
            None,
        ),
        Some(h) => ping_step(source, h, t.check_host.is_some()),
    };
    let mtu = match (host, rtt) {
        (Some(h), Some(_)) => mtu_step(source, h),
        (Some(h), None) => step(
            check::MTU,
            check::SKIPPED,
            format!("not measured: {h} does not answer ping"),
        ),
        (None, _) => step(check::MTU, check::SKIPPED, "not measured: no host to ask"),
    };
    Probes {
        host: host_step,
        dns: dns_step(t, source),
        mtu,
        portal: portal_step(t.portal_url.as_deref(), nm),
        host_answered: rtt.is_some(),
    }
}

fn traffic(before: Option<Count>, after: Option<Count>, answered: bool, t: &Target) -> CheckStep {
    let (Some(b), Some(a)) = (before, after) else {
        return step(
            check::TRAFFIC,
            check::SKIPPED,
            "the tunnel's counters could not be read",
        );
    };
    let out = a.tx_packets.saturating_sub(b.tx_packets);
    let back = a.rx_packets.saturating_sub(b.rx_packets);
    let vip = t
        .virtual_ip
        .map_or("your inner address".to_string(), |a| a.to_string());
    if out > 0 && (back > 0 || answered) {
        step(
            check::TRAFFIC,
            check::OK,
            format!("{out} packets went into the tunnel and {back} came back during the check"),
        )
    } else if out > 0 {
        step(
            check::TRAFFIC,
            check::FAILED,
            format!(
                "{out} packets went into the tunnel but nothing came back: the gateway or the office network does not send answers back to {vip} (ask the admin about the route back to the VPN pool or a firewall)"
            ),
        )
    } else {
        step(
            check::TRAFFIC,
            check::FAILED,
            "nothing entered the tunnel: the checked hosts are outside the tunnel's networks, or the tunnel's routes or policies are missing",
        )
    }
}

// ---- ping -------------------------------------------------------------------------

/// An ICMP echo request of `total` bytes (IP header included) with Don't Fragment set,
/// as written to a raw socket with `IP_HDRINCL` (the kernel fills in the checksum of the
/// IP header and the source when it is 0).
fn echo_packet(src: Option<Ipv4Addr>, dst: Ipv4Addr, id: u16, seq: u16, total: usize) -> Vec<u8> {
    let total = total.max(28);
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20] = 8; // echo request
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[26..28].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i & 0xff) as u8;
    }
    let sum = checksum(&p[20..]);
    p[22..24].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What came back for one echo.
#[derive(Debug, PartialEq, Eq)]
enum Echo {
    Reply(Duration),
    /// Too big for the path (EMSGSIZE here, or ICMP "fragmentation needed").
    TooBig,
    Lost,
}

/// What an ICMP packet read from the raw socket (IP header included) says about our
/// echo `id`/`seq` to `dst`.
fn classify(pkt: &[u8], dst: Ipv4Addr, id: u16, seq: u16) -> Option<Echo> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl + 8 || pkt[9] != 1 {
        return None;
    }
    let icmp = &pkt[ihl..];
    match (icmp[0], icmp[1]) {
        (0, 0) => {
            let from = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let ours =
                from == dst && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes();
            ours.then_some(Echo::Reply(Duration::ZERO))
        }
        (3, 4) => {
            // "Fragmentation needed": the original header follows, then 8 bytes of it.
            let orig = icmp.get(8..)?;
            let oihl = usize::from(orig.first()? & 0x0f) * 4;
            let oicmp = orig.get(oihl..oihl + 8)?;
            let odst = Ipv4Addr::new(*orig.get(16)?, orig[17], orig[18], orig[19]);
            let ours =
                odst == dst && oicmp[4..6] == id.to_be_bytes() && oicmp[6..8] == seq.to_be_bytes();
            ours.then_some(Echo::TooBig)
        }
        _ => None,
    }
}

fn raw_socket(src: Option<Ipv4Addr>) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_header_included_v4(true)?;
    if let Some(a) = src {
        s.bind(&SockAddr::from(SocketAddrV4::new(a, 0)))?;
    }
    Ok(s)
}

/// One echo of `total` bytes, waiting up to `wait` for its answer.
fn echo(
    s: &Socket,
    src: Option<Ipv4Addr>,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    total: usize,
    wait: Duration,
) -> std::io::Result<Echo> {
    let pkt = echo_packet(src, dst, id, seq, total);
    let to = SockAddr::from(SocketAddrV4::new(dst, 0));
    let sent = Instant::now();
    match s.send_to(&pkt, &to) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => return Ok(Echo::TooBig),
        Err(e) => return Err(e),
    }
    let deadline = sent + wait;
    let mut buf = [0u8; 2048];
    // Bounded: every pass either returns or waits out part of the deadline; at most
    // 256 unrelated ICMP packets are looked at.
    for _ in 0..256 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Echo::Lost);
        }
        s.set_read_timeout(Some(left))?;
        // socket2's `Read` for `&Socket` is `recv` into an initialised buffer.
        let n = match (&*s).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Echo::Lost);
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => return Ok(Echo::TooBig),
            Err(e) => return Err(e),
        };
        match classify(&buf[..n], dst, id, seq) {
            Some(Echo::Reply(_)) => return Ok(Echo::Reply(sent.elapsed())),
            Some(other) => return Ok(other),
            None => {}
        }
    }
    Ok(Echo::Lost)
}

fn ping_id() -> u16 {
    // Distinct per process and call, so concurrent checks do not take each other's
    // answers.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() as u16) ^ (t as u16)
}

fn ping_step(
    src: Option<Ipv4Addr>,
    host: Ipv4Addr,
    configured: bool,
) -> (CheckStep, Option<Duration>) {
    let what = if configured {
        format!("{host} (network.check_host)")
    } else {
        format!("{host} (the tunnel's DNS server)")
    };
    let s = match raw_socket(src) {
        Ok(s) => s,
        Err(e) => {
            return (
                step(check::HOST, check::FAILED, format!("cannot send ping: {e}")),
                None,
            );
        }
    };
    let id = ping_id();
    for seq in 1..=PING_TRIES {
        match echo(&s, src, host, id, seq, 84, PING_WAIT) {
            Ok(Echo::Reply(rtt)) => {
                return (
                    step(
                        check::HOST,
                        check::OK,
                        format!(
                            "{what} answered ping in {:.1} ms",
                            rtt.as_secs_f64() * 1000.0
                        ),
                    ),
                    Some(rtt),
                );
            }
            Ok(_) => {}
            Err(e) => {
                return (
                    step(
                        check::HOST,
                        check::FAILED,
                        format!("cannot ping {host}: {e}"),
                    ),
                    None,
                );
            }
        }
    }
    (
        step(
            check::HOST,
            check::FAILED,
            format!(
                "{what} did not answer {PING_TRIES} pings through the tunnel: the host may be down or filter ping, or the office does not route answers back to the VPN"
            ),
        ),
        None,
    )
}

fn mtu_step(src: Option<Ipv4Addr>, host: Ipv4Addr) -> CheckStep {
    let s = match raw_socket(src) {
        Ok(s) => s,
        Err(e) => {
            return step(
                check::MTU,
                check::FAILED,
                format!("cannot send probes: {e}"),
            );
        }
    };
    let id = ping_id().wrapping_add(1);
    let mut seq = 100u16;
    let mut passes = |size: usize| -> bool {
        // Two tries, so one lost packet does not shrink the answer.
        (0..2).any(|_| {
            seq = seq.wrapping_add(1);
            matches!(
                echo(&s, src, host, id, seq, size, PING_WAIT),
                Ok(Echo::Reply(_))
            )
        })
    };
    if !passes(MTU_MIN) {
        return step(
            check::MTU,
            check::FAILED,
            format!(
                "small pings pass but {MTU_MIN}-byte packets are lost: the path through the tunnel drops large packets (ask the admin about the MTU or fragmentation)"
            ),
        );
    }
    let (mut lo, mut hi) = (MTU_MIN, MTU_MAX + 1);
    if passes(MTU_MAX) {
        lo = MTU_MAX;
    } else {
        // Invariant: lo passes, hi does not; at most 10 rounds.
        while hi - lo > 8 {
            let mid = (lo + hi) / 2;
            if passes(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    if lo >= 1280 {
        step(
            check::MTU,
            check::OK,
            format!("packets of up to {lo} bytes cross the tunnel without fragmenting"),
        )
    } else {
        step(
            check::MTU,
            check::FAILED,
            format!(
                "only packets of up to {lo} bytes cross the tunnel: larger ones are lost, so big downloads and web pages stall (lower the MTU, or ask the admin about fragmentation)"
            ),
        )
    }
}

// ---- DNS --------------------------------------------------------------------------

/// A standard query (recursion desired) for `name`'s A records; the root asks for NS.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    let qtype: u16 = if name.trim_matches('.').is_empty() {
        2
    } else {
        1
    };
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The response code of an answer to query `id`, or `None` if it is not one.
fn dns_rcode(answer: &[u8], id: u16) -> Option<u8> {
    if answer.len() < 12 || answer[0..2] != id.to_be_bytes() || answer[2] & 0x80 == 0 {
        return None;
    }
    Some(answer[3] & 0x0f)
}

fn dns_one(src: Option<IpAddr>, server: IpAddr, name: &str) -> Result<u8, String> {
    let bind: SocketAddr = match (src, server) {
        (Some(s @ IpAddr::V4(_)), IpAddr::V4(_)) | (Some(s @ IpAddr::V6(_)), IpAddr::V6(_)) => {
            SocketAddr::new(s, 0)
        }
        (_, IpAddr::V4(_)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        (_, IpAddr::V6(_)) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("cannot open a socket: {e}"))?;
    sock.connect(SocketAddr::new(server, 53))
        .map_err(|e| format!("cannot reach {server}: {e}"))?;
    let id = ping_id() ^ 0x5a5a;
    let q = dns_query(id, name);
    let deadline = Instant::now() + DNS_WAIT;
    let mut buf = [0u8; 1500];
    // Two sends (the second after half the wait), at most 32 stray datagrams read.
    let mut resent = false;
    sock.send(&q)
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    for _ in 0..32 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = if resent { left } else { left.min(DNS_WAIT / 2) };
        sock.set_read_timeout(Some(wait))
            .map_err(|e| format!("socket: {e}"))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(rc) = dns_rcode(&buf[..n], id) {
                    return Ok(rc);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !resent {
                    resent = true;
                    let _ = sock.send(&q);
                }
            }
            Err(e) => return Err(format!("{server}: {e}")),
        }
    }
    Err(format!(
        "{server} did not answer in {} s",
        DNS_WAIT.as_secs()
    ))
}

fn dns_step(t: &Target, src: Option<Ipv4Addr>) -> CheckStep {
    if t.dns.is_empty() {
        return step(
            check::DNS,
            check::SKIPPED,
            "the gateway gave no DNS server: names resolve as without the tunnel",
        );
    }
    let name = t
        .check_domain
        .clone()
        .or_else(|| t.domain.clone())
        .unwrap_or_default();
    let shown = if name.is_empty() {
        "the root zone".to_string()
    } else {
        name.clone()
    };
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for server in t.dns.iter().take(2) {
        match dns_one(src.map(IpAddr::V4), *server, &name) {
            Ok(0) => ok.push(format!("{server} answered")),
            Ok(3) => ok.push(format!("{server} answered (no such name)")),
            Ok(rc) => bad.push(format!(
                "{server} refused the query ({})",
                match rc {
                    2 => "server failure",
                    5 => "refused",
                    _ => "error",
                }
            )),
            Err(e) => bad.push(e),
        }
    }
    if bad.is_empty() {
        step(
            check::DNS,
            check::OK,
            format!("asked for {shown}: {}", ok.join(", ")),
        )
    } else {
        step(
            check::DNS,
            check::FAILED,
            format!(
                "asked for {shown}: {}: the office's names will not resolve (check the DNS servers the gateway gives, and that they accept queries from the VPN pool)",
                bad.join(", ")
            ),
        )
    }
}

// ---- captive portal ----------------------------------------------------------------

/// The HTTP status line's code and the `Location` header of a response head.
fn http_status(head: &str) -> Option<(u16, Option<String>)> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    let location = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Some((code, location))
}

fn http_get(url: &str) -> Result<(u16, Option<String>), String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} has no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, HTTP_WAIT)
        .map_err(|e| format!("cannot connect to {hostport}: {e}"))?;
    s.set_read_timeout(Some(HTTP_WAIT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(HTTP_WAIT))
        .map_err(|e| e.to_string())?;
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, p)| {
        if p.parse::<u16>().is_ok() {
            h
        } else {
            hostport
        }
    });
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: postern-check\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{hostport}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // At most 8 KiB of the response head.
    while head.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if head.is_empty() => return Err(format!("{hostport} did not answer: {e}")),
            Err(_) => break,
        }
    }
    http_status(&String::from_utf8_lossy(&head))
        .ok_or_else(|| format!("{hostport} did not answer with HTTP"))
}

fn portal_step(url: Option<&str>, nm: Option<Connectivity>) -> CheckStep {
    let portal = "a captive portal (a hotel or café login page) is in front of the gateway: open a web page, log in, then connect again";
    if let Some(url) = url {
        return match http_get(url) {
            Ok((code, _)) if (200..300).contains(&code) => step(
                check::PORTAL,
                check::OK,
                format!("{url} answered {code}: no captive portal"),
            ),
            Ok((code, loc)) if (300..400).contains(&code) => step(
                check::PORTAL,
                check::FAILED,
                format!(
                    "{url} was redirected ({code}{}): {portal}",
                    loc.map(|l| format!(" to {l}")).unwrap_or_default()
                ),
            ),
            Ok((code, _)) => step(
                check::PORTAL,
                check::FAILED,
                format!(
                    "{url} answered {code} instead of 204: {portal}, or the probe URL is wrong"
                ),
            ),
            Err(e) => step(
                check::PORTAL,
                check::FAILED,
                format!(
                    "{e}: the network in front of the gateway blocks the web (a portal that wants a login often does)"
                ),
            ),
        };
    }
    match nm {
        Some(Connectivity::Full) => step(
            check::PORTAL,
            check::OK,
            "NetworkManager reaches the internet: no captive portal",
        ),
        Some(Connectivity::Portal) => step(
            check::PORTAL,
            check::FAILED,
            format!("NetworkManager found {portal}"),
        ),
        Some(Connectivity::Limited) => step(
            check::PORTAL,
            check::FAILED,
            "NetworkManager says the network is limited: it reaches the local network only (a captive portal or an outage in front of the gateway)",
        ),
        Some(Connectivity::None) => step(
            check::PORTAL,
            check::FAILED,
            "NetworkManager says there is no network",
        ),
        None => step(
            check::PORTAL,
            check::SKIPPED,
            "not checked: NetworkManager's connectivity check is not available and network.portal_url is not set",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_packet_is_well_formed() {
        let p = echo_packet(
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            Ipv4Addr::new(10, 0, 0, 2),
            0x1234,
            7,
            100,
        );
        assert_eq!(p.len(), 100);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 100);
        assert_eq!(p[6] & 0x40, 0x40, "DF set");
        assert_eq!(checksum(&p[20..]), 0, "ICMP checksum verifies");
    }

    #[test]
    fn classify_reply_and_frag_needed() {
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        // A reply: swap addresses, type 0.
        let mut r = echo_packet(Some(dst), Ipv4Addr::new(10, 0, 0, 1), 9, 3, 60);
        r[20] = 0;
        assert!(matches!(classify(&r, dst, 9, 3), Some(Echo::Reply(_))));
        assert_eq!(classify(&r, dst, 9, 4), None, "other seq");
        assert_eq!(
            classify(&r, Ipv4Addr::new(10, 0, 0, 3), 9, 3),
            None,
            "other host"
        );
        // Fragmentation needed quoting our echo.
        let orig = echo_packet(None, dst, 9, 5, 1400);
        let mut f = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 9, 10, 0, 0, 1,
        ];
        f.extend_from_slice(&[3, 4, 0, 0, 0, 0, 5, 0x78]);
        f.extend_from_slice(&orig[..28]);
        assert_eq!(classify(&f, dst, 9, 5), Some(Echo::TooBig));
        // Truncated input never panics.
        for n in 0..f.len() {
            let _ = classify(&f[..n], dst, 9, 5);
        }
    }

    #[test]
    fn dns_query_and_answer() {
        let q = dns_query(0xbeef, "corp.example");
        assert_eq!(&q[..2], &[0xbe, 0xef]);
        assert_eq!(&q[12..], b"\x04corp\x07example\x00\x00\x01\x00\x01");
        let root = dns_query(1, "");
        assert_eq!(&root[12..], b"\x00\x00\x02\x00\x01");
        let mut a = q.clone();
        a[2] |= 0x80;
        a[3] = 0x83;
        assert_eq!(dns_rcode(&a, 0xbeef), Some(3));
        assert_eq!(dns_rcode(&a, 0xbeee), None);
        assert_eq!(dns_rcode(&q, 0xbeef), None, "a query is not an answer");
        assert_eq!(dns_rcode(&a[..5], 0xbeef), None);
    }

    #[test]
    fn http_status_lines() {
        assert_eq!(
            http_status("HTTP/1.1 204 No Content\r\n\r\n"),
            Some((204, None))
        );
        assert_eq!(
            http_status("HTTP/1.0 302 Found\r\nlocation: http://portal/login\r\n\r\n"),
            Some((302, Some("http://portal/login".into())))
        );
        assert_eq!(http_status("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(http_status(""), None);
    }

    #[test]
    fn traffic_verdicts() {
        let t = Target {
            virtual_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 200, 1, 1))),
            ..Target::default()
        };
        let c = |tx, rx| {
            Some(Count {
                tx_packets: tx,
                rx_packets: rx,
            })
        };
        assert_eq!(traffic(c(1, 1), c(5, 4), false, &t).outcome, check::OK);
        let lost = traffic(c(1, 1), c(5, 1), false, &t);
        assert_eq!(lost.outcome, check::FAILED);
        assert!(lost.detail.contains("10.200.1.1"), "{}", lost.detail);
        assert_eq!(traffic(c(1, 1), c(1, 1), false, &t).outcome, check::FAILED);
        assert_eq!(traffic(None, c(1, 1), false, &t).outcome, check::SKIPPED);
    }

    #[test]
    fn portal_without_url_follows_networkmanager() {
        assert_eq!(portal_step(None, None).outcome, check::SKIPPED);
        assert_eq!(
            portal_step(None, Some(Connectivity::Full)).outcome,
            check::OK
        );
        let p = portal_step(None, Some(Connectivity::Portal));
        assert_eq!(p.outcome, check::FAILED);
        assert!(p.detail.contains("captive portal"));
    }
}
