//! IKEv1 fragmentation (the Cisco "FRAGMENTATION" vendor ID, also spoken by
//! strongSwan, racoon and Shrew): a message too big for the path is sent as
//! several datagrams, each an ISAKMP header and one FRAGMENT payload carrying a
//! slice of the whole message; the receiver puts the message together again.
//!
//! Reassembly is bounded: at most [`MAX_FRAGMENTS`] fragments and
//! [`MAX_MESSAGE`] bytes per message, [`MAX_PENDING`] messages at once, each
//! forgotten [`REASSEMBLY_TIMEOUT`] after its first fragment. Duplicates, fragments
//! out of order and impossible numbers are handled without harm.

use std::time::{Duration, Instant};

use crate::codec::{self, ExchangeType, FragmentPayload, Header, Payload, PayloadType};

/// "FRAGMENTATION" with the capability bits strongSwan and Cisco send.
pub(crate) const VID_FRAGMENTATION: [u8; 20] = [
    0x40, 0x48, 0xb7, 0xd5, 0x6e, 0xbc, 0xe8, 0x85, 0x25, 0xe7, 0xde, 0x7f, 0x00, 0xd6, 0xc2, 0xd3,
    0x80, 0x00, 0x00, 0x00,
];
pub(crate) const MAX_FRAGMENTS: u8 = 16;
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;
pub(crate) const MAX_PENDING: usize = 4;
pub(crate) const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages whose fragments are remembered for retransmissions.
const FRAGMENT_CACHE: usize = 4;

/// Whether a vendor ID announces fragmentation (the flags after the hash vary).
pub(crate) fn is_fragmentation_vid(v: &[u8]) -> bool {
    v.len() >= 16 && v[..16] == VID_FRAGMENTATION[..16]
}

/// One message being put together.
#[derive(Debug)]
pub(crate) struct Reassembly {
    id: u16,
    started: Instant,
    parts: Vec<Option<Vec<u8>>>,
    last: Option<u8>,
    size: usize,
}

/// What came of one fragment.
pub(crate) enum Reassembled {
    /// More fragments are needed (or this one was dropped).
    Incomplete,
    /// The whole message.
    Complete(Vec<u8>),
    /// A fragment that cannot belong to any message (counted as dropped), and why.
    Refused(&'static str),
}

pub(crate) fn accept(
    pending: &mut Vec<Reassembly>,
    now: Instant,
    f: &FragmentPayload,
) -> Reassembled {
    pending.retain(|r| now.saturating_duration_since(r.started) < REASSEMBLY_TIMEOUT);
    if f.number == 0 || f.number > MAX_FRAGMENTS {
        return Reassembled::Refused("a fragment with an impossible number");
    }
    if f.data.is_empty() {
        return Reassembled::Refused("an empty fragment");
    }
    let i = match pending.iter().position(|r| r.id == f.id) {
        Some(i) => i,
        None => {
            if pending.len() >= MAX_PENDING {
                pending.remove(0);
            }
            pending.push(Reassembly {
                id: f.id,
                started: now,
                parts: vec![None; MAX_FRAGMENTS as usize],
                last: None,
                size: 0,
            });
            pending.len() - 1
        }
    };
    let r = &mut pending[i];
    let slot = usize::from(f.number - 1);
    if r.parts[slot].is_some() {
        return Reassembled::Incomplete; // duplicate
    }
    if f.last {
        if r.last.is_some() || r.parts[slot + 1..].iter().any(Option::is_some) {
            // Two different "last" fragments, or fragments beyond the last: give up on it.
            pending.remove(i);
            return Reassembled::Refused("a second last fragment");
        }
        r.last = Some(f.number);
    } else if r.last.is_some_and(|l| f.number > l) {
        return Reassembled::Refused("a fragment beyond the last one");
    }
    if r.size + f.data.len() > MAX_MESSAGE {
        pending.remove(i);
        return Reassembled::Refused("fragments of a message larger than 64 KiB");
    }
    r.size += f.data.len();
    r.parts[slot] = Some(f.data.clone());
    let Some(last) = r.last else {
        return Reassembled::Incomplete;
    };
    if r.parts[..usize::from(last)].iter().any(Option::is_none) {
        return Reassembled::Incomplete;
    }
    let r = pending.remove(i);
    let mut whole = Vec::with_capacity(r.size);
    for p in r.parts.into_iter().take(usize::from(last)).flatten() {
        whole.extend_from_slice(&p);
    }
    Reassembled::Complete(whole)
}

/// Fragmentation state of one ISAKMP SA: whether the peer takes fragments, our
/// last fragment id, the fragments of our recent messages, messages being put
/// together.
#[derive(Debug, Default)]
pub(crate) struct Fragmentation {
    pub peer_takes_fragments: bool,
    fragment_id: u16,
    reassembly: Vec<Reassembly>,
    cache: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl Fragmentation {
    /// Splits `data` into fragment datagrams when the peer takes fragments and it
    /// is larger than `max`; otherwise returns it as it is.
    pub fn split(&mut self, data: Vec<u8>, max: usize) -> Vec<Vec<u8>> {
        if !self.peer_takes_fragments || data.len() <= max {
            return vec![data];
        }
        // A retransmission goes out as the same fragments (same id), so the peer can
        // complete a message from fragments of several sends.
        if let Some((_, frags)) = self.cache.iter().find(|(orig, _)| *orig == data) {
            return frags.clone();
        }
        let Ok(h) = Header::decode(&data) else {
            return vec![data];
        };
        // Room in each datagram: ISAKMP header, fragment payload header (8 bytes).
        let chunk = max.saturating_sub(Header::LEN + 8).max(64);
        let count = data.len().div_ceil(chunk);
        if count > usize::from(MAX_FRAGMENTS) {
            return vec![data];
        }
        self.fragment_id = self.fragment_id.wrapping_add(1).max(1);
        let id = self.fragment_id;
        let frags: Vec<Vec<u8>> = data
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                let f = FragmentPayload {
                    id,
                    number: n as u8 + 1,
                    last: n + 1 == count,
                    data: part.to_vec(),
                };
                let header = Header {
                    next_payload: PayloadType::NONE,
                    flags: 0,
                    length: 0,
                    ..h.clone()
                };
                codec::Message {
                    header,
                    payloads: vec![Payload::Fragment(f)],
                }
                .encode()
            })
            .collect();
        if self.cache.len() >= FRAGMENT_CACHE {
            self.cache.remove(0);
        }
        self.cache.push((data, frags.clone()));
        frags
    }

    /// A datagram made of a FRAGMENT payload: `Ok(Some(message))` once complete,
    /// `Ok(None)` while incomplete (or a duplicate), `Err(why)` when it is refused.
    pub fn defragment(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, &'static str> {
        let msg = codec::Message::decode_received(data)
            .map_err(|_| "a fragment datagram that does not decode")?;
        let [Payload::Fragment(f)] = msg.payloads.as_slice() else {
            return Err("a fragment datagram that is not one FRAGMENT payload");
        };
        match accept(&mut self.reassembly, now, f) {
            Reassembled::Complete(whole) => {
                // The message inside must be a whole ISAKMP message of these SAs,
                // not fragments again.
                let h = Header::decode(&whole).map_err(|_| "fragments of no ISAKMP message")?;
                let ok = h.initiator_cookie == msg.header.initiator_cookie
                    && h.next_payload != PayloadType::FRAGMENT
                    && h.length as usize == whole.len()
                    && h.exchange != ExchangeType(0);
                if ok {
                    Ok(Some(whole))
                } else {
                    Err("fragments of a message of another SA, or of fragments")
                }
            }
            Reassembled::Incomplete => Ok(None),
            Reassembled::Refused(why) => Err(why),
        }
    }

    /// Forgets messages whose first fragment came [`REASSEMBLY_TIMEOUT`] ago.
    pub fn expire(&mut self, now: Instant) {
        self.reassembly
            .retain(|r| now.saturating_duration_since(r.started) < REASSEMBLY_TIMEOUT);
    }

    /// When the oldest message being put together is forgotten.
    pub fn deadline(&self) -> Option<Instant> {
        self.reassembly
            .iter()
            .map(|r| super::now_plus(r.started, REASSEMBLY_TIMEOUT))
            .min()
    }

    /// Messages being put together, and the bytes held for them.
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        let bytes = self.reassembly.iter().map(|r| r.size).sum();
        (self.reassembly.len(), bytes)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start a simulated clock at some real instant
mod tests {
    use super::*;

    fn frag(id: u16, number: u8, last: bool, data: &[u8]) -> FragmentPayload {
        FragmentPayload {
            id,
            number,
            last,
            data: data.to_vec(),
        }
    }

    #[test]
    fn out_of_order_duplicates_and_completion() {
        let now = Instant::now();
        let mut p = Vec::new();
        assert!(matches!(
            accept(&mut p, now, &frag(7, 3, true, b"cc")),
            Reassembled::Incomplete
        ));
        assert!(matches!(
            accept(&mut p, now, &frag(7, 1, false, b"aa")),
            Reassembled::Incomplete
        ));
        assert!(matches!(
            accept(&mut p, now, &frag(7, 1, false, b"XX")),
            Reassembled::Incomplete
        ));
        match accept(&mut p, now, &frag(7, 2, false, b"bb")) {
            Reassembled::Complete(m) => assert_eq!(m, b"aabbcc"),
            _ => panic!("not complete"),
        }
        assert!(p.is_empty());
    }

    #[test]
    fn impossible_fragments_are_dropped() {
        let now = Instant::now();
        let mut p = Vec::new();
        for f in [
            frag(1, 0, false, b"x"),
            frag(1, MAX_FRAGMENTS + 1, true, b"x"),
            frag(1, 1, true, b""),
        ] {
            assert!(matches!(accept(&mut p, now, &f), Reassembled::Refused(_)));
        }
        // Two different last fragments: the message is abandoned.
        accept(&mut p, now, &frag(2, 2, true, b"b"));
        accept(&mut p, now, &frag(2, 3, true, b"c"));
        assert!(p.iter().all(|r| r.id != 2));
        // Fragments beyond the last one are ignored.
        accept(&mut p, now, &frag(3, 2, true, b"b"));
        assert!(matches!(
            accept(&mut p, now, &frag(3, 4, false, b"d")),
            Reassembled::Refused(_)
        ));
        // Too big in total.
        let big = vec![0u8; MAX_MESSAGE / 2 + 1];
        accept(&mut p, now, &frag(4, 1, false, &big));
        accept(&mut p, now, &frag(4, 2, false, &big));
        assert!(p.iter().all(|r| r.id != 4));
    }

    #[test]
    fn bounded_in_count_and_time() {
        let now = Instant::now();
        let mut p = Vec::new();
        for id in 0..20 {
            accept(&mut p, now, &frag(id, 1, false, b"a"));
        }
        assert_eq!(p.len(), MAX_PENDING);
        accept(&mut p, now + REASSEMBLY_TIMEOUT, &frag(100, 1, false, b"a"));
        assert_eq!(p.len(), 1);
    }
}
