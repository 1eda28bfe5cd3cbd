//! Known-answer and property tests for the crypto suite.

use rand_core::SeedableRng;
use zeroize::Zeroizing;

use super::*;
use crate::algs::{DhGroup, HashAlg, IkeCipher};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("test hex")
}

fn rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------
// HMAC (the IKEv1 prf) and hashes
// ---------------------------------------------------------------------------

const HI_THERE: &[u8] = b"Hi There";
const JEFE: &[u8] = b"Jefe";
const JEFE_DATA: &[u8] = b"what do ya want for nothing?";
const BIG_KEY_DATA: &[u8] = b"Test Using Larger Than Block-Size Key - Hash Key First";

/// RFC 2202 §2 (HMAC-MD5) test cases 1, 2 and 6.
#[test]
fn hmac_md5_rfc2202() {
    assert_eq!(
        prf(HashAlg::Md5, &[0x0b; 16], &[HI_THERE]),
        h("9294727a3638bb1c13f48ef8158bfc9d")
    );
    assert_eq!(
        prf(HashAlg::Md5, JEFE, &[JEFE_DATA]),
        h("750c783e6ab0b503eaa86e310a5db738")
    );
    assert_eq!(
        prf(HashAlg::Md5, &[0xaa; 80], &[BIG_KEY_DATA]),
        h("6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd")
    );
}

/// RFC 2202 §3 (HMAC-SHA-1) test cases 1, 2 and 6.
#[test]
fn hmac_sha1_rfc2202() {
    assert_eq!(
        prf(HashAlg::Sha1, &[0x0b; 20], &[HI_THERE]),
        h("b617318655057264e28bc0b6fb378c8ef146be00")
    );
    assert_eq!(
        prf(HashAlg::Sha1, JEFE, &[JEFE_DATA]),
        h("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    );
    assert_eq!(
        prf(HashAlg::Sha1, &[0xaa; 80], &[BIG_KEY_DATA]),
        h("aa4ae5e15272d00e95705637ce8a3b55ed402112")
    );
}

/// RFC 4231 §4.2 and §4.3 (test cases 1 and 2) for HMAC-SHA-256/384/512.
#[test]
fn hmac_sha2_rfc4231() {
    let cases = [
        (
            HashAlg::Sha256,
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            HashAlg::Sha384,
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
             faea9ea9076ede7f4af152e8b2fa9cb6",
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            HashAlg::Sha512,
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ];
    for (alg, tc1, tc2) in cases {
        assert_eq!(prf(alg, &[0x0b; 20], &[HI_THERE]), h(tc1), "{alg:?} tc1");
        assert_eq!(prf(alg, JEFE, &[JEFE_DATA]), h(tc2), "{alg:?} tc2");
        assert_eq!(prf(alg, JEFE, &[JEFE_DATA]).len(), alg.output_len());
    }
}

/// The parts are concatenated: splitting the data anywhere gives the same MAC.
#[test]
fn prf_and_hash_concatenate_parts() {
    for alg in [
        HashAlg::Md5,
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ] {
        assert_eq!(
            prf(alg, JEFE, &[b"what do ya", b"", b" want for nothing?"]),
            prf(alg, JEFE, &[JEFE_DATA])
        );
        assert_eq!(hash(alg, &[b"a", b"bc"]), hash(alg, &[b"abc"]));
        assert_eq!(hash(alg, &[b"abc"]).len(), alg.output_len());
    }
}

/// "abc" digests: RFC 1321 appendix A.5 (MD5), FIPS 180-2 appendix B.1 / C.1 /
/// D.1 (SHA-1 in RFC 3174, SHA-256, SHA-384, SHA-512).
#[test]
fn hash_abc_known_answers() {
    assert_eq!(
        hash(HashAlg::Md5, &[b"abc"]),
        h("900150983cd24fb0d6963f7d28e17f72")
    );
    assert_eq!(
        hash(HashAlg::Sha1, &[b"abc"]),
        h("a9993e364706816aba3e25717850c26c9cd0d89d")
    );
    assert_eq!(
        hash(HashAlg::Sha256, &[b"abc"]),
        h("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        hash(HashAlg::Sha384, &[b"abc"]),
        h(
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
           8086072ba1e7cc2358baeca134c825a7"
        )
    );
    assert_eq!(
        hash(HashAlg::Sha512, &[b"abc"]),
        h(
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
           2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        )
    );
}

#[test]
fn ct_eq_compares_contents_and_lengths() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
    assert!(!ct_eq(b"abc", b""));
}

// ---------------------------------------------------------------------------
// CBC
// ---------------------------------------------------------------------------

/// NIST SP 800-38A appendix F.2.1 / F.2.3 / F.2.5 (CBC-AES128/192/256), all four blocks.
#[test]
fn aes_cbc_sp800_38a() {
    let iv = h("000102030405060708090a0b0c0d0e0f");
    let pt = h(
        "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 \
                30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
    );
    let cases = [
        (
            128,
            "2b7e151628aed2a6abf7158809cf4f3c",
            "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2 \
             73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7",
        ),
        (
            192,
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            "4f021db243bc633d7178183a9fa071e8 b4d9ada9ad7dedf4e5e738763f69145a \
             571b242012fb7ae07fa9baac3df102e0 08b0e27988598881d920a9e64f5615cd",
        ),
        (
            256,
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "f58c4c04d6e5f1ba779eabfb5f7bfbd6 9cfc4e967edb808d679f777bc6702c7d \
             39f23369a9d9bacfa530e26304231461 b2eb05e2c39be9fcda6c19078c6a9d1b",
        ),
    ];
    for (bits, key, ct) in cases {
        let c = IkeCipher::AesCbc { key_bits: bits };
        let key = h(key);
        assert_eq!(
            cbc_encrypt(c, &key, &iv, &pt).unwrap(),
            h(ct),
            "aes{bits} encrypt"
        );
        assert_eq!(
            cbc_decrypt(c, &key, &iv, &h(ct)).unwrap(),
            pt,
            "aes{bits} decrypt"
        );
    }
}

/// NIST SP 800-67 Rev. 1 appendix B example (TDEA, three distinct keys). The
/// published plaintext is "The qufck brown fox jump" (sic) and the vector is in ECB
/// mode; CBC with an all-zero IV over one block is exactly ECB, so each block is
/// checked that way, and then all three in CBC mode against OpenSSL's
/// `enc -des-ede3-cbc -nopad` (not a published vector).
#[test]
fn tdes_cbc_sp800_67() {
    let c = IkeCipher::TripleDes;
    let key = h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123");
    let pt = b"The qufck brown fox jump";
    let ecb = h("A826FD8CE53B855F CCE21C8112256FE6 68D5C05DD9B6B900");
    for i in 0..3 {
        let block = &pt[8 * i..8 * i + 8];
        assert_eq!(
            cbc_encrypt(c, &key, &[0; 8], block).unwrap(),
            &ecb[8 * i..8 * i + 8],
            "block {i}"
        );
        assert_eq!(
            cbc_decrypt(c, &key, &[0; 8], &ecb[8 * i..8 * i + 8]).unwrap(),
            block
        );
    }
    let iv = h("F69F2445DF4F9B17");
    let pt = b"The quick brown fox jump";
    let ct = h("63693c3d378a862f8051ae7c2934a296aa6c3102b6e5b79e");
    assert_eq!(cbc_encrypt(c, &key, &iv, pt).unwrap(), ct);
    assert_eq!(cbc_decrypt(c, &key, &iv, &ct).unwrap(), pt);
}

#[test]
fn cbc_rejects_bad_lengths() {
    let aes = IkeCipher::AesCbc { key_bits: 128 };
    assert_eq!(
        cbc_decrypt(aes, &[0; 16], &[0; 16], &[0; 17]),
        Err(CryptoError::BadCiphertextLength(17))
    );
    assert_eq!(
        cbc_encrypt(aes, &[0; 16], &[0; 16], &[0; 8]),
        Err(CryptoError::BadCiphertextLength(8))
    );
    assert_eq!(
        cbc_decrypt(aes, &[0; 24], &[0; 16], &[0; 16]),
        Err(CryptoError::BadKeyLength(24))
    );
    assert_eq!(
        cbc_encrypt(IkeCipher::TripleDes, &[0; 16], &[0; 8], &[0; 8]),
        Err(CryptoError::BadKeyLength(16))
    );
    assert_eq!(
        cbc_decrypt(IkeCipher::TripleDes, &[0; 24], &[0; 8], &[0; 12]),
        Err(CryptoError::BadCiphertextLength(12))
    );
    // An empty message is zero blocks.
    assert_eq!(
        cbc_decrypt(aes, &[0; 16], &[0; 16], &[]).unwrap(),
        Vec::<u8>::new()
    );
}

// ---------------------------------------------------------------------------
// MODP groups
// ---------------------------------------------------------------------------

const MODP_GROUPS: [DhGroup; 8] = [
    DhGroup::Modp768,
    DhGroup::Modp1024,
    DhGroup::Modp1536,
    DhGroup::Modp2048,
    DhGroup::Modp3072,
    DhGroup::Modp4096,
    DhGroup::Modp6144,
    DhGroup::Modp8192,
];

fn prime(group: DhGroup) -> &'static [u8] {
    use super::modp_primes::*;
    match group {
        DhGroup::Modp768 => &MODP_768,
        DhGroup::Modp1024 => &MODP_1024,
        DhGroup::Modp1536 => &MODP_1536,
        DhGroup::Modp2048 => &MODP_2048,
        DhGroup::Modp3072 => &MODP_3072,
        DhGroup::Modp4096 => &MODP_4096,
        DhGroup::Modp6144 => &MODP_6144,
        DhGroup::Modp8192 => &MODP_8192,
        _ => unreachable!(),
    }
}

/// Each prime has the group's length, starts with 2^64-1 followed by the first
/// digits of pi (C90FDAA2 2168C234 ...) and ends with 2^64-1 (RFC 2409 §6, RFC 3526);
/// spot-check the last words before that against the RFC text.
#[test]
fn modp_prime_shapes() {
    let head = h("FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1");
    for g in MODP_GROUPS {
        let p = prime(g);
        assert_eq!(p.len(), g.public_len(), "{g:?}");
        assert_eq!(&p[..head.len()], &head[..], "{g:?}");
        assert_eq!(&p[p.len() - 8..], &[0xff; 8], "{g:?}");
    }
    let tails = [
        (DhGroup::Modp768, "A63A3620"),
        (DhGroup::Modp1024, "ECE65381"),
        (DhGroup::Modp1536, "CA237327"),
        (DhGroup::Modp2048, "15728E5A 8AACAA68"),
        (DhGroup::Modp4096, "34063199"),
    ];
    for (g, tail) in tails {
        let t = h(tail);
        let p = prime(g);
        assert_eq!(&p[p.len() - 8 - t.len()..p.len() - 8], &t[..], "{g:?}");
    }
}

/// Both sides of every MODP group compute the same secret, of the group length.
#[test]
fn modp_pairs_agree() {
    let mut r = rng(1);
    for g in MODP_GROUPS {
        let a = DhKeyPair::generate(g, &mut r);
        let b = DhKeyPair::generate(g, &mut r);
        assert_eq!(a.group(), g);
        assert_eq!(a.public().len(), g.public_len());
        assert_ne!(a.public(), b.public());
        let s1 = a.shared_secret(b.public()).unwrap();
        let s2 = b.shared_secret(a.public()).unwrap();
        assert_eq!(*s1, *s2, "{g:?}");
        assert_eq!(s1.len(), g.public_len());
    }
}

/// A fixed-exponent known answer for group 2; expected values computed with
/// Python's built-in `pow(2, x, p)` (not a published vector).
#[test]
fn modp1024_known_answer() {
    let a = DhKeyPair::from_private_for_test(DhGroup::Modp1024, &[0x1f; 40]).unwrap();
    let b = DhKeyPair::from_private_for_test(DhGroup::Modp1024, &[0x2e; 40]).unwrap();
    assert_eq!(
        a.public(),
        h(
            "f05bab73c04ea6f7ec9676020f762a22253caf1e50d79eafb54fee1cf3676e54006856eb2880943b17e34edefa249fb1\
           c7de350168b9872c3b9f895502f64ff5d0e9a72903b70af8585c9abd44987b6ee39c90e56fba65167707db01246d032b\
           b9c4e3a43e49a5ed19c83cc200e40d7256bee06bffe756b640cdd10a7770eb9f"
        )
    );
    assert_eq!(
        b.public(),
        h(
            "45ded8c20b7537da4bfb3273d375ca14d60573c569372635de974ad7b9a5480977700ba0058bd870e064ab39404caf27\
           d2589bed111d7a7a64c8975cedf9f313938a73e23007065cdaa8beb0dc42a74008090abda3c2b387e1ff25370d001c4b\
           a9a226ada07130bf837f94dcf11c01194597ee372ce0c214eaa5097d16443877"
        )
    );
    let expected = h(
        "f4c869a4a92d582cbcd76803479d4a77986cfc2135696ce8456eefe58cd0268c8a115f9515412ac9cbeddf1c9bbe3967\
                      f5655d68b297bb2070d26c3a1ab67e4962b2c2b79edfaaaac88a7d4b73233c6cfefd129eaa587df3852b6b0a0e66d3a4\
                      dfae86a366a4c484ba768fb9b834831bc0a7ed3bcd10de3729621fbe0a48da43",
    );
    assert_eq!(*a.shared_secret(b.public()).unwrap(), expected);
    assert_eq!(*b.shared_secret(a.public()).unwrap(), expected);
}

/// 0, 1, p-1, p, values above p and values of the wrong length are refused.
#[test]
fn modp_rejects_bad_public_values() {
    let mut r = rng(2);
    for g in [DhGroup::Modp768, DhGroup::Modp2048, DhGroup::Modp8192] {
        let kp = DhKeyPair::generate(g, &mut r);
        let len = g.public_len();
        let p = prime(g).to_vec();
        let mut p_minus_1 = p.clone();
        *p_minus_1.last_mut().unwrap() -= 1;
        let mut one = vec![0u8; len];
        *one.last_mut().unwrap() = 1;
        let bad = [vec![0u8; len], one, p_minus_1, p, vec![0xff; len]];
        for (i, v) in bad.iter().enumerate() {
            assert_eq!(
                kp.shared_secret(v),
                Err(CryptoError::InvalidPublicValue),
                "{g:?} case {i}"
            );
        }
        let good = kp.public().to_vec();
        assert_eq!(
            kp.shared_secret(&good[1..]),
            Err(CryptoError::InvalidPublicValue)
        );
        let mut long = good.clone();
        long.insert(0, 0);
        assert_eq!(
            kp.shared_secret(&long),
            Err(CryptoError::InvalidPublicValue)
        );
        assert_eq!(kp.shared_secret(&[]), Err(CryptoError::InvalidPublicValue));
        // 2 is the generator and a valid public value.
        let mut two = vec![0u8; len];
        *two.last_mut().unwrap() = 2;
        assert!(kp.shared_secret(&two).is_ok());
    }
}

// ---------------------------------------------------------------------------
// ECP groups
// ---------------------------------------------------------------------------

/// (group, i, gix || giy, r, grx || gry, girx).
type EcpVector = (DhGroup, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// RFC 5903 §8.1, §8.2, §8.3.
fn rfc5903_vectors() -> [EcpVector; 3] {
    [
        (
            DhGroup::Ecp256,
            h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433"),
            h(
                "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180 \
               5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
            ),
            h("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53"),
            h(
                "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63 \
               56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
            ),
            h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE"),
        ),
        (
            DhGroup::Ecp384,
            h(
                "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 \
               E35B5380 41E649EE 3FAEF896 783AB194",
            ),
            h(
                "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 \
               DE3AC808 ACB4BDB4 C88732AE E95F41AA \
               9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E \
               EB9FCFF3 C2C947DA E69B4C63 4573A81C",
            ),
            h(
                "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 \
               E0308312 916B8ED2 960E4BD5 5A7448FC",
            ),
            h(
                "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D \
               0D1AC43A 0336DEF9 6FDA41D0 774A3571 \
               DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF \
               F83FA401 42209DFF 5EAAD96D B9E6386C",
            ),
            h(
                "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 \
               D6031355 69B9E9D0 9CF5D4A2 70F59746",
            ),
        ),
        (
            DhGroup::Ecp521,
            h(
                "0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0 \
               95AA85A3 0FE1C295 2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52",
            ),
            h(
                "0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE \
               E1E3BF42 E00B8E38 0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E \
               017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A \
               D8A78801 5AC405D7 799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582",
            ),
            h(
                "0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E \
               9C677D60 0B343757 A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9",
            ),
            h(
                "00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21 \
               9B97C356 436ADC6E 95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F \
               015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87 \
               220B6536 C5C408A1 D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A",
            ),
            h(
                "01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04 \
               D1427E73 CA4BAA24 0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA",
            ),
        ),
    ]
}

/// RFC 5903 §8: given private keys -> published public values (x || y, the KE
/// payload data) and the shared secret (the x coordinate, girx).
#[test]
fn ecp_rfc5903_vectors() {
    for (g, i, gi, r, gr, girx) in rfc5903_vectors() {
        let ki = DhKeyPair::from_private_for_test(g, &i).unwrap();
        let kr = DhKeyPair::from_private_for_test(g, &r).unwrap();
        assert_eq!(ki.public(), &gi[..], "{g:?} gi");
        assert_eq!(kr.public(), &gr[..], "{g:?} gr");
        assert_eq!(*ki.shared_secret(&gr).unwrap(), girx, "{g:?} initiator");
        assert_eq!(*kr.shared_secret(&gi).unwrap(), girx, "{g:?} responder");
    }
}

#[test]
fn ecp_pairs_agree() {
    let mut r = rng(3);
    for g in [DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521] {
        let a = DhKeyPair::generate(g, &mut r);
        let b = DhKeyPair::generate(g, &mut r);
        assert_eq!(a.public().len(), g.public_len());
        assert_ne!(a.public(), b.public());
        let s = a.shared_secret(b.public()).unwrap();
        assert_eq!(*s, *b.shared_secret(a.public()).unwrap(), "{g:?}");
        assert_eq!(s.len(), g.public_len() / 2);
    }
}

/// Off-curve points, the (unencodable) identity, SEC 1 tagged values and wrong
/// lengths are refused.
#[test]
fn ecp_rejects_bad_public_values() {
    for (g, i, _, _, gr, _) in rfc5903_vectors() {
        let kp = DhKeyPair::from_private_for_test(g, &i).unwrap();
        let mut off = gr.clone();
        *off.last_mut().unwrap() ^= 1;
        assert_eq!(
            kp.shared_secret(&off),
            Err(CryptoError::InvalidPublicValue),
            "{g:?} off curve"
        );
        let zero = vec![0u8; g.public_len()];
        assert_eq!(
            kp.shared_secret(&zero),
            Err(CryptoError::InvalidPublicValue),
            "{g:?} zero"
        );
        let mut tagged = vec![0x04];
        tagged.extend_from_slice(&gr);
        assert_eq!(
            kp.shared_secret(&tagged),
            Err(CryptoError::InvalidPublicValue),
            "{g:?} tagged"
        );
        assert_eq!(
            kp.shared_secret(&gr[1..]),
            Err(CryptoError::InvalidPublicValue),
            "{g:?} short"
        );
        assert_eq!(kp.shared_secret(&[]), Err(CryptoError::InvalidPublicValue));
    }
    // A zero scalar is not a private key.
    assert!(DhKeyPair::from_private_for_test(DhGroup::Ecp256, &[0; 32]).is_none());
}

#[test]
fn keypair_debug_hides_private_value() {
    let i = h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433");
    let kp = DhKeyPair::from_private_for_test(DhGroup::Ecp256, &i).unwrap();
    let s = format!("{kp:?}").to_lowercase();
    assert!(!s.contains("c88f01f5") && !s.contains("200"), "{s}");
}

/// The trait object the engine holds accepts a seeded ChaCha; the same seed gives
/// the same key pair.
#[test]
fn generate_is_deterministic_for_a_seed() {
    let mut r1 = rng(9);
    let mut r2 = rng(9);
    let d1: &mut dyn Rng = &mut r1;
    let a = DhKeyPair::generate(DhGroup::Modp2048, d1);
    let b = DhKeyPair::generate(DhGroup::Modp2048, &mut r2);
    assert_eq!(a.public(), b.public());
}

// ---------------------------------------------------------------------------
// Key schedule
// ---------------------------------------------------------------------------
//
// No published IKEv1 phase 1 vector (SKEYID from a PSK, nonces and g^xy) was found,
// so the expected values below were computed independently with Python 3's
// standard `hmac` and `hashlib` modules, following RFC 2409 §5, §5.5 and appendix B
// directly (a 30-line script, kept out of the tree). Inputs are synthetic.

struct Inputs {
    ni: Vec<u8>,
    nr: Vec<u8>,
    g_xy: Vec<u8>,
    g_xi: Vec<u8>,
    g_xr: Vec<u8>,
    cky_i: [u8; 8],
    cky_r: [u8; 8],
    sai_b: Vec<u8>,
    idii_b: Vec<u8>,
    idir_b: Vec<u8>,
}

fn inputs() -> Inputs {
    let seq = |n: usize, mul: usize, add: usize| {
        (0..n)
            .map(|i| ((i * mul + add) & 0xff) as u8)
            .collect::<Vec<u8>>()
    };
    Inputs {
        ni: (0x10..0x30).collect(),
        nr: (0x80..0x98).collect(),
        g_xy: seq(128, 7, 3),
        g_xi: seq(128, 5, 1),
        g_xr: seq(128, 11, 9),
        cky_i: [1, 2, 3, 4, 5, 6, 7, 8],
        cky_r: [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8],
        sai_b: h("00000001000000010000002c01010001"),
        idii_b: h("01000000c0000201"),
        idir_b: h("01000000c6336401"),
    }
}

struct Expected {
    skeyid: &'static str,
    skeyid_d: &'static str,
    skeyid_a: &'static str,
    skeyid_e: &'static str,
    enc_key: &'static str,
    iv: &'static str,
    hash_i: &'static str,
    hash_r: &'static str,
    phase2_iv: &'static str,
}

fn check_schedule(
    prf_alg: HashAlg,
    cipher: IkeCipher,
    skeyid: Zeroizing<Vec<u8>>,
    e: &Expected,
) -> Phase1Keys {
    let x = inputs();
    assert_eq!(*skeyid, h(e.skeyid), "skeyid");
    let k = derive_phase1(
        prf_alg, cipher, skeyid, &x.g_xy, &x.cky_i, &x.cky_r, &x.g_xi, &x.g_xr,
    );
    assert_eq!(*k.skeyid_d, h(e.skeyid_d), "skeyid_d");
    assert_eq!(*k.skeyid_a, h(e.skeyid_a), "skeyid_a");
    assert_eq!(*k.skeyid_e, h(e.skeyid_e), "skeyid_e");
    assert_eq!(*k.enc_key, h(e.enc_key), "enc_key");
    assert_eq!(k.enc_key.len(), cipher.key_len());
    assert_eq!(k.iv, h(e.iv), "iv");
    assert_eq!(k.iv.len(), cipher.block_len());
    let hi = hash_i(
        prf_alg, &k.skeyid, &x.g_xi, &x.g_xr, &x.cky_i, &x.cky_r, &x.sai_b, &x.idii_b,
    );
    assert_eq!(hi, h(e.hash_i), "hash_i");
    let hr = hash_r(
        prf_alg, &k.skeyid, &x.g_xi, &x.g_xr, &x.cky_i, &x.cky_r, &x.sai_b, &x.idir_b,
    );
    assert_eq!(hr, h(e.hash_r), "hash_r");
    let last = h("00112233445566778899aabbccddeeff");
    let p2 = phase2_iv(prf_alg, cipher, &last[..cipher.block_len()], 0x7a3b1c2d);
    assert_eq!(p2, h(e.phase2_iv), "phase2_iv");
    k
}

/// SHA-1 PRF with AES-256: SKEYID_e is 20 bytes, the key needs 32, so the key is
/// extended per appendix B (K1 = prf(SKEYID_e, 0x00), K2 = prf(SKEYID_e, K1)).
#[test]
fn schedule_sha1_psk_aes256_extends_key() {
    let x = inputs();
    let skeyid = skeyid_psk(HashAlg::Sha1, b"postern test psk", &x.ni, &x.nr);
    let k = check_schedule(
        HashAlg::Sha1,
        IkeCipher::AesCbc { key_bits: 256 },
        skeyid,
        &Expected {
            skeyid: "f911a45cfbdc819c3ba4cf3dd7de1b21c626abbe",
            skeyid_d: "016278385873bf530486d13b118ddff2c7cc699a",
            skeyid_a: "9333823e8dee0985cf7060e0bd27ab0c3457890d",
            skeyid_e: "4f60d042cd39903fb75b9a41a04e2d48bd95326d",
            enc_key: "e8da0bca54b07be1d2e845bb1d4d042915334e5cd9b6731429a5a8e9129bc9fd",
            iv: "d118e046b45a29556c9b42bff2eca143",
            hash_i: "014c7757c99d4a4a1b6dd4070d46aea00a1649d5",
            hash_r: "ef7c9a727d5119bb26da218e4d5ff1aba8ea9cee",
            phase2_iv: "aa6918cd5733d742774b4adac398cce9",
        },
    );
    // The extension really is prf(SKEYID_e, 0) | prf(SKEYID_e, K1), not SKEYID_e.
    let k1 = prf(HashAlg::Sha1, &k.skeyid_e, &[&[0]]);
    assert_eq!(&k.enc_key[..20], &k1[..]);
    assert_eq!(
        &k.enc_key[20..],
        &prf(HashAlg::Sha1, &k.skeyid_e, &[&k1])[..12]
    );

    let spi = h("c0ffee01");
    let km = keymat(HashAlg::Sha1, &k.skeyid_d, None, 3, &spi, &x.ni, &x.nr, 64);
    assert_eq!(
        *km,
        h(
            "433b819902c050c6a4bc2c485135c108b3a2428781fc658154583b53f9a8c104\
           aabd6981506c8fa9b30531aa579423d38baf520f325df3e9e0c203ecdc8192e2"
        )
    );
    let g_qm: Vec<u8> = (0..256).map(|i| ((i * 13 + 5) & 0xff) as u8).collect();
    let km = keymat(
        HashAlg::Sha1,
        &k.skeyid_d,
        Some(&g_qm),
        3,
        &spi,
        &x.ni,
        &x.nr,
        72,
    );
    assert_eq!(
        *km,
        h(
            "dd5bb5b1a5e2353aed13b3e30a1fbb8dfbdbacf7bd25ccf7b2a819d2f963a945\
           d2fe393dfdaadbf7c8d15051f4a8807225a5e9c2a522f6ef04dd8d102d269732\
           5f4bdd1451332069"
        )
    );
}

/// MD5 PRF, signature SKEYID, 3DES: a 16-byte SKEYID_e extended to 24 bytes.
#[test]
fn schedule_md5_sig_3des_extends_key() {
    let x = inputs();
    let skeyid = skeyid_sig(HashAlg::Md5, &x.ni, &x.nr, &x.g_xy);
    let k = check_schedule(
        HashAlg::Md5,
        IkeCipher::TripleDes,
        skeyid,
        &Expected {
            skeyid: "645c2c3089a1c44ec1a06f0e210ffdec",
            skeyid_d: "741c23c50c5b1ae3d1f98cc8fa42782b",
            skeyid_a: "0366de91d2c5947bcfb69bc1127864f9",
            skeyid_e: "f89cc20e236cfb1de9726131a14b1c5b",
            enc_key: "b7b4fc84d5c88e7038abaae08935f00c4b28da2864a81548",
            iv: "a5cb9c91bc84a994",
            hash_i: "82adb3904c3147902956550757137b16",
            hash_r: "585e28df37b54b8a1f177a93ad82a4dd",
            phase2_iv: "d85d27c22c6ba839",
        },
    );
    let km = keymat(
        HashAlg::Md5,
        &k.skeyid_d,
        None,
        3,
        &h("deadbeef"),
        &x.ni,
        &x.nr,
        40,
    );
    assert_eq!(
        *km,
        h("59f0e140647d0821b8a1bf829d4cd654ccc0809fd378390ae21d705a0402c2fd4286df7f9b7aeab0")
    );
}

/// SHA-256 PRF with AES-128: SKEYID_e is long enough and is truncated, not extended.
#[test]
fn schedule_sha256_psk_aes128_truncates_key() {
    let x = inputs();
    let skeyid = skeyid_psk(HashAlg::Sha256, b"postern test psk", &x.ni, &x.nr);
    let k = check_schedule(
        HashAlg::Sha256,
        IkeCipher::AesCbc { key_bits: 128 },
        skeyid,
        &Expected {
            skeyid: "edd869e6e7efe2e33d046761d073919447b44a6da6caf7168630a9e044443358",
            skeyid_d: "06310ec7c1892e3d12b0f0bdffa41c51176dcf7eaa4a99e1cfd93ed5b7c129e7",
            skeyid_a: "d4c18b97b6f4cf1514051bb2569cf39422aa01f86daaabcb5997e5548eb948ba",
            skeyid_e: "569a5f9dc1ac89569c393738e31c2791b304843793591072c6d1ba6411bf190a",
            enc_key: "569a5f9dc1ac89569c393738e31c2791",
            iv: "b78d31348d9fbb45b50132c1b586eb8c",
            hash_i: "3723517e2ec0d2c027a3db7f98c9ba1c5cdcad67e3649e6f0feb2aec08926a1d",
            hash_r: "b64b973bc44b3234225bb3b4391c211724cfb0cbe3701297c36041945f49dac3",
            phase2_iv: "f917ebad01fe4f8b8c4d40b08488b792",
        },
    );
    let km = keymat(
        HashAlg::Sha256,
        &k.skeyid_d,
        None,
        3,
        &h("c0ffee01"),
        &x.ni,
        &x.nr,
        20,
    );
    assert_eq!(*km, h("83114cefdcf48d5f74d89f4ffeb7b38240b169b8"));
    assert!(
        keymat(
            HashAlg::Sha256,
            &k.skeyid_d,
            None,
            3,
            &h("c0ffee01"),
            &x.ni,
            &x.nr,
            0
        )
        .is_empty()
    );
}

#[test]
fn phase1_keys_debug_hides_secrets() {
    let x = inputs();
    let skeyid = skeyid_psk(HashAlg::Sha1, b"postern test psk", &x.ni, &x.nr);
    let k = derive_phase1(
        HashAlg::Sha1,
        IkeCipher::TripleDes,
        skeyid,
        &x.g_xy,
        &x.cky_i,
        &x.cky_r,
        &x.g_xi,
        &x.g_xr,
    );
    let s = format!("{k:?}");
    assert!(
        !s.contains("249") && !s.to_lowercase().contains("f911a45c"),
        "{s}"
    );
}
