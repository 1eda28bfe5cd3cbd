//! Inbound GRO for the userspace datapath: among the decrypted packets of one receive
//! batch, TCP segments of a flow that follow each other are coalesced into one large
//! packet behind a virtio_net_hdr asking the kernel for GSO, so the kernel's TCP takes
//! one packet per run, as with its own GRO. It all happens in the staged buffers: a
//! run's payloads are appended to its first packet (whose buffer has room for 64 kB),
//! so nothing is allocated.
//!
//! What joins a run, as in the kernel's GRO: IPv4 without options or fragments, or
//! IPv6 without extension headers; TCP with ACK or PSH|ACK only and a payload; the
//! same addresses, ports, ack number and TCP options as the run's first packet, the
//! same IPv4 TOS, TTL and flags (IPv6: version/class/flow label and hop limit); the
//! sequence number that follows; a payload no larger than the first one (a smaller
//! one, or PSH, ends the run); a valid TCP checksum; 64 kB at most in all. Anything
//! else is written as it came, and a packet of a flow that does not join ends that
//! flow's run, so a flow's packets stay in order.
//!
//! Every buffer is `[virtio_net_hdr (zeros)][IP packet]`; every length is checked.

/// Length of the legacy virtio_net_hdr in front of each packet (tun-rs's
/// `VIRTIO_NET_HDR_LEN`).
pub const HDR: usize = 10;
/// Most packets looked at in one call (a bit per packet in the result).
pub const MAX_BATCH: usize = 64;
/// Flows with an open run at once.
const MAX_RUNS: usize = 8;
/// The largest IP packet a run may grow to.
const MAX_PACKET: usize = 65535;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    /// Source then destination address (IPv4: the first 8 bytes).
    addrs: [u8; 32],
    /// Source then destination port.
    ports: [u8; 4],
    v6: bool,
}

/// A TCP packet's place in its buffer and the fields GRO looks at.
struct Tcp {
    key: FlowKey,
    /// IP header length; the TCP header's length.
    iph: usize,
    tcph: usize,
    seq: u32,
    flags: u8,
    payload: usize,
    /// Whether it may join or start a run (flags, payload, no fragment...).
    candidate: bool,
}

/// Parses the IP and TCP headers of `pkt` (no virtio header); None when not TCP over
/// IPv4/IPv6 or cut short.
fn parse(pkt: &[u8]) -> Option<Tcp> {
    let version = pkt.first()? >> 4;
    let mut key = FlowKey {
        addrs: [0; 32],
        ports: [0; 4],
        v6: version == 6,
    };
    let (iph, plain_ip) = match version {
        4 => {
            let total = u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]) as usize;
            if *pkt.get(9)? != 6 || total != pkt.len() {
                return None;
            }
            key.addrs[..8].copy_from_slice(pkt.get(12..20)?);
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
            // Options (IHL > 5), more fragments, an offset, or a bad header checksum
            // (the kernel would drop it): never coalesced.
            (
                20,
                pkt[0] & 0x0f == 5 && frag & 0x3fff == 0 && fold(sum(&pkt[..20], 0)) == 0xffff,
            )
        }
        6 => {
            let payload = u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]) as usize;
            if *pkt.get(6)? != 6 || payload + 40 != pkt.len() {
                return None;
            }
            key.addrs.copy_from_slice(pkt.get(8..40)?);
            (40, true)
        }
        _ => return None,
    };
    let tcp = pkt.get(iph..iph + 20)?;
    key.ports.copy_from_slice(&tcp[0..4]);
    let tcph = usize::from(tcp[12] >> 4) * 4;
    if tcph < 20 || pkt.len() < iph + tcph {
        return None;
    }
    let flags = tcp[13];
    let payload = pkt.len() - iph - tcph;
    Some(Tcp {
        key,
        iph,
        tcph,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags,
        payload,
        candidate: plain_ip
            && tcp[12] & 0x0f == 0
            && (flags == TCP_ACK || flags == TCP_ACK | TCP_PSH)
            && payload > 0,
    })
}

/// The ones' complement sum of `data` (big-endian 16-bit words, a last odd byte padded)
/// plus `initial`, not yet folded.
fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = u128::from(initial);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc += u128::from(u64::from_be_bytes(b));
    }
    let rest = words.remainder();
    let mut b = [0u8; 8];
    b[..rest.len()].copy_from_slice(rest);
    acc += u128::from(u64::from_be_bytes(b));
    // Fold 128 -> 64 bits (end-around carry), twice is enough.
    let folded = (acc & u128::from(u64::MAX)) + (acc >> 64);
    let folded = (folded & u128::from(u64::MAX)) + (folded >> 64);
    folded as u64
}

/// Folds a sum to 16 bits (end-around carry).
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The TCP pseudo-header's sum (addresses, protocol, TCP length) of a flow.
fn pseudo_header(key: &FlowKey, tcp_len: usize) -> u64 {
    let addrs = if key.v6 {
        &key.addrs[..]
    } else {
        &key.addrs[..8]
    };
    sum(addrs, 6 + tcp_len as u64)
}

/// Whether the TCP checksum of `pkt` is right.
fn checksum_ok(pkt: &[u8], t: &Tcp) -> bool {
    let Some(seg) = pkt.get(t.iph..) else {
        return false;
    };
    fold(sum(seg, pseudo_header(&t.key, seg.len()))) == 0xffff
}

struct Run {
    /// Index of the run's first packet (the one that grows).
    head: usize,
    key: FlowKey,
    iph: usize,
    tcph: usize,
    next_seq: u32,
    /// Payload size of each segment but the last (the GSO size).
    gso: usize,
    /// Bytes of the IP packet so far.
    len: usize,
    segments: usize,
    ended: bool,
    psh: bool,
}

/// Coalesces `bufs` (each `[HDR zero bytes][IP packet]`, at most [`MAX_BATCH`] of
/// them) in place. Returns a bit per buffer: set = to be written (a run's head, with
/// its virtio header filled in when it grew, or a packet as it came); clear = its
/// payload went into an earlier buffer.
pub fn coalesce(bufs: &mut [Vec<u8>]) -> u64 {
    let n = bufs.len().min(MAX_BATCH);
    let mut write: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut runs: [Option<Run>; MAX_RUNS] = Default::default();
    let mut oldest = 0;
    for i in 0..n {
        let Some(t) = bufs[i].get(HDR..).and_then(parse) else {
            continue;
        };
        let slot = runs
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.key == t.key));
        if let Some(s) = slot
            && let Some(run) = runs[s].as_mut()
            && t.candidate
            && joins(bufs, run, i, &t)
        {
            let (before, from) = bufs.split_at_mut(i);
            let payload = from[0].get(HDR + t.iph + t.tcph..).unwrap_or(&[]);
            if let Some(head) = before.get_mut(run.head) {
                head.extend_from_slice(payload);
                run.next_seq = run.next_seq.wrapping_add(t.payload as u32);
                run.len += t.payload;
                run.segments += 1;
                if t.payload < run.gso || t.flags & TCP_PSH != 0 {
                    run.ended = true;
                    run.psh = t.flags & TCP_PSH != 0;
                }
                write &= !(1u64 << i);
                continue;
            }
        }
        // Not joined: this flow's run (if any) ends here, and a candidate with a good
        // checksum starts the next one.
        let start = t.candidate
            && t.flags & TCP_PSH == 0
            && bufs[i].get(HDR..).is_some_and(|pkt| checksum_ok(pkt, &t));
        let run = start.then(|| Run {
            head: i,
            key: t.key,
            iph: t.iph,
            tcph: t.tcph,
            next_seq: t.seq.wrapping_add(t.payload as u32),
            gso: t.payload,
            len: bufs[i].len() - HDR,
            segments: 1,
            ended: false,
            psh: false,
        });
        match slot {
            Some(s) => {
                if let Some(done) = std::mem::replace(&mut runs[s], run) {
                    finish(bufs, &done);
                }
            }
            None if run.is_some() => {
                let s = runs.iter().position(Option::is_none).unwrap_or_else(|| {
                    oldest = (oldest + 1) % MAX_RUNS;
                    oldest
                });
                if let Some(done) = std::mem::replace(&mut runs[s], run) {
                    finish(bufs, &done);
                }
            }
            None => {}
        }
    }
    for run in runs.iter().flatten() {
        finish(bufs, run);
    }
    write
}

/// Whether packet `i` (parsed as `t`) may join `run`.
fn joins(bufs: &[Vec<u8>], run: &Run, i: usize, t: &Tcp) -> bool {
    let (Some(head), Some(pkt)) = (
        bufs.get(run.head).and_then(|b| b.get(HDR..)),
        bufs.get(i).and_then(|b| b.get(HDR..)),
    ) else {
        return false;
    };
    let (iph, tcph) = (run.iph, run.tcph);
    let same = |a: std::ops::Range<usize>| {
        head.get(a.clone()).is_some() && head.get(a.clone()) == pkt.get(a)
    };
    !run.ended
        && t.iph == iph
        && t.tcph == tcph
        && t.seq == run.next_seq
        && t.payload <= run.gso
        && run.len + t.payload <= MAX_PACKET
        // ack number, then the TCP options
        && same(iph + 8..iph + 12)
        && same(iph + 20..iph + tcph)
        && if t.key.v6 {
            same(0..4) && same(7..8)
        } else {
            // TOS, TTL, and the flags bits (DF)
            same(1..2) && same(8..9) && head.get(6).map(|f| f & 0xe0) == pkt.get(6).map(|f| f & 0xe0)
        }
        && checksum_ok(pkt, t)
}

/// Makes a grown run's head a GSO packet: IP lengths (and the IPv4 header checksum),
/// PSH if its last segment had it, the TCP checksum as the pseudo-header's sum for the
/// kernel to complete, and the virtio header. A run of one is left as it came.
fn finish(bufs: &mut [Vec<u8>], run: &Run) {
    if run.segments < 2 {
        return;
    }
    let Some(buf) = bufs.get_mut(run.head) else {
        return;
    };
    let (hdr, pkt) = buf.split_at_mut(HDR);
    let (iph, tcph) = (run.iph, run.tcph);
    if pkt.len() != run.len || pkt.len() < iph + tcph || hdr.len() < HDR {
        return;
    }
    if run.key.v6 {
        pkt[4..6].copy_from_slice(&((run.len - 40) as u16).to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(run.len as u16).to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&pkt[..20], 0));
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    if run.psh {
        pkt[iph + 13] |= TCP_PSH;
    }
    let partial = fold(pseudo_header(&run.key, run.len - iph));
    pkt[iph + 16..iph + 18].copy_from_slice(&partial.to_be_bytes());
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = if run.key.v6 {
        VIRTIO_NET_HDR_GSO_TCPV6
    } else {
        VIRTIO_NET_HDR_GSO_TCPV4
    };
    // Host byte order (a legacy virtio header on a TUN device without TUNSETVNETLE).
    hdr[2..4].copy_from_slice(&((iph + tcph) as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&(run.gso as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(iph as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
}

/// A valid IPv4 TCP segment (no virtio header) of a bulk flow 10.77.0.10:5201 ->
/// 10.200.1.1:40000, ACK, `len` bytes of payload at `seq`: for tests elsewhere.
#[cfg(test)]
pub fn test_segment(seq: u32, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    tests::seg(false, 5201, seq, 1, TCP_ACK, &payload)[HDR..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};

    /// The ones' complement sum, 16 bits at a time (independent of [`sum`]).
    fn naive(data: &[u8], mut acc: u32) -> u16 {
        for w in data.chunks(2) {
            acc += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn pseudo(pkt: &[u8], v6: bool, tcp_len: usize) -> u32 {
        let addrs = if v6 { &pkt[8..40] } else { &pkt[12..20] };
        u32::from(naive(addrs, 0)) + 6 + tcp_len as u32
    }

    /// A TCP segment from 10.77.0.10:5201 (or the IPv6 equivalent) to the virtual IP,
    /// checksums right.
    pub(super) fn seg(
        v6: bool,
        sport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let iph = if v6 { 40 } else { 20 };
        let mut p = vec![0u8; HDR + iph + 32 + payload.len()];
        {
            let pkt = &mut p[HDR..];
            let len = pkt.len();
            if v6 {
                pkt[0] = 0x60;
                pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                pkt[6] = 6;
                pkt[7] = 64;
                pkt[8..24]
                    .copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
                pkt[24..40]
                    .copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
            } else {
                pkt[0] = 0x45;
                pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                pkt[6] = 0x40;
                pkt[8] = 64;
                pkt[9] = 6;
                pkt[12..16].copy_from_slice(&[10, 77, 0, 10]);
                pkt[16..20].copy_from_slice(&[10, 200, 1, 1]);
                let c = !naive(&pkt[..20], 0);
                pkt[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let t = &mut pkt[iph..];
            t[0..2].copy_from_slice(&sport.to_be_bytes());
            t[2..4].copy_from_slice(&40000u16.to_be_bytes());
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 8 << 4; // 32-byte header: a timestamp option
            t[13] = flags;
            t[14..16].copy_from_slice(&512u16.to_be_bytes());
            t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
            t[32..].copy_from_slice(payload);
            let ps = pseudo(pkt, v6, len - iph);
            let c = !naive(&pkt[iph..], ps);
            pkt[iph + 16..iph + 18].copy_from_slice(&c.to_be_bytes());
        }
        p
    }

    fn data(n: usize, k: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(k))
            .collect()
    }

    /// What the kernel does with a NEEDS_CSUM packet: sums from csum_start (the field
    /// holding the pseudo-header's sum) and stores the complement; the result must be
    /// a packet whose TCP checksum verifies.
    fn complete(buf: &[u8]) -> Vec<u8> {
        let start = u16::from_ne_bytes([buf[6], buf[7]]) as usize;
        let off = u16::from_ne_bytes([buf[8], buf[9]]) as usize;
        let mut pkt = buf[HDR..].to_vec();
        let c = !naive(&pkt[start..], 0);
        pkt[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
        pkt
    }

    fn written(bufs: &[Vec<u8>], mask: u64) -> Vec<&Vec<u8>> {
        bufs.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, b)| b)
            .collect()
    }

    #[test]
    fn a_run_of_one_flow_becomes_one_gso_packet() {
        for v6 in [false, true] {
            let iph = if v6 { 40 } else { 20 };
            let mut bufs: Vec<Vec<u8>> = Vec::new();
            let mut all = Vec::new();
            for k in 0..10u32 {
                let d = data(if k == 9 { 300 } else { 1000 }, k as u8);
                all.extend_from_slice(&d);
                let flags = if k == 9 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                bufs.push(seg(v6, 5201, 1_000 + k * 1000, 77, flags, &d));
            }
            let mask = coalesce(&mut bufs);
            let out = written(&bufs, mask);
            assert_eq!(out.len(), 1, "v6={v6}");
            let b = out[0];
            assert_eq!(b.len(), HDR + iph + 32 + all.len());
            assert_eq!(&b[HDR + iph + 32..], &all[..], "payloads in order");
            assert_eq!(b[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert_eq!(
                b[1],
                if v6 {
                    VIRTIO_NET_HDR_GSO_TCPV6
                } else {
                    VIRTIO_NET_HDR_GSO_TCPV4
                }
            );
            assert_eq!(u16::from_ne_bytes([b[2], b[3]]) as usize, iph + 32);
            assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 1000);
            let pkt = complete(b);
            let t = parse(&pkt).expect("parses");
            assert!(checksum_ok(&pkt, &t), "TCP checksum after completion");
            assert_eq!(t.flags, TCP_ACK | TCP_PSH, "the last segment's PSH");
            assert_eq!(t.seq, 1000);
            if !v6 {
                assert_eq!(naive(&pkt[..20], 0), 0xffff, "IPv4 header checksum");
                assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]) as usize, pkt.len());
            } else {
                assert_eq!(
                    u16::from_be_bytes([pkt[4], pkt[5]]) as usize,
                    pkt.len() - 40
                );
            }
        }
    }

    #[test]
    fn flows_interleave_and_each_stays_in_order() {
        let mut bufs = Vec::new();
        for k in 0..6u32 {
            bufs.push(seg(false, 5201, k * 500, 1, TCP_ACK, &data(500, 1)));
            bufs.push(seg(false, 5202, 9000 + k * 500, 1, TCP_ACK, &data(500, 2)));
        }
        let mask = coalesce(&mut bufs);
        assert_eq!(mask, 0b11, "one packet per flow, at the first two places");
        assert_eq!(bufs[0].len(), HDR + 52 + 3000);
        assert_eq!(bufs[1].len(), HDR + 52 + 3000);
    }

    #[test]
    fn what_may_not_join_does_not() {
        let d = data(800, 3);
        // A gap in the sequence; then another ack number.
        let mut bufs = vec![
            seg(false, 5201, 0, 1, TCP_ACK, &d),
            seg(false, 5201, 800, 1, TCP_ACK, &d),
            seg(false, 5201, 9999, 1, TCP_ACK, &d),
            seg(false, 5201, 10799, 2, TCP_ACK, &d),
        ];
        assert_eq!(coalesce(&mut bufs), 0b1101);
        // A bad IPv4 header checksum at the start, a bad TCP checksum, a FIN, a larger
        // segment after a smaller one, a SYN.
        let mut bad_ip = seg(false, 5201, 0, 1, TCP_ACK, &d);
        bad_ip[HDR + 4] ^= 0x10;
        let mut bufs = vec![bad_ip, seg(false, 5201, 800, 1, TCP_ACK, &d)];
        assert_eq!(coalesce(&mut bufs), 0b11);
        let mut bad = seg(false, 5201, 800, 1, TCP_ACK, &d);
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let mut bufs = vec![
            seg(false, 5201, 0, 1, TCP_ACK, &d),
            bad,
            seg(false, 5201, 800, 1, TCP_ACK | 0x01, &d),
            seg(false, 5201, 1600, 1, TCP_ACK, &data(400, 1)),
            seg(false, 5201, 2000, 1, TCP_ACK, &d),
            seg(false, 5201, 2800, 1, 0x02, &d),
        ];
        let mask = coalesce(&mut bufs);
        assert_eq!(mask, 0b111111, "nothing joined");
        for b in &bufs {
            assert_eq!(&b[..HDR], &[0; HDR], "left as it came");
        }
    }

    #[test]
    fn runs_stop_at_64_kb() {
        let d = data(1400, 9);
        let mut bufs: Vec<Vec<u8>> = (0..60u32)
            .map(|k| seg(false, 5201, k * 1400, 1, TCP_ACK, &d))
            .collect();
        let mask = coalesce(&mut bufs);
        let out = written(&bufs, mask);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|b| b.len() - HDR <= MAX_PACKET));
        assert_eq!(
            out.iter().map(|b| b.len() - HDR - 52).sum::<usize>(),
            60 * 1400
        );
    }

    /// What one flow carried, byte by byte: (sequence number, byte, ack number, FIN).
    type Stream = Vec<(u32, u8, u32, bool)>;
    /// A segment: its flow (source port, v6), sequence number, ack, flags and payload.
    type Segment = ((u16, bool), u32, u32, u8, Vec<u8>);

    /// The segments a written buffer stands for, cut the way the kernel cuts a GSO
    /// packet (`gso_size` bytes of payload each, behind a copy of the headers): each
    /// with its flow (source port, v6), sequence number, ack, flags and payload.
    fn cut(buf: &[u8]) -> Vec<Segment> {
        let pkt = if buf[1] != 0 {
            complete(buf)
        } else {
            buf[HDR..].to_vec()
        };
        let t = parse(&pkt).expect("what it writes parses");
        assert!(checksum_ok(&pkt, &t), "TCP checksum of a written packet");
        if !t.key.v6 {
            assert_eq!(naive(&pkt[..20], 0), 0xffff, "IPv4 header checksum");
        }
        let h = t.iph + t.tcph;
        let tcp = &pkt[t.iph..];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        let gso = if buf[1] != 0 {
            assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]) as usize, h, "hdr_len");
            u16::from_ne_bytes([buf[4], buf[5]]) as usize
        } else {
            usize::MAX
        };
        let payload = &pkt[h..];
        let mut out = Vec::new();
        let mut off: usize = 0;
        loop {
            let end = payload.len().min(off.saturating_add(gso));
            let last = end == payload.len();
            // The kernel keeps PSH and FIN on the last segment only.
            let flags = if last {
                t.flags
            } else {
                t.flags & !(TCP_PSH | 0x01)
            };
            out.push((
                (sport, t.key.v6),
                t.seq.wrapping_add(off as u32),
                ack,
                flags,
                payload[off..end].to_vec(),
            ));
            if last {
                break;
            }
            off = end;
        }
        out
    }

    fn streams(segs: &[Segment]) -> Vec<((u16, bool), Stream)> {
        let mut flows: Vec<((u16, bool), Stream)> = Vec::new();
        for (flow, seq, ack, flags, payload) in segs {
            let i = match flows.iter().position(|(f, _)| f == flow) {
                Some(i) => i,
                None => {
                    flows.push((*flow, Vec::new()));
                    flows.len() - 1
                }
            };
            let fin = flags & 0x01 != 0;
            if payload.is_empty() {
                flows[i].1.push((*seq, 0, *ack, fin));
            }
            for (k, b) in payload.iter().enumerate() {
                flows[i].1.push((
                    seq.wrapping_add(k as u32),
                    *b,
                    *ack,
                    fin && k + 1 == payload.len(),
                ));
            }
        }
        flows
    }

    /// Differential: random mixes of up to four flows (IPv4 and IPv6) with runs of
    /// equal segments, shorter ones, gaps, ack changes, PSH, FIN and pure ACKs go
    /// through `coalesce`; cutting what it writes back into segments as the kernel
    /// would gives every flow the same bytes at the same sequence numbers with the same
    /// acks, in the same order, and every written packet's checksums hold.
    #[test]
    fn coalesced_output_cuts_back_into_the_input() {
        let mut rng = ChaCha20Rng::seed_from_u64(2026);
        let mut grown = 0;
        for round in 0..1500 {
            let nflows = 1 + (rng.next_u32() % 4) as u16;
            let mut next: Vec<(u32, u32)> =
                (0..nflows).map(|f| (u32::from(f) * 1_000_000, 1)).collect();
            let mss: Vec<usize> = (0..nflows)
                .map(|_| 200 + (rng.next_u32() % 1300) as usize)
                .collect();
            let mut bufs = Vec::new();
            let n = 1 + (rng.next_u32() % 64) as usize;
            for _ in 0..n {
                let f = (rng.next_u32() % u32::from(nflows)) as usize;
                let v6 = f % 2 == 1;
                let r = rng.next_u32() % 100;
                let len = match r {
                    0..=69 => mss[f],
                    70..=79 => (rng.next_u32() as usize) % mss[f],
                    80..=84 => 0,
                    _ => mss[f],
                };
                if (85..90).contains(&r) {
                    next[f].0 = next[f].0.wrapping_add(1 + rng.next_u32() % 5000);
                }
                if (90..94).contains(&r) {
                    next[f].1 += 1;
                }
                let flags = match r {
                    94..=96 => TCP_ACK | TCP_PSH,
                    97 => TCP_ACK | 0x01,
                    _ => TCP_ACK,
                };
                let mut payload = vec![0u8; len];
                rng.fill_bytes(&mut payload);
                let (seq, ack) = next[f];
                bufs.push(seg(v6, 5201 + f as u16, seq, ack, flags, &payload));
                next[f].0 = seq.wrapping_add(len as u32);
            }
            let before: Vec<_> = bufs.iter().flat_map(|b| cut(b)).collect();
            let mask = coalesce(&mut bufs);
            let out = written(&bufs, mask);
            grown += out.iter().filter(|b| b[1] != 0).count();
            let after: Vec<_> = out.iter().flat_map(|b| cut(b)).collect();
            assert_eq!(
                streams(&before),
                streams(&after),
                "round {round}: the flows differ after GRO"
            );
            for b in out {
                assert!(b.len() - HDR <= MAX_PACKET, "round {round}");
            }
        }
        assert!(
            grown > 1000,
            "runs rarely grew ({grown}): the test tests little"
        );
    }

    /// Network input (authenticated by ESP, but still): random and mangled packets
    /// never panic it, and what it writes never exceeds 64 kB.
    #[test]
    fn odd_packets_never_panic() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for round in 0..3000 {
            let mut bufs = Vec::new();
            let n = 1 + (rng.next_u32() % 64) as usize;
            for k in 0..n {
                let v6 = rng.next_u32() % 3 == 0;
                let len = (rng.next_u32() % 1500) as usize;
                let mut b = seg(
                    v6,
                    5201 + (k % 3) as u16,
                    (k * 1000) as u32,
                    1,
                    TCP_ACK,
                    &data(len, k as u8),
                );
                match rng.next_u32() % 6 {
                    0 => {
                        let at = HDR + (rng.next_u32() as usize) % (b.len() - HDR);
                        b[at] = rng.next_u32() as u8;
                    }
                    1 => b.truncate(HDR + (rng.next_u32() as usize) % (b.len() - HDR)),
                    2 => rng.fill_bytes(&mut b[HDR..]),
                    _ => {}
                }
                bufs.push(b);
            }
            let mask = coalesce(&mut bufs);
            for b in written(&bufs, mask) {
                assert!(
                    b.len() >= HDR && b.len() - HDR <= MAX_PACKET.max(1600),
                    "round {round}"
                );
            }
        }
    }
}
