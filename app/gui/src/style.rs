//! Postern's look: two calm palettes (light and dark) and the few styles the screens
//! share. Colours of state: blue while connecting, green when connected, red on a
//! failure, grey otherwise (the desktop test looks for them in screenshots).

use iced::theme::Palette;
use iced::widget::{button, container, text};
use iced::{Background, Border, Color, Theme, color};

pub const LIGHT: Palette = Palette {
    background: color!(0xf6f7f9),
    text: color!(0x1f2328),
    primary: color!(0x2f6fde),
    success: color!(0x2e8b57),
    warning: color!(0xb7791f),
    danger: color!(0xc8372d),
};

pub const DARK: Palette = Palette {
    background: color!(0x1e2127),
    text: color!(0xe6e8eb),
    primary: color!(0x6ea0ff),
    success: color!(0x4cb782),
    warning: color!(0xe0b84c),
    danger: color!(0xf06a5f),
};

/// Light or dark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Light,
    Dark,
}

pub fn theme(mode: Mode) -> Theme {
    match mode {
        Mode::Light => Theme::custom("Postern Light", LIGHT),
        Mode::Dark => Theme::custom("Postern Dark", DARK),
    }
}

pub fn muted(theme: &Theme) -> text::Style {
    let p = theme.palette();
    text::Style {
        color: Some(Color { a: 0.65, ..p.text }),
    }
}

pub fn heading(theme: &Theme) -> text::Style {
    text::Style {
        color: Some(theme.palette().text),
    }
}

pub fn ok_text(theme: &Theme) -> text::Style {
    text::Style {
        color: Some(theme.palette().success),
    }
}

pub fn accent_text(theme: &Theme) -> text::Style {
    text::Style {
        color: Some(theme.palette().primary),
    }
}

/// The colour of a tunnel state word.
pub fn state_text(state: Option<&str>) -> impl Fn(&Theme) -> text::Style + use<> {
    let state = state.map(str::to_string);
    move |theme: &Theme| {
        let mut c = state_color(theme, state.as_deref());
        // Grey words a little darker than the grey dot, to stay readable.
        c.a = c.a.max(0.7);
        text::Style { color: Some(c) }
    }
}

/// The colour of a state (also the tray icon's): green connected, blue on the way,
/// red failed, grey otherwise.
pub fn state_color(theme: &Theme, state: Option<&str>) -> Color {
    let p = theme.palette();
    match state {
        Some("connected") => p.success,
        Some("connecting" | "needs-credentials" | "reconnecting" | "disconnecting") => p.primary,
        Some("failed") => p.danger,
        _ => Color { a: 0.45, ..p.text },
    }
}

/// A solid 12 px dot in the state's colour, beside the state word.
pub fn dot<'a, M: 'a>(state: Option<&str>) -> iced::Element<'a, M> {
    let state = state.map(str::to_string);
    container(iced::widget::space().width(12).height(12))
        .style(move |theme: &Theme| container::Style {
            background: Some(Background::Color(state_color(theme, state.as_deref()))),
            border: Border {
                radius: 6.0.into(),
                ..Border::default()
            },
            ..container::Style::default()
        })
        .into()
}

/// The mark of a profile this machine's policy refuses: a white "!" on a 16 px
/// disc of the danger colour (drawn, so no font needs the glyph).
pub fn refused_icon<'a, M: 'a>() -> iced::Element<'a, M> {
    container(
        iced::widget::text("!")
            .size(12)
            .font(iced::Font {
                weight: iced::font::Weight::Bold,
                ..iced::Font::DEFAULT
            })
            .color(Color::WHITE),
    )
    .center(16)
    .style(|theme: &Theme| container::Style {
        background: Some(Background::Color(theme.palette().danger)),
        border: Border {
            radius: 8.0.into(),
            ..Border::default()
        },
        ..container::Style::default()
    })
    .into()
}

/// The small "system" tag beside a system profile's name.
pub fn system_tag<'a, M: 'a>() -> iced::Element<'a, M> {
    container(iced::widget::text("system").size(11).style(muted))
        .padding([0, 5])
        .style(|theme: &Theme| container::Style {
            border: Border {
                color: theme.palette().text.scale_alpha(0.35),
                width: 1.0,
                radius: 4.0.into(),
            },
            ..container::Style::default()
        })
        .into()
}

/// A button that shows keyboard focus (iced's buttons take none: the app keeps its
/// own focus order and draws it).
pub fn focus_button<'a, M: Clone + 'a>(
    content: impl Into<iced::Element<'a, M>>,
    focused: bool,
    base: fn(&Theme, button::Status) -> button::Style,
) -> button::Button<'a, M> {
    button(content)
        .padding([6, 14])
        .style(move |theme: &Theme, status| {
            let mut s = base(theme, status);
            s.border.radius = 6.0.into();
            if focused {
                s.border = Border {
                    color: theme.palette().text,
                    width: 2.0,
                    radius: 6.0.into(),
                };
            }
            s
        })
}

/// A profile row: flat, highlighted when selected or hovered.
pub fn row(theme: &Theme, status: button::Status, selected: bool) -> button::Style {
    let ext = theme.extended_palette();
    let bg = if selected {
        Some(Background::Color(ext.primary.weak.color.scale_alpha(0.35)))
    } else if matches!(status, button::Status::Hovered) {
        Some(Background::Color(ext.background.weak.color))
    } else {
        None
    };
    button::Style {
        background: bg,
        text_color: ext.background.base.text,
        border: Border {
            radius: 6.0.into(),
            ..Border::default()
        },
        ..button::Style::default()
    }
}

pub fn sidebar(theme: &Theme) -> container::Style {
    let ext = theme.extended_palette();
    container::Style {
        background: Some(Background::Color(ext.background.weakest.color)),
        border: Border {
            color: ext.background.weak.color,
            width: 1.0,
            radius: 0.0.into(),
        },
        ..container::Style::default()
    }
}

pub fn failure_box(theme: &Theme) -> container::Style {
    let p = theme.palette();
    container::Style {
        background: Some(Background::Color(p.danger.scale_alpha(0.08))),
        border: Border {
            color: p.danger.scale_alpha(0.6),
            width: 1.0,
            radius: 6.0.into(),
        },
        ..container::Style::default()
    }
}

pub fn notice(theme: &Theme) -> container::Style {
    let p = theme.palette();
    container::Style {
        background: Some(Background::Color(p.warning.scale_alpha(0.10))),
        border: Border {
            color: p.warning.scale_alpha(0.6),
            width: 1.0,
            radius: 6.0.into(),
        },
        ..container::Style::default()
    }
}

pub fn log_box(theme: &Theme) -> container::Style {
    let ext = theme.extended_palette();
    container::Style {
        background: Some(Background::Color(ext.background.weakest.color)),
        border: Border {
            color: ext.background.weak.color,
            width: 1.0,
            radius: 6.0.into(),
        },
        ..container::Style::default()
    }
}

/// The veil behind a dialog.
pub fn scrim(theme: &Theme) -> container::Style {
    let dark = theme.extended_palette().is_dark;
    container::Style {
        background: Some(Background::Color(if dark {
            Color::from_rgba(0.0, 0.0, 0.0, 0.55)
        } else {
            Color::from_rgba(0.1, 0.12, 0.15, 0.35)
        })),
        ..container::Style::default()
    }
}

pub fn status_bar(theme: &Theme) -> container::Style {
    let ext = theme.extended_palette();
    container::Style {
        background: Some(Background::Color(ext.background.weak.color)),
        text_color: Some(ext.background.weak.text),
        ..container::Style::default()
    }
}

/// A focus ring around a control that draws none itself (checkboxes, pick lists).
pub fn focus_ring(theme: &Theme, focused: bool) -> container::Style {
    container::Style {
        border: Border {
            color: if focused {
                theme.palette().text
            } else {
                iced::Color::TRANSPARENT
            },
            width: 2.0,
            radius: 6.0.into(),
        },
        ..container::Style::default()
    }
}

/// The container around a button whose place the state file reports (`bounds`,
/// key `button:KEY`), for the desktop lab to click like a user.
pub fn button_id(key: &str) -> iced::widget::Id {
    iced::widget::Id::from(format!("button:{key}"))
}

/// The buttons whose places the state file reports.
pub const REPORTED_BUTTONS: [&str; 8] = [
    "add",
    "import",
    "conn-edit",
    "conn-check",
    "conn-export",
    "files-ok",
    "editor-save",
    "editor-admin",
];
