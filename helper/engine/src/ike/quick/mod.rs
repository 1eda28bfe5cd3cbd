//! Quick Mode (RFC 2409 §5.5), both roles, under an established phase 1 SA.
//!
//! ```text
//! Initiator                          Responder
//! HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]  -->
//!            <--  HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr]
//! HDR*, HASH(3)                      -->
//! ```
//! HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
//! HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
//! HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
//!
//! [`QuickModes`] owns the quick modes under way and the finished ones it still
//! answers retransmissions of; it is handed the [`IsakmpSa`] context and reads
//! the established SA pairs ([`Children`]) for SPIs and selectors. A completed
//! quick mode comes out as a [`NewChild`] for the caller to record. Files:
//! `mod.rs` (the machine, the initiator, KEYMAT), `responder.rs` (quick modes the
//! peer starts), `ids.rs` (traffic selectors as ID payloads).

mod ids;
mod responder;

pub(crate) use ids::{id_to_ts, ts_to_id};

use std::time::Instant;

use crate::algs::{DhGroup, EspProposal};
use crate::codec::{
    self, ExchangeType, Header, IdPayload, NotifyPayload, NotifyType, Payload, ProtocolId,
};
use crate::crypto::{self, DhKeyPair};

use super::exchange::Pending;
use super::rekey::{Children, NewChild};
use super::sa::{self, EspChoice};
use super::sa_ctx::{IsakmpSa, Opened};
use super::{ChildConfig, ChildSa, Error, EspKeys, Event, Role};

/// Finished quick modes remembered to answer retransmissions.
const DONE_KEEP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QmState {
    /// Initiator: sent HASH(1)..., expect HASH(2)...
    ExpectQmReply,
    /// Responder: sent HASH(2)..., expect HASH(3).
    ExpectHash3,
}

/// A quick mode in progress.
struct Quick {
    mid: u32,
    role: Role,
    state: QmState,
    iv: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhKeyPair>,
    /// Responder: the PFS shared secret, kept with the exchange until keys are derived.
    g_qm: Vec<u8>,
    spi_in: u32,
    spi_out: u32,
    child: ChildConfig,
    /// Initiator: the proposals offered (the reply must pick one of them).
    offered: Vec<EspProposal>,
    choice: Option<EspChoice>,
    /// IDs as sent in message 1 (checked against the reply).
    ids: Option<(IdPayload, IdPayload)>,
    pending: Option<Pending>,
    /// Responder: the request and our answer, for retransmissions.
    last: Option<(Vec<u8>, Vec<u8>)>,
    /// Initiator: the inbound SPI of the SA this quick mode replaces (rekey).
    rekey_of: Option<u32>,
}

/// The quick modes of one ISAKMP SA. See the [module docs](self).
#[derive(Default)]
pub(crate) struct QuickModes {
    active: Vec<Quick>,
    /// Finished quick modes: message id and our last message, for retransmissions.
    done: Vec<(u32, Option<Vec<u8>>)>,
    /// The phase 2 proposals left out of the offer were named in an [`Event::Note`].
    esp_offer_noted: bool,
}

impl QuickModes {
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.active
            .iter()
            .filter_map(|q| q.pending.as_ref().map(|p| p.deadline))
            .min()
    }

    /// Drops every quick mode under way (the IKE SA is gone).
    pub fn clear(&mut self, ctx: &mut IsakmpSa) {
        for q in self.active.drain(..) {
            ctx.release_message_id(q.mid);
        }
    }

    /// Forgets the finished quick modes (their ISAKMP SA was replaced).
    pub fn forget_done(&mut self, ctx: &mut IsakmpSa) {
        for (mid, _) in self.done.drain(..) {
            ctx.release_message_id(mid);
        }
    }

    fn add(&mut self, ctx: &mut IsakmpSa, q: Quick) {
        ctx.hold_message_id(q.mid);
        self.active.push(q);
    }

    fn remove(&mut self, ctx: &mut IsakmpSa, i: usize) -> Quick {
        let q = self.active.remove(i);
        ctx.release_message_id(q.mid);
        q
    }

    fn remember_done(&mut self, ctx: &mut IsakmpSa, mid: u32, last: Option<Vec<u8>>) {
        if self.done.len() >= DONE_KEEP {
            let (old, _) = self.done.remove(0);
            ctx.release_message_id(old);
        }
        ctx.hold_message_id(mid);
        self.done.push((mid, last));
    }

    /// An authenticated error notify from the peer: the quick mode it names (by
    /// our SPI, or the only one under way) failed.
    pub fn refused_by_peer(&mut self, ctx: &mut IsakmpSa, n: &NotifyPayload) {
        if let Some(spi) = sa::spi_u32(&n.spi) {
            if let Some(i) = self.active.iter().position(|q| q.spi_in == spi) {
                self.remove(ctx, i);
            }
        } else if self.active.len() == 1 {
            self.clear(ctx);
        }
    }

    /// Initiator: starts a quick mode for `child`; `rekey_of` names the SA (by
    /// inbound SPI) it replaces; `phase1_group` is phase 1's DH group.
    pub fn start(
        &mut self,
        ctx: &mut IsakmpSa,
        children: &Children,
        phase1_group: Option<DhGroup>,
        now: Instant,
        child: ChildConfig,
        rekey_of: Option<u32>,
    ) {
        let mid = ctx.new_message_id();
        let spi_in = self.new_spi(ctx, children);
        let proposals = self.offered_esp(ctx, phase1_group);
        let Some(first) = proposals.first().copied() else {
            ctx.event(Event::Phase2Failed(Error::Local(
                "no phase 2 proposals configured".into(),
            )));
            return;
        };
        let ni = ctx.random::<32>().to_vec();
        let dh = first.group.map(|g| DhKeyPair::generate(g, ctx.rng()));
        let cfg = ctx.config();
        let mut rest = vec![
            Payload::Sa(sa::esp_offer(
                &proposals,
                spi_in,
                sa::encap_mode(cfg.encapsulation, ctx.udp_encapsulation()),
                cfg.esp_lifetime,
                cfg.esp_lifetime_kb,
            )),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(dh) = &dh {
            rest.push(Payload::Ke(dh.public().to_vec()));
        }
        let ids = match (child.local, child.remote) {
            (Some(l), Some(r)) => Some((ts_to_id(&l), ts_to_id(&r))),
            _ => None,
        };
        if let Some((ci, cr)) = &ids {
            rest.push(Payload::Id(ci.clone()));
            rest.push(Payload::Id(cr.clone()));
        }
        rest.extend(nat_oa_payloads(ctx, true));
        let iv = ctx.exchange_iv(mid);
        if ctx.keys().is_none() {
            return;
        }
        match ctx.seal_hashed(ExchangeType::QUICK, mid, &[], &rest, &iv) {
            Ok((d, last)) => {
                let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
                let q = Quick {
                    mid,
                    role: Role::Initiator,
                    state: QmState::ExpectQmReply,
                    iv: last,
                    ni,
                    nr: Vec::new(),
                    dh,
                    g_qm: Vec::new(),
                    spi_in,
                    spi_out: 0,
                    child,
                    offered: proposals,
                    choice: None,
                    ids,
                    pending: Some(pending),
                    last: None,
                    rekey_of,
                };
                self.add(ctx, q);
                ctx.send(d);
            }
            Err(e) => ctx.event(Event::Phase2Failed(e)),
        }
    }

    /// Proposals that can go in one offer: those sharing one PFS group, the one phase 1
    /// agreed on when a proposal names it ([`sa::select_esp`]). The first time some are
    /// left out, one line says which and why.
    fn offered_esp(&mut self, ctx: &mut IsakmpSa, phase1: Option<DhGroup>) -> Vec<EspProposal> {
        let sel = sa::select_esp(&ctx.config().esp_proposals, phase1);
        if !self.esp_offer_noted
            && let Some(line) = sel.note()
        {
            self.esp_offer_noted = true;
            ctx.event(Event::Note(line));
        }
        sel.offered
    }

    fn new_spi(&self, ctx: &mut IsakmpSa, children: &Children) -> u32 {
        loop {
            let spi = u32::from_be_bytes(ctx.random::<4>());
            if spi > 0xffff
                && !children.uses_spi(spi)
                && !self.active.iter().any(|q| q.spi_in == spi)
            {
                return spi;
            }
        }
    }

    /// Our quick modes that still wait for the gateway's first answer: their first
    /// message again, now (the gateway showed it had missed our last answer, so it
    /// may have ignored them). Their retransmission schedules are unchanged.
    pub fn resend_unanswered(&mut self, ctx: &mut IsakmpSa) {
        for q in &self.active {
            if q.role == Role::Initiator
                && q.state == QmState::ExpectQmReply
                && let Some(p) = &q.pending
            {
                ctx.resend(p.datagram.clone());
            }
        }
    }

    /// Every quick mode under way is ours, unanswered after `sends` sends and due
    /// again: the gateway may have dropped the ISAKMP SA they run under.
    pub fn all_unanswered(&self, now: Instant, sends: u32) -> bool {
        !self.active.is_empty()
            && self.active.iter().all(|q| {
                q.role == Role::Initiator
                    && q.state == QmState::ExpectQmReply
                    && q.pending
                        .as_ref()
                        .is_some_and(|p| p.sent >= sends && now >= p.deadline)
            })
    }

    /// Resends what is due; a quick mode out of tries fails (phase 1 stays).
    pub fn timeouts(&mut self, ctx: &mut IsakmpSa, now: Instant) {
        let cfg = ctx.config().retransmit;
        let mut resend = Vec::new();
        let mut failed = Vec::new();
        for (i, q) in self.active.iter_mut().enumerate() {
            if let Some(p) = q.pending.as_mut()
                && now >= p.deadline
            {
                match p.on_timeout(now, &cfg) {
                    Some(d) => resend.push(d),
                    None => failed.push(i),
                }
            }
        }
        for d in resend {
            ctx.resend(d);
        }
        for i in failed.into_iter().rev() {
            let q = self.remove(ctx, i);
            let tries = cfg.tries.saturating_sub(1);
            let e = match q.role {
                Role::Initiator => Error::NotResponding(tries),
                Role::Responder => Error::Local("the peer never confirmed a quick mode".into()),
            };
            ctx.event(Event::Phase2Failed(e));
        }
    }

    /// A quick mode message. `Some` when it completed an SA pair.
    pub fn handle(
        &mut self,
        ctx: &mut IsakmpSa,
        children: &Children,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<Option<NewChild>, Error> {
        let mid = header.message_id;
        if mid == 0 {
            ctx.dropped();
            return Ok(None);
        }
        // Retransmissions of finished exchanges get our last message again.
        if let Some((_, last)) = self.done.iter().find(|(m, _)| *m == mid) {
            if let Some(d) = last.clone() {
                ctx.resend(d);
            }
            return Ok(None);
        }
        if let Some(i) = self.active.iter().position(|q| q.mid == mid) {
            if let Some((req, resp)) = &self.active[i].last
                && req.as_slice() == data
            {
                let resp = resp.clone();
                ctx.resend(resp);
                return Ok(None);
            }
            let Ok(opened) = ctx.open(header, data, &self.active[i].iv) else {
                ctx.dropped();
                return Ok(None);
            };
            return match self.active[i].state {
                QmState::ExpectQmReply => self.on_quick2(ctx, i, header, opened),
                QmState::ExpectHash3 => Ok(self.on_quick3(ctx, i, header, &opened)),
            };
        }
        // A new quick mode started by the peer.
        let iv = ctx.exchange_iv(mid);
        let Ok(opened) = ctx.open(header, data, &iv) else {
            ctx.dropped();
            return Ok(None);
        };
        self.on_quick1(ctx, children, now, header, data, opened)
            .map(|()| None)
    }

    /// Initiator: the reply (HASH(2), SA, Nr...) in, HASH(3) out: established.
    fn on_quick2(
        &mut self,
        ctx: &mut IsakmpSa,
        i: usize,
        header: &Header,
        opened: Opened,
    ) -> Result<Option<NewChild>, Error> {
        let ni = self.active[i].ni.clone();
        if !ctx.verify_hash(header, &opened, &[&ni]) {
            ctx.dropped();
            return Ok(None);
        }
        let checked = read_reply(&opened).and_then(|r| check_reply(ctx, &self.active[i], r));
        let (choice, spi_out, nr, g_qm) = match checked {
            Ok(v) => v,
            Err(e) => {
                self.remove(ctx, i);
                return Err(e);
            }
        };
        let Some(keys) = ctx.keys() else {
            return Ok(None);
        };
        let hash3 = crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&[0u8], &header.message_id.to_be_bytes(), &ni, &nr],
        );
        let (first, body) = codec::encode_payloads(&[Payload::Hash(hash3)]);
        let (d, _) = ctx.seal(
            ExchangeType::QUICK,
            header.message_id,
            first,
            body,
            &opened.last_block,
        )?;
        let q = self.remove(ctx, i);
        let keys = Keying {
            spi_out,
            ni: &ni,
            nr: &nr,
            g_qm: g_qm.as_deref().map(|v| v.as_slice()),
        };
        let child = child_sa(ctx, &q, &choice, &keys);
        self.remember_done(ctx, q.mid, Some(d.clone()));
        ctx.send(d);
        Ok(Some(NewChild {
            child,
            config: q.child,
            rekey_of: q.rekey_of,
            by_peer: false,
        }))
    }
}

/// What the gateway's quick mode reply holds.
struct Reply {
    sa: Option<codec::SaPayload>,
    nr: Option<Vec<u8>>,
    ke: Option<Vec<u8>>,
    ids: Vec<IdPayload>,
    /// RESPONDER-LIFETIME notify data.
    lifetime: Option<Vec<u8>>,
}

/// The payloads of a reply; an error notify in it is the quick mode's failure.
fn read_reply(opened: &Opened) -> Result<Reply, Error> {
    let mut r = Reply {
        sa: None,
        nr: None,
        ke: None,
        ids: Vec::new(),
        lifetime: None,
    };
    for d in &opened.payloads {
        match &d.payload {
            Payload::Sa(s) => r.sa = Some(s.clone()),
            Payload::Nonce(n) => r.nr = Some(n.clone()),
            Payload::Ke(k) => r.ke = Some(k.clone()),
            Payload::Id(id) => r.ids.push(id.clone()),
            Payload::Notify(n) if n.kind == NotifyType::RESPONDER_LIFETIME => {
                r.lifetime = Some(n.data.clone())
            }
            Payload::Notify(n) if n.kind.is_error() => {
                return Err(Error::from_notify(n.kind, &n.data));
            }
            _ => {}
        }
    }
    Ok(r)
}

/// The shared PFS secret of a quick mode (`None` without PFS).
type PfsSecret = Option<zeroize::Zeroizing<Vec<u8>>>;

/// Checks the reply against our offer: the choice (with RESPONDER-LIFETIME
/// applied), the peer's SPI, Nr and the PFS secret.
fn check_reply(
    ctx: &IsakmpSa,
    q: &Quick,
    r: Reply,
) -> Result<(EspChoice, u32, Vec<u8>, PfsSecret), Error> {
    let sa_p =
        r.sa.ok_or_else(|| Error::Malformed("quick mode reply without SA".into()))?;
    let nr =
        r.nr.ok_or_else(|| Error::Malformed("quick mode reply without nonce".into()))?;
    check_nonce(&nr)?;
    let udp = ctx.udp_encapsulation().is_some();
    let (mut choice, spi_out) =
        sa::check_esp_reply(&sa_p, &q.offered, ctx.config().encapsulation, udp)?;
    if let Some((ci, cr)) = &q.ids
        && (r.ids.len() != 2 || r.ids[0] != *ci || r.ids[1] != *cr)
    {
        return Err(Error::InvalidId(
            "the gateway answered with other traffic selectors".into(),
        ));
    }
    let g_qm = match (&q.dh, choice.proposal.group, r.ke) {
        (Some(dh), Some(_), Some(ke)) => Some(
            dh.shared_secret(&ke)
                .map_err(|e| Error::Malformed(format!("quick mode KE: {e}")))?,
        ),
        (None, None, None) => None,
        _ => {
            return Err(Error::NoProposalChosen(
                "PFS mismatch in the gateway's answer".into(),
            ));
        }
    };
    if let Some(data) = r.lifetime {
        let (secs, kb) = sa::parse_responder_lifetime(&data);
        choice.lifetime = min_opt(choice.lifetime, secs);
        choice.lifetime_kb = min_opt(choice.lifetime_kb, kb);
    }
    Ok((choice, spi_out, nr, g_qm))
}

/// RFC 3947 §5.2: in UDP-encapsulated transport mode each quick mode message carries
/// the original addresses (NAT-OAi, NAT-OAr) so the peer can fix TCP/UDP checksums.
fn nat_oa_payloads(ctx: &IsakmpSa, we_initiate: bool) -> Vec<Payload> {
    let Some(v) = ctx.udp_encapsulation() else {
        return Vec::new();
    };
    if ctx.config().encapsulation != super::Encapsulation::Transport {
        return Vec::new();
    }
    let (i, r) = if we_initiate {
        (ctx.local_ip(), ctx.remote().ip())
    } else {
        (ctx.remote().ip(), ctx.local_ip())
    };
    let oa = |ip| {
        let ts = super::TrafficSelector::host(ip);
        Payload::NatOa {
            draft: v.draft(),
            id: ts_to_id(&ts),
        }
    };
    vec![oa(i), oa(r)]
}

/// What KEYMAT is made of besides phase 1's SKEYID_d.
struct Keying<'a> {
    spi_out: u32,
    ni: &'a [u8],
    nr: &'a [u8],
    g_qm: Option<&'a [u8]>,
}

/// The SA pair a completed quick mode made, with its keys.
fn child_sa(ctx: &IsakmpSa, q: &Quick, choice: &EspChoice, k: &Keying<'_>) -> ChildSa {
    let p = choice.proposal;
    let enc_len = p.cipher.keymat_len();
    let auth_len = p.auth.map(|a| a.key_len()).unwrap_or(0);
    let keys = ctx.keys();
    let derive = |spi: u32| -> EspKeys {
        let Some(p1) = keys else {
            return EspKeys {
                encryption: Default::default(),
                integrity: Default::default(),
            };
        };
        let km = crypto::keymat(
            p1.prf,
            &p1.skeyid_d,
            k.g_qm,
            ProtocolId::ESP.0,
            &spi.to_be_bytes(),
            k.ni,
            k.nr,
            enc_len + auth_len,
        );
        EspKeys {
            encryption: zeroize::Zeroizing::new(km[..enc_len].to_vec()),
            integrity: zeroize::Zeroizing::new(km[enc_len..].to_vec()),
        }
    };
    let cfg = ctx.config();
    ChildSa {
        proposal: p,
        encapsulation: choice.encapsulation,
        udp_encapsulation: choice.udp,
        spi_in: q.spi_in,
        spi_out: k.spi_out,
        keys_in: derive(q.spi_in),
        keys_out: derive(k.spi_out),
        local_ts: q.child.local,
        remote_ts: q.child.remote,
        more_ts: Vec::new(),
        lifetime: choice
            .lifetime
            .unwrap_or(cfg.esp_lifetime)
            .min(cfg.esp_lifetime),
        lifetime_kb: min_opt(choice.lifetime_kb, cfg.esp_lifetime_kb),
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A quick mode nonce must be 8 to 256 bytes (RFC 2409 §5: the phase 1 rule holds
/// for Ni_b/Nr_b of quick mode too).
pub(super) fn check_nonce(n: &[u8]) -> Result<(), Error> {
    if (8..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(Error::Malformed(format!(
            "quick mode nonce of {} bytes",
            n.len()
        )))
    }
}
