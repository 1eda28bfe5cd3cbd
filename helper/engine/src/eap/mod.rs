//! The peer side of EAP (RFC 3748) as IKEv2 carries it in IKE_AUTH (RFC 7296 §2.16):
//! Identity, Notification, EAP-MSCHAPv2 (draft-kamath-pppext-eap-mschapv2, the method
//! of NetworkManager-strongswan and Windows users) and EAP-GTC (RFC 3748 §5.6, one-time
//! passcodes). Sans-IO like the rest of the engine: [`Peer::on_request`] takes one EAP
//! packet from the gateway and says what to answer; the caller wraps it in an EAP
//! payload. Every length is checked; every failure is a typed [`EapError`].

pub mod mschapv2;
pub mod tls;

use zeroize::Zeroizing;

use crate::crypto::Rng;

/// EAP codes (RFC 3748 §4).
const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const SUCCESS: u8 = 3;
const FAILURE: u8 = 4;

/// EAP method types (IANA "Method Types").
const IDENTITY: u8 = 1;
const NOTIFICATION: u8 = 2;
const NAK: u8 = 3;
const GTC: u8 = 6;
const MSCHAPV2: u8 = 26;

/// MS-CHAPv2 op codes.
const MS_CHALLENGE: u8 = 1;
const MS_RESPONSE: u8 = 2;
const MS_SUCCESS: u8 = 3;
const MS_FAILURE: u8 = 4;

/// What went wrong, in words a user can act on where it is theirs to act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EapError {
    #[error("malformed EAP message from the gateway: {0}")]
    Malformed(&'static str),
    #[error("the gateway asks for EAP method {0}, which Postern does not speak")]
    UnsupportedMethod(u8),
    #[error("the gateway refused the user name or password{}", detail(.0))]
    AuthenticationFailed(String),
    #[error(
        "the gateway's MS-CHAPv2 proof is wrong: it does not know the password (or is not the gateway)"
    )]
    BadAuthenticatorResponse,
    #[error("the gateway ended EAP without success")]
    Failure,
    /// The gateway's TLS certificate failed our checks.
    #[error("{0}")]
    ServerCertificate(crate::cert::CertError),
    /// The gateway's TLS server refused us (an alert, or EAP Failure during EAP-TLS).
    #[error("the gateway refused our certificate in EAP-TLS: {0}")]
    TlsRefused(String),
    #[error("EAP-TLS failed: {0}")]
    Tls(String),
}

fn detail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" ({s})")
    }
}

/// The user's credentials for EAP. `password` is the password, or the passcode for
/// EAP-GTC.
pub struct Credentials {
    pub identity: Vec<u8>,
    pub user: Vec<u8>,
    pub password: Zeroizing<String>,
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this EAP response.
    Respond(Vec<u8>),
    /// EAP Success: done; the MSK when the method made one (MS-CHAPv2 does, GTC not).
    Success(Option<Zeroizing<Vec<u8>>>),
}

/// One EAP conversation, peer side.
pub struct Peer {
    creds: Credentials,
    /// Set once the MS-CHAPv2 response is sent: what the gateway's "S=" must be, and
    /// the MSK that comes with success.
    pending: Option<([u8; 20], Zeroizing<Vec<u8>>)>,
    msk: Option<Zeroizing<Vec<u8>>>,
    /// The method whose success we saw (EAP Success before it is refused).
    method_done: bool,
    /// The last method we answered with a Nak.
    refused: Option<u8>,
    /// EAP-TLS: set when the profile logs in with a certificate; then it is the only
    /// method we speak.
    tls: Option<tls::TlsPeer>,
}

impl Peer {
    pub fn new(creds: Credentials) -> Self {
        Peer {
            creds,
            pending: None,
            msk: None,
            method_done: false,
            refused: None,
            tls: None,
        }
    }

    /// A peer that speaks EAP-TLS only (the identity in `creds`, no password).
    pub fn with_tls(creds: Credentials, tls: tls::TlsPeer) -> Self {
        let mut p = Peer::new(creds);
        p.tls = Some(tls);
        p
    }

    /// The password (or this round's passcode) once the user has typed it.
    pub fn set_password(&mut self, password: Zeroizing<String>) {
        self.creds.password = password;
    }

    /// The gateway's EAP packet; what to answer.
    pub fn on_request(&mut self, packet: &[u8], rng: &mut dyn Rng) -> Result<Step, EapError> {
        let (code, id, body) = header(packet)?;
        match code {
            SUCCESS if self.method_done => Ok(Step::Success(self.msk.take())),
            // Success before the method proved anything: RFC 3748 §4.2 lets a peer
            // ignore it; a VPN must not trust it.
            SUCCESS => Err(EapError::Malformed("EAP Success before authentication")),
            FAILURE if self.tls.as_ref().is_some_and(|t| t.started()) => Err(EapError::TlsRefused(
                "EAP Failure after the TLS handshake started".into(),
            )),
            FAILURE => Err(self
                .refused
                .map_or(EapError::Failure, EapError::UnsupportedMethod)),
            REQUEST => {
                let (&ty, data) = body
                    .split_first()
                    .ok_or(EapError::Malformed("request without a type"))?;
                if let Some(t) = self.tls.as_mut()
                    && ty > NAK
                {
                    if ty != tls::TLS {
                        self.refused = Some(ty);
                        return Ok(Step::Respond(response(id, NAK, &[tls::TLS])));
                    }
                    let r = t.on_request(data)?;
                    if let Some(m) = t.msk() {
                        self.method_done = true;
                        self.msk = Some(m.clone());
                    }
                    return Ok(Step::Respond(response(id, tls::TLS, &r)));
                }
                match ty {
                    IDENTITY => Ok(Step::Respond(response(id, IDENTITY, &self.creds.identity))),
                    NOTIFICATION => Ok(Step::Respond(response(id, NOTIFICATION, &[]))),
                    GTC => {
                        self.method_done = true;
                        let pw = self.creds.password.as_bytes();
                        Ok(Step::Respond(response(id, GTC, pw)))
                    }
                    MSCHAPV2 => self.mschapv2(id, data, rng),
                    // Legacy Nak (RFC 3748 §5.3.1) naming the methods we speak: a
                    // gateway offering several tries the next; one that fails us
                    // then is told about as the method it wanted.
                    other if other > NAK => {
                        self.refused = Some(other);
                        Ok(Step::Respond(response(id, NAK, &[MSCHAPV2, GTC])))
                    }
                    _ => Err(EapError::Malformed("a Nak in a request")),
                }
            }
            _ => Err(EapError::Malformed("not a request, success or failure")),
        }
    }

    fn mschapv2(&mut self, id: u8, data: &[u8], rng: &mut dyn Rng) -> Result<Step, EapError> {
        let [op, ms_id, l0, l1, rest @ ..] = data else {
            return Err(EapError::Malformed("MS-CHAPv2 header truncated"));
        };
        // MS-Length counts from the op code; some servers fill it loosely, so it only
        // must not claim more than is there.
        if usize::from(u16::from_be_bytes([*l0, *l1])) > data.len() {
            return Err(EapError::Malformed("MS-CHAPv2 length beyond the packet"));
        }
        match *op {
            MS_CHALLENGE => {
                let [16, challenge @ ..] = rest else {
                    return Err(EapError::Malformed("MS-CHAPv2 challenge is not 16 bytes"));
                };
                let auth: [u8; 16] = challenge
                    .get(..16)
                    .and_then(|c| c.try_into().ok())
                    .ok_or(EapError::Malformed("MS-CHAPv2 challenge truncated"))?;
                let mut peer = [0u8; 16];
                rng.fill_bytes(&mut peer);
                let user = &self.creds.user;
                let nt = mschapv2::nt_response(&auth, &peer, user, &self.creds.password);
                let expect =
                    mschapv2::authenticator_response(&self.creds.password, &nt, &peer, &auth, user);
                self.pending = Some((expect, mschapv2::msk(&self.creds.password, &nt)));
                let mut v = Vec::with_capacity(54 + user.len());
                v.extend_from_slice(&[MS_RESPONSE, *ms_id, 0, 0, 49]);
                v.extend_from_slice(&peer);
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(&nt);
                v.push(0);
                v.extend_from_slice(user);
                let ms_len = (v.len() as u16).to_be_bytes();
                v[2..4].copy_from_slice(&ms_len);
                Ok(Step::Respond(response(id, MSCHAPV2, &v)))
            }
            MS_SUCCESS => {
                let (expect, msk) = self
                    .pending
                    .take()
                    .ok_or(EapError::Malformed("MS-CHAPv2 success before our response"))?;
                let text = String::from_utf8_lossy(rest);
                let proof = text
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("S="))
                    .and_then(hex_20)
                    .ok_or(EapError::Malformed("MS-CHAPv2 success without S="))?;
                if !crate::crypto::ct_eq(&proof, &expect) {
                    return Err(EapError::BadAuthenticatorResponse);
                }
                self.method_done = true;
                self.msk = Some(msk);
                Ok(Step::Respond(response(id, MSCHAPV2, &[MS_SUCCESS])))
            }
            MS_FAILURE => Err(EapError::AuthenticationFailed(failure_text(rest))),
            _ => Err(EapError::Malformed("unknown MS-CHAPv2 op code")),
        }
    }
}

/// Code, identifier and the data after the 4-byte header, the length checked.
fn header(p: &[u8]) -> Result<(u8, u8, &[u8]), EapError> {
    let [code, id, l0, l1, ..] = p else {
        return Err(EapError::Malformed("shorter than the EAP header"));
    };
    let len = usize::from(u16::from_be_bytes([*l0, *l1]));
    if len < 4 || len > p.len() {
        return Err(EapError::Malformed(
            "EAP length inconsistent with the packet",
        ));
    }
    Ok((*code, *id, &p[4..len]))
}

fn response(id: u8, ty: u8, data: &[u8]) -> Vec<u8> {
    let len = (5 + data.len()) as u16;
    let mut v = vec![RESPONSE, id, 0, 0, ty];
    v[2..4].copy_from_slice(&len.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn hex_20(s: &str) -> Option<[u8; 20]> {
    let s = s.get(..40)?;
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// "E=691 R=0 C=... V=3 M=Authentication failure": the error code and message,
/// printable characters only (it reaches a log line and the user).
fn failure_text(rest: &[u8]) -> String {
    let text = String::from_utf8_lossy(rest);
    let code = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("E="))
        .unwrap_or("");
    let msg = text.split_once("M=").map(|(_, m)| m).unwrap_or("");
    let meaning = match code {
        "646" => "not allowed at this hour",
        "647" => "account disabled",
        "648" => "password expired",
        "649" => "no dial-in permission",
        "691" => "authentication failure",
        _ => "",
    };
    let mut out = [meaning, msg.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(": ");
    out.retain(|c| !c.is_control());
    out.chars().take(120).collect()
}

#[cfg(test)]
mod tests;
