//! Phase 1 renewal (initiator). IKEv1 has no phase 1 rekey: a new main or
//! aggressive mode (with XAuth again when configured) builds a new ISAKMP SA
//! beside the old one; the ESP SAs stay as they are; then the old ISAKMP SA is
//! deleted. Gateways that handed out a virtual IP (strongSwan among them) do not
//! renew phase 1 themselves and delete it at its lifetime, so the client renews
//! at 55 % of the lifetime.
//!
//! The renewal is an [`Ike`] of its own, driven from inside this one: datagrams
//! with its cookies go to it, its datagrams and questions come out of this one.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::codec::{DeletePayload, Header, Payload, ProtocolId};

use super::dispatch::Ike;
use super::sa::DOI_IPSEC;
use super::sa_ctx::{IsakmpSa, SaKeys};
use super::{Credentials, Error, Event, Role};

/// Renew at this share of the phase 1 lifetime.
const RENEW_PERCENT: u32 = 55;

/// How a renewal stands after a step.
pub(crate) enum Progress {
    Running,
    /// The new ISAKMP SA is complete (phase 1, XAuth, Mode Config): take it over.
    Complete(Box<Ike>),
}

/// The phase 1 renewal of one IKE SA: when to start and when the old SA dies, the
/// new SA being built, and the old SA's keys once replaced.
#[derive(Default)]
pub(crate) struct Renewal {
    /// This IKE SA is itself a renewal: it never renews.
    is_renewal: bool,
    inner: Option<Box<Ike>>,
    renew_at: Option<Instant>,
    expire_at: Option<Instant>,
    /// The ISAKMP SA a renewal replaced, kept until the ESP SAs moved over.
    retired: Option<SaKeys>,
}

impl Renewal {
    pub fn new(is_renewal: bool) -> Renewal {
        Renewal {
            is_renewal,
            ..Renewal::default()
        }
    }

    /// Called when phase 1 (re)starts its life: schedules the renewal.
    pub fn schedule(&mut self, ctx: &IsakmpSa, now: Instant, lifetime: Duration) {
        if ctx.role() != Role::Initiator || self.is_renewal {
            return;
        }
        self.renew_at = Some(super::now_plus(now, lifetime * RENEW_PERCENT / 100));
        self.expire_at = Some(super::now_plus(now, lifetime));
    }

    pub fn deadline(&self) -> Option<Instant> {
        let inner = self.inner.as_ref().and_then(|r| r.poll_timeout());
        [
            inner,
            self.renew_at.filter(|_| self.inner.is_none()),
            self.expire_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: the renewal's own, starting it, the old SA's end (an error).
    /// `address`: the one Mode Config gave us (the renewal asks for it again).
    pub fn timeout(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        may_start: bool,
        address: Option<Ipv4Addr>,
        quick_idle: bool,
    ) -> Result<Progress, Error> {
        if let Some(r) = self.inner.as_mut() {
            r.handle_timeout(now);
            if let Progress::Complete(r) = self.pump(ctx, now, quick_idle) {
                return Ok(Progress::Complete(r));
            }
        }
        if self.inner.is_none() && self.renew_at.is_some_and(|t| now >= t) && may_start {
            self.renew_at = None;
            self.start(ctx, now, address);
        }
        if self.expire_at.is_some_and(|t| now >= t) {
            self.expire_at = None;
            return Err(Error::Phase1Expired);
        }
        Ok(Progress::Running)
    }

    fn start(&mut self, ctx: &mut IsakmpSa, now: Instant, address: Option<Ipv4Addr>) {
        // XAuth and Mode Config run again on the new ISAKMP SA (gateways tie the
        // virtual IP to it), asking for the address we have.
        let cfg = ctx.renewal_config(address);
        let seed = ctx.random::<32>();
        let rng = Box::new(ChaCha20Rng::from_seed(seed));
        match Ike::initiate_renewal(cfg, ctx.local_addr(), ctx.original_remote(), now, rng) {
            Ok(r) => {
                self.inner = Some(Box::new(r));
                // Just started: it cannot be complete yet; its first message goes out.
                let _ = self.pump(ctx, now, false);
            }
            Err(e) => ctx.event(Event::Phase1RenewalFailed(e)),
        }
    }

    /// Whether this datagram belongs to the renewal in progress.
    pub fn owns(&self, h: &Header) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|r| r.ctx.icookie() == h.initiator_cookie)
    }

    pub fn datagram(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        path: (SocketAddr, SocketAddr),
        data: &[u8],
        quick_idle: bool,
    ) -> Progress {
        if let Some(r) = self.inner.as_mut() {
            r.handle_datagram(now, path.0, path.1, data);
        }
        self.pump(ctx, now, quick_idle)
    }

    /// The renewal asks XAuth credentials: `Some` with the answer's result when
    /// they were for it.
    pub fn submit_credentials(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        creds: &mut Option<Credentials>,
        quick_idle: bool,
    ) -> Option<(Result<(), Error>, Progress)> {
        let r = self.inner.as_mut().filter(|r| r.setup.is_prompting())?;
        let res = r.submit_credentials(now, creds.take()?);
        Some((res, self.pump(ctx, now, quick_idle)))
    }

    /// Moves the renewal's output out; `Complete` once it is done and no quick
    /// mode of ours is under way.
    fn pump(&mut self, ctx: &mut IsakmpSa, now: Instant, quick_idle: bool) -> Progress {
        let Some(r) = self.inner.as_mut() else {
            return Progress::Running;
        };
        while let Some(t) = r.poll_transmit() {
            ctx.transmit(t);
        }
        let mut failed = None;
        while let Some(e) = r.poll_event() {
            match e {
                Event::CredentialsRequired(c) => ctx.event(Event::CredentialsRequired(c)),
                Event::Failed(e) => failed = Some(e),
                Event::MessageRefused(m) => {
                    ctx.event(Event::MessageRefused(format!("phase 1 renewal: {m}")))
                }
                _ => {}
            }
        }
        if let Some(e) = failed {
            self.inner = None;
            ctx.event(Event::Phase1RenewalFailed(e));
            // Try again while the old phase 1 still lives.
            let retry = super::now_plus(now, ctx.config().retransmit.total());
            if self.expire_at.is_some_and(|t| retry < t) {
                self.renew_at = Some(retry);
            }
            return Progress::Running;
        }
        if r.is_established()
            && r.setup_done()
            && quick_idle
            && let Some(r) = self.inner.take()
        {
            return Progress::Complete(r);
        }
        Progress::Running
    }

    /// Keeps the replaced ISAKMP SA's keys until its DELETE can go.
    pub fn retire(&mut self, old: SaKeys) {
        self.retired = Some(old);
    }

    /// The old ISAKMP SA goes (DELETE under its own keys) once no quick mode is
    /// under way any more.
    pub fn delete_retired_if_idle(&mut self, ctx: &mut IsakmpSa, quick_idle: bool) {
        if !quick_idle {
            return;
        }
        let Some(mut old) = self.retired.take() else {
            return;
        };
        ctx.swap_sa(&mut old);
        let d = DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![ctx.spi()],
        };
        ctx.send_informational(vec![Payload::Delete(d)]);
        ctx.swap_sa(&mut old);
    }
}
