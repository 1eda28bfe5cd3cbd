//! Phase 1 keys and authentication: SKEYID and its derivatives, HASH_I/HASH_R,
//! our HASH or CERT+SIG payloads, and the check of the peer's (its HASH, or its
//! certificate chain, identity and signature).

use std::time::{Instant, SystemTime};

use crate::cert;
use crate::codec::{CertPayload, IdPayload, NotifyPayload, NotifyType, Payload, ProtocolId};
use crate::crypto::{self, DhKeyPair};

use super::super::sa::{DOI_IPSEC, IkeChoice};
use super::super::sa_ctx::IsakmpSa;
use super::super::{Auth, Error, Identity, Role};

/// What HASH_I and HASH_R cover besides the ID: the initiator's SA payload body
/// as sent (SAi_b) and both public DH values.
#[derive(Debug, Clone)]
pub(crate) struct Transcript {
    pub sai_b: Vec<u8>,
    pub g_xi: Vec<u8>,
    pub g_xr: Vec<u8>,
}

/// Our half of the key exchange and the peer's public value, with both nonces.
pub(super) struct KeyExchange<'a> {
    pub dh: &'a DhKeyPair,
    pub peer_public: &'a [u8],
    pub ni: &'a [u8],
    pub nr: &'a [u8],
}

/// Derives the phase 1 keys into the context (which starts the IV chain there).
pub(super) fn derive_keys(
    ctx: &mut IsakmpSa,
    choice: &IkeChoice,
    kx: &KeyExchange<'_>,
    t: &Transcript,
) -> Result<(), Error> {
    let g_xy = kx
        .dh
        .shared_secret(kx.peer_public)
        .map_err(|e| Error::Malformed(format!("the peer's key exchange value is invalid: {e}")))?;
    let prf = choice.proposal.hash;
    let skeyid = match &ctx.config().auth {
        Auth::Psk(psk) => crypto::skeyid_psk(prf, psk, kx.ni, kx.nr),
        Auth::Signature(_) | Auth::Hybrid(_) => crypto::skeyid_sig(prf, kx.ni, kx.nr, &g_xy),
    };
    let keys = crypto::derive_phase1(
        prf,
        choice.proposal.cipher,
        skeyid,
        &g_xy,
        &ctx.icookie(),
        &ctx.rcookie(),
        &t.g_xi,
        &t.g_xr,
    );
    ctx.set_keys(keys);
    Ok(())
}

/// HASH_I (`who` = initiator) or HASH_R over the given ID body.
fn auth_hash(ctx: &IsakmpSa, who: Role, t: &Transcript, id_b: &[u8]) -> Result<Vec<u8>, Error> {
    let keys = ctx
        .keys()
        .ok_or_else(|| Error::Local("no phase 1 keys".into()))?;
    let f = match who {
        Role::Initiator => crypto::hash_i,
        Role::Responder => crypto::hash_r,
    };
    Ok(f(
        keys.prf,
        &keys.skeyid,
        &t.g_xi,
        &t.g_xr,
        &ctx.icookie(),
        &ctx.rcookie(),
        &t.sai_b,
        id_b,
    ))
}

/// What proves the side in role `who` (us): HASH, or our CERTs and SIG.
pub(super) fn our_auth_payloads(
    ctx: &mut IsakmpSa,
    who: Role,
    t: &Transcript,
    id_b: &[u8],
) -> Result<Vec<Payload>, Error> {
    let hash = auth_hash(ctx, who, t, id_b)?;
    if !ctx.config().auth.signs(who) {
        return Ok(vec![Payload::Hash(hash)]);
    }
    let certs = ctx
        .config()
        .auth
        .certs()
        .cloned()
        .ok_or_else(|| Error::Local("no certificates configured".into()))?;
    let key = certs
        .key
        .as_ref()
        .ok_or_else(|| Error::Local("no private key configured".into()))?;
    let sig = key
        .sign_ike(&hash, ctx.rng())
        .map_err(|e| Error::Local(e.to_string()))?;
    let mut out: Vec<Payload> = certs
        .chain
        .iter()
        .map(|c| {
            Payload::Cert(CertPayload {
                encoding: CertPayload::X509_SIG,
                data: c.der().to_vec(),
            })
        })
        .collect();
    out.push(Payload::Sig(sig));
    Ok(out)
}

/// CERTREQ payloads naming our CAs, when the peer is to sign.
pub(super) fn certreq_payloads(ctx: &IsakmpSa) -> Vec<Payload> {
    let peer = match ctx.role() {
        Role::Initiator => Role::Responder,
        Role::Responder => Role::Initiator,
    };
    let auth = &ctx.config().auth;
    if !auth.signs(peer) {
        return Vec::new();
    }
    let Some(certs) = auth.certs() else {
        return Vec::new();
    };
    certs
        .trusted
        .iter()
        .map(|ca| {
            Payload::CertReq(CertPayload {
                encoding: CertPayload::X509_SIG,
                data: ca.subject_der(),
            })
        })
        .collect()
}

/// The wall time at engine time `now`.
fn wall_time(ctx: &IsakmpSa, now: Instant) -> Result<SystemTime, Error> {
    let (at, wall) = ctx.config().wall_clock.ok_or_else(|| {
        Error::Local("no wall clock given: certificates cannot be checked".into())
    })?;
    Ok(if now >= at {
        wall + (now - at)
    } else {
        wall.checked_sub(at - now).unwrap_or(wall)
    })
}

/// What the peer sent to prove itself, and what it claims to be.
pub(super) struct PeerProof<'a> {
    /// The peer's role in phase 1.
    pub role: Role,
    /// The body of its ID payload, as received.
    pub id_b: &'a [u8],
    pub id: &'a Identity,
    pub payloads: &'a [Payload],
}

/// Checks what proves the peer: its HASH, or its certificate chain (to our CAs,
/// at the wall time of `now`), that the certificate names the peer's ID, and its
/// SIG over HASH_I/HASH_R.
pub(super) fn verify_peer_auth(
    ctx: &IsakmpSa,
    now: Instant,
    t: &Transcript,
    peer: &PeerProof<'_>,
) -> Result<(), Error> {
    let expected = auth_hash(ctx, peer.role, t, peer.id_b)?;
    let auth = &ctx.config().auth;
    if !auth.signs(peer.role) {
        let hash = super::find_hash(peer.payloads).ok_or_else(|| hash_mismatch(auth, peer.role))?;
        if !crypto::ct_eq(&expected, hash) {
            return Err(hash_mismatch(auth, peer.role));
        }
        return Ok(());
    }
    let certs = auth
        .certs()
        .ok_or_else(|| Error::Local("no certificates configured".into()))?;
    let sig = peer
        .payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sig(s) => Some(s.as_slice()),
            _ => None,
        })
        .ok_or_else(|| {
            Error::AuthenticationFailed("the peer sent no signature (SIG payload)".into())
        })?;
    let mut chain = Vec::new();
    for p in peer.payloads {
        if let Payload::Cert(c) = p
            && c.encoding == CertPayload::X509_SIG
        {
            chain.push(cert::Certificate::from_der(&c.data).map_err(Error::Certificate)?);
        }
    }
    let at = wall_time(ctx, now)?;
    let ee = cert::validate_chain(&chain, &certs.trusted, &certs.crls, at)
        .map_err(Error::Certificate)?;
    cert::check_identity(ee, peer.id).map_err(Error::Certificate)?;
    let key = ee.public_key().map_err(Error::Certificate)?;
    if !key.verify_ike(&expected, sig) {
        return Err(Error::Certificate(cert::CertError::BadIkeSignature(
            ee.subject(),
        )));
    }
    Ok(())
}

fn hash_mismatch(auth: &Auth, peer_role: Role) -> Error {
    match (auth, peer_role) {
        (Auth::Psk(_), Role::Initiator) => {
            Error::AuthenticationFailed("HASH_I mismatch: pre-shared key mismatch?".into())
        }
        (Auth::Psk(_), Role::Responder) => psk_mismatch(),
        _ => Error::AuthenticationFailed(format!(
            "the peer's {} does not match",
            if peer_role == Role::Initiator {
                "HASH_I"
            } else {
                "HASH_R"
            }
        )),
    }
}

pub(super) fn psk_mismatch() -> Error {
    Error::AuthenticationFailed("pre-shared key mismatch?".into())
}

/// The peer's identity must be the one configured (when one is).
pub(super) fn check_peer_id(ctx: &IsakmpSa, peer: &Identity) -> Result<(), Error> {
    match &ctx.config().remote_id {
        Some(want) if want != peer => Err(Error::InvalidId(format!(
            "the peer identified as {peer}, expected {want}"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn our_identity(ctx: &IsakmpSa) -> Identity {
    ctx.config()
        .local_id
        .clone()
        .unwrap_or_else(|| Identity::address(ctx.local_ip()))
}

pub(super) fn our_id_payload(ctx: &IsakmpSa) -> IdPayload {
    let id = our_identity(ctx);
    IdPayload {
        id_type: id.kind,
        protocol: 0,
        port: 0,
        data: id.data,
    }
}

/// The AUTHENTICATION_METHOD we offer or accept.
pub(super) fn auth_method(ctx: &IsakmpSa) -> u16 {
    let c = ctx.config();
    c.auth
        .method_attr(c.xauth.is_some() || c.xauth_server.is_some())
}

pub(super) fn initial_contact(ctx: &IsakmpSa) -> Payload {
    Payload::Notify(NotifyPayload {
        doi: DOI_IPSEC,
        protocol: ProtocolId::ISAKMP,
        spi: ctx.spi(),
        kind: NotifyType::INITIAL_CONTACT,
        data: Vec::new(),
    })
}
