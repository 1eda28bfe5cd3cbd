//! The desktop lab: a graphical session for one unprivileged test user, in which the real
//! `postern-gui` runs against the real helper on the lab's private system bus
//! ([`crate::sysbus`]).
//!
//! [`Desktop::start`] brings up, in this order and each waited for (bounded):
//! - Xvfb on a display it picks itself (`-displayfd`), 1024x768x24, as root (no access
//!   control needed: local clients of any user may connect);
//! - the user's session bus (`dbus-daemon` with a config of its own, no service
//!   activation, so nothing starts behind the test's back), socket in the user's
//!   `XDG_RUNTIME_DIR`;
//! - GNOME Keyring, unlocked with a test password before any client touches the bus
//!   (DESIGN.md's recipe: temp HOME and XDG_RUNTIME_DIR, `--unlock --components=secrets`),
//!   run in the foreground so the harness owns its pid;
//! - Debian's `status-notifier-watcher` (`org.kde.StatusNotifierWatcher`);
//! - the lab's `notification-recorder` (`org.freedesktop.Notifications`), which appends
//!   every `Notify` to a JSON-lines file ([`Desktop::notifications`]) and registers as
//!   the session's StatusNotifierHost (the panel a real desktop has), so tray items see
//!   a host.
//!
//! Everything on the session bus runs as the test user (the bus only admits its own
//! user), through `setpriv`, with a clean environment ([`Desktop::user_command`]).
//! Processes are stopped on drop, newest first, also when the test fails; the lab's own
//! drop stops them again if needed (they are adopted for its diagnostics).
//!
//! Screenshots ([`Desktop::screenshot`]) come from `import -window root` (ImageMagick) as
//! 8-bit PPM, which [`Screenshot`] reads for pixel checks; a PNG copy goes to
//! `target/desktop-screenshots/`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::lab::Lab;
use crate::postern::helper_path;
use crate::process::{Proc, run};
use crate::sysbus::SystemBus;
use crate::wait::wait_for;
use crate::{LabError, Result};

/// The password of the test user's login keyring.
pub const KEYRING_PASSWORD: &str = "lab-keyring-pw";

/// Screen size of the lab's Xvfb.
pub const SCREEN: (u32, u32) = (1024, 768);

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Parses `#RRGGBB`.
pub fn rgb(hex: &str) -> Option<Rgb> {
    let h = hex.strip_prefix('#').unwrap_or(hex);
    if h.len() != 6 || !h.is_ascii() {
        return None;
    }
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([c(0)?, c(2)?, c(4)?])
}

/// The directory screenshots are saved in: `<target>/desktop-screenshots` (honouring
/// `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("desktop-screenshots")
}

/// A rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn centre(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }
}

/// A screenshot's pixels (8-bit RGB, row-major).
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    /// The PNG copy.
    pub png: PathBuf,
}

fn near(a: &[u8], b: Rgb, tolerance: u8) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= tolerance)
}

impl Screenshot {
    /// Reads a binary PPM (P6, maxval 255), as `import -depth 8 ... x.ppm` writes it.
    pub fn from_ppm(bytes: &[u8], png: PathBuf) -> Result<Screenshot> {
        // Header: "P6" then width, height, maxval, separated by whitespace (comments
        // are not written by ImageMagick), then one whitespace byte and the pixels.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if start == i {
                lab_bail!("not a PPM: the header ends early");
            }
            fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
        }
        i += 1;
        let num = |s: &str| -> Result<u32> {
            s.parse()
                .map_err(|_| LabError(format!("not a PPM: bad header field {s:?}")))
        };
        if fields[0] != "P6" {
            lab_bail!("not a binary PPM (magic {:?})", fields[0]);
        }
        let (width, height, max) = (num(&fields[1])?, num(&fields[2])?, num(&fields[3])?);
        if max != 255 {
            lab_bail!("PPM with maxval {max}: take it with -depth 8");
        }
        let len = (width as usize) * (height as usize) * 3;
        let Some(px) = bytes.get(i..i + len) else {
            lab_bail!(
                "PPM {width}x{height}: {} pixel bytes",
                bytes.len() - i.min(bytes.len())
            );
        };
        Ok(Screenshot {
            width,
            height,
            rgb: px.to_vec(),
            png,
        })
    }

    fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let o = ((y as usize) * (self.width as usize) + x as usize) * 3;
        &self.rgb[o..o + 3]
    }

    fn full(&self) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: self.width,
            h: self.height,
        }
    }

    /// How many distinct colours there are inside `within` (the whole screen when
    /// `None`); counting stops at `cap`.
    pub fn distinct_colours(&self, within: Option<Rect>, cap: usize) -> usize {
        let r = within.unwrap_or(self.full());
        let mut seen = std::collections::HashSet::new();
        for y in r.y..(r.y + r.h).min(self.height) {
            for x in r.x..(r.x + r.w).min(self.width) {
                let p = self.pixel(x, y);
                seen.insert([p[0], p[1], p[2]]);
                if seen.len() >= cap {
                    return seen.len();
                }
            }
        }
        seen.len()
    }

    /// Blank: one colour everywhere, as an empty Xvfb root is.
    pub fn is_blank(&self) -> bool {
        self.distinct_colours(None, 2) < 2
    }

    /// Pixels within `tolerance` (per channel) of `colour`, inside `within` when given.
    pub fn count_near(&self, colour: Rgb, tolerance: u8, within: Option<Rect>) -> usize {
        let r = within.unwrap_or(self.full());
        let mut n = 0;
        for y in r.y..(r.y + r.h).min(self.height) {
            for x in r.x..(r.x + r.w).min(self.width) {
                if near(self.pixel(x, y), colour, tolerance) {
                    n += 1;
                }
            }
        }
        n
    }

    /// The bounding box of the largest horizontal band of pixels near `colour` inside
    /// `within`: used to find a solid button by its colour. `None` when fewer than
    /// `min_pixels` match.
    pub fn find_colour(
        &self,
        colour: Rgb,
        tolerance: u8,
        within: Option<Rect>,
        min_pixels: usize,
    ) -> Option<Rect> {
        let r = within.unwrap_or(self.full());
        let (mut x0, mut y0, mut x1, mut y1, mut n) = (u32::MAX, u32::MAX, 0, 0, 0usize);
        for y in r.y..(r.y + r.h).min(self.height) {
            for x in r.x..(r.x + r.w).min(self.width) {
                if near(self.pixel(x, y), colour, tolerance) {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x);
                    y1 = y1.max(y);
                    n += 1;
                }
            }
        }
        (n >= min_pixels).then(|| Rect {
            x: x0,
            y: y0,
            w: x1 - x0 + 1,
            h: y1 - y0 + 1,
        })
    }

    /// Connected areas (4-neighbour) of pixels near `colour` inside `within`, with
    /// their pixel counts, largest first; areas under `min_pixels` left out. A solid
    /// button is one area (its label's letters are holes in it).
    pub fn blobs(
        &self,
        colour: Rgb,
        tolerance: u8,
        within: Option<Rect>,
        min_pixels: usize,
    ) -> Vec<(Rect, usize)> {
        let r = within.unwrap_or(self.full());
        let (x_end, y_end) = ((r.x + r.w).min(self.width), (r.y + r.h).min(self.height));
        if x_end <= r.x || y_end <= r.y {
            return Vec::new();
        }
        let (w, h) = ((x_end - r.x) as usize, (y_end - r.y) as usize);
        let mut mask = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                mask[y * w + x] = near(
                    self.pixel(r.x + x as u32, r.y + y as u32),
                    colour,
                    tolerance,
                );
            }
        }
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for start in 0..w * h {
            if !mask[start] {
                continue;
            }
            mask[start] = false;
            stack.push(start);
            let (mut x0, mut y0, mut x1, mut y1, mut n) = (w, h, 0, 0, 0usize);
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                n += 1;
                let mut push = |j: usize| {
                    if mask[j] {
                        mask[j] = false;
                        stack.push(j);
                    }
                };
                if x > 0 {
                    push(i - 1);
                }
                if x + 1 < w {
                    push(i + 1);
                }
                if y > 0 {
                    push(i - w);
                }
                if y + 1 < h {
                    push(i + w);
                }
            }
            if n >= min_pixels {
                let rect = Rect {
                    x: r.x + x0 as u32,
                    y: r.y + y0 as u32,
                    w: (x1 - x0 + 1) as u32,
                    h: (y1 - y0 + 1) as u32,
                };
                out.push((rect, n));
            }
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.1));
        out
    }
}

/// One notification the recorder received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub app: String,
    pub summary: String,
    pub body: String,
}

impl Notification {
    /// Summary and body, for matching.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.summary, self.body)
    }
}

/// Parses the recorder's JSON lines (lines that do not parse are skipped).
pub fn parse_notifications(text: &str) -> Vec<Notification> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Notification {
                app: s("app"),
                summary: s("summary"),
                body: s("body"),
            }
        })
        .collect()
}

/// One entry of a dbusmenu layout, with the labels of the submenus above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntry {
    pub id: i32,
    /// The label without mnemonic underscores.
    pub label: String,
    /// Labels of the enclosing submenus, outermost first.
    pub parents: Vec<String>,
    pub enabled: bool,
    pub visible: bool,
}

/// A dbusmenu label as shown: `_` marks a mnemonic, `__` is one underscore.
pub fn strip_mnemonic(label: &str) -> String {
    let mut out = String::new();
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' {
            if chars.peek() == Some(&'_') {
                chars.next();
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Flattens the `data` of `busctl --json=short call ... GetLayout` (signature
/// `u(ia{sv}av)`): `[revision, [id, {props}, [children...]]]`, where each child is a
/// variant `{"type":"(ia{sv}av)","data":[id, {props}, [...]]}` and each property a
/// variant `{"type":"s","data":"..."}`.
pub fn parse_menu_layout(data: &Value) -> Result<Vec<MenuEntry>> {
    fn walk(node: &Value, parents: &[String], out: &mut Vec<MenuEntry>, depth: u32) -> Result<()> {
        if depth > 16 {
            lab_bail!("dbusmenu layout nested deeper than 16 levels");
        }
        let Some([id, props, children]) = node
            .as_array()
            .map(Vec::as_slice)
            .and_then(|a| <&[Value; 3]>::try_from(a).ok())
        else {
            lab_bail!("dbusmenu node is not (ia{{sv}}av): {node}");
        };
        let id = id
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| LabError(format!("dbusmenu id is not an int32: {id}")))?;
        let prop = |k: &str| props.get(k).map(|v| &v["data"]);
        let label = strip_mnemonic(prop("label").and_then(Value::as_str).unwrap_or_default());
        let enabled = prop("enabled").and_then(Value::as_bool).unwrap_or(true);
        let visible = prop("visible").and_then(Value::as_bool).unwrap_or(true);
        if id != 0 {
            out.push(MenuEntry {
                id,
                label: label.clone(),
                parents: parents.to_vec(),
                enabled,
                visible,
            });
        }
        let mut below = parents.to_vec();
        if id != 0 {
            below.push(label);
        }
        for c in children.as_array().map(Vec::as_slice).unwrap_or_default() {
            walk(&c["data"], &below, out, depth + 1)?;
        }
        Ok(())
    }
    let root = data
        .get(1)
        .ok_or_else(|| LabError(format!("dbusmenu layout without a root: {data}")))?;
    let mut out = Vec::new();
    walk(root, &[], &mut out, 0)?;
    Ok(out)
}

/// Finds the menu item that does `verb` ("Connect", "Disconnect") for `profile`: a label
/// starting with the verb that names the profile itself or sits in the profile's
/// submenu.
pub fn find_menu_item<'a>(
    entries: &'a [MenuEntry],
    verb: &str,
    profile: &str,
) -> Option<&'a MenuEntry> {
    entries.iter().find(|e| {
        e.visible
            && e.label.starts_with(verb)
            && (e.label.contains(profile) || e.parents.iter().any(|p| p.contains(profile)))
    })
}

/// The graphical session of one test user.
pub struct Desktop {
    pub uid: u32,
    /// Root of the session's files (`<lab dir>/desktop`).
    pub dir: PathBuf,
    pub home: PathBuf,
    pub runtime: PathBuf,
    /// `:N`.
    pub display: String,
    /// The session bus, `unix:path=...`.
    pub session_addr: String,
    /// The lab's private system bus.
    pub system_addr: String,
    /// World-readable copies of the binaries the user runs.
    pub bin: PathBuf,
    /// The recorder's JSON lines.
    pub notifications_file: PathBuf,
    procs: Mutex<Vec<Arc<Proc>>>,
}

/// Puts a binary where the test user can run it (the build's target directory may sit
/// under a path only root can enter): a hard link, so no file is open for writing when
/// it is executed (a copy being written while another test thread forks makes the exec
/// fail with "Text file busy"); a copy where linking is not possible (another file
/// system), made under a temporary name and renamed.
pub fn install_bin(from: &Path, to: &Path) -> Result<()> {
    let _ = fs::remove_file(to);
    if fs::hard_link(from, to).is_ok() {
        let mode = fs::metadata(to)?.permissions().mode();
        if mode & 0o005 == 0o005 {
            return Ok(());
        }
        fs::remove_file(to)?;
    }
    let tmp = to.with_extension("partial");
    fs::copy(from, &tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, to)?;
    Ok(())
}

fn chown_private(path: &Path, uid: u32, mode: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `text` of an `Output`, for failure messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Desktop {
    /// Starts Xvfb, the user's session bus, GNOME Keyring (unlocked), the
    /// StatusNotifierWatcher and the notification recorder. `uid` is the test user
    /// (see [`crate::sysbus::HostChanges::ensure_user`]).
    pub fn start(lab: &Lab, sys: &SystemBus, uid: u32) -> Result<Desktop> {
        let dir = lab.dir.join("desktop");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let home = dir.join("home");
        let runtime = home.join("run");
        fs::create_dir_all(&runtime)?;
        chown_private(&home, uid, 0o700)?;
        chown_private(&runtime, uid, 0o700)?;
        for d in ["config", "data", "cache"] {
            let p = home.join(d);
            fs::create_dir_all(&p)?;
            chown_private(&p, uid, 0o700)?;
        }
        let bin = sys.bin.clone();
        let recorder = helper_path()?.with_file_name("notification-recorder");
        if !recorder.is_file() {
            lab_bail!(
                "{} not found: build it first (cargo build -p postern-lab --bins)",
                recorder.display()
            );
        }
        install_bin(&recorder, &bin.join("notification-recorder"))?;
        let notifications_file = dir.join("notifications.jsonl");
        fs::write(&notifications_file, "")?;
        chown_private(&notifications_file, uid, 0o644)?;
        let mut d = Desktop {
            uid,
            dir: dir.clone(),
            home: home.clone(),
            runtime: runtime.clone(),
            display: String::new(),
            session_addr: format!("unix:path={}", runtime.join("bus").display()),
            system_addr: sys.addr.clone(),
            bin,
            notifications_file,
            procs: Mutex::new(Vec::new()),
        };

        // Xvfb picks a free display and writes its number on fd 1.
        let mut c = Command::new("Xvfb");
        c.args(["-displayfd", "1", "-screen", "0"])
            .arg(format!("{}x{}x24", SCREEN.0, SCREEN.1))
            .args(["-nolisten", "tcp", "-noreset"]);
        let xvfb = d.spawn(lab, "Xvfb", c, "xvfb.out")?;
        let n = wait_for(
            "Xvfb to report its display",
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                if let Some(st) = xvfb.try_status() {
                    lab_bail!("Xvfb exited ({st}): {}", xvfb.tail(20));
                }
                Ok(xvfb
                    .lines_of(crate::process::Stream::Stdout)
                    .iter()
                    .find_map(|l| l.trim().parse::<u32>().ok()))
            },
        )?;
        d.display = format!(":{n}");

        // The session bus: the user's own, no service activation.
        let conf = dir.join("session.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                runtime.join("bus").display()
            ),
        )?;
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644))?;
        let mut c = d.user_command("dbus-daemon", false);
        c.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"]);
        let bus = d.spawn(lab, "session dbus-daemon", c, "session-bus.out")?;
        let sock = runtime.join("bus");
        wait_for(
            "the session bus socket",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                if let Some(st) = bus.try_status() {
                    lab_bail!("the session bus exited ({st}): {}", bus.tail(20));
                }
                Ok(sock.exists().then_some(()))
            },
        )?;

        // GNOME Keyring, unlocked, before any other client is on the bus.
        let pw = home.join("keyring-password");
        fs::write(&pw, KEYRING_PASSWORD)?;
        chown_private(&pw, uid, 0o600)?;
        let mut c = d.user_command("sh", false);
        c.arg("-c")
            .arg("exec gnome-keyring-daemon --foreground --unlock --components=secrets < \"$1\"")
            .arg("sh")
            .arg(&pw);
        let keyring = d.spawn(lab, "gnome-keyring-daemon", c, "keyring.out")?;
        d.wait_session_name("org.freedesktop.secrets", &keyring)?;

        let c = d.user_command("status-notifier-watcher", false);
        let watcher = d.spawn(lab, "status-notifier-watcher", c, "watcher.out")?;
        d.wait_session_name("org.kde.StatusNotifierWatcher", &watcher)?;

        let mut c = d.user_command(d.bin.join("notification-recorder"), false);
        c.arg(&d.notifications_file).arg("--sni-host");
        let rec = d.spawn(lab, "notification-recorder", c, "recorder.out")?;
        d.wait_session_name("org.freedesktop.Notifications", &rec)?;
        wait_for(
            "the StatusNotifierHost to be registered",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                let v = d.busctl_session(&[
                    "get-property",
                    "org.kde.StatusNotifierWatcher",
                    "/StatusNotifierWatcher",
                    "org.kde.StatusNotifierWatcher",
                    "IsStatusNotifierHostRegistered",
                ])?;
                Ok((v["data"] == Value::Bool(true)).then_some(()))
            },
        )?;
        Ok(d)
    }

    fn spawn(&self, lab: &Lab, name: &str, cmd: Command, log: &str) -> Result<Arc<Proc>> {
        let p = Proc::spawn(name, cmd, Some(&self.dir.join(log)))?;
        lab.adopt(&p);
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&p));
        Ok(p)
    }

    /// A command run as the test user with the session's environment (clean: PATH with
    /// the lab's bin first, HOME, XDG dirs, both buses; DISPLAY only when `display`).
    pub fn user_command(&self, program: impl AsRef<std::ffi::OsStr>, display: bool) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.uid))
            .args(["--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin.display()))
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.session_addr)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.system_addr)
            .env("LANG", "C.UTF-8")
            // No accessibility bus in the lab (GTK/AT-SPI would look for one).
            .env("NO_AT_BRIDGE", "1");
        if display {
            cmd.env("DISPLAY", &self.display);
        }
        cmd
    }

    /// Runs a short command as the user (bounded by `timeout`), stdin given or null.
    pub fn run_as_user(&self, args: &[&str], stdin: Option<&str>, secs: u32) -> Result<Output> {
        let mut cmd = self.user_command("timeout", true);
        cmd.arg(secs.to_string()).args(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .map_err(|e| LabError(format!("cannot run {args:?} as the test user: {e}")))?;
        if let Some(s) = stdin {
            use std::io::Write as _;
            if let Some(mut w) = child.stdin.take() {
                w.write_all(s.as_bytes())?;
            }
        }
        Ok(child.wait_with_output()?)
    }

    /// `postern ARGS` (the CLI) as the user in this session.
    pub fn postern(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut a = vec!["postern"];
        a.extend_from_slice(args);
        self.run_as_user(&a, stdin, 60)
    }

    /// `busctl --user --json=short ARGS` as the user; the parsed JSON reply (`Null` for
    /// calls without one).
    pub fn busctl_session(&self, args: &[&str]) -> Result<Value> {
        self.busctl(&["--user"], args)
    }

    /// `busctl --system --json=short ARGS` as the user, on the lab's system bus.
    pub fn busctl_system(&self, args: &[&str]) -> Result<Value> {
        self.busctl(&["--system"], args)
    }

    fn busctl(&self, bus: &[&str], args: &[&str]) -> Result<Value> {
        let mut a = vec!["busctl"];
        a.extend_from_slice(bus);
        // "--": arguments such as "-1" are not options.
        a.extend_from_slice(&["--json=short", "--timeout=5", "--no-pager", "--"]);
        a.extend_from_slice(args);
        let o = self.run_as_user(&a, None, 15)?;
        if !o.status.success() {
            lab_bail!("busctl {}: {}", args.join(" "), output_text(&o));
        }
        let out = String::from_utf8_lossy(&o.stdout);
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(out.trim())
            .map_err(|e| LabError(format!("busctl {}: not JSON ({e}): {out}", args.join(" "))))
    }

    /// The well-known names on the session bus.
    pub fn session_names(&self) -> Result<Vec<String>> {
        let o = self.run_as_user(
            &["busctl", "--user", "list", "--no-pager", "--no-legend"],
            None,
            10,
        )?;
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| !n.starts_with(':'))
            .map(str::to_string)
            .collect())
    }

    /// Waits until `name` is owned on the session bus (bounded), failing early when
    /// `p` exits.
    pub fn wait_session_name(&self, name: &str, p: &Proc) -> Result<()> {
        wait_for(
            &format!("{name} on the session bus"),
            Duration::from_secs(15),
            Duration::from_millis(100),
            || {
                if let Some(st) = p.try_status() {
                    lab_bail!(
                        "{} exited ({st}) before owning {name}: {}",
                        p.name(),
                        p.tail(20)
                    );
                }
                Ok(self
                    .session_names()?
                    .iter()
                    .any(|n| n == name)
                    .then_some(()))
            },
        )
        .map_err(|e| LabError(format!("{e}; {} said:\n{}", p.name(), p.tail(20))))
    }

    /// `xdotool ARGS` on this display (as root: Xvfb admits local clients). Bounded.
    pub fn xdotool(&self, args: &[&str]) -> Result<String> {
        run(Command::new("timeout")
            .args(["20", "xdotool"])
            .args(args)
            .env("DISPLAY", &self.display))
    }

    /// Waits (bounded) for a visible window whose name matches the regex `name`;
    /// returns its X id.
    pub fn wait_window(&self, name: &str, timeout: Duration) -> Result<String> {
        wait_for(
            &format!("a visible window named {name:?}"),
            timeout,
            Duration::from_millis(100),
            || {
                let out = Command::new("timeout")
                    .args(["5", "xdotool", "search", "--onlyvisible", "--name", name])
                    .env("DISPLAY", &self.display)
                    .output()?;
                Ok(String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()))
            },
        )
    }

    /// The window's position and size on the screen.
    pub fn window_geometry(&self, wid: &str) -> Result<Rect> {
        let out = self.xdotool(&["getwindowgeometry", "--shell", wid])?;
        let get = |k: &str| -> Result<u32> {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map(|v| v.max(0) as u32)
                .ok_or_else(|| LabError(format!("xdotool getwindowgeometry: no {k} in {out}")))
        };
        Ok(Rect {
            x: get("X")?,
            y: get("Y")?,
            w: get("WIDTH")?,
            h: get("HEIGHT")?,
        })
    }

    /// A real click: the pointer moves to (x, y) relative to the window and button 1 is
    /// pressed and released (XTEST).
    pub fn click(&self, wid: &str, x: u32, y: u32) -> Result<()> {
        self.xdotool(&[
            "mousemove",
            "--sync",
            "--window",
            wid,
            &x.to_string(),
            &y.to_string(),
        ])?;
        self.xdotool(&["click", "1"]).map(|_| ())
    }

    /// Types `text` into the focused window, then presses the `then` key when given.
    pub fn type_text(&self, wid: &str, text: &str, then: Option<&str>) -> Result<()> {
        // No window manager: focus the window explicitly (XSetInputFocus).
        let _ = self.xdotool(&["windowfocus", "--sync", wid]);
        // Let the app see the focus change before the first key.
        std::thread::sleep(Duration::from_millis(200));
        self.xdotool(&["type", "--delay", "40", "--", text])?;
        if let Some(k) = then {
            self.xdotool(&["key", k])?;
        }
        Ok(())
    }

    /// Takes a screenshot of the whole screen: `<target>/desktop-screenshots/NAME.png`
    /// (and the PPM the pixels are read from, in the lab directory).
    pub fn screenshot(&self, name: &str) -> Result<Screenshot> {
        let shots = screenshot_dir();
        fs::create_dir_all(&shots)?;
        let ppm = self.dir.join(format!("{name}.ppm"));
        let png = shots.join(format!("{name}.png"));
        run(Command::new("timeout")
            .args([
                "20",
                "import",
                "-display",
                &self.display,
                "-window",
                "root",
                "-depth",
                "8",
            ])
            .arg(&ppm))?;
        run(Command::new("timeout")
            .args(["20", "convert"])
            .arg(&ppm)
            .arg(&png))?;
        Screenshot::from_ppm(&fs::read(&ppm)?, png)
    }

    /// Everything the recorder received so far.
    pub fn notifications(&self) -> Vec<Notification> {
        parse_notifications(&fs::read_to_string(&self.notifications_file).unwrap_or_default())
    }

    /// Waits (bounded) for a notification that satisfies `pred`.
    pub fn wait_notification(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Notification) -> bool,
    ) -> Result<Notification> {
        wait_for(what, timeout, Duration::from_millis(100), || {
            Ok(self.notifications().into_iter().find(|n| pred(n)))
        })
        .map_err(|e| {
            LabError(format!(
                "{e}; notifications so far: {:?}",
                self.notifications()
            ))
        })
    }

    /// The items registered with the StatusNotifierWatcher: `(bus name, object path)`.
    pub fn tray_items(&self) -> Result<Vec<(String, String)>> {
        let v = self.busctl_session(&[
            "get-property",
            "org.kde.StatusNotifierWatcher",
            "/StatusNotifierWatcher",
            "org.kde.StatusNotifierWatcher",
            "RegisteredStatusNotifierItems",
        ])?;
        Ok(v["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .map(|s| match s.find('/') {
                Some(i) => (s[..i].to_string(), s[i..].to_string()),
                None => (s.to_string(), "/StatusNotifierItem".to_string()),
            })
            .collect())
    }

    /// A string property of a StatusNotifierItem (`Title`, `Status`, `IconName`...).
    pub fn tray_property(&self, item: &(String, String), prop: &str) -> Result<Value> {
        let v = self.busctl_session(&[
            "get-property",
            &item.0,
            &item.1,
            "org.kde.StatusNotifierItem",
            prop,
        ])?;
        Ok(v["data"].clone())
    }

    /// The item's menu: its flattened dbusmenu layout and the menu's object path.
    pub fn tray_menu(&self, item: &(String, String)) -> Result<(String, Vec<MenuEntry>)> {
        let path = self
            .tray_property(item, "Menu")?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LabError("the tray item has no Menu path".into()))?;
        let v = self.busctl_session(&[
            "call",
            &item.0,
            &path,
            "com.canonical.dbusmenu",
            "GetLayout",
            "iias",
            "0",
            "-1",
            "0",
        ])?;
        Ok((path, parse_menu_layout(&v["data"])?))
    }

    /// Clicks a tray menu item: dbusmenu `Event(id, "clicked", "", now)`.
    pub fn tray_click(&self, item: &(String, String), menu: &str, id: i32) -> Result<()> {
        self.busctl_session(&[
            "call",
            &item.0,
            menu,
            "com.canonical.dbusmenu",
            "Event",
            "isvu",
            &id.to_string(),
            "clicked",
            "s",
            "",
            "0",
        ])
        .map(|_| ())
    }

    /// The helper's connections visible to the user: `(path, name, state, virtual IP)`,
    /// read over the system bus as the user (`List`, then the properties).
    pub fn helper_connections(&self) -> Result<Vec<(String, String, String, String)>> {
        let v = self.busctl_system(&[
            "call",
            "org.postern.Helper1",
            "/org/postern/Helper1",
            "org.postern.Helper1",
            "List",
        ])?;
        let paths: Vec<String> = v["data"][0]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let mut out = Vec::new();
        for p in paths {
            let prop = |name: &str| -> Result<String> {
                let v = self.busctl_system(&[
                    "get-property",
                    "org.postern.Helper1",
                    &p,
                    "org.postern.Helper1.Connection",
                    name,
                ])?;
                Ok(v["data"].as_str().unwrap_or_default().to_string())
            };
            let (name, state, vip) = (prop("Name")?, prop("State")?, prop("VirtualIp")?);
            out.push((p, name, state, vip));
        }
        Ok(out)
    }

    /// Starts the lab's stand-in for the XDG Desktop Portal's file dialog
    /// (`fake-portal`: `OpenFile` answers `open`, `SaveFile` answers `save`, both file
    /// paths, as if the user had picked them) and waits for its name. Its calls are
    /// recorded in `<session>/portal.jsonl` ([`Desktop::portal_calls`]).
    pub fn start_fake_portal(&self, lab: &Lab, open: &Path, save: Option<&Path>) -> Result<()> {
        let built = helper_path()?.with_file_name("fake-portal");
        if !built.is_file() {
            lab_bail!(
                "{} not found: build it first (cargo build -p postern-lab --bins)",
                built.display()
            );
        }
        install_bin(&built, &self.bin.join("fake-portal"))?;
        let log = self.dir.join("portal.jsonl");
        fs::write(&log, "")?;
        chown_private(&log, self.uid, 0o644)?;
        let uri = |p: &Path| format!("file://{}", p.display());
        let mut c = self.user_command(self.bin.join("fake-portal"), false);
        c.arg(&log).arg("--open").arg(uri(open));
        if let Some(s) = save {
            c.arg("--save").arg(uri(s));
        }
        let p = self.spawn(lab, "fake-portal", c, "portal.out")?;
        self.wait_session_name("org.freedesktop.portal.Desktop", &p)
    }

    /// The file dialog calls the fake portal answered: one JSON object each
    /// (`method`, `title`, `token`, `current_name`).
    pub fn portal_calls(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.join("portal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Writes `text` as a file of the test user (mode 0600) under its home; returns the
    /// path.
    pub fn user_file(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.home.join(name);
        fs::write(&p, text)?;
        chown_private(&p, self.uid, 0o600)?;
        Ok(p)
    }

    /// Starts `postern-gui` as the user in this session (copied into the lab's bin),
    /// with `POSTERN_GUI_STATE_FILE` set and `env` added.
    pub fn start_app(&self, lab: &Lab, env: &[(&str, &str)]) -> Result<App> {
        let built = helper_path()?.with_file_name("postern-gui");
        if !built.is_file() {
            lab_bail!(
                "postern-gui not found at {}: build it first (cargo build -p postern-gui)",
                built.display()
            );
        }
        let gui = self.bin.join("postern-gui");
        install_bin(&built, &gui)?;
        let state_file = self.runtime.join("postern-gui-state.json");
        let _ = fs::remove_file(&state_file);
        let mut c = self.user_command(&gui, true);
        c.env("POSTERN_GUI_STATE_FILE", &state_file)
            .env("ICED_BACKEND", "tiny-skia")
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().copied());
        let proc = self.spawn(lab, "postern-gui", c, "postern-gui.out")?;
        Ok(App { proc, state_file })
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        let procs: Vec<Arc<Proc>> = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for p in procs.iter().rev() {
            p.stop(Duration::from_secs(3));
        }
    }
}

/// The running desktop app.
pub struct App {
    pub proc: Arc<Proc>,
    /// Where the app writes its state for tests (`POSTERN_GUI_STATE_FILE`).
    pub state_file: PathBuf,
}

impl App {
    /// The app's last written state, `None` while there is none (or it does not parse:
    /// the app writes it atomically, so that means not written yet).
    pub fn state(&self) -> Option<Value> {
        let text = fs::read_to_string(&self.state_file).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits (bounded) for a state that satisfies `pred`; fails early if the app exits.
    pub fn wait_state(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        wait_for(what, timeout, Duration::from_millis(100), || {
            if let Some(st) = self.proc.try_status() {
                lab_bail!("postern-gui exited ({st}): {}", self.proc.tail(30));
            }
            Ok(self.state().filter(|s| pred(s)))
        })
        .map_err(|e| {
            LabError(format!(
                "{e}; the app's last state: {}",
                self.state()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "(none)".into())
            ))
        })
    }

    /// The state file's entry for `profile`.
    pub fn profile_state(state: &Value, profile: &str) -> Option<Value> {
        state["profiles"]
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str() == Some(profile))
            .cloned()
    }

    /// Window-relative bounds `[x, y, w, h]` the app reports under `key` (e.g.
    /// `"connect:office"`).
    pub fn bounds(state: &Value, key: &str) -> Option<Rect> {
        let a = state["bounds"][key].as_array()?;
        let n = |i: usize| a.get(i).and_then(Value::as_f64).map(|v| v.max(0.0) as u32);
        Some(Rect {
            x: n(0)?,
            y: n(1)?,
            w: n(2)?,
            h: n(3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ppm_and_finds_a_colour() {
        // 4x2: a 2x1 green block at (1,0), the rest white.
        let mut px = vec![255u8; 4 * 2 * 3];
        for x in [1usize, 2] {
            px[x * 3..x * 3 + 3].copy_from_slice(&[0x2e, 0x7d, 0x32]);
        }
        let mut bytes = b"P6\n4 2\n255\n".to_vec();
        bytes.extend_from_slice(&px);
        let s = Screenshot::from_ppm(&bytes, PathBuf::new()).unwrap();
        assert_eq!((s.width, s.height), (4, 2));
        let green = rgb("#2E7D32").unwrap();
        assert_eq!(s.count_near(green, 0, None), 2);
        assert_eq!(s.count_near([0x30, 0x7f, 0x30], 3, None), 2);
        assert_eq!(s.count_near([0x30, 0x7f, 0x30], 1, None), 0);
        assert_eq!(
            s.find_colour(green, 0, None, 2),
            Some(Rect {
                x: 1,
                y: 0,
                w: 2,
                h: 1
            })
        );
        assert_eq!(s.find_colour(green, 0, None, 3), None);
        assert!(!s.is_blank());
        assert_eq!(
            s.blobs(green, 0, None, 1),
            vec![(
                Rect {
                    x: 1,
                    y: 0,
                    w: 2,
                    h: 1
                },
                2
            )]
        );
        assert!(
            s.blobs(
                green,
                0,
                Some(Rect {
                    x: 3,
                    y: 0,
                    w: 1,
                    h: 2
                }),
                1
            )
            .is_empty()
        );
        assert_eq!(
            s.distinct_colours(
                Some(Rect {
                    x: 1,
                    y: 0,
                    w: 2,
                    h: 2
                }),
                10
            ),
            2
        );
        assert_eq!(
            s.distinct_colours(
                Some(Rect {
                    x: 3,
                    y: 0,
                    w: 1,
                    h: 2
                }),
                10
            ),
            1
        );
        let one = [b"P6 1 1 255 ".as_slice(), &[7, 7, 7]].concat();
        assert!(
            Screenshot::from_ppm(&one, PathBuf::new())
                .unwrap()
                .is_blank()
        );
        assert!(Screenshot::from_ppm(b"P6\n4 2\n65535\n", PathBuf::new()).is_err());
        assert!(Screenshot::from_ppm(b"P6\n4 2\n255\n\0\0", PathBuf::new()).is_err());
        assert!(Screenshot::from_ppm(b"P3\n", PathBuf::new()).is_err());
    }

    #[test]
    fn parses_recorded_notifications() {
        let text = "{\"id\":1,\"app\":\"Postern\",\"summary\":\"office connected\",\"body\":\"Address 10.200.1.1\",\"icon\":\"\"}\nnot json\n";
        let n = parse_notifications(text);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].summary, "office connected");
        assert!(n[0].text().contains("10.200.1.1"));
    }

    #[test]
    fn flattens_a_dbusmenu_layout() {
        // As busctl --json=short prints GetLayout of a ksni menu: a submenu per profile
        // and a top-level item.
        let json = r#"{"type":"u(ia{sv}av)","data":[3,[0,{"children-display":{"type":"s","data":"submenu"}},[
            {"type":"(ia{sv}av)","data":[1,{"label":{"type":"s","data":"_office"},"children-display":{"type":"s","data":"submenu"}},[
                {"type":"(ia{sv}av)","data":[2,{"label":{"type":"s","data":"Connect"}},[]]},
                {"type":"(ia{sv}av)","data":[3,{"label":{"type":"s","data":"Disconnect"},"enabled":{"type":"b","data":false}},[]]}
            ]]},
            {"type":"(ia{sv}av)","data":[4,{"label":{"type":"s","data":"Connect home"}},[]]},
            {"type":"(ia{sv}av)","data":[5,{"label":{"type":"s","data":"Quit"}},[]]}
        ]]]}"#;
        let v: Value = serde_json::from_str(json).unwrap();
        let m = parse_menu_layout(&v["data"]).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].label, "office");
        let c = find_menu_item(&m, "Connect", "office").unwrap();
        assert_eq!((c.id, c.parents.clone()), (2, vec!["office".to_string()]));
        let d = find_menu_item(&m, "Disconnect", "office").unwrap();
        assert!(!d.enabled);
        assert_eq!(find_menu_item(&m, "Connect", "home").unwrap().id, 4);
        assert!(find_menu_item(&m, "Connect", "lab").is_none());
        assert!(parse_menu_layout(&serde_json::json!([1, [0, {}]])).is_err());
        assert_eq!(strip_mnemonic("Connect my__vpn"), "Connect my_vpn");
        assert_eq!(strip_mnemonic("_Quit"), "Quit");
    }
}
