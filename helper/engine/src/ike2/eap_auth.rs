//! EAP in IKE_AUTH (RFC 7296 §2.16): the user's login for IKEv2 (the profile's
//! `[xauth]` section).
//!
//! Initiator: the first IKE_AUTH request carries no AUTH; the gateway answers with
//! its IDr, CERT and AUTH (checked as usual: certificate or PSK) and the first EAP
//! request; each EAP round is one IKE_AUTH exchange ([`crate::eap::Peer`] answers);
//! after EAP Success both sides send an AUTH keyed by the MSK (MS-CHAPv2) or, for a
//! method without one (GTC), by SK_pi/SK_pr. A password round with no password in the
//! profile, and every GTC round, asks the user (`Event::CredentialsRequired`, answered
//! by [`Ike2::submit_credentials`]); a passcode is never kept for a next round.
//! With `Config::eap_tls` the method is EAP-TLS ([`crate::eap::tls`]): our certificate
//! goes inside TLS, not in IKE; no prompt.
//!
//! Responder (the `Pair` tests' gateway): a minimal EAP server, Identity then
//! MS-CHAPv2 (or GTC when the server config has a passcode), from
//! `Config::xauth_server`.

use zeroize::Zeroizing;

use super::auth::method;
use super::codec::{Payload, exchange, notify};
use super::{Ike2, Request, error_from_notify, keys, notify_payload};
use crate::codec::IdType;
use crate::crypto::ct_eq;
use crate::eap::{self, EapError, Peer, Step, mschapv2, tls};
use crate::ike::{Config, Credentials, CredentialsRequest, Error, Event, Identity, XAuthField};

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const SUCCESS: u8 = 3;
const FAILURE: u8 = 4;
const IDENTITY: u8 = 1;
const GTC: u8 = 6;
const MSCHAPV2: u8 = 26;

/// The sentence for a login the gateway refused, worded as the IKEv1 XAuth failure.
fn refused() -> Error {
    Error::AuthenticationFailed("user name or password refused".into())
}

/// Where the initiator's EAP stands.
enum Stage {
    /// Waiting for the gateway's first IKE_AUTH reply (IDr, AUTH, first EAP request).
    First,
    /// EAP rounds.
    Rounds,
    /// Our AUTH keyed by the EAP key is sent; the gateway's must use `key` too.
    Final { key: Zeroizing<Vec<u8>> },
}

/// The initiator's EAP conversation.
pub(super) struct EapClient {
    peer: Peer,
    stage: Stage,
    /// The gateway's identity, from its first reply.
    idr: Option<Identity>,
    username: String,
    has_password: bool,
    /// The gateway's request waiting for the user's answer.
    waiting: Option<Vec<u8>>,
    /// The user answered the round being processed (a GTC round always asks).
    answered: bool,
    /// EAP-TLS: no password rounds.
    tls: bool,
}

impl EapClient {
    pub(super) fn new(config: &Config) -> Self {
        let (username, password) = match &config.xauth {
            Some(x) => (x.username.clone(), x.password.clone()),
            None => (String::new(), None),
        };
        let has_password = password.is_some();
        let creds = eap::Credentials {
            identity: username.as_bytes().to_vec(),
            user: username.as_bytes().to_vec(),
            password: password.unwrap_or_else(|| Zeroizing::new(String::new())),
        };
        EapClient {
            peer: Peer::new(creds),
            stage: Stage::First,
            idr: None,
            username,
            has_password,
            waiting: None,
            answered: false,
            tls: false,
        }
    }
}

/// An identity as the text of an EAP-Identity response: a DN as strongSwan writes
/// it, names as they are, an address in its usual notation.
fn identity_text(id: &Identity) -> Vec<u8> {
    match id.kind {
        IdType::DER_ASN1_DN => crate::cert::dn_text(&id.data)
            .map(String::into_bytes)
            .unwrap_or_default(),
        IdType::IPV4_ADDR | IdType::IPV6_ADDR => {
            let s = id.to_string();
            s.strip_prefix("address:").unwrap_or(&s).as_bytes().to_vec()
        }
        _ => id.data.clone(),
    }
}

/// Code, identifier, type of an EAP packet (type 0 when there is none).
fn eap_head(p: &[u8]) -> (u8, u8, u8) {
    (
        p.first().copied().unwrap_or(0),
        p.get(1).copied().unwrap_or(0),
        p.get(4).copied().unwrap_or(0),
    )
}

fn eap_packet(code: u8, id: u8, ty: Option<u8>, data: &[u8]) -> Vec<u8> {
    let mut v = vec![code, id, 0, 0];
    v.extend(ty);
    v.extend_from_slice(data);
    let len = (v.len().min(usize::from(u16::MAX)) as u16).to_be_bytes();
    v[2..4].copy_from_slice(&len);
    v
}

fn printable(b: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(b)
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    s = s.trim().to_string();
    s
}

impl Ike2 {
    /// The initiator's EAP conversation for `send_auth`: the [xauth] login, or
    /// EAP-TLS with our certificate.
    pub(super) fn eap_client(&mut self, now: std::time::Instant) -> Result<EapClient, Error> {
        let mut c = EapClient::new(&self.config);
        if !self.config.eap_tls {
            return Ok(c);
        }
        let certs = self
            .config
            .auth
            .certs()
            .cloned()
            .ok_or_else(|| Error::Local("EAP-TLS needs our certificate".into()))?;
        let setup = tls::TlsSetup {
            certs,
            server_id: self.config.remote_id.clone(),
            at: self.eap_wall_time(now)?,
            // TLS 1.2 only: strongSwan 5.9's TLS 1.3 server (libtls.version_max = 1.3)
            // signs its CertificateVerify with a scheme a TLS 1.3 client may not accept
            // (rustls: "SignedHandshakeWithUnadvertisedSigScheme"); its default is 1.2.
            // RFC 9190 (TLS 1.3) is implemented in eap::tls and tested against rustls.
            allow_tls13: false,
        };
        let peer =
            tls::TlsPeer::new(setup, &mut *self.rng).map_err(|e| Error::Local(e.to_string()))?;
        let me = identity_text(&self.local_identity());
        let creds = eap::Credentials {
            identity: me.clone(),
            user: me,
            password: Zeroizing::new(String::new()),
        };
        c.peer = Peer::with_tls(creds, peer);
        c.tls = true;
        Ok(c)
    }

    /// The wall time of `now` for EAP-TLS's certificate checks (as auth.rs does for
    /// IKE's; kept here so that the two files change apart).
    fn eap_wall_time(&self, now: std::time::Instant) -> Result<std::time::SystemTime, Error> {
        let (at, wall) = self.config.wall_clock.ok_or_else(|| {
            Error::Local("no wall clock given: certificates cannot be checked".into())
        })?;
        Ok(if now >= at {
            wall + (now - at)
        } else {
            wall.checked_sub(at - now).unwrap_or(wall)
        })
    }

    /// The initiator's signed octets (§2.15) with our identity.
    fn initiator_octets(&self, idi: &Identity) -> Option<Vec<u8>> {
        let k = self.keys.as_ref()?;
        Some(keys::signed_octets(
            k.prf,
            &k.sk_pi,
            &self.init_request,
            &self.nr,
            idi.kind.0,
            &idi.data,
        ))
    }

    /// The responder's signed octets (§2.15) with its identity.
    fn responder_octets(&self, idr: &Identity) -> Option<Vec<u8>> {
        let k = self.keys.as_ref()?;
        Some(keys::signed_octets(
            k.prf,
            &k.sk_pr,
            &self.init_response,
            &self.ni,
            idr.kind.0,
            &idr.data,
        ))
    }

    /// An IKE_AUTH reply while EAP runs (initiator).
    pub(super) fn on_eap_auth_reply(&mut self, now: std::time::Instant, payloads: &[Payload]) {
        let Some(mut st) = self.eap.take() else {
            return;
        };
        let packet = payloads.iter().find_map(|p| match p {
            Payload::Eap(d) => Some(d.clone()),
            _ => None,
        });
        // An EAP Failure says more than the notify that may come with it.
        if let Some(p) = &packet
            && eap_head(p).0 == FAILURE
        {
            return self.eap_step(now, st, p.clone());
        }
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p
                && *kind < notify::STATUS_FIRST
            {
                let e = match (&st.stage, *kind) {
                    (Stage::Rounds, notify::AUTHENTICATION_FAILED) if st.tls => {
                        Error::AuthenticationFailed(
                            "the gateway refused our certificate in EAP-TLS".into(),
                        )
                    }
                    (Stage::Rounds, notify::AUTHENTICATION_FAILED) => refused(),
                    (Stage::Final { .. }, notify::AUTHENTICATION_FAILED) => {
                        Error::AuthenticationFailed(
                            "the gateway refused our AUTH made with the EAP key".into(),
                        )
                    }
                    _ => error_from_notify(*kind, data),
                };
                self.fail(e);
                return;
            }
        }
        match std::mem::replace(&mut st.stage, Stage::Rounds) {
            Stage::First => {
                let idr = payloads.iter().find_map(|p| match p {
                    Payload::Id {
                        initiator: false,
                        kind,
                        data,
                    } => Some(Identity {
                        kind: IdType(*kind),
                        data: data.clone(),
                    }),
                    _ => None,
                });
                let Some(idr) = idr else {
                    self.fail(Error::Malformed(
                        "the gateway's first IKE_AUTH reply has no IDr".into(),
                    ));
                    return;
                };
                if let Some(want) = &self.config.remote_id
                    && *want != idr
                {
                    self.fail(Error::InvalidId(format!(
                        "the gateway is {idr}, the profile expects {want}"
                    )));
                    return;
                }
                let Some(octets) = self.responder_octets(&idr) else {
                    return;
                };
                if let Err(e) = self.check_peer_auth(now, &idr, payloads, &octets) {
                    self.fail(e);
                    return;
                }
                st.idr = Some(idr);
                let Some(p) = packet else {
                    self.fail(Error::Malformed(
                        "the gateway sent no EAP request for our login".into(),
                    ));
                    return;
                };
                self.eap_step(now, st, p);
            }
            Stage::Rounds => {
                let Some(p) = packet else {
                    self.fail(Error::Malformed(
                        "an IKE_AUTH reply during EAP without an EAP payload".into(),
                    ));
                    return;
                };
                self.eap_step(now, st, p);
            }
            Stage::Final { key } => {
                let (Some(idr), Some(k)) = (st.idr.clone(), self.keys.as_ref()) else {
                    return;
                };
                let prf = k.prf;
                let Some(octets) = self.responder_octets(&idr) else {
                    return;
                };
                let ok = payloads.iter().any(|p| match p {
                    Payload::Auth { method: m, data } => {
                        *m == method::PSK && ct_eq(&keys::psk_auth(prf, &key, &octets), data)
                    }
                    _ => false,
                });
                if !ok {
                    self.fail(Error::AuthenticationFailed(
                        "the gateway's AUTH after EAP does not match (it does not hold the EAP key)"
                            .into(),
                    ));
                    return;
                }
                self.auth_done(now, idr, payloads);
            }
        }
    }

    /// One EAP request from the gateway: ask the user, answer, or finish with AUTH.
    fn eap_step(&mut self, now: std::time::Instant, mut st: EapClient, packet: Vec<u8>) {
        let (code, _, ty) = eap_head(&packet);
        let mschap_challenge = ty == MSCHAPV2 && packet.get(5) == Some(&1);
        if code == REQUEST
            && !st.tls
            && ((mschap_challenge && !st.has_password) || (ty == GTC && !st.answered))
        {
            let (fields, message) = if ty == GTC {
                let text = packet
                    .get(5..)
                    .map(printable)
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "one-time passcode".into());
                (vec![XAuthField::Passcode], Some(text))
            } else {
                (
                    vec![XAuthField::Password],
                    Some(format!("EAP-MSCHAPv2 password for {}", st.username)),
                )
            };
            st.waiting = Some(packet);
            self.eap = Some(st);
            self.outbox_ev
                .push_back(Event::CredentialsRequired(CredentialsRequest {
                    fields,
                    message,
                }));
            return;
        }
        st.answered = false;
        let step = st.peer.on_request(&packet, &mut *self.rng);
        match step {
            Ok(Step::Respond(r)) => {
                st.stage = Stage::Rounds;
                self.eap = Some(st);
                self.request(now, Request::Auth, exchange::IKE_AUTH, &[Payload::Eap(r)]);
                self.next_id = self.next_id.wrapping_add(1);
            }
            Ok(Step::Success(msk)) => {
                let Some(k) = self.keys.as_ref() else {
                    return;
                };
                let prf = k.prf;
                // §2.16: without an MSK, SK_pi and SK_pr are the keys.
                let (ours, theirs) = match msk {
                    Some(m) => (m.clone(), m),
                    None => (k.sk_pi.clone(), k.sk_pr.clone()),
                };
                let me = self.local_identity();
                let Some(octets) = self.initiator_octets(&me) else {
                    return;
                };
                let auth = keys::psk_auth(prf, &ours, &octets);
                st.stage = Stage::Final { key: theirs };
                self.eap = Some(st);
                self.outbox_ev.push_back(Event::XAuthSucceeded);
                self.request(
                    now,
                    Request::Auth,
                    exchange::IKE_AUTH,
                    &[Payload::Auth {
                        method: method::PSK,
                        data: auth,
                    }],
                );
                self.next_id = self.next_id.wrapping_add(1);
            }
            Err(EapError::AuthenticationFailed(_) | EapError::Failure) => self.fail(refused()),
            Err(e @ (EapError::UnsupportedMethod(_) | EapError::BadAuthenticatorResponse)) => {
                self.fail(Error::AuthenticationFailed(e.to_string()))
            }
            Err(e @ EapError::Malformed(_)) => self.fail(Error::Malformed(e.to_string())),
            Err(EapError::ServerCertificate(c)) => self.fail(Error::Certificate(c)),
            Err(e @ (EapError::TlsRefused(_) | EapError::Tls(_))) => {
                self.fail(Error::AuthenticationFailed(e.to_string()))
            }
        }
    }

    /// The user's answer to the EAP round that asked for it.
    pub(super) fn eap_credentials(
        &mut self,
        now: std::time::Instant,
        creds: Credentials,
    ) -> Result<(), Error> {
        let Some(mut st) = self.eap.take() else {
            return Err(Error::Local(
                "the IKEv2 engine asked for no credentials".into(),
            ));
        };
        let Some(packet) = st.waiting.take() else {
            self.eap = Some(st);
            return Err(Error::Local(
                "the IKEv2 engine asked for no credentials".into(),
            ));
        };
        let value = creds
            .values
            .into_iter()
            .find(|(f, _)| matches!(f, XAuthField::Password | XAuthField::Passcode))
            .map(|(_, v)| v);
        let Some(value) = value else {
            st.waiting = Some(packet);
            self.eap = Some(st);
            return Err(Error::Local("no password or passcode given".into()));
        };
        let gtc = eap_head(&packet).2 == GTC;
        st.peer.set_password(value);
        if !gtc {
            st.has_password = true;
        }
        st.answered = true;
        self.eap_step(now, st, packet);
        Ok(())
    }
}

// ----- the responder's EAP server (tests) -------------------------------------------

enum ServerStage {
    /// EAP-Identity request sent.
    Identity,
    /// MS-CHAPv2 challenge sent (with the challenge).
    Challenge([u8; 16]),
    /// GTC request sent.
    Passcode,
    /// MS-CHAPv2 success request sent; the peer's acknowledgement comes next.
    SuccessSent,
    /// EAP Success sent; the initiator's AUTH comes next (keyed by the MSK or SK_pi).
    Done,
}

/// The responder's EAP server for one initiator.
pub(super) struct EapServer {
    idi: Identity,
    /// The first IKE_AUTH request (SA, TS, CP are answered at the end).
    first: Vec<Payload>,
    eap_id: u8,
    stage: ServerStage,
    msk: Option<Zeroizing<Vec<u8>>>,
}

impl Ike2 {
    /// The initiator asked for EAP: our IDr, CERT, AUTH and an EAP-Identity request.
    pub(super) fn start_eap_server(
        &mut self,
        _now: std::time::Instant,
        id: u32,
        idi: Identity,
        payloads: &[Payload],
    ) {
        let Some(mut out) = self.responder_id_and_auth(id) else {
            return;
        };
        out.push(Payload::Eap(eap_packet(REQUEST, 1, Some(IDENTITY), &[])));
        self.respond_with(exchange::IKE_AUTH, id, &out);
        self.eap_server = Some(EapServer {
            idi,
            first: payloads.to_vec(),
            eap_id: 1,
            stage: ServerStage::Identity,
            msk: None,
        });
    }

    fn eap_server_refuses(&mut self, id: u32, eap_id: u8, why: &str) {
        self.respond_with(
            exchange::IKE_AUTH,
            id,
            &[Payload::Eap(eap_packet(FAILURE, eap_id, None, &[]))],
        );
        self.fail(Error::XAuthFailed(why.into()));
    }

    pub(super) fn on_eap_server_request(
        &mut self,
        now: std::time::Instant,
        id: u32,
        payloads: &[Payload],
    ) {
        let Some(mut sv) = self.eap_server.take() else {
            return;
        };
        let Some(server) = self.config.xauth_server.clone() else {
            return;
        };
        if let ServerStage::Done = sv.stage {
            let Some(k) = self.keys.as_ref() else {
                return;
            };
            let prf = k.prf;
            let (theirs, ours) = match &sv.msk {
                Some(m) => (m.clone(), m.clone()),
                None => (k.sk_pi.clone(), k.sk_pr.clone()),
            };
            let Some(octets) = self.initiator_octets(&sv.idi) else {
                return;
            };
            let ok = payloads.iter().any(|p| match p {
                Payload::Auth { method: m, data } => {
                    *m == method::PSK && ct_eq(&keys::psk_auth(prf, &theirs, &octets), data)
                }
                _ => false,
            });
            if !ok {
                self.respond_with(
                    exchange::IKE_AUTH,
                    id,
                    &[notify_payload(notify::AUTHENTICATION_FAILED, Vec::new())],
                );
                self.fail(Error::AuthenticationFailed(
                    "the initiator's AUTH after EAP does not match".into(),
                ));
                return;
            }
            let me = self.local_identity();
            let Some(my_octets) = self.responder_octets(&me) else {
                return;
            };
            let out = vec![Payload::Auth {
                method: method::PSK,
                data: keys::psk_auth(prf, &ours, &my_octets),
            }];
            let first = std::mem::take(&mut sv.first);
            self.finish_auth_request(now, id, sv.idi, out, &first);
            return;
        }
        let Some(resp) = payloads.iter().find_map(|p| match p {
            Payload::Eap(d) => Some(d.clone()),
            _ => None,
        }) else {
            let eap_id = sv.eap_id;
            return self.eap_server_refuses(id, eap_id, "no EAP response");
        };
        let (code, _, ty) = eap_head(&resp);
        let body = resp.get(5..).unwrap_or_default();
        let next = sv.eap_id.wrapping_add(1);
        if code != RESPONSE {
            return self.eap_server_refuses(id, next, "not an EAP response");
        }
        let request = match (&sv.stage, ty) {
            (ServerStage::Identity, IDENTITY) => {
                if let Some(p) = &server.passcode {
                    let _ = p;
                    sv.stage = ServerStage::Passcode;
                    eap_packet(REQUEST, next, Some(GTC), b"Passcode:")
                } else {
                    let mut challenge = [0u8; 16];
                    self.rng.fill_bytes(&mut challenge);
                    sv.stage = ServerStage::Challenge(challenge);
                    let mut d = vec![1, next, 0, 0, 16];
                    d.extend_from_slice(&challenge);
                    d.extend_from_slice(b"postern");
                    let l = (d.len() as u16).to_be_bytes();
                    d[2..4].copy_from_slice(&l);
                    eap_packet(REQUEST, next, Some(MSCHAPV2), &d)
                }
            }
            (ServerStage::Passcode, GTC) => {
                let ok = server
                    .passcode
                    .as_ref()
                    .is_some_and(|p| ct_eq(p.as_bytes(), body));
                if !ok {
                    return self.eap_server_refuses(id, next, "the client's passcode was refused");
                }
                sv.stage = ServerStage::Done;
                eap_packet(SUCCESS, next, None, &[])
            }
            (ServerStage::Challenge(challenge), MSCHAPV2) => {
                // op, ms-id, ms-length, value-size 49, peer challenge, 8 reserved,
                // NT-Response, flags, name.
                let (Some(&2), Some(&49), Some(peer), Some(nt), Some(name)) = (
                    body.first(),
                    body.get(4),
                    body.get(5..21),
                    body.get(29..53),
                    body.get(54..),
                ) else {
                    return self.eap_server_refuses(id, next, "a malformed MS-CHAPv2 response");
                };
                let (Ok(peer), Ok(nt)) = (<[u8; 16]>::try_from(peer), <[u8; 24]>::try_from(nt))
                else {
                    return;
                };
                let want = mschapv2::nt_response(challenge, &peer, name, &server.password);
                if name != server.username.as_bytes() || !ct_eq(&want, &nt) {
                    return self.eap_server_refuses(id, next, "the client's login was refused");
                }
                let s =
                    mschapv2::authenticator_response(&server.password, &nt, &peer, challenge, name);
                sv.msk = Some(mschapv2::msk(&server.password, &nt));
                sv.stage = ServerStage::SuccessSent;
                let hexs: String = s.iter().map(|b| format!("{b:02X}")).collect();
                let mut d = vec![3, next, 0, 0];
                d.extend_from_slice(format!("S={hexs} M=welcome").as_bytes());
                let l = (d.len() as u16).to_be_bytes();
                d[2..4].copy_from_slice(&l);
                eap_packet(REQUEST, next, Some(MSCHAPV2), &d)
            }
            (ServerStage::SuccessSent, MSCHAPV2) if body.first() == Some(&3) => {
                sv.stage = ServerStage::Done;
                eap_packet(SUCCESS, next, None, &[])
            }
            _ => return self.eap_server_refuses(id, next, "an unexpected EAP response"),
        };
        sv.eap_id = next;
        self.eap_server = Some(sv);
        self.respond_with(exchange::IKE_AUTH, id, &[Payload::Eap(request)]);
    }
}
