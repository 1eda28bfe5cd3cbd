//! Two gateways for one client: two addresses of one strongSwan, two connections
//! (`tests/tests/multi.rs`, `tests/tests/nonblocking.rs`).
//!
//! Tunnel A: 192.0.2.1, 10.77.0.0/25 for 10.200.0.5; tunnel B: 192.0.2.3,
//! 10.77.0.128/25 for 10.200.0.6.

use crate::config::{CLIENT_VIP, GW_ADDR};
use crate::{Charon, Lab, Result, Role, Tunnel};

/// The second gateway address (on the same gateway link).
pub const GW2_ADDR: &str = "192.0.2.3";
/// The second client's inner address.
pub const CLIENT2_VIP: &str = "10.200.0.6";
/// A host in the second tunnel's network (on the LAN namespace).
pub const LAN_HOST2: &str = "10.77.0.200";

/// Starts the gateway with both connections; returns it and the two client profiles
/// (TOML with their PSK, named `name_a` and `name_b`).
pub fn two_gateways(lab: &Lab, name_a: &str, name_b: &str) -> Result<(Charon, String, String)> {
    let gw_ns = lab.ns(Role::Gw);
    let lan_ns = lab.ns(Role::Lan);
    let addrs: [(&str, &str, &str); 3] = [
        (&gw_ns, "192.0.2.3/24", "g0"),
        (&lan_ns, "10.77.0.200/24", "l0"),
        // charon routes a CHILD_SA from an address of its own inside local_ts.
        (&gw_ns, "10.77.0.254/24", "g1"),
    ];
    for (ns, addr, dev) in addrs {
        let args = ["-n", ns, "addr", "add", addr, "dev", dev];
        let st = std::process::Command::new("ip").args(args).status()?;
        lab_ensure!(st.success(), "ip {args:?} failed");
    }
    let a = Tunnel::main_psk(name_a);
    let b = Tunnel::main_psk(name_b);
    let conf_a = a
        .gateway_swanctl()
        .replace("local_ts = 10.77.0.0/24", "local_ts = 10.77.0.0/25");
    let conf_b = b
        .gateway_swanctl()
        .replace(GW_ADDR, GW2_ADDR)
        .replace("  lab {", "  lab2 {")
        .replace("ike-lab {", "ike-lab2 {")
        .replace("      net {", "      net2 {")
        .replace("local_ts = 10.77.0.0/24", "local_ts = 10.77.0.128/25")
        .replace(&format!("{CLIENT_VIP}/32"), &format!("{CLIENT2_VIP}/32"));
    lab_ensure!(
        conf_b.contains("lab2") && conf_b.contains(CLIENT2_VIP),
        "the second connection was not made:\n{conf_b}"
    );
    let gw = lab.start_gateway_conf(&format!("{conf_a}\n{conf_b}"))?;
    let prof_a = a
        .postern_profile()
        .replace("\"10.77.0.0/24\"", "\"10.77.0.0/25\"");
    let prof_b = b
        .postern_profile()
        .replace(GW_ADDR, GW2_ADDR)
        .replace(CLIENT_VIP, CLIENT2_VIP)
        .replace("\"10.77.0.0/24\"", "\"10.77.0.128/25\"");
    Ok((gw, prof_a, prof_b))
}
