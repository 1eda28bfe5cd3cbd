//! Main mode, initiator (RFC 2409 §5):
//!
//! ```text
//! HDR, SA                 -->
//!                         <--  HDR, SA
//! HDR, KE, Ni             -->
//!                         <--  HDR, KE, Nr
//! HDR*, IDii, HASH_I      -->
//!                         <--  HDR*, IDir, HASH_R
//! ```
//! (with signatures, `[CERT,] SIG_I` / `[CERT,] SIG_R` instead of the HASHes).

use crate::codec::{ExchangeType, Payload};
use crate::crypto::DhKeyPair;

use super::super::sa::{self, IkeChoice};
use super::super::sa_ctx::IsakmpSa;
use super::super::{Error, Role};
use super::keys::{self, KeyExchange, PeerProof, Transcript, psk_mismatch};
use super::{Msg, Next, Send, State};

/// Message 1: our SA offer.
pub(super) fn start(ctx: &mut IsakmpSa) -> Next {
    let cfg = ctx.config();
    let sa = sa::ike_offer(
        &super::offerable(ctx),
        keys::auth_method(ctx),
        cfg.ike_lifetime,
    );
    let p = Payload::Sa(sa);
    let sai_b = p.encode_body();
    let mut payloads = vec![p];
    payloads.extend(super::our_vendor_ids(ctx));
    let d = ctx.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
    Next::To(State::ExpectSaReply { sai_b }, Send::Request(d))
}

/// Message 2 (the chosen SA) in, message 3 (KE, Ni) out.
pub(super) fn on_sa_reply(ctx: &mut IsakmpSa, m: &Msg<'_>, sai_b: &[u8]) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    let Some(sa) = super::find_sa(&msg.payloads) else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    if m.header.responder_cookie == [0; 8] {
        ctx.dropped();
        return Ok(Next::Stay);
    }
    let choice = sa::check_ike_reply(sa, &super::offerable(ctx), keys::auth_method(ctx))?;
    ctx.set_rcookie(m.header.responder_cookie);
    let dh = DhKeyPair::generate(choice.proposal.group, ctx.rng());
    let ni = ctx.nonce();
    ctx.learn_vendor_ids(&msg.payloads);
    let mut payloads = vec![
        Payload::Ke(dh.public().to_vec()),
        Payload::Nonce(ni.clone()),
    ];
    payloads.extend(keys::certreq_payloads(ctx));
    payloads.extend(ctx.nat_d_payloads(choice.proposal.hash));
    let d = ctx.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
    let state = State::ExpectKeReply {
        sai_b: sai_b.to_vec(),
        choice,
        dh,
        ni,
    };
    Ok(Next::To(state, Send::Request(d)))
}

/// Message 4 (KE, Nr) in: the keys; message 5 (IDii, HASH_I) out, encrypted.
pub(super) fn on_ke_reply(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    sai_b: &[u8],
    choice: &IkeChoice,
    dh: &DhKeyPair,
    ni: &[u8],
) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    let (Some(ke), Some(nr)) = (
        super::find_ke(&msg.payloads),
        super::find_nonce(&msg.payloads),
    ) else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    super::check_nonce(nr)?;
    let t = Transcript {
        sai_b: sai_b.to_vec(),
        g_xi: dh.public().to_vec(),
        g_xr: ke.to_vec(),
    };
    let kx = KeyExchange {
        dh,
        peer_public: ke,
        ni,
        nr,
    };
    keys::derive_keys(ctx, choice, &kx, &t)?;
    ctx.detect_nat(choice.proposal.hash, &msg.payloads);
    ctx.float_if_needed();
    let id = keys::our_id_payload(ctx);
    let idii_b = Payload::Id(id.clone()).encode_body();
    let mut payloads = vec![Payload::Id(id)];
    payloads.extend(keys::our_auth_payloads(ctx, Role::Initiator, &t, &idii_b)?);
    if ctx.config().initial_contact {
        payloads.push(keys::initial_contact(ctx));
    }
    let d = ctx.seal_phase1(ExchangeType::IDENTITY_PROTECTION, &payloads)?;
    let state = State::ExpectIdHash {
        t,
        choice: choice.clone(),
    };
    Ok(Next::To(state, Send::Request(d)))
}

/// Message 6 (IDir, HASH_R) in: established.
pub(super) fn on_id_hash(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    t: &Transcript,
    choice: &IkeChoice,
) -> Result<Next, Error> {
    if m.header.flags & crate::codec::Header::FLAG_ENCRYPTION == 0 {
        ctx.dropped();
        return Ok(Next::Stay);
    }
    // A reply we cannot read means the gateway derived other keys: the PSKs differ.
    let opened = ctx
        .open_phase1(m.header, m.data)
        .map_err(|_| psk_mismatch())?;
    let (idir_b, peer_id) = super::find_id(&opened).ok_or_else(psk_mismatch)?;
    let payloads: Vec<Payload> = opened.payloads.iter().map(|d| d.payload.clone()).collect();
    let proof = PeerProof {
        role: Role::Responder,
        id_b: &idir_b,
        id: &peer_id,
        payloads: &payloads,
    };
    keys::verify_peer_auth(ctx, m.now, t, &proof)?;
    ctx.advance_phase1_iv(opened.last_block);
    keys::check_peer_id(ctx, &peer_id)?;
    Ok(Next::To(
        super::established(ctx, choice, peer_id),
        Send::Nothing,
    ))
}
