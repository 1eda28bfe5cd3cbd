//! IPv6 against a real strongSwan gateway: a gateway reached over IPv6 (IKE and ESP in
//! UDP over IPv6, IPv4 inside), and IPv6 inside a tunnel over IPv4 (an IPv6 address from
//! the gateway's Mode Config pool, an IPv6 network routed through the TUN device, ESP with
//! next header 41).
//!
//! The usual lab (IPv4 everywhere) gets IPv6 on top: ULA prefixes, added with `nodad` so
//! no duplicate address detection delays the test.
//!
//! ```text
//!  client fd00:2::2/64 ──veth── fd00:2::1/64 gw fd00:77::1/64 ──veth── fd00:77::10/64 lan
//! ```
//!
//! The IPv4-only full tunnel that refuses IPv6 outside it is in `killswitch.rs`
//! (`ipv4_only_full_tunnel_blocks_ipv6`). Root only.

use std::time::{Duration, Instant};

use postern_lab::config::{
    CLIENT_ADDR, CLIENT6, GW_ADDR, GW6, LAN_HOST, LAN_HOST6, LAN_NET, LAN_NET6,
};
use postern_lab::postern::exit;
use postern_lab::{Client, Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

const POOL6: &str = "fd01::/120";

fn add_ipv6(lab: &Lab) -> Result<()> {
    lab.add_ipv6()
}

fn ping6(lab: &Lab, dst: &str) -> Result<String> {
    lab.exec(
        Role::Client,
        &["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst],
    )
}

fn start_client(lab: &Lab, name: &str, text: &str) -> Result<Client> {
    lab.start_postern_text(name, text)
}

/// SIGTERM, exit 0, the gateway's SAs gone.
fn disconnect(client: &Client, gw: &postern_lab::Charon) -> Result<()> {
    client.sigterm()?;
    let code = client.exit_code(Duration::from_secs(15))?;
    lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
    gw.wait_no_sas(Duration::from_secs(10))
}

/// PSK + XAuth + Mode Config (pull) to a gateway reached over IPv6, IPv4 inside: IKE on
/// UDP 500/4500 over IPv6 with IPv6 IDs and NAT-D hashes, ESP in UDP over IPv6 (the
/// userspace datapath), a ping through. The profile names the gateway in brackets.
#[test]
fn ipv6_outer_psk_xauth_mode_config() {
    let t = Tunnel::main_psk("v6-outer")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true);
    run_scenario("v6-outer", |lab: &Lab| {
        add_ipv6(lab)?;
        let swanctl = t
            .gateway_swanctl()
            .replace(GW_ADDR, GW6)
            .replace(CLIENT_ADDR, CLIENT6);
        let gw = lab.start_gateway_conf(&swanctl)?;
        let profile = t
            .postern_profile()
            .replace(
                &format!("gateway = \"{GW_ADDR}\""),
                &format!("gateway = \"[{GW6}]\""),
            )
            .replace(GW_ADDR, GW6)
            .replace(CLIENT_ADDR, CLIENT6);
        let started = Instant::now();
        let client = start_client(lab, "v6-outer", &profile)?;
        client.wait_connected()?;
        eprintln!("v6-outer: connected in {:?}", started.elapsed());
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l == "xauth ok"),
            "no `xauth ok` line: {out:?}"
        );
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("phase1 established") && l.contains(GW6)),
            "phase 1 does not name the gateway's IPv6 identity: {out:?}"
        );
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(
            sa.get("remote-host") == CLIENT6 && sa.get("local-host") == GW6,
            "the gateway's IKE SA is not over IPv6:\n{shown}"
        );
        lab_ensure!(
            sa.get("remote-id") == CLIENT6,
            "the client's identity is not its IPv6 address:\n{shown}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        // The ESP packets really went over IPv6: the gateway's SA counted them.
        let sa = gw.wait_established(Duration::from_secs(2))?;
        let child = sa
            .installed_child()
            .ok_or_else(|| postern_lab::LabError("no CHILD_SA".into()))?;
        lab_ensure!(
            child.get("packets-in").parse::<u64>().unwrap_or(0) >= 2,
            "the gateway counted no ESP packets in:\n{}",
            gw.list_sas_text()
        );
        disconnect(&client, &gw)
    });
}

/// The gateway's swanctl.conf for IPv6 inside an IPv4 tunnel: Mode Config from an IPv4
/// and an IPv6 pool, both LANs behind the gateway.
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

/// IPv4 outside, IPv4 and IPv6 inside: Mode Config gives an IPv6 address from the
/// gateway's pool (INTERNAL_IP6_ADDRESS), the profile names the IPv6 network, quick mode
/// negotiates it (ID_IPV6_ADDR / ID_IPV6_ADDR_SUBNET), the TUN device carries both
/// families; ping and ping -6 through. No IPv6 leak block (the tunnel carries IPv6).
#[test]
fn ipv6_inside_ipv4_tunnel() {
    let t = Tunnel::main_psk("v6-inner")
        .xauth("bob", "bob-pass-9", "bob-pass-9")
        .mode_config(true);
    run_scenario("v6-inner", |lab: &Lab| {
        add_ipv6(lab)?;
        let gw = lab.start_gateway_conf(&dual_stack_swanctl(&t))?;
        let profile = t.postern_profile().replace(
            "pfs = ",
            &format!("remote_networks = [\"{LAN_NET}\", \"{LAN_NET6}\"]\npfs = "),
        );
        let client = start_client(lab, "v6-inner", &profile)?;
        client.wait_connected()?;
        let out = client.stdout();
        let Some(mc) = out.iter().find(|l| l.starts_with("mode-config ")) else {
            lab_bail!("no mode-config line: {out:?}")
        };
        let Some(vip6) = mc
            .split_whitespace()
            .find(|w| w.starts_with("fd01::"))
            .map(|w| w.split('/').next().unwrap_or(w).to_string())
        else {
            lab_bail!("no IPv6 address from the pool in {mc:?}")
        };
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase2 established")
                && l.contains(&format!("local_ts={vip6}/128"))
                && l.contains(&format!("remote_ts={LAN_NET6}"))),
            "no IPv6 quick mode: {out:?}"
        );
        lab_ensure!(
            !out.iter().any(|l| l.contains("IPv6 blocked")),
            "IPv6 blocked although the tunnel carries it: {out:?}"
        );
        let addrs = lab.exec(Role::Client, &["ip", "-6", "addr"])?;
        lab_ensure!(
            addrs.contains(&vip6),
            "the IPv6 pool address is not on the client:\n{addrs}"
        );
        // Through the TUN device (Postern's routing table), from the tunnel's address.
        let route = lab.exec(Role::Client, &["ip", "-6", "route", "get", LAN_HOST6])?;
        lab_ensure!(
            route.contains("dev postern") && route.contains(&format!("src {vip6}")),
            "{LAN_HOST6} is not routed through the TUN device from {vip6}: {route}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        ping6(lab, LAN_HOST6)?;
        disconnect(&client, &gw)?;
        let addrs = lab.exec(Role::Client, &["ip", "-6", "addr"])?;
        lab_ensure!(
            !addrs.contains(&vip6),
            "the IPv6 address stayed after the disconnect:\n{addrs}"
        );
        Ok(())
    });
}

/// A full tunnel whose gateway gives an IPv6 address too: quick mode for 0.0.0.0/0 and
/// ::/0, both routed into the TUN device (two halves each), and no IPv6 leak block (the
/// tunnel carries IPv6). ping -6 to the LAN goes through.
#[test]
fn dual_stack_full_tunnel_carries_ipv6() {
    let t = Tunnel::main_psk("v6-full")
        .xauth("carol", "carol-pass-3", "carol-pass-3")
        .mode_config(true)
        .full_tunnel();
    run_scenario("v6-full", |lab: &Lab| {
        add_ipv6(lab)?;
        let swanctl = dual_stack_swanctl(&t).replace(
            "        local_ts = 0.0.0.0/0\n",
            "        local_ts = 0.0.0.0/0, ::/0\n",
        );
        let gw = lab.start_gateway_conf(&swanctl)?;
        let client = start_client(lab, "v6-full", &t.postern_profile())?;
        client.wait_connected()?;
        let out = client.stdout();
        for remote in ["0.0.0.0/0", "::/0"] {
            lab_ensure!(
                out.iter().any(|l| l.starts_with("phase2 established")
                    && l.contains(&format!("remote_ts={remote} "))),
                "no quick mode for {remote}: {out:?}"
            );
        }
        lab_ensure!(
            !out.iter().any(|l| l.contains("IPv6 blocked")),
            "IPv6 blocked although the tunnel carries it: {out:?}"
        );
        let route = lab.exec(Role::Client, &["ip", "-6", "route", "get", LAN_HOST6])?;
        lab_ensure!(
            route.contains("dev postern"),
            "IPv6 is not routed into the tunnel: {route}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        ping6(lab, LAN_HOST6)?;
        disconnect(&client, &gw)?;
        // Unreachable now (an error), or any route but the tunnel's.
        let route = lab
            .exec(Role::Client, &["ip", "-6", "route", "get", LAN_HOST6])
            .unwrap_or_else(|e| e.to_string());
        lab_ensure!(
            !route.contains("dev postern"),
            "the IPv6 route stayed after the disconnect: {route}"
        );
        Ok(())
    });
}
