//! The command line of `postern-helper` (clap). Only clap and std in here: the
//! packaging generator (`packaging/gen`) includes this file to write
//! `postern-helper.8` from the same definition the binary parses with.

use std::path::PathBuf;

/// Postern's privileged helper: the IKE engine driver and the D-Bus service.
///
/// Started by D-Bus activation through systemd (postern-helper.service) as
/// `postern-helper daemon --idle-exit 300`; users talk to it with postern(1) or
/// postern-gui(1), never directly. `up` runs one tunnel in the foreground for scripts
/// and tests, like `vpnc --no-detach` or `wg-quick up`.
#[derive(clap::Parser, Debug)]
#[command(name = "postern-helper", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Serve org.postern.Helper1 on the system bus (also with no arguments).
    ///
    /// Every method that changes state is authorized with polkit from the caller's
    /// message header. SIGTERM or SIGINT closes every tunnel (DELETE sent, routes,
    /// addresses and DNS put back) before the helper exits.
    Daemon {
        /// Exit after SECS seconds without tunnels (D-Bus activation starts it again).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        idle_exit: Option<u64>,
    },
    /// Negotiate a profile's tunnel in the foreground, one line per state change.
    ///
    /// PROFILE.toml may hold the secrets (psk, XAuth password) only when it is a
    /// root-owned 0600 file; missing XAuth answers are asked on the terminal. Ctrl-C
    /// (SIGINT) or SIGTERM closes the tunnel cleanly and exits 0. Exit codes: 1
    /// failure, 2 bad profile, 3 authentication failed, 4 no proposal chosen, 5 the
    /// gateway is not responding.
    Up {
        #[arg(value_name = "PROFILE.toml")]
        profile: PathBuf,
    },
    /// Validate profile files before rolling them out.
    ///
    /// Keys, ownership and permissions, certificate files parsed as a connect would,
    /// missing secrets, the site policy; one line per problem with its file and line,
    /// and a non-zero exit status (2) if there is any.
    Check {
        /// One JSON object: {"files": N, "problems": [{file, line, key, message}]}.
        #[arg(long)]
        json: bool,
        /// The site policy to apply (default /etc/postern/policy.toml, if present).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The files are user profiles (no root-ownership check).
        #[arg(long)]
        user: bool,
        /// Profile files or directories of them (default /etc/postern/profiles).
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Remove what a killed helper left in this network namespace.
    ///
    /// The TUN device, addresses and routes named by its journal under /run/postern.
    Cleanup,
    /// A minimal IKEv1 responder for one peer (PSK, userspace datapath).
    ///
    /// The lab's Postern-to-Postern benchmark, not a gateway.
    Respond {
        #[arg(value_name = "PROFILE.toml")]
        profile: PathBuf,
    },
}
