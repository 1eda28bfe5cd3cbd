//! Test certificates, made at test time with strongSwan's `pki` (Debian's
//! strongswan-pki): an RSA root CA with an intermediate, a gateway and a client
//! certificate, the gateway's certificate also from another CA and expired, and an
//! ECDSA P-256 set and an ECDSA P-521 set. Made once per test process (key generation is the slow part) in
//! `<lab dir>/pl-pki-<pid>/`; the keys are test-only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::lab::{PREFIX, lab_base_dir};
use crate::{LabError, Result};

/// The gateway's name in its certificates (subjectAltName and CN).
pub const GW_NAME: &str = "gw.postern.lab";
/// The client's certificate subject.
pub const CLIENT_DN: &str = "C=CH, O=Postern Lab, CN=client.postern.lab";
/// The ECDSA gateway's name.
pub const EC_GW_NAME: &str = "ec-gw.postern.lab";
/// The ECDSA client's certificate subject.
pub const EC_CLIENT_DN: &str = "C=CH, O=Postern Lab, CN=ec-client.postern.lab";
/// The ECDSA P-521 gateway's name (`ec521-gw.pem` under `ec521-ca.pem`).
pub const EC521_GW_NAME: &str = "ec521-gw.postern.lab";
/// The ECDSA P-521 client's certificate subject (`ec521-client.pem`).
pub const EC521_CLIENT_DN: &str = "C=CH, O=Postern Lab, CN=ec521-client.postern.lab";

/// The passphrase of `client.p12`.
pub const P12_PASSPHRASE: &str = "lab-p12-pass";

/// Where the generated files are; names as in [`Pki::path`].
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// `name` in the set: `ca.pem`, `inter.pem`, `other-ca.pem`, `gw.key`, `gw.pem`,
    /// `gw-inter.pem`, `gw-other.pem`, `gw-expired.pem`, `client.key`, `client.pem`,
    /// `ec-ca.pem`, `ec-gw.key`, `ec-gw.pem`, `ec-client.key`, `ec-client.pem`,
    /// the same with `ec521-` (ECDSA P-521),
    /// `gw-revoked.pem` with `ca.crl` revoking it, `client.p12` ([`P12_PASSPHRASE`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

static PKI: OnceLock<std::result::Result<Pki, String>> = OnceLock::new();

/// Names a directory with a PKI [`lab_pki`] made already, to use instead of making
/// one (the kernel VM: key generation under emulation is slow, the host made it).
pub const PKI_DIR_ENV: &str = "POSTERN_LAB_PKI";

/// The test PKI of this process, made on first use (or the one `$POSTERN_LAB_PKI`
/// names).
pub fn lab_pki() -> Result<&'static Pki> {
    PKI.get_or_init(|| match std::env::var_os(PKI_DIR_ENV) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("client.p12").is_file() {
                Ok(Pki { dir })
            } else {
                Err(format!(
                    "{PKI_DIR_ENV}={} holds no complete test PKI",
                    dir.display()
                ))
            }
        }
        None => make().map_err(|e| e.0),
    })
    .as_ref()
    .map_err(|e| LabError(e.clone()))
}

fn pki(args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut cmd = Command::new("pki");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        LabError(format!(
            "cannot run `pki` ({e}): install strongswan-pki (scripts/install-deps.sh)"
        ))
    })?;
    if let Some(input) = stdin {
        use std::io::Write as _;
        let mut w = child
            .stdin
            .take()
            .ok_or_else(|| LabError("pki: no stdin".into()))?;
        w.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(LabError(format!(
            "pki {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    Ok(())
}

struct Maker {
    dir: PathBuf,
}

impl Maker {
    fn key(&self, name: &str, kind: &str, size: &str) -> Result<()> {
        let k = pki(
            &["--gen", "--type", kind, "--size", size, "--outform", "pem"],
            None,
        )?;
        write_private(&self.dir.join(name), &k)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        Ok(fs::read(self.dir.join(name))?)
    }

    fn self_signed(&self, name: &str, key: &str, dn: &str) -> Result<()> {
        let k = self.dir.join(key);
        let c = pki(
            &[
                "--self",
                "--in",
                &k.to_string_lossy(),
                "--dn",
                dn,
                "--ca",
                "--lifetime",
                "30",
                "--outform",
                "pem",
            ],
            None,
        )?;
        fs::write(self.dir.join(name), c)?;
        Ok(())
    }

    /// `pki --pub | pki --issue` with `extra` options (SANs, flags, dates).
    fn issue(&self, name: &str, key: &str, ca: &str, dn: &str, extra: &[&str]) -> Result<()> {
        let public = pki(
            &[
                "--pub",
                "--in",
                &self.dir.join(key).to_string_lossy(),
                "--outform",
                "pem",
            ],
            None,
        )?;
        let cacert = self.dir.join(format!("{ca}.pem"));
        let cakey = self.dir.join(format!("{ca}.key"));
        let mut args = vec![
            "--issue".to_string(),
            "--cacert".into(),
            cacert.to_string_lossy().into_owned(),
            "--cakey".into(),
            cakey.to_string_lossy().into_owned(),
            "--dn".into(),
            dn.into(),
            "--outform".into(),
            "pem".into(),
        ];
        if !extra.contains(&"--not-after") {
            args.extend(["--lifetime".into(), "30".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let c = pki(&argv, Some(&public))?;
        fs::write(self.dir.join(name), c)?;
        Ok(())
    }
}

fn make() -> Result<Pki> {
    let dir = lab_base_dir().join(format!("{PREFIX}pki-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let m = Maker { dir: dir.clone() };
    for k in [
        "ca.key",
        "inter.key",
        "other-ca.key",
        "gw.key",
        "client.key",
    ] {
        m.key(k, "rsa", "2048")?;
    }
    for k in ["ec-ca.key", "ec-gw.key", "ec-client.key"] {
        m.key(k, "ecdsa", "256")?;
    }
    for k in ["ec521-ca.key", "ec521-gw.key", "ec521-client.key"] {
        m.key(k, "ecdsa", "521")?;
    }
    m.self_signed("ca.pem", "ca.key", "C=CH, O=Postern Lab, CN=Lab Root CA")?;
    m.self_signed(
        "other-ca.pem",
        "other-ca.key",
        "C=CH, O=Elsewhere, CN=Other CA",
    )?;
    m.self_signed(
        "ec-ca.pem",
        "ec-ca.key",
        "C=CH, O=Postern Lab, CN=Lab EC CA",
    )?;
    m.self_signed(
        "ec521-ca.pem",
        "ec521-ca.key",
        "C=CH, O=Postern Lab, CN=Lab P-521 CA",
    )?;
    m.issue(
        "inter.pem",
        "inter.key",
        "ca",
        "C=CH, O=Postern Lab, CN=Lab Intermediate CA",
        &["--ca", "--pathlen", "0"],
    )?;
    let gw_dn = format!("C=CH, O=Postern Lab, CN={GW_NAME}");
    let gw_san = ["--san", GW_NAME, "--flag", "serverAuth"];
    m.issue("gw.pem", "gw.key", "ca", &gw_dn, &gw_san)?;
    m.issue("gw-inter.pem", "gw.key", "inter", &gw_dn, &gw_san)?;
    m.issue(
        "gw-other.pem",
        "gw.key",
        "other-ca",
        &format!("C=CH, O=Elsewhere, CN={GW_NAME}"),
        &gw_san,
    )?;
    m.issue(
        "gw-expired.pem",
        "gw.key",
        "ca",
        &gw_dn,
        &[
            "--san",
            GW_NAME,
            "--dateform",
            "%Y-%m-%d",
            "--not-before",
            "2020-01-01",
            "--not-after",
            "2021-01-01",
        ],
    )?;
    m.issue(
        "client.pem",
        "client.key",
        "ca",
        CLIENT_DN,
        &["--san", "client.postern.lab", "--flag", "clientAuth"],
    )?;
    m.issue(
        "ec-gw.pem",
        "ec-gw.key",
        "ec-ca",
        &format!("C=CH, O=Postern Lab, CN={EC_GW_NAME}"),
        &["--san", EC_GW_NAME, "--flag", "serverAuth"],
    )?;
    m.issue(
        "ec-client.pem",
        "ec-client.key",
        "ec-ca",
        EC_CLIENT_DN,
        &["--flag", "clientAuth"],
    )?;
    m.issue(
        "ec521-gw.pem",
        "ec521-gw.key",
        "ec521-ca",
        &format!("C=CH, O=Postern Lab, CN={EC521_GW_NAME}"),
        &["--san", EC521_GW_NAME, "--flag", "serverAuth"],
    )?;
    m.issue(
        "ec521-client.pem",
        "ec521-client.key",
        "ec521-ca",
        EC521_CLIENT_DN,
        &["--flag", "clientAuth"],
    )?;
    // A gateway certificate the root revokes, and the root's CRL.
    m.issue(
        "gw-revoked.pem",
        "gw.key",
        "ca",
        &gw_dn,
        &["--san", GW_NAME, "--serial", "7e57"],
    )?;
    let crl = pki(
        &[
            "--signcrl",
            "--cacert",
            &dir.join("ca.pem").to_string_lossy(),
            "--cakey",
            &dir.join("ca.key").to_string_lossy(),
            "--reason",
            "key-compromise",
            "--cert",
            &dir.join("gw-revoked.pem").to_string_lossy(),
            "--lifetime",
            "30",
            "--outform",
            "pem",
        ],
        None,
    )?;
    fs::write(dir.join("ca.crl"), crl)?;
    // The client's key, certificate and the root as one PKCS#12 bundle (OpenSSL 3's
    // default encryption: PBES2 AES-256-CBC, MAC SHA-256).
    let out = Command::new("openssl")
        .args(["pkcs12", "-export", "-inkey"])
        .arg(dir.join("client.key"))
        .arg("-in")
        .arg(dir.join("client.pem"))
        .arg("-certfile")
        .arg(dir.join("ca.pem"))
        .args(["-passout", &format!("pass:{P12_PASSPHRASE}"), "-out"])
        .arg(dir.join("client.p12"))
        .output()
        .map_err(|e| LabError(format!("cannot run openssl ({e}): install openssl")))?;
    if !out.status.success() {
        return Err(LabError(format!(
            "openssl pkcs12 -export: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // Sanity: every certificate is there and PEM.
    for c in [
        "ca.pem",
        "gw.pem",
        "gw-inter.pem",
        "client.pem",
        "ec-gw.pem",
    ] {
        let pem = m.read(c)?;
        if !pem.starts_with(b"-----BEGIN CERTIFICATE-----") {
            return Err(LabError(format!("pki wrote no PEM certificate to {c}")));
        }
    }
    Ok(Pki { dir })
}
