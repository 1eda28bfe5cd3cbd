//! Main and aggressive mode, responder. Every answer is remembered with the
//! request it answers, so a retransmitted request gets it again unprocessed; an
//! answer that expects a reply is also retransmitted on our timer (the
//! initiator's last message of an exchange has no answer, so only we can repair
//! its loss). Main mode message 2 is the exception: it is sent once and only the
//! initiator's retransmitted message 1 brings it again, so a forged message 1 gets
//! one answer and no more (message 3 proves the initiator got it).

use crate::codec::{ExchangeType, Header, IdPayload, Payload};
use crate::crypto::DhKeyPair;

use super::super::sa::{self, IkeChoice};
use super::super::sa_ctx::IsakmpSa;
use super::super::{Error, Identity, Role};
use super::keys::{self, KeyExchange, PeerProof, Transcript, psk_mismatch};
use super::{Msg, Next, Send, State};

/// Remembers the request and our answer, and says how the answer is sent.
fn answered(ctx: &mut IsakmpSa, m: &Msg<'_>, reply: Vec<u8>, expects_reply: bool) -> Send {
    ctx.remember_answer(m.data.to_vec(), reply.clone());
    if expects_reply {
        Send::Request(reply)
    } else {
        Send::Last(reply)
    }
}

/// Main mode message 1 (SA) in, message 2 (the chosen SA) out.
pub(super) fn on_main1(ctx: &mut IsakmpSa, m: &Msg<'_>) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    let Some((sai_b, sa)) = msg.payloads.iter().find_map(|p| match p {
        Payload::Sa(s) => Some((p.encode_body(), s)),
        _ => None,
    }) else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    ctx.set_icookie(m.header.initiator_cookie);
    let (reply, choice) = sa::choose_ike(sa, &ctx.config().ike_proposals, keys::auth_method(ctx))?;
    let cookie = ctx.new_cookie();
    ctx.set_rcookie(cookie);
    let sai_b = super::raw_sa_body(m.data).unwrap_or(sai_b);
    ctx.learn_vendor_ids(&msg.payloads);
    let mut payloads = vec![Payload::Sa(reply)];
    payloads.extend(super::responder_vendor_ids(ctx));
    let d = ctx.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
    // Sent once: until the initiator returns our cookie, only its retransmission of
    // message 1 brings message 2 again (a forged message 1 gets one answer, no more).
    let send = answered(ctx, m, d, false);
    Ok(Next::To(State::ExpectKe { sai_b, choice }, send))
}

/// Main mode message 3 (KE, Ni) in: the keys; message 4 (KE, Nr) out.
pub(super) fn on_main3(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    sai_b: &[u8],
    choice: &IkeChoice,
) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    let (Some(ke), Some(ni)) = (
        super::find_ke(&msg.payloads),
        super::find_nonce(&msg.payloads),
    ) else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    super::check_nonce(ni)?;
    let dh = DhKeyPair::generate(choice.proposal.group, ctx.rng());
    let nr = ctx.nonce();
    let t = Transcript {
        sai_b: sai_b.to_vec(),
        g_xi: ke.to_vec(),
        g_xr: dh.public().to_vec(),
    };
    let kx = KeyExchange {
        dh: &dh,
        peer_public: ke,
        ni,
        nr: &nr,
    };
    keys::derive_keys(ctx, choice, &kx, &t)?;
    ctx.detect_nat(choice.proposal.hash, &msg.payloads);
    let mut payloads = vec![Payload::Ke(t.g_xr.clone()), Payload::Nonce(nr)];
    payloads.extend(keys::certreq_payloads(ctx));
    payloads.extend(ctx.nat_d_payloads(choice.proposal.hash));
    let d = ctx.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
    let send = answered(ctx, m, d, true);
    let state = State::ExpectIdHashI {
        t,
        choice: choice.clone(),
    };
    Ok(Next::To(state, send))
}

/// Main mode message 5 (IDii, HASH_I) in, message 6 (IDir, HASH_R) out: established.
pub(super) fn on_main5(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    t: &Transcript,
    choice: &IkeChoice,
) -> Result<Next, Error> {
    let opened = ctx
        .open_phase1(m.header, m.data)
        .map_err(|_| psk_mismatch())?;
    let (idii_b, peer_id) = super::find_id(&opened).ok_or_else(psk_mismatch)?;
    let payloads: Vec<Payload> = opened.payloads.iter().map(|d| d.payload.clone()).collect();
    let proof = PeerProof {
        role: Role::Initiator,
        id_b: &idii_b,
        id: &peer_id,
        payloads: &payloads,
    };
    keys::verify_peer_auth(ctx, m.now, t, &proof)?;
    ctx.advance_phase1_iv(opened.last_block);
    keys::check_peer_id(ctx, &peer_id)?;
    let id = keys::our_id_payload(ctx);
    let idir_b = Payload::Id(id.clone()).encode_body();
    let mut payloads = vec![Payload::Id(id)];
    payloads.extend(keys::our_auth_payloads(ctx, Role::Responder, t, &idir_b)?);
    let d = ctx.seal_phase1(ExchangeType::IDENTITY_PROTECTION, &payloads)?;
    let send = answered(ctx, m, d, false);
    Ok(Next::To(super::established(ctx, choice, peer_id), send))
}

/// Aggressive mode message 1 (SA, KE, Ni, IDii) in, message 2 (SA, KE, Nr, IDir,
/// HASH_R) out.
pub(super) fn on_aggressive1(ctx: &mut IsakmpSa, m: &Msg<'_>) -> Result<Next, Error> {
    let Some(msg) = super::decode_plain(ctx, m.data) else {
        return Ok(Next::Stay);
    };
    let p = &msg.payloads;
    let (Some(sa), Some(ke), Some(ni), Some(id)) = (
        super::find_sa(p),
        super::find_ke(p),
        super::find_nonce(p),
        super::find_id_payload(p),
    ) else {
        ctx.dropped();
        return Ok(Next::Stay);
    };
    ctx.set_icookie(m.header.initiator_cookie);
    super::check_nonce(ni)?;
    let (reply, choice) = sa::choose_ike(sa, &ctx.config().ike_proposals, keys::auth_method(ctx))?;
    let peer_id = super::identity_of(id);
    keys::check_peer_id(ctx, &peer_id)?;
    let cookie = ctx.new_cookie();
    ctx.set_rcookie(cookie);
    ctx.learn_vendor_ids(p);
    let sai_b = super::raw_sa_body(m.data).unwrap_or_else(|| Payload::Sa(sa.clone()).encode_body());
    let dh = DhKeyPair::generate(choice.proposal.group, ctx.rng());
    let nr = ctx.nonce();
    let t = Transcript {
        sai_b,
        g_xi: ke.to_vec(),
        g_xr: dh.public().to_vec(),
    };
    let kx = KeyExchange {
        dh: &dh,
        peer_public: ke,
        ni,
        nr: &nr,
    };
    keys::derive_keys(ctx, &choice, &kx, &t)?;
    let our = keys::our_id_payload(ctx);
    let idir_b = Payload::Id(our.clone()).encode_body();
    let auth = keys::our_auth_payloads(ctx, Role::Responder, &t, &idir_b)?;
    let mut payloads = vec![
        Payload::Sa(reply),
        Payload::Ke(t.g_xr.clone()),
        Payload::Nonce(nr),
        Payload::Id(our),
    ];
    payloads.extend(auth);
    payloads.extend(keys::certreq_payloads(ctx));
    payloads.extend(super::responder_vendor_ids(ctx));
    payloads.extend(ctx.nat_d_payloads(choice.proposal.hash));
    let d = ctx.plain_message(ExchangeType::AGGRESSIVE, payloads);
    let idii_b = super::raw_id_body(m.data).unwrap_or_else(|| id_body(&peer_id));
    // Retransmitted: message 3 has no answer, so only our retransmission makes the
    // initiator send it again when it is lost. A new first message replaces this
    // one (and its retransmissions) while the initiator has not come back.
    let send = answered(ctx, m, d, true);
    let state = State::ExpectHashI {
        t,
        choice,
        peer_id,
        idii_b,
    };
    Ok(Next::To(state, send))
}

/// The body of an ID payload naming `id` (when the received one cannot be cut out).
fn id_body(id: &Identity) -> Vec<u8> {
    Payload::Id(IdPayload {
        id_type: id.kind,
        protocol: 0,
        port: 0,
        data: id.data.clone(),
    })
    .encode_body()
}

/// Aggressive mode message 3 (HASH_I, encrypted or not) in: established.
pub(super) fn on_aggressive3(
    ctx: &mut IsakmpSa,
    m: &Msg<'_>,
    t: &Transcript,
    choice: &IkeChoice,
    peer_id: &Identity,
    idii_b: &[u8],
) -> Result<Next, Error> {
    let payloads = if m.header.flags & Header::FLAG_ENCRYPTION != 0 {
        let opened = ctx
            .open_phase1(m.header, m.data)
            .map_err(|_| psk_mismatch())?;
        ctx.advance_phase1_iv(opened.last_block);
        opened
            .payloads
            .into_iter()
            .map(|d| d.payload)
            .collect::<Vec<_>>()
    } else {
        let Some(msg) = super::decode_plain(ctx, m.data) else {
            return Ok(Next::Stay);
        };
        msg.payloads
    };
    // RFC 3947: in aggressive mode the initiator's NAT-D come in message 3.
    ctx.detect_nat(choice.proposal.hash, &payloads);
    let proof = PeerProof {
        role: Role::Initiator,
        id_b: idii_b,
        id: peer_id,
        payloads: &payloads,
    };
    keys::verify_peer_auth(ctx, m.now, t, &proof)?;
    Ok(Next::To(
        super::established(ctx, choice, peer_id.clone()),
        Send::Nothing,
    ))
}
