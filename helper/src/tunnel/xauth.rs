//! XAuth answers kept for a tunnel's reconnects.
//!
//! When the tunnel is negotiated again (the network changed, the gateway was lost or
//! forgot us during a sleep), the gateway asks for XAuth again. What the user typed at
//! connect is given back from the helper's memory, so a reconnect needs nobody at the
//! keyboard, except for a one-time answer: a round that asks for a passcode (a token
//! code), a next PIN or the answer to a challenge is always asked again (RFC draft
//! "Extended Authentication within IKE", attributes XAUTH_PASSCODE, XAUTH_NEXT_PIN,
//! XAUTH_ANSWER). The answers live in [`Zeroizing`](zeroize::Zeroizing) strings inside
//! the tunnel's task, are never logged (`Credentials`' `Debug` names the fields only),
//! and are dropped with the task, that is at disconnect.

use postern_engine::ike::{Credentials, CredentialsRequest, XAuthField};

/// The last reusable answers the user gave for this tunnel.
#[derive(Default)]
pub(super) struct XAuthCache {
    answers: Option<Credentials>,
}

/// Whether answers to this round may be given again on a reconnect: a user name and
/// a password only. A passcode, a next PIN or a challenge's answer is good once.
pub(super) fn reusable(req: &CredentialsRequest) -> bool {
    !req.fields.is_empty()
        && req
            .fields
            .iter()
            .all(|f| matches!(f, XAuthField::UserName | XAuthField::Password))
}

impl XAuthCache {
    /// The user answered `req` with `creds`: kept when they may be given again; a
    /// one-time round keeps nothing (and what was kept stays).
    pub(super) fn remember(&mut self, req: &CredentialsRequest, creds: &Credentials) {
        if reusable(req) {
            self.answers = Some(creds.clone());
        }
    }

    /// The answers for `req` from memory, when it is a reusable round and every field
    /// it asks for was answered before; `None`: ask the user.
    pub(super) fn answer(&self, req: &CredentialsRequest) -> Option<Credentials> {
        if !reusable(req) {
            return None;
        }
        let kept = self.answers.as_ref()?;
        let all = req
            .fields
            .iter()
            .all(|f| kept.values.iter().any(|(g, _)| g == f));
        all.then(|| kept.clone())
    }

    /// Forgets the answers (the gateway refused them).
    pub(super) fn forget(&mut self) {
        self.answers = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn req(fields: &[XAuthField]) -> CredentialsRequest {
        CredentialsRequest {
            fields: fields.to_vec(),
            message: None,
        }
    }

    fn creds(pairs: &[(XAuthField, &str)]) -> Credentials {
        Credentials {
            values: pairs
                .iter()
                .map(|(f, v)| (*f, Zeroizing::new(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn a_password_is_answered_from_memory_on_reconnect() {
        let mut c = XAuthCache::default();
        let round = req(&[XAuthField::UserName, XAuthField::Password]);
        assert!(c.answer(&round).is_none(), "nothing given yet");
        c.remember(
            &round,
            &creds(&[
                (XAuthField::UserName, "alice"),
                (XAuthField::Password, "alice-pass-7"),
            ]),
        );
        let again = c.answer(&round).expect("answered from memory");
        let pw = again
            .values
            .iter()
            .find(|(f, _)| *f == XAuthField::Password)
            .map(|(_, v)| v.as_str());
        assert_eq!(pw, Some("alice-pass-7"));
        // A round asking for the password only is answered too.
        assert!(c.answer(&req(&[XAuthField::Password])).is_some());
        // Never in a log line.
        assert!(!format!("{again:?}").contains("alice-pass-7"));
        c.forget();
        assert!(c.answer(&round).is_none());
    }

    #[test]
    fn a_one_time_passcode_is_asked_again() {
        let mut c = XAuthCache::default();
        let otp = req(&[XAuthField::UserName, XAuthField::Passcode]);
        c.remember(
            &otp,
            &creds(&[
                (XAuthField::UserName, "alice"),
                (XAuthField::Passcode, "123456"),
            ]),
        );
        assert!(!reusable(&otp));
        assert!(c.answer(&otp).is_none(), "a passcode is good once");
        // Next PIN and a challenge's answer: the same.
        for f in [XAuthField::NextPin, XAuthField::Answer] {
            let r = req(&[XAuthField::UserName, f]);
            c.remember(&r, &creds(&[(XAuthField::UserName, "alice"), (f, "x")]));
            assert!(c.answer(&r).is_none(), "{f:?} asked again");
        }
        // A password given before stays usable for a password round.
        let pw = req(&[XAuthField::UserName, XAuthField::Password]);
        c.remember(
            &pw,
            &creds(&[(XAuthField::UserName, "alice"), (XAuthField::Password, "p")]),
        );
        c.remember(
            &otp,
            &creds(&[(XAuthField::UserName, "alice"), (XAuthField::Passcode, "1")]),
        );
        assert!(c.answer(&pw).is_some());
        // A round asking for a field never answered goes to the user.
        let other = req(&[XAuthField::UserName, XAuthField::Password]);
        let mut fresh = XAuthCache::default();
        fresh.remember(
            &req(&[XAuthField::UserName]),
            &creds(&[(XAuthField::UserName, "alice")]),
        );
        assert!(fresh.answer(&other).is_none());
    }
}
