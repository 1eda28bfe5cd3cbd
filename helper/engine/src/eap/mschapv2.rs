//! The MS-CHAPv2 computations (RFC 2759 §8) and the MPPE key derivation that gives
//! EAP-MSCHAPv2 its MSK (RFC 3079 §3). Pure functions; the password is UTF-8 here and
//! hashed as UTF-16LE as Windows does.

use ::cbc::cipher::{Block, BlockCipherEncrypt, KeyInit};
use md4::Md4;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

/// RFC 2759 §8.7: the two constants of the authenticator response.
const SERVER_SIGNING: &[u8] = b"Magic server to client signing constant";
const ONE_MORE_ITERATION: &[u8] = b"Pad to make it do more than one iteration";
/// RFC 3079 §3.4: the master key's constant and the asymmetric start keys' ones.
const MASTER_KEY: &[u8] = b"This is the MPPE Master Key";
const CLIENT_SEND: &[u8] =
    b"On the client side, this is the send key; on the server side, it is the receive key.";
const CLIENT_RECEIVE: &[u8] =
    b"On the client side, this is the receive key; on the server side, it is the send key.";

/// NtPasswordHash: MD4 of the password in UTF-16LE.
pub fn nt_password_hash(password: &str) -> Zeroizing<[u8; 16]> {
    let mut md = Md4::new();
    for unit in password.encode_utf16() {
        md.update(unit.to_le_bytes());
    }
    Zeroizing::new(md.finalize().into())
}

/// HashNtPasswordHash: MD4 of the hash.
fn hash_hash(hash: &[u8; 16]) -> Zeroizing<[u8; 16]> {
    Zeroizing::new(Md4::digest(hash).into())
}

/// ChallengeHash: the first 8 bytes of SHA1(peer challenge | authenticator
/// challenge | user name). The user name is without a Windows domain.
pub fn challenge_hash(peer: &[u8; 16], authenticator: &[u8; 16], user: &[u8]) -> [u8; 8] {
    let d = Sha1::new()
        .chain_update(peer)
        .chain_update(authenticator)
        .chain_update(user)
        .finalize();
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

/// 7 key bytes spread over the 8 bytes of a DES key (the parity bits, the lowest of
/// each byte, are left 0: DES ignores them).
fn des_key(seven: &[u8]) -> [u8; 8] {
    let mut k = [0u8; 8];
    let mut bits: u64 = 0;
    for b in seven {
        bits = (bits << 8) | u64::from(*b);
    }
    for (i, out) in k.iter_mut().enumerate() {
        *out = (((bits >> (49 - 7 * i)) & 0x7f) as u8) << 1;
    }
    k
}

/// ChallengeResponse: the 8-byte challenge DES-encrypted under the three keys cut
/// from the password hash padded to 21 bytes.
fn challenge_response(challenge: &[u8; 8], hash: &[u8; 16]) -> [u8; 24] {
    let mut z = Zeroizing::new([0u8; 21]);
    z[..16].copy_from_slice(hash);
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let key = Zeroizing::new(des_key(&z[7 * i..7 * i + 7]));
        let cipher = des::Des::new(&(*key).into());
        let mut block = Block::<des::Des>::from(*challenge);
        cipher.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    out
}

/// GenerateNTResponse (RFC 2759 §8.1).
pub fn nt_response(
    authenticator: &[u8; 16],
    peer: &[u8; 16],
    user: &[u8],
    password: &str,
) -> [u8; 24] {
    let c = challenge_hash(peer, authenticator, user);
    challenge_response(&c, &nt_password_hash(password))
}

/// GenerateAuthenticatorResponse (RFC 2759 §8.7): the 20 bytes the authenticator
/// proves it knows the password with (sent as "S=" and 40 upper-case hex digits).
pub fn authenticator_response(
    password: &str,
    nt_response: &[u8; 24],
    peer: &[u8; 16],
    authenticator: &[u8; 16],
    user: &[u8],
) -> [u8; 20] {
    let hh = hash_hash(&nt_password_hash(password));
    let digest = Sha1::new()
        .chain_update(*hh)
        .chain_update(nt_response)
        .chain_update(SERVER_SIGNING)
        .finalize();
    let challenge = challenge_hash(peer, authenticator, user);
    Sha1::new()
        .chain_update(digest)
        .chain_update(challenge)
        .chain_update(ONE_MORE_ITERATION)
        .finalize()
        .into()
}

/// GetMasterKey (RFC 3079 §3.4).
fn master_key(password: &str, nt_response: &[u8; 24]) -> Zeroizing<[u8; 16]> {
    let hh = hash_hash(&nt_password_hash(password));
    let d = Zeroizing::new(
        Sha1::new()
            .chain_update(*hh)
            .chain_update(nt_response)
            .chain_update(MASTER_KEY)
            .finalize(),
    );
    let mut k = Zeroizing::new([0u8; 16]);
    k.copy_from_slice(&d[..16]);
    k
}

/// GetAsymmetricStartKey (RFC 3079 §3.4), 16 bytes, for the given constant.
fn start_key(master: &[u8; 16], magic: &[u8]) -> Zeroizing<[u8; 16]> {
    let d = Zeroizing::new(
        Sha1::new()
            .chain_update(master)
            .chain_update([0u8; 40])
            .chain_update(magic)
            .chain_update([0xf2u8; 40])
            .finalize(),
    );
    let mut k = Zeroizing::new([0u8; 16]);
    k.copy_from_slice(&d[..16]);
    k
}

/// The MSK of EAP-MSCHAPv2 (64 bytes): the client's send key (the server's
/// MasterReceiveKey), then its receive key (the server's MasterSendKey), as RFC 3079
/// derives them, then 32 zero bytes: strongSwan's eap_mschapv2 layout (and hostapd's
/// first 32 bytes). IKEv2 uses it as the AUTH secret (RFC 7296 §2.16); as an HMAC
/// key the zero tail changes nothing, but the length is strongSwan's.
pub fn msk(password: &str, nt_response: &[u8; 24]) -> Zeroizing<Vec<u8>> {
    let mk = master_key(password, nt_response);
    let mut out = Zeroizing::new(Vec::with_capacity(64));
    out.extend_from_slice(&*start_key(&mk, CLIENT_SEND));
    out.extend_from_slice(&*start_key(&mk, CLIENT_RECEIVE));
    out.extend_from_slice(&[0u8; 32]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    // RFC 2759 §9.2, "Sample MS-CHAPv2 response".
    const USER: &[u8] = b"User";
    const PASSWORD: &str = "clientPass";
    const AUTH_CHALLENGE: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
    const PEER_CHALLENGE: &str = "21402324255E262A28295F2B3A337C7E";

    #[test]
    fn rfc2759_sample() {
        let (a, p) = (arr::<16>(AUTH_CHALLENGE), arr::<16>(PEER_CHALLENGE));
        assert_eq!(challenge_hash(&p, &a, USER), arr::<8>("D02E4386BCE91226"));
        assert_eq!(
            *nt_password_hash(PASSWORD),
            arr::<16>("44EBBA8D5312B8D611474411F56989AE")
        );
        assert_eq!(
            *hash_hash(&nt_password_hash(PASSWORD)),
            arr::<16>("41C00C584BD2D91C4017A2A12FA59F3F")
        );
        let nt = nt_response(&a, &p, USER, PASSWORD);
        assert_eq!(
            nt,
            arr::<24>("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
        );
        let s = authenticator_response(PASSWORD, &nt, &p, &a, USER);
        assert_eq!(s, arr::<20>("407A5589115FD0D6209F510FE9C04566932CDA56"));
    }

    #[test]
    fn the_msk_is_two_different_halves_bound_to_the_response() {
        let (a, p) = (arr::<16>(AUTH_CHALLENGE), arr::<16>(PEER_CHALLENGE));
        let nt = nt_response(&a, &p, USER, PASSWORD);
        let k = msk(PASSWORD, &nt);
        assert_eq!(k.len(), 64);
        assert_ne!(k[..16], k[16..32]);
        assert_eq!(k[32..], [0u8; 32]);
        let mut other = nt;
        other[0] ^= 1;
        assert_ne!(*msk(PASSWORD, &other), *k);
    }

    #[test]
    fn des_keys_spread_seven_bytes() {
        assert_eq!(des_key(&[0xff; 7]), [0xfe; 8]);
        assert_eq!(des_key(&[0; 7]), [0; 8]);
        assert_eq!(
            des_key(&h("80 00 00 00 00 00 01")),
            arr::<8>("8000000000000002")
        );
    }

    #[test]
    fn unicode_passwords_hash_as_utf16() {
        assert_ne!(*nt_password_hash("pässword"), *nt_password_hash("passwprd"));
        assert_eq!(
            *nt_password_hash(""),
            arr::<16>("31D6CFE0D16AE931B73C59D7E0C089C0")
        );
    }
}
