//! The desktop's file dialog: the XDG Desktop Portal's `org.freedesktop.portal.FileChooser`
//! (`OpenFile`, `SaveFile`) over the session bus, with zbus (no GTK). Whatever desktop
//! the user runs (GNOME, KDE, a wlroots compositor with xdg-desktop-portal-gtk...)
//! shows its own dialog; the app gets a `file://` URI back and reads or writes the file
//! itself (never the helper).
//!
//! Without a portal (no session bus, no `org.freedesktop.portal.Desktop`, or one
//! without a FileChooser) the calls say [`Pick::Unavailable`] and the app falls back to
//! a path field of its own.
//!
//! The protocol: the call returns a `Request` object path at once; the answer comes
//! later as that object's `Response(u response, a{sv} results)` signal (0: chosen, with
//! `uris`; 1: cancelled; 2: failed). The path is predictable from our unique name and
//! the `handle_token` we pass, so we listen on it *before* calling (no race).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

const PORTAL: &str = "org.freedesktop.portal.Desktop";
const PORTAL_PATH: &str = "/org/freedesktop/portal/desktop";
const FILE_CHOOSER: &str = "org.freedesktop.portal.FileChooser";
const REQUEST: &str = "org.freedesktop.portal.Request";

/// How long the portal may take to *accept* the call (not the user's choice).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dialog may stay open before we stop waiting for it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the dialog gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The user chose this file.
    File(PathBuf),
    /// The user closed the dialog.
    Cancelled,
    /// No file dialog on this desktop (why, one sentence): use the fallback.
    Unavailable(String),
    /// The portal failed (one sentence).
    Failed(String),
}

/// A filter in the dialog: a label and glob patterns (`*.pcf`).
pub type Filter = (&'static str, &'static [&'static str]);

/// Opens one existing file.
pub async fn open_file(title: String, filters: Vec<Filter>) -> Pick {
    let mut options = HashMap::new();
    options.insert("modal", Value::from(true));
    if !filters.is_empty() {
        options.insert("filters", Value::from(filter_list(&filters)));
    }
    call("OpenFile", &title, options).await
}

/// Chooses where to save, proposing `name`.
pub async fn save_file(title: String, name: String) -> Pick {
    let mut options = HashMap::new();
    options.insert("modal", Value::from(true));
    options.insert("current_name", Value::from(name));
    call("SaveFile", &title, options).await
}

fn filter_list(filters: &[Filter]) -> Vec<(String, Vec<(u32, String)>)> {
    filters
        .iter()
        .map(|(label, globs)| {
            (
                label.to_string(),
                // 0: a glob pattern (1 would be a MIME type).
                globs.iter().map(|g| (0u32, g.to_string())).collect(),
            )
        })
        .collect()
}

static TOKEN: AtomicU32 = AtomicU32::new(0);

/// The `Request` path the portal will use for `token` (the spec's formula: our unique
/// name without the `:`, dots as underscores).
pub fn request_path(unique_name: &str, token: &str) -> String {
    let sender = unique_name.trim_start_matches(':').replace('.', "_");
    format!("/org/freedesktop/portal/desktop/request/{sender}/{token}")
}

async fn call(method: &str, title: &str, mut options: HashMap<&str, Value<'_>>) -> Pick {
    let conn = match tokio::time::timeout(CALL_TIMEOUT, zbus::Connection::session()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Pick::Unavailable(format!("no session bus ({e})")),
        Err(_) => return Pick::Unavailable("the session bus does not answer".into()),
    };
    let Some(unique) = conn.unique_name().map(|n| n.to_string()) else {
        return Pick::Unavailable("no name on the session bus".into());
    };
    let token = format!(
        "postern_{}_{}",
        std::process::id(),
        TOKEN.fetch_add(1, Ordering::Relaxed)
    );
    let expected = request_path(&unique, &token);
    options.insert("handle_token", Value::from(token.clone()));
    let mut answers = match responses(&conn, &expected).await {
        Some(s) => s,
        None => return Pick::Unavailable("cannot listen for the portal's answer".into()),
    };
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        conn.call_method(
            Some(PORTAL),
            PORTAL_PATH,
            Some(FILE_CHOOSER),
            method,
            &("", title, options),
        ),
    )
    .await;
    let handle: String = match reply {
        Ok(Ok(m)) => match m.body().deserialize::<zbus::zvariant::OwnedObjectPath>() {
            Ok(p) => p.to_string(),
            Err(e) => return Pick::Failed(format!("the file dialog answered oddly: {e}")),
        },
        Ok(Err(e)) => {
            return Pick::Unavailable(format!("no file dialog portal ({})", short(&e)));
        }
        Err(_) => return Pick::Unavailable("the file dialog portal does not answer".into()),
    };
    if handle != expected {
        // An old portal that ignores handle_token: listen where it says (a reply that
        // came in between is lost; such portals are from before 2018).
        match responses(&conn, &handle).await {
            Some(s) => answers = s,
            None => return Pick::Failed("cannot listen for the portal's answer".into()),
        }
    }
    let msg = match tokio::time::timeout(ANSWER_TIMEOUT, answers.next()).await {
        Ok(Some(Ok(m))) => m,
        Ok(_) => return Pick::Failed("the file dialog went away".into()),
        Err(_) => return Pick::Cancelled,
    };
    match msg
        .body()
        .deserialize::<(u32, HashMap<String, OwnedValue>)>()
    {
        Ok((0, results)) => match first_uri(&results).and_then(|u| path_of_uri(&u)) {
            Some(p) => Pick::File(p),
            None => Pick::Failed("the file dialog gave no local file".into()),
        },
        Ok((1, _)) => Pick::Cancelled,
        Ok((code, _)) => Pick::Failed(format!("the file dialog failed (code {code})")),
        Err(e) => Pick::Failed(format!("the file dialog answered oddly: {e}")),
    }
}

fn short(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => other.to_string(),
    }
}

async fn responses(conn: &zbus::Connection, path: &str) -> Option<zbus::MessageStream> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(REQUEST)
        .ok()?
        .member("Response")
        .ok()?
        .path(path.to_string())
        .ok()?
        .build();
    zbus::MessageStream::for_match_rule(rule, conn, Some(4))
        .await
        .ok()
}

fn first_uri(results: &HashMap<String, OwnedValue>) -> Option<String> {
    let v = results.get("uris")?;
    let uris: Vec<String> = v.try_clone().ok()?.try_into().ok()?;
    uris.into_iter().next()
}

/// A `file://` URI as a path (percent-decoded); `None` for other schemes.
pub fn path_of_uri(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // file://host/path: only the local host.
    let path = match rest.find('/') {
        Some(0) => rest,
        Some(i) if &rest[..i] == "localhost" => &rest[i..],
        _ => return None,
    };
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// The filters of the import dialog.
pub const IMPORT_FILTERS: &[Filter] = &[
    (
        "VPN configurations",
        &[
            "*.pcf",
            "*.vpn",
            "*.conf",
            "*.nmconnection",
            "ifcfg-*",
            "*.secrets",
        ],
    ),
    ("All files", &["*"]),
];

/// The filters of the certificate and key dialogs.
pub const PEM_FILTERS: &[Filter] = &[
    (
        "Certificates and keys",
        &["*.pem", "*.crt", "*.cer", "*.key", "*.der"],
    ),
    ("All files", &["*"]),
];

pub const PKCS12_FILTERS: &[Filter] = &[
    ("PKCS#12 bundles", &["*.p12", "*.pfx"]),
    ("All files", &["*"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_path_follows_the_spec() {
        assert_eq!(
            request_path(":1.42", "postern_7_0"),
            "/org/freedesktop/portal/desktop/request/1_42/postern_7_0"
        );
    }

    #[test]
    fn file_uris_become_paths() {
        assert_eq!(
            path_of_uri("file:///home/alice/My%20VPN/office.pcf"),
            Some(PathBuf::from("/home/alice/My VPN/office.pcf"))
        );
        assert_eq!(
            path_of_uri("file://localhost/tmp/a%25b"),
            Some(PathBuf::from("/tmp/a%b"))
        );
        assert_eq!(
            path_of_uri("file:///tmp/100%"),
            Some(PathBuf::from("/tmp/100%"))
        );
        assert_eq!(path_of_uri("https://example.com/x.pcf"), None);
        assert_eq!(path_of_uri("file://otherhost/x.pcf"), None);
    }
}
