//! Validation of what crosses the bus into the helper: the `Connect` profile and
//! secrets, the `SubmitCredentials` answers. Shared by the helper (which must) and
//! front ends (which may check first). Every refusal is one sentence naming the
//! argument; secrets never appear in it.

use std::collections::HashMap;

use postern_algs::xauth::{Credentials, XAuthField};
use zeroize::{Zeroize, Zeroizing};

use crate::interface::{answer_key, limits, secret_key};
use crate::profile::{AuthMethod, Blob, Profile, Secret, SecretPolicy};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidProfile(String),
}

impl From<RequestError> for crate::interface::Error {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::InvalidArgument(m) => crate::interface::Error::InvalidArgument(m),
            RequestError::InvalidProfile(m) => crate::interface::Error::InvalidProfile(m),
        }
    }
}

fn invalid(m: impl Into<String>) -> RequestError {
    RequestError::InvalidArgument(m.into())
}

/// Wipes every value of a map received from the bus.
pub fn wipe(map: &mut HashMap<String, String>) {
    for v in map.values_mut() {
        v.zeroize();
    }
}

/// Parses `Connect(profile, secrets)`: the profile without secrets (contract 1, no
/// paths), the secrets checked and put into it. Wipes `secrets` in every case.
pub fn connect(
    profile: &str,
    mut secrets: HashMap<String, String>,
) -> Result<Profile, RequestError> {
    let r = connect_inner(profile, &secrets);
    wipe(&mut secrets);
    r
}

fn connect_inner(text: &str, secrets: &HashMap<String, String>) -> Result<Profile, RequestError> {
    if text.len() > limits::PROFILE_BYTES {
        return Err(invalid(format!(
            "profile: {} bytes; at most {}",
            text.len(),
            limits::PROFILE_BYTES
        )));
    }
    if text.contains('\0') {
        return Err(invalid("profile: contains a NUL character"));
    }
    let mut profile = Profile::from_toml_str(text, "profile", SecretPolicy::Forbid)
        .map_err(|e| RequestError::InvalidProfile(e.to_string()))?;
    for (key, v) in [
        ("auth.ca", &profile.auth.ca),
        ("auth.cert", &profile.auth.cert),
        ("auth.key", &profile.auth.key),
    ] {
        if v.is_some() {
            return Err(RequestError::InvalidProfile(format!(
                "profile: {key}: the helper opens no path a caller names; send the PEM contents in the secrets map instead"
            )));
        }
    }
    if secrets.len() > limits::MAP_ENTRIES {
        return Err(invalid(format!(
            "secrets: {} entries; at most {}",
            secrets.len(),
            limits::MAP_ENTRIES
        )));
    }
    for (k, v) in secrets {
        check_secret(k, v)?;
    }
    let get = |k: &str| secrets.get(k).map(|v| Secret::new(v.clone()));
    match profile.auth.method {
        AuthMethod::Psk => {
            profile.auth.psk = Some(get(secret_key::PSK).ok_or_else(|| {
                invalid("secrets: psk: missing (the profile authenticates with a pre-shared key)")
            })?);
        }
        _ => {
            if secrets.contains_key(secret_key::PSK) {
                return Err(invalid(
                    "secrets: psk: given, but the profile does not use a pre-shared key",
                ));
            }
        }
    }
    let blob = |k: &str| secrets.get(k).map(|v| Blob::new(v.as_bytes().to_vec()));
    let c = &mut profile.auth.contents;
    c.ca = blob(secret_key::CA);
    c.cert = blob(secret_key::CERT);
    c.key = blob(secret_key::KEY);
    c.crl = blob(secret_key::CRL);
    if let Some(b64) = secrets.get(secret_key::PKCS12) {
        let compact: Zeroizing<String> =
            Zeroizing::new(b64.chars().filter(|c| !c.is_ascii_whitespace()).collect());
        let der = <base64ct::Base64 as base64ct::Encoding>::decode_vec(&compact)
            .map_err(|_| invalid("secrets: pkcs12: not valid base64"))?;
        c.pkcs12 = Some(Blob::new(der));
    }
    profile.auth.key_passphrase = get(secret_key::KEY_PASSPHRASE);
    if !c.is_empty() && profile.auth.method == AuthMethod::Psk {
        return Err(invalid(
            "secrets: certificate material given, but the profile authenticates with a pre-shared key",
        ));
    }
    if let Some(pw) = get(secret_key::XAUTH_PASSWORD) {
        match profile.xauth.as_mut() {
            Some(x) => x.password = Some(pw),
            None => {
                return Err(invalid(
                    "secrets: xauth-password: given, but the profile has no [xauth] section",
                ));
            }
        }
    }
    Ok(profile)
}

fn check_secret(key: &str, v: &str) -> Result<(), RequestError> {
    let key_shown = if key.len() <= 32 && !key.chars().any(char::is_control) {
        key
    } else {
        "(unprintable key)"
    };
    if !secret_key::ALL.contains(&key) {
        return Err(invalid(format!(
            "secrets: unknown key '{key_shown}' (known: {})",
            secret_key::ALL.join(", ")
        )));
    }
    if v.is_empty() {
        return Err(invalid(format!("secrets: {key}: empty")));
    }
    let pem = matches!(
        key,
        secret_key::CA | secret_key::CERT | secret_key::KEY | secret_key::CRL
    );
    let max = if pem || key == secret_key::PKCS12 {
        limits::PEM_BYTES
    } else {
        limits::SECRET_BYTES
    };
    if v.len() > max {
        return Err(invalid(format!(
            "secrets: {key}: too long; at most {max} bytes"
        )));
    }
    if pem {
        if !v.trim_start().starts_with("-----BEGIN ") {
            let hint = if looks_like_path(v) {
                "a path, not contents; the helper opens no path a caller names"
            } else {
                "not PEM"
            };
            return Err(invalid(format!(
                "secrets: {key}: expected PEM contents (-----BEGIN ...), got {hint}"
            )));
        }
        if v.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(format!(
                "secrets: {key}: control characters in PEM"
            )));
        }
    } else if key == secret_key::PKCS12 {
        if looks_like_path(v) {
            return Err(invalid(format!(
                "secrets: {key}: a path, not contents; the helper opens no path a caller names"
            )));
        }
        if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\n' | '\r'))
        {
            return Err(invalid(format!(
                "secrets: {key}: expected the bundle's bytes in base64"
            )));
        }
    } else if v.chars().any(char::is_control) {
        return Err(invalid(format!("secrets: {key}: control characters")));
    }
    Ok(())
}

fn looks_like_path(v: &str) -> bool {
    let v = v.trim();
    v.starts_with('/') || v.starts_with("~/") || v.starts_with("./") || v.starts_with("file:")
}

/// Parses `SubmitCredentials(answers)` into the engine's credentials. Wipes `answers`.
pub fn answers(mut answers: HashMap<String, String>) -> Result<Credentials, RequestError> {
    let r = answers_inner(&answers);
    wipe(&mut answers);
    r
}

fn answers_inner(answers: &HashMap<String, String>) -> Result<Credentials, RequestError> {
    if answers.is_empty() || answers.len() > limits::MAP_ENTRIES {
        return Err(invalid(format!(
            "answers: {} entries; 1 to {}",
            answers.len(),
            limits::MAP_ENTRIES
        )));
    }
    let mut values = Vec::new();
    for (k, v) in answers {
        let field = field_of(k).ok_or_else(|| {
            invalid(format!(
                "answers: unknown key (known: {})",
                answer_key::ALL.join(", ")
            ))
        })?;
        if v.len() > limits::SECRET_BYTES {
            return Err(invalid(format!(
                "answers: {k}: too long; at most {} bytes",
                limits::SECRET_BYTES
            )));
        }
        if v.chars().any(char::is_control) {
            return Err(invalid(format!("answers: {k}: control characters")));
        }
        values.push((field, Zeroizing::new(v.clone())));
    }
    Ok(Credentials { values })
}

/// The `answers` key of an XAuth field.
pub fn answer_key_of(f: XAuthField) -> &'static str {
    match f {
        XAuthField::UserName => answer_key::USERNAME,
        XAuthField::Password => answer_key::PASSWORD,
        XAuthField::Passcode => answer_key::PASSCODE,
        XAuthField::NextPin => answer_key::NEXT_PIN,
        XAuthField::Answer => answer_key::ANSWER,
    }
}

fn field_of(k: &str) -> Option<XAuthField> {
    [
        XAuthField::UserName,
        XAuthField::Password,
        XAuthField::Passcode,
        XAuthField::NextPin,
        XAuthField::Answer,
    ]
    .into_iter()
    .find(|f| answer_key_of(*f) == k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "name = \"Office\"\ngateway = \"192.0.2.1\"\n";

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_profile_and_its_psk_make_a_connect() {
        let p = connect(PROFILE, map(&[("psk", "s3cret")])).expect("valid");
        assert_eq!(p.auth.psk.as_ref().map(Secret::expose), Some("s3cret"));
    }

    #[test]
    fn refusals_name_the_argument_and_never_the_secret() {
        let cases: Vec<(String, HashMap<String, String>, &str)> = vec![
            (PROFILE.into(), map(&[]), "psk: missing"),
            (
                PROFILE.into(),
                map(&[("psk", "a\nb-s3cret")]),
                "control characters",
            ),
            (
                PROFILE.into(),
                map(&[("psk", &"x".repeat(5000))]),
                "too long",
            ),
            (
                PROFILE.into(),
                map(&[("psk", "k"), ("bogus", "s3cret")]),
                "unknown key",
            ),
            (
                PROFILE.into(),
                map(&[("psk", "k"), ("cert", "/etc/ssl/private/me.pem")]),
                "a path",
            ),
            ("x".repeat(70_000), map(&[("psk", "k")]), "at most"),
            (
                "name = \"Off\\nice\"\ngateway = \"192.0.2.1\"\n".into(),
                map(&[("psk", "k")]),
                "control characters",
            ),
            (
                format!("{PROFILE}[auth]\ncert = \"/home/a/cert.pem\"\n"),
                map(&[("psk", "k")]),
                "no path",
            ),
            (
                format!("{PROFILE}[auth]\npsk = \"s3cret\"\n"),
                map(&[]),
                "keyring",
            ),
        ];
        for (profile, secrets, want) in cases {
            let e = connect(&profile, secrets).expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
            assert!(!e.contains("s3cret"), "{e:?} shows the secret");
        }
    }

    const CERT_PROFILE: &str =
        "name = \"Office\"\ngateway = \"192.0.2.1\"\n[auth]\nmethod = \"rsa-sig\"\n";
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn certificate_material_arrives_as_contents() {
        let p = connect(
            CERT_PROFILE,
            map(&[
                ("ca", PEM),
                ("cert", PEM),
                ("key", PEM),
                ("crl", PEM),
                ("key-passphrase", "pw"),
            ]),
        )
        .expect("valid");
        let c = &p.auth.contents;
        for (name, b) in [
            ("ca", &c.ca),
            ("cert", &c.cert),
            ("key", &c.key),
            ("crl", &c.crl),
        ] {
            assert_eq!(b.as_ref().map(Blob::bytes), Some(PEM.as_bytes()), "{name}");
        }
        assert_eq!(
            p.auth.key_passphrase.as_ref().map(Secret::expose),
            Some("pw")
        );
        // Never in the profile that is shown or exported.
        assert!(p.without_secrets().auth.contents.is_empty());
        assert!(!format!("{p:?}").contains("AAAA"));
    }

    #[test]
    fn a_pkcs12_bundle_arrives_base64() {
        let p = connect(CERT_PROFILE, map(&[("pkcs12", "MIIB\nAAEC")])).expect("valid");
        assert_eq!(
            p.auth.contents.pkcs12.as_ref().map(Blob::bytes),
            Some(&[0x30, 0x82, 0x01, 0x00, 0x01, 0x02][..])
        );
        for (v, want) in [
            ("/home/a/me.p12", "a path"),
            ("MII*", "base64"),
            ("MIIBA", "not valid base64"),
        ] {
            let e = connect(CERT_PROFILE, map(&[("pkcs12", v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
        let e = connect(PROFILE, map(&[("psk", "k"), ("ca", PEM)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pre-shared key"), "{e}");
    }

    #[test]
    fn answers_map_to_xauth_fields() {
        let c = answers(map(&[("username", "alice"), ("password", "pw")])).expect("valid");
        assert_eq!(c.values.len(), 2);
        assert!(answers(map(&[])).is_err());
        assert!(answers(map(&[("pin", "1")])).is_err());
        assert!(answers(map(&[("password", "a\u{7}")])).is_err());
    }
}
