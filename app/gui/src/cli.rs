//! The command line of `postern-gui` (clap). Only clap and std in here: the packaging
//! generator (`packaging/gen`) includes this file to write `postern-gui.1` and the
//! shell completions from the same definition the binary parses with.

/// Postern's desktop app: profiles, one-click connect, phase-by-phase status, XAuth
/// prompts, a tray icon and notifications.
///
/// Tunnels are run by postern-helper on the system bus; profiles are the files
/// postern(1) uses, $XDG_CONFIG_HOME/postern/profiles/NAME.toml, and secrets live in
/// the keyring (Secret Service). A second postern-gui raises the first one's window.
///
/// Environment: POSTERN_START_HIDDEN=1 (as --hidden), POSTERN_NO_TRAY=1 (as
/// --no-tray), POSTERN_THEME=light|dark, POSTERN_SCALE=F (0.5-4),
/// DBUS_SYSTEM_BUS_ADDRESS (the helper's bus).
#[derive(clap::Parser, Debug)]
#[command(name = "postern-gui", version)]
pub struct Cli {
    /// Start in the tray, without the window (only when a tray shows).
    #[arg(long)]
    pub hidden: bool,
    /// No tray icon: closing the window quits.
    #[arg(long)]
    pub no_tray: bool,
    /// Started at login (the autostart entry): connect the profiles marked
    /// autoconnect = "login", unless Settings says not to.
    #[arg(long)]
    pub login: bool,
}
