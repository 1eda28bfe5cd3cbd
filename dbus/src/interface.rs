//! Contract 3: the D-Bus interface between front ends and `postern-helper`.
//!
//! The helper owns [`BUS_NAME`] on the system bus and serves two interfaces:
//!
//! * [`MANAGER_INTERFACE`] at [`MANAGER_PATH`] ([`HelperProxy`]): `Connect(profile,
//!   secrets) → o`, `Disconnect(o)`, `SubmitCredentials(o, answers)`, `List() → ao`,
//!   `Watch(o)`; the system profiles: `SystemProfiles() → a(ssssss)`,
//!   `ConnectSystem(name) → o`, `SystemProfileText(name) → s`,
//!   `SaveSystemProfile(name, profile)`; and `CheckProfile(profile) → s`;
//! * [`CONNECTION_INTERFACE`] at one path per tunnel under [`CONNECTION_PATH_PREFIX`]
//!   ([`ConnectionProxy`]): read-only properties (state, phase, gateway, virtual IP,
//!   DNS, routes, SAs, traffic, last error, owner), `RecentLog`, `Check` ("check the
//!   tunnel") and the `CredentialsRequired` and `LogLine` signals.
//!
//! A connection belongs to the uid that created it: only that uid or root may read its
//! properties, answer its prompts or disconnect it (an admin may disconnect any with
//! the [`action::DISCONNECT_ANY`] polkit action). Its signals (`PropertiesChanged`,
//! `CredentialsRequired`, `LogLine`) are sent *unicast* to the bus names that created
//! or `Watch`ed it, never broadcast, so no other user can listen in.
//!
//! The profile travels as TOML text (contract 1) with no secrets in it; secrets travel
//! beside it in a string map with the keys of [`secret_key`]; certificates and keys as
//! PEM contents, never paths. Nothing that crosses the bus carries a key.
//!
//! Version: the `1` in the names. An incompatible change gets `org.postern.Helper2`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Type, Value};

/// The well-known name the helper owns on the system bus.
pub const BUS_NAME: &str = "org.postern.Helper1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/postern/Helper1";
pub const MANAGER_INTERFACE: &str = "org.postern.Helper1";
pub const CONNECTION_INTERFACE: &str = "org.postern.Helper1.Connection";
/// Connection objects are `<prefix><n>`, n a decimal counter.
pub const CONNECTION_PATH_PREFIX: &str = "/org/postern/Helper1/Connection/";
/// The prefix of every error name (`org.postern.Helper1.Error.AccessDenied`, ...).
pub const ERROR_PREFIX: &str = "org.postern.Helper1.Error";

/// The polkit actions (packaging/org.postern.helper1.policy), one per privileged verb.
pub mod action {
    /// Bring up a tunnel (owned by the caller). Default: the active local user.
    pub const CONNECT: &str = "org.postern.helper1.connect";
    /// Close or answer prompts of one's own tunnel. Default: the active local user.
    pub const MANAGE_OWN: &str = "org.postern.helper1.manage-own";
    /// Close, watch or read another user's tunnel. Default: admin.
    pub const MANAGE_ANY: &str = "org.postern.helper1.manage-any";
    /// Alias kept for the wording.
    pub const DISCONNECT_ANY: &str = MANAGE_ANY;
    /// Connect, disconnect, watch and answer a system profile's tunnel (the profiles
    /// in /etc/postern/profiles, shared by every user). Default: the active local user.
    pub const CONNECT_SYSTEM: &str = "org.postern.helper1.connect-system";
    /// Change a system profile (`SaveSystemProfile`). Default: admin.
    pub const EDIT_SYSTEM: &str = "org.postern.helper1.edit-system";
}

/// One system profile as `SystemProfiles` reports it: what a front end lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default)]
pub struct SystemProfile {
    /// The file's stem (`/etc/postern/profiles/NAME.toml`): what `ConnectSystem` takes.
    pub name: String,
    /// The profile's `name` key, for display.
    pub title: String,
    pub gateway: String,
    /// `no`, `login` or `boot`.
    pub autoconnect: String,
    /// The file (for the admin's eyes; front ends never send paths).
    pub file: String,
    /// Why it cannot be connected, one line naming the file; empty when it can.
    pub refused: String,
}

/// The keys of the `secrets` map of `Connect`.
pub mod secret_key {
    /// The pre-shared key (`auth.method = "psk"`).
    pub const PSK: &str = "psk";
    /// The XAuth password, when the user keeps it in the keyring.
    pub const XAUTH_PASSWORD: &str = "xauth-password";
    /// PEM contents (never paths) for certificate authentication.
    pub const CA: &str = "ca";
    pub const CERT: &str = "cert";
    pub const KEY: &str = "key";
    /// A CRL of the CA, PEM.
    pub const CRL: &str = "crl";
    /// A PKCS#12 bundle (key, certificate, chain), base64 of its DER bytes.
    pub const PKCS12: &str = "pkcs12";
    /// The passphrase of an encrypted `key` or of the `pkcs12` bundle.
    pub const KEY_PASSPHRASE: &str = "key-passphrase";
    pub const ALL: [&str; 8] = [
        PSK,
        XAUTH_PASSWORD,
        CA,
        CERT,
        KEY,
        CRL,
        PKCS12,
        KEY_PASSPHRASE,
    ];
}

/// The keys of the `answers` map of `SubmitCredentials` (one per field asked).
pub mod answer_key {
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const PASSCODE: &str = "passcode";
    pub const NEXT_PIN: &str = "next-pin";
    pub const ANSWER: &str = "answer";
    pub const ALL: [&str; 5] = [USERNAME, PASSWORD, PASSCODE, NEXT_PIN, ANSWER];
}

/// Size limits the helper enforces (and front ends may check first).
pub mod limits {
    /// The profile TOML text.
    pub const PROFILE_BYTES: usize = 64 * 1024;
    /// A PSK, password or XAuth answer.
    pub const SECRET_BYTES: usize = 1024;
    /// A PEM certificate or key.
    pub const PEM_BYTES: usize = 64 * 1024;
    /// Entries in a secrets or answers map.
    pub const MAP_ENTRIES: usize = 8;
    /// Tunnels per uid.
    pub const CONNECTIONS_PER_UID: usize = 4;
}

/// How many of a tunnel's log lines the helper keeps for `RecentLog`.
pub const LOG_HISTORY: usize = 200;

/// The values of the `State` property.
pub mod state {
    pub const CONNECTING: &str = "connecting";
    pub const NEEDS_CREDENTIALS: &str = "needs-credentials";
    pub const CONNECTED: &str = "connected";
    pub const RECONNECTING: &str = "reconnecting";
    pub const DISCONNECTING: &str = "disconnecting";
    pub const DISCONNECTED: &str = "disconnected";
    pub const FAILED: &str = "failed";
}

/// The values of the `Detail` property: what a tunnel is doing beyond its `State`, as
/// front ends show it instead of the bare state ("" when there is nothing to add).
pub mod detail {
    /// The outer network changed (another address or interface): negotiating again
    /// from the new address, the inner address and routes kept.
    pub const NETWORK_CHANGED: &str = "reconnecting: network changed";
    /// The machine woke up: asking the gateway at once whether it still knows us.
    pub const RESUMED: &str = "resumed: checking the gateway";
}

/// One ESP SA pair: SPIs, algorithms, selectors, lifetimes. Never keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default)]
pub struct SaInfo {
    pub spi_in: u32,
    pub spi_out: u32,
    /// strongSwan syntax: `aes128-sha256`, `aes128gcm16`.
    pub proposal: String,
    /// `tunnel` or `transport`.
    pub mode: String,
    pub udp_encapsulation: bool,
    pub local_ts: String,
    pub remote_ts: String,
    pub lifetime_secs: u64,
    /// 0: no volume lifetime.
    pub lifetime_kb: u64,
}

/// Packets and bytes through the tunnel since it came up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default,
)]
pub struct Traffic {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
}

/// What one SA pair has carried (inner bytes, as the kernel counts them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default,
)]
pub struct SaTraffic {
    pub spi_in: u32,
    pub spi_out: u32,
    pub in_bytes: u64,
    pub in_packets: u64,
    pub out_bytes: u64,
    pub out_packets: u64,
}

/// One step of the connection's `Check`: which test ([`check`]'s names), how it went
/// (`ok`, `failed`, `skipped`) and one sentence saying what was seen and, when it
/// failed, what that means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default)]
pub struct CheckStep {
    pub name: String,
    pub outcome: String,
    pub detail: String,
}

/// The names and outcomes of [`CheckStep`]s, in the order `Check` reports them.
pub mod check {
    /// Packets entered the tunnel and answers came back during the check.
    pub const TRAFFIC: &str = "traffic";
    /// A host behind the tunnel answers ping (`network.check_host`, else the first DNS
    /// server).
    pub const HOST: &str = "host";
    /// The tunnel's DNS servers answer a query (`network.check_domain`, else the
    /// gateway's domain, else the root).
    pub const DNS: &str = "dns";
    /// The largest packet that crosses the tunnel unfragmented.
    pub const MTU: &str = "mtu";
    /// A captive portal in front of the gateway (`network.portal_url`, else
    /// NetworkManager's connectivity check).
    pub const PORTAL: &str = "portal";
    pub const ALL: [&str; 5] = [TRAFFIC, HOST, DNS, MTU, PORTAL];

    pub const OK: &str = "ok";
    pub const FAILED: &str = "failed";
    pub const SKIPPED: &str = "skipped";
}

/// The errors the helper returns; each name is `org.postern.Helper1.Error.<Variant>`
/// and each message one sentence.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.postern.Helper1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// polkit said no (or could not be asked), or the connection is another user's.
    AccessDenied(String),
    /// An argument is malformed, too big, or names something unknown.
    InvalidArgument(String),
    /// The profile does not parse or validate (file:line: key: message).
    InvalidProfile(String),
    /// No such connection (or not visible to the caller).
    NoSuchConnection(String),
    /// `SubmitCredentials` while the tunnel is not asking.
    NotAsking(String),
    /// Too many tunnels for this user.
    LimitReached(String),
    /// The helper could not do it (one sentence why).
    Failed(String),
}

/// The manager: `org.postern.Helper1` at `/org/postern/Helper1`.
#[proxy(
    interface = "org.postern.Helper1",
    default_service = "org.postern.Helper1",
    default_path = "/org/postern/Helper1",
    gen_blocking = false
)]
pub trait Helper {
    /// Brings up a tunnel owned by the caller; returns its object path at once (the
    /// negotiation runs on; follow it with the connection's properties and signals).
    fn connect(
        &self,
        profile: &str,
        secrets: HashMap<&str, &str>,
    ) -> Result<OwnedObjectPath, Error>;

    /// Closes a tunnel (DELETE sent, everything installed removed).
    fn disconnect(&self, connection: &zbus::zvariant::ObjectPath<'_>) -> Result<(), Error>;

    /// Answers the pending `CredentialsRequired` of a tunnel.
    fn submit_credentials(
        &self,
        connection: &zbus::zvariant::ObjectPath<'_>,
        answers: HashMap<&str, &str>,
    ) -> Result<(), Error>;

    /// The caller's tunnels (every tunnel for root).
    fn list(&self) -> Result<Vec<OwnedObjectPath>, Error>;

    /// Sends the tunnel's signals to the caller too (e.g. `postern log NAME`).
    /// Returns how many log lines the tunnel had at that moment: the caller's first
    /// `LogLine` signal is line number N (counted from 0), so with `RecentLog` nothing
    /// is missed or shown twice.
    fn watch(&self, connection: &zbus::zvariant::ObjectPath<'_>) -> Result<u64, Error>;

    /// The system profiles (/etc/postern/profiles, read from disk at each call), for
    /// every caller: names, gateways, and why one is refused, if it is.
    fn system_profiles(&self) -> Result<Vec<SystemProfile>, Error>;

    /// Brings up system profile `name` (the helper reads the file and its secrets; the
    /// caller sends nothing else). polkit [`action::CONNECT_SYSTEM`]. A system profile
    /// has one tunnel: when it is up already, its path is returned (and the caller
    /// watches it). The tunnel belongs to no user (owner 0): any caller allowed
    /// `connect-system` may disconnect it.
    fn connect_system(&self, name: &str) -> Result<OwnedObjectPath, Error>;

    /// System profile `name` as TOML without its secrets (the app's read-only editor).
    fn system_profile_text(&self, name: &str) -> Result<String, Error>;

    /// Replaces system profile `name` with `profile` (TOML; polkit
    /// [`action::EDIT_SYSTEM`], admin). Secrets the old file held inline and the new
    /// text lacks are kept in `NAME.secrets` beside it.
    fn save_system_profile(&self, name: &str, profile: &str) -> Result<(), Error>;

    /// Why this machine's policy would refuse `profile` (a user profile, TOML without
    /// secrets) at `Connect`, in one sentence; empty when it would not. Nothing is
    /// started; no polkit.
    fn check_profile(&self, profile: &str) -> Result<String, Error>;

    /// The interface revision (1).
    #[zbus(property)]
    fn version(&self) -> zbus::Result<u32>;
}

/// One tunnel: `org.postern.Helper1.Connection`.
#[proxy(
    interface = "org.postern.Helper1.Connection",
    default_service = "org.postern.Helper1",
    gen_blocking = false
)]
pub trait Connection {
    /// The profile's name.
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    /// The uid that owns it (0 for a system profile's tunnel).
    #[zbus(property)]
    fn owner(&self) -> zbus::Result<u32>;
    /// The system profile's name when it is one's tunnel; empty for a user profile's.
    #[zbus(property)]
    fn system_profile(&self) -> zbus::Result<String>;
    /// One of [`state`].
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// `resolving`, `phase1`, `xauth`, `mode-config`, `phase2`, `established`.
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    /// One of [`detail`], or empty: what the tunnel is doing beyond its state, shown
    /// by front ends instead of the bare state.
    #[zbus(property)]
    fn detail(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;
    /// The tunnel's inner address, `10.200.1.1`; with IPv6 beside IPv4 both,
    /// comma-separated (`10.200.1.1,fd01::1`). Empty when none yet.
    #[zbus(property)]
    fn virtual_ip(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn dns(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn routes(&self) -> zbus::Result<Vec<String>>;
    /// Phase 1 algorithms, e.g. `aes256-sha256-modp2048`.
    #[zbus(property)]
    fn ike_proposal(&self) -> zbus::Result<String>;
    /// The IKE version the tunnel speaks (its profile's `ike_version`): 1 or 2; 0 when
    /// the helper does not know it (a tunnel it lost in a restart). Never changes.
    /// Added in revision 1 without a version bump: front ends read it as 0 from an
    /// older helper (an error) and fall back to the profile file.
    #[zbus(property(emits_changed_signal = "const"))]
    fn ike_version(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn sas(&self) -> zbus::Result<Vec<SaInfo>>;
    /// Read on demand (no change signal: it changes with every packet).
    #[zbus(property(emits_changed_signal = "false"))]
    fn traffic(&self) -> zbus::Result<Traffic>;
    /// Per SA pair, read on demand like `Traffic`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn sa_traffic(&self) -> zbus::Result<Vec<SaTraffic>>;
    /// The latest failure: its kind ([`crate::failure::FailureKind`]'s wire name) and
    /// the helper's sentence; both empty when none.
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<crate::failure::LastError>;
    /// What the helper's firewall holds for this tunnel, one sentence each:
    /// `kill switch on: ...`, `IPv6 blocked while connected: ...`; empty: nothing.
    /// Kept while the tunnel reconnects.
    #[zbus(property)]
    fn protection(&self) -> zbus::Result<Vec<String>>;

    /// The tunnel's latest log lines (up to [`LOG_HISTORY`]), oldest first, and how
    /// many lines it has had in all (the number of the line after the last).
    fn recent_log(&self) -> zbus::Result<(u64, Vec<String>)>;

    /// "Check the tunnel": the helper tests what users call "connected but nothing
    /// works" and reports each step of [`check::ALL`] (about 15 s at most). Allowed to
    /// whoever may manage the connection; fails when it is not connected.
    fn check(&self) -> Result<Vec<CheckStep>, Error>;

    /// The gateway asks for XAuth credentials: answer with `SubmitCredentials`.
    /// `fields` are keys of [`answer_key`]; `message` is the gateway's text, if any.
    #[zbus(signal)]
    fn credentials_required(&self, fields: Vec<String>, message: String) -> zbus::Result<()>;

    /// One line of the tunnel's log (the line `postern-helper up` would print).
    #[zbus(signal)]
    fn log_line(&self, line: String) -> zbus::Result<()>;
}
