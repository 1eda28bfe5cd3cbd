//! The engine a session drives: the IKEv1 [`Ike`] or the IKEv2 [`Ike2`], chosen by the
//! profile's `ike_version`. Both take the same inputs and give the same events, so the
//! session has one code path; this only forwards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use postern_engine::ike::{self, Ike};
use postern_engine::ike2::Ike2;

pub(crate) enum Engine {
    V1(Box<Ike>),
    V2(Box<Ike2>),
}

macro_rules! both {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            Engine::V1($e) => $body,
            Engine::V2($e) => $body,
        }
    };
}

impl Engine {
    pub fn is_v2(&self) -> bool {
        matches!(self, Engine::V2(_))
    }
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        both!(self, e => e.handle_datagram(now, local, remote, data))
    }
    pub fn handle_timeout(&mut self, now: Instant) {
        both!(self, e => e.handle_timeout(now))
    }
    pub fn poll_transmit(&mut self) -> Option<ike::Transmit> {
        both!(self, e => e.poll_transmit())
    }
    pub fn poll_event(&mut self) -> Option<ike::Event> {
        both!(self, e => e.poll_event())
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        both!(self, e => e.poll_timeout())
    }
    pub fn close(&mut self, now: Instant) {
        both!(self, e => e.close(now))
    }
    pub fn counters(&self) -> ike::Counters {
        both!(self, e => e.counters())
    }
    pub fn is_established(&self) -> bool {
        both!(self, e => e.is_established())
    }
    pub fn phase1(&self) -> Option<&ike::Phase1Info> {
        both!(self, e => e.phase1())
    }
    pub fn children(&self) -> &[ike::ChildSa] {
        both!(self, e => e.children())
    }
    pub fn traffic_received(&mut self, now: Instant) {
        both!(self, e => e.traffic_received(now))
    }
    pub fn submit_credentials(
        &mut self,
        now: Instant,
        creds: ike::Credentials,
    ) -> Result<(), ike::Error> {
        both!(self, e => e.submit_credentials(now, creds))
    }
    pub fn check_peer(&mut self, now: Instant, give_up: Duration) -> bool {
        both!(self, e => e.check_peer(now, give_up))
    }
    pub fn checking_peer(&self) -> bool {
        both!(self, e => e.checking_peer())
    }
    pub fn rekey(&mut self, now: Instant, spi_in: u32) -> bool {
        both!(self, e => e.rekey(now, spi_in))
    }
}
