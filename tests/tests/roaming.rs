//! Laptop life against a real strongSwan gateway: the client's outer address replaced
//! while a ping runs through the tunnel (the helper follows rtnetlink and negotiates
//! again at once from the new address, asking Mode Config for the same inner address).
//!
//! The TUN device, its inner address and its routes stay across the new negotiation, so
//! a TCP connection through the tunnel (an echo session from the client to the office
//! host) carries data before and after the change without breaking.
//!
//! Prints the time from the new address to the first ping answer through the tunnel
//! (the README's figure); no timed assertion beyond a generous bound. Root only.

use std::path::Path;
use std::time::{Duration, Instant};

use postern_lab::config::{LAN_HOST, POOL_FIRST};
use postern_lab::postern::exit;
use postern_lab::process::{Proc, Stream};
use postern_lab::{Lab, Role, Tunnel, lab_ensure, run_scenario};

/// The client's new outer address, on the same link as the old one.
const NEW_CLIENT_ADDR: &str = "192.0.2.3";

/// The office host's side of the long-lived TCP session: echoes lines (one client,
/// at most 60 s).
const ECHO_SERVER: &str = "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7007))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(60)
f = c.makefile('rwb', buffering=0)
for line in f:
    f.write(line)
";

/// The client's side: one TCP connection, a line every 50 ms for `secs` seconds, each
/// echo printed with its wall-clock time; `broken: ...` and exit 1 if the connection
/// breaks or an echo takes longer than 20 s.
const ECHO_CLIENT: &str = "import socket, sys, time
c = socket.create_connection((sys.argv[1], 7007), timeout=5)
c.settimeout(20)
f = c.makefile('rwb', buffering=0)
end = time.time() + float(sys.argv[2])
n = 0
try:
    while time.time() < end:
        f.write(b'%d\\n' % n)
        back = f.readline()
        if back != b'%d\\n' % n:
            print('broken: echo', back, flush=True)
            sys.exit(1)
        print('echo', n, time.time(), flush=True)
        n += 1
        time.sleep(0.05)
except Exception as e:
    print('broken:', e, flush=True)
    sys.exit(1)
print('done', n, flush=True)
";

/// The index of the client's TUN device named in the `datapath userspace dev=...` line.
fn tun_index(lab: &Lab, out: &[String]) -> postern_lab::Result<(String, String)> {
    let dev = out
        .iter()
        .find_map(|l| {
            l.strip_prefix("datapath userspace")
                .and_then(|r| r.split_whitespace().find_map(|w| w.strip_prefix("dev=")))
        })
        .map(str::to_string)
        .ok_or_else(|| postern_lab::LabError(format!("no datapath line: {out:?}")))?;
    let index = lab.exec(
        Role::Client,
        &["cat", &format!("/sys/class/net/{dev}/ifindex")],
    )?;
    Ok((dev, index.trim().to_string()))
}

/// Answers of the background ping, as moments.
fn replies(ping: &Proc) -> Vec<Instant> {
    ping.lines()
        .into_iter()
        .filter(|l| l.stream == Stream::Stdout && l.text.contains("bytes from"))
        .map(|l| ping.started() + l.at)
        .collect()
}

#[test]
fn outer_address_replaced_while_pinging() {
    let t = Tunnel::main_psk("roam-addr")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .dpd(10, 30);
    run_scenario("roam-addr", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let (dev, index_before) = tun_index(lab, &client.stdout())?;
        let addr_before = lab.exec(
            Role::Client,
            &["ip", "-o", "-4", "addr", "show", "dev", &dev],
        )?;

        // A TCP session through the tunnel for the whole scenario (bounded: 12 s).
        let mut server = lab.command(Role::Lan, Path::new("python3"));
        server.args(["-c", ECHO_SERVER, LAN_HOST]);
        let server = Proc::spawn(
            "echo-server",
            server,
            Some(&lab.dir.join("echo-server.out")),
        )?;
        lab.adopt(&server);
        std::thread::sleep(Duration::from_millis(300));
        let mut tcp = lab.command(Role::Client, Path::new("python3"));
        tcp.args(["-c", ECHO_CLIENT, LAN_HOST, "12"]);
        let tcp = Proc::spawn("echo-client", tcp, Some(&lab.dir.join("echo-client.out")))?;
        lab.adopt(&tcp);
        tcp.wait_line(Some(Stream::Stdout), "echo 5 ", Duration::from_secs(5))?;

        // A ping through the tunnel for the whole scenario (bounded: 60 s).
        let mut cmd = lab.command(Role::Client, Path::new("ping"));
        cmd.args(["-n", "-i", "0.05", "-W", "1", "-w", "60", LAN_HOST]);
        let ping = Proc::spawn("ping", cmd, Some(&lab.dir.join("ping.out")))?;
        lab.adopt(&ping);
        std::thread::sleep(Duration::from_millis(500));
        lab_ensure!(!replies(&ping).is_empty(), "no answers before the change");

        // Another network: the old address goes, a new one comes (the gateway's link
        // and route stay as they were).
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        let new_addr = Instant::now();
        let new_addr_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        lab.exec(
            Role::Client,
            &[
                "ip",
                "addr",
                "add",
                &format!("{NEW_CLIENT_ADDR}/24"),
                "dev",
                "c0",
            ],
        )?;
        let changed = client.wait_line("network changed", Duration::from_secs(5))?;
        lab_ensure!(
            changed.text.contains(NEW_CLIENT_ADDR),
            "the change does not name the new address: {changed}"
        );
        // Traffic again: the first answer after the new address.
        let deadline = Instant::now() + Duration::from_secs(30);
        let resumed = loop {
            if let Some(t) = replies(&ping).into_iter().find(|t| *t > new_addr) {
                break t;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "the ping did not resume within 30 s: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = resumed - new_addr;
        let connected = client
            .stdout()
            .iter()
            .filter(|l| l.starts_with("connected"))
            .count();
        println!(
            "roaming figure: new outer address -> ping answered through the tunnel again in {} ms (userspace datapath, XAuth + Mode Config, veth link)",
            took.as_millis()
        );
        let out = client.stdout();
        lab_ensure!(connected >= 2, "no second `connected`: {out:?}");
        // Negotiated from the new address, the same inner address given back.
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("connecting") && l.contains(NEW_CLIENT_ADDR)),
            "no negotiation from {NEW_CLIENT_ADDR}: {out:?}"
        );
        let mode_configs: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("mode-config"))
            .collect();
        lab_ensure!(
            mode_configs.len() >= 2
                && mode_configs
                    .iter()
                    .all(|l| l.starts_with(&format!("mode-config {POOL_FIRST} "))),
            "the inner address changed: {mode_configs:?}"
        );
        // The gateway sees the tunnel from the new address.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = gw.list_sas_text();
            if shown.contains(NEW_CLIENT_ADDR) && shown.contains("INSTALLED") {
                break;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "the gateway has no tunnel from {NEW_CLIENT_ADDR}:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        lab.ping(Role::Client, None, LAN_HOST)?;
        // The same device (same index), inner address and routes: kept, not remade.
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("datapath: kept across the reconnect")),
            "the datapath was not kept: {out:?}"
        );
        let (dev_after, index_after) = tun_index(lab, &client.stdout())?;
        lab_ensure!(
            dev_after == dev && index_after == index_before,
            "the TUN device changed: {dev} #{index_before} -> {dev_after} #{index_after}"
        );
        let addr_after = lab.exec(
            Role::Client,
            &["ip", "-o", "-4", "addr", "show", "dev", &dev],
        )?;
        lab_ensure!(
            addr_after == addr_before,
            "the inner address changed: {addr_before} -> {addr_after}"
        );
        lab_ensure!(
            !out.iter().any(|l| l.starts_with("datapath stopped")),
            "the datapath was stopped across the change: {out:?}"
        );
        // The TCP session carried data before and after the change, unbroken.
        let code = tcp.exit_status(Duration::from_secs(30))?;
        let echoes: Vec<f64> = tcp
            .lines_of(Stream::Stdout)
            .iter()
            .filter_map(|l| l.strip_prefix("echo "))
            .filter_map(|r| r.split_whitespace().nth(1).and_then(|t| t.parse().ok()))
            .collect();
        let after = echoes
            .iter()
            .filter(|t| **t > new_addr_wall + 0.001)
            .count();
        let tcp_out = tcp.lines_of(Stream::Stdout);
        lab_ensure!(
            code.success() && tcp_out.last().is_some_and(|l| l.starts_with("done")),
            "the TCP session broke ({code}): {:?}",
            tcp_out.iter().rev().take(3).collect::<Vec<_>>()
        );
        lab_ensure!(
            echoes.len() > after && after >= 10,
            "{} echoes, {after} after the change",
            echoes.len()
        );
        let gap = echoes
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(0.0f64, f64::max);
        println!(
            "roaming figure: a TCP session through the tunnel survived the new outer address ({} echoes, {after} after it; longest gap {:.0} ms)",
            echoes.len(),
            gap * 1000.0
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

/// Between networks: the client's only address goes, the tunnel is lost and the
/// reconnect attempts fail with growing waits; when the address comes back during a
/// long wait, the helper tries again at once (it watches the network while waiting)
/// instead of sleeping the wait out. The same device carries the new SAs.
#[test]
fn network_back_while_waiting_retries_at_once() {
    let t = Tunnel::main_psk("roam-wait")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .dpd(2, 6);
    run_scenario("roam-wait", |lab: &Lab| {
        let _gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let (dev, index_before) = tun_index(lab, &client.stdout())?;

        // No network at all.
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        client.wait_line("connection lost", Duration::from_secs(15))?;
        // Wait for a long wait, then give the network back at once.
        let long = client.wait_line("next try in 8 s", Duration::from_secs(30))?;
        let back = Instant::now();
        lab.exec(
            Role::Client,
            &["ip", "addr", "add", "192.0.2.2/24", "dev", "c0"],
        )?;
        let note = client.wait_line("trying again at once", Duration::from_secs(8))?;
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let n = client
                .stdout()
                .iter()
                .filter(|l| l.starts_with("connected"))
                .count();
            if n >= 2 {
                break;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "not connected again within the 8 s wait: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = back.elapsed();
        println!(
            "roaming figure: network back during an 8 s wait -> connected again in {} ms ({})",
            took.as_millis(),
            note.text
        );
        lab_ensure!(
            long.at < note.at,
            "the retry came before the long wait: {long} / {note}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        let (dev_after, index_after) = tun_index(lab, &client.stdout())?;
        lab_ensure!(
            dev_after == dev && index_after == index_before,
            "the TUN device changed: {dev} #{index_before} -> {dev_after} #{index_after}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(!links.contains("postern"), "device left: {links}");
        Ok(())
    });
}

/// XAuth on a reconnect: the profile has no password, the user types it once (here on
/// the terminal `postern-helper up` asks on, a pty made by `script`); after the outer
/// address changes, the new negotiation's XAuth is answered from the helper's memory
/// and nobody is asked again.
#[test]
fn xauth_answered_from_memory_after_a_network_change() {
    let t = Tunnel::main_psk("roam-xauth")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .dpd(10, 30);
    run_scenario("roam-xauth", |lab: &Lab| {
        let _gw = lab.start_gateway(&t)?;
        let profile = lab.write_profile(&t)?;
        let text = std::fs::read_to_string(&profile)?;
        std::fs::write(&profile, text.replace("password = \"alice-pass-7\"\n", ""))?;
        let helper = postern_lab::postern::helper_path()?;
        // The password typed once; the pipe stays open (bounded: 40 s).
        let line = format!(
            "(sleep 1; printf 'alice-pass-7\\r'; sleep 40) | script -qfec 'exec {} up {}' /dev/null",
            helper.display(),
            profile.display()
        );
        let mut cmd = lab.command(Role::Client, Path::new("sh"));
        cmd.args(["-c", &line]);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let up = Proc::spawn("postern-helper-pty", cmd, Some(&lab.dir.join("pty.out")))?;
        lab.adopt(&up);
        let asked = |p: &Proc| {
            p.lines_of(Stream::Stdout)
                .iter()
                .filter(|l| l.contains("xauth: the gateway asks for"))
                .count()
        };
        let connected = |p: &Proc| {
            p.lines_of(Stream::Stdout)
                .iter()
                .filter(|l| l.starts_with("connected"))
                .count()
        };
        up.wait_line(Some(Stream::Stdout), "connected", Duration::from_secs(20))?;
        lab_ensure!(asked(&up) == 1, "asked {} times", asked(&up));
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        lab.exec(
            Role::Client,
            &[
                "ip",
                "addr",
                "add",
                &format!("{NEW_CLIENT_ADDR}/24"),
                "dev",
                "c0",
            ],
        )?;
        up.wait_line(
            Some(Stream::Stdout),
            "xauth: answered with what was given at connect",
            Duration::from_secs(10),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while connected(&up) < 2 {
            lab_ensure!(
                Instant::now() < deadline,
                "not connected again: {:?}",
                up.lines_of(Stream::Stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lab_ensure!(
            asked(&up) == 1,
            "asked again: {:?}",
            up.lines_of(Stream::Stdout)
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        // The password is in no line the helper printed.
        let all = up.lines();
        lab_ensure!(
            !all.iter().any(|l| l.text.contains("alice-pass-7")),
            "the password was printed"
        );
        // A clean end: SIGTERM to the helper alone (its last lines still go through
        // `script`'s pty), then to the rest of the group (script, the feeding shell).
        // (`script` runs the helper in a session of its own, on the pty: it is found
        // as the child of `script`, itself a child of the shell we started.)
        let group = up.pid().to_string();
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("pkill -TERM -x postern-helper -P \"$(pgrep -x script -P {group})\""),
            ])
            .status();
        let ended = up.wait_line(
            Some(Stream::Stdout),
            "disconnected",
            Duration::from_secs(15),
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{group}")])
            .status();
        ended?;
        Ok(())
    });
}
