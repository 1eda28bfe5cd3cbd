//! The IKEv2 key schedule (RFC 7296 §2.13, §2.14, §2.15, §2.17) and the SK payload
//! (§3.14): AES-CBC or 3DES with HMAC integrity, encrypt-then-MAC over the whole
//! message, or an AEAD cipher (AES-GCM, RFC 5282; ChaCha20-Poly1305, RFC 7634) with
//! the message up to the SK payload header as associated data.

use zeroize::Zeroizing;

use super::codec::{self, Chain, HEADER_LEN, Header, PAYLOAD_HEADER_LEN, Payload, ptype};
use crate::algs::{EspAuth, HashAlg, IkeCipher};
use crate::crypto::{
    self, AEAD_IV_LEN, Rng, aead_icv_len, aead_open, aead_seal, cbc_decrypt, cbc_encrypt, ct_eq,
    prf,
};

/// prf+ (§2.13): T1 | T2 | ... with T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n),
/// truncated to `len`. At most 255 blocks (the counter is one octet).
pub fn prf_plus(alg: HashAlg, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + alg.output_len()));
    let mut t: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut n: u8 = 1;
    while out.len() < len {
        t = Zeroizing::new(prf(alg, key, &[&t, seed, &[n]]));
        out.extend_from_slice(&t);
        match n.checked_add(1) {
            Some(m) => n = m,
            None => break,
        }
    }
    out.truncate(len);
    out
}

/// The length of the ICV of AUTH_HMAC_*: half the hash for SHA-2 (RFC 4868), 96
/// bits for MD5 and SHA-1.
pub fn icv_len(integ: HashAlg) -> usize {
    match integ {
        HashAlg::Md5 | HashAlg::Sha1 => 12,
        HashAlg::Sha256 => 16,
        HashAlg::Sha384 => 24,
        HashAlg::Sha512 => 32,
    }
}

/// The IKEv2 ENCR transform ID of an IKE cipher (§3.3.2; IKEv1 numbers differ).
/// ENCR_AES_GCM_8/12/16 (RFC 5282 §8) and ENCR_CHACHA20_POLY1305 (RFC 7634 §4).
pub fn encr_id(c: IkeCipher) -> u16 {
    match c {
        IkeCipher::TripleDes => 3,
        IkeCipher::AesCbc { .. } => 12,
        IkeCipher::AesGcm { icv: 8, .. } => 18,
        IkeCipher::AesGcm { icv: 12, .. } => 19,
        IkeCipher::AesGcm { .. } => 20,
        IkeCipher::ChaCha20Poly1305 => 28,
    }
}

pub fn encr_from_id(id: u16, key_bits: Option<u16>) -> Option<IkeCipher> {
    let gcm = |icv| match key_bits {
        Some(b @ (128 | 192 | 256)) => Some(IkeCipher::AesGcm { key_bits: b, icv }),
        _ => None,
    };
    match (id, key_bits) {
        (3, None) => Some(IkeCipher::TripleDes),
        (12, Some(b @ (128 | 192 | 256))) => Some(IkeCipher::AesCbc { key_bits: b }),
        (18, _) => gcm(8),
        (19, _) => gcm(12),
        (20, _) => gcm(16),
        (28, None) => Some(IkeCipher::ChaCha20Poly1305),
        _ => None,
    }
}

/// The IKEv2 PRF transform ID of a hash (§3.3.2).
pub fn prf_id(h: HashAlg) -> u16 {
    match h {
        HashAlg::Md5 => 1,
        HashAlg::Sha1 => 2,
        HashAlg::Sha256 => 5,
        HashAlg::Sha384 => 6,
        HashAlg::Sha512 => 7,
    }
}

pub fn prf_from_id(id: u16) -> Option<HashAlg> {
    Some(match id {
        1 => HashAlg::Md5,
        2 => HashAlg::Sha1,
        5 => HashAlg::Sha256,
        6 => HashAlg::Sha384,
        7 => HashAlg::Sha512,
        _ => return None,
    })
}

/// The IKEv2 integrity transform ID of a hash (AUTH_HMAC_*, §3.3.2, RFC 4868).
pub fn integ_id(h: HashAlg) -> u16 {
    match h {
        HashAlg::Md5 => 1,
        HashAlg::Sha1 => 2,
        HashAlg::Sha256 => 12,
        HashAlg::Sha384 => 13,
        HashAlg::Sha512 => 14,
    }
}

pub fn integ_from_id(id: u16) -> Option<HashAlg> {
    Some(match id {
        1 => HashAlg::Md5,
        2 => HashAlg::Sha1,
        12 => HashAlg::Sha256,
        13 => HashAlg::Sha384,
        14 => HashAlg::Sha512,
        _ => return None,
    })
}

/// ESP integrity algorithms by their IKEv2 transform ID.
pub fn esp_integ_id(a: EspAuth) -> u16 {
    match a {
        EspAuth::HmacMd5_96 => 1,
        EspAuth::HmacSha1_96 => 2,
        EspAuth::HmacSha256_128 => 12,
        EspAuth::HmacSha384_192 => 13,
        EspAuth::HmacSha512_256 => 14,
    }
}

pub fn esp_integ_from_id(id: u16) -> Option<EspAuth> {
    Some(match id {
        1 => EspAuth::HmacMd5_96,
        2 => EspAuth::HmacSha1_96,
        12 => EspAuth::HmacSha256_128,
        13 => EspAuth::HmacSha384_192,
        14 => EspAuth::HmacSha512_256,
        _ => return None,
    })
}

/// The keys of one IKE SA. Never printed.
pub struct IkeKeys {
    pub prf: HashAlg,
    /// The HMAC of a CBC cipher; `None` with an AEAD cipher.
    pub integ: Option<HashAlg>,
    pub cipher: IkeCipher,
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_ai: Zeroizing<Vec<u8>>,
    pub sk_ar: Zeroizing<Vec<u8>>,
    pub sk_ei: Zeroizing<Vec<u8>>,
    pub sk_er: Zeroizing<Vec<u8>>,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeKeys")
            .field("prf", &self.prf)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) and {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi |
/// SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14). The integrity algorithm is
/// the PRF's hash (the proposals name one hash for both), none with an AEAD cipher,
/// whose SK_e* are the key and 4 octets of salt (RFC 5282 §7.1).
pub fn derive(
    prf_alg: HashAlg,
    cipher: IkeCipher,
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> IkeKeys {
    let nonces = Zeroizing::new([ni, nr].concat());
    let skeyseed = Zeroizing::new(prf(prf_alg, &nonces, &[g_ir]));
    from_skeyseed(prf_alg, cipher, &skeyseed, ni, nr, spi_i, spi_r)
}

/// The keys of an IKE SA made by rekeying (§2.18): SKEYSEED = prf(SK_d (old),
/// g^ir (new) | Ni | Nr) with the old SA's PRF, then prf+ as in §2.14 with the new
/// SA's PRF, nonces of the rekeying exchange and the new SPIs.
#[allow(clippy::too_many_arguments)]
pub fn derive_rekey(
    old_prf: HashAlg,
    old_sk_d: &[u8],
    prf_alg: HashAlg,
    cipher: IkeCipher,
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> IkeKeys {
    let skeyseed = Zeroizing::new(prf(old_prf, old_sk_d, &[g_ir, ni, nr]));
    from_skeyseed(prf_alg, cipher, &skeyseed, ni, nr, spi_i, spi_r)
}

fn from_skeyseed(
    prf_alg: HashAlg,
    cipher: IkeCipher,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
) -> IkeKeys {
    let seed = [ni, nr, spi_i, spi_r].concat();
    let integ = (!cipher.is_aead()).then_some(prf_alg);
    let (p, a, e) = (
        prf_alg.output_len(),
        integ.map_or(0, HashAlg::output_len),
        cipher.keymat_len(),
    );
    let total = 3 * p + 2 * a + 2 * e;
    let km = prf_plus(prf_alg, skeyseed, &seed, total);
    let mut at = 0;
    let mut cut = |n: usize| {
        let v = Zeroizing::new(km[at..at + n].to_vec());
        at += n;
        v
    };
    IkeKeys {
        prf: prf_alg,
        integ,
        cipher,
        sk_d: cut(p),
        sk_ai: cut(a),
        sk_ar: cut(a),
        sk_ei: cut(e),
        sk_er: cut(e),
        sk_pi: cut(p),
        sk_pr: cut(p),
    }
}

/// The octets the AUTH payload covers (§2.15): the first message the side sent, the
/// peer's nonce, and prf(SK_p, IDType | RESERVED | ID data).
pub fn signed_octets(
    prf_alg: HashAlg,
    sk_p: &[u8],
    first_message: &[u8],
    peer_nonce: &[u8],
    id_kind: u8,
    id_data: &[u8],
) -> Vec<u8> {
    let maced = prf(prf_alg, sk_p, &[&[id_kind, 0, 0, 0], id_data]);
    [first_message, peer_nonce, &maced].concat()
}

/// AUTH for a shared key (§2.15): prf(prf(secret, "Key Pad for IKEv2"), octets).
pub fn psk_auth(prf_alg: HashAlg, secret: &[u8], octets: &[u8]) -> Vec<u8> {
    let pad = Zeroizing::new(prf(prf_alg, secret, &[b"Key Pad for IKEv2"]));
    prf(prf_alg, &pad, &[octets])
}

/// NAT_DETECTION_*_IP data (§2.23): SHA-1(SPIi | SPIr | IP | port).
pub fn nat_hash(spi_i: &[u8; 8], spi_r: &[u8; 8], addr: std::net::SocketAddr) -> Vec<u8> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    crypto::hash(
        HashAlg::Sha1,
        &[spi_i, spi_r, &ip, &addr.port().to_be_bytes()],
    )
}

/// Why an SK payload could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    #[error("no SK payload (an unprotected message where protection is required)")]
    Missing,
    #[error("SK payload too short")]
    Short,
    #[error("integrity check failed")]
    Integrity,
    #[error("bad encryption: {0}")]
    Cipher(#[from] crypto::CryptoError),
    #[error("bad padding")]
    Padding,
    #[error("inner payloads: {0}")]
    Decode(#[from] crate::codec::DecodeError),
}

impl IkeKeys {
    pub(super) fn out_keys(&self, initiator: bool) -> (&[u8], &[u8]) {
        if initiator {
            (&self.sk_ei, &self.sk_ai)
        } else {
            (&self.sk_er, &self.sk_ar)
        }
    }

    /// The IV in an SK or SKF payload: a cipher block for CBC, 8 octets for AEAD.
    pub(super) fn iv_len(&self) -> usize {
        if self.cipher.is_aead() {
            AEAD_IV_LEN
        } else {
            self.cipher.block_len()
        }
    }

    /// The ICV: the truncated HMAC, or the AEAD cipher's tag.
    pub(super) fn icv_len(&self) -> usize {
        match self.integ {
            Some(h) => icv_len(h),
            None => aead_icv_len(self.cipher),
        }
    }

    /// The octets an SK payload body takes for `n` inner octets: IV, the padded
    /// plaintext with its Pad Length octet, ICV.
    pub(super) fn sealed_len(&self, n: usize) -> usize {
        let block = self.cipher.block_len();
        (n + 1).div_ceil(block) * block + self.iv_len() + self.icv_len()
    }

    /// Appends IV, ciphertext and ICV of `inner` to `head`: the message up to the
    /// end of the SK (or SKF) payload header, its lengths already counting
    /// [`Self::sealed_len`]. CBC: encrypt, then HMAC over the whole message (§3.14);
    /// AEAD: `head` is the associated data (RFC 5282 §5.1).
    pub(super) fn seal_after(
        &self,
        mut head: Vec<u8>,
        inner: &[u8],
        initiator: bool,
        rng: &mut dyn Rng,
    ) -> Vec<u8> {
        let block = self.cipher.block_len();
        let pad = (inner.len() + 1).div_ceil(block) * block - inner.len() - 1;
        let mut plain = Zeroizing::new(Vec::with_capacity(inner.len() + pad + 1));
        plain.extend_from_slice(inner);
        plain.extend(std::iter::repeat_n(0u8, pad));
        plain.push(pad as u8);
        let mut iv = vec![0u8; self.iv_len()];
        rng.fill_bytes(&mut iv);
        let (ek, ak) = self.out_keys(initiator);
        match self.integ {
            None => {
                // Our keys have the cipher's lengths: this cannot fail.
                let sealed = aead_seal(self.cipher, ek, &iv, &head, &plain).unwrap_or_default();
                head.extend_from_slice(&iv);
                head.extend_from_slice(&sealed);
            }
            Some(integ) => {
                // The key lengths are ours and the plaintext is padded to whole blocks.
                let ct = cbc_encrypt(self.cipher, ek, &iv, &plain).unwrap_or_default();
                head.extend_from_slice(&iv);
                head.extend_from_slice(&ct);
                let mac = prf(integ, ak, &[&head]);
                head.extend_from_slice(&mac[..icv_len(integ)]);
            }
        }
        head
    }

    /// Checks and decrypts what follows the first `head_len` octets of `data` (IV,
    /// ciphertext, ICV, to the end of `data`); the inner octets without padding.
    pub(super) fn open_after(
        &self,
        data: &[u8],
        head_len: usize,
        from_initiator: bool,
    ) -> Result<Zeroizing<Vec<u8>>, SkError> {
        let (iv_len, icv) = (self.iv_len(), self.icv_len());
        // At least the IV, one octet (Pad Length) or block and the ICV.
        if data.len() < head_len + iv_len + self.cipher.block_len() + icv {
            return Err(SkError::Short);
        }
        let (head, body) = data.split_at(head_len);
        let (iv, rest) = body.split_at(iv_len);
        let (ek, ak) = self.out_keys(from_initiator);
        let plain = match self.integ {
            None => Zeroizing::new(aead_open(self.cipher, ek, iv, head, rest).map_err(
                |e| match e {
                    crypto::CryptoError::AeadIntegrity => SkError::Integrity,
                    e => SkError::Cipher(e),
                },
            )?),
            Some(integ) => {
                let (covered, tag) = data.split_at(data.len() - icv);
                let mac = prf(integ, ak, &[covered]);
                if !ct_eq(&mac[..icv], tag) {
                    return Err(SkError::Integrity);
                }
                let ct = &rest[..rest.len() - icv];
                Zeroizing::new(cbc_decrypt(self.cipher, ek, iv, ct)?)
            }
        };
        let Some((&pad, content)) = plain.split_last() else {
            return Err(SkError::Padding);
        };
        if pad as usize > content.len() {
            return Err(SkError::Padding);
        }
        Ok(Zeroizing::new(
            content[..content.len() - pad as usize].to_vec(),
        ))
    }

    /// Builds a protected message: `payloads` inside SK, sent by the initiator of the
    /// IKE SA when `initiator`.
    pub fn seal(
        &self,
        header: Header,
        payloads: &[Payload],
        initiator: bool,
        rng: &mut dyn Rng,
    ) -> Vec<u8> {
        let (first, inner) = codec::encode_chain(payloads, None);
        let inner = Zeroizing::new(inner);
        let sk_len = PAYLOAD_HEADER_LEN + self.sealed_len(inner.len());
        let mut h = header;
        h.next_payload = ptype::SK;
        h.length = (HEADER_LEN + sk_len) as u32;
        let mut o = Vec::with_capacity(h.length as usize);
        h.encode(&mut o);
        o.push(first);
        o.push(0);
        o.extend_from_slice(&(sk_len as u16).to_be_bytes());
        self.seal_after(o, &inner, initiator, rng)
    }

    /// Checks and decrypts the SK payload of `data` (decoded as `msg`), sent by the
    /// initiator of the IKE SA when `from_initiator`; the inner chain.
    pub fn open(
        &self,
        data: &[u8],
        msg: &codec::Message,
        from_initiator: bool,
    ) -> Result<Chain, SkError> {
        let Some(codec::Decoded {
            payload: Payload::Raw { kind, body, .. },
            ..
        }) = msg.chain.payloads.last()
        else {
            return Err(SkError::Missing);
        };
        if *kind != ptype::SK {
            return Err(SkError::Missing);
        }
        let first = msg.chain.sk_first.unwrap_or(ptype::NONE);
        // The SK payload is the last one and runs to the end of the message.
        let head_len = data.len().checked_sub(body.len()).ok_or(SkError::Short)?;
        let inner = self.open_after(data, head_len, from_initiator)?;
        Ok(codec::decode_chain(first, &inner)?)
    }
}

/// KEYMAT for one child SA (§2.17): prf+(SK_d, [g^ir (new) |] Ni | Nr), cut into
/// the keys from the exchange's initiator to its responder (encryption, integrity),
/// then the other direction.
pub fn child_keymat(
    prf_alg: HashAlg,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    enc_len: usize,
    integ_len: usize,
) -> [Zeroizing<Vec<u8>>; 4] {
    let seed = Zeroizing::new([g_ir.unwrap_or(&[]), ni, nr].concat());
    let km = prf_plus(prf_alg, sk_d, &seed, 2 * (enc_len + integ_len));
    let mut at = 0;
    let mut cut = |n: usize| {
        let v = Zeroizing::new(km[at..at + n].to_vec());
        at += n;
        v
    };
    [cut(enc_len), cut(integ_len), cut(enc_len), cut(integ_len)]
}
