//! Throughput: TCP (iperf3) through Postern's userspace ESP datapath vs strongSwan's
//! charon as the client (kernel-libipsec, ESP in user space too) vs the bare veth link,
//! in one lab, one run. A benchmark: it prints figures, it asserts nothing about them.
//!
//! What is measured: iperf3 TCP, one stream, `--secs` seconds (default 5), receiver
//! side Mbit/s, to the lan host 10.77.0.10 (iperf3 server in the lan namespace).
//! - bare: from the gw namespace (one veth hop, no tunnel), at the start and again at
//!   the end; the ratios use the faster of the two (on a shared machine a disturbed
//!   first run would otherwise flatter every ratio to it);
//! - charon: from the client namespace, bound to the inner address, through charon
//!   client ↔ charon gateway (both kernel-libipsec);
//! - postern: from the client namespace through `postern-helper up` ↔ charon gateway;
//! - postern <-> postern: `postern-helper up` ↔ `postern-helper respond` (the userspace
//!   datapath at both ends), twice: the default profile (NAT-T `auto`, which on this
//!   NAT-free path asks for ESP in UDP) and raw ESP (`nat_traversal = "off"`, IP
//!   protocol 50); each as a share of bare veth (goal 40 %) and against charon via
//!   libipsec.
//!
//! CPU cost: the client process's CPU time (all threads, from /proc/PID/stat) over the
//! iperf3 run, per GB carried, user and system apart. User time is what each client's
//! ESP itself costs (crypto, lookups, bookkeeping), independent of the gateway that
//! caps the rate: its ratio is the speed-up the datapath would show against a gateway
//! that is not the bottleneck. System time is mostly the kernel's work on the packets
//! (TUN, UDP, and over veth the receiving namespace's stack, run in the sender's
//! context), much the same for both.
//!
//! All tunnels: main mode PSK aes128-sha256-modp2048, ESP `--esp` (default
//! aes128gcm16); through charon's libipsec UDP-encapsulated (libipsec always is). The gateway's libipsec is in
//! the path of both tunnels: it bounds what either client can show.
//!
//! Usage: throughput [--secs N] [--esp PROPOSAL] [--runs N] [--pair-only]
//! (`--pair-only`: only Postern at both ends, both encapsulations, no ratios; for
//! profiling that case.
//! `--runs N`: Postern at both ends measured N times each way, upload and download
//! alternating, in the same tunnel; every run is printed and the ratios use the
//! median, which a shared machine's disturbed run moves least.)

use std::process::ExitCode;
use std::time::Duration;

use postern_lab::bench::{iperf3_dir, iperf3_from};
use postern_lab::config::{CHILD, CLIENT_VIP, CONN, LAN_HOST};
use postern_lab::{Lab, LabError, Result, Role, Tunnel};

fn main() -> ExitCode {
    let mut secs = 5u32;
    let mut esp = "aes128gcm16".to_string();
    let mut pair_only = false;
    let mut runs = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--pair-only" {
            pair_only = true;
            continue;
        }
        match (a.as_str(), it.next()) {
            ("--secs", Some(v)) if v.parse::<u32>().is_ok_and(|n| (1..=60).contains(&n)) => {
                secs = v.parse().unwrap_or(5)
            }
            ("--esp", Some(v)) => esp = v,
            ("--runs", Some(v)) if v.parse::<usize>().is_ok_and(|n| (1..=9).contains(&n)) => {
                runs = v.parse().unwrap_or(1)
            }
            _ => {
                eprintln!(
                    "usage: throughput [--secs 1..60] [--esp PROPOSAL] [--runs 1..9] [--pair-only]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(secs, &esp, runs, pair_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(secs: u32, esp: &str, runs: usize, pair_only: bool) -> Result<()> {
    let t = Tunnel::main_psk("throughput").proposals(&["aes128-sha256-modp2048"], &[esp]);
    let lab = Lab::new("throughput")?;
    println!(
        "throughput: iperf3 TCP {secs} s, esp {esp}, lab {}",
        lab.name
    );
    if pair_only {
        postern_pair(&lab, &t, secs, runs, Encap::Default)?;
        postern_pair(&lab, &t, secs, runs, Encap::Raw)?;
        return Ok(());
    }
    let gw = lab.start_gateway(&t)?;

    let bare_first = iperf3_from(&lab, Role::Gw, None, LAN_HOST, secs)?;
    println!("bare veth (gw -> lan)              {bare_first:8.0} Mbit/s");

    let client = lab.start_charon_client(&t)?;
    client.initiate(CHILD, 20)?;
    let pid = client.proc.pid();
    let charon_up = measure(&lab, pid, Some(CLIENT_VIP), secs, false)
        .map_err(|e| LabError(format!("charon client: {e}\n{}", lab.diagnostics())))?;
    charon_up.print("strongSwan charon client, upload ");
    let charon_down = measure(&lab, pid, Some(CLIENT_VIP), secs, true)
        .map_err(|e| LabError(format!("charon client: {e}\n{}", lab.diagnostics())))?;
    charon_down.print("strongSwan charon client, download");
    client.terminate(CONN)?;
    gw.wait_no_sas(Duration::from_secs(10))?;
    client.stop();
    lab.remove_client_vip()?;

    let p = lab.start_postern(&t)?;
    p.wait_connected()?;
    let pid = p.proc.pid();
    let postern_up = measure(&lab, pid, None, secs, false)
        .map_err(|e| LabError(format!("postern: {e}\n{}", lab.diagnostics())))?;
    postern_up.print("postern-helper, upload           ");
    let postern_down = measure(&lab, pid, None, secs, true)
        .map_err(|e| LabError(format!("postern: {e}\n{}", lab.diagnostics())))?;
    postern_down.print("postern-helper, download         ");
    p.sigterm()?;
    let _ = p.exit_code(Duration::from_secs(15))?;

    // Postern at both ends: the gateway's charon gives way to `postern-helper respond`
    // (the userspace datapath there too). Both encapsulations, in the same run: the
    // default profile (NAT-T `auto`: the userspace datapath asks for ESP in UDP on this
    // NAT-free path) and raw ESP (NAT-T off, IP protocol 50).
    gw.stop();
    let (pp_up, pp_down) = postern_pair(&lab, &t, secs, runs, Encap::Default)?;
    let (raw_up, raw_down) = postern_pair(&lab, &t, secs, runs, Encap::Raw)?;
    let bare_last = iperf3_from(&lab, Role::Gw, None, LAN_HOST, secs)?;
    println!("bare veth (gw -> lan), again       {bare_last:8.0} Mbit/s");
    let bare = bare_first.max(bare_last);

    println!();
    for (what, up, down) in [
        ("default (ESP in UDP)", &pp_up, &pp_down),
        ("raw ESP (NAT-T off) ", &raw_up, &raw_down),
    ] {
        for (dir, pp, ch) in [
            ("upload  ", &up.0, &charon_up),
            ("download", &down.0, &charon_down),
        ] {
            println!(
                "postern<->postern {what} {dir}: {:6.0} Mbit/s, {:5.1} % of bare veth (goal 40 %), {:5.2}x charon via libipsec",
                pp.mbits,
                100.0 * pp.mbits / bare,
                pp.mbits / ch.mbits,
            );
        }
    }
    println!(
        "raw ESP / ESP in UDP: upload {:4.2}, download {:4.2}",
        raw_up.0.mbits / pp_up.0.mbits,
        raw_down.0.mbits / pp_down.0.mbits
    );
    for (dir, pu, ch) in [
        ("upload  ", &postern_up, &charon_up),
        ("download", &postern_down, &charon_down),
    ] {
        println!(
            "{dir}: postern / charon {:5.2}x, postern / bare veth {:5.1} %, CPU per GB charon / postern: user {:5.2}x, all {:5.2}x",
            pu.mbits / ch.mbits,
            100.0 * pu.mbits / bare,
            ch.user / pu.user,
            (ch.user + ch.sys) / (pu.user + pu.sys)
        );
    }
    Ok(())
}

/// Which encapsulation Postern at both ends runs with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encap {
    /// The profile's defaults (NAT-T `auto`; the datapath asks for ESP in UDP).
    Default,
    /// `nat_traversal = "off"`: raw ESP, IP protocol 50.
    Raw,
}

/// Postern at both ends (`postern-helper respond` in the gateway namespace): upload and
/// download, each with the client's and the responder's CPU; with `runs` > 1, the
/// median run of each direction.
fn postern_pair(
    lab: &Lab,
    t: &Tunnel,
    secs: u32,
    runs: usize,
    encap: Encap,
) -> Result<((Run, Run), (Run, Run))> {
    let responder = postern_lab::postern::start_responder(lab, t)?;
    let mut t2 = t.clone();
    let label = match encap {
        Encap::Default => "default ",
        Encap::Raw => {
            t2.nat_traversal = Some("off".into());
            "raw ESP "
        }
    };
    let p = lab.start_postern(&t2)?;
    p.wait_connected()?;
    // What the client says it got, and why (the bench measures what it claims).
    let said = p
        .stdout()
        .into_iter()
        .find(|l| l.starts_with("encapsulation: ") && !l.starts_with("encapsulation: asking"))
        .unwrap_or_else(|| "encapsulation: (not said)".into());
    println!("postern <-> postern, {label}: {said}");
    let want_udp = encap == Encap::Default;
    if said.contains("ESP in UDP") != want_udp {
        return Err(LabError(format!(
            "expected {} for the {label} run: {said}",
            if want_udp { "ESP in UDP" } else { "raw ESP" }
        )));
    }
    let pid = p.proc.pid();
    let rpid = responder.pid();
    let mut ups = Vec::with_capacity(runs);
    let mut downs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let up = measure2(lab, pid, rpid, secs, false)?;
        up.0.print(&format!("postern <-> postern, {label}upload  "));
        ups.push(up);
        let down = measure2(lab, pid, rpid, secs, true)?;
        down.0
            .print(&format!("postern <-> postern, {label}download"));
        downs.push(down);
    }
    let (pp_up, pp_down) = (median(ups), median(downs));
    if runs > 1 {
        pp_up
            .0
            .print(&format!("postern <-> postern, {label}median up  "));
        pp_down
            .0
            .print(&format!("postern <-> postern, {label}median down"));
    }
    println!(
        "  (the responder: upload user {:5.2}, system {:5.2}; download user {:5.2}, system {:5.2} CPU s per GB)",
        pp_up.1.user, pp_up.1.sys, pp_down.1.user, pp_down.1.sys
    );
    p.sigterm()?;
    let _ = p.exit_code(Duration::from_secs(15))?;
    responder.stop(Duration::from_secs(5));
    Ok((pp_up, pp_down))
}

/// The run with the median rate (of an even count, the upper one); `runs` is not empty.
fn median(mut runs: Vec<(Run, Run)>) -> (Run, Run) {
    runs.sort_by(|a, b| a.0.mbits.total_cmp(&b.0.mbits));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// One iperf3 run through a client: Mbit/s and that client's CPU seconds per GB.
struct Run {
    mbits: f64,
    user: f64,
    sys: f64,
}

impl Run {
    fn print(&self, label: &str) {
        println!(
            "{label} {:8.0} Mbit/s   CPU s per GB: user {:5.2}, system {:5.2}",
            self.mbits, self.user, self.sys
        );
    }
}

/// iperf3 from the client namespace (`reverse`: the lan host sends) with the CPU time
/// of process `pid` over the run.
fn measure(lab: &Lab, pid: u32, bind: Option<&str>, secs: u32, reverse: bool) -> Result<Run> {
    let cpu0 = cpu_secs(pid)?;
    let mbits = iperf3_dir(lab, Role::Client, bind, LAN_HOST, secs, reverse)?;
    let cpu1 = cpu_secs(pid)?;
    Ok(Run {
        mbits,
        user: per_gb(cpu1.0 - cpu0.0, mbits, secs),
        sys: per_gb(cpu1.1 - cpu0.1, mbits, secs),
    })
}

/// Like [`measure`], also with the CPU of a second process (the responder).
fn measure2(lab: &Lab, pid: u32, other: u32, secs: u32, reverse: bool) -> Result<(Run, Run)> {
    let o0 = cpu_secs(other)?;
    let run = measure(lab, pid, None, secs, reverse)?;
    let o1 = cpu_secs(other)?;
    let o = Run {
        mbits: run.mbits,
        user: per_gb(o1.0 - o0.0, run.mbits, secs),
        sys: per_gb(o1.1 - o0.1, run.mbits, secs),
    };
    Ok((run, o))
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
