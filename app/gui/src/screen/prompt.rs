//! The credentials dialog: the gateway's XAuth question (user name, password,
//! passcode, next PIN; its message shown), or the pre-shared key a connect needs.
//! "Remember" stores the password (or the PSK) in the keyring; a one-time passcode or
//! PIN is never remembered.

use iced::widget::{button, checkbox, column, container, row, space, text, text_input};
use iced::{Element, Length};
use postern_dbus::interface::answer_key;
use postern_dbus::profile::Secret;

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The gateway's XAuth question: the fields (keys of `answer_key`) and its text.
    Xauth {
        fields: Vec<String>,
        message: String,
    },
    /// The profile's pre-shared key (not in the keyring).
    Psk,
}

#[derive(Debug, Clone)]
pub enum Message {
    Input(usize, String),
    Remember(bool),
    Submit,
    Cancel,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Answers for XAuth: (answer key, value).
    Answer {
        profile: String,
        answers: Vec<(String, Secret)>,
        remember_password: bool,
    },
    /// The PSK for a connect.
    Psk {
        profile: String,
        psk: Secret,
        remember: bool,
    },
    Cancel {
        profile: String,
    },
}

#[derive(Debug, Clone)]
pub struct State {
    pub profile: String,
    pub ask: Ask,
    /// One value per field (for `Psk`: one).
    values: Vec<String>,
    pub remember: bool,
    /// Why Postern asks although something may be stored (a locked keyring).
    pub note: Option<String>,
}

/// A field's label.
pub fn label(field: &str) -> &str {
    match field {
        answer_key::USERNAME => "User name",
        answer_key::PASSWORD => "Password",
        answer_key::PASSCODE => "Passcode",
        answer_key::NEXT_PIN => "Next PIN",
        answer_key::ANSWER => "Answer",
        other => other,
    }
}

impl State {
    /// `username`: the profile's XAuth user, filled in when asked.
    pub fn new(profile: &str, ask: Ask, username: Option<&str>) -> State {
        let values = match &ask {
            Ask::Xauth { fields, .. } => fields
                .iter()
                .map(|f| {
                    if f == answer_key::USERNAME {
                        username.unwrap_or_default().to_string()
                    } else {
                        String::new()
                    }
                })
                .collect(),
            Ask::Psk => vec![String::new()],
        };
        State {
            profile: profile.to_string(),
            ask,
            values,
            remember: false,
            note: None,
        }
    }

    fn fields(&self) -> Vec<&str> {
        match &self.ask {
            Ask::Xauth { fields, .. } => fields.iter().map(String::as_str).collect(),
            Ask::Psk => vec!["psk"],
        }
    }

    /// Whether "remember" means anything (a password or a PSK is asked).
    pub fn can_remember(&self) -> bool {
        match &self.ask {
            Ask::Xauth { fields, .. } => fields.iter().any(|f| f == answer_key::PASSWORD),
            Ask::Psk => true,
        }
    }

    /// The index of the first empty field (to focus), else 0.
    pub fn first_empty(&self) -> usize {
        self.values.iter().position(String::is_empty).unwrap_or(0)
    }

    pub fn complete(&self) -> bool {
        self.values.iter().all(|v| !v.is_empty())
    }

    pub fn update(&mut self, message: Message) -> Option<Event> {
        match message {
            Message::Input(i, v) => {
                if let Some(slot) = self.values.get_mut(i) {
                    *slot = v;
                }
                None
            }
            Message::Remember(on) => {
                self.remember = on && self.can_remember();
                None
            }
            Message::Submit => {
                if !self.complete() {
                    return None;
                }
                let values = std::mem::take(&mut self.values);
                Some(match &self.ask {
                    Ask::Psk => Event::Psk {
                        profile: self.profile.clone(),
                        psk: Secret::new(values.into_iter().next().unwrap_or_default()),
                        remember: self.remember,
                    },
                    Ask::Xauth { fields, .. } => Event::Answer {
                        profile: self.profile.clone(),
                        answers: fields
                            .iter()
                            .cloned()
                            .zip(values.into_iter().map(Secret::new))
                            .collect(),
                        remember_password: self.remember,
                    },
                })
            }
            Message::Cancel => Some(Event::Cancel {
                profile: self.profile.clone(),
            }),
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let (title, intro) = match &self.ask {
            Ask::Xauth { message, .. } => (
                format!("Log in to {}", self.profile),
                if message.is_empty() {
                    "The gateway asks you to log in.".to_string()
                } else {
                    message.clone()
                },
            ),
            Ask::Psk if self.note.is_some() => (
                format!("Pre-shared key for {}", self.profile),
                "Your admin gave it to you with the gateway's address.".to_string(),
            ),
            Ask::Psk => (
                format!("Pre-shared key for {}", self.profile),
                "The profile's pre-shared key is not in your keyring. Your admin gave it to you with the gateway's address."
                    .to_string(),
            ),
        };
        let mut col = column![text(title).size(20)].spacing(12);
        if let Some(n) = &self.note {
            col = col.push(text(n.clone()).width(Length::Fill).style(text::danger));
        }
        col = col.push(text(intro).width(Length::Fill));
        for (i, f) in self.fields().into_iter().enumerate() {
            let secret = f != answer_key::USERNAME;
            let lbl = if f == "psk" {
                "Pre-shared key"
            } else {
                label(f)
            };
            col = col.push(
                row![
                    text(lbl).width(Length::Fixed(120.0)),
                    text_input("", &self.values[i])
                        .id(field_id(i))
                        .secure(secret)
                        .on_input(move |v| Message::Input(i, v))
                        .on_submit(Message::Submit)
                        .padding(6)
                ]
                .spacing(12)
                .align_y(iced::Alignment::Center),
            );
        }
        if self.can_remember() {
            let what = match self.ask {
                Ask::Psk => "Remember the key in my keyring",
                Ask::Xauth { .. } => "Remember the password in my keyring",
            };
            col = col.push(
                checkbox(self.remember)
                    .label(what)
                    .on_toggle(Message::Remember),
            );
        }
        col = col.push(
            row![
                space::horizontal(),
                button(text("Cancel"))
                    .on_press(Message::Cancel)
                    .style(button::secondary)
                    .padding([6, 16]),
                button(text(match self.ask {
                    Ask::Psk => "Connect",
                    Ask::Xauth { .. } => "Log in",
                }))
                .on_press_maybe(self.complete().then_some(Message::Submit))
                .style(button::primary)
                .padding([6, 16]),
            ]
            .spacing(8),
        );
        container(col)
            .padding(20)
            .width(Length::Fixed(460.0))
            .style(container::bordered_box)
            .into()
    }
}

pub fn field_id(i: usize) -> iced::widget::Id {
    iced::widget::Id::from(format!("prompt-field-{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xauth(fields: &[&str]) -> State {
        State::new(
            "office",
            Ask::Xauth {
                fields: fields.iter().map(|s| s.to_string()).collect(),
                message: "Enter your token".into(),
            },
            Some("alice"),
        )
    }

    #[test]
    fn answers_go_back_in_the_fields_order_with_the_user_filled_in() {
        let mut s = xauth(&["username", "password"]);
        assert_eq!(s.first_empty(), 1);
        assert!(s.update(Message::Submit).is_none(), "incomplete");
        let _ = s.update(Message::Input(1, "pw".into()));
        let _ = s.update(Message::Remember(true));
        match s.update(Message::Submit) {
            Some(Event::Answer {
                profile,
                answers,
                remember_password,
            }) => {
                assert_eq!(profile, "office");
                let a: Vec<(String, String)> = answers
                    .into_iter()
                    .map(|(k, v)| (k, v.expose().to_string()))
                    .collect();
                assert_eq!(
                    a,
                    vec![
                        ("username".into(), "alice".into()),
                        ("password".into(), "pw".into())
                    ]
                );
                assert!(remember_password);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_passcode_is_never_remembered() {
        let mut s = xauth(&["passcode"]);
        assert!(!s.can_remember());
        let _ = s.update(Message::Remember(true));
        assert!(!s.remember);
        let _ = s.update(Message::Input(0, "123456".into()));
        match s.update(Message::Submit) {
            Some(Event::Answer {
                remember_password, ..
            }) => assert!(!remember_password),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escape_and_cancel_say_which_profile() {
        let mut s = State::new("lab", Ask::Psk, None);
        match s.update(Message::Cancel) {
            Some(Event::Cancel { profile }) => assert_eq!(profile, "lab"),
            other => panic!("{other:?}"),
        }
    }
}
