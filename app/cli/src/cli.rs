//! The command line of `postern` (clap). Only clap, clap_complete, std and
//! postern-frontend's clap types in here: the packaging generator (`packaging/gen`)
//! includes this file to write `postern.1` and the shell completions from the same
//! definition the binary parses with.

use clap::{Parser, Subcommand};
use postern_frontend::profiles;

#[derive(Parser)]
#[command(name = "postern", version, about = "Postern IKEv1 VPN client")]
pub struct Cli {
    /// Machine-readable output (list, show, status).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// The profiles, with the state of their tunnels; then the machine's system
    /// profiles (/etc/postern/profiles) as `system:NAME`, and why a profile this
    /// machine's policy refuses is refused.
    List,
    /// One profile (no secrets: they are never in it).
    Show { name: String },
    /// Adds a profile, from a TOML file (`--from FILE`, `-` for stdin) or from flags;
    /// checked before it is saved.
    Add {
        name: String,
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        flags: Box<profiles::AddFlags>,
    },
    /// Opens a profile in $EDITOR; it is saved only if it still checks out.
    Edit { name: String },
    /// Deletes a profile and its secrets in your keyring.
    Delete { name: String },
    /// Brings a profile's tunnel up through postern-helper and waits until it is up.
    ///
    /// `system:NAME` (or NAME, when you have no profile of that name) is a system
    /// profile: the helper reads it and its secrets itself.
    Up {
        name: String,
        /// Read the secrets (PSK, then XAuth password if the profile has [xauth]) from
        /// stdin, one per line, instead of asking on the terminal.
        #[arg(long)]
        secrets_stdin: bool,
        /// Seconds to wait for the tunnel (default 60).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Takes a profile's tunnel down.
    Down { name: String },
    /// Your tunnels (all, for root), with their SAs (never keys).
    Status,
    /// "Check the tunnel": traffic both ways, a host behind it, its DNS servers, the
    /// path MTU, a captive portal; each step with what it means. Exit status 0 when
    /// nothing failed.
    Check { name: String },
    /// A tunnel's log: its latest lines, then each new one until the tunnel ends.
    Log { name: String },
    /// Secrets in your keyring (Secret Service), used by `up`.
    Secret {
        #[command(subcommand)]
        action: SecretCmd,
    },
    /// Imports the connections of a file from another client (Cisco .pcf, Shrew .vpn,
    /// ipsec.conf, swanctl.conf, racoon.conf, ifcfg-ipsecN, NetworkManager
    /// .nmconnection) as profiles; secrets go to the keyring, never into the profile.
    Import {
        file: std::path::PathBuf,
        /// Companion file(s) with the secrets or networks (ipsec.secrets, psk.txt,
        /// keys-ipsecN, setkey.conf); by default looked for beside FILE.
        #[arg(long)]
        secrets: Vec<std::path::PathBuf>,
        /// The profile name to save under (one connection only).
        #[arg(long)]
        name: Option<String>,
        /// Only this connection of the file (by its name there); default: all.
        #[arg(long)]
        connection: Option<String>,
        /// Show what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --json or --dry-run: show the secrets' values instead of `true`.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Writes a profile in another format (no secrets): toml, pcf, nmconnection,
    /// ipsec.conf, swanctl.conf, or the partner parameter sheet (sheet-md, sheet-csv).
    /// An IKEv2 profile is written as IKEv2 (the Cisco .pcf has none).
    Export {
        name: String,
        #[arg(long)]
        format: postern_frontend::export::Format,
        /// Write to FILE instead of stdout.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Stores the PSK (or with --xauth the XAuth password) of a profile: asked on the
    /// terminal, or one line from stdin with --stdin.
    Set {
        name: String,
        #[arg(long)]
        xauth: bool,
        #[arg(long)]
        stdin: bool,
    },
    /// Removes the PSK (or with --xauth the XAuth password) of a profile from the keyring.
    Delete {
        name: String,
        #[arg(long)]
        xauth: bool,
    },
}
