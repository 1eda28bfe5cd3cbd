//! The IKEv1 key schedule: SKEYID and its derivatives, the encryption key
//! extension of RFC 2409 appendix B, HASH_I/HASH_R, the IVs and KEYMAT.

use zeroize::Zeroizing;

use super::{hash, prf};
use crate::algs::{HashAlg, IkeCipher};

/// The phase 1 key schedule (RFC 2409 §5 and appendix B). All secret fields are
/// zeroized on drop; `Debug` prints only the algorithms.
pub struct Phase1Keys {
    pub prf: HashAlg,
    pub cipher: IkeCipher,
    pub skeyid: Zeroizing<Vec<u8>>,
    pub skeyid_d: Zeroizing<Vec<u8>>,
    pub skeyid_a: Zeroizing<Vec<u8>>,
    pub skeyid_e: Zeroizing<Vec<u8>>,
    /// The encryption key, extended per appendix B when SKEYID_e is too short
    /// (K = K1 | K2 | ..., K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1)),
    /// truncated to `cipher.key_len()`.
    pub enc_key: Zeroizing<Vec<u8>>,
    /// The initial IV: hash(g^xi | g^xr) truncated to the block length.
    pub iv: Vec<u8>,
}

impl std::fmt::Debug for Phase1Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phase1Keys")
            .field("prf", &self.prf)
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// SKEYID for pre-shared keys: prf(pre-shared-key, Ni_b | Nr_b).
pub fn skeyid_psk(prf_alg: HashAlg, psk: &[u8], ni: &[u8], nr: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(prf(prf_alg, psk, &[ni, nr]))
}

/// SKEYID for signatures: prf(Ni_b | Nr_b, g^xy).
pub fn skeyid_sig(prf_alg: HashAlg, ni: &[u8], nr: &[u8], g_xy: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = Zeroizing::new([ni, nr].concat());
    Zeroizing::new(prf(prf_alg, &key, &[g_xy]))
}

/// The encryption key from SKEYID_e (RFC 2409 appendix B): SKEYID_e itself when it
/// is long enough, else K1 | K2 | ... with K1 = prf(SKEYID_e, 0) (a single zero
/// octet) and Kn = prf(SKEYID_e, Kn-1); truncated to `key_len`.
fn extend_enc_key(prf_alg: HashAlg, skeyid_e: &[u8], key_len: usize) -> Zeroizing<Vec<u8>> {
    if skeyid_e.len() >= key_len {
        return Zeroizing::new(skeyid_e[..key_len].to_vec());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(key_len + prf_alg.output_len()));
    let mut k = Zeroizing::new(prf(prf_alg, skeyid_e, &[&[0u8]]));
    loop {
        out.extend_from_slice(&k);
        if out.len() >= key_len {
            break;
        }
        k = Zeroizing::new(prf(prf_alg, skeyid_e, &[&k]));
    }
    out.truncate(key_len);
    out
}

/// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0),
/// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1),
/// SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2);
/// the encryption key per appendix B and the initial IV hash(g^xi | g^xr).
#[allow(clippy::too_many_arguments)]
pub fn derive_phase1(
    prf_alg: HashAlg,
    cipher: IkeCipher,
    skeyid: Zeroizing<Vec<u8>>,
    g_xy: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    g_xi: &[u8],
    g_xr: &[u8],
) -> Phase1Keys {
    let skeyid_d = Zeroizing::new(prf(prf_alg, &skeyid, &[g_xy, cky_i, cky_r, &[0]]));
    let skeyid_a = Zeroizing::new(prf(
        prf_alg,
        &skeyid,
        &[&skeyid_d, g_xy, cky_i, cky_r, &[1]],
    ));
    let skeyid_e = Zeroizing::new(prf(
        prf_alg,
        &skeyid,
        &[&skeyid_a, g_xy, cky_i, cky_r, &[2]],
    ));
    let enc_key = extend_enc_key(prf_alg, &skeyid_e, cipher.key_len());
    let mut iv = hash(prf_alg, &[g_xi, g_xr]);
    iv.truncate(cipher.block_len());
    Phase1Keys {
        prf: prf_alg,
        cipher,
        skeyid,
        skeyid_d,
        skeyid_a,
        skeyid_e,
        enc_key,
        iv,
    }
}

/// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b).
#[allow(clippy::too_many_arguments)]
pub fn hash_i(
    prf_alg: HashAlg,
    skeyid: &[u8],
    g_xi: &[u8],
    g_xr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idii_b: &[u8],
) -> Vec<u8> {
    prf(prf_alg, skeyid, &[g_xi, g_xr, cky_i, cky_r, sai_b, idii_b])
}

/// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).
#[allow(clippy::too_many_arguments)]
pub fn hash_r(
    prf_alg: HashAlg,
    skeyid: &[u8],
    g_xi: &[u8],
    g_xr: &[u8],
    cky_i: &[u8; 8],
    cky_r: &[u8; 8],
    sai_b: &[u8],
    idir_b: &[u8],
) -> Vec<u8> {
    prf(prf_alg, skeyid, &[g_xr, g_xi, cky_r, cky_i, sai_b, idir_b])
}

/// The IV of a new phase 2 / informational exchange (RFC 2409 appendix B):
/// hash(last phase 1 CBC block | M-ID), M-ID in network byte order, truncated to
/// the block length.
pub fn phase2_iv(
    prf_alg: HashAlg,
    cipher: IkeCipher,
    last_phase1_block: &[u8],
    message_id: u32,
) -> Vec<u8> {
    let mut iv = hash(prf_alg, &[last_phase1_block, &message_id.to_be_bytes()]);
    iv.truncate(cipher.block_len());
    iv
}

/// KEYMAT (RFC 2409 §5.5) = K1 | K2 | ... with
/// K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b) and
/// Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
/// truncated to `len`.
#[allow(clippy::too_many_arguments)]
pub fn keymat(
    prf_alg: HashAlg,
    skeyid_d: &[u8],
    g_qm_xy: Option<&[u8]>,
    protocol: u8,
    spi: &[u8],
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let g = g_qm_xy.unwrap_or(&[]);
    let proto = [protocol];
    let mut out = Zeroizing::new(Vec::with_capacity(len + prf_alg.output_len()));
    let mut k: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    while out.len() < len {
        k = Zeroizing::new(prf(prf_alg, skeyid_d, &[&k, g, &proto, spi, ni, nr]));
        out.extend_from_slice(&k);
    }
    out.truncate(len);
    out
}
