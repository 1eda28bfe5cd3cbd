//! The IKEv1 crypto suite: hashes and PRFs, the phase 1 ciphers (CBC), the
//! Diffie-Hellman groups, and the IKEv1 key schedule (RFC 2409 §5, appendix B).
//!
//! Nothing here draws randomness of its own: [`DhKeyPair::generate`] takes the
//! engine's injected [`Rng`]. Secrets (DH private values, SKEYID*, keys) live in
//! [`zeroize::Zeroizing`] buffers and no type here prints them with `Debug`.
//!
//! Library choices: `ring` for SHA-1/SHA-2 digests and their HMACs; RustCrypto for
//! what ring lacks or cannot do with an injected RNG (HMAC-MD5, 3DES, AES-CBC without
//! padding, ECDH on P-256/P-384/P-521); `num-bigint` for MODP exponentiation.

mod aead;
mod cbc;
mod dh;
mod keys;
mod modp_primes;
mod prf;

#[cfg(test)]
mod tests;

/// The `rand_core` this crate uses; other crates should name RNGs through it.
pub use rand_core;

pub use self::aead::{AEAD_IV_LEN, aead_icv_len, aead_open, aead_seal};
pub use self::cbc::{cbc_decrypt, cbc_encrypt};
pub use self::dh::DhKeyPair;
#[cfg(test)]
pub(crate) use self::dh::modp_prime_for_test;
pub use self::keys::{
    Phase1Keys, derive_phase1, hash_i, hash_r, keymat, phase2_iv, skeyid_psk, skeyid_sig,
};
pub use self::prf::{hash, prf};

/// The RNG the engine is given (e.g. a seeded ChaCha in tests, the OS RNG in the
/// helper). With rand_core 0.10 `CryptoRng` already implies the infallible `Rng`
/// (`fill_bytes`, `next_u32`, ...).
pub trait Rng: rand_core::CryptoRng {}

impl<T: rand_core::CryptoRng + ?Sized> Rng for T {}

/// Failures of the crypto suite. All of them are caused by input (a peer's value or
/// a malformed message), never by an internal fault.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    #[error("invalid Diffie-Hellman public value from peer")]
    InvalidPublicValue,
    #[error("ciphertext length {0} is not a multiple of the block size")]
    BadCiphertextLength(usize),
    #[error("invalid key length {0}")]
    BadKeyLength(usize),
    #[error("an AEAD cipher is not a CBC cipher")]
    NotCbc,
    #[error("the AEAD integrity check failed")]
    AeadIntegrity,
}

/// Constant-time equality (for hashes and MACs). Slices of different lengths are
/// unequal; the length itself is not secret.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A deterministic RNG for tests (ChaCha20 from a small seed).
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}
