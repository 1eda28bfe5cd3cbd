//! The profile (contract 1) translated into the engine's configuration: identities,
//! authentication (PSK, or certificates from `auth.contents`, never from paths),
//! proposals with the PFS group, the quick modes to run (one per remote network, or
//! what Mode Config's split include says), XAuth, Mode Config, NAT-T, DPD.
//!
//! Shared by every front end on the driver (`up`, the D-Bus service, the lab's
//! responder); a profile that cannot be translated is a `BadProfile` failure.

use std::net::IpAddr;

use postern_dbus::failure::FailureKind;
use postern_dbus::profile::{self, Profile};
use postern_engine::ike::{
    self, ChildConfig, Config, DpdConfig, Encapsulation, Identity, ModeConfigMode, NatTraversal,
    TrafficSelector, XAuthConfig,
};
use zeroize::Zeroizing;

use super::Failure;

fn identity(id: &profile::Identity) -> Identity {
    match id {
        profile::Identity::Address(a) => Identity::address(*a),
        profile::Identity::Fqdn(s) => Identity::fqdn(s),
        profile::Identity::UserFqdn(s) => Identity::user_fqdn(s),
        profile::Identity::KeyId(b) => Identity::key_id(b),
        // Checked to parse in engine_config before this is called.
        profile::Identity::Dn(s) => Identity {
            kind: postern_engine::codec::IdType::DER_ASN1_DN,
            data: postern_engine::cert::dn_der(s).unwrap_or_default(),
        },
    }
}

/// The engine's `Auth` for a certificate (`rsa-sig`) or `hybrid` profile, and the
/// identity our certificate names (our ID when the profile gives none). Reads only
/// `auth.contents`.
fn certificate_auth(p: &Profile) -> Result<(ike::Auth, Option<Identity>), Failure> {
    use postern_engine::cert::{self, PrivateKey};
    use std::sync::Arc;
    let usage = |m: String| Failure::new(FailureKind::BadProfile, m);
    let c = &p.auth.contents;
    let named = |what: &str, path: &Option<String>| match path {
        Some(path) => format!("{what} {path}"),
        None => what.to_string(),
    };
    let passphrase = p
        .auth
        .key_passphrase
        .as_ref()
        .map(|s| s.expose().as_bytes());
    // A bundle: key, our certificate, its chain; a self-signed CA inside it is trusted
    // when the profile names no CA of its own (the admin handed out both together).
    let bundle = match &c.pkcs12 {
        Some(b) => Some(
            cert::pkcs12::parse(
                b.bytes(),
                p.auth.key_passphrase.as_ref().map_or("", |s| s.expose()),
            )
            .map_err(|e| {
                usage(format!(
                    "{}: {e}",
                    named("the PKCS#12 bundle", &p.auth.pkcs12)
                ))
            })?,
        ),
        None => None,
    };
    let trusted = match (&c.ca, &bundle) {
        (Some(ca), _) => cert::parse_certificates(ca.bytes())
            .map_err(|e| usage(format!("{}: {e}", named("the CA certificate", &p.auth.ca))))?,
        (None, Some(b)) => b.chain[1..]
            .iter()
            .filter(|c| c.is_self_signed())
            .cloned()
            .collect(),
        (None, None) => Vec::new(),
    };
    if trusted.is_empty() {
        return Err(usage(
            "auth.ca is needed to check the gateway's certificate".into(),
        ));
    }
    let crls = match &c.crl {
        Some(crl) => cert::parse_crls(crl.bytes())
            .map_err(|e| usage(format!("{}: {e}", named("the CRL", &p.auth.crl))))?,
        None => Vec::new(),
    };
    if matches!(p.auth.method, profile::AuthMethod::Hybrid) {
        let certs = ike::Certs {
            key: None,
            chain: Vec::new(),
            trusted,
            crls,
        };
        return Ok((ike::Auth::Hybrid(Arc::new(certs)), None));
    }
    let (key, chain) = match (bundle, &c.cert, &c.key) {
        (Some(b), _, _) => {
            // Our certificate and the intermediates; the bundle's root stays out of CERT payloads.
            let chain = b
                .chain
                .into_iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || !c.is_self_signed())
                .map(|(_, c)| c)
                .collect();
            (b.key, chain)
        }
        (None, Some(cert_pem), Some(key_pem)) => {
            let chain = cert::parse_certificates(cert_pem.bytes())
                .map_err(|e| usage(format!("{}: {e}", named("the certificate", &p.auth.cert))))?;
            let key = PrivateKey::parse(key_pem.bytes(), passphrase)
                .map_err(|e| usage(format!("{}: {e}", named("the private key", &p.auth.key))))?;
            (key, chain)
        }
        _ => {
            return Err(usage(format!(
                "\"{}\" needs our certificate and private key (auth.cert + auth.key, or auth.pkcs12)",
                p.auth.method.as_str()
            )));
        }
    };
    let own = chain.first().ok_or_else(|| {
        usage(format!(
            "{}: no certificate",
            named("the certificate", &p.auth.cert)
        ))
    })?;
    key.matches(own)
        .map_err(|e| usage(format!("{}: {e}", named("the private key", &p.auth.key))))?;
    let id = Identity {
        kind: postern_engine::codec::IdType::DER_ASN1_DN,
        data: own.subject_der(),
    };
    let certs = ike::Certs {
        key: Some(key),
        chain,
        trusted,
        crls,
    };
    Ok((ike::Auth::Signature(Arc::new(certs)), Some(id)))
}

pub(super) fn ts(s: &profile::Subnet) -> TrafficSelector {
    TrafficSelector {
        addr: s.addr,
        prefix: s.prefix,
    }
}

pub fn profile_children(p: &Profile, local: IpAddr) -> Vec<ChildConfig> {
    if matches!(p.phase2.mode, profile::EncapMode::Transport) {
        return vec![ChildConfig {
            local: None,
            remote: None,
        }];
    }
    let locals: Vec<TrafficSelector> = if !p.phase2.local_networks.is_empty() {
        p.phase2.local_networks.iter().map(ts).collect()
    } else if let Some(v) = p.network.virtual_ip {
        vec![TrafficSelector::host(IpAddr::V4(v))]
    } else {
        vec![TrafficSelector::host(local)]
    };
    let remotes: Vec<TrafficSelector> = if p.phase2.remote_networks.is_empty() {
        // Everything, in the family of each of our selectors (an IPv4 inner address
        // over an IPv6 gateway wants 0.0.0.0/0, not ::/0).
        let mut any: Vec<TrafficSelector> = Vec::new();
        for l in &locals {
            let addr = if l.addr.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            };
            if !any.iter().any(|a| a.addr == addr) {
                any.push(TrafficSelector { addr, prefix: 0 });
            }
        }
        any
    } else {
        p.phase2.remote_networks.iter().map(ts).collect()
    };
    let mut out = Vec::new();
    for l in &locals {
        for r in &remotes {
            if l.addr.is_ipv4() == r.addr.is_ipv4() {
                out.push(ChildConfig {
                    local: Some(*l),
                    remote: Some(*r),
                });
            }
        }
    }
    out
}

pub fn engine_config(p: &Profile, local: IpAddr) -> Result<Config, Failure> {
    let usage = |m: &str| Failure::new(FailureKind::BadProfile, m.to_string());
    for id in [&p.auth.local_id, &p.auth.remote_id].into_iter().flatten() {
        if let profile::Identity::Dn(s) = id {
            postern_engine::cert::dn_der(s).map_err(|e| usage(&e.to_string()))?;
        }
    }
    let mut c;
    let mut cert_id = None;
    if matches!(p.auth.method, profile::AuthMethod::Psk) {
        let psk = p.auth.psk.as_ref().ok_or_else(|| {
            usage(
                "the profile has no pre-shared key: add `psk` under [auth] (file must be mode 0600)",
            )
        })?;
        c = Config::psk(psk.expose().as_bytes());
    } else {
        let (auth, id) = certificate_auth(p)?;
        c = Config::psk(&[]);
        c.auth = auth;
        cert_id = id;
        // EAP-TLS (IKEv2): our certificate goes inside EAP, the gateway's in AUTH.
        c.eap_tls = matches!(p.auth.method, profile::AuthMethod::EapTls);
        // Certificates are checked against the wall time; the engine reads no clock.
        c.wall_clock = Some((std::time::Instant::now(), std::time::SystemTime::now()));
    }
    c.mode = match p.exchange_mode {
        profile::ExchangeMode::Main => ike::ExchangeMode::Main,
        profile::ExchangeMode::Aggressive => ike::ExchangeMode::Aggressive,
    };
    c.local_id = p.auth.local_id.as_ref().map(identity).or(cert_id);
    c.remote_id = p.auth.remote_id.as_ref().map(identity);
    c.ike_proposals = p.phase1.proposals.clone();
    c.ike_lifetime = p.phase1.lifetime;
    c.esp_proposals = p
        .phase2
        .proposals
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.group.is_none() {
                e.group = p.phase2.pfs;
            }
            e
        })
        .collect();
    c.esp_lifetime = p.phase2.lifetime;
    c.esp_lifetime_kb = p.phase2.lifetime_kb;
    c.encapsulation = match p.phase2.mode {
        profile::EncapMode::Tunnel => Encapsulation::Tunnel,
        profile::EncapMode::Transport => Encapsulation::Transport,
    };
    c.children = profile_children(p, local);
    c.nat_traversal = match p.network.nat_traversal {
        profile::NatTraversal::Auto => NatTraversal::Auto,
        profile::NatTraversal::Force => NatTraversal::Force,
        profile::NatTraversal::Off => NatTraversal::Off,
    };
    c.retransmit = ike::RetransmitConfig {
        tries: p.network.retransmit.tries,
        base: p.network.retransmit.base,
        cap: p.network.retransmit.cap,
    };
    c.xauth = p.xauth.as_ref().map(|x| XAuthConfig {
        username: x.username.clone(),
        password: x
            .password
            .as_ref()
            .map(|s| Zeroizing::new(s.expose().to_string())),
    });
    c.mode_config = match p.network.mode_config {
        profile::ModeConfig::Off => ModeConfigMode::Off,
        profile::ModeConfig::Pull => ModeConfigMode::Pull,
        profile::ModeConfig::Push => ModeConfigMode::Push,
    };
    c.remote_networks = p.phase2.remote_networks.iter().map(ts).collect();
    // Mode Config is asked for an IPv6 address too when IPv6 may go through the tunnel:
    // the profile names an IPv6 network, or leaves the networks to the gateway (a
    // full tunnel then carries IPv6 when the gateway gives an address, instead of
    // blocking it). A gateway without IPv6 just assigns none.
    c.request_ipv6 = p.phase2.remote_networks.is_empty()
        || p.phase2
            .remote_networks
            .iter()
            .chain(&p.phase2.local_networks)
            .any(|n| n.addr.is_ipv6());
    c.fragment_size = usize::from(
        p.network
            .ike_fragment_size
            .unwrap_or(profile::DEFAULT_IKE_FRAGMENT_SIZE),
    );
    c.dpd = p.network.dpd.as_ref().map(|d| DpdConfig {
        interval: d.interval,
        timeout: d.timeout,
    });
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(network: &str) -> Profile {
        let text = format!(
            "name = \"x\"\ngateway = \"192.0.2.1\"\nike_version = 2\n\n[auth]\npsk = \"k\"\n\n[network]\n{network}"
        );
        Profile::from_toml_str(&text, "x.toml", profile::SecretPolicy::AllowIfPrivate)
            .expect("profile")
    }

    #[test]
    fn the_ike_fragment_size_reaches_the_engine() {
        let local: IpAddr = "192.0.2.2".parse().unwrap();
        let c = engine_config(&profile("ike_fragment_size = 500\n"), local).unwrap();
        assert_eq!(c.fragment_size, 500);
        let c = engine_config(&profile(""), local).unwrap();
        assert_eq!(c.fragment_size, 1280);
    }

    #[test]
    fn ipv6_inside_is_asked_for_when_ipv6_may_cross_the_tunnel() {
        let local: IpAddr = "192.0.2.2".parse().unwrap();
        let with = |nets: &str| {
            let text = format!(
                "name = \"x\"\ngateway = \"192.0.2.1\"\nike_version = 2\n\n[auth]\npsk = \"k\"\n\n[phase2]\nremote_networks = [{nets}]\n"
            );
            let p = Profile::from_toml_str(&text, "x.toml", profile::SecretPolicy::AllowIfPrivate)
                .expect("profile");
            engine_config(&p, local).unwrap().request_ipv6
        };
        assert!(with(""), "full tunnel");
        assert!(with("\"10.77.0.0/24\", \"fd00:77::/64\""));
        assert!(!with("\"10.77.0.0/24\""));
    }
}
