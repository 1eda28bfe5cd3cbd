//! The IKEv2-only proposals in a profile: accepted with `ike_version = 2`, refused
//! for IKEv1 at their line in one sentence, written back as they were read.

use postern_algs::algs::{DhGroup, HashAlg, IkeCipher};
use postern_dbus::profile::*;

const HEAD: &str = "name = \"x\"\ngateway = \"vpn.example.com\"\n"; // lines 1-2

fn parse(text: &str) -> Result<Profile, ProfileError> {
    Profile::from_toml_str(text, "t.toml", SecretPolicy::AllowIfPrivate)
}

#[test]
fn ikev2_only_proposals_need_ike_version_2() {
    let body = "[phase1]\nproposals = [\"aes256gcm16-prfsha384-x25519\", \"aes128-sha256-ecp521\"]\n[phase2]\nproposals = [\"aes256gcm16-x25519\"]\n";
    let p = parse(&format!("{HEAD}ike_version = 2\n{body}")).unwrap();
    let ike = p.phase1.proposals[0];
    assert_eq!(
        ike.cipher,
        IkeCipher::AesGcm {
            key_bits: 256,
            icv: 16
        }
    );
    assert_eq!(ike.hash, HashAlg::Sha384);
    assert_eq!(ike.group, DhGroup::Curve25519);
    assert_eq!(p.phase1.proposals[1].group, DhGroup::Ecp521);
    assert_eq!(p.phase2.proposals[0].group, Some(DhGroup::Curve25519));
    // Written out and read again: the same proposals.
    let text = p.to_toml_string();
    assert!(text.contains("aes256gcm16-prfsha384-curve25519"), "{text}");
    let again = parse(&text).unwrap();
    assert_eq!(again.phase1.proposals, p.phase1.proposals);
    assert_eq!(again.phase2.proposals, p.phase2.proposals);

    // IKEv1: refused at the proposal's line, in one sentence.
    let e = parse(&format!("{HEAD}{body}")).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert_eq!(e.key.as_deref(), Some("phase1.proposals[0]"));
    assert!(
        e.message
            .contains("'aes256gcm16-prfsha384-x25519' is an IKEv2-only proposal"),
        "{e}"
    );
    let e = parse(&format!(
        "{HEAD}[phase2]\nproposals = [\"aes128gcm16-curve25519\"]\n"
    ))
    .unwrap_err();
    assert!(e.message.contains("is an IKEv2-only proposal"), "{e}");
    let e = parse(&format!("{HEAD}[phase2]\npfs = \"x25519\"\n")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("phase2.pfs"));
    assert!(e.message.contains("IKEv2-only DH group"), "{e}");
    // ecp521 and CBC are IKEv1's as well.
    let p = parse(&format!(
        "{HEAD}[phase1]\nproposals = [\"aes128-sha256-ecp521\"]\n"
    ))
    .unwrap();
    assert_eq!(p.phase1.proposals[0].group, DhGroup::Ecp521);
    let p = parse(&format!(
        "{HEAD}ike_version = 2\n[phase2]\npfs = \"curve25519\"\n"
    ))
    .unwrap();
    assert_eq!(p.phase2.pfs, Some(DhGroup::Curve25519));
}
