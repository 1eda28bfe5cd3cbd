//! The unprivileged front ends must not compile the engine's crypto: the contract
//! (`postern-dbus`) depends on the IKE vocabulary (`postern-algs`), not on the engine.

use std::process::Command;

const FORBIDDEN: [&str; 10] = [
    "postern-engine",
    "rsa",
    "p256",
    "p384",
    "p521",
    "ecdsa",
    "elliptic-curve",
    "num-bigint",
    "crypto-bigint",
    "ring",
];

#[test]
fn the_cli_links_no_engine_crypto() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "postern-cli",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"postern-dbus"),
        "not the CLI's tree:\n{tree}"
    );
    for c in FORBIDDEN {
        assert!(!crates.contains(&c), "the CLI depends on {c}:\n{tree}");
    }
}
