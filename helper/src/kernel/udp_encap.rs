//! `UDP_ENCAP_ESPINUDP` on the NAT-T socket: with it the kernel takes ESP-in-UDP
//! (RFC 3948) arriving on port 4500 out of the socket and decapsulates it with its
//! XFRM SAs, while IKE (behind the non-ESP marker) still reaches us. Needed by the
//! kernel datapath when NAT traversal is in use.
//!
//! No safe crate offers this option (socket2, nix and rustix do not), so this is the
//! workspace's one `unsafe` block: a `setsockopt` with an `int` on a borrowed socket.

use std::os::fd::{AsFd, AsRawFd};

/// `UDP_ENCAP_ESPINUDP` from `linux/udp.h`.
const UDP_ENCAP_ESPINUDP: libc::c_int = 2;

/// Turns on ESP-in-UDP decapsulation by the kernel for `socket`.
#[allow(unsafe_code)]
pub fn set_espinudp(socket: &impl AsFd) -> std::io::Result<()> {
    let fd = socket.as_fd();
    let value: libc::c_int = UDP_ENCAP_ESPINUDP;
    // SAFETY: `fd` is an open socket borrowed for the duration of the call; `optval`
    // points to `value`, an initialised `c_int` that outlives the call, and `optlen`
    // is exactly its size. setsockopt does not keep the pointer.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_ENCAP,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_takes_on_a_udp_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        super::set_espinudp(&s).expect("setsockopt UDP_ENCAP");
    }
}
