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

use postern_dbus::failure::{FailureKind, exit};

pub fn run(path: &Path) -> ExitCode {
    let profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let mut profile = profile;
    if let Err(f) = load_cert_files(&mut profile) {
        eprintln!("error: {}", f.message);
        return ExitCode::from(f.code());
    }
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
            return ExitCode::from(exit::FAILURE);
        }
    };
    match rt.block_on(foreground(profile)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code())
        }
    }
}

/// The terminal front end on the tunnel driver: prints each event as its line, turns
/// SIGINT/SIGTERM into a disconnect and XAuth requests into terminal prompts.
async fn foreground(profile: Profile) -> Result<(), Failure> {
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Failure::new(FailureKind::Internal, e.to_string()))?;
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
            FailureKind::Internal,
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

/// `postern-helper up` (root, a root-owned profile) reads the certificate files the
/// profile names into `auth.contents`; the engine configuration reads only contents
/// (the D-Bus service gets them in the `Connect` secrets map and opens no path).
/// Private keys and bundles must not be readable by group or others.
pub fn load_cert_files(p: &mut Profile) -> Result<(), Failure> {
    use postern_dbus::profile::Blob;
    fn read(what: &str, path: &str, private: bool) -> Result<Blob, Failure> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let fail = |m: String| Failure::new(FailureKind::BadProfile, format!("{what} {path}: {m}"));
        let mut f = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let meta = f
            .metadata()
            .map_err(|e| fail(format!("cannot stat: {e}")))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        if private && meta.mode() & 0o077 != 0 {
            return Err(fail(format!(
                "mode {:04o}: group or others may read it; chmod 600 it",
                meta.mode() & 0o7777
            )));
        }
        const MAX: u64 = 1 << 20;
        let mut buf = Zeroizing::new(Vec::new());
        f.by_ref()
            .take(MAX + 1)
            .read_to_end(&mut buf)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if buf.len() as u64 > MAX {
            return Err(fail("larger than 1 MiB".into()));
        }
        Ok(Blob::new(std::mem::take(&mut *buf)))
    }
    let a = &p.auth;
    let c = profile::CertContents {
        ca: a
            .ca
            .as_deref()
            .map(|x| read("the CA certificate", x, false))
            .transpose()?,
        cert: a
            .cert
            .as_deref()
            .map(|x| read("the certificate", x, false))
            .transpose()?,
        key: a
            .key
            .as_deref()
            .map(|x| read("the private key", x, true))
            .transpose()?,
        pkcs12: a
            .pkcs12
            .as_deref()
            .map(|x| read("the PKCS#12 bundle", x, true))
            .transpose()?,
        crl: a
            .crl
            .as_deref()
            .map(|x| read("the CRL", x, false))
            .transpose()?,
    };
    p.auth.contents = c;
    Ok(())
}

/// The engine's `Auth` for a certificate (`rsa-sig`) or `hybrid` profile, and the
/// identity our certificate names (our ID when the profile gives none). Reads only
/// `auth.contents`.
fn certificate_auth(p: &Profile) -> Result<(ike::Auth, Option<Identity>), Failure> {
    use postern_engine::cert::{self, PrivateKey};
    use std::sync::Arc;
    let usage = |m: String| Failure::new(FailureKind::BadProfile, m);
    let c = &p.auth.contents;
    let named = |what: &str, path: &Option<String>| match path {
        Some(path) => format!("{what} {path}"),
        None => what.to_string(),
    };
    let passphrase = p
        .auth
        .key_passphrase
        .as_ref()
        .map(|s| s.expose().as_bytes());
    // A bundle: key, our certificate, its chain; a self-signed CA inside it is trusted
    // when the profile names no CA of its own (the admin handed out both together).
    let bundle = match &c.pkcs12 {
        Some(b) => Some(
            cert::pkcs12::parse(
                b.bytes(),
                p.auth.key_passphrase.as_ref().map_or("", |s| s.expose()),
            )
            .map_err(|e| {
                usage(format!(
                    "{}: {e}",
                    named("the PKCS#12 bundle", &p.auth.pkcs12)
                ))
            })?,
        ),
        None => None,
    };
    let trusted = match (&c.ca, &bundle) {
        (Some(ca), _) => cert::parse_certificates(ca.bytes())
            .map_err(|e| usage(format!("{}: {e}", named("the CA certificate", &p.auth.ca))))?,
        (None, Some(b)) => b.chain[1..]
            .iter()
            .filter(|c| c.is_self_signed())
            .cloned()
            .collect(),
        (None, None) => Vec::new(),
    };
    if trusted.is_empty() {
        return Err(usage(
            "auth.ca is needed to check the gateway's certificate".into(),
        ));
    }
    let crls = match &c.crl {
        Some(crl) => cert::parse_crls(crl.bytes())
            .map_err(|e| usage(format!("{}: {e}", named("the CRL", &p.auth.crl))))?,
        None => Vec::new(),
    };
    if matches!(p.auth.method, profile::AuthMethod::Hybrid) {
        let certs = ike::Certs {
            key: None,
            chain: Vec::new(),
            trusted,
            crls,
        };
        return Ok((ike::Auth::Hybrid(Arc::new(certs)), None));
    }
    let (key, chain) = match (bundle, &c.cert, &c.key) {
        (Some(b), _, _) => {
            // Our certificate and the intermediates; the bundle's root stays out of CERT payloads.
            let chain = b
                .chain
                .into_iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || !c.is_self_signed())
                .map(|(_, c)| c)
                .collect();
            (b.key, chain)
        }
        (None, Some(cert_pem), Some(key_pem)) => {
            let chain = cert::parse_certificates(cert_pem.bytes())
                .map_err(|e| usage(format!("{}: {e}", named("the certificate", &p.auth.cert))))?;
            let key = PrivateKey::parse(key_pem.bytes(), passphrase)
                .map_err(|e| usage(format!("{}: {e}", named("the private key", &p.auth.key))))?;
            (key, chain)
        }
        _ => {
            return Err(usage(
                "\"rsa-sig\" needs our certificate and private key (auth.cert + auth.key, or auth.pkcs12)".into(),
            ));
        }
    };
    let own = chain.first().ok_or_else(|| {
        usage(format!(
            "{}: no certificate",
            named("the certificate", &p.auth.cert)
        ))
    })?;
    key.matches(own)
        .map_err(|e| usage(format!("{}: {e}", named("the private key", &p.auth.key))))?;
    let id = Identity {
        kind: postern_engine::codec::IdType::DER_ASN1_DN,
        data: own.subject_der(),
    };
    let certs = ike::Certs {
        key: Some(key),
        chain,
        trusted,
        crls,
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
    let usage = |m: &str| Failure::new(FailureKind::BadProfile, m.to_string());
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
