//! Imported profiles connect (issue 13): for four lab scenarios, a client configuration
//! in another client's format (libreswan ipsec.conf + ipsec.secrets, Cisco .pcf,
//! strongSwan swanctl.conf, Shrew .vpn with an embedded CA) equivalent to the scenario
//! is imported with `postern_frontend::import`, the imported secrets (and the
//! certificate files the import reports missing) are written with the imported TOML
//! into a root-only 0600 profile, and `postern-helper up` runs it against the lab's
//! strongSwan gateway: the gateway must show the IKE SA ESTABLISHED (IKEv1, or IKEv2
//! for the IKEv2 imports: a swanctl.conf `version = 2` connection and a
//! NetworkManager strongswan keyfile) with an INSTALLED CHILD_SA, a ping crosses the
//! tunnel, SIGTERM ends it cleanly.
//!
//! Root only.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use postern_frontend::import::{Companion, ImportOptions, Imported, import_str};
use postern_lab::config::{CLIENT_ADDR, CLIENT_VIP, CertSet, GW_ADDR, LAN_HOST, LAN_NET};
use postern_lab::pki::{CLIENT_DN, GW_NAME, lab_pki};
use postern_lab::postern::exit;
use postern_lab::{Client, Lab, Result, Role, Tunnel, lab_ensure, run_scenario};

fn import_one(text: &str, origin: &str, companions: &[Companion]) -> Imported {
    let mut v = import_str(text, origin, companions, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("import failed: {e}"));
    assert_eq!(v.len(), 1, "{origin}: one connection expected");
    v.remove(0)
}

/// The imported TOML plus the imported secrets and the given certificate paths, written
/// 0600 for `postern-helper up`.
fn write_profile(lab: &Lab, i: &Imported, files: &[(&str, PathBuf)]) -> Result<PathBuf> {
    let mut t: toml::Table = i
        .toml
        .parse()
        .map_err(|e| postern_lab::LabError(format!("imported TOML: {e}")))?;
    let table = |t: &mut toml::Table, k: &str| -> toml::Table {
        t.get(k)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut auth = table(&mut t, "auth");
    if let Some(psk) = i.secrets.get("psk") {
        auth.insert("psk".into(), psk.expose().into());
    }
    for (k, p) in files {
        auth.insert((*k).into(), p.to_string_lossy().to_string().into());
    }
    t.insert("auth".into(), auth.into());
    if t.contains_key("xauth") {
        let mut x = table(&mut t, "xauth");
        if let Some(pw) = i.secrets.get("xauth-password") {
            x.insert("password".into(), pw.expose().into());
        }
        t.insert("xauth".into(), x.into());
    }
    let path = lab.dir.join(format!(
        "imported-{}.toml",
        postern_frontend::import::file_name_for(&i.name)
    ));
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(
        toml::to_string(&t)
            .map_err(|e| postern_lab::LabError(e.to_string()))?
            .as_bytes(),
    )?;
    Ok(path)
}

/// Gateway up, imported profile up, both sides checked, ping, clean stop.
fn connects(scenario: &str, t: &Tunnel, profile: impl FnOnce(&Lab) -> Result<PathBuf>) {
    run_scenario(scenario, |lab: &Lab| {
        let gw = lab.start_gateway(t)?;
        let path = profile(lab)?;
        let client = Client::start(lab, &path)?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        let out = client.stdout();
        if t.xauth.is_some() {
            lab_ensure!(
                out.iter().any(|l| l == "xauth ok"),
                "no `xauth ok` line: {out:?}"
            );
        }
        let sa = gw.wait_established(Duration::from_secs(10))?;
        let shown = gw.list_sas_text();
        let version = t.ike_version.to_string();
        lab_ensure!(
            sa.get("version") == version,
            "gateway SA is not IKEv{version}:\n{shown}"
        );
        lab_ensure!(
            sa.installed_child().is_some(),
            "no INSTALLED CHILD_SA on the gateway:\n{shown}"
        );
        if t.aggressive {
            let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
            lab_ensure!(
                log.contains("AGGRESSIVE"),
                "gateway log shows no aggressive mode exchange"
            );
        }
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// Main mode PSK from a libreswan ipsec.conf with its ipsec.secrets.
#[test]
fn libreswan_ipsec_conf_main_mode_psk() {
    let t = Tunnel::main_psk("imp-libreswan");
    let conf = format!(
        "# libreswan client\nconfig setup\n    protostack=netkey\n\nconn lab\n    ikev2=never\n    left=%defaultroute\n    leftid={CLIENT_ADDR}\n    leftsubnet={CLIENT_VIP}/32\n    right={GW_ADDR}\n    rightid={GW_ADDR}\n    rightsubnet={LAN_NET}\n    authby=secret\n    ike=aes128-sha2_256;modp2048\n    phase2alg=aes128-sha2_256\n    pfs=no\n    auto=add\n"
    );
    let secrets = Companion {
        origin: "ipsec.secrets".into(),
        text: format!("{CLIENT_ADDR} {GW_ADDR} : PSK \"{}\"\n", t.psk),
    };
    let i = import_one(&conf, "ipsec.conf", &[secrets]);
    assert_eq!(
        i.profile
            .network
            .virtual_ip
            .map(|a| a.to_string())
            .as_deref(),
        Some(CLIENT_VIP)
    );
    assert!(
        i.secrets_missing.is_empty() && i.missing.is_empty(),
        "{:?} {:?}",
        i.secrets_missing,
        i.missing
    );
    connects("imp-libreswan", &t, |lab| write_profile(lab, &i, &[]));
}

/// Aggressive mode, group name + group PSK, XAuth and Mode Config from a Cisco .pcf.
#[test]
fn cisco_pcf_aggressive_xauth_mode_config() {
    let t = Tunnel::main_psk("imp-pcf")
        .aggressive("keyid:lab-group", &format!("address:{GW_ADDR}"))
        .gateway_proposals(&["aes256-sha256-modp2048"], &["aes256-sha256"])
        .xauth("alice", "alice-pass-9", "alice-pass-9")
        .mode_config(true);
    let pcf = format!(
        "[main]\r\nDescription=Lab (Cisco)\r\nHost={GW_ADDR}\r\nAuthType=1\r\nGroupName=lab-group\r\nGroupPwd={}\r\nUsername=alice\r\nUserPassword=alice-pass-9\r\nEnableNat=1\r\nDHGroup=14\r\nPeerTimeout=90\r\nEnableBackup=0\r\n",
        t.psk
    );
    let i = import_one(&pcf, "lab.pcf", &[]);
    assert_eq!(i.profile.exchange_mode.as_str(), "aggressive");
    assert!(i.secrets_missing.is_empty(), "{:?}", i.secrets_missing);
    connects("imp-pcf", &t, |lab| write_profile(lab, &i, &[]));
}

/// RSA signatures from a strongSwan swanctl.conf; the certificate files it points to are
/// reported missing and filled in as the user would.
#[test]
fn swanctl_certificates() {
    let p = lab_pki().unwrap_or_else(|e| panic!("test certificates: {e}"));
    let set = CertSet {
        gw_cert: p.path("gw.pem"),
        gw_key: p.path("gw.key"),
        gw_cas: vec![p.path("ca.pem")],
        client_ca: p.path("ca.pem"),
        client_cert: Some(p.path("client.pem")),
        client_key: Some(p.path("client.key")),
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("imp-swanctl").signatures(
        set,
        &format!("dn:{CLIENT_DN}"),
        &format!("fqdn:{GW_NAME}"),
    );
    let conf = format!(
        "connections {{\n    lab {{\n        version = 1\n        remote_addrs = {GW_ADDR}\n        proposals = aes128-sha256-modp2048\n        local {{\n            auth = pubkey\n            certs = client.pem\n            id = \"{CLIENT_DN}\"\n        }}\n        remote {{\n            auth = pubkey\n            id = {GW_NAME}\n            cacerts = ca.pem\n        }}\n        children {{\n            net {{\n                local_ts = {CLIENT_VIP}/32\n                remote_ts = {LAN_NET}\n                esp_proposals = aes128-sha256\n            }}\n        }}\n    }}\n}}\n"
    );
    let i = import_one(&conf, "swanctl.conf", &[]);
    let mut keys: Vec<&str> = i.missing.iter().map(|m| m.key.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["auth.ca", "auth.cert", "auth.key"],
        "{:?}",
        i.missing
    );
    let files = [
        ("ca", p.path("ca.pem")),
        ("cert", p.path("client.pem")),
        ("key", p.path("client.key")),
    ];
    connects("imp-swanctl", &t, |lab| write_profile(lab, &i, &files));
}

/// IKEv2 with a PSK and a virtual IP from the gateway's pool, from a swanctl.conf
/// `version = 2` connection with its secrets section.
#[test]
fn swanctl_ikev2_psk_virtual_ip() {
    let t = Tunnel::main_psk("imp-v2-swanctl").ikev2().mode_config(true);
    let conf = format!(
        "connections {{\n    lab {{\n        version = 2\n        remote_addrs = {GW_ADDR}\n        vips = 0.0.0.0\n        proposals = aes128-sha256-modp2048\n        local {{\n            auth = psk\n            id = {CLIENT_ADDR}\n        }}\n        remote {{\n            auth = psk\n            id = {GW_ADDR}\n        }}\n        children {{\n            net {{\n                remote_ts = {LAN_NET}\n                esp_proposals = aes128-sha256\n            }}\n        }}\n    }}\n}}\nsecrets {{\n    ike-lab {{\n        id-1 = {CLIENT_ADDR}\n        id-2 = {GW_ADDR}\n        secret = \"{}\"\n    }}\n}}\n",
        t.psk
    );
    let i = import_one(&conf, "swanctl.conf", &[]);
    assert_eq!(i.profile.ike_version, 2, "{}", i.toml);
    assert!(i.toml.contains("ike_version = 2"), "{}", i.toml);
    assert!(
        i.secrets_missing.is_empty() && i.missing.is_empty(),
        "{:?} {:?}",
        i.secrets_missing,
        i.missing
    );
    connects("imp-v2-swanctl", &t, |lab| write_profile(lab, &i, &[]));
}

/// IKEv2 with a PSK and a virtual IP from a NetworkManager strongswan keyfile (the
/// plugin is IKEv2 only; its secret saved in the file, the remote network as a route).
#[test]
fn nm_strongswan_ikev2_psk() {
    let t = Tunnel::main_psk("imp-v2-nm").ikev2().mode_config(true);
    let keyfile = format!(
        "[connection]\nid=Lab IKEv2\ntype=vpn\n\n[vpn]\nservice-type=org.freedesktop.NetworkManager.strongswan\naddress={GW_ADDR}\nmethod=psk\nlocal-identity={CLIENT_ADDR}\nremote-identity={GW_ADDR}\nvirtual=yes\nencap=no\nipcomp=no\nproposal=yes\nike=aes128-sha256-modp2048\nesp=aes128-sha256\npassword-flags=0\n\n[vpn-secrets]\npassword={}\n\n[ipv4]\nmethod=auto\nroute1={LAN_NET}\n",
        t.psk
    );
    let i = import_one(&keyfile, "lab.nmconnection", &[]);
    assert_eq!(i.profile.ike_version, 2, "{}", i.toml);
    assert!(i.secrets_missing.is_empty(), "{:?}", i.secrets_missing);
    connects("imp-v2-nm", &t, |lab| write_profile(lab, &i, &[]));
}

/// Hybrid (gateway certificate + XAuth) with Mode Config from a Shrew .vpn whose CA
/// certificate is embedded.
#[test]
fn shrew_vpn_hybrid_with_embedded_ca() {
    use base64ct_shim::encode;
    let p = lab_pki().unwrap_or_else(|e| panic!("test certificates: {e}"));
    let set = CertSet {
        gw_cert: p.path("gw.pem"),
        gw_key: p.path("gw.key"),
        gw_cas: vec![p.path("ca.pem")],
        client_ca: p.path("ca.pem"),
        client_cert: None,
        client_key: None,
        client_pkcs12: None,
        client_crl: None,
    };
    let t = Tunnel::main_psk("imp-shrew")
        .hybrid(set, "fqdn:laptop.postern.lab", &format!("fqdn:{GW_NAME}"))
        .xauth("alice", "alice-pass-72", "alice-pass-72")
        .mode_config(true);
    let ca = std::fs::read(p.path("ca.pem")).unwrap_or_else(|e| panic!("ca.pem: {e}"));
    let site = format!(
        "n:version:4\ns:network-host:{GW_ADDR}\ns:auth-method:hybrid-rsa-xauth\ns:client-saved-username:alice\ns:ident-client-type:fqdn\ns:ident-client-data:laptop.postern.lab\ns:ident-server-type:fqdn\ns:ident-server-data:{GW_NAME}\ns:auth-server-cert-name:ca.pem\nb:auth-server-cert-data:{}\ns:phase1-exchange:main\ns:phase1-cipher:aes\nn:phase1-keylen:128\ns:phase1-hash:sha2-256\nn:phase1-dhgroup:14\ns:phase2-transform:esp-aes\nn:phase2-keylen:128\ns:phase2-hmac:sha2-256\nn:phase2-pfsgroup:-1\ns:client-auto-mode:pull\nn:network-dpd-enable:1\n",
        encode(&ca)
    );
    let i = import_one(&site, "lab.vpn", &[]);
    assert!(i.missing.is_empty(), "the CA is embedded: {:?}", i.missing);
    assert_eq!(i.files.len(), 1);
    assert_eq!(i.secrets_missing, ["xauth-password"]);
    // The password is asked when connecting; the test gives it as the user would.
    let mut i = i;
    i.secrets.insert(
        "xauth-password".into(),
        postern_dbus_secret("alice-pass-72"),
    );
    connects("imp-shrew", &t, |lab| {
        let ca_path = lab.dir.join("imported-ca.pem");
        std::fs::write(&ca_path, &i.files[0].2)?;
        write_profile(lab, &i, &[("ca", ca_path)])
    });
}

fn postern_dbus_secret(s: &str) -> postern_frontend::import::SecretValue {
    postern_frontend::import::SecretValue::new(s.to_string())
}

/// Base64 without another dependency (the fixture builder only).
mod base64ct_shim {
    pub fn encode(b: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut o = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    o.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    o.push('=');
                }
            }
        }
        o
    }
}
