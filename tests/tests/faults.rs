//! Faults a laptop meets every day (issue 15, point 3), against a real strongSwan
//! gateway in the namespace lab: 20 % packet loss both ways during the connect and
//! while connected; the gateway killed and restarted (seen on D-Bus); the helper daemon
//! SIGKILLed while connected and started again (leftovers removed, the owner told); a
//! gateway answering slowly (500 ms each way through a delaying UDP relay: this kernel
//! has no netem). Each test also checks that the lab's PSK appears in none of the
//! helper's output. Root only.

use std::process::Output;
use std::time::{Duration, Instant};

use postern_lab::bususer::{BusUser, allow_rules, text, without_psk};
use postern_lab::config::{GW_ADDR, LAN_HOST};
use postern_lab::hoststate::{ensure_same, snapshot};
use postern_lab::process::Proc;
use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, LabError, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

/// 20 % of IKE/NAT-T datagrams and ESP packets dropped, in and out of the gateway's
/// namespace (so both directions), each drop counted.
const LOSS_RULES: &str = "add table inet lab_loss; \
    add chain inet lab_loss in { type filter hook input priority -10; }; \
    add chain inet lab_loss out { type filter hook output priority -10; }; \
    add rule inet lab_loss in udp dport { 500, 4500 } numgen random mod 100 < 20 counter drop; \
    add rule inet lab_loss in meta l4proto esp numgen random mod 100 < 20 counter drop; \
    add rule inet lab_loss out udp sport { 500, 4500 } numgen random mod 100 < 20 counter drop; \
    add rule inet lab_loss out meta l4proto esp numgen random mod 100 < 20 counter drop";

/// The `N` of the helper's `connected in N ms` line.
fn connected_ms(line: &str) -> Option<u64> {
    line.split("connected in ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every file the lab wrote except the profiles and the gateway's own configuration
/// (which hold the PSK by design): none may contain `secret`.
fn ensure_no_secret_in_outputs(lab: &Lab, secret: &str) -> Result<usize> {
    let mut checked = 0;
    let mut stack = vec![lab.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                // The gateway's swanctl/ and the test users' config dirs (profiles).
                let n = e.file_name().to_string_lossy().into_owned();
                if n != "swanctl" && n != "config" {
                    stack.push(p);
                }
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".out") || name == "charon.log") {
                continue;
            }
            let text = std::fs::read(&p)?;
            lab_ensure!(
                !String::from_utf8_lossy(&text).contains(secret),
                "a secret is in {}",
                p.display()
            );
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn faults_packet_loss_20_percent_both_ways() {
    packet_loss(Tunnel::main_psk("loss"), "loss");
}

/// The profile of the hang seen after XAuth (issue 15): XAuth, no Mode Config. A lost
/// ACK of the XAuth status makes strongSwan drop the IKE SA at our quick mode; the
/// client starts over once (engine: `ike/tests/setup_loss.rs`).
#[test]
fn faults_packet_loss_20_percent_with_xauth() {
    packet_loss(
        Tunnel::main_psk("lossx").xauth("alice", "alice-pass-7", "alice-pass-7"),
        "lossx",
    );
}

fn packet_loss(t: Tunnel, scenario: &str) {
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        lab.exec(Role::Gw, &["nft", LOSS_RULES])?;
        let client = lab.start_postern(&t)?;
        // The retransmission budget: 5 sends over 25 s per message.
        let line = client.wait_line("connected", Duration::from_secs(90))?;
        let ms = connected_ms(&line.text).unwrap_or(0);
        let restarted = client
            .stdout()
            .iter()
            .chain(client.stderr().iter())
            .any(|l| l.contains("starting it over"));
        eprintln!(
            "{scenario}: connected under 20 % loss both ways in {ms} ms{}",
            if restarted {
                " (negotiation started over once)"
            } else {
                ""
            }
        );
        // The gateway installs its side on our third quick mode message, which the loss
        // may eat: strongSwan then sends its answer again at 4, 11.2, 24.2 and 47.5 s
        // and each round gets through both ways with 0.8 * 0.8 = 64 %; 60 s leaves
        // five rounds (all failing: 0.36^5, about 0.6 %; 20 s, three rounds, failed
        // once in CI).
        gw.wait_established(Duration::from_secs(60))?;
        // Connected: 30 pings through the tunnel, most answered (each needs both ways:
        // 0.8 * 0.8 = 64 % expected).
        let out = match lab.exec(
            Role::Client,
            &["ping", "-n", "-c", "30", "-i", "0.2", "-W", "1", LAN_HOST],
        ) {
            Ok(o) => o,
            Err(e) => lab_bail!("no ping answered under loss: {e}"),
        };
        let received: u32 = out
            .split(" received")
            .next()
            .and_then(|s| s.rsplit(", ").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        eprintln!("under 20 % loss: {received}/30 pings answered");
        lab_ensure!(received >= 10, "{received}/30 pings answered:\n{out}");
        // The loss did happen: the counters of the drop rules.
        let rules = lab.exec(Role::Gw, &["nft", "list", "table", "inet", "lab_loss"])?;
        let dropped: u64 = rules
            .split("packets ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        eprintln!("the gateway's namespace dropped {dropped} packets");
        lab_ensure!(dropped >= 3, "hardly anything was dropped:\n{rules}");
        lab_ensure!(
            client.proc.try_status().is_none(),
            "the helper ended under loss: {}",
            client.proc.tail(30)
        );
        client.sigterm()?;
        client.exit_status(Duration::from_secs(20))?;
        let n = ensure_no_secret_in_outputs(lab, &t.psk)?;
        eprintln!("PSK in none of {n} output files");
        Ok(())
    });
}

/// The bus, polkit, the helper daemon and a test user allowed to connect, with the
/// profile `name` added (without its PSK).
struct BusLab {
    _host: HostChanges,
    sys: SystemBus,
    user: BusUser,
}

fn bus_lab(lab: &Lab, user: &str, name: &str, profile: &str) -> Result<BusLab> {
    let mut host = HostChanges::default();
    let sys = SystemBus::start(lab, &allow_rules(&[user]))?;
    let u = BusUser::new(lab, &mut host, &sys, user)?;
    let o = u.postern(&["add", name, "--from", "-"], Some(&without_psk(profile)))?;
    lab_ensure!(o.status.success(), "postern add: {}", text(&o));
    Ok(BusLab {
        _host: host,
        sys,
        user: u,
    })
}

fn up(user: &BusUser, name: &str, psk: &str) -> Result<Output> {
    let o = user.postern(&["up", name, "--secrets-stdin"], Some(&format!("{psk}\n")))?;
    lab_ensure!(o.status.success(), "postern up {name}: {}", text(&o));
    Ok(o)
}

/// The caller's `postern --json status` lines.
fn status(user: &BusUser) -> Result<String> {
    let o = user.postern(&["--json", "status"], None)?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The first connection path in the caller's `List`.
fn first_path(user: &BusUser) -> Result<String> {
    let o = user.busctl(&[
        "call",
        "org.postern.Helper1",
        "/org/postern/Helper1",
        "org.postern.Helper1",
        "List",
    ])?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.split('"')
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| LabError(format!("no connection listed: {}", text(&o))))
}

/// Waits (bounded) until the caller's status shows `"state":"<state>"`; returns when.
fn wait_state(user: &BusUser, state: &str, timeout: Duration) -> Result<Duration> {
    let t = Instant::now();
    let want = format!("\"state\":\"{state}\"");
    loop {
        let st = status(user)?;
        if st.contains(&want) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            lab_bail!("not {state} within {timeout:?}; status: {st}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn faults_gateway_killed_and_restarted_seen_on_dbus() {
    let t = Tunnel::main_psk("gwkill").dpd(2, 8);
    run_scenario("gwkill", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let b = bus_lab(lab, "postern-lab-f1", &t.name, &t.postern_profile())?;
        up(&b.user, &t.name, &t.psk)?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        gw.kill()?;
        // DPD: interval 2 s + timeout 8 s, then the reconnect loop (state reconnecting).
        let took = wait_state(&b.user, "reconnecting", Duration::from_secs(25))?;
        eprintln!("gateway killed: reconnecting on D-Bus after {took:?}");
        lab_ensure!(
            took < Duration::from_secs(16),
            "dead peer noticed only after {took:?} (DPD 2 s + 8 s)"
        );
        let gw2 = lab.start_gateway(&t)?;
        let back = Instant::now();
        wait_state(&b.user, "connected", Duration::from_secs(70))?;
        eprintln!("gateway back: connected again after {:?}", back.elapsed());
        gw2.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        // The tunnel's log as its owner reads it over the bus.
        let path = first_path(&b.user)?;
        let o = b.user.busctl(&[
            "call",
            "org.postern.Helper1",
            &path,
            "org.postern.Helper1.Connection",
            "RecentLog",
        ])?;
        let log = String::from_utf8_lossy(&o.stdout).into_owned();
        lab_ensure!(
            log.contains("connection lost: dead peer") && log.contains("reconnecting in"),
            "the log does not say the connection was lost: {}",
            text(&o)
        );
        lab_ensure!(
            log.matches("connected in").count() >= 2,
            "no second `connected` in the log: {log}"
        );
        let o = b.user.postern(&["down", &t.name], None)?;
        lab_ensure!(o.status.success(), "postern down: {}", text(&o));
        gw2.wait_no_sas(Duration::from_secs(10))?;
        ensure_no_secret_in_outputs(lab, &t.psk)?;
        lab_ensure!(!log.contains(&t.psk), "the PSK is in the tunnel's log");
        Ok(())
    });
}

#[test]
fn faults_helper_killed_then_restarted_cleans_up_and_tells_the_owner() {
    // A full tunnel: its rule and bypass route (on the client's own link) survive the
    // helper's death, unlike the TUN device, so the restart has real work to do.
    let t = Tunnel::main_psk("hkill").full_tunnel();
    run_scenario("hkill", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let mut b = bus_lab(lab, "postern-lab-f2", &t.name, &t.postern_profile())?;
        let before = snapshot(lab)?;
        up(&b.user, &t.name, &t.psk)?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        b.sys.helper.signal("KILL")?;
        b.sys.helper.exit_status(Duration::from_secs(5))?;
        let left = snapshot(lab)?;
        lab_ensure!(
            ensure_same(&before, &left, "").is_err(),
            "the killed helper left nothing (the test would prove nothing)"
        );
        let journals: Vec<String> = std::fs::read_dir("/run/postern")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        eprintln!("left by the killed helper: {}", left.len() - before.len());
        b.sys.restart_helper(lab, 2)?;
        ensure_same(&before, &snapshot(lab)?, "after the helper's restart")?;
        let out = b.sys.helper.tail(100);
        lab_ensure!(
            out.contains("cleanup: removed what pid")
                && out.contains("lost with the previous helper"),
            "the restarted helper did not clean up or record the loss:\n{out}"
        );
        // The owner is told: a failed connection with the kind and the sentence.
        let st = status(&b.user)?;
        lab_ensure!(
            st.contains(&format!("\"name\":\"{}\"", t.name))
                && st.contains("\"state\":\"failed\"")
                && st.contains("tunnel lost: the helper was restarted"),
            "the owner's status after the restart: {st}"
        );
        let o = b.user.postern(&["status"], None)?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout).contains("tunnel lost: the helper was restarted"),
            "postern status does not say it: {}",
            text(&o)
        );
        let path = first_path(&b.user)?;
        let o = b.user.busctl(&[
            "get-property",
            "org.postern.Helper1",
            &path,
            "org.postern.Helper1.Connection",
            "LastError",
        ])?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout).contains("\"helper-restarted\""),
            "LastError: {}",
            text(&o)
        );
        // Nobody else sees it.
        let mut host = HostChanges::default();
        let other = BusUser::new(lab, &mut host, &b.sys, "postern-lab-f3")?;
        let o = other.busctl(&[
            "call",
            "org.postern.Helper1",
            "/org/postern/Helper1",
            "org.postern.Helper1",
            "List",
        ])?;
        lab_ensure!(
            String::from_utf8_lossy(&o.stdout).trim() == "ao 0",
            "another user lists the lost tunnel: {}",
            text(&o)
        );
        // The owner connects again at once (the notice does not count as a tunnel).
        up(&b.user, &t.name, &t.psk)?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let o = b.user.postern(&["down", &t.name], None)?;
        lab_ensure!(o.status.success(), "postern down: {}", text(&o));
        ensure_same(&before, &snapshot(lab)?, "after the second tunnel")?;
        eprintln!("run dir after the kill: {journals:?}");
        ensure_no_secret_in_outputs(lab, &t.psk)?;
        drop(host);
        Ok(())
    });
}

/// A UDP relay between client and gateway, in a namespace of its own behind the
/// gateway's: it owns the address the client's profile names as its gateway
/// ([`RELAY_ADDR`], routed there through the gateway's namespace), passes what the
/// client sends on ports 500 and 4500 to charon from its own link address, and charon's
/// answers back, each datagram `DELAY` seconds later (no netem on this kernel). Bounded
/// by `LIFETIME` seconds; prints its counts each second.
const RELAY: &str = r#"
import heapq, select, socket, sys, time
listen, upstream, src, delay, lifetime = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
front, back = {}, {}
for port in (500, 4500):
    f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    f.bind((listen, port))
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.bind((src, port))
    front[f] = (b, (upstream, port))
    back[b] = f
client, q, seq, up, down = {}, [], 0, 0, 0
end, report = time.time() + lifetime, 0
while time.time() < end:
    now = time.time()
    wait = min(0.2, max(0.0, q[0][0] - now)) if q else 0.2
    r, _, _ = select.select(list(front) + list(back), [], [], wait)
    for s in r:
        data, peer = s.recvfrom(65535)
        if s in front:
            client[s] = peer
            out, dest = front[s]
            up += 1
        else:
            out = back[s]
            dest = client.get(out)
            if dest is None:
                continue
            down += 1
        heapq.heappush(q, (time.time() + delay, seq, out, data, dest))
        seq += 1
    now = time.time()
    while q and q[0][0] <= now:
        _, _, out, data, dest = heapq.heappop(q)
        out.sendto(data, dest)
    if now > report:
        print("relayed up=%d down=%d" % (up, down), flush=True)
        report = now + 1
"#;

/// The address the client's profile names as its gateway: the relay's.
const RELAY_ADDR: &str = "192.0.2.9";
/// The relay's link to the gateway's namespace (relay side, gateway side).
const RELAY_LINK: (&str, &str) = ("198.18.0.2", "198.18.0.1");

/// The relay's namespace, deleted on drop (the lab only knows its own).
struct RelayNs(String);

impl Drop for RelayNs {
    fn drop(&mut self) {
        if let Ok(o) = std::process::Command::new("ip")
            .args(["netns", "pids", &self.0])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let st = std::process::Command::new("ip").args(args).status()?;
    lab_ensure!(st.success(), "ip {args:?} failed");
    Ok(())
}

#[test]
fn faults_slow_gateway_500ms_each_way() {
    let t = Tunnel::main_psk("slow");
    run_scenario("slow", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        // client -> gw namespace -> relay namespace (RELAY_ADDR) -> back to charon.
        let (c, g) = (lab.ns(Role::Client), lab.ns(Role::Gw));
        let r = format!("{}-relay", lab.name);
        ip(&["netns", "add", &r])?;
        let _relay_ns = RelayNs(r.clone());
        ip(&["-n", &r, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", &g, "link", "add", "g2", "type", "veth", "peer", "name", "r0", "netns", &r,
        ])?;
        ip(&[
            "-n",
            &g,
            "addr",
            "add",
            &format!("{}/24", RELAY_LINK.1),
            "dev",
            "g2",
        ])?;
        ip(&["-n", &g, "link", "set", "g2", "up"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("{}/24", RELAY_LINK.0),
            "dev",
            "r0",
        ])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("{RELAY_ADDR}/32"),
            "dev",
            "lo",
        ])?;
        ip(&["-n", &r, "link", "set", "r0", "up"])?;
        ip(&["-n", &r, "route", "add", "default", "via", RELAY_LINK.1])?;
        ip(&[
            "-n",
            &g,
            "route",
            "add",
            &format!("{RELAY_ADDR}/32"),
            "via",
            RELAY_LINK.0,
        ])?;
        ip(&[
            "-n",
            &c,
            "route",
            "add",
            &format!("{RELAY_ADDR}/32"),
            "via",
            GW_ADDR,
        ])?;
        let script = lab.dir.join("relay.py");
        std::fs::write(&script, RELAY)?;
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &r, "python3"])
            .arg(&script)
            .args([RELAY_ADDR, GW_ADDR, RELAY_LINK.0, "0.5", "120"]);
        let relay = Proc::spawn("relay", cmd, Some(&lab.dir.join("relay.out")))?;
        lab.adopt(&relay);
        relay.wait_line(None, "relayed", Duration::from_secs(10))?;
        // The profile names the relay as its gateway; the gateway's identity stays.
        let profile = lab.write_profile(&t)?;
        let text = std::fs::read_to_string(&profile)?.replacen(
            &format!("gateway = \"{GW_ADDR}\""),
            &format!("gateway = \"{RELAY_ADDR}\""),
            1,
        );
        lab_ensure!(
            text.contains(RELAY_ADDR),
            "the profile names no relay:\n{text}"
        );
        std::fs::write(&profile, text)?;
        let client = postern_lab::Client::start(lab, &profile)?;
        lab.adopt(&client.proc);
        let line = client.wait_line("connected", Duration::from_secs(60))?;
        let ms = connected_ms(&line.text).unwrap_or(0);
        eprintln!("connected through a 500 ms each way relay in {ms} ms");
        // Main mode (3 round trips) and quick mode (1.5) at 1 s per round trip at least.
        lab_ensure!(
            ms >= 4000,
            "connected in {ms} ms: the delay was not on the path"
        );
        gw.wait_established(Duration::from_secs(10))?;
        let t0 = Instant::now();
        lab.exec(
            Role::Client,
            &["ping", "-n", "-c", "2", "-i", "0.5", "-W", "3", LAN_HOST],
        )
        .map_err(|e| LabError(format!("no ping through the slow path: {e}")))?;
        eprintln!("two pings through the slow path in {:?}", t0.elapsed());
        let counts = relay.lines_of(postern_lab::process::Stream::Stdout);
        let last = counts.last().cloned().unwrap_or_default();
        eprintln!("relay: {last}");
        client.sigterm()?;
        client.exit_status(Duration::from_secs(20))?;
        relay.stop(Duration::from_secs(1));
        ensure_no_secret_in_outputs(lab, &t.psk)?;
        Ok(())
    });
}
