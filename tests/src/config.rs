//! One description of a tunnel ([`Tunnel`]) and the three configurations generated from it:
//! the strongSwan gateway's swanctl.conf, the charon-as-client swanctl.conf (reference
//! client), and the Postern profile (DESIGN.md contract 1). Keeping them in one place keeps
//! the tests, the demo and the benchmark consistent.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Fixed lab addresses (documentation / private ranges, only inside our namespaces).
pub const CLIENT_ADDR: &str = "192.0.2.2";
pub const GW_ADDR: &str = "192.0.2.1";
pub const GW_LAN_ADDR: &str = "10.77.0.1";
pub const LAN_HOST: &str = "10.77.0.10";
pub const LAN_NET: &str = "10.77.0.0/24";
/// The client's inner address (fixed `virtual_ip`, no Mode Config): kernel-libipsec
/// gateways refuse a CHILD_SA whose client side is the client's outer address.
pub const CLIENT_VIP: &str = "10.200.0.5";

/// The lab gateway's pre-shared key (every [`Tunnel`] starts with it).
pub const LAB_PSK: &str = "lab-secret-3f9c2a";

/// Every secret the lab tests hand to Postern, with what it is: no log line, D-Bus
/// property or output of Postern's may ever contain one. `lab-secret-grep` searches a
/// whole lab run's output for them (scripts/test.sh); the unit test below finds the
/// secrets written in the tests' sources and fails when one is missing here.
/// (`pw`, the libreswan client's XAuth password, is too short to be searched for.)
pub const LAB_SECRETS: &[(&str, &str)] = &[
    (LAB_PSK, "the lab gateway's PSK"),
    ("not-the-gateway-secret", "the wrong client PSK (interop)"),
    ("alice-pw-5c1e", "an XAuth password (abuse)"),
    ("gtc-8642-pass", "an EAP-GTC passcode (ikev2_eap)"),
    (
        "alice-pass-7",
        "an XAuth password (remote access, roaming, rekey, suspend)",
    ),
    ("alice-pass-9", "an XAuth password (import, resolved)"),
    ("alice-pass-11", "an XAuth password (kernel VM)"),
    ("alice-pass-71", "an XAuth password (certs)"),
    ("alice-pass-72", "an XAuth password (import)"),
    ("alice-pass-73", "an EAP password (ikev2)"),
    ("bob-pass-9", "an XAuth password (remote access)"),
    ("carol-pass-3", "an XAuth password (IPv6)"),
    ("not-her-password", "a wrong XAuth password (remote access)"),
    ("alice-desk-7", "an XAuth password (desktop)"),
    ("demo-password", "the demo's XAuth password"),
    ("lab-keyring-pw", "the desktop lab's keyring password"),
    (
        crate::pki::P12_PASSPHRASE,
        "the PKCS#12 bundle's passphrase",
    ),
];

/// IPv6 on top of the lab ([`crate::Lab::add_ipv6`]): ULA prefixes on the client–gateway
/// link and on the gateway's LAN.
pub const CLIENT6: &str = "fd00:2::2";
pub const GW6: &str = "fd00:2::1";
pub const GW_LAN6: &str = "fd00:77::1";
pub const LAN_HOST6: &str = "fd00:77::10";
pub const LAN_NET6: &str = "fd00:77::/64";

/// A generated swanctl.conf or Postern profile with the outer addresses (and address
/// IDs) moved to IPv6: the gateway reached over IPv6.
pub fn over_ipv6(conf: &str) -> String {
    conf.replace(GW_ADDR, GW6).replace(CLIENT_ADDR, CLIENT6)
}

/// Connection and child names used in every generated swanctl.conf.
pub const CONN: &str = "lab";
pub const CHILD: &str = "net";

/// What one scenario negotiates. IDs use the Postern profile syntax
/// (`address:...`, `fqdn:...`, `user-fqdn:...`, `keyid:...`, `dn:...`).
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub name: String,
    pub aggressive: bool,
    pub client_id: String,
    pub gateway_id: String,
    /// The secret the gateway knows.
    pub psk: String,
    /// The secret the client uses, when it differs (wrong-PSK scenario).
    pub client_psk: Option<String>,
    pub gw_ike: Vec<String>,
    pub gw_esp: Vec<String>,
    pub client_ike: Vec<String>,
    pub client_esp: Vec<String>,
    /// Phase 2 PFS group offered by the client (`None` = "none").
    pub pfs: Option<String>,
    /// XAuth after phase 1.
    pub xauth: Option<XAuthLab>,
    /// Mode Config from a gateway pool instead of the fixed virtual IP.
    pub mode_config: Option<ModeConfigLab>,
    /// Client-side DPD `(interval, timeout)` in seconds.
    pub dpd: Option<(u32, u32)>,
    /// Client-side lifetimes `(phase 1, phase 2)` in seconds.
    pub lifetimes: Option<(u32, u32)>,
    /// Gateway: `fragmentation = force` and this `charon.fragment_size`.
    pub gw_fragment_size: Option<u32>,
    /// Full tunnel: the gateway offers 0.0.0.0/0, the profile names no remote networks.
    pub full_tunnel: bool,
    /// Phase 1 authentication (PSK unless a certificate scenario says otherwise).
    pub auth: LabAuth,
    /// The gateway ID the client's profile expects, when it differs from the one the
    /// gateway uses (identity-mismatch scenarios).
    pub expected_gateway_id: Option<String>,
    /// The profile's `network.datapath` (`auto` when `None`).
    pub datapath: Option<String>,
    /// Transport mode (host to host, the gateway's and our own address; no networks).
    pub transport: bool,
    /// The profile's `network.nat_traversal` (`auto` when `None`).
    pub nat_traversal: Option<String>,
    /// The gateway does ESP in the kernel (kernel-netlink, no kernel-libipsec).
    pub gw_kernel_esp: bool,
    /// The profile's `phase2.lifetime_kb`.
    pub phase2_kb: Option<u32>,
    /// The IKE version both sides speak (`version` in swanctl.conf, `ike_version` in
    /// the profile).
    pub ike_version: u8,
}

/// How phase 1 authenticates.
#[derive(Clone, Debug)]
pub enum LabAuth {
    Psk,
    /// RSA/ECDSA signatures on both sides.
    Signature(CertSet),
    /// The gateway signs, the client proves itself by XAuth (needs [`Tunnel::xauth`]).
    Hybrid(CertSet),
}

/// Certificate files (made by [`crate::pki`]) for a signature or hybrid scenario.
#[derive(Clone, Debug)]
pub struct CertSet {
    /// The gateway's certificate and key.
    pub gw_cert: PathBuf,
    pub gw_key: PathBuf,
    /// CA certificates the gateway loads (its root, intermediates to send, the CA of
    /// the client certificates).
    pub gw_cas: Vec<PathBuf>,
    /// The CA the client trusts.
    pub client_ca: PathBuf,
    /// The client's certificate and key (signature authentication only).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Instead of `client_cert` + `client_key`: a PKCS#12 bundle and its passphrase.
    pub client_pkcs12: Option<(PathBuf, String)>,
    /// A CRL the client checks the gateway's certificate against.
    pub client_crl: Option<PathBuf>,
}

impl LabAuth {
    fn certs(&self) -> Option<&CertSet> {
        match self {
            LabAuth::Psk => None,
            LabAuth::Signature(c) | LabAuth::Hybrid(c) => Some(c),
        }
    }

    /// Files the gateway needs beside swanctl.conf: `(dir under swanctl/, file name,
    /// source)`.
    pub fn gateway_files(&self) -> Vec<(&'static str, String, PathBuf)> {
        let Some(c) = self.certs() else {
            return Vec::new();
        };
        let mut v = vec![
            ("x509", "gw.pem".to_string(), c.gw_cert.clone()),
            ("private", "gw.key".to_string(), c.gw_key.clone()),
        ];
        for (i, ca) in c.gw_cas.iter().enumerate() {
            v.push(("x509ca", format!("ca{i}.pem"), ca.clone()));
        }
        v
    }
}

/// XAuth login: what the gateway knows and what the client says.
#[derive(Clone, Debug)]
pub struct XAuthLab {
    pub user: String,
    pub gw_password: String,
    pub client_password: String,
}

/// Mode Config from the gateway's pool [`POOL_NET`] with DNS [`POOL_DNS`].
#[derive(Clone, Debug)]
pub struct ModeConfigLab {
    /// true: the client asks (pull); false: the gateway pushes.
    pub pull: bool,
}

/// The gateway's Mode Config pool and the first address it hands out.
pub const POOL_NET: &str = "10.200.1.0/28";
pub const POOL_FIRST: &str = "10.200.1.1";
pub const POOL_DNS: &str = "10.77.0.53";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Tunnel {
    /// Main mode, PSK, address IDs, aes128-sha256-modp2048 / esp aes128-sha256.
    pub fn main_psk(name: &str) -> Tunnel {
        Tunnel {
            name: name.to_string(),
            aggressive: false,
            client_id: format!("address:{CLIENT_ADDR}"),
            gateway_id: format!("address:{GW_ADDR}"),
            psk: LAB_PSK.to_string(),
            client_psk: None,
            gw_ike: strings(&["aes128-sha256-modp2048"]),
            gw_esp: strings(&["aes128-sha256"]),
            client_ike: strings(&["aes128-sha256-modp2048"]),
            client_esp: strings(&["aes128-sha256"]),
            pfs: None,
            xauth: None,
            mode_config: None,
            dpd: None,
            lifetimes: None,
            gw_fragment_size: None,
            full_tunnel: false,
            auth: LabAuth::Psk,
            expected_gateway_id: None,
            datapath: None,
            transport: false,
            nat_traversal: None,
            gw_kernel_esp: false,
            phase2_kb: None,
            ike_version: 1,
        }
    }

    /// IKEv2 on both sides (strongSwan `version = 2`, the profile's `ike_version = 2`).
    pub fn ikev2(mut self) -> Tunnel {
        self.ike_version = 2;
        self
    }

    /// ESP in the kernel on both sides (the test VM): the gateway without
    /// kernel-libipsec, the client with `datapath = "kernel"` and NAT-T as given.
    pub fn kernel_esp(mut self, nat_traversal: &str) -> Tunnel {
        self.datapath = Some("kernel".into());
        self.nat_traversal = Some(nat_traversal.into());
        self.gw_kernel_esp = true;
        self
    }

    /// The client's profile expects the gateway to be `id` (the gateway still uses its own).
    pub fn expect_gateway_id(mut self, id: &str) -> Tunnel {
        self.expected_gateway_id = Some(id.to_string());
        self
    }

    /// Certificate (signature) authentication with `certs`; IDs in Postern syntax.
    pub fn signatures(mut self, certs: CertSet, client_id: &str, gateway_id: &str) -> Tunnel {
        self.auth = LabAuth::Signature(certs);
        self.client_id = client_id.to_string();
        self.gateway_id = gateway_id.to_string();
        self
    }

    /// Hybrid authentication: the gateway's certificate, the client's XAuth login.
    pub fn hybrid(mut self, certs: CertSet, client_id: &str, gateway_id: &str) -> Tunnel {
        self.auth = LabAuth::Hybrid(certs);
        self.client_id = client_id.to_string();
        self.gateway_id = gateway_id.to_string();
        self
    }

    /// Sets the same phase 1 / phase 2 proposals on both sides.
    pub fn proposals(mut self, ike: &[&str], esp: &[&str]) -> Tunnel {
        self.gw_ike = strings(ike);
        self.client_ike = strings(ike);
        self.gw_esp = strings(esp);
        self.client_esp = strings(esp);
        self
    }

    /// What the gateway accepts (the client offer is left as is).
    pub fn gateway_proposals(mut self, ike: &[&str], esp: &[&str]) -> Tunnel {
        self.gw_ike = strings(ike);
        self.gw_esp = strings(esp);
        self
    }

    /// What the client offers (the gateway side is left as is).
    pub fn client_proposals(mut self, ike: &[&str], esp: &[&str]) -> Tunnel {
        self.client_ike = strings(ike);
        self.client_esp = strings(esp);
        self
    }

    pub fn aggressive(mut self, client_id: &str, gateway_id: &str) -> Tunnel {
        self.aggressive = true;
        self.client_id = client_id.to_string();
        self.gateway_id = gateway_id.to_string();
        self
    }

    /// A full tunnel (0.0.0.0/0 on the gateway's side).
    pub fn full_tunnel(mut self) -> Tunnel {
        self.full_tunnel = true;
        self
    }

    pub fn pfs(mut self, group: &str) -> Tunnel {
        self.pfs = Some(group.to_string());
        self
    }

    pub fn xauth(mut self, user: &str, gw_password: &str, client_password: &str) -> Tunnel {
        self.xauth = Some(XAuthLab {
            user: user.to_string(),
            gw_password: gw_password.to_string(),
            client_password: client_password.to_string(),
        });
        self
    }

    pub fn mode_config(mut self, pull: bool) -> Tunnel {
        self.mode_config = Some(ModeConfigLab { pull });
        self
    }

    /// The gateway fragments every IKE message larger than `size` bytes.
    pub fn gateway_fragments(mut self, size: u32) -> Tunnel {
        self.gw_fragment_size = Some(size);
        self
    }

    pub fn lifetimes(mut self, phase1_s: u32, phase2_s: u32) -> Tunnel {
        self.lifetimes = Some((phase1_s, phase2_s));
        self
    }

    pub fn dpd(mut self, interval_s: u32, timeout_s: u32) -> Tunnel {
        self.dpd = Some((interval_s, timeout_s));
        self
    }

    pub fn client_psk(mut self, psk: &str) -> Tunnel {
        self.client_psk = Some(psk.to_string());
        self
    }

    pub fn client_secret(&self) -> &str {
        self.client_psk.as_deref().unwrap_or(&self.psk)
    }

    /// The gateway's swanctl.conf.
    pub fn gateway_swanctl(&self) -> String {
        let remote_ts = if self.mode_config.is_some() {
            "dynamic".to_string()
        } else {
            format!("{CLIENT_VIP}/32")
        };
        let mut c = swanctl_conf(&SwanSide {
            ike_version: self.ike_version,
            aggressive: self.aggressive,
            local_addr: GW_ADDR,
            remote_addr: None,
            local_id: &self.gateway_id,
            remote_id: &self.client_id,
            ike: &self.gw_ike,
            esp: &self.gw_esp,
            local_ts: if self.full_tunnel {
                "0.0.0.0/0"
            } else {
                LAN_NET
            },
            remote_ts: &remote_ts,
            secret: &self.psk,
            xauth: self.xauth.as_ref(),
            mode_config: self.mode_config.as_ref(),
            force_fragmentation: self.gw_fragment_size.is_some(),
            auth: &self.auth,
        });
        if self.transport {
            let ts = format!("        local_ts = {LAN_NET}\n        remote_ts = {remote_ts}\n");
            c = c.replace(&ts, "        mode = transport\n");
        }
        if self.mode_config.is_some() {
            let _ = writeln!(
                c,
                "pools {{
  pool0 {{
    addrs = {POOL_NET}
    dns = {POOL_DNS}
  }}
}}"
            );
        }
        c
    }

    /// swanctl.conf for strongSwan's charon as the client (the reference client).
    pub fn charon_client_swanctl(&self) -> String {
        let esp: Vec<String> = match &self.pfs {
            Some(g) => self.client_esp.iter().map(|p| format!("{p}-{g}")).collect(),
            None => self.client_esp.clone(),
        };
        swanctl_conf(&SwanSide {
            ike_version: self.ike_version,
            aggressive: self.aggressive,
            local_addr: CLIENT_ADDR,
            remote_addr: Some(GW_ADDR),
            local_id: &self.client_id,
            remote_id: &self.gateway_id,
            ike: &self.client_ike,
            esp: &esp,
            local_ts: &format!("{CLIENT_VIP}/32"),
            remote_ts: LAN_NET,
            secret: self.client_secret(),
            xauth: None,
            mode_config: None,
            force_fragmentation: false,
            auth: &LabAuth::Psk,
        })
    }

    /// The Postern profile for `postern-helper up` (contains the PSK: write it 0600).
    pub fn postern_profile(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "name = {}", toml_str(&self.name));
        let _ = writeln!(t, "gateway = {}", toml_str(GW_ADDR));
        let _ = writeln!(t, "ike_version = {}", self.ike_version);
        let mode = if self.aggressive {
            "aggressive"
        } else {
            "main"
        };
        let _ = writeln!(t, "exchange_mode = {}", toml_str(mode));
        let method = match self.auth {
            LabAuth::Psk => "psk",
            LabAuth::Signature(_) => "rsa-sig",
            LabAuth::Hybrid(_) => "hybrid",
        };
        let _ = writeln!(t, "\n[auth]\nmethod = {}", toml_str(method));
        let _ = writeln!(t, "local_id = {}", toml_str(&self.client_id));
        let remote_id = self
            .expected_gateway_id
            .as_ref()
            .unwrap_or(&self.gateway_id);
        let _ = writeln!(t, "remote_id = {}", toml_str(remote_id));
        match self.auth.certs() {
            None => {
                let _ = writeln!(t, "psk = {}", toml_str(self.client_secret()));
            }
            Some(c) => {
                let path = |p: &PathBuf| toml_str(&p.to_string_lossy());
                let _ = writeln!(t, "ca = {}", path(&c.client_ca));
                if let (Some(cert), Some(key)) = (&c.client_cert, &c.client_key) {
                    let _ = writeln!(t, "cert = {}", path(cert));
                    let _ = writeln!(t, "key = {}", path(key));
                }
                if let Some((bundle, pass)) = &c.client_pkcs12 {
                    let _ = writeln!(t, "pkcs12 = {}", path(bundle));
                    let _ = writeln!(t, "key_passphrase = {}", toml_str(pass));
                }
                if let Some(crl) = &c.client_crl {
                    let _ = writeln!(t, "crl = {}", path(crl));
                }
            }
        }
        let _ = writeln!(t, "\n[phase1]\nproposals = {}", toml_list(&self.client_ike));
        if let Some((p1, _)) = self.lifetimes {
            let _ = writeln!(t, "lifetime = \"{p1}s\"");
        }
        let _ = writeln!(t, "\n[phase2]\nproposals = {}", toml_list(&self.client_esp));
        if let Some((_, p2)) = self.lifetimes {
            let _ = writeln!(t, "lifetime = \"{p2}s\"");
        }
        if let Some(kb) = self.phase2_kb {
            let _ = writeln!(t, "lifetime_kb = {kb}");
        }
        let _ = writeln!(
            t,
            "pfs = {}",
            toml_str(self.pfs.as_deref().unwrap_or("none"))
        );
        let mode = if self.transport {
            "transport"
        } else {
            "tunnel"
        };
        let _ = writeln!(t, "mode = {}", toml_str(mode));
        match &self.mode_config {
            // Networks from the gateway's split-include (Cisco Unity).
            Some(m) => {
                let _ = writeln!(
                    t,
                    "\n[network]\nmode_config = {}",
                    toml_str(if m.pull { "pull" } else { "push" })
                );
            }
            None if self.transport => {
                let _ = writeln!(t, "\n[network]\nmode_config = \"off\"");
            }
            None => {
                // A full tunnel names no remote network.
                let remote: &[String] = if self.full_tunnel {
                    &[]
                } else {
                    &[LAN_NET.to_string()]
                };
                let _ = writeln!(t, "remote_networks = {}", toml_list(remote));
                let _ = writeln!(t, "\n[network]\nmode_config = \"off\"");
                let _ = writeln!(t, "virtual_ip = {}", toml_str(CLIENT_VIP));
            }
        }
        if let Some(d) = &self.datapath {
            let _ = writeln!(t, "datapath = {}", toml_str(d));
        }
        if let Some(n) = &self.nat_traversal {
            let _ = writeln!(t, "nat_traversal = {}", toml_str(n));
        }
        if let Some((i, to)) = self.dpd {
            let _ = writeln!(t, "dpd = {{ interval = \"{i}s\", timeout = \"{to}s\" }}");
        }
        if let Some(x) = &self.xauth {
            let _ = writeln!(t, "\n[xauth]\nusername = {}", toml_str(&x.user));
            let _ = writeln!(t, "password = {}", toml_str(&x.client_password));
        }
        t
    }
}

struct SwanSide<'a> {
    ike_version: u8,
    aggressive: bool,
    local_addr: &'a str,
    remote_addr: Option<&'a str>,
    local_id: &'a str,
    remote_id: &'a str,
    ike: &'a [String],
    esp: &'a [String],
    local_ts: &'a str,
    remote_ts: &'a str,
    secret: &'a str,
    /// Gateway side: a second authentication round by XAuth.
    xauth: Option<&'a XAuthLab>,
    /// Gateway side: hand out addresses from pool0 (push when not pull).
    mode_config: Option<&'a ModeConfigLab>,
    force_fragmentation: bool,
    auth: &'a LabAuth,
}

fn swanctl_conf(s: &SwanSide<'_>) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "connections {{\n  {CONN} {{");
    let _ = writeln!(c, "    version = {}", s.ike_version);
    let _ = writeln!(
        c,
        "    aggressive = {}",
        if s.aggressive { "yes" } else { "no" }
    );
    let _ = writeln!(c, "    local_addrs = {}", s.local_addr);
    if let Some(r) = s.remote_addr {
        let _ = writeln!(c, "    remote_addrs = {r}");
    }
    let _ = writeln!(c, "    proposals = {}", s.ike.join(","));
    if s.force_fragmentation {
        let _ = writeln!(c, "    fragmentation = force");
    }
    if let Some(m) = s.mode_config {
        let _ = writeln!(c, "    pools = pool0");
        // IKEv1 only (IKEv2 has no push).
        if s.ike_version == 1 {
            let _ = writeln!(c, "    pull = {}", if m.pull { "yes" } else { "no" });
        }
    }
    let (local_auth, mut remote_auth) = match s.auth {
        LabAuth::Psk => ("auth = psk", "auth = psk".to_string()),
        LabAuth::Signature(_) => (
            "auth = pubkey\n      certs = gw.pem",
            "auth = pubkey".to_string(),
        ),
        LabAuth::Hybrid(_) => (
            "auth = pubkey\n      certs = gw.pem",
            "auth = xauth".to_string(),
        ),
    };
    if let (2, Some(x)) = (s.ike_version, s.xauth) {
        remote_auth = format!("auth = eap-mschapv2\n      eap_id = {}", swan_str(&x.user));
    }
    let _ = writeln!(
        c,
        "    local {{\n      {local_auth}\n      id = {}\n    }}",
        swan_id(s.local_id)
    );
    let _ = write!(
        c,
        "    remote {{\n      {remote_auth}\n      id = {}\n",
        swan_id(s.remote_id)
    );
    let hybrid = matches!(s.auth, LabAuth::Hybrid(_));
    // IKEv2: the user's login is EAP-MSCHAPv2 in place of the remote's AUTH.
    let eap = s.ike_version == 2 && s.xauth.is_some();
    if let (true, Some(x)) = (hybrid && !eap, s.xauth) {
        let _ = writeln!(c, "      xauth_id = {}", swan_str(&x.user));
    }
    let _ = writeln!(c, "    }}");
    if let (false, Some(x)) = (hybrid || eap, s.xauth) {
        let _ = writeln!(
            c,
            "    remote-xauth {{\n      auth = xauth\n      xauth_id = {}\n    }}",
            swan_str(&x.user)
        );
    }
    let _ = writeln!(c, "    children {{\n      {CHILD} {{");
    let _ = writeln!(c, "        local_ts = {}", s.local_ts);
    let _ = writeln!(c, "        remote_ts = {}", s.remote_ts);
    let _ = writeln!(c, "        esp_proposals = {}", s.esp.join(","));
    let _ = writeln!(c, "      }}\n    }}\n  }}\n}}");
    let _ = writeln!(c, "secrets {{\n  ike-{CONN} {{");
    let _ = writeln!(c, "    id-local = {}", swan_id(s.local_id));
    let _ = writeln!(c, "    id-remote = {}", swan_id(s.remote_id));
    let _ = writeln!(c, "    secret = {}", swan_str(s.secret));
    let _ = writeln!(c, "  }}");
    if let Some(x) = s.xauth {
        let kind = if s.ike_version == 2 { "eap" } else { "xauth" };
        let _ = writeln!(
            c,
            "  {kind}-user {{\n    id = {}\n    secret = {}\n  }}",
            swan_str(&x.user),
            swan_str(&x.gw_password)
        );
    }
    let _ = writeln!(c, "}}");
    c
}

/// Postern ID syntax → strongSwan identity syntax.
pub fn swan_id(id: &str) -> String {
    let (kind, value) = id.split_once(':').unwrap_or(("", id));
    let v = match kind {
        "address" => value.to_string(),
        "fqdn" => format!("fqdn:{value}"),
        "user-fqdn" => format!("email:{value}"),
        "keyid" => format!("keyid:{value}"),
        "dn" => value.to_string(),
        _ => id.to_string(),
    };
    swan_str(&v)
}

fn swan_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn toml_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod secret_list {
    use super::LAB_SECRETS;

    /// The string literal arguments of `call(` in `text` (`"a", "b"` -> a, b).
    fn literal_args<'a>(text: &'a str, call: &str) -> Vec<&'a str> {
        calls(text, call).into_iter().flatten().collect()
    }

    /// The string literal arguments of each `call(` in `text`, call by call.
    fn calls<'a>(text: &'a str, call: &str) -> Vec<Vec<&'a str>> {
        text.split(call)
            .skip(1)
            .map(|part| {
                let args = part.split(')').next().unwrap_or("");
                args.split('"').skip(1).step_by(2).collect()
            })
            .collect()
    }

    #[test]
    fn every_secret_in_the_test_sources_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        let mut files = 0;
        for sub in ["src", "src/bin", "tests"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                files += 1;
                let text = std::fs::read_to_string(&p).unwrap();
                // .xauth(user, gateway password, client password): the two passwords.
                for args in calls(&text, ".xauth(") {
                    found.extend(args.iter().skip(1).map(|a| a.to_string()));
                }
                found.extend(
                    literal_args(&text, ".client_psk(")
                        .into_iter()
                        .map(str::to_string),
                );
                for line in text.lines() {
                    let l = line.trim_start();
                    let named = ["PASSWORD", "PASSPHRASE", "PSK", "SECRET"]
                        .iter()
                        .any(|n| l.split(':').next().is_some_and(|c| c.contains(n)));
                    let constant = l.starts_with("const ") || l.starts_with("pub const ");
                    if constant
                        && named
                        && let Some(v) = l.split('"').nth(1)
                    {
                        found.push(v.to_string());
                    }
                }
            }
        }
        assert!(files > 20, "only {files} source files read");
        assert!(found.len() > 10, "only {found:?} found");
        for s in found {
            if s.len() < 4 {
                continue;
            }
            assert!(
                LAB_SECRETS.iter().any(|(k, _)| *k == s),
                "a secret of the tests is missing from LAB_SECRETS (config.rs): {s}"
            );
        }
    }
}
