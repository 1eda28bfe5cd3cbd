//! `postern-helper respond PROFILE.toml`: a minimal IKEv1 responder for one peer, for
//! the lab's Postern-to-Postern throughput benchmark (`bench/throughput.sh`), where a
//! strongSwan gateway's kernel-libipsec would be the bottleneck. Not a gateway: one
//! peer, PSK, no XAuth or Mode Config, the userspace datapath only.
//!
//! The profile is written from the responder's side: `gateway` is the peer (the
//! client), `phase2.local_networks` the networks behind us, `phase2.remote_networks`
//! the client's inner address, `network.virtual_ip` our inner address (put on the TUN
//! device; packets for the client's address are routed into it, and what comes out of
//! it is forwarded by this namespace). One line per event; SIGINT/SIGTERM end it, and
//! everything installed is removed as in `up`.

use std::path::Path;
use std::process::ExitCode;

use postern_dbus::profile::{Profile, SecretPolicy};
use tokio::signal::unix::{SignalKind, signal};

use crate::tunnel::{self, Command, Role};
use postern_dbus::failure::exit::{FAILURE as EXIT_FAILURE, USAGE as EXIT_USAGE};

pub fn run(path: &Path) -> ExitCode {
    let profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for line in crate::kernel::cleanup_stale() {
        println!("{line}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(respond(profile)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The responder as a front end on the tunnel driver: one line per event; SIGINT and
/// SIGTERM close it (DELETE sent, the datapath removed).
async fn respond(profile: Profile) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let tunnel::Handle {
        commands,
        mut events,
        task,
    } = tunnel::spawn_as(profile, Role::Responder);
    let disconnect = |reason: &str| {
        let _ = commands.send(Command::Disconnect {
            reason: reason.to_string(),
        });
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => println!("{ev}"),
                None => break,
            },
            _ = int.recv() => disconnect("SIGINT"),
            _ = term.recv() => disconnect("SIGTERM"),
        }
    }
    match task.await {
        Ok(r) => r.map_err(|f| f.message),
        Err(e) => Err(format!("the tunnel task failed: {e}")),
    }
}
