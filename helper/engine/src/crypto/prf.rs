//! Plain hashes and the IKEv1 PRF (HMAC with the negotiated hash).

use hmac::{KeyInit, Mac};

use crate::algs::HashAlg;

fn ring_digest_alg(alg: HashAlg) -> Option<&'static ring::digest::Algorithm> {
    match alg {
        HashAlg::Md5 => None,
        HashAlg::Sha1 => Some(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
        HashAlg::Sha256 => Some(&ring::digest::SHA256),
        HashAlg::Sha384 => Some(&ring::digest::SHA384),
        HashAlg::Sha512 => Some(&ring::digest::SHA512),
    }
}

fn ring_hmac_alg(alg: HashAlg) -> Option<ring::hmac::Algorithm> {
    match alg {
        HashAlg::Md5 => None,
        HashAlg::Sha1 => Some(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        HashAlg::Sha256 => Some(ring::hmac::HMAC_SHA256),
        HashAlg::Sha384 => Some(ring::hmac::HMAC_SHA384),
        HashAlg::Sha512 => Some(ring::hmac::HMAC_SHA512),
    }
}

/// Plain hash over the concatenation of `parts` (used for the phase 1 IV, the
/// phase 2 IVs, NAT-D, and so on).
pub fn hash(alg: HashAlg, parts: &[&[u8]]) -> Vec<u8> {
    match ring_digest_alg(alg) {
        Some(a) => {
            let mut ctx = ring::digest::Context::new(a);
            for p in parts {
                ctx.update(p);
            }
            ctx.finish().as_ref().to_vec()
        }
        None => {
            use md5::Digest;
            let mut h = md5::Md5::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
    }
}

/// HMAC with `alg` keyed with `key` over the concatenation of `parts`: the IKEv1
/// prf. The output is `alg.output_len()` bytes. Callers that feed the output into
/// further key derivation should wrap it in `Zeroizing`.
pub fn prf(alg: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match ring_hmac_alg(alg) {
        Some(a) => {
            let key = ring::hmac::Key::new(a, key);
            let mut ctx = ring::hmac::Context::with_key(&key);
            for p in parts {
                ctx.update(p);
            }
            ctx.sign().as_ref().to_vec()
        }
        None => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <hmac::Hmac<md5::Md5> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
    }
}
