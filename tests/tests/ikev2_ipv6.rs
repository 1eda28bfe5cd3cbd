//! IPv6 inside IKEv2 tunnels against a real strongSwan gateway (swanctl `version = 2`):
//! the configuration payload asks for an IPv6 address (INTERNAL_IP6_ADDRESS, DNS,
//! subnets), one CHILD_SA carries an IPv4 and an IPv6 selector pair (TS_IPV6_ADDR_RANGE
//! beside TS_IPV4_ADDR_RANGE), the TUN device carries both families: ping and ping -6
//! through. A gateway without IPv6 gives an IPv4-only child, and a full tunnel then
//! blocks IPv6 outside it as with IKEv1.
//!
//! The lab is ipv6.rs's: ULA prefixes on top of the IPv4 lab (`Lab::add_ipv6`).
//! Root only.

use std::time::Duration;

use postern_lab::config::{
    CLIENT_ADDR, CLIENT6, GW_ADDR, GW6, LAN_HOST, LAN_HOST6, LAN_NET, LAN_NET6,
};
use postern_lab::postern::exit;
use postern_lab::{Charon, Client, Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

const POOL6: &str = "fd01::/120";
const DNS6: &str = "fd00:77::53";

fn ping6(lab: &Lab, dst: &str) -> Result<String> {
    lab.exec(
        Role::Client,
        &["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst],
    )
}

/// The gateway's swanctl.conf with an IPv6 pool beside the IPv4 one (with an IPv6 DNS
/// server and the IPv6 LAN as INTERNAL_IP6_SUBNET) and `local_ts` for both families.
fn dual_stack_swanctl(t: &Tunnel, local_ts: (&str, &str)) -> String {
    let c = t.gateway_swanctl();
    lab_conf_check(&c);
    let c = c.replace("    pools = pool0\n", "    pools = pool0, pool6\n");
    let c = c.replace(
        &format!("        local_ts = {}\n", local_ts.0),
        &format!("        local_ts = {}, {}\n", local_ts.0, local_ts.1),
    );
    c.replace(
        "pools {\n",
        &format!(
            "pools {{\n  pool6 {{\n    addrs = {POOL6}\n    dns = {DNS6}\n    subnet = {LAN_NET6}\n  }}\n"
        ),
    )
}

/// The generated configuration still has the lines the replacements above expect.
fn lab_conf_check(c: &str) {
    assert!(
        c.contains("    pools = pool0\n") && c.contains("pools {\n"),
        "the lab's swanctl.conf changed shape:\n{c}"
    );
}

/// SIGTERM, exit 0, the gateway's SAs gone.
fn disconnect(client: &Client, gw: &Charon) -> Result<()> {
    client.sigterm()?;
    let code = client.exit_code(Duration::from_secs(15))?;
    lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
    gw.wait_no_sas(Duration::from_secs(10))
}

/// The IPv6 address the gateway assigned, from the client's `mode-config` line (which
/// must also name the IPv6 DNS server and subnet).
fn assigned_v6(client: &Client) -> Result<String> {
    let out = client.stdout();
    let Some(mc) = out.iter().find(|l| l.starts_with("mode-config ")) else {
        lab_bail!("no mode-config line: {out:?}")
    };
    lab_ensure!(
        mc.contains(DNS6) && mc.contains(LAN_NET6),
        "the IPv6 DNS server or subnet is missing from {mc:?}"
    );
    match mc
        .split_whitespace()
        .find(|w| w.starts_with("fd01::"))
        .map(|w| w.split('/').next().unwrap_or(w).to_string())
    {
        Some(v) => Ok(v),
        None => lab_bail!("no IPv6 address from the pool in {mc:?}"),
    }
}

/// IPv4 outside, IPv4 and IPv6 inside, split networks: the CP reply's IPv6 address is
/// on the client, one child SA carries LAN_NET and LAN_NET6 (both sides say so), the
/// IPv6 LAN is routed through the TUN device from that address, ping and ping -6
/// cross, the address leaves with the tunnel.
#[test]
fn ikev2_ipv6_inside_ipv4_tunnel() {
    let t = Tunnel::main_psk("v2-v6in").ikev2().mode_config(true);
    run_scenario("v2-v6in", |lab: &Lab| {
        lab.add_ipv6()?;
        let gw = lab.start_gateway_conf(&dual_stack_swanctl(&t, (LAN_NET, LAN_NET6)))?;
        let profile = t.postern_profile().replace(
            "pfs = ",
            &format!("remote_networks = [\"{LAN_NET}\", \"{LAN_NET6}\"]\npfs = "),
        );
        let client = lab.start_postern_text("v2-v6in", &profile)?;
        client.wait_connected()?;
        let vip6 = assigned_v6(&client)?;
        let out = client.stdout();
        let phase2: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("phase2 established"))
            .collect();
        lab_ensure!(
            phase2.len() == 1
                && phase2[0].contains(&format!("remote_ts={LAN_NET}"))
                && phase2[0].contains(&format!("local_ts={vip6}/128 remote_ts={LAN_NET6}")),
            "not one child with both pairs: {out:?}"
        );
        eprintln!("v2-v6in: {}", phase2[0]);
        lab_ensure!(
            !out.iter().any(|l| l.contains("IPv6 blocked")),
            "IPv6 blocked although the tunnel carries it: {out:?}"
        );
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        let Some(child) = sa.installed_child() else {
            lab_bail!("no INSTALLED CHILD_SA on the gateway:\n{shown}")
        };
        let remote = child.ts("remote-ts");
        lab_ensure!(
            remote.iter().any(|r| r == &format!("{vip6}/128"))
                && child.ts("local-ts").iter().any(|l| l == LAN_NET6),
            "the gateway's child does not carry {vip6} === {LAN_NET6}:\n{shown}"
        );
        let addrs = lab.exec(Role::Client, &["ip", "-6", "addr"])?;
        lab_ensure!(
            addrs.contains(&vip6),
            "the IPv6 pool address is not on the client:\n{addrs}"
        );
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

/// A full tunnel (the profile names no network) to a dual-stack gateway: one child for
/// 0.0.0.0/0 and ::/0, both routed into the TUN device, no IPv6 leak block; ping -6 to
/// the LAN goes through.
#[test]
fn ikev2_dual_stack_full_tunnel_carries_ipv6() {
    let t = Tunnel::main_psk("v2-v6full")
        .ikev2()
        .mode_config(true)
        .full_tunnel();
    run_scenario("v2-v6full", |lab: &Lab| {
        lab.add_ipv6()?;
        let gw = lab.start_gateway_conf(&dual_stack_swanctl(&t, ("0.0.0.0/0", "::/0")))?;
        let client = lab.start_postern_text("v2-v6full", &t.postern_profile())?;
        client.wait_connected()?;
        let vip6 = assigned_v6(&client)?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase2 established")
                && l.contains("remote_ts=0.0.0.0/0 ")
                && l.contains(&format!("local_ts={vip6}/128 remote_ts=::/0 "))),
            "no child for 0.0.0.0/0 and ::/0: {out:?}"
        );
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

/// A full tunnel to a gateway with an IPv4 pool only: the client asks for IPv6 too,
/// strongSwan assigns none and narrows the child to IPv4, the tunnel comes up, and
/// IPv6 is blocked while connected (the IKEv1 rule, unchanged).
#[test]
fn ikev2_ipv4_only_gateway_full_tunnel_blocks_ipv6() {
    let t = Tunnel::main_psk("v2-v6none")
        .ikev2()
        .mode_config(true)
        .full_tunnel();
    run_scenario("v2-v6none", |lab: &Lab| {
        lab.add_ipv6()?;
        // The gateway's IPv6 address answers before the tunnel (add_ipv6 waits for it).
        ping6(lab, GW6)?;
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let line = client.wait_line("IPv6 blocked", Duration::from_secs(5))?;
        lab_ensure!(
            line.text == "IPv6 blocked while connected: the tunnel carries IPv4 only",
            "{line:?}"
        );
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase2 established")
                && l.contains("remote_ts=0.0.0.0/0 ")
                && !l.contains("::/0")),
            "the child is not IPv4 only: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        lab_ensure!(
            ping6(lab, GW6).is_err(),
            "IPv6 to the gateway answered outside the tunnel while connected"
        );
        disconnect(&client, &gw)
    });
}

/// IPv6 outside too: the gateway reached over IPv6 (IKE and ESP over IPv6, the profile
/// names it in brackets), IPv4 and IPv6 inside one child; ping and ping -6 through.
#[test]
fn ikev2_ipv6_outer_dual_stack_inside() {
    let t = Tunnel::main_psk("v2-v6out").ikev2().mode_config(true);
    run_scenario("v2-v6out", |lab: &Lab| {
        lab.add_ipv6()?;
        let swanctl = dual_stack_swanctl(&t, (LAN_NET, LAN_NET6))
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
            .replace(CLIENT_ADDR, CLIENT6)
            .replace(
                "pfs = ",
                &format!("remote_networks = [\"{LAN_NET}\", \"{LAN_NET6}\"]\npfs = "),
            );
        let client = lab.start_postern_text("v2-v6out", &profile)?;
        client.wait_connected()?;
        let vip6 = assigned_v6(&client)?;
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        lab_ensure!(
            sa.get("version") == "2" && sa.get("remote-host") == CLIENT6,
            "the gateway's IKEv2 SA is not over IPv6:\n{shown}"
        );
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("phase2 established")
                && l.contains(&format!("local_ts={vip6}/128 remote_ts={LAN_NET6}"))),
            "no IPv6 pair in the child: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        ping6(lab, LAN_HOST6)?;
        disconnect(&client, &gw)
    });
}
