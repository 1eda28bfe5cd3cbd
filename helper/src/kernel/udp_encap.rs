//! Socket options of the kernel datapath that no safe crate offers (socket2, nix and
//! rustix do not), so this module holds the workspace's `unsafe` code: two
//! `setsockopt` calls on borrowed sockets, each with a buffer that outlives the call.
//!
//! - `UDP_ENCAP_ESPINUDP` on the NAT-T socket: with it the kernel takes ESP-in-UDP
//!   (RFC 3948) arriving on port 4500 out of the socket and decapsulates it with its
//!   XFRM SAs, while IKE (behind the non-ESP marker) still reaches us.
//! - `IP_XFRM_POLICY` / `IPV6_XFRM_POLICY` bypass policies on the IKE sockets, both
//!   directions, so IKE itself is never sent through (or refused for lack of) the
//!   tunnel's SAs, as happens in transport mode where the SAs cover the IKE addresses.

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

/// Lets `socket`'s datagrams in and out without IPsec, whatever the XFRM policies
/// say (`policy`: a `xfrm_userpolicy_info` from [`crate::kernel::xfrm`], one call per
/// direction).
#[allow(unsafe_code)]
pub fn set_xfrm_policy(socket: &impl AsFd, v6: bool, policy: &[u8]) -> std::io::Result<()> {
    let fd = socket.as_fd();
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_XFRM_POLICY)
    } else {
        (libc::IPPROTO_IP, libc::IP_XFRM_POLICY)
    };
    let len = libc::socklen_t::try_from(policy.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is an open socket borrowed for the duration of the call; `optval`
    // points to `policy`, an initialised slice that outlives the call, and `optlen` is
    // its length (the kernel checks it against the structure it expects). setsockopt
    // does not keep the pointer.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            policy.as_ptr().cast::<libc::c_void>(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Both directions of [`set_xfrm_policy`] with a bypass policy.
pub fn bypass_ipsec(socket: &impl AsFd, v6: bool) -> std::io::Result<()> {
    use crate::kernel::xfrm::{Dir, socket_bypass_policy};
    for dir in [Dir::In, Dir::Out] {
        set_xfrm_policy(socket, v6, &socket_bypass_policy(dir, v6))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_takes_on_a_udp_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        super::set_espinudp(&s).expect("setsockopt UDP_ENCAP");
    }

    /// The kernel takes our bypass policy (its size and layout) on a UDP socket; it
    /// wants CAP_NET_ADMIN, so as another user the refusal must be EPERM.
    #[test]
    fn the_bypass_policy_takes_on_a_udp_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        match super::bypass_ipsec(&s, false) {
            Ok(()) => {}
            Err(e) => assert_eq!(
                e.raw_os_error(),
                Some(libc::EPERM),
                "IP_XFRM_POLICY refused: {e}"
            ),
        }
        let bad = vec![0u8; 10];
        assert!(
            super::set_xfrm_policy(&s, false, &bad).is_err(),
            "short policy accepted"
        );
    }
}
