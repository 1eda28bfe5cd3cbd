//! Footprint of `postern-helper daemon` on a system bus (a private one, with Debian's
//! polkitd, as tests/tests/bus.rs): resident memory and wakeups per second, idle and
//! with one tunnel up to a strongSwan gateway in the namespace lab.
//!
//! What is measured:
//! - RSS: `VmRSS` of the helper process from /proc/PID/status.
//! - wakeups: the sum of voluntary + involuntary context switches of all the helper's
//!   threads (/proc/PID/task/*/status) over a window, per second. Every time a thread
//!   is scheduled after sleeping counts, which is what a wakeup costs a laptop.
//!
//! The tunnel: main mode PSK, DPD off, NAT keepalive 20 s (kernel-libipsec gateways
//! always use UDP encapsulation), no traffic. Root is authorized by polkit. Usage:
//! footprint [--window SECS]

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use postern_lab::postern::helper_path;
use postern_lab::sysbus::SystemBus;
use postern_lab::{Lab, LabError, Result, Tunnel};

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum::<u64>()
        })
        .sum()
}

fn measure(pid: u32, window: Duration) -> (u64, f64) {
    let before = switches(pid);
    std::thread::sleep(window);
    let after = switches(pid);
    let rss = status_field(pid, "VmRSS:").unwrap_or(0);
    (
        rss,
        (after.saturating_sub(before)) as f64 / window.as_secs_f64(),
    )
}

fn run(window: Duration) -> Result<()> {
    let lab = Lab::new("footprint")?;
    let sys = SystemBus::start(&lab, "")?;
    let pid = sys.helper.pid();
    std::thread::sleep(Duration::from_secs(2));
    let (rss_idle, wk_idle) = measure(pid, window);
    println!(
        "idle on the bus:      RSS {:>6} kB   wakeups {:>6.2}/s",
        rss_idle, wk_idle
    );

    let mut t = Tunnel::main_psk("footprint");
    t.dpd = None;
    let _gw = lab.start_gateway(&t)?;
    let profile: String = t
        .postern_profile()
        .lines()
        .filter(|l| !l.starts_with("psk ="))
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg = lab.dir.join("cli-config");
    let cli = helper_path()?.with_file_name("postern");
    let postern = |args: &[&str], stdin: &str| -> Result<()> {
        let mut c = Command::new(&cli);
        c.args(args)
            .env("XDG_CONFIG_HOME", &cfg)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &sys.addr)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        if let Some(mut w) = child.stdin.take() {
            use std::io::Write as _;
            w.write_all(stdin.as_bytes())?;
        }
        let o = child.wait_with_output()?;
        if !o.status.success() {
            return Err(LabError(format!(
                "postern {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        Ok(())
    };
    postern(&["add", "footprint", "--from", "-"], &profile)?;
    postern(
        &["up", "footprint", "--secrets-stdin"],
        &format!("{}\n", t.psk),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let (rss_up, wk_up) = measure(pid, window);
    println!(
        "one tunnel up:        RSS {:>6} kB   wakeups {:>6.2}/s",
        rss_up, wk_up
    );
    println!(
        "goals: idle <= 8192 kB ({}), tunnel <= 16384 kB ({}), <= 1 wakeup/s connected ({})",
        if rss_idle <= 8192 { "met" } else { "missed" },
        if rss_up <= 16384 { "met" } else { "missed" },
        if wk_up <= 1.0 { "met" } else { "missed" }
    );
    postern(&["down", "footprint"], "")?;
    Ok(())
}

fn main() -> ExitCode {
    let mut window = Duration::from_secs(20);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            ("--window", Some(s)) if (1..=600).contains(&s) => window = Duration::from_secs(s),
            _ => {
                eprintln!("usage: footprint [--window SECS]");
                return ExitCode::from(2);
            }
        }
    }
    match run(window) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("footprint: {e}");
            ExitCode::FAILURE
        }
    }
}
