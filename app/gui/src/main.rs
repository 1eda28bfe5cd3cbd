//! `postern-gui`: Postern's desktop app (application id `org.postern.Postern`, window
//! title "Postern").
//!
//! An `iced::daemon`, so the tray icon and the tunnels' watcher outlive the window.
//! The screens (`screen::{profiles, editor, connection, prompt}`) each have `Message`,
//! `update` → an optional `Event` the app acts on, and `view`; the helper's tunnels
//! arrive as `postern_frontend::watcher::Update`s through a subscription; the desktop
//! around the window (tray, notifications, one instance, colour scheme) is in
//! `desktop`. See README.md for the layout and the environment variables.
#![deny(unsafe_code)]

mod app;
mod cli;
mod desktop;
mod portal;
mod screen;
mod settings;
mod state_file;
mod style;

/// When the process started (for the "window open after N ms" line).
pub static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

use std::time::Duration;

fn main() -> iced::Result {
    let _ = STARTED.set(std::time::Instant::now());
    let cli = <cli::Cli as clap::Parser>::parse();
    let hidden = cli.hidden
        || std::env::var("POSTERN_START_HIDDEN").is_ok_and(|v| v == "1")
        || std::env::var("POSTERN_GUI_START_HIDDEN").is_ok_and(|v| v == "1")
        || settings::Settings::load().start_hidden;
    let tray = !cli.no_tray && !std::env::var("POSTERN_NO_TRAY").is_ok_and(|v| v == "1");
    let desktop = match desktop::start(tray) {
        desktop::Start::First => true,
        desktop::Start::Second => {
            eprintln!("postern-gui: already running; its window was raised");
            return Ok(());
        }
        desktop::Start::NoBus(why) => {
            eprintln!("postern-gui: no session bus ({why}): no tray icon, no notifications");
            false
        }
    };
    let login = cli.login && settings::Settings::load().connect_at_login;
    let boot = move || {
        app::App::boot(app::Options {
            hidden: hidden && desktop && tray,
            tray: desktop && tray,
            login,
        })
    };
    iced::daemon(boot, app::App::update, app::App::view)
        .title(app::App::title)
        .theme(app::App::theme)
        .subscription(app::App::subscription)
        .scale_factor(app::App::scale_factor)
        .run()
}

/// How long a notification-worthy moment may lag behind (the tick of elapsed times).
pub const TICK: Duration = Duration::from_secs(1);
