//! `postern-helper up PROFILE.toml`: one tunnel in the foreground.
//!
//! A thin terminal front end on the tunnel driver (`crate::tunnel`): prints one line
//! per state change on stdout; turns SIGINT/SIGTERM into a disconnect and XAuth
//! requests into terminal prompts; on failure one `error: ...` line on stderr and an
//! exit code that says what kind of failure. `engine_config` (profile → engine
//! configuration) lives here and is shared with the D-Bus service.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use postern_dbus::profile::{self, Profile, SecretPolicy};
use postern_engine::ike::{
    self, ChildConfig, Config, Credentials, CredentialsRequest, DpdConfig, Encapsulation, Identity,
    ModeConfigMode, NatTraversal, TrafficSelector, XAuthConfig, XAuthField,
};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

pub use crate::tunnel::Failure;
use crate::tunnel::{self, Command, field_name};

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;
pub const EXIT_NO_PROPOSAL: u8 = 4;
pub const EXIT_NOT_RESPONDING: u8 = 5;

pub fn run(path: &Path) -> ExitCode {
    let profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // --- datapath (issue 3): undo what a killed helper left in this namespace ---
    for line in crate::kernel::cleanup_stale() {
        println!("{line}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(foreground(profile)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message, .. }) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The terminal front end on the tunnel driver: prints each event as its line, turns
/// SIGINT/SIGTERM into a disconnect and XAuth requests into terminal prompts.
async fn foreground(profile: Profile) -> Result<(), Failure> {
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    let username = profile
        .xauth
        .as_ref()
        .map(|x| x.username.clone())
        .unwrap_or_default();
    let tunnel::Handle {
        commands,
        mut events,
        task,
    } = tunnel::spawn(profile);
    let disconnect = |reason: &str| {
        let _ = commands.send(Command::Disconnect {
            reason: reason.to_string(),
        });
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => {
                    println!("{ev}");
                    if let tunnel::Event::CredentialsRequired(req) = ev {
                        let username = username.clone();
                        let commands = commands.clone();
                        // The prompt blocks on the terminal: off the runtime's thread.
                        tokio::task::spawn_blocking(move || {
                            let _ = commands.send(match ask_terminal(&req, &username) {
                                Ok(c) => Command::Credentials(c),
                                Err(m) => Command::CredentialsRefused(m),
                            });
                        });
                    }
                }
                // The task ended and every event is out.
                None => break,
            },
            _ = sigint.recv() => disconnect("SIGINT"),
            _ = sigterm.recv() => disconnect("SIGTERM"),
        }
    }
    match task.await {
        Ok(r) => r,
        Err(e) => Err(Failure::new(
            EXIT_FAILURE,
            format!("the tunnel task failed: {e}"),
        )),
    }
}

/// Asks on the controlling terminal; secrets without echo.
fn ask_terminal(req: &CredentialsRequest, username: &str) -> Result<Credentials, String> {
    let no_tty = |e: std::io::Error| {
        format!(
            "XAuth needs an answer and there is no terminal to ask on ({e}): put `password` under [xauth] in a 0600 profile"
        )
    };
    let mut values = Vec::new();
    for f in &req.fields {
        let v = match f {
            XAuthField::UserName if !username.is_empty() => username.to_string(),
            XAuthField::UserName => {
                use std::io::Write;
                print!("XAuth user name: ");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(no_tty)?;
                line.trim().to_string()
            }
            other => rpassword::prompt_password(format!("XAuth {}: ", field_name(*other)))
                .map_err(no_tty)?,
        };
        values.push((*f, Zeroizing::new(v)));
    }
    Ok(Credentials { values })
}

fn identity(id: &profile::Identity) -> Identity {
    match id {
        profile::Identity::Address(a) => Identity::address(*a),
        profile::Identity::Fqdn(s) => Identity::fqdn(s),
        profile::Identity::UserFqdn(s) => Identity::user_fqdn(s),
        profile::Identity::KeyId(b) => Identity::key_id(b),
        // Checked to parse in engine_config before this is called.
        profile::Identity::Dn(s) => Identity {
            kind: postern_engine::codec::IdType::DER_ASN1_DN,
            data: postern_engine::cert::dn_der(s).unwrap_or_default(),
        },
    }
}

/// Reads one file named by the (root-owned) profile for certificate authentication.
fn read_material(what: &str, path: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("cannot read {what} {path}: {e}")))
}

/// The engine's `Auth` for a certificate (`rsa-sig`) or `hybrid` profile, and the
/// identity our certificate names (our ID when the profile gives none).
fn certificate_auth(p: &Profile) -> Result<(ike::Auth, Option<Identity>), Failure> {
    use postern_engine::cert::{self, PrivateKey};
    use std::sync::Arc;
    let usage = |m: String| Failure::new(EXIT_USAGE, m);
    let ca_path = p
        .auth
        .ca
        .as_deref()
        .ok_or_else(|| usage("auth.ca is needed to check the gateway's certificate".into()))?;
    let trusted = cert::parse_certificates(&read_material("the CA certificate", ca_path)?)
        .map_err(|e| usage(format!("{ca_path}: {e}")))?;
    if matches!(p.auth.method, profile::AuthMethod::Hybrid) {
        let certs = ike::Certs {
            key: None,
            chain: Vec::new(),
            trusted,
            crls: Vec::new(),
        };
        return Ok((ike::Auth::Hybrid(Arc::new(certs)), None));
    }
    let (Some(cert_path), Some(key_path)) = (p.auth.cert.as_deref(), p.auth.key.as_deref()) else {
        return Err(usage("\"rsa-sig\" needs auth.cert and auth.key".into()));
    };
    let chain = cert::parse_certificates(&read_material("the certificate", cert_path)?)
        .map_err(|e| usage(format!("{cert_path}: {e}")))?;
    let key = PrivateKey::parse(&read_material("the private key", key_path)?, None)
        .map_err(|e| usage(format!("{key_path}: {e}")))?;
    let own = chain
        .first()
        .ok_or_else(|| usage(format!("{cert_path}: no certificate")))?;
    key.matches(own)
        .map_err(|e| usage(format!("{key_path}: {e}")))?;
    let id = Identity {
        kind: postern_engine::codec::IdType::DER_ASN1_DN,
        data: own.subject_der(),
    };
    let certs = ike::Certs {
        key: Some(key),
        chain,
        trusted,
        crls: Vec::new(),
    };
    Ok((ike::Auth::Signature(Arc::new(certs)), Some(id)))
}

fn ts(s: &profile::Subnet) -> TrafficSelector {
    TrafficSelector {
        addr: s.addr,
        prefix: s.prefix,
    }
}

pub fn profile_children(p: &Profile, local: IpAddr) -> Vec<ChildConfig> {
    if matches!(p.phase2.mode, profile::EncapMode::Transport) {
        return vec![ChildConfig {
            local: None,
            remote: None,
        }];
    }
    let locals: Vec<TrafficSelector> = if !p.phase2.local_networks.is_empty() {
        p.phase2.local_networks.iter().map(ts).collect()
    } else if let Some(v) = p.network.virtual_ip {
        vec![TrafficSelector::host(IpAddr::V4(v))]
    } else {
        vec![TrafficSelector::host(local)]
    };
    let remotes: Vec<TrafficSelector> = if p.phase2.remote_networks.is_empty() {
        let any = if local.is_ipv4() {
            "0.0.0.0".parse()
        } else {
            "::".parse()
        };
        vec![TrafficSelector {
            addr: any.unwrap_or(local),
            prefix: 0,
        }]
    } else {
        p.phase2.remote_networks.iter().map(ts).collect()
    };
    let mut out = Vec::new();
    for l in &locals {
        for r in &remotes {
            if l.addr.is_ipv4() == r.addr.is_ipv4() {
                out.push(ChildConfig {
                    local: Some(*l),
                    remote: Some(*r),
                });
            }
        }
    }
    out
}

pub fn engine_config(p: &Profile, local: IpAddr) -> Result<Config, Failure> {
    let usage = |m: &str| Failure::new(EXIT_USAGE, m.to_string());
    for id in [&p.auth.local_id, &p.auth.remote_id].into_iter().flatten() {
        if let profile::Identity::Dn(s) = id {
            postern_engine::cert::dn_der(s).map_err(|e| usage(&e.to_string()))?;
        }
    }
    let mut c;
    let mut cert_id = None;
    if matches!(p.auth.method, profile::AuthMethod::Psk) {
        let psk = p.auth.psk.as_ref().ok_or_else(|| {
            usage(
                "the profile has no pre-shared key: add `psk` under [auth] (file must be mode 0600)",
            )
        })?;
        c = Config::psk(psk.expose().as_bytes());
    } else {
        let (auth, id) = certificate_auth(p)?;
        c = Config::psk(&[]);
        c.auth = auth;
        cert_id = id;
        // Certificates are checked against the wall time; the engine reads no clock.
        c.wall_clock = Some((std::time::Instant::now(), std::time::SystemTime::now()));
    }
    c.mode = match p.exchange_mode {
        profile::ExchangeMode::Main => ike::ExchangeMode::Main,
        profile::ExchangeMode::Aggressive => ike::ExchangeMode::Aggressive,
    };
    c.local_id = p.auth.local_id.as_ref().map(identity).or(cert_id);
    c.remote_id = p.auth.remote_id.as_ref().map(identity);
    c.ike_proposals = p.phase1.proposals.clone();
    c.ike_lifetime = p.phase1.lifetime;
    c.esp_proposals = p
        .phase2
        .proposals
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.group.is_none() {
                e.group = p.phase2.pfs;
            }
            e
        })
        .collect();
    c.esp_lifetime = p.phase2.lifetime;
    c.esp_lifetime_kb = p.phase2.lifetime_kb;
    c.encapsulation = match p.phase2.mode {
        profile::EncapMode::Tunnel => Encapsulation::Tunnel,
        profile::EncapMode::Transport => Encapsulation::Transport,
    };
    c.children = profile_children(p, local);
    c.nat_traversal = match p.network.nat_traversal {
        profile::NatTraversal::Auto => NatTraversal::Auto,
        profile::NatTraversal::Force => NatTraversal::Force,
        profile::NatTraversal::Off => NatTraversal::Off,
    };
    c.retransmit = ike::RetransmitConfig {
        tries: p.network.retransmit.tries,
        base: p.network.retransmit.base,
        cap: p.network.retransmit.cap,
    };
    c.xauth = p.xauth.as_ref().map(|x| XAuthConfig {
        username: x.username.clone(),
        password: x
            .password
            .as_ref()
            .map(|s| Zeroizing::new(s.expose().to_string())),
    });
    c.mode_config = match p.network.mode_config {
        profile::ModeConfig::Off => ModeConfigMode::Off,
        profile::ModeConfig::Pull => ModeConfigMode::Pull,
        profile::ModeConfig::Push => ModeConfigMode::Push,
    };
    c.remote_networks = p.phase2.remote_networks.iter().map(ts).collect();
    c.dpd = p.network.dpd.as_ref().map(|d| DpdConfig {
        interval: d.interval,
        timeout: d.timeout,
    });
    Ok(c)
}
