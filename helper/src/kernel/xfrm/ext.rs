//! What `netlink-packet-xfrm` 0.5 lacks for Postern, written in its style (its types,
//! the `netlink-packet-core` traits and errors) and kept apart so it can go upstream:
//!
//! - **Checked parsing** ([`parse_checked`]): the crate's message parsers slice their
//!   fixed-size header without checking the length first
//!   (`&buf[..size_of::<UserSaInfoBuffer>()]` in `state::ModifyMessage::parse`, the
//!   same in the acquire, expire and policy messages), so a message cut short panics.
//!   Here the length is checked against the crate's own `XFRM_USER_*_LEN` before the
//!   crate parses.
//! - **A datagram iterator** ([`messages`]): one netlink datagram may hold several
//!   messages; `netlink-packet-core` parses one at a time (netlink-proto's codec does
//!   the splitting, and we do not use netlink-proto, see the parent module).
//! - **Key hygiene** ([`ZeroizeKeys`]): `Alg`, `AlgAuth` and `AlgAead` keep their keys
//!   in plain `Vec<u8>`s that are freed without being wiped.
//! - **Constructors from a name** ([`alg`], [`alg_auth`], [`alg_aead`]): the crate has
//!   only the raw 64-byte name arrays and the key length in bits as fields.
//! - **Multicast groups as a bind mask** ([`group_mask`]): the crate has the
//!   `XFRMNLGRP_*` numbers only.

use netlink_packet_core::{DecodeError, NetlinkBuffer, ParseableParametrized};
use netlink_packet_xfrm::{
    Alg, AlgAead, AlgAuth, XFRM_ALG_NAME_LEN, XFRM_MSG_ACQUIRE, XFRM_MSG_DELPOLICY, XFRM_MSG_DELSA,
    XFRM_MSG_EXPIRE, XFRM_MSG_GETPOLICY, XFRM_MSG_GETSA, XFRM_MSG_MIGRATE, XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA, XFRM_MSG_UPDPOLICY, XFRM_MSG_UPDSA, XFRM_USER_ACQUIRE_LEN,
    XFRM_USER_EXPIRE_LEN, XFRM_USER_POLICY_ID_LEN, XFRM_USER_POLICY_INFO_LEN, XFRM_USER_SA_ID_LEN,
    XFRM_USER_SA_INFO_LEN, XfrmAttrs, XfrmMessage,
};
use zeroize::Zeroize;

/// The fixed-size header the crate's parser of `message_type` reads before its
/// attributes; `None` for the types this module does not vouch for.
pub fn fixed_len(message_type: u16) -> Option<usize> {
    Some(match message_type {
        XFRM_MSG_NEWSA | XFRM_MSG_UPDSA => XFRM_USER_SA_INFO_LEN,
        XFRM_MSG_DELSA | XFRM_MSG_GETSA => XFRM_USER_SA_ID_LEN,
        XFRM_MSG_NEWPOLICY | XFRM_MSG_UPDPOLICY => XFRM_USER_POLICY_INFO_LEN,
        XFRM_MSG_DELPOLICY | XFRM_MSG_GETPOLICY | XFRM_MSG_MIGRATE => XFRM_USER_POLICY_ID_LEN,
        XFRM_MSG_ACQUIRE => XFRM_USER_ACQUIRE_LEN,
        XFRM_MSG_EXPIRE => XFRM_USER_EXPIRE_LEN,
        _ => return None,
    })
}

/// `XfrmMessage::parse_with_param` that never panics: the payload must hold the
/// message's fixed header (the crate then checks every attribute's length itself).
/// Types without a known fixed header are refused rather than handed to the crate.
pub fn parse_checked(message_type: u16, payload: &[u8]) -> Result<XfrmMessage, DecodeError> {
    let Some(fixed) = fixed_len(message_type) else {
        return Err(DecodeError::from(format!(
            "XFRM message type {message_type} is not parsed here"
        )));
    };
    if payload.len() < fixed {
        return Err(DecodeError::buffer_too_small(payload.len(), fixed));
    }
    XfrmMessage::parse_with_param(payload, message_type)
}

/// The netlink messages of one datagram, each length-checked
/// (`NetlinkBuffer::new_checked`); iteration stops after the first malformed one.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages {
        rest: datagram,
        failed: false,
    }
}

pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NetlinkBuffer<&'a [u8]>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match NetlinkBuffer::new_checked(self.rest) {
            Ok(m) => {
                let len = m.length() as usize;
                // The next message starts at the 4-byte aligned end of this one (a
                // last message may lack its padding).
                let next = len.next_multiple_of(4).min(self.rest.len());
                let this = NetlinkBuffer::new(&self.rest[..len]);
                self.rest = &self.rest[next..];
                Some(Ok(this))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Wipes the key material an XFRM value holds (algorithm keys), in place.
pub trait ZeroizeKeys {
    fn zeroize_keys(&mut self);
}

impl ZeroizeKeys for XfrmAttrs {
    fn zeroize_keys(&mut self) {
        match self {
            XfrmAttrs::AuthenticationAlg(a)
            | XfrmAttrs::EncryptionAlg(a)
            | XfrmAttrs::CompressionAlg(a) => a.alg_key.zeroize(),
            XfrmAttrs::AuthenticationAlgTrunc(a) => a.alg_key.zeroize(),
            XfrmAttrs::EncryptionAlgAead(a) => a.alg_key.zeroize(),
            _ => {}
        }
    }
}

impl ZeroizeKeys for [XfrmAttrs] {
    fn zeroize_keys(&mut self) {
        self.iter_mut().for_each(ZeroizeKeys::zeroize_keys);
    }
}

impl ZeroizeKeys for XfrmMessage {
    fn zeroize_keys(&mut self) {
        match self {
            XfrmMessage::AddSa(m) | XfrmMessage::UpdateSa(m) => m.nlas.zeroize_keys(),
            XfrmMessage::Other((_, raw)) => raw.zeroize(),
            _ => {}
        }
    }
}

/// A kernel algorithm name (`"cbc(aes)"`) as the 64-byte, NUL-padded field; a longer
/// name is cut to 63 bytes so it stays NUL-terminated.
pub fn alg_name(name: &str) -> [u8; XFRM_ALG_NAME_LEN] {
    let mut n = [0u8; XFRM_ALG_NAME_LEN];
    let len = name.len().min(XFRM_ALG_NAME_LEN - 1);
    n[..len].copy_from_slice(&name.as_bytes()[..len]);
    n
}

fn key_bits(key: &[u8]) -> u32 {
    u32::try_from(key.len().saturating_mul(8)).unwrap_or(u32::MAX)
}

/// `struct xfrm_algo` (`XFRMA_ALG_CRYPT`, `XFRMA_ALG_AUTH`, `XFRMA_ALG_COMP`).
pub fn alg(name: &str, key: &[u8]) -> Alg {
    Alg {
        alg_name: alg_name(name),
        alg_key_len: key_bits(key),
        alg_key: key.to_vec(),
    }
}

/// `struct xfrm_algo_auth` (`XFRMA_ALG_AUTH_TRUNC`): truncation length in bits.
pub fn alg_auth(name: &str, key: &[u8], trunc_bits: u32) -> AlgAuth {
    AlgAuth {
        alg_name: alg_name(name),
        alg_key_len: key_bits(key),
        alg_trunc_len: trunc_bits,
        alg_key: key.to_vec(),
    }
}

/// `struct xfrm_algo_aead` (`XFRMA_ALG_AEAD`): ICV length in bits.
pub fn alg_aead(name: &str, key: &[u8], icv_bits: u32) -> AlgAead {
    AlgAead {
        alg_name: alg_name(name),
        alg_key_len: key_bits(key),
        alg_icv_len: icv_bits,
        alg_key: key.to_vec(),
    }
}

/// The `nl_groups` bind mask of the `XFRMNLGRP_*` groups given (group `n` is bit
/// `n - 1`; 0 and numbers past 32 have no bit and are left out).
pub fn group_mask(groups: &[u32]) -> u32 {
    groups
        .iter()
        .filter(|g| (1..=32).contains(*g))
        .fold(0, |m, g| m | (1 << (g - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_xfrm::{XFRMNLGRP_ACQUIRE, XFRMNLGRP_EXPIRE};

    #[test]
    fn short_messages_are_refused_not_panicked_on() {
        for t in [
            XFRM_MSG_NEWSA,
            XFRM_MSG_GETSA,
            XFRM_MSG_NEWPOLICY,
            XFRM_MSG_DELPOLICY,
            XFRM_MSG_ACQUIRE,
            XFRM_MSG_EXPIRE,
        ] {
            let fixed = fixed_len(t).unwrap();
            let buf = vec![0u8; fixed + 8];
            for cut in 0..fixed {
                assert!(parse_checked(t, &buf[..cut]).is_err(), "type {t} cut {cut}");
            }
            // An all-zero header parses; 8 zero bytes after it are a bad attribute
            // (length 0).
            assert!(parse_checked(t, &buf[..fixed]).is_ok(), "type {t}");
            if t != XFRM_MSG_EXPIRE {
                // (an expire has no attributes the crate reads)
                assert!(parse_checked(t, &buf).is_err(), "type {t}: bad attribute");
            }
        }
        assert!(parse_checked(0x99, &[0; 400]).is_err());
    }

    #[test]
    fn datagrams_split_into_checked_messages() {
        let msg = |t: u16, body: usize| {
            let mut m = Vec::new();
            m.extend_from_slice(&((16 + body) as u32).to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.resize(16 + body.next_multiple_of(4), 0);
            m
        };
        let two = [msg(1, 3), msg(2, 8)].concat();
        let got: Vec<_> = messages(&two).map(|m| m.unwrap().message_type()).collect();
        assert_eq!(got, [1, 2]);
        // A lying length: one error, then nothing.
        let mut bad = two.clone();
        bad[0..4].copy_from_slice(&999u32.to_ne_bytes());
        let mut it = messages(&bad);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        for cut in 0..two.len() {
            let _ = messages(&two[..cut]).count();
        }
    }

    #[test]
    fn keys_are_wiped_in_place() {
        let mut m = XfrmMessage::AddSa(netlink_packet_xfrm::state::ModifyMessage {
            nlas: vec![
                XfrmAttrs::EncryptionAlg(alg("cbc(aes)", &[7; 16])),
                XfrmAttrs::AuthenticationAlgTrunc(alg_auth("hmac(sha256)", &[8; 32], 128)),
                XfrmAttrs::EncryptionAlgAead(alg_aead("rfc4106(gcm(aes))", &[9; 20], 128)),
            ],
            ..Default::default()
        });
        m.zeroize_keys();
        let XfrmMessage::AddSa(m) = m else {
            unreachable!()
        };
        for a in &m.nlas {
            let key = match a {
                XfrmAttrs::EncryptionAlg(a) => &a.alg_key,
                XfrmAttrs::AuthenticationAlgTrunc(a) => &a.alg_key,
                XfrmAttrs::EncryptionAlgAead(a) => &a.alg_key,
                _ => unreachable!(),
            };
            assert!(key.iter().all(|b| *b == 0), "{a:?}");
        }
    }

    #[test]
    fn names_bits_and_groups() {
        let a = alg_aead("rfc4106(gcm(aes))", &[0; 20], 128);
        assert!(a.alg_name.starts_with(b"rfc4106(gcm(aes))\0"));
        assert_eq!(a.alg_key_len, 160);
        assert_eq!(alg_name(&"x".repeat(80))[63], 0, "NUL-terminated");
        assert_eq!(group_mask(&[XFRMNLGRP_ACQUIRE, XFRMNLGRP_EXPIRE]), 0b11);
        assert_eq!(group_mask(&[0, 33]), 0);
    }
}
