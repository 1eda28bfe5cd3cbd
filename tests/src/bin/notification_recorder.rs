//! A notification server for the desktop lab: owns `org.freedesktop.Notifications` on the
//! session bus (`DBUS_SESSION_BUS_ADDRESS`) and appends every `Notify` it receives to a
//! file as one JSON line: `{"id":N,"app":"...","summary":"...","body":"...","icon":"..."}`.
//! Nothing is shown. Runs until it is killed (the harness stops it).
//!
//! With `--sni-host` it also stands in for the desktop's panel: it owns
//! `org.kde.StatusNotifierHost-PID` and registers it with the StatusNotifierWatcher, so
//! tray items see a host (`IsStatusNotifierHostRegistered`) as on a real desktop; the
//! tests read the items' menus themselves.
//!
//! Usage: notification-recorder FILE [--sni-host]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};

use zbus::zvariant::OwnedValue;

struct Recorder {
    file: PathBuf,
    next_id: AtomicU32,
}

impl Recorder {
    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)?;
        // One write per line, so a reader never sees half a record.
        f.write_all(format!("{line}\n").as_bytes())
    }
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> zbus::fdo::Result<u32> {
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            self.next_id.fetch_add(1, Ordering::Relaxed)
        };
        let line = serde_json::json!({
            "id": id,
            "app": app_name,
            "summary": summary,
            "body": body,
            "icon": app_icon,
        });
        self.append(&line.to_string())
            .map_err(|e| zbus::fdo::Error::Failed(format!("cannot record: {e}")))?;
        Ok(id)
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".to_string()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "postern-lab-recorder".to_string(),
            "postern".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
            "1.2".to_string(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let sni_host = args.iter().any(|a| a == "--sni-host");
    let Some(file) = args.iter().find(|a| *a != "--sni-host").map(PathBuf::from) else {
        eprintln!("usage: notification-recorder FILE [--sni-host]");
        return ExitCode::from(2);
    };
    let recorder = Recorder {
        file,
        next_id: AtomicU32::new(1),
    };
    let conn = async {
        zbus::connection::Builder::session()?
            .serve_at("/org/freedesktop/Notifications", recorder)?
            .name("org.freedesktop.Notifications")?
            .build()
            .await
    }
    .await;
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            eprintln!("notification-recorder: cannot serve on the session bus: {e}");
            return ExitCode::FAILURE;
        }
    };
    if sni_host {
        let host = format!("org.kde.StatusNotifierHost-{}", std::process::id());
        let registered = async {
            conn.request_name(host.as_str()).await?;
            conn.call_method(
                Some("org.kde.StatusNotifierWatcher"),
                "/StatusNotifierWatcher",
                Some("org.kde.StatusNotifierWatcher"),
                "RegisterStatusNotifierHost",
                &(host.as_str(),),
            )
            .await
            .map(|_| ())
        }
        .await;
        if let Err(e) = registered {
            eprintln!("notification-recorder: cannot register as a StatusNotifierHost: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("notification-recorder: ready");
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
