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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::codec::{
    self, ExchangeType, Header, IdPayload, IdType, NotifyPayload, NotifyType, Payload, PayloadType,
    ProtocolId,
};
use crate::crypto::{self, DhKeyPair};

use super::exchange::Pending;
use super::phase1::{Ike, Opened, split_hash};
use super::sa::{self, DOI_IPSEC, EspChoice};
use super::{ChildConfig, ChildSa, Error, EspKeys, Event, Role, TrafficSelector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QmState {
    /// Initiator: sent HASH(1)..., expect HASH(2)...
    ExpectQmReply,
    /// Responder: sent HASH(2)..., expect HASH(3).
    ExpectHash3,
}

/// A quick mode in progress.
pub(crate) struct Quick {
    pub mid: u32,
    role: Role,
    state: QmState,
    iv: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<DhKeyPair>,
    peer_ke: Vec<u8>,
    pub spi_in: u32,
    spi_out: u32,
    child: ChildConfig,
    /// Initiator: the proposals offered (the reply must pick one of them).
    offered: Vec<crate::algs::EspProposal>,
    choice: Option<EspChoice>,
    /// IDs as sent in message 1 (checked against the reply).
    ids: Option<(IdPayload, IdPayload)>,
    pending: Option<Pending>,
    /// Responder: the request and our answer, for retransmissions.
    last: Option<(Vec<u8>, Vec<u8>)>,
    /// Initiator: the inbound SPI of the SA this quick mode replaces (rekey).
    pub rekey_of: Option<u32>,
}

impl Quick {
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }
}

impl Ike {
    /// Initiator: starts a quick mode for one child.
    pub(super) fn start_quick(&mut self, now: Instant, child: ChildConfig) {
        self.start_quick_for(now, child, None);
    }

    /// Starts a quick mode; `rekey_of` names the SA (by inbound SPI) it replaces.
    pub(super) fn start_quick_for(
        &mut self,
        now: Instant,
        child: ChildConfig,
        rekey_of: Option<u32>,
    ) {
        let mid = self.new_message_id();
        let spi_in = self.new_spi();
        let proposals = self.offered_esp();
        let Some(first) = proposals.first().copied() else {
            self.out.events.push_back(Event::Phase2Failed(Error::Local(
                "no phase 2 proposals configured".into(),
            )));
            return;
        };
        let ni = super::random_bytes::<32>(&mut *self.rng).to_vec();
        let dh = first.group.map(|g| DhKeyPair::generate(g, &mut *self.rng));
        let mut rest = vec![
            Payload::Sa(sa::esp_offer(
                &proposals,
                spi_in,
                sa::encap_mode(self.config.encapsulation, self.udp_encapsulation()),
                self.config.esp_lifetime,
                self.config.esp_lifetime_kb,
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
        rest.extend(self.nat_oa_payloads(true));
        let iv = self.exchange_iv(mid);
        let Some(keys) = self.phase1_keys() else {
            return;
        };
        let (first_type, body) = codec::encode_payloads(&rest);
        let hash1 = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), &body]);
        let mut all = Vec::new();
        Payload::Hash(hash1).encode_with_next(first_type, &mut all);
        all.extend_from_slice(&body);
        match self.seal(ExchangeType::QUICK, mid, PayloadType::HASH, all, &iv) {
            Ok((d, last)) => {
                let pending = Pending::new(d.clone(), now, &self.config.retransmit);
                self.quick.push(Quick {
                    mid,
                    role: Role::Initiator,
                    state: QmState::ExpectQmReply,
                    iv: last,
                    ni,
                    nr: Vec::new(),
                    dh,
                    peer_ke: Vec::new(),
                    spi_in,
                    spi_out: 0,
                    child,
                    offered: proposals,
                    choice: None,
                    ids,
                    pending: Some(pending),
                    last: None,
                    rekey_of,
                });
                self.send_raw(d);
            }
            Err(e) => self.out.events.push_back(Event::Phase2Failed(e)),
        }
    }

    /// RFC 3947 §5.2: in UDP-encapsulated transport mode each quick mode message carries
    /// the original addresses (NAT-OAi, NAT-OAr) so the peer can fix TCP/UDP checksums.
    fn nat_oa_payloads(&self, we_initiate: bool) -> Vec<Payload> {
        let Some(v) = self.udp_encapsulation() else {
            return Vec::new();
        };
        if self.config.encapsulation != super::Encapsulation::Transport {
            return Vec::new();
        }
        let (i, r) = if we_initiate {
            (self.local_ip(), self.remote().ip())
        } else {
            (self.remote().ip(), self.local_ip())
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

    /// Proposals that can go in one offer: those sharing one PFS group, the one phase 1
    /// agreed on when a proposal names it ([`sa::select_esp`]). The first time some are
    /// left out, one line says which and why.
    fn offered_esp(&mut self) -> Vec<crate::algs::EspProposal> {
        let phase1 = self.info.as_ref().map(|i| i.proposal.group);
        let sel = sa::select_esp(&self.config.esp_proposals, phase1);
        if !self.esp_offer_noted
            && let Some(line) = sel.note()
        {
            self.esp_offer_noted = true;
            self.out.events.push_back(Event::Note(line));
        }
        sel.offered
    }

    fn new_spi(&mut self) -> u32 {
        loop {
            let spi = u32::from_be_bytes(super::random_bytes::<4>(&mut *self.rng));
            if spi > 0xffff
                && !self.children.iter().any(|c| c.spi_in == spi)
                && !self.quick.iter().any(|q| q.spi_in == spi)
            {
                return spi;
            }
        }
    }

    pub(super) fn quick_timeouts(&mut self, now: Instant) {
        let cfg = self.config.retransmit;
        let mut resend = Vec::new();
        let mut failed = Vec::new();
        for (i, q) in self.quick.iter_mut().enumerate() {
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
            self.counters.retransmits += 1;
            self.send_raw(d);
        }
        for i in failed.into_iter().rev() {
            let q = self.quick.remove(i);
            let tries = cfg.tries.saturating_sub(1);
            let e = match q.role {
                Role::Initiator => Error::NotResponding(tries),
                Role::Responder => Error::Local("the peer never confirmed a quick mode".into()),
            };
            self.out.events.push_back(Event::Phase2Failed(e));
        }
    }

    pub(super) fn handle_quick(
        &mut self,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<(), Error> {
        let mid = header.message_id;
        if mid == 0 {
            self.counters.dropped += 1;
            return Ok(());
        }
        // Retransmissions of finished exchanges get our last message again.
        if let Some((_, last)) = self.quick_done.iter().find(|(m, _)| *m == mid) {
            if let Some(d) = last.clone() {
                self.counters.retransmits += 1;
                self.send_raw(d);
            }
            return Ok(());
        }
        if let Some(i) = self.quick.iter().position(|q| q.mid == mid) {
            if let Some((req, resp)) = &self.quick[i].last
                && req.as_slice() == data
            {
                let resp = resp.clone();
                self.counters.retransmits += 1;
                self.send_raw(resp);
                return Ok(());
            }
            let iv = self.quick[i].iv.clone();
            let Ok(opened) = self.open(header, data, &iv) else {
                self.counters.dropped += 1;
                return Ok(());
            };
            return match self.quick[i].state {
                QmState::ExpectQmReply => self.on_quick2(now, i, header, opened),
                QmState::ExpectHash3 => self.on_quick3(now, i, header, opened),
            };
        }
        // A new quick mode started by the peer.
        let iv = self.exchange_iv(mid);
        let Ok(opened) = self.open(header, data, &iv) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        self.on_quick1(now, header, data, opened)
    }

    fn verify_hash(&self, header: &Header, opened: &Opened, prefix: &[&[u8]]) -> bool {
        let Some(keys) = self.phase1_keys() else {
            return false;
        };
        let Some((hash, rest)) = split_hash(opened) else {
            return false;
        };
        let mid = header.message_id.to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&mid];
        parts.extend_from_slice(prefix);
        parts.push(rest);
        crypto::ct_eq(&crypto::prf(keys.prf, &keys.skeyid_a, &parts), hash)
    }

    fn on_quick2(
        &mut self,
        now: Instant,
        i: usize,
        header: &Header,
        opened: Opened,
    ) -> Result<(), Error> {
        let ni = self.quick[i].ni.clone();
        if !self.verify_hash(header, &opened, &[&ni]) {
            self.counters.dropped += 1;
            return Ok(());
        }
        let q = &self.quick[i];
        let offered = q.offered.clone();
        let mut sa_p = None;
        let (mut nr, mut ke, mut ids, mut rl) = (None, None, Vec::new(), None);
        for d in &opened.payloads {
            match &d.payload {
                Payload::Sa(s) => sa_p = Some(s),
                Payload::Nonce(n) => nr = Some(n.clone()),
                Payload::Ke(k) => ke = Some(k.clone()),
                Payload::Id(id) => ids.push(id.clone()),
                Payload::Notify(n) if n.kind == NotifyType::RESPONDER_LIFETIME => {
                    rl = Some(n.data.clone())
                }
                Payload::Notify(n) if n.kind.is_error() => {
                    self.quick.remove(i);
                    return Err(Error::from_notify(n.kind, &n.data));
                }
                _ => {}
            }
        }
        let result = (|| {
            let sa_p =
                sa_p.ok_or_else(|| Error::Malformed("quick mode reply without SA".into()))?;
            let nr = nr.ok_or_else(|| Error::Malformed("quick mode reply without nonce".into()))?;
            let udp = self.udp_encapsulation().is_some();
            let (choice, spi_out) =
                sa::check_esp_reply(sa_p, &offered, self.config.encapsulation, udp)?;
            if let Some((ci, cr)) = &q.ids
                && (ids.len() != 2 || ids[0] != *ci || ids[1] != *cr)
            {
                return Err(Error::InvalidId(
                    "the gateway answered with other traffic selectors".into(),
                ));
            }
            let g_qm = match (&q.dh, choice.proposal.group, ke) {
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
            Ok((choice, spi_out, nr, g_qm))
        })();
        let (mut choice, spi_out, nr, g_qm) = match result {
            Ok(v) => v,
            Err(e) => {
                self.quick.remove(i);
                return Err(e);
            }
        };
        if let Some(data) = rl {
            let (secs, kb) = sa::parse_responder_lifetime(&data);
            choice.lifetime = min_opt(choice.lifetime, secs);
            choice.lifetime_kb = min_opt(choice.lifetime_kb, kb);
        }
        let Some(keys) = self.phase1_keys() else {
            return Ok(());
        };
        let hash3 = crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&[0u8], &header.message_id.to_be_bytes(), &ni, &nr],
        );
        let (first, body) = codec::encode_payloads(&[Payload::Hash(hash3)]);
        let iv = opened.last_block.clone();
        let (d, _) = self.seal(ExchangeType::QUICK, header.message_id, first, body, &iv)?;
        let q = self.quick.remove(i);
        let child = self.child_sa(
            &q,
            &choice,
            spi_out,
            &ni,
            &nr,
            g_qm.as_deref().map(|v| v.as_slice()),
            Role::Initiator,
        );
        self.remember_done(q.mid, Some(d.clone()));
        self.send_raw(d);
        self.child_established(now, child, q.child.clone(), q.rekey_of);
        Ok(())
    }

    fn on_quick1(
        &mut self,
        now: Instant,
        header: &Header,
        data: &[u8],
        opened: Opened,
    ) -> Result<(), Error> {
        if !self.verify_hash(header, &opened, &[]) {
            self.counters.dropped += 1;
            return Ok(());
        }
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
        let refuse = |this: &mut Ike, e: Error| -> Result<(), Error> {
            if let Some(kind) = e.notify() {
                let n = NotifyPayload {
                    doi: DOI_IPSEC,
                    protocol: ProtocolId::ESP,
                    spi: Vec::new(),
                    kind,
                    data: Vec::new(),
                };
                this.send_informational(vec![Payload::Notify(n)]);
            }
            this.remember_done(mid, None);
            Err(e)
        };
        let (Some(sa_p), Some(ni)) = (sa_p, ni) else {
            return refuse(
                self,
                Error::Malformed("quick mode request without SA or nonce".into()),
            );
        };
        // Traffic selectors: the peer's (IDci) must lie in what we accept for it,
        // ours (IDcr) in what we have.
        let (local_ts, remote_ts) = match ids.as_slice() {
            [] => (None, None),
            [ci, cr] => match (id_to_ts(ci), id_to_ts(cr)) {
                (Some(peer), Some(ours)) => {
                    let ok = self.accepts_selectors(&peer, &ours);
                    if !ok {
                        return refuse(
                            self,
                            Error::InvalidId(format!(
                                "traffic selectors {peer} <-> {ours} are not allowed"
                            )),
                        );
                    }
                    (Some(ours), Some(peer))
                }
                _ => {
                    return refuse(
                        self,
                        Error::InvalidId("unsupported ID type in quick mode".into()),
                    );
                }
            },
            _ => {
                return refuse(
                    self,
                    Error::InvalidId(format!("{} IDs in quick mode", ids.len())),
                );
            }
        };
        let spi_in = self.new_spi();
        let (reply_sa, mut choice, spi_out) =
            match sa::choose_esp(&sa_p, &self.config.esp_proposals, spi_in) {
                Ok(v) => v,
                Err(e) => return refuse(self, e),
            };
        if choice.encapsulation != self.config.encapsulation
            || choice.udp != self.udp_encapsulation().is_some()
        {
            return refuse(
                self,
                Error::NoProposalChosen("encapsulation mode mismatch".into()),
            );
        }
        let nr = super::random_bytes::<32>(&mut *self.rng).to_vec();
        let (dh, g_qm) = match (choice.proposal.group, ke) {
            (Some(g), Some(ke)) => {
                let dh = DhKeyPair::generate(g, &mut *self.rng);
                match dh.shared_secret(&ke) {
                    Ok(s) => (Some(dh), Some(s)),
                    Err(e) => return refuse(self, Error::Malformed(format!("quick mode KE: {e}"))),
                }
            }
            (None, None) => (None, None),
            _ => return refuse(self, Error::NoProposalChosen("PFS mismatch".into())),
        };
        let mut rest = vec![Payload::Sa(reply_sa), Payload::Nonce(nr.clone())];
        if let Some(dh) = &dh {
            rest.push(Payload::Ke(dh.public().to_vec()));
        }
        if let [ci, cr] = ids.as_slice() {
            rest.push(Payload::Id(ci.clone()));
            rest.push(Payload::Id(cr.clone()));
        }
        rest.extend(self.nat_oa_payloads(false));
        let ours = self.config.esp_lifetime;
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
        let Some(keys) = self.phase1_keys() else {
            return Ok(());
        };
        let (first, body) = codec::encode_payloads(&rest);
        let hash2 = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), &ni, &body]);
        let mut all = Vec::new();
        Payload::Hash(hash2).encode_with_next(first, &mut all);
        all.extend_from_slice(&body);
        let (d, last) = self.seal(
            ExchangeType::QUICK,
            mid,
            PayloadType::HASH,
            all,
            &opened.last_block,
        )?;
        let child = ChildConfig {
            local: local_ts,
            remote: remote_ts,
        };
        // HASH(3) has no answer: if it is lost only our retransmission repairs it.
        let pending = Pending::new(d.clone(), now, &self.config.retransmit);
        self.quick.push(Quick {
            mid,
            role: Role::Responder,
            state: QmState::ExpectHash3,
            iv: last,
            ni,
            nr,
            dh: None,
            peer_ke: Vec::new(),
            spi_in,
            spi_out,
            child,
            offered: Vec::new(),
            choice: Some(choice),
            ids: None,
            pending: Some(pending),
            last: Some((data.to_vec(), d.clone())),
            rekey_of: None,
        });
        // Keep the PFS secret with the exchange until keys are derived.
        if let (Some(q), Some(s)) = (self.quick.last_mut(), g_qm) {
            q.peer_ke = s.to_vec();
        }
        self.send_raw(d);
        Ok(())
    }

    fn on_quick3(
        &mut self,
        now: Instant,
        i: usize,
        header: &Header,
        opened: Opened,
    ) -> Result<(), Error> {
        let q = &self.quick[i];
        let Some(keys) = self.phase1_keys() else {
            return Ok(());
        };
        let Some(first) = opened.payloads.first() else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let codec::Payload::Hash(h) = &first.payload else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let expected = crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&[0u8], &header.message_id.to_be_bytes(), &q.ni, &q.nr],
        );
        if !crypto::ct_eq(&expected, h) {
            self.counters.dropped += 1;
            return Ok(());
        }
        let q = self.quick.remove(i);
        let Some(choice) = q.choice.clone() else {
            return Ok(());
        };
        let g_qm = (!q.peer_ke.is_empty()).then(|| q.peer_ke.clone());
        let child = self.child_sa(
            &q,
            &choice,
            q.spi_out,
            &q.ni,
            &q.nr,
            g_qm.as_deref(),
            Role::Responder,
        );
        self.remember_done(q.mid, None);
        // A quick mode the peer started replaces ours with the same selectors (its rekey).
        let replaces = self
            .children
            .iter()
            .find(|c| {
                c.local_ts == child.local_ts
                    && match (c.remote_ts, child.remote_ts) {
                        (Some(a), Some(b)) => a.contains(&b) || b.contains(&a),
                        (a, b) => a == b,
                    }
            })
            .map(|c| c.spi_in);
        let cfg = q.child.clone();
        self.child_established(now, child, cfg, None);
        if let Some(old) = replaces {
            // The peer deletes the old SA itself; we only stop rekeying it.
            self.superseded(old);
        }
        Ok(())
    }

    fn remember_done(&mut self, mid: u32, last: Option<Vec<u8>>) {
        if self.quick_done.len() >= super::phase1::DONE_QUICK_KEEP_PUB {
            self.quick_done.remove(0);
        }
        self.quick_done.push((mid, last));
    }

    #[allow(clippy::too_many_arguments)]
    fn child_sa(
        &self,
        q: &Quick,
        choice: &EspChoice,
        spi_out: u32,
        ni: &[u8],
        nr: &[u8],
        g_qm: Option<&[u8]>,
        _role: Role,
    ) -> ChildSa {
        let p = choice.proposal;
        let enc_len = p.cipher.keymat_len();
        let auth_len = p.auth.map(|a| a.key_len()).unwrap_or(0);
        let keys = self.phase1_keys();
        let derive = |spi: u32| -> EspKeys {
            let Some(k) = keys else {
                return EspKeys {
                    encryption: Default::default(),
                    integrity: Default::default(),
                };
            };
            let km = crypto::keymat(
                k.prf,
                &k.skeyid_d,
                g_qm,
                ProtocolId::ESP.0,
                &spi.to_be_bytes(),
                ni,
                nr,
                enc_len + auth_len,
            );
            EspKeys {
                encryption: zeroize::Zeroizing::new(km[..enc_len].to_vec()),
                integrity: zeroize::Zeroizing::new(km[enc_len..].to_vec()),
            }
        };
        ChildSa {
            proposal: p,
            encapsulation: choice.encapsulation,
            udp_encapsulation: choice.udp,
            spi_in: q.spi_in,
            spi_out,
            keys_in: derive(q.spi_in),
            keys_out: derive(spi_out),
            local_ts: q.child.local,
            remote_ts: q.child.remote,
            lifetime: choice
                .lifetime
                .unwrap_or(self.config.esp_lifetime)
                .min(self.config.esp_lifetime),
            lifetime_kb: min_opt(choice.lifetime_kb, self.config.esp_lifetime_kb),
        }
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The ID payload for a traffic selector (a host address or a subnet).
pub(crate) fn ts_to_id(ts: &TrafficSelector) -> IdPayload {
    let (id_type, data) = match (ts.addr, ts.is_host()) {
        (IpAddr::V4(a), true) => (IdType::IPV4_ADDR, a.octets().to_vec()),
        (IpAddr::V6(a), true) => (IdType::IPV6_ADDR, a.octets().to_vec()),
        (IpAddr::V4(a), false) => {
            let mask = if ts.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - ts.prefix as u32)
            };
            let mut d = a.octets().to_vec();
            d.extend_from_slice(&mask.to_be_bytes());
            (IdType::IPV4_ADDR_SUBNET, d)
        }
        (IpAddr::V6(a), false) => {
            let mask = if ts.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - ts.prefix as u32)
            };
            let mut d = a.octets().to_vec();
            d.extend_from_slice(&mask.to_be_bytes());
            (IdType::IPV6_ADDR_SUBNET, d)
        }
    };
    IdPayload {
        id_type,
        protocol: 0,
        port: 0,
        data,
    }
}

/// The traffic selector an ID payload names; `None` for types that are not
/// addresses or for masks that are not a prefix.
pub(crate) fn id_to_ts(id: &IdPayload) -> Option<TrafficSelector> {
    let d = id.data.as_slice();
    match id.id_type {
        IdType::IPV4_ADDR => {
            let a: [u8; 4] = d.try_into().ok()?;
            Some(TrafficSelector::host(IpAddr::V4(Ipv4Addr::from(a))))
        }
        IdType::IPV6_ADDR => {
            let a: [u8; 16] = d.try_into().ok()?;
            Some(TrafficSelector::host(IpAddr::V6(Ipv6Addr::from(a))))
        }
        IdType::IPV4_ADDR_SUBNET => {
            let (a, m) = (d.get(..4)?, d.get(4..)?);
            let a: [u8; 4] = a.try_into().ok()?;
            let m = u32::from_be_bytes(m.try_into().ok()?);
            let prefix = m.leading_ones();
            (m.checked_shl(prefix).unwrap_or(0) == 0).then_some(())?;
            Some(TrafficSelector {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(a) & m)),
                prefix: prefix as u8,
            })
        }
        IdType::IPV6_ADDR_SUBNET => {
            let (a, m) = (d.get(..16)?, d.get(16..)?);
            let a: [u8; 16] = a.try_into().ok()?;
            let m = u128::from_be_bytes(m.try_into().ok()?);
            let prefix = m.leading_ones();
            (m.checked_shl(prefix).unwrap_or(0) == 0).then_some(())?;
            Some(TrafficSelector {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(a) & m)),
                prefix: prefix as u8,
            })
        }
        _ => None,
    }
}
