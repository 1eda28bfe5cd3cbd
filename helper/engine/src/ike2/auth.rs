//! IKEv2 authentication (RFC 7296 §2.15, §3.6–§3.8): the pre-shared key, and
//! certificates with signatures, the classic methods (1: RSA PKCS#1 v1.5 with SHA-1;
//! 9/10: ECDSA P-256/P-384 with SHA-256/384, r|s as RFC 4754 encodes it) and RFC 7427's
//! digital signature (method 14: a length octet, the DER AlgorithmIdentifier, then the
//! signature; RSA PKCS#1 v1.5 or DER ECDSA with SHA-256/384/512). We sign with method
//! 14 when the peer announced a hash we can use in SIGNATURE_HASH_ALGORITHMS (RFC 7427
//! §4), else with the key's classic method; we verify all of them.
//!
//! The peer's certificate chain and identity are checked like IKEv1's
//! ([`crate::cert::validate_chain`], [`crate::cert::check_identity`]) at the wall time
//! the driver handed the engine. CERTREQ names our CAs by the SHA-1 of their
//! SubjectPublicKeyInfo (§3.7).

use der::Decode;
use der::asn1::ObjectIdentifier as Oid;
use rsa::Pkcs1v15Sign;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};

use super::codec::{Payload, notify};
use super::{Ike2, keys, notify_payload};
use crate::algs::HashAlg;
use crate::cert::{self, CertError, Certificate, PrivateKey, PublicKey};
use crate::crypto::{self, Rng, ct_eq};
use crate::ike::{Auth, Error, Identity, Role};

/// CERT/CERTREQ encoding: X.509 certificate - signature (§3.6).
pub const CERT_X509_SIGNATURE: u8 = 4;

/// AUTH methods (§3.8, RFC 4754, RFC 7427).
pub mod method {
    pub const RSA: u8 = 1;
    pub const PSK: u8 = 2;
    pub const ECDSA_256: u8 = 9;
    pub const ECDSA_384: u8 = 10;
    pub const ECDSA_521: u8 = 11;
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// RFC 7427 §4 hash algorithm numbers (IANA "IKEv2 Hash Algorithms").
pub mod hash {
    pub const SHA1: u16 = 1;
    pub const SHA2_256: u16 = 2;
    pub const SHA2_384: u16 = 3;
    pub const SHA2_512: u16 = 4;
}

/// What we announce we can verify (SHA-1 is accepted in method 1 only).
const OUR_HASHES: [u16; 3] = [hash::SHA2_256, hash::SHA2_384, hash::SHA2_512];

const SHA1_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");

/// The SIGNATURE_HASH_ALGORITHMS notify data we send.
pub fn hash_algorithms_data() -> Vec<u8> {
    OUR_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect()
}

/// The hash numbers a SIGNATURE_HASH_ALGORITHMS notify lists (an odd octet is ignored).
pub fn parse_hash_algorithms(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// CERTREQ data: the SHA-1 of each trusted CA's SubjectPublicKeyInfo, concatenated.
pub fn certreq_data(trusted: &[Certificate]) -> Vec<u8> {
    trusted
        .iter()
        .flat_map(|c| crypto::hash(HashAlg::Sha1, &[&c.spki_der()]))
        .collect()
}

fn hash_of(number: u16) -> Option<HashAlg> {
    Some(match number {
        hash::SHA2_256 => HashAlg::Sha256,
        hash::SHA2_384 => HashAlg::Sha384,
        hash::SHA2_512 => HashAlg::Sha512,
        _ => return None,
    })
}

fn pkcs1(h: HashAlg) -> Option<Pkcs1v15Sign> {
    Some(match h {
        HashAlg::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        HashAlg::Md5 => return None,
    })
}

/// The DER AlgorithmIdentifier of a signature: RSA with NULL parameters, ECDSA with
/// none (RFC 3279, RFC 5758), as RFC 7427 Appendix A shows them.
fn algorithm_identifier(oid: Oid, null_params: bool) -> Vec<u8> {
    let o = oid.as_bytes();
    let mut inner = vec![0x06, o.len() as u8];
    inner.extend_from_slice(o);
    if null_params {
        inner.extend_from_slice(&[0x05, 0x00]);
    }
    let mut v = vec![0x30, inner.len() as u8];
    v.extend_from_slice(&inner);
    v
}

fn sign_err(e: impl std::fmt::Display) -> CertError {
    CertError::Sign(e.to_string())
}

/// Our AUTH payload body over `octets` with `key`: (method, data).
pub fn sign(
    key: &PrivateKey,
    octets: &[u8],
    peer_hashes: &[u16],
    rng: &mut dyn Rng,
) -> Result<(u8, Vec<u8>), CertError> {
    let preferred: [u16; 3] = match key {
        PrivateKey::P384(_) => [hash::SHA2_384, hash::SHA2_256, hash::SHA2_512],
        _ => [hash::SHA2_256, hash::SHA2_384, hash::SHA2_512],
    };
    let chosen = preferred
        .iter()
        .find(|h| peer_hashes.contains(h))
        .and_then(|h| hash_of(*h));
    if let Some(h) = chosen {
        let digest = crypto::hash(h, &[octets]);
        let (algid, sig) = match key {
            PrivateKey::Rsa(k) => {
                let (oid, scheme) = match h {
                    HashAlg::Sha384 => (SHA384_RSA, Pkcs1v15Sign::new::<sha2::Sha384>()),
                    HashAlg::Sha512 => (SHA512_RSA, Pkcs1v15Sign::new::<sha2::Sha512>()),
                    _ => (SHA256_RSA, Pkcs1v15Sign::new::<sha2::Sha256>()),
                };
                let sig = k.sign_with_rng(rng, scheme, &digest).map_err(sign_err)?;
                (algorithm_identifier(oid, true), sig)
            }
            PrivateKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(sign_err)?;
                (
                    algorithm_identifier(ecdsa_oid(h), false),
                    s.to_der().as_bytes().to_vec(),
                )
            }
            PrivateKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(sign_err)?;
                (
                    algorithm_identifier(ecdsa_oid(h), false),
                    s.to_der().as_bytes().to_vec(),
                )
            }
        };
        let mut out = Vec::with_capacity(1 + algid.len() + sig.len());
        out.push(algid.len() as u8);
        out.extend_from_slice(&algid);
        out.extend_from_slice(&sig);
        return Ok((method::DIGITAL_SIGNATURE, out));
    }
    match key {
        PrivateKey::Rsa(k) => {
            let digest = crypto::hash(HashAlg::Sha1, &[octets]);
            let sig = k
                .sign_with_rng(rng, Pkcs1v15Sign::new::<sha1::Sha1>(), &digest)
                .map_err(sign_err)?;
            Ok((method::RSA, sig))
        }
        PrivateKey::P256(k) => {
            let digest = crypto::hash(HashAlg::Sha256, &[octets]);
            let s: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(sign_err)?;
            Ok((method::ECDSA_256, s.to_bytes().to_vec()))
        }
        PrivateKey::P384(k) => {
            let digest = crypto::hash(HashAlg::Sha384, &[octets]);
            let s: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(sign_err)?;
            Ok((method::ECDSA_384, s.to_bytes().to_vec()))
        }
    }
}

fn ecdsa_oid(h: HashAlg) -> Oid {
    match h {
        HashAlg::Sha384 => ECDSA_SHA384,
        HashAlg::Sha512 => ECDSA_SHA512,
        _ => ECDSA_SHA256,
    }
}

/// Why a signature could not be checked at all (as opposed to not verifying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

fn ecdsa_ok(key: &PublicKey, digest: &[u8], sig: &[u8], der: bool) -> bool {
    match key {
        PublicKey::P256(k) => {
            let s = if der {
                p256::ecdsa::Signature::from_der(sig)
            } else {
                p256::ecdsa::Signature::from_slice(sig)
            };
            s.is_ok_and(|s| k.verify_prehash(digest, &s).is_ok())
        }
        PublicKey::P384(k) => {
            let s = if der {
                p384::ecdsa::Signature::from_der(sig)
            } else {
                p384::ecdsa::Signature::from_slice(sig)
            };
            s.is_ok_and(|s| k.verify_prehash(digest, &s).is_ok())
        }
        PublicKey::Rsa(_) => false,
    }
}

fn rsa_ok(key: &PublicKey, h: HashAlg, octets: &[u8], sig: &[u8]) -> bool {
    match (key, pkcs1(h)) {
        (PublicKey::Rsa(k), Some(scheme)) => {
            k.verify(scheme, &crypto::hash(h, &[octets]), sig).is_ok()
        }
        _ => false,
    }
}

/// Checks a peer's signature AUTH (`method`, `data`) over `octets` with `key`:
/// `Ok(true)` when it verifies, `Ok(false)` when it does not, `Err` when the method or
/// algorithm is one we cannot check or does not fit the key.
pub fn verify(
    key: &PublicKey,
    auth_method: u8,
    data: &[u8],
    octets: &[u8],
) -> Result<bool, Unsupported> {
    let is_rsa = matches!(key, PublicKey::Rsa(_));
    let mismatch = || {
        Unsupported(format!(
            "the peer's AUTH method {auth_method} does not fit its certificate's {} key",
            if is_rsa { "RSA" } else { "EC" }
        ))
    };
    match auth_method {
        method::RSA if is_rsa => Ok(rsa_ok(key, HashAlg::Sha1, octets, data)),
        method::ECDSA_256 if matches!(key, PublicKey::P256(_)) => Ok(ecdsa_ok(
            key,
            &crypto::hash(HashAlg::Sha256, &[octets]),
            data,
            false,
        )),
        method::ECDSA_384 if matches!(key, PublicKey::P384(_)) => Ok(ecdsa_ok(
            key,
            &crypto::hash(HashAlg::Sha384, &[octets]),
            data,
            false,
        )),
        method::RSA | method::ECDSA_256 | method::ECDSA_384 => Err(mismatch()),
        method::ECDSA_521 => Err(Unsupported(
            "the peer signs with ECDSA P-521 (AUTH method 11), which Postern does not support"
                .into(),
        )),
        method::DIGITAL_SIGNATURE => {
            let Some((&n, rest)) = data.split_first() else {
                return Err(Unsupported("an empty RFC 7427 signature".into()));
            };
            let n = usize::from(n);
            let (Some(algid), Some(sig)) = (rest.get(..n), rest.get(n..)) else {
                return Err(Unsupported(
                    "an RFC 7427 signature shorter than its AlgorithmIdentifier".into(),
                ));
            };
            let algid = spki::AlgorithmIdentifierOwned::from_der(algid).map_err(|e| {
                Unsupported(format!("an unreadable RFC 7427 AlgorithmIdentifier: {e}"))
            })?;
            let (h, ecdsa) = match algid.oid {
                o if o == SHA1_RSA => (HashAlg::Sha1, false),
                o if o == SHA256_RSA => (HashAlg::Sha256, false),
                o if o == SHA384_RSA => (HashAlg::Sha384, false),
                o if o == SHA512_RSA => (HashAlg::Sha512, false),
                o if o == ECDSA_SHA256 => (HashAlg::Sha256, true),
                o if o == ECDSA_SHA384 => (HashAlg::Sha384, true),
                o if o == ECDSA_SHA512 => (HashAlg::Sha512, true),
                o => {
                    return Err(Unsupported(format!(
                        "the peer signs with algorithm {o} (RFC 7427), which Postern does not support"
                    )));
                }
            };
            if ecdsa == is_rsa {
                return Err(mismatch());
            }
            if ecdsa {
                Ok(ecdsa_ok(key, &crypto::hash(h, &[octets]), sig, true))
            } else {
                Ok(rsa_ok(key, h, octets, sig))
            }
        }
        other => Err(Unsupported(format!(
            "the peer authenticated with AUTH method {other}, not a signature Postern knows"
        ))),
    }
}

impl Ike2 {
    /// IKE_SA_INIT notifies for our authentication: SIGNATURE_HASH_ALGORITHMS when we
    /// use certificates.
    pub(super) fn auth_init_notifies(&self) -> Vec<Payload> {
        match self.config.auth.certs() {
            Some(_) => vec![notify_payload(
                notify::SIGNATURE_HASH_ALGORITHMS,
                hash_algorithms_data(),
            )],
            None => Vec::new(),
        }
    }

    /// Remembers the hashes the peer announced in its IKE_SA_INIT.
    pub(super) fn note_peer_hashes(&mut self, payloads: &[Payload]) {
        self.peer_hashes = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Notify {
                    kind: notify::SIGNATURE_HASH_ALGORITHMS,
                    data,
                    ..
                } => Some(parse_hash_algorithms(data)),
                _ => None,
            })
            .unwrap_or_default();
    }

    /// CERT payloads with our chain (when we sign) and a CERTREQ naming our CAs.
    pub(super) fn cert_payloads(&self, with_own: bool) -> Vec<Payload> {
        let Some(c) = self.config.auth.certs() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if with_own && c.key.is_some() {
            out.extend(c.chain.iter().map(|cert| Payload::Cert {
                encoding: CERT_X509_SIGNATURE,
                data: cert.der().to_vec(),
            }));
        }
        if !c.trusted.is_empty() {
            out.push(Payload::CertReq {
                encoding: CERT_X509_SIGNATURE,
                data: certreq_data(&c.trusted),
            });
        }
        out
    }

    /// Our AUTH payload over `octets`: the PSK's MAC or our signature.
    pub(super) fn our_auth(&mut self, octets: &[u8]) -> Result<Payload, Error> {
        let prf = self.keys.as_ref().map(|k| k.prf);
        match &self.config.auth {
            Auth::Psk(k) => {
                let prf = prf.ok_or_else(|| Error::Local("no IKE SA keys".into()))?;
                Ok(Payload::Auth {
                    method: method::PSK,
                    data: keys::psk_auth(prf, k, octets),
                })
            }
            Auth::Signature(c) | Auth::Hybrid(c) => {
                let c = c.clone();
                let key = c.key.as_ref().ok_or_else(|| {
                    Error::Local("no private key to sign with (auth.key or auth.pkcs12)".into())
                })?;
                let (m, data) = sign(key, octets, &self.peer_hashes, &mut *self.rng)
                    .map_err(Error::Certificate)?;
                Ok(Payload::Auth { method: m, data })
            }
        }
    }

    /// The wall time of `now` (certificates are checked at it).
    fn wall_time(&self, now: std::time::Instant) -> Result<std::time::SystemTime, Error> {
        let (at, wall) = self.config.wall_clock.ok_or_else(|| {
            Error::Local("no wall clock given: certificates cannot be checked".into())
        })?;
        Ok(if now >= at {
            wall + (now - at)
        } else {
            wall.checked_sub(at - now).unwrap_or(wall)
        })
    }

    /// Checks the peer's AUTH payload (found in `payloads`) over `octets`, the peer
    /// being `peer_id`: the PSK's MAC, or its certificate chain, identity and
    /// signature.
    pub(super) fn check_peer_auth(
        &self,
        now: std::time::Instant,
        peer_id: &Identity,
        payloads: &[Payload],
        octets: &[u8],
    ) -> Result<(), Error> {
        let peer = if self.role == Role::Initiator {
            "gateway"
        } else {
            "initiator"
        };
        let Some((m, data)) = payloads.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        }) else {
            return Err(Error::Malformed(format!("the {peer} sent no AUTH payload")));
        };
        let certs = match &self.config.auth {
            Auth::Psk(k) => {
                let prf = self
                    .keys
                    .as_ref()
                    .map(|k| k.prf)
                    .ok_or_else(|| Error::Local("no IKE SA keys".into()))?;
                if m != method::PSK {
                    return Err(Error::AuthenticationFailed(format!(
                        "the {peer} authenticated with method {m}, not a pre-shared key"
                    )));
                }
                if !ct_eq(&keys::psk_auth(prf, k, octets), data) {
                    return Err(Error::AuthenticationFailed(format!(
                        "the {peer}'s AUTH does not match: wrong pre-shared key or identity"
                    )));
                }
                return Ok(());
            }
            Auth::Signature(c) | Auth::Hybrid(c) => c,
        };
        if m == method::PSK {
            return Err(Error::AuthenticationFailed(format!(
                "the {peer} authenticated with a pre-shared key; the profile expects its certificate"
            )));
        }
        let mut chain = Vec::new();
        for p in payloads {
            if let Payload::Cert {
                encoding: CERT_X509_SIGNATURE,
                data,
            } = p
            {
                chain.push(Certificate::from_der(data).map_err(Error::Certificate)?);
            }
        }
        let at = self.wall_time(now)?;
        let ee = cert::validate_chain(&chain, &certs.trusted, &certs.crls, at)
            .map_err(Error::Certificate)?;
        cert::check_identity(ee, peer_id).map_err(Error::Certificate)?;
        let key = ee.public_key().map_err(Error::Certificate)?;
        match verify(&key, m, data, octets) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Certificate(CertError::BadIkeSignature(ee.subject()))),
            Err(Unsupported(why)) => Err(Error::AuthenticationFailed(why)),
        }
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Ike2 {
    /// Test and fuzz harness: `payloads` sealed as this engine's own message (its
    /// SPIs, role flags and SK keys), to hand to its peer.
    pub fn seal_as_self(
        &mut self,
        exch: u8,
        id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Vec<u8> {
        let h = self.header(exch, id, response);
        self.seal(h, payloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_identifiers_are_rfc7427_appendix_a() {
        // RFC 7427 A.1.3 (sha256WithRSAEncryption) and A.3.1 (ecdsa-with-sha256).
        assert_eq!(
            hex::encode(algorithm_identifier(SHA256_RSA, true)),
            "300d06092a864886f70d01010b0500"
        );
        assert_eq!(
            hex::encode(algorithm_identifier(ECDSA_SHA256, false)),
            "300a06082a8648ce3d040302"
        );
        assert_eq!(
            hex::encode(algorithm_identifier(ECDSA_SHA384, false)),
            "300a06082a8648ce3d040303"
        );
    }

    #[test]
    fn hash_algorithm_lists() {
        assert_eq!(hash_algorithms_data(), vec![0, 2, 0, 3, 0, 4]);
        assert_eq!(parse_hash_algorithms(&[0, 1, 0, 2, 9]), vec![1, 2]);
    }
}
