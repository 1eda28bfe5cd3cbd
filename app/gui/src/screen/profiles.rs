//! The profile list: name, gateway and the tunnel's state per row, with its own
//! Connect / Disconnect button; search; add, duplicate, rename, delete (asks first).
//! File and keyring work is the app's: this screen only says what the user asked.

use std::collections::HashMap;

use iced::widget::{button, column, container, row, scrollable, space, text, text_input, tooltip};
use iced::{Alignment, Element, Length};
use postern_frontend::watcher::Tunnel;

use crate::style;

/// One profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// The gateway, or why the file does not load.
    pub gateway: Result<String, String>,
    /// A system profile (/etc/postern/profiles), tagged "system" in its row.
    pub system: bool,
    /// Why the helper refuses it (this machine's policy, a system file's mode): the
    /// helper's sentence, shown under the name with a mark instead of the gateway.
    pub refused: Option<String>,
    /// The profile's `ike_version` (0: not known, e.g. a system profile's).
    pub ike_version: u8,
}

impl Entry {
    /// One of the user's profiles, not (yet) known to be refused.
    pub fn user(name: &str, gateway: Result<String, String>) -> Entry {
        Entry {
            name: name.to_string(),
            gateway,
            system: false,
            refused: None,
            ike_version: 1,
        }
    }

    /// The selected row is a system profile (not duplicated, renamed or deleted here).
    pub fn is_system(name: &str) -> bool {
        name.starts_with(postern_frontend::watcher::SYSTEM_PREFIX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    Delete(String),
    Rename {
        from: String,
        to: String,
        error: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum Message {
    Search(String),
    Select(String),
    /// The row's Connect / Disconnect button.
    Toggle(String),
    Add,
    Import,
    Settings,
    Duplicate,
    Rename,
    RenameInput(String),
    RenameConfirm,
    Delete,
    DeleteConfirm,
    CloseDialog,
    /// Up/Down arrows: the next or previous visible row.
    Move(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connect(String),
    Disconnect(String),
    New,
    Import,
    Settings,
    Duplicate(String),
    Rename { from: String, to: String },
    Delete(String),
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub entries: Vec<Entry>,
    pub search: String,
    pub selected: Option<String>,
    pub dialog: Option<Dialog>,
}

/// The state word shown in a row.
pub fn state_label(t: Option<&Tunnel>) -> &'static str {
    match t.map(|t| t.state.as_str()) {
        Some("connecting") => "Connecting",
        Some("needs-credentials") => "Waiting for login",
        Some("connected") => "Connected",
        Some("reconnecting") => "Reconnecting",
        Some("disconnecting") => "Disconnecting",
        Some("failed") => "Failed",
        _ => "Disconnected",
    }
}

/// The state as the connection pane says it: what the tunnel is doing beyond its
/// state when the helper says ("Reconnecting: network changed", "Resumed: checking
/// the gateway"), else the state word.
pub fn state_sentence(t: Option<&Tunnel>) -> String {
    match t.map(|t| t.detail.as_str()).filter(|d| !d.is_empty()) {
        Some(d) => {
            let mut c = d.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
        None => state_label(t).to_string(),
    }
}

impl State {
    pub fn set_entries(&mut self, entries: Vec<Entry>) {
        self.entries = entries;
        if self
            .selected
            .as_ref()
            .is_none_or(|s| !self.entries.iter().any(|e| &e.name == s))
        {
            self.selected = self.entries.first().map(|e| e.name.clone());
        }
    }

    /// The rows the search lets through.
    pub fn visible(&self) -> Vec<&Entry> {
        let q = self.search.trim().to_lowercase();
        self.entries
            .iter()
            .filter(|e| {
                q.is_empty()
                    || e.name.to_lowercase().contains(&q)
                    || e.gateway
                        .as_ref()
                        .is_ok_and(|g| g.to_lowercase().contains(&q))
            })
            .collect()
    }

    pub fn update(&mut self, message: Message, tunnels: &HashMap<String, Tunnel>) -> Option<Event> {
        let mine = self
            .selected
            .as_deref()
            .is_some_and(|s| !Entry::is_system(s));
        if !mine
            && matches!(
                message,
                Message::Duplicate | Message::Rename | Message::Delete
            )
        {
            return None;
        }
        match message {
            Message::Search(s) => {
                self.search = s;
                let vis: Vec<String> = self.visible().iter().map(|e| e.name.clone()).collect();
                if self.selected.as_ref().is_none_or(|s| !vis.contains(s)) {
                    self.selected = vis.into_iter().next();
                }
                None
            }
            Message::Select(n) => {
                self.selected = Some(n);
                None
            }
            Message::Move(d) => {
                let vis: Vec<String> = self.visible().iter().map(|e| e.name.clone()).collect();
                if vis.is_empty() {
                    return None;
                }
                let cur = self
                    .selected
                    .as_ref()
                    .and_then(|s| vis.iter().position(|v| v == s));
                let next = match cur {
                    None => 0,
                    Some(i) => (i as i64 + d as i64).clamp(0, vis.len() as i64 - 1) as usize,
                };
                self.selected = Some(vis[next].clone());
                None
            }
            Message::Toggle(n) => {
                self.selected = Some(n.clone());
                if tunnels.get(&n).is_some_and(Tunnel::is_active) {
                    Some(Event::Disconnect(n))
                } else {
                    Some(Event::Connect(n))
                }
            }
            Message::Add => Some(Event::New),
            Message::Import => Some(Event::Import),
            Message::Settings => Some(Event::Settings),
            Message::Duplicate => self.selected.clone().map(Event::Duplicate),
            Message::Rename => {
                if let Some(s) = &self.selected {
                    self.dialog = Some(Dialog::Rename {
                        from: s.clone(),
                        to: s.clone(),
                        error: None,
                    });
                }
                None
            }
            Message::RenameInput(v) => {
                if let Some(Dialog::Rename { to, error, .. }) = &mut self.dialog {
                    *to = v;
                    *error = postern_frontend::profiles::check_name(to.trim())
                        .err()
                        .map(|f| f.message);
                }
                None
            }
            Message::RenameConfirm => match self.dialog.take() {
                Some(Dialog::Rename { from, to, error }) => {
                    let to = to.trim().to_string();
                    if error.is_some() || to == from {
                        self.dialog = (to != from).then_some(Dialog::Rename { from, to, error });
                        None
                    } else if self.entries.iter().any(|e| e.name == to) {
                        self.dialog = Some(Dialog::Rename {
                            from,
                            error: Some(format!("a profile named {to} exists")),
                            to,
                        });
                        None
                    } else {
                        self.selected = Some(to.clone());
                        Some(Event::Rename { from, to })
                    }
                }
                other => {
                    self.dialog = other;
                    None
                }
            },
            Message::Delete => {
                self.dialog = self.selected.clone().map(Dialog::Delete);
                None
            }
            Message::DeleteConfirm => match self.dialog.take() {
                Some(Dialog::Delete(n)) => Some(Event::Delete(n)),
                other => {
                    self.dialog = other;
                    None
                }
            },
            Message::CloseDialog => {
                self.dialog = None;
                None
            }
        }
    }

    pub fn view<'a>(
        &'a self,
        tunnels: &'a HashMap<String, Tunnel>,
        focused: Option<&'a str>,
    ) -> Element<'a, Message> {
        let search = text_input("Search profiles", &self.search)
            .id(search_id())
            .on_input(Message::Search)
            .padding(6);
        let mut list = column![].spacing(2);
        let visible = self.visible();
        if visible.is_empty() {
            list = list.push(
                container(text(if self.entries.is_empty() {
                    "No profiles yet. Add one with the details your admin gave you, or import the file you have."
                } else {
                    "No profile matches."
                }))
                .padding(12),
            );
        }
        for e in visible {
            let t = tunnels.get(&e.name);
            let active = t.is_some_and(Tunnel::is_active);
            let selected = self.selected.as_deref() == Some(e.name.as_str());
            // The second line: a system profile's tag; "Refused" with a mark when the
            // helper refuses it (its sentence in a tooltip, and in full in the pane);
            // else the gateway, or why the file does not load.
            let mut second = row![].spacing(6).align_y(Alignment::Center);
            if e.system {
                second = second.push(style::system_tag());
            }
            if e.refused.is_some() {
                second = second.push(
                    row![
                        style::refused_icon(),
                        text("Refused").size(13).style(text::danger)
                    ]
                    .spacing(5)
                    .align_y(Alignment::Center),
                );
            }
            if e.refused.is_none() {
                second = second.push(match &e.gateway {
                    Ok(g) => text(g.clone())
                        .size(13)
                        .style(style::muted)
                        .wrapping(text::Wrapping::None),
                    Err(m) => text(m.clone())
                        .size(13)
                        .style(text::danger)
                        .wrapping(text::Wrapping::None),
                });
            }
            let second: Element<'a, Message> = match &e.refused {
                Some(why) => tooltip(
                    container(second).clip(true),
                    container(text(why.clone()).size(13))
                        .padding(8)
                        .max_width(420)
                        .style(container::bordered_box),
                    tooltip::Position::Bottom,
                )
                .into(),
                None => container(second).clip(true).into(),
            };
            // A system profile shows its file's name; the tag says whose it is.
            let shown = e
                .name
                .strip_prefix(postern_frontend::watcher::SYSTEM_PREFIX)
                .unwrap_or(&e.name);
            let title = text(shown.to_string())
                .size(15)
                .wrapping(text::Wrapping::None);
            let state = text(state_label(t))
                .size(13)
                .style(style::state_text(t.map(|t| t.state.as_str())));
            let key = format!("toggle:{}", e.name);
            let toggle = style::focus_button(
                // 14 px: "Disconnect" fits the row's button at scale 1.
                text(if active { "Disconnect" } else { "Connect" })
                    .size(14)
                    .align_x(iced::alignment::Horizontal::Center)
                    .width(Length::Fill),
                focused == Some(key.as_str()),
                if active {
                    button::secondary
                } else {
                    button::primary
                },
            )
            .on_press(Message::Toggle(e.name.clone()))
            .width(Length::Fixed(104.0));
            let toggle = container(toggle).id(connect_id(&e.name));
            let body = row![
                column![
                    row![
                        container(title).clip(true).width(Length::Fill),
                        style::dot(t.map(|t| t.state.as_str())),
                        state
                    ]
                    .spacing(6)
                    .align_y(Alignment::Center),
                    second
                ]
                .spacing(2)
                .width(Length::Fill),
                toggle
            ]
            .spacing(10)
            .align_y(Alignment::Center);
            list = list.push(
                button(body)
                    .on_press(Message::Select(e.name.clone()))
                    .padding([8, 10])
                    .width(Length::Fill)
                    .height(Length::Fixed(ROW_HEIGHT))
                    .style(move |th, st| style::row(th, st, selected)),
            );
        }
        let b = |label: &'a str, key: &'a str, msg: Option<Message>| {
            style::focus_button(
                text(label).size(13),
                focused == Some(key),
                button::secondary,
            )
            .on_press_maybe(msg)
            .padding([4, 8])
        };
        // A system profile is the administrator's: not duplicated, renamed or deleted here.
        let has = self
            .selected
            .as_deref()
            .is_some_and(|s| !Entry::is_system(s));
        let toolbar = column![
            row![
                container(b("Add", "add", Some(Message::Add))).id(style::button_id("add")),
                container(b("Import…", "import", Some(Message::Import)))
                    .id(style::button_id("import")),
                space::horizontal(),
                b("Settings", "settings", Some(Message::Settings)),
            ]
            .spacing(6),
            row![
                b("Duplicate", "duplicate", has.then_some(Message::Duplicate)),
                b("Rename", "rename", has.then_some(Message::Rename)),
                b("Delete", "delete", has.then_some(Message::Delete)),
            ]
            .spacing(6)
        ]
        .spacing(6);
        column![search, scrollable(list).height(Length::Fill), toolbar]
            .spacing(10)
            .padding(12)
            .into()
    }

    /// The open dialog (delete confirmation, rename), if any.
    pub fn dialog(&self, focused: Option<&str>) -> Option<Element<'_, Message>> {
        let d = self.dialog.as_ref()?;
        let content: Element<'_, Message> = match d {
            Dialog::Delete(n) => column![
                text(format!("Delete {n}?")).size(20),
                text("The profile and the secrets Postern keeps for it in your keyring are removed. This cannot be undone."),
                row![
                    space::horizontal(),
                    style::focus_button(text("Cancel"), focused == Some("dialog-cancel"), button::secondary)
                        .on_press(Message::CloseDialog),
                    style::focus_button(text("Delete"), focused == Some("dialog-ok"), button::danger)
                        .on_press(Message::DeleteConfirm),
                ]
                .spacing(8)
            ]
            .spacing(12)
            .into(),
            Dialog::Rename { from, to, error } => {
                let mut c = column![
                    text(format!("Rename {from}")).size(20),
                    text_input("new name", to)
                        .id(rename_id())
                        .on_input(Message::RenameInput)
                        .on_submit(Message::RenameConfirm)
                        .padding(6),
                ]
                .spacing(12);
                if let Some(e) = error {
                    c = c.push(text(e.clone()).size(13).style(text::danger));
                }
                c.push(
                    row![
                        space::horizontal(),
                        style::focus_button(text("Cancel"), focused == Some("dialog-cancel"), button::secondary)
                            .on_press(Message::CloseDialog),
                        style::focus_button(text("Rename"), focused == Some("dialog-ok"), button::primary)
                            .on_press_maybe(error.is_none().then_some(Message::RenameConfirm)),
                    ]
                    .spacing(8),
                )
                .into()
            }
        };
        Some(
            container(content)
                .padding(20)
                .width(Length::Fixed(440.0))
                .style(container::bordered_box)
                .into(),
        )
    }
}

/// Height of a profile row (the layout the desktop test clicks by).
pub const ROW_HEIGHT: f32 = 56.0;

/// The container around a row's Connect/Disconnect button.
pub fn connect_id(name: &str) -> iced::widget::Id {
    iced::widget::Id::from(format!("connect:{name}"))
}

pub fn search_id() -> iced::widget::Id {
    iced::widget::Id::new("profiles-search")
}

pub fn rename_id() -> iced::widget::Id {
    iced::widget::Id::new("profiles-rename")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State::default();
        s.set_entries(vec![
            Entry::user("lab", Ok("10.0.0.1".into())),
            Entry::user("office", Ok("vpn.example.com".into())),
        ]);
        s
    }

    #[test]
    fn search_filters_by_name_and_gateway_and_keeps_a_visible_selection() {
        let mut s = state();
        let none = HashMap::new();
        assert_eq!(s.selected.as_deref(), Some("lab"));
        let _ = s.update(Message::Search("example".into()), &none);
        assert_eq!(s.visible().len(), 1);
        assert_eq!(s.selected.as_deref(), Some("office"));
        let _ = s.update(Message::Search(String::new()), &none);
        let _ = s.update(Message::Move(-1), &none);
        assert_eq!(s.selected.as_deref(), Some("lab"));
    }

    #[test]
    fn the_row_button_connects_or_disconnects_by_the_tunnels_state() {
        let mut s = state();
        let mut t = HashMap::new();
        assert_eq!(
            s.update(Message::Toggle("office".into()), &t),
            Some(Event::Connect("office".into()))
        );
        t.insert(
            "office".to_string(),
            Tunnel {
                profile: "office".into(),
                state: "connecting".into(),
                ..Tunnel::default()
            },
        );
        assert_eq!(
            s.update(Message::Toggle("office".into()), &t),
            Some(Event::Disconnect("office".into()))
        );
        if let Some(x) = t.get_mut("office") {
            x.state = "failed".into();
        }
        assert_eq!(
            s.update(Message::Toggle("office".into()), &t),
            Some(Event::Connect("office".into()))
        );
    }

    #[test]
    fn delete_asks_first() {
        let mut s = state();
        let none = HashMap::new();
        assert_eq!(s.update(Message::Delete, &none), None);
        assert_eq!(s.dialog, Some(Dialog::Delete("lab".into())));
        assert_eq!(s.update(Message::CloseDialog, &none), None);
        assert_eq!(s.dialog, None);
        let _ = s.update(Message::Delete, &none);
        assert_eq!(
            s.update(Message::DeleteConfirm, &none),
            Some(Event::Delete("lab".into()))
        );
    }

    #[test]
    fn rename_checks_the_new_name() {
        let mut s = state();
        let none = HashMap::new();
        let _ = s.update(Message::Rename, &none);
        let _ = s.update(Message::RenameInput("my lab".into()), &none);
        assert_eq!(s.update(Message::RenameConfirm, &none), None, "a space");
        let _ = s.update(Message::RenameInput("office".into()), &none);
        assert_eq!(s.update(Message::RenameConfirm, &none), None, "taken");
        let _ = s.update(Message::RenameInput("lab2".into()), &none);
        assert_eq!(
            s.update(Message::RenameConfirm, &none),
            Some(Event::Rename {
                from: "lab".into(),
                to: "lab2".into()
            })
        );
    }
}
