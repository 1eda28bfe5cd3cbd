//! Phase 1: main and aggressive mode, both roles (RFC 2409 §5).
//!
//! [`Phase1`] is a state machine whose states are named for what they expect
//! next and carry what the exchange gathered so far (the initiator's SA body,
//! the chosen proposal, our DH key and nonce, ...); it is handed the
//! [`IsakmpSa`] context for everything the SA shares (cookies, keys, IV chain,
//! sending). Its files:
//! - `mod.rs`: the states, dispatch of phase 1 messages, retransmission,
//!   plaintext notifies, the established state;
//! - `main_mode.rs`: main mode, initiator (messages 1, 3, 5);
//! - `aggressive.rs`: aggressive mode, initiator (messages 1, 3);
//! - `responder.rs`: both modes, responder;
//! - `keys.rs`: SKEYID and the keys, HASH_I/HASH_R, CERT/SIG, the peer's proof.

mod aggressive;
mod keys;
mod main_mode;
mod responder;

use std::time::Instant;

use crate::codec::{
    self, ExchangeType, Header, IdPayload, Message, NotifyType, Payload, PayloadType, Trailing,
};
use crate::crypto::DhKeyPair;

use super::dpd::VID_DPD;
use super::exchange::Pending;
use super::natt::{self, NatTraversal};
use super::sa::IkeChoice;
use super::sa_ctx::{IsakmpSa, Opened};
use super::{Auth, Error, Event, ExchangeMode, Identity, Phase1Info, Role};

use keys::{Transcript, psk_mismatch};

/// What the phase 1 exchange expects next, with what it gathered so far.
enum State {
    /// Initiator, main mode: sent SA, expect the chosen SA (message 2).
    ExpectSaReply {
        sai_b: Vec<u8>,
    },
    /// Initiator, main mode: sent KE/Ni, expect KE/Nr (message 4).
    ExpectKeReply {
        sai_b: Vec<u8>,
        choice: IkeChoice,
        dh: DhKeyPair,
        ni: Vec<u8>,
    },
    /// Initiator, main mode: sent ID/HASH_I, expect ID/HASH_R (message 6).
    ExpectIdHash {
        t: Transcript,
        choice: IkeChoice,
    },
    /// Initiator, aggressive mode: sent SA/KE/Ni/ID, expect SA/KE/Nr/ID/HASH_R.
    ExpectAggressiveReply {
        sai_b: Vec<u8>,
        dh: DhKeyPair,
        ni: Vec<u8>,
        our_id: IdPayload,
    },
    /// Responder: expect the initiator's first message (main or aggressive).
    ExpectSa,
    /// Responder, main mode: sent SA, expect KE/Ni (message 3).
    ExpectKe {
        sai_b: Vec<u8>,
        choice: IkeChoice,
    },
    /// Responder, main mode: sent KE/Nr, expect ID/HASH_I (message 5).
    ExpectIdHashI {
        t: Transcript,
        choice: IkeChoice,
    },
    /// Responder, aggressive mode: sent HASH_R, expect HASH_I (message 3).
    ExpectHashI {
        t: Transcript,
        choice: IkeChoice,
        peer_id: Identity,
        /// IDii_b as the initiator sent it in message 1.
        idii_b: Vec<u8>,
    },
    Established(Phase1Info),
    /// Failed or closed: everything is ignored. What was negotiated, if phase 1
    /// got that far, stays readable.
    Dead(Option<Phase1Info>),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ExpectSaReply { .. } => "ExpectSaReply",
            State::ExpectKeReply { .. } => "ExpectKeReply",
            State::ExpectIdHash { .. } => "ExpectIdHash",
            State::ExpectAggressiveReply { .. } => "ExpectAggressiveReply",
            State::ExpectSa => "ExpectSa",
            State::ExpectKe { .. } => "ExpectKe",
            State::ExpectIdHashI { .. } => "ExpectIdHashI",
            State::ExpectHashI { .. } => "ExpectHashI",
            State::Established(_) => "Established",
            State::Dead(_) => "Dead",
        }
    }
}

/// Where a handled phase 1 message leads.
enum Next {
    /// Not usable after all (counted or reported): the state stays.
    Stay,
    /// On to the state, sending what goes with it.
    To(State, Send),
}

/// What a state change sends.
enum Send {
    /// A message the peer answers: retransmitted until it does.
    Request(Vec<u8>),
    /// A last message: sent once (the peer's retransmission brings it again).
    Last(Vec<u8>),
    Nothing,
}

/// The phase 1 exchange of one ISAKMP SA. See the [module docs](self).
pub(crate) struct Phase1 {
    state: State,
    /// Our last message, retransmitted until the peer answers it.
    pending: Option<Pending>,
    /// Responder, half open (message 1 answered, our cookie not yet returned): when
    /// the negotiation is forgotten if the initiator does not go on.
    half_open_until: Option<Instant>,
}

impl std::fmt::Debug for Phase1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.state.name())
    }
}

impl Phase1 {
    /// Initiator: picks our cookie and sends message 1.
    pub fn initiate(ctx: &mut IsakmpSa, now: Instant) -> Phase1 {
        let cookie = ctx.new_cookie();
        ctx.set_icookie(cookie);
        let mut p = Phase1 {
            state: State::Dead(None),
            pending: None,
            half_open_until: None,
        };
        let next = match ctx.config().mode {
            ExchangeMode::Main => main_mode::start(ctx),
            ExchangeMode::Aggressive => aggressive::start(ctx),
        };
        p.enter(ctx, now, next);
        p
    }

    /// Responder: waits for the initiator's first message.
    pub fn respond() -> Phase1 {
        Phase1 {
            state: State::ExpectSa,
            pending: None,
            half_open_until: None,
        }
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }
    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Dead(_))
    }
    /// The negotiated parameters, once established (also after the SA ended).
    pub fn info(&self) -> Option<&Phase1Info> {
        match &self.state {
            State::Established(i) | State::Dead(Some(i)) => Some(i),
            _ => None,
        }
    }
    /// A responder waiting for the first message of an initiator.
    pub fn expects_first_message(&self) -> bool {
        matches!(self.state, State::ExpectSa)
    }
    /// A responder that answered a first message and waits for the initiator to
    /// come back with our cookie (main mode message 3, aggressive mode message 3).
    /// Until then nothing proves the initiator is at the address it claims, so a
    /// new first message replaces this negotiation (one half-open negotiation per
    /// responder) and it is forgotten after [`super::RetransmitConfig::total`].
    pub fn half_open(&self) -> bool {
        matches!(
            self.state,
            State::ExpectKe { .. } | State::ExpectHashI { .. }
        )
    }
    /// Back to waiting for a first message: the half-open negotiation (or the
    /// refused first message) is forgotten, with what the context learnt from it.
    pub fn reset_responder(&mut self, ctx: &mut IsakmpSa) {
        self.state = State::ExpectSa;
        self.pending = None;
        self.half_open_until = None;
        ctx.forget_negotiation();
    }
    /// The initiator of main mode waits for the answer to its authentication: a
    /// message that cannot be read now means the keys (the PSKs) differ.
    pub fn awaits_auth_reply(&self) -> bool {
        matches!(self.state, State::ExpectIdHash { .. })
    }
    /// Failed or closed: nothing more happens.
    pub fn kill(&mut self) {
        let info = match std::mem::replace(&mut self.state, State::Dead(None)) {
            State::Established(i) | State::Dead(Some(i)) => Some(i),
            _ => None,
        };
        self.state = State::Dead(info);
        self.pending = None;
    }

    /// Whether a message with this header belongs to this ISAKMP SA now.
    pub fn cookies_match(&self, ctx: &IsakmpSa, h: &Header) -> bool {
        match (ctx.role(), &self.state) {
            (Role::Responder, State::ExpectSa) => {
                h.responder_cookie == [0; 8] && h.initiator_cookie != [0; 8]
            }
            (
                Role::Initiator,
                State::ExpectSaReply { .. } | State::ExpectAggressiveReply { .. },
            ) => {
                // The reply brings the responder cookie; a plaintext notify may not.
                h.initiator_cookie == ctx.icookie()
            }
            _ => {
                h.initiator_cookie == ctx.icookie()
                    && (h.responder_cookie == ctx.rcookie()
                        || h.responder_cookie == [0; 8]
                            && h.exchange == ExchangeType::INFORMATIONAL
                            && h.flags & Header::FLAG_ENCRYPTION == 0)
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        let pending = self.pending.as_ref().map(|p| p.deadline);
        [pending, self.half_open_until].into_iter().flatten().min()
    }

    /// Resends our last message when due; an error when the tries are used up.
    pub fn timeout(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Result<(), Error> {
        if self.half_open_until.is_some_and(|t| now >= t) {
            // The initiator never came back with our cookie: forget it, wait for another.
            ctx.dropped();
            self.reset_responder(ctx);
            return Ok(());
        }
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        if now < p.deadline {
            return Ok(());
        }
        let cfg = ctx.config().retransmit;
        if let Some(d) = p.on_timeout(now, &cfg) {
            ctx.resend(d);
            return Ok(());
        }
        if ctx.role() == Role::Responder && self.half_open() {
            // Our answer to a first message went unanswered: forget it, as above.
            ctx.dropped();
            self.reset_responder(ctx);
            return Ok(());
        }
        Err(if self.awaits_auth_reply() {
            Error::AuthenticationFailed(match ctx.config().auth {
                Auth::Psk(_) => {
                    "the gateway did not answer our authentication: pre-shared key mismatch?"
                        .into()
                }
                _ => "the gateway did not answer our authentication: certificate or identity not accepted?".into(),
            })
        } else {
            Error::NotResponding(cfg.tries.saturating_sub(1))
        })
    }

    /// A phase 1 message (message id 0, main or aggressive mode). `Some(info)`
    /// when it completed phase 1 (the [`Event::Phase1Established`] is queued).
    pub fn handle(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<Option<Phase1Info>, Error> {
        let expected = match &self.state {
            State::ExpectSaReply { .. }
            | State::ExpectKeReply { .. }
            | State::ExpectIdHash { .. }
            | State::ExpectKe { .. }
            | State::ExpectIdHashI { .. } => ExchangeType::IDENTITY_PROTECTION,
            State::ExpectAggressiveReply { .. } | State::ExpectHashI { .. } => {
                ExchangeType::AGGRESSIVE
            }
            State::ExpectSa => header.exchange,
            // Late retransmissions of phase 1 messages after the fact.
            State::Established(_) | State::Dead(_) => {
                ctx.dropped();
                return Ok(None);
            }
        };
        if header.exchange != expected {
            ctx.dropped();
            return Ok(None);
        }
        let m = Msg { header, data, now };
        let next = match &self.state {
            State::ExpectSaReply { sai_b } => main_mode::on_sa_reply(ctx, &m, sai_b)?,
            State::ExpectKeReply {
                sai_b,
                choice,
                dh,
                ni,
            } => main_mode::on_ke_reply(ctx, &m, sai_b, choice, dh, ni)?,
            State::ExpectIdHash { t, choice } => main_mode::on_id_hash(ctx, &m, t, choice)?,
            State::ExpectAggressiveReply {
                sai_b,
                dh,
                ni,
                our_id,
            } => aggressive::on_reply(ctx, &m, sai_b, dh, ni, our_id)?,
            State::ExpectSa if header.exchange == ExchangeType::IDENTITY_PROTECTION => {
                responder::on_main1(ctx, &m)?
            }
            State::ExpectSa if header.exchange == ExchangeType::AGGRESSIVE => {
                responder::on_aggressive1(ctx, &m)?
            }
            State::ExpectKe { sai_b, choice } => responder::on_main3(ctx, &m, sai_b, choice)?,
            State::ExpectIdHashI { t, choice } => responder::on_main5(ctx, &m, t, choice)?,
            State::ExpectHashI {
                t,
                choice,
                peer_id,
                idii_b,
            } => responder::on_aggressive3(ctx, &m, t, choice, peer_id, idii_b)?,
            _ => {
                ctx.dropped();
                Next::Stay
            }
        };
        Ok(self.enter(ctx, now, next))
    }

    /// Takes a state change: sends what goes with it; reports an established SA.
    fn enter(&mut self, ctx: &mut IsakmpSa, now: Instant, next: Next) -> Option<Phase1Info> {
        let Next::To(state, send) = next else {
            return None;
        };
        match send {
            Send::Request(d) => {
                self.pending = Some(Pending::new(d.clone(), now, &ctx.config().retransmit));
                ctx.send(d);
            }
            Send::Last(d) => {
                self.pending = None;
                ctx.send(d);
            }
            Send::Nothing => {}
        }
        self.state = state;
        self.half_open_until = if ctx.role() == Role::Responder && self.half_open() {
            let patience = ctx.config().retransmit.total();
            Some(super::now_plus(now, patience))
        } else {
            None
        };
        let State::Established(info) = &self.state else {
            return None;
        };
        self.pending = None;
        ctx.event(Event::Phase1Established(info.clone()));
        Some(info.clone())
    }

    /// Plaintext notifies are unauthenticated: they can end a negotiation still in
    /// phase 1 (that is how gateways say "no proposal chosen"), never an established SA.
    pub fn plain_informational(&mut self, ctx: &mut IsakmpSa, data: &[u8]) -> Result<(), Error> {
        if matches!(self.state, State::Established(_) | State::ExpectSa)
            || ctx.role() == Role::Responder
        {
            ctx.dropped();
            return Ok(());
        }
        let Some(msg) = decode_plain(ctx, data) else {
            return Ok(());
        };
        for p in &msg.payloads {
            if let Payload::Notify(n) = p
                && n.kind.is_error()
            {
                if self.awaits_auth_reply()
                    && matches!(
                        n.kind,
                        NotifyType::PAYLOAD_MALFORMED
                            | NotifyType::INVALID_PAYLOAD_TYPE
                            | NotifyType::INVALID_HASH_INFORMATION
                            | NotifyType::AUTHENTICATION_FAILED
                    )
                {
                    return Err(psk_mismatch());
                }
                return Err(Error::from_notify(n.kind, &n.data));
            }
        }
        ctx.dropped();
        Ok(())
    }
}

/// The message being handled.
struct Msg<'a> {
    header: &'a Header,
    data: &'a [u8],
    now: Instant,
}

/// The established state: what was negotiated.
fn established(ctx: &IsakmpSa, choice: &IkeChoice, peer_id: Identity) -> State {
    let cfg = ctx.config();
    State::Established(Phase1Info {
        mode: cfg.mode,
        proposal: choice.proposal,
        lifetime: choice
            .lifetime
            .unwrap_or(cfg.ike_lifetime)
            .min(cfg.ike_lifetime),
        local_id: keys::our_identity(ctx),
        peer_id,
        initiator_cookie: ctx.icookie(),
        responder_cookie: ctx.rcookie(),
        nat_t: ctx.udp_encapsulation(),
        nat: ctx.nat(),
    })
}

fn decode_plain(ctx: &mut IsakmpSa, data: &[u8]) -> Option<Message> {
    match Message::decode_received(data) {
        Ok(m) => Some(m),
        Err(e) => {
            ctx.refuse("a phase 1 message", e);
            None
        }
    }
}

/// The vendor IDs of our first message.
fn our_vendor_ids(ctx: &IsakmpSa) -> Vec<Payload> {
    let cfg = ctx.config();
    let mut v = vec![
        Payload::VendorId(VID_XAUTH.to_vec()),
        Payload::VendorId(VID_UNITY.to_vec()),
    ];
    if cfg.fragmentation {
        v.push(Payload::VendorId(
            super::fragment::VID_FRAGMENTATION.to_vec(),
        ));
    }
    if cfg.dpd.is_some() {
        v.push(Payload::VendorId(VID_DPD.to_vec()));
    }
    if cfg.nat_traversal != NatTraversal::Off {
        v.extend(natt::our_vendor_ids().into_iter().map(Payload::VendorId));
    }
    v
}

/// The vendor IDs a responder answers with: the NAT-T dialect it speaks, DPD,
/// fragmentation.
fn responder_vendor_ids(ctx: &IsakmpSa) -> Vec<Payload> {
    let mut v: Vec<Payload> = ctx
        .natt()
        .map(|n| Payload::VendorId(natt::vendor_id_for(n)))
        .into_iter()
        .collect();
    if ctx.config().dpd.is_some() {
        v.push(Payload::VendorId(VID_DPD.to_vec()));
    }
    if ctx.config().fragmentation {
        v.push(Payload::VendorId(
            super::fragment::VID_FRAGMENTATION.to_vec(),
        ));
    }
    v
}

/// Proposals usable in this exchange: aggressive mode sends one KE, so only
/// proposals with the first proposal's group can be offered.
fn offerable(ctx: &IsakmpSa) -> Vec<crate::algs::IkeProposal> {
    let cfg = ctx.config();
    match cfg.mode {
        ExchangeMode::Main => cfg.ike_proposals.clone(),
        ExchangeMode::Aggressive => {
            let g = cfg.ike_proposals[0].group;
            cfg.ike_proposals
                .iter()
                .copied()
                .filter(|p| p.group == g)
                .collect()
        }
    }
}

/// Cisco's XAuth vendor ID (draft-ietf-ipsra-isakmp-xauth-06) and the Cisco Unity
/// vendor ID: gateways send split-include and banners only to Unity clients.
const VID_XAUTH: [u8; 8] = [0x09, 0x00, 0x26, 0x89, 0xdf, 0xd6, 0xb7, 0x12];
const VID_UNITY: [u8; 16] = [
    0x12, 0xf5, 0xf2, 0x8c, 0x45, 0x71, 0x68, 0xa9, 0x70, 0x2d, 0x9f, 0xe2, 0x74, 0xcc, 0x01, 0x00,
];

fn check_nonce(n: &[u8]) -> Result<(), Error> {
    if (8..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(Error::Malformed(format!("nonce of {} bytes", n.len())))
    }
}

fn find_sa(p: &[Payload]) -> Option<&codec::SaPayload> {
    p.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s),
        _ => None,
    })
}

fn find_ke(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k.as_slice()),
        _ => None,
    })
}

fn find_nonce(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

fn find_id_payload(p: &[Payload]) -> Option<&IdPayload> {
    p.iter().find_map(|p| match p {
        Payload::Id(i) => Some(i),
        _ => None,
    })
}

fn find_hash(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Hash(h) => Some(h.as_slice()),
        _ => None,
    })
}

fn identity_of(id: &IdPayload) -> Identity {
    Identity {
        kind: id.id_type,
        data: id.data.clone(),
    }
}

/// The raw body of the first ID payload of a decrypted message and the identity
/// it names.
fn find_id(o: &Opened) -> Option<(Vec<u8>, Identity)> {
    o.payloads.iter().find_map(|d| match &d.payload {
        Payload::Id(i) => {
            let body = o.plain.get(d.span.start + 4..d.span.end)?.to_vec();
            Some((body, identity_of(i)))
        }
        _ => None,
    })
}

/// The SA payload body exactly as received (hashes cover the peer's bytes).
fn raw_sa_body(datagram: &[u8]) -> Option<Vec<u8>> {
    raw_body(datagram, PayloadType::SA)
}

fn raw_id_body(datagram: &[u8]) -> Option<Vec<u8>> {
    raw_body(datagram, PayloadType::ID)
}

fn raw_body(datagram: &[u8], kind: PayloadType) -> Option<Vec<u8>> {
    let h = Header::decode(datagram).ok()?;
    let body = datagram.get(Header::LEN..h.length as usize)?;
    let decoded =
        codec::decode_received_payloads(h.next_payload, body, Trailing::Alignment).ok()?;
    let d = decoded.iter().find(|d| d.payload.kind() == kind)?;
    body.get(d.span.start + 4..d.span.end).map(<[u8]>::to_vec)
}
