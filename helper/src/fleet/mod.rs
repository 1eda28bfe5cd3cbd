//! What an admin of a fleet uses: the site policy ([`policy`]) and
//! `postern-helper check [--json] [--policy FILE] [PATH...]`, which validates profile
//! files before they are rolled out: syntax and every key (the contract's parser, so
//! the messages are the ones users see), file ownership and permissions, the
//! certificate files a profile names (readable, private where they must be, parsable),
//! the secrets a profile cannot run without, and the policy. One `file:line: key:
//! message` per problem; exit status 0 only when there is none.

pub mod policy;
pub mod system;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_dbus::failure::{FailureKind, exit};
use postern_dbus::profile::{AuthMethod, Autoconnect, Profile, SecretPolicy};
use serde::Serialize;

use policy::Policy;

/// Where system profiles live.
pub const SYSTEM_PROFILES: &str = "/etc/postern/profiles";

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The line (1-based) of `key` (`section.leaf`) in a profile's text: the first
/// `leaf = ...` line inside `[section]`.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = s.trim().to_string();
            continue;
        }
        if current == section
            && t.strip_prefix(leaf)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// Every problem of one profile file. `system`: it is (or will be) a system profile,
/// so it must be owned by root and writable by no one else.
pub fn check_file(path: &Path, policy: &Policy, system: bool) -> Vec<Problem> {
    let file = path.display().to_string();
    let problem = |line, key: Option<&str>, message: String| Problem {
        file: file.clone(),
        line,
        key: key.map(str::to_string),
        message,
    };
    let mut out = Vec::new();
    if system
        && let Ok(m) = std::fs::metadata(path)
        && let Some(why) = system::ownership_problem(&m)
    {
        out.push(problem(None, None, why));
    }
    let mut profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            out.push(Problem {
                file: e.origin,
                line: e.line,
                key: e.key,
                message: e.message,
            });
            return out;
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let at = |key: &str| line_of_key(&text, key);

    if system && let Err(why) = system::merge_secrets(&mut profile, &path.with_extension("secrets"))
    {
        out.push(problem(None, None, why));
    }
    if let Err((key, why)) = policy.apply(&mut profile) {
        out.push(problem(at(&key), Some(&key), why));
    }
    if system && let Some((key, why)) = system::boot_problem(&profile) {
        out.push(problem(at("autoconnect"), Some(key), why));
    }
    if !system && profile.autoconnect == Autoconnect::Boot {
        out.push(problem(
            at("autoconnect"),
            Some("autoconnect"),
            system::USER_BOOT.into(),
        ));
    }
    if matches!(profile.auth.method, AuthMethod::Psk) && profile.auth.psk.is_none() {
        out.push(problem(
            at("auth.method"),
            Some("auth.psk"),
            "the pre-shared key is missing: a system profile keeps it in the file (mode 0600, owned by root) or in NAME.secrets beside it".into(),
        ));
    }
    // The certificate files: readable, private keys private, and parsable (the engine's
    // configuration parses them exactly as a connect would).
    if !matches!(profile.auth.method, AuthMethod::Psk) {
        match crate::up::load_cert_files(&mut profile) {
            Err(f) => {
                let key = ["ca", "cert", "key", "pkcs12", "crl"]
                    .into_iter()
                    .find(|k| {
                        let named = match *k {
                            "ca" => &profile.auth.ca,
                            "cert" => &profile.auth.cert,
                            "key" => &profile.auth.key,
                            "pkcs12" => &profile.auth.pkcs12,
                            _ => &profile.auth.crl,
                        };
                        named.as_deref().is_some_and(|p| f.message.contains(p))
                    })
                    .map(|k| format!("auth.{k}"));
                let line = key.as_deref().and_then(at);
                out.push(problem(line, key.as_deref(), f.message));
            }
            Ok(()) => {
                let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
                if let Err(f) = crate::tunnel::config::engine_config(&profile, any) {
                    out.push(problem(at("auth.method"), Some("auth"), f.message));
                }
            }
        }
    }
    out
}

/// The profile files under `paths` (a directory stands for its `*.toml` files, sorted).
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: cannot list: {e}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

#[derive(Serialize)]
struct Report<'a> {
    files: usize,
    problems: &'a [Problem],
    /// The site policy turns the kill switch on for every profile.
    kill_switch_forced: bool,
}

const CHECK_USAGE: &str = "usage: postern-helper check [--json] [--policy FILE] [--user] [PATH...]
  PATH      profile files or directories of them (default /etc/postern/profiles)
  --json    one JSON object: {\"files\": N, \"problems\": [{file, line, key, message}]}
  --policy  the site policy to apply (default /etc/postern/policy.toml, if present)
  --user    the files are user profiles (no root-ownership check)
";

/// `postern-helper check ...`.
pub fn check_command(args: &[&str]) -> ExitCode {
    let mut json = false;
    let mut system = true;
    let mut policy_path = policy::path();
    let mut paths = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--json" => json = true,
            "--user" => system = false,
            "--policy" => match it.next() {
                Some(p) => policy_path = PathBuf::from(p),
                None => {
                    eprint!("{CHECK_USAGE}");
                    return ExitCode::from(exit::USAGE);
                }
            },
            "-h" | "--help" => {
                print!("{CHECK_USAGE}");
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => {
                eprint!("{CHECK_USAGE}");
                return ExitCode::from(exit::USAGE);
            }
            p => paths.push(PathBuf::from(p)),
        }
    }
    if paths.is_empty() {
        paths.push(system::dir());
    }
    let policy = match Policy::load(&policy_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("postern-helper check: {e}");
            return ExitCode::from(FailureKind::BadProfile.exit_code());
        }
    };
    let files = match expand(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("postern-helper check: {e}");
            return ExitCode::from(FailureKind::BadProfile.exit_code());
        }
    };
    let problems: Vec<Problem> = files
        .iter()
        .flat_map(|f| check_file(f, &policy, system))
        .collect();
    if json {
        let report = Report {
            files: files.len(),
            problems: &problems,
            kill_switch_forced: policy.force_kill_switch,
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("postern-helper check: {e}"),
        }
    } else {
        for p in &problems {
            println!("{p}");
        }
        if policy.force_kill_switch {
            println!(
                "policy {}: the kill switch is on for every profile (network.kill_switch = \"force\")",
                policy_path.display()
            );
        }
        println!(
            "{} file{} checked, {} problem{}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FailureKind::BadProfile.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys() {
        let t =
            "name = \"x\"\n\n[auth]\nmethod = \"psk\"\ncert = \"/a\"\n[phase1]\nproposals = []\n";
        assert_eq!(line_of_key(t, "auth.method"), Some(4));
        assert_eq!(line_of_key(t, "auth.cert"), Some(5));
        assert_eq!(line_of_key(t, "phase1.proposals"), Some(7));
        assert_eq!(line_of_key(t, "name"), Some(1));
        assert_eq!(line_of_key(t, "phase2.proposals"), None);
    }

    #[test]
    fn a_file_with_problems() {
        let dir = std::env::temp_dir().join(format!("postern-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("weak.toml");
        std::fs::write(
            &f,
            "name = \"weak\"\ngateway = \"vpn.example.com\"\n[auth]\nmethod = \"psk\"\n[phase1]\nproposals = [\"3des-md5-modp1024\"]\n",
        )
        .unwrap();
        let pol = Policy::parse("[algorithms]\nforbid = [\"modp1024\"]\n", "p").unwrap();
        let probs = check_file(&f, &pol, false);
        let shown: Vec<String> = probs.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|s| s
                    .contains("weak.toml:6: phase1.proposals: 3des-md5-modp1024 uses modp1024")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("weak.toml:4: auth.psk: the pre-shared key is missing")),
            "{shown:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn boot_on_a_user_profile_and_a_boot_profile_without_its_xauth_password() {
        let dir = std::env::temp_dir().join(format!("postern-fleet-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("office.toml");
        std::fs::write(
            &f,
            "name = \"office\"\ngateway = \"192.0.2.1\"\nautoconnect = \"boot\"\n[auth]\nmethod = \"psk\"\npsk = \"s3cret\"\n[xauth]\nusername = \"alice\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let pol = Policy::open();
        // A user profile: boot does nothing there, said on the key's line.
        let user: Vec<String> = check_file(&f, &pol, false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(user.len(), 1, "{user:?}");
        assert!(
            user[0].contains(
                "office.toml:3: autoconnect: autoconnect = \"boot\" applies to system profiles only"
            ),
            "{user:?}"
        );
        // A system profile: it would wait forever for an XAuth answer.
        let sys: Vec<String> = check_file(&f, &pol, true)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            sys.iter().any(|s| s.contains("office.toml:3: xauth.password: autoconnect = \"boot\" with XAuth needs the XAuth password on disk")),
            "{sys:?}"
        );
        assert!(
            !sys.iter()
                .any(|s| s.contains("applies to system profiles only")),
            "{sys:?}"
        );
        // The password beside it in NAME.secrets (root, 0600): no boot problem left
        // (as root; otherwise the secrets file is refused for its owner).
        let sec = dir.join("office.secrets");
        std::fs::write(&sec, "xauth_password = \"pw\"\n").unwrap();
        std::fs::set_permissions(&sec, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&sec).unwrap()) == 0;
        if root {
            let sys = check_file(&f, &pol, true);
            assert!(sys.is_empty(), "{sys:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
