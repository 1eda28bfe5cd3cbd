//! Batched datagram I/O for the userspace datapath: `sendmmsg(2)` and `recvmmsg(2)`
//! on the connected ESP socket, up to [`BATCH`] datagrams per system call (nix's safe
//! wrappers; no unsafe code of ours). Buffers are made once per datapath; the send
//! headers once per worker thread; the receive headers once per batch (they hold raw
//! pointers, so they cannot live in the tunnel driver's `Send` future).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, recvmmsg, sendmmsg};

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// The headers of one direction's batches (connected socket: no addresses).
pub struct Headers(MultiHeaders<()>);

impl Headers {
    pub fn new() -> Headers {
        Headers(MultiHeaders::preallocate(BATCH, None))
    }
}

/// Sends `packets` (at most [`BATCH`]) on the connected socket `fd` with one
/// `sendmmsg`; returns how many the kernel took (at least one, or an error:
/// `WouldBlock` when the send buffer is full).
pub fn send(fd: RawFd, h: &mut Headers, packets: &[&[u8]]) -> std::io::Result<usize> {
    let n = packets.len().min(BATCH);
    let slices: [[IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [IoSlice::new(packets.get(i).copied().unwrap_or(&[]))]);
    let addrs = [None::<()>; BATCH];
    let sent = sendmmsg(
        fd,
        &mut h.0,
        &slices[..n],
        &addrs[..n],
        [],
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    Ok(sent.count())
}

/// At most this many segments in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS on
/// older kernels), and at most this many bytes (an IPv4 UDP datagram's payload limit).
pub const GSO_MAX_SEGMENTS: usize = 64;
pub const GSO_MAX_BYTES: usize = 65_000;

/// Sends `packets` (at most [`BATCH`]; all `size` bytes long but the last, which may
/// be shorter) on the connected UDP socket `fd` as one datagram buffer that the kernel
/// cuts into `size`-byte datagrams (UDP GSO, `UDP_SEGMENT`): one trip through the stack
/// for all of them. Returns the bytes sent (all or an error).
pub fn send_gso(fd: RawFd, packets: &[&[u8]], size: u16) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessage, sendmsg};
    let n = packets.len().min(BATCH);
    let iov: [IoSlice<'_>; BATCH] =
        std::array::from_fn(|i| IoSlice::new(packets.get(i).copied().unwrap_or(&[])));
    sendmsg::<()>(
        fd,
        &iov[..n],
        &[ControlMessage::UdpGsoSegments(&size)],
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(std::io::Error::from)
}

/// Receives up to [`BATCH`] datagrams (one per buffer) from `fd` without waiting;
/// their lengths go to `lens`, a truncated one (larger than its buffer) as 0, and, on
/// a socket with UDP GRO, the size of the datagrams a buffer holds back to back to
/// `segs` (0: one datagram). Returns how many buffers were filled; `WouldBlock` when
/// none was waiting.
pub fn recv_segments<B: AsMut<[u8]>>(
    fd: RawFd,
    bufs: &mut [B],
    lens: &mut [usize; BATCH],
    segs: &mut [usize; BATCH],
) -> std::io::Result<usize> {
    use nix::sys::socket::ControlMessageOwned;
    let k = bufs.len().min(BATCH);
    let mut it = bufs.iter_mut();
    let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
        [IoSliceMut::new(
            it.next().map_or(&mut [][..], |b| b.as_mut()),
        )]
    });
    let mut h = MultiHeaders::<()>::preallocate(k, Some(nix::cmsg_space!(libc::c_int)));
    let got = recvmmsg(
        fd,
        &mut h,
        slices[..k].iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(std::io::Error::from)?;
    let mut n = 0;
    for (i, m) in got.enumerate() {
        if let (Some(l), Some(s)) = (lens.get_mut(i), segs.get_mut(i)) {
            *l = if m.flags.contains(MsgFlags::MSG_TRUNC) {
                0
            } else {
                m.bytes
            };
            *s = 0;
            if let Ok(cmsgs) = m.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::UdpGroSegments(size) = c {
                        *s = usize::try_from(size).unwrap_or(0);
                    }
                }
            }
            n = i + 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_gso_send_arrives_as_separate_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        b.connect(a.local_addr().expect("addr")).expect("connect");
        let packets: Vec<Vec<u8>> = vec![vec![1; 100], vec![2; 100], vec![3; 100], vec![4; 40]];
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        match send_gso(a.as_raw_fd(), &refs, 100) {
            Ok(n) => assert_eq!(n, 340),
            // A kernel without UDP GSO: the datapath falls back to sendmmsg.
            Err(e) => {
                eprintln!("skipped: no UDP GSO here: {e}");
                return;
            }
        }
        let mut bufs = vec![vec![0u8; 200]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut segs = [0usize; BATCH];
        let n = recv_segments(b.as_raw_fd(), &mut bufs, &mut lens, &mut segs).expect("recvmmsg");
        assert_eq!(n, 4);
        assert_eq!(&lens[..4], &[100, 100, 100, 40]);
        assert_eq!(bufs[2][0], 3);
        assert_eq!(bufs[3][39], 4);
    }

    /// A GSO send to a socket with UDP GRO arrives as one buffer and its segment size.
    #[test]
    fn a_gro_socket_gets_the_datagrams_back_to_back_with_their_size() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        b.connect(a.local_addr().expect("addr")).expect("connect");
        if nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::UdpGroSegment, &true)
            .is_err()
        {
            eprintln!("skipped: no UDP GRO here");
            return;
        }
        let packets: Vec<Vec<u8>> = vec![vec![1; 100], vec![2; 100], vec![3; 100], vec![4; 40]];
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        if send_gso(a.as_raw_fd(), &refs, 100).is_err() {
            eprintln!("skipped: no UDP GSO here");
            return;
        }
        let mut bufs = vec![vec![0u8; 1000]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut segs = [0usize; BATCH];
        let n = recv_segments(b.as_raw_fd(), &mut bufs, &mut lens, &mut segs).expect("recvmmsg");
        assert_eq!((n, lens[0], segs[0]), (1, 340, 100));
        assert_eq!(bufs[0][100], 2);
        assert_eq!(bufs[0][339], 4);
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        b.connect(a.local_addr().expect("addr")).expect("connect");
        let packets: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut hs = Headers::new();
        let mut sent = 0;
        while sent < refs.len() {
            let end = (sent + BATCH).min(refs.len());
            sent += send(a.as_raw_fd(), &mut hs, &refs[sent..end]).expect("sendmmsg");
        }
        let mut bufs = vec![vec![0u8; 64]; BATCH];
        // A short buffer truncates: reported as length 0.
        bufs[1] = vec![0u8; 4];
        let mut lens = [0usize; BATCH];
        let mut segs = [0usize; BATCH];
        let n = recv_segments(b.as_raw_fd(), &mut bufs, &mut lens, &mut segs).expect("recvmmsg");
        assert_eq!(n, BATCH);
        assert_eq!(lens[0], 10);
        assert_eq!(&bufs[0][..10], &[0u8; 10]);
        assert_eq!(lens[1], 0, "truncated");
        assert_eq!(lens[2], 12);
        assert_eq!(bufs[2][11], 2);
        let mut bufs = vec![vec![0u8; 64]; BATCH];
        let n = recv_segments(b.as_raw_fd(), &mut bufs, &mut lens, &mut segs).expect("recvmmsg");
        assert_eq!(n, 40 - BATCH);
        assert_eq!(lens[0], 10 + BATCH);
        let err = recv_segments(b.as_raw_fd(), &mut bufs, &mut lens, &mut segs).expect_err("empty");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
