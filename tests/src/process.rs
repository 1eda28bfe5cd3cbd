//! Processes the lab starts: output captured line by line with timestamps, bounded waits
//! for a line or an exit, signals by pid (only ever to a child we still own, never reaped,
//! so the pid cannot have been reused).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::wait::wait_for;
use crate::{LabError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, stamped with the time since the process was started.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Duration,
    pub stream: Stream,
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        };
        write!(f, "[{:>8.3}s {tag}] {}", self.at.as_secs_f64(), self.text)
    }
}

#[derive(Default)]
struct Captured {
    lines: Vec<Line>,
    open_streams: u8,
}

/// A running (or finished) child process of the lab.
pub struct Proc {
    name: String,
    pid: u32,
    started: Instant,
    child: Mutex<Child>,
    captured: Arc<(Mutex<Captured>, Condvar)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking reader thread must not hide the output from the test that reads it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout/stderr captured. Every line is also
    /// appended to `log` when given (so it survives for post-mortem reading).
    pub fn spawn(name: &str, mut cmd: Command, log: Option<&Path>) -> Result<Arc<Proc>> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| LabError(format!("cannot start {name} ({cmd:?}): {e}")))?;
        let captured = Arc::new((
            Mutex::new(Captured {
                lines: Vec::new(),
                open_streams: 2,
            }),
            Condvar::new(),
        ));
        let log = match log {
            Some(p) => Some(Arc::new(Mutex::new(File::create(p)?))),
            None => None,
        };
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (stream, pipe) in [(Stream::Stdout, out), (Stream::Stderr, err)] {
            let Some(pipe) = pipe else { continue };
            let captured = Arc::clone(&captured);
            let log = log.clone();
            thread::Builder::new()
                .name(format!("{name}-{stream:?}"))
                .spawn(move || read_lines(pipe, stream, started, &captured, log.as_deref()))?;
        }
        Ok(Arc::new(Proc {
            name: name.to_string(),
            pid: child.id(),
            started,
            child: Mutex::new(child),
            captured,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// All lines captured so far.
    pub fn lines(&self) -> Vec<Line> {
        lock(&self.captured.0).lines.clone()
    }

    pub fn lines_of(&self, stream: Stream) -> Vec<String> {
        lock(&self.captured.0)
            .lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    }

    /// The last `n` lines, formatted with their timestamps.
    pub fn tail(&self, n: usize) -> String {
        let c = lock(&self.captured.0);
        let skip = c.lines.len().saturating_sub(n);
        c.lines[skip..].iter().map(|l| format!("{l}\n")).collect()
    }

    /// Waits until a line on `stream` (either stream when `None`) contains `pattern`.
    /// Fails early when the process closes its output without printing it.
    pub fn wait_line(
        &self,
        stream: Option<Stream>,
        pattern: &str,
        timeout: Duration,
    ) -> Result<Line> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.captured;
        let mut c = lock(m);
        // Bounded in count as well as time: each wakeup is a new line, an EOF or the timeout.
        for _ in 0..100_000 {
            if let Some(l) = c
                .lines
                .iter()
                .find(|l| stream.is_none_or(|s| s == l.stream) && l.text.contains(pattern))
            {
                return Ok(l.clone());
            }
            if c.open_streams == 0 {
                drop(c);
                let status = self
                    .exit_status(Duration::from_secs(2))
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.0);
                lab_bail!(
                    "{} ended its output without printing {pattern:?} ({status}); its output:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            c = cv
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        drop(c);
        Err(LabError(format!(
            "{} did not print {pattern:?} within {timeout:?}; its output:\n{}",
            self.name,
            self.tail(40)
        )))
    }

    /// The exit status if the process has ended (reaps it).
    pub fn try_status(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// Waits (bounded) for the process to end.
    pub fn exit_status(&self, timeout: Duration) -> Result<ExitStatus> {
        wait_for(
            &format!("{} to exit", self.name),
            timeout,
            Duration::from_millis(20),
            || Ok(self.try_status()),
        )
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) unless the process has already ended.
    pub fn signal(&self, sig: &str) -> Result<()> {
        // Holding the lock, the child cannot be reaped meanwhile, so the pid is still ours.
        let mut child = lock(&self.child);
        if child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status()?;
        if !st.success() && child.try_wait().ok().flatten().is_none() {
            lab_bail!("kill -{sig} {} ({}) failed", self.pid, self.name);
        }
        Ok(())
    }

    pub fn sigterm(&self) -> Result<()> {
        self.signal("TERM")
    }

    /// SIGTERM, then SIGKILL after `grace`. Never fails: used from `Drop`.
    pub fn stop(&self, grace: Duration) {
        if self.try_status().is_some() {
            return;
        }
        let _ = self.sigterm();
        if self.exit_status(grace).is_err() {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_lines(
    pipe: Box<dyn Read + Send>,
    stream: Stream,
    started: Instant,
    captured: &(Mutex<Captured>, Condvar),
    log: Option<&Mutex<File>>,
) {
    let mut r = BufReader::new(pipe);
    let mut buf = Vec::new();
    // Ends at EOF, which comes at the latest when the process (and its children) exit.
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf).trim_end().to_string();
        let line = Line {
            at: started.elapsed(),
            stream,
            text,
        };
        if let Some(log) = log {
            let _ = writeln!(lock(log), "{line}");
        }
        lock(&captured.0).lines.push(line);
        captured.1.notify_all();
    }
    lock(&captured.0).open_streams -= 1;
    captured.1.notify_all();
}

/// Runs a short command to completion; fails with its stderr when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        lab_bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of a file (empty when unreadable).
pub fn file_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Arc<Proc> {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        Proc::spawn("sh", c, None).expect("spawn sh")
    }

    #[test]
    fn waits_for_a_line_and_the_exit_code() {
        let p = sh(
            "echo 'phase1 established main'; sleep 0.1; echo connected; echo 'error: x' >&2; exit 3",
        );
        let l = p
            .wait_line(Some(Stream::Stdout), "connected", Duration::from_secs(5))
            .unwrap();
        assert_eq!(l.text, "connected");
        assert_eq!(
            p.exit_status(Duration::from_secs(5)).unwrap().code(),
            Some(3)
        );
        p.wait_line(Some(Stream::Stderr), "error: ", Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            p.lines_of(Stream::Stdout),
            ["phase1 established main", "connected"]
        );
    }

    #[test]
    fn fails_fast_when_output_ends_without_the_line() {
        let p = sh("echo hello");
        let t = Instant::now();
        let e = p
            .wait_line(None, "connected", Duration::from_secs(20))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{e}");
        assert!(e.0.contains("without printing"), "{e}");
    }

    #[test]
    fn times_out_and_sigterm_ends_the_process() {
        let p = sh("trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done");
        p.wait_line(None, "up", Duration::from_secs(5)).unwrap();
        let e = p
            .wait_line(None, "never", Duration::from_millis(200))
            .unwrap_err();
        assert!(e.0.contains("did not print"), "{e}");
        p.sigterm().unwrap();
        assert_eq!(
            p.exit_status(Duration::from_secs(5)).unwrap().code(),
            Some(0)
        );
        p.wait_line(None, "bye", Duration::from_secs(2)).unwrap();
    }
}
