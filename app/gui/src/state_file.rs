//! What the window shows, as a JSON file for tests (`POSTERN_GUI_STATE_FILE`): iced
//! has no accessibility tree, so the desktop lab reads this instead. Written as
//! `PATH.tmp` then renamed (a reader never sees half a file), only when it changed.
//! No secrets: names, states, addresses, counts, the sentences on screen.

use std::collections::BTreeMap;

use postern_frontend::explain::explain;
use postern_frontend::profiles::js;

use crate::app::{App, Tray};
use crate::screen::files::Dialog;
use crate::screen::prompt;

/// The file, when the variable names one.
pub fn path() -> Option<std::path::PathBuf> {
    std::env::var_os("POSTERN_GUI_STATE_FILE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

/// The JSON text of what `app` shows.
pub fn render(app: &App, bounds: &BTreeMap<String, [f32; 4]>) -> String {
    let mut profiles = Vec::new();
    for e in &app.profiles.entries {
        let live = app.live.get(&e.name);
        let t = live.and_then(|l| l.tunnel.as_ref());
        let state = t
            .map(|t| t.state.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("disconnected");
        let sa_rows = t
            .filter(|t| t.state == "connected")
            .map_or(0, |t| t.sas.len());
        let (headline, detail) = match live.and_then(|l| l.shown_failure()) {
            Some(f) => (explain(f.kind).headline, f.message.as_str()),
            None => ("", ""),
        };
        let check = match live.and_then(|l| l.check.as_ref()) {
            None => "null".to_string(),
            Some(crate::screen::connection::Check::Running) => js("running"),
            Some(crate::screen::connection::Check::Failed(m)) => {
                format!("{{\"error\":{}}}", js(m))
            }
            Some(crate::screen::connection::Check::Done(steps)) => format!(
                "[{}]",
                steps
                    .iter()
                    .map(|s| format!(
                        "{{\"name\":{},\"outcome\":{},\"detail\":{}}}",
                        js(&s.name),
                        js(&s.outcome),
                        js(&s.detail)
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        profiles.push(format!(
            "{{\"name\":{},\"system\":{},\"refused\":{},\"state\":{},\"phase\":{},\"virtual_ip\":{},\"sa_rows\":{},\"error_headline\":{},\"error_detail\":{},\"waiting_for_helper\":{},\"check\":{}}}",
            js(&e.name),
            e.system,
            e.refused.as_deref().map_or("null".to_string(), js),
            js(state),
            js(t.map_or("", |t| t.phase.as_str())),
            js(t.map_or("", |t| t.virtual_ip.as_str())),
            sa_rows,
            js(headline),
            js(detail),
            live.is_some_and(|l| l.waiting_for_helper),
            check
        ));
    }
    let prompt = match &app.prompt {
        None => "null".to_string(),
        Some(p) => {
            let (fields, message) = match &p.ask {
                prompt::Ask::Xauth { fields, message } => (fields.clone(), message.clone()),
                prompt::Ask::Psk => (vec!["psk".to_string()], String::new()),
            };
            let fields: Vec<String> = fields.iter().map(|f| js(f)).collect();
            format!(
                "{{\"profile\":{},\"fields\":[{}],\"message\":{}}}",
                js(&p.profile),
                fields.join(","),
                js(&message)
            )
        }
    };
    let screen = if app.prompt.is_some() {
        "prompt"
    } else if app.files.is_some() || app.profiles.dialog.is_some() {
        "dialog"
    } else if app.editor.is_some() {
        "editor"
    } else {
        "profiles"
    };
    let dialog = match &app.files {
        Some(Dialog::Export { .. }) => js("export"),
        Some(Dialog::Choose { .. }) => js("choose-connection"),
        Some(Dialog::Path { .. }) => js("path"),
        Some(Dialog::Settings { .. }) => js("settings"),
        None => match &app.profiles.dialog {
            Some(crate::screen::profiles::Dialog::Delete(_)) => js("delete"),
            Some(crate::screen::profiles::Dialog::Rename { .. }) => js("rename"),
            None => "null".to_string(),
        },
    };
    // The editor: its name field, whether Save is possible, and what an import could
    // not carry over (shown above the form).
    let editor = match &app.editor {
        None => "null".to_string(),
        Some(ed) => {
            let notes = ed.import.as_ref();
            let list = |v: Option<&Vec<String>>| {
                v.map(|v| v.iter().map(|w| js(w)).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            };
            format!(
                "{{\"name\":{},\"system\":{},\"read_only\":{},\"saving\":{},\"refused\":{},\"valid\":{},\"imported_from\":{},\"warnings\":[{}],\"missing\":[{}],\"save_error\":{},\"ike_version\":{},\"login_label\":{},\"advanced\":{}}}",
                js(ed.values[crate::screen::editor::NAME].trim()),
                ed.system
                    .as_ref()
                    .map_or("null".to_string(), |s| js(&s.file)),
                ed.read_only(),
                ed.system.as_ref().is_some_and(|s| s.saving),
                ed.refused.as_deref().map_or("null".to_string(), js),
                ed.is_valid(),
                notes.map_or("null".to_string(), |n| js(&n.source)),
                list(notes.map(|n| &n.warnings)),
                list(notes.map(|n| &n.missing)),
                ed.save_error.as_deref().map_or("null".to_string(), js),
                if ed.ikev2() { 2 } else { 1 },
                js(ed.label(crate::screen::editor::index("xauth.username"))),
                ed.advanced,
            )
        }
    };
    let bounds: Vec<String> = bounds
        .iter()
        .map(|(k, b)| format!("{}:[{},{},{},{}]", js(k), b[0], b[1], b[2], b[3]))
        .collect();
    format!(
        "{{\"window\":{},\"screen\":{},\"dialog\":{},\"editor\":{},\"helper\":{},\"tray\":{},\"selected\":{},\"profiles\":[{}],\"prompt\":{},\"notice\":{},\"bounds\":{{{}}}}}\n",
        js(if app.window.is_some() {
            "open"
        } else {
            "hidden"
        }),
        js(screen),
        dialog,
        editor,
        js(if app.helper.is_some() {
            "unreachable"
        } else {
            "reachable"
        }),
        js(match app.tray {
            Tray::Shown => "shown",
            Tray::Absent => "absent",
            Tray::Unknown => "unknown",
        }),
        app.profiles
            .selected
            .as_deref()
            .map_or("null".to_string(), js),
        profiles.join(","),
        prompt,
        app.notice.as_deref().map_or("null".to_string(), js),
        bounds.join(",")
    )
}

/// Writes `text` to `path` atomically.
pub fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
