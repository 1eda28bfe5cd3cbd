//! The phase 1 ciphers in CBC mode, with no padding of their own (IKEv1 pads the
//! payload chain itself, RFC 2409 appendix B).

use ::cbc::cipher::{
    Block, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit,
};

use super::CryptoError;
use crate::algs::IkeCipher;

fn check(cipher: IkeCipher, key: &[u8], iv: &[u8], data_len: usize) -> Result<(), CryptoError> {
    if cipher.is_aead() {
        return Err(CryptoError::NotCbc);
    }
    if key.len() != cipher.key_len() {
        return Err(CryptoError::BadKeyLength(key.len()));
    }
    // The IV is ours (derived locally), never a peer's: a wrong length is a bug.
    assert_eq!(iv.len(), cipher.block_len(), "CBC IV must be one block");
    // `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    if data_len % cipher.block_len() != 0 {
        return Err(CryptoError::BadCiphertextLength(data_len));
    }
    Ok(())
}

fn encrypt_with<C>(key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError>
where
    C: BlockCipherEncrypt + ::cbc::cipher::KeyInit,
    ::cbc::Encryptor<C>: KeyIvInit + BlockModeEncrypt<BlockSize = C::BlockSize>,
{
    let mut enc = ::cbc::Encryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
    for chunk in data.chunks_exact_mut(C::block_size()) {
        let mut block = Block::<C>::try_from(&*chunk).expect("chunk is one block");
        enc.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    Ok(())
}

fn decrypt_with<C>(key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError>
where
    C: BlockCipherDecrypt + ::cbc::cipher::KeyInit,
    ::cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt<BlockSize = C::BlockSize>,
{
    let mut dec = ::cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CryptoError::BadKeyLength(key.len()))?;
    for chunk in data.chunks_exact_mut(C::block_size()) {
        let mut block = Block::<C>::try_from(&*chunk).expect("chunk is one block");
        dec.decrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    Ok(())
}

/// CBC encryption. `key.len()` must be `cipher.key_len()` (else `BadKeyLength`),
/// `iv.len()` the block length (panics otherwise: IVs are derived locally), and the
/// plaintext a whole number of blocks (else `BadCiphertextLength`).
pub fn cbc_encrypt(
    cipher: IkeCipher,
    key: &[u8],
    iv: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    check(cipher, key, iv, plaintext.len())?;
    let mut buf = plaintext.to_vec();
    match cipher {
        IkeCipher::TripleDes => encrypt_with::<des::TdesEde3>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 128 } => encrypt_with::<aes::Aes128>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 192 } => encrypt_with::<aes::Aes192>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 256 } => encrypt_with::<aes::Aes256>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { .. } => return Err(CryptoError::BadKeyLength(key.len())),
        IkeCipher::AesGcm { .. } | IkeCipher::ChaCha20Poly1305 => {
            return Err(CryptoError::NotCbc);
        }
    }
    Ok(buf)
}

/// CBC decryption; same rules as [`cbc_encrypt`]. The ciphertext length comes from
/// the peer, so a length that is not a whole number of blocks is an error, not a panic.
pub fn cbc_decrypt(
    cipher: IkeCipher,
    key: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    check(cipher, key, iv, ciphertext.len())?;
    let mut buf = ciphertext.to_vec();
    match cipher {
        IkeCipher::TripleDes => decrypt_with::<des::TdesEde3>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 128 } => decrypt_with::<aes::Aes128>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 192 } => decrypt_with::<aes::Aes192>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { key_bits: 256 } => decrypt_with::<aes::Aes256>(key, iv, &mut buf)?,
        IkeCipher::AesCbc { .. } => return Err(CryptoError::BadKeyLength(key.len())),
        IkeCipher::AesGcm { .. } | IkeCipher::ChaCha20Poly1305 => {
            return Err(CryptoError::NotCbc);
        }
    }
    Ok(buf)
}
