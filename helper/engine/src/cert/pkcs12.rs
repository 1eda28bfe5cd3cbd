//! PKCS#12 bundles (RFC 7292): the private key, our certificate and its chain, as
//! admins hand them out (`openssl pkcs12 -export`, Windows, Cisco ASDM).
//!
//! Supported: the integrity MAC (HMAC-SHA-1/256/384/512 with the PKCS#12 key
//! derivation), PBES2 encryption (OpenSSL 3's default, AES-CBC + PBKDF2), the legacy
//! pbeWithSHAAnd3-KeyTripleDES-CBC, and unencrypted bags. RC2 and RC4 (OpenSSL 1.x
//! `-legacy` exports) are refused with a sentence that says how to re-export.
//! Every structure comes from a file the user chose; nothing here panics on bad input.

use der::asn1::{AnyRef, OctetString};
use der::{Decode, Encode};
use hmac::{KeyInit, Mac};
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CertError, Certificate, PrivateKey};
use crate::algs::IkeCipher;

type Oid = der::asn1::ObjectIdentifier;

const ID_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");
const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

/// At most this many bags are looked at (a bundle holds a key and a few certificates).
const MAX_BAGS: usize = 64;

/// What a bundle holds: the key, the certificate that goes with it first, then the
/// others (intermediates, often the CA).
pub struct Bundle {
    pub key: PrivateKey,
    pub chain: Vec<Certificate>,
}

fn bad(what: impl std::fmt::Display) -> CertError {
    CertError::BadKey(format!("PKCS#12: {what}"))
}

/// Opens a PKCS#12 bundle with `passphrase` (empty for none).
pub fn parse(der_bytes: &[u8], passphrase: &str) -> Result<Bundle, CertError> {
    let pfx = pkcs12::Pfx::from_der(der_bytes).map_err(|e| bad(format!("not a bundle ({e})")))?;
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(CertError::UnsupportedKey(
            "PKCS#12 with public-key integrity (only password MACs are supported)".into(),
        ));
    }
    let auth_safe = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(bad)?;
    let auth_safe = auth_safe.as_bytes();
    if let Some(mac) = &pfx.mac_data {
        check_mac(mac, auth_safe, passphrase)?;
    }
    let contents: Vec<pkcs12::cms::content_info::ContentInfo> =
        Vec::from_der(auth_safe).map_err(bad)?;
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    let mut bags_seen = 0usize;
    for ci in contents {
        let safe_contents: Zeroizing<Vec<u8>> = if ci.content_type == ID_DATA {
            Zeroizing::new(
                ci.content
                    .decode_as::<OctetString>()
                    .map_err(bad)?
                    .as_bytes()
                    .to_vec(),
            )
        } else if ci.content_type == ID_ENCRYPTED_DATA {
            let ed = ci
                .content
                .decode_as::<pkcs12::cms::encrypted_data::EncryptedData>()
                .map_err(bad)?;
            let info = ed.enc_content_info;
            let data = info
                .encrypted_content
                .ok_or_else(|| bad("encrypted data without content"))?;
            decrypt(&info.content_enc_alg, data.as_bytes(), passphrase)?
        } else {
            // Enveloped (public-key encrypted) contents: not for us.
            continue;
        };
        let bags: Vec<pkcs12::SafeBag> = Vec::from_der(&safe_contents).map_err(bad)?;
        for bag in bags {
            bags_seen += 1;
            if bags_seen > MAX_BAGS {
                return Err(bad(format!("more than {MAX_BAGS} bags")));
            }
            // bagValue is [0] EXPLICIT: its contents are the inner TLV.
            let outer = AnyRef::from_der(&bag.bag_value).map_err(bad)?;
            let inner = outer.value();
            if bag.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID {
                keys.push(shrouded_key(inner, passphrase)?);
            } else if bag.bag_id == pkcs12::PKCS_12_KEY_BAG_OID {
                keys.push(PrivateKey::parse(inner, None)?);
            } else if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
                let cb = pkcs12::CertBag::from_der(inner).map_err(bad)?;
                if cb.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                    certs.push(Certificate::from_der(cb.cert_value.as_bytes())?);
                }
            }
            // CRL, secret and nested bags are ignored.
        }
    }
    if keys.len() > 1 {
        return Err(bad("more than one private key; export the one to use"));
    }
    let key = keys
        .pop()
        .ok_or_else(|| bad("no private key in the bundle"))?;
    let own = certs
        .iter()
        .position(|c| key.matches(c).is_ok())
        .ok_or_else(|| bad("no certificate in the bundle belongs to its private key"))?;
    let mine = certs.remove(own);
    let mut chain = vec![mine];
    chain.extend(certs);
    Ok(Bundle { key, chain })
}

fn check_mac(mac: &pkcs12::MacData, data: &[u8], pass: &str) -> Result<(), CertError> {
    let alg = mac.mac.algorithm.oid;
    let salt = mac.mac_salt.as_bytes();
    let rounds = mac.iterations;
    if !(1..=10_000_000).contains(&rounds) {
        return Err(bad(format!("MAC iteration count {rounds}")));
    }
    macro_rules! hmac_with {
        ($d:ty) => {{
            let len = <$d as sha2::Digest>::output_size();
            let key = Zeroizing::new(
                derive_key_utf8::<$d>(pass, salt, Pkcs12KeyType::Mac, rounds, len).map_err(bad)?,
            );
            let mut m = <hmac::Hmac<$d> as KeyInit>::new_from_slice(&key).map_err(bad)?;
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }};
    }
    let got = if alg == SHA1 {
        hmac_with!(sha1::Sha1)
    } else if alg == SHA256 {
        hmac_with!(sha2::Sha256)
    } else if alg == SHA384 {
        hmac_with!(sha2::Sha384)
    } else if alg == SHA512 {
        hmac_with!(sha2::Sha512)
    } else {
        return Err(CertError::UnsupportedKey(format!(
            "PKCS#12 MAC with digest {alg}"
        )));
    };
    if bool::from(got.as_slice().ct_eq(mac.mac.digest.as_bytes())) {
        Ok(())
    } else {
        Err(CertError::WrongPassphrase)
    }
}

/// Decrypts an encrypted bag or content with the algorithm it names.
fn decrypt(
    alg: &spki::AlgorithmIdentifierOwned,
    data: &[u8],
    pass: &str,
) -> Result<Zeroizing<Vec<u8>>, CertError> {
    if alg.oid == PBES2 {
        let der = alg.to_der().map_err(bad)?;
        let scheme = pkcs8::pkcs5::EncryptionScheme::try_from(der.as_slice())
            .map_err(|e| CertError::UnsupportedKey(format!("PKCS#12 PBES2 parameters: {e}")))?;
        return scheme
            .decrypt(pass.as_bytes(), data)
            .map(Zeroizing::new)
            .map_err(|_| CertError::WrongPassphrase);
    }
    if alg.oid == pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC {
        let params = alg
            .parameters
            .as_ref()
            .ok_or_else(|| bad("3DES PBE without parameters"))?
            .decode_as::<pkcs12::pbe_params::Pkcs12PbeParams>()
            .map_err(bad)?;
        let rounds = params.iterations;
        if !(1..=10_000_000).contains(&rounds) {
            return Err(bad(format!("PBE iteration count {rounds}")));
        }
        let salt = params.salt.as_bytes();
        let key = Zeroizing::new(
            derive_key_utf8::<sha1::Sha1>(pass, salt, Pkcs12KeyType::EncryptionKey, rounds, 24)
                .map_err(bad)?,
        );
        let iv =
            derive_key_utf8::<sha1::Sha1>(pass, salt, Pkcs12KeyType::Iv, rounds, 8).map_err(bad)?;
        let mut plain = Zeroizing::new(
            crate::crypto::cbc_decrypt(IkeCipher::TripleDes, &key, &iv, data)
                .map_err(|_| CertError::WrongPassphrase)?,
        );
        // PKCS#7 padding; a wrong passphrase usually shows here first.
        let pad = *plain.last().ok_or(CertError::WrongPassphrase)? as usize;
        if pad == 0
            || pad > 8
            || pad > plain.len()
            || plain[plain.len() - pad..]
                .iter()
                .any(|&b| b as usize != pad)
        {
            return Err(CertError::WrongPassphrase);
        }
        let n = plain.len() - pad;
        plain.truncate(n);
        return Ok(plain);
    }
    let legacy = [
        pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC,
        pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC,
        pkcs12::PKCS_12_PBE_WITH_SHAAND40_BIT_RC4,
        pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC4,
    ];
    if legacy.contains(&alg.oid) {
        return Err(CertError::UnsupportedKey(
            "PKCS#12 encrypted with RC2/RC4 (an OpenSSL 1.x or -legacy export): re-export it with \
             `openssl pkcs12 -export` from OpenSSL 3 (AES), or use PEM files"
                .into(),
        ));
    }
    Err(CertError::UnsupportedKey(format!(
        "PKCS#12 encryption {}",
        alg.oid
    )))
}

fn shrouded_key(der: &[u8], pass: &str) -> Result<PrivateKey, CertError> {
    let info = pkcs12::pbe_params::EncryptedPrivateKeyInfo::from_der(der).map_err(bad)?;
    let plain = decrypt(
        &info.encryption_algorithm,
        info.encrypted_data.as_bytes(),
        pass,
    )?;
    PrivateKey::parse(&plain, None)
}
