//! IKEv2 fragmentation (RFC 7383).
//!
//! Announced with IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (when
//! `Config::fragmentation`); once both sides did, a protected message larger than
//! `Config::fragment_size` (an IP datagram size) is sent as SKF fragments, each an
//! IKE message of its own, encrypted and integrity-protected on its own (§2.5).
//! Received fragments are authenticated one by one before they are kept; reassembly
//! is bounded in count ([`MAX_FRAGMENTS`]), bytes ([`MAX_BYTES`]) and age
//! ([`REASSEMBLY_TIMEOUT`]), holds one message at a time, and refuses number 0,
//! total 0, a number beyond the total and a Next Payload other than 0 after the first
//! fragment; a larger total starts over (the sender fragmented again smaller, §2.6.1),
//! a smaller one is dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::codec::{self, HEADER_LEN, Header, Message, PAYLOAD_HEADER_LEN, ptype};
use super::keys::{IkeKeys, SkError};
use super::{Ike2, State};
use crate::crypto::Rng;

/// The SKF payload type (RFC 7383 §2.5).
pub const SKF: u8 = 53;
/// At most this many fragments in one message.
pub const MAX_FRAGMENTS: u16 = 32;
/// At most this many plaintext bytes in one reassembled message.
pub const MAX_BYTES: usize = 64 * 1024;
/// A message whose fragments do not all come within this is forgotten.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// SKF's own fields after the generic payload header: Fragment Number, Total.
const SKF_FIELDS: usize = 4;

/// One authenticated, decrypted fragment.
pub(super) struct Fragment {
    pub header: Header,
    /// Next Payload of the SKF header (the first inner payload in fragment 1).
    pub first: u8,
    pub number: u16,
    pub total: u16,
    pub plain: Zeroizing<Vec<u8>>,
}

/// A message being put together.
pub(super) struct Reassembly {
    id: u32,
    response: bool,
    exchange: u8,
    total: u16,
    first: u8,
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
    bytes: usize,
    started: Instant,
}

impl IkeKeys {
    /// One SKF fragment of a message: `chunk` of its inner payload bytes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn seal_fragment(
        &self,
        header: Header,
        first: u8,
        number: u16,
        total: u16,
        chunk: &[u8],
        initiator: bool,
        rng: &mut dyn Rng,
    ) -> Vec<u8> {
        let skf_len = PAYLOAD_HEADER_LEN + SKF_FIELDS + self.sealed_len(chunk.len());
        let mut h = header;
        h.next_payload = SKF;
        h.length = (HEADER_LEN + skf_len) as u32;
        let mut o = Vec::with_capacity(h.length as usize);
        h.encode(&mut o);
        o.push(if number == 1 { first } else { ptype::NONE });
        o.push(0);
        o.extend_from_slice(&(skf_len as u16).to_be_bytes());
        o.extend_from_slice(&number.to_be_bytes());
        o.extend_from_slice(&total.to_be_bytes());
        // RFC 7383 §2.5: with AEAD the associated data runs through the Total
        // Fragments field.
        self.seal_after(o, chunk, initiator, rng)
    }

    /// Checks the ICV of an SKF message, then decrypts it.
    pub(super) fn open_fragment(&self, data: &[u8]) -> Result<Fragment, SkError> {
        let mut r = crate::codec::Reader::named(data, "IKEv2 fragment");
        let header = Header::decode(&mut r)?;
        if header.next_payload != SKF || header.length as usize != data.len() {
            return Err(SkError::Missing);
        }
        let rest = r.rest();
        if rest.len() < PAYLOAD_HEADER_LEN + SKF_FIELDS {
            return Err(SkError::Short);
        }
        let first = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if len != rest.len() {
            return Err(SkError::Short);
        }
        let number = u16::from_be_bytes([rest[4], rest[5]]);
        let total = u16::from_be_bytes([rest[6], rest[7]]);
        let head_len = HEADER_LEN + PAYLOAD_HEADER_LEN + SKF_FIELDS;
        let plain = self.open_after(data, head_len, header.from_initiator())?;
        Ok(Fragment {
            header,
            first,
            number,
            total,
            plain,
        })
    }
}

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// Kept (or a duplicate); more are needed.
    More,
    /// The message is whole: its first payload type and payload bytes.
    Whole(u8, Zeroizing<Vec<u8>>),
    /// Refused, and why.
    Refused(&'static str),
}

impl Reassembly {
    /// Adds an authenticated fragment to `slot` (which holds at most one message).
    pub(super) fn take(slot: &mut Option<Reassembly>, now: Instant, f: Fragment) -> Taken {
        let h = f.header;
        if f.number == 0 || f.total == 0 {
            return Taken::Refused("a fragment numbered 0 or of 0 fragments");
        }
        if f.number > f.total {
            return Taken::Refused("a fragment beyond the total");
        }
        if f.total > MAX_FRAGMENTS {
            return Taken::Refused("a message of too many fragments");
        }
        if f.number != 1 && f.first != ptype::NONE {
            return Taken::Refused("a Next Payload in a fragment other than the first");
        }
        if f.number == 1 && f.first == ptype::NONE {
            return Taken::Refused("a first fragment without a first payload");
        }
        // Another message, a stale one, or the sender fragmented again smaller.
        let restart = match slot.as_ref() {
            None => true,
            Some(r) => {
                r.id != h.message_id
                    || r.response != h.is_response()
                    || now.saturating_duration_since(r.started) > REASSEMBLY_TIMEOUT
                    || f.total > r.total
            }
        };
        if !restart && slot.as_ref().is_some_and(|r| f.total < r.total) {
            return Taken::Refused("a fragment of an older fragmentation (smaller total)");
        }
        if restart {
            *slot = Some(Reassembly {
                id: h.message_id,
                response: h.is_response(),
                exchange: h.exchange,
                total: f.total,
                first: ptype::NONE,
                parts: vec![None; usize::from(f.total)],
                bytes: 0,
                started: now,
            });
        }
        let Some(r) = slot.as_mut() else {
            return Taken::More;
        };
        if r.exchange != h.exchange {
            return Taken::Refused("fragments of one message with different exchanges");
        }
        let i = usize::from(f.number - 1);
        if r.parts.get(i).is_some_and(Option::is_some) {
            return Taken::More;
        }
        if r.bytes + f.plain.len() > MAX_BYTES {
            *slot = None;
            return Taken::Refused("a fragmented message too large");
        }
        r.bytes += f.plain.len();
        if f.number == 1 {
            r.first = f.first;
        }
        if let Some(p) = r.parts.get_mut(i) {
            *p = Some(f.plain);
        }
        if r.parts.iter().any(Option::is_none) {
            return Taken::More;
        }
        let first = r.first;
        let mut whole = Zeroizing::new(Vec::with_capacity(r.bytes));
        for p in r.parts.iter().flatten() {
            whole.extend_from_slice(p);
        }
        *slot = None;
        Taken::Whole(first, whole)
    }
}

impl Ike2 {
    /// The largest IKE message sent whole: the fragment size less the IP and UDP
    /// headers (and the non-ESP marker on 4500).
    fn fragment_limit(&self) -> usize {
        let ip = if self.remote.is_ipv4() { 20 } else { 40 };
        let marker = if self.floated { 4 } else { 0 };
        self.config.fragment_size.saturating_sub(ip + 8 + marker)
    }

    /// The datagrams to send for `data`: its fragments when fragmentation is agreed
    /// on and it is a protected message too large, else `data` itself.
    pub(super) fn fragments_of(&mut self, data: Vec<u8>) -> Vec<Vec<u8>> {
        let limit = self.fragment_limit();
        if !self.frag_ok
            || data.len() <= limit
            || data.get(16) != Some(&ptype::SK)
            || data.get(18) == Some(&codec::exchange::IKE_SA_INIT)
        {
            return vec![data];
        }
        if let Some((_, f)) = self.frag_cache.iter().find(|(d, _)| *d == data) {
            return f.clone();
        }
        let Some(frags) = self.make_fragments(&data, limit) else {
            return vec![data];
        };
        if self.frag_cache.len() >= 2 {
            self.frag_cache.remove(0);
        }
        self.frag_cache.push((data, frags.clone()));
        frags
    }

    fn make_fragments(&mut self, data: &[u8], limit: usize) -> Option<Vec<Vec<u8>>> {
        let keys = self.keys.as_ref()?;
        let msg = Message::decode(data).ok()?;
        // Our own message, opened with our keys, gives back its payload bytes.
        let chain = keys.open(data, &msg, self.ike_initiator).ok()?;
        let payloads: Vec<codec::Payload> = chain.payloads.into_iter().map(|d| d.payload).collect();
        let (first, inner) = codec::encode_chain(&payloads, None);
        let inner = Zeroizing::new(inner);
        let block = keys.cipher.block_len();
        let room = limit.checked_sub(HEADER_LEN + PAYLOAD_HEADER_LEN + SKF_FIELDS)?;
        let room = room.checked_sub(keys.iv_len() + keys.icv_len())?;
        let chunk = (room / block * block).checked_sub(1).filter(|c| *c > 0)?;
        let total = inner.len().div_ceil(chunk);
        let total = u16::try_from(total).ok().filter(|t| *t <= MAX_FRAGMENTS)?;
        let mut out = Vec::with_capacity(usize::from(total));
        for (i, c) in inner.chunks(chunk).enumerate() {
            let n = u16::try_from(i + 1).ok()?;
            out.push(keys.seal_fragment(
                msg.header,
                first,
                n,
                total,
                c,
                self.ike_initiator,
                &mut *self.rng,
            ));
        }
        Some(out)
    }

    /// A datagram carrying SKF: authenticated, kept, and when the message is whole,
    /// handled like any other.
    pub(super) fn on_fragment(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let mut r = crate::codec::Reader::named(data, "IKEv2 header");
        let Ok(h) = Header::decode(&mut r) else {
            self.counters.dropped += 1;
            return;
        };
        let ours = (h.spi_i, h.spi_r) == (self.spi_i, self.spi_r);
        let expected = if h.is_response() {
            self.pending.as_ref().is_some_and(|p| p.id == h.message_id)
        } else {
            h.message_id == self.peer_next_id
                || self
                    .last_response
                    .as_ref()
                    .is_some_and(|(id, _)| *id == h.message_id)
        };
        if !self.frag_announced()
            || !ours
            || !expected
            || h.exchange == codec::exchange::IKE_SA_INIT
            || h.from_initiator() == self.ike_initiator
            || !matches!(
                self.state,
                State::ExpectAuthReply | State::ExpectAuth | State::Established
            )
        {
            self.counters.dropped += 1;
            return;
        }
        let Some(keys) = self.keys.as_ref() else {
            return;
        };
        let f = match keys.open_fragment(data) {
            Ok(f) => f,
            Err(e) => {
                self.refused(format!("IKEv2 fragment refused: {e}"));
                return;
            }
        };
        match Reassembly::take(&mut self.reassembly, now, f) {
            Taken::More => {}
            Taken::Refused(why) => self.refused(format!("IKEv2 fragment refused: {why}")),
            Taken::Whole(first, bytes) => {
                let chain = match codec::decode_chain(first, &bytes) {
                    Ok(c) => c,
                    Err(e) => {
                        self.refused(format!("reassembled IKEv2 message: {e}"));
                        return;
                    }
                };
                self.outbox_ev.push_back(crate::ike::Event::Note(format!(
                    "ike: reassembled a {}-byte message from fragments",
                    bytes.len()
                )));
                self.reassembled = Some(chain.payloads.into_iter().map(|d| d.payload).collect());
                let mut header = h;
                header.next_payload = ptype::SK;
                let msg = Message {
                    header,
                    chain: codec::Chain::default(),
                };
                self.dispatch(now, local, remote, data, &msg);
                self.reassembled = None;
            }
        }
    }

    /// We said IKEV2_FRAGMENTATION_SUPPORTED (fragments are accepted only then).
    fn frag_announced(&self) -> bool {
        self.config.fragmentation
    }
}
