//! The ISAKMP SA context: what every exchange under one phase 1 SA shares.
//!
//! An [`IsakmpSa`] holds the cookies, our role and configuration, the phase 1
//! keys and the phase 1 CBC IV chain, the addresses (and where NAT-T moved
//! them), the message ids in use, the outbox of datagrams and events, the
//! counters and the RNG. The sub-machines (phase 1, quick mode, transaction,
//! DPD, child SA timers, renewal) own their own state and are handed the
//! context `&mut`; they reach each other only through [`super::Ike`].
//!
//! The API, in groups:
//! - who: [`role`](IsakmpSa::role), [`config`](IsakmpSa::config),
//!   [`spi`](IsakmpSa::spi) (the cookies), [`set_rcookie`](IsakmpSa::set_rcookie)...;
//! - randomness: [`random`](IsakmpSa::random), [`nonce`](IsakmpSa::nonce),
//!   [`rng`](IsakmpSa::rng);
//! - keys: [`set_keys`](IsakmpSa::set_keys) (starts the IV chain),
//!   [`keys`](IsakmpSa::keys), [`exchange_iv`](IsakmpSa::exchange_iv);
//! - protection: [`seal`](IsakmpSa::seal) / [`open`](IsakmpSa::open) (encrypt or
//!   decrypt with a given IV, returning the next one),
//!   [`seal_phase1`](IsakmpSa::seal_phase1) / [`open_phase1`](IsakmpSa::open_phase1)
//!   (on the phase 1 IV chain), [`seal_hashed`](IsakmpSa::seal_hashed) /
//!   [`verify_hash`](IsakmpSa::verify_hash) (`HASH = prf(SKEYID_a, M-ID | ...)`);
//! - message ids: [`new_message_id`](IsakmpSa::new_message_id) avoids the ids
//!   quick mode holds ([`hold_message_id`](IsakmpSa::hold_message_id),
//!   [`release_message_id`](IsakmpSa::release_message_id));
//! - sending: [`send`](IsakmpSa::send) (fragmented when the peer takes it),
//!   [`plain_message`](IsakmpSa::plain_message),
//!   [`send_informational`](IsakmpSa::send_informational),
//!   [`send_plain_notify`](IsakmpSa::send_plain_notify), the answer memo for
//!   retransmitted requests ([`remember_answer`](IsakmpSa::remember_answer),
//!   [`answer_again`](IsakmpSa::answer_again));
//! - the outbox: [`event`](IsakmpSa::event), [`poll_transmit`](IsakmpSa::poll_transmit),
//!   [`poll_event`](IsakmpSa::poll_event); counters: [`dropped`](IsakmpSa::dropped),
//!   [`resend`](IsakmpSa::resend), [`refuse`](IsakmpSa::refuse);
//! - NAT-T: [`learn_vendor_ids`](IsakmpSa::learn_vendor_ids),
//!   [`nat_d_payloads`](IsakmpSa::nat_d_payloads), [`detect_nat`](IsakmpSa::detect_nat),
//!   [`float_if_needed`](IsakmpSa::float_if_needed), [`follow_peer`](IsakmpSa::follow_peer).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::algs::HashAlg;
use crate::codec::{
    self, Decoded, ExchangeType, Header, Message, NotifyPayload, NotifyType, Payload, PayloadType,
    ProtocolId, Trailing,
};
use crate::crypto::{self, Phase1Keys, Rng};

use super::dpd::VID_DPD;
use super::fragment::{self, Fragmentation};
use super::natt::{self, NAT_T_PORT, NatState, NatTraversal, NattVersion};
use super::sa::DOI_IPSEC;
use super::{Config, Counters, Error, Event, Outbox, Role, Transmit};

const NONCE_LEN: usize = 32;

/// The cookies, phase 1 keys and the phase 1 IV chain of one ISAKMP SA: what a
/// renewal swaps (the retired SA keeps these to send its DELETE).
#[derive(Default)]
pub(crate) struct SaKeys {
    icookie: [u8; 8],
    rcookie: [u8; 8],
    keys: Option<Phase1Keys>,
    /// The current phase 1 CBC IV (last ciphertext block seen in phase 1).
    iv: Vec<u8>,
}

/// See the [module docs](self).
pub(crate) struct IsakmpSa {
    role: Role,
    config: Config,
    rng: Box<dyn Rng + Send>,
    local: SocketAddr,
    remote: SocketAddr,
    /// The peer's address before any NAT-T float (a renewal starts there).
    original_remote: SocketAddr,
    sa: SaKeys,
    out: Outbox,
    counters: Counters,
    /// The NAT-T dialect both sides speak, once known.
    natt: Option<NattVersion>,
    nat: NatState,
    /// IKE has moved to port 4500 (and ESP will be UDP-encapsulated).
    floated: bool,
    /// The peer announced dead peer detection.
    peer_dpd: bool,
    frag: Fragmentation,
    /// The last datagram received and our answer to it, to answer retransmissions
    /// without processing them again.
    last_exchange: Option<(Vec<u8>, Vec<u8>)>,
    /// Message ids of quick modes under way or remembered: new ids avoid them.
    held_mids: Vec<u32>,
    /// Why the last message of the peer was refused (named again when the exchange
    /// waiting for it gives up), and how many refusals were reported.
    last_refusal: Option<String>,
    refusals_reported: u32,
    /// Why the last datagram was dropped (for the rate-limited drop report).
    last_drop: String,
}

impl IsakmpSa {
    pub fn new(
        role: Role,
        config: Config,
        local: SocketAddr,
        remote: SocketAddr,
        rng: Box<dyn Rng + Send>,
    ) -> Self {
        IsakmpSa {
            role,
            config,
            rng,
            local,
            remote,
            original_remote: remote,
            sa: SaKeys::default(),
            out: Outbox::default(),
            counters: Counters::default(),
            natt: None,
            nat: NatState::default(),
            floated: false,
            peer_dpd: false,
            frag: Fragmentation::default(),
            last_exchange: None,
            held_mids: Vec::new(),
            last_refusal: None,
            refusals_reported: 0,
            last_drop: String::new(),
        }
    }

    /// A responder's negotiation that never completed is forgotten: cookies, keys,
    /// what the peer announced, the remembered answer. Counters, the refusal
    /// budget and the configuration stay.
    pub fn forget_negotiation(&mut self) {
        self.sa = SaKeys::default();
        self.natt = None;
        self.nat = NatState::default();
        self.floated = false;
        self.peer_dpd = false;
        self.frag = Fragmentation::default();
        self.last_exchange = None;
        self.held_mids.clear();
        self.last_refusal = None;
    }

    // ----- who ---------------------------------------------------------------

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    #[cfg(test)]
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
    pub fn icookie(&self) -> [u8; 8] {
        self.sa.icookie
    }
    pub fn rcookie(&self) -> [u8; 8] {
        self.sa.rcookie
    }
    pub fn set_icookie(&mut self, c: [u8; 8]) {
        self.sa.icookie = c;
    }
    pub fn set_rcookie(&mut self, c: [u8; 8]) {
        self.sa.rcookie = c;
    }
    /// The ISAKMP SPI: initiator cookie | responder cookie.
    pub fn spi(&self) -> Vec<u8> {
        let mut spi = self.sa.icookie.to_vec();
        spi.extend_from_slice(&self.sa.rcookie);
        spi
    }
    /// A fresh non-zero cookie.
    pub fn new_cookie(&mut self) -> [u8; 8] {
        loop {
            let c = self.random::<8>();
            if c != [0; 8] {
                return c;
            }
        }
    }

    // ----- randomness --------------------------------------------------------

    pub fn random<const N: usize>(&mut self) -> [u8; N] {
        super::random_bytes::<N>(&mut *self.rng)
    }
    pub fn nonce(&mut self) -> Vec<u8> {
        self.random::<NONCE_LEN>().to_vec()
    }
    pub fn rng(&mut self) -> &mut dyn Rng {
        &mut *self.rng
    }

    // ----- keys and the IV chain ----------------------------------------------

    /// Phase 1 keys are derived: they protect everything from now on, and the
    /// phase 1 IV chain starts at their initial IV.
    pub fn set_keys(&mut self, keys: Phase1Keys) {
        self.sa.iv = keys.iv.clone();
        self.sa.keys = Some(keys);
    }
    pub fn keys(&self) -> Option<&Phase1Keys> {
        self.sa.keys.as_ref()
    }
    fn keys_or_err(&self) -> Result<&Phase1Keys, Error> {
        self.keys()
            .ok_or_else(|| Error::Local("no phase 1 keys".into()))
    }

    /// The IV of a new phase 2 or informational exchange with this message id.
    pub fn exchange_iv(&self, message_id: u32) -> Vec<u8> {
        match &self.sa.keys {
            Some(k) => crypto::phase2_iv(k.prf, k.cipher, &self.sa.iv, message_id),
            None => Vec::new(),
        }
    }

    /// Swaps the cookies, keys and IV chain with `other` (a renewal takes over, or
    /// the retired SA sends its DELETE).
    pub fn swap_sa(&mut self, other: &mut SaKeys) {
        std::mem::swap(&mut self.sa, other);
    }

    // ----- protection ----------------------------------------------------------

    fn header(&self, exchange: ExchangeType, message_id: u32, flags: u8) -> Header {
        Header {
            initiator_cookie: self.sa.icookie,
            responder_cookie: self.sa.rcookie,
            next_payload: PayloadType::NONE,
            version: 0x10,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    /// An unencrypted message with message id 0 (phase 1 before the keys).
    pub fn plain_message(&self, exchange: ExchangeType, payloads: Vec<Payload>) -> Vec<u8> {
        Message {
            header: self.header(exchange, 0, 0),
            payloads,
        }
        .encode()
    }

    /// Encrypts `first`/`body` (an encoded payload chain) under the phase 1 keys
    /// with `iv`; returns the datagram and the last ciphertext block (the next IV).
    pub fn seal(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        first: PayloadType,
        mut body: Vec<u8>,
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let keys = self.keys_or_err()?;
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
    pub fn open(&self, header: &Header, data: &[u8], iv: &[u8]) -> Result<Opened, Error> {
        let keys = self.keys_or_err()?;
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

    /// A phase 1 message (message id 0) encrypted on the phase 1 IV chain, which
    /// moves on to its last block.
    pub fn seal_phase1(
        &mut self,
        exchange: ExchangeType,
        payloads: &[Payload],
    ) -> Result<Vec<u8>, Error> {
        let (first, body) = codec::encode_payloads(payloads);
        let (d, last) = self.seal(exchange, 0, first, body, &self.sa.iv)?;
        self.sa.iv = last;
        Ok(d)
    }

    /// Decrypts a phase 1 message on the phase 1 IV chain. The chain moves on
    /// only with [`IsakmpSa::advance_phase1_iv`], once the message is accepted.
    pub fn open_phase1(&self, header: &Header, data: &[u8]) -> Result<Opened, Error> {
        self.open(header, data, &self.sa.iv)
    }

    pub fn advance_phase1_iv(&mut self, last_block: Vec<u8>) {
        self.sa.iv = last_block;
    }

    /// `HDR*, HASH, payloads...` with HASH = prf(SKEYID_a, M-ID | `prefix` |
    /// payloads), encrypted with `iv`: the datagram and the next IV.
    pub fn seal_hashed(
        &self,
        exchange: ExchangeType,
        mid: u32,
        prefix: &[&[u8]],
        payloads: &[Payload],
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let keys = self.keys_or_err()?;
        let (first, body) = codec::encode_payloads(payloads);
        let m = mid.to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![&m];
        parts.extend_from_slice(prefix);
        parts.push(&body);
        let hash = crypto::prf(keys.prf, &keys.skeyid_a, &parts);
        let mut all = Vec::with_capacity(body.len() + hash.len() + 4);
        Payload::Hash(hash).encode_with_next(first, &mut all);
        all.extend_from_slice(&body);
        self.seal(exchange, mid, PayloadType::HASH, all, iv)
    }

    /// `HDR*, HASH(1), body` for an already encoded payload chain `body` starting with
    /// `first` (any bytes: the harness of the fuzz targets and the hostile tests sends
    /// what a peer holding the keys could send), on the IV of exchange `mid` (not 0).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn seal_hashed_raw(
        &self,
        exchange: ExchangeType,
        mid: u32,
        first: PayloadType,
        body: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let keys = self.keys_or_err()?;
        let hash = crypto::prf(keys.prf, &keys.skeyid_a, &[&mid.to_be_bytes(), body]);
        let mut all = Vec::with_capacity(body.len() + hash.len() + 4);
        Payload::Hash(hash).encode_with_next(first, &mut all);
        all.extend_from_slice(body);
        let iv = self.exchange_iv(mid);
        Ok(self.seal(exchange, mid, PayloadType::HASH, all, &iv)?.0)
    }

    /// Whether the message starts with HASH = prf(SKEYID_a, M-ID | `prefix` |
    /// every payload after the HASH).
    pub fn verify_hash(&self, header: &Header, opened: &Opened, prefix: &[&[u8]]) -> bool {
        let Some(keys) = self.keys() else {
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

    // ----- message ids ---------------------------------------------------------

    /// A fresh non-zero message id, none of the held ones.
    pub fn new_message_id(&mut self) -> u32 {
        loop {
            let mid = u32::from_be_bytes(self.random::<4>());
            if mid != 0 && !self.held_mids.contains(&mid) {
                return mid;
            }
        }
    }
    /// A quick mode uses this message id (under way, or remembered to answer
    /// retransmissions): new ids must avoid it.
    pub fn hold_message_id(&mut self, mid: u32) {
        self.held_mids.push(mid);
    }
    pub fn release_message_id(&mut self, mid: u32) {
        if let Some(i) = self.held_mids.iter().position(|m| *m == mid) {
            self.held_mids.remove(i);
        }
    }

    // ----- sending -------------------------------------------------------------

    /// Sends a datagram to the peer (as fragments when it is too big and the peer
    /// takes them), from the NAT-T socket once IKE floated.
    pub fn send(&mut self, data: Vec<u8>) {
        for data in self.frag.split(data, self.config.fragment_size) {
            self.out.transmits.push_back(Transmit {
                destination: self.remote,
                data,
                nat_t: self.floated,
            });
        }
    }

    /// Sends a retransmission and counts it.
    pub fn resend(&mut self, data: Vec<u8>) {
        self.counters.retransmits += 1;
        self.send(data);
    }

    /// An unauthenticated notify (a responder refusing phase 1).
    pub fn send_plain_notify(&mut self, kind: NotifyType) {
        let n = NotifyPayload {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi: Vec::new(),
            kind,
            data: Vec::new(),
        };
        let d = self.plain_message(ExchangeType::INFORMATIONAL, vec![Payload::Notify(n)]);
        self.send(d);
    }

    /// An encrypted informational exchange: HASH(1) = prf(SKEYID_a, M-ID | N/D).
    /// Nothing is sent before the keys exist.
    pub fn send_informational(&mut self, payloads: Vec<Payload>) {
        if self.sa.keys.is_none() {
            return;
        }
        let mid = self.new_message_id();
        let iv = self.exchange_iv(mid);
        if let Ok((d, _)) = self.seal_hashed(ExchangeType::INFORMATIONAL, mid, &[], &payloads, &iv)
        {
            self.send(d);
        }
    }

    /// Remembers the request we answered and our answer, to answer a
    /// retransmitted request again without processing it.
    pub fn remember_answer(&mut self, request: Vec<u8>, reply: Vec<u8>) {
        self.last_exchange = Some((request, reply));
    }
    /// A retransmission of the last request we answered gets the same answer.
    pub fn answer_again(&mut self, data: &[u8]) -> bool {
        let Some((req, resp)) = &self.last_exchange else {
            return false;
        };
        if req.as_slice() != data {
            return false;
        }
        let resp = resp.clone();
        self.resend(resp);
        true
    }

    // ----- the outbox, counters, refusals ----------------------------------------

    pub fn event(&mut self, e: Event) {
        self.out.events.push_back(e);
    }
    pub fn transmit(&mut self, t: Transmit) {
        self.out.transmits.push_back(t);
    }
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// A datagram was dropped (counted, nothing else).
    pub fn dropped(&mut self) {
        self.dropped_because("not expected at this point of the exchange");
    }
    /// A datagram was dropped for a reason worth naming in the drop report.
    pub fn dropped_because(&mut self, why: &str) {
        self.counters.dropped = self.counters.dropped.saturating_add(1);
        why.clone_into(&mut self.last_drop);
    }
    /// Why the last datagram was dropped.
    pub fn last_drop(&self) -> &str {
        &self.last_drop
    }

    /// Drops a message of the peer that belonged to an exchange in progress: counts
    /// it, remembers why (the exchange's timeout error names it) and reports it as
    /// one [`Event::MessageRefused`] line, once per distinct reason and at most
    /// [`super::MAX_REFUSALS_REPORTED`] times.
    pub fn refuse(&mut self, what: &str, why: impl std::fmt::Display) {
        let line = format!("{what} from the gateway was refused: {why}");
        self.dropped_because(&line);
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
    /// The reason of the last refusal, forgotten once taken.
    pub fn take_refusal(&mut self) -> Option<String> {
        self.last_refusal.take()
    }

    // ----- addresses and NAT-T -----------------------------------------------

    pub fn local_ip(&self) -> IpAddr {
        self.local.ip()
    }
    /// Our address with the port the exchange started on (a renewal starts there).
    pub fn local_addr(&self) -> SocketAddr {
        let mut l = self.local;
        l.set_port(self.original_remote.port());
        l
    }
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }
    pub fn original_remote(&self) -> SocketAddr {
        self.original_remote
    }
    /// A responder answers where the first message came from.
    pub fn set_path(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.local = local;
        self.remote = remote;
    }
    pub fn nat(&self) -> NatState {
        self.nat
    }
    pub fn natt(&self) -> Option<NattVersion> {
        self.natt
    }
    pub fn peer_dpd(&self) -> bool {
        self.peer_dpd
    }
    /// The NAT-T dialect in use when IKE and ESP are UDP-encapsulated on port 4500.
    pub fn udp_encapsulation(&self) -> Option<NattVersion> {
        self.natt.filter(|_| self.floated)
    }

    /// A responder follows the initiator to port 4500 (and through NAT remappings).
    pub fn follow_peer(&mut self, local: SocketAddr, remote: SocketAddr) {
        if self.role == Role::Responder
            && self.natt.is_some()
            && local.port() == NAT_T_PORT
            && remote != self.remote
            && (remote.ip() == self.remote.ip() || self.nat.remote_behind_nat)
        {
            self.remote = remote;
            self.floated = true;
        }
    }

    /// Takes note of the NAT-T dialect, DPD and fragmentation support the peer's
    /// vendor IDs announce.
    pub fn learn_vendor_ids(&mut self, payloads: &[Payload]) {
        self.peer_dpd = payloads
            .iter()
            .any(|p| matches!(p, Payload::VendorId(v) if v.as_slice() == VID_DPD));
        self.frag.peer_takes_fragments = self.config.fragmentation
            && payloads
                .iter()
                .any(|p| matches!(p, Payload::VendorId(v) if fragment::is_fragmentation_vid(v)));
        if self.config.nat_traversal == NatTraversal::Off {
            return;
        }
        let vids = payloads.iter().filter_map(|p| match p {
            Payload::VendorId(v) => Some(v.as_slice()),
            _ => None,
        });
        self.natt = natt::version_from_vendor_ids(vids);
    }

    /// NAT-D payloads (`hash` is phase 1's): first the peer's address as we see it,
    /// then ours. With `force`, ours is deliberately wrong so the peer sees a NAT
    /// and encapsulates.
    pub fn nat_d_payloads(&mut self, hash: HashAlg) -> Vec<Payload> {
        let Some(v) = self.natt else {
            return Vec::new();
        };
        let (ic, rc) = (self.sa.icookie, self.sa.rcookie);
        let peer = natt::nat_d(hash, &ic, &rc, self.remote);
        let ours = if self.config.nat_traversal == NatTraversal::Force {
            self.random::<16>().to_vec()
        } else {
            natt::nat_d(hash, &ic, &rc, self.local)
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

    /// Where the NATs are, from the peer's NAT-D payloads.
    pub fn detect_nat(&mut self, hash: HashAlg, payloads: &[Payload]) {
        if self.natt.is_none() {
            return;
        }
        let received: Vec<Vec<u8>> = payloads
            .iter()
            .filter_map(|p| match p {
                Payload::NatD { hash, .. } => Some(hash.clone()),
                _ => None,
            })
            .collect();
        let (ic, rc) = (self.sa.icookie, self.sa.rcookie);
        let us = natt::nat_d(hash, &ic, &rc, self.local);
        let peer = natt::nat_d(hash, &ic, &rc, self.remote);
        match natt::detect(&received, &us, &peer) {
            Some(n) => self.nat = n,
            // The peer announced NAT-T but sent no NAT-D: treat as no NAT.
            None => self.natt = None,
        }
        // Kept apart from what the NAT-D payloads found, so the user is told both.
        self.nat.forced = self.config.nat_traversal == NatTraversal::Force;
    }

    /// Initiator: move to port 4500 once a NAT is known (RFC 3947 §4).
    pub fn float_if_needed(&mut self) {
        if self.natt.is_some() && self.nat.any() && !self.floated {
            self.floated = true;
            self.remote.set_port(NAT_T_PORT);
        }
    }

    // ----- fragmentation and renewal -------------------------------------------

    /// A datagram made of a FRAGMENT payload: `Some(message)` once complete.
    pub fn defragment(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, &'static str> {
        self.frag.defragment(now, data)
    }
    pub fn fragments(&mut self) -> &mut Fragmentation {
        &mut self.frag
    }
    pub fn fragment_deadline(&self) -> Option<Instant> {
        self.frag.deadline()
    }
    /// Messages being put together from fragments, and the bytes held for them.
    #[cfg(test)]
    pub fn reassembly(&self) -> (usize, usize) {
        self.frag.pending()
    }

    /// Continues on the ISAKMP SA a renewal built: its cookies, keys and IV chain,
    /// path and NAT-T state, answer memo and counters. Returns the old cookies and
    /// keys (to delete the old SA once the ESP SAs moved over).
    pub fn adopt(&mut self, mut r: IsakmpSa) -> SaKeys {
        let old = std::mem::take(&mut self.sa);
        self.sa = std::mem::take(&mut r.sa);
        self.natt = r.natt;
        self.nat = r.nat;
        self.floated = r.floated;
        self.remote = r.remote;
        self.peer_dpd = r.peer_dpd;
        self.last_exchange = r.last_exchange;
        self.counters.retransmits += r.counters.retransmits;
        self.counters.dropped += r.counters.dropped;
        old
    }

    /// A renewal's configuration: ours without the children (the ESP SAs are
    /// moved by this SA), asking Mode Config for `address`.
    pub fn renewal_config(&self, address: Option<std::net::Ipv4Addr>) -> Config {
        let mut cfg = self.config.clone();
        cfg.children.clear();
        cfg.remote_networks.clear();
        cfg.requested_address = address;
        cfg
    }
}

/// A decrypted message.
pub(crate) struct Opened {
    pub plain: Vec<u8>,
    pub payloads: Vec<Decoded>,
    pub last_block: Vec<u8>,
}

/// The HASH payload that must come first, and the bytes of every payload after it.
pub(crate) fn split_hash(o: &Opened) -> Option<(&[u8], &[u8])> {
    let first = o.payloads.first()?;
    let Payload::Hash(h) = &first.payload else {
        return None;
    };
    let end = o.payloads.last()?.span.end;
    Some((h.as_slice(), o.plain.get(first.span.end..end)?))
}
