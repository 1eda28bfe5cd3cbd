//! Failures in plain words: for each [`FailureKind`], the sentence a user reads first
//! and what to check, in the same words in the CLI and the desktop app. The helper's
//! own sentence (the [`Fail`]'s message) goes beneath, for the details and the admin.

use crate::{Fail, FailureKind};

/// What a user is told about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// One sentence: what happened.
    pub headline: &'static str,
    /// What to check, one short sentence.
    pub check: &'static str,
}

/// The explanation of a kind of failure.
pub fn explain(kind: FailureKind) -> Explanation {
    let (headline, check) = match kind {
        FailureKind::AuthenticationFailed => (
            "The gateway refused the login.",
            "Check the pre-shared key, the XAuth user name and password, and the local ID your admin gave you.",
        ),
        FailureKind::CertificateRefused => (
            "A certificate was refused.",
            "Check that your certificate and key belong together, are still valid, and that the CA file is the one that signed the gateway's certificate.",
        ),
        FailureKind::NoProposalChosen => (
            "The gateway accepted none of the offered algorithms.",
            "Compare the phase 1 and phase 2 proposals (encryption, hash, DH group, PFS) with your admin's parameter sheet.",
        ),
        FailureKind::NotResponding => (
            "The gateway is not responding.",
            "Check the gateway address and your network; a firewall may block UDP ports 500 and 4500.",
        ),
        FailureKind::DroppedByPeer => (
            "The gateway closed the tunnel.",
            "The gateway ended the connection; connect again, or ask your admin why it was dropped.",
        ),
        FailureKind::PeerError => (
            "The gateway sent something Postern could not use.",
            "Look at the log below and send the diagnostics to your admin.",
        ),
        FailureKind::BadProfile => (
            "The profile is not valid.",
            "Open the profile and correct the field named below.",
        ),
        FailureKind::CredentialsMissing => (
            "A password or key was not given.",
            "Connect again and answer the prompt, or store the secret in your keyring.",
        ),
        FailureKind::AccessDenied => (
            "You are not allowed to do this.",
            "Your system's policy (polkit) refused the request; ask your administrator for the right.",
        ),
        FailureKind::Datapath => (
            "The tunnel could not be set up on this computer.",
            "Another VPN or IKE daemon may be running; the log below names what failed.",
        ),
        FailureKind::HelperUnreachable => (
            "The Postern service is not running.",
            "Install Postern's system service (postern-helper) or start it; it is activated on the system bus.",
        ),
        FailureKind::Keyring => (
            "Your keyring could not be used.",
            "Unlock your keyring (log in to the desktop); Postern will ask for the secret instead.",
        ),
        FailureKind::Internal => (
            "Something went wrong inside Postern.",
            "Look at the log below; please report it with the diagnostics.",
        ),
        FailureKind::HelperRestarted => (
            "The tunnel was lost: the Postern service was restarted.",
            "Connect again; if it keeps happening, send the diagnostics (the service's log) to your admin.",
        ),
    };
    Explanation { headline, check }
}

/// The lines a terminal prints for a failure: headline, the helper's sentence, what to
/// check.
pub fn lines(f: &Fail) -> [String; 3] {
    let e = explain(f.kind);
    [
        e.headline.to_string(),
        f.message.clone(),
        e.check.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_sentence() {
        let mut seen = std::collections::HashSet::new();
        for k in FailureKind::ALL {
            let e = explain(k);
            assert!(e.headline.ends_with('.') && e.check.ends_with('.'), "{k}");
            assert!(seen.insert(e.headline), "{k} shares a headline");
        }
    }

    #[test]
    fn a_wrong_psk_reads_as_a_login_problem_not_a_timeout() {
        let f = Fail::new(
            FailureKind::AuthenticationFailed,
            "authentication failed (pre-shared key mismatch?)",
        );
        let [headline, helper, check] = lines(&f);
        assert_eq!(headline, "The gateway refused the login.");
        assert!(helper.contains("pre-shared key"));
        assert!(check.contains("pre-shared key"));
        assert!(!headline.contains("not responding"));
    }
}
