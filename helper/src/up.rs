//! `postern-helper up PROFILE.toml`: one tunnel in the foreground.
//!
//! A thin terminal front end on the tunnel driver (`crate::tunnel`): prints one line
//! per state change on stdout; turns SIGINT/SIGTERM into a disconnect and XAuth
//! requests into terminal prompts; on failure one `error: ...` line on stderr and an
//! exit code that says what kind of failure. `engine_config` (profile → engine
//! configuration) lives in `tunnel::config`.

use std::path::Path;
use std::process::ExitCode;

use postern_dbus::profile::{self, Profile, SecretPolicy};
use postern_engine::ike::{Credentials, CredentialsRequest, XAuthField};
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
    // The site policy (forbidden algorithms, a forced kill switch), as the D-Bus
    // service applies it.
    let policy_path = crate::fleet::policy::path();
    match crate::fleet::policy::Policy::load(&policy_path) {
        Ok(policy) => {
            if let Err((key, why)) = policy.apply(&mut profile) {
                eprintln!("error: {}: {key}: {why}", path.display());
                return ExitCode::from(FailureKind::BadProfile.exit_code());
            }
        }
        Err(e) => {
            eprintln!("error: the site policy cannot be read: {e}");
            return ExitCode::from(FailureKind::BadProfile.exit_code());
        }
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
