//! The app's small dialogs: "Export…" (which format; secrets never written), the
//! choice of connection when an imported file holds several, the fallback path field
//! used when the desktop has no file dialog portal (see `crate::portal`), and the
//! settings ("Start hidden in the tray", "Start at login"). File work itself (reading,
//! importing, writing) is the app's.

use iced::widget::{button, checkbox, column, container, pick_list, row, space, text, text_input};
use iced::{Element, Length};
use postern_frontend::export::Format as ExportFormat;
use postern_frontend::import::Imported;

use crate::settings::Settings;
use crate::style;

/// What a fallback path field is for.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// Import the file at the path.
    Import,
    /// Write `contents` there; `done` is the sentence said afterwards ("Exported …").
    Save { contents: String, done: String },
}

#[derive(Debug, Clone)]
pub enum Dialog {
    /// Export profile `profile`.
    Export {
        profile: String,
        format: ExportFormat,
    },
    /// The file holds several connections: which one.
    Choose { file: String, found: Vec<Imported> },
    /// No file dialog on this desktop: type the path.
    Path {
        purpose: Purpose,
        path: String,
        /// Why there is no file dialog (shown small).
        why: String,
        error: Option<String>,
    },
    /// The app's settings (saved on each change).
    Settings {
        settings: Settings,
        error: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub enum Message {
    Format(ExportFormat),
    /// Keyboard: the next format.
    NextFormat,
    /// Export: "Save as…".
    Export,
    /// Pick connection `i` of the file.
    Pick(usize),
    PathInput(String),
    PathConfirm,
    StartHidden(bool),
    StartAtLogin(bool),
    ConnectAtLogin(bool),
    Close,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Ask where to save `profile` as `format`.
    Export {
        profile: String,
        format: ExportFormat,
    },
    /// Open the editor on this connection of `file`.
    Picked {
        file: String,
        imported: Box<Imported>,
    },
    /// The path field was confirmed.
    Path {
        purpose: Purpose,
        path: String,
    },
    /// Save these settings.
    Settings(Settings),
    Close,
}

/// A user's name for an export format.
pub fn export_label(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Toml => "Postern profile (.toml)",
        ExportFormat::Pcf => "Cisco VPN Client (.pcf)",
        ExportFormat::NmConnection => "NetworkManager, libreswan (.nmconnection)",
        ExportFormat::IpsecConf => "libreswan ipsec.conf (.conf)",
        ExportFormat::Swanctl => "strongSwan swanctl.conf (.conf)",
        ExportFormat::SheetMd => "Partner parameter sheet (Markdown)",
        ExportFormat::SheetCsv => "Partner parameter sheet (CSV)",
    }
}

/// The pick list's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice(pub ExportFormat);

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(export_label(self.0))
    }
}

/// A path in the user's home for the fallback field.
pub fn home_path(file: &str) -> String {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => std::path::Path::new(&h).join(file).display().to_string(),
        None => file.to_string(),
    }
}

impl Dialog {
    pub fn update(&mut self, m: Message) -> Option<Event> {
        match (self, m) {
            (_, Message::Close) => Some(Event::Close),
            (Dialog::Export { format, .. }, Message::Format(f)) => {
                *format = f;
                None
            }
            (Dialog::Export { format, .. }, Message::NextFormat) => {
                let all = ExportFormat::ALL;
                let i = all.iter().position(|f| f == format).unwrap_or(0);
                *format = all[(i + 1) % all.len()];
                None
            }
            (Dialog::Export { profile, format }, Message::Export) => Some(Event::Export {
                profile: profile.clone(),
                format: *format,
            }),
            (Dialog::Choose { file, found }, Message::Pick(i)) => {
                found.get(i).cloned().map(|imported| Event::Picked {
                    file: file.clone(),
                    imported: Box::new(imported),
                })
            }
            (Dialog::Path { path, error, .. }, Message::PathInput(v)) => {
                *path = v;
                *error = None;
                None
            }
            (Dialog::Path { purpose, path, .. }, Message::PathConfirm) => {
                let p = path.trim().to_string();
                (!p.is_empty()).then(|| Event::Path {
                    purpose: purpose.clone(),
                    path: p,
                })
            }
            (Dialog::Settings { settings, .. }, Message::StartHidden(on)) => {
                settings.start_hidden = on;
                Some(Event::Settings(*settings))
            }
            (Dialog::Settings { settings, .. }, Message::StartAtLogin(on)) => {
                settings.start_at_login = on;
                Some(Event::Settings(*settings))
            }
            (Dialog::Settings { settings, .. }, Message::ConnectAtLogin(on)) => {
                settings.connect_at_login = on;
                Some(Event::Settings(*settings))
            }
            _ => None,
        }
    }

    /// The dialog's controls in Tab order: (focus key, input id, message on Enter).
    pub fn controls(&self) -> Vec<(String, Option<iced::widget::Id>, Option<Message>)> {
        let mut v = Vec::new();
        match self {
            Dialog::Export { .. } => {
                v.push(("format".into(), None, Some(Message::NextFormat)));
            }
            Dialog::Choose { found, .. } => {
                for i in 0..found.len() {
                    v.push((format!("pick-{i}"), None, Some(Message::Pick(i))));
                }
            }
            Dialog::Path { .. } => v.push(("path".into(), Some(path_id()), None)),
            Dialog::Settings { settings, .. } => {
                v.push((
                    "set-hidden".into(),
                    None,
                    Some(Message::StartHidden(!settings.start_hidden)),
                ));
                v.push((
                    "set-login".into(),
                    None,
                    Some(Message::StartAtLogin(!settings.start_at_login)),
                ));
                v.push((
                    "set-autoconnect".into(),
                    None,
                    Some(Message::ConnectAtLogin(!settings.connect_at_login)),
                ));
            }
        }
        v.push(("files-cancel".into(), None, Some(Message::Close)));
        match self {
            Dialog::Export { .. } => {
                v.push(("files-ok".into(), None, Some(Message::Export)));
            }
            Dialog::Path { .. } => {
                v.push(("files-ok".into(), None, Some(Message::PathConfirm)));
            }
            Dialog::Choose { .. } | Dialog::Settings { .. } => {}
        }
        v
    }

    pub fn view<'a>(&'a self, focused: Option<&'a str>) -> Element<'a, Message> {
        let cancel = style::focus_button(
            text("Cancel"),
            focused == Some("files-cancel"),
            button::secondary,
        )
        .on_press(Message::Close);
        let content: Element<'_, Message> = match self {
            Dialog::Export { profile, format } => column![
                text(format!("Export {profile}")).size(20),
                row![
                    text("Format").width(Length::Fixed(70.0)),
                    container(
                        pick_list(
                            ExportFormat::ALL.map(Choice).to_vec(),
                            Some(Choice(*format)),
                            |c| Message::Format(c.0)
                        )
                        .width(Length::Fill)
                    )
                    .padding(2)
                    .width(Length::Fill)
                    .style(move |t| style::focus_ring(t, focused == Some("format"))),
                ]
                .spacing(12)
                .align_y(iced::Alignment::Center),
                text(
                    "Secrets are not written: the pre-shared key and passwords stay in your keyring. Give them to the other side another way."
                )
                .size(13)
                .style(style::muted),
                row![
                    space::horizontal(),
                    cancel,
                    container(
                        style::focus_button(
                            text("Save as…"),
                            focused == Some("files-ok"),
                            button::primary
                        )
                        .on_press(Message::Export)
                    )
                    .id(style::button_id("files-ok")),
                ]
                .spacing(8)
            ]
            .spacing(12)
            .into(),
            Dialog::Choose { file, found } => {
                let mut c = column![
                    text(format!("{file} holds {} connections", found.len())).size(20),
                    text("Which one do you want to import?"),
                ]
                .spacing(8);
                for (i, imp) in found.iter().enumerate() {
                    c = c.push(
                        style::focus_button(
                            text(format!("{} ({})", imp.name, imp.profile.gateway)),
                            focused == Some(format!("pick-{i}").as_str()),
                            button::secondary,
                        )
                        .on_press(Message::Pick(i))
                        .width(Length::Fill),
                    );
                }
                c.push(row![space::horizontal(), cancel]).into()
            }
            Dialog::Path {
                purpose,
                path,
                why,
                error,
            } => {
                let (title, ok) = match purpose {
                    Purpose::Import => ("Import a file", "Import"),
                    Purpose::Save { .. } => ("Save as", "Save"),
                };
                let mut c = column![
                    text(title).size(20),
                    text(format!("This desktop has no file dialog ({why}): type the file's path.")).size(13).style(style::muted),
                    text_input("/home/you/office.pcf", path)
                        .id(path_id())
                        .on_input(Message::PathInput)
                        .on_submit(Message::PathConfirm)
                        .padding(6),
                ]
                .spacing(10);
                if let Some(e) = error {
                    c = c.push(text(e.clone()).size(13).style(text::danger));
                }
                c.push(
                    row![
                        space::horizontal(),
                        cancel,
                        style::focus_button(text(ok), focused == Some("files-ok"), button::primary)
                            .on_press_maybe((!path.trim().is_empty()).then_some(Message::PathConfirm)),
                    ]
                    .spacing(8),
                )
                .into()
            }
            Dialog::Settings { settings, error } => {
                let ring = move |key: &str| focused == Some(key);
                let mut c = column![
                    text("Settings").size(20),
                    container(
                        checkbox(settings.start_hidden)
                            .label("Start hidden in the tray")
                            .on_toggle(Message::StartHidden)
                    )
                    .padding(4)
                    .style(move |t| style::focus_ring(t, ring("set-hidden"))),
                    container(
                        checkbox(settings.start_at_login)
                            .label("Start at login (in the tray)")
                            .on_toggle(Message::StartAtLogin)
                    )
                    .padding(4)
                    .style(move |t| style::focus_ring(t, ring("set-login"))),
                    container(
                        checkbox(settings.connect_at_login)
                            .label("At login, connect the profiles marked \u{201c}Connect automatically: login\u{201d}")
                            .on_toggle(Message::ConnectAtLogin)
                    )
                    .padding(4)
                    .style(move |t| style::focus_ring(t, ring("set-autoconnect"))),
                    text("Postern keeps your tunnels up from the tray; closing the window does not disconnect.")
                        .size(13)
                        .style(style::muted),
                ]
                .spacing(10);
                if let Some(e) = error {
                    c = c.push(text(e.clone()).size(13).style(text::danger));
                }
                c.push(row![
                    space::horizontal(),
                    style::focus_button(
                        text("Close"),
                        focused == Some("files-cancel"),
                        button::secondary
                    )
                    .on_press(Message::Close)
                ])
                .into()
            }
        };
        container(content)
            .padding(20)
            .width(Length::Fixed(480.0))
            .style(container::bordered_box)
            .into()
    }
}

pub fn path_id() -> iced::widget::Id {
    iced::widget::Id::new("files-path")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_hands_over_the_chosen_format() {
        let mut d = Dialog::Export {
            profile: "office".into(),
            format: ExportFormat::Toml,
        };
        assert!(d.update(Message::NextFormat).is_none());
        assert!(matches!(
            d,
            Dialog::Export {
                format: ExportFormat::Pcf,
                ..
            }
        ));
        assert!(d.update(Message::Format(ExportFormat::Pcf)).is_none());
        match d.update(Message::Export) {
            Some(Event::Export { profile, format }) => {
                assert_eq!(profile, "office");
                assert_eq!(format, ExportFormat::Pcf);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.update(Message::Close), Some(Event::Close)));
    }

    #[test]
    fn the_path_field_needs_a_path() {
        let mut d = Dialog::Path {
            purpose: Purpose::Import,
            path: String::new(),
            why: "no portal".into(),
            error: Some("old".into()),
        };
        assert!(d.update(Message::PathConfirm).is_none(), "empty");
        let _ = d.update(Message::PathInput("  /tmp/x.pcf ".into()));
        match &d {
            Dialog::Path { error, .. } => assert!(error.is_none(), "typing clears the error"),
            _ => unreachable!(),
        }
        match d.update(Message::PathConfirm) {
            Some(Event::Path {
                purpose: Purpose::Import,
                path,
            }) => assert_eq!(path, "/tmp/x.pcf"),
            other => panic!("{other:?}"),
        }
    }
}
