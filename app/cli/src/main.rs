//! `postern`: the unprivileged command-line front end, like `nmcli` for Postern.
//!
//! Profiles are TOML files in `$XDG_CONFIG_HOME/postern/profiles/NAME.toml` (contract
//! 1, never with secrets). Tunnels are run by `postern-helper` on the system bus
//! (contract 3): `up` sends the profile, the secrets (asked on the terminal or read
//! from stdin, never stored in the profile) and the certificate files the profile names
//! as contents, then follows the tunnel's log and answers XAuth prompts.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage or bad profile, 3 authentication failed,
//! 4 no proposal chosen, 5 gateway not responding, 6 the helper is not reachable.
#![forbid(unsafe_code)]

mod cli;

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::{FutureExt as _, StreamExt};
use postern_dbus::interface::{
    ConnectionProxy, HelperProxy, LogLine, answer_key, secret_key, state,
};
use postern_dbus::profile::{AuthMethod, Profile};
use postern_frontend::{Fail, FailureKind, keyring, profiles};
use zbus::zvariant::OwnedObjectPath;

use cli::{Cli, Cmd, SecretCmd};

const EXIT_FAILURE: u8 = postern_dbus::failure::exit::FAILURE;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("postern: {}", f.message);
            ExitCode::from(f.kind.exit_code())
        }
    }
}

async fn bus() -> Result<zbus::Connection, Fail> {
    zbus::Connection::system().await.map_err(|e| {
        Fail::new(
            FailureKind::HelperUnreachable,
            format!("cannot reach the system bus: {e}"),
        )
    })
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let json = cli.json;
    match cli.command {
        Cmd::List => list(json).await,
        Cmd::Show { name } => {
            let p = profiles::load(&name)?;
            if json {
                println!("{}", profiles::summary_json(&name, &p, None));
            } else {
                print!("{}", p.to_toml_string());
            }
            Ok(())
        }
        Cmd::Add { name, from, flags } => {
            let text = if let Some(from) = from {
                if from == "-" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                        .map_err(|e| Fail::new(FailureKind::BadProfile, format!("stdin: {e}")))?;
                    s
                } else {
                    std::fs::read_to_string(&from)
                        .map_err(|e| Fail::new(FailureKind::BadProfile, format!("{from}: {e}")))?
                }
            } else {
                flags.to_toml(&name)?
            };
            let path = profiles::add(&name, &text)?;
            println!("added {name} ({})", path.display());
            Ok(())
        }
        Cmd::Edit { name } => profiles::edit(&name),
        Cmd::Delete { name } => {
            profiles::delete(&name)?;
            // Its secrets go too; a machine without a keyring has none to remove.
            match keyring::delete(&name, None).await {
                Ok(0) | Err(_) => println!("deleted {name}"),
                Ok(n) => println!(
                    "deleted {name} and its {n} secret{} in the keyring",
                    if n == 1 { "" } else { "s" }
                ),
            }
            Ok(())
        }
        Cmd::Secret {
            action: SecretCmd::Delete { name, xauth },
        } => {
            let kind = if xauth {
                secret_key::XAUTH_PASSWORD
            } else {
                secret_key::PSK
            };
            match keyring::delete(&name, Some(kind)).await? {
                0 => println!("no {kind} of {name} in the keyring"),
                _ => println!("removed the {kind} of {name} from the keyring"),
            }
            Ok(())
        }
        Cmd::Up {
            name,
            secrets_stdin,
            timeout,
        } => up(&name, secrets_stdin, Duration::from_secs(timeout)).await,
        Cmd::Down { name } => down(&name).await,
        Cmd::Check { name } => check_tunnel(&name).await,
        Cmd::Status => status(json).await,
        Cmd::Log { name } => log(&name).await,
        Cmd::Secret {
            action: SecretCmd::Set { name, xauth, stdin },
        } => {
            let p = profiles::load(&name)?;
            let kind = if xauth {
                secret_key::XAUTH_PASSWORD
            } else {
                secret_key::PSK
            };
            let v = if stdin {
                let mut l = String::new();
                std::io::stdin()
                    .read_line(&mut l)
                    .map_err(|e| Fail::new(FailureKind::BadProfile, format!("stdin: {e}")))?;
                zeroize::Zeroizing::new(l.trim_end_matches(['\n', '\r']).to_string())
            } else {
                zeroize::Zeroizing::new(
                    rpassword::prompt_password(format!("{kind} for {}: ", p.name))
                        .map_err(|e| Fail::new(FailureKind::BadProfile, e.to_string()))?,
                )
            };
            if v.is_empty() {
                return Err(Fail::new(FailureKind::BadProfile, "empty secret"));
            }
            keyring::store(&name, kind, &v).await?;
            println!("stored the {kind} of {name} in the keyring");
            Ok(())
        }
        Cmd::Import {
            file,
            secrets,
            name,
            connection,
            dry_run,
            show_secrets,
        } => {
            import(
                &file,
                secrets,
                name,
                connection,
                dry_run,
                json,
                show_secrets,
            )
            .await
        }
        Cmd::Export {
            name,
            format,
            output,
        } => {
            let p = profiles::load(&name)?;
            if let Some(why) = postern_frontend::export::refusal(&p, format) {
                return Err(Fail::new(FailureKind::BadProfile, why));
            }
            let text = postern_frontend::export::export(&p, format);
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| {
                        Fail::new(FailureKind::Internal, format!("{}: {e}", path.display()))
                    })?;
                    eprintln!("wrote {} ({})", path.display(), format.as_str());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "postern", &mut std::io::stdout());
            Ok(())
        }
    }
}

async fn import(
    file: &std::path::Path,
    secrets: Vec<std::path::PathBuf>,
    name: Option<String>,
    connection: Option<String>,
    dry_run: bool,
    json: bool,
    show_secrets: bool,
) -> Result<(), Fail> {
    use postern_frontend::import;
    let opts = import::ImportOptions {
        connection,
        secrets,
        format: None,
    };
    let mut found = import::import_file(file, &opts)?;
    if name.is_some() && found.len() > 1 {
        return Err(Fail::new(
            FailureKind::BadProfile,
            format!(
                "{} holds {} connections ({}): pick one with --connection before naming it with --name",
                file.display(),
                found.len(),
                found
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(n) = &name {
        profiles::check_name(n)?;
        found[0].profile_name = n.clone();
    }
    if !dry_run {
        for i in &mut found {
            // Files the import carried (Shrew's embedded certificates) go beside the profile.
            let files = std::mem::take(&mut i.files);
            import::save_files(&i.profile_name, &mut i.profile, &files)?;
            i.toml = i.profile.to_toml_string();
        }
    }
    if json {
        println!("{}", import::to_json(&found, show_secrets));
    }
    for i in &found {
        let mut saved = None;
        let mut stored = Vec::new();
        if !dry_run {
            saved = Some(profiles::add(&i.profile_name, &i.toml)?);
            stored = import::store_secrets(&i.profile_name, &i.secrets).await;
        }
        if json {
            continue;
        }
        match &saved {
            Some(path) => println!(
                "imported {} ({}) as {} ({})",
                i.name,
                i.format,
                i.profile_name,
                path.display()
            ),
            None => {
                println!(
                    "# {} ({}) would be saved as {}",
                    i.name, i.format, i.profile_name
                );
                print!("{}", i.toml);
            }
        }
        for (kind, secret) in &i.secrets {
            match stored.iter().find(|(k, _)| k == kind) {
                Some((_, Ok(()))) => println!("  {kind}: stored in the keyring"),
                Some((_, Err(f))) => println!(
                    "  {kind}: NOT stored ({}); store it with `postern secret set {}`",
                    f.message, i.profile_name
                ),
                None if show_secrets => println!("  {kind}: {}", secret.expose()),
                None => println!("  {kind}: found"),
            }
        }
        for kind in &i.secrets_missing {
            println!(
                "  {kind}: not in the file; you will be asked, or run `postern secret set {}`",
                i.profile_name
            );
        }
        for m in &i.missing {
            println!("  missing {}: {}", m.key, m.message);
        }
        for w in &i.warnings {
            match w.line {
                Some(l) => println!("  line {l}: {}: {}", w.key, w.message),
                None => println!("  {}: {}", w.key, w.message),
            }
        }
    }
    Ok(())
}

/// How a system profile is named on the command line: `system:NAME` (plain `NAME`
/// works too when no profile of yours has that name).
const SYSTEM_PREFIX: &str = "system:";

/// The caller's tunnels by profile name (`system:NAME` for a system profile's).
async fn tunnels(conn: &zbus::Connection) -> Result<Vec<(String, OwnedObjectPath)>, Fail> {
    let helper = HelperProxy::new(conn).await?;
    let mut out = Vec::new();
    for path in helper.list().await? {
        let c = ConnectionProxy::builder(conn)
            .path(path.clone())?
            .build()
            .await?;
        match c.system_profile().await {
            Ok(sys) if !sys.is_empty() => out.push((format!("{SYSTEM_PREFIX}{sys}"), path)),
            _ => {
                if let Ok(name) = c.name().await {
                    out.push((name, path));
                }
            }
        }
    }
    Ok(out)
}

/// The IKE version of the profile tunnel `name` was started from (a user profile, or
/// `system:X` read through the helper); `None` when it cannot be read.
async fn ike_version_of(conn: &zbus::Connection, name: &str) -> Option<u8> {
    match name.strip_prefix(SYSTEM_PREFIX) {
        Some(sys) => {
            let text = HelperProxy::new(conn)
                .await
                .ok()?
                .system_profile_text(sys)
                .await
                .ok()?;
            Profile::from_toml_str(&text, sys, postern_dbus::profile::SecretPolicy::Forbid)
                .ok()
                .map(|p| p.ike_version)
        }
        None => profiles::load(name).ok().map(|p| p.ike_version),
    }
}

/// The system profile `name` stands for: `system:X`, or a bare name that is no user
/// profile of the caller's.
fn system_name(name: &str) -> Option<&str> {
    if let Some(n) = name.strip_prefix(SYSTEM_PREFIX) {
        return Some(n);
    }
    (!profiles::names().is_ok_and(|ns| ns.iter().any(|n| n == name))).then_some(name)
}

async fn list(json: bool) -> Result<(), Fail> {
    let names = profiles::names()?;
    // The helper is optional here: without it, profiles are listed as down.
    let mut states: HashMap<String, String> = HashMap::new();
    if let Ok(conn) = bus().await
        && let Ok(ts) = tunnels(&conn).await
    {
        for (name, path) in ts {
            if let Ok(c) = ConnectionProxy::builder(&conn).path(path)?.build().await
                && let Ok(s) = c.state().await
            {
                states.insert(name, s);
            }
        }
    }
    let helper = match bus().await {
        Ok(conn) => HelperProxy::new(&conn).await.ok().map(|h| (conn, h)),
        Err(_) => None,
    };
    for name in names {
        let mut st = states.get(&name).cloned().unwrap_or_else(|| "down".into());
        // Refused by this machine's policy? (The helper can tell before a connect.)
        let refused = match (&helper, profiles::load(&name)) {
            (Some((_, h)), Ok(p)) if st == "down" => h
                .check_profile(&profiles::text_for_helper(&p))
                .await
                .unwrap_or_default(),
            _ => String::new(),
        };
        if !refused.is_empty() {
            st = "refused".into();
        }
        if json {
            match profiles::load(&name) {
                Ok(p) => println!("{}", profiles::summary_json(&name, &p, Some(&st))),
                Err(Fail { message: m, .. }) => println!(
                    "{{\"name\":{},\"error\":{}}}",
                    profiles::js(&name),
                    profiles::js(&m)
                ),
            }
        } else {
            let gw = profiles::load(&name)
                .map(|p| p.gateway)
                .unwrap_or_else(|f| f.message);
            println!("{name:<24} {st:<14} {gw}");
            if !refused.is_empty() {
                println!("{:<24} refused: {refused}", "");
            }
        }
    }
    // The system profiles (/etc/postern/profiles), shared by every user of the machine.
    let system = match &helper {
        Some((_, h)) => match h.system_profiles().await {
            Ok(sys) => sys,
            Err(e) => {
                eprintln!("system profiles not listed: the helper did not answer: {e}");
                Vec::new()
            }
        },
        None => {
            eprintln!("system profiles not listed: the helper is not reachable on the system bus");
            Vec::new()
        }
    };
    {
        for s in system {
            let key = format!("{SYSTEM_PREFIX}{}", s.name);
            let st = if !s.refused.is_empty() {
                "refused".to_string()
            } else {
                states.get(&key).cloned().unwrap_or_else(|| "down".into())
            };
            if json {
                println!(
                    "{{\"name\":{},\"system\":true,\"title\":{},\"gateway\":{},\"autoconnect\":{},\"state\":{},\"refused\":{}}}",
                    profiles::js(&key),
                    profiles::js(&s.title),
                    profiles::js(&s.gateway),
                    profiles::js(&s.autoconnect),
                    profiles::js(&st),
                    profiles::js(&s.refused)
                );
            } else {
                let auto = if s.autoconnect == "boot" {
                    " (at boot)"
                } else {
                    ""
                };
                println!("{key:<24} {st:<14} {} [system]{auto}", s.gateway);
                if !s.refused.is_empty() {
                    println!("{:<24} refused: {}", "", s.refused);
                }
            }
        }
    }
    Ok(())
}

/// Secrets for `p`: from stdin lines (`--secrets-stdin`), else from the keyring, else
/// asked on the terminal.
async fn secrets(
    name: &str,
    p: &Profile,
    from_stdin: bool,
) -> Result<HashMap<&'static str, zeroize::Zeroizing<String>>, Fail> {
    let mut asked: Vec<(&'static str, String)> = Vec::new();
    if p.auth.method == AuthMethod::Psk {
        asked.push((secret_key::PSK, format!("pre-shared key for {}", p.name)));
    }
    if p.xauth.is_some() {
        asked.push((
            secret_key::XAUTH_PASSWORD,
            format!("XAuth password for {}", p.name),
        ));
    }
    let mut out = HashMap::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    for (key, prompt) in asked {
        let v = if from_stdin {
            lines.next().and_then(Result::ok).ok_or_else(|| {
                Fail::new(
                    FailureKind::BadProfile,
                    format!("stdin: no line for the {prompt}"),
                )
            })?
        } else if let Some(v) = keyring::lookup(name, key).await {
            v.to_string()
        } else if std::io::stdin().is_terminal() {
            rpassword::prompt_password(format!("{prompt}: "))
                .map_err(|e| Fail::new(FailureKind::BadProfile, format!("{prompt}: {e}")))?
        } else {
            return Err(Fail::new(
                FailureKind::BadProfile,
                format!(
                    "the {prompt} is needed: store it with `postern secret set`, run on a terminal, or use --secrets-stdin"
                ),
            ));
        };
        out.insert(key, zeroize::Zeroizing::new(v));
    }
    Ok(out)
}

async fn up(name: &str, secrets_stdin: bool, timeout: Duration) -> Result<(), Fail> {
    let (conn, helper, path) = if let Some(sys) = system_name(name) {
        // A system profile: the helper reads it and its secrets; we send the name only.
        let conn = bus().await?;
        let helper = HelperProxy::new(&conn).await?;
        let path = helper.connect_system(sys).await?;
        (conn, helper, path)
    } else {
        let p = profiles::load(name)?;
        let mut secret_map = secrets(name, &p, secrets_stdin).await?;
        // Certificate files: read here, as the user; the helper opens no path.
        for (key, value) in profiles::cert_contents(&p)? {
            secret_map.insert(key, value);
        }
        let text = profiles::text_for_helper(&p);
        let conn = bus().await?;
        let helper = HelperProxy::new(&conn).await?;
        let secrets_ref: HashMap<&str, &str> =
            secret_map.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let path = helper.connect(&text, secrets_ref).await?;
        drop(secret_map);
        (conn, helper, path)
    };
    // Uncached: every state read asks the helper (signals may race with our subscribing).
    let c = ConnectionProxy::builder(&conn)
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut logs = c.receive_log_line().await?;
    let mut asks = c.receive_credentials_required().await?;
    let mut states = c.receive_state_changed().await;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        // The state may have moved before we subscribed.
        let st = c.state().await.unwrap_or_default();
        if st == state::CONNECTED {
            println!(
                "{name} is up ({})",
                c.virtual_ip().await.unwrap_or_default()
            );
            return Ok(());
        }
        if st == state::FAILED || st == state::DISCONNECTED {
            // The kind decides the exit code; the helper's sentence is shown as it is.
            return Err(c
                .last_error()
                .await
                .unwrap_or_default()
                .failure()
                .unwrap_or_else(|| Fail::new(FailureKind::Internal, format!("{name}: {st}"))));
        }
        tokio::select! {
            Some(l) = logs.next() => {
                if let Ok(a) = l.args() {
                    println!("{}", a.line);
                }
            }
            Some(s) = asks.next() => {
                let Ok(a) = s.args() else { continue };
                let answers = prompt_credentials(&a.fields, &a.message)?;
                let answers_ref: HashMap<&str, &str> =
                    answers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                helper.submit_credentials(&path, answers_ref).await?;
            }
            _ = states.next() => {}
            // A look at the state now and then, whatever the signals did.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut deadline => {
                let _ = helper.disconnect(&path).await;
                return Err(Fail::new(FailureKind::NotResponding, format!("{name}: not up after {} s; disconnected", timeout.as_secs())));
            }
        }
    }
}

fn prompt_credentials(
    fields: &[String],
    message: &str,
) -> Result<Vec<(String, zeroize::Zeroizing<String>)>, Fail> {
    if !std::io::stdin().is_terminal() {
        return Err(Fail::new(
            FailureKind::CredentialsMissing,
            "the gateway asks for XAuth credentials and there is no terminal to ask on",
        ));
    }
    if !message.is_empty() {
        println!("{message}");
    }
    let mut out = Vec::new();
    for f in fields {
        let v = if f == answer_key::USERNAME {
            print!("username: ");
            let _ = std::io::stdout().flush();
            let mut s = String::new();
            std::io::stdin()
                .read_line(&mut s)
                .map_err(|e| Fail::new(FailureKind::CredentialsMissing, e.to_string()))?;
            s.trim_end().to_string()
        } else {
            rpassword::prompt_password(format!("{f}: "))
                .map_err(|e| Fail::new(FailureKind::CredentialsMissing, e.to_string()))?
        };
        out.push((f.clone(), zeroize::Zeroizing::new(v)));
    }
    Ok(out)
}

async fn down(name: &str) -> Result<(), Fail> {
    let conn = bus().await?;
    let helper = HelperProxy::new(&conn).await?;
    let all = tunnels(&conn).await?;
    let mut found: Vec<OwnedObjectPath> = all
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .collect();
    if found.is_empty()
        && let Some(sys) = system_name(name)
    {
        let key = format!("{SYSTEM_PREFIX}{sys}");
        found = all
            .into_iter()
            .filter(|(n, _)| *n == key)
            .map(|(_, p)| p)
            .collect();
    }
    // A tunnel that has ended lingers a while for its state to be read: not up.
    // A failed one whose kill switch holds is still up: it waits for this disconnect.
    let mut live: Vec<OwnedObjectPath> = Vec::new();
    for path in found {
        let c = ConnectionProxy::builder(&conn)
            .path(path.clone())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let st = c.state().await.unwrap_or_default();
        let holding = st == state::FAILED && !c.protection().await.unwrap_or_default().is_empty();
        if (st != state::DISCONNECTED && st != state::FAILED) || holding {
            live.push(path);
        }
    }
    let found = live;
    if found.is_empty() {
        return Err(Fail::new(
            FailureKind::Internal,
            format!("{name} is not up"),
        ));
    }
    for path in found {
        helper.disconnect(&path).await?;
        // Until it says disconnected or goes away (bounded; uncached reads).
        let c = ConnectionProxy::builder(&conn)
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        for _ in 0..100 {
            let held = !c.protection().await.unwrap_or_default().is_empty();
            match c.state().await {
                Ok(s) if (s == state::DISCONNECTED || s == state::FAILED) && !held => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => break,
            }
        }
    }
    println!("{name} is down");
    Ok(())
}

async fn check_tunnel(name: &str) -> Result<(), Fail> {
    let conn = bus().await?;
    let Some(path) = tunnels(&conn)
        .await?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
    else {
        return Err(Fail::new(
            FailureKind::Internal,
            format!("{name} is not up"),
        ));
    };
    let c = ConnectionProxy::builder(&conn).path(path)?.build().await?;
    println!("checking {name} (at most 15 s)...");
    let steps = c.check().await?;
    let mut failed = 0;
    for s in &steps {
        if s.outcome == postern_dbus::interface::check::FAILED {
            failed += 1;
        }
        println!("{:<8} {:<8} {}", s.name, s.outcome, s.detail);
    }
    if failed > 0 {
        return Err(Fail::new(
            FailureKind::Datapath,
            format!("{name}: {failed} of {} checks failed", steps.len()),
        ));
    }
    println!("{name}: nothing wrong found");
    Ok(())
}

async fn status(json: bool) -> Result<(), Fail> {
    let conn = bus().await?;
    for (name, path) in tunnels(&conn).await? {
        let c = ConnectionProxy::builder(&conn).path(path)?.build().await?;
        let st = c.state().await.unwrap_or_default();
        // "reconnecting: network changed", "resumed: checking the gateway": shown
        // instead of the bare state.
        let detail = c.detail().await.unwrap_or_default();
        let sas = c.sas().await.unwrap_or_default();
        let t = c.traffic().await.unwrap_or_default();
        let per_sa = c.sa_traffic().await.unwrap_or_default();
        // The helper says which version the tunnel speaks; an older helper (or a tunnel
        // it lost in a restart) does not, and the profile file tells instead.
        let version = match c.ike_version().await {
            Ok(v @ 1..=2) => Some(v as u8),
            _ => ike_version_of(&conn, &name).await,
        };
        let traffic_of = |spi_in: u32| {
            per_sa
                .iter()
                .find(|x| x.spi_in == spi_in)
                .copied()
                .unwrap_or_default()
        };
        if json {
            let sas_js: Vec<String> = sas
                .iter()
                .map(|s| {
                    let x = traffic_of(s.spi_in);
                    format!(
                        "{{\"spi_in\":\"{:08x}\",\"spi_out\":\"{:08x}\",\"proposal\":{},\"mode\":{},\"udp\":{},\"local_ts\":{},\"remote_ts\":{},\"lifetime_secs\":{},\"in_bytes\":{},\"in_packets\":{},\"out_bytes\":{},\"out_packets\":{}}}",
                        s.spi_in, s.spi_out, profiles::js(&s.proposal), profiles::js(&s.mode), s.udp_encapsulation,
                        profiles::js(&s.local_ts), profiles::js(&s.remote_ts), s.lifetime_secs,
                        x.in_bytes, x.in_packets, x.out_bytes, x.out_packets
                    )
                })
                .collect();
            println!(
                "{{\"name\":{},\"state\":{},\"detail\":{},\"phase\":{},\"gateway\":{},\"virtual_ip\":{},\"ike_version\":{},\"ike\":{},\"sas\":[{}],\"tx_bytes\":{},\"rx_bytes\":{},\"last_error\":{},\"protection\":[{}]}}",
                profiles::js(&name),
                profiles::js(&st),
                profiles::js(&detail),
                profiles::js(&c.phase().await.unwrap_or_default()),
                profiles::js(&c.gateway().await.unwrap_or_default()),
                profiles::js(&c.virtual_ip().await.unwrap_or_default()),
                version.map_or("null".to_string(), |v| v.to_string()),
                profiles::js(&c.ike_proposal().await.unwrap_or_default()),
                sas_js.join(","),
                t.tx_bytes,
                t.rx_bytes,
                profiles::js(&c.last_error().await.unwrap_or_default().message),
                c.protection()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(|l| profiles::js(l))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            continue;
        }
        let st = if detail.is_empty() { st } else { detail };
        // "IKEv2 aes256-sha256-modp2048": the version, then the IKE SA's algorithms.
        let ike = match version {
            Some(v) => format!("IKEv{v} {}", c.ike_proposal().await.unwrap_or_default()),
            None => c.ike_proposal().await.unwrap_or_default(),
        };
        println!(
            "{name}: {st} gateway {} vip {} ike {}",
            c.gateway().await.unwrap_or_default(),
            c.virtual_ip().await.unwrap_or_default(),
            ike.trim_end()
        );
        println!("  sent {} bytes, received {} bytes", t.tx_bytes, t.rx_bytes);
        for line in c.protection().await.unwrap_or_default() {
            println!("  {line}");
        }
        let last = c.last_error().await.unwrap_or_default();
        if !last.message.is_empty() {
            println!("  {}", last.message);
        }
        if !sas.is_empty() {
            println!(
                "  {:<10} {:<10} {:<16} {:<16} {:<20} {:<18} {:<9} {:>14} {:>14}",
                "spi in",
                "spi out",
                "esp",
                "mode",
                "local",
                "remote",
                "lifetime",
                "bytes in",
                "bytes out"
            );
        }
        for s in sas {
            let x = traffic_of(s.spi_in);
            println!(
                "  {:08x}   {:08x}   {:<16} {:<16} {:<20} {:<18} {:<9} {:>14} {:>14}",
                s.spi_in,
                s.spi_out,
                s.proposal,
                format!(
                    "{}{}",
                    s.mode,
                    if s.udp_encapsulation { "+udp" } else { "" }
                ),
                s.local_ts,
                s.remote_ts,
                format!("{}s", s.lifetime_secs),
                x.in_bytes,
                x.out_bytes
            );
        }
    }
    Ok(())
}

async fn log(name: &str) -> Result<(), Fail> {
    let conn = bus().await?;
    let helper = HelperProxy::new(&conn).await?;
    let Some((_, path)) = tunnels(&conn).await?.into_iter().find(|(n, _)| n == name) else {
        return Err(Fail::new(
            FailureKind::Internal,
            format!("{name} is not up"),
        ));
    };
    // Subscribed before `Watch`, so no signal sent to us is missed; `Watch` says which
    // line is the first we get, `RecentLog` what came before (printed once each).
    let c = ConnectionProxy::builder(&conn)
        .path(path.clone())?
        .build()
        .await?;
    let mut logs = c.receive_log_line().await?;
    let mut states = c.receive_state_changed().await;
    let first_signalled = helper.watch(&path).await?;
    let (total, recent) = c.recent_log().await?;
    for line in &recent {
        println!("{line}");
    }
    // Signals for lines [first_signalled, total) are already printed from the history.
    let mut skip = total.saturating_sub(first_signalled);
    // Already over (the object lingers a moment after the end): nothing more comes.
    if let Ok(v) = c.state().await
        && (v == state::DISCONNECTED || v == state::FAILED)
    {
        return Ok(());
    }
    let print = |l: &LogLine| {
        if let Ok(a) = l.args() {
            println!("{}", a.line);
        }
    };
    loop {
        // Lines first: the helper sends an event's lines before its state change.
        tokio::select! {
            biased;
            Some(l) = logs.next() => {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                print(&l);
            }
            Some(s) = states.next() => {
                if let Ok(v) = s.get().await && (v == state::DISCONNECTED || v == state::FAILED) {
                    // The last lines came before the change: already queued here.
                    while let Some(Some(l)) = logs.next().now_or_never() {
                        print(&l);
                    }
                    return Ok(());
                }
            }
            else => return Ok(()),
        }
    }
}
