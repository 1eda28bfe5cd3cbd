//! A stand-in for the XDG Desktop Portal's file dialog, for the desktop lab: owns
//! `org.freedesktop.portal.Desktop` on the session bus (`DBUS_SESSION_BUS_ADDRESS`) and
//! serves `org.freedesktop.portal.FileChooser` at `/org/freedesktop/portal/desktop`.
//! `OpenFile` and `SaveFile` answer the way the real portal does: the call returns the
//! `Request` object path built from the caller's unique name and its `handle_token`, and
//! a moment later that object's `Response(0, {"uris": [URI]})` signal goes to the
//! caller, with the URI given on the command line (as if the user had picked that
//! file). Each call is appended to a file as one JSON line
//! `{"method":"OpenFile","title":"...","token":"...","current_name":"..."}`.
//! Nothing is shown. Runs until it is killed (the harness stops it).
//!
//! Usage: fake-portal LOG --open URI [--save URI]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

struct Chooser {
    log: PathBuf,
    open: String,
    save: Option<String>,
}

fn text_of(options: &HashMap<String, OwnedValue>, key: &str) -> String {
    options
        .get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| String::try_from(v).ok())
        .unwrap_or_default()
}

impl Chooser {
    /// Records the call, replies with the request path and sends the answer after it.
    fn answer(
        &self,
        method: &str,
        title: &str,
        options: &HashMap<String, OwnedValue>,
        header: &zbus::message::Header<'_>,
        conn: &zbus::Connection,
        uri: Option<String>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let token = text_of(options, "handle_token");
        let token = if token.is_empty() {
            "fake".to_string()
        } else {
            token
        };
        let sender = header
            .sender()
            .map(|s| s.to_string())
            .ok_or_else(|| zbus::fdo::Error::Failed("no sender".into()))?;
        let path = format!(
            "/org/freedesktop/portal/desktop/request/{}/{token}",
            sender.trim_start_matches(':').replace('.', "_")
        );
        let line = serde_json::json!({
            "method": method,
            "title": title,
            "token": token,
            "current_name": text_of(options, "current_name"),
        });
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| zbus::fdo::Error::Failed(format!("cannot record: {e}")))?;
        f.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| zbus::fdo::Error::Failed(format!("cannot record: {e}")))?;
        let conn = conn.clone();
        let p = path.clone();
        tokio::spawn(async move {
            // After our reply (as the real portal: the user takes a moment).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut results: HashMap<&str, Value<'_>> = HashMap::new();
            let code: u32 = match &uri {
                Some(u) => {
                    results.insert("uris", Value::from(vec![u.clone()]));
                    0
                }
                None => 1,
            };
            let _ = conn
                .emit_signal(
                    Some(sender.as_str()),
                    p.as_str(),
                    "org.freedesktop.portal.Request",
                    "Response",
                    &(code, results),
                )
                .await;
        });
        OwnedObjectPath::try_from(path).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }
}

#[zbus::interface(name = "org.freedesktop.portal.FileChooser")]
impl Chooser {
    async fn open_file(
        &self,
        _parent_window: String,
        title: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.answer(
            "OpenFile",
            &title,
            &options,
            &header,
            conn,
            Some(self.open.clone()),
        )
    }

    async fn save_file(
        &self,
        _parent_window: String,
        title: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.answer(
            "SaveFile",
            &title,
            &options,
            &header,
            conn,
            self.save.clone(),
        )
    }

    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        3
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(log), Some(open)) = (
        args.first().filter(|a| !a.starts_with("--")),
        value("--open"),
    ) else {
        eprintln!("usage: fake-portal LOG --open URI [--save URI]");
        return ExitCode::from(2);
    };
    let chooser = Chooser {
        log: PathBuf::from(log),
        open,
        save: value("--save"),
    };
    let conn = async {
        zbus::connection::Builder::session()?
            .serve_at("/org/freedesktop/portal/desktop", chooser)?
            .name("org.freedesktop.portal.Desktop")?
            .build()
            .await
    }
    .await;
    let _conn = match conn {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fake-portal: cannot serve on the session bus: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("fake-portal: ready");
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
