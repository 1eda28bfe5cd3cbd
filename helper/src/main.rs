//! `postern-helper`: Postern's privileged side.
//!
//! Today it has one mode, `postern-helper up PROFILE.toml`: negotiate one
//! tunnel in the foreground (DESIGN.md contract 2). The D-Bus service comes
//! with the service issue.
#![forbid(unsafe_code)]

mod datapath;
mod kernel;
mod rng;
mod tunnel;
mod up;

use std::process::ExitCode;

const USAGE: &str = "usage: postern-helper up PROFILE.toml | postern-helper cleanup\n\
\n\
  up PROFILE.toml   negotiate the profile's tunnel in the foreground; one line per\n\
                    state change; Ctrl-C (SIGINT) or SIGTERM closes it cleanly\n\
  cleanup           remove what a killed helper left in this network namespace\n\
                    (TUN device, addresses, routes named by its /run/postern journal)\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up", path] => up::run(std::path::Path::new(path)),
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
            ExitCode::from(up::EXIT_USAGE)
        }
    }
}
