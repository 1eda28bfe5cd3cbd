//! Proposal strings in strongSwan's syntax, so users can paste what their gateway
//! admin sends them.
//!
//! * Phase 1 ([`parse_ike`]): `aes128-sha256-modp2048`, `3des-md5-modp768`,
//!   `aes256-sha1-ecp256`, `aes-sha1-modp1024` (`aes` = `aes128`). Exactly one cipher,
//!   one hash and one group; a `prf...` token may be given and must agree with the hash.
//!   IKEv2 only ([`parse_ike_for`] refuses them for IKEv1): the AEAD ciphers with a PRF
//!   and no hash, `aes256gcm16-prfsha384-x25519`, `aes128gcm12-prfsha256-ecp256`,
//!   `chacha20poly1305-prfsha256-curve25519`, and the group `curve25519` (`x25519`).
//! * Phase 2 ([`parse_esp`]): `aes256-sha256`, `aes128gcm16`, `aes256gcm16-modp2048`,
//!   `3des-sha1`, `null-sha1`; a trailing group is the PFS group of that proposal
//!   (`aes256gcm16-x25519`: IKEv2 only, [`parse_esp_for`]).
//!
//! Names are case-insensitive. A single trailing `!` (ipsec.conf's "strict" marker) is
//! accepted and ignored: we only ever offer what the profile lists. strongSwan's
//! "several algorithms of one kind in one proposal" shorthand is refused: write one
//! proposal per combination.
//!
//! No I/O, no serde: the profile layer wraps these with file, line and key.

use crate::algs::{DhGroup, EspAuth, EspCipher, EspProposal, HashAlg, IkeCipher, IkeProposal};

/// Why a proposal string was refused. Every variant carries the proposal as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// A token that names no algorithm we know (the token is quoted as written).
    #[error("unknown algorithm '{name}' in '{proposal}'")]
    UnknownAlgorithm { name: String, proposal: String },
    /// A required part (cipher, hash, group, integrity algorithm) is absent.
    #[error("'{proposal}' has no {what}")]
    Missing {
        what: &'static str,
        proposal: String,
    },
    /// The tokens are known but do not make a valid proposal together.
    #[error("'{proposal}': {reason}")]
    Invalid { proposal: String, reason: String },
    /// A valid proposal that only IKEv2 can negotiate, in an IKEv1 profile.
    #[error(
        "'{proposal}' is an IKEv2-only proposal (AES-GCM or ChaCha20-Poly1305 for the IKE SA, or curve25519): use it with ike_version = 2"
    )]
    Ikev2Only { proposal: String },
}

/// [`parse_ike`] for a profile of IKE version `ike_version` (1 or 2): IKEv1 refuses
/// the IKEv2-only proposals.
pub fn parse_ike_for(s: &str, ike_version: u8) -> Result<IkeProposal, ProposalError> {
    let p = parse_ike(s)?;
    if ike_version < 2 && p.ikev2_only() {
        return Err(ProposalError::Ikev2Only { proposal: s.into() });
    }
    Ok(p)
}

/// [`parse_esp`] for a profile of IKE version `ike_version`: IKEv1 refuses an
/// IKEv2-only PFS group.
pub fn parse_esp_for(s: &str, ike_version: u8) -> Result<EspProposal, ProposalError> {
    let p = parse_esp(s)?;
    if ike_version < 2 && p.ikev2_only() {
        return Err(ProposalError::Ikev2Only { proposal: s.into() });
    }
    Ok(p)
}

/// One classified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    IkeCipher(IkeCipher),
    EspCipher(EspCipher),
    Hash(HashAlg),
    Prf(HashAlg),
    Group(DhGroup),
    /// `noesn`: the default anyway.
    NoEsn,
}

fn hash_name(t: &str) -> Option<HashAlg> {
    Some(match t {
        "md5" => HashAlg::Md5,
        "sha" | "sha1" => HashAlg::Sha1,
        "sha256" | "sha2_256" => HashAlg::Sha256,
        "sha384" | "sha2_384" => HashAlg::Sha384,
        "sha512" | "sha2_512" => HashAlg::Sha512,
        _ => return None,
    })
}

fn group_name(t: &str) -> Option<DhGroup> {
    if t == "x25519" {
        return Some(DhGroup::Curve25519);
    }
    DhGroup::ALL.into_iter().find(|g| g.name() == t)
}

/// AES-GCM for the IKE SA (RFC 5282): `aes256gcm16`, `aes128gcm12`, `aes128gcm8`,
/// `aes128gcm128` (ICV length in bits), `aes128gcm` (16 octets). `(key bits, ICV)`.
fn gcm_ike_name(t: &str) -> Option<(u16, u8)> {
    let (bits, icv) = t.strip_prefix("aes")?.split_once("gcm")?;
    let bits = aes_bits(bits)?;
    let icv = match icv {
        "" | "16" | "128" => 16,
        "12" | "96" => 12,
        "8" | "64" => 8,
        _ => return None,
    };
    Some((bits, icv))
}

fn aes_bits(t: &str) -> Option<u16> {
    match t {
        "" => Some(128),
        "128" => Some(128),
        "192" => Some(192),
        "256" => Some(256),
        _ => None,
    }
}

/// AES-GCM spellings: `aes128gcm16`, `aes128gcm128` (ICV length in bits), `aes128gcm`.
/// `Ok(None)`: not a GCM token at all; `Err(reason)`: GCM with an ICV we do not do.
fn gcm_name(t: &str) -> Result<Option<u16>, String> {
    let Some(rest) = t.strip_prefix("aes") else {
        return Ok(None);
    };
    let Some((bits, icv)) = rest.split_once("gcm") else {
        return Ok(None);
    };
    let Some(bits) = aes_bits(bits) else {
        return Ok(None);
    };
    match icv {
        "" | "16" | "128" => Ok(Some(bits)),
        "8" | "12" | "64" | "96" => Err(format!(
            "'{t}': only the 16-byte ICV (aes{bits}gcm16) is supported"
        )),
        _ => Ok(None),
    }
}

fn classify_ike(t: &str, proposal: &str) -> Result<Token, ProposalError> {
    let l = t.to_ascii_lowercase();
    if l == "3des" {
        return Ok(Token::IkeCipher(IkeCipher::TripleDes));
    }
    if let Some(bits) = l.strip_prefix("aes").and_then(aes_bits) {
        return Ok(Token::IkeCipher(IkeCipher::AesCbc { key_bits: bits }));
    }
    if let Some((key_bits, icv)) = gcm_ike_name(&l) {
        return Ok(Token::IkeCipher(IkeCipher::AesGcm { key_bits, icv }));
    }
    if l == "chacha20poly1305" {
        return Ok(Token::IkeCipher(IkeCipher::ChaCha20Poly1305));
    }
    if let Some(h) = hash_name(&l) {
        return Ok(Token::Hash(h));
    }
    if let Some(h) = l.strip_prefix("prf").and_then(hash_name) {
        return Ok(Token::Prf(h));
    }
    if let Some(g) = group_name(&l) {
        return Ok(Token::Group(g));
    }
    Err(ProposalError::UnknownAlgorithm {
        name: t.into(),
        proposal: proposal.into(),
    })
}

fn classify_esp(t: &str, proposal: &str) -> Result<Token, ProposalError> {
    let l = t.to_ascii_lowercase();
    match l.as_str() {
        "3des" => return Ok(Token::EspCipher(EspCipher::TripleDes)),
        "null" => return Ok(Token::EspCipher(EspCipher::Null)),
        "noesn" => return Ok(Token::NoEsn),
        "esn" => {
            return Err(ProposalError::Invalid {
                proposal: proposal.into(),
                reason: "extended sequence numbers (esn) are not supported in IKEv1".into(),
            });
        }
        _ => {}
    }
    if let Some(bits) = l.strip_prefix("aes").and_then(aes_bits) {
        return Ok(Token::EspCipher(EspCipher::AesCbc { key_bits: bits }));
    }
    match gcm_name(&l) {
        Ok(Some(bits)) => return Ok(Token::EspCipher(EspCipher::AesGcm16 { key_bits: bits })),
        Err(reason) => {
            return Err(ProposalError::Invalid {
                proposal: proposal.into(),
                reason,
            });
        }
        Ok(None) => {}
    }
    if let Some(h) = hash_name(&l) {
        return Ok(Token::Hash(h));
    }
    if let Some(g) = group_name(&l) {
        return Ok(Token::Group(g));
    }
    Err(ProposalError::UnknownAlgorithm {
        name: t.into(),
        proposal: proposal.into(),
    })
}

/// Split into tokens: trims, drops one trailing `!`, refuses empty tokens.
fn tokens(s: &str) -> Result<Vec<&str>, ProposalError> {
    let body = s.trim();
    let body = body.strip_suffix('!').unwrap_or(body);
    if body.is_empty() {
        return Err(ProposalError::Invalid {
            proposal: s.into(),
            reason: "empty proposal".into(),
        });
    }
    if body.contains(',') {
        return Err(ProposalError::Invalid {
            proposal: s.into(),
            reason: "one proposal per list element (found ',')".into(),
        });
    }
    let toks: Vec<&str> = body.split('-').collect();
    if toks.iter().any(|t| t.is_empty()) {
        return Err(ProposalError::Invalid {
            proposal: s.into(),
            reason: "empty algorithm name (stray '-')".into(),
        });
    }
    Ok(toks)
}

/// Keep exactly one of a kind; a second one is refused.
fn set_once<T: Copy>(
    slot: &mut Option<T>,
    v: T,
    what: &str,
    proposal: &str,
) -> Result<(), ProposalError> {
    if slot.is_some() {
        return Err(ProposalError::Invalid {
            proposal: proposal.into(),
            reason: format!("more than one {what}; write one proposal per combination"),
        });
    }
    *slot = Some(v);
    Ok(())
}

/// Parse a phase 1 proposal in strongSwan syntax. See the module documentation.
pub fn parse_ike(s: &str) -> Result<IkeProposal, ProposalError> {
    let mut cipher = None;
    let mut hash = None;
    let mut prf = None;
    let mut group = None;
    for t in tokens(s)? {
        match classify_ike(t, s)? {
            Token::IkeCipher(c) => set_once(&mut cipher, c, "cipher", s)?,
            Token::Hash(h) => set_once(&mut hash, h, "hash algorithm", s)?,
            Token::Prf(h) => set_once(&mut prf, h, "PRF", s)?,
            Token::Group(g) => set_once(&mut group, g, "DH group", s)?,
            Token::EspCipher(_) | Token::NoEsn => unreachable!("classify_ike yields no ESP tokens"),
        }
    }
    let cipher = cipher.ok_or_else(|| ProposalError::Missing {
        what: "cipher",
        proposal: s.into(),
    })?;
    let hash = match (hash, prf) {
        (Some(h), _) if cipher.is_aead() => {
            return Err(ProposalError::Invalid {
                proposal: s.into(),
                reason: format!(
                    "{} is an AEAD cipher and takes no integrity algorithm (drop '{}'; name the PRF as prf{})",
                    cipher.name(),
                    h.name(),
                    h.name()
                ),
            });
        }
        (None, None) if cipher.is_aead() => {
            return Err(ProposalError::Missing {
                what: "PRF (prfsha256, prfsha384, ...)",
                proposal: s.into(),
            });
        }
        (Some(h), Some(p)) if h != p => {
            return Err(ProposalError::Invalid {
                proposal: s.into(),
                reason: format!(
                    "in IKEv1 the PRF is HMAC with the hash: prf{} does not agree with {}",
                    p.name(),
                    h.name()
                ),
            });
        }
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => {
            return Err(ProposalError::Missing {
                what: "hash algorithm",
                proposal: s.into(),
            });
        }
    };
    let group = group.ok_or_else(|| ProposalError::Missing {
        what: "DH group",
        proposal: s.into(),
    })?;
    Ok(IkeProposal {
        cipher,
        hash,
        group,
    })
}

fn esp_auth(h: HashAlg) -> EspAuth {
    match h {
        HashAlg::Md5 => EspAuth::HmacMd5_96,
        HashAlg::Sha1 => EspAuth::HmacSha1_96,
        HashAlg::Sha256 => EspAuth::HmacSha256_128,
        HashAlg::Sha384 => EspAuth::HmacSha384_192,
        HashAlg::Sha512 => EspAuth::HmacSha512_256,
    }
}

/// Parse a phase 2 (ESP) proposal in strongSwan syntax. See the module documentation.
/// A trailing group is this proposal's PFS group (`group: Some`).
pub fn parse_esp(s: &str) -> Result<EspProposal, ProposalError> {
    let mut cipher = None;
    let mut auth = None;
    let mut group = None;
    for t in tokens(s)? {
        match classify_esp(t, s)? {
            Token::EspCipher(c) => set_once(&mut cipher, c, "cipher", s)?,
            Token::Hash(h) => set_once(&mut auth, esp_auth(h), "integrity algorithm", s)?,
            Token::Group(g) => set_once(&mut group, g, "DH group", s)?,
            Token::NoEsn => {}
            Token::IkeCipher(_) | Token::Prf(_) => {
                unreachable!("classify_esp yields no IKE tokens")
            }
        }
    }
    let cipher = cipher.ok_or_else(|| ProposalError::Missing {
        what: "cipher",
        proposal: s.into(),
    })?;
    match (cipher.is_aead(), auth) {
        (true, Some(a)) => Err(ProposalError::Invalid {
            proposal: s.into(),
            reason: format!(
                "{} is an AEAD cipher and takes no integrity algorithm (drop '{}')",
                cipher.name(),
                a.name()
            ),
        }),
        (false, None) => Err(ProposalError::Missing {
            what: "integrity algorithm",
            proposal: s.into(),
        }),
        _ => Ok(EspProposal {
            cipher,
            auth,
            group,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike(c: IkeCipher, h: HashAlg, g: DhGroup) -> IkeProposal {
        IkeProposal {
            cipher: c,
            hash: h,
            group: g,
        }
    }
    const A128: IkeCipher = IkeCipher::AesCbc { key_bits: 128 };
    const A192: IkeCipher = IkeCipher::AesCbc { key_bits: 192 };
    const A256: IkeCipher = IkeCipher::AesCbc { key_bits: 256 };

    #[test]
    fn ike_accepted_spellings() {
        let cases = [
            (
                "aes128-sha256-modp2048",
                ike(A128, HashAlg::Sha256, DhGroup::Modp2048),
            ),
            (
                "3des-md5-modp768",
                ike(IkeCipher::TripleDes, HashAlg::Md5, DhGroup::Modp768),
            ),
            (
                "aes256-sha1-ecp256",
                ike(A256, HashAlg::Sha1, DhGroup::Ecp256),
            ),
            (
                "aes-sha1-modp1024",
                ike(A128, HashAlg::Sha1, DhGroup::Modp1024),
            ),
            (
                "aes192-sha2_256-modp1536",
                ike(A192, HashAlg::Sha256, DhGroup::Modp1536),
            ),
            (
                "aes256-sha384-modp3072",
                ike(A256, HashAlg::Sha384, DhGroup::Modp3072),
            ),
            (
                "aes256-sha2_384-modp4096",
                ike(A256, HashAlg::Sha384, DhGroup::Modp4096),
            ),
            (
                "aes256-sha512-modp6144",
                ike(A256, HashAlg::Sha512, DhGroup::Modp6144),
            ),
            (
                "aes256-sha2_512-modp8192",
                ike(A256, HashAlg::Sha512, DhGroup::Modp8192),
            ),
            (
                "aes128-sha-ecp384",
                ike(A128, HashAlg::Sha1, DhGroup::Ecp384),
            ),
            (
                "aes128-sha256-ecp521",
                ike(A128, HashAlg::Sha256, DhGroup::Ecp521),
            ),
            (
                "AES256-SHA256-MODP2048",
                ike(A256, HashAlg::Sha256, DhGroup::Modp2048),
            ),
            (
                "aes256-sha256-prfsha256-modp2048",
                ike(A256, HashAlg::Sha256, DhGroup::Modp2048),
            ),
            (
                "aes256-prfsha384-ecp384",
                ike(A256, HashAlg::Sha384, DhGroup::Ecp384),
            ),
            (
                " aes128-sha1-modp1024! ",
                ike(A128, HashAlg::Sha1, DhGroup::Modp1024),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ike(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn ikev2_only_spellings() {
        let gcm = |key_bits, icv| IkeCipher::AesGcm { key_bits, icv };
        let cases = [
            (
                "aes256gcm16-prfsha384-x25519",
                ike(gcm(256, 16), HashAlg::Sha384, DhGroup::Curve25519),
            ),
            (
                "aes128gcm16-prfsha256-ecp256",
                ike(gcm(128, 16), HashAlg::Sha256, DhGroup::Ecp256),
            ),
            (
                "aes192gcm12-prfsha512-curve25519",
                ike(gcm(192, 12), HashAlg::Sha512, DhGroup::Curve25519),
            ),
            (
                "aes128gcm64-prfsha256-modp2048",
                ike(gcm(128, 8), HashAlg::Sha256, DhGroup::Modp2048),
            ),
            (
                "aes256gcm-prfsha256-ecp521",
                ike(gcm(256, 16), HashAlg::Sha256, DhGroup::Ecp521),
            ),
            (
                "chacha20poly1305-prfsha256-x25519",
                ike(
                    IkeCipher::ChaCha20Poly1305,
                    HashAlg::Sha256,
                    DhGroup::Curve25519,
                ),
            ),
            (
                "aes128-sha256-curve25519",
                ike(A128, HashAlg::Sha256, DhGroup::Curve25519),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ike(s), Ok(want), "{s}");
            assert_eq!(parse_ike_for(s, 2), Ok(want), "{s}");
            assert!(want.ikev2_only(), "{s}");
            let e = parse_ike_for(s, 1).unwrap_err();
            assert_eq!(e, ProposalError::Ikev2Only { proposal: s.into() });
            assert!(
                e.to_string()
                    .starts_with(&format!("'{s}' is an IKEv2-only proposal")),
                "{e}"
            );
        }
        assert_eq!(
            parse_ike_for("aes128-sha256-ecp521", 1),
            Ok(ike(A128, HashAlg::Sha256, DhGroup::Ecp521))
        );
        assert!(matches!(
            parse_ike("aes128gcm16-modp2048"),
            Err(ProposalError::Missing { .. })
        ));
        assert!(matches!(
            parse_ike("aes128gcm10-prfsha256-modp2048"),
            Err(ProposalError::UnknownAlgorithm { .. })
        ));
        let p = parse_esp_for("aes256gcm16-x25519", 2).unwrap();
        assert_eq!(p.group, Some(DhGroup::Curve25519));
        assert_eq!(
            parse_esp_for("aes256gcm16-x25519", 1),
            Err(ProposalError::Ikev2Only {
                proposal: "aes256gcm16-x25519".into()
            })
        );
    }

    #[test]
    fn ike_display_round_trips() {
        for g in DhGroup::ALL {
            for c in [
                IkeCipher::TripleDes,
                A128,
                A192,
                A256,
                IkeCipher::AesGcm {
                    key_bits: 128,
                    icv: 8,
                },
                IkeCipher::AesGcm {
                    key_bits: 192,
                    icv: 12,
                },
                IkeCipher::AesGcm {
                    key_bits: 256,
                    icv: 16,
                },
                IkeCipher::ChaCha20Poly1305,
            ] {
                for h in [
                    HashAlg::Md5,
                    HashAlg::Sha1,
                    HashAlg::Sha256,
                    HashAlg::Sha384,
                    HashAlg::Sha512,
                ] {
                    let p = ike(c, h, g);
                    assert_eq!(parse_ike(&p.to_string()), Ok(p));
                }
            }
        }
    }

    #[test]
    fn ike_refusals() {
        assert_eq!(
            parse_ike("aes999-sha1-modp1024"),
            Err(ProposalError::UnknownAlgorithm {
                name: "aes999".into(),
                proposal: "aes999-sha1-modp1024".into()
            })
        );
        let e = parse_ike("aes128-SHA3-modp1024").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown algorithm 'SHA3' in 'aes128-SHA3-modp1024'"
        );
        let e = parse_ike("aes128-sha1-modp1023").unwrap_err();
        assert!(
            matches!(e, ProposalError::UnknownAlgorithm { ref name, .. } if name == "modp1023")
        );
        assert_eq!(
            parse_ike("aes128-sha1"),
            Err(ProposalError::Missing {
                what: "DH group",
                proposal: "aes128-sha1".into()
            })
        );
        assert_eq!(
            parse_ike("aes128-sha1").unwrap_err().to_string(),
            "'aes128-sha1' has no DH group"
        );
        assert!(matches!(
            parse_ike("sha1-modp1024"),
            Err(ProposalError::Missing { what: "cipher", .. })
        ));
        assert!(matches!(
            parse_ike("aes128-modp1024"),
            Err(ProposalError::Missing {
                what: "hash algorithm",
                ..
            })
        ));
        for bad in [
            "",
            "  ",
            "aes128--sha1-modp1024",
            "aes128-sha1-modp1024-",
            "aes128-aes256-sha1-modp1024",
            "aes128-sha1-md5-modp1024",
            "aes128-sha1-modp1024-modp2048",
            "aes128-sha256-prfsha1-modp2048",
            "aes128gcm16-sha256-modp2048",
            "aes128gcm16-prfsha256-sha256-modp2048",
            "aes128gcm16-prfsha256-prfsha384-modp2048",
            "aes128-sha1-modp1024,3des-sha1-modp1024",
        ] {
            assert!(
                matches!(parse_ike(bad), Err(ProposalError::Invalid { .. })),
                "{bad:?}: {:?}",
                parse_ike(bad)
            );
        }
        // ESP-only spellings are not IKE algorithms.
        assert!(matches!(
            parse_ike("null-sha1-modp1024"),
            Err(ProposalError::UnknownAlgorithm { .. })
        ));
    }

    fn esp(c: EspCipher, a: Option<EspAuth>, g: Option<DhGroup>) -> EspProposal {
        EspProposal {
            cipher: c,
            auth: a,
            group: g,
        }
    }

    #[test]
    fn esp_accepted_spellings() {
        use EspAuth::*;
        use EspCipher::*;
        let cases = [
            (
                "aes256-sha256",
                esp(AesCbc { key_bits: 256 }, Some(HmacSha256_128), None),
            ),
            ("aes128gcm16", esp(AesGcm16 { key_bits: 128 }, None, None)),
            ("aes128gcm128", esp(AesGcm16 { key_bits: 128 }, None, None)),
            ("aes192gcm", esp(AesGcm16 { key_bits: 192 }, None, None)),
            (
                "aes256gcm16-modp2048",
                esp(AesGcm16 { key_bits: 256 }, None, Some(DhGroup::Modp2048)),
            ),
            ("3des-sha1", esp(TripleDes, Some(HmacSha1_96), None)),
            (
                "aes128-sha1-modp1024",
                esp(
                    AesCbc { key_bits: 128 },
                    Some(HmacSha1_96),
                    Some(DhGroup::Modp1024),
                ),
            ),
            ("null-sha1", esp(Null, Some(HmacSha1_96), None)),
            (
                "aes-md5",
                esp(AesCbc { key_bits: 128 }, Some(HmacMd5_96), None),
            ),
            (
                "aes192-sha384",
                esp(AesCbc { key_bits: 192 }, Some(HmacSha384_192), None),
            ),
            (
                "aes256-sha2_384",
                esp(AesCbc { key_bits: 256 }, Some(HmacSha384_192), None),
            ),
            (
                "aes256-sha512-ecp521",
                esp(
                    AesCbc { key_bits: 256 },
                    Some(HmacSha512_256),
                    Some(DhGroup::Ecp521),
                ),
            ),
            (
                "aes256-sha2_512",
                esp(AesCbc { key_bits: 256 }, Some(HmacSha512_256), None),
            ),
            (
                "aes256-sha2_256",
                esp(AesCbc { key_bits: 256 }, Some(HmacSha256_128), None),
            ),
            (
                "AES128GCM16-ECP256",
                esp(AesGcm16 { key_bits: 128 }, None, Some(DhGroup::Ecp256)),
            ),
            (
                "aes128-sha1-noesn",
                esp(AesCbc { key_bits: 128 }, Some(HmacSha1_96), None),
            ),
            (
                "aes128-sha1!",
                esp(AesCbc { key_bits: 128 }, Some(HmacSha1_96), None),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_esp(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn esp_display_round_trips() {
        let ciphers = [
            EspCipher::TripleDes,
            EspCipher::Null,
            EspCipher::AesCbc { key_bits: 128 },
            EspCipher::AesCbc { key_bits: 256 },
            EspCipher::AesGcm16 { key_bits: 128 },
            EspCipher::AesGcm16 { key_bits: 256 },
        ];
        let auths = [
            EspAuth::HmacMd5_96,
            EspAuth::HmacSha1_96,
            EspAuth::HmacSha256_128,
            EspAuth::HmacSha384_192,
            EspAuth::HmacSha512_256,
        ];
        for c in ciphers {
            for g in DhGroup::ALL.into_iter().map(Some).chain([None]) {
                if c.is_aead() {
                    let p = esp(c, None, g);
                    assert_eq!(parse_esp(&p.to_string()), Ok(p));
                } else {
                    for a in auths {
                        let p = esp(c, Some(a), g);
                        assert_eq!(parse_esp(&p.to_string()), Ok(p));
                    }
                }
            }
        }
    }

    #[test]
    fn esp_refusals() {
        assert_eq!(
            parse_esp("aes128-sha3"),
            Err(ProposalError::UnknownAlgorithm {
                name: "sha3".into(),
                proposal: "aes128-sha3".into()
            })
        );
        assert_eq!(
            parse_esp("blowfish-sha1").unwrap_err().to_string(),
            "unknown algorithm 'blowfish' in 'blowfish-sha1'"
        );
        assert!(
            matches!(parse_esp("aes128ctr-sha1"), Err(ProposalError::UnknownAlgorithm { ref name, .. }) if name == "aes128ctr")
        );
        assert_eq!(
            parse_esp("aes128"),
            Err(ProposalError::Missing {
                what: "integrity algorithm",
                proposal: "aes128".into()
            })
        );
        assert!(matches!(
            parse_esp("null"),
            Err(ProposalError::Missing {
                what: "integrity algorithm",
                ..
            })
        ));
        assert!(matches!(
            parse_esp("sha1-modp1024"),
            Err(ProposalError::Missing { what: "cipher", .. })
        ));
        let e = parse_esp("aes128gcm16-sha256").unwrap_err();
        assert!(matches!(e, ProposalError::Invalid { .. }));
        assert!(e.to_string().contains("AEAD"), "{e}");
        for bad in [
            "",
            "aes128gcm8",
            "aes128gcm12",
            "aes128-sha1-esn",
            "aes128-3des-sha1",
            "aes128-sha1-sha256",
            "aes128-sha1-modp1024-modp2048",
            "aes128-sha1,3des-sha1",
            "-aes128-sha1",
        ] {
            assert!(
                matches!(parse_esp(bad), Err(ProposalError::Invalid { .. })),
                "{bad:?}: {:?}",
                parse_esp(bad)
            );
        }
        // A PRF is not an ESP algorithm.
        assert!(matches!(
            parse_esp("aes128-prfsha1"),
            Err(ProposalError::UnknownAlgorithm { .. })
        ));
    }
}
