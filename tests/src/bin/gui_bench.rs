//! Footprint of the desktop app (`postern-gui`, a release build) in the desktop lab:
//! Xvfb, the test user's session bus with GNOME Keyring, a StatusNotifierWatcher and
//! host, the notification recorder, and the real helper on the lab's private system bus
//! (`postern_lab::desktop`, as tests/tests/desktop.rs), with one profile and no tunnel.
//! Prints figures; asserts nothing about them (goals from issue 12 beside each).
//!
//! What is measured:
//! - exec to window: from spawning the app to its window "Postern" being mapped
//!   (`xdotool search --onlyvisible`, polled every 10 ms), and to the window showing
//!   more than one colour (`import -window`, polled: resolution about one import),
//!   median of `--runs` starts;
//! - idle RSS: `VmRSS` of the app 5 s after its window appeared;
//! - idle wakeups: voluntary + involuntary context switches of all the app's threads
//!   (/proc/PID/task/*/status) over `--window` seconds, per second, with the window
//!   open and nothing changing, and with the app started hidden in the tray;
//! - binary size: the release binary as built and stripped (`strip`).
//!
//! Usage: gui-bench [--runs N] [--window SECS]

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use postern_lab::desktop::{App, Desktop, Screenshot};
use postern_lab::postern::helper_path;
use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, LabError, Result, Tunnel};

const USER: &str = "postern-lab-bench";

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Context switches of each of the process's threads: `(tid, name, count)`.
fn switches(pid: u32) -> Vec<(String, String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let n = status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches")
                        || l.starts_with("nonvoluntary_ctxt_switches")
                })
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>();
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            Some((t.file_name().to_string_lossy().into_owned(), name, n))
        })
        .collect()
}

/// Wakeups per second of the whole process over `window`, and the busiest threads
/// (`name rate`, at most four).
fn wakeups_per_s(pid: u32, window: Duration) -> (f64, String) {
    let a = switches(pid);
    std::thread::sleep(window);
    let b = switches(pid);
    let secs = window.as_secs_f64();
    let mut per: Vec<(String, f64)> = b
        .iter()
        .map(|(tid, name, n)| {
            let before = a.iter().find(|(t, _, _)| t == tid).map_or(0, |x| x.2);
            (name.clone(), n.saturating_sub(before) as f64 / secs)
        })
        .collect();
    let total = per.iter().map(|x| x.1).sum();
    per.sort_by(|x, y| y.1.total_cmp(&x.1));
    let top = per
        .iter()
        .filter(|x| x.1 > 0.0)
        .take(4)
        .map(|(n, r)| format!("{n} {r:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    (total, top)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The app's window id once mapped (polled every 10 ms, bounded).
fn wait_mapped(d: &Desktop, app: &App, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    for _ in 0..(timeout.as_millis() / 10 + 2) {
        let out = Command::new("xdotool")
            .args(["search", "--onlyvisible", "--name", "^Postern$"])
            .env("DISPLAY", &d.display)
            .output()?;
        if let Some(w) = String::from_utf8_lossy(&out.stdout).lines().next() {
            return Ok(w.trim().to_string());
        }
        if let Some(st) = app.proc.try_status() {
            return Err(LabError(format!(
                "postern-gui exited ({st}): {}",
                app.proc.tail(20)
            )));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(LabError(format!(
        "no window \"Postern\" within {timeout:?}: {}",
        app.proc.tail(20)
    )))
}

/// Polls `import -window WID` until the window shows more than one colour.
fn wait_painted(d: &Desktop, wid: &str, timeout: Duration) -> Result<()> {
    let ppm = d.dir.join("bench-window.ppm");
    let deadline = Instant::now() + timeout;
    for _ in 0..200 {
        let ok = Command::new("import")
            .args(["-display", &d.display, "-window", wid, "-depth", "8"])
            .arg(&ppm)
            .status()?
            .success();
        if ok
            && let Ok(bytes) = std::fs::read(&ppm)
            && let Ok(s) = Screenshot::from_ppm(&bytes, ppm.clone())
            && s.distinct_colours(None, 2) >= 2
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(LabError(format!(
        "the window stayed one colour for {timeout:?}"
    )))
}

fn stop(app: &App) {
    app.proc.stop(Duration::from_secs(5));
}

fn run(runs: usize, window: Duration) -> Result<()> {
    let lab = Lab::new("gui-bench")?;
    let mut host = HostChanges::default();
    let uid = host.ensure_user(USER)?;
    let rules = format!(
        "polkit.addRule(function(action, subject) {{\n  if ((action.id == \"org.postern.helper1.connect\" || action.id == \"org.postern.helper1.manage-own\") && subject.user == \"{USER}\") {{\n    return polkit.Result.YES;\n  }}\n}});\n"
    );
    let sys = SystemBus::start(&lab, &rules)?;
    let d = Desktop::start(&lab, &sys, uid)?;
    let t = Tunnel::main_psk("office");
    let profile: String = t
        .postern_profile()
        .lines()
        .filter(|l| !l.starts_with("psk ="))
        .map(|l| format!("{l}\n"))
        .collect();
    let o = d.postern(&["add", "office", "--from", "-"], Some(&profile))?;
    if !o.status.success() {
        return Err(LabError(format!(
            "postern add: {}",
            postern_lab::desktop::output_text(&o)
        )));
    }

    let binary = helper_path()?.with_file_name("postern-gui");
    let built = std::fs::metadata(&binary)?.len();
    let stripped_path = d.dir.join("postern-gui.stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&stripped_path)
        .arg(&binary)
        .status()?;
    let stripped = if st.success() {
        std::fs::metadata(&stripped_path)?.len()
    } else {
        0
    };

    // Starts: exec to mapped, exec to painted.
    let (mut mapped, mut painted) = (Vec::new(), Vec::new());
    let mut idle = None;
    for i in 0..runs {
        let app = d.start_app(&lab, &[])?;
        let t0 = app.proc.started();
        let wid = wait_mapped(&d, &app, Duration::from_secs(20))?;
        mapped.push(t0.elapsed().as_secs_f64() * 1000.0);
        wait_painted(&d, &wid, Duration::from_secs(20))?;
        painted.push(t0.elapsed().as_secs_f64() * 1000.0);
        if i + 1 == runs {
            std::thread::sleep(Duration::from_secs(5));
            let pid = app.proc.pid();
            let rss = status_field(pid, "VmRSS:").unwrap_or(0);
            let w = wakeups_per_s(pid, window);
            idle = Some((rss, w));
        }
        stop(&app);
    }
    let (rss_kb, (wake_open, top_open)) = idle.unwrap_or((0, (f64::NAN, String::new())));

    // Hidden in the tray.
    let app = d.start_app(&lab, &[("POSTERN_START_HIDDEN", "1")])?;
    postern_lab::wait::wait_for(
        "the tray item",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok((!d.tray_items()?.is_empty()).then_some(())),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = app.proc.pid();
    let rss_tray = status_field(pid, "VmRSS:").unwrap_or(0);
    let (wake_tray, top_tray) = wakeups_per_s(pid, window);
    stop(&app);

    println!(
        "postern-gui footprint (release, Xvfb, tiny-skia; {runs} starts, {}s windows)",
        window.as_secs()
    );
    println!(
        "  exec -> window mapped     median {:7.1} ms  (runs: {})   goal: first frame <= 400 ms",
        median(mapped.clone()),
        mapped
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  exec -> window painted    median {:7.1} ms  (runs: {}; resolution ~ one `import`)",
        median(painted.clone()),
        painted
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  idle RSS, window open     {:7.1} MB   goal: <= 60 MB",
        rss_kb as f64 / 1024.0
    );
    println!(
        "  idle RSS, in the tray     {:7.1} MB",
        rss_tray as f64 / 1024.0
    );
    println!(
        "  wakeups/s, window open    {wake_open:7.1}      goal: <= 5/s   (threads: {top_open})"
    );
    println!(
        "  wakeups/s, in the tray    {wake_tray:7.1}      goal: <= 1/s   (threads: {top_tray})"
    );
    println!(
        "  binary                    {:7.1} MB as built, {:.1} MB stripped",
        built as f64 / 1e6,
        stripped as f64 / 1e6
    );
    drop(d);
    drop(sys);
    drop(host);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |flag: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = num("--runs", 5).clamp(1, 50) as usize;
    let window = Duration::from_secs(num("--window", 10).clamp(1, 120));
    match run(runs, window) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gui-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
