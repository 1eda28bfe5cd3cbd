//! Who is calling, and may they: the caller's uid from the bus daemon, the decision
//! from polkit with the caller (from the message header) as subject. Any error is a
//! refusal.

use std::collections::HashMap;

use postern_dbus::interface::Error;
use zbus::Connection;
use zbus::message::Header;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// Where identities and decisions come from.
pub enum Authority {
    /// The bus daemon (`GetConnectionUnixUser`) and polkit (`CheckAuthorization`).
    Polkit,
    /// Tests over a peer-to-peer connection (no bus daemon, no polkit): every caller
    /// is `uid`, and `allow` decides each action.
    #[cfg(test)]
    Fixed {
        uid: std::sync::Arc<std::sync::atomic::AtomicU32>,
        allow: fn(&str) -> bool,
    },
}

impl Authority {
    /// The caller's uid, from the bus daemon (not from anything the caller says).
    pub async fn caller_uid(&self, conn: &Connection, hdr: &Header<'_>) -> Result<u32, Error> {
        match self {
            Authority::Polkit => {
                let sender = hdr
                    .sender()
                    .ok_or_else(|| Error::AccessDenied("the call has no sender".into()))?;
                let dbus = zbus::fdo::DBusProxy::new(conn).await.map_err(|e| {
                    Error::AccessDenied(format!("cannot ask the bus who you are: {e}"))
                })?;
                dbus.get_connection_unix_user(sender.clone().into())
                    .await
                    .map_err(|e| {
                        Error::AccessDenied(format!("cannot ask the bus who you are: {e}"))
                    })
            }
            #[cfg(test)]
            Authority::Fixed { uid, .. } => Ok(uid.load(std::sync::atomic::Ordering::Relaxed)),
        }
    }

    /// Ok when polkit authorizes the caller for `action`; an `AccessDenied` saying why
    /// not otherwise (also when polkit cannot be asked).
    pub async fn require(
        &self,
        conn: &Connection,
        hdr: &Header<'_>,
        action: &str,
    ) -> Result<(), Error> {
        match self {
            Authority::Polkit => {
                let denied =
                    |why: String| Error::AccessDenied(format!("not authorized ({action}): {why}"));
                let subject =
                    Subject::new_for_message_header(hdr).map_err(|e| denied(e.to_string()))?;
                let polkit = AuthorityProxy::new(conn)
                    .await
                    .map_err(|e| denied(format!("polkit unavailable: {e}")))?;
                let r = polkit
                    .check_authorization(
                        &subject,
                        action,
                        &HashMap::new(),
                        CheckAuthorizationFlags::AllowUserInteraction.into(),
                        "",
                    )
                    .await
                    .map_err(|e| denied(format!("polkit: {e}")))?;
                if r.is_authorized {
                    Ok(())
                } else if r.is_challenge {
                    Err(denied(
                        "authentication is required and no agent answered".into(),
                    ))
                } else {
                    Err(denied("polkit said no".into()))
                }
            }
            #[cfg(test)]
            Authority::Fixed { allow, .. } => {
                if allow(action) {
                    Ok(())
                } else {
                    Err(Error::AccessDenied(format!(
                        "not authorized ({action}): polkit said no"
                    )))
                }
            }
        }
    }
}
