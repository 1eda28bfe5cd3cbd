//! Algorithm identifiers shared by the codec, the crypto suite, the proposal
//! parser and the state machines. Values are the IANA "IPsec DOI" / "IKE
//! attributes" registry numbers (RFC 2409 appendix A, RFC 2407 §4.4.4/§4.5).

/// Phase 1 encryption algorithm (IKE attribute class 1) with its key length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeCipher {
    /// 3DES-CBC (value 5), 192-bit key.
    TripleDes,
    /// AES-CBC (value 7) with a 128, 192 or 256 bit key (attribute 14).
    AesCbc { key_bits: u16 },
    /// AES-GCM with an 8, 12 or 16 octet ICV (IKEv2 only, RFC 5282: ENCR 18/19/20):
    /// an AEAD cipher, the IKE SA has a PRF and no integrity algorithm.
    AesGcm { key_bits: u16, icv: u8 },
    /// ChaCha20-Poly1305 (IKEv2 only, RFC 7634: ENCR 28), AEAD, 16 octet ICV.
    ChaCha20Poly1305,
}

impl IkeCipher {
    pub const ID_3DES: u16 = 5;
    pub const ID_AES_CBC: u16 = 7;

    /// The IKEv1 attribute value. The IKEv2-only ciphers have none: 0 (reserved),
    /// never sent, since IKEv1 leaves IKEv2-only proposals out.
    pub fn ike_id(self) -> u16 {
        match self {
            IkeCipher::TripleDes => Self::ID_3DES,
            IkeCipher::AesCbc { .. } => Self::ID_AES_CBC,
            IkeCipher::AesGcm { .. } | IkeCipher::ChaCha20Poly1305 => 0,
        }
    }
    /// Key length in bytes (without the salt of an AEAD cipher).
    pub fn key_len(self) -> usize {
        match self {
            IkeCipher::TripleDes => 24,
            IkeCipher::AesCbc { key_bits } | IkeCipher::AesGcm { key_bits, .. } => {
                key_bits as usize / 8
            }
            IkeCipher::ChaCha20Poly1305 => 32,
        }
    }
    /// Octets of keying material per direction: the key, plus the 4 octet salt of an
    /// AEAD cipher (RFC 5282 §7.1, RFC 7634 §2).
    pub fn keymat_len(self) -> usize {
        if self.is_aead() {
            self.key_len() + 4
        } else {
            self.key_len()
        }
    }
    /// The KEY_LENGTH attribute to send, if the cipher has a variable key.
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            IkeCipher::TripleDes | IkeCipher::ChaCha20Poly1305 => None,
            IkeCipher::AesCbc { key_bits } | IkeCipher::AesGcm { key_bits, .. } => Some(key_bits),
        }
    }
    /// The block length the plaintext is padded to (1 for the AEAD stream modes).
    pub fn block_len(self) -> usize {
        match self {
            IkeCipher::TripleDes => 8,
            IkeCipher::AesCbc { .. } => 16,
            IkeCipher::AesGcm { .. } | IkeCipher::ChaCha20Poly1305 => 1,
        }
    }
    /// An AEAD cipher: no integrity transform, the ICV comes from the cipher.
    pub fn is_aead(self) -> bool {
        matches!(self, IkeCipher::AesGcm { .. } | IkeCipher::ChaCha20Poly1305)
    }
    /// Only IKEv2 defines this cipher for the IKE SA.
    pub fn ikev2_only(self) -> bool {
        self.is_aead()
    }
    /// From the attribute values; `None` for anything we do not implement.
    pub fn from_ike(id: u16, key_bits: Option<u16>) -> Option<Self> {
        match (id, key_bits) {
            (Self::ID_3DES, None | Some(192)) => Some(IkeCipher::TripleDes),
            (Self::ID_AES_CBC, Some(b @ (128 | 192 | 256))) => {
                Some(IkeCipher::AesCbc { key_bits: b })
            }
            // RFC 3602 says AES without KEY_LENGTH is not allowed; some peers send it
            // meaning 128.
            (Self::ID_AES_CBC, None) => Some(IkeCipher::AesCbc { key_bits: 128 }),
            _ => None,
        }
    }
    /// strongSwan-style name: `3des`, `aes128`, `aes192`, `aes256`, `aes256gcm16`,
    /// `aes128gcm8`, `chacha20poly1305`.
    pub fn name(self) -> &'static str {
        match self {
            IkeCipher::TripleDes => "3des",
            IkeCipher::AesCbc { key_bits: 128 } => "aes128",
            IkeCipher::AesCbc { key_bits: 192 } => "aes192",
            IkeCipher::AesCbc { .. } => "aes256",
            IkeCipher::AesGcm { key_bits, icv } => match (key_bits, icv) {
                (128, 8) => "aes128gcm8",
                (128, 12) => "aes128gcm12",
                (128, _) => "aes128gcm16",
                (192, 8) => "aes192gcm8",
                (192, 12) => "aes192gcm12",
                (192, _) => "aes192gcm16",
                (_, 8) => "aes256gcm8",
                (_, 12) => "aes256gcm12",
                (_, _) => "aes256gcm16",
            },
            IkeCipher::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// Hash / PRF algorithm (IKE attribute class 2). In IKEv1 the PRF is HMAC with this hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn ike_id(self) -> u16 {
        match self {
            HashAlg::Md5 => 1,
            HashAlg::Sha1 => 2,
            HashAlg::Sha256 => 4,
            HashAlg::Sha384 => 5,
            HashAlg::Sha512 => 6,
        }
    }
    pub fn from_ike(id: u16) -> Option<Self> {
        Some(match id {
            1 => HashAlg::Md5,
            2 => HashAlg::Sha1,
            4 => HashAlg::Sha256,
            5 => HashAlg::Sha384,
            6 => HashAlg::Sha512,
            _ => return None,
        })
    }
    /// Digest (and PRF output) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Md5 => 16,
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Md5 => "md5",
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }
}

/// Diffie-Hellman group (IKE attribute class 4; also the phase 2 GROUP_DESCRIPTION).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    Modp768,
    Modp1024,
    Modp1536,
    Modp2048,
    Modp3072,
    Modp4096,
    Modp6144,
    Modp8192,
    Ecp256,
    Ecp384,
    Ecp521,
    /// Curve25519 (group 31, RFC 8031), IKEv2 only.
    Curve25519,
}

impl DhGroup {
    pub fn ike_id(self) -> u16 {
        match self {
            DhGroup::Modp768 => 1,
            DhGroup::Modp1024 => 2,
            DhGroup::Modp1536 => 5,
            DhGroup::Modp2048 => 14,
            DhGroup::Modp3072 => 15,
            DhGroup::Modp4096 => 16,
            DhGroup::Modp6144 => 17,
            DhGroup::Modp8192 => 18,
            DhGroup::Ecp256 => 19,
            DhGroup::Ecp384 => 20,
            DhGroup::Ecp521 => 21,
            DhGroup::Curve25519 => 31,
        }
    }
    pub fn from_ike(id: u16) -> Option<Self> {
        Some(match id {
            1 => DhGroup::Modp768,
            2 => DhGroup::Modp1024,
            5 => DhGroup::Modp1536,
            14 => DhGroup::Modp2048,
            15 => DhGroup::Modp3072,
            16 => DhGroup::Modp4096,
            17 => DhGroup::Modp6144,
            18 => DhGroup::Modp8192,
            19 => DhGroup::Ecp256,
            20 => DhGroup::Ecp384,
            21 => DhGroup::Ecp521,
            31 => DhGroup::Curve25519,
            _ => return None,
        })
    }
    /// Length in bytes of a public value in the KE payload (RFC 5903: x || y for ECP).
    pub fn public_len(self) -> usize {
        match self {
            DhGroup::Modp768 => 96,
            DhGroup::Modp1024 => 128,
            DhGroup::Modp1536 => 192,
            DhGroup::Modp2048 => 256,
            DhGroup::Modp3072 => 384,
            DhGroup::Modp4096 => 512,
            DhGroup::Modp6144 => 768,
            DhGroup::Modp8192 => 1024,
            DhGroup::Ecp256 => 64,
            DhGroup::Ecp384 => 96,
            DhGroup::Ecp521 => 132,
            DhGroup::Curve25519 => 32,
        }
    }
    /// strongSwan name: `modp1024`, `ecp256`, ...
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Modp768 => "modp768",
            DhGroup::Modp1024 => "modp1024",
            DhGroup::Modp1536 => "modp1536",
            DhGroup::Modp2048 => "modp2048",
            DhGroup::Modp3072 => "modp3072",
            DhGroup::Modp4096 => "modp4096",
            DhGroup::Modp6144 => "modp6144",
            DhGroup::Modp8192 => "modp8192",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Ecp521 => "ecp521",
            DhGroup::Curve25519 => "curve25519",
        }
    }
    /// Only IKEv2 defines this group (RFC 8031).
    pub fn ikev2_only(self) -> bool {
        matches!(self, DhGroup::Curve25519)
    }
    pub const ALL: [DhGroup; 12] = [
        DhGroup::Modp768,
        DhGroup::Modp1024,
        DhGroup::Modp1536,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
        DhGroup::Modp6144,
        DhGroup::Modp8192,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
        DhGroup::Curve25519,
    ];
}

/// ESP transform (RFC 2407 §4.4.4 transform IDs) with its key length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspCipher {
    /// ESP_3DES (3)
    TripleDes,
    /// ESP_AES (12), CBC
    AesCbc { key_bits: u16 },
    /// ESP_AES_GCM_16 (20), RFC 4106; combined mode, no integrity algorithm.
    AesGcm16 { key_bits: u16 },
    /// ESP_NULL (11)
    Null,
}

impl EspCipher {
    pub fn transform_id(self) -> u8 {
        match self {
            EspCipher::TripleDes => 3,
            EspCipher::AesCbc { .. } => 12,
            EspCipher::AesGcm16 { .. } => 20,
            EspCipher::Null => 11,
        }
    }
    pub fn key_length_attr(self) -> Option<u16> {
        match self {
            EspCipher::AesCbc { key_bits } | EspCipher::AesGcm16 { key_bits } => Some(key_bits),
            _ => None,
        }
    }
    pub fn from_ike(transform_id: u8, key_bits: Option<u16>) -> Option<Self> {
        match (transform_id, key_bits) {
            (3, None | Some(192)) => Some(EspCipher::TripleDes),
            (12, Some(b @ (128 | 192 | 256))) => Some(EspCipher::AesCbc { key_bits: b }),
            (12, None) => Some(EspCipher::AesCbc { key_bits: 128 }),
            (20, Some(b @ (128 | 192 | 256))) => Some(EspCipher::AesGcm16 { key_bits: b }),
            (11, None) => Some(EspCipher::Null),
            _ => None,
        }
    }
    pub fn is_aead(self) -> bool {
        matches!(self, EspCipher::AesGcm16 { .. })
    }
    /// Key material in bytes (for GCM: key + 4-byte salt, RFC 4106 §8.1).
    pub fn keymat_len(self) -> usize {
        match self {
            EspCipher::TripleDes => 24,
            EspCipher::AesCbc { key_bits } => key_bits as usize / 8,
            EspCipher::AesGcm16 { key_bits } => key_bits as usize / 8 + 4,
            EspCipher::Null => 0,
        }
    }
    pub fn name(self) -> String {
        match self {
            EspCipher::TripleDes => "3des".into(),
            EspCipher::AesCbc { key_bits } => format!("aes{key_bits}"),
            EspCipher::AesGcm16 { key_bits } => format!("aes{key_bits}gcm16"),
            EspCipher::Null => "null".into(),
        }
    }
}

/// ESP authentication algorithm (IPsec DOI attribute 5, AUTHENTICATION_ALGORITHM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspAuth {
    HmacMd5_96,
    HmacSha1_96,
    HmacSha256_128,
    HmacSha384_192,
    HmacSha512_256,
}

impl EspAuth {
    pub fn ike_id(self) -> u16 {
        match self {
            EspAuth::HmacMd5_96 => 1,
            EspAuth::HmacSha1_96 => 2,
            EspAuth::HmacSha256_128 => 5,
            EspAuth::HmacSha384_192 => 6,
            EspAuth::HmacSha512_256 => 7,
        }
    }
    pub fn from_ike(id: u16) -> Option<Self> {
        Some(match id {
            1 => EspAuth::HmacMd5_96,
            2 => EspAuth::HmacSha1_96,
            5 => EspAuth::HmacSha256_128,
            6 => EspAuth::HmacSha384_192,
            7 => EspAuth::HmacSha512_256,
            _ => return None,
        })
    }
    pub fn key_len(self) -> usize {
        match self {
            EspAuth::HmacMd5_96 => 16,
            EspAuth::HmacSha1_96 => 20,
            EspAuth::HmacSha256_128 => 32,
            EspAuth::HmacSha384_192 => 48,
            EspAuth::HmacSha512_256 => 64,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            EspAuth::HmacMd5_96 => "md5",
            EspAuth::HmacSha1_96 => "sha1",
            EspAuth::HmacSha256_128 => "sha256",
            EspAuth::HmacSha384_192 => "sha384",
            EspAuth::HmacSha512_256 => "sha512",
        }
    }
}

/// One phase 1 proposal: cipher, hash (PRF, and with a non-AEAD cipher the integrity
/// algorithm too) and DH group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IkeProposal {
    pub cipher: IkeCipher,
    pub hash: HashAlg,
    pub group: DhGroup,
}

impl IkeProposal {
    /// Only IKEv2 can negotiate this proposal (an AEAD cipher or an IKEv2-only group).
    pub fn ikev2_only(&self) -> bool {
        self.cipher.ikev2_only() || self.group.ikev2_only()
    }
}

/// `aes128-sha256-modp2048`; with an AEAD cipher `hash` is the PRF alone:
/// `aes256gcm16-prfsha384-curve25519`.
impl std::fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prf = if self.cipher.is_aead() { "prf" } else { "" };
        write!(
            f,
            "{}-{prf}{}-{}",
            self.cipher.name(),
            self.hash.name(),
            self.group.name()
        )
    }
}

/// One phase 2 (ESP) proposal. `auth` is `None` for AEAD ciphers. `group` is the PFS
/// group (None: no PFS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspProposal {
    pub cipher: EspCipher,
    pub auth: Option<EspAuth>,
    pub group: Option<DhGroup>,
}

impl EspProposal {
    /// Only IKEv2 can negotiate this proposal (its PFS group is IKEv2-only).
    pub fn ikev2_only(&self) -> bool {
        self.group.is_some_and(DhGroup::ikev2_only)
    }
}

impl std::fmt::Display for EspProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.cipher.name())?;
        if let Some(a) = self.auth {
            write!(f, "-{}", a.name())?;
        }
        if let Some(g) = self.group {
            write!(f, "-{}", g.name())?;
        }
        Ok(())
    }
}
