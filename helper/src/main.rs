//! `postern-helper`: Postern's privileged side.
//!
//! `postern-helper` (or `daemon`): the D-Bus service on the system bus (contract 3,
//! `service/`). `postern-helper up PROFILE.toml`: one tunnel in the foreground
//! (contract 2, `up.rs`). Both drive tunnels through `tunnel/`.
#![deny(unsafe_code)] // one audited exception: kernel::udp_encap

mod check;
mod cli;
mod datapath;
mod fleet;
mod kernel;
mod respond;
mod rng;
mod service;
mod tunnel;
mod up;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = <cli::Cli as clap::Parser>::parse();
    match cli.command {
        Some(cli::Cmd::Up { profile }) => up::run(&profile),
        Some(cli::Cmd::Respond { profile }) => respond::run(&profile),
        None => service::run(None),
        Some(cli::Cmd::Daemon { idle_exit }) => {
            service::run(idle_exit.map(std::time::Duration::from_secs))
        }
        Some(cli::Cmd::Check {
            json,
            policy,
            user,
            paths,
        }) => {
            // fleet::check_command takes the words of its command line.
            let mut args: Vec<String> = Vec::new();
            if json {
                args.push("--json".into());
            }
            if let Some(p) = policy {
                args.push("--policy".into());
                args.push(p.to_string_lossy().into_owned());
            }
            if user {
                args.push("--user".into());
            }
            args.extend(paths.iter().map(|p| p.to_string_lossy().into_owned()));
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            fleet::check_command(&words)
        }
        Some(cli::Cmd::Cleanup) => {
            for line in kernel::cleanup_stale() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
    }
}
