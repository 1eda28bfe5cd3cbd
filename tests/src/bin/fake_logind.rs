//! A stand-in for logind on the lab's private system bus (`DBUS_SYSTEM_BUS_ADDRESS`):
//! owns `org.freedesktop.login1`, answers `Manager.Inhibit` with a pipe's read end
//! (the caller holds it; closing it releases the inhibitor, as with logind), and emits
//! `PrepareForSleep` on command.
//!
//! Commands, one per line, from the file named on the command line (a FIFO the test
//! writes to; reopened at end of file): `sleep` (PrepareForSleep(true), then, like logind,
//! wait for every delay inhibitor to be released, at most 5 s) and `wake`
//! (PrepareForSleep(false)). What it does is printed on stdout, one line each:
//! `ready`, `inhibit WHAT WHO MODE`, `sleeping`, `released after N ms` or
//! `inhibitor still held after 5000 ms`, `woke`.
//!
//! Usage: fake-logind COMMANDS-FIFO (runs until it is killed)

use std::io::PipeWriter;
use std::io::{BufRead as _, Write as _};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::object_server::SignalEmitter;

const PATH: &str = "/org/freedesktop/login1";

#[derive(Default)]
struct Manager {
    /// Write ends of the pipes handed out: a write fails (EPIPE) once the holder
    /// closed its end.
    held: Arc<Mutex<Vec<PipeWriter>>>,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    fn inhibit(
        &self,
        what: &str,
        who: &str,
        _why: &str,
        mode: &str,
    ) -> zbus::fdo::Result<zbus::zvariant::OwnedFd> {
        let (r, w) = std::io::pipe().map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(w);
        say(&format!("inhibit {what} {who} {mode}"));
        Ok(zbus::zvariant::OwnedFd::from(OwnedFd::from(r)))
    }

    #[zbus(signal)]
    async fn prepare_for_sleep(emitter: &SignalEmitter<'_>, start: bool) -> zbus::Result<()>;
}

/// Drops the write ends whose read end was closed; true when none is left.
fn all_released(held: &Mutex<Vec<PipeWriter>>) -> bool {
    let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
    // One byte per look (at most a few hundred per sleep: the pipe never fills).
    held.retain_mut(|w| w.write_all(&[0]).is_ok());
    held.is_empty()
}

/// Emits `PrepareForSleep(start)`; gives up waiting for the send after 1 s (seen
/// once in a loaded lab: the signal reached the helper but the send never returned,
/// which left the inhibitor unwatched).
async fn emit(emitter: &SignalEmitter<'_>, start: bool) {
    match tokio::time::timeout(
        Duration::from_secs(1),
        Manager::prepare_for_sleep(emitter, start),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("fake-logind: {e}"),
        Err(_) => eprintln!("fake-logind: sending PrepareForSleep({start}) took over 1 s"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let m = Manager::default();
    let held = Arc::clone(&m.held);
    let conn = match async {
        zbus::connection::Builder::system()?
            .name("org.freedesktop.login1")?
            .serve_at(PATH, m)?
            .build()
            .await
    }
    .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fake-logind: {e}");
            return ExitCode::FAILURE;
        }
    };
    say("ready");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let Some(fifo) = std::env::args_os().nth(1) else {
        eprintln!("usage: fake-logind COMMANDS-FIFO");
        return ExitCode::FAILURE;
    };
    std::thread::spawn(move || {
        // Bounded: the harness kills the process; each open waits for a writer.
        for _ in 0..1000 {
            let Ok(f) = std::fs::File::open(&fifo) else {
                return;
            };
            for line in std::io::BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    let Ok(emitter) = SignalEmitter::new(&conn, PATH) else {
        return ExitCode::FAILURE;
    };
    while let Some(cmd) = rx.recv().await {
        match cmd.trim() {
            "sleep" => {
                emit(&emitter, true).await;
                say("sleeping");
                let start = Instant::now();
                while !all_released(&held) && start.elapsed() < Duration::from_secs(5) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Said also when the holder let go before the first look (a fast
                // helper under load): the test waits for this line either way.
                if !all_released(&held) {
                    say("inhibitor still held after 5000 ms");
                } else {
                    say(&format!(
                        "released after {} ms",
                        start.elapsed().as_millis()
                    ));
                }
            }
            "wake" => {
                emit(&emitter, false).await;
                say("woke");
            }
            other => eprintln!("fake-logind: unknown command {other:?}"),
        }
    }
    ExitCode::SUCCESS
}
