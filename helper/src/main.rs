//! `postern-helper`: Postern's privileged side.
//!
//! `postern-helper` (or `daemon`): the D-Bus service on the system bus (contract 3,
//! `service/`). `postern-helper up PROFILE.toml`: one tunnel in the foreground
//! (contract 2, `up.rs`). Both drive tunnels through `tunnel/`.
#![deny(unsafe_code)] // one audited exception: kernel::udp_encap

mod check;
mod datapath;
mod fleet;
mod kernel;
mod respond;
mod rng;
mod service;
mod tunnel;
mod up;

use std::process::ExitCode;

const USAGE: &str = "\
usage: postern-helper [daemon [--idle-exit SECS]] | postern-helper up PROFILE.toml
       | postern-helper check [PATH...] | postern-helper cleanup | postern-helper respond PROFILE.toml

  daemon            (also with no arguments) serve org.postern.Helper1 on the system bus;
                    --idle-exit: exit after SECS without tunnels (D-Bus activation)
  up PROFILE.toml   negotiate the profile's tunnel in the foreground; one line per
                    state change; Ctrl-C (SIGINT) or SIGTERM closes it cleanly
  check [--json] [--policy FILE] [--user] [PATH...]
                    validate profile files before rolling them out (default
                    /etc/postern/profiles): keys, permissions, certificates, secrets,
                    the site policy; file:line per problem, non-zero exit if any
  cleanup           remove what a killed helper left in this network namespace
                    (TUN device, addresses, routes named by its /run/postern journal)
  respond PROFILE.toml
                    a minimal IKEv1 responder for one peer (PSK, userspace datapath):
                    the lab's Postern-to-Postern benchmark, not a gateway
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up", path] => up::run(std::path::Path::new(path)),
        ["respond", path] => respond::run(std::path::Path::new(path)),
        [] | ["daemon"] => service::run(None),
        ["daemon", "--idle-exit", secs] => match secs.parse::<u64>() {
            Ok(s) if s > 0 => service::run(Some(std::time::Duration::from_secs(s))),
            _ => {
                eprint!("{USAGE}");
                ExitCode::from(postern_dbus::failure::exit::USAGE)
            }
        },
        ["check", rest @ ..] => fleet::check_command(rest),
        ["cleanup"] => {
            for line in kernel::cleanup_stale() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["--version" | "-V"] => {
            println!("postern-helper {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(postern_dbus::failure::exit::USAGE)
        }
    }
}
