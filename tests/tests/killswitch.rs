//! The kill switch and the IPv6 leak block against a real strongSwan gateway.
//!
//! The proof is counted on the gateway's side: an nftables table in the gw namespace
//! counts every packet that arrives from the client's link and is not IKE (UDP 500/4500)
//! or ESP to the gateway — `office` for the office network 10.77.0.0/24, `other` for
//! anything else (IPv6 link-local housekeeping left out). The client has a default route
//! through the gateway's link, like a laptop on a hotel network, so without the kill
//! switch a ping to the office network goes out in the clear while the tunnel is down
//! (each test shows that too, after the normal disconnect, so the counters are seen
//! to count). Root only, like the other lab tests.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use postern_lab::config::{GW_ADDR, LAN_HOST};
use postern_lab::postern::{self, exit};
use postern_lab::{Client, Lab, Result, Role, Tunnel, lab_ensure, run_scenario};

/// The counters' table in the gw namespace.
const COUNT_RULES: &str = r#"
table inet plcount {
    counter office { }
    counter other { }
    counter v6echo { }
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname "g0" ip6 daddr 2001:db8:1::1 icmpv6 type echo-request counter name v6echo
        iifname "g0" ip daddr 192.0.2.1 udp dport { 500, 4500 } return
        iifname "g0" ip daddr 192.0.2.1 meta l4proto esp return
        iifname "g0" ip6 daddr { fe80::/10, ff02::/16 } return
        iifname "g0" ip daddr 10.77.0.0/24 counter name office return
        iifname "g0" counter name other
    }
}
"#;

fn install_counters(lab: &Lab) -> Result<()> {
    let file = lab.dir.join("plcount.nft");
    std::fs::write(&file, COUNT_RULES)?;
    lab.exec(Role::Gw, &["nft", "-f", &file.to_string_lossy()])?;
    Ok(())
}

fn reset_counters(lab: &Lab) -> Result<()> {
    lab.exec(
        Role::Gw,
        &["nft", "reset", "counters", "table", "inet", "plcount"],
    )?;
    Ok(())
}

/// Packets counted by the gateway-side counter `name` since the last reset.
fn counter(lab: &Lab, name: &str) -> Result<u64> {
    let out = lab.exec(
        Role::Gw,
        &["nft", "list", "counter", "inet", "plcount", name],
    )?;
    let n = out
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok());
    match n {
        Some(n) => Ok(n),
        None => Err(postern_lab::LabError(format!("no packet count in: {out}"))),
    }
}

/// Postern's nftables tables in the client namespace.
fn postern_tables(lab: &Lab) -> Result<Vec<String>> {
    let out = lab.exec(Role::Client, &["nft", "list", "tables"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|n| n.starts_with("postern_"))
        .map(str::to_string)
        .collect())
}

/// A laptop on a foreign network: everything goes to the gateway's link.
fn default_route(lab: &Lab) -> Result<()> {
    lab.exec(
        Role::Client,
        &["ip", "route", "add", "default", "via", GW_ADDR],
    )?;
    Ok(())
}

const UDP_SENDER: &str = "import socket, sys, time
end = time.time() + float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = refused = 0
while time.time() < end:
    for d in sys.argv[2:]:
        try:
            s.sendto(b'is this leaking?', (d, 9))
            sent += 1
        except OSError:
            refused += 1
    time.sleep(0.1)
print(sent, refused)
";

/// Applications that keep trying for `secs` seconds: a ping and a UDP sender, to
/// each of `dsts`, from the client namespace.
fn start_traffic(lab: &Lab, secs: u32, dsts: &[&str]) -> Result<Vec<Child>> {
    let mut children = Vec::new();
    for d in dsts {
        let mut ping = lab.command(Role::Client, Path::new("ping"));
        ping.args(["-n", "-i", "0.2", "-W", "1", "-w", &secs.to_string(), d]);
        children.push(ping.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?);
    }
    let mut udp = lab.command(Role::Client, Path::new("python3"));
    udp.args(["-c", UDP_SENDER, &secs.to_string()]).args(dsts);
    children.push(udp.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?);
    Ok(children)
}

/// Waits for the traffic generators (each bounded by its own time limit); returns
/// their output.
fn finish_traffic(children: Vec<Child>) -> Result<String> {
    let mut all = String::new();
    for c in children {
        let out = c.wait_with_output()?;
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok(all)
}

fn kill_switch_profile(lab: &Lab, t: &Tunnel, extra: &str) -> Result<std::path::PathBuf> {
    let profile = lab.write_profile(t)?;
    let text = std::fs::read_to_string(&profile)?;
    std::fs::write(
        &profile,
        text.replace("[network]\n", &format!("[network]\n{extra}")),
    )?;
    Ok(profile)
}

/// The gateway dies; for 20 s the client reconnects while a ping and a UDP sender keep
/// trying the office network (and, for the full tunnel, an address outside it). Not one
/// of their packets reaches the gateway's link. Then a normal disconnect removes the
/// table, and the same ping now goes out in the clear (the counters count).
fn holds_while_reconnecting(lab: &Lab, t: &Tunnel, full: bool) -> Result<()> {
    default_route(lab)?;
    install_counters(lab)?;
    let gw = lab.start_gateway(t)?;
    let profile = kill_switch_profile(lab, t, "kill_switch = true\n")?;
    let client = Client::start(lab, &profile)?;
    lab.adopt(&client.proc);
    client.wait_connected()?;
    // Held from the first attempt (only the gateway reached), then the tunnel's rules.
    let first = client.wait_line("kill switch on:", Duration::from_secs(5))?;
    lab_ensure!(
        first
            .text
            .ends_with("(while connecting: only the gateway is reached)"),
        "{first:?}"
    );
    let out = client.stdout();
    let at = |p: &str| out.iter().position(|l| l.starts_with(p));
    lab_ensure!(
        matches!((at("kill switch on:"), at("connecting ")), (Some(k), Some(c)) if k < c),
        "the kill switch came after the first attempt: {out:?}"
    );
    let Some(text) = out
        .iter()
        .rev()
        .find(|l| l.starts_with("kill switch on:"))
        .cloned()
    else {
        postern_lab::lab_bail!("no kill switch line: {out:?}");
    };
    let line = postern_lab::process::Line { text, ..first };
    let want = if full {
        "kill switch on: nothing leaves outside the tunnel"
    } else {
        "kill switch on: the tunnel's networks (10.77.0.0/24) only through it"
    };
    lab_ensure!(line.text.starts_with(want), "{line:?}");
    let tables = postern_tables(lab)?;
    lab_ensure!(tables.len() == 1, "tables: {tables:?}");
    lab.ping(Role::Client, None, LAN_HOST)?;
    // Outside the office network a split tunnel leaves the traffic alone.
    if !full {
        lab.ping(Role::Client, None, GW_ADDR)?;
    }

    gw.kill()?;
    reset_counters(lab)?;
    let outside = "198.18.0.1";
    let dsts: Vec<&str> = if full {
        vec![LAN_HOST, outside]
    } else {
        vec![LAN_HOST]
    };
    let started = Instant::now();
    let traffic = start_traffic(lab, 20, &dsts)?;
    let lost = client.wait_line("connection lost", Duration::from_secs(20));
    let out = finish_traffic(traffic)?;
    let took = started.elapsed();
    lost?;
    let office = counter(lab, "office")?;
    let other = counter(lab, "other")?;
    let tries = client
        .stdout()
        .iter()
        .filter(|l| l.starts_with("reconnect failed") || l.starts_with("connection lost"))
        .count();
    eprintln!(
        "killswitch full={full}: {took:?} of traffic while reconnecting ({tries} lost/failed lines): office {office}, other {other} packets at the gateway; generators: {}",
        out.lines().last().unwrap_or("")
    );
    lab_ensure!(
        office == 0,
        "{office} packets to the office network left outside the tunnel"
    );
    if full {
        lab_ensure!(other == 0, "{other} packets left outside the full tunnel");
    }
    // Still the same table, still held.
    lab_ensure!(
        postern_tables(lab)? == tables,
        "the table changed while reconnecting"
    );
    // A normal disconnect (while reconnecting) removes it.
    client.sigterm()?;
    let code = client.exit_code(Duration::from_secs(15))?;
    lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
    let left = postern_tables(lab)?;
    lab_ensure!(left.is_empty(), "left after disconnect: {left:?}");
    lab_ensure!(
        client
            .stdout()
            .iter()
            .any(|l| l.starts_with("kill switch off")),
        "no `kill switch off` line: {:?}",
        client.stdout()
    );
    // The control: without the kill switch the same traffic leaves in the clear.
    reset_counters(lab)?;
    let _ = lab.exec(
        Role::Client,
        &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", LAN_HOST],
    );
    let office = counter(lab, "office")?;
    lab_ensure!(
        office >= 3,
        "the control ping was not counted ({office}): the counters do not count"
    );
    Ok(())
}

#[test]
fn kill_switch_split_tunnel_holds_while_reconnecting_then_cleanup_after_sigkill() {
    let t = Tunnel::main_psk("ks-split").dpd(2, 6);
    run_scenario("ks-split", |lab: &Lab| {
        holds_while_reconnecting(lab, &t, false)?;
        // SIGKILL: the table stays (the kill switch holds without its helper), and
        // `postern-helper cleanup` removes it with the rest: the client's kernel state
        // afterwards is what it was before this connect.
        let before = postern_lab::hoststate::snapshot(lab)?;
        let _gw = lab.start_gateway(&t)?;
        let profile = kill_switch_profile(lab, &t, "kill_switch = true\n")?;
        let client = Client::start(lab, &profile)?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        client.wait_line("kill switch on:", Duration::from_secs(5))?;
        client.sigkill()?;
        let _ = client.exit_status(Duration::from_secs(10))?;
        let held = postern_tables(lab)?;
        lab_ensure!(held.len() == 1, "after SIGKILL: {held:?}");
        let report = postern::cleanup(lab)?;
        lab_ensure!(
            report.contains("cleanup: removed"),
            "cleanup said: {report}"
        );
        let left = postern_tables(lab)?;
        lab_ensure!(left.is_empty(), "left after cleanup: {left:?} ({report})");
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(!links.contains("postern"), "device left: {links}");
        // Addresses, routes, rules, XFRM, links, nftables, resolv.conf: nothing left.
        let after = postern_lab::hoststate::snapshot(lab)?;
        postern_lab::hoststate::ensure_same(&before, &after, "after SIGKILL + cleanup")?;
        Ok(())
    });
}

#[test]
fn kill_switch_full_tunnel_holds_while_reconnecting() {
    let t = Tunnel::main_psk("ks-full").full_tunnel().dpd(2, 6);
    run_scenario("ks-full", |lab: &Lab| {
        holds_while_reconnecting(lab, &t, true)
    });
}

/// An IPv4-only full tunnel without the kill switch: IPv6 to the outside is refused
/// while it is up (said in one line), and works again after the disconnect.
#[test]
fn ipv4_only_full_tunnel_blocks_ipv6() {
    let t = Tunnel::main_psk("v6-block").full_tunnel();
    run_scenario("v6-block", |lab: &Lab| {
        for (role, addr, dev) in [
            (Role::Client, "2001:db8:1::2/64", "c0"),
            (Role::Gw, "2001:db8:1::1/64", "g0"),
        ] {
            lab.exec(
                role,
                &["ip", "-6", "addr", "add", addr, "dev", dev, "nodad"],
            )?;
        }
        install_counters(lab)?;
        let ping6 = |lab: &Lab| {
            lab.exec(
                Role::Client,
                &[
                    "ping",
                    "-6",
                    "-n",
                    "-c",
                    "2",
                    "-i",
                    "0.2",
                    "-W",
                    "1",
                    "2001:db8:1::1",
                ],
            )
        };
        // IPv6 works before the tunnel (a few tries while the link settles).
        let mut ok = false;
        for _ in 0..10 {
            if ping6(lab).is_ok() {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        lab_ensure!(ok, "no IPv6 between client and gateway before the tunnel");
        let _gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let line = client.wait_line("IPv6 blocked", Duration::from_secs(5))?;
        lab_ensure!(
            line.text == "IPv6 blocked while connected: the tunnel carries IPv4 only",
            "{line:?}"
        );
        lab_ensure!(
            !client
                .stdout()
                .iter()
                .any(|l| l.starts_with("kill switch on")),
            "a kill switch without asking"
        );
        reset_counters(lab)?;
        let refused = ping6(lab);
        lab_ensure!(refused.is_err(), "IPv6 ping answered while connected");
        let seen = counter(lab, "v6echo")?;
        lab_ensure!(seen == 0, "{seen} IPv6 echo requests reached the gateway");
        // IPv4 goes through the tunnel as usual.
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        lab_ensure!(
            postern_tables(lab)?.is_empty(),
            "table left after disconnect"
        );
        ping6(lab).map_err(|e| {
            postern_lab::LabError(format!(
                "IPv6 does not work again after the disconnect: {e}"
            ))
        })?;
        lab_ensure!(
            counter(lab, "v6echo")? >= 2,
            "the IPv6 counter does not count"
        );
        Ok(())
    });
}

/// The site policy's `[network] kill_switch = "force"` turns the kill switch on for a
/// profile that does not ask for it, and `postern-helper check` says so.
#[test]
fn site_policy_forces_the_kill_switch() {
    let t = Tunnel::main_psk("ks-policy");
    run_scenario("ks-policy", |lab: &Lab| {
        let policy = lab.dir.join("policy.toml");
        std::fs::write(&policy, "[network]\nkill_switch = \"force\"\n")?;
        let profile = lab.write_profile(&t)?;
        let helper = postern::helper_path()?;
        let checked = std::process::Command::new(&helper)
            .args(["check", "--user", "--policy"])
            .arg(&policy)
            .arg(&profile)
            .output()?;
        let said = String::from_utf8_lossy(&checked.stdout).into_owned();
        lab_ensure!(
            checked.status.success() && said.contains("the kill switch is on for every profile"),
            "check said: {said}"
        );
        let _gw = lab.start_gateway(&t)?;
        let policy_env = policy.to_string_lossy().into_owned();
        let client =
            Client::start_with_env(lab, &helper, &profile, &[("POSTERN_POLICY", &policy_env)])?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        client.wait_line("kill switch on:", Duration::from_secs(5))?;
        lab_ensure!(postern_tables(lab)?.len() == 1, "no table");
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        lab_ensure!(
            postern_tables(lab)?.is_empty(),
            "table left after disconnect"
        );
        Ok(())
    });
}

/// The kill switch holds from the first attempt (before any tunnel exists) and stays
/// after a failure that is not retried (the gateway refuses the XAuth password) until
/// the user disconnects: meanwhile not one packet to the office network or elsewhere
/// reaches the gateway's link in the clear.
#[test]
fn kill_switch_holds_from_the_first_attempt_and_after_a_failure() {
    let t = Tunnel::main_psk("ks-fail")
        .xauth("alice", "alice-pass-7", "not-her-password")
        .mode_config(true);
    run_scenario("ks-fail", |lab: &Lab| {
        default_route(lab)?;
        install_counters(lab)?;
        let _gw = lab.start_gateway(&t)?;
        let profile = kill_switch_profile(lab, &t, "kill_switch = true\n")?;
        let client = Client::start(lab, &profile)?;
        lab.adopt(&client.proc);
        let first = client.wait_line("kill switch on:", Duration::from_secs(10))?;
        lab_ensure!(
            first.text
                == "kill switch on: nothing leaves outside the tunnel (while connecting: only the gateway is reached)",
            "{first:?}"
        );
        let held = client.wait_line("failed:", Duration::from_secs(40))?;
        lab_ensure!(
            held.text.contains("XAuth failed")
                && held
                    .text
                    .ends_with("the kill switch holds until you disconnect"),
            "{held:?}"
        );
        let out = client.stdout();
        let at = |p: &str| out.iter().position(|l| l.starts_with(p));
        lab_ensure!(
            matches!((at("kill switch on:"), at("connecting ")), (Some(k), Some(c)) if k < c),
            "the kill switch came after the first attempt: {out:?}"
        );
        lab_ensure!(
            client.proc.try_status().is_none(),
            "the helper ended instead of holding: {out:?}"
        );
        lab_ensure!(postern_tables(lab)?.len() == 1, "no table while failed");
        reset_counters(lab)?;
        let outside = "198.18.0.1";
        let traffic = start_traffic(lab, 3, &[LAN_HOST, outside])?;
        let said = finish_traffic(traffic)?;
        let (office, other) = (counter(lab, "office")?, counter(lab, "other")?);
        eprintln!(
            "killswitch after a failure: office {office}, other {other} packets at the gateway; generators: {}",
            said.lines().last().unwrap_or("")
        );
        lab_ensure!(
            office == 0 && other == 0,
            "{office} + {other} packets left in the clear"
        );
        // The user disconnects: the failure is the exit code, the table goes.
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::AUTH_FAILED, "exit code {code}");
        lab_ensure!(
            postern_tables(lab)?.is_empty(),
            "table left after the disconnect"
        );
        lab_ensure!(
            client
                .stdout()
                .iter()
                .any(|l| l.starts_with("kill switch off")),
            "no `kill switch off` line: {:?}",
            client.stdout()
        );
        reset_counters(lab)?;
        let _ = lab.exec(
            Role::Client,
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", LAN_HOST],
        );
        let office = counter(lab, "office")?;
        lab_ensure!(office >= 3, "the control ping was not counted ({office})");
        Ok(())
    });
}

/// Counters on the gateway's link for the DNS and LAN proofs: DNS (UDP 53) and other
/// UDP to an address outside the tunnel, and pings to the LAN neighbour, each counted
/// when it arrives in the clear.
const DNS_LAN_RULES: &str = r#"
table inet plcount2 {
    counter dns { }
    counter udp9 { }
    counter lan { }
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname "g0" ip daddr 198.18.0.53 udp dport 53 counter name dns
        iifname "g0" ip daddr 198.18.0.53 udp dport 9 counter name udp9
        iifname "g0" ip daddr 192.168.77.1 icmp type echo-request counter name lan
    }
}
"#;

/// Sends `n` datagrams to `dst` port `port` from the client namespace, 50 ms apart.
fn send_udp(lab: &Lab, dst: &str, port: u16, n: u32) -> Result<()> {
    let script = "import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    try:
        s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01', (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    time.sleep(0.05)
";
    lab.exec(
        Role::Client,
        &[
            "python3",
            "-c",
            script,
            dst,
            &port.to_string(),
            &n.to_string(),
        ],
    )?;
    Ok(())
}

/// Packets counted by `name` in the `plcount2` table.
fn counter2(lab: &Lab, name: &str) -> Result<u64> {
    let out = lab.exec(
        Role::Gw,
        &["nft", "list", "counter", "inet", "plcount2", name],
    )?;
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| postern_lab::LabError(format!("no packet count in: {out}")))
}

/// DNS pinned: a split tunnel with `dns = "full"` and the kill switch lets port 53 go
/// only to the tunnel's server (Mode Config's 10.77.0.53): a DNS query to a server
/// outside the tunnel reaches the gateway's link 0 times, while other UDP to the same
/// address still leaves (a split tunnel leaves it alone).
#[test]
fn kill_switch_pins_dns_to_the_tunnels_servers() {
    let split = Tunnel::main_psk("ks-dns")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true);
    run_scenario("ks-dns", |lab: &Lab| {
        default_route(lab)?;
        let file = lab.dir.join("plcount2.nft");
        std::fs::write(&file, DNS_LAN_RULES)?;
        lab.exec(Role::Gw, &["nft", "-f", &file.to_string_lossy()])?;
        let reset = |lab: &Lab| {
            lab.exec(
                Role::Gw,
                &["nft", "reset", "counters", "table", "inet", "plcount2"],
            )
        };

        let _gw = lab.start_gateway(&split)?;
        let profile = kill_switch_profile(lab, &split, "kill_switch = true\ndns = \"full\"\n")?;
        let client = Client::start(lab, &profile)?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        let line = client.wait_line("kill switch on:", Duration::from_secs(5))?;
        let last = client
            .stdout()
            .iter()
            .rev()
            .find(|l| l.starts_with("kill switch on:"))
            .cloned()
            .unwrap_or_default();
        lab_ensure!(
            last.contains("DNS only to 10.77.0.53"),
            "DNS not pinned: {last:?} (first {line:?})"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        reset(lab)?;
        send_udp(lab, "198.18.0.53", 53, 10)?;
        send_udp(lab, "198.18.0.53", 9, 10)?;
        let (dns, udp9) = (counter2(lab, "dns")?, counter2(lab, "udp9")?);
        eprintln!(
            "dns pinned: {dns} DNS queries and {udp9} other datagrams reached the gateway's link"
        );
        lab_ensure!(dns == 0, "{dns} DNS queries left outside the tunnel");
        lab_ensure!(
            udp9 >= 10,
            "the control datagrams were not counted ({udp9}): the counters do not count"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        // Without the kill switch the same query leaves (the counter counts).
        reset(lab)?;
        send_udp(lab, "198.18.0.53", 53, 3)?;
        let dns = counter2(lab, "dns")?;
        lab_ensure!(dns >= 3, "the control DNS queries were not counted ({dns})");

        lab_ensure!(postern_tables(lab)?.is_empty(), "table left");
        Ok(())
    });
}

/// `network.allow_lan = true` with a full tunnel and the kill switch: a ping to the
/// client's LAN neighbour (a 192.168.77.0/24 address on the same link: a printer next
/// to the laptop) leaves outside the tunnel and is answered; without it, not one echo
/// request reaches the neighbour in the clear (the full tunnel takes them).
#[test]
fn kill_switch_allow_lan_reaches_the_neighbour_outside_a_full_tunnel() {
    let full = Tunnel::main_psk("ks-lan").full_tunnel();
    run_scenario("ks-lan", |lab: &Lab| {
        default_route(lab)?;
        lab.exec(
            Role::Client,
            &["ip", "addr", "add", "192.168.77.2/24", "dev", "c0"],
        )?;
        lab.exec(
            Role::Gw,
            &["ip", "addr", "add", "192.168.77.1/24", "dev", "g0"],
        )?;
        let file = lab.dir.join("plcount2.nft");
        std::fs::write(&file, DNS_LAN_RULES)?;
        lab.exec(Role::Gw, &["nft", "-f", &file.to_string_lossy()])?;
        let ping_lan = |lab: &Lab| {
            lab.exec(
                Role::Client,
                &[
                    "ping",
                    "-n",
                    "-c",
                    "2",
                    "-i",
                    "0.2",
                    "-W",
                    "1",
                    "192.168.77.1",
                ],
            )
        };
        ping_lan(lab)?;
        let before = postern_lab::hoststate::snapshot(lab)?;
        let gw = lab.start_gateway(&full)?;
        for allow in [false, true] {
            let extra = format!("kill_switch = true\nallow_lan = {allow}\n");
            let profile = kill_switch_profile(lab, &full, &extra)?;
            let client = Client::start(lab, &profile)?;
            lab.adopt(&client.proc);
            client.wait_connected()?;
            let line = client.wait_line("kill switch on:", Duration::from_secs(5))?;
            lab.ping(Role::Client, None, LAN_HOST)?;
            lab.exec(
                Role::Gw,
                &["nft", "reset", "counters", "table", "inet", "plcount2"],
            )?;
            let pinged = ping_lan(lab);
            let seen = counter2(lab, "lan")?;
            eprintln!(
                "allow_lan = {allow}: LAN ping {}, {seen} echo requests in the clear at the neighbour ({})",
                if pinged.is_ok() {
                    "answered"
                } else {
                    "not answered"
                },
                line.text
            );
            if allow {
                lab_ensure!(
                    pinged.is_ok() && seen >= 2,
                    "allow_lan: the LAN neighbour was not reached outside the tunnel ({seen}): {pinged:?}"
                );
            } else {
                lab_ensure!(
                    seen == 0,
                    "without allow_lan {seen} pings reached the LAN neighbour in the clear"
                );
            }
            client.sigterm()?;
            let code = client.exit_code(Duration::from_secs(15))?;
            lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
            gw.wait_no_sas(Duration::from_secs(10))?;
        }
        // The throw routes went with the rest.
        let after = postern_lab::hoststate::snapshot(lab)?;
        postern_lab::hoststate::ensure_same(&before, &after, "after the allow_lan tunnel")?;
        Ok(())
    });
}
