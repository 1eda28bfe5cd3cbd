//! Searches everything a lab run produced for the lab tests' secrets
//! ([`postern_lab::config::LAB_SECRETS`]): `lab-secret-grep LOGS_DIR [OUTPUT_DIR...]`.
//!
//! `LOGS_DIR` holds the helper's and the other processes' output the labs kept
//! (`POSTERN_LAB_LOGS`, scripts/test.sh: `target/lab-logs`; the gateways' own logs are
//! not kept: the gateway knows the PSK); each `OUTPUT_DIR` holds captured test output.
//! Fails (exit 1) naming the file, the line and which secret (never the secret itself),
//! and also when it could pass without having looked: an empty or missing `LOGS_DIR`,
//! or a known marker (`connected in ` in the logs, `test result:` in the output) not
//! found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_lab::config::LAB_SECRETS;

/// A line the helper writes on every successful connect.
const LOG_MARKER: &str = "connected in ";
/// A line of every cargo test run.
const OUTPUT_MARKER: &str = "test result:";

/// One secret found: file, line number (1-based), what the secret is.
#[derive(Debug, PartialEq, Eq)]
struct Hit {
    file: PathBuf,
    line: usize,
    what: &'static str,
}

/// What a search saw.
#[derive(Debug, Default)]
struct Seen {
    files: usize,
    bytes: usize,
    marker: bool,
    hits: Vec<Hit>,
}

/// The files under `dir` (or `dir` itself when it is a file).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Searches every file under `dir` for the secrets and for `marker`.
fn search(dir: &Path, secrets: &[(&str, &'static str)], marker: &str) -> Seen {
    let mut seen = Seen::default();
    for f in files_under(dir) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        seen.files += 1;
        seen.bytes += bytes.len();
        let text = String::from_utf8_lossy(&bytes);
        seen.marker |= text.contains(marker);
        for (n, line) in text.lines().enumerate() {
            for (secret, what) in secrets {
                if line.contains(secret) {
                    seen.hits.push(Hit {
                        file: f.clone(),
                        line: n + 1,
                        what,
                    });
                }
            }
        }
    }
    seen
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((logs, outputs)) = args.split_first() else {
        eprintln!("usage: lab-secret-grep LOGS_DIR [OUTPUT_DIR...]");
        return ExitCode::from(2);
    };
    let mut failed = false;
    let mut report = |name: &str, dir: &Path, marker: &str| {
        let s = search(dir, LAB_SECRETS, marker);
        println!(
            "{name} {}: {} files, {} bytes searched for {} secrets; marker {marker:?} {}",
            dir.display(),
            s.files,
            s.bytes,
            LAB_SECRETS.len(),
            if s.marker { "found" } else { "NOT found" }
        );
        if s.files == 0 {
            println!(
                "  FAILED: nothing to search (for the lab logs: is {} set?)",
                postern_lab::lab::LOGS_ENV
            );
            failed = true;
        } else if !s.marker {
            println!("  FAILED: the marker is missing: this search may have seen no real output");
            failed = true;
        }
        for h in &s.hits {
            println!("  FAILED: {}:{}: {}", h.file.display(), h.line, h.what);
            failed = true;
        }
    };
    report("lab logs", logs, LOG_MARKER);
    for o in outputs {
        report("test output", o, OUTPUT_MARKER);
    }
    if failed {
        println!("a secret was found, or the search saw no output");
        ExitCode::FAILURE
    } else {
        println!("no test secret in any of it");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_secret_with_its_file_and_line_and_the_marker() {
        let dir = std::env::temp_dir().join(format!("lab-secret-grep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/clean.out"), "connected in 12 ms\n").unwrap();
        std::fs::write(dir.join("a/b/leak.out"), "one\ntwo hunter2-x\n").unwrap();
        let s = search(&dir, &[("hunter2-x", "a test secret")], LOG_MARKER);
        assert_eq!(s.files, 2);
        assert!(s.marker);
        assert_eq!(
            s.hits,
            vec![Hit {
                file: dir.join("a/b/leak.out"),
                line: 2,
                what: "a test secret"
            }]
        );
        let none = search(&dir.join("missing"), &[("x", "y")], LOG_MARKER);
        assert_eq!(none.files, 0);
        assert!(!none.marker);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
