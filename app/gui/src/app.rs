//! The app: its state, `update` (what each message does) and `view` (the window).
//!
//! Layout (stable; the desktop test clicks by it): the window "Postern", 960×640
//! logical pixels; a banner row at the top only when something needs saying (the
//! helper is away, no tray); on the left (340 px) the profile list: a search field,
//! then one row per profile ([`screen::profiles::ROW_HEIGHT`] px each, in name
//! order) with the row's Connect/Disconnect button at its right end, then the
//! Add / Duplicate / Rename / Delete buttons at the bottom; on the right the
//! selected profile's connection view (or the editor). Dialogs (XAuth and PSK
//! prompts, delete confirmation, rename) come centred over a veil.

use std::collections::HashMap;
use std::time::Instant;

use iced::keyboard::{self, Key, key::Named};
use iced::widget::{center, column, container, opaque, row, stack, text};
use iced::{Element, Length, Subscription, Task, Theme, window};
use postern_dbus::interface::{answer_key, secret_key, state};
use postern_dbus::profile::Secret;
use postern_frontend::explain::explain;
use postern_frontend::watcher::{self, Command, Handle, Tunnel, Update};
use postern_frontend::{Fail, FailureKind, keyring, profiles};

use crate::desktop;
use crate::portal::{self, Pick};
use crate::screen::connection::{self, Change, Live};
use crate::screen::{editor, files, profiles as plist, prompt};
use crate::style::{self, Mode};

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Start without the window (in the tray).
    pub hidden: bool,
    /// A tray icon is wanted (and a session bus exists).
    pub tray: bool,
    /// Started at login with "connect the login profiles" on: connect every profile
    /// with `autoconnect = "login"`.
    pub login: bool,
}

// `Watcher(Update::Tunnel)` is the big variant and the common one (every property
// change of a tunnel); boxing it would allocate for each to save space on the rest.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Message {
    Profiles(plist::Message),
    Editor(editor::Message),
    Connection(connection::Message),
    Prompt(prompt::Message),
    Watcher(Update),
    Desktop(desktop::Event),
    Tick(Instant),
    Key(keyboard::Event),
    WindowOpened(window::Id),
    CloseRequested(window::Id),
    WindowClosed(window::Id),
    /// A keyring or file job ended; `Err`: what to tell the user.
    Done(Result<String, Fail>),
    /// Where a row's button is (for the state file): profile, bounds.
    Bounds(String, Option<iced::Rectangle>),
    Files(files::Message),
    /// The desktop's file dialog answered for `Job`.
    Picked(Job, Pick),
}

/// What a file dialog was opened for.
#[derive(Debug, Clone)]
pub enum Job {
    /// "Import…": read and import the file.
    Import,
    /// The editor's file field `i`: its path.
    Field(usize),
    /// Write `contents` there (an export, the diagnostics); `name`: the proposed file
    /// name; `done`: the sentence said afterwards, before the path.
    Save {
        contents: String,
        name: String,
        done: String,
    },
}

/// Whether a tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tray {
    Unknown,
    Shown,
    Absent,
}

pub struct App {
    pub window: Option<window::Id>,
    pub handle: Option<Handle>,
    /// Commands given before the watcher ran.
    pub queued: Vec<Command>,
    /// Why the helper is not reachable (`None`: it is, or not known yet).
    pub helper: Option<Fail>,
    pub profiles: plist::State,
    pub connection: connection::State,
    pub live: HashMap<String, Live>,
    /// The latest snapshot per profile (what the list shows).
    pub tunnels: HashMap<String, Tunnel>,
    pub editor: Option<editor::State>,
    pub prompt: Option<prompt::State>,
    /// Export, import choice, path fallback.
    pub files: Option<files::Dialog>,
    /// Why a stored password could not be read, per profile (shown with its prompt).
    pub keyring_notes: HashMap<String, String>,
    pub focused: Option<String>,
    pub mode: Mode,
    mode_forced: bool,
    pub tray: Tray,
    tray_wanted: bool,
    last_tray: Option<desktop::TrayModel>,
    /// One sentence at the top (a keyring problem, "copied", no tray).
    pub notice: Option<String>,
    pub now: Instant,
    scale: f64,
    /// Notifications sent (also in tests, where no desktop thread runs).
    pub notified: Vec<(String, String)>,
    /// `POSTERN_GUI_STATE_FILE`: what the window shows, for tests.
    state_file: Option<std::path::PathBuf>,
    last_state: String,
    /// Window-relative bounds of each row's Connect/Disconnect button (state file).
    bounds: std::collections::BTreeMap<String, [f32; 4]>,
    /// The machine's system profiles as the helper last listed them (rows
    /// `system:NAME` after the user's own).
    pub system: Vec<postern_dbus::interface::SystemProfile>,
    /// Why this machine's policy refuses the user's profiles (the helper's
    /// `CheckProfile`), by profile; refused ones only.
    pub refused: HashMap<String, String>,
    /// The system profile whose text was asked for to open the editor on it.
    system_open: Option<String>,
}

/// Height of the status line at the bottom of the window.
pub const STATUS_HEIGHT: f32 = 28.0;

pub fn window_settings() -> window::Settings {
    window::Settings {
        size: iced::Size::new(960.0, 640.0),
        min_size: Some(iced::Size::new(760.0, 480.0)),
        exit_on_close_request: false,
        platform_specific: window::settings::PlatformSpecific {
            application_id: desktop::APP_ID.to_string(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn entries() -> Vec<plist::Entry> {
    profiles::names()
        .unwrap_or_default()
        .into_iter()
        .map(|name| {
            let p = profiles::load(&name);
            let version = p.as_ref().map_or(1, |p| p.ike_version);
            let mut e = plist::Entry::user(&name, p.map(|p| p.gateway).map_err(|f| f.message));
            e.ike_version = version;
            e
        })
        .collect()
}

/// The list's rows for the system profiles: `system:NAME`, tagged as system profiles,
/// with why the helper refuses one (shown where the gateway would be).
pub fn system_entries(system: &[postern_dbus::interface::SystemProfile]) -> Vec<plist::Entry> {
    system
        .iter()
        .map(|s| plist::Entry {
            name: format!("{}{}", watcher::SYSTEM_PREFIX, s.name),
            gateway: Ok(s.gateway.clone()),
            system: true,
            refused: (!s.refused.is_empty()).then(|| s.refused.clone()),
            ike_version: 0,
        })
        .collect()
}

/// The user's profiles with `autoconnect = "login"`, by name.
pub fn login_profiles() -> Vec<String> {
    profiles::names()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            profiles::load(n)
                .is_ok_and(|p| p.autoconnect == postern_dbus::profile::Autoconnect::Login)
        })
        .collect()
}

impl App {
    /// The app with no window and no desktop (tests build on this).
    pub fn new(tray: bool) -> App {
        let (mode, mode_forced) = match std::env::var("POSTERN_THEME").as_deref() {
            Ok("dark") => (Mode::Dark, true),
            Ok("light") => (Mode::Light, true),
            _ => (Mode::Light, false),
        };
        let scale = std::env::var("POSTERN_SCALE")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| (0.5..=4.0).contains(s))
            .unwrap_or(1.0);
        let mut profiles = plist::State::default();
        profiles.set_entries(entries());
        App {
            window: None,
            handle: None,
            queued: Vec::new(),
            helper: None,
            profiles,
            connection: connection::State::default(),
            live: HashMap::new(),
            tunnels: HashMap::new(),
            editor: None,
            prompt: None,
            files: None,
            keyring_notes: HashMap::new(),
            focused: None,
            mode,
            mode_forced,
            tray: if tray { Tray::Unknown } else { Tray::Absent },
            tray_wanted: tray,
            last_tray: None,
            notice: None,
            now: Instant::now(),
            scale,
            notified: Vec::new(),
            state_file: crate::state_file::path(),
            last_state: String::new(),
            bounds: Default::default(),
            system: Vec::new(),
            refused: HashMap::new(),
            system_open: None,
        }
    }

    pub fn boot(o: Options) -> (App, Task<Message>) {
        let mut app = App::new(o.tray);
        if o.login {
            // Queued until the watcher runs; the keyring supplies the secrets.
            app.connect_login_profiles(&login_profiles());
        }
        let task = if o.hidden {
            Task::none()
        } else {
            app.open_window()
        };
        (app, task)
    }

    fn open_window(&mut self) -> Task<Message> {
        match self.window {
            Some(id) => Task::batch([window::minimize(id, false), window::gain_focus(id)]),
            None => {
                let (id, open) = window::open(window_settings());
                self.window = Some(id);
                open.map(Message::WindowOpened)
            }
        }
    }

    pub fn title(&self, _window: window::Id) -> String {
        "Postern".to_string()
    }

    pub fn theme(&self, _window: window::Id) -> Theme {
        style::theme(self.mode)
    }

    pub fn scale_factor(&self, _window: window::Id) -> f32 {
        self.scale as f32
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subs = vec![
            Subscription::run(watcher::run).map(Message::Watcher),
            Subscription::run(desktop::events).map(Message::Desktop),
            keyboard::listen().map(Message::Key),
            // A focused text field takes Escape for itself (it only unfocuses): the
            // dialog or editor around it closes all the same.
            iced::event::listen_with(|e, status, _| match (e, status) {
                (
                    iced::Event::Keyboard(
                        k @ keyboard::Event::KeyPressed {
                            key: Key::Named(Named::Escape),
                            ..
                        },
                    ),
                    iced::event::Status::Captured,
                ) => Some(Message::Key(k)),
                _ => None,
            }),
            window::close_requests().map(Message::CloseRequested),
            window::close_events().map(Message::WindowClosed),
        ];
        // The clock runs only while it shows something moving (an idle app does
        // not wake up): a tunnel on its way or up, with the window open.
        if self.window.is_some() && self.live.values().any(Live::is_active) {
            subs.push(iced::time::every(crate::TICK).map(Message::Tick));
        }
        Subscription::batch(subs)
    }

    fn send(&mut self, c: Command) {
        match &self.handle {
            Some(h) => {
                if !h.send(c.clone()) {
                    self.queued.push(c);
                }
            }
            None => self.queued.push(c),
        }
    }

    fn notify(&mut self, summary: String, body: String) {
        desktop::send(desktop::Request::Notify {
            summary: summary.clone(),
            body: body.clone(),
        });
        self.notified.push((summary, body));
    }

    fn reload(&mut self) {
        let mut all = entries();
        all.extend(system_entries(&self.system));
        self.profiles.set_entries(all);
        self.mark_refused();
        self.update_tray();
    }

    /// The user's rows carry the policy's refusals the helper last gave.
    fn mark_refused(&mut self) {
        for e in self.profiles.entries.iter_mut().filter(|e| !e.system) {
            e.refused = self.refused.get(&e.name).cloned();
        }
    }

    /// The helper's answers to `CheckProfile`: (profile, sentence; empty: allowed).
    fn policy(&mut self, answers: Vec<(String, String)>) {
        for (name, why) in answers {
            if why.is_empty() {
                self.refused.remove(&name);
            } else {
                self.refused.insert(name, why);
            }
        }
        self.mark_refused();
    }

    pub fn selected(&self) -> Option<String> {
        self.profiles.selected.clone()
    }

    pub fn connect(&mut self, name: &str) {
        if let Some(why) = self.refused.get(name).cloned() {
            // The helper said this machine's policy refuses it: its sentence now, not
            // a question for the PSK first; and ask again (the policy may have changed:
            // the next click connects then).
            let f = policy_failure(&why);
            let kind = f.kind;
            let live = self.live.entry(name.to_string()).or_default();
            live.failure = Some(f);
            live.check = None;
            live.started = None;
            self.notify(format!("{name}: {}", explain(kind).headline), why.clone());
            self.update_tray();
            self.send(Command::CheckPolicy {
                profiles: vec![name.to_string()],
            });
            return;
        }
        let live = self.live.entry(name.to_string()).or_default();
        live.failure = None;
        live.check = None;
        live.started = Some(self.now);
        live.waiting_for_helper = self.helper.is_some();
        self.send(Command::Connect {
            profile: name.to_string(),
            psk: None,
            xauth_password: None,
            remember: false,
        });
    }

    /// Connects each of `names` (the profiles marked `autoconnect = "login"`) that is
    /// not up or coming up already.
    pub fn connect_login_profiles(&mut self, names: &[String]) {
        for n in names {
            let busy = self
                .tunnels
                .get(n)
                .is_some_and(|t| t.state != state::DISCONNECTED && t.state != state::FAILED);
            if !busy {
                self.connect(n);
            }
        }
    }

    fn disconnect(&mut self, name: &str) {
        if let Some(l) = self.live.get_mut(name) {
            l.waiting_for_helper = false;
        }
        self.send(Command::Disconnect {
            profile: name.to_string(),
        });
    }

    fn open_prompt(&mut self, p: prompt::State) -> Task<Message> {
        let first = p.first_empty();
        self.prompt = Some(p);
        self.focused = Some(format!("prompt-{first}"));
        let focus = iced::widget::operation::focus(prompt::field_id(first));
        // A prompt never waits unseen in the background: the window comes up (or to
        // the front) with it.
        Task::batch([self.open_window(), focus])
    }

    pub fn update_tray(&mut self) {
        let mut icon = desktop::Icon::Disconnected;
        let mut tips = Vec::new();
        let any = |f: &dyn Fn(&Tunnel) -> bool| self.tunnels.values().any(f);
        if any(&|t| {
            matches!(
                t.state.as_str(),
                state::CONNECTING | state::NEEDS_CREDENTIALS | state::RECONNECTING
            )
        }) {
            icon = desktop::Icon::Connecting;
        } else if any(&|t| t.state == state::CONNECTED) {
            icon = desktop::Icon::Connected;
        } else if any(&|t| t.state == state::FAILED)
            || self.live.values().any(|l| l.failure.is_some())
        {
            icon = desktop::Icon::Error;
        }
        let mut names: Vec<&String> = self.tunnels.keys().collect();
        names.sort();
        for n in names {
            let t = &self.tunnels[n];
            if t.is_active() {
                if t.virtual_ip.is_empty() {
                    tips.push(format!("{n}: {}", plist::state_label(Some(t))));
                } else {
                    tips.push(format!(
                        "{n}: {} ({})",
                        plist::state_label(Some(t)),
                        t.virtual_ip
                    ));
                }
            }
        }
        let model = desktop::TrayModel {
            icon,
            tooltip: if tips.is_empty() {
                "Not connected".into()
            } else {
                tips.join("\n")
            },
            profiles: self
                .profiles
                .entries
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        self.tunnels.get(&e.name).is_some_and(Tunnel::is_active),
                    )
                })
                .collect(),
        };
        if self.last_tray.as_ref() != Some(&model) {
            self.last_tray = Some(model.clone());
            desktop::send(desktop::Request::Tray(model));
        }
    }

    fn changed(&mut self, name: &str, c: Change) {
        let (summary, body) = match c {
            Change::Connected { address } => (
                format!("Connected to {name}"),
                if address.is_empty() {
                    "The tunnel is up.".to_string()
                } else {
                    format!("Your address in the tunnel is {address}.")
                },
            ),
            Change::Disconnected => (
                format!("Disconnected from {name}"),
                "The tunnel is down.".to_string(),
            ),
            Change::Failed(f) => (
                format!("{name}: {}", explain(f.kind).headline),
                explain(f.kind).check.to_string(),
            ),
            Change::Dropped => (
                format!("{name}: {}", explain(FailureKind::DroppedByPeer).headline),
                explain(FailureKind::DroppedByPeer).check.to_string(),
            ),
            Change::Reconnecting => (
                format!("Reconnecting {name}"),
                "The gateway was lost; Postern brings the tunnel back.".to_string(),
            ),
            Change::Reconnected { address } => (
                format!("Reconnected to {name}"),
                format!("Your address in the tunnel is {address}."),
            ),
        };
        self.notify(summary, body);
    }

    /// A tunnel's new snapshot: the list, the notification of a change, the XAuth
    /// prompt opened or closed with the state.
    fn tunnel_changed(&mut self, t: Tunnel) -> Task<Message> {
        let name = t.profile.clone();
        let needs = t.state == state::NEEDS_CREDENTIALS;
        self.tunnels.insert(name.clone(), t.clone());
        let change = self
            .live
            .entry(name.clone())
            .or_default()
            .apply(t, self.now);
        if let Some(c) = change {
            self.changed(&name, c);
        }
        self.update_tray();
        if needs && self.prompt.as_ref().is_none_or(|p| p.profile != name) {
            // The signal may have been missed: ask for what XAuth usually asks.
            let user = profiles::load(&name)
                .ok()
                .and_then(|p| p.xauth.map(|x| x.username));
            let p = prompt::State::new(
                &name,
                prompt::Ask::Xauth {
                    fields: vec![
                        answer_key::USERNAME.to_string(),
                        answer_key::PASSWORD.to_string(),
                    ],
                    message: String::new(),
                },
                user.as_deref(),
            );
            return self.open_prompt(p);
        }
        if !needs
            && let Some(p) = &self.prompt
            && p.profile == name
            && matches!(p.ask, prompt::Ask::Xauth { .. })
        {
            // Answered elsewhere, or the tunnel moved on: the question is gone.
            self.prompt = None;
        }
        Task::none()
    }

    fn watcher(&mut self, u: Update) -> Task<Message> {
        match u {
            Update::Ready(h) => {
                for c in std::mem::take(&mut self.queued) {
                    h.send(c);
                }
                self.handle = Some(h);
                Task::none()
            }
            Update::Helper(r) => {
                self.helper = r.err();
                if self.helper.is_none() {
                    for l in self.live.values_mut() {
                        l.waiting_for_helper = false;
                    }
                }
                Task::none()
            }
            Update::Tunnel(t) => self.tunnel_changed(t),
            Update::Checked { profile, result } => {
                self.live.entry(profile).or_default().check = Some(match result {
                    Ok(steps) => connection::Check::Done(steps),
                    Err(f) => {
                        connection::Check::Failed(format!("The check could not run: {}", f.message))
                    }
                });
                Task::none()
            }
            Update::Log { profile, line } => {
                self.live.entry(profile).or_default().push_log(line);
                Task::none()
            }
            Update::Credentials {
                profile,
                fields,
                message,
            } => {
                let user = profiles::load(&profile)
                    .ok()
                    .and_then(|p| p.xauth.map(|x| x.username));
                if self.window.is_none() {
                    self.notify(
                        format!("{profile} needs your login"),
                        "Postern's window is open for it.".to_string(),
                    );
                }
                let mut p = prompt::State::new(
                    &profile,
                    prompt::Ask::Xauth { fields, message },
                    user.as_deref(),
                );
                p.note = self.keyring_notes.remove(&profile);
                self.open_prompt(p)
            }
            Update::SecretNeeded {
                profile,
                key,
                reason,
            } => {
                if key == secret_key::PSK {
                    let mut p = prompt::State::new(&profile, prompt::Ask::Psk, None);
                    p.note = reason;
                    self.open_prompt(p)
                } else {
                    Task::none()
                }
            }
            Update::KeyringNote { profile, sentence } => {
                self.keyring_notes.insert(profile, sentence);
                Task::none()
            }
            Update::Traffic {
                profile,
                total,
                per_sa,
            } => {
                let now = self.now;
                self.live
                    .entry(profile)
                    .or_default()
                    .set_traffic(total, per_sa, now);
                Task::none()
            }
            Update::Failed { profile, failure } => {
                let kind = failure.kind;
                let l = self.live.entry(profile.clone()).or_default();
                l.failure = Some(failure);
                l.waiting_for_helper = false;
                l.started = None;
                self.notify(
                    format!("{profile}: {}", explain(kind).headline),
                    explain(kind).check.to_string(),
                );
                self.update_tray();
                Task::none()
            }
            Update::SystemProfiles(list) => {
                if list != self.system {
                    self.system = list;
                    self.reload();
                }
                Task::none()
            }
            Update::Policy(answers) => {
                self.policy(answers);
                Task::none()
            }
            Update::SystemText { name, result } => self.system_text(name, result),
            Update::SystemSaved { name, result } => self.system_saved(name, result),
            Update::Gone { profile } => {
                if let Some(t) = self.tunnels.get_mut(&profile)
                    && t.is_active()
                {
                    // The helper went away with it.
                    t.state = state::DISCONNECTED.to_string();
                    let t = t.clone();
                    if let Some(c) = self
                        .live
                        .entry(profile.clone())
                        .or_default()
                        .apply(t, self.now)
                    {
                        self.changed(&profile, c);
                    }
                }
                self.update_tray();
                Task::none()
            }
        }
    }

    /// The controls Tab goes through, in order: (key, the input's id if it is one,
    /// what Enter/Space does if it is a button).
    pub fn controls(&self) -> Vec<(String, Option<iced::widget::Id>, Option<Message>)> {
        let mut v: Vec<(String, Option<iced::widget::Id>, Option<Message>)> = Vec::new();
        if let Some(p) = &self.prompt {
            let n = match &p.ask {
                prompt::Ask::Xauth { fields, .. } => fields.len(),
                prompt::Ask::Psk => 1,
            };
            for i in 0..n {
                v.push((format!("prompt-{i}"), Some(prompt::field_id(i)), None));
            }
            return v;
        }
        if let Some(d) = &self.files {
            return d
                .controls()
                .into_iter()
                .map(|(k, id, m)| (k, id, m.map(Message::Files)))
                .collect();
        }
        if let Some(d) = &self.profiles.dialog {
            if matches!(d, plist::Dialog::Rename { .. }) {
                v.push(("rename".into(), Some(plist::rename_id()), None));
            }
            v.push((
                "dialog-cancel".into(),
                None,
                Some(Message::Profiles(plist::Message::CloseDialog)),
            ));
            v.push((
                "dialog-ok".into(),
                None,
                Some(Message::Profiles(match d {
                    plist::Dialog::Delete(_) => plist::Message::DeleteConfirm,
                    plist::Dialog::Rename { .. } => plist::Message::RenameConfirm,
                })),
            ));
            return v;
        }
        if let Some(ed) = &self.editor {
            // The editor keeps Tab to itself (Enter saves, Escape cancels).
            return ed
                .controls()
                .into_iter()
                .map(|(k, id, m)| (k, id, m.map(Message::Editor)))
                .collect();
        }
        v.push(("search".into(), Some(plist::search_id()), None));
        for e in self.profiles.visible() {
            v.push((
                format!("toggle:{}", e.name),
                None,
                Some(Message::Profiles(plist::Message::Toggle(e.name.clone()))),
            ));
        }
        for (k, m) in [
            ("add", plist::Message::Add),
            ("import", plist::Message::Import),
            ("settings", plist::Message::Settings),
            ("duplicate", plist::Message::Duplicate),
            ("rename", plist::Message::Rename),
            ("delete", plist::Message::Delete),
        ] {
            v.push((k.into(), None, Some(Message::Profiles(m))));
        }
        if self.selected().is_some() {
            for (k, m) in [
                ("conn-toggle", connection::Message::Toggle),
                ("conn-edit", connection::Message::Edit),
                ("conn-check", connection::Message::Check),
                ("conn-export", connection::Message::Export),
                ("conn-copy", connection::Message::CopyDiagnostics),
                ("conn-save", connection::Message::SaveDiagnostics),
            ] {
                v.push((k.into(), None, Some(Message::Connection(m))));
            }
            v.push(("log-filter".into(), Some(connection::log_filter_id()), None));
        }
        v
    }

    fn key(&mut self, e: keyboard::Event) -> Task<Message> {
        let keyboard::Event::KeyPressed { key, modifiers, .. } = e else {
            return Task::none();
        };
        match key {
            Key::Named(Named::Escape) => {
                self.focused = None;
                if let Some(p) = &self.prompt {
                    let profile = p.profile.clone();
                    return self.update(Message::Prompt(prompt::Message::Cancel)).chain(
                        Task::done(Message::Done(Ok(format!("{profile}: login cancelled")))),
                    );
                }
                if self.files.is_some() {
                    return self.update(Message::Files(files::Message::Close));
                }
                if self.profiles.dialog.is_some() {
                    return self.update(Message::Profiles(plist::Message::CloseDialog));
                }
                if self.editor.is_some() {
                    return self.update(Message::Editor(editor::Message::Cancel));
                }
                Task::none()
            }
            Key::Named(Named::Tab) => {
                let c = self.controls();
                if c.is_empty() {
                    return Task::none();
                }
                let cur = self
                    .focused
                    .as_ref()
                    .and_then(|f| c.iter().position(|(k, _, _)| k == f));
                let n = c.len();
                let next = match (cur, modifiers.shift()) {
                    (None, false) => 0,
                    (None, true) => n - 1,
                    (Some(i), false) => (i + 1) % n,
                    (Some(i), true) => (i + n - 1) % n,
                };
                let (k, id, _) = &c[next];
                self.focused = Some(k.clone());
                match id {
                    Some(id) => iced::widget::operation::focus(id.clone()),
                    // A button: no text field keeps the keyboard.
                    None => iced::widget::operation::focus(iced::widget::Id::new("none")),
                }
            }
            Key::Named(Named::Enter) | Key::Named(Named::Space) => {
                let action = self.focused.as_ref().and_then(|f| {
                    self.controls()
                        .into_iter()
                        .find(|(k, _, _)| k == f)
                        .and_then(|(_, _, m)| m)
                });
                if let Some(m) = action {
                    return self.update(m);
                }
                if key == Key::Named(Named::Enter)
                    && self.prompt.is_none()
                    && self.editor.is_none()
                    && self.files.is_none()
                    && self.profiles.dialog.is_none()
                    && let Some(n) = self.selected()
                {
                    return self.update(Message::Profiles(plist::Message::Toggle(n)));
                }
                Task::none()
            }
            Key::Named(Named::ArrowDown) | Key::Named(Named::ArrowUp)
                if self.prompt.is_none()
                    && self.profiles.dialog.is_none()
                    && self.files.is_none() =>
            {
                let d = if key == Key::Named(Named::ArrowDown) {
                    1
                } else {
                    -1
                };
                self.update(Message::Profiles(plist::Message::Move(d)))
            }
            _ => Task::none(),
        }
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let measure = !matches!(message, Message::Bounds(..));
        let task = self.handle_message(message);
        let Some(path) = self.state_file.clone() else {
            return task;
        };
        let text = crate::state_file::render(self, &self.bounds);
        if text != self.last_state {
            crate::state_file::write(&path, &text);
            self.last_state = text;
        }
        if !measure || self.window.is_none() {
            return task;
        }
        // Where the rows' buttons are now (after this message's layout).
        let finds = self.profiles.visible().into_iter().map(|e| {
            let name = e.name.clone();
            iced::widget::selector::find(plist::connect_id(&name)).map(move |t| {
                Message::Bounds(
                    name.clone(),
                    t.map(|t| t.visible_bounds().unwrap_or(t.bounds())),
                )
            })
        });
        let buttons = style::REPORTED_BUTTONS.iter().map(|k| {
            let key = format!("button:{k}");
            iced::widget::selector::find(style::button_id(k)).map(move |t| {
                Message::Bounds(
                    key.clone(),
                    t.map(|t| t.visible_bounds().unwrap_or(t.bounds())),
                )
            })
        });
        Task::batch(
            std::iter::once(task)
                .chain(finds.collect::<Vec<_>>())
                .chain(buttons.collect::<Vec<_>>()),
        )
    }

    /// What each message does: one method per screen or event group.
    fn handle_message(&mut self, message: Message) -> Task<Message> {
        self.now = Instant::now();
        match message {
            Message::Bounds(key, b) => {
                self.bounds_changed(key, b);
                Task::none()
            }
            Message::Watcher(u) => self.watcher(u),
            Message::Tick(now) => self.tick(now),
            Message::Key(e) => self.key(e),
            Message::Profiles(m) => self.profiles_message(m),
            Message::Editor(m) => self.editor_message(m),
            Message::Connection(m) => self.connection_message(m),
            Message::Prompt(m) => self.prompt_message(m),
            Message::Desktop(e) => self.desktop_event(e),
            Message::WindowOpened(id) => self.window_opened(id),
            Message::CloseRequested(id) => self.close_requested(id),
            Message::WindowClosed(id) => self.window_closed(id),
            Message::Files(m) => self.files_message(m),
            Message::Picked(job, pick) => self.picked(job, pick),
            Message::Done(r) => {
                self.notice = Some(match r {
                    Ok(s) => s,
                    Err(f) => format!("{} {}", explain(f.kind).headline, f.message),
                });
                Task::none()
            }
        }
    }

    /// Where a reported button (`button:KEY`) or a row's Connect button (`NAME`) is.
    fn bounds_changed(&mut self, key: String, b: Option<iced::Rectangle>) {
        let keys = if key.starts_with("button:") {
            vec![key]
        } else {
            vec![format!("connect:{key}"), format!("disconnect:{key}")]
        };
        for k in keys {
            match b {
                Some(r) => {
                    self.bounds.insert(k, [r.x, r.y, r.width, r.height]);
                }
                None => {
                    self.bounds.remove(&k);
                }
            }
        }
    }

    /// The clock: the counters of the tunnels that are up.
    fn tick(&mut self, now: Instant) -> Task<Message> {
        self.now = now;
        let up: Vec<String> = self
            .tunnels
            .values()
            .filter(|t| t.state == state::CONNECTED)
            .map(|t| t.profile.clone())
            .collect();
        for p in up {
            self.send(Command::Traffic { profile: p });
        }
        Task::none()
    }

    fn names(&self) -> Vec<String> {
        self.profiles
            .entries
            .iter()
            .map(|e| e.name.clone())
            .collect()
    }

    /// The profile list: its rows' buttons, the toolbar, its dialogs.
    fn profiles_message(&mut self, m: plist::Message) -> Task<Message> {
        let ev = self.profiles.update(m, &self.tunnels);
        let focus_rename = matches!(self.profiles.dialog, Some(plist::Dialog::Rename { .. }));
        let t = match ev {
            None => Task::none(),
            Some(plist::Event::Connect(n)) => {
                self.connect(&n);
                Task::none()
            }
            Some(plist::Event::Disconnect(n)) => {
                self.disconnect(&n);
                Task::none()
            }
            Some(plist::Event::New) => {
                self.editor = Some(editor::State::new(self.names()));
                self.focus_field(editor::NAME)
            }
            Some(plist::Event::Import) => self.pick(Job::Import),
            Some(plist::Event::Settings) => {
                self.files = Some(files::Dialog::Settings {
                    settings: crate::settings::Settings::load(),
                    error: None,
                });
                self.focused = None;
                Task::none()
            }
            Some(plist::Event::Duplicate(n)) => self.duplicate(&n),
            Some(plist::Event::Rename { from, to }) => self.rename(from, to),
            Some(plist::Event::Delete(n)) => self.delete(n),
        };
        if focus_rename {
            Task::batch([t, iced::widget::operation::focus(plist::rename_id())])
        } else {
            t
        }
    }

    /// Focuses the editor's field `i`.
    fn focus_field(&mut self, i: usize) -> Task<Message> {
        self.focused = Some(format!("field-{i}"));
        iced::widget::operation::focus(editor::field_id(i))
    }

    fn duplicate(&mut self, name: &str) -> Task<Message> {
        match profiles::text(name) {
            Ok(text) => {
                self.editor = Some(editor::State::duplicate(name, &text, self.names()));
                self.focus_field(editor::NAME)
            }
            Err(f) => {
                self.notice = Some(f.message);
                Task::none()
            }
        }
    }

    fn rename(&mut self, from: String, to: String) -> Task<Message> {
        match profiles::rename(&from, &to) {
            Ok(()) => {
                self.reload();
                if let Some(l) = self.live.remove(&from) {
                    self.live.insert(to.clone(), l);
                }
                self.refused.remove(&from);
                self.send(Command::CheckPolicy {
                    profiles: vec![to.clone()],
                });
                Task::perform(move_secrets(from, to), Message::Done)
            }
            Err(f) => {
                self.notice = Some(f.message);
                Task::none()
            }
        }
    }

    fn delete(&mut self, n: String) -> Task<Message> {
        if self.tunnels.get(&n).is_some_and(Tunnel::is_active) {
            self.disconnect(&n);
        }
        if let Err(f) = profiles::delete(&n) {
            self.notice = Some(f.message);
            return Task::none();
        }
        self.live.remove(&n);
        self.tunnels.remove(&n);
        self.refused.remove(&n);
        self.editor = None;
        self.reload();
        Task::perform(
            async move {
                match keyring::delete(&n, None).await {
                    Ok(0) | Err(_) => Ok(format!("Deleted {n}.")),
                    Ok(k) => Ok(format!(
                        "Deleted {n} and its {k} secret{} in the keyring.",
                        if k == 1 { "" } else { "s" }
                    )),
                }
            },
            Message::Done,
        )
    }

    /// The editor: Cancel, a file field's "Choose…", Save.
    fn editor_message(&mut self, m: editor::Message) -> Task<Message> {
        let Some(ed) = &mut self.editor else {
            return Task::none();
        };
        let importing = ed.import.is_some();
        match ed.update(m) {
            None => Task::none(),
            Some(editor::Event::Cancel) => {
                self.editor = None;
                self.focused = None;
                Task::none()
            }
            Some(editor::Event::Choose(i)) => self.pick(Job::Field(i)),
            Some(editor::Event::SaveSystem { name, text }) => {
                self.send(Command::SaveSystem { name, text });
                Task::none()
            }
            Some(editor::Event::Save {
                name,
                original: None,
                text,
                psk,
            }) if importing => self.save_import(name, text, psk),
            Some(editor::Event::Save {
                name,
                original,
                text,
                psk,
            }) => self.save_profile(name, original, text, psk),
        }
    }

    /// Saves the editor's profile (renamed: the old file goes, its secrets follow);
    /// a typed PSK goes to the keyring.
    fn save_profile(
        &mut self,
        name: String,
        original: Option<String>,
        text: String,
        psk: Option<Secret>,
    ) -> Task<Message> {
        let written = profiles::save(&name, &text).and_then(|_| match &original {
            Some(o) if *o != name => profiles::delete(o),
            _ => Ok(()),
        });
        if let Err(f) = written {
            if let Some(ed) = &mut self.editor {
                ed.save_error = Some(f.message);
            }
            return Task::none();
        }
        self.editor = None;
        self.reload();
        self.profiles.selected = Some(name.clone());
        self.send(Command::CheckPolicy {
            profiles: vec![name.clone()],
        });
        let mut tasks = Vec::new();
        if let Some(o) = original
            && o != name
        {
            tasks.push(Task::perform(move_secrets(o, name.clone()), Message::Done));
        }
        if let Some(psk) = psk {
            tasks.push(Task::perform(
                async move {
                    store(&name, secret_key::PSK, &psk)
                        .await
                        .map(|()| format!("Saved {name}; its pre-shared key is in your keyring."))
                },
                Message::Done,
            ));
        }
        Task::batch(tasks)
    }

    /// The selected profile's connection pane.
    fn connection_message(&mut self, m: connection::Message) -> Task<Message> {
        let Some(name) = self.selected() else {
            return Task::none();
        };
        match self.connection.update(m, self.live.get(&name)) {
            None => Task::none(),
            Some(connection::Event::Connect) => {
                self.connect(&name);
                Task::none()
            }
            Some(connection::Event::Disconnect) => {
                self.disconnect(&name);
                Task::none()
            }
            Some(connection::Event::Edit) => self.edit(&name),
            Some(connection::Event::Check) => {
                self.live.entry(name.clone()).or_default().check = Some(connection::Check::Running);
                self.send(Command::Check { profile: name });
                Task::none()
            }
            Some(connection::Event::HideCheck) => {
                if let Some(l) = self.live.get_mut(&name) {
                    l.check = None;
                }
                Task::none()
            }
            Some(connection::Event::CopyDiagnostics) => {
                let d = self.diagnostics(&name);
                self.notice = Some("Diagnostics copied to the clipboard.".into());
                iced::clipboard::write(d)
            }
            Some(connection::Event::SaveDiagnostics) => {
                let contents = self.diagnostics(&name);
                self.pick(Job::Save {
                    contents,
                    name: format!("postern-{name}-diagnostics.txt"),
                    done: format!("Saved the diagnostics of {name} to"),
                })
            }
            Some(connection::Event::Export) => {
                self.files = Some(files::Dialog::Export {
                    profile: name,
                    format: postern_frontend::export::Format::Toml,
                });
                self.focused = None;
                Task::none()
            }
        }
    }

    /// The XAuth and PSK prompts.
    fn prompt_message(&mut self, m: prompt::Message) -> Task<Message> {
        let Some(p) = &mut self.prompt else {
            return Task::none();
        };
        let Some(ev) = p.update(m) else {
            return Task::none();
        };
        self.prompt = None;
        match ev {
            prompt::Event::Cancel { profile } => {
                // A cancelled login ends the attempt (the gateway would time out).
                if self.tunnels.get(&profile).is_some_and(Tunnel::is_active) {
                    self.disconnect(&profile);
                } else if let Some(l) = self.live.get_mut(&profile) {
                    l.started = None;
                }
            }
            prompt::Event::Psk {
                profile,
                psk,
                remember,
            } => self.send(Command::Connect {
                profile,
                psk: Some(psk),
                xauth_password: None,
                remember,
            }),
            prompt::Event::Answer {
                profile,
                answers,
                remember_password,
            } => self.send(Command::Submit {
                profile,
                answers,
                remember_password,
            }),
        }
        Task::none()
    }

    /// The desktop: the tray (its menu, whether it shows) and the theme.
    fn desktop_event(&mut self, e: desktop::Event) -> Task<Message> {
        match e {
            desktop::Event::Open => {
                // Tunnels started elsewhere while the window was closed show at once
                // (the watcher otherwise looks only now and then).
                if self.window.is_none() {
                    self.send(Command::Refresh);
                }
                self.open_window()
            }
            desktop::Event::Connect(n) => {
                self.profiles.selected = Some(n.clone());
                self.connect(&n);
                Task::none()
            }
            desktop::Event::Disconnect(n) => {
                self.disconnect(&n);
                Task::none()
            }
            desktop::Event::Quit => iced::exit(),
            desktop::Event::Tray => {
                self.tray = Tray::Shown;
                self.last_tray = None;
                self.update_tray();
                Task::none()
            }
            desktop::Event::NoTray(why) => {
                self.tray = Tray::Absent;
                eprintln!("postern-gui: no tray icon: {why}");
                self.notice = Some(
                    "No system tray here (no StatusNotifierWatcher): closing the window quits Postern."
                        .into(),
                );
                if self.window.is_none() {
                    self.open_window()
                } else {
                    Task::none()
                }
            }
            desktop::Event::Theme(m) => {
                if !self.mode_forced {
                    self.mode = m;
                }
                Task::none()
            }
        }
    }

    /// Takes the keyboard (without a window manager, as under Xvfb, nobody else gives
    /// it).
    fn window_opened(&mut self, id: window::Id) -> Task<Message> {
        if let Some(t0) = crate::STARTED.get() {
            eprintln!(
                "postern-gui: window open after {} ms",
                t0.elapsed().as_millis()
            );
        }
        window::gain_focus(id)
    }

    /// Closing the window: to the tray when there is one, else quit.
    fn close_requested(&mut self, id: window::Id) -> Task<Message> {
        if self.tray == Tray::Shown {
            self.window = None;
            window::close(id)
        } else {
            iced::exit()
        }
    }

    fn window_closed(&mut self, id: window::Id) -> Task<Message> {
        if self.window == Some(id) {
            self.window = None;
        }
        if self.tray != Tray::Shown && self.tray_wanted && self.tray == Tray::Unknown {
            return iced::exit();
        }
        if self.tray == Tray::Absent {
            return iced::exit();
        }
        Task::none()
    }

    /// The file dialogs: export, settings, the import choice, a typed path.
    fn files_message(&mut self, m: files::Message) -> Task<Message> {
        let Some(d) = &mut self.files else {
            return Task::none();
        };
        match d.update(m) {
            None => Task::none(),
            Some(files::Event::Close) => {
                self.files = None;
                self.focused = None;
                Task::none()
            }
            Some(files::Event::Export { profile, format }) => {
                self.files = None;
                self.focused = None;
                self.export(profile, format)
            }
            Some(files::Event::Settings(new)) => {
                let r = new.save();
                if let Some(files::Dialog::Settings { settings, error }) = &mut self.files {
                    // The files are the truth (a failed write leaves the box as it was).
                    *settings = crate::settings::Settings::load();
                    *error = r.err();
                }
                Task::none()
            }
            Some(files::Event::Picked { file, imported }) => {
                self.files = None;
                self.open_import(&file, &imported)
            }
            Some(files::Event::Path { purpose, path }) => self.typed_path(purpose, path),
        }
    }

    /// Exports `profile` as `format` through the save dialog.
    fn export(
        &mut self,
        profile: String,
        format: postern_frontend::export::Format,
    ) -> Task<Message> {
        use postern_frontend::export::Format;
        let p = match profiles::load(&profile) {
            Ok(p) => p,
            Err(f) => {
                self.notice = Some(f.message);
                return Task::none();
            }
        };
        if let Some(why) = postern_frontend::export::refusal(&p, format) {
            self.notice = Some(why);
            return Task::none();
        }
        let contents = postern_frontend::export::export(&p, format);
        let name = match format {
            Format::SheetMd | Format::SheetCsv => {
                format!("{profile}-parameters.{}", format.extension())
            }
            _ => format!("{profile}.{}", format.extension()),
        };
        self.pick(Job::Save {
            contents,
            name,
            done: format!("Exported {profile} ({}) to", files::export_label(format)),
        })
    }

    /// A path typed where the desktop has no file dialog: import it or write there.
    fn typed_path(&mut self, purpose: files::Purpose, path: String) -> Task<Message> {
        let path = std::path::PathBuf::from(path);
        let r = match purpose {
            files::Purpose::Import => self.import_path(&path),
            files::Purpose::Save { contents, done } => write_file(&path, &contents).map(|()| {
                self.notice = Some(format!("{done} {}.", path.display()));
                self.files = None;
                Task::none()
            }),
        };
        r.unwrap_or_else(|e| {
            if let Some(files::Dialog::Path { error, .. }) = &mut self.files {
                *error = Some(e);
            }
            Task::none()
        })
    }

    /// A system profile's text came: the read-only editor on it (asked for by Edit,
    /// or read again after a save).
    fn system_text(&mut self, name: String, result: Result<String, Fail>) -> Task<Message> {
        let after_save = self
            .editor
            .as_ref()
            .is_some_and(|e| e.system.is_some() && e.original.as_deref() == Some(&name));
        if !after_save && self.system_open.as_deref() != Some(&name) {
            return Task::none();
        }
        self.system_open = None;
        match result {
            Ok(text) => {
                let file = self.system.iter().find(|s| s.name == name).map_or_else(
                    || format!("/etc/postern/profiles/{name}.toml"),
                    |s| s.file.clone(),
                );
                let mut ed = editor::State::system(&name, &text, &file);
                ed.refused = self
                    .system
                    .iter()
                    .find(|s| s.name == name && !s.refused.is_empty())
                    .map(|s| s.refused.clone());
                self.editor = Some(ed);
                self.focused = None;
            }
            Err(f) => {
                self.notice = Some(format!(
                    "Cannot show the system profile {name}: {}",
                    f.message
                ));
            }
        }
        Task::none()
    }

    /// The helper's answer to a system profile's save: the file read again (it is
    /// what counts), or why not in one sentence under the form.
    fn system_saved(&mut self, name: String, result: Result<(), Fail>) -> Task<Message> {
        let Some(ed) = self
            .editor
            .as_mut()
            .filter(|e| e.original.as_deref() == Some(&name))
        else {
            return Task::none();
        };
        if let Some(s) = &mut ed.system {
            s.saving = false;
        }
        match result {
            Ok(()) => {
                self.notice = Some(format!(
                    "Saved the system profile {name}; the editor shows the file as it is now."
                ));
                self.send(Command::SystemText { name });
                // The list (gateway, refusal) from the file too.
                self.send(Command::Refresh);
            }
            Err(f) => ed.save_error = Some(save_refused(&f)),
        }
        Task::none()
    }

    /// The diagnostics of `name` (profile without secrets, state, SAs, log).
    fn diagnostics(&self, name: &str) -> String {
        let toml = profiles::load(name)
            .map(|p| p.to_toml_string())
            .unwrap_or_else(|f| format!("# {}\n", f.message));
        connection::diagnostics(name, &toml, self.live.get(name))
    }

    /// Opens the desktop's file dialog for `job`.
    fn pick(&mut self, job: Job) -> Task<Message> {
        type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = Pick> + Send>>;
        let fut: Fut = match &job {
            Job::Import => Box::pin(portal::open_file(
                "Import a VPN configuration".into(),
                portal::IMPORT_FILTERS.to_vec(),
            )),
            Job::Field(i) => {
                let f = editor::FIELDS.get(*i);
                let filters = match f.map(|f| f.kind) {
                    Some(editor::Kind::File(editor::FileKind::Pkcs12)) => portal::PKCS12_FILTERS,
                    _ => portal::PEM_FILTERS,
                };
                let title = format!(
                    "Choose the {}",
                    f.map_or("file", |f| f.label).to_lowercase()
                );
                Box::pin(portal::open_file(title, filters.to_vec()))
            }
            Job::Save { name, .. } => {
                let title = if name.ends_with("-diagnostics.txt") {
                    "Save the diagnostics"
                } else {
                    "Export the profile"
                };
                Box::pin(portal::save_file(title.into(), name.clone()))
            }
        };
        Task::perform(fut, move |p| Message::Picked(job.clone(), p))
    }

    /// The file dialog's answer.
    fn picked(&mut self, job: Job, pick: Pick) -> Task<Message> {
        match (job, pick) {
            (_, Pick::Cancelled) => Task::none(),
            (_, Pick::Failed(m)) => {
                self.notice = Some(format!("The file dialog failed: {m}."));
                Task::none()
            }
            (Job::Import, Pick::File(p)) => match self.import_path(&p) {
                Ok(t) => t,
                Err(e) => {
                    self.notice = Some(e);
                    Task::none()
                }
            },
            (Job::Import, Pick::Unavailable(why)) => {
                self.files = Some(files::Dialog::Path {
                    purpose: files::Purpose::Import,
                    path: String::new(),
                    why,
                    error: None,
                });
                self.focused = Some("path".into());
                iced::widget::operation::focus(files::path_id())
            }
            (Job::Field(i), Pick::File(p)) => {
                let v = p.display().to_string();
                self.update(Message::Editor(editor::Message::Input(i, v)))
            }
            (Job::Field(i), Pick::Unavailable(why)) => {
                self.notice = Some(format!(
                    "This desktop has no file dialog ({why}): type the file's path."
                ));
                self.focused = Some(format!("field-{i}"));
                iced::widget::operation::focus(editor::field_id(i))
            }
            (Job::Save { contents, done, .. }, Pick::File(p)) => {
                self.notice = Some(match write_file(&p, &contents) {
                    Ok(()) => format!("{done} {}.", p.display()),
                    Err(e) => e,
                });
                Task::none()
            }
            (
                Job::Save {
                    contents,
                    name,
                    done,
                },
                Pick::Unavailable(why),
            ) => {
                self.files = Some(files::Dialog::Path {
                    purpose: files::Purpose::Save { contents, done },
                    path: files::home_path(&name),
                    why,
                    error: None,
                });
                self.focused = Some("path".into());
                iced::widget::operation::focus(files::path_id())
            }
        }
    }

    /// Imports the file at `path` (read here, in the app, never by the helper): one
    /// connection opens the editor on it; several ask which. `Err`: one sentence.
    fn import_path(&mut self, path: &std::path::Path) -> Result<Task<Message>, String> {
        let found = postern_frontend::import::import_file(
            path,
            &postern_frontend::import::ImportOptions::default(),
        )
        .map_err(|e| format!("Cannot import {e}"))?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| path.display().to_string());
        self.files = None;
        match found.len() {
            1 => Ok(self.open_import(&file, &found[0])),
            _ => {
                self.files = Some(files::Dialog::Choose { file, found });
                self.focused = None;
                Ok(Task::none())
            }
        }
    }

    /// The editor on an imported connection, what could not be carried over above it.
    fn open_import(
        &mut self,
        file: &str,
        imported: &postern_frontend::import::Imported,
    ) -> Task<Message> {
        self.editor = Some(editor::State::imported(
            &imported.profile_name,
            &imported.toml,
            self.names(),
            editor::ImportNotes::from_imported(imported, file),
        ));
        self.focus_field(editor::NAME)
    }

    /// Saves an imported profile: its embedded files beside it, the profile, and its
    /// secrets in the keyring (the front-end library's import code, as `postern import`).
    fn save_import(&mut self, name: String, text: String, psk: Option<Secret>) -> Task<Message> {
        use postern_dbus::profile::{Profile, SecretPolicy};
        let Some(notes) = self.editor.as_ref().and_then(|e| e.import.clone()) else {
            return Task::none();
        };
        let mut text = text;
        let written = (|| {
            if !notes.files.is_empty() {
                let mut p = Profile::from_toml_str(&text, &name, SecretPolicy::Forbid)
                    .map_err(|e| Fail::new(FailureKind::BadProfile, e.to_string()))?;
                postern_frontend::import::save_files(&name, &mut p, &notes.files)?;
                text = p.to_toml_string();
            }
            profiles::save(&name, &text)
        })();
        if let Err(f) = written {
            if let Some(ed) = &mut self.editor {
                ed.save_error = Some(f.message);
            }
            return Task::none();
        }
        self.editor = None;
        self.focused = None;
        self.reload();
        self.profiles.selected = Some(name.clone());
        self.send(Command::CheckPolicy {
            profiles: vec![name.clone()],
        });
        let mut secrets = notes.secrets;
        if let Some(psk) = psk {
            secrets.insert(secret_key::PSK.to_string(), psk);
        }
        if secrets.is_empty() {
            self.notice = Some(format!("Imported {name}."));
            return Task::none();
        }
        Task::perform(
            async move {
                let stored = postern_frontend::import::store_secrets(&name, &secrets).await;
                Ok(import_sentence(&name, &stored))
            },
            Message::Done,
        )
    }

    pub fn edit(&mut self, name: &str) -> Task<Message> {
        if let Some(sys) = name.strip_prefix(watcher::SYSTEM_PREFIX) {
            // The helper reads root's file (without its secrets); the editor opens
            // read-only when the text comes.
            self.system_open = Some(sys.to_string());
            self.send(Command::SystemText {
                name: sys.to_string(),
            });
            return Task::none();
        }
        match profiles::text(name) {
            Ok(text) => {
                let mut ed = editor::State::edit(name, &text, self.names(), true);
                ed.refused = self.refused.get(name).cloned();
                self.editor = Some(ed);
                self.focus_field(1)
            }
            Err(f) => {
                self.notice = Some(f.message);
                Task::none()
            }
        }
    }

    pub fn view(&self, _window: window::Id) -> Element<'_, Message> {
        let focused = self.focused.as_deref();
        let left = container(
            self.profiles
                .view(&self.tunnels, focused)
                .map(Message::Profiles),
        )
        .width(Length::Fixed(340.0))
        .height(Length::Fill)
        .style(style::sidebar);
        let right: Element<'_, Message> = if let Some(ed) = &self.editor {
            ed.view(focused).map(Message::Editor)
        } else if let Some(name) = &self.profiles.selected {
            let entry = self.profiles.entries.iter().find(|e| &e.name == name);
            let gateway = entry
                .and_then(|e| e.gateway.as_ref().ok())
                .map(String::as_str)
                .unwrap_or("");
            let about = connection::About {
                system: entry.is_some_and(|e| e.system),
                refused: entry.and_then(|e| e.refused.as_deref()),
                ike_version: entry.map_or(0, |e| e.ike_version),
            };
            connection::view(
                &self.connection,
                name,
                gateway,
                self.live.get(name),
                self.helper.as_ref(),
                self.now,
                focused,
                about,
            )
            .map(Message::Connection)
        } else {
            center(
                column![
                    text("Welcome to Postern").size(24),
                    text("Add a profile with the details your admin gave you: a name, the gateway, the pre-shared key, your group and your user name."),
                ]
                .spacing(10)
                .max_width(460),
            )
            .into()
        };
        // A status line at the bottom, always there (the layout above never moves).
        let status = match (&self.notice, &self.helper) {
            (Some(n), _) => n.clone(),
            (None, Some(f)) => explain(f.kind).headline.to_string(),
            (None, None) => String::new(),
        };
        let main = column![
            row![left, container(right).width(Length::Fill)].height(Length::Fill),
            container(text(status).size(13).wrapping(text::Wrapping::None))
                .padding([4, 12])
                .width(Length::Fill)
                .height(Length::Fixed(STATUS_HEIGHT))
                .style(style::status_bar),
        ]
        .height(Length::Fill);
        let base: Element<'_, Message> = main.into();
        let dialog: Option<Element<'_, Message>> = if let Some(p) = &self.prompt {
            Some(p.view().map(Message::Prompt))
        } else if let Some(d) = &self.files {
            Some(d.view(focused).map(Message::Files))
        } else {
            self.profiles
                .dialog(focused)
                .map(|d| d.map(Message::Profiles))
        };
        match dialog {
            Some(d) => stack![
                base,
                opaque(
                    center(d)
                        .style(style::scrim)
                        .width(Length::Fill)
                        .height(Length::Fill)
                )
            ]
            .into(),
            None => base,
        }
    }
}

/// A connect refused by this machine's policy, as the helper's `Connect` would say
/// it: a key named (`phase1.proposals: ... forbids`) is the profile's fault; "system
/// profiles only" is the caller's.
pub fn policy_failure(why: &str) -> Fail {
    if why
        .split_once(": ")
        .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' '))
    {
        Fail::new(FailureKind::BadProfile, why)
    } else {
        Fail::new(FailureKind::AccessDenied, format!("refused: {why}"))
    }
}

/// Why a system profile was not saved, in one sentence.
pub fn save_refused(f: &Fail) -> String {
    match f.kind {
        FailureKind::AccessDenied => {
            // "refused: not authorized (ACTION): WHY": WHY is what the user can act on.
            let m = f.message.trim_start_matches("refused: ");
            let why = m.rsplit_once("): ").map_or(m, |(_, w)| w);
            format!(
                "Not saved: changing a system profile needs an administrator's password ({why})."
            )
        }
        _ => format!("Not saved: {}.", f.message.trim_end_matches('.')),
    }
}

/// Writes an export or the diagnostics (no secrets in either). `Err`: one sentence.
fn write_file(path: &std::path::Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("Cannot write {}: {e}.", path.display()))
}

/// What happened to an import's secrets, in one or two sentences.
pub fn import_sentence(name: &str, stored: &[(String, Result<(), Fail>)]) -> String {
    let ok: Vec<&str> = stored
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(k, _)| editor::secret_label(k))
        .collect();
    let failed: Vec<(&str, &Fail)> = stored
        .iter()
        .filter_map(|(k, r)| r.as_ref().err().map(|f| (editor::secret_label(k), f)))
        .collect();
    let mut s = format!("Imported {name}.");
    if !ok.is_empty() {
        s.push_str(&format!(" In your keyring: {}.", ok.join(", ")));
    }
    if let Some((_, f)) = failed.first() {
        let what: Vec<&str> = failed.iter().map(|(k, _)| *k).collect();
        s.push_str(&format!(
            " Not kept ({}): {}; Postern asks when you connect.",
            keyring_words(f),
            what.join(", ")
        ));
    }
    s
}

/// A keyring failure in a few words ("the keyring is locked", ...).
pub fn keyring_words(f: &Fail) -> String {
    let m = f.message.trim_start_matches("keyring: ");
    if m.contains("locked") {
        "the keyring is locked".into()
    } else {
        m.split(';').next().unwrap_or(m).to_string()
    }
}

async fn store(profile: &str, key: &str, value: &Secret) -> Result<(), Fail> {
    tokio::time::timeout(
        watcher::KEYRING_TIMEOUT,
        keyring::store(profile, key, value.expose()),
    )
    .await
    .unwrap_or_else(|_| {
        Err(Fail::new(
            FailureKind::Keyring,
            "keyring: no answer (locked, waiting for a password?)",
        ))
    })
}

/// A renamed profile's secrets follow it.
async fn move_secrets(from: String, to: String) -> Result<String, Fail> {
    let mut moved = 0;
    for key in [secret_key::PSK, secret_key::XAUTH_PASSWORD] {
        if let Some(v) = keyring::lookup(&from, key).await {
            keyring::store(&to, key, &v).await?;
            moved += 1;
        }
    }
    if moved > 0 {
        keyring::delete(&from, None).await?;
    }
    Ok(format!("Renamed {from} to {to}."))
}

#[cfg(test)]
mod tests;
