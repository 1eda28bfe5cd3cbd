//! The D-Bus service (DESIGN.md contract 3): `postern-helper` with no arguments (or
//! `daemon`) owns `org.postern.Helper1` on the system bus.
//!
//! The interface is a thin layer (STYLE.md 8): authorize the caller with polkit,
//! validate and convert the arguments (`postern_dbus::request`), send a command to the
//! tunnel's task (`crate::tunnel`), answer. Every method takes `&self` and awaits
//! nothing but polkit and the bus daemon, so no call blocks another; several tunnels
//! may run at once. Each tunnel has a pump task that folds its events into a
//! [`Status`] and sends the changes, log lines and prompts *unicast* to the bus names
//! that created or watch it.

mod auth;
mod lost;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_dbus::failure::LastError;
use postern_dbus::interface::{
    BUS_NAME, CONNECTION_INTERFACE, CONNECTION_PATH_PREFIX, CheckStep, Error, MANAGER_PATH, SaInfo,
    SaTraffic, SystemProfile, Traffic, action, limits,
};
use postern_dbus::request;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};
use zbus::{Connection, interface};

pub use auth::Authority;

use crate::tunnel::status::{State, Status};
use crate::tunnel::{self, Command, Event};

/// How long a finished connection object stays for front ends to read its end.
const LINGER: Duration = Duration::from_secs(30);
/// How long the notice of a tunnel lost with a killed helper stays (a failed
/// connection object its owner can read; not counted against the owner's limit).
const LOST_LINGER: Duration = Duration::from_secs(600);
/// The `LastError` sentence of such a tunnel.
pub const LOST_MESSAGE: &str = "tunnel lost: the helper was restarted (it had stopped without closing the tunnel); what it had set up on this computer was removed";
/// Ended tunnels kept per uid while they linger (the oldest is dropped early).
const ENDED_PER_UID: usize = 8;
/// How long SIGTERM waits for the tunnels to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One tunnel as the service sees it.
struct Conn {
    path: OwnedObjectPath,
    owner: u32,
    name: String,
    /// The system profile (file stem) this tunnel is of; `None` for a user profile's.
    system: Option<String>,
    /// An `autoconnect = "boot"` tunnel: brought back after any failure, forever, with
    /// growing waits, until someone disconnects it.
    keep_up: bool,
    /// Someone asked for a disconnect (a kept-up tunnel then stays down).
    stopped: std::sync::atomic::AtomicBool,
    /// Wakes a kept-up tunnel's wait between attempts when it is disconnected.
    stop: tokio::sync::Notify,
    status: Mutex<Status>,
    /// The current attempt's command channel (replaced when a kept-up tunnel restarts).
    commands: Mutex<tokio::sync::mpsc::UnboundedSender<Command>>,
    /// Unique bus names that receive this tunnel's signals.
    watchers: Mutex<Vec<String>>,
    /// The latest log lines, and how many there have been in all.
    log: Mutex<LogHistory>,
    /// The profile's settings for "Check the tunnel".
    check: CheckSettings,
    /// A check is running (one at a time per tunnel).
    checking: std::sync::atomic::AtomicBool,
    /// The record naming this tunnel's owner for a helper started after a crash
    /// ([`lost`]); removed when the tunnel ends.
    record: Mutex<Option<std::path::PathBuf>>,
    /// Only the notice of a tunnel a killed helper had (no task behind it).
    lost: bool,
}

impl Conn {
    fn forget_record(&self) {
        if let Some(p) = self.record.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The profile keys `Check` uses (`network.check_host`, `check_domain`, `portal_url`).
#[derive(Debug, Clone, Default)]
struct CheckSettings {
    host: Option<std::net::Ipv4Addr>,
    domain: Option<String>,
    portal_url: Option<String>,
}

#[derive(Default)]
struct LogHistory {
    lines: std::collections::VecDeque<String>,
    total: u64,
}

impl Conn {
    /// Keeps one log line and sends it to the watchers. The line is counted before
    /// the watcher list is read (no await between): a `Watch` that returned N sees
    /// exactly the lines from N on.
    async fn log_line(&self, bus: &Connection, line: &str) {
        {
            let mut h = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if h.lines.len() >= postern_dbus::interface::LOG_HISTORY {
                h.lines.pop_front();
            }
            h.lines.push_back(line.to_string());
            h.total += 1;
        }
        to_watchers(bus, self, CONNECTION_INTERFACE, "LogLine", &(line,)).await;
    }
}

impl Conn {
    fn send(&self, c: Command) -> Result<(), ()> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(c)
            .map_err(|_| ())
    }

    fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<Command> {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Shared by the manager object, the connection objects and the pump tasks.
pub struct Daemon {
    authority: Authority,
    conns: Mutex<HashMap<OwnedObjectPath, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Wakes the idle watcher when the set of tunnels changes.
    changed: tokio::sync::Notify,
    /// Where the system profiles are (`fleet::system::dir()`; never a caller's path).
    profiles_dir: std::path::PathBuf,
    /// Where each user tunnel's owner record goes ([`lost`]); `None`: none written.
    records: Option<std::path::PathBuf>,
}

impl Daemon {
    pub fn new(authority: Authority) -> Arc<Self> {
        Arc::new(Daemon {
            authority,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            changed: tokio::sync::Notify::new(),
            profiles_dir: crate::fleet::system::dir(),
            records: None,
        })
    }

    /// A daemon that records each user tunnel's owner in `records` (the run directory).
    pub fn with_records(authority: Authority, records: std::path::PathBuf) -> Arc<Self> {
        let mut d = Daemon::new(authority);
        if let Some(m) = Arc::get_mut(&mut d) {
            m.records = Some(records);
        }
        d
    }

    /// A daemon reading system profiles from `dir` (tests).
    #[cfg(test)]
    pub fn with_profiles_dir(authority: Authority, dir: std::path::PathBuf) -> Arc<Self> {
        let mut d = Daemon::new(authority);
        if let Some(m) = Arc::get_mut(&mut d) {
            m.profiles_dir = dir;
        }
        d
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedObjectPath, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self) -> usize {
        self.conns().len()
    }

    /// The connection at `path` if the caller may touch it: its owner, root, or a
    /// caller polkit allows `manage-any`. Others are told it does not exist.
    async fn visible(
        &self,
        conn: &Connection,
        hdr: &Header<'_>,
        path: &ObjectPath<'_>,
        own_action: &str,
    ) -> Result<Arc<Conn>, Error> {
        let uid = self.authority.caller_uid(conn, hdr).await?;
        let c = self
            .conns()
            .get(&OwnedObjectPath::from(path.to_owned()))
            .cloned()
            .ok_or_else(|| Error::NoSuchConnection(format!("no connection {path}")))?;
        if c.system.is_some() {
            // A system profile's tunnel is everyone's: connect-system decides.
            self.authority
                .require(conn, hdr, action::CONNECT_SYSTEM)
                .await?;
        } else if c.owner == uid || uid == 0 {
            self.authority.require(conn, hdr, own_action).await?;
        } else {
            // Not the caller's: only an admin; never say whether it exists otherwise.
            if self
                .authority
                .require(conn, hdr, action::MANAGE_ANY)
                .await
                .is_err()
            {
                return Err(Error::NoSuchConnection(format!("no connection {path}")));
            }
        }
        Ok(c)
    }
}

/// The refusal of a user profile under `[profiles] user_profiles = false`.
const USER_PROFILES_OFF: &str = "this machine's policy allows system profiles only";

/// The longest wait between two attempts of a kept-up (`autoconnect = "boot"`) tunnel.
const KEEP_UP_MAX_WAIT: Duration = Duration::from_secs(60);

fn finished(s: State) -> bool {
    matches!(s, State::Disconnected | State::Failed)
}

/// The site policy, read at each use (an admin's change needs no restart).
fn site_policy() -> Result<crate::fleet::policy::Policy, Error> {
    crate::fleet::policy::Policy::load(&crate::fleet::policy::path())
        .map_err(|e| Error::Failed(format!("the site policy cannot be read: {e}")))
}

/// System profile `name`, read from disk now (file, secrets beside it, certificate
/// files, the site policy); a refusal names the file.
async fn load_system(daemon: &Daemon, name: &str) -> Result<postern_dbus::profile::Profile, Error> {
    let policy = site_policy()?;
    let dir = daemon.profiles_dir.clone();
    let n = name.to_string();
    tokio::task::spawn_blocking(move || crate::fleet::system::load(&dir, &n, &policy))
        .await
        .map_err(|e| Error::Failed(format!("cannot read the system profile: {e}")))?
        .map_err(Error::InvalidProfile)
}

/// Whose a new tunnel is.
struct Origin {
    owner: u32,
    system: Option<String>,
    keep_up: bool,
}

/// Starts a tunnel for `profile`, publishes its object, and pumps its events.
async fn start(
    bus: &Connection,
    daemon: &Arc<Daemon>,
    profile: postern_dbus::profile::Profile,
    origin: Origin,
    watcher: Option<String>,
) -> Result<OwnedObjectPath, Error> {
    let id = daemon.next_id.fetch_add(1, Ordering::Relaxed);
    let path = OwnedObjectPath::try_from(format!("{CONNECTION_PATH_PREFIX}{id}"))
        .map_err(|e| Error::Failed(format!("cannot name the connection: {e}")))?;
    let check = CheckSettings {
        host: profile.network.check_host,
        domain: profile.network.check_domain.clone(),
        portal_url: profile.network.portal_url.clone(),
    };
    let name = profile.name.clone();
    let mut status = Status::new(&profile.gateway);
    status.ike_version = u32::from(profile.ike_version);
    // User tunnels only: a system tunnel's owner is root, told by the journal's lines.
    let record = match (&daemon.records, &origin.system) {
        (Some(dir), None) => {
            let t = lost::Lost {
                owner: origin.owner,
                gateway: profile.gateway.clone(),
                name: name.clone(),
            };
            lost::record(dir, id, &t)
                .map_err(|e| {
                    eprintln!(
                        "warning: cannot record the tunnel's owner in {}: {e}",
                        dir.display()
                    )
                })
                .ok()
        }
        _ => None,
    };
    let handle = tunnel::spawn(profile);
    let c = Arc::new(Conn {
        path: path.clone(),
        owner: origin.owner,
        name,
        system: origin.system,
        keep_up: origin.keep_up,
        stopped: std::sync::atomic::AtomicBool::new(false),
        stop: tokio::sync::Notify::new(),
        status: Mutex::new(status),
        commands: Mutex::new(handle.commands.clone()),
        watchers: Mutex::new(watcher.into_iter().collect()),
        log: Mutex::new(LogHistory::default()),
        check,
        checking: std::sync::atomic::AtomicBool::new(false),
        record: Mutex::new(record),
        lost: false,
    });
    bus.object_server()
        .at(
            path.clone(),
            ConnObject {
                conn: Arc::clone(&c),
                daemon: Arc::clone(daemon),
            },
        )
        .await
        .map_err(|e| Error::Failed(format!("cannot publish the connection: {e}")))?;
    daemon.conns().insert(path.clone(), Arc::clone(&c));
    daemon.changed.notify_one();
    tokio::spawn(pump(
        bus.clone(),
        Arc::clone(daemon),
        c,
        handle.events,
        handle.task,
    ));
    Ok(path)
}

/// Brings up every system profile with `autoconnect = "boot"` (the helper's start,
/// with no user): kept up, whatever fails, until someone disconnects it.
async fn autoconnect_boot(bus: &Connection, daemon: &Arc<Daemon>) {
    let dir = daemon.profiles_dir.clone();
    let Ok(policy) = site_policy() else {
        eprintln!("autoconnect: the site policy cannot be read; no boot profile started");
        return;
    };
    let d = dir.clone();
    let list = tokio::task::spawn_blocking(move || crate::fleet::system::list(&d, &policy))
        .await
        .unwrap_or_default();
    for e in list {
        if e.autoconnect != postern_dbus::profile::Autoconnect::Boot {
            continue;
        }
        if let Some(why) = e.refused {
            eprintln!("autoconnect: {} refused: {why}", e.name);
            continue;
        }
        let profile = match load_system(daemon, &e.name).await {
            Ok(p) => p,
            Err(err) => {
                eprintln!("autoconnect: {}: {err}", e.name);
                continue;
            }
        };
        if let Some((_, why)) = crate::fleet::system::boot_problem(&profile) {
            eprintln!(
                "autoconnect: {} not started: {}: {why}",
                e.name,
                e.file.display()
            );
            continue;
        }
        let origin = Origin {
            owner: 0,
            system: Some(e.name.clone()),
            keep_up: true,
        };
        match start(bus, daemon, profile, origin, None).await {
            Ok(p) => eprintln!("autoconnect: {} (boot) as {}", e.name, p.as_str()),
            Err(err) => eprintln!("autoconnect: {}: {err}", e.name),
        }
    }
}

/// `org.postern.Helper1` at `/org/postern/Helper1`.
pub struct Manager {
    daemon: Arc<Daemon>,
}

#[interface(name = "org.postern.Helper1")]
impl Manager {
    async fn connect(
        &self,
        profile: String,
        secrets: HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Error> {
        let mut secrets = secrets;
        let uid = match self.daemon.authority.caller_uid(conn, &hdr).await {
            Ok(u) => u,
            Err(e) => {
                request::wipe(&mut secrets);
                return Err(e);
            }
        };
        if let Err(e) = self
            .daemon
            .authority
            .require(conn, &hdr, action::CONNECT)
            .await
        {
            request::wipe(&mut secrets);
            return Err(e);
        }
        let mut profile = request::connect(&profile, secrets)?;
        // The site policy (read at each connect, so an admin's change needs no restart).
        let policy = site_policy()?;
        if !policy.user_profiles {
            return Err(Error::AccessDenied(USER_PROFILES_OFF.into()));
        }
        if let Err((key, why)) = policy.apply(&mut profile) {
            return Err(Error::InvalidProfile(format!("{key}: {why}")));
        }
        let sender = hdr.sender().map(|s| s.to_string());
        // Tunnels that ended linger for their owner to read (LINGER); they do not count
        // against the limit, but at most ENDED_PER_UID of them are kept (the oldest
        // goes first), so quick connect/disconnect cycles neither hit the limit nor
        // pile up objects.
        let (mine, ended) = {
            let conns = self.daemon.conns();
            let mut ended: Vec<OwnedObjectPath> = Vec::new();
            let mut live = 0;
            for c in conns
                .values()
                .filter(|c| c.owner == uid && c.system.is_none())
            {
                if c.lost || c.status().state.is_final() {
                    ended.push(c.path.clone());
                } else {
                    live += 1;
                }
            }
            (live, ended)
        };
        if mine >= limits::CONNECTIONS_PER_UID {
            return Err(Error::LimitReached(format!(
                "you have {mine} tunnels; at most {}",
                limits::CONNECTIONS_PER_UID
            )));
        }
        if ended.len() >= ENDED_PER_UID {
            let mut ended = ended;
            ended.sort_by_key(path_number);
            for p in &ended[..=ended.len() - ENDED_PER_UID] {
                self.daemon.conns().remove(p);
                let _ = conn
                    .object_server()
                    .remove::<ConnObject, _>(p.as_ref())
                    .await;
            }
        }
        let path = start(
            conn,
            &self.daemon,
            profile,
            Origin {
                owner: uid,
                system: None,
                keep_up: false,
            },
            sender,
        )
        .await?;
        eprintln!("uid {uid}: connect {}", path.as_str());
        Ok(path)
    }

    async fn system_profiles(&self) -> Result<Vec<SystemProfile>, Error> {
        let policy = site_policy()?;
        let dir = self.daemon.profiles_dir.clone();
        let list = tokio::task::spawn_blocking(move || crate::fleet::system::list(&dir, &policy))
            .await
            .map_err(|e| Error::Failed(format!("cannot read the system profiles: {e}")))?;
        Ok(list
            .into_iter()
            .map(|e| SystemProfile {
                name: e.name,
                title: e.title,
                gateway: e.gateway,
                autoconnect: e.autoconnect.as_str().into(),
                file: e.file.display().to_string(),
                refused: e.refused.unwrap_or_default(),
            })
            .collect())
    }

    async fn connect_system(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, Error> {
        let uid = self.daemon.authority.caller_uid(conn, &hdr).await?;
        self.daemon
            .authority
            .require(conn, &hdr, action::CONNECT_SYSTEM)
            .await?;
        let sender = hdr.sender().map(|s| s.to_string());
        // One tunnel per system profile: the caller joins it when it is up already.
        let existing = self
            .daemon
            .conns()
            .values()
            .find(|c| c.system.as_deref() == Some(name.as_str()) && !finished(c.status().state))
            .cloned();
        if let Some(c) = existing {
            if let Some(s) = sender {
                let mut w = c.watchers.lock().unwrap_or_else(|e| e.into_inner());
                if !w.contains(&s) && w.len() < 16 {
                    w.push(s);
                }
            }
            return Ok(c.path.clone());
        }
        let profile = load_system(&self.daemon, &name).await?;
        let path = start(
            conn,
            &self.daemon,
            profile,
            Origin {
                owner: 0,
                system: Some(name.clone()),
                keep_up: false,
            },
            sender,
        )
        .await?;
        eprintln!(
            "uid {uid}: connect system profile {name} as {}",
            path.as_str()
        );
        Ok(path)
    }

    async fn system_profile_text(&self, name: String) -> Result<String, Error> {
        let dir = self.daemon.profiles_dir.clone();
        tokio::task::spawn_blocking(move || crate::fleet::system::shown_text(&dir, &name))
            .await
            .map_err(|e| Error::Failed(format!("cannot read the system profile: {e}")))?
            .map_err(Error::InvalidProfile)
    }

    async fn save_system_profile(
        &self,
        name: String,
        profile: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        let uid = self.daemon.authority.caller_uid(conn, &hdr).await?;
        self.daemon
            .authority
            .require(conn, &hdr, action::EDIT_SYSTEM)
            .await?;
        if profile.len() > limits::PROFILE_BYTES || profile.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "profile: at most {} bytes, no NUL",
                limits::PROFILE_BYTES
            )));
        }
        let dir = self.daemon.profiles_dir.clone();
        let n = name.clone();
        let path =
            tokio::task::spawn_blocking(move || crate::fleet::system::save(&dir, &n, &profile))
                .await
                .map_err(|e| Error::Failed(format!("cannot save the system profile: {e}")))?
                .map_err(Error::InvalidProfile)?;
        eprintln!(
            "uid {uid}: saved system profile {name} ({})",
            path.display()
        );
        Ok(())
    }

    async fn check_profile(&self, profile: String) -> Result<String, Error> {
        if profile.len() > limits::PROFILE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "profile: at most {} bytes",
                limits::PROFILE_BYTES
            )));
        }
        let mut p = postern_dbus::profile::Profile::from_toml_str(
            &profile,
            "profile",
            postern_dbus::profile::SecretPolicy::Forbid,
        )
        .map_err(|e| Error::InvalidProfile(e.to_string()))?;
        let policy = site_policy()?;
        if !policy.user_profiles {
            return Ok(USER_PROFILES_OFF.into());
        }
        Ok(match policy.apply(&mut p) {
            Ok(()) => String::new(),
            Err((key, why)) => format!("{key}: {why}"),
        })
    }

    async fn disconnect(
        &self,
        connection: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        let c = self
            .daemon
            .visible(conn, &hdr, &connection, action::MANAGE_OWN)
            .await?;
        c.stopped.store(true, Ordering::Release);
        c.stop.notify_one();
        match c.send(Command::Disconnect {
            reason: "disconnect requested over D-Bus".into(),
        }) {
            Ok(()) => Ok(()),
            // Waiting between attempts: the wait ends on `stop`.
            Err(()) if c.keep_up && !finished(c.status().state) => Ok(()),
            Err(()) => Err(Error::NoSuchConnection(format!(
                "{connection} has already ended"
            ))),
        }
    }

    async fn submit_credentials(
        &self,
        connection: ObjectPath<'_>,
        answers: HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), Error> {
        let mut answers = answers;
        let c = match self
            .daemon
            .visible(conn, &hdr, &connection, action::MANAGE_OWN)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                request::wipe(&mut answers);
                return Err(e);
            }
        };
        let creds = request::answers(answers)?;
        if c.status().state != State::NeedsCredentials {
            return Err(Error::NotAsking(format!(
                "{connection} is not waiting for credentials"
            )));
        }
        c.send(Command::Credentials(creds))
            .map_err(|()| Error::NoSuchConnection(format!("{connection} has already ended")))
    }

    async fn list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<OwnedObjectPath>, Error> {
        let uid = self.daemon.authority.caller_uid(conn, &hdr).await?;
        let mut v: Vec<OwnedObjectPath> = self
            .daemon
            .conns()
            .values()
            .filter(|c| uid == 0 || c.owner == uid || c.system.is_some())
            .map(|c| c.path.clone())
            .collect();
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(v)
    }

    async fn watch(
        &self,
        connection: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u64, Error> {
        let c = self
            .daemon
            .visible(conn, &hdr, &connection, action::MANAGE_OWN)
            .await?;
        if let Some(s) = hdr.sender() {
            let mut w = c.watchers.lock().unwrap_or_else(|e| e.into_inner());
            if w.len() >= 16 {
                return Err(Error::LimitReached("16 watchers already".into()));
            }
            if !w.iter().any(|x| x == s.as_str()) {
                w.push(s.to_string());
            }
        }
        Ok(c.log.lock().unwrap_or_else(|e| e.into_inner()).total)
    }

    #[zbus(property)]
    fn version(&self) -> u32 {
        1
    }
}

/// `org.postern.Helper1.Connection`: one tunnel. Every property is refused to callers
/// other than the owner, root and admins.
struct ConnObject {
    conn: Arc<Conn>,
    daemon: Arc<Daemon>,
}

impl ConnObject {
    async fn allowed(
        &self,
        conn: &Connection,
        hdr: Option<Header<'_>>,
    ) -> Result<Status, zbus::fdo::Error> {
        // No header: zbus building a change signal, which goes unicast to watchers.
        if let Some(hdr) = hdr {
            self.daemon
                .visible(conn, &hdr, &self.conn.path.as_ref(), action::MANAGE_OWN)
                .await
                .map_err(|_| {
                    zbus::fdo::Error::AccessDenied("this connection belongs to another user".into())
                })?;
        }
        Ok(self.conn.status())
    }

    /// The tunnel's counters, from its driver (zeros when it does not answer in 2 s).
    async fn counters(&self) -> crate::tunnel::Counters {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.conn.send(Command::Counters(tx)).is_err() {
            return crate::tunnel::Counters::default();
        }
        tokio::time::timeout(Duration::from_secs(2), rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }
}

#[interface(name = "org.postern.Helper1.Connection")]
impl ConnObject {
    #[zbus(property)]
    async fn name(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        self.allowed(conn, hdr).await?;
        Ok(self.conn.name.clone())
    }
    #[zbus(property)]
    async fn owner(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u32> {
        self.allowed(conn, hdr).await?;
        Ok(self.conn.owner)
    }
    #[zbus(property)]
    async fn system_profile(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        self.allowed(conn, hdr).await?;
        Ok(self.conn.system.clone().unwrap_or_default())
    }
    #[zbus(property)]
    async fn state(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.state.as_str().into())
    }
    #[zbus(property)]
    async fn phase(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.phase.into())
    }
    #[zbus(property)]
    async fn detail(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.detail.into())
    }
    #[zbus(property)]
    async fn gateway(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.gateway)
    }
    #[zbus(property)]
    async fn virtual_ip(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.addresses())
    }
    #[zbus(property)]
    async fn dns(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<String>> {
        Ok(self
            .allowed(conn, hdr)
            .await?
            .dns
            .iter()
            .map(|a| a.to_string())
            .collect())
    }
    #[zbus(property)]
    async fn routes(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.allowed(conn, hdr).await?.routes)
    }
    #[zbus(property)]
    async fn ike_proposal(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        Ok(self.allowed(conn, hdr).await?.ike_proposal)
    }
    #[zbus(property(emits_changed_signal = "const"))]
    async fn ike_version(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u32> {
        Ok(self.allowed(conn, hdr).await?.ike_version)
    }
    #[zbus(property)]
    async fn sas(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<SaInfo>> {
        Ok(sa_infos(&self.allowed(conn, hdr).await?))
    }
    #[zbus(property(emits_changed_signal = "false"))]
    async fn traffic(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Traffic> {
        self.allowed(conn, hdr).await?;
        let c = self.counters().await;
        Ok(Traffic {
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            tx_dropped: c.tx_dropped,
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            rx_dropped: c.rx_dropped,
        })
    }
    #[zbus(property(emits_changed_signal = "false"))]
    async fn sa_traffic(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<SaTraffic>> {
        self.allowed(conn, hdr).await?;
        Ok(self.counters().await.sas)
    }
    #[zbus(property)]
    async fn last_error(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<LastError> {
        Ok(last_error(&self.allowed(conn, hdr).await?))
    }
    #[zbus(property)]
    async fn protection(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<String>> {
        Ok(self.allowed(conn, hdr).await?.protection)
    }

    async fn recent_log(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<(u64, Vec<String>)> {
        self.allowed(conn, Some(hdr)).await?;
        let h = self.conn.log.lock().unwrap_or_else(|e| e.into_inner());
        Ok((h.total, h.lines.iter().cloned().collect()))
    }

    /// "Check the tunnel" (`crate::check`): only while connected, one at a time.
    async fn check(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<CheckStep>, Error> {
        self.daemon
            .visible(conn, &hdr, &self.conn.path.as_ref(), action::MANAGE_OWN)
            .await?;
        let status = self.conn.status();
        if status.state != State::Connected {
            return Err(Error::Failed(format!(
                "{} is {}: the tunnel can be checked once it is connected",
                self.conn.name,
                status.state.as_str()
            )));
        }
        if self.conn.checking.swap(true, Ordering::AcqRel) {
            return Err(Error::Failed(format!(
                "{} is being checked already",
                self.conn.name
            )));
        }
        let target = crate::check::Target {
            virtual_ip: status.virtual_ip,
            dns: status.dns.clone(),
            domain: status.domain.clone(),
            check_host: self.conn.check.host,
            check_domain: self.conn.check.domain.clone(),
            portal_url: self.conn.check.portal_url.clone(),
        };
        let nm = if target.portal_url.is_none() {
            networkmanager_connectivity(conn).await
        } else {
            None
        };
        let steps = crate::check::run(
            target,
            || async {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.conn.send(Command::Counters(tx)).ok()?;
                let c = tokio::time::timeout(Duration::from_secs(2), rx)
                    .await
                    .ok()?
                    .ok()?;
                Some(crate::check::Count {
                    tx_packets: c.tx_packets,
                    rx_packets: c.rx_packets,
                })
            },
            nm,
        )
        .await;
        self.conn.checking.store(false, Ordering::Release);
        for s in &steps {
            self.conn
                .log_line(
                    conn,
                    &format!("check {}: {}: {}", s.name, s.outcome, s.detail),
                )
                .await;
        }
        Ok(steps)
    }
}

/// NetworkManager's connectivity verdict, if it runs on this bus and has one (1 s at
/// most).
async fn networkmanager_connectivity(bus: &Connection) -> Option<crate::check::Connectivity> {
    use crate::check::Connectivity;
    let proxy = zbus::fdo::PropertiesProxy::builder(bus)
        .destination("org.freedesktop.NetworkManager")
        .ok()?
        .path("/org/freedesktop/NetworkManager")
        .ok()?
        .build()
        .await
        .ok()?;
    let iface = zbus::names::InterfaceName::try_from("org.freedesktop.NetworkManager").ok()?;
    let v = tokio::time::timeout(Duration::from_secs(1), proxy.get(iface, "Connectivity"))
        .await
        .ok()?
        .ok()?;
    match u32::try_from(v).ok()? {
        1 => Some(Connectivity::None),
        2 => Some(Connectivity::Portal),
        3 => Some(Connectivity::Limited),
        4 => Some(Connectivity::Full),
        _ => None,
    }
}

fn last_error(s: &Status) -> LastError {
    s.last_error
        .as_ref()
        .map(LastError::from)
        .unwrap_or_default()
}

fn sa_infos(s: &Status) -> Vec<SaInfo> {
    s.sas
        .iter()
        .map(|a| SaInfo {
            spi_in: a.spi_in,
            spi_out: a.spi_out,
            proposal: a.proposal.clone(),
            mode: a.mode.into(),
            udp_encapsulation: a.udp_encapsulation,
            local_ts: a.local_ts.clone(),
            remote_ts: a.remote_ts.clone(),
            lifetime_secs: a.lifetime.as_secs(),
            lifetime_kb: a.lifetime_kb.unwrap_or(0),
        })
        .collect()
}

/// The properties that carry a change signal, as sent in `PropertiesChanged`.
fn changed_properties(s: &Status) -> HashMap<&'static str, Value<'static>> {
    let mut m = HashMap::new();
    m.insert("State", Value::from(s.state.as_str().to_string()));
    m.insert("Phase", Value::from(s.phase.to_string()));
    m.insert("Detail", Value::from(s.detail.to_string()));
    m.insert("Gateway", Value::from(s.gateway.clone()));
    m.insert("VirtualIp", Value::from(s.addresses()));
    m.insert(
        "Dns",
        Value::from(s.dns.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
    );
    m.insert("Routes", Value::from(s.routes.clone()));
    m.insert("IkeProposal", Value::from(s.ike_proposal.clone()));
    m.insert("Sas", Value::from(sa_infos(s)));
    m.insert("LastError", Value::from(last_error(s)));
    m.insert("Protection", Value::from(s.protection.clone()));
    m
}

/// Sends one signal of the connection to each watcher (unicast). A watcher that is
/// gone is dropped from the list.
async fn to_watchers<B>(bus: &Connection, c: &Conn, iface: &str, member: &str, body: &B)
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let watchers = c.watchers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for w in watchers {
        if bus
            .emit_signal(Some(w.as_str()), c.path.as_ref(), iface, member, body)
            .await
            .is_err()
        {
            c.watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|x| *x != w);
        }
    }
}

async fn publish(bus: &Connection, c: &Conn) {
    let props = changed_properties(&c.status());
    let empty: Vec<&str> = Vec::new();
    to_watchers(
        bus,
        c,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        &(CONNECTION_INTERFACE, props, empty),
    )
    .await;
}

/// Folds a tunnel's events into its status and tells its watchers; when the task
/// ends, records how, lingers, and removes the object. A kept-up tunnel that failed
/// (and that nobody disconnected) starts again instead, after a wait growing from 1 s
/// to [`KEEP_UP_MAX_WAIT`], with its profile read again from disk.
async fn pump(
    bus: Connection,
    daemon: Arc<Daemon>,
    c: Arc<Conn>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    mut task: tokio::task::JoinHandle<Result<(), tunnel::Failure>>,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        let mut connected = false;
        while let Some(ev) = events.recv().await {
            c.status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply(&ev);
            connected |= c.status().state == State::Connected;
            for line in ev.to_string().lines() {
                c.log_line(&bus, line).await;
            }
            // A kept-up tunnel starts again by itself: its kill switch is not held
            // for a disconnect nobody will send.
            if matches!(ev, Event::FailedHolding(_))
                && c.keep_up
                && !c.stopped.load(Ordering::Acquire)
            {
                let _ = c.send(tunnel::Command::Disconnect {
                    reason: "kept up: trying again".into(),
                });
            }
            if let Event::CredentialsRequired(req) = &ev {
                let fields: Vec<&str> = req
                    .fields
                    .iter()
                    .map(|f| request::answer_key_of(*f))
                    .collect();
                let message = req.message.clone().unwrap_or_default();
                to_watchers(
                    &bus,
                    &c,
                    CONNECTION_INTERFACE,
                    "CredentialsRequired",
                    &(fields, message),
                )
                .await;
            }
            publish(&bus, &c).await;
        }
        let result = match (&mut task).await {
            Ok(r) => r,
            Err(e) => Err(tunnel::Failure::new(
                postern_dbus::failure::FailureKind::Internal,
                format!("the tunnel task failed: {e}"),
            )),
        };
        let failure = result.err();
        if let Some(f) = &failure {
            let line = format!("error: {}", f.message);
            c.log_line(&bus, &line).await;
            eprintln!("{}: {line}", c.path.as_str());
        } else {
            eprintln!("{}: disconnected", c.path.as_str());
        }
        c.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finish(failure.as_ref());
        if !(c.keep_up && failure.is_some() && !c.stopped.load(Ordering::Acquire)) {
            c.forget_record();
            break;
        }
        // Kept up: try again after a wait (reset once an attempt got connected).
        if connected {
            wait = Duration::from_secs(1);
        }
        c.status.lock().unwrap_or_else(|e| e.into_inner()).state = State::Reconnecting;
        publish(&bus, &c).await;
        c.log_line(
            &bus,
            &format!(
                "kept up (autoconnect = boot): trying again in {} s",
                wait.as_secs()
            ),
        )
        .await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = c.stop.notified() => {}
        }
        wait = (wait * 2).min(KEEP_UP_MAX_WAIT);
        if c.stopped.load(Ordering::Acquire) {
            c.status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(None);
            c.log_line(&bus, "disconnected").await;
            break;
        }
        let Some(name) = c.system.clone() else { break };
        match load_system(&daemon, &name).await {
            Ok(profile) => {
                let handle = tunnel::spawn(profile);
                *c.commands.lock().unwrap_or_else(|e| e.into_inner()) = handle.commands;
                events = handle.events;
                task = handle.task;
            }
            Err(e) => {
                // The file changed into something refused: say so and keep waiting.
                let line = format!("error: {e}");
                c.log_line(&bus, &line).await;
                eprintln!("{}: {line}", c.path.as_str());
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                drop(tx);
                events = rx;
                task = tokio::spawn(async move {
                    Err(tunnel::Failure::new(
                        postern_dbus::failure::FailureKind::BadProfile,
                        e.to_string(),
                    ))
                });
            }
        }
    }
    publish(&bus, &c).await;
    tokio::time::sleep(LINGER).await;
    let _ = bus
        .object_server()
        .remove::<ConnObject, _>(c.path.as_ref())
        .await;
    daemon.conns().remove(&c.path);
    daemon.changed.notify_one();
}

/// `postern-helper daemon [--idle-exit SECS]`: serve on the system bus until SIGTERM
/// or SIGINT (every tunnel closed first), or, with `--idle-exit`, until no tunnel has
/// existed for that long (D-Bus activation starts it again).
pub fn run(idle_exit: Option<Duration>) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(postern_dbus::failure::exit::FAILURE);
        }
    };
    match rt.block_on(serve(idle_exit)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("error: {m}");
            std::process::ExitCode::from(postern_dbus::failure::exit::FAILURE)
        }
    }
}

async fn serve(idle_exit: Option<Duration>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    for line in crate::kernel::cleanup_stale() {
        eprintln!("{line}");
    }
    let bus = zbus::connection::Builder::system()
        .map_err(|e| format!("cannot reach the system bus: {e}"))?
        .build()
        .await
        .map_err(|e| format!("cannot reach the system bus: {e}"))?;
    let dir = crate::kernel::journal::run_dir();
    let lost = lost::take_stale(&dir);
    let daemon = Daemon::with_records(Authority::Polkit, dir);
    bus.object_server()
        .at(
            MANAGER_PATH,
            Manager {
                daemon: Arc::clone(&daemon),
            },
        )
        .await
        .map_err(|e| format!("cannot serve {MANAGER_PATH}: {e}"))?;
    bus.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME}: {e} (as root, with packaging/org.postern.Helper1.conf installed)"))?;
    for t in lost {
        publish_lost(&bus, &daemon, t).await;
    }
    eprintln!("serving {BUS_NAME} on the system bus");
    autoconnect_boot(&bus, &daemon).await;
    loop {
        let idle = async {
            match idle_exit {
                Some(d) if daemon.count() == 0 => tokio::time::sleep(d).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = daemon.changed.notified() => continue,
            _ = idle => {
                eprintln!("idle: exiting");
                return Ok(());
            }
        }
    }
    shutdown(&daemon).await;
    Ok(())
}

/// Closes every tunnel and waits (bounded) until their tasks have torn down.
async fn shutdown(daemon: &Daemon) {
    let conns: Vec<Arc<Conn>> = daemon.conns().values().cloned().collect();
    eprintln!("shutting down {} tunnel(s)", conns.len());
    for c in &conns {
        c.stopped.store(true, Ordering::Release);
        c.stop.notify_one();
        let _ = c.send(Command::Disconnect {
            reason: "helper stopping".into(),
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        for c in &conns {
            c.sender().closed().await;
        }
    })
    .await;
    // Closed on request: not lost, whatever a later helper finds.
    for c in &conns {
        c.forget_record();
    }
}

/// The `n` of `<prefix><n>` (ordering connection paths by age).
fn path_number(p: &OwnedObjectPath) -> u64 {
    p.as_str()
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A tunnel the previous (killed) helper had: published as a failed connection of its
/// owner with `LastError` kind `helper-restarted`, for [`LOST_LINGER`], so the owner's
/// front end (which sees the helper come back on the bus and calls `List`) can say so.
async fn publish_lost(bus: &Connection, daemon: &Arc<Daemon>, t: lost::Lost) {
    let id = daemon.next_id.fetch_add(1, Ordering::Relaxed);
    let Ok(path) = OwnedObjectPath::try_from(format!("{CONNECTION_PATH_PREFIX}{id}")) else {
        return;
    };
    let mut status = Status::new(&t.gateway);
    status.finish(Some(&tunnel::Failure::new(
        postern_dbus::failure::FailureKind::HelperRestarted,
        LOST_MESSAGE,
    )));
    // No task behind it: commands go nowhere ("has already ended").
    let (commands, _) = tokio::sync::mpsc::unbounded_channel();
    let c = Arc::new(Conn {
        path: path.clone(),
        owner: t.owner,
        name: t.name,
        system: None,
        keep_up: false,
        stopped: std::sync::atomic::AtomicBool::new(true),
        stop: tokio::sync::Notify::new(),
        status: Mutex::new(status),
        commands: Mutex::new(commands),
        watchers: Mutex::new(Vec::new()),
        log: Mutex::new(LogHistory::default()),
        check: CheckSettings::default(),
        checking: std::sync::atomic::AtomicBool::new(false),
        record: Mutex::new(None),
        lost: true,
    });
    c.log_line(bus, &format!("error: {LOST_MESSAGE}")).await;
    if bus
        .object_server()
        .at(
            path.clone(),
            ConnObject {
                conn: Arc::clone(&c),
                daemon: Arc::clone(daemon),
            },
        )
        .await
        .is_err()
    {
        return;
    }
    eprintln!(
        "uid {}: tunnel {} lost with the previous helper, shown as {}",
        c.owner,
        c.name,
        path.as_str()
    );
    daemon.conns().insert(path.clone(), c);
    let (bus, daemon) = (bus.clone(), Arc::clone(daemon));
    tokio::spawn(async move {
        tokio::time::sleep(LOST_LINGER).await;
        let _ = bus
            .object_server()
            .remove::<ConnObject, _>(path.as_ref())
            .await;
        daemon.conns().remove(&path);
        daemon.changed.notify_one();
    });
}

#[cfg(test)]
mod tests;
