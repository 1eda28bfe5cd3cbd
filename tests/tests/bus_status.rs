//! What `postern status` shows of laptop life (issue 16, point 5), through the real
//! D-Bus service: the helper daemon on the lab's private system bus, Debian's polkitd,
//! the `postern` CLI run as an unprivileged test user, a real strongSwan gateway.
//!
//! One tunnel with the kill switch on and an IPv6 inner address from the gateway's Mode
//! Config pool (IPv4 outside): `postern status` shows the IPv6 address beside the IPv4
//! one and the `kill switch on: ...` line; then the client's outer address is replaced
//! while the gateway ignores the new address for a moment, and `postern status` shows
//! `reconnecting: network changed` (the kill switch still held) until the tunnel is
//! back, with the same inner addresses. Root only.

use std::time::{Duration, Instant};

use postern_lab::bususer::{BusUser, allow_rules, text};
use postern_lab::config::{LAN_HOST, LAN_HOST6, LAN_NET, LAN_NET6};
use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, LabError, Result, Role, Tunnel, lab_ensure, run_scenario};

const USER: &str = "postern-lab-st";
const POOL6: &str = "fd01::/120";
const NEW_CLIENT_ADDR: &str = "192.0.2.3";

/// The gateway's configuration with an IPv6 pool beside the IPv4 one and the IPv6 LAN
/// in its traffic selectors.
fn dual_stack_swanctl(t: &Tunnel) -> String {
    let c = t.gateway_swanctl();
    let c = c.replace("    pools = pool0\n", "    pools = pool0, pool6\n");
    let c = c.replace(
        &format!("        local_ts = {LAN_NET}\n"),
        &format!("        local_ts = {LAN_NET}, {LAN_NET6}\n"),
    );
    c.replace(
        "pools {\n",
        &format!("pools {{\n  pool6 {{\n    addrs = {POOL6}\n  }}\n"),
    )
}

/// The gateway ignores IKE from `src` (an nftables table of the test's own in the gw
/// namespace), or stops ignoring it.
const HOLD_RULES: &str = "table inet plhold {
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname \"g0\" ip saddr 192.0.2.3 udp dport { 500, 4500 } drop
    }
}
";

/// `postern status` as the user: its output.
fn status(u: &BusUser) -> Result<String> {
    let o = u.postern(&["status"], None)?;
    lab_ensure!(o.status.success(), "postern status: {}", text(&o));
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Polls `postern status` (every 100 ms, for `limit` at most) until `ok` holds.
fn wait_status(
    u: &BusUser,
    what: &str,
    limit: Duration,
    ok: impl Fn(&str) -> bool,
) -> Result<String> {
    let end = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < end {
        last = status(u)?;
        if ok(&last) {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(LabError(format!(
        "postern status never showed {what} within {limit:?}; last:\n{last}"
    )))
}

#[test]
fn status_shows_network_changed_kill_switch_and_ipv6_address() {
    let t = Tunnel::main_psk("office")
        .xauth("bob", "bob-pass-9", "bob-pass-9")
        .mode_config(true)
        .dpd(10, 30);
    run_scenario("bus-status", |lab: &Lab| {
        lab.add_ipv6()?;
        let mut host = HostChanges::default();
        let sys = SystemBus::start(lab, &allow_rules(&[USER]))?;
        let u = BusUser::new(lab, &mut host, &sys, USER)?;
        let gw = lab.start_gateway_conf(&dual_stack_swanctl(&t))?;
        // The profile without its secrets (the CLI keeps them out of profiles), with
        // the IPv6 LAN and the kill switch.
        let profile: String = t
            .postern_profile()
            .replace(
                "pfs = ",
                &format!("remote_networks = [\"{LAN_NET}\", \"{LAN_NET6}\"]\npfs = "),
            )
            .replace("[network]\n", "[network]\nkill_switch = true\n")
            .lines()
            .filter(|l| !l.starts_with("psk =") && !l.starts_with("password ="))
            .map(|l| format!("{l}\n"))
            .collect();
        lab_ensure!(profile.contains("kill_switch = true"), "{profile}");
        let o = u.postern(&["add", "office", "--from", "-"], Some(&profile))?;
        lab_ensure!(o.status.success(), "postern add: {}", text(&o));
        let secrets = format!("{}\nbob-pass-9\n", t.psk);
        let o = u.postern(&["up", "office", "--secrets-stdin"], Some(&secrets))?;
        lab_ensure!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("office is up"),
            "up: {}",
            text(&o)
        );
        gw.wait_established(Duration::from_secs(10))?;

        // Connected: both inner addresses and the kill switch's line.
        let up = wait_status(&u, "the IPv6 inner address", Duration::from_secs(10), |s| {
            s.contains(",fd01::")
        })?;
        eprintln!("connected:\n{up}");
        let first = up.lines().next().unwrap_or_default().to_string();
        let vip = first
            .split_whitespace()
            .skip_while(|w| *w != "vip")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        lab_ensure!(
            first.starts_with("office: connected gateway ")
                && vip.starts_with("10.200.1.")
                && vip.contains(",fd01::"),
            "the first status line: {first}"
        );
        lab_ensure!(
            up.lines().any(|l| l.starts_with("  kill switch on: ")),
            "no kill switch line:\n{up}"
        );
        let vip6 = vip.split(',').nth(1).unwrap_or_default().to_string();
        let addrs = lab.exec(Role::Client, &["ip", "-6", "addr"])?;
        lab_ensure!(
            addrs.contains(&format!("{vip6}/")),
            "status shows {vip6}, the client has:\n{addrs}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        lab.exec(
            Role::Client,
            &[
                "ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", LAN_HOST6,
            ],
        )?;

        // Another network: the old outer address goes, a new one comes; the gateway
        // ignores the new one for a moment, so the reconnect can be watched.
        let hold = lab.dir.join("plhold.nft");
        std::fs::write(&hold, HOLD_RULES)?;
        lab.exec(Role::Gw, &["nft", "-f", &hold.to_string_lossy()])?;
        lab.exec(
            Role::Client,
            &["ip", "addr", "del", "192.0.2.2/24", "dev", "c0"],
        )?;
        let changed_at = Instant::now();
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
        let moving = wait_status(
            &u,
            "reconnecting: network changed",
            Duration::from_secs(10),
            |s| s.starts_with("office: reconnecting: network changed "),
        )?;
        eprintln!(
            "reconnecting ({:?} after the change):\n{moving}",
            changed_at.elapsed()
        );
        lab_ensure!(
            moving.lines().any(|l| l.starts_with("  kill switch on: ")),
            "the kill switch is not shown while reconnecting:\n{moving}"
        );
        // Still so a moment later (the gateway still ignores the new address).
        std::thread::sleep(Duration::from_millis(500));
        let still = status(&u)?;
        lab_ensure!(
            still.starts_with("office: reconnecting: network changed "),
            "no longer `reconnecting: network changed` while the gateway is silent:\n{still}"
        );
        lab.exec(Role::Gw, &["nft", "delete", "table", "inet", "plhold"])?;

        // The gateway answers again: connected, same inner addresses, traffic flows.
        let back = wait_status(&u, "connected again", Duration::from_secs(40), |s| {
            s.starts_with("office: connected ")
        })?;
        eprintln!(
            "back ({:?} after the change):\n{back}",
            changed_at.elapsed()
        );
        lab_ensure!(
            back.lines()
                .next()
                .is_some_and(|l| l.contains(&format!("vip {vip} "))),
            "the inner addresses changed (were {vip}):\n{back}"
        );
        lab_ensure!(
            back.lines().any(|l| l.starts_with("  kill switch on: ")),
            "no kill switch line after the reconnect:\n{back}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        let o = u.postern(&["down", "office"], None)?;
        lab_ensure!(o.status.success(), "postern down: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;
        let out = sys.helper.tail(100_000);
        lab_ensure!(!out.contains(&t.psk), "the PSK is in the helper's output");
        drop(host);
        Ok(())
    });
}
