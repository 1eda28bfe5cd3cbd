//! Secrets in the user's keyring: the freedesktop Secret Service
//! (`org.freedesktop.secrets` on the session bus: GNOME Keyring, KWallet, KeePassXC),
//! spoken directly with the workspace's zbus. Items carry the attributes `application = postern`,
//! `profile = NAME`, `kind = psk | xauth-password`; the secret travels in a "plain"
//! session, which is what local Secret Service clients use over the session bus.
//!
//! Why not the `keyring` crate (checked 2026-12-06 with `cargo tree` in a scratch
//! crate beside zbus 5 with only its `tokio` feature): keyring 4.2's Secret Service
//! store (`zbus-secret-service-keyring-store` 1.0.1) depends on zbus with its default
//! features, which turns on zbus's `async-io` (async-io, async-executor,
//! async-process, blocking) and, for keyring's synchronous API, a second runtime that
//! zbus builds for `block_on`; a dependent crate cannot turn that off. Its other
//! store (`dbus-secret-service-keyring-store`) builds libdbus and OpenSSL from vendored
//! C sources. keyring 3.6 brings zbus 4, a second major. `secret-service` 5.2 alone
//! (`default-features = false, features = ["rt-tokio-crypto-rust"]`) would fit; this
//! module does the same few calls itself.

use std::collections::HashMap;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zeroize::Zeroizing;

use crate::{Fail, FailureKind};

const DEST: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const DEFAULT_COLLECTION: &str = "/org/freedesktop/secrets/aliases/default";

/// (session, parameters, value, content type)
type Secret = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

fn fail(what: &str, e: impl std::fmt::Display) -> Fail {
    Fail::new(FailureKind::Keyring, format!("keyring: {what}: {e}"))
}

struct Keyring {
    conn: zbus::Connection,
    session: OwnedObjectPath,
}

impl Keyring {
    async fn open() -> Result<Keyring, Fail> {
        let conn = zbus::Connection::session()
            .await
            .map_err(|e| fail("no session bus", e))?;
        let reply = conn
            .call_method(
                Some(DEST),
                SERVICE_PATH,
                Some("org.freedesktop.Secret.Service"),
                "OpenSession",
                &("plain", Value::from("")),
            )
            .await
            .map_err(|e| fail("no Secret Service (is a keyring running?)", e))?;
        let (_out, session): (OwnedValue, OwnedObjectPath) = reply
            .body()
            .deserialize()
            .map_err(|e| fail("OpenSession", e))?;
        Ok(Keyring { conn, session })
    }

    fn attributes<'a>(profile: &'a str, kind: &'a str) -> HashMap<&'a str, &'a str> {
        HashMap::from([
            ("application", "postern"),
            ("profile", profile),
            ("kind", kind),
        ])
    }

    async fn store(&self, profile: &str, kind: &str, secret: &str) -> Result<(), Fail> {
        let label = format!("Postern {kind} for {profile}");
        let mut props: HashMap<&str, Value<'_>> = HashMap::new();
        props.insert("org.freedesktop.Secret.Item.Label", Value::from(label));
        props.insert(
            "org.freedesktop.Secret.Item.Attributes",
            Value::from(Self::attributes(profile, kind)),
        );
        let value = Zeroizing::new(secret.as_bytes().to_vec());
        let s: Secret = (
            self.session.clone(),
            Vec::new(),
            value.to_vec(),
            "text/plain".to_string(),
        );
        let collection = ObjectPath::try_from(DEFAULT_COLLECTION).map_err(|e| fail("path", e))?;
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                &collection,
                Some("org.freedesktop.Secret.Collection"),
                "CreateItem",
                &(props, s, true),
            )
            .await
            .map_err(|e| fail("CreateItem", e))?;
        let (_item, prompt): (OwnedObjectPath, OwnedObjectPath) = reply
            .body()
            .deserialize()
            .map_err(|e| fail("CreateItem", e))?;
        if prompt.as_str() != "/" {
            return Err(Fail::new(
                FailureKind::Keyring,
                "keyring: the keyring is locked; unlock it (log in to the desktop) and try again",
            ));
        }
        Ok(())
    }

    /// The items with these attributes: (unlocked, locked).
    async fn search(
        &self,
        attrs: &HashMap<&str, &str>,
    ) -> Result<(Vec<OwnedObjectPath>, Vec<OwnedObjectPath>), Fail> {
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                SERVICE_PATH,
                Some("org.freedesktop.Secret.Service"),
                "SearchItems",
                &(attrs,),
            )
            .await
            .map_err(|e| fail("SearchItems", e))?;
        reply
            .body()
            .deserialize()
            .map_err(|e| fail("SearchItems", e))
    }

    async fn lookup(&self, profile: &str, kind: &str) -> Result<Found, Fail> {
        let (unlocked, locked) = self.search(&Self::attributes(profile, kind)).await?;
        let item = match classify(unlocked, &locked) {
            Ok(item) => item,
            Err(found) => return Ok(found),
        };
        let reply = self
            .conn
            .call_method(
                Some(DEST),
                SERVICE_PATH,
                Some("org.freedesktop.Secret.Service"),
                "GetSecrets",
                &(vec![item.clone()], self.session.clone()),
            )
            .await
            .map_err(|e| fail("GetSecrets", e))?;
        let secrets: HashMap<OwnedObjectPath, Secret> = reply
            .body()
            .deserialize()
            .map_err(|e| fail("GetSecrets", e))?;
        let Some((_, _, value, _)) = secrets.into_values().next() else {
            // Listed as unlocked but no secret given: locked in between.
            return Ok(Found::Locked);
        };
        let value = Zeroizing::new(value);
        let text = std::str::from_utf8(&value)
            .map_err(|_| fail("secret", "not UTF-8"))?
            .to_string();
        Ok(Found::Secret(Zeroizing::new(text)))
    }
}

impl Keyring {
    /// Deletes the items of `profile` (of `kind` only, when given); how many went.
    async fn delete(&self, profile: &str, kind: Option<&str>) -> Result<usize, Fail> {
        let mut attrs = HashMap::from([("application", "postern"), ("profile", profile)]);
        if let Some(k) = kind {
            attrs.insert("kind", k);
        }
        let (unlocked, locked) = self.search(&attrs).await?;
        if !locked.is_empty() {
            return Err(Fail::new(
                FailureKind::Keyring,
                "keyring: the keyring is locked; unlock it (log in to the desktop) and try again",
            ));
        }
        let mut n = 0;
        for item in unlocked {
            let reply = self
                .conn
                .call_method(
                    Some(DEST),
                    &item,
                    Some("org.freedesktop.Secret.Item"),
                    "Delete",
                    &(),
                )
                .await
                .map_err(|e| fail("Delete", e))?;
            let prompt: OwnedObjectPath =
                reply.body().deserialize().map_err(|e| fail("Delete", e))?;
            if prompt.as_str() != "/" {
                return Err(Fail::new(
                    FailureKind::Keyring,
                    "keyring: the keyring wants a confirmation; delete the item in your keyring manager",
                ));
            }
            n += 1;
        }
        Ok(n)
    }
}

/// Removes `profile`'s secrets (only `kind`, when given) from the keyring; how many.
pub async fn delete(profile: &str, kind: Option<&str>) -> Result<usize, Fail> {
    Keyring::open().await?.delete(profile, kind).await
}

/// Stores `secret` as `kind` for `profile`.
pub async fn store(profile: &str, kind: &str, secret: &str) -> Result<(), Fail> {
    Keyring::open().await?.store(profile, kind, secret).await
}

/// The stored `kind` for `profile`, if the keyring runs, is unlocked and has it.
pub async fn lookup(profile: &str, kind: &str) -> Option<Zeroizing<String>> {
    match find(profile, kind).await {
        Found::Secret(s) => Some(s),
        _ => None,
    }
}

/// What the keyring says about a secret.
pub enum Found {
    Secret(Zeroizing<String>),
    /// No such item.
    Absent,
    /// The item is there but the keyring is locked (the desktop did not unlock it at
    /// login, or the user locked it).
    Locked,
    /// No keyring answered (no session bus, no Secret Service): why.
    Unavailable(Fail),
}

impl Found {
    /// One sentence for the user when the secret could not be read (`None`: found, or
    /// simply not stored).
    pub fn sentence(&self, what: &str) -> Option<String> {
        match self {
            Found::Secret(_) | Found::Absent => None,
            Found::Locked => Some(format!(
                "Your keyring is locked, so Postern asks for {what} instead."
            )),
            Found::Unavailable(f) => Some(format!(
                "Postern cannot reach your keyring ({}), so it asks for {what} instead.",
                f.message.trim_start_matches("keyring: ")
            )),
        }
    }
}

/// The item to read, or what to say without reading: items only in the locked list
/// mean a locked keyring.
fn classify(
    unlocked: Vec<OwnedObjectPath>,
    locked: &[OwnedObjectPath],
) -> Result<OwnedObjectPath, Found> {
    match unlocked.into_iter().next() {
        Some(item) => Ok(item),
        None if !locked.is_empty() => Err(Found::Locked),
        None => Err(Found::Absent),
    }
}

/// The stored `kind` for `profile`, or why it cannot be had.
pub async fn find(profile: &str, kind: &str) -> Found {
    let k = match Keyring::open().await {
        Ok(k) => k,
        Err(f) => return Found::Unavailable(f),
    };
    match k.lookup(profile, kind).await {
        Ok(found) => found,
        // GetSecrets on an item locked in between says IsLocked.
        Err(f) if f.message.contains("IsLocked") || f.message.contains("locked") => Found::Locked,
        Err(f) => Found::Unavailable(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> OwnedObjectPath {
        OwnedObjectPath::try_from(s).unwrap()
    }

    #[test]
    fn items_only_in_the_locked_list_mean_a_locked_keyring() {
        let item = path("/org/freedesktop/secrets/collection/login/7");
        assert!(matches!(
            classify(Vec::new(), std::slice::from_ref(&item)),
            Err(Found::Locked)
        ));
        assert!(matches!(classify(Vec::new(), &[]), Err(Found::Absent)));
        assert_eq!(
            classify(vec![item.clone()], std::slice::from_ref(&item)).ok(),
            Some(item)
        );
        let s = Found::Locked.sentence("the pre-shared key").unwrap();
        assert_eq!(
            s,
            "Your keyring is locked, so Postern asks for the pre-shared key instead."
        );
        assert!(Found::Absent.sentence("x").is_none());
    }
}
