//! The [`Ike`] object: phase 1 (main and aggressive mode, both roles), message
//! protection, informational exchanges, and dispatch to quick mode.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::algs::IkeProposal;
use crate::cert;
use crate::codec::{
    self, CertPayload, Decoded, DeletePayload, ExchangeType, Header, IdPayload, Message,
    NotifyPayload, NotifyType, Payload, PayloadType, ProtocolId, Trailing,
};
use crate::crypto::{self, DhKeyPair, Phase1Keys, Rng};

use super::dpd::{Dpd, VID_DPD};
use super::exchange::Pending;
use super::natt::{self, NAT_T_PORT, NatState, NatTraversal, NattVersion};
use super::quick::Quick;
use super::rekey::ChildTimer;
use super::sa::{self, DOI_IPSEC, IkeChoice};
use super::transaction::{ModeConfigInfo, Setup};
use super::{
    Auth, ChildSa, Config, Counters, Error, Event, ExchangeMode, Identity, Outbox, Phase1Info,
    Role, Transmit,
};

const NONCE_LEN: usize = 32;
/// Phase 1 messages larger than this are refused before decoding.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Finished quick modes remembered to answer retransmissions.
pub(super) const DONE_QUICK_KEEP_PUB: usize = 8;

/// What the phase 1 exchange expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator, main mode: sent SA, expect the chosen SA (message 2).
    ExpectSaReply,
    /// Initiator, main mode: sent KE/Ni, expect KE/Nr (message 4).
    ExpectKeReply,
    /// Initiator, main mode: sent ID/HASH_I, expect ID/HASH_R (message 6).
    ExpectIdHash,
    /// Initiator, aggressive mode: sent SA/KE/Ni/ID, expect SA/KE/Nr/ID/HASH_R.
    ExpectAggressiveReply,
    /// Responder: expect the initiator's first message (main or aggressive).
    ExpectSa,
    /// Responder, main mode: sent SA, expect KE/Ni (message 3).
    ExpectKe,
    /// Responder, main mode: sent KE/Nr, expect ID/HASH_I (message 5).
    ExpectIdHashI,
    /// Responder, aggressive mode: sent HASH_R, expect HASH_I (message 3).
    ExpectHashI,
    Established,
    /// Failed or closed: everything is ignored.
    Dead,
}

/// Phase 1 material gathered along the way.
#[derive(Default)]
pub(super) struct Material {
    /// SAi_b: the body of the initiator's SA payload, as sent.
    sai_b: Vec<u8>,
    choice: Option<IkeChoice>,
    dh: Option<DhKeyPair>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    g_xi: Vec<u8>,
    g_xr: Vec<u8>,
    keys: Option<Phase1Keys>,
    /// The current phase 1 CBC IV (last ciphertext block seen in phase 1).
    iv: Vec<u8>,
    /// Our ID payload as sent.
    our_id: Option<IdPayload>,
    peer_id: Option<Identity>,
}

/// One IKEv1 phase 1 SA and its phase 2 SAs. See the [module docs](super).
pub struct Ike {
    pub(super) role: Role,
    pub(super) config: Config,
    pub(super) rng: Box<dyn Rng + Send>,
    local: SocketAddr,
    remote: SocketAddr,
    pub(super) icookie: [u8; 8],
    pub(super) rcookie: [u8; 8],
    state: State,
    m: Material,
    pending: Option<Pending>,
    /// Responder: the last datagram received and our answer to it, to answer
    /// retransmissions without processing them again.
    last_exchange: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) info: Option<Phase1Info>,
    pub(super) out: Outbox,
    pub(super) quick: Vec<Quick>,
    /// Finished quick modes: message id and our last message, for retransmissions.
    pub(super) quick_done: Vec<(u32, Option<Vec<u8>>)>,
    pub(super) children: Vec<ChildSa>,
    pub(super) counters: Counters,
    /// The NAT-T dialect both sides speak, once known.
    natt: Option<NattVersion>,
    nat: NatState,
    /// IKE has moved to port 4500 (and ESP will be UDP-encapsulated).
    floated: bool,
    /// XAuth / Mode Config after phase 1.
    pub(super) setup: Setup,
    pub(super) mode_config: Option<ModeConfigInfo>,
    pub(super) cfg_request_identifier: u16,
    pub(super) dpd: Dpd,
    pub(super) child_timers: Vec<ChildTimer>,
    /// Phase 1 renewal: the new ISAKMP SA being built, and when to start/give up.
    pub(super) renewal: Option<Box<Ike>>,
    pub(super) is_renewal: bool,
    pub(super) p1_renew_at: Option<Instant>,
    pub(super) p1_expire_at: Option<Instant>,
    /// The peer's address before any NAT-T float (a renewal starts there).
    pub(super) original_remote: SocketAddr,
    /// The ISAKMP SA a renewal replaced, kept until the ESP SAs moved over.
    pub(super) retired_p1: Option<([u8; 8], [u8; 8], Material)>,
    /// IKE fragmentation: the peer takes fragments; our last fragment id; messages
    /// being put together.
    pub(super) peer_fragmentation: bool,
    pub(super) fragment_id: u16,
    pub(super) reassembly: Vec<super::fragment::Reassembly>,
    pub(super) fragment_cache: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    /// Why the last message of the peer was refused (named again when the exchange
    /// waiting for it gives up), and how many refusals were reported.
    pub(super) last_refusal: Option<String>,
    refusals_reported: u32,
    /// The phase 2 proposals left out of the offer were named in an [`Event::Note`].
    pub(super) esp_offer_noted: bool,
}

impl std::fmt::Debug for Ike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ike")
            .field("role", &self.role)
            .field("state", &self.state)
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
        if config.ike_proposals.is_empty() {
            return Err(Error::Local("no phase 1 proposals configured".into()));
        }
        let mut ike = Ike::new(Role::Initiator, config, local, remote, rng);
        ike.icookie = ike.nonzero_cookie();
        match ike.config.mode {
            ExchangeMode::Main => ike.send_main1(now),
            ExchangeMode::Aggressive => ike.send_aggressive1(now)?,
        }
        Ok(ike)
    }

    /// A responder waiting for the initiator's first message.
    pub fn respond(
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Ike {
        let mut ike = Ike::new(Role::Responder, config, local, remote, rng);
        ike.state = State::ExpectSa;
        ike
    }

    fn new(
        role: Role,
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Ike {
        Ike {
            role,
            config,
            rng,
            local,
            remote,
            icookie: [0; 8],
            rcookie: [0; 8],
            state: State::ExpectSaReply,
            m: Material::default(),
            pending: None,
            last_exchange: None,
            info: None,
            out: Outbox::default(),
            quick: Vec::new(),
            quick_done: Vec::new(),
            children: Vec::new(),
            counters: Counters::default(),
            last_refusal: None,
            refusals_reported: 0,
            natt: None,
            nat: NatState::default(),
            floated: false,
            setup: Setup::NotStarted,
            mode_config: None,
            cfg_request_identifier: 0,
            dpd: Dpd::default(),
            child_timers: Vec::new(),
            renewal: None,
            is_renewal: false,
            p1_renew_at: None,
            p1_expire_at: None,
            original_remote: remote,
            retired_p1: None,
            peer_fragmentation: false,
            fragment_id: 0,
            reassembly: Vec::new(),
            fragment_cache: Vec::new(),
            esp_offer_noted: false,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }
    pub fn is_dead(&self) -> bool {
        self.state == State::Dead
    }
    pub fn phase1(&self) -> Option<&Phase1Info> {
        self.info.as_ref()
    }
    pub fn children(&self) -> &[ChildSa] {
        &self.children
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }
    /// Where the NATs are (meaningful once phase 1 is past its key exchange).
    pub fn nat(&self) -> NatState {
        self.nat
    }
    /// The NAT-T dialect in use when IKE and ESP are UDP-encapsulated on port 4500.
    /// What Mode Config gave us, once it has.
    pub fn mode_config(&self) -> Option<&ModeConfigInfo> {
        self.mode_config.as_ref()
    }
    /// Phase 1, XAuth and Mode Config are all done: quick modes run or ran.
    pub fn setup_done(&self) -> bool {
        matches!(self.setup, Setup::Done)
    }
    pub fn udp_encapsulation(&self) -> Option<NattVersion> {
        self.natt.filter(|_| self.floated)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Dead {
            return None;
        }
        let p1 = self.pending.as_ref().map(|p| p.deadline);
        let qm = self.quick.iter().filter_map(|q| q.deadline()).min();
        [
            p1,
            qm,
            self.setup.deadline(),
            self.dpd_deadline(),
            self.child_deadline(),
            self.renewal_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Resends what is due and gives up on what has run out of tries.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Dead {
            return;
        }
        if let Some(p) = self.pending.as_mut()
            && now >= p.deadline
        {
            match p.on_timeout(now, &self.config.retransmit) {
                Some(d) => {
                    self.counters.retransmits += 1;
                    self.send_raw(d);
                }
                None => {
                    let tries = self.config.retransmit.tries.saturating_sub(1);
                    let err = if self.state == State::ExpectIdHash {
                        Error::AuthenticationFailed(match self.config.auth {
                            Auth::Psk(_) => "the gateway did not answer our authentication: pre-shared key mismatch?".into(),
                            _ => "the gateway did not answer our authentication: certificate or identity not accepted?".into(),
                        })
                    } else {
                        Error::NotResponding(tries)
                    };
                    self.fail(err);
                    return;
                }
            }
        }
        self.quick_timeouts(now);
        if self.state == State::Established {
            self.setup_timeout(now);
        }
        if self.state == State::Established {
            self.dpd_timeout(now);
        }
        if self.state == State::Established {
            self.child_timeouts(now);
        }
        if self.state == State::Established {
            self.renewal_timeout(now);
        }
        if self.state == State::Established {
            self.maybe_delete_retired_p1();
        }
    }

    /// Closes the tunnel: DELETE for every ESP SA and for the ISAKMP SA are queued,
    /// then `Phase2Deleted` for each SA and `Closed`.
    pub fn close(&mut self, _now: Instant) {
        if self.state == State::Established {
            self.child_timers.clear();
            let children = std::mem::take(&mut self.children);
            for c in &children {
                let d = DeletePayload {
                    doi: DOI_IPSEC,
                    protocol: ProtocolId::ESP,
                    spi_size: 4,
                    spis: vec![c.spi_in.to_be_bytes().to_vec()],
                };
                self.send_informational(vec![Payload::Delete(d)]);
                self.out.events.push_back(Event::Phase2Deleted {
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    by_peer: false,
                });
            }
            let mut spi = self.icookie.to_vec();
            spi.extend_from_slice(&self.rcookie);
            let d = DeletePayload {
                doi: DOI_IPSEC,
                protocol: ProtocolId::ISAKMP,
                spi_size: 16,
                spis: vec![spi],
            };
            self.send_informational(vec![Payload::Delete(d)]);
        }
        if self.state != State::Dead {
            self.state = State::Dead;
            self.pending = None;
            self.quick.clear();
            self.out.events.push_back(Event::Closed);
        }
    }

    /// Processes one datagram from the peer. Anything invalid is dropped (and
    /// counted) or, where it settles the negotiation, turned into an error event.
    ///
    /// `local` is the address it arrived on (port 4500: it came through the NAT-T
    /// socket, non-ESP marker already removed), `remote` where it came from.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if self.state == State::Dead || data.len() > MAX_DATAGRAM {
            return;
        }
        let was_established = self.state == State::Established;
        // A responder answers where the first message came from.
        if self.role == Role::Responder && self.state == State::ExpectSa {
            self.remote = remote;
            self.local = local;
        }
        // A responder follows the initiator to port 4500 (and through NAT remappings).
        if self.role == Role::Responder
            && self.natt.is_some()
            && local.port() == NAT_T_PORT
            && remote != self.remote
            && (remote.ip() == self.remote.ip() || self.nat.remote_behind_nat)
        {
            self.remote = remote;
            self.floated = true;
        }
        let Ok(header) = Header::decode(data) else {
            self.counters.dropped += 1;
            return;
        };
        if header.length as usize != data.len() {
            self.counters.dropped += 1;
            return;
        }
        if header.next_payload == PayloadType::FRAGMENT {
            // Only fragments of our own SAs (or of a first message to a responder).
            let ours = header.initiator_cookie == self.icookie
                || self.for_renewal(&header)
                || (self.role == Role::Responder && self.state == State::ExpectSa);
            if ours {
                if let Some(whole) = self.defragment(now, data)
                    && Header::decode(&whole).is_ok_and(|h| h.next_payload != PayloadType::FRAGMENT)
                {
                    self.handle_datagram(now, local, remote, &whole);
                }
            } else {
                self.counters.dropped += 1;
            }
            return;
        }
        if self.for_renewal(&header) {
            self.renewal_datagram(now, local, remote, data);
            return;
        }
        if !self.cookies_match(&header) {
            self.counters.dropped += 1;
            return;
        }
        // A retransmission of the last request we answered: answer again.
        if let Some((req, resp)) = &self.last_exchange
            && req.as_slice() == data
        {
            let resp = resp.clone();
            self.counters.retransmits += 1;
            self.send_raw(resp);
            return;
        }
        let result = match header.exchange {
            ExchangeType::IDENTITY_PROTECTION | ExchangeType::AGGRESSIVE
                if header.message_id == 0 =>
            {
                self.handle_phase1(now, &header, data)
            }
            ExchangeType::QUICK if self.state == State::Established => {
                self.handle_quick(now, &header, data)
            }
            ExchangeType::TRANSACTION if self.state == State::Established => {
                self.handle_transaction(now, &header, data)
            }
            ExchangeType::INFORMATIONAL => self.handle_informational(now, &header, data),
            _ => {
                self.counters.dropped += 1;
                Ok(())
            }
        };
        if self.state == State::Established {
            self.maybe_delete_retired_p1();
        }
        match result {
            // Errors of a quick mode leave phase 1 standing; anything else ends it.
            Err(e) if self.state == State::Established && self.setup_done() => {
                self.out.events.push_back(Event::Phase2Failed(e))
            }
            Err(e) => self.fail(e),
            Ok(()) => {
                if self.state == State::Established {
                    // Any message that passed the cookie check and decoding shows the peer alive.
                    self.dpd.heard(now);
                    self.dpd.confirmed |= was_established;
                }
            }
        }
    }

    pub(super) fn local_ip(&self) -> std::net::IpAddr {
        self.local.ip()
    }

    pub(super) fn local_addr(&self) -> SocketAddr {
        let mut l = self.local;
        l.set_port(self.original_remote.port());
        l
    }

    /// Continues on the ISAKMP SA of a completed renewal; returns the old one's
    /// cookies and keys (to delete it once the ESP SAs moved over).
    pub(super) fn adopt(&mut self, r: Ike) -> ([u8; 8], [u8; 8], Material) {
        let old = (self.icookie, self.rcookie, std::mem::take(&mut self.m));
        self.icookie = r.icookie;
        self.rcookie = r.rcookie;
        self.m = r.m;
        if r.mode_config.is_some() {
            self.mode_config = r.mode_config;
        }
        self.info = r.info;
        self.natt = r.natt;
        self.nat = r.nat;
        self.floated = r.floated;
        self.remote = r.remote;
        self.dpd = r.dpd;
        self.last_exchange = r.last_exchange;
        self.pending = None;
        self.quick_done.clear();
        self.counters.retransmits += r.counters.retransmits;
        self.counters.dropped += r.counters.dropped;
        old
    }

    /// Sends a DELETE for the retired ISAKMP SA, under its own keys.
    pub(super) fn delete_retired_p1(&mut self) {
        let Some((ic, rc, m)) = self.retired_p1.take() else {
            return;
        };
        let cur = (
            self.icookie,
            self.rcookie,
            std::mem::replace(&mut self.m, m),
        );
        self.icookie = ic;
        self.rcookie = rc;
        let mut spi = ic.to_vec();
        spi.extend_from_slice(&rc);
        let d = DeletePayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![spi],
        };
        self.send_informational(vec![Payload::Delete(d)]);
        self.icookie = cur.0;
        self.rcookie = cur.1;
        self.m = cur.2;
    }

    pub(super) fn set_last_exchange(&mut self, request: Vec<u8>, reply: Vec<u8>) {
        self.last_exchange = Some((request, reply));
    }

    fn cookies_match(&self, h: &Header) -> bool {
        match (self.role, self.state) {
            (Role::Responder, State::ExpectSa) => {
                h.responder_cookie == [0; 8] && h.initiator_cookie != [0; 8]
            }
            (Role::Initiator, State::ExpectSaReply | State::ExpectAggressiveReply) => {
                // The reply brings the responder cookie; a plaintext notify may not.
                h.initiator_cookie == self.icookie
            }
            _ => {
                h.initiator_cookie == self.icookie
                    && (h.responder_cookie == self.rcookie
                        || h.responder_cookie == [0; 8]
                            && h.exchange == ExchangeType::INFORMATIONAL
                            && h.flags & Header::FLAG_ENCRYPTION == 0)
            }
        }
    }

    pub(super) fn fail(&mut self, e: Error) {
        if self.state == State::Dead {
            return;
        }
        if self.role == Role::Responder
            && self.state != State::Established
            && let Some(kind) = e.notify()
        {
            self.send_plain_notify(kind);
        }
        self.state = State::Dead;
        self.pending = None;
        self.quick.clear();
        self.out.events.push_back(Event::Failed(e));
    }

    // ----- sending ---------------------------------------------------------

    pub(super) fn send_raw(&mut self, data: Vec<u8>) {
        for data in self.fragments_of(data) {
            self.out.transmits.push_back(Transmit {
                destination: self.remote,
                data,
                nat_t: self.floated,
            });
        }
    }

    fn header(&self, exchange: ExchangeType, message_id: u32, flags: u8) -> Header {
        Header {
            initiator_cookie: self.icookie,
            responder_cookie: self.rcookie,
            next_payload: PayloadType::NONE,
            version: 0x10,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    fn plain_message(&self, exchange: ExchangeType, payloads: Vec<Payload>) -> Vec<u8> {
        Message {
            header: self.header(exchange, 0, 0),
            payloads,
        }
        .encode()
    }

    /// Encrypts `first`/`body` (an encoded payload chain) under the phase 1 keys
    /// with `iv`; returns the datagram and the last ciphertext block (the next IV).
    pub(super) fn seal(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        first: PayloadType,
        mut body: Vec<u8>,
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let keys = self
            .m
            .keys
            .as_ref()
            .ok_or_else(|| Error::Local("no phase 1 keys".into()))?;
        let bl = keys.cipher.block_len();
        let pad = (bl - body.len() % bl) % bl;
        body.resize(body.len() + pad, 0);
        let ct = crypto::cbc_encrypt(keys.cipher, &keys.enc_key, iv, &body)
            .map_err(|e| Error::Local(e.to_string()))?;
        let mut h = self.header(exchange, message_id, Header::FLAG_ENCRYPTION);
        h.next_payload = first;
        h.length = (Header::LEN + ct.len()) as u32;
        let mut out = Vec::with_capacity(h.length as usize);
        h.encode(&mut out);
        out.extend_from_slice(&ct);
        let last = ct[ct.len().saturating_sub(bl)..].to_vec();
        Ok((out, last))
    }

    /// Decrypts an encrypted message with `iv`: the plaintext, its payloads and
    /// the last ciphertext block (the next IV).
    pub(super) fn open(&self, header: &Header, data: &[u8], iv: &[u8]) -> Result<Opened, Error> {
        let keys = self
            .m
            .keys
            .as_ref()
            .ok_or_else(|| Error::Local("no phase 1 keys".into()))?;
        if header.flags & Header::FLAG_ENCRYPTION == 0 {
            return Err(Error::Malformed("expected an encrypted message".into()));
        }
        let ct = &data[Header::LEN..];
        let bl = keys.cipher.block_len();
        if ct.is_empty() || !ct.len().is_multiple_of(bl) {
            return Err(Error::Malformed(format!(
                "encrypted body of {} bytes",
                ct.len()
            )));
        }
        let plain = crypto::cbc_decrypt(keys.cipher, &keys.enc_key, iv, ct)
            .map_err(|e| Error::Malformed(e.to_string()))?;
        let payloads = codec::decode_received_payloads(header.next_payload, &plain, Trailing::Any)
            .map_err(|e| Error::Malformed(e.to_string()))?;
        Ok(Opened {
            plain,
            payloads,
            last_block: ct[ct.len() - bl..].to_vec(),
        })
    }

    pub(super) fn phase1_keys(&self) -> Option<&Phase1Keys> {
        self.m.keys.as_ref()
    }

    /// The IV of a new phase 2 or informational exchange with this message id.
    pub(super) fn exchange_iv(&self, message_id: u32) -> Vec<u8> {
        match &self.m.keys {
            Some(k) => crypto::phase2_iv(k.prf, k.cipher, &self.m.iv, message_id),
            None => Vec::new(),
        }
    }

    pub(super) fn new_message_id(&mut self) -> u32 {
        loop {
            let mid = u32::from_be_bytes(super::random_bytes::<4>(&mut *self.rng));
            if mid != 0
                && !self.quick.iter().any(|q| q.mid == mid)
                && !self.quick_done.iter().any(|q| q.0 == mid)
            {
                return mid;
            }
        }
    }

    fn nonzero_cookie(&mut self) -> [u8; 8] {
        loop {
            let c = super::random_bytes::<8>(&mut *self.rng);
            if c != [0; 8] {
                return c;
            }
        }
    }

    fn nonce(&mut self) -> Vec<u8> {
        super::random_bytes::<NONCE_LEN>(&mut *self.rng).to_vec()
    }

    fn send_plain_notify(&mut self, kind: NotifyType) {
        let n = NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi: Vec::new(),
            kind,
            data: Vec::new(),
        };
        let d = self.plain_message(ExchangeType::INFORMATIONAL, vec![Payload::Notify(n)]);
        self.send_raw(d);
    }

    /// An encrypted informational exchange: HASH(1) = prf(SKEYID_a, M-ID | N/D).
    pub(super) fn send_informational(&mut self, payloads: Vec<Payload>) {
        if self.m.keys.is_none() {
            return;
        }
        let mid = self.new_message_id();
        let Some(keys) = self.m.keys.as_ref() else {
            return;
        };
        let (first, body) = codec::encode_payloads(&payloads);
        let hash = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), &body]);
        let mut all = Vec::with_capacity(body.len() + hash.len() + 4);
        Payload::Hash(hash).encode_with_next(first, &mut all);
        all.extend_from_slice(&body);
        let iv = self.exchange_iv(mid);
        if let Ok((d, _)) = self.seal(
            ExchangeType::INFORMATIONAL,
            mid,
            PayloadType::HASH,
            all,
            &iv,
        ) {
            self.send_raw(d);
        }
    }

    fn send_pending(&mut self, now: Instant, data: Vec<u8>) {
        self.pending = Some(Pending::new(data.clone(), now, &self.config.retransmit));
        self.send_raw(data);
    }

    fn our_identity(&self) -> Identity {
        self.config
            .local_id
            .clone()
            .unwrap_or_else(|| Identity::address(self.local.ip()))
    }

    fn our_id_payload(&self) -> IdPayload {
        let id = self.our_identity();
        IdPayload {
            id_type: id.kind,
            protocol: 0,
            port: 0,
            data: id.data,
        }
    }

    fn auth_method(&self) -> u16 {
        self.config
            .auth
            .method_attr(self.config.xauth.is_some() || self.config.xauth_server.is_some())
    }

    /// Proposals usable in this exchange: aggressive mode sends one KE, so only
    /// proposals with the first proposal's group can be offered.
    fn offerable(&self) -> Vec<IkeProposal> {
        match self.config.mode {
            ExchangeMode::Main => self.config.ike_proposals.clone(),
            ExchangeMode::Aggressive => {
                let g = self.config.ike_proposals[0].group;
                self.config
                    .ike_proposals
                    .iter()
                    .copied()
                    .filter(|p| p.group == g)
                    .collect()
            }
        }
    }

    // ----- initiator -------------------------------------------------------

    fn send_main1(&mut self, now: Instant) {
        let sa = sa::ike_offer(
            &self.offerable(),
            self.auth_method(),
            self.config.ike_lifetime,
        );
        let p = Payload::Sa(sa);
        self.m.sai_b = p.encode_body();
        let mut payloads = vec![p];
        payloads.extend(self.our_vendor_ids());
        let d = self.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = State::ExpectSaReply;
        self.send_pending(now, d);
    }

    fn send_aggressive1(&mut self, now: Instant) -> Result<(), Error> {
        let offer = self.offerable();
        let group = offer[0].group;
        let sa = Payload::Sa(sa::ike_offer(
            &offer,
            self.auth_method(),
            self.config.ike_lifetime,
        ));
        self.m.sai_b = sa.encode_body();
        let dh = DhKeyPair::generate(group, &mut *self.rng);
        self.m.g_xi = dh.public().to_vec();
        self.m.dh = Some(dh);
        self.m.ni = self.nonce();
        let id = self.our_id_payload();
        self.m.our_id = Some(id.clone());
        let mut payloads = vec![
            sa,
            Payload::Ke(self.m.g_xi.clone()),
            Payload::Nonce(self.m.ni.clone()),
            Payload::Id(id),
        ];
        payloads.extend(self.certreq_payloads());
        payloads.extend(self.our_vendor_ids());
        let d = self.plain_message(ExchangeType::AGGRESSIVE, payloads);
        self.state = State::ExpectAggressiveReply;
        self.send_pending(now, d);
        Ok(())
    }

    fn handle_phase1(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let expected = match self.state {
            State::ExpectSaReply
            | State::ExpectKeReply
            | State::ExpectIdHash
            | State::ExpectKe
            | State::ExpectIdHashI => ExchangeType::IDENTITY_PROTECTION,
            State::ExpectAggressiveReply | State::ExpectHashI => ExchangeType::AGGRESSIVE,
            State::ExpectSa => header.exchange,
            // Late retransmissions of phase 1 messages after the fact.
            State::Established | State::Dead => {
                self.counters.dropped += 1;
                return Ok(());
            }
        };
        if header.exchange != expected {
            self.counters.dropped += 1;
            return Ok(());
        }
        match self.state {
            State::ExpectSaReply => self.on_main2(now, header, data),
            State::ExpectKeReply => self.on_main4(now, header, data),
            State::ExpectIdHash => self.on_main6(now, header, data),
            State::ExpectAggressiveReply => self.on_aggressive2(now, header, data),
            State::ExpectSa if header.exchange == ExchangeType::IDENTITY_PROTECTION => {
                self.on_main1(now, header, data)
            }
            State::ExpectSa if header.exchange == ExchangeType::AGGRESSIVE => {
                self.on_aggressive1(now, header, data)
            }
            State::ExpectKe => self.on_main3(now, header, data),
            State::ExpectIdHashI => self.on_main5(now, header, data),
            State::ExpectHashI => self.on_aggressive3(now, header, data),
            _ => {
                self.counters.dropped += 1;
                Ok(())
            }
        }
    }

    fn decode_plain(&mut self, data: &[u8]) -> Option<Message> {
        match Message::decode_received(data) {
            Ok(m) => Some(m),
            Err(e) => {
                self.refuse("a phase 1 message", e);
                None
            }
        }
    }

    /// Drops a message of the peer that belonged to an exchange in progress: counts
    /// it, remembers why (the exchange's timeout error names it) and reports it as
    /// one [`Event::MessageRefused`] line, once per distinct reason and at most
    /// [`super::MAX_REFUSALS_REPORTED`] times.
    pub(super) fn refuse(&mut self, what: &str, why: impl std::fmt::Display) {
        self.counters.dropped += 1;
        let line = format!("{what} from the gateway was refused: {why}");
        if self.last_refusal.as_deref() == Some(line.as_str()) {
            return;
        }
        if self.refusals_reported < super::MAX_REFUSALS_REPORTED {
            self.refusals_reported += 1;
            self.out
                .events
                .push_back(Event::MessageRefused(line.clone()));
        }
        self.last_refusal = Some(line);
    }

    fn on_main2(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        let Some(sa) = msg.payloads.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        }) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        if header.responder_cookie == [0; 8] {
            self.counters.dropped += 1;
            return Ok(());
        }
        let choice = sa::check_ike_reply(sa, &self.offerable(), self.auth_method())?;
        self.rcookie = header.responder_cookie;
        let dh = DhKeyPair::generate(choice.proposal.group, &mut *self.rng);
        self.m.g_xi = dh.public().to_vec();
        self.m.dh = Some(dh);
        self.m.ni = self.nonce();
        self.m.choice = Some(choice);
        self.learn_natt(&msg.payloads);
        let mut payloads = vec![
            Payload::Ke(self.m.g_xi.clone()),
            Payload::Nonce(self.m.ni.clone()),
        ];
        payloads.extend(self.certreq_payloads());
        payloads.extend(self.nat_d_payloads());
        let d = self.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = State::ExpectKeReply;
        self.send_pending(now, d);
        Ok(())
    }

    fn on_main4(&mut self, now: Instant, _header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        let (Some(ke), Some(nr)) = (find_ke(&msg.payloads), find_nonce(&msg.payloads)) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        check_nonce(nr)?;
        self.m.g_xr = ke.to_vec();
        self.m.nr = nr.to_vec();
        self.derive_keys()?;
        self.detect_nat(&msg.payloads);
        self.float_if_needed();
        let id = self.our_id_payload();
        let idii_b = Payload::Id(id.clone()).encode_body();
        self.m.our_id = Some(id.clone());
        let mut payloads = vec![Payload::Id(id)];
        payloads.extend(self.our_auth_payloads(Role::Initiator, &idii_b)?);
        if self.config.initial_contact {
            payloads.push(self.initial_contact());
        }
        let (first, body) = codec::encode_payloads(&payloads);
        let iv = self.m.iv.clone();
        let (d, last) = self.seal(ExchangeType::IDENTITY_PROTECTION, 0, first, body, &iv)?;
        self.m.iv = last;
        self.state = State::ExpectIdHash;
        self.send_pending(now, d);
        Ok(())
    }

    fn on_main6(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        if header.flags & Header::FLAG_ENCRYPTION == 0 {
            self.counters.dropped += 1;
            return Ok(());
        }
        let iv = self.m.iv.clone();
        // A reply we cannot read means the gateway derived other keys: the PSKs differ.
        let opened = self.open(header, data, &iv).map_err(|_| psk_mismatch())?;
        let (idir_b, peer_id) = find_id(&opened).ok_or_else(psk_mismatch)?;
        let payloads: Vec<Payload> = opened.payloads.iter().map(|d| d.payload.clone()).collect();
        self.verify_peer_auth(now, Role::Responder, &idir_b, &peer_id, &payloads)?;
        self.m.iv = opened.last_block;
        self.check_peer_id(&peer_id)?;
        self.m.peer_id = Some(peer_id);
        self.established(now);
        Ok(())
    }

    fn on_aggressive2(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        if header.responder_cookie == [0; 8] {
            self.counters.dropped += 1;
            return Ok(());
        }
        let sa = msg.payloads.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let (Some(sa), Some(ke), Some(nr)) =
            (sa, find_ke(&msg.payloads), find_nonce(&msg.payloads))
        else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let choice = sa::check_ike_reply(sa, &self.offerable(), self.auth_method())?;
        check_nonce(nr)?;
        let id = msg.payloads.iter().find_map(|p| match p {
            Payload::Id(i) => Some(i.clone()),
            _ => None,
        });
        let Some(id) = id else {
            self.counters.dropped += 1;
            return Ok(());
        };
        self.rcookie = header.responder_cookie;
        self.m.choice = Some(choice);
        self.m.g_xr = ke.to_vec();
        self.m.nr = nr.to_vec();
        self.derive_keys()?;
        let idir_b =
            raw_id_body(Some(data)).unwrap_or_else(|| Payload::Id(id.clone()).encode_body());
        let peer_id = Identity {
            kind: id.id_type,
            data: id.data.clone(),
        };
        self.verify_peer_auth(now, Role::Responder, &idir_b, &peer_id, &msg.payloads)?;
        self.check_peer_id(&peer_id)?;
        self.m.peer_id = Some(peer_id);
        self.learn_natt(&msg.payloads);
        self.detect_nat(&msg.payloads);
        let idii_b = Payload::Id(
            self.m
                .our_id
                .clone()
                .unwrap_or_else(|| self.our_id_payload()),
        )
        .encode_body();
        let mut payloads = self.our_auth_payloads(Role::Initiator, &idii_b)?;
        payloads.extend(self.nat_d_payloads());
        self.float_if_needed();
        if self.config.initial_contact {
            payloads.push(self.initial_contact());
        }
        let (first, body) = codec::encode_payloads(&payloads);
        let iv = self.m.iv.clone();
        let (d, last) = self.seal(ExchangeType::AGGRESSIVE, 0, first, body, &iv)?;
        self.m.iv = last;
        // Message 3 gets no answer: it is sent once, and resent if message 2 comes again.
        self.last_exchange = Some((data.to_vec(), d.clone()));
        self.pending = None;
        self.send_raw(d);
        self.established(now);
        Ok(())
    }

    // ----- responder -------------------------------------------------------

    fn on_main1(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        let Some((sai_b, sa)) = msg.payloads.iter().find_map(|p| match p {
            Payload::Sa(s) => Some((p.encode_body(), s)),
            _ => None,
        }) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        self.icookie = header.initiator_cookie;
        let (reply, choice) = sa::choose_ike(sa, &self.config.ike_proposals, self.auth_method())?;
        self.rcookie = self.nonzero_cookie();
        self.m.sai_b = raw_sa_body(data).unwrap_or(sai_b);
        self.m.choice = Some(choice);
        self.learn_natt(&msg.payloads);
        let mut payloads = vec![Payload::Sa(reply)];
        payloads.extend(self.natt.map(|v| Payload::VendorId(natt::vendor_id_for(v))));
        if self.config.dpd.is_some() {
            payloads.push(Payload::VendorId(VID_DPD.to_vec()));
        }
        if self.config.fragmentation {
            payloads.push(Payload::VendorId(
                super::fragment::VID_FRAGMENTATION.to_vec(),
            ));
        }
        let d = self.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = State::ExpectKe;
        self.answered(now, data, d, true);
        Ok(())
    }

    fn on_main3(&mut self, now: Instant, _header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        let (Some(ke), Some(ni)) = (find_ke(&msg.payloads), find_nonce(&msg.payloads)) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        check_nonce(ni)?;
        let group = self
            .m
            .choice
            .as_ref()
            .map(|c| c.proposal.group)
            .ok_or_else(|| Error::Local("no choice".into()))?;
        let dh = DhKeyPair::generate(group, &mut *self.rng);
        self.m.g_xr = dh.public().to_vec();
        self.m.dh = Some(dh);
        self.m.g_xi = ke.to_vec();
        self.m.ni = ni.to_vec();
        self.m.nr = self.nonce();
        self.derive_keys()?;
        self.detect_nat(&msg.payloads);
        let mut payloads = vec![
            Payload::Ke(self.m.g_xr.clone()),
            Payload::Nonce(self.m.nr.clone()),
        ];
        payloads.extend(self.certreq_payloads());
        payloads.extend(self.nat_d_payloads());
        let d = self.plain_message(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = State::ExpectIdHashI;
        self.answered(now, data, d, true);
        Ok(())
    }

    fn on_main5(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let iv = self.m.iv.clone();
        let opened = self.open(header, data, &iv).map_err(|_| psk_mismatch())?;
        let (idii_b, peer_id) = find_id(&opened).ok_or_else(psk_mismatch)?;
        let payloads: Vec<Payload> = opened.payloads.iter().map(|d| d.payload.clone()).collect();
        self.verify_peer_auth(now, Role::Initiator, &idii_b, &peer_id, &payloads)?;
        self.m.iv = opened.last_block;
        self.check_peer_id(&peer_id)?;
        self.m.peer_id = Some(peer_id);
        let id = self.our_id_payload();
        let idir_b = Payload::Id(id.clone()).encode_body();
        self.m.our_id = Some(id.clone());
        let mut payloads = vec![Payload::Id(id)];
        payloads.extend(self.our_auth_payloads(Role::Responder, &idir_b)?);
        let (first, body) = codec::encode_payloads(&payloads);
        let iv = self.m.iv.clone();
        let (d, last) = self.seal(ExchangeType::IDENTITY_PROTECTION, 0, first, body, &iv)?;
        self.m.iv = last;
        self.answered(now, data, d, false);
        self.established(now);
        Ok(())
    }

    fn on_aggressive1(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        let sa = msg.payloads.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        });
        let id = msg.payloads.iter().find_map(|p| match p {
            Payload::Id(i) => Some(i.clone()),
            _ => None,
        });
        let (Some(sa), Some(ke), Some(ni), Some(id)) =
            (sa, find_ke(&msg.payloads), find_nonce(&msg.payloads), id)
        else {
            self.counters.dropped += 1;
            return Ok(());
        };
        self.icookie = header.initiator_cookie;
        check_nonce(ni)?;
        let (reply, choice) = sa::choose_ike(sa, &self.config.ike_proposals, self.auth_method())?;
        let peer_id = Identity {
            kind: id.id_type,
            data: id.data.clone(),
        };
        self.check_peer_id(&peer_id)?;
        self.rcookie = self.nonzero_cookie();
        self.learn_natt(&msg.payloads);
        self.m.sai_b = raw_sa_body(data).unwrap_or_else(|| Payload::Sa(sa.clone()).encode_body());
        let group = choice.proposal.group;
        self.m.choice = Some(choice);
        let dh = DhKeyPair::generate(group, &mut *self.rng);
        self.m.g_xr = dh.public().to_vec();
        self.m.dh = Some(dh);
        self.m.g_xi = ke.to_vec();
        self.m.ni = ni.to_vec();
        self.m.nr = self.nonce();
        self.m.peer_id = Some(peer_id);
        self.derive_keys()?;
        let our = self.our_id_payload();
        let idir_b = Payload::Id(our.clone()).encode_body();
        self.m.our_id = Some(our.clone());
        let auth = self.our_auth_payloads(Role::Responder, &idir_b)?;
        let mut payloads = vec![
            Payload::Sa(reply),
            Payload::Ke(self.m.g_xr.clone()),
            Payload::Nonce(self.m.nr.clone()),
            Payload::Id(our),
        ];
        payloads.extend(auth);
        payloads.extend(self.certreq_payloads());
        payloads.extend(self.natt.map(|v| Payload::VendorId(natt::vendor_id_for(v))));
        if self.config.dpd.is_some() {
            payloads.push(Payload::VendorId(VID_DPD.to_vec()));
        }
        if self.config.fragmentation {
            payloads.push(Payload::VendorId(
                super::fragment::VID_FRAGMENTATION.to_vec(),
            ));
        }
        payloads.extend(self.nat_d_payloads());
        let d = self.plain_message(ExchangeType::AGGRESSIVE, payloads);
        self.state = State::ExpectHashI;
        self.answered(now, data, d, true);
        Ok(())
    }

    fn on_aggressive3(&mut self, now: Instant, header: &Header, data: &[u8]) -> Result<(), Error> {
        let idii_b = self
            .m
            .peer_id
            .as_ref()
            .map(|i| {
                Payload::Id(IdPayload {
                    id_type: i.kind,
                    protocol: 0,
                    port: 0,
                    data: i.data.clone(),
                })
                .encode_body()
            })
            .unwrap_or_default();
        let idii_b =
            raw_id_body(self.last_exchange.as_ref().map(|(r, _)| r.as_slice())).unwrap_or(idii_b);
        let payloads = if header.flags & Header::FLAG_ENCRYPTION != 0 {
            let iv = self.m.iv.clone();
            let opened = self.open(header, data, &iv).map_err(|_| psk_mismatch())?;
            self.m.iv = opened.last_block;
            opened
                .payloads
                .into_iter()
                .map(|d| d.payload)
                .collect::<Vec<_>>()
        } else {
            let Some(msg) = self.decode_plain(data) else {
                return Ok(());
            };
            msg.payloads
        };
        // RFC 3947: in aggressive mode the initiator's NAT-D come in message 3.
        self.detect_nat(&payloads);
        let peer_id = self
            .m
            .peer_id
            .clone()
            .ok_or_else(|| Error::Local("no peer identity".into()))?;
        self.verify_peer_auth(now, Role::Initiator, &idii_b, &peer_id, &payloads)?;
        self.established(now);
        Ok(())
    }

    /// Responder: remember the request and our answer (to answer a retransmitted
    /// request again) and send it; when the answer expects a reply of its own,
    /// it is also retransmitted on our timer (the initiator's last message of an
    /// exchange has no answer, so only we can repair its loss).
    fn answered(&mut self, now: Instant, request: &[u8], reply: Vec<u8>, expects_reply: bool) {
        self.last_exchange = Some((request.to_vec(), reply.clone()));
        if expects_reply {
            self.send_pending(now, reply);
        } else {
            self.pending = None;
            self.send_raw(reply);
        }
    }

    // ----- shared ----------------------------------------------------------

    fn derive_keys(&mut self) -> Result<(), Error> {
        let choice = self
            .m
            .choice
            .clone()
            .ok_or_else(|| Error::Local("no phase 1 choice".into()))?;
        let dh = self
            .m
            .dh
            .as_ref()
            .ok_or_else(|| Error::Local("no DH value".into()))?;
        let peer = match self.role {
            Role::Initiator => &self.m.g_xr,
            Role::Responder => &self.m.g_xi,
        };
        let g_xy = dh.shared_secret(peer).map_err(|e| {
            Error::Malformed(format!("the peer's key exchange value is invalid: {e}"))
        })?;
        let prf = choice.proposal.hash;
        let skeyid = match &self.config.auth {
            Auth::Psk(psk) => crypto::skeyid_psk(prf, psk, &self.m.ni, &self.m.nr),
            Auth::Signature(_) | Auth::Hybrid(_) => {
                crypto::skeyid_sig(prf, &self.m.ni, &self.m.nr, &g_xy)
            }
        };
        let keys = crypto::derive_phase1(
            prf,
            choice.proposal.cipher,
            skeyid,
            &g_xy,
            &self.icookie,
            &self.rcookie,
            &self.m.g_xi,
            &self.m.g_xr,
        );
        self.m.iv = keys.iv.clone();
        self.m.keys = Some(keys);
        Ok(())
    }

    /// HASH_I (`who` = initiator) or HASH_R over the given ID body.
    fn auth_hash(&self, who: Role, id_b: &[u8]) -> Result<Vec<u8>, Error> {
        let keys = self
            .m
            .keys
            .as_ref()
            .ok_or_else(|| Error::Local("no phase 1 keys".into()))?;
        let f = match who {
            Role::Initiator => crypto::hash_i,
            Role::Responder => crypto::hash_r,
        };
        Ok(f(
            keys.prf,
            &keys.skeyid,
            &self.m.g_xi,
            &self.m.g_xr,
            &self.icookie,
            &self.rcookie,
            &self.m.sai_b,
            id_b,
        ))
    }

    /// What proves the side in role `who` (us): HASH, or our CERTs and SIG.
    fn our_auth_payloads(&mut self, who: Role, id_b: &[u8]) -> Result<Vec<Payload>, Error> {
        let hash = self.auth_hash(who, id_b)?;
        if !self.config.auth.signs(who) {
            return Ok(vec![Payload::Hash(hash)]);
        }
        let certs = self
            .config
            .auth
            .certs()
            .cloned()
            .ok_or_else(|| Error::Local("no certificates configured".into()))?;
        let key = certs
            .key
            .as_ref()
            .ok_or_else(|| Error::Local("no private key configured".into()))?;
        let sig = key
            .sign_ike(&hash, &mut *self.rng)
            .map_err(|e| Error::Local(e.to_string()))?;
        let mut out: Vec<Payload> = certs
            .chain
            .iter()
            .map(|c| {
                Payload::Cert(CertPayload {
                    encoding: CertPayload::X509_SIG,
                    data: c.der().to_vec(),
                })
            })
            .collect();
        out.push(Payload::Sig(sig));
        Ok(out)
    }

    /// CERTREQ payloads naming our CAs, when the peer is to sign.
    fn certreq_payloads(&self) -> Vec<Payload> {
        let peer = match self.role {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        };
        if !self.config.auth.signs(peer) {
            return Vec::new();
        }
        let Some(certs) = self.config.auth.certs() else {
            return Vec::new();
        };
        certs
            .trusted
            .iter()
            .map(|ca| {
                Payload::CertReq(CertPayload {
                    encoding: CertPayload::X509_SIG,
                    data: ca.subject_der(),
                })
            })
            .collect()
    }

    /// The wall time at engine time `now`.
    fn wall_time(&self, now: Instant) -> Result<SystemTime, Error> {
        let (at, wall) = self.config.wall_clock.ok_or_else(|| {
            Error::Local("no wall clock given: certificates cannot be checked".into())
        })?;
        Ok(if now >= at {
            wall + (now - at)
        } else {
            wall.checked_sub(at - now).unwrap_or(wall)
        })
    }

    /// Checks what proves the peer (in role `peer_role`): its HASH, or its
    /// certificate chain (to our CAs, at the wall time of `now`), that the
    /// certificate names `peer_id`, and its SIG over HASH_I/HASH_R.
    fn verify_peer_auth(
        &self,
        now: Instant,
        peer_role: Role,
        id_b: &[u8],
        peer_id: &Identity,
        payloads: &[Payload],
    ) -> Result<(), Error> {
        let expected = self.auth_hash(peer_role, id_b)?;
        if !self.config.auth.signs(peer_role) {
            let hash = find_hash_plain(payloads).ok_or_else(|| self.hash_mismatch(peer_role))?;
            if !crypto::ct_eq(&expected, hash) {
                return Err(self.hash_mismatch(peer_role));
            }
            return Ok(());
        }
        let certs = self
            .config
            .auth
            .certs()
            .ok_or_else(|| Error::Local("no certificates configured".into()))?;
        let sig = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Sig(s) => Some(s.as_slice()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::AuthenticationFailed("the peer sent no signature (SIG payload)".into())
            })?;
        let mut chain = Vec::new();
        for p in payloads {
            if let Payload::Cert(c) = p
                && c.encoding == CertPayload::X509_SIG
            {
                chain.push(cert::Certificate::from_der(&c.data).map_err(Error::Certificate)?);
            }
        }
        let at = self.wall_time(now)?;
        let ee = cert::validate_chain(&chain, &certs.trusted, &certs.crls, at)
            .map_err(Error::Certificate)?;
        cert::check_identity(ee, peer_id).map_err(Error::Certificate)?;
        let key = ee.public_key().map_err(Error::Certificate)?;
        if !key.verify_ike(&expected, sig) {
            return Err(Error::Certificate(cert::CertError::BadIkeSignature(
                ee.subject(),
            )));
        }
        Ok(())
    }

    fn hash_mismatch(&self, peer_role: Role) -> Error {
        match (&self.config.auth, peer_role) {
            (Auth::Psk(_), Role::Initiator) => {
                Error::AuthenticationFailed("HASH_I mismatch: pre-shared key mismatch?".into())
            }
            (Auth::Psk(_), Role::Responder) => psk_mismatch(),
            _ => Error::AuthenticationFailed(format!(
                "the peer's {} does not match",
                if peer_role == Role::Initiator {
                    "HASH_I"
                } else {
                    "HASH_R"
                }
            )),
        }
    }

    fn check_peer_id(&self, peer: &Identity) -> Result<(), Error> {
        match &self.config.remote_id {
            Some(want) if want != peer => Err(Error::InvalidId(format!(
                "the peer identified as {peer}, expected {want}"
            ))),
            _ => Ok(()),
        }
    }

    fn initial_contact(&self) -> Payload {
        let mut spi = self.icookie.to_vec();
        spi.extend_from_slice(&self.rcookie);
        Payload::Notify(NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi,
            kind: NotifyType::INITIAL_CONTACT,
            data: Vec::new(),
        })
    }

    fn established(&mut self, now: Instant) {
        self.pending = None;
        self.state = State::Established;
        let choice = self.m.choice.clone();
        let (Some(choice), Some(peer_id)) = (choice, self.m.peer_id.clone()) else {
            return;
        };
        let info = Phase1Info {
            mode: self.config.mode,
            proposal: choice.proposal,
            lifetime: choice
                .lifetime
                .unwrap_or(self.config.ike_lifetime)
                .min(self.config.ike_lifetime),
            local_id: self.our_identity(),
            peer_id,
            initiator_cookie: self.icookie,
            responder_cookie: self.rcookie,
            nat_t: self.udp_encapsulation(),
            nat: self.nat,
        };
        // The DH secret is no longer needed.
        self.m.dh = None;
        self.info = Some(info.clone());
        self.out.events.push_back(Event::Phase1Established(info));
        self.dpd.heard(now);
        self.begin_setup(now);
        self.schedule_renewal(now);
    }

    // ----- NAT traversal ---------------------------------------------------

    fn our_vendor_ids(&self) -> Vec<Payload> {
        let mut v = vec![
            Payload::VendorId(VID_XAUTH.to_vec()),
            Payload::VendorId(VID_UNITY.to_vec()),
        ];
        if self.config.fragmentation {
            v.push(Payload::VendorId(
                super::fragment::VID_FRAGMENTATION.to_vec(),
            ));
        }
        if self.config.dpd.is_some() {
            v.push(Payload::VendorId(VID_DPD.to_vec()));
        }
        if self.config.nat_traversal != NatTraversal::Off {
            v.extend(natt::our_vendor_ids().into_iter().map(Payload::VendorId));
        }
        v
    }

    /// Takes note of the NAT-T dialect and DPD support the peer's vendor IDs announce.
    fn learn_natt(&mut self, payloads: &[Payload]) {
        self.dpd.peer_supports = payloads
            .iter()
            .any(|p| matches!(p, Payload::VendorId(v) if v.as_slice() == VID_DPD));
        self.peer_fragmentation = self.config.fragmentation
            && payloads.iter().any(
                |p| matches!(p, Payload::VendorId(v) if super::fragment::is_fragmentation_vid(v)),
            );
        if self.config.nat_traversal == NatTraversal::Off {
            return;
        }
        let vids = payloads.iter().filter_map(|p| match p {
            Payload::VendorId(v) => Some(v.as_slice()),
            _ => None,
        });
        self.natt = natt::version_from_vendor_ids(vids);
    }

    /// NAT-D payloads: first the peer's address as we see it, then ours. With
    /// `force`, ours is deliberately wrong so the peer sees a NAT and encapsulates.
    fn nat_d_payloads(&mut self) -> Vec<Payload> {
        let (Some(v), Some(choice)) = (self.natt, self.m.choice.as_ref()) else {
            return Vec::new();
        };
        let hash = choice.proposal.hash;
        let peer = natt::nat_d(hash, &self.icookie, &self.rcookie, self.remote);
        let ours = if self.config.nat_traversal == NatTraversal::Force {
            super::random_bytes::<16>(&mut *self.rng).to_vec()
        } else {
            natt::nat_d(hash, &self.icookie, &self.rcookie, self.local)
        };
        vec![
            Payload::NatD {
                draft: v.draft(),
                hash: peer,
            },
            Payload::NatD {
                draft: v.draft(),
                hash: ours,
            },
        ]
    }

    fn detect_nat(&mut self, payloads: &[Payload]) {
        let (Some(_), Some(choice)) = (self.natt, self.m.choice.as_ref()) else {
            return;
        };
        let hash = choice.proposal.hash;
        let received: Vec<Vec<u8>> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::NatD { hash, .. } => Some(hash.clone()),
                _ => None,
            })
            .collect();
        let us = natt::nat_d(hash, &self.icookie, &self.rcookie, self.local);
        let peer = natt::nat_d(hash, &self.icookie, &self.rcookie, self.remote);
        match natt::detect(&received, &us, &peer) {
            Some(n) => self.nat = n,
            // The peer announced NAT-T but sent no NAT-D: treat as no NAT.
            None => self.natt = None,
        }
        if self.config.nat_traversal == NatTraversal::Force {
            self.nat.local_behind_nat = true;
        }
    }

    /// Initiator: move to port 4500 once a NAT is known (RFC 3947 §4).
    fn float_if_needed(&mut self) {
        if self.natt.is_some() && self.nat.any() && !self.floated {
            self.floated = true;
            self.remote.set_port(NAT_T_PORT);
        }
    }

    // ----- informational ---------------------------------------------------

    fn handle_informational(
        &mut self,
        now: Instant,
        header: &Header,
        data: &[u8],
    ) -> Result<(), Error> {
        if header.flags & Header::FLAG_ENCRYPTION == 0 {
            return self.handle_plain_informational(data);
        }
        if self.m.keys.is_none() {
            self.counters.dropped += 1;
            return Ok(());
        }
        let iv = self.exchange_iv(header.message_id);
        let Ok(opened) = self.open(header, data, &iv) else {
            if self.state == State::ExpectIdHash {
                // Encrypted with keys we do not share: the PSKs differ.
                return Err(psk_mismatch());
            }
            self.counters.dropped += 1;
            return Ok(());
        };
        // HASH(1) = prf(SKEYID_a, M-ID | rest of the message)
        let Some((hash, rest)) = split_hash(&opened) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let Some(keys) = self.m.keys.as_ref() else {
            return Ok(());
        };
        let expected = crypto::prf(
            keys.prf,
            &keys.skeyid_a,
            &[&header.message_id.to_be_bytes(), rest],
        );
        if !crypto::ct_eq(&expected, hash) {
            self.counters.dropped += 1;
            return Ok(());
        }
        for d in &opened.payloads {
            match &d.payload {
                Payload::Delete(del) => self.on_delete(del),
                Payload::Notify(n)
                    if matches!(n.kind, NotifyType::R_U_THERE | NotifyType::R_U_THERE_ACK) =>
                {
                    self.on_dpd_notify(now, n)
                }
                Payload::Notify(n) => self.on_authenticated_notify(n)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Plaintext notifies are unauthenticated: they can end a negotiation still in
    /// phase 1 (that is how gateways say "no proposal chosen"), never an established SA.
    fn handle_plain_informational(&mut self, data: &[u8]) -> Result<(), Error> {
        if matches!(self.state, State::Established | State::ExpectSa)
            || self.role == Role::Responder
        {
            self.counters.dropped += 1;
            return Ok(());
        }
        let Some(msg) = self.decode_plain(data) else {
            return Ok(());
        };
        for p in &msg.payloads {
            if let Payload::Notify(n) = p
                && n.kind.is_error()
            {
                if self.state == State::ExpectIdHash
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
        self.counters.dropped += 1;
        Ok(())
    }

    fn on_delete(&mut self, del: &DeletePayload) {
        if del.protocol == ProtocolId::ISAKMP {
            let mut ours = self.icookie.to_vec();
            ours.extend_from_slice(&self.rcookie);
            if del.spis.contains(&ours) {
                for c in std::mem::take(&mut self.children) {
                    self.out.events.push_back(Event::Phase2Deleted {
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        by_peer: true,
                    });
                }
                self.state = State::Dead;
                self.pending = None;
                self.quick.clear();
                self.out.events.push_back(Event::Phase1Deleted);
            }
        } else if del.protocol == ProtocolId::ESP {
            for spi in &del.spis {
                let Some(spi) = sa::spi_u32(spi) else {
                    continue;
                };
                // The peer names the SPI it receives on: our outbound SPI.
                if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                    let c = self.children.remove(i);
                    self.child_timers.retain(|t| t.spi_in != c.spi_in);
                    self.out.events.push_back(Event::Phase2Deleted {
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        by_peer: true,
                    });
                }
            }
        }
    }

    fn on_authenticated_notify(&mut self, n: &NotifyPayload) -> Result<(), Error> {
        if n.kind.is_error() {
            // An authenticated error about a quick mode of ours: that quick mode failed.
            let err = Error::from_notify(n.kind, &n.data);
            if let Some(spi) = sa::spi_u32(&n.spi) {
                if let Some(i) = self.quick.iter().position(|q| q.spi_in == spi) {
                    self.quick.remove(i);
                }
            } else if self.quick.len() == 1 {
                self.quick.clear();
            }
            return Err(err);
        }
        Ok(())
    }
}

/// Cisco's XAuth vendor ID (draft-ietf-ipsra-isakmp-xauth-06) and the Cisco Unity
/// vendor ID: gateways send split-include and banners only to Unity clients.
const VID_XAUTH: [u8; 8] = [0x09, 0x00, 0x26, 0x89, 0xdf, 0xd6, 0xb7, 0x12];
const VID_UNITY: [u8; 16] = [
    0x12, 0xf5, 0xf2, 0x8c, 0x45, 0x71, 0x68, 0xa9, 0x70, 0x2d, 0x9f, 0xe2, 0x74, 0xcc, 0x01, 0x00,
];

/// A decrypted message.
pub(super) struct Opened {
    pub plain: Vec<u8>,
    pub payloads: Vec<Decoded>,
    pub last_block: Vec<u8>,
}

fn psk_mismatch() -> Error {
    Error::AuthenticationFailed("pre-shared key mismatch?".into())
}

fn check_nonce(n: &[u8]) -> Result<(), Error> {
    if (8..=256).contains(&n.len()) {
        Ok(())
    } else {
        Err(Error::Malformed(format!("nonce of {} bytes", n.len())))
    }
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

fn find_hash_plain(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|p| match p {
        Payload::Hash(h) => Some(h.as_slice()),
        _ => None,
    })
}

/// The raw body of the first ID payload and the identity it names.
fn find_id(o: &Opened) -> Option<(Vec<u8>, Identity)> {
    o.payloads.iter().find_map(|d| match &d.payload {
        Payload::Id(i) => {
            let body = o.plain.get(d.span.start + 4..d.span.end)?.to_vec();
            Some((
                body,
                Identity {
                    kind: i.id_type,
                    data: i.data.clone(),
                },
            ))
        }
        _ => None,
    })
}

/// The HASH payload that must come first, and the bytes of every payload after it.
pub(super) fn split_hash(o: &Opened) -> Option<(&[u8], &[u8])> {
    let first = o.payloads.first()?;
    let Payload::Hash(h) = &first.payload else {
        return None;
    };
    let end = o.payloads.last()?.span.end;
    Some((h.as_slice(), o.plain.get(first.span.end..end)?))
}

/// The SA payload body exactly as received (hashes cover the peer's bytes).
fn raw_sa_body(datagram: &[u8]) -> Option<Vec<u8>> {
    raw_body(datagram, PayloadType::SA)
}

fn raw_id_body(datagram: Option<&[u8]>) -> Option<Vec<u8>> {
    raw_body(datagram?, PayloadType::ID)
}

fn raw_body(datagram: &[u8], kind: PayloadType) -> Option<Vec<u8>> {
    let h = Header::decode(datagram).ok()?;
    let body = datagram.get(Header::LEN..h.length as usize)?;
    let decoded =
        codec::decode_received_payloads(h.next_payload, body, Trailing::Alignment).ok()?;
    let d = decoded.iter().find(|d| d.payload.kind() == kind)?;
    body.get(d.span.start + 4..d.span.end).map(<[u8]>::to_vec)
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Ike>();
}
