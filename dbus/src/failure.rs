//! Why a tunnel failed, as one kind every front end understands.
//!
//! The helper classifies each failure once (from the engine's typed errors, the
//! kernel's, the profile parser's, polkit's answer) into a [`FailureKind`] and keeps
//! its own sentence beside it. The kind crosses the bus in the connection's
//! `LastError` property (see [`LastError`]) by its stable wire name
//! ([`FailureKind::as_str`]); front ends explain it in their own words and derive
//! their exit codes from it ([`FailureKind::exit_code`]). No front end reads the
//! helper's English to find out what happened.

use std::fmt;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedValue, Type, Value};

/// The kinds of failure, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The gateway refused our credentials: a pre-shared key mismatch, XAuth refused,
    /// an identity the gateway does not accept.
    AuthenticationFailed,
    /// A certificate (ours or the gateway's) was refused.
    CertificateRefused,
    /// The gateway accepted none of our proposals (phase 1 or phase 2).
    NoProposalChosen,
    /// No answer from the gateway: retransmissions given up, dead peer, unreachable,
    /// its name does not resolve.
    NotResponding,
    /// The gateway closed the tunnel (DELETE) or let phase 1 expire.
    DroppedByPeer,
    /// The gateway sent something we could not use (malformed, an unexpected notify).
    PeerError,
    /// The profile does not parse or validate, or a file it names cannot be used.
    BadProfile,
    /// A secret the tunnel needs was not given (and could not be asked for).
    CredentialsMissing,
    /// polkit (or the connection's owner check) refused the request.
    AccessDenied,
    /// Installing the tunnel on this machine failed (XFRM, TUN, addresses, routes, DNS).
    Datapath,
    /// The helper is not on the system bus (front ends only).
    HelperUnreachable,
    /// The user's keyring is locked, missing or refused (front ends only).
    Keyring,
    /// Anything else (a bug, an OS error without a better home).
    Internal,
    /// The helper was killed or crashed while the tunnel was up; the helper started
    /// after it removed what the tunnel had installed and says so with this kind.
    HelperRestarted,
}

impl FailureKind {
    pub const ALL: [FailureKind; 14] = [
        FailureKind::AuthenticationFailed,
        FailureKind::CertificateRefused,
        FailureKind::NoProposalChosen,
        FailureKind::NotResponding,
        FailureKind::DroppedByPeer,
        FailureKind::PeerError,
        FailureKind::BadProfile,
        FailureKind::CredentialsMissing,
        FailureKind::AccessDenied,
        FailureKind::Datapath,
        FailureKind::HelperUnreachable,
        FailureKind::Keyring,
        FailureKind::Internal,
        FailureKind::HelperRestarted,
    ];

    /// The stable wire name (the `kind` of [`LastError`]).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::AuthenticationFailed => "authentication-failed",
            FailureKind::CertificateRefused => "certificate-refused",
            FailureKind::NoProposalChosen => "no-proposal-chosen",
            FailureKind::NotResponding => "not-responding",
            FailureKind::DroppedByPeer => "dropped-by-peer",
            FailureKind::PeerError => "peer-error",
            FailureKind::BadProfile => "bad-profile",
            FailureKind::CredentialsMissing => "credentials-missing",
            FailureKind::AccessDenied => "access-denied",
            FailureKind::Datapath => "datapath",
            FailureKind::HelperUnreachable => "helper-unreachable",
            FailureKind::Keyring => "keyring",
            FailureKind::Internal => "internal",
            FailureKind::HelperRestarted => "helper-restarted",
        }
    }

    /// The kind of a wire name; an unknown name (a newer helper) is `Internal`.
    pub fn from_wire(s: &str) -> FailureKind {
        FailureKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(FailureKind::Internal)
    }

    /// The exit code of `postern` and `postern-helper up` for this kind, the one place
    /// where it is decided: 1 failure, 2 usage or bad profile, 3 authentication failed or
    /// refused by polkit, 4 no proposal chosen, 5 gateway not responding, 6 helper not
    /// reachable.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::BadProfile => exit::USAGE,
            FailureKind::AuthenticationFailed
            | FailureKind::CertificateRefused
            | FailureKind::CredentialsMissing
            | FailureKind::AccessDenied => exit::AUTH,
            FailureKind::NoProposalChosen => exit::NO_PROPOSAL,
            FailureKind::NotResponding => exit::NOT_RESPONDING,
            FailureKind::HelperUnreachable => exit::NO_HELPER,
            FailureKind::DroppedByPeer
            | FailureKind::PeerError
            | FailureKind::Datapath
            | FailureKind::Keyring
            | FailureKind::Internal
            | FailureKind::HelperRestarted => exit::FAILURE,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exit codes of the command-line front ends (see [`FailureKind::exit_code`]).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const NO_PROPOSAL: u8 = 4;
    pub const NOT_RESPONDING: u8 = 5;
    pub const NO_HELPER: u8 = 6;
}

/// A failure: its kind and the helper's (or front end's) own sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The `LastError` property of a connection: the kind's wire name and the helper's
/// sentence; both empty while nothing failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue, Default)]
pub struct LastError {
    pub kind: String,
    pub message: String,
}

impl LastError {
    /// The failure it carries, if any.
    pub fn failure(&self) -> Option<Failure> {
        if self.kind.is_empty() && self.message.is_empty() {
            None
        } else {
            Some(Failure::new(
                FailureKind::from_wire(&self.kind),
                self.message.clone(),
            ))
        }
    }
}

impl From<&Failure> for LastError {
    fn from(f: &Failure) -> Self {
        LastError {
            kind: f.kind.as_str().to_string(),
            message: f.message.clone(),
        }
    }
}

impl From<&crate::interface::Error> for FailureKind {
    /// The kind of an error a helper method returned.
    fn from(e: &crate::interface::Error) -> Self {
        use crate::interface::Error as E;
        match e {
            E::AccessDenied(_) => FailureKind::AccessDenied,
            E::InvalidArgument(_) | E::InvalidProfile(_) => FailureKind::BadProfile,
            E::ZBus(zbus::Error::MethodError(name, _, _))
                if [
                    "org.freedesktop.DBus.Error.ServiceUnknown",
                    "org.freedesktop.DBus.Error.NameHasNoOwner",
                ]
                .contains(&name.as_str()) =>
            {
                FailureKind::HelperUnreachable
            }
            E::ZBus(zbus::Error::InputOutput(_)) => FailureKind::HelperUnreachable,
            _ => FailureKind::Internal,
        }
    }
}

impl From<crate::interface::Error> for Failure {
    /// A helper method's error: classified by its D-Bus error name, never its text.
    fn from(e: crate::interface::Error) -> Self {
        use crate::interface::Error as E;
        let kind = FailureKind::from(&e);
        let message = match e {
            E::AccessDenied(m) => format!("refused: {m}"),
            E::InvalidArgument(m) | E::InvalidProfile(m) => m,
            E::ZBus(zbus::Error::MethodError(_, msg, _))
                if kind == FailureKind::HelperUnreachable =>
            {
                format!(
                    "postern-helper is not on the system bus ({})",
                    msg.unwrap_or_default()
                )
            }
            other => other.to_string(),
        };
        Failure::new(kind, message)
    }
}

impl From<zbus::Error> for Failure {
    /// A bus failure outside a helper method (a property read, a proxy).
    fn from(e: zbus::Error) -> Self {
        Failure::from(crate::interface::Error::ZBus(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in FailureKind::ALL {
            assert!(seen.insert(k.as_str()), "{k} twice");
            assert_eq!(FailureKind::from_wire(k.as_str()), k);
        }
        assert_eq!(
            FailureKind::from_wire("from-a-newer-helper"),
            FailureKind::Internal
        );
    }

    #[test]
    fn exit_codes_come_from_the_kind() {
        assert_eq!(FailureKind::AuthenticationFailed.exit_code(), 3);
        assert_eq!(FailureKind::AccessDenied.exit_code(), 3);
        assert_eq!(FailureKind::NoProposalChosen.exit_code(), 4);
        assert_eq!(FailureKind::NotResponding.exit_code(), 5);
        assert_eq!(FailureKind::BadProfile.exit_code(), 2);
        assert_eq!(FailureKind::HelperUnreachable.exit_code(), 6);
        assert_eq!(FailureKind::Datapath.exit_code(), 1);
    }

    #[test]
    fn last_error_carries_kind_and_sentence() {
        assert_eq!(LastError::default().failure(), None);
        let f = Failure::new(FailureKind::NoProposalChosen, "no proposal chosen: x");
        let le = LastError::from(&f);
        assert_eq!(le.kind, "no-proposal-chosen");
        assert_eq!(le.failure(), Some(f));
    }
}
