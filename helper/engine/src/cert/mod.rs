//! X.509 certificates and private keys for signature authentication, without I/O.
//!
//! * reading: certificates (PEM, several per file, or DER), private keys (PKCS#1,
//!   PKCS#8, encrypted PKCS#8, SEC1 EC), CRLs;
//! * validating a peer's chain to the configured CAs ([`validate_chain`]): names,
//!   signatures, validity at a wall time given by the caller (the engine reads no
//!   clock), key usage, basic constraints and path length, optional CRLs;
//! * matching an IKE identity to a certificate ([`check_identity`]): the subject DN
//!   for `dn:` IDs, a subjectAltName of the ID's type otherwise;
//! * the IKEv1 signatures ([`PrivateKey::sign_ike`], [`PublicKey::verify_ike`]):
//!   RSA PKCS#1 v1.5 padding without DigestInfo over HASH_I/HASH_R (RFC 2409 §5.1),
//!   ECDSA with HASH_I/HASH_R itself as the digest (no second hash, as strongSwan's
//!   `SIGN_ECDSA_WITH_NULL` in IKEv1), r|s of fixed size (RFC 4754 encoding).
//!
//! Every byte string may come from the network and is parsed by the RustCrypto
//! DER decoders; nothing here panics on bad input. Private keys zeroize on drop
//! (the RustCrypto key types do) and their `Debug` prints no key material.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use rsa::Pkcs1v15Sign;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sha2::Digest;
use spki::DecodePublicKey;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectAltName};
use x509_cert::name::Name;
use zeroize::Zeroizing;

use crate::codec::IdType;
use crate::crypto::Rng;
use crate::ike::Identity;

pub mod pkcs12;

#[cfg(test)]
pub(crate) mod tests;

/// Longest chain accepted (end entity, intermediates, anchor).
const MAX_DEPTH: usize = 8;

const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const SHA1_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.5");
const SHA256_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA1: Oid = Oid::new_unwrap("1.2.840.10045.4.1");
const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
const P256_OID: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const P384_OID: Oid = Oid::new_unwrap("1.3.132.0.34");
const P521_OID: Oid = Oid::new_unwrap("1.3.132.0.35");

/// Why a certificate, key or signature was refused. Each reads as one sentence
/// naming what did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("cannot read the certificate: {0}")]
    BadCertificate(String),
    #[error("cannot read the private key: {0}")]
    BadKey(String),
    #[error("cannot read the CRL: {0}")]
    BadCrl(String),
    #[error("the private key is encrypted: a passphrase is needed")]
    PassphraseNeeded,
    #[error("the private key could not be decrypted (wrong passphrase?)")]
    WrongPassphrase,
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("the private key does not belong to the certificate \"{0}\"")]
    KeyMismatch(String),
    #[error("the peer sent no certificate")]
    NoCertificate,
    #[error(
        "certificate \"{subject}\" was issued by \"{issuer}\", which is neither a trusted CA nor among the certificates received"
    )]
    UntrustedIssuer { subject: String, issuer: String },
    #[error("the signature on certificate \"{0}\" does not verify with its issuer's key")]
    BadSignature(String),
    #[error("certificate \"{subject}\" expired on {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("certificate \"{subject}\" is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("certificate \"{0}\" signs other certificates but is not a CA (basic constraints)")]
    NotCa(String),
    #[error("certificate \"{subject}\" may not be used for {usage} (key usage)")]
    KeyUsage {
        subject: String,
        usage: &'static str,
    },
    #[error("the chain to \"{0}\" is longer than the path length constraint allows")]
    PathTooLong(String),
    #[error("certificate \"{subject}\" (serial {serial}) is revoked by its CA's CRL")]
    Revoked { subject: String, serial: String },
    #[error("the CRL of \"{0}\" is out of date")]
    StaleCrl(String),
    #[error(
        "the peer's identity {id} matches neither the certificate's subject \"{subject}\" nor its subjectAltNames [{alt_names}]"
    )]
    IdMismatch {
        id: String,
        subject: String,
        alt_names: String,
    },
    #[error(
        "the signature over the exchange (SIG payload) does not verify with certificate \"{0}\""
    )]
    BadIkeSignature(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A parsed X.509 certificate and its DER bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    cert: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({})", self.subject())
    }
}

impl Certificate {
    /// One DER certificate (e.g. from a CERT payload).
    pub fn from_der(der: &[u8]) -> Result<Certificate, CertError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| CertError::BadCertificate(e.to_string()))?;
        Ok(Certificate {
            der: der.to_vec(),
            cert,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject DN, RFC 4514 style.
    pub fn subject(&self) -> String {
        name_text(self.cert.tbs_certificate().subject())
    }

    /// The subject DN as DER (what a CERTREQ names, and a `dn:` ID carries).
    pub fn subject_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate()
            .subject()
            .to_der()
            .unwrap_or_default()
    }

    /// The DER of the SubjectPublicKeyInfo (an IKEv2 CERTREQ names a CA by its SHA-1).
    pub fn spki_der(&self) -> Vec<u8> {
        self.tbs()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default()
    }

    pub fn issuer(&self) -> String {
        name_text(self.cert.tbs_certificate().issuer())
    }

    /// Subject and issuer are the same name (a root CA, or a self-signed end entity).
    pub fn is_self_signed(&self) -> bool {
        let t = self.cert.tbs_certificate();
        t.subject() == t.issuer()
    }

    /// The public key of the subject.
    pub fn public_key(&self) -> Result<PublicKey, CertError> {
        let spki = self.cert.tbs_certificate().subject_public_key_info();
        let der = spki
            .to_der()
            .map_err(|e| CertError::BadCertificate(e.to_string()))?;
        let alg = spki.algorithm.oid;
        let unsupported = || {
            CertError::UnsupportedKey(format!(
                "certificate \"{}\" has a key of type {alg}",
                self.subject()
            ))
        };
        if alg == RSA_ENCRYPTION {
            return rsa::RsaPublicKey::from_public_key_der(&der)
                .map(|k| PublicKey::Rsa(Box::new(k)))
                .map_err(|e| CertError::BadCertificate(e.to_string()));
        }
        if alg != EC_PUBLIC_KEY {
            return Err(unsupported());
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<Oid>().ok());
        match curve {
            Some(c) if c == P256_OID => p256::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(PublicKey::P256)
                .map_err(|e| CertError::BadCertificate(e.to_string())),
            Some(c) if c == P384_OID => p384::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(PublicKey::P384)
                .map_err(|e| CertError::BadCertificate(e.to_string())),
            Some(c) if c == P521_OID => p521::ecdsa::VerifyingKey::from_public_key_der(&der)
                .map(PublicKey::P521)
                .map_err(|e| CertError::BadCertificate(e.to_string())),
            _ => Err(unsupported()),
        }
    }

    fn tbs(&self) -> &x509_cert::TbsCertificate {
        self.cert.tbs_certificate()
    }

    fn subject_name(&self) -> &Name {
        self.tbs().subject()
    }

    fn issuer_name(&self) -> &Name {
        self.tbs().issuer()
    }

    fn serial_hex(&self) -> String {
        self.tbs()
            .serial_number()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn basic_constraints(&self) -> Option<BasicConstraints> {
        self.tbs()
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .map(|(_, b)| b)
    }

    fn key_usage(&self) -> Option<KeyUsage> {
        self.tbs()
            .get_extension::<KeyUsage>()
            .ok()
            .flatten()
            .map(|(_, k)| k)
    }

    fn alt_names(&self) -> Vec<GeneralName> {
        self.tbs()
            .filter_extensions::<SubjectAltName>()
            .filter_map(Result::ok)
            .flat_map(|(_, s)| s.0)
            .collect()
    }

    /// Whether `issuer`'s key made the signature on this certificate.
    fn signed_by(&self, issuer: &PublicKey) -> bool {
        let Ok(tbs) = self.tbs().to_der() else {
            return false;
        };
        let Some(sig) = self.cert.signature().as_bytes() else {
            return false;
        };
        verify_x509_signature(issuer, self.cert.signature_algorithm().oid, &tbs, sig)
    }

    fn check_validity(&self, at: SystemTime) -> Result<(), CertError> {
        let v = self.tbs().validity();
        if at < v.not_before.to_system_time() {
            return Err(CertError::NotYetValid {
                subject: self.subject(),
                not_before: v.not_before.to_string(),
            });
        }
        if at > v.not_after.to_system_time() {
            return Err(CertError::Expired {
                subject: self.subject(),
                not_after: v.not_after.to_string(),
            });
        }
        Ok(())
    }
}

/// Verifies an X.509 signature (certificate or CRL) made with `alg` over `data`.
fn verify_x509_signature(key: &PublicKey, alg: Oid, data: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::Rsa(k) => {
            let (scheme, digest) = if alg == SHA256_RSA {
                (
                    Pkcs1v15Sign::new::<sha2::Sha256>(),
                    sha2::Sha256::digest(data).to_vec(),
                )
            } else if alg == SHA384_RSA {
                (
                    Pkcs1v15Sign::new::<sha2::Sha384>(),
                    sha2::Sha384::digest(data).to_vec(),
                )
            } else if alg == SHA512_RSA {
                (
                    Pkcs1v15Sign::new::<sha2::Sha512>(),
                    sha2::Sha512::digest(data).to_vec(),
                )
            } else if alg == SHA1_RSA {
                (
                    Pkcs1v15Sign::new::<sha1::Sha1>(),
                    sha1::Sha1::digest(data).to_vec(),
                )
            } else {
                return false;
            };
            k.verify(scheme, &digest, sig).is_ok()
        }
        PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_) => {
            let digest = if alg == ECDSA_SHA256 {
                sha2::Sha256::digest(data).to_vec()
            } else if alg == ECDSA_SHA384 {
                sha2::Sha384::digest(data).to_vec()
            } else if alg == ECDSA_SHA512 {
                sha2::Sha512::digest(data).to_vec()
            } else if alg == ECDSA_SHA1 {
                sha1::Sha1::digest(data).to_vec()
            } else {
                return false;
            };
            match key {
                PublicKey::P256(k) => p256::ecdsa::Signature::from_der(sig)
                    .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
                PublicKey::P384(k) => p384::ecdsa::Signature::from_der(sig)
                    .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
                PublicKey::P521(k) => p521::ecdsa::Signature::from_der(sig)
                    .is_ok_and(|s| k.verify_prehash(&digest, &s).is_ok()),
                PublicKey::Rsa(_) => false,
            }
        }
    }
}

/// A certificate revocation list.
#[derive(Clone, PartialEq, Eq)]
pub struct Crl {
    crl: x509_cert::crl::CertificateList,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crl({})", name_text(&self.crl.tbs_cert_list.issuer))
    }
}

impl Crl {
    pub fn from_der(der: &[u8]) -> Result<Crl, CertError> {
        x509_cert::crl::CertificateList::from_der(der)
            .map(|crl| Crl { crl })
            .map_err(|e| CertError::BadCrl(e.to_string()))
    }
}

/// A public key from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Rsa(Box<rsa::RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Checks an IKEv1 SIG payload over `hash` (HASH_I or HASH_R).
    pub fn verify_ike(&self, hash: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Rsa(k) => k.verify(Pkcs1v15Sign::new_unprefixed(), hash, sig).is_ok(),
            PublicKey::P256(k) => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(&ecdsa_digest::<32>(hash), &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(&ecdsa_digest::<48>(hash), &s).is_ok()),
            PublicKey::P521(k) => p521::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(&ecdsa_digest::<66>(hash), &s).is_ok()),
        }
    }
}

/// HASH_I/HASH_R as the ECDSA digest of an `N`-byte curve. IKEv1 signs the PRF output
/// itself, whatever its length; as an integer that is the value left-padded with zeros
/// when shorter than the curve (a SHA-1 PRF on P-384) and its leftmost bytes when
/// longer (ECDSA's truncation), which is what the ecdsa crate does with `N` bytes.
fn ecdsa_digest<const N: usize>(hash: &[u8]) -> Vec<u8> {
    if hash.len() >= N {
        return hash[..N].to_vec();
    }
    let mut d = vec![0u8; N - hash.len()];
    d.extend_from_slice(hash);
    d
}

/// The kind of signature a key makes (and the IKE authentication method for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigKind {
    Rsa,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
}

/// Our private key. Zeroized on drop; `Debug` shows only its kind.
pub enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, <redacted>)", self.kind())
    }
}

impl PrivateKey {
    pub fn kind(&self) -> SigKind {
        match self {
            PrivateKey::Rsa(_) => SigKind::Rsa,
            PrivateKey::P256(_) => SigKind::EcdsaP256,
            PrivateKey::P384(_) => SigKind::EcdsaP384,
            PrivateKey::P521(_) => SigKind::EcdsaP521,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(Box::new(k.to_public_key())),
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::P521(k) => PublicKey::P521(*k.verifying_key()),
        }
    }

    /// The IKEv1 SIG payload body over `hash` (HASH_I or HASH_R).
    pub fn sign_ike(&self, hash: &[u8], rng: &mut dyn Rng) -> Result<Vec<u8>, CertError> {
        match self {
            PrivateKey::Rsa(k) => k
                .sign_with_rng(rng, Pkcs1v15Sign::new_unprefixed(), hash)
                .map_err(|e| CertError::Sign(e.to_string())),
            PrivateKey::P256(k) => {
                let s: p256::ecdsa::Signature = k
                    .sign_prehash(&ecdsa_digest::<32>(hash))
                    .map_err(|e| CertError::Sign(e.to_string()))?;
                Ok(s.to_bytes().to_vec())
            }
            PrivateKey::P384(k) => {
                let s: p384::ecdsa::Signature = k
                    .sign_prehash(&ecdsa_digest::<48>(hash))
                    .map_err(|e| CertError::Sign(e.to_string()))?;
                Ok(s.to_bytes().to_vec())
            }
            PrivateKey::P521(k) => {
                let s: p521::ecdsa::Signature = k
                    .sign_prehash(&ecdsa_digest::<66>(hash))
                    .map_err(|e| CertError::Sign(e.to_string()))?;
                Ok(s.to_bytes().to_vec())
            }
        }
    }

    /// Checks that `cert` carries this key's public half.
    pub fn matches(&self, cert: &Certificate) -> Result<(), CertError> {
        if cert.public_key()? == self.public_key() {
            Ok(())
        } else {
            Err(CertError::KeyMismatch(cert.subject()))
        }
    }

    /// Reads a private key: PEM (`RSA PRIVATE KEY`, `PRIVATE KEY`,
    /// `ENCRYPTED PRIVATE KEY`, `EC PRIVATE KEY`; other blocks such as
    /// `EC PARAMETERS` are skipped) or DER of any of these.
    pub fn parse(data: &[u8], passphrase: Option<&[u8]>) -> Result<PrivateKey, CertError> {
        let blocks = pem_blocks(data);
        if blocks.is_empty() {
            return parse_key_der(data, passphrase);
        }
        for block in blocks {
            if block.contains("Proc-Type: 4,ENCRYPTED") {
                return Err(CertError::UnsupportedKey(
                    "legacy OpenSSL PEM encryption: convert the key to encrypted PKCS#8 \
                     (openssl pkcs8 -topk8)"
                        .into(),
                ));
            }
            let (label, der) = der::pem::decode_vec(block.as_bytes())
                .map_err(|e| CertError::BadKey(format!("PEM: {e}")))?;
            let der = Zeroizing::new(der);
            return match label {
                "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_der(&der)
                    .map(|k| PrivateKey::Rsa(Box::new(k)))
                    .map_err(|e| CertError::BadKey(e.to_string())),
                "PRIVATE KEY" => parse_pkcs8(&der),
                "ENCRYPTED PRIVATE KEY" => parse_encrypted_pkcs8(&der, passphrase),
                "EC PRIVATE KEY" => parse_sec1(&der),
                "EC PARAMETERS" => continue,
                other => Err(CertError::BadKey(format!(
                    "a PEM block \"{other}\" is not a private key"
                ))),
            };
        }
        Err(CertError::BadKey("no private key in the PEM data".into()))
    }
}

fn parse_key_der(der: &[u8], passphrase: Option<&[u8]>) -> Result<PrivateKey, CertError> {
    if let Ok(k) = parse_pkcs8(der) {
        return Ok(k);
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_der(der) {
        return Ok(PrivateKey::Rsa(Box::new(k)));
    }
    if let Ok(k) = parse_sec1(der) {
        return Ok(k);
    }
    if pkcs8::EncryptedPrivateKeyInfoRef::from_der(der).is_ok() {
        return parse_encrypted_pkcs8(der, passphrase);
    }
    Err(CertError::BadKey(
        "neither PEM nor a DER PKCS#8, PKCS#1 or SEC1 key".into(),
    ))
}

fn parse_pkcs8(der: &[u8]) -> Result<PrivateKey, CertError> {
    let info =
        pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|e| CertError::BadKey(e.to_string()))?;
    let alg = info.algorithm.oid;
    if alg == RSA_ENCRYPTION {
        return rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map(|k| PrivateKey::Rsa(Box::new(k)))
            .map_err(|e| CertError::BadKey(e.to_string()));
    }
    if alg != EC_PUBLIC_KEY {
        return Err(CertError::UnsupportedKey(format!("key algorithm {alg}")));
    }
    let curve = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<Oid>().ok());
    match curve {
        Some(c) if c == P256_OID => p256::SecretKey::from_pkcs8_der(der)
            .map(|k| PrivateKey::P256(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        Some(c) if c == P384_OID => p384::SecretKey::from_pkcs8_der(der)
            .map(|k| PrivateKey::P384(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        Some(c) if c == P521_OID => p521::SecretKey::from_pkcs8_der(der)
            .map(|k| PrivateKey::P521(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        _ => Err(CertError::UnsupportedKey(
            "EC keys on curves other than P-256, P-384 and P-521".into(),
        )),
    }
}

fn parse_encrypted_pkcs8(der: &[u8], passphrase: Option<&[u8]>) -> Result<PrivateKey, CertError> {
    let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(der)
        .map_err(|e| CertError::BadKey(e.to_string()))?;
    let pass = passphrase.ok_or(CertError::PassphraseNeeded)?;
    let plain = info.decrypt(pass).map_err(|_| CertError::WrongPassphrase)?;
    parse_pkcs8(plain.as_bytes())
}

fn parse_sec1(der: &[u8]) -> Result<PrivateKey, CertError> {
    let k = sec1::EcPrivateKey::from_der(der).map_err(|e| CertError::BadKey(e.to_string()))?;
    match k.parameters.and_then(|p| p.named_curve()) {
        Some(c) if c == P256_OID => p256::SecretKey::from_sec1_der(der)
            .map(|k| PrivateKey::P256(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        Some(c) if c == P384_OID => p384::SecretKey::from_sec1_der(der)
            .map(|k| PrivateKey::P384(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        Some(c) if c == P521_OID => p521::SecretKey::from_sec1_der(der)
            .map(|k| PrivateKey::P521(k.into()))
            .map_err(|e| CertError::BadKey(e.to_string())),
        _ => Err(CertError::UnsupportedKey(
            "EC keys on curves other than P-256, P-384 and P-521".into(),
        )),
    }
}

/// The `-----BEGIN ...-----` ... `-----END ...-----` blocks of a text, in order.
fn pem_blocks(data: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end_tag) = from.find("-----END ") else {
            break;
        };
        let after = &from[end_tag + 9..];
        let Some(close) = after.find("-----") else {
            break;
        };
        let len = end_tag + 9 + close + 5;
        out.push(from[..len].to_string());
        rest = &from[len..];
    }
    out
}

/// Reads certificates: one or more PEM `CERTIFICATE` blocks, or one DER certificate.
pub fn parse_certificates(data: &[u8]) -> Result<Vec<Certificate>, CertError> {
    let blocks = pem_blocks(data);
    if blocks.is_empty() {
        return Ok(vec![Certificate::from_der(data)?]);
    }
    let mut out = Vec::new();
    for b in blocks {
        let (label, der) = der::pem::decode_vec(b.as_bytes())
            .map_err(|e| CertError::BadCertificate(format!("PEM: {e}")))?;
        if label == "CERTIFICATE" || label == "X509 CERTIFICATE" {
            out.push(Certificate::from_der(&der)?);
        }
    }
    if out.is_empty() {
        return Err(CertError::BadCertificate(
            "no CERTIFICATE block in the PEM data".into(),
        ));
    }
    Ok(out)
}

/// Reads CRLs: PEM `X509 CRL` blocks or one DER CRL.
pub fn parse_crls(data: &[u8]) -> Result<Vec<Crl>, CertError> {
    let blocks = pem_blocks(data);
    if blocks.is_empty() {
        return Ok(vec![Crl::from_der(data)?]);
    }
    let mut out = Vec::new();
    for b in blocks {
        let (label, der) = der::pem::decode_vec(b.as_bytes())
            .map_err(|e| CertError::BadCrl(format!("PEM: {e}")))?;
        if label == "X509 CRL" {
            out.push(Crl::from_der(&der)?);
        }
    }
    Ok(out)
}

/// Validates `presented` (the peer's certificate first, then any intermediates it
/// sent, in any order) against the trusted CAs at wall time `at`. Returns the
/// peer's certificate.
pub fn validate_chain<'a>(
    presented: &'a [Certificate],
    trusted: &[Certificate],
    crls: &[Crl],
    at: SystemTime,
) -> Result<&'a Certificate, CertError> {
    let ee = presented.first().ok_or(CertError::NoCertificate)?;
    ee.check_validity(at)?;
    if let Some(ku) = ee.key_usage()
        && !ku.digital_signature()
        && !ku.non_repudiation()
    {
        return Err(CertError::KeyUsage {
            subject: ee.subject(),
            usage: "signatures",
        });
    }
    let mut current = ee;
    // Intermediates below the current certificate (for path length constraints).
    let mut below_intermediates = 0usize;
    for _ in 0..MAX_DEPTH {
        // A trusted CA that issued it ends the chain.
        let mut name_matched = false;
        for anchor in trusted
            .iter()
            .filter(|a| names_equal(a.subject_name(), current.issuer_name()))
        {
            name_matched = true;
            let Ok(key) = anchor.public_key() else {
                continue;
            };
            if current.signed_by(&key) {
                check_issuer(anchor, current, below_intermediates, at)?;
                check_crls(current, anchor, &key, crls, at)?;
                return Ok(ee);
            }
        }
        // Else an intermediate the peer sent.
        let next = presented[1..].iter().find(|c| {
            names_equal(c.subject_name(), current.issuer_name())
                && *c != current
                && c.public_key().is_ok_and(|k| current.signed_by(&k))
        });
        let Some(next) = next else {
            let named = presented[1..]
                .iter()
                .any(|c| names_equal(c.subject_name(), current.issuer_name()));
            if name_matched || named {
                return Err(CertError::BadSignature(current.subject()));
            }
            return Err(CertError::UntrustedIssuer {
                subject: current.subject(),
                issuer: current.issuer(),
            });
        };
        check_issuer(next, current, below_intermediates, at)?;
        if let Ok(key) = next.public_key() {
            check_crls(current, next, &key, crls, at)?;
        }
        below_intermediates += 1;
        current = next;
    }
    Err(CertError::PathTooLong(ee.subject()))
}

/// `issuer` may sign `child`: valid now, a CA, allowed to sign certificates, and
/// its path length constraint not exceeded.
fn check_issuer(
    issuer: &Certificate,
    _child: &Certificate,
    intermediates_below: usize,
    at: SystemTime,
) -> Result<(), CertError> {
    issuer.check_validity(at)?;
    match issuer.basic_constraints() {
        Some(bc) if bc.ca => {
            if let Some(max) = bc.path_len_constraint
                && intermediates_below > usize::from(max)
            {
                return Err(CertError::PathTooLong(issuer.subject()));
            }
        }
        _ => return Err(CertError::NotCa(issuer.subject())),
    }
    if let Some(ku) = issuer.key_usage()
        && !ku.key_cert_sign()
    {
        return Err(CertError::KeyUsage {
            subject: issuer.subject(),
            usage: "signing certificates",
        });
    }
    Ok(())
}

/// `cert` is not on a CRL of `issuer` (CRLs of other issuers are not consulted).
fn check_crls(
    cert: &Certificate,
    issuer: &Certificate,
    issuer_key: &PublicKey,
    crls: &[Crl],
    at: SystemTime,
) -> Result<(), CertError> {
    for crl in crls
        .iter()
        .filter(|c| names_equal(&c.crl.tbs_cert_list.issuer, issuer.subject_name()))
    {
        let Ok(tbs) = crl.crl.tbs_cert_list.to_der() else {
            return Err(CertError::BadCrl(issuer.subject()));
        };
        let sig = crl.crl.signature.as_bytes().unwrap_or_default();
        if !verify_x509_signature(issuer_key, crl.crl.signature_algorithm.oid, &tbs, sig) {
            return Err(CertError::BadCrl(format!(
                "the CRL of \"{}\" has a bad signature",
                issuer.subject()
            )));
        }
        if let Some(next) = crl.crl.tbs_cert_list.next_update
            && at > next.to_system_time()
        {
            return Err(CertError::StaleCrl(issuer.subject()));
        }
        let serial = cert.tbs().serial_number();
        let revoked = crl
            .crl
            .tbs_cert_list
            .revoked_certificates
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.serial_number.as_bytes() == serial.as_bytes());
        if revoked {
            return Err(CertError::Revoked {
                subject: cert.subject(),
                serial: cert.serial_hex(),
            });
        }
    }
    Ok(())
}

/// The peer's ID must name the certificate: a `dn:` ID equals its subject, any
/// other ID is among the subjectAltNames of that type (an FQDN or e-mail address
/// compared without case).
pub fn check_identity(cert: &Certificate, id: &Identity) -> Result<(), CertError> {
    let alts = cert.alt_names();
    let ok = match id.kind {
        IdType::DER_ASN1_DN => {
            Name::from_der(&id.data).is_ok_and(|n| names_equal(&n, cert.subject_name()))
        }
        IdType::FQDN => alts.iter().any(|g| match g {
            GeneralName::DnsName(s) => s.as_bytes().eq_ignore_ascii_case(&id.data),
            _ => false,
        }),
        IdType::USER_FQDN => alts.iter().any(|g| match g {
            GeneralName::Rfc822Name(s) => s.as_bytes().eq_ignore_ascii_case(&id.data),
            _ => false,
        }),
        IdType::IPV4_ADDR | IdType::IPV6_ADDR => alts.iter().any(|g| match g {
            GeneralName::IpAddress(o) => o.as_bytes() == id.data.as_slice(),
            _ => false,
        }),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(CertError::IdMismatch {
        id: id.to_string(),
        subject: cert.subject(),
        alt_names: alts.iter().map(describe_alt).collect::<Vec<_>>().join(", "),
    })
}

fn describe_alt(g: &GeneralName) -> String {
    match g {
        GeneralName::DnsName(s) => format!("fqdn:{}", s.as_str()),
        GeneralName::Rfc822Name(s) => format!("user-fqdn:{}", s.as_str()),
        GeneralName::IpAddress(o) => match o.as_bytes().len() {
            4 | 16 => {
                let b = o.as_bytes();
                let ip: IpAddr = if b.len() == 4 {
                    IpAddr::from([b[0], b[1], b[2], b[3]])
                } else {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    IpAddr::from(a)
                };
                format!("address:{ip}")
            }
            n => format!("address of {n} bytes"),
        },
        GeneralName::DirectoryName(n) => format!("dn:{}", name_text(n)),
        GeneralName::UniformResourceIdentifier(s) => format!("uri:{}", s.as_str()),
        _ => "other name".into(),
    }
}

/// Encodes a DN written as strongSwan and `openssl -subj` print it, the first RDN
/// first (`C=CH, O=Example, CN=vpn`), into the DER an `ID_DER_ASN1_DN` ID carries.
pub fn dn_der(text: &str) -> Result<Vec<u8>, CertError> {
    use std::str::FromStr;
    // Split on commas that are not escaped, trim, and hand the parser RFC 4514
    // order (last RDN first).
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for ch in text.chars() {
        if escaped {
            cur.push(ch);
            escaped = false;
        } else if ch == '\\' {
            cur.push(ch);
            escaped = true;
        } else if ch == ',' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    parts.push(cur);
    let rfc4514: Vec<&str> = parts.iter().rev().map(|p| p.trim()).collect();
    let name = Name::from_str(&rfc4514.join(","))
        .map_err(|e| CertError::BadCertificate(format!("distinguished name \"{text}\": {e}")))?;
    name.to_der()
        .map_err(|e| CertError::BadCertificate(e.to_string()))
}

/// Whether two DNs are the same: same attributes in the same order with the same
/// values, whatever ASN.1 string types encode them (ASCII case ignored).
pub fn names_equal(a: &Name, b: &Name) -> bool {
    a == b || name_text(a).eq_ignore_ascii_case(&name_text(b))
}

/// A DN as text, first RDN first (`C=CH, O=Example, CN=vpn`), as strongSwan shows it.
fn name_text(n: &Name) -> String {
    n.as_ref()
        .iter()
        .map(|rdn| rdn.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shows a DER DN as text (for messages), or `None` when it does not parse.
pub fn dn_text(der: &[u8]) -> Option<String> {
    Name::from_der(der).ok().map(|n| name_text(&n))
}
