//! Aggressive mode, initiator (RFC 2409 §5):
//!
//! ```text
//! HDR, SA, KE, Ni, IDii          -->
//!                                <--  HDR, SA, KE, Nr, IDir, HASH_R
//! HDR*, HASH_I                   -->
//! ```
//! One KE goes in the first message, so only proposals of one DH group are offered.

use crate::codec::{ExchangeType, IdPayload, Payload};
use crate::crypto::DhKeyPair;

use super::super::sa;
use super::super::sa_ctx::IsakmpSa;
use super::super::{Error, Role};
use super::keys::{self, KeyExchange, PeerProof, Transcript};
use super::{Msg, Next, Send, State};

/// Message 1: SA, KE, Ni, IDii.
pub(super) fn start(ctx: &mut IsakmpSa) -> Next {
    let offer = super::offerable(ctx);
    let group = offer[0].group;
    let sa = Payload::Sa(sa::ike_offer(
        &offer,
        keys::auth_method(ctx),
        ctx.config().ike_lifetime,
    ));
    let sai_b = sa.encode_body();
    let dh = DhKeyPair::generate(group, ctx.rng());
    let ni = ctx.nonce();
    let our_id = keys::our_id_payload(ctx);
    let mut payloads = vec![
        sa,
        Payload::Ke(dh.public().to_vec()),
        Payload::Nonce(ni.clone()),
        Payload::Id(our_id.clone()),
    ];
    payloads.extend(keys::certreq_payloads(ctx));
    payloads.extend(super::our_vendor_ids(ctx));
    let d = ctx.plain_message(ExchangeType::AGGRESSIVE, payloads);
    let state = State::ExpectAggressiveReply {
        sai_b,
        dh,
        ni,
        our_id,
    };
    Next::To(state, Send::Request(d))
}

/// Message 2 in (SA, KE, Nr, IDir, HASH_R): the keys, the gateway checked;
/// message 3 (HASH_I) out; established.
pub(super) fn on_reply(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    sai_b: &[u8],
    dh: &DhKeyPair,
    ni: &[u8],
    our_id: &IdPayload,
) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    if m.header.responder_cookie == [0; 8] {
        ctx.dropped();
        return Ok(Next::Stay);
    }
    let p = &msg.payloads;
    let (Some(sa), Some(ke), Some(nr)) =
        (super::find_sa(p), super::find_ke(p), super::find_nonce(p))
    else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    let choice = sa::check_ike_reply(sa, &super::offerable(ctx), keys::auth_method(ctx))?;
    super::check_nonce(nr)?;
    let Some(id) = super::find_id_payload(p).cloned() else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    ctx.set_rcookie(m.header.responder_cookie);
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
    keys::derive_keys(ctx, &choice, &kx, &t)?;
    let idir_b =
        super::raw_id_body(m.data).unwrap_or_else(|| Payload::Id(id.clone()).encode_body());
    let peer_id = super::identity_of(&id);
    let proof = PeerProof {
        role: Role::Responder,
        id_b: &idir_b,
        id: &peer_id,
        payloads: p,
    };
    keys::verify_peer_auth(ctx, m.now, &t, &proof)?;
    keys::check_peer_id(ctx, &peer_id)?;
    ctx.learn_vendor_ids(p);
    ctx.detect_nat(choice.proposal.hash, p);
    let idii_b = Payload::Id(our_id.clone()).encode_body();
    let mut payloads = keys::our_auth_payloads(ctx, Role::Initiator, &t, &idii_b)?;
    payloads.extend(ctx.nat_d_payloads(choice.proposal.hash));
    ctx.float_if_needed();
    if ctx.config().initial_contact {
        payloads.push(keys::initial_contact(ctx));
    }
    let d = ctx.seal_phase1(ExchangeType::AGGRESSIVE, &payloads)?;
    // Message 3 gets no answer: it is sent once, and resent if message 2 comes again.
    ctx.remember_answer(m.data.to_vec(), d.clone());
    Ok(Next::To(
        super::established(ctx, &choice, peer_id),
        Send::Last(d),
    ))
}
