//! The desktop around the window, on the session bus (one zbus connection, in a
//! thread of its own so it lives as long as the app, whatever the window does):
//!
//! * one instance: the name `org.postern.Postern` with an `Activate` method at
//!   `/org/postern/Postern`; a second start calls it and exits;
//! * the tray icon (StatusNotifierItem through ksni): an icon per state, a tooltip,
//!   a menu with each profile's Connect/Disconnect, "Open Postern", "Quit";
//! * notifications (`org.freedesktop.Notifications`);
//! * the colour scheme of the XDG settings portal, live.
//!
//! The app hears from it through [`events`] (a subscription stream) and talks to it
//! with [`send`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::zvariant::{OwnedValue, Value};

use crate::style::Mode;

pub const APP_ID: &str = "org.postern.Postern";
pub const OBJECT_PATH: &str = "/org/postern/Postern";

/// From the desktop to the app.
#[derive(Debug, Clone)]
pub enum Event {
    /// A second start, or the tray's "Open Postern" / click.
    Open,
    Connect(String),
    Disconnect(String),
    Quit,
    /// The tray could not be shown (no StatusNotifierWatcher): why.
    NoTray(String),
    /// The tray is up.
    Tray,
    /// The portal's colour scheme (also at start).
    Theme(Mode),
}

/// The tray's picture of things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Icon {
    #[default]
    Disconnected,
    Connecting,
    Connected,
    Error,
}

impl Icon {
    pub fn name(self) -> &'static str {
        match self {
            Icon::Disconnected => "postern-disconnected",
            Icon::Connecting => "postern-connecting",
            Icon::Connected => "postern-connected",
            Icon::Error => "postern-error",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrayModel {
    pub icon: Icon,
    pub tooltip: String,
    /// (profile, active)
    pub profiles: Vec<(String, bool)>,
}

/// From the app to the desktop.
#[derive(Debug, Clone)]
pub enum Request {
    Tray(TrayModel),
    Notify { summary: String, body: String },
}

static TO_DESKTOP: OnceLock<mpsc::UnboundedSender<Request>> = OnceLock::new();
static FROM_DESKTOP: Mutex<Option<mpsc::UnboundedReceiver<Event>>> = Mutex::new(None);

/// Asks the desktop thread for something (nothing happens without one).
pub fn send(r: Request) {
    if let Some(tx) = TO_DESKTOP.get() {
        let _ = tx.send(r);
    }
}

/// The desktop's events, as a subscription stream (taken once).
pub fn events() -> impl futures_util::Stream<Item = Event> {
    let rx = FROM_DESKTOP.lock().ok().and_then(|mut g| g.take());
    futures_util::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let e = rx.recv().await?;
        Some((e, Some(rx)))
    })
}

/// How the start went.
pub enum Start {
    /// We are the instance (the desktop thread runs).
    First,
    /// Another instance runs and was asked to show its window.
    Second,
    /// No session bus: no tray, no notifications, no single instance.
    NoBus(String),
}

/// Starts the desktop thread: claims the name (or activates the first instance).
/// `tray`: whether to show the tray icon.
pub fn start(tray: bool) -> Start {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("postern-desktop".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = done_tx.send(Start::NoBus(e.to_string()));
                    return;
                }
            };
            rt.block_on(run(tray, ev_tx, req_rx, done_tx));
        });
    if let Err(e) = spawned {
        return Start::NoBus(e.to_string());
    }
    let r = done_rx
        .recv()
        .unwrap_or_else(|_| Start::NoBus("the desktop thread ended".into()));
    if let Start::First = r {
        let _ = TO_DESKTOP.set(req_tx);
        if let Ok(mut g) = FROM_DESKTOP.lock() {
            *g = Some(ev_rx);
        }
    }
    r
}

struct Activate {
    tx: mpsc::UnboundedSender<Event>,
}

#[zbus::interface(name = "org.postern.Postern")]
impl Activate {
    /// Shows and raises the window.
    fn activate(&self) {
        let _ = self.tx.send(Event::Open);
    }
}

async fn run(
    tray: bool,
    tx: mpsc::UnboundedSender<Event>,
    mut req: mpsc::UnboundedReceiver<Request>,
    done: std::sync::mpsc::Sender<Start>,
) {
    let conn = match zbus::Connection::session().await {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Start::NoBus(e.to_string()));
            return;
        }
    };
    if let Err(e) = conn
        .object_server()
        .at(OBJECT_PATH, Activate { tx: tx.clone() })
        .await
    {
        let _ = done.send(Start::NoBus(e.to_string()));
        return;
    }
    let flags = zbus::fdo::RequestNameFlags::DoNotQueue.into();
    match conn.request_name_with_flags(APP_ID, flags).await {
        Ok(zbus::fdo::RequestNameReply::PrimaryOwner)
        | Ok(zbus::fdo::RequestNameReply::AlreadyOwner) => {}
        Ok(_) | Err(zbus::Error::NameTaken) => {
            let r = conn
                .call_method(Some(APP_ID), OBJECT_PATH, Some(APP_ID), "Activate", &())
                .await;
            let _ = done.send(match r {
                Ok(_) => Start::Second,
                Err(e) => Start::NoBus(format!("another Postern runs but does not answer: {e}")),
            });
            return;
        }
        Err(e) => {
            let _ = done.send(Start::NoBus(e.to_string()));
            return;
        }
    }
    let _ = done.send(Start::First);

    // The colour scheme: now and on change.
    tokio::spawn(follow_theme(conn.clone(), tx.clone()));

    let mut handle = None;
    if tray {
        use ksni::TrayMethods;
        let t = Tray {
            model: TrayModel::default(),
            tx: tx.clone(),
        };
        let spawned = match t.spawn().await {
            // A watcher without a host (no panel shows items yet, or a test's
            // watcher): stay registered; a host that comes later shows the icon.
            Err(ksni::Error::WontShow) => {
                let t = Tray {
                    model: TrayModel::default(),
                    tx: tx.clone(),
                };
                t.assume_sni_available(true).spawn().await
            }
            other => other,
        };
        match spawned {
            Ok(h) => {
                handle = Some(h);
                let _ = tx.send(Event::Tray);
            }
            Err(e) => {
                let _ = tx.send(Event::NoTray(e.to_string()));
            }
        }
    }
    while let Some(r) = req.recv().await {
        match r {
            Request::Tray(m) => {
                if let Some(h) = &handle {
                    let _ = h.update(|t| t.model = m).await;
                }
            }
            Request::Notify { summary, body } => {
                notify(&conn, &summary, &body).await;
            }
        }
    }
}

/// Sends a notification; without a notification server, nothing happens.
async fn notify(conn: &zbus::Connection, summary: &str, body: &str) {
    let hints: HashMap<&str, Value<'_>> = HashMap::new();
    let actions: Vec<&str> = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        conn.call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &(
                "Postern", 0u32, APP_ID, summary, body, actions, hints, -1i32,
            ),
        ),
    )
    .await;
}

const PORTAL: &str = "org.freedesktop.portal.Desktop";
const PORTAL_PATH: &str = "/org/freedesktop/portal/desktop";
const SETTINGS: &str = "org.freedesktop.portal.Settings";

/// The portal's `color-scheme`: 1 = prefer dark; 0 (no preference) and 2 = light.
pub fn mode_of(scheme: u32) -> Mode {
    if scheme == 1 { Mode::Dark } else { Mode::Light }
}

fn scheme_of(v: &Value<'_>) -> Option<u32> {
    match v {
        Value::U32(n) => Some(*n),
        Value::Value(inner) => scheme_of(inner),
        _ => None,
    }
}

async fn follow_theme(conn: zbus::Connection, tx: mpsc::UnboundedSender<Event>) {
    // Subscribe first, then read: a change in between is not lost.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(SETTINGS)
        .and_then(|b| b.member("SettingChanged"))
        .map(|b| b.build());
    let stream = match rule {
        Ok(rule) => zbus::MessageStream::for_match_rule(rule, &conn, Some(8))
            .await
            .ok(),
        Err(_) => None,
    };
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        conn.call_method(
            Some(PORTAL),
            PORTAL_PATH,
            Some(SETTINGS),
            "ReadOne",
            &("org.freedesktop.appearance", "color-scheme"),
        ),
    )
    .await;
    if let Ok(Ok(reply)) = read
        && let Ok(v) = reply.body().deserialize::<OwnedValue>()
        && let Some(s) = scheme_of(&v)
    {
        let _ = tx.send(Event::Theme(mode_of(s)));
    }
    let Some(mut stream) = stream else { return };
    while let Some(Ok(msg)) = stream.next().await {
        if let Ok((ns, key, v)) = msg.body().deserialize::<(String, String, OwnedValue)>()
            && ns == "org.freedesktop.appearance"
            && key == "color-scheme"
            && let Some(s) = scheme_of(&v)
        {
            let _ = tx.send(Event::Theme(mode_of(s)));
        }
    }
}

/// Where the tray icons are: `POSTERN_ICON_DIR`, else the installed hicolor theme
/// path, else the source tree's `assets/tray` (a development build).
pub fn icon_dir() -> String {
    if let Ok(d) = std::env::var("POSTERN_ICON_DIR")
        && !d.is_empty()
    {
        return d;
    }
    let installed = "/usr/share/postern/icons";
    if std::path::Path::new(installed).is_dir() {
        return installed.to_string();
    }
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/tray").to_string()
}

/// The tray icon of `icon` at 22 and 44 px (PNGs rendered from the SVGs in
/// assets/tray by scripts/render-icons.sh), as ARGB32 in network byte order.
pub fn pixmaps(icon: Icon) -> Vec<ksni::Icon> {
    let pngs: [&[u8]; 2] = match icon {
        Icon::Disconnected => [
            include_bytes!("../../../assets/tray/postern-disconnected-22.png"),
            include_bytes!("../../../assets/tray/postern-disconnected-44.png"),
        ],
        Icon::Connecting => [
            include_bytes!("../../../assets/tray/postern-connecting-22.png"),
            include_bytes!("../../../assets/tray/postern-connecting-44.png"),
        ],
        Icon::Connected => [
            include_bytes!("../../../assets/tray/postern-connected-22.png"),
            include_bytes!("../../../assets/tray/postern-connected-44.png"),
        ],
        Icon::Error => [
            include_bytes!("../../../assets/tray/postern-error-22.png"),
            include_bytes!("../../../assets/tray/postern-error-44.png"),
        ],
    };
    pngs.iter().filter_map(|b| argb(b)).collect()
}

/// An 8-bit RGBA PNG as a ksni icon (ARGB32, network byte order); `None` otherwise.
fn argb(bytes: &[u8]) -> Option<ksni::Icon> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    if info.bit_depth != png::BitDepth::Eight || info.color_type != png::ColorType::Rgba {
        return None;
    }
    let data = buf[..info.buffer_size()]
        .chunks_exact(4)
        .flat_map(|p| [p[3], p[0], p[1], p[2]])
        .collect();
    Some(ksni::Icon {
        width: info.width as i32,
        height: info.height as i32,
        data,
    })
}

struct Tray {
    model: TrayModel,
    tx: mpsc::UnboundedSender<Event>,
}

impl ksni::Tray for Tray {
    fn id(&self) -> String {
        APP_ID.into()
    }

    fn title(&self) -> String {
        "Postern".into()
    }

    fn icon_theme_path(&self) -> String {
        icon_dir()
    }

    fn icon_name(&self) -> String {
        self.model.icon.name().into()
    }

    /// The same icon as pixels, for trays that do not look in `IconThemePath`.
    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        pixmaps(self.model.icon)
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            icon_name: self.model.icon.name().into(),
            icon_pixmap: Vec::new(),
            title: "Postern".into(),
            description: self.model.tooltip.clone(),
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        let _ = self.tx.send(Event::Open);
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        use ksni::menu::StandardItem;
        let mut items: Vec<ksni::MenuItem<Self>> = Vec::new();
        for (name, active) in &self.model.profiles {
            let n = name.clone();
            let active = *active;
            items.push(
                StandardItem {
                    // "__" shows one underscore (dbusmenu mnemonics).
                    label: format!(
                        "{} {}",
                        if active { "Disconnect" } else { "Connect" },
                        name.replace('_', "__")
                    ),
                    activate: Box::new(move |t: &mut Self| {
                        let _ = t.tx.send(if active {
                            Event::Disconnect(n.clone())
                        } else {
                            Event::Connect(n.clone())
                        });
                    }),
                    ..Default::default()
                }
                .into(),
            );
        }
        if !items.is_empty() {
            items.push(ksni::MenuItem::Separator);
        }
        items.push(
            StandardItem {
                label: "Open Postern".into(),
                activate: Box::new(|t: &mut Self| {
                    let _ = t.tx.send(Event::Open);
                }),
                ..Default::default()
            }
            .into(),
        );
        items.push(
            StandardItem {
                label: "Quit".into(),
                activate: Box::new(|t: &mut Self| {
                    let _ = t.tx.send(Event::Quit);
                }),
                ..Default::default()
            }
            .into(),
        );
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portals_scheme_maps_to_a_mode_light_by_default() {
        assert_eq!(mode_of(0), Mode::Light);
        assert_eq!(mode_of(1), Mode::Dark);
        assert_eq!(mode_of(2), Mode::Light);
        assert_eq!(scheme_of(&Value::U32(1)), Some(1));
        assert_eq!(
            scheme_of(&Value::Value(Box::new(Value::U32(1)))),
            Some(1),
            "ReadOne's variant in a variant"
        );
        assert_eq!(scheme_of(&Value::from("dark")), None);
    }

    #[test]
    fn every_state_has_pixmaps_in_its_colour() {
        for (icon, rgb) in [
            (Icon::Connected, [0x2e, 0x8b, 0x57]),
            (Icon::Disconnected, [0, 0, 0]),
            (Icon::Connecting, [0, 0, 0]),
            (Icon::Error, [0, 0, 0]),
        ] {
            let p = pixmaps(icon);
            assert_eq!(
                p.iter().map(|i| (i.width, i.height)).collect::<Vec<_>>(),
                vec![(22, 22), (44, 44)],
                "{icon:?}"
            );
            for i in &p {
                assert_eq!(i.data.len(), (i.width * i.height * 4) as usize);
                // Opaque pixels in the middle (the shield), transparent corners.
                assert_eq!(i.data[0], 0, "{icon:?}: a transparent corner");
                let mid = ((i.height / 2 * i.width + i.width / 2) * 4) as usize;
                assert_eq!(i.data[mid], 255, "{icon:?}: an opaque middle");
            }
            if icon == Icon::Connected {
                // The connected shield's green (#2E8B57) is there, as ARGB.
                let i = &p[1];
                assert!(
                    i.data
                        .chunks_exact(4)
                        .any(|px| px[0] == 255 && px[1..] == rgb),
                    "no #2E8B57 in the connected pixmap"
                );
            }
        }
    }

    #[test]
    fn every_state_has_an_icon_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/tray");
        for i in [
            Icon::Disconnected,
            Icon::Connecting,
            Icon::Connected,
            Icon::Error,
        ] {
            let p = format!("{dir}/{}.svg", i.name());
            let svg = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(svg.contains("<svg"), "{p}");
        }
    }
}
