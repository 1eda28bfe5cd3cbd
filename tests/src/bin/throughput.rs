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
//! CPU cost: the client process's CPU time (all threads, from /proc/PID/stat) over the
//! iperf3 run, per GB carried, user and system apart. User time is what each client's
//! ESP itself costs (crypto, lookups, bookkeeping), independent of the gateway that
//! caps the rate: its ratio is the speed-up the datapath would show against a gateway
//! that is not the bottleneck. System time is mostly the kernel's work on the packets
//! (TUN, UDP, and over veth the receiving namespace's stack, run in the sender's
//! context), much the same for both.
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
    let cpu0 = cpu_secs(client.proc.pid())?;
    let charon = iperf3_from(&lab, Role::Client, Some(CLIENT_VIP), LAN_HOST, secs)
        .map_err(|e| LabError(format!("charon client: {e}\n{}", lab.diagnostics())))?;
    let cpu1 = cpu_secs(client.proc.pid())?;
    let charon_user = per_gb(cpu1.0 - cpu0.0, charon, secs);
    let charon_sys = per_gb(cpu1.1 - cpu0.1, charon, secs);
    println!(
        "strongSwan charon client         {charon:8.0} Mbit/s   CPU s per GB: user {charon_user:5.2}, system {charon_sys:5.2}"
    );
    client.terminate(CONN)?;
    gw.wait_no_sas(Duration::from_secs(10))?;
    client.stop();
    lab.remove_client_vip()?;

    let p = lab.start_postern(&t)?;
    p.wait_connected()?;
    let cpu0 = cpu_secs(p.proc.pid())?;
    let postern = iperf3_from(&lab, Role::Client, None, LAN_HOST, secs)
        .map_err(|e| LabError(format!("postern: {e}\n{}", lab.diagnostics())))?;
    let cpu1 = cpu_secs(p.proc.pid())?;
    let postern_user = per_gb(cpu1.0 - cpu0.0, postern, secs);
    let postern_sys = per_gb(cpu1.1 - cpu0.1, postern, secs);
    println!(
        "postern-helper (userspace ESP)   {postern:8.0} Mbit/s   CPU s per GB: user {postern_user:5.2}, system {postern_sys:5.2}"
    );
    p.sigterm()?;
    let _ = p.exit_code(Duration::from_secs(15))?;

    println!();
    println!("postern / charon    {:6.2}x", postern / charon);
    println!("postern / bare veth {:6.1} %", 100.0 * postern / bare);
    println!(
        "user CPU per GB, charon / postern {:6.2}x (how much cheaper Postern's ESP is per byte)",
        charon_user / postern_user
    );
    println!(
        "all CPU per GB, charon / postern  {:6.2}x",
        (charon_user + charon_sys) / (postern_user + postern_sys)
    );
    Ok(())
}

/// User and system CPU seconds of a process so far (all its threads).
fn cpu_secs(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) end at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| LabError(format!("odd /proc/{pid}/stat")))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12th and 13th after the name.
    let ticks = |i: usize| -> Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| LabError(format!("no field {i} in /proc/{pid}/stat")))
    };
    // USER_HZ is 100 on Linux.
    Ok((ticks(11)? / 100.0, ticks(12)? / 100.0))
}

/// CPU seconds per GB carried at `mbits` Mbit/s for `secs` seconds.
fn per_gb(cpu: f64, mbits: f64, secs: u32) -> f64 {
    let gb = mbits * f64::from(secs) / 8.0 / 1000.0;
    if gb > 0.0 { cpu / gb } else { f64::NAN }
}
