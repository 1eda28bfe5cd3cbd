//! One profile's tunnel: the phases as the helper reports them with the elapsed
//! time; when connected the virtual IP, DNS, routes, uptime, traffic with rates and
//! the SA table (never keys); a failure in plain words (the `explain` headline, what
//! to check, the helper's own sentence beneath); the live log; "Copy diagnostics".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use iced::widget::{Column, button, column, container, row, scrollable, space, text, text_input};
use iced::{Alignment, Element, Font, Length};
use postern_dbus::interface::{CheckStep, SaTraffic, Traffic, state};
use postern_frontend::Fail;
use postern_frontend::explain::explain;
use postern_frontend::watcher::Tunnel;

use crate::style;

/// How many log lines a tunnel keeps here.
pub const LOG_LINES: usize = 500;

/// What the app knows of one profile's tunnel, folded from the watcher's updates.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub tunnel: Option<Tunnel>,
    pub log: VecDeque<String>,
    /// When the connect was asked (for the elapsed time).
    pub started: Option<Instant>,
    /// When the current phase began.
    pub phase_since: Option<Instant>,
    pub connected_since: Option<Instant>,
    /// The latest counters and when they were read; rates (bytes/s in, out).
    pub traffic: Option<(Instant, Traffic)>,
    pub rates: (f64, f64),
    pub per_sa: Vec<SaTraffic>,
    /// A failure outside the tunnel (the connect refused, the keyring, ...).
    pub failure: Option<Fail>,
    /// A connect waits for the helper to come.
    pub waiting_for_helper: bool,
    /// "Check the tunnel": running, or its steps, or why it could not run.
    pub check: Option<Check>,
}

/// "Check the tunnel" as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Running,
    Done(Vec<CheckStep>),
    Failed(String),
}

/// A check step's name in words.
pub fn check_label(name: &str) -> &str {
    match name {
        "traffic" => "Traffic both ways",
        "host" => "A host behind the tunnel",
        "dns" => "The tunnel's DNS",
        "mtu" => "Path MTU",
        "portal" => "Captive portal",
        other => other,
    }
}

/// What a state change meant, for notifications and the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Connected { address: String },
    Disconnected,
    Failed(Fail),
    Dropped,
    Reconnecting,
    Reconnected { address: String },
}

impl Live {
    /// Folds a new snapshot in; says what changed for the user.
    pub fn apply(&mut self, t: Tunnel, now: Instant) -> Option<Change> {
        let before = self.tunnel.take();
        let old_state = before.as_ref().map(|b| b.state.clone()).unwrap_or_default();
        let old_phase = before.as_ref().map(|b| b.phase.clone()).unwrap_or_default();
        if t.phase != old_phase || t.state != old_state {
            self.phase_since = Some(now);
        }
        if self.started.is_none() && t.is_active() {
            self.started = Some(now);
        }
        self.waiting_for_helper = false;
        let change = if t.state == old_state {
            None
        } else {
            match t.state.as_str() {
                state::CONNECTED => {
                    self.connected_since = Some(now);
                    self.failure = None;
                    Some(if old_state == state::RECONNECTING {
                        Change::Reconnected {
                            address: t.virtual_ip.clone(),
                        }
                    } else {
                        Change::Connected {
                            address: t.virtual_ip.clone(),
                        }
                    })
                }
                state::RECONNECTING => {
                    self.connected_since = None;
                    Some(Change::Reconnecting)
                }
                state::FAILED => {
                    self.connected_since = None;
                    self.started = None;
                    let f = t.last_error.clone().unwrap_or_else(|| {
                        Fail::new(postern_frontend::FailureKind::Internal, "the tunnel failed")
                    });
                    Some(if f.kind == postern_frontend::FailureKind::DroppedByPeer {
                        Change::Dropped
                    } else {
                        Change::Failed(f)
                    })
                }
                state::DISCONNECTED => {
                    self.connected_since = None;
                    self.started = None;
                    self.traffic = None;
                    self.rates = (0.0, 0.0);
                    if t.last_error
                        .as_ref()
                        .is_some_and(|f| f.kind == postern_frontend::FailureKind::DroppedByPeer)
                    {
                        Some(Change::Dropped)
                    } else {
                        Some(Change::Disconnected)
                    }
                }
                _ => None,
            }
        };
        if t.is_active() && t.state != state::CONNECTED {
            // A new attempt: an old failure no longer describes it.
            if old_state == state::FAILED
                || old_state == state::DISCONNECTED
                || old_state.is_empty()
            {
                self.failure = None;
            }
        }
        self.tunnel = Some(t);
        change
    }

    pub fn push_log(&mut self, line: String) {
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// New counters: the rates from the previous reading.
    pub fn set_traffic(&mut self, total: Traffic, per_sa: Vec<SaTraffic>, now: Instant) {
        if let Some((then, prev)) = self.traffic {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.2 {
                self.rates = (
                    total.rx_bytes.saturating_sub(prev.rx_bytes) as f64 / dt,
                    total.tx_bytes.saturating_sub(prev.tx_bytes) as f64 / dt,
                );
            }
        }
        self.traffic = Some((now, total));
        self.per_sa = per_sa;
    }

    /// The failure to show: the tunnel's own, else a command's.
    pub fn shown_failure(&self) -> Option<&Fail> {
        match &self.tunnel {
            Some(t) if t.state == state::FAILED || t.state == state::DISCONNECTED => {
                t.last_error.as_ref().or(self.failure.as_ref())
            }
            Some(t) if t.is_active() => None,
            _ => self.failure.as_ref(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.tunnel.as_ref().is_some_and(Tunnel::is_active)
    }
}

#[derive(Debug, Clone)]
pub enum Message {
    Toggle,
    Edit,
    Check,
    /// Close the check's results (the log comes back into view).
    HideCheck,
    Export,
    CopyDiagnostics,
    SaveDiagnostics,
    LogFilter(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connect,
    Disconnect,
    Edit,
    Check,
    HideCheck,
    Export,
    CopyDiagnostics,
    SaveDiagnostics,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub log_filter: String,
}

impl State {
    pub fn update(&mut self, message: Message, live: Option<&Live>) -> Option<Event> {
        match message {
            Message::Toggle => Some(if live.is_some_and(Live::is_active) {
                Event::Disconnect
            } else {
                Event::Connect
            }),
            Message::Edit => Some(Event::Edit),
            Message::CopyDiagnostics => Some(Event::CopyDiagnostics),
            Message::Export => Some(Event::Export),
            Message::Check => Some(Event::Check),
            Message::HideCheck => Some(Event::HideCheck),
            Message::SaveDiagnostics => Some(Event::SaveDiagnostics),
            Message::LogFilter(f) => {
                self.log_filter = f;
                None
            }
        }
    }
}

/// The phases in the order a connect goes through them, with their labels.
pub const PHASES: [(&str, &str); 6] = [
    ("resolving", "Resolving the gateway"),
    ("phase1", "Phase 1 (IKE)"),
    ("xauth", "XAuth login"),
    ("mode-config", "Mode Config"),
    ("phase2", "Phase 2 (ESP)"),
    ("established", "Connected"),
];

/// `1h 02m 03s`-style.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m {:02}s", s / 3600, (s / 60) % 60, s % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}.{}s", s, d.subsec_millis() / 100)
    }
}

/// Bytes as `1.2 MB`.
pub fn bytes(n: f64) -> String {
    const U: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", U[i])
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn kv<'a>(k: &'a str, v: String) -> Element<'a, Message> {
    row![
        text(k).width(Length::Fixed(130.0)).style(style::muted),
        text(v).width(Length::Fill)
    ]
    .spacing(12)
    .into()
}

/// The firewall's lines as one short phrase for the pane: `kill switch on`,
/// `IPv6 blocked`, both joined, or `none`.
pub fn protection_summary(lines: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(l) = lines.iter().find(|l| l.starts_with("kill switch on")) {
        // "kill switch on: the tunnel's networks (...) only through it" → keep the scope.
        match l.split_once(": ") {
            Some((_, scope)) => parts.push(format!(
                "kill switch on ({})",
                scope.split(';').next().unwrap_or(scope).trim()
            )),
            None => parts.push("kill switch on".to_string()),
        }
    }
    if lines.iter().any(|l| l.starts_with("IPv6 blocked")) {
        parts.push("IPv6 blocked (the tunnel carries IPv4 only)".to_string());
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join("; ")
    }
}

/// The diagnostics for the user's admin: profile without secrets, state, SAs, log.
pub fn diagnostics(name: &str, profile_toml: &str, live: Option<&Live>) -> String {
    let mut out = format!(
        "Postern diagnostics for {name}\n\n# profile (no secrets)\n{}\n",
        profile_toml.trim_end()
    );
    if let Some(l) = live {
        if let Some(t) = &l.tunnel {
            out.push_str(&format!(
                "\n# tunnel\nstate: {}\nphase: {}\ngateway: {}\nvirtual ip: {}\ndns: {}\nroutes: {}\nike: {}\n",
                t.state,
                t.phase,
                t.gateway,
                t.virtual_ip,
                t.dns.join(", "),
                t.routes.join(", "),
                t.ike_proposal
            ));
            for p in &t.protection {
                out.push_str(&format!("protection: {p}\n"));
            }
            if let Some(f) = &t.last_error {
                out.push_str(&format!("last error: {} ({})\n", f.message, f.kind));
            }
            out.push_str("\n# SAs (spi in, spi out, esp, mode, local, remote, lifetime, bytes in, bytes out)\n");
            for s in &t.sas {
                let x = l
                    .per_sa
                    .iter()
                    .find(|x| x.spi_in == s.spi_in)
                    .copied()
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{:08x} {:08x} {} {}{} {} {} {}s {} {}\n",
                    s.spi_in,
                    s.spi_out,
                    s.proposal,
                    s.mode,
                    if s.udp_encapsulation { "+udp" } else { "" },
                    s.local_ts,
                    s.remote_ts,
                    s.lifetime_secs,
                    x.in_bytes,
                    x.out_bytes
                ));
            }
        }
        if let Some(f) = &l.failure {
            out.push_str(&format!("\nfailure: {} ({})\n", f.message, f.kind));
        }
        out.push_str("\n# log\n");
        for line in &l.log {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What the list knows of the profile besides its tunnel.
#[derive(Debug, Clone, Copy, Default)]
pub struct About<'a> {
    /// A system profile (the administrator's): said under the gateway; Edit shows it.
    pub system: bool,
    /// Why the helper refuses it (this machine's policy, a system file's mode).
    pub refused: Option<&'a str>,
    /// The profile's IKE version (0: not known): the IKE SA's row says it.
    pub ike_version: u8,
}

/// The IKE version of a tunnel: the helper's when it says (1 or 2), else the profile's
/// (`profile`, 0 when not known).
pub fn tunnel_version(t: &Tunnel, profile: u8) -> u8 {
    match t.ike_version {
        v @ 1..=2 => v as u8,
        _ => profile,
    }
}

/// The label and value of the IKE SA's row: "Phase 1" in IKEv1's words, "IKE SA" with
/// the version for IKEv2.
///
/// The version is the helper's (`Tunnel::ike_version`, the tunnel's own), else the
/// profile's ([`tunnel_version`]).
pub fn ike_row(version: u8, proposal: &str) -> (&'static str, String) {
    match version {
        2 => ("IKE SA", format!("IKEv2 {proposal}")),
        _ => ("Phase 1", proposal.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn view<'a>(
    st: &'a State,
    name: &'a str,
    gateway: &'a str,
    live: Option<&'a Live>,
    helper: Option<&'a Fail>,
    now: Instant,
    focused: Option<&'a str>,
    about: About<'a>,
) -> Element<'a, Message> {
    let t = live.and_then(|l| l.tunnel.as_ref());
    let active = live.is_some_and(Live::is_active);
    let state_word = if live.is_some_and(|l| l.waiting_for_helper) {
        "Waiting for the Postern service".to_string()
    } else {
        super::profiles::state_sentence(t)
    };
    // A system profile: its file's name, and whose it is under the header.
    let shown = name
        .strip_prefix(postern_frontend::watcher::SYSTEM_PREFIX)
        .unwrap_or(name);
    let header = row![
        column![
            text(shown).size(24),
            text(gateway).size(14).style(style::muted)
        ]
        .spacing(2)
        .width(Length::Fill),
        style::dot(t.map(|t| t.state.as_str())),
        text(state_word)
            .size(15)
            .style(style::state_text(t.map(|t| t.state.as_str()))),
        style::focus_button(
            text(if active { "Disconnect" } else { "Connect" })
                .align_x(iced::alignment::Horizontal::Center)
                .width(Length::Fill),
            focused == Some("conn-toggle"),
            if active {
                button::secondary
            } else {
                button::primary
            }
        )
        .on_press(Message::Toggle)
        .width(Length::Fixed(110.0)),
        container(
            style::focus_button(
                text(if about.system { "View" } else { "Edit" }),
                focused == Some("conn-edit"),
                button::secondary
            )
            .on_press(Message::Edit)
        )
        .id(style::button_id("conn-edit")),
    ]
    .spacing(10)
    .align_y(Alignment::Center);
    let small = |label: &'a str, key: &'a str, m: Message| {
        style::focus_button(
            text(label).size(13),
            focused == Some(key),
            button::secondary,
        )
        .on_press(m)
        .padding([4, 10])
    };
    let connected = t.is_some_and(|t| t.state == state::CONNECTED);
    let checking = live.is_some_and(|l| l.check == Some(Check::Running));
    let tools = row![
        container(
            style::focus_button(
                text(if checking {
                    "Checking…"
                } else {
                    "Check the tunnel"
                })
                .size(13),
                focused == Some("conn-check"),
                button::secondary
            )
            .on_press_maybe((connected && !checking).then_some(Message::Check))
            .padding([4, 10])
        )
        .id(style::button_id("conn-check")),
        container(small("Export…", "conn-export", Message::Export))
            .id(style::button_id("conn-export")),
        small("Copy diagnostics", "conn-copy", Message::CopyDiagnostics),
        small(
            "Save diagnostics as…",
            "conn-save",
            Message::SaveDiagnostics
        ),
    ]
    .spacing(8);

    let mut body = column![header].spacing(16);
    if about.system {
        body = body.push(
            row![
                style::system_tag(),
                text(super::editor::SYSTEM_LINE)
                    .size(13)
                    .style(style::muted)
            ]
            .spacing(8)
            .align_y(Alignment::Center),
        );
    }
    body = body.push(tools);

    if let Some(f) = helper
        && !active
    {
        let e = explain(f.kind);
        body = body.push(
            container(
                column![
                    text(e.headline).size(16),
                    text(e.check).size(14),
                    text(f.message.clone()).size(13).style(style::muted)
                ]
                .spacing(4),
            )
            .padding(12)
            .width(Length::Fill)
            .style(style::notice),
        );
    }

    let failure = live.and_then(Live::shown_failure);
    if let Some(why) = about.refused
        && failure.is_none()
    {
        body = body.push(super::editor::refused_box(why));
    }

    if let Some(f) = failure {
        let e = explain(f.kind);
        body = body.push(
            container(
                column![
                    text(e.headline).size(18).style(text::danger),
                    text(e.check).size(14),
                    text(f.message.clone()).size(13).style(style::muted),
                ]
                .spacing(6),
            )
            .padding(12)
            .width(Length::Fill)
            .style(style::failure_box),
        );
    }

    if let Some(t) = t {
        if t.is_active() && t.state != state::CONNECTED {
            body = body.push(phases(t, live, now));
        }
        if t.state == state::CONNECTED
            && let Some(l) = live
        {
            if let Some(c) = &l.check {
                body = body.push(check_box(c));
            }
            body = body.push(details(t, l, now, tunnel_version(t, about.ike_version)));
        }
    }

    // The log, live and filterable.
    let filter = st.log_filter.to_lowercase();
    let mut log_col = Column::new().spacing(1);
    if let Some(l) = live {
        for line in l
            .log
            .iter()
            .filter(|x| filter.is_empty() || x.to_lowercase().contains(&filter))
        {
            log_col = log_col.push(text(line.clone()).size(12).font(Font::MONOSPACE));
        }
    }
    body = body.push(
        column![
            row![
                text("Log")
                    .size(16)
                    .style(style::heading)
                    .width(Length::Fill),
                text_input("Filter", &st.log_filter)
                    .id(log_filter_id())
                    .on_input(Message::LogFilter)
                    .width(Length::Fixed(200.0))
                    .padding(4)
            ]
            .align_y(Alignment::Center),
            container(
                scrollable(log_col)
                    .anchor_bottom()
                    .height(Length::Fill)
                    .width(Length::Fill)
            )
            .padding(8)
            .height(Length::Fill)
            .style(style::log_box)
        ]
        .spacing(6)
        .height(Length::Fill),
    );
    container(body).padding(16).into()
}

fn phases<'a>(t: &'a Tunnel, live: Option<&'a Live>, now: Instant) -> Element<'a, Message> {
    let cur = PHASES.iter().position(|(p, _)| *p == t.phase);
    let mut col = column![].spacing(4);
    for (i, (_, label)) in PHASES.iter().enumerate() {
        let (mark, style_fn): (&str, fn(&iced::Theme) -> text::Style) = match cur {
            Some(c) if i < c => ("done", style::ok_text),
            Some(c) if i == c => ("now", style::accent_text),
            _ => ("", style::muted),
        };
        let mut r = row![
            text(mark)
                .size(12)
                .width(Length::Fixed(40.0))
                .style(style_fn),
            text(*label).size(14).style(style_fn)
        ]
        .spacing(8);
        if Some(i) == cur
            && let Some(since) = live.and_then(|l| l.phase_since)
        {
            r = r.push(
                text(elapsed(now.saturating_duration_since(since)))
                    .size(12)
                    .style(style::muted),
            );
        }
        col = col.push(r);
    }
    let total = live
        .and_then(|l| l.started)
        .map(|s| elapsed(now.saturating_duration_since(s)))
        .unwrap_or_default();
    let waiting = if t.state == state::NEEDS_CREDENTIALS {
        "The gateway waits for your login."
    } else {
        ""
    };
    column![
        row![
            text("Connecting").size(16).style(style::heading),
            text(total).size(13).style(style::muted)
        ]
        .spacing(10)
        .align_y(Alignment::Center),
        col,
        text(waiting).size(13)
    ]
    .spacing(8)
    .into()
}

/// The steps of "Check the tunnel": name, outcome, the helper's sentence.
fn check_box(c: &Check) -> Element<'_, Message> {
    let title = text("Check the tunnel").size(16).width(Length::Fill);
    let head = if matches!(c, Check::Running) {
        row![title]
    } else {
        row![
            title,
            button(text("Hide").size(12))
                .style(button::secondary)
                .padding([2, 8])
                .on_press(Message::HideCheck)
        ]
        .align_y(Alignment::Center)
    };
    let mut col = column![head].spacing(4);
    match c {
        Check::Running => {
            col = col.push(
                text("Testing traffic, a host behind the tunnel, DNS, the path MTU and a captive portal (about 15 s)…")
                    .size(13)
                    .style(style::muted),
            );
        }
        Check::Failed(m) => {
            col = col.push(text(m.clone()).size(13).style(text::danger));
        }
        Check::Done(steps) => {
            for s in steps {
                let outcome = text(match s.outcome.as_str() {
                    "ok" => "ok",
                    "failed" => "failed",
                    _ => "skipped",
                })
                .size(13)
                .width(Length::Fixed(60.0))
                .style(match s.outcome.as_str() {
                    "ok" => text::success,
                    "failed" => text::danger,
                    _ => style::muted,
                });
                col = col.push(
                    row![
                        text(check_label(&s.name))
                            .size(13)
                            .width(Length::Fixed(170.0)),
                        outcome,
                        text(s.detail.clone()).size(13).width(Length::Fill),
                    ]
                    .spacing(8),
                );
            }
        }
    }
    // At most a third of the pane: the address, the SA table and the log stay in view.
    // (Room on the right for the scroll bar.)
    container(scrollable(col.padding(iced::Padding::ZERO.right(14))).width(Length::Fill))
        .padding(12)
        .width(Length::Fill)
        .max_height(170.0)
        .style(style::notice)
        .into()
}

fn details<'a>(t: &'a Tunnel, l: &'a Live, now: Instant, version: u8) -> Element<'a, Message> {
    let (ike_label, ike_value) = ike_row(version, &t.ike_proposal);
    let uptime = l
        .connected_since
        .map(|s| elapsed(now.saturating_duration_since(s)))
        .unwrap_or_default();
    let (rx, tx) = l
        .traffic
        .map(|(_, t)| (t.rx_bytes as f64, t.tx_bytes as f64))
        .unwrap_or_default();
    let info = column![
        kv("Address", t.virtual_ip.clone()),
        kv("DNS", t.dns.join(", ")),
        kv("Routes", t.routes.join(", ")),
        kv("Protection", protection_summary(&t.protection)),
        kv("Uptime", uptime),
        kv(
            "Received",
            format!("{}  ({}/s)", bytes(rx), bytes(l.rates.0))
        ),
        kv("Sent", format!("{}  ({}/s)", bytes(tx), bytes(l.rates.1))),
        kv(ike_label, ike_value),
    ]
    .spacing(4);
    let head = |s: &'a str, w: f32| text(s).size(12).style(style::muted).width(Length::Fixed(w));
    const W: [f32; 8] = [84.0, 84.0, 120.0, 110.0, 120.0, 70.0, 80.0, 80.0];
    let mut sas = column![row![
        head("SPI in", W[0]),
        head("SPI out", W[1]),
        head("ESP", W[2]),
        head("Local", W[3]),
        head("Remote", W[4]),
        head("Lifetime", W[5]),
        head("In", W[6]),
        head("Out", W[7]),
    ]]
    .spacing(4);
    for s in &t.sas {
        let x = l
            .per_sa
            .iter()
            .find(|x| x.spi_in == s.spi_in)
            .copied()
            .unwrap_or_default();
        let cell = |v: String, w: f32| {
            text(v)
                .size(12)
                .font(Font::MONOSPACE)
                .width(Length::Fixed(w))
        };
        sas = sas.push(row![
            cell(format!("{:08x}", s.spi_in), W[0]),
            cell(format!("{:08x}", s.spi_out), W[1]),
            cell(
                format!(
                    "{}{}",
                    s.proposal,
                    if s.udp_encapsulation { " udp" } else { "" }
                ),
                W[2]
            ),
            cell(s.local_ts.clone(), W[3]),
            cell(s.remote_ts.clone(), W[4]),
            cell(format!("{}s", s.lifetime_secs), W[5]),
            cell(
                format!("{} / {}", bytes(x.in_bytes as f64), x.in_packets),
                W[6]
            ),
            cell(
                format!("{} / {}", bytes(x.out_bytes as f64), x.out_packets),
                W[7]
            ),
        ]);
    }
    column![
        info,
        text("Security associations").size(16).style(style::heading),
        sas,
        space().height(4)
    ]
    .spacing(10)
    .into()
}

pub fn log_filter_id() -> iced::widget::Id {
    iced::widget::Id::new("connection-log-filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helpers_version_comes_before_the_profiles() {
        let mut tun = t("connected", "established");
        assert_eq!(tunnel_version(&tun, 1), 1, "an older helper: the profile's");
        tun.ike_version = 2;
        assert_eq!(tunnel_version(&tun, 1), 2);
        tun.ike_version = 7;
        assert_eq!(
            tunnel_version(&tun, 2),
            2,
            "nonsense from the bus is ignored"
        );
    }

    #[test]
    fn the_ike_sa_row_says_the_version() {
        assert_eq!(
            ike_row(2, "aes128-sha256-modp2048"),
            ("IKE SA", "IKEv2 aes128-sha256-modp2048".to_string())
        );
        assert_eq!(ike_row(1, "3des-sha1-modp1024").0, "Phase 1");
        assert_eq!(ike_row(0, "x"), ("Phase 1", "x".to_string()));
    }
    use postern_frontend::FailureKind;

    fn t(state: &str, phase: &str) -> Tunnel {
        Tunnel {
            profile: "office".into(),
            state: state.into(),
            phase: phase.into(),
            virtual_ip: "10.200.0.5".into(),
            ..Tunnel::default()
        }
    }

    #[test]
    fn a_connect_goes_through_its_phases_to_connected() {
        let mut l = Live::default();
        let t0 = Instant::now();
        assert_eq!(l.apply(t("connecting", "resolving"), t0), None);
        assert_eq!(l.started, Some(t0));
        assert_eq!(
            l.apply(t("connecting", "phase1"), t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(l.phase_since, Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            l.apply(t("connected", "established"), t0 + Duration::from_secs(2)),
            Some(Change::Connected {
                address: "10.200.0.5".into()
            })
        );
        assert_eq!(l.connected_since, Some(t0 + Duration::from_secs(2)));
        assert_eq!(
            l.apply(t("reconnecting", "phase1"), t0 + Duration::from_secs(9)),
            Some(Change::Reconnecting)
        );
        assert_eq!(
            l.apply(t("connected", "established"), t0 + Duration::from_secs(10)),
            Some(Change::Reconnected {
                address: "10.200.0.5".into()
            })
        );
        assert_eq!(
            l.apply(t("disconnected", ""), t0 + Duration::from_secs(11)),
            Some(Change::Disconnected)
        );
    }

    #[test]
    fn a_failure_carries_its_kind_and_a_drop_is_a_drop() {
        let mut l = Live::default();
        let now = Instant::now();
        let _ = l.apply(t("connecting", "phase1"), now);
        let mut f = t("failed", "phase1");
        f.last_error = Some(Fail::new(
            FailureKind::AuthenticationFailed,
            "authentication failed (pre-shared key mismatch?)",
        ));
        match l.apply(f, now) {
            Some(Change::Failed(f)) => assert_eq!(f.kind, FailureKind::AuthenticationFailed),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.shown_failure().map(|f| f.kind),
            Some(FailureKind::AuthenticationFailed)
        );
        // A new attempt clears what is shown.
        let _ = l.apply(t("connecting", "resolving"), now);
        assert!(l.shown_failure().is_none());
        let mut d = t("failed", "established");
        d.last_error = Some(Fail::new(
            FailureKind::DroppedByPeer,
            "the gateway deleted the SA",
        ));
        assert_eq!(l.apply(d, now), Some(Change::Dropped));
    }

    #[test]
    fn rates_come_from_two_readings() {
        let mut l = Live::default();
        let t0 = Instant::now();
        let tr = |rx, tx| Traffic {
            rx_bytes: rx,
            tx_bytes: tx,
            ..Traffic::default()
        };
        l.set_traffic(tr(1000, 500), vec![], t0);
        assert_eq!(l.rates, (0.0, 0.0));
        l.set_traffic(tr(3000, 1500), vec![], t0 + Duration::from_secs(2));
        assert_eq!(l.rates, (1000.0, 500.0));
        assert_eq!(bytes(1500.0), "1.5 kB");
        assert_eq!(elapsed(Duration::from_secs(3725)), "1h 02m 05s");
    }

    #[test]
    fn diagnostics_carry_profile_sas_and_log_but_no_secret() {
        let mut l = Live::default();
        let mut x = t("connected", "established");
        x.sas = vec![postern_dbus::interface::SaInfo {
            spi_in: 0xc0ffee01,
            spi_out: 0x0badf00d,
            proposal: "aes128-sha256".into(),
            mode: "tunnel".into(),
            ..Default::default()
        }];
        let _ = l.apply(x, Instant::now());
        l.push_log("phase1 established".into());
        let d = diagnostics(
            "office",
            "name = \"office\"\ngateway = \"192.0.2.1\"\n",
            Some(&l),
        );
        assert!(d.contains("gateway = \"192.0.2.1\""));
        assert!(d.contains("c0ffee01") && d.contains("0badf00d"));
        assert!(d.contains("phase1 established"));
        assert!(!d.to_lowercase().contains("psk ="));
    }

    #[test]
    fn protection_in_a_few_words() {
        assert_eq!(protection_summary(&[]), "none");
        let split = vec![
            "kill switch on: the tunnel's networks (10.77.0.0/24) only through it; DNS only to 10.77.0.53"
                .to_string(),
        ];
        assert_eq!(
            protection_summary(&split),
            "kill switch on (the tunnel's networks (10.77.0.0/24) only through it)"
        );
        let full = vec![
            "kill switch on: nothing leaves outside the tunnel".to_string(),
            "IPv6 blocked while connected: the tunnel carries IPv4 only".to_string(),
        ];
        assert_eq!(
            protection_summary(&full),
            "kill switch on (nothing leaves outside the tunnel); IPv6 blocked (the tunnel carries IPv4 only)"
        );
        assert_eq!(
            protection_summary(&full[1..]),
            "IPv6 blocked (the tunnel carries IPv4 only)"
        );
    }
}
