//! Throughput: TCP (iperf3) through Postern's userspace ESP datapath vs strongSwan's
//! charon as the client (kernel-libipsec, ESP in user space too) vs the bare veth link,
//! in one lab, one run. A benchmark: it prints figures, it asserts nothing about them.
//!
//! What is measured: iperf3 TCP, one stream, `--secs` seconds (default 5), receiver
//! side Mbit/s, to the lan host 10.77.0.10 (iperf3 server in the lan namespace).
//! - bare: from the gw namespace (one veth hop, no tunnel);
//! - charon: from the client namespace, bound to the inner address, through charon
//!   client ↔ charon gateway (both kernel-libipsec);
//! - postern: from the client namespace through `postern-helper up` ↔ charon gateway.
//!
//! Both tunnels: main mode PSK aes128-sha256-modp2048, ESP `--esp` (default
//! aes128gcm16), UDP-encapsulated (libipsec always is). The gateway's libipsec is in
//! the path of both tunnels: it bounds what either client can show.
//!
//! Usage: throughput [--secs N] [--esp PROPOSAL]

use std::process::ExitCode;
use std::time::Duration;

use postern_lab::bench::iperf3_from;
use postern_lab::config::{CHILD, CLIENT_VIP, CONN, LAN_HOST};
use postern_lab::{Lab, LabError, Result, Role, Tunnel};

fn main() -> ExitCode {
    let mut secs = 5u32;
    let mut esp = "aes128gcm16".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--secs", Some(v)) if v.parse::<u32>().is_ok_and(|n| (1..=60).contains(&n)) => {
                secs = v.parse().unwrap_or(5)
            }
            ("--esp", Some(v)) => esp = v,
            _ => {
                eprintln!("usage: throughput [--secs 1..60] [--esp PROPOSAL]");
                return ExitCode::from(2);
            }
        }
    }
    match run(secs, &esp) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(secs: u32, esp: &str) -> Result<()> {
    let t = Tunnel::main_psk("throughput").proposals(&["aes128-sha256-modp2048"], &[esp]);
    let lab = Lab::new("throughput")?;
    let gw = lab.start_gateway(&t)?;
    println!(
        "throughput: iperf3 TCP {secs} s, esp {esp}, lab {}",
        lab.name
    );

    let bare = iperf3_from(&lab, Role::Gw, None, LAN_HOST, secs)?;
    println!("bare veth (gw -> lan)            {bare:8.0} Mbit/s");

    let client = lab.start_charon_client(&t)?;
    client.initiate(CHILD, 20)?;
    let charon = iperf3_from(&lab, Role::Client, Some(CLIENT_VIP), LAN_HOST, secs)
        .map_err(|e| LabError(format!("charon client: {e}\n{}", lab.diagnostics())))?;
    println!("strongSwan charon client         {charon:8.0} Mbit/s");
    client.terminate(CONN)?;
    gw.wait_no_sas(Duration::from_secs(10))?;
    client.stop();
    lab.remove_client_vip()?;

    let p = lab.start_postern(&t)?;
    p.wait_connected()?;
    let postern = iperf3_from(&lab, Role::Client, None, LAN_HOST, secs)
        .map_err(|e| LabError(format!("postern: {e}\n{}", lab.diagnostics())))?;
    println!("postern-helper (userspace ESP)   {postern:8.0} Mbit/s");
    p.sigterm()?;
    let _ = p.exit_code(Duration::from_secs(15))?;

    println!();
    println!("postern / charon    {:6.2}x", postern / charon);
    println!("postern / bare veth {:6.1} %", 100.0 * postern / bare);
    Ok(())
}
