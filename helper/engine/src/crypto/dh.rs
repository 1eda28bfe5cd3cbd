//! Diffie-Hellman: the MODP groups (RFC 2409 §6, RFC 3526) and the ECP groups
//! (RFC 5903), with the public value encodings of the IKEv1 KE payload, and
//! Curve25519 (RFC 8031, IKEv2 only) through ring's X25519.

use num_bigint::BigUint;
use zeroize::Zeroizing;

use super::{CryptoError, Rng, modp_primes};
use crate::algs::DhGroup;

/// The prime of a MODP group (generator 2), or `None` for an ECP group.
fn modp_prime(group: DhGroup) -> Option<&'static [u8]> {
    Some(match group {
        DhGroup::Modp768 => &modp_primes::MODP_768,
        DhGroup::Modp1024 => &modp_primes::MODP_1024,
        DhGroup::Modp1536 => &modp_primes::MODP_1536,
        DhGroup::Modp2048 => &modp_primes::MODP_2048,
        DhGroup::Modp3072 => &modp_primes::MODP_3072,
        DhGroup::Modp4096 => &modp_primes::MODP_4096,
        DhGroup::Modp6144 => &modp_primes::MODP_6144,
        DhGroup::Modp8192 => &modp_primes::MODP_8192,
        DhGroup::Ecp256 | DhGroup::Ecp384 | DhGroup::Ecp521 | DhGroup::Curve25519 => {
            return None;
        }
    })
}

/// The prime of a MODP group, for tests that build edge values (p - 1...).
#[cfg(test)]
pub(crate) fn modp_prime_for_test(group: DhGroup) -> Option<&'static [u8]> {
    modp_prime(group)
}

/// Length in bits of our private MODP exponent: at least twice the upper strength
/// estimate of RFC 3526 §8 for the group (rounded up to whole 64-bit words), so the
/// exponent is never the weak point; far cheaper than a full-length exponent.
fn modp_exponent_bits(group: DhGroup) -> usize {
    match group {
        DhGroup::Modp768 | DhGroup::Modp1024 => 320,
        DhGroup::Modp1536 => 256,
        DhGroup::Modp2048 => 320,
        DhGroup::Modp3072 => 448,
        DhGroup::Modp4096 => 512,
        DhGroup::Modp6144 => 576,
        DhGroup::Modp8192 => 640,
        DhGroup::Ecp256 | DhGroup::Ecp384 | DhGroup::Ecp521 | DhGroup::Curve25519 => 0,
    }
}

/// Big-endian bytes of `n`, left-padded with zeros to `len`.
fn to_padded(n: &BigUint, len: usize) -> Zeroizing<Vec<u8>> {
    let raw = Zeroizing::new(n.to_bytes_be());
    debug_assert!(raw.len() <= len);
    let mut out = Zeroizing::new(vec![0u8; len]);
    out[len - raw.len()..].copy_from_slice(&raw);
    out
}

/// An ephemeral DH private value with its public value. The private value is
/// zeroized on drop and never printed.
pub struct DhKeyPair {
    group: DhGroup,
    /// MODP: the exponent, big-endian. ECP: the scalar, big-endian field bytes.
    private: Zeroizing<Vec<u8>>,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKeyPair")
            .field("group", &self.group)
            .field("private", &"<redacted>")
            .field("public_len", &self.public.len())
            .finish()
    }
}

/// The ECP curve operations, written once for the three RustCrypto curves.
macro_rules! ecp_ops {
    ($modname:ident, $curve:ty) => {
        mod $modname {
            use elliptic_curve::{
                FieldBytes, Generate, NonZeroScalar, PublicKey, sec1::ToSec1Point,
            };
            use rand_core::CryptoRng;
            use zeroize::Zeroizing;

            use crate::crypto::CryptoError;

            type C = $curve;

            /// A random nonzero scalar, as big-endian field bytes.
            pub(super) fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Zeroizing<Vec<u8>> {
                let s = NonZeroScalar::<C>::generate_from_rng(rng);
                let mut repr = FieldBytes::<C>::from(s);
                let out = Zeroizing::new(repr.to_vec());
                zeroize::Zeroize::zeroize(repr.as_mut_slice());
                out
            }

            fn scalar(private: &[u8]) -> Option<NonZeroScalar<C>> {
                let repr = FieldBytes::<C>::try_from(private).ok()?;
                NonZeroScalar::<C>::from_repr(repr).into_option()
            }

            /// x || y of d*G; `None` if `private` is not a valid nonzero scalar.
            pub(super) fn public(private: &[u8]) -> Option<Vec<u8>> {
                let s = scalar(private)?;
                let pk = PublicKey::<C>::from_secret_scalar(&s);
                let sec1 = pk.as_affine().to_sec1_point(false);
                // Uncompressed SEC1: 0x04 || x || y; IKE (RFC 5903 §7) drops the 0x04.
                Some(sec1.as_bytes()[1..].to_vec())
            }

            /// The x coordinate of d*Q after checking that Q (x || y) is on the curve.
            pub(super) fn shared(
                private: &[u8],
                peer: &[u8],
            ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
                let mut sec1 = Vec::with_capacity(peer.len() + 1);
                sec1.push(0x04);
                sec1.extend_from_slice(peer);
                // Rejects points not on the curve and the identity.
                let pk = PublicKey::<C>::from_sec1_bytes(&sec1)
                    .map_err(|_| CryptoError::InvalidPublicValue)?;
                let s = scalar(private).expect("our own scalar is valid");
                let shared = elliptic_curve::ecdh::diffie_hellman(s, pk.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    };
}

ecp_ops!(ecp256, p256::NistP256);
ecp_ops!(ecp384, p384::NistP384);
ecp_ops!(ecp521, p521::NistP521);

/// Curve25519 (RFC 7748, RFC 8031) with ring's X25519. ring draws an X25519 private
/// key from its own sealed RNG type only, so our 32 random octets (from the injected
/// RNG) reach it through ring's fixed-output RNG; the private key is those octets,
/// clamped by ring as RFC 7748 §5 says, so the same octets give the same key each time.
mod x25519 {
    use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use zeroize::Zeroizing;

    use crate::crypto::CryptoError;

    fn key(private: &[u8]) -> Option<EphemeralPrivateKey> {
        if private.len() != 32 {
            return None;
        }
        #[allow(deprecated)]
        let rng = ring::test::rand::FixedSliceRandom { bytes: private };
        EphemeralPrivateKey::generate(&X25519, &rng).ok()
    }

    /// The public value (32 octets, RFC 8031 §2).
    pub(super) fn public(private: &[u8]) -> Option<Vec<u8>> {
        Some(key(private)?.compute_public_key().ok()?.as_ref().to_vec())
    }

    /// The shared secret; ring refuses an all-zero result (a low-order peer value,
    /// which RFC 8031 §2.3 says to refuse).
    pub(super) fn shared(private: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let k = key(private).ok_or(CryptoError::InvalidPublicValue)?;
        agreement::agree_ephemeral(k, &UnparsedPublicKey::new(&X25519, peer), |z| {
            Zeroizing::new(z.to_vec())
        })
        .map_err(|_| CryptoError::InvalidPublicValue)
    }
}

impl DhKeyPair {
    /// A fresh key pair for `group`. MODP: a random exponent of
    /// `modp_exponent_bits(group)` bits (top bit set); ECP: a random nonzero scalar.
    pub fn generate(group: DhGroup, rng: &mut dyn Rng) -> DhKeyPair {
        let private = match group {
            DhGroup::Ecp256 => ecp256::random_scalar(rng),
            DhGroup::Ecp384 => ecp384::random_scalar(rng),
            DhGroup::Ecp521 => ecp521::random_scalar(rng),
            DhGroup::Curve25519 => {
                let mut x = Zeroizing::new(vec![0u8; 32]);
                rng.fill_bytes(&mut x);
                x
            }
            _ => {
                let mut x = Zeroizing::new(vec![0u8; modp_exponent_bits(group) / 8]);
                rng.fill_bytes(&mut x);
                // Fix the length (and so x >= 2^(bits-1) > 1).
                x[0] |= 0x80;
                x
            }
        };
        Self::from_private(group, private).expect("freshly generated private value is valid")
    }

    /// The key pair for a given private value (MODP: big-endian exponent of any
    /// length > 0; ECP: big-endian scalar of the field length, nonzero, below the
    /// order). `None` if the value is not usable.
    fn from_private(group: DhGroup, private: Zeroizing<Vec<u8>>) -> Option<DhKeyPair> {
        let public = match group {
            DhGroup::Ecp256 => ecp256::public(&private)?,
            DhGroup::Ecp384 => ecp384::public(&private)?,
            DhGroup::Ecp521 => ecp521::public(&private)?,
            DhGroup::Curve25519 => x25519::public(&private)?,
            _ => {
                let p = BigUint::from_bytes_be(modp_prime(group)?);
                let x = BigUint::from_bytes_be(&private);
                if x < BigUint::from(2u8) {
                    return None;
                }
                let y = BigUint::from(2u8).modpow(&x, &p);
                to_padded(&y, group.public_len()).to_vec()
            }
        };
        debug_assert_eq!(public.len(), group.public_len());
        Some(DhKeyPair {
            group,
            private,
            public,
        })
    }

    /// A key pair from a fixed private value, for known-answer tests.
    #[cfg(test)]
    pub(crate) fn from_private_for_test(group: DhGroup, private: &[u8]) -> Option<DhKeyPair> {
        Self::from_private(group, Zeroizing::new(private.to_vec()))
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// Public value as it goes into the KE payload: MODP big-endian padded to the
    /// group length; ECP x || y (RFC 5903 §7, no 0x04 prefix).
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// Validates the peer's public value and returns g^xy.
    ///
    /// MODP: the value must be exactly the group length and 1 < y < p-1; the result
    /// is padded to the group length. ECP: exactly x || y of the group length, a point
    /// on the curve and not the identity; the result is the x coordinate only
    /// (RFC 5903 §7, as IKEv1 uses it).
    pub fn shared_secret(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if peer_public.len() != self.group.public_len() {
            return Err(CryptoError::InvalidPublicValue);
        }
        match self.group {
            DhGroup::Ecp256 => ecp256::shared(&self.private, peer_public),
            DhGroup::Ecp384 => ecp384::shared(&self.private, peer_public),
            DhGroup::Ecp521 => ecp521::shared(&self.private, peer_public),
            DhGroup::Curve25519 => x25519::shared(&self.private, peer_public),
            group => {
                let p = BigUint::from_bytes_be(modp_prime(group).expect("MODP group"));
                let y = BigUint::from_bytes_be(peer_public);
                let one = BigUint::from(1u8);
                if y <= one || y >= &p - &one {
                    return Err(CryptoError::InvalidPublicValue);
                }
                let x = BigUint::from_bytes_be(&self.private);
                let z = y.modpow(&x, &p);
                // Cannot happen for 1 < y < p-1 with a safe prime and x < q, but a
                // result of 1 would leak nothing secret: refuse it all the same.
                if z == one {
                    return Err(CryptoError::InvalidPublicValue);
                }
                Ok(to_padded(&z, group.public_len()))
            }
        }
    }
}
