//! The AEAD ciphers of the IKEv2 SK payload: AES-GCM with an 8, 12 or 16 octet ICV
//! (RFC 5282) and ChaCha20-Poly1305 (RFC 7634). The keying material of one direction
//! is the key followed by a 4 octet salt; the nonce is salt | the 8 octet IV carried
//! in the payload (RFC 5282 §4, RFC 7634 §2).
//!
//! Library choices: RustCrypto `aes-gcm` for AES-GCM (ring lacks AES-192 and the
//! short ICVs), ring for ChaCha20-Poly1305.

use aes_gcm::aead::AeadInOut as _;
use aes_gcm::aead::consts::{U8, U12, U16};
use aes_gcm::{AesGcm, KeyInit};

use super::CryptoError;
use crate::algs::IkeCipher;

/// The explicit IV in the payload (RFC 5282 §3, RFC 7634 §3).
pub const AEAD_IV_LEN: usize = 8;
const SALT_LEN: usize = 4;

/// The ICV length of an AEAD cipher; 0 for the others.
pub fn aead_icv_len(cipher: IkeCipher) -> usize {
    match cipher {
        IkeCipher::AesGcm { icv, .. } => usize::from(icv),
        IkeCipher::ChaCha20Poly1305 => 16,
        IkeCipher::TripleDes | IkeCipher::AesCbc { .. } => 0,
    }
}

fn nonce(salt: &[u8], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..SALT_LEN].copy_from_slice(salt);
    n[SALT_LEN..].copy_from_slice(iv);
    n
}

/// Runs `$m!(Aes, TagSize)` for the key size and ICV.
macro_rules! by_gcm {
    ($m:ident, $bits:expr, $icv:expr) => {
        match ($bits, $icv) {
            (128, 8) => $m!(aes::Aes128, U8),
            (128, 12) => $m!(aes::Aes128, U12),
            (128, 16) => $m!(aes::Aes128, U16),
            (192, 8) => $m!(aes::Aes192, U8),
            (192, 12) => $m!(aes::Aes192, U12),
            (192, 16) => $m!(aes::Aes192, U16),
            (256, 8) => $m!(aes::Aes256, U8),
            (256, 12) => $m!(aes::Aes256, U12),
            (256, 16) => $m!(aes::Aes256, U16),
            (b, _) => Err(CryptoError::BadKeyLength(usize::from(b) / 8)),
        }
    };
}

/// Splits the keying material into key and salt, checking the lengths.
fn split<'a>(
    cipher: IkeCipher,
    keymat: &'a [u8],
    iv: &[u8],
) -> Result<(&'a [u8], &'a [u8]), CryptoError> {
    if !cipher.is_aead() || keymat.len() != cipher.keymat_len() {
        return Err(CryptoError::BadKeyLength(keymat.len()));
    }
    if iv.len() != AEAD_IV_LEN {
        return Err(CryptoError::BadCiphertextLength(iv.len()));
    }
    Ok(keymat.split_at(cipher.key_len()))
}

/// Encrypts `buf` in place with AES-GCM of that key size and ICV; the ICV.
fn gcm_seal(
    key_bits: u16,
    icv: u8,
    key: &[u8],
    n: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<Vec<u8>, CryptoError> {
    macro_rules! seal {
        ($aes:ty, $tag:ty) => {{
            let c = AesGcm::<$aes, U12, $tag>::new_from_slice(key)
                .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
            let tag = c
                .encrypt_inout_detached(&aes_gcm::Nonce::<U12>::from(*n), aad, buf.into())
                .map_err(|_| CryptoError::BadCiphertextLength(buf.len()))?;
            Ok(tag.to_vec())
        }};
    }
    by_gcm!(seal, key_bits, icv)
}

/// Decrypts `buf` in place after checking `tag`.
fn gcm_open(
    key_bits: u16,
    icv: u8,
    key: &[u8],
    n: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    macro_rules! open {
        ($aes:ty, $tag:ty) => {{
            let c = AesGcm::<$aes, U12, $tag>::new_from_slice(key)
                .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
            let tag =
                aes_gcm::Tag::<$tag>::try_from(tag).map_err(|_| CryptoError::AeadIntegrity)?;
            c.decrypt_inout_detached(&aes_gcm::Nonce::<U12>::from(*n), aad, buf.into(), &tag)
                .map_err(|_| CryptoError::AeadIntegrity)
        }};
    }
    by_gcm!(open, key_bits, icv)
}

/// AEAD encryption: ciphertext | ICV of `plain` under `keymat` (key | salt) with the
/// payload's 8 octet `iv` and the associated data `aad`.
pub fn aead_seal(
    cipher: IkeCipher,
    keymat: &[u8],
    iv: &[u8],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (key, salt) = split(cipher, keymat, iv)?;
    let n = nonce(salt, iv);
    let mut buf = plain.to_vec();
    let tag = match cipher {
        IkeCipher::AesGcm { key_bits, icv } => gcm_seal(key_bits, icv, key, &n, aad, &mut buf)?,
        _ => {
            use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
            let k = UnboundKey::new(&CHACHA20_POLY1305, key)
                .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
            LessSafeKey::new(k)
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(n),
                    Aad::from(aad),
                    &mut buf,
                )
                .map_err(|_| CryptoError::BadCiphertextLength(plain.len()))?
                .as_ref()
                .to_vec()
        }
    };
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// AEAD decryption of ciphertext | ICV; `AeadIntegrity` when the ICV is wrong.
pub fn aead_open(
    cipher: IkeCipher,
    keymat: &[u8],
    iv: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (key, salt) = split(cipher, keymat, iv)?;
    let icv = aead_icv_len(cipher);
    if sealed.len() < icv {
        return Err(CryptoError::BadCiphertextLength(sealed.len()));
    }
    let n = nonce(salt, iv);
    let (ct, tag) = sealed.split_at(sealed.len() - icv);
    let mut buf = ct.to_vec();
    match cipher {
        IkeCipher::AesGcm { key_bits, icv } => {
            gcm_open(key_bits, icv, key, &n, aad, &mut buf, tag)?
        }
        _ => {
            use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
            let k = UnboundKey::new(&CHACHA20_POLY1305, key)
                .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
            let tag: [u8; 16] = tag.try_into().map_err(|_| CryptoError::AeadIntegrity)?;
            LessSafeKey::new(k)
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(n),
                    Aad::from(aad),
                    Tag::from(tag),
                    &mut buf,
                    0..,
                )
                .map_err(|_| CryptoError::AeadIntegrity)?;
        }
    }
    Ok(buf)
}
