//! ESP (RFC 4303) in tunnel mode: one SA per direction, encapsulation and
//! decapsulation in place in caller-owned buffers (no allocation per packet).
//!
//! Packet layout (the UDP payload with RFC 3948 encapsulation, the IP payload without):
//!
//! ```text
//! SPI(4) | sequence(4) | IV | payload | padding 1,2,3.. | pad length(1) | next header(1) | ICV
//!                           '------------- encrypted -------------------------------'
//! ```
//!
//! CBC transforms (AES, 3DES) carry a random IV of one block (from a ChaCha20 CSPRNG
//! seeded from the kernel once per SA) and an HMAC ICV truncated per algorithm
//! (RFC 2404, 4868, 2403). AES-GCM-16 (RFC 4106) carries an 8-byte explicit IV (the
//! 64-bit packet counter, unique per key), the nonce is salt || IV, the AAD is
//! SPI || sequence, and the ICV is the 16-byte tag. Inbound, the ICV is checked (in
//! constant time) before anything is decrypted, and the anti-replay window (RFC 4303
//! §3.4.3) is checked before the ICV and updated only after it.

use std::ops::Range;

use crate::algs::{EspAuth, EspCipher, EspProposal};
use crate::ike::EspKeys;
use aes::{Aes128, Aes192, Aes256};
use cbc::cipher::array::Array;
use cbc::cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit,
    KeyInit,
};
use hmac::Mac;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::Rng;
use ring::aead;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// IP protocol numbers carried in the next header field.
pub const NEXT_HEADER_IPV4: u8 = 4;
pub const NEXT_HEADER_IPV6: u8 = 41;
/// "No next header": a dummy packet (RFC 4303 §2.6), dropped silently.
pub const NEXT_HEADER_NONE: u8 = 59;

/// Size of the anti-replay window, in packets.
pub const REPLAY_WINDOW: u32 = 128;

/// The largest header (SPI, sequence, IV) of any transform: callers reserve this much
/// room in front of the inner packet.
pub const MAX_HEADER: usize = 8 + 16;
/// The largest trailer (padding up to a block, pad length, next header, ICV).
pub const MAX_TRAILER: usize = 15 + 2 + 32;

/// Why a packet was refused or could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    #[error("unsupported ESP transform {0}")]
    Unsupported(&'static str),
    #[error("ESP key of the wrong length ({0} bytes)")]
    BadKeyLength(usize),
    #[error("ESP packet too short or misaligned")]
    BadLength,
    #[error("ESP packet for another SA")]
    WrongSpi,
    #[error("ESP sequence number replayed")]
    Replayed,
    #[error("ESP sequence number outside the replay window")]
    TooOld,
    #[error("ESP integrity check failed")]
    Integrity,
    #[error("ESP padding invalid")]
    BadPadding,
    #[error("ESP sequence numbers exhausted: the SA must be rekeyed")]
    SequenceExhausted,
    #[error("buffer too small for the ESP packet")]
    BufferTooSmall,
}

enum Cipher {
    Null,
    Aes128(Aes128),
    Aes192(Aes192),
    Aes256(Aes256),
    TripleDes(des::TdesEde3),
    Gcm {
        key: aead::LessSafeKey,
        salt: Zeroizing<[u8; 4]>,
    },
    /// AES-192-GCM, which ring lacks (RustCrypto's aes-gcm; 128 and 256 use ring).
    Gcm192 {
        key: Box<aes_gcm::AesGcm<Aes192, aes_gcm::aead::consts::U12>>,
        salt: Zeroizing<[u8; 4]>,
    },
}

enum Integrity {
    /// Combined mode (GCM): the tag is the ICV.
    None,
    Ring {
        key: ring::hmac::Key,
        icv_len: usize,
    },
    Md5(hmac::Hmac<md5::Md5>),
}

/// The algorithms and keys of one SA (one direction).
struct Transform {
    cipher: Cipher,
    integrity: Integrity,
}

fn cbc_encrypt<C>(cipher: &C, iv: &[u8], data: &mut [u8])
where
    C: BlockCipherEncrypt + Clone,
    cbc::Encryptor<C>: InnerIvInit<Inner = C> + BlockModeEncrypt<BlockSize = C::BlockSize>,
{
    // The IV is ours and one block long; data is whole blocks (callers pad it).
    if let Ok(mut mode) = cbc::Encryptor::<C>::inner_iv_slice_init(cipher.clone(), iv) {
        let (blocks, _) = Array::<u8, C::BlockSize>::slice_as_chunks_mut(data);
        mode.encrypt_blocks(blocks);
    }
}

fn cbc_decrypt<C>(cipher: &C, iv: &[u8], data: &mut [u8])
where
    C: BlockCipherDecrypt + Clone,
    cbc::Decryptor<C>: InnerIvInit<Inner = C> + BlockModeDecrypt<BlockSize = C::BlockSize>,
{
    if let Ok(mut mode) = cbc::Decryptor::<C>::inner_iv_slice_init(cipher.clone(), iv) {
        let (blocks, _) = Array::<u8, C::BlockSize>::slice_as_chunks_mut(data);
        mode.decrypt_blocks(blocks);
    }
}

fn block_key<C: KeyInit>(key: &[u8]) -> Result<C, EspError> {
    C::new_from_slice(key).map_err(|_| EspError::BadKeyLength(key.len()))
}

impl Transform {
    fn new(p: &EspProposal, keys: &EspKeys) -> Result<Self, EspError> {
        let k = keys.encryption.as_slice();
        let cipher = match p.cipher {
            EspCipher::Null => Cipher::Null,
            EspCipher::TripleDes => Cipher::TripleDes(block_key(k)?),
            EspCipher::AesCbc { key_bits: 128 } => Cipher::Aes128(block_key(k)?),
            EspCipher::AesCbc { key_bits: 192 } => Cipher::Aes192(block_key(k)?),
            EspCipher::AesCbc { key_bits: 256 } => Cipher::Aes256(block_key(k)?),
            EspCipher::AesCbc { .. } => return Err(EspError::Unsupported("AES-CBC key length")),
            EspCipher::AesGcm16 { key_bits } => {
                let key_len = usize::from(key_bits / 8);
                if k.len() != key_len + 4 {
                    return Err(EspError::BadKeyLength(k.len()));
                }
                let (key, salt) = k.split_at(key_len);
                let alg = match key_bits {
                    128 => &aead::AES_128_GCM,
                    256 => &aead::AES_256_GCM,
                    192 => {
                        let mut s = Zeroizing::new([0u8; 4]);
                        s.copy_from_slice(salt);
                        let key = aes_gcm::KeyInit::new_from_slice(key)
                            .map_err(|_| EspError::BadKeyLength(k.len()))?;
                        return Transform::with_integrity(
                            Cipher::Gcm192 {
                                key: Box::new(key),
                                salt: s,
                            },
                            p,
                            keys,
                        );
                    }
                    _ => return Err(EspError::Unsupported("AES-GCM key length")),
                };
                let key =
                    aead::UnboundKey::new(alg, key).map_err(|_| EspError::BadKeyLength(k.len()))?;
                let mut s = Zeroizing::new([0u8; 4]);
                s.copy_from_slice(salt);
                Cipher::Gcm {
                    key: aead::LessSafeKey::new(key),
                    salt: s,
                }
            }
        };
        Transform::with_integrity(cipher, p, keys)
    }

    fn with_integrity(cipher: Cipher, p: &EspProposal, keys: &EspKeys) -> Result<Self, EspError> {
        let i = keys.integrity.as_slice();
        let integrity = match (&cipher, p.auth) {
            (Cipher::Gcm { .. } | Cipher::Gcm192 { .. }, None) => Integrity::None,
            (Cipher::Gcm { .. } | Cipher::Gcm192 { .. }, Some(_)) => {
                return Err(EspError::Unsupported("integrity algorithm with AES-GCM"));
            }
            (_, None) => return Err(EspError::Unsupported("ESP without integrity protection")),
            (_, Some(a)) => {
                let (alg, key_len, icv_len) = match a {
                    EspAuth::HmacMd5_96 => {
                        if i.len() != 16 {
                            return Err(EspError::BadKeyLength(i.len()));
                        }
                        let mac =
                            <hmac::Hmac<md5::Md5> as hmac::digest::KeyInit>::new_from_slice(i)
                                .map_err(|_| EspError::BadKeyLength(i.len()))?;
                        return Ok(Transform {
                            cipher,
                            integrity: Integrity::Md5(mac),
                        });
                    }
                    EspAuth::HmacSha1_96 => (ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20, 12),
                    EspAuth::HmacSha256_128 => (ring::hmac::HMAC_SHA256, 32, 16),
                    EspAuth::HmacSha384_192 => (ring::hmac::HMAC_SHA384, 48, 24),
                    EspAuth::HmacSha512_256 => (ring::hmac::HMAC_SHA512, 64, 32),
                };
                if i.len() != key_len {
                    return Err(EspError::BadKeyLength(i.len()));
                }
                Integrity::Ring {
                    key: ring::hmac::Key::new(alg, i),
                    icv_len,
                }
            }
        };
        Ok(Transform { cipher, integrity })
    }

    fn iv_len(&self) -> usize {
        match self.cipher {
            Cipher::Null => 0,
            Cipher::Aes128(_) | Cipher::Aes192(_) | Cipher::Aes256(_) => 16,
            Cipher::TripleDes(_) => 8,
            Cipher::Gcm { .. } | Cipher::Gcm192 { .. } => 8,
        }
    }

    /// What the encrypted part must be a multiple of.
    fn align(&self) -> usize {
        match self.cipher {
            Cipher::Aes128(_) | Cipher::Aes192(_) | Cipher::Aes256(_) => 16,
            Cipher::TripleDes(_) => 8,
            Cipher::Null | Cipher::Gcm { .. } | Cipher::Gcm192 { .. } => 4,
        }
    }

    fn icv_len(&self) -> usize {
        match &self.integrity {
            Integrity::None => 16,
            Integrity::Ring { icv_len, .. } => *icv_len,
            Integrity::Md5(_) => 12,
        }
    }

    /// The HMAC of `data` truncated into `out` (whose length is the ICV length).
    fn hmac(&self, data: &[u8], out: &mut [u8]) {
        match &self.integrity {
            Integrity::None => {}
            Integrity::Ring { key, .. } => {
                let tag = ring::hmac::sign(key, data);
                let n = out.len().min(tag.as_ref().len());
                out[..n].copy_from_slice(&tag.as_ref()[..n]);
            }
            Integrity::Md5(mac) => {
                let mut m = mac.clone();
                m.update(data);
                let tag = m.finalize().into_bytes();
                let n = out.len().min(tag.len());
                out[..n].copy_from_slice(&tag[..n]);
            }
        }
    }

    fn encrypt_cbc(&self, iv: &[u8], data: &mut [u8]) {
        match &self.cipher {
            Cipher::Aes128(c) => cbc_encrypt(c, iv, data),
            Cipher::Aes192(c) => cbc_encrypt(c, iv, data),
            Cipher::Aes256(c) => cbc_encrypt(c, iv, data),
            Cipher::TripleDes(c) => cbc_encrypt(c, iv, data),
            Cipher::Null | Cipher::Gcm { .. } | Cipher::Gcm192 { .. } => {}
        }
    }

    fn decrypt_cbc(&self, iv: &[u8], data: &mut [u8]) {
        match &self.cipher {
            Cipher::Aes128(c) => cbc_decrypt(c, iv, data),
            Cipher::Aes192(c) => cbc_decrypt(c, iv, data),
            Cipher::Aes256(c) => cbc_decrypt(c, iv, data),
            Cipher::TripleDes(c) => cbc_decrypt(c, iv, data),
            Cipher::Null | Cipher::Gcm { .. } | Cipher::Gcm192 { .. } => {}
        }
    }
}

fn gcm_nonce(salt: &[u8; 4], iv: &[u8]) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv[..8]);
    aead::Nonce::assume_unique_for_key(n)
}

/// RFC 4106 §4: the nonce is the 4-byte salt and the 8-byte explicit IV.
fn gcm192_nonce(salt: &[u8; 4], iv: &[u8]) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    if let Some(iv) = iv.get(..8) {
        n[4..].copy_from_slice(iv);
    }
    n.into()
}

fn aad(packet: &[u8]) -> aead::Aad<[u8; 8]> {
    let mut a = [0u8; 8];
    a.copy_from_slice(&packet[..8]);
    aead::Aad::from(a)
}

/// Bytes of ESP overhead at most for this proposal (header, IV, padding, trailer, ICV):
/// for the TUN MTU.
pub fn max_overhead(p: &EspProposal) -> usize {
    let (iv, align) = match p.cipher {
        EspCipher::Null => (0, 4),
        EspCipher::TripleDes => (8, 8),
        EspCipher::AesCbc { .. } => (16, 16),
        EspCipher::AesGcm16 { .. } => (8, 4),
    };
    let icv = match p.auth {
        None => 16,
        Some(EspAuth::HmacMd5_96 | EspAuth::HmacSha1_96) => 12,
        Some(EspAuth::HmacSha256_128) => 16,
        Some(EspAuth::HmacSha384_192) => 24,
        Some(EspAuth::HmacSha512_256) => 32,
    };
    8 + iv + (align - 1) + 2 + icv
}

/// The SA we send with.
pub struct OutboundSa {
    spi: u32,
    /// The next sequence number (starts at 1; 32-bit, no ESN).
    seq: u64,
    transform: Transform,
    rng: ChaCha20Rng,
}

impl OutboundSa {
    pub fn new(
        spi: u32,
        proposal: &EspProposal,
        keys: &EspKeys,
        rng: ChaCha20Rng,
    ) -> Result<Self, EspError> {
        Ok(OutboundSa {
            spi,
            seq: 1,
            transform: Transform::new(proposal, keys)?,
            rng,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// SPI, sequence number and IV: the room needed in front of the inner packet.
    #[cfg(test)]
    pub fn header_len(&self) -> usize {
        8 + self.transform.iv_len()
    }

    /// Encapsulates the inner packet `buf[start..start + len]` in place. The header is
    /// written just in front of it (`start >= header_len()`), the trailer behind it
    /// (`buf` must have `MAX_TRAILER` bytes of room after it). Returns where the ESP
    /// packet is in `buf`.
    pub fn encapsulate(
        &mut self,
        buf: &mut [u8],
        start: usize,
        len: usize,
        next_header: u8,
    ) -> Result<Range<usize>, EspError> {
        let t = &self.transform;
        let iv_len = t.iv_len();
        let hdr = start
            .checked_sub(8 + iv_len)
            .ok_or(EspError::BufferTooSmall)?;
        let align = t.align();
        let pad = (align - (len + 2) % align) % align;
        let ct_end = start + len + pad + 2;
        let icv_len = t.icv_len();
        let end = ct_end + icv_len;
        if end > buf.len() {
            return Err(EspError::BufferTooSmall);
        }
        let seq = u32::try_from(self.seq).map_err(|_| EspError::SequenceExhausted)?;
        let counter = self.seq;
        self.seq += 1;
        buf[hdr..hdr + 4].copy_from_slice(&self.spi.to_be_bytes());
        buf[hdr + 4..hdr + 8].copy_from_slice(&seq.to_be_bytes());
        for (i, b) in buf[start + len..start + len + pad].iter_mut().enumerate() {
            // Monotonic padding 1, 2, 3, ... (RFC 4303 §2.4); pad < 16.
            *b = (i + 1) as u8;
        }
        buf[ct_end - 2] = pad as u8;
        buf[ct_end - 1] = next_header;
        match &t.cipher {
            Cipher::Gcm { key, salt } => {
                buf[hdr + 8..start].copy_from_slice(&counter.to_be_bytes());
                let nonce = gcm_nonce(salt, &buf[hdr + 8..start]);
                let a = aad(&buf[hdr..]);
                let tag = key
                    .seal_in_place_separate_tag(nonce, a, &mut buf[start..ct_end])
                    .map_err(|_| EspError::BufferTooSmall)?;
                buf[ct_end..end].copy_from_slice(tag.as_ref());
            }
            Cipher::Gcm192 { key, salt } => {
                use aes_gcm::aead::AeadInOut as _;
                buf[hdr + 8..start].copy_from_slice(&counter.to_be_bytes());
                let nonce = gcm192_nonce(salt, &buf[hdr + 8..start]);
                let a: [u8; 8] = buf[hdr..hdr + 8]
                    .try_into()
                    .map_err(|_| EspError::BadLength)?;
                let tag = key
                    .encrypt_inout_detached(&nonce, &a, (&mut buf[start..ct_end]).into())
                    .map_err(|_| EspError::BufferTooSmall)?;
                buf[ct_end..end].copy_from_slice(&tag);
            }
            _ => {
                let (head, rest) = buf.split_at_mut(start);
                let iv = &mut head[hdr + 8..];
                self.rng.fill_bytes(iv);
                t.encrypt_cbc(iv, &mut rest[..ct_end - start]);
                let (signed, icv) = buf.split_at_mut(ct_end);
                t.hmac(&signed[hdr..], &mut icv[..icv_len]);
            }
        }
        Ok(hdr..end)
    }
}

/// The anti-replay window (RFC 4303 §3.4.3, and appendix A2): the highest sequence
/// number accepted and a bitmap of the `REPLAY_WINDOW` numbers up to it.
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    top: u32,
    /// Bit i set: `top - i` was received.
    bitmap: u128,
}

impl ReplayWindow {
    /// Whether `seq` may be new (before the ICV check).
    pub fn check(&self, seq: u32) -> Result<(), EspError> {
        if seq == 0 {
            return Err(EspError::Replayed);
        }
        if seq > self.top {
            return Ok(());
        }
        let diff = self.top - seq;
        if diff >= REPLAY_WINDOW {
            return Err(EspError::TooOld);
        }
        if self.bitmap >> diff & 1 == 1 {
            return Err(EspError::Replayed);
        }
        Ok(())
    }

    /// Records `seq` (after the ICV check passed).
    pub fn accept(&mut self, seq: u32) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bitmap = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.top = seq;
        } else {
            let diff = self.top - seq;
            if diff < REPLAY_WINDOW {
                self.bitmap |= 1u128 << diff;
            }
        }
    }
}

/// The SA we receive with.
pub struct InboundSa {
    spi: u32,
    transform: Transform,
    replay: ReplayWindow,
}

impl InboundSa {
    pub fn new(spi: u32, proposal: &EspProposal, keys: &EspKeys) -> Result<Self, EspError> {
        Ok(InboundSa {
            spi,
            transform: Transform::new(proposal, keys)?,
            replay: ReplayWindow::default(),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Checks and decrypts the ESP packet `pkt` in place. Returns where the inner packet
    /// is in `pkt` and its next header value.
    pub fn decapsulate(&mut self, pkt: &mut [u8]) -> Result<(Range<usize>, u8), EspError> {
        let t = &self.transform;
        let iv_len = t.iv_len();
        let icv_len = t.icv_len();
        let ct_start = 8 + iv_len;
        if pkt.len() < ct_start + 4 + icv_len {
            return Err(EspError::BadLength);
        }
        let ct_end = pkt.len() - icv_len;
        // `is_multiple_of` needs Rust 1.87; the workspace MSRV is 1.85.
        #[allow(clippy::manual_is_multiple_of)]
        if (ct_end - ct_start) % t.align() != 0 {
            return Err(EspError::BadLength);
        }
        let spi = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
        if spi != self.spi {
            return Err(EspError::WrongSpi);
        }
        let seq = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        self.replay.check(seq)?;
        match &t.cipher {
            Cipher::Gcm { key, salt } => {
                let nonce = gcm_nonce(salt, &pkt[8..ct_start]);
                let a = aad(pkt);
                key.open_in_place(nonce, a, &mut pkt[ct_start..])
                    .map_err(|_| EspError::Integrity)?;
            }
            Cipher::Gcm192 { key, salt } => {
                use aes_gcm::aead::AeadInOut as _;
                let nonce = gcm192_nonce(salt, &pkt[8..ct_start]);
                let a: [u8; 8] = pkt[..8].try_into().map_err(|_| EspError::BadLength)?;
                let (body, tag) = pkt[ct_start..].split_at_mut(ct_end - ct_start);
                let tag = aes_gcm::Tag::try_from(&*tag).map_err(|_| EspError::BadLength)?;
                key.decrypt_inout_detached(&nonce, &a, body.into(), &tag)
                    .map_err(|_| EspError::Integrity)?;
            }
            _ => {
                let mut icv = [0u8; 32];
                let icv = &mut icv[..icv_len];
                t.hmac(&pkt[..ct_end], icv);
                if !bool::from(icv.ct_eq(&pkt[ct_end..])) {
                    return Err(EspError::Integrity);
                }
                let (head, rest) = pkt.split_at_mut(ct_start);
                t.decrypt_cbc(&head[8..], &mut rest[..ct_end - ct_start]);
            }
        }
        self.replay.accept(seq);
        let pad = usize::from(pkt[ct_end - 2]);
        let next_header = pkt[ct_end - 1];
        let payload_end = (ct_end - 2)
            .checked_sub(pad)
            .filter(|&e| e >= ct_start)
            .ok_or(EspError::BadPadding)?;
        for (i, b) in pkt[payload_end..ct_end - 2].iter().enumerate() {
            if usize::from(*b) != i + 1 {
                return Err(EspError::BadPadding);
            }
        }
        Ok((ct_start..payload_end, next_header))
    }
}

#[cfg(test)]
mod tests;
