//! Contract 1 (the profile) from the outside: fixtures, defaults, every refusal with its
//! line, the file permission check and the export round trip.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use postern_algs::algs::{
    DhGroup, EspAuth, EspCipher, EspProposal, HashAlg, IkeCipher, IkeProposal,
};
use postern_algs::proposal::{parse_esp, parse_ike};
use postern_dbus::profile::*;

const OFFICE: &str = include_str!("fixtures/office.toml");
const MINIMAL: &str = include_str!("fixtures/minimal.toml");
const EVERYTHING: &str = include_str!("fixtures/everything.toml");

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn parse(text: &str) -> Profile {
    Profile::from_toml_str(text, "t.toml", SecretPolicy::AllowIfPrivate)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn refuse(text: &str) -> ProfileError {
    refuse_with(text, SecretPolicy::AllowIfPrivate)
}

fn refuse_with(text: &str, policy: SecretPolicy) -> ProfileError {
    match Profile::from_toml_str(text, "t.toml", policy) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e,
    }
}

/// Checks line, key and kind, and that the message contains `msg`.
#[track_caller]
fn check(e: &ProfileError, line: usize, key: &str, kind: ProfileErrorKind, msg: &str) {
    assert_eq!(e.origin, "t.toml", "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert_eq!(e.kind, kind, "{e}");
    assert!(e.message.contains(msg), "{e:?} lacks {msg:?}");
    assert_eq!(
        e.to_string(),
        format!("t.toml:{line}: {key}: {}", e.message)
    );
}

const HEAD: &str = "name = \"x\"\ngateway = \"vpn.example.com\"\n"; // lines 1-2

// ------------------------------------------------------------------------------------
// Accepted profiles
// ------------------------------------------------------------------------------------

#[test]
fn design_example() {
    let p = parse(OFFICE);
    assert_eq!(p.name, "Office");
    assert_eq!(p.gateway, "vpn.example.com");
    assert_eq!(p.exchange_mode, ExchangeMode::Main);
    assert_eq!(p.auth.method, AuthMethod::Psk);
    assert_eq!(
        p.auth.local_id,
        Some(Identity::Fqdn("laptop.example.com".into()))
    );
    assert_eq!(
        p.auth.remote_id,
        Some(Identity::Address("203.0.113.1".parse().unwrap()))
    );
    assert_eq!(p.auth.psk.as_ref().map(Secret::expose), Some("..."));
    assert_eq!(
        (&p.auth.ca, &p.auth.cert, &p.auth.key),
        (&None, &None, &None)
    );
    let x = p.xauth.as_ref().unwrap();
    assert_eq!(x.username, "alice");
    assert!(x.password.is_none());
    assert_eq!(
        p.phase1.proposals,
        vec![
            IkeProposal {
                cipher: IkeCipher::AesCbc { key_bits: 256 },
                hash: HashAlg::Sha256,
                group: DhGroup::Modp2048
            },
            IkeProposal {
                cipher: IkeCipher::AesCbc { key_bits: 128 },
                hash: HashAlg::Sha1,
                group: DhGroup::Modp1024
            },
            IkeProposal {
                cipher: IkeCipher::TripleDes,
                hash: HashAlg::Sha1,
                group: DhGroup::Modp1024
            },
        ]
    );
    assert_eq!(p.phase1.lifetime, secs(8 * 3600));
    // pfs = modp2048 applies to every proposal that names no group.
    let g = Some(DhGroup::Modp2048);
    assert_eq!(
        p.phase2.proposals,
        vec![
            EspProposal {
                cipher: EspCipher::AesCbc { key_bits: 256 },
                auth: Some(EspAuth::HmacSha256_128),
                group: g
            },
            EspProposal {
                cipher: EspCipher::AesGcm16 { key_bits: 128 },
                auth: None,
                group: g
            },
            EspProposal {
                cipher: EspCipher::TripleDes,
                auth: Some(EspAuth::HmacSha1_96),
                group: g
            },
        ]
    );
    assert_eq!(p.phase2.pfs, g);
    assert_eq!(p.phase2.lifetime, secs(3600));
    assert_eq!(p.phase2.mode, EncapMode::Tunnel);
    assert_eq!(
        p.phase2.remote_networks,
        vec!["10.77.0.0/24".parse::<Subnet>().unwrap()]
    );
    assert!(p.phase2.local_networks.is_empty());
    assert_eq!(p.network.mode_config, ModeConfig::Pull);
    assert_eq!(p.network.virtual_ip, Some(Ipv4Addr::new(10, 200, 0, 5)));
    assert_eq!(p.network.nat_traversal, NatTraversal::Auto);
    assert_eq!(
        p.network.dpd,
        Some(Dpd {
            interval: secs(30),
            timeout: secs(150)
        })
    );
    assert_eq!(p.network.datapath, Datapath::Auto);
    assert_eq!(p.network.dns, DnsMode::Split);
    assert!(p.has_secrets());
}

#[test]
fn every_default() {
    let p = parse(MINIMAL);
    assert_eq!(p.name, "Minimal");
    assert_eq!(p.gateway, "192.0.2.10");
    assert_eq!(p, Profile::new("Minimal", "192.0.2.10"));
    assert_eq!(p.exchange_mode, ExchangeMode::Main);
    assert_eq!(p.auth.method, AuthMethod::Psk);
    assert_eq!(p.auth.local_id, None);
    assert_eq!(p.auth.remote_id, None);
    assert!(
        p.auth.psk.is_none()
            && p.auth.ca.is_none()
            && p.auth.cert.is_none()
            && p.auth.key.is_none()
    );
    assert!(p.xauth.is_none());
    let ike: Vec<_> = [
        "aes256-sha256-modp2048",
        "aes128-sha1-modp2048",
        "aes128-sha1-modp1024",
        "3des-sha1-modp1024",
    ]
    .iter()
    .map(|s| parse_ike(s).unwrap())
    .collect();
    assert_eq!(p.phase1.proposals, ike);
    assert_eq!(p.phase1.lifetime, secs(8 * 3600));
    let esp: Vec<_> = ["aes256-sha256", "aes128-sha1", "aes128gcm16", "3des-sha1"]
        .iter()
        .map(|s| parse_esp(s).unwrap())
        .collect();
    assert_eq!(p.phase2.proposals, esp);
    assert!(p.phase2.proposals.iter().all(|p| p.group.is_none()));
    assert_eq!(p.phase2.pfs, None);
    assert_eq!(p.phase2.lifetime, secs(3600));
    assert_eq!(p.phase2.lifetime_kb, None);
    assert_eq!(p.phase2.mode, EncapMode::Tunnel);
    assert!(p.phase2.local_networks.is_empty() && p.phase2.remote_networks.is_empty());
    assert_eq!(p.network.mode_config, ModeConfig::Pull);
    assert_eq!(p.network.virtual_ip, None);
    assert_eq!(p.network.nat_traversal, NatTraversal::Auto);
    assert_eq!(
        p.network.dpd,
        Some(Dpd {
            interval: secs(30),
            timeout: secs(150)
        })
    );
    assert_eq!(p.network.datapath, Datapath::Auto);
    assert_eq!(p.network.dns, DnsMode::Split);
    assert_eq!(
        p.network.retransmit,
        Retransmit {
            tries: 5,
            base: secs(1),
            cap: secs(20)
        }
    );
    assert!(!p.has_secrets());
    // Under Forbid too.
    assert_eq!(
        Profile::from_toml_str(MINIMAL, "m", SecretPolicy::Forbid).unwrap(),
        p
    );
}

#[test]
fn every_key_changed() {
    let p = parse(EVERYTHING);
    assert_eq!(p.name, "Branch office (ä)");
    assert_eq!(p.gateway, "2001:db8::443");
    assert_eq!(p.exchange_mode, ExchangeMode::Aggressive);
    assert_eq!(p.autoconnect, Autoconnect::Login);
    assert_eq!(p.auth.method, AuthMethod::Hybrid);
    assert_eq!(p.auth.local_id, Some(Identity::KeyId(vec![10, 11, 12])));
    assert_eq!(
        p.auth.remote_id,
        Some(Identity::Dn("CN=gw.example.com, O=Example".into()))
    );
    assert_eq!(p.auth.ca.as_deref(), Some("/etc/postern/ca.pem"));
    assert_eq!(p.auth.cert.as_deref(), Some("/etc/postern/me.pem"));
    assert_eq!(p.auth.key.as_deref(), Some("/etc/postern/me.key"));
    assert_eq!(p.xauth.as_ref().unwrap().username, "bob");
    assert_eq!(
        p.phase1
            .proposals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "aes128-sha256-ecp256",
            "aes256-sha512-modp4096",
            "aes128-md5-modp768"
        ]
    );
    assert_eq!(p.phase1.lifetime, secs(5400));
    // Explicit groups win over pfs.
    assert_eq!(
        p.phase2
            .proposals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "aes256gcm16-ecp384",
            "aes128-sha1-modp1024",
            "null-sha512-ecp384"
        ]
    );
    assert_eq!(p.phase2.pfs, Some(DhGroup::Ecp384));
    assert_eq!(p.phase2.lifetime, secs(1800));
    assert_eq!(p.phase2.lifetime_kb, Some(4_194_304));
    assert_eq!(
        p.phase2.local_networks,
        vec!["10.200.0.0/16".parse().unwrap()]
    );
    assert_eq!(
        p.phase2.remote_networks,
        vec![
            Subnet {
                addr: "10.77.0.0".parse().unwrap(),
                prefix: 24
            },
            Subnet {
                addr: "192.0.2.5".parse().unwrap(),
                prefix: 32
            },
            Subnet {
                addr: "2001:db8:77::".parse::<IpAddr>().unwrap(),
                prefix: 48
            },
        ]
    );
    assert_eq!(p.network.mode_config, ModeConfig::Push);
    assert_eq!(p.network.nat_traversal, NatTraversal::Force);
    assert_eq!(p.network.dpd, None);
    assert_eq!(p.network.datapath, Datapath::Userspace);
    assert_eq!(p.network.dns, DnsMode::Full);
    assert_eq!(p.network.on_suspend, OnSuspend::Disconnect);
    assert_eq!(p.network.check_host, Some(Ipv4Addr::new(10, 77, 0, 10)));
    assert_eq!(p.network.check_domain.as_deref(), Some("corp.example"));
    assert_eq!(
        p.network.portal_url.as_deref(),
        Some("http://192.0.2.80:8080/generate_204")
    );
    assert_eq!(
        p.network.retransmit,
        Retransmit {
            tries: 7,
            base: Duration::from_millis(500),
            cap: secs(30)
        }
    );
}

#[test]
fn accepted_variants() {
    let p = parse(&format!(
        "{HEAD}[network]\ndpd = {{ interval = 10, timeout = \"1m\" }}\n"
    ));
    assert_eq!(
        p.network.dpd,
        Some(Dpd {
            interval: secs(10),
            timeout: secs(60)
        })
    );
    let p = parse(&format!("{HEAD}[network.dpd]\ninterval = \"20s\"\n"));
    assert_eq!(
        p.network.dpd,
        Some(Dpd {
            interval: secs(20),
            timeout: secs(150)
        })
    );
    let p = parse(&format!(
        "{HEAD}[phase2]\npfs = \"none\"\nmode = \"transport\"\n"
    ));
    assert_eq!((p.phase2.pfs, p.phase2.mode), (None, EncapMode::Transport));
    let p = parse(&format!(
        "{HEAD}[auth]\nmethod = \"rsa-sig\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n"
    ));
    assert_eq!(p.auth.method, AuthMethod::RsaSig);
    let p = parse(&format!(
        "{HEAD}[auth]\nlocal_id = \"alice@example.com\"\nremote_id = \"192.0.2.1\"\n"
    ));
    assert_eq!(
        p.auth.local_id,
        Some(Identity::UserFqdn("alice@example.com".into()))
    );
    assert_eq!(
        p.auth.remote_id,
        Some(Identity::Address("192.0.2.1".parse().unwrap()))
    );
    let p = parse(&format!("{HEAD}[phase1]\nlifetime = \"1d\"\n"));
    assert_eq!(p.phase1.lifetime, secs(86400));
    let p = parse(&format!(
        "{HEAD}[xauth]\nusername = \"a\"\npassword = \"pw\"\n"
    ));
    assert_eq!(p.xauth.unwrap().password.unwrap().expose(), "pw");
    let name64 = "n".repeat(64);
    assert_eq!(
        parse(&format!("name = \"{name64}\"\ngateway = \"gw\"\n")).name,
        name64
    );
}

// ------------------------------------------------------------------------------------
// Refusals, each with its line
// ------------------------------------------------------------------------------------

#[test]
fn refuses_syntax_error() {
    let e = refuse("name = \"x\"\ngateway = \"vpn.example.com\"\n[phase1\nlifetime = \"1h\"\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(e.kind, ProfileErrorKind::Syntax);
    assert!(
        e.to_string().starts_with("t.toml:3: TOML syntax error: "),
        "{e}"
    );
    let e = refuse("name = \"x\"\n\ngateway = \"unterminated\n");
    assert_eq!((e.line, e.kind), (Some(3), ProfileErrorKind::Syntax), "{e}");
    let e = refuse("name = \"x\"\nname = \"y\"\n");
    assert_eq!((e.line, e.kind), (Some(2), ProfileErrorKind::Syntax), "{e}");
}

#[test]
fn refuses_unknown_keys() {
    let e = refuse(&format!("{HEAD}\n[network]\ndns = \"split\"\nmtu = 1400\n"));
    check(
        &e,
        6,
        "network.mtu",
        ProfileErrorKind::UnknownKey,
        "unknown field `mtu`",
    );
    let e = refuse(&format!("{HEAD}[tunnel]\nx = 1\n"));
    check(
        &e,
        3,
        "tunnel",
        ProfileErrorKind::UnknownKey,
        "unknown field `tunnel`",
    );
    let e = refuse(&format!("{HEAD}gatway = \"typo\"\n"));
    check(
        &e,
        3,
        "gatway",
        ProfileErrorKind::UnknownKey,
        "unknown field `gatway`",
    );
    let e = refuse(&format!("{HEAD}[auth]\npassword = \"x\"\n"));
    check(
        &e,
        4,
        "auth.password",
        ProfileErrorKind::UnknownKey,
        "unknown field",
    );
    let e = refuse(&format!(
        "{HEAD}[network]\ndpd = {{ interval = \"30s\", retries = 3 }}\n"
    ));
    check(
        &e,
        4,
        "network.dpd.retries",
        ProfileErrorKind::UnknownKey,
        "retries",
    );
    let e = refuse(&format!("{HEAD}[network.retransmit]\ntries = 3\nmax = 4\n"));
    check(
        &e,
        5,
        "network.retransmit.max",
        ProfileErrorKind::UnknownKey,
        "unknown field `max`",
    );
}

#[test]
fn refuses_unknown_algorithm_in_second_element() {
    let text = format!(
        "{HEAD}\n[phase1]\nproposals = [\n  \"aes128-sha1-modp1024\",\n  \"aes999-sha1-modp1024\",\n]\n"
    );
    let e = Profile::from_toml_str(&text, "office.toml", SecretPolicy::Forbid).unwrap_err();
    assert_eq!(
        e.to_string(),
        "office.toml:7: phase1.proposals[1]: unknown algorithm 'aes999' in 'aes999-sha1-modp1024'"
    );
    // On one line, and in phase 2.
    let e = refuse(&format!(
        "{HEAD}[phase2]\nproposals = [\"aes128-sha1\", \"aes128-sha3\"]\n"
    ));
    check(
        &e,
        4,
        "phase2.proposals[1]",
        ProfileErrorKind::Invalid,
        "unknown algorithm 'sha3' in 'aes128-sha3'",
    );
    let e = refuse(&format!(
        "{HEAD}[phase2]\nproposals = [\"aes128gcm16-sha1\"]\n"
    ));
    check(
        &e,
        4,
        "phase2.proposals[0]",
        ProfileErrorKind::Invalid,
        "AEAD",
    );
    let e = refuse(&format!("{HEAD}[phase1]\nproposals = [\"aes128-sha1\"]\n"));
    check(
        &e,
        4,
        "phase1.proposals[0]",
        ProfileErrorKind::Invalid,
        "has no DH group",
    );
    let e = refuse(&format!("{HEAD}[phase1]\nproposals = []\n"));
    check(
        &e,
        4,
        "phase1.proposals",
        ProfileErrorKind::Invalid,
        "at least one",
    );
    let e = refuse(&format!(
        "{HEAD}[phase2]\nproposals = [{}]\n",
        vec!["\"aes-sha1\""; 17].join(",")
    ));
    check(
        &e,
        4,
        "phase2.proposals",
        ProfileErrorKind::Invalid,
        "at most 16",
    );
    let e = refuse(&format!(
        "{HEAD}[phase1]\nproposals = \"aes128-sha1-modp1024\"\n"
    ));
    check(
        &e,
        4,
        "phase1.proposals",
        ProfileErrorKind::Invalid,
        "expected a sequence",
    );
}

#[test]
fn refuses_bad_durations() {
    let e = refuse(&format!("{HEAD}[phase2]\nlifetime = \"1x\"\n"));
    check(
        &e,
        4,
        "phase2.lifetime",
        ProfileErrorKind::Invalid,
        "'1x' is not a duration",
    );
    let e = refuse(&format!("{HEAD}[phase1]\n\nlifetime = \"25h\"\n"));
    check(
        &e,
        5,
        "phase1.lifetime",
        ProfileErrorKind::Invalid,
        "'25h' is outside 1m ..= 1d",
    );
    let e = refuse(&format!("{HEAD}[phase2]\nlifetime = \"9h\"\n"));
    check(
        &e,
        4,
        "phase2.lifetime",
        ProfileErrorKind::Invalid,
        "outside 20s ..= 8h",
    );
    let e = refuse(&format!("{HEAD}[phase2]\nlifetime = 19\n"));
    check(
        &e,
        4,
        "phase2.lifetime",
        ProfileErrorKind::Invalid,
        "outside",
    );
    let e = refuse(&format!("{HEAD}[phase1]\nlifetime = -5\n"));
    check(
        &e,
        4,
        "phase1.lifetime",
        ProfileErrorKind::Invalid,
        "not a duration",
    );
    let e = refuse(&format!(
        "{HEAD}[network]\ndpd = {{ interval = \"soon\" }}\n"
    ));
    check(
        &e,
        4,
        "network.dpd.interval",
        ProfileErrorKind::Invalid,
        "not a duration",
    );
    let e = refuse(&format!(
        "{HEAD}[network]\ndpd = {{ interval = \"60s\", timeout = \"30s\" }}\n"
    ));
    check(
        &e,
        4,
        "network.dpd.timeout",
        ProfileErrorKind::Invalid,
        "shorter than the interval",
    );
    let e = refuse(&format!("{HEAD}[network]\ndpd = \"on\"\n"));
    check(&e, 4, "network.dpd", ProfileErrorKind::Invalid, "\"off\"");
    let e = refuse(&format!("{HEAD}[network.retransmit]\nbase = \"10ms\"\n"));
    check(
        &e,
        4,
        "network.retransmit.base",
        ProfileErrorKind::Invalid,
        "outside",
    );
    let e = refuse(&format!("{HEAD}[network.retransmit]\ntries = 0\n"));
    check(
        &e,
        4,
        "network.retransmit.tries",
        ProfileErrorKind::Invalid,
        "1..=20",
    );
}

#[test]
fn refuses_bad_identity() {
    let e = refuse(&format!(
        "{HEAD}[auth]\nmethod = \"psk\"\nlocal_id = \"address:laptop\"\n"
    ));
    check(
        &e,
        5,
        "auth.local_id",
        ProfileErrorKind::Invalid,
        "'laptop' is not an IP address",
    );
    let e = refuse(&format!("{HEAD}[auth]\nremote_id = \"x509:gw\"\n"));
    check(
        &e,
        4,
        "auth.remote_id",
        ProfileErrorKind::Invalid,
        "unknown identity type 'x509'",
    );
    let e = refuse(&format!("{HEAD}[auth]\nremote_id = \"CN=gw, O=Example\"\n"));
    check(&e, 4, "auth.remote_id", ProfileErrorKind::Invalid, "dn:");
}

#[test]
fn refuses_secrets_under_forbid() {
    let e = refuse_with(OFFICE, SecretPolicy::Forbid);
    check(
        &e,
        10,
        "auth.psk",
        ProfileErrorKind::SecretForbidden,
        "secrets do not belong in a profile; use the keyring",
    );
    let e = refuse_with(
        &format!("{HEAD}[xauth]\nusername = \"a\"\npassword = \"pw\"\n"),
        SecretPolicy::Forbid,
    );
    check(
        &e,
        5,
        "xauth.password",
        ProfileErrorKind::SecretForbidden,
        "use the keyring",
    );
    // The secret itself never appears in the error.
    assert!(!format!("{e} {e:?}").contains("pw\""));
}

#[test]
fn ike_version_1_or_2() {
    assert_eq!(parse(&format!("{HEAD}ike_version = 2\n")).ike_version, 2);
    assert_eq!(parse(HEAD).ike_version, 1);
    let e = refuse(&format!("{HEAD}ike_version = 3\n"));
    check(
        &e,
        3,
        "ike_version",
        ProfileErrorKind::Invalid,
        "must be 1 (IKEv1) or 2 (IKEv2)",
    );
    let e = refuse(&format!("{HEAD}ike_version = \"1\"\n"));
    check(
        &e,
        3,
        "ike_version",
        ProfileErrorKind::Invalid,
        "must be 1 (IKEv1) or 2 (IKEv2)",
    );
    // [xauth] with IKEv2 is the user's EAP login.
    let p = parse(&format!(
        "{HEAD}ike_version = 2\n[xauth]\nusername = \"alice\"\n"
    ));
    assert_eq!(p.xauth.as_ref().map(|x| x.username.as_str()), Some("alice"));
    // ... which replaces our certificate: rsa-sig + [xauth] is refused.
    let e = refuse(&format!(
        "{HEAD}ike_version = 2\n[auth]\nmethod = \"rsa-sig\"\n[xauth]\nusername = \"alice\"\n"
    ));
    check(
        &e,
        3,
        "ike_version",
        ProfileErrorKind::Invalid,
        "use auth.method = \"hybrid\"",
    );
    // What IKEv2 does not do yet is refused at the key, in one sentence.
    let e = refuse(&format!(
        "{HEAD}ike_version = 2\n[phase2]\nmode = \"transport\"\n"
    ));
    check(
        &e,
        3,
        "ike_version",
        ProfileErrorKind::Invalid,
        "IKEv2 supports only phase2.mode = \"tunnel\"",
    );
    // Exported and parsed again, the version stays.
    let p = parse(&format!("{HEAD}ike_version = 2\n"));
    assert!(p.to_toml_string().contains("ike_version = 2"));
    assert_eq!(parse(&p.to_toml_string()).ike_version, 2);
}

#[test]
fn refuses_transport_with_networks() {
    let e = refuse(&format!(
        "{HEAD}[phase2]\nmode = \"transport\"\nremote_networks = [\"10.77.0.0/24\"]\n"
    ));
    check(
        &e,
        5,
        "phase2.remote_networks",
        ProfileErrorKind::Invalid,
        "mode = \"transport\"",
    );
    let e = refuse(&format!(
        "{HEAD}[phase2]\nlocal_networks = [\"10.1.0.0/16\"]\nmode = \"transport\"\n"
    ));
    check(
        &e,
        4,
        "phase2.local_networks",
        ProfileErrorKind::Invalid,
        "transport",
    );
}

#[test]
fn refuses_other_invalid_values() {
    let e = refuse("gateway = \"gw\"\n");
    assert_eq!(e.to_string(), "t.toml: name: required");
    let e = refuse("name = \"x\"\n");
    assert_eq!((e.line, e.key.as_deref()), (None, Some("gateway")), "{e}");
    let e = refuse(&format!(
        "name = \"{}\"\ngateway = \"gw\"\n",
        "n".repeat(65)
    ));
    check(&e, 1, "name", ProfileErrorKind::Invalid, "at most 64");
    let e = refuse("name = \"a\\u0007b\"\ngateway = \"gw\"\n");
    check(&e, 1, "name", ProfileErrorKind::Invalid, "control");
    let e = refuse("name = 5\ngateway = \"gw\"\n");
    check(&e, 1, "name", ProfileErrorKind::Invalid, "invalid type");
    let e = refuse("name = \"x\"\ngateway = \"vpn example.com\"\n");
    check(
        &e,
        2,
        "gateway",
        ProfileErrorKind::Invalid,
        "not an IP address or host name",
    );
    let e = refuse("name = \"x\"\ngateway = \"300.1.1.1\"\n");
    check(
        &e,
        2,
        "gateway",
        ProfileErrorKind::Invalid,
        "not an IP address or host name",
    );
    let e = refuse(&format!("{HEAD}autoconnect = \"always\"\n"));
    check(
        &e,
        3,
        "autoconnect",
        ProfileErrorKind::Invalid,
        "not one of \"no\", \"login\", \"boot\"",
    );
    let e = refuse(&format!("{HEAD}exchange_mode = \"agressive\"\n"));
    check(
        &e,
        3,
        "exchange_mode",
        ProfileErrorKind::Invalid,
        "not one of \"main\", \"aggressive\"",
    );
    let e = refuse(&format!(
        "{HEAD}[auth]\nmethod = \"rsa-sig\"\ncert = \"c.pem\"\n"
    ));
    check(
        &e,
        4,
        "auth.method",
        ProfileErrorKind::Invalid,
        "needs auth.cert and auth.key",
    );
    let e = refuse(&format!("{HEAD}[auth]\nmethod = \"hybrid\"\n"));
    check(&e, 4, "auth.method", ProfileErrorKind::Invalid, "[xauth]");
    let e = refuse(&format!("{HEAD}[xauth]\n"));
    check(
        &e,
        3,
        "xauth.username",
        ProfileErrorKind::Invalid,
        "required",
    );
    let e = refuse(&format!("{HEAD}[phase2]\npfs = \"modp999\"\n"));
    check(&e, 4, "phase2.pfs", ProfileErrorKind::Invalid, "'modp999'");
    let e = refuse(&format!(
        "{HEAD}[phase2]\nremote_networks = [\"10.77.0.0/16\", \"10.77.0.1/24\"]\n"
    ));
    check(
        &e,
        4,
        "phase2.remote_networks[1]",
        ProfileErrorKind::Invalid,
        "host bits",
    );
    let e = refuse(&format!("{HEAD}[phase2]\nlifetime_kb = 0\n"));
    check(
        &e,
        4,
        "phase2.lifetime_kb",
        ProfileErrorKind::Invalid,
        "positive",
    );
    let e = refuse(&format!("{HEAD}[phase2]\nmode = \"tunel\"\n"));
    check(
        &e,
        4,
        "phase2.mode",
        ProfileErrorKind::Invalid,
        "\"tunnel\", \"transport\"",
    );
    let e = refuse(&format!("{HEAD}[network]\nvirtual_ip = \"2001:db8::5\"\n"));
    check(
        &e,
        4,
        "network.virtual_ip",
        ProfileErrorKind::Invalid,
        "IPv4",
    );
    for (line, msg) in [
        ("check_host = \"2001:db8::5\"", "not an IPv4 address"),
        ("check_host = \"127.0.0.1\"", "cannot answer a check"),
        ("check_domain = \"bad name\"", "not a DNS name"),
        ("check_domain = \"a..b\"", "empty or over-long label"),
        ("portal_url = \"https://x.example/\"", "http://"),
        ("portal_url = \"http:///x\"", "must name a host"),
        ("portal_url = \"http://a b/\"", "printable"),
    ] {
        let e = refuse(&format!("{HEAD}[network]\n{line}\n"));
        let key = format!("network.{}", line.split(' ').next().unwrap());
        check(&e, 4, &key, ProfileErrorKind::Invalid, msg);
    }
    let e = refuse(&format!("{HEAD}[network]\nvirtual_ip = \"10.0.0.300\"\n"));
    check(
        &e,
        4,
        "network.virtual_ip",
        ProfileErrorKind::Invalid,
        "not an IPv4 address",
    );
    for (key, bad) in [
        ("mode_config", "pul"),
        ("nat_traversal", "on"),
        ("datapath", "xfrm"),
        ("dns", "all"),
    ] {
        let e = refuse(&format!("{HEAD}[network]\n{key} = \"{bad}\"\n"));
        check(
            &e,
            4,
            &format!("network.{key}"),
            ProfileErrorKind::Invalid,
            "is not one of",
        );
    }
}

// ------------------------------------------------------------------------------------
// Files and permissions
// ------------------------------------------------------------------------------------

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str, mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!(
            "postern-profile-test-{}-{tag}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn permissions_of_files_with_secrets() {
    let open = TempFile::new("open", OFFICE, 0o644);
    let e = Profile::load(&open.0, SecretPolicy::AllowIfPrivate).unwrap_err();
    assert_eq!(e.kind, ProfileErrorKind::Permissions, "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}:10: auth.psk: ", open.0.display())),
        "{shown}"
    );
    assert!(shown.contains("mode 0644"), "{shown}");

    let group = TempFile::new("group", OFFICE, 0o640);
    let e = Profile::load(&group.0, SecretPolicy::AllowIfPrivate).unwrap_err();
    assert!(e.to_string().contains("mode 0640"), "{e}");

    let private = TempFile::new("private", OFFICE, 0o600);
    let p = Profile::load(&private.0, SecretPolicy::AllowIfPrivate).unwrap();
    assert_eq!(p.auth.psk.as_ref().unwrap().expose(), "...");
    assert_eq!(p, parse(OFFICE));

    // Forbid refuses the secret whatever the mode.
    let e = Profile::load(&private.0, SecretPolicy::Forbid).unwrap_err();
    assert_eq!(e.kind, ProfileErrorKind::SecretForbidden);
    assert_eq!(e.origin, private.0.display().to_string());

    // Without secrets the mode does not matter.
    let plain = TempFile::new("plain", MINIMAL, 0o644);
    assert_eq!(
        Profile::load(&plain.0, SecretPolicy::AllowIfPrivate)
            .unwrap()
            .name,
        "Minimal"
    );
    assert_eq!(
        Profile::load(&plain.0, SecretPolicy::Forbid).unwrap().name,
        "Minimal"
    );
}

#[test]
fn load_errors_name_the_file() {
    let missing = std::env::temp_dir().join("postern-profile-test-does-not-exist.toml");
    let e = Profile::load(&missing, SecretPolicy::Forbid).unwrap_err();
    assert_eq!(e.kind, ProfileErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot open", missing.display())),
        "{e}"
    );

    let bad = TempFile::new("bad", &format!("{HEAD}[network]\nmtu = 1\n"), 0o644);
    let e = Profile::load(&bad.0, SecretPolicy::Forbid).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:4: network.mtu: {}", bad.0.display(), e.message)
    );

    let e = Profile::load(&std::env::temp_dir(), SecretPolicy::Forbid).unwrap_err();
    assert_eq!(e.kind, ProfileErrorKind::Io, "{e}");
}

// ------------------------------------------------------------------------------------
// Export
// ------------------------------------------------------------------------------------

#[track_caller]
fn round_trip(p: &Profile) {
    let text = p.to_toml_string();
    let back = Profile::from_toml_str(&text, "export.toml", SecretPolicy::Forbid)
        .unwrap_or_else(|e| panic!("{e}\n--- exported:\n{text}"));
    assert_eq!(back, p.without_secrets(), "--- exported:\n{text}");
    assert_eq!(back.to_toml_string(), text, "export is stable");
}

#[test]
fn round_trip_through_toml() {
    for text in [OFFICE, MINIMAL, EVERYTHING] {
        let p = parse(text);
        round_trip(&p);
        assert!(!p.to_toml_string().contains("psk ="));
        assert!(!p.to_toml_string().contains("password"));
    }
    let mut p = Profile::new("Built", "gw.example.com");
    p.auth.local_id = Some(Identity::KeyId(b"0x12".to_vec()));
    p.auth.remote_id = Some(Identity::UserFqdn("gw@example.com".into()));
    p.xauth = Some(XAuth {
        username: "u \"quoted\"".into(),
        password: Some(Secret::new("pw".into())),
    });
    p.network.dpd = Some(Dpd {
        interval: Duration::from_millis(1500),
        timeout: secs(3600),
    });
    p.phase2.lifetime = secs(3661);
    p.phase2.mode = EncapMode::Transport;
    round_trip(&p);
    assert!(!p.to_toml_string().contains("pw"));
}

#[test]
fn export_shape() {
    let text = parse(OFFICE).to_toml_string();
    for line in [
        "name = \"Office\"",
        "ike_version = 1",
        "[phase2]",
        "proposals = [\"aes256-sha256\", \"aes128gcm16\", \"3des-sha1\"]",
        "pfs = \"modp2048\"",
        "remote_networks = [\"10.77.0.0/24\"]",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
}

#[test]
fn reconnect_and_nat_keepalive() {
    let p = parse(HEAD);
    assert!(p.network.reconnect);
    assert_eq!(p.network.nat_keepalive, Some(secs(20)));
    let p = parse(&format!(
        "{HEAD}[network]\nreconnect = false\nnat_keepalive = \"off\"\n"
    ));
    assert!(!p.network.reconnect);
    assert_eq!(p.network.nat_keepalive, None);
    let p = parse(&format!("{HEAD}[network]\nnat_keepalive = \"15s\"\n"));
    assert_eq!(p.network.nat_keepalive, Some(secs(15)));
    let e = refuse(&format!("{HEAD}[network]\nnat_keepalive = \"2h\"\n"));
    check(
        &e,
        4,
        "network.nat_keepalive",
        ProfileErrorKind::Invalid,
        "outside",
    );
    // Round trip through the export keeps both.
    let p = parse(&format!(
        "{HEAD}[network]\nreconnect = false\nnat_keepalive = \"off\"\n"
    ));
    let again = parse(&p.to_toml_string());
    assert!(!again.network.reconnect);
    assert_eq!(again.network.nat_keepalive, None);
}

#[test]
fn on_suspend_keeps_by_default_and_round_trips() {
    let p = parse(HEAD);
    assert_eq!(p.network.on_suspend, OnSuspend::Keep);
    let p = parse(&format!("{HEAD}[network]\non_suspend = \"disconnect\"\n"));
    assert_eq!(p.network.on_suspend, OnSuspend::Disconnect);
    let again = parse(&p.to_toml_string());
    assert_eq!(again.network.on_suspend, OnSuspend::Disconnect);
    let e = refuse(&format!("{HEAD}[network]\non_suspend = \"hibernate\"\n"));
    check(
        &e,
        4,
        "network.on_suspend",
        ProfileErrorKind::Invalid,
        "\"keep\", \"disconnect\"",
    );
}

/// `auth.method = "eap-tls"`: IKEv2 only, our certificate is the login (no [xauth]),
/// cert and key together.
#[test]
fn eap_tls_is_an_ikev2_certificate_login() {
    let p = parse(&format!(
        "{HEAD}ike_version = 2\n[auth]\nmethod = \"eap-tls\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nca = \"/ca.pem\"\n"
    ));
    assert_eq!(p.auth.method, AuthMethod::EapTls);
    assert!(p.to_toml_string().contains("method = \"eap-tls\""));
    assert_eq!(parse(&p.to_toml_string()).auth.method, AuthMethod::EapTls);
    let e = refuse(&format!(
        "{HEAD}[auth]\nmethod = \"eap-tls\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n"
    ));
    assert!(
        e.to_string()
            .contains("is an IKEv2 login: set ike_version = 2"),
        "{e}"
    );
    let e = refuse(&format!(
        "{HEAD}ike_version = 2\n[auth]\nmethod = \"eap-tls\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[xauth]\nusername = \"alice\"\n"
    ));
    check(
        &e,
        3,
        "ike_version",
        ProfileErrorKind::Invalid,
        "our certificate is the login: remove [xauth]",
    );
    let e = refuse(&format!(
        "{HEAD}ike_version = 2\n[auth]\nmethod = \"eap-tls\"\ncert = \"/c.pem\"\n"
    ));
    check(
        &e,
        5,
        "auth.method",
        ProfileErrorKind::Invalid,
        "\"eap-tls\" needs our certificate",
    );
}
