//! Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18), both ways.
//!
//! The new IKE SA replaces the old one inside the same [`Ike2`]: new SPIs (the
//! initiator of the rekeying exchange owns SPIi and is the "original initiator" of
//! the new SA, so the I flag and the key directions may swap), keys from
//! SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), message IDs from zero. The
//! children are the engine's and simply carry on under the new SA. The old SA is kept
//! as a [`Retiring`] SA for a while: it answers the peer's retransmissions and its
//! DELETE, and carries our DELETE of it when we made the new one.
//!
//! Simultaneous rekeying (§2.8.2): both exchanges are answered; when ours completes
//! the SA made with the lowest of the four nonces is redundant and is deleted by the
//! side that made it, the other is kept by both.

use std::time::{Duration, Instant};

use super::codec::{Header, Payload, Proposal, exchange, flags, notify, proto};
use super::keys::{self, IkeKeys};
use super::{Ike2, Request, State, error_from_notify, ike_transforms, later};
use super::{notify_payload, offered_ike, random};
use crate::algs::{DhGroup, IkeProposal};
use crate::crypto::DhKeyPair;
use crate::ike::{Error, Event, Role};

/// The IKE SA is rekeyed at this share of its lifetime (initiator).
const IKE_REKEY_AT_PERCENT: u32 = 88;

/// At most this many old (or redundant) IKE SAs are kept answering.
const MAX_RETIRING: usize = 3;

/// Our CREATE_CHILD_SA rekeying the IKE SA, in flight.
pub(super) struct IkeRekey {
    spi: [u8; 8],
    ni: Vec<u8>,
    dh: DhKeyPair,
    /// The peer's simultaneous rekey we answered (its new SA), decided on when ours
    /// completes.
    theirs: Option<NewSa>,
}

/// A new IKE SA, made by either side's rekeying exchange.
pub(super) struct NewSa {
    spi_i: [u8; 8],
    spi_r: [u8; 8],
    keys: IkeKeys,
    /// We initiated the exchange that made it (we are its original initiator).
    ike_initiator: bool,
    proposal: IkeProposal,
    ni: Vec<u8>,
    nr: Vec<u8>,
}

impl NewSa {
    fn lowest_nonce(&self) -> &[u8] {
        self.ni.as_slice().min(self.nr.as_slice())
    }
}

/// An IKE SA that was replaced: it answers requests still sent on it (a
/// retransmission, the peer's DELETE) and carries our DELETE of it.
pub(super) struct Retiring {
    spi_i: [u8; 8],
    spi_r: [u8; 8],
    keys: IkeKeys,
    ike_initiator: bool,
    last_response: Option<(u32, Vec<u8>)>,
    peer_next_id: u32,
    /// Our next request's message ID on it.
    next_id: u32,
    /// Our DELETE of it: message ID, datagram, times sent, next retransmission.
    delete: Option<(u32, Vec<u8>, u32, Instant)>,
    /// Forgotten at this moment whatever happened.
    until: Instant,
}

impl Ike2 {
    pub(super) fn ike_rekey_time(&self) -> Duration {
        self.config.ike_lifetime * IKE_REKEY_AT_PERCENT / 100
    }

    /// A failed rekey is tried again after 20 to 30 s (at most a tenth of the
    /// lifetime), at a random moment so two peers that collided do not again.
    fn ike_rekey_retry(&mut self, now: Instant) -> Instant {
        let jitter = u64::from(random::<1>(&mut *self.rng)[0]) * 10_000 / 255;
        let wait = Duration::from_millis(20_000 + jitter).min(self.config.ike_lifetime / 10);
        later(now, wait)
    }

    /// How long a replaced SA keeps answering: every retransmission of a request.
    fn retire_window(&self) -> Duration {
        let r = self.config.retransmit;
        let total: Duration = (1..=r.tries).map(|n| r.wait_after(n)).sum();
        total.max(Duration::from_secs(10))
    }

    /// Command: rekey the IKE SA now. False when it is not up or another request is in
    /// flight (the timer tries again).
    pub fn rekey_ike(&mut self, now: Instant) -> bool {
        self.start_ike_rekey(now, None)
    }

    /// Starts CREATE_CHILD_SA {SA(IKE, new SPIi), Ni, KEi} on the current SA, the KE
    /// in `group` or the current SA's group.
    pub(super) fn start_ike_rekey(&mut self, now: Instant, group: Option<DhGroup>) -> bool {
        if self.state != State::Established
            || self.pending.is_some()
            || self.rekey.is_some()
            || self.ike_rekey.is_some()
        {
            return false;
        }
        let Some(current) = self.proposal else {
            return false;
        };
        let group = group.unwrap_or(current.group);
        // The current proposal first, then the others on the KE's group.
        let mut props = vec![current];
        props.extend(
            self.config
                .ike_proposals
                .iter()
                .filter(|p| **p != current)
                .copied(),
        );
        props.sort_by_key(|p| p.group != group);
        let spi = self.new_ike_spi();
        let ni = random::<32>(&mut *self.rng).to_vec();
        let dh = DhKeyPair::generate(group, &mut *self.rng);
        let payloads = vec![
            Payload::Sa(
                props
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Proposal {
                        number: (i + 1).min(255) as u8,
                        protocol: proto::IKE,
                        spi: spi.to_vec(),
                        transforms: ike_transforms(p),
                    })
                    .collect(),
            ),
            Payload::Nonce(ni.clone()),
            Payload::Ke {
                group: group.ike_id(),
                data: dh.public().to_vec(),
            },
        ];
        self.ike_rekey = Some(IkeRekey {
            spi,
            ni,
            dh,
            theirs: None,
        });
        self.ike_rekey_due = None;
        self.outbox_ev
            .push_back(Event::Note("ike: rekeying the IKE SA".into()));
        self.request(now, Request::RekeyIke, exchange::CREATE_CHILD_SA, &payloads);
        self.next_id = self.next_id.wrapping_add(1);
        true
    }

    fn new_ike_spi(&mut self) -> [u8; 8] {
        loop {
            let s: [u8; 8] = random(&mut *self.rng);
            if s != [0; 8] && s != self.spi_i && s != self.spi_r {
                return s;
            }
        }
    }

    /// The answer to our IKE rekey.
    pub(super) fn on_ike_rekey_reply(&mut self, now: Instant, payloads: &[Payload]) {
        let Some(mut rk) = self.ike_rekey.take() else {
            return;
        };
        let theirs = rk.theirs.take();
        let ours = match self.rekeyed_ike(&rk, payloads) {
            Ok(sa) => sa,
            Err(Retry::Group(g)) => {
                self.outbox_ev.push_back(Event::Note(format!(
                    "ike: the gateway asked for DH group {} to rekey the IKE SA; retrying",
                    g.name()
                )));
                if let Some(t) = theirs {
                    // The peer's simultaneous rekey completed: it is the one.
                    self.adopt(now, t, false);
                } else {
                    self.start_ike_rekey(now, Some(g));
                }
                return;
            }
            Err(Retry::Later(e)) => {
                match theirs {
                    Some(t) => self.adopt(now, t, false),
                    None => {
                        self.outbox_ev.push_back(Event::Phase1RenewalFailed(e));
                        self.ike_rekey_due = Some(self.ike_rekey_retry(now));
                    }
                }
                return;
            }
        };
        let Some(theirs) = theirs else {
            self.adopt(now, ours, true);
            return;
        };
        // Simultaneous rekeying: the SA with the lowest nonce is redundant.
        self.outbox_ev.push_back(Event::Note(
            "ike: both sides rekeyed the IKE SA at once; keeping one".into(),
        ));
        if ours.lowest_nonce() < theirs.lowest_nonce() {
            // Ours loses: we delete it; the peer deletes the old SA.
            self.adopt(now, theirs, false);
            self.retire(now, ours, true);
        } else {
            // Theirs loses: the peer deletes it; we delete the old SA.
            self.adopt(now, ours, true);
            self.retire(now, theirs, false);
        }
    }

    fn rekeyed_ike(&mut self, rk: &IkeRekey, payloads: &[Payload]) -> Result<NewSa, Retry> {
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p {
                if *kind == notify::INVALID_KE_PAYLOAD {
                    let g = <[u8; 2]>::try_from(data.as_slice())
                        .ok()
                        .map(u16::from_be_bytes)
                        .and_then(DhGroup::from_ike)
                        .filter(|g| {
                            *g != rk.dh.group()
                                && self.config.ike_proposals.iter().any(|p| p.group == *g)
                        });
                    return Err(match g {
                        Some(g) => Retry::Group(g),
                        None => Retry::Later(Error::NoProposalChosen(
                            "the gateway asked for a Diffie-Hellman group we do not offer \
                             to rekey the IKE SA"
                                .into(),
                        )),
                    });
                }
                if *kind < notify::STATUS_FIRST {
                    return Err(Retry::Later(error_from_notify(*kind, data)));
                }
            }
        }
        let malformed = |s: &str| Retry::Later(Error::Malformed(s.into()));
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let Some([chosen]) = sa.map(Vec::as_slice) else {
            return Err(malformed("IKE rekey reply without exactly one proposal"));
        };
        let Ok(spi_r) = <[u8; 8]>::try_from(chosen.spi.as_slice()) else {
            return Err(malformed("IKE rekey reply with a bad SPI"));
        };
        if spi_r == [0; 8] {
            return Err(malformed("IKE rekey reply with a zero SPI"));
        }
        let group = rk.dh.group();
        let Some(proposal) = offered_ike(chosen)
            .into_iter()
            .find(|c| self.config.ike_proposals.contains(c) && c.group == group)
        else {
            return Err(Retry::Later(Error::NoProposalChosen(
                "the gateway chose an IKE proposal we did not offer (IKE rekey)".into(),
            )));
        };
        let nr = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n),
            _ => None,
        });
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group: g, data } if *g == group.ike_id() => Some(data),
            _ => None,
        });
        let (Some(nr), Some(ke)) = (nr, ke) else {
            return Err(malformed("IKE rekey reply without a nonce or KE"));
        };
        let shared = rk
            .dh
            .shared_secret(ke)
            .map_err(|e| Retry::Later(Error::Malformed(format!("IKE rekey KE: {e}"))))?;
        let Some(old) = &self.keys else {
            return Err(malformed("no IKE SA"));
        };
        let keys = keys::derive_rekey(
            old.prf,
            &old.sk_d,
            proposal.hash,
            proposal.cipher,
            &shared,
            &rk.ni,
            nr,
            &rk.spi,
            &spi_r,
        );
        Ok(NewSa {
            spi_i: rk.spi,
            spi_r,
            keys,
            ike_initiator: true,
            proposal,
            ni: rk.ni.clone(),
            nr: nr.clone(),
        })
    }

    /// The peer's CREATE_CHILD_SA rekeying the IKE SA (`sa` its proposals).
    pub(super) fn on_ike_rekey_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: &[Payload],
        sa: &[Proposal],
    ) {
        let refuse = |e: &mut Ike2, n: u16, data: Vec<u8>, why: &str| {
            e.outbox_ev.push_back(Event::Note(format!(
                "ike: refused the gateway's rekey of the IKE SA ({why})"
            )));
            e.respond_with(exchange::CREATE_CHILD_SA, id, &[notify_payload(n, data)]);
        };
        // A child exchange of ours in flight: the peer tries again (§2.25.2).
        if self.ike_rekey.is_none() && (self.pending.is_some() || self.rekey.is_some()) {
            return refuse(
                self,
                notify::TEMPORARY_FAILURE,
                Vec::new(),
                "another exchange in flight",
            );
        }
        if self.ike_rekey.as_ref().is_some_and(|r| r.theirs.is_some()) {
            return refuse(
                self,
                notify::TEMPORARY_FAILURE,
                Vec::new(),
                "a second rekey",
            );
        }
        let ni = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group, data } => Some((*group, data.clone())),
            _ => None,
        });
        let (Some(ni), Some((ke_group, ke))) = (ni, ke) else {
            return refuse(self, notify::INVALID_SYNTAX, Vec::new(), "no nonce or KE");
        };
        // Our preference order among what is offered with an 8-octet SPI.
        let offered: Vec<(u8, [u8; 8], IkeProposal)> = sa
            .iter()
            .filter_map(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok().map(|s| (p, s)))
            .filter(|(_, s)| *s != [0; 8])
            .flat_map(|(p, s)| offered_ike(p).into_iter().map(move |o| (p.number, s, o)))
            .collect();
        let Some((number, spi_i, chosen)) = self
            .config
            .ike_proposals
            .iter()
            .find_map(|o| offered.iter().find(|(_, _, t)| t == o).copied())
        else {
            return refuse(
                self,
                notify::NO_PROPOSAL_CHOSEN,
                Vec::new(),
                "no acceptable IKE proposal",
            );
        };
        if ke_group != chosen.group.ike_id() {
            return refuse(
                self,
                notify::INVALID_KE_PAYLOAD,
                chosen.group.ike_id().to_be_bytes().to_vec(),
                "another Diffie-Hellman group asked for",
            );
        }
        let dh = DhKeyPair::generate(chosen.group, &mut *self.rng);
        let Ok(shared) = dh.shared_secret(&ke) else {
            return refuse(self, notify::INVALID_SYNTAX, Vec::new(), "a bad KE");
        };
        let spi_r = self.new_ike_spi();
        let nr = random::<32>(&mut *self.rng).to_vec();
        let Some(old) = &self.keys else {
            return;
        };
        let keys = keys::derive_rekey(
            old.prf,
            &old.sk_d,
            chosen.hash,
            chosen.cipher,
            &shared,
            &ni,
            &nr,
            &spi_i,
            &spi_r,
        );
        let out = [
            Payload::Sa(vec![Proposal {
                number,
                protocol: proto::IKE,
                spi: spi_r.to_vec(),
                transforms: ike_transforms(&chosen),
            }]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: chosen.group.ike_id(),
                data: dh.public().to_vec(),
            },
        ];
        self.respond_with(exchange::CREATE_CHILD_SA, id, &out);
        let new = NewSa {
            spi_i,
            spi_r,
            keys,
            ike_initiator: false,
            proposal: chosen,
            ni,
            nr,
        };
        match self.ike_rekey.as_mut() {
            // Ours is in flight: decided when its answer comes.
            Some(r) => r.theirs = Some(new),
            None => self.adopt(now, new, false),
        }
    }

    /// Makes `new` the IKE SA; the current one retires (with our DELETE when
    /// `delete_old`).
    fn adopt(&mut self, now: Instant, new: NewSa, delete_old: bool) {
        let Some(old_keys) = self.keys.take() else {
            return;
        };
        let old = Retiring {
            spi_i: std::mem::replace(&mut self.spi_i, new.spi_i),
            spi_r: std::mem::replace(&mut self.spi_r, new.spi_r),
            keys: old_keys,
            ike_initiator: std::mem::replace(&mut self.ike_initiator, new.ike_initiator),
            last_response: self.last_response.take(),
            peer_next_id: self.peer_next_id,
            next_id: self.next_id,
            delete: None,
            until: later(now, self.retire_window()),
        };
        // An answer still awaited on the old SA (none but a liveness check can be) is
        // not awaited any more.
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.kind == Request::Liveness)
        {
            self.pending = None;
        }
        self.keys = Some(new.keys);
        self.proposal = Some(new.proposal);
        self.next_id = 0;
        self.peer_next_id = 0;
        self.last_heard = Some(now);
        self.push_retiring(now, old, delete_old);
        if let Some(info) = self.phase1.as_mut() {
            info.proposal = new.proposal;
            info.initiator_cookie = self.spi_i;
            info.responder_cookie = self.spi_r;
            let info = info.clone();
            self.outbox_ev.push_back(Event::Phase1Renewed(info));
        }
        if self.role == Role::Initiator {
            self.ike_rekey_due = Some(later(now, self.ike_rekey_time()));
        }
    }

    /// Keeps a redundant new SA answering (and deletes it when `delete`).
    fn retire(&mut self, now: Instant, sa: NewSa, delete: bool) {
        let r = Retiring {
            spi_i: sa.spi_i,
            spi_r: sa.spi_r,
            keys: sa.keys,
            ike_initiator: sa.ike_initiator,
            last_response: None,
            peer_next_id: 0,
            next_id: 0,
            delete: None,
            until: later(now, self.retire_window()),
        };
        self.push_retiring(now, r, delete);
    }

    fn push_retiring(&mut self, now: Instant, mut r: Retiring, delete: bool) {
        if delete {
            let id = r.next_id;
            r.next_id = r.next_id.wrapping_add(1);
            let d = self.seal_retiring(
                &r,
                exchange::INFORMATIONAL,
                id,
                false,
                &[Payload::Delete {
                    protocol: proto::IKE,
                    spi_size: 0,
                    spis: Vec::new(),
                }],
            );
            r.delete = Some((
                id,
                d.clone(),
                1,
                later(now, self.config.retransmit.wait_after(1)),
            ));
            self.send_raw(d);
        }
        if self.retiring.len() >= MAX_RETIRING {
            self.retiring.remove(0);
        }
        self.retiring.push(r);
    }

    fn seal_retiring(
        &mut self,
        r: &Retiring,
        exch: u8,
        id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Vec<u8> {
        let mut f = 0;
        if r.ike_initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        let h = Header {
            spi_i: r.spi_i,
            spi_r: r.spi_r,
            next_payload: 0,
            exchange: exch,
            flags: f,
            message_id: id,
            length: 0,
        };
        r.keys.seal(h, payloads, r.ike_initiator, &mut *self.rng)
    }

    /// A message on a retiring SA: true when it was one (handled or dropped).
    pub(super) fn on_retiring(&mut self, data: &[u8], msg: &super::codec::Message) -> bool {
        let h = msg.header;
        let Some(i) = self
            .retiring
            .iter()
            .position(|r| r.spi_i == h.spi_i && r.spi_r == h.spi_r)
        else {
            return false;
        };
        let r = &self.retiring[i];
        if h.from_initiator() == r.ike_initiator {
            self.counters.dropped += 1;
            return true;
        }
        let chain = match r.keys.open(data, msg, h.from_initiator()) {
            Ok(c) => c,
            Err(_) => {
                self.counters.dropped += 1;
                return true;
            }
        };
        let payloads: Vec<Payload> = chain.payloads.into_iter().map(|d| d.payload).collect();
        if h.is_response() {
            if r.delete.as_ref().is_some_and(|d| d.0 == h.message_id) {
                // Our DELETE is answered: the SA is gone at both ends.
                self.retiring.remove(i);
            } else {
                self.counters.dropped += 1;
            }
            return true;
        }
        if let Some((last, resp)) = &r.last_response
            && *last == h.message_id
        {
            let d = resp.clone();
            self.send_raw(d);
            return true;
        }
        if h.message_id != r.peer_next_id {
            self.counters.dropped += 1;
            return true;
        }
        let deleted = h.exchange == exchange::INFORMATIONAL
            && payloads.iter().any(|p| {
                matches!(
                    p,
                    Payload::Delete {
                        protocol: proto::IKE,
                        ..
                    }
                )
            });
        // The old SA makes nothing new: only INFORMATIONAL is answered (empty).
        let answer = if h.exchange == exchange::INFORMATIONAL {
            Vec::new()
        } else {
            vec![notify_payload(notify::TEMPORARY_FAILURE, Vec::new())]
        };
        let (exch, id) = (h.exchange, h.message_id);
        let r = self.retiring.remove(i);
        let d = self.seal_retiring(&r, exch, id, true, &answer);
        self.send_raw(d.clone());
        if !deleted {
            self.retiring.insert(
                i.min(self.retiring.len()),
                Retiring {
                    last_response: Some((id, d)),
                    peer_next_id: id.wrapping_add(1),
                    ..r
                },
            );
        }
        true
    }

    /// Retransmits our DELETEs on retiring SAs; forgets those whose time is up.
    pub(super) fn retiring_timeout(&mut self, now: Instant) {
        let cfg = self.config.retransmit;
        let mut resend = Vec::new();
        self.retiring.retain_mut(|r| {
            if now >= r.until {
                return false;
            }
            if let Some((_, d, sent, deadline)) = r.delete.as_mut()
                && now >= *deadline
            {
                if *sent >= cfg.tries {
                    // No answer to our DELETE: the peer forgets it on its own.
                    return false;
                }
                *sent += 1;
                *deadline = later(now, cfg.wait_after(*sent));
                resend.push(d.clone());
            }
            true
        });
        for d in resend {
            self.counters.retransmits += 1;
            self.send_raw(d);
        }
    }

    /// The earliest moment a retiring SA needs attention.
    pub(super) fn retiring_deadline(&self) -> Option<Instant> {
        self.retiring
            .iter()
            .map(|r| r.delete.as_ref().map_or(r.until, |d| d.3.min(r.until)))
            .min()
    }
}

/// Why our IKE rekey did not make a new SA.
enum Retry {
    /// The peer asked for this group: start again with it.
    Group(DhGroup),
    /// Anything else: try again later.
    Later(Error),
}
