//! Connect/disconnect cycles over D-Bus (issue 15, point 4): the `postern` CLI as an
//! unprivileged user on the lab's private system bus brings two tunnels up at once (two
//! gateway addresses of one strongSwan, `crate::multi`), pings through each, and takes
//! both down, N times. After every cycle the helper daemon's open file descriptors and
//! resident memory are sampled; at the end the client namespace must be as before the
//! first connect (`crate::hoststate`) and the gateway must hold no SA.
//! `bench/cycles.sh N` prints the figures; `tests/tests/cycles.rs` runs 20 cycles.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::bususer::{BusUser, allow_rules, text, without_psk};
use crate::config::LAN_HOST;
use crate::hoststate::{ensure_same, fd_and_rss, snapshot};
use crate::multi::{LAN_HOST2, two_gateways};
use crate::sysbus::{HostChanges, SystemBus};
use crate::{Lab, LabError, Result, Role, Tunnel};

/// The test user of the cycles.
pub const USER: &str = "postern-lab-cy";
const NAMES: [&str; 2] = ["cyc-a", "cyc-b"];

/// One cycle's figures (the daemon's, sampled after both tunnels were taken down).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub fds: usize,
    pub rss_kib: u64,
    /// Both `postern up` calls (run at the same time), until both returned.
    pub up_ms: u64,
    pub down_ms: u64,
}

#[derive(Debug)]
pub struct Report {
    pub samples: Vec<Sample>,
    /// The daemon's figures before the first cycle.
    pub start: (usize, u64),
}

impl Report {
    /// `first W` vs `last W` cycles (W = 50, or half the cycles when fewer), printed.
    pub fn summary(&self) -> String {
        let n = self.samples.len();
        let w = 50.min(n / 2).max(1);
        let stats = |s: &[Sample]| {
            let len = s.len().max(1) as u64;
            let fd_min = s.iter().map(|x| x.fds).min().unwrap_or(0);
            let fd_max = s.iter().map(|x| x.fds).max().unwrap_or(0);
            let rss_avg = s.iter().map(|x| x.rss_kib).sum::<u64>() / len;
            let rss_max = s.iter().map(|x| x.rss_kib).max().unwrap_or(0);
            let up = s.iter().map(|x| x.up_ms).sum::<u64>() / len;
            let down = s.iter().map(|x| x.down_ms).sum::<u64>() / len;
            format!(
                "fds {fd_min}..{fd_max}, RSS avg {rss_avg} KiB max {rss_max} KiB, two ups {up} ms, two downs {down} ms (averages)"
            )
        };
        format!(
            "{n} cycles, two tunnels at a time; daemon before the first: {} fds, {} KiB RSS\n  first {w}: {}\n  last  {w}: {}",
            self.start.0,
            self.start.1,
            stats(&self.samples[..w.min(n)]),
            stats(&self.samples[n.saturating_sub(w)..])
        )
    }
}

fn spawn_with(user: &BusUser, args: &[&str], stdin: &str) -> Result<Child> {
    let mut c = user.postern_cmd(args);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn()?;
    if let Some(mut w) = child.stdin.take() {
        use std::io::Write as _;
        w.write_all(stdin.as_bytes())?;
    }
    Ok(child)
}

/// Runs both commands at once; fails with their output unless both succeed.
fn both(user: &BusUser, verb: &str, stdin: &str, extra: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let mut children = Vec::new();
    for name in NAMES {
        let mut args = vec![verb, name];
        args.extend_from_slice(extra);
        children.push((name, spawn_with(user, &args, stdin)?));
    }
    let mut errors = Vec::new();
    for (name, c) in children {
        let o = c.wait_with_output()?;
        if !o.status.success() {
            errors.push(format!("postern {verb} {name}: {}", text(&o)));
        }
    }
    if !errors.is_empty() {
        return Err(LabError(errors.join("\n")));
    }
    Ok(t.elapsed())
}

/// The daemon's fd count and RSS once the fd count is steady (two equal reads 100 ms
/// apart, at most 2 s): a tunnel's task may still be closing its sockets.
fn settled(pid: u32) -> Result<(usize, u64)> {
    let mut last = fd_and_rss(pid)?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = fd_and_rss(pid)?;
        if now.0 == last.0 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// `n` cycles in `lab`; `progress` prints a line every 10 cycles.
pub fn run(lab: &Lab, n: u32, progress: bool) -> Result<Report> {
    let mut host = HostChanges::default();
    let sys = SystemBus::start(lab, &allow_rules(&[USER]))?;
    let user = BusUser::new(lab, &mut host, &sys, USER)?;
    let (gw, prof_a, prof_b) = two_gateways(lab, NAMES[0], NAMES[1])?;
    let psk = Tunnel::main_psk(NAMES[0]).psk;
    for (name, prof) in [(NAMES[0], &prof_a), (NAMES[1], &prof_b)] {
        let o = user.postern(&["add", name, "--from", "-"], Some(&without_psk(prof)))?;
        crate::lab_ensure!(o.status.success(), "postern add {name}: {}", text(&o));
    }
    let before = snapshot(lab)?;
    let pid = sys.helper.pid();
    let start = settled(pid)?;
    let mut samples = Vec::new();
    let stdin = format!("{psk}\n");
    for i in 1..=n {
        let up = both(&user, "up", &stdin, &["--secrets-stdin"])
            .map_err(|e| LabError(format!("cycle {i}: {e}")))?;
        for dst in [LAN_HOST, LAN_HOST2] {
            lab.exec(Role::Client, &["ping", "-n", "-c", "1", "-W", "2", dst])
                .map_err(|e| LabError(format!("cycle {i}: ping {dst}: {e}")))?;
        }
        let down = both(&user, "down", "", &[]).map_err(|e| LabError(format!("cycle {i}: {e}")))?;
        let (fds, rss_kib) = settled(pid)?;
        samples.push(Sample {
            fds,
            rss_kib,
            up_ms: up.as_millis() as u64,
            down_ms: down.as_millis() as u64,
        });
        if progress && i % 10 == 0 {
            println!(
                "cycle {i}: daemon {fds} fds, {rss_kib} KiB RSS; two ups {} ms, two downs {} ms",
                up.as_millis(),
                down.as_millis()
            );
        }
    }
    // Nothing of Postern's is left in the client namespace, nothing at the gateway.
    let mut after = snapshot(lab)?;
    for _ in 0..50 {
        if after == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = snapshot(lab)?;
    }
    ensure_same(&before, &after, &format!("after {n} cycles"))?;
    gw.wait_no_sas(Duration::from_secs(10))
        .map_err(|e| LabError(format!("stale SA at the gateway after {n} cycles: {e}")))?;
    crate::lab_ensure!(
        sys.helper.try_status().is_none(),
        "the helper daemon died: {}",
        sys.helper.tail(30)
    );
    let out = sys.helper.tail(1_000_000);
    crate::lab_ensure!(
        !out.contains(&psk),
        "the PSK is in the helper daemon's output"
    );
    drop(host);
    Ok(Report { samples, start })
}
