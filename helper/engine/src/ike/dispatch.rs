//! The [`Ike`] object: owner of one ISAKMP SA's context and its sub-machines,
//! and the dispatcher between them.
//!
//! Each decoded datagram goes to the machine its exchange belongs to (phase 1,
//! quick mode, transaction, informational, or the renewal when it carries the
//! renewal's cookies); what one machine's step means for another (phase 1
//! established: start the setup and schedule the renewal; setup done: start
//! quick modes; quick mode done: record the SA pair; an error: fail the SA) is
//! decided here and nowhere else. The machines themselves share nothing but the
//! [`IsakmpSa`] context they are handed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::{
    DeletePayload, ExchangeType, Header, NotifyType, Payload, PayloadType, ProtocolId,
};
use crate::crypto::Rng;
use rand_chacha::rand_core::SeedableRng;

use super::dpd::Dpd;
use super::junk::JunkLog;
use super::phase1::Phase1;
use super::quick::QuickModes;
use super::rekey::Children;
use super::renew::{Progress, Renewal};
use super::sa::DOI_IPSEC;
use super::sa_ctx::IsakmpSa;
use super::transaction::{ModeConfigInfo, ModeConfigMode, Step, Transaction};
use super::{
    ChildConfig, ChildSa, Config, Counters, Credentials, Error, Event, NatState, NattVersion,
    Phase1Info, Role, Transmit,
};

/// Phase 1 messages larger than this are refused before decoding.
const MAX_DATAGRAM: usize = 64 * 1024;

/// The first quick modes after the setup, unanswered after this many sends with not
/// a word from the gateway since they started: the gateway has most likely dropped
/// the ISAKMP SA (strongSwan does so, silently, when a quick mode reaches it before
/// the XAuth ACK it is waiting for, and that ACK is never retransmitted on its own),
/// so the negotiation starts over, at most [`MAX_RESTARTS`] times. 3 sends: at 0, 1
/// and 3 s; the restart comes at 7 s, when the 4th send was due.
const RESTART_AFTER_SENDS: u32 = 3;
/// How many times one connect starts over ([`RESTART_AFTER_SENDS`]).
const MAX_RESTARTS: u8 = 2;

/// One IKEv1 phase 1 SA and its phase 2 SAs. See the [module docs](super).
pub struct Ike {
    /// What every exchange of this ISAKMP SA shares.
    pub(super) ctx: IsakmpSa,
    pub(super) phase1: Phase1,
    /// XAuth and Mode Config after phase 1.
    pub(super) setup: Transaction,
    pub(super) quick: QuickModes,
    /// The established ESP SA pairs and their rekey/expiry timers.
    pub(super) children: Children,
    pub(super) dpd: Dpd,
    pub(super) renewal: Renewal,
    /// The rate limit of the drop reports.
    junk: JunkLog,
    /// Initiator: when the setup started the first quick modes (cleared once one
    /// completes); see [`RESTART_AFTER_SENDS`].
    first_children_since: Option<Instant>,
    /// How many times the negotiation was started over ([`Ike::restart`]).
    restarts: u8,
}

impl std::fmt::Debug for Ike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ike")
            .field("role", &self.ctx.role())
            .field("state", &self.phase1)
            .finish_non_exhaustive()
    }
}

impl Ike {
    /// Starts phase 1 as initiator; the first message is ready in `poll_transmit`.
    /// `local` must be the concrete address the datagrams leave from.
    pub fn initiate(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: Box<dyn Rng + Send>,
    ) -> Result<Ike, Error> {
        Ike::start(config, local, remote, now, rng, false)
    }

    /// A phase 1 renewal: an initiator that never renews itself and whose setup
    /// only re-establishes the address.
    pub(super) fn initiate_renewal(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: Box<dyn Rng + Send>,
    ) -> Result<Ike, Error> {
        Ike::start(config, local, remote, now, rng, true)
    }

    fn start(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        rng: Box<dyn Rng + Send>,
        is_renewal: bool,
    ) -> Result<Ike, Error> {
        if config.ike_proposals.is_empty() {
            return Err(Error::Local("no phase 1 proposals configured".into()));
        }
        if let Some(p) = config.ike_proposals.iter().find(|p| p.ikev2_only()) {
            return Err(Error::Local(format!(
                "{p} is an IKEv2-only proposal and cannot be used with IKEv1"
            )));
        }
        let mut ctx = IsakmpSa::new(Role::Initiator, config, local, remote, rng);
        let phase1 = Phase1::initiate(&mut ctx, now);
        Ok(Ike::assemble(ctx, phase1, is_renewal))
    }

    /// A responder waiting for the initiator's first message.
    pub fn respond(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Ike {
        let ctx = IsakmpSa::new(Role::Responder, config, local, remote, rng);
        Ike::assemble(ctx, Phase1::respond(), false)
    }

    fn assemble(ctx: IsakmpSa, phase1: Phase1, is_renewal: bool) -> Ike {
        Ike {
            ctx,
            phase1,
            setup: Transaction::new(is_renewal),
            quick: QuickModes::default(),
            children: Children::default(),
            dpd: Dpd::default(),
            renewal: Renewal::new(is_renewal),
            junk: JunkLog::default(),
            first_children_since: None,
            restarts: 0,
        }
    }

    pub fn role(&self) -> Role {
        self.ctx.role()
    }
    pub fn is_established(&self) -> bool {
        self.phase1.is_established()
    }
    pub fn is_dead(&self) -> bool {
        self.phase1.is_dead()
    }
    pub fn phase1(&self) -> Option<&Phase1Info> {
        self.phase1.info()
    }
    pub fn children(&self) -> &[ChildSa] {
        &self.children.sas
    }
    pub fn counters(&self) -> Counters {
        self.ctx.counters()
    }
    pub fn remote(&self) -> SocketAddr {
        self.ctx.remote()
    }
    /// Where the NATs are (meaningful once phase 1 is past its key exchange).
    pub fn nat(&self) -> NatState {
        self.ctx.nat()
    }
    /// What Mode Config gave us, once it has.
    pub fn mode_config(&self) -> Option<&ModeConfigInfo> {
        self.setup.mode_config()
    }
    /// Phase 1, XAuth and Mode Config are all done: quick modes run or ran.
    pub fn setup_done(&self) -> bool {
        self.setup.is_done()
    }
    /// The NAT-T dialect in use when IKE and ESP are UDP-encapsulated on port 4500.
    pub fn udp_encapsulation(&self) -> Option<NattVersion> {
        self.ctx.udp_encapsulation()
    }

    /// A message of this SA's peer as the peer would seal it: `HDR*, HASH(1), body`
    /// under the shared keys, HASH computed over `body` whatever it holds (see
    /// [`super::harness`]). `None` before the keys exist or for message id 0.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn seal_as_peer(
        &self,
        exchange: crate::codec::ExchangeType,
        mid: u32,
        first: PayloadType,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        if mid == 0 {
            return None;
        }
        self.ctx.seal_hashed_raw(exchange, mid, first, body).ok()
    }

    /// The cookies of this ISAKMP SA (initiator's, responder's).
    pub fn cookies(&self) -> ([u8; 8], [u8; 8]) {
        (self.ctx.icookie(), self.ctx.rcookie())
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.poll_event()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase1.is_dead() {
            return None;
        }
        let established = self.phase1.is_established();
        [
            self.phase1.deadline(),
            self.quick.deadline(),
            self.setup.deadline(),
            self.dpd.deadline(&self.ctx, established),
            self.children.deadline(),
            self.renewal.deadline(),
            self.junk.deadline(),
            self.ctx.fragment_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Resends what is due and gives up on what has run out of tries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase1.is_dead() {
            return;
        }
        if let Some(r) = self.junk.due(now) {
            self.ctx.event(Event::Dropped(r));
        }
        self.ctx.fragments().expire(now);
        if let Err(e) = self.phase1.timeout(&mut self.ctx, now) {
            self.fail(e);
            return;
        }
        if self.gateway_dropped_the_sa(now) {
            self.restart(now);
            return;
        }
        self.quick.timeouts(&mut self.ctx, now);
        if self.is_established() {
            let step = self.setup.timeout(&mut self.ctx, now);
            self.setup_step(now, step);
        }
        if self.is_established()
            && let Err(e) = self.dpd.timeout(&mut self.ctx, now)
        {
            self.fail(e);
        }
        if self.is_established() {
            self.child_timeouts(now);
        }
        if self.is_established() {
            self.renewal_timeout(now);
        }
        if self.is_established() {
            self.delete_retired();
        }
    }

    /// Closes the tunnel: DELETE for every ESP SA and for the ISAKMP SA are queued,
    /// then `Phase2Deleted` for each SA and `Closed`.
    pub fn close(&mut self, _now: Instant) {
        if self.is_established() {
            self.children.delete_all(&mut self.ctx);
            let d = DeletePayload {
                doi: DOI_IPSEC,
                protocol: ProtocolId::ISAKMP,
                spi_size: 16,
                spis: vec![self.ctx.spi()],
            };
            self.ctx.send_informational(vec![Payload::Delete(d)]);
        }
        if !self.phase1.is_dead() {
            self.end();
            self.ctx.event(Event::Closed);
        }
    }

    /// Processes one datagram from the peer. Anything invalid is dropped (and
    /// counted) or, where it settles the negotiation, turned into an error event.
    ///
    /// `local` is the address it arrived on (port 4500: it came through the NAT-T
    /// socket, non-ESP marker already removed), `remote` where it came from.
    ///
    /// What is dropped on an established SA is reported in [`Event::Dropped`], at
    /// most once a minute.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if self.phase1.is_dead() {
            return;
        }
        let before = self.ctx.counters().dropped;
        if data.len() > MAX_DATAGRAM {
            self.ctx.dropped_because("larger than 64 KiB");
        } else {
            self.datagram(now, local, remote, data);
        }
        let n = self.ctx.counters().dropped.saturating_sub(before);
        if n > 0
            && self.is_established()
            && let Some(r) = self.junk.dropped(now, n, self.ctx.last_drop())
        {
            self.ctx.event(Event::Dropped(r));
        }
    }

    fn datagram(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let was_established = self.is_established();
        // A responder answers where the first message came from.
        if self.phase1.expects_first_message() {
            self.ctx.set_path(local, remote);
        }
        self.ctx.follow_peer(local, remote);
        let header = match Header::decode(data) {
            Ok(h) => h,
            Err(crate::codec::DecodeError::UnsupportedVersion(v)) => {
                self.ctx.dropped_because(&format!(
                    "ISAKMP version {}.{} (IKEv1 is 1.0)",
                    v >> 4,
                    v & 15
                ));
                return;
            }
            Err(_) => {
                self.ctx
                    .dropped_because("not an ISAKMP message (too short or a bad length)");
                return;
            }
        };
        if header.length as usize != data.len() {
            self.ctx
                .dropped_because("its length field does not match the datagram");
            return;
        }
        if header.next_payload == PayloadType::FRAGMENT {
            self.fragment(now, (local, remote), &header, data);
            return;
        }
        if self.renewal.owns(&header) {
            let idle = self.quick.is_empty();
            let p = self
                .renewal
                .datagram(&mut self.ctx, now, (local, remote), data, idle);
            self.renewal_progress(now, p);
            return;
        }
        let first_message = header.responder_cookie == [0; 8]
            && header.message_id == 0
            && matches!(
                header.exchange,
                ExchangeType::IDENTITY_PROTECTION | ExchangeType::AGGRESSIVE
            );
        if self.role() == Role::Responder && first_message && self.phase1.half_open() {
            if header.initiator_cookie == self.ctx.icookie() {
                // The initiator did not get our answer: the same answer again.
                if !self.ctx.answer_again(data) {
                    self.ctx.dropped();
                }
                return;
            }
            // Another first message while the last initiator has not returned our
            // cookie: one half-open negotiation at a time, the newest.
            self.ctx.dropped();
            self.phase1.reset_responder(&mut self.ctx);
            self.ctx.set_path(local, remote);
        }
        if !self.phase1.cookies_match(&self.ctx, &header) {
            self.ctx.dropped_because("cookies of no SA of ours");
            return;
        }
        // A retransmission of the last request we answered: answer again. Past the
        // setup, the gateway missed our last answer (the XAuth or Mode Config ACK):
        // the quick modes it may have ignored meanwhile go again right behind it.
        if self.ctx.answer_again(data) {
            if self.setup.answered_again(now) {
                self.quick.resend_unanswered(&mut self.ctx);
            }
            return;
        }
        let answering_first = self.phase1.expects_first_message();
        let result = self.route(now, &header, data);
        if self.is_established() {
            self.delete_retired();
        }
        match result {
            // A responder refuses a first message (no acceptable proposal, a bad
            // nonce or key exchange value...): it says so and waits for the next one;
            // an unauthenticated datagram does not end it.
            Err(e) if answering_first && self.role() == Role::Responder => {
                if let Some(kind) = e.notify() {
                    self.ctx.send_plain_notify(kind);
                }
                self.ctx.refuse("a first message", &e);
                self.phase1.reset_responder(&mut self.ctx);
            }
            // Errors of a quick mode leave phase 1 standing; anything else ends it.
            Err(e) if self.is_established() && self.setup_done() => {
                self.ctx.event(Event::Phase2Failed(e))
            }
            Err(e) => self.fail(e),
            Ok(()) => {
                if self.is_established() {
                    // Any message that passed the cookie check and decoding shows the peer alive.
                    self.dpd.heard(now);
                    self.dpd.confirmed |= was_established;
                }
            }
        }
    }

    /// A FRAGMENT datagram: only of our own SAs (or of a first message to a
    /// responder); the whole message, once complete, is handled as received.
    fn fragment(
        &mut self,
        now: Instant,
        path: (SocketAddr, SocketAddr),
        header: &Header,
        data: &[u8],
    ) {
        let ours = header.initiator_cookie == self.ctx.icookie()
            || self.renewal.owns(header)
            || self.phase1.expects_first_message();
        if !ours {
            self.ctx.dropped_because("a fragment of no SA of ours");
            return;
        }
        match self.ctx.defragment(now, data) {
            Ok(Some(whole)) => self.datagram(now, path.0, path.1, &whole),
            Ok(None) => {}
            Err(why) => self.ctx.dropped_because(why),
        }
    }

    /// Hands a message of this ISAKMP SA to the machine of its exchange.
    fn route(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let established = self.is_established();
        match header.exchange {
            ExchangeType::IDENTITY_PROTECTION | ExchangeType::AGGRESSIVE
                if header.message_id == 0 =>
            {
                if let Some(info) = self.phase1.handle(&mut self.ctx, now, header, data)? {
                    self.established(now, &info);
                }
                Ok(())
            }
            ExchangeType::QUICK if established => {
                let done = self
                    .quick
                    .handle(&mut self.ctx, &self.children, now, header, data)?;
                if let Some(new) = done {
                    self.first_children_since = None;
                    self.children.established(&mut self.ctx, now, new);
                }
                Ok(())
            }
            ExchangeType::TRANSACTION if established => {
                let step = self.setup.handle(&mut self.ctx, now, header, data)?;
                self.setup_step(now, step);
                Ok(())
            }
            ExchangeType::INFORMATIONAL => self.informational(now, header, data),
            other => {
                self.ctx
                    .dropped_because(&format!("exchange type {} is not expected now", other.0));
                Ok(())
            }
        }
    }

    /// Phase 1 is up: the setup (XAuth, Mode Config) starts and the renewal is
    /// scheduled.
    fn established(&mut self, now: Instant, info: &Phase1Info) {
        self.dpd.heard(now);
        let step = self.setup.begin(&mut self.ctx, now);
        self.setup_step(now, step);
        self.renewal.schedule(&self.ctx, now, info.lifetime);
    }

    /// What a setup step asks: quick modes for the children, or the end.
    fn setup_step(&mut self, now: Instant, step: Step) {
        match step {
            Step::Wait => {}
            Step::Done(children) => {
                // The setup ended with an ACK of ours (XAuth without Mode Config, or
                // Mode Config push), which nobody retransmits on its own: if the
                // gateway missed it, it may drop the SA at our quick mode.
                let cfg = self.ctx.config();
                let ended_with_our_ack = cfg.mode_config == ModeConfigMode::Push
                    || (cfg.xauth.is_some() && cfg.mode_config == ModeConfigMode::Off);
                if self.role() == Role::Initiator && ended_with_our_ack && !children.is_empty() {
                    self.first_children_since = Some(now);
                }
                for c in children {
                    self.start_quick_for(now, c, None);
                }
            }
            Step::Failed(e) => self.fail(e),
        }
    }

    /// Starts a quick mode; `rekey_of` names the SA (by inbound SPI) it replaces.
    pub(super) fn start_quick_for(
        &mut self,
        now: Instant,
        child: ChildConfig,
        rekey_of: Option<u32>,
    ) {
        let group = self.phase1.info().map(|i| i.proposal.group);
        self.quick
            .start(&mut self.ctx, &self.children, group, now, child, rekey_of);
    }

    fn child_timeouts(&mut self, now: Instant) {
        let (rekey, expire) = self.children.due(now);
        for (spi, cfg) in rekey {
            self.start_quick_for(now, cfg, Some(spi));
        }
        for spi in expire {
            self.children.delete(&mut self.ctx, spi);
        }
    }

    /// An encrypted informational exchange (DELETE, DPD, notifies), or a plaintext
    /// one (phase 1 refusals).
    fn informational(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        if header.flags & Header::FLAG_ENCRYPTION == 0 {
            return self.phase1.plain_informational(&mut self.ctx, data);
        }
        if self.ctx.keys().is_none() {
            self.ctx
                .dropped_because("an encrypted informational message before the keys");
            return Ok(());
        }
        let iv = self.ctx.exchange_iv(header.message_id);
        let Ok(opened) = self.ctx.open(header, data, &iv) else {
            if self.phase1.awaits_auth_reply() {
                // Encrypted with keys we do not share: the PSKs differ.
                return Err(Error::AuthenticationFailed(
                    "pre-shared key mismatch?".into(),
                ));
            }
            self.ctx
                .dropped_because("an informational message that does not decrypt");
            return Ok(());
        };
        // HASH(1) = prf(SKEYID_a, M-ID | rest of the message)
        if !self.ctx.verify_hash(header, &opened, &[]) {
            self.ctx
                .dropped_because("an informational message whose HASH does not verify");
            return Ok(());
        }
        for d in &opened.payloads {
            match &d.payload {
                Payload::Delete(del) => self.on_delete(del),
                Payload::Notify(n)
                    if matches!(n.kind, NotifyType::R_U_THERE | NotifyType::R_U_THERE_ACK) =>
                {
                    self.dpd.on_notify(&mut self.ctx, now, n)
                }
                Payload::Notify(n) if n.kind.is_error() => {
                    // An authenticated error about a quick mode of ours: that quick mode failed.
                    self.quick.refused_by_peer(&mut self.ctx, n);
                    return Err(Error::from_notify(n.kind, &n.data));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_delete(&mut self, del: &DeletePayload) {
        if del.protocol == ProtocolId::ISAKMP {
            if del.spis.contains(&self.ctx.spi()) {
                self.children.all_gone(&mut self.ctx);
                self.end();
                self.ctx.event(Event::Phase1Deleted);
            }
        } else if del.protocol == ProtocolId::ESP {
            // The peer names the SPI it receives on: our outbound SPI.
            self.children.deleted_by_peer(&mut self.ctx, &del.spis);
        }
    }

    /// Ends the IKE SA: nothing more happens.
    fn end(&mut self) {
        self.phase1.kill();
        self.quick.clear(&mut self.ctx);
    }

    /// Whether the first quick modes after the setup went unanswered in a way that
    /// says the gateway no longer has the ISAKMP SA: [`RESTART_AFTER_SENDS`] sends
    /// each, nothing heard from the gateway since they started, no SA pair yet, and
    /// fewer than [`MAX_RESTARTS`] restarts before.
    fn gateway_dropped_the_sa(&self, now: Instant) -> bool {
        let Some(since) = self.first_children_since else {
            return false;
        };
        self.restarts < MAX_RESTARTS
            && self.children.sas.is_empty()
            && self.dpd.last_heard.is_none_or(|h| h <= since)
            && self.quick.all_unanswered(now, RESTART_AFTER_SENDS)
    }

    /// Starts the negotiation over with new cookies (phase 1, XAuth, Mode Config,
    /// quick mode); the old ISAKMP SA is deleted in case the gateway still holds it.
    /// The path is known to lose datagrams now: the new setup holds its requests
    /// longer after an ACK. One [`Event::Note`] says why.
    fn restart(&mut self, now: Instant) {
        let d = DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![self.ctx.spi()],
        };
        self.ctx.send_informational(vec![Payload::Delete(d)]);
        self.quick.clear(&mut self.ctx);
        let seed = self.ctx.random::<32>();
        let rng = Box::new(rand_chacha::ChaCha20Rng::from_seed(seed));
        let mut ctx = IsakmpSa::new(
            Role::Initiator,
            self.ctx.config().clone(),
            self.ctx.local_addr(),
            self.ctx.original_remote(),
            rng,
        );
        // What the old SA still had to say goes out first.
        while let Some(t) = self.ctx.poll_transmit() {
            ctx.transmit(t);
        }
        while let Some(e) = self.ctx.poll_event() {
            ctx.event(e);
        }
        ctx.event(Event::Note(
            "the gateway answered none of our quick mode messages after XAuth: it has most \
             likely dropped the negotiation; starting it over"
                .into(),
        ));
        let phase1 = Phase1::initiate(&mut ctx, now);
        let mut fresh = Ike::assemble(ctx, phase1, false);
        fresh.restarts = self.restarts + 1;
        fresh.setup.lossy = true;
        fresh.junk = std::mem::take(&mut self.junk);
        *self = fresh;
    }

    fn fail(&mut self, e: Error) {
        if self.phase1.is_dead() {
            return;
        }
        if self.role() == Role::Responder
            && !self.is_established()
            && let Some(kind) = e.notify()
        {
            self.ctx.send_plain_notify(kind);
        }
        self.end();
        self.ctx.event(Event::Failed(e));
    }

    // ----- renewal -----------------------------------------------------------

    fn renewal_timeout(&mut self, now: Instant) {
        let address = self.setup.mode_config().and_then(|m| m.address);
        let (may_start, idle) = (self.setup_done(), self.quick.is_empty());
        match self
            .renewal
            .timeout(&mut self.ctx, now, may_start, address, idle)
        {
            Ok(p) => self.renewal_progress(now, p),
            Err(e) => self.fail(e),
        }
    }

    fn renewal_progress(&mut self, now: Instant, p: Progress) {
        if let Progress::Complete(r) = p {
            self.take_over_renewal(now, *r);
        }
    }

    /// The new phase 1 is complete: continue on it, move the ESP SAs over by
    /// rekeying them under it (make-before-break), and delete the old ISAKMP SA
    /// once they are (gateways delete an IKE SA's CHILD_SAs with it).
    fn take_over_renewal(&mut self, now: Instant, r: Ike) {
        let old = self.ctx.adopt(r.ctx);
        self.renewal.retire(old);
        self.setup.adopt_mode_config(r.setup);
        self.phase1 = r.phase1;
        self.dpd = r.dpd;
        self.quick.forget_done(&mut self.ctx);
        let Some(info) = self.phase1.info().cloned() else {
            return;
        };
        self.ctx.event(Event::Phase1Renewed(info.clone()));
        // SAs already replaced (in their grace time) or being rekeyed need no move.
        let role = self.role();
        let moving: Vec<u32> = self
            .children
            .sas
            .iter()
            .filter(|c| !self.children.retiring(role, c.spi_in))
            .map(|c| c.spi_in)
            .collect();
        for spi in moving {
            if let Some(cfg) = self.children.config_of(spi) {
                self.children.superseded(spi);
                self.start_quick_for(now, cfg, Some(spi));
            }
        }
        self.renewal.schedule(&self.ctx, now, info.lifetime);
        self.delete_retired();
    }

    fn delete_retired(&mut self) {
        let idle = self.quick.is_empty();
        self.renewal.delete_retired_if_idle(&mut self.ctx, idle);
    }

    // ----- commands ------------------------------------------------------------

    /// Tells the engine that traffic arrived from the peer (ESP), so the peer is alive.
    pub fn traffic_received(&mut self, now: Instant) {
        self.dpd.heard(now);
    }

    /// Answers the pending XAuth round (after [`Event::CredentialsRequired`]).
    pub fn submit_credentials(&mut self, now: Instant, creds: Credentials) -> Result<(), Error> {
        // A phase 1 renewal asking again (XAuth on the new ISAKMP SA).
        let idle = self.quick.is_empty();
        let mut creds = Some(creds);
        if let Some((res, p)) =
            self.renewal
                .submit_credentials(&mut self.ctx, now, &mut creds, idle)
        {
            self.renewal_progress(now, p);
            return res;
        }
        let Some(creds) = creds else {
            return Ok(());
        };
        match self.setup.submit_credentials(&mut self.ctx, now, creds)? {
            Step::Failed(e) => {
                self.fail(e.clone());
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Command: ask the peer at once whether it is alive (R-U-THERE now, not after the
    /// DPD interval), e.g. after the machine slept; the peer is declared dead
    /// (`Failed(DeadPeer)`) if no answer comes within `give_up`. False when DPD is not in
    /// use with this peer or phase 1 is not up.
    pub fn check_peer(&mut self, now: Instant, give_up: Duration) -> bool {
        if !self.is_established() {
            return false;
        }
        self.dpd.check_now(&mut self.ctx, now, give_up)
    }

    /// Whether the check of [`Ike::check_peer`] still waits for the peer's answer.
    pub fn checking_peer(&self) -> bool {
        self.dpd.checking()
    }

    /// Command: rekey the SA pair with inbound SPI `spi_in` now (make-before-break).
    /// Returns false when there is no such SA or phase 1 is not up.
    pub fn rekey(&mut self, now: Instant, spi_in: u32) -> bool {
        if !self.is_established() {
            return false;
        }
        let Some(cfg) = self.children.config_of(spi_in) else {
            return false;
        };
        self.children.superseded(spi_in);
        self.start_quick_for(now, cfg, Some(spi_in));
        true
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Ike>();
}
