//! SIGINT/SIGTERM for the lab's command-line tools (demo, benchmark): once installed, the
//! signals no longer kill the process, they arrive on a channel, so the lab's `Drop` can
//! tear everything down.

use std::sync::mpsc::{self, Receiver};
use std::thread;

use crate::{LabError, Result};

/// Installs handlers for SIGINT and SIGTERM; each signal received sends its name.
pub fn install() -> Result<Receiver<&'static str>> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(LabError(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (mut int, mut term) = match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(LabError(format!("signal handler: {e}"))));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "INT",
                        _ = term.recv() => "TERM",
                    };
                    if tx.send(name).is_err() {
                        break;
                    }
                }
            });
        })?;
    ready_rx
        .recv()
        .map_err(|_| LabError("signal thread died".into()))??;
    Ok(rx)
}
