//! More than one CHILD_SA (RFC 7296 §1.3.1): the profile's further remote networks.
//!
//! The first child is negotiated in IKE_AUTH (`mod.rs`). Once the IKE SA is up, the
//! initiator asks for each further configured child with its own CREATE_CHILD_SA,
//! one at a time (window of 1): a fresh SPI and nonce, the ESP proposals (with a KE
//! when the profile asks for PFS) and the child's own selectors; the gateway may
//! narrow them (accepted when within ours). A child the gateway refuses
//! (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, SINGLE_PAIR_REQUIRED, ...) is one
//! `Event::Phase2Failed` naming its network; the IKE SA and the other children stay.
//!
//! As responder, a CREATE_CHILD_SA for a new child is accepted when its selectors
//! narrow to one of the configured children (the initiator's side to the virtual
//! address it was given, if any), with PFS when the request carries a KE.
//!
//! Each child has its own rekey timer (`Ike2::rekey_due`, keyed by its inbound SPI).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::codec::{Payload, Proposal, Selector, exchange, notify, transform};
use super::{
    Ike2, Keymat, Request, State, error_from_notify, esp_matches, esp_transforms, from_selector,
    later, notify_payload, random, spi_of, to_selector,
};
use crate::algs::DhGroup;
use crate::codec::NotifyType;
use crate::crypto::DhKeyPair;
use crate::ike::{ChildSa, Config, Error, Event, ModeConfigMode, TrafficSelector};

/// Our CREATE_CHILD_SA for a new child in flight.
pub(super) struct NewChild {
    pub(super) spi_in: u32,
    pub(super) ni: Vec<u8>,
    pub(super) dh: Option<DhKeyPair>,
    pub(super) local_ts: TrafficSelector,
    pub(super) remote_ts: TrafficSelector,
}

/// The children beyond the first.
#[derive(Default)]
pub(super) struct Extra {
    /// Initiator: the children still to ask for, in order (our side, the network).
    pub(super) queue: VecDeque<(TrafficSelector, TrafficSelector)>,
    /// Initiator: the one asked for now.
    pub(super) in_flight: Option<NewChild>,
    /// Responder: the virtual address the initiator was given in IKE_AUTH.
    pub(super) peer_vip: Option<Ipv4Addr>,
}

/// The children a configuration asks for, in order: our side (`None` when the
/// gateway's configuration payload decides it, or our own address) and the remote
/// network. With a configuration payload every child has our one inner address,
/// so a network is asked for once.
fn plan(config: &Config) -> Vec<(Option<TrafficSelector>, Option<TrafficSelector>)> {
    let cp = config.mode_config != ModeConfigMode::Off;
    let mut out: Vec<(Option<TrafficSelector>, Option<TrafficSelector>)> = Vec::new();
    for c in &config.children {
        let pair = (if cp { None } else { c.local }, c.remote);
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// How many CHILD_SAs an IKEv2 tunnel with this configuration negotiates (at least
/// one): the driver waits for them all (or their refusals) before saying connected.
pub fn planned_children(config: &Config) -> usize {
    plan(config).len().max(1)
}

/// The sentence for a child the gateway refused, naming its network.
fn child_refused(kind: u16, data: &[u8], remote: &TrafficSelector) -> Error {
    match kind {
        notify::NO_PROPOSAL_CHOSEN => Error::NoProposalChosen(format!(
            "the gateway accepted none of our ESP proposals for {remote} (a second child SA)"
        )),
        notify::TS_UNACCEPTABLE | notify::INVALID_SELECTORS => Error::InvalidId(format!(
            "the gateway refused a child SA for {remote} (no such network in its configuration: check remote_networks)"
        )),
        notify::SINGLE_PAIR_REQUIRED => Error::PeerNotify {
            kind: NotifyType(kind),
            name: "SINGLE_PAIR_REQUIRED".into(),
            detail: format!(": the gateway wants a single address pair, not {remote}"),
        },
        notify::NO_ADDITIONAL_SAS => Error::PeerNotify {
            kind: NotifyType(kind),
            name: "NO_ADDITIONAL_SAS".into(),
            detail: format!(
                ": the gateway takes no further child SA, so {remote} is not reachable"
            ),
        },
        other => match error_from_notify(other, data) {
            Error::PeerNotify { kind, name, detail } => Error::PeerNotify {
                kind,
                name,
                detail: format!("{detail} on the child SA for {remote}"),
            },
            e => e,
        },
    }
}

/// The longer of two prefixes when one holds the other (their intersection).
fn narrow(list: &[Selector], ours: &TrafficSelector) -> Option<TrafficSelector> {
    list.iter().filter_map(from_selector).find_map(|t| {
        if ours.contains(&t) {
            Some(t)
        } else if t.contains(ours) {
            Some(*ours)
        } else {
            None
        }
    })
}

fn find_ts(payloads: &[Payload], init: bool) -> Option<&[Selector]> {
    payloads.iter().find_map(|p| match p {
        Payload::Ts {
            initiator,
            selectors,
        } if *initiator == init => Some(selectors.as_slice()),
        _ => None,
    })
}

impl Ike2 {
    /// Initiator, IKE SA up with its first child `first`: queues the further
    /// children of the profile and asks for the first of them.
    pub(super) fn plan_more_children(&mut self, now: Instant, first: &ChildSa) {
        let cp = self.config.mode_config != ModeConfigMode::Off;
        // Our side of every child with a configuration payload: the inner address
        // the gateway gave (the first child's narrowed selector).
        let inner = self
            .mode_config
            .as_ref()
            .and_then(|m| m.address)
            .map(|a| TrafficSelector::host(IpAddr::V4(a)))
            .or(first.local_ts);
        let own = TrafficSelector::host(self.local.ip());
        for (local, remote) in plan(&self.config).into_iter().skip(1) {
            let local = if cp { inner } else { local.or(Some(own)) };
            match (local, remote) {
                (Some(l), Some(r)) if l.addr.is_ipv4() == r.addr.is_ipv4() => {
                    self.extra.queue.push_back((l, r));
                }
                // Counted by `planned_children`: said, so the driver stops waiting.
                (_, r) => self
                    .outbox_ev
                    .push_back(Event::Phase2Failed(Error::Local(format!(
                        "no child SA for {}: our inner address is of the other IP family",
                        r.map_or_else(|| "any network".to_string(), |r| r.to_string())
                    )))),
            }
        }
        self.start_next_child(now);
    }

    /// Asks for the next queued child (false: none, or a request is in flight).
    pub(super) fn start_next_child(&mut self, now: Instant) -> bool {
        if self.state != State::Established
            || self.pending.is_some()
            || self.extra.in_flight.is_some()
        {
            return false;
        }
        let Some((local_ts, remote_ts)) = self.extra.queue.pop_front() else {
            return false;
        };
        let spi_in = self.new_spi();
        let ni = random::<32>(&mut *self.rng).to_vec();
        let pfs = self.config.esp_proposals.first().and_then(|p| p.group);
        let dh = pfs.map(|g| DhKeyPair::generate(g, &mut *self.rng));
        let spi = spi_in.to_be_bytes().to_vec();
        let mut payloads = vec![
            Payload::Sa(
                self.config
                    .esp_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Proposal {
                        number: (i + 1).min(255) as u8,
                        protocol: super::proto::ESP,
                        spi: spi.clone(),
                        transforms: esp_transforms(p, p.group),
                    })
                    .collect(),
            ),
            Payload::Nonce(ni.clone()),
        ];
        if let Some(dh) = &dh {
            payloads.push(Payload::Ke {
                group: dh.group().ike_id(),
                data: dh.public().to_vec(),
            });
        }
        payloads.push(Payload::Ts {
            initiator: true,
            selectors: vec![to_selector(&local_ts)],
        });
        payloads.push(Payload::Ts {
            initiator: false,
            selectors: vec![to_selector(&remote_ts)],
        });
        self.extra.in_flight = Some(NewChild {
            spi_in,
            ni,
            dh,
            local_ts,
            remote_ts,
        });
        self.outbox_ev.push_back(Event::Note(format!(
            "ike: asking for a child SA for {remote_ts}"
        )));
        self.request(now, Request::NewChild, exchange::CREATE_CHILD_SA, &payloads);
        self.next_id = self.next_id.wrapping_add(1);
        true
    }

    /// The gateway's answer to our CREATE_CHILD_SA for a new child; then the next.
    pub(super) fn on_new_child_reply(&mut self, now: Instant, payloads: &[Payload]) {
        let Some(nc) = self.extra.in_flight.take() else {
            return;
        };
        match self.new_child_from_reply(&nc, payloads) {
            Ok(c) => {
                self.children.push(c.clone());
                self.set_rekey(c.spi_in, later(now, self.rekey_time()));
                self.outbox_ev.push_back(Event::Phase2Established(c));
            }
            Err(e) => self.outbox_ev.push_back(Event::Phase2Failed(e)),
        }
        self.start_next_child(now);
    }

    fn new_child_from_reply(&self, nc: &NewChild, payloads: &[Payload]) -> Result<ChildSa, Error> {
        let remote = &nc.remote_ts;
        for p in payloads {
            if let Payload::Notify { kind, data, .. } = p
                && *kind < notify::STATUS_FIRST
            {
                return Err(child_refused(*kind, data, remote));
            }
        }
        let sa = payloads.iter().find_map(|p| match p {
            Payload::Sa(v) => Some(v),
            _ => None,
        });
        let Some([chosen]) = sa.map(Vec::as_slice) else {
            return Err(Error::Malformed(format!(
                "the answer for the child SA for {remote} has not exactly one proposal"
            )));
        };
        let Some(ours) = self
            .config
            .esp_proposals
            .iter()
            .find(|o| esp_matches(chosen, o))
            .copied()
        else {
            return Err(Error::NoProposalChosen(format!(
                "the gateway chose an ESP proposal we did not offer for {remote}"
            )));
        };
        let spi_out = spi_of(chosen)
            .filter(|s| *s > 255)
            .ok_or_else(|| Error::Malformed(format!("the SPI of the child SA for {remote}")))?;
        let nr = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Nonce(n) => Some(n.as_slice()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::Malformed(format!(
                    "the answer for the child SA for {remote} has no nonce"
                ))
            })?;
        let shared = match &nc.dh {
            Some(dh) => {
                let ke = payloads
                    .iter()
                    .find_map(|p| match p {
                        Payload::Ke { group, data } if *group == dh.group().ike_id() => Some(data),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        Error::NoProposalChosen(format!(
                            "the gateway refused PFS ({}) for the child SA for {remote}",
                            dh.group().name()
                        ))
                    })?;
                Some(dh.shared_secret(ke).map_err(|e| {
                    Error::Malformed(format!("the KE for the child SA for {remote}: {e}"))
                })?)
            }
            None => None,
        };
        let pick = |init: bool, within: &TrafficSelector| {
            find_ts(payloads, init).and_then(|l| {
                l.iter()
                    .filter_map(from_selector)
                    .find(|t| within.contains(t))
            })
        };
        let (Some(local_ts), Some(remote_ts)) = (pick(true, &nc.local_ts), pick(false, remote))
        else {
            return Err(Error::InvalidId(format!(
                "the gateway's traffic selectors for {remote} are not within ours (or not whole subnets)"
            )));
        };
        let km = Keymat {
            ni: &nc.ni,
            nr,
            g_ir: shared.as_ref().map(|s| s.as_slice()),
            we_initiated: true,
        };
        Ok(self.make_child_with(ours, nc.spi_in, spi_out, local_ts, remote_ts, km))
    }

    /// The selectors a child request narrows to: the first configured child both
    /// lists fit (the initiator's side to `vip` when it was given one); `None` when
    /// none fits. (our side, the initiator's side)
    pub(super) fn narrow_to_config(
        &self,
        tsi: &[Selector],
        tsr: &[Selector],
        vip: Option<Ipv4Addr>,
    ) -> Option<(TrafficSelector, TrafficSelector)> {
        let any = super::any_v4();
        let configured: Vec<(TrafficSelector, TrafficSelector)> = if self.config.children.is_empty()
        {
            vec![(any, any)]
        } else {
            self.config
                .children
                .iter()
                .map(|c| (c.local.unwrap_or(any), c.remote.unwrap_or(any)))
                .collect()
        };
        configured.iter().find_map(|(ours, theirs)| {
            let their_side = match vip {
                Some(v) => TrafficSelector::host(IpAddr::V4(v)),
                None => *theirs,
            };
            Some((narrow(tsr, ours)?, narrow(tsi, &their_side)?))
        })
    }

    /// The peer's CREATE_CHILD_SA for a new child (no REKEY_SA): accepted when it
    /// narrows to a configured child, else refused with the notify saying why.
    pub(super) fn on_new_child_request(
        &mut self,
        now: Instant,
        id: u32,
        payloads: &[Payload],
        sa: &[Proposal],
    ) {
        let refuse = |e: &mut Ike2, n: u16, why: &str| {
            e.outbox_ev.push_back(Event::Note(format!(
                "ike: refused the peer's CREATE_CHILD_SA for a new child ({why})"
            )));
            e.respond_with(
                exchange::CREATE_CHILD_SA,
                id,
                &[notify_payload(n, Vec::new())],
            );
        };
        let ni = payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        });
        let Some(ni) = ni else {
            return refuse(self, notify::INVALID_SYNTAX, "no nonce");
        };
        let (Some(tsi), Some(tsr)) = (find_ts(payloads, true), find_ts(payloads, false)) else {
            return refuse(self, notify::TS_UNACCEPTABLE, "no traffic selectors");
        };
        let Some((local_ts, remote_ts)) = self.narrow_to_config(tsi, tsr, self.extra.peer_vip)
        else {
            return refuse(
                self,
                notify::TS_UNACCEPTABLE,
                "its selectors match no configured network",
            );
        };
        let Some((theirs, ours)) = self.config.esp_proposals.iter().find_map(|o| {
            sa.iter()
                .find(|t| esp_matches(t, o))
                .map(|t| (t.clone(), *o))
        }) else {
            return refuse(
                self,
                notify::NO_PROPOSAL_CHOSEN,
                "no acceptable ESP proposal",
            );
        };
        let Some(spi_out) = spi_of(&theirs).filter(|s| *s > 255) else {
            return refuse(self, notify::INVALID_SYNTAX, "bad SPI");
        };
        let ke = payloads.iter().find_map(|p| match p {
            Payload::Ke { group, data } => Some((*group, data.clone())),
            _ => None,
        });
        // PFS: the KE's group, which the chosen proposal must list; a KE is required
        // when we are configured for PFS.
        let (mut shared, mut ker, mut dh_group) = (None, None, None);
        match &ke {
            Some((g, data)) => {
                let listed = theirs
                    .transforms
                    .iter()
                    .any(|t| t.kind == transform::DH && t.id == *g);
                let Some(group) = DhGroup::from_ike(*g).filter(|_| listed) else {
                    return refuse(self, notify::NO_PROPOSAL_CHOSEN, "unsupported PFS group");
                };
                let dh = DhKeyPair::generate(group, &mut *self.rng);
                match dh.shared_secret(data) {
                    Ok(x) => shared = Some(x),
                    Err(_) => return refuse(self, notify::INVALID_SYNTAX, "bad KE"),
                }
                ker = Some(Payload::Ke {
                    group: group.ike_id(),
                    data: dh.public().to_vec(),
                });
                dh_group = Some(group);
            }
            None if ours.group.is_some() => {
                return refuse(self, notify::NO_PROPOSAL_CHOSEN, "PFS required, no KE");
            }
            None => {}
        }
        let spi_in = self.new_spi();
        let nr = random::<32>(&mut *self.rng).to_vec();
        let mut out = vec![
            Payload::Sa(vec![Proposal {
                number: theirs.number,
                protocol: super::proto::ESP,
                spi: spi_in.to_be_bytes().to_vec(),
                transforms: esp_transforms(&ours, dh_group),
            }]),
            Payload::Nonce(nr.clone()),
        ];
        out.extend(ker);
        // The exchange's initiator is the peer: TSi is its side.
        out.push(Payload::Ts {
            initiator: true,
            selectors: vec![to_selector(&remote_ts)],
        });
        out.push(Payload::Ts {
            initiator: false,
            selectors: vec![to_selector(&local_ts)],
        });
        self.respond_with(exchange::CREATE_CHILD_SA, id, &out);
        let km = Keymat {
            ni: &ni,
            nr: &nr,
            g_ir: shared.as_ref().map(|s| s.as_slice()),
            we_initiated: false,
        };
        let child = self.make_child_with(ours, spi_in, spi_out, local_ts, remote_ts, km);
        self.children.push(child.clone());
        if self.role == crate::ike::Role::Initiator {
            self.set_rekey(child.spi_in, later(now, self.rekey_time()));
        }
        self.outbox_ev.push_back(Event::Phase2Established(child));
    }

    /// Command: deletes the child with inbound SPI `spi_in` alone (an INFORMATIONAL
    /// with its DELETE; `Phase2Deleted` when the peer answers). False when there is
    /// no such child, the IKE SA is not up, or another request is in flight.
    pub fn delete_child(&mut self, now: Instant, spi_in: u32) -> bool {
        if self.state != State::Established || self.pending.is_some() {
            return false;
        }
        let Some(spi_out) = self
            .children
            .iter()
            .find(|c| c.spi_in == spi_in)
            .map(|c| c.spi_out)
        else {
            return false;
        };
        self.forget_rekey(spi_in);
        self.request(
            now,
            Request::DeleteOld { spi_in, spi_out },
            exchange::INFORMATIONAL,
            &[Payload::Delete {
                protocol: super::proto::ESP,
                spi_size: 4,
                spis: vec![spi_in.to_be_bytes().to_vec()],
            }],
        );
        self.next_id = self.next_id.wrapping_add(1);
        true
    }

    // ----- one rekey timer per child ------------------------------------------------

    /// The child with inbound SPI `spi_in` is due for a rekey at `at`.
    pub(super) fn set_rekey(&mut self, spi_in: u32, at: Instant) {
        self.rekey_due.retain(|(s, _)| *s != spi_in);
        self.rekey_due.push((spi_in, at));
    }

    pub(super) fn forget_rekey(&mut self, spi_in: u32) {
        self.rekey_due.retain(|(s, _)| *s != spi_in);
    }

    /// The earliest rekey of a child that still exists.
    pub(super) fn next_rekey(&self) -> Option<Instant> {
        self.rekey_due
            .iter()
            .filter(|(s, _)| self.children.iter().any(|c| c.spi_in == *s))
            .map(|(_, t)| *t)
            .min()
    }

    /// The child due for a rekey at `now` (its timer taken), if any; timers of
    /// children gone are dropped.
    pub(super) fn due_rekey(&mut self, now: Instant) -> Option<u32> {
        let children = &self.children;
        self.rekey_due
            .retain(|(s, _)| children.iter().any(|c| c.spi_in == *s));
        let (i, _) = self
            .rekey_due
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| *t <= now)
            .min_by_key(|(_, (_, t))| *t)?;
        Some(self.rekey_due.remove(i).0)
    }
}
