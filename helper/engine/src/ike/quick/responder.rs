//! Quick modes the peer starts (we are the quick mode responder): the request
//! checked (HASH(1), selectors, proposals, PFS) and answered, HASH(3) awaited.

use std::time::Instant;

use crate::codec::{
    ExchangeType, Header, IdPayload, NotifyPayload, NotifyType, Payload, ProtocolId,
};
use crate::crypto::{self, DhKeyPair};

use super::super::exchange::Pending;
use super::super::rekey::{Children, NewChild};
use super::super::sa::{self, DOI_IPSEC};
use super::super::sa_ctx::{IsakmpSa, Opened};
use super::super::{ChildConfig, Error, Role, TrafficSelector};
use super::{Keying, QmState, Quick, QuickModes, child_sa, id_to_ts, nat_oa_payloads};

impl QuickModes {
    /// Responder: a new quick mode (HASH(1), SA, Ni...) in, HASH(2)... out.
    pub(super) fn on_quick1(
        &mut self,
        ctx: &mut IsakmpSa,
        children: &Children,
        now: Instant,
        header: &Header,
        data: &[u8],
        opened: Opened,
    ) -> Result<(), Error> {
        if !ctx.verify_hash(header, &opened, &[]) {
            ctx.dropped();
            return Ok(());
        }
        let mid = header.message_id;
        match self.answer_quick1(ctx, children, now, header, data, opened) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Refused: say why (when a notify says it) and answer no more.
                if let Some(kind) = e.notify() {
                    let n = NotifyPayload {
                        doi: DOI_IPSEC,
                        protocol: ProtocolId::ESP,
                        spi: Vec::new(),
                        kind,
                        data: Vec::new(),
                    };
                    ctx.send_informational(vec![Payload::Notify(n)]);
                }
                self.remember_done(ctx, mid, None);
                Err(e)
            }
        }
    }

    fn answer_quick1(
        &mut self,
        ctx: &mut IsakmpSa,
        children: &Children,
        now: Instant,
        header: &Header,
        data: &[u8],
        opened: Opened,
    ) -> Result<(), Error> {
        let mut sa_p = None;
        let (mut ni, mut ke, mut ids) = (None, None, Vec::new());
        for d in &opened.payloads {
            match &d.payload {
                Payload::Sa(s) => sa_p = Some(s.clone()),
                Payload::Nonce(n) => ni = Some(n.clone()),
                Payload::Ke(k) => ke = Some(k.clone()),
                Payload::Id(id) => ids.push(id.clone()),
                _ => {}
            }
        }
        let mid = header.message_id;
        let (Some(sa_p), Some(ni)) = (sa_p, ni) else {
            return Err(Error::Malformed(
                "quick mode request without SA or nonce".into(),
            ));
        };
        super::check_nonce(&ni)?;
        let (local_ts, remote_ts) = requested_selectors(ctx, children, &ids)?;
        let spi_in = self.new_spi(ctx, children);
        let (reply_sa, mut choice, spi_out) =
            sa::choose_esp(&sa_p, &ctx.config().esp_proposals, spi_in)?;
        if choice.encapsulation != ctx.config().encapsulation
            || choice.udp != ctx.udp_encapsulation().is_some()
        {
            return Err(Error::NoProposalChosen(
                "encapsulation mode mismatch".into(),
            ));
        }
        let nr = ctx.random::<32>().to_vec();
        let (dh, g_qm) = match (choice.proposal.group, ke) {
            (Some(g), Some(ke)) => {
                let dh = DhKeyPair::generate(g, ctx.rng());
                match dh.shared_secret(&ke) {
                    Ok(s) => (Some(dh), Some(s)),
                    Err(e) => return Err(Error::Malformed(format!("quick mode KE: {e}"))),
                }
            }
            (None, None) => (None, None),
            _ => return Err(Error::NoProposalChosen("PFS mismatch".into())),
        };
        let mut rest = vec![Payload::Sa(reply_sa), Payload::Nonce(nr.clone())];
        if let Some(dh) = &dh {
            rest.push(Payload::Ke(dh.public().to_vec()));
        }
        if let [ci, cr] = ids.as_slice() {
            rest.push(Payload::Id(ci.clone()));
            rest.push(Payload::Id(cr.clone()));
        }
        rest.extend(nat_oa_payloads(ctx, false));
        let ours = ctx.config().esp_lifetime;
        if choice.lifetime.is_none_or(|l| l > ours) {
            rest.push(Payload::Notify(NotifyPayload {
                doi: DOI_IPSEC,
                protocol: ProtocolId::ESP,
                spi: spi_out.to_be_bytes().to_vec(),
                kind: NotifyType::RESPONDER_LIFETIME,
                data: sa::responder_lifetime_data(ours),
            }));
            choice.lifetime = Some(ours);
        }
        if ctx.keys().is_none() {
            return Ok(());
        }
        let (d, last) =
            ctx.seal_hashed(ExchangeType::QUICK, mid, &[&ni], &rest, &opened.last_block)?;
        // HASH(3) has no answer: if it is lost only our retransmission repairs it.
        let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
        let q = Quick {
            mid,
            role: Role::Responder,
            state: QmState::ExpectHash3,
            iv: last,
            ni,
            nr,
            dh: None,
            g_qm: g_qm.map(|s| s.to_vec()).unwrap_or_default(),
            spi_in,
            spi_out,
            child: ChildConfig {
                local: local_ts,
                remote: remote_ts,
            },
            offered: Vec::new(),
            choice: Some(choice),
            ids: None,
            pending: Some(pending),
            last: Some((data.to_vec(), d.clone())),
            rekey_of: None,
        };
        self.add(ctx, q);
        ctx.send(d);
        Ok(())
    }

    /// Responder: HASH(3) in: established.
    pub(super) fn on_quick3(
        &mut self,
        ctx: &mut IsakmpSa,
        i: usize,
        header: &Header,
        opened: &Opened,
    ) -> Option<NewChild> {
        let q = &self.active[i];
        let keys = ctx.keys()?;
        let Some(Payload::Hash(h)) = opened.payloads.first().map(|d| &d.payload) else {
            ctx.dropped();
            return None;
        };
        let expected = crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&[0u8], &header.message_id.to_be_bytes(), &q.ni, &q.nr],
        );
        if !crypto::ct_eq(&expected, h) {
            ctx.dropped();
            return None;
        }
        let q = self.remove(ctx, i);
        let choice = q.choice.clone()?;
        let keying = Keying {
            spi_out: q.spi_out,
            ni: &q.ni,
            nr: &q.nr,
            g_qm: (!q.g_qm.is_empty()).then_some(q.g_qm.as_slice()),
        };
        let child = child_sa(ctx, &q, &choice, &keying);
        self.remember_done(ctx, q.mid, None);
        Some(NewChild {
            child,
            config: q.child,
            rekey_of: None,
            by_peer: true,
        })
    }
}

/// Traffic selectors of a quick mode the peer starts: the peer's (IDci) must lie
/// in what we accept for it, ours (IDcr) in what we have. Returns (ours, peer's).
fn requested_selectors(
    ctx: &IsakmpSa,
    children: &Children,
    ids: &[IdPayload],
) -> Result<(Option<TrafficSelector>, Option<TrafficSelector>), Error> {
    match ids {
        [] => Ok((None, None)),
        [ci, cr] => match (id_to_ts(ci), id_to_ts(cr)) {
            (Some(peer), Some(ours)) => {
                if !children.accepts_selectors(ctx, &peer, &ours) {
                    return Err(Error::InvalidId(format!(
                        "traffic selectors {peer} <-> {ours} are not allowed"
                    )));
                }
                Ok((Some(ours), Some(peer)))
            }
            _ => Err(Error::InvalidId("unsupported ID type in quick mode".into())),
        },
        _ => Err(Error::InvalidId(format!("{} IDs in quick mode", ids.len()))),
    }
}
