//! Hostile input at the running helper (issue 15, point 1, the lab half): a tunnel is
//! up with a real strongSwan gateway, then the gateway's namespace sends malformed and
//! malicious datagrams to the client's IKE and NAT-T ports, from the gateway's address
//! and port 500 (raw sockets, so they look like the gateway's), with the live cookies
//! where that makes them more dangerous. After each family the tunnel must still be up
//! (no teardown, traffic through it), the helper alive, and its log bounded (refusals
//! are rate-limited: a flood of junk does not become a flood of lines). Root only.

use std::time::Duration;

use postern_lab::config::{CLIENT_ADDR, GW_ADDR, LAN_HOST};
use postern_lab::process::Proc;
use postern_lab::{Lab, LabError, Role, Tunnel, lab_ensure, run_scenario};

/// Sends one family of hostile datagrams:
/// `python3 hostile.py FAMILY SRC DST ICOOKIE RCOOKIE [AT_LEAST]`: the family once, or
/// again and again until at least AT_LEAST datagrams are sent (bounded: AT_LEAST plus
/// one round). Prints the number of datagrams and of UDP payload bytes sent.
const SENDER: &str = r#"
import os, random, socket, struct, sys

family, src, dst, ic, rc = sys.argv[1], sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4]), bytes.fromhex(sys.argv[5])
at_least = int(sys.argv[6]) if len(sys.argv) > 6 else 0
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(7)
sent = 0
sent_bytes = 0

def udp(sport, dport, payload):
    global sent, sent_bytes
    sent += 1
    sent_bytes += len(payload)
    ln = 8 + len(payload)
    u = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ln, rnd.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + u, (dst, 0))

def hdr(np, exch, flags, msgid, length, i=ic, r=rc, ver=0x10):
    return i + r + struct.pack("!BBBBII", np, ver, exch, flags, msgid, length)

def ike(body_np, exch, flags, msgid, body, i=ic, r=rc, ver=0x10, length=None):
    l = 28 + len(body) if length is None else length
    return hdr(body_np, exch, flags, msgid, l, i, r, ver) + body

def pl(np, body, length=None):
    l = 4 + len(body) if length is None else length
    return struct.pack("!BBH", np, 0, l) + body

def both(payload):
    udp(500, 500, payload)
    udp(4500, 4500, b"\0\0\0\0" + payload)

def send_family():
  if family == "lengths":
      for n in range(0, 28):
          both(os.urandom(n))
      both(ike(0, 2, 0, 0, b"", length=20))            # length below the header
      both(ike(0, 2, 0, 0, b"", length=60000))         # length beyond the datagram
      both(ike(1, 2, 0, 0, pl(0, b"", length=0)))      # zero-length payload
      both(ike(1, 2, 0, 0, pl(0, b"x" * 8, length=1000)))  # payload overruns the message
      both(ike(13, 2, 0, 0, pl(13, b"", length=4) * 300))  # a 300-payload chain
      both(ike(13, 2, 0, 0, pl(13, b"ab", length=3)))      # payload shorter than its header
  elif family == "sa":
      proposal_none = pl(0, struct.pack("!II", 1, 1))                       # SA, no proposals
      both(ike(1, 2, 0, 0, proposal_none))
      t = b"".join(pl(3, struct.pack("!BBH", k, 1, 0)) for k in range(150))
      prop = pl(0, struct.pack("!BBBB", 1, 1, 0, 150) + t)
      both(ike(1, 2, 0, 0, pl(0, struct.pack("!II", 1, 1) + prop)))        # 150 transforms
      attr_overrun = struct.pack("!HH", 0x0001, 200) + b"ab"
      tr = pl(0, struct.pack("!BBH", 1, 1, 0) + attr_overrun)
      prop = pl(0, struct.pack("!BBBB", 1, 1, 0, 1) + tr)
      both(ike(1, 2, 0, 0, pl(0, struct.pack("!II", 1, 1) + prop)))        # attribute TLV overrun
      for exch in (2, 4, 5, 6, 32, 99, 255):
          both(ike(1, exch, 0, rnd.randrange(1 << 32), proposal_none))
      # A fresh initiator message 1 with new cookies (the client is no responder).
      both(ike(1, 2, 0, 0, proposal_none, i=os.urandom(8), r=b"\0" * 8))
  elif family == "live":
      # Unauthenticated DELETE and notifies with the live cookies, in the clear.
      delete_p1 = pl(0, struct.pack("!IBBH", 1, 1, 16, 1) + ic + rc)
      both(ike(12, 5, 0, rnd.randrange(1 << 32), delete_p1))
      delete_esp = pl(0, struct.pack("!IBBH", 1, 3, 4, 1) + b"\x11\x22\x33\x44")
      both(ike(12, 5, 0, rnd.randrange(1 << 32), delete_esp))
      delete_huge = pl(0, struct.pack("!IBBH", 1, 3, 4, 65535) + b"\x11\x22\x33\x44")
      both(ike(12, 5, 0, rnd.randrange(1 << 32), delete_huge))
      delete_spi0 = pl(0, struct.pack("!IBBH", 1, 3, 0, 1))
      both(ike(12, 5, 0, rnd.randrange(1 << 32), delete_spi0))
      rut = pl(0, struct.pack("!IBBH", 1, 1, 16, 36136) + ic + rc + b"\0\0\0\1")
      both(ike(11, 5, 0, rnd.randrange(1 << 32), rut))
      # "Encrypted" informational and quick mode with garbage bodies: fail to decrypt.
      for exch in (5, 32, 6):
          for n in (0, 1, 8, 15, 16, 17, 64, 1000):
              both(ike(8, exch, 1, rnd.randrange(1 << 32), os.urandom(n)))
      # Replays of the same garbage.
      g = ike(8, 5, 1, 7, os.urandom(48))
      for _ in range(20):
          both(g)
      # An IKEv2 header with the live cookies.
      both(ike(33, 34, 8, 0, os.urandom(40), ver=0x20))
  elif family == "fragments":
      def frag(fid, num, last, data, length=None):
          body = struct.pack("!HBB", fid, num, 1 if last else 0) + data
          l = 4 + len(body) if length is None else length
          return ike(132, 2, 0, 0, struct.pack("!BBH", 0, 0, l) + body)
      both(frag(1, 1, False, b"", length=5))          # fragment payload length < 8
      both(frag(2, 0, True, b"x" * 32))               # number 0
      for n in range(1, 256):                         # 255 fragments, the last one missing
          both(frag(3, n, False, b"y" * 64))
      for _ in range(5):                              # duplicates
          both(frag(4, 1, False, b"z" * 64))
      both(frag(4, 1, True, b"w" * 64))               # overlapping, claiming to be last
      for fid in range(100, 400):                     # many reassemblies at once
          both(frag(fid, 1, False, os.urandom(100)))
  elif family == "natt":
      for n in (1, 2, 3, 4, 5, 8, 12, 20, 100):
          udp(4500, 4500, os.urandom(n))               # no non-ESP marker: ESP with junk
      udp(4500, 4500, b"\xff")                          # a NAT keepalive
      udp(4500, 4500, b"\0\0\0\0")                      # a marker and nothing after it
      for _ in range(200):                              # ESP, unknown SPI, bad ICV
          udp(4500, 4500, os.urandom(4) + struct.pack("!I", rnd.randrange(1 << 32)) + os.urandom(60))
  elif family == "flood":
      for k in range(3000):
          n = rnd.randrange(0, 400)
          port = 500 if k % 2 else 4500
          udp(port, port, os.urandom(n))
  elif family == "first":
      # Main mode message 1s with new cookies each and an acceptable offer
      # (aes128-sha256-modp2048, PSK): a flood of half-open negotiations.
      attrs = struct.pack("!14H", 0x8001, 7, 0x800e, 128, 0x8002, 4, 0x8003, 1,
                          0x8004, 14, 0x800b, 1, 0x800c, 28800)
      tr = pl(0, struct.pack("!BBH", 1, 1, 0) + attrs)
      prop = pl(0, struct.pack("!BBBB", 1, 1, 0, 1) + tr)
      sa = pl(0, struct.pack("!II", 1, 1) + prop)
      for _ in range(100):
          udp(500, 500, ike(1, 2, 0, 0, sa, i=os.urandom(8), r=b"\0" * 8))
  else:
    sys.exit("unknown family " + family)

send_family()
while sent < at_least:
    send_family()
print(sent, sent_bytes)
"#;

/// How many lines the client's output may grow per family (refusals are reported once
/// per reason and at most 16 times per IKE SA).
const MAX_NEW_LINES: usize = 40;

const FAMILIES: [&str; 6] = ["lengths", "sa", "live", "fragments", "natt", "flood"];

/// Datagrams of each family in the memory measurement.
const FLOOD: u64 = 20_000;

/// The bound on the helper's RSS growth over the whole measurement (generous: the
/// engine holds at most 4 reassemblies of 256 KiB and one refusal line per reason).
const MAX_RSS_GROWTH_KIB: u64 = 4 * 1024;

/// VmRSS of process `pid` in KiB (/proc/PID/status).
fn vm_rss_kib(pid: u32) -> postern_lab::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| LabError(format!("no VmRSS for {pid}")))
}

/// Runs the sender for `family` in the gateway's namespace (at least `at_least`
/// datagrams; 0: the family once); returns how many it sent.
fn send_family(
    lab: &Lab,
    script: &std::path::Path,
    family: &str,
    cookies: (&str, &str),
    at_least: u64,
) -> postern_lab::Result<u64> {
    send_from(lab, Role::Gw, script, family, cookies, at_least).map(|(n, _)| n)
}

/// The sender in `from`'s namespace, from its address to the other end's: (datagrams,
/// UDP payload bytes) sent.
fn send_from(
    lab: &Lab,
    from: Role,
    script: &std::path::Path,
    family: &str,
    cookies: (&str, &str),
    at_least: u64,
) -> postern_lab::Result<(u64, u64)> {
    let (src, dst) = match from {
        Role::Client => (CLIENT_ADDR, GW_ADDR),
        _ => (GW_ADDR, CLIENT_ADDR),
    };
    let mut c = lab.command(from, std::path::Path::new("python3"));
    c.arg(script)
        .args([family, src, dst, cookies.0, cookies.1])
        .arg(at_least.to_string());
    let sender = Proc::spawn(
        &format!("hostile-{family}"),
        c,
        Some(&lab.dir.join(format!("hostile-{family}-{at_least}.out"))),
    )?;
    lab.adopt(&sender);
    let status = sender.exit_status(Duration::from_secs(120))?;
    lab_ensure!(
        status.success(),
        "the {family} sender failed: {}",
        sender.tail(20)
    );
    let out = sender.lines_of(postern_lab::process::Stream::Stdout);
    let counts: Vec<u64> = out
        .last()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match counts[..] {
        [n, bytes] => Ok((n, bytes)),
        _ => Err(LabError(format!(
            "the {family} sender said no count: {out:?}"
        ))),
    }
}

#[test]
fn hostile_datagrams_do_not_hurt_an_established_tunnel() {
    let t = Tunnel::main_psk("hostile");
    run_scenario("hostile", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let (ic, rc) = (sa.get("initiator-spi"), sa.get("responder-spi"));
        lab_ensure!(
            ic.len() == 16 && rc.len() == 16,
            "no cookies in the gateway's SA: {:?}",
            sa.fields
        );
        let script = lab.dir.join("hostile.py");
        std::fs::write(&script, SENDER)?;
        lab.ping(Role::Client, None, LAN_HOST)?;

        let started = std::time::Instant::now();
        let pid = client.proc.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        lab_ensure!(
            comm.trim() == "postern-helper",
            "process {pid} is {comm:?}, not the helper"
        );
        let mut rss = vec![("(start)".to_string(), 0, vm_rss_kib(pid)?)];
        // Each family once, then (the memory measurement) FLOOD datagrams of each.
        let rounds = FAMILIES
            .iter()
            .map(|f| (*f, 0))
            .chain(FAMILIES.iter().map(|f| (*f, FLOOD)));
        for (family, at_least) in rounds {
            let before = client.stdout().len() + client.stderr().len();
            let sent = send_family(lab, &script, family, (ic, rc), at_least)?;
            // Let the helper read what was sent, then look.
            std::thread::sleep(Duration::from_millis(500));
            lab_ensure!(
                client.proc.try_status().is_none(),
                "the helper died on the {family} datagrams:\n{}",
                client.stderr().join("\n")
            );
            let out: Vec<String> = client.stdout().into_iter().chain(client.stderr()).collect();
            let new = &out[before.min(out.len())..];
            eprintln!("after {family}: {} new lines", new.len());
            for l in new {
                eprintln!("  {l}");
            }
            lab_ensure!(
                !new.iter().any(|l| l.contains("closing")
                    || l.contains("connection lost")
                    || l.contains("deleted")
                    || l.contains("panicked")),
                "the {family} datagrams tore something down:\n{}",
                new.join("\n")
            );
            lab_ensure!(
                new.len() <= MAX_NEW_LINES,
                "the {family} datagrams made {} lines (at most {MAX_NEW_LINES})",
                new.len()
            );
            lab.ping(Role::Client, None, LAN_HOST)
                .map_err(|e| LabError(format!("after the {family} datagrams: {e}")))?;
            lab_ensure!(
                gw.list_sas()?.iter().any(|s| s.state() == "ESTABLISHED"),
                "the gateway lost the SA after {family}"
            );
            if at_least > 0 {
                rss.push((family.to_string(), sent, vm_rss_kib(pid)?));
            }
            if family == FAMILIES[FAMILIES.len() - 1] && at_least == 0 {
                // Each family seen once: the measurement starts from here.
                rss.push(("(each family once)".to_string(), 0, vm_rss_kib(pid)?));
            }
        }
        eprintln!("the helper's VmRSS under hostile input:");
        for (what, sent, kib) in &rss {
            eprintln!("  {what:>20}: {sent:>6} datagrams, VmRSS {kib} KiB");
        }
        let base = rss[1].2;
        let peak = rss.iter().skip(1).map(|r| r.2).max().unwrap_or(base);
        let total: u64 = rss.iter().map(|r| r.1).sum();
        eprintln!(
            "{total} datagrams: VmRSS {base} -> {} KiB (peak {peak} KiB, growth {} KiB)",
            rss[rss.len() - 1].2,
            peak.saturating_sub(base)
        );
        lab_ensure!(
            peak.saturating_sub(base) < MAX_RSS_GROWTH_KIB,
            "the helper's RSS grew {} KiB under {total} hostile datagrams (at most {MAX_RSS_GROWTH_KIB})",
            peak.saturating_sub(base)
        );
        client.sigterm()?;
        lab_ensure!(
            client.exit_code(Duration::from_secs(10))? == 0,
            "the helper did not exit cleanly after the hostile datagrams"
        );
        // The datagrams did reach the engine: it counted what it dropped.
        let out = client.stdout();
        let dropped = out
            .iter()
            .find_map(|l| {
                l.strip_prefix("ike: ")?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        eprintln!("the engine dropped {dropped} datagrams");
        // What was dropped on the established SA was said, at most once a minute.
        let reports: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("ike: dropped "))
            .collect();
        let minutes = started.elapsed().as_secs() as usize / 60;
        eprintln!("drop reports in {minutes}+ min: {reports:?}");
        lab_ensure!(
            !reports.is_empty() && reports.len() <= minutes + 2,
            "{} drop report lines (expected 1 to {}, at most one a minute):\n{}",
            reports.len(),
            minutes + 2,
            out.join("\n")
        );
        lab_ensure!(
            dropped >= 1000,
            "the engine counted {dropped} dropped datagrams (the families send thousands):\n{}",
            out.join("\n")
        );
        Ok(())
    });
}

/// The responder half (`postern-helper respond`, our gateway role): FLOOD main mode
/// message 1s with new cookies each and an acceptable offer, from the client's address.
/// The responder holds one half-open negotiation (each new one replaces it), so its
/// memory stays flat; its answers are not amplified (bytes back at most 3x the bytes
/// in, counted by nftables in the client's namespace); and a genuine client connects
/// right after.
#[test]
fn a_flood_of_first_messages_leaves_the_responders_memory_flat() {
    let mut t = Tunnel::main_psk("hostile-resp");
    t.nat_traversal = Some("force".into());
    run_scenario("hostile_resp", |lab: &Lab| {
        let responder = postern_lab::postern::start_responder(lab, &t)?;
        let pid = responder.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        lab_ensure!(
            comm.trim() == "postern-helper",
            "process {pid} is {comm:?}, not the responder"
        );
        let script = lab.dir.join("hostile.py");
        std::fs::write(&script, SENDER)?;
        lab.exec(
            Role::Client,
            &[
                "nft",
                "add table inet lab_count; \
                 add chain inet lab_count in { type filter hook input priority 0; }; \
                 add rule inet lab_count in udp sport 500 counter",
            ],
        )?;
        let zeros = "0000000000000000";
        // Warm up (one round), then the measurement.
        send_from(lab, Role::Client, &script, "first", (zeros, zeros), 0)?;
        std::thread::sleep(Duration::from_millis(500));
        let before = vm_rss_kib(pid)?;
        let t0 = std::time::Instant::now();
        let (sent, sent_bytes) =
            send_from(lab, Role::Client, &script, "first", (zeros, zeros), FLOOD)?;
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let after = vm_rss_kib(pid)?;
        let counters = lab.exec(Role::Client, &["nft", "list", "table", "inet", "lab_count"])?;
        let field = |name: &str| -> u64 {
            counters
                .split(name)
                .nth(1)
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let (replies, reply_bytes) = (field("packets "), field("bytes "));
        eprintln!(
            "responder: {sent} first messages ({sent_bytes} bytes) in {took:?}: VmRSS {before} -> {after} KiB; \
             {replies} replies ({reply_bytes} bytes of IP packets)"
        );
        lab_ensure!(
            responder.try_status().is_none(),
            "the responder ended under the flood:\n{}",
            responder.tail(30)
        );
        lab_ensure!(
            after.saturating_sub(before) < MAX_RSS_GROWTH_KIB,
            "the responder's RSS grew {} KiB under {sent} first messages",
            after.saturating_sub(before)
        );
        // The counter sees IP packets (28 bytes of headers each) for more than the flood
        // (the warm-up round too): still at most 3x what was sent.
        lab_ensure!(
            reply_bytes <= 3 * (sent_bytes + 28 * sent) + 3 * 100 * 200,
            "{reply_bytes} bytes of answers to {sent_bytes} bytes of first messages"
        );
        let lines = responder.lines().len();
        lab_ensure!(
            lines < 200,
            "the responder wrote {lines} lines under the flood:\n{}",
            responder.tail(30)
        );
        // A genuine client still gets through.
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        client.exit_code(Duration::from_secs(15))?;
        Ok(())
    });
}

/// Captures the gateway's ESP-in-UDP packets to the client on the gateway's link
/// (`python3 capture.py GW CLIENT N`): prints `ready`, then `pkt HEX` for each of the
/// first N (at most 10 s), with the client's port.
const CAPTURE: &str = r#"
import socket, sys, time
gw, client, n = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2]), int(sys.argv[3])
# ETH_P_ALL: a socket bound to one protocol does not see what the host sends.
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
s.bind(("g0", 3))
s.settimeout(0.5)
print("ready", flush=True)
end = time.time() + 10
got = 0
while got < n and time.time() < end:
    try:
        p, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    if addr[1] != 0x0800:
        continue
    ihl = (p[0] & 15) * 4
    if len(p) < ihl + 8 or p[9] != 17 or p[12:16] != gw or p[16:20] != client:
        continue
    u = p[ihl:]
    if u[0:2] != b"\x11\x94":
        continue
    esp = u[8:]
    if len(esp) <= 8 or esp[0:4] == b"\0\0\0\0":
        continue
    print("pkt", int.from_bytes(u[2:4], "big"), esp.hex(), flush=True)
    got += 1
"#;

/// Sends hostile ESP on the live inbound SA, from the gateway's address and NAT-T port
/// (`python3 esp.py GW CLIENT PORT HEX...`, genuine packets captured from the gateway):
/// replays of each, copies with a new sequence number and a broken ICV or ciphertext,
/// truncations, and random bodies behind the live SPI. Prints the number sent.
const ESP_SENDER: &str = r#"
import os, random, socket, struct, sys
src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
pkts = [bytes.fromhex(h) for h in sys.argv[4:]]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(15)
sent = 0
def udp(payload):
    global sent
    sent += 1
    ln = 8 + len(payload)
    u = struct.pack("!HHHH", 4500, dport, ln, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ln, rnd.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + u, (dst, 0))
def with_seq(p, seq):
    return p[:4] + struct.pack("!I", seq) + p[8:]
for p in pkts:
    seq = struct.unpack("!I", p[4:8])[0]
    for _ in range(20):                                 # replayed: a genuine ICV, an old sequence number
        udp(p)
    for k in range(1, 21):                              # a new sequence number, the ICV broken
        q = bytearray(with_seq(p, seq + 1000 + k))
        q[-1] ^= 0x5a
        udp(bytes(q))
    for k in range(21, 41):                             # a new sequence number, the ciphertext broken
        q = bytearray(with_seq(p, seq + 1000 + k))
        q[8 + (k % (len(q) - 8))] ^= 0x01
        udp(bytes(q))
p = with_seq(pkts[0], 5000)
for n in range(4, len(p)):                              # truncated (the SPI whole, at least)
    udp(p[:n])
for k in range(50):                                     # random bodies behind the live SPI
    udp(p[:4] + struct.pack("!I", 6000 + k) + os.urandom(rnd.randrange(0, 200)))
print(sent)
"#;

/// ESP on the live inbound SPI (issue 15: bad ICV, replayed sequence number, truncated
/// packets), sent from the gateway's address and NAT-T port with genuine packets of the
/// gateway as the base: every one is dropped by the userspace datapath (its drop count
/// at the end covers them all), the tunnel stays up and carries a ping after, the
/// helper does not panic.
#[test]
fn hostile_esp_on_the_live_spi_is_dropped() {
    let t = Tunnel::main_psk("hostile-esp");
    run_scenario("hostile-esp", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("datapath userspace")),
            "not the userspace datapath: {out:?}"
        );
        let spi_in = out
            .iter()
            .find_map(|l| {
                l.strip_prefix("phase2 established spi_in=0x")?
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .ok_or_else(|| LabError(format!("no inbound SPI in: {out:?}")))?;

        // Genuine ESP of the gateway to the client: the ping's answers.
        let cap = lab.dir.join("capture.py");
        std::fs::write(&cap, CAPTURE)?;
        let mut c = lab.command(Role::Gw, std::path::Path::new("python3"));
        c.arg(&cap).args([GW_ADDR, CLIENT_ADDR, "2"]);
        let capture = Proc::spawn("esp-capture", c, Some(&lab.dir.join("capture.out")))?;
        lab.adopt(&capture);
        capture.wait_line(
            Some(postern_lab::process::Stream::Stdout),
            "ready",
            Duration::from_secs(5),
        )?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let st = capture.exit_status(Duration::from_secs(15))?;
        let captured: Vec<(String, String)> = capture
            .lines_of(postern_lab::process::Stream::Stdout)
            .iter()
            .filter_map(|l| {
                let (port, hex) = l.strip_prefix("pkt ")?.split_once(' ')?;
                Some((port.to_string(), hex.to_string()))
            })
            .collect();
        let port = captured.first().map(|c| c.0.clone()).unwrap_or_default();
        let pkts: Vec<String> = captured.into_iter().map(|c| c.1).collect();
        lab_ensure!(
            st.success() && pkts.len() == 2,
            "captured {} packets ({st}): {}",
            pkts.len(),
            capture.tail(10)
        );
        lab_ensure!(
            pkts.iter().all(|p| p.starts_with(&spi_in)),
            "the captured ESP is not on the live inbound SPI {spi_in}: {pkts:?}"
        );

        let script = lab.dir.join("esp.py");
        std::fs::write(&script, ESP_SENDER)?;
        let mut c = lab.command(Role::Gw, std::path::Path::new("python3"));
        c.arg(&script)
            .args([GW_ADDR, CLIENT_ADDR, port.as_str()])
            .args(&pkts);
        let sender = Proc::spawn("esp-sender", c, Some(&lab.dir.join("esp-sender.out")))?;
        lab.adopt(&sender);
        let st = sender.exit_status(Duration::from_secs(30))?;
        let sent: u64 = sender
            .lines_of(postern_lab::process::Stream::Stdout)
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        lab_ensure!(
            st.success() && sent > 200,
            "the ESP sender: {st}, {sent} sent: {}",
            sender.tail(10)
        );
        std::thread::sleep(Duration::from_millis(500));
        lab_ensure!(
            client.proc.try_status().is_none(),
            "the helper died on hostile ESP:\n{}",
            client.stderr().join("\n")
        );
        let out: Vec<String> = client.stdout().into_iter().chain(client.stderr()).collect();
        lab_ensure!(
            !out.iter().any(|l| l.contains("closing")
                || l.contains("connection lost")
                || l.contains("deleted")
                || l.contains("panicked")),
            "hostile ESP tore something down:\n{}",
            out.join("\n")
        );
        lab.ping(Role::Client, None, LAN_HOST)
            .map_err(|e| LabError(format!("after hostile ESP: {e}")))?;
        lab_ensure!(
            gw.list_sas()?.iter().any(|s| s.state() == "ESTABLISHED"),
            "the gateway lost the SA after hostile ESP"
        );
        client.sigterm()?;
        lab_ensure!(
            client.exit_code(Duration::from_secs(10))? == 0,
            "the helper did not exit cleanly after hostile ESP"
        );
        // "datapath stopped: ...; received N packets (B bytes, D dropped)"
        let out: Vec<String> = client.stdout().into_iter().chain(client.stderr()).collect();
        let Some(stopped) = out.iter().find(|l| l.contains("datapath stopped")) else {
            postern_lab::lab_bail!("no `datapath stopped` line: {out:?}");
        };
        let received = stopped.split("received ").nth(1).unwrap_or_default();
        let number_before = |s: &str, word: &str| -> Option<u64> {
            let words: Vec<&str> = s
                .split([' ', '(', ')', ','])
                .filter(|w| !w.is_empty())
                .collect();
            let at = words.iter().position(|w| *w == word)?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        };
        let (good, dropped) = (
            number_before(received, "packets"),
            number_before(received, "dropped"),
        );
        eprintln!("hostile ESP: {sent} sent on SPI {spi_in}; {stopped}");
        lab_ensure!(
            matches!(dropped, Some(d) if d >= sent),
            "the datapath dropped {dropped:?} of {sent} hostile packets: {stopped}"
        );
        // Two pings of two answers each (the replays were not delivered again).
        lab_ensure!(
            matches!(good, Some(g) if (4..sent).contains(&g)),
            "the datapath received {good:?} packets: {stopped}"
        );
        Ok(())
    });
}
