//! The connection watcher: the helper's tunnels as a stream of typed [`Update`]s, and
//! the commands that drive them ([`Handle`]), over the `dbus/` proxies. No user
//! interface here: the desktop app wraps [`run`] as a subscription and turns each
//! [`Update`] into a message; its `update()` tests fake the whole thing with
//! [`Handle::fake`] (commands land in a channel the test reads) and hand-made
//! [`Update`]s.
//!
//! What it copes with:
//! * the system bus or the helper missing: [`Update::Helper`] says so (once per
//!   change), the watcher looks again every [`TICK`] while it is absent (and at once
//!   when the bus says the name got an owner: `NameOwnerChanged`), and picks the helper
//!   up when it appears (also when it is D-Bus activatable but not yet running);
//! * while the helper is there nothing is polled: the watcher follows the helper's
//!   signals (`PropertiesChanged`, `LogLine`, `CredentialsRequired`) and the bus's
//!   `NameOwnerChanged`, and only every [`IDLE_LOOK`] (or on [`Command::Refresh`], when
//!   the window opens) asks `List` for tunnels started elsewhere and objects the
//!   helper removed (an idle app in the tray wakes up far less than once a second);
//! * connects asked while the helper is away wait for it (they are not lost);
//! * tunnels started elsewhere (the CLI, an earlier run of the app) are found by `List`
//!   and `Watch`ed, so their signals reach us too;
//! * signals missed around subscribing: a tunnel's properties are read once after its
//!   signals are subscribed, then again after each `PropertiesChanged` or prompt; a
//!   snapshot goes out only when it changed.
//!
//! Secrets: the PSK and XAuth password come from the command (typed by the user) or
//! the keyring ([`crate::keyring`], under a timeout: a locked keyring must not hang
//! a connect); certificate files are read here, as the user
//! ([`profiles::cert_contents`]); nothing secret is logged or `Debug`-printed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use postern_dbus::failure::LastError;
use postern_dbus::interface::{
    self as iface, ConnectionProxy, HelperProxy, SaInfo, SaTraffic, Traffic, secret_key, state,
};
use postern_dbus::profile::{AuthMethod, Secret};
use tokio::sync::mpsc;
use zbus::zvariant::OwnedObjectPath;

use crate::{Fail, FailureKind, keyring, profiles};

/// How often the watcher looks for the bus and the helper while the helper is absent.
pub const TICK: Duration = Duration::from_secs(2);
/// How often it asks the helper for its list of tunnels while it is there (tunnels
/// started elsewhere, objects removed after they went down); signals cover the rest.
pub const IDLE_LOOK: Duration = Duration::from_secs(60);
/// How long "Check the tunnel" may take (the helper's own bound is about 15 s).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a keyring call may take (a locked keyring can block on a prompt).
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);

/// What the app asks the watcher to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Bring `profile` (a profile file name) up. `psk` / `xauth_password`: typed by
    /// the user (else taken from the keyring); `remember`: store the typed ones there.
    Connect {
        profile: String,
        psk: Option<Secret>,
        xauth_password: Option<Secret>,
        remember: bool,
    },
    Disconnect {
        profile: String,
    },
    /// Answers to a [`Update::Credentials`] prompt: (answer key, value). With
    /// `remember_password`, the `password` answer goes to the keyring (never a passcode).
    Submit {
        profile: String,
        answers: Vec<(String, Secret)>,
        remember_password: bool,
    },
    /// Read the tunnel's traffic counters now ([`Update::Traffic`] answers).
    Traffic {
        profile: String,
    },
    /// Look at the helper's tunnels now (the window opened: tunnels started elsewhere
    /// show at once).
    Refresh,
    /// "Check the tunnel" (the connection's `Check`): [`Update::Checked`] answers.
    Check {
        profile: String,
    },
    /// Whether this machine's policy refuses these user profiles (the helper's
    /// `CheckProfile`, each file read here as the user): [`Update::Policy`] answers.
    CheckPolicy {
        profiles: Vec<String>,
    },
    /// System profile `name`'s text without secrets (`SystemProfileText`):
    /// [`Update::SystemText`] answers.
    SystemText {
        name: String,
    },
    /// Replaces system profile `name` with `text` (`SaveSystemProfile`: polkit
    /// `edit-system`, the desktop's polkit agent asks for an administrator's
    /// password): [`Update::SystemSaved`] answers.
    SaveSystem {
        name: String,
        text: String,
    },
}

/// What the watcher tells the app.
// A `Tunnel` is the big variant and the common one (every property change): boxing it
// would allocate for each update to save space on the rare small ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Update {
    /// The watcher runs: commands go through this.
    Ready(Handle),
    /// The helper is reachable (`Ok`) or why not; sent when it changes.
    Helper(Result<(), Fail>),
    /// A tunnel's properties, whenever they change.
    Tunnel(Tunnel),
    /// One line of a tunnel's log (history first, then live, never twice).
    Log { profile: String, line: String },
    /// The gateway asks for XAuth credentials: `fields` are keys of
    /// [`iface::answer_key`], `message` the gateway's text.
    Credentials {
        profile: String,
        fields: Vec<String>,
        message: String,
    },
    /// A secret the connect needs is neither given nor in the keyring
    /// ([`secret_key::PSK`]): ask the user and connect again with it. `reason`: one
    /// sentence when the keyring could not be read (locked, not running).
    SecretNeeded {
        profile: String,
        key: &'static str,
        reason: Option<String>,
    },
    /// A stored secret could not be read (the keyring is locked or not there), so the
    /// user will be asked: one sentence to show with that question.
    KeyringNote { profile: String, sentence: String },
    /// Counters, answering [`Command::Traffic`].
    Traffic {
        profile: String,
        total: Traffic,
        per_sa: Vec<SaTraffic>,
    },
    /// A command failed before or outside the tunnel (profile, keyring, the helper's
    /// refusal). The tunnel's own failures come in [`Tunnel::last_error`].
    Failed { profile: String, failure: Fail },
    /// The helper removed the tunnel's object (after it went down).
    Gone { profile: String },
    /// The steps of "Check the tunnel", or why it could not run.
    Checked {
        profile: String,
        result: Result<Vec<iface::CheckStep>, Fail>,
    },
    /// The machine's system profiles (with each list from the helper). Their tunnels
    /// come as the profile [`SYSTEM_PREFIX`]`NAME`.
    SystemProfiles(Vec<iface::SystemProfile>),
    /// Why this machine's policy refuses user profiles: (profile, the helper's
    /// sentence; empty when it does not). With each list from the helper, and
    /// answering [`Command::CheckPolicy`]; profiles that cannot be read are left out.
    Policy(Vec<(String, String)>),
    /// A system profile's text (answering [`Command::SystemText`]).
    SystemText {
        name: String,
        result: Result<String, Fail>,
    },
    /// Answering [`Command::SaveSystem`]: saved, or why not.
    SystemSaved {
        name: String,
        result: Result<(), Fail>,
    },
}

/// How a system profile is named among the user's: `system:NAME` (a user profile's
/// name cannot contain `:`).
pub const SYSTEM_PREFIX: &str = "system:";

/// One tunnel as the helper reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tunnel {
    /// The profile (file) name it belongs to.
    pub profile: String,
    pub path: String,
    /// One of [`iface::state`].
    pub state: String,
    /// `resolving`, `phase1`, `xauth`, `mode-config`, `phase2`, `established`.
    pub phase: String,
    /// One of [`iface::detail`] ("reconnecting: network changed", "resumed: checking
    /// the gateway") or empty: shown instead of the bare state.
    pub detail: String,
    pub gateway: String,
    pub virtual_ip: String,
    pub dns: Vec<String>,
    pub routes: Vec<String>,
    pub ike_proposal: String,
    /// The IKE version the helper says the tunnel speaks (1 or 2); 0: not known (an
    /// older helper), the profile file tells.
    pub ike_version: u32,
    pub sas: Vec<SaInfo>,
    pub last_error: Option<Fail>,
    /// The helper's firewall for this tunnel (`kill switch on: ...`, `IPv6 blocked
    /// while connected: ...`); empty: nothing.
    pub protection: Vec<String>,
}

impl Tunnel {
    /// Up or on its way up (a click means "disconnect").
    pub fn is_active(&self) -> bool {
        !matches!(
            self.state.as_str(),
            state::DISCONNECTED | state::FAILED | ""
        )
    }
}

/// Sends commands to the watcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Command>,
}

impl Handle {
    /// Queues a command; false when the watcher has stopped.
    pub fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }

    /// A handle whose commands land in the returned receiver (for tests of the app).
    pub fn fake() -> (Handle, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Handle { tx }, rx)
    }
}

/// The watcher as a stream: first [`Update::Ready`], then updates until the stream is
/// dropped. Spawns its work on the current tokio runtime.
pub fn run() -> impl futures_util::Stream<Item = Update> + Send + 'static {
    run_on(None)
}

/// [`run`] on the bus at `address` (`None`: the system bus, or
/// `DBUS_SYSTEM_BUS_ADDRESS`).
pub fn run_on(
    address: Option<String>,
) -> impl futures_util::Stream<Item = Update> + Send + 'static {
    let (tx, rx) = mpsc::channel(256);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let ready = Update::Ready(Handle { tx: cmd_tx });
    let task = tokio::spawn(watch(address, tx, cmd_rx));
    let abort = AbortOnDrop(task);
    futures_util::stream::once(async move { ready }).chain(futures_util::stream::unfold(
        (rx, abort),
        |(mut rx, abort)| async move { rx.recv().await.map(|u| (u, (rx, abort))) },
    ))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Events of the per-tunnel tasks and of spawned commands, back to the main loop.
enum Internal {
    Out(Box<Update>),
    /// A connect went through: follow this path as `profile`.
    Connected(String, OwnedObjectPath),
    /// A tunnel task ended (object gone).
    Ended(OwnedObjectPath),
}

struct State {
    address: Option<String>,
    out: mpsc::Sender<Update>,
    internal: mpsc::UnboundedSender<Internal>,
    conn: Option<zbus::Connection>,
    helper_ok: Option<bool>,
    /// Followed tunnels: path → (profile, task).
    tunnels: HashMap<OwnedObjectPath, (String, AbortOnDrop)>,
    /// Commands waiting for the helper.
    pending: Vec<Command>,
}

async fn watch(
    address: Option<String>,
    out: mpsc::Sender<Update>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
) {
    let (itx, mut irx) = mpsc::unbounded_channel();
    let mut st = State {
        address,
        out,
        internal: itx,
        conn: None,
        helper_ok: None,
        tunnels: HashMap::new(),
        pending: Vec::new(),
    };
    // The first look at once; then every TICK while the helper is absent, every
    // IDLE_LOOK while it is there, and at once when its name changes owner.
    let mut next = tokio::time::Instant::now();
    let mut owners: Option<zbus::fdo::NameOwnerChangedStream> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                st.look().await;
                next = tokio::time::Instant::now() + st.look_every();
            }
            changed = next_owner_change(&mut owners) => {
                if changed {
                    st.look().await;
                    next = tokio::time::Instant::now() + st.look_every();
                } else {
                    // The bus connection ended: look again (and subscribe again).
                    owners = None;
                    st.conn = None;
                    next = tokio::time::Instant::now();
                }
            }
            c = cmds.recv() => match c {
                Some(Command::Refresh) => {
                    st.look().await;
                    next = tokio::time::Instant::now() + st.look_every();
                }
                Some(c) => st.command(c).await,
                None => return,
            },
            Some(i) = irx.recv() => match i {
                Internal::Out(u) => { let _ = st.out.send(*u).await; }
                Internal::Connected(profile, path) => st.follow(profile, path, true),
                Internal::Ended(path) => {
                    if let Some((profile, _)) = st.tunnels.remove(&path) {
                        let _ = st.out.send(Update::Gone { profile }).await;
                    }
                }
            },
        }
        if st.out.is_closed() {
            return;
        }
        if st.conn.is_none() {
            owners = None;
        } else if owners.is_none()
            && let Some(conn) = &st.conn
        {
            owners = owner_changes(conn).await;
        }
    }
}

/// `NameOwnerChanged` for the helper's name (the helper started, stopped, restarted).
async fn owner_changes(conn: &zbus::Connection) -> Option<zbus::fdo::NameOwnerChangedStream> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.ok()?;
    dbus.receive_name_owner_changed_with_args(&[(0, iface::BUS_NAME)])
        .await
        .ok()
}

/// True on a change; false when the stream ended; pending forever without a stream.
async fn next_owner_change(s: &mut Option<zbus::fdo::NameOwnerChangedStream>) -> bool {
    match s {
        Some(s) => s.next().await.is_some(),
        None => std::future::pending().await,
    }
}

impl State {
    async fn set_helper(&mut self, r: Result<(), Fail>) {
        let ok = r.is_ok();
        if self.helper_ok != Some(ok) {
            self.helper_ok = Some(ok);
            let _ = self.out.send(Update::Helper(r)).await;
        }
    }

    /// How long until the next look by itself.
    fn look_every(&self) -> Duration {
        if self.helper_ok == Some(true) {
            IDLE_LOOK
        } else {
            TICK
        }
    }

    /// The look: bus, helper, new tunnels, tunnels gone.
    async fn look(&mut self) {
        if self.conn.is_none() {
            let c = match &self.address {
                None => zbus::Connection::system().await,
                Some(a) => match zbus::connection::Builder::address(a.as_str()) {
                    Ok(b) => b.build().await,
                    Err(e) => Err(e),
                },
            };
            match c {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.set_helper(Err(Fail::new(
                        FailureKind::HelperUnreachable,
                        format!("cannot reach the system bus: {e}"),
                    )))
                    .await;
                    return;
                }
            }
        }
        let Some(conn) = self.conn.clone() else {
            return;
        };
        match helper_present(&conn).await {
            Ok(Presence::Running) => {}
            Ok(Presence::Activatable) => {
                // Not running, so no tunnel: the bus starts it for the first command
                // (asking for its list here would start it, and keep an idle helper
                // from ever exiting).
                for (_, (profile, _)) in std::mem::take(&mut self.tunnels) {
                    let _ = self.out.send(Update::Gone { profile }).await;
                }
                self.set_helper(Ok(())).await;
                for c in std::mem::take(&mut self.pending) {
                    self.command(c).await;
                }
                return;
            }
            Ok(Presence::Absent) => {
                self.tunnels.clear();
                self.set_helper(Err(Fail::new(
                    FailureKind::HelperUnreachable,
                    format!(
                        "postern-helper is not on the system bus ({})",
                        iface::BUS_NAME
                    ),
                )))
                .await;
                return;
            }
            Err(e) => {
                // The bus connection itself broke: start again next tick.
                self.conn = None;
                self.tunnels.clear();
                self.set_helper(Err(e)).await;
                return;
            }
        }
        let paths = match HelperProxy::new(&conn).await {
            Ok(h) => h.list().await.map_err(Fail::from),
            Err(e) => Err(Fail::from(e)),
        };
        match paths {
            Ok(paths) => {
                self.set_helper(Ok(())).await;
                // Objects the helper removed (a while after they went down): no signal
                // says so, the list does.
                let gone: Vec<OwnedObjectPath> = self
                    .tunnels
                    .keys()
                    .filter(|p| !paths.contains(p))
                    .cloned()
                    .collect();
                for p in gone {
                    if let Some((profile, _)) = self.tunnels.remove(&p) {
                        let _ = self.out.send(Update::Gone { profile }).await;
                    }
                }
                if let Ok(h) = HelperProxy::new(&conn).await {
                    if let Ok(sys) = h.system_profiles().await {
                        let _ = self.out.send(Update::SystemProfiles(sys)).await;
                    }
                    let names = profiles::names().unwrap_or_default();
                    let refused = policy_of(&h, &names).await;
                    if !refused.is_empty() {
                        let _ = self.out.send(Update::Policy(refused)).await;
                    }
                }
                for p in paths {
                    if !self.tunnels.contains_key(&p) {
                        let profile = profile_of(&conn, &p).await;
                        if let Some(profile) = profile {
                            self.follow(profile, p, false);
                        }
                    }
                }
                for c in std::mem::take(&mut self.pending) {
                    self.command(c).await;
                }
            }
            Err(f) => self.set_helper(Err(f)).await,
        }
    }

    fn follow(&mut self, profile: String, path: OwnedObjectPath, ours: bool) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        if self.tunnels.contains_key(&path) {
            return;
        }
        let task = tokio::spawn(follow_tunnel(
            conn,
            profile.clone(),
            path.clone(),
            ours,
            self.internal.clone(),
        ));
        self.tunnels.insert(path, (profile, AbortOnDrop(task)));
    }

    fn path_of(&self, profile: &str) -> Option<OwnedObjectPath> {
        self.tunnels
            .iter()
            .filter(|(_, (p, _))| p == profile)
            .map(|(path, _)| path.clone())
            .max_by(|a, b| a.as_str().len().cmp(&b.as_str().len()).then(a.cmp(b)))
    }

    async fn command(&mut self, c: Command) {
        let profile = match &c {
            Command::Connect { profile, .. }
            | Command::Disconnect { profile }
            | Command::Submit { profile, .. }
            | Command::Traffic { profile }
            | Command::Check { profile } => profile.clone(),
            Command::SystemText { name } | Command::SaveSystem { name, .. } => name.clone(),
            Command::CheckPolicy { .. } => String::new(),
            // Handled by the loop (`watch`); never queued.
            Command::Refresh => return,
        };
        let conn = match (&self.conn, self.helper_ok) {
            (Some(conn), Some(true)) => conn.clone(),
            _ => {
                if matches!(c, Command::Connect { .. }) {
                    // Waits for the helper; the app shows "waiting for the service".
                    self.pending.retain(
                        |p| !matches!(p, Command::Connect { profile: q, .. } if *q == profile),
                    );
                    self.pending.push(c);
                } else if let Some(u) = helper_away(&c) {
                    let _ = self.out.send(u).await;
                } else if let Command::Check { .. } = c {
                    let _ = self
                        .out
                        .send(Update::Checked {
                            profile,
                            result: Err(Fail::new(
                                FailureKind::HelperUnreachable,
                                "postern-helper is not on the system bus",
                            )),
                        })
                        .await;
                } else if !matches!(c, Command::Traffic { .. } | Command::CheckPolicy { .. }) {
                    let _ = self
                        .out
                        .send(Update::Failed {
                            profile,
                            failure: Fail::new(
                                FailureKind::HelperUnreachable,
                                "postern-helper is not on the system bus",
                            ),
                        })
                        .await;
                }
                return;
            }
        };
        let path = self.path_of(&profile);
        let itx = self.internal.clone();
        tokio::spawn(async move {
            let r = match c {
                Command::Connect {
                    profile: name,
                    psk,
                    xauth_password,
                    remember,
                } => connect(&conn, &name, psk, xauth_password, remember, &itx).await,
                Command::Disconnect { .. } => match path {
                    Some(p) => disconnect(&conn, &p).await,
                    None => Ok(()),
                },
                Command::Submit {
                    profile: name,
                    answers,
                    remember_password,
                } => match path {
                    Some(p) => submit(&conn, &name, &p, answers, remember_password, &itx).await,
                    None => Err(Fail::new(
                        FailureKind::Internal,
                        format!("{name} has no tunnel to answer for"),
                    )),
                },
                Command::Refresh => Ok(()),
                Command::CheckPolicy { profiles: names } => {
                    if let Ok(h) = HelperProxy::new(&conn).await {
                        let refused = policy_of(&h, &names).await;
                        let _ = itx.send(Internal::Out(Box::new(Update::Policy(refused))));
                    }
                    Ok(())
                }
                Command::SystemText { name } => {
                    let result = match HelperProxy::new(&conn).await {
                        Ok(h) => h.system_profile_text(&name).await.map_err(Fail::from),
                        Err(e) => Err(Fail::from(e)),
                    };
                    let _ = itx.send(Internal::Out(Box::new(Update::SystemText { name, result })));
                    Ok(())
                }
                Command::SaveSystem { name, text } => {
                    let result = match HelperProxy::new(&conn).await {
                        Ok(h) => h
                            .save_system_profile(&name, &text)
                            .await
                            .map_err(Fail::from),
                        Err(e) => Err(Fail::from(e)),
                    };
                    let _ = itx.send(Internal::Out(Box::new(Update::SystemSaved {
                        name,
                        result,
                    })));
                    Ok(())
                }
                Command::Check { profile: name } => {
                    let result = match path {
                        Some(p) => match proxy(&conn, &p).await {
                            // The helper bounds its checks (about 15 s); this bounds us.
                            Ok(c) => tokio::time::timeout(CHECK_TIMEOUT, c.check())
                                .await
                                .map_err(|_| {
                                    Fail::new(
                                        FailureKind::HelperUnreachable,
                                        "the check did not finish in time",
                                    )
                                })
                                .and_then(|r| r.map_err(Fail::from)),
                            Err(f) => Err(f),
                        },
                        None => Err(Fail::new(
                            FailureKind::Internal,
                            format!("{name} is not up"),
                        )),
                    };
                    let _ = itx.send(Internal::Out(Box::new(Update::Checked {
                        profile: name,
                        result,
                    })));
                    Ok(())
                }
                Command::Traffic { profile: name } => {
                    if let Some(p) = path
                        && let Ok(c) = proxy(&conn, &p).await
                    {
                        let total = c.traffic().await.unwrap_or_default();
                        let per_sa = c.sa_traffic().await.unwrap_or_default();
                        let _ = itx.send(Internal::Out(Box::new(Update::Traffic {
                            profile: name,
                            total,
                            per_sa,
                        })));
                    }
                    Ok(())
                }
            };
            if let Err(failure) = r {
                let _ = itx.send(Internal::Out(Box::new(Update::Failed { profile, failure })));
            }
        });
    }
}

/// At most this many profiles are checked against the policy at once.
const POLICY_CHECKS: usize = 64;

/// The helper's `CheckProfile` for each of the user's profiles `names` (read here,
/// sent without secrets or certificate paths, as `postern list` does): (name,
/// sentence). A profile that does not load, or a helper without the method, is left
/// out.
async fn policy_of(h: &HelperProxy<'_>, names: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in names.iter().take(POLICY_CHECKS) {
        let Ok(p) = profiles::load(name) else {
            continue;
        };
        if let Ok(s) = h.check_profile(&profiles::text_for_helper(&p)).await {
            out.push((name.clone(), s));
        }
    }
    out
}

/// What a system-profile command answers when the helper is away.
fn helper_away(c: &Command) -> Option<Update> {
    let away = || {
        Fail::new(
            FailureKind::HelperUnreachable,
            "postern-helper is not on the system bus",
        )
    };
    match c {
        Command::SystemText { name } => Some(Update::SystemText {
            name: name.clone(),
            result: Err(away()),
        }),
        Command::SaveSystem { name, .. } => Some(Update::SystemSaved {
            name: name.clone(),
            result: Err(away()),
        }),
        _ => None,
    }
}

/// Whether the helper runs.
enum Presence {
    Running,
    /// Not running, but the bus starts it on the first call (D-Bus activation).
    Activatable,
    Absent,
}

/// Whether the helper runs or can be activated; `Err` when the bus broke.
async fn helper_present(conn: &zbus::Connection) -> Result<Presence, Fail> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await.map_err(Fail::from)?;
    let name = zbus::names::BusName::try_from(iface::BUS_NAME)
        .map_err(|e| Fail::new(FailureKind::Internal, e.to_string()))?;
    match dbus.name_has_owner(name).await {
        Ok(true) => Ok(Presence::Running),
        Ok(false) => Ok(
            if dbus
                .list_activatable_names()
                .await
                .is_ok_and(|v| v.iter().any(|n| n.as_str() == iface::BUS_NAME))
            {
                Presence::Activatable
            } else {
                Presence::Absent
            },
        ),
        Err(e) => Err(Fail::new(
            FailureKind::HelperUnreachable,
            format!("the system bus does not answer: {e}"),
        )),
    }
}

async fn proxy(
    conn: &zbus::Connection,
    path: &OwnedObjectPath,
) -> Result<ConnectionProxy<'static>, Fail> {
    Ok(ConnectionProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

/// The profile a tunnel started elsewhere belongs to: the file whose name, or whose
/// `name` key, is the tunnel's `Name`.
async fn profile_of(conn: &zbus::Connection, path: &OwnedObjectPath) -> Option<String> {
    let c = proxy(conn, path).await.ok()?;
    if let Ok(sys) = c.system_profile().await
        && !sys.is_empty()
    {
        return Some(format!("{SYSTEM_PREFIX}{sys}"));
    }
    let name = c.name().await.ok()?;
    Some(match_profile(&name, &profiles::names().unwrap_or_default()))
}

/// The profile file a tunnel `Name` belongs to (a file name, else a file whose
/// `name` key it is, else the name itself).
pub fn match_profile(name: &str, files: &[String]) -> String {
    if files.iter().any(|f| f == name) {
        return name.to_string();
    }
    files
        .iter()
        .find(|f| profiles::load(f).is_ok_and(|p| p.name == name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// A stored secret; a keyring that does not answer in time is taken as locked (it is
/// usually waiting for its password).
async fn keyring_lookup(profile: &str, key: &str) -> keyring::Found {
    tokio::time::timeout(KEYRING_TIMEOUT, keyring::find(profile, key))
        .await
        .unwrap_or(keyring::Found::Locked)
}

async fn keyring_store(profile: &str, key: &str, value: &str) -> Result<(), Fail> {
    tokio::time::timeout(KEYRING_TIMEOUT, keyring::store(profile, key, value))
        .await
        .unwrap_or_else(|_| {
            Err(Fail::new(
                FailureKind::Keyring,
                "keyring: no answer (locked, waiting for a password?)",
            ))
        })
}

async fn connect(
    conn: &zbus::Connection,
    name: &str,
    psk: Option<Secret>,
    xauth_password: Option<Secret>,
    remember: bool,
    itx: &mpsc::UnboundedSender<Internal>,
) -> Result<(), Fail> {
    if let Some(sys) = name.strip_prefix(SYSTEM_PREFIX) {
        // The helper reads the system profile and its secrets: the name only.
        let path = HelperProxy::new(conn).await?.connect_system(sys).await?;
        let _ = itx.send(Internal::Connected(name.to_string(), path));
        return Ok(());
    }
    let p = profiles::load(name)?;
    let mut secrets: HashMap<&'static str, zeroize::Zeroizing<String>> = HashMap::new();
    if p.auth.method == AuthMethod::Psk {
        let v = match &psk {
            Some(s) => zeroize::Zeroizing::new(s.expose().to_string()),
            None => match keyring_lookup(name, secret_key::PSK).await {
                keyring::Found::Secret(v) => v,
                other => {
                    let _ = itx.send(Internal::Out(Box::new(Update::SecretNeeded {
                        profile: name.to_string(),
                        key: secret_key::PSK,
                        reason: other.sentence("the pre-shared key"),
                    })));
                    return Ok(());
                }
            },
        };
        secrets.insert(secret_key::PSK, v);
    }
    if p.xauth.is_some() {
        // Optional: without it the gateway's prompt comes to the app.
        let v = match &xauth_password {
            Some(s) => Some(zeroize::Zeroizing::new(s.expose().to_string())),
            None => match keyring_lookup(name, secret_key::XAUTH_PASSWORD).await {
                keyring::Found::Secret(v) => Some(v),
                other => {
                    if let Some(sentence) = other.sentence("your password") {
                        let _ = itx.send(Internal::Out(Box::new(Update::KeyringNote {
                            profile: name.to_string(),
                            sentence,
                        })));
                    }
                    None
                }
            },
        };
        if let Some(v) = v {
            secrets.insert(secret_key::XAUTH_PASSWORD, v);
        }
    }
    for (key, value) in profiles::cert_contents(&p)? {
        secrets.insert(key, value);
    }
    let text = profiles::text_for_helper(&p);
    let helper = HelperProxy::new(conn).await?;
    let secrets_ref: HashMap<&str, &str> = secrets.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = helper.connect(&text, secrets_ref).await?;
    drop(secrets);
    let _ = itx.send(Internal::Connected(name.to_string(), path));
    if remember {
        for (key, s) in [
            (secret_key::PSK, &psk),
            (secret_key::XAUTH_PASSWORD, &xauth_password),
        ] {
            if let Some(s) = s {
                keyring_store(name, key, s.expose()).await?;
            }
        }
    }
    Ok(())
}

async fn disconnect(conn: &zbus::Connection, path: &OwnedObjectPath) -> Result<(), Fail> {
    let helper = HelperProxy::new(conn).await?;
    helper.disconnect(path).await?;
    Ok(())
}

async fn submit(
    conn: &zbus::Connection,
    name: &str,
    path: &OwnedObjectPath,
    answers: Vec<(String, Secret)>,
    remember_password: bool,
    _itx: &mpsc::UnboundedSender<Internal>,
) -> Result<(), Fail> {
    let helper = HelperProxy::new(conn).await?;
    let map: HashMap<&str, &str> = answers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    helper.submit_credentials(path, map).await?;
    if remember_password
        && let Some((_, pw)) = answers
            .iter()
            .find(|(k, _)| k == iface::answer_key::PASSWORD)
    {
        keyring_store(name, secret_key::XAUTH_PASSWORD, pw.expose()).await?;
    }
    Ok(())
}

/// Reads every property of a tunnel.
async fn snapshot(c: &ConnectionProxy<'_>, profile: &str, path: &str) -> Result<Tunnel, Fail> {
    let state = c.state().await?;
    Ok(Tunnel {
        profile: profile.to_string(),
        path: path.to_string(),
        state,
        phase: c.phase().await.unwrap_or_default(),
        detail: c.detail().await.unwrap_or_default(),
        gateway: c.gateway().await.unwrap_or_default(),
        virtual_ip: c.virtual_ip().await.unwrap_or_default(),
        dns: c.dns().await.unwrap_or_default(),
        routes: c.routes().await.unwrap_or_default(),
        ike_proposal: c.ike_proposal().await.unwrap_or_default(),
        ike_version: c.ike_version().await.unwrap_or_default(),
        sas: c.sas().await.unwrap_or_default(),
        last_error: c
            .last_error()
            .await
            .unwrap_or_else(|_| LastError::default())
            .failure(),
        protection: c.protection().await.unwrap_or_default(),
    })
}

/// Follows one tunnel until its object goes away.
async fn follow_tunnel(
    conn: zbus::Connection,
    profile: String,
    path: OwnedObjectPath,
    ours: bool,
    itx: mpsc::UnboundedSender<Internal>,
) {
    let out = |u: Update| {
        let _ = itx.send(Internal::Out(Box::new(u)));
    };
    let ended = || {
        let _ = itx.send(Internal::Ended(path.clone()));
    };
    let Ok(c) = proxy(&conn, &path).await else {
        ended();
        return;
    };
    // Subscribed before Watch/RecentLog, so nothing sent to us is missed.
    let (Ok(mut logs), Ok(mut asks), Ok(props)) = (
        c.receive_log_line().await,
        c.receive_credentials_required().await,
        zbus::fdo::PropertiesProxy::builder(&conn)
            .destination(iface::BUS_NAME)
            .and_then(|b| b.path(path.clone()))
            .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No)),
    ) else {
        ended();
        return;
    };
    let mut changes = match props.build().await {
        Ok(p) => match p.receive_properties_changed().await {
            Ok(s) => s,
            Err(_) => {
                ended();
                return;
            }
        },
        Err(_) => {
            ended();
            return;
        }
    };
    // The lines the tunnel had before we listened, each once.
    let mut skip: u64 = 0;
    let first_signalled = if ours {
        // The creator gets every signal from the start: history only up to now.
        None
    } else {
        match HelperProxy::new(&conn).await {
            Ok(h) => h.watch(&path).await.ok(),
            Err(_) => None,
        }
    };
    if let Ok((total, recent)) = c.recent_log().await {
        match first_signalled {
            Some(first) => skip = total.saturating_sub(first),
            // Ours: every line since the start comes as a signal too, after these.
            None => skip = recent.len() as u64,
        }
        for line in recent {
            out(Update::Log {
                profile: profile.clone(),
                line,
            });
        }
    }
    let mut last: Option<Tunnel> = None;
    let mut seen_asks: HashSet<(Vec<String>, String)> = HashSet::new();
    // Read once now (after subscribing: nothing is missed), then after each change.
    let mut read = true;
    loop {
        // (After a log line alone the properties are as they were.)
        if std::mem::take(&mut read) {
            match snapshot(&c, &profile, path.as_str()).await {
                Ok(t) => {
                    if last.as_ref() != Some(&t) {
                        if t.state != state::NEEDS_CREDENTIALS {
                            seen_asks.clear();
                        }
                        last = Some(t.clone());
                        out(Update::Tunnel(t));
                    }
                }
                Err(_) => {
                    // The object is gone (the helper removed it, or the helper left).
                    ended();
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            Some(l) = logs.next() => {
                if skip > 0 {
                    skip -= 1;
                } else if let Ok(a) = l.args() {
                    out(Update::Log { profile: profile.clone(), line: a.line });
                }
            }
            Some(s) = asks.next() => {
                read = true;
                if let Ok(a) = s.args() {
                    let key = (a.fields.clone(), a.message.clone());
                    if seen_asks.insert(key) {
                        out(Update::Credentials { profile: profile.clone(), fields: a.fields, message: a.message });
                    }
                }
            }
            Some(_) = changes.next() => read = true,
            // Every stream ended: the bus connection is gone.
            else => {
                ended();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_handle_hands_commands_to_the_test() {
        let (h, mut rx) = Handle::fake();
        assert!(h.send(Command::Disconnect {
            profile: "office".into()
        }));
        match rx.try_recv() {
            Ok(Command::Disconnect { profile }) => assert_eq!(profile, "office"),
            other => panic!("{other:?}"),
        }
        drop(rx);
        assert!(!h.send(Command::Traffic {
            profile: "office".into()
        }));
    }

    #[test]
    fn secrets_in_commands_are_not_printed() {
        let c = Command::Connect {
            profile: "office".into(),
            psk: Some(Secret::new("s3cret-psk".into())),
            xauth_password: None,
            remember: true,
        };
        let s = format!("{c:?}");
        assert!(!s.contains("s3cret"), "{s}");
        let c = Command::Submit {
            profile: "office".into(),
            answers: vec![("password".into(), Secret::new("hunter2".into()))],
            remember_password: false,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn active_states() {
        let t = |s: &str| Tunnel {
            state: s.into(),
            ..Tunnel::default()
        };
        for s in [
            state::CONNECTING,
            state::NEEDS_CREDENTIALS,
            state::CONNECTED,
            state::RECONNECTING,
            state::DISCONNECTING,
        ] {
            assert!(t(s).is_active(), "{s}");
        }
        for s in [state::DISCONNECTED, state::FAILED, ""] {
            assert!(!t(s).is_active(), "{s}");
        }
    }

    #[test]
    fn tunnels_match_profiles_by_file_name_first() {
        let files = vec!["office".to_string(), "lab".to_string()];
        assert_eq!(match_profile("lab", &files), "lab");
        // Unknown names stay as they are (a tunnel of a deleted profile).
        assert_eq!(match_profile("elsewhere", &files), "elsewhere");
    }

    /// A private bus (dbus-daemon with its own config, no service activation) and a
    /// stand-in helper that only answers `List` and counts the calls.
    struct Bus {
        daemon: std::process::Child,
        address: String,
        dir: std::path::PathBuf,
    }

    impl Drop for Bus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn private_bus() -> Option<Bus> {
        let dir = std::env::temp_dir().join(format!("postern-watcher-bus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let sock = dir.join("bus");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                sock.display()
            ),
        )
        .ok()?;
        let daemon = std::process::Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .spawn()
            .ok()?;
        let bus = Bus {
            daemon,
            address: format!("unix:path={}", sock.display()),
            dir,
        };
        for _ in 0..100 {
            if sock.exists() {
                return Some(bus);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    struct FakeHelper {
        lists: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    #[zbus::interface(name = "org.postern.Helper1")]
    impl FakeHelper {
        fn list(&self) -> Vec<OwnedObjectPath> {
            self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Vec::new()
        }
    }

    /// The helper appears: the watcher hears it from the bus (`NameOwnerChanged`) and
    /// says so; while it is there the watcher does not poll it (one `List` when it came,
    /// none in the seconds after: an idle app stays asleep). Needs `dbus-daemon`
    /// (scripts/install-deps.sh installs it).
    #[tokio::test(flavor = "current_thread")]
    async fn with_the_helper_there_it_follows_signals_and_does_not_poll() {
        let Some(bus) = private_bus() else {
            panic!("dbus-daemon could not be started (scripts/install-deps.sh installs it)");
        };
        let mut s = Box::pin(run_on(Some(bus.address.clone())));
        let Some(Update::Ready(_h)) = s.next().await else {
            panic!("first update is Ready");
        };
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Update::Helper(Err(f)))) => {
                assert_eq!(f.kind, FailureKind::HelperUnreachable, "{f:?}")
            }
            other => panic!("{other:?}"),
        }
        let lists = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let _helper = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .serve_at(
                iface::MANAGER_PATH,
                FakeHelper {
                    lists: lists.clone(),
                },
            )
            .unwrap()
            .name(iface::BUS_NAME)
            .unwrap()
            .build()
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Update::Helper(Ok(())))) => {}
            other => panic!("{other:?}"),
        }
        let seen = lists.load(std::sync::atomic::Ordering::SeqCst);
        assert!(seen >= 1, "List when the helper came");
        // Three of the old polling periods: no further List, nothing sent to the app.
        let quiet = tokio::time::timeout(3 * TICK, s.next()).await;
        assert!(quiet.is_err(), "an update while idle: {quiet:?}");
        assert_eq!(
            lists.load(std::sync::atomic::Ordering::SeqCst),
            seen,
            "the watcher polled the helper while it was there"
        );
    }

    /// Without a helper on the bus (here: no bus at that address), the watcher says
    /// so, keeps a connect waiting, and fails other commands with HelperUnreachable.
    #[tokio::test(flavor = "current_thread")]
    async fn without_a_helper_it_says_so_and_keeps_the_connect() {
        let sock = std::env::temp_dir().join(format!("postern-no-bus-{}", std::process::id()));
        let mut s = Box::pin(run_on(Some(format!("unix:path={}", sock.display()))));
        let Some(Update::Ready(h)) = s.next().await else {
            panic!("first update is Ready");
        };
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Update::Helper(Err(f)))) => {
                assert_eq!(f.kind, FailureKind::HelperUnreachable, "{f:?}")
            }
            other => panic!("{other:?}"),
        }
        h.send(Command::Connect {
            profile: "office".into(),
            psk: None,
            xauth_password: None,
            remember: false,
        });
        h.send(Command::Disconnect {
            profile: "office".into(),
        });
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            // The disconnect fails; the connect waits (nothing about it comes).
            Ok(Some(Update::Failed { profile, failure })) => {
                assert_eq!(profile, "office");
                assert_eq!(failure.kind, FailureKind::HelperUnreachable);
            }
            other => panic!("{other:?}"),
        }
        // Nothing more within two looks: the connect is still waiting, not failed.
        assert!(
            tokio::time::timeout(2 * TICK + Duration::from_millis(500), s.next())
                .await
                .is_err()
        );
    }
}
