//! The site policy an admin of a fleet may set in `/etc/postern/policy.toml`:
//!
//! ```toml
//! [profiles]
//! user_profiles = false          # only system profiles may be connected
//!
//! [algorithms]
//! forbid = ["modp1024", "md5", "3des"]   # any cipher, hash or group name of the proposal syntax
//!
//! [network]
//! kill_switch = "force"          # the kill switch on for every profile ("profile": each decides)
//! ```
//!
//! The helper applies it to every profile it is asked to connect, and
//! `postern-helper check` to every file it checks; a refusal is one sentence naming the
//! proposal and the forbidden name.

use std::path::Path;

use postern_dbus::profile::{DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS, Profile};
use serde::Deserialize;

/// Where the helper reads the policy (root-owned; a missing file is no policy).
pub const POLICY_PATH: &str = "/etc/postern/policy.toml";

/// The policy file this helper applies: [`POLICY_PATH`], or `$POSTERN_POLICY` when root
/// started the helper with it (the lab's private system bus).
pub fn path() -> std::path::PathBuf {
    std::env::var_os("POSTERN_POLICY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(POLICY_PATH))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Users may connect their own profiles (default true).
    pub user_profiles: bool,
    /// Lower-case algorithm names no proposal may contain.
    pub forbid: Vec<String>,
    /// `[network] kill_switch = "force"`: every profile gets the kill switch.
    pub force_kill_switch: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    profiles: RawProfiles,
    #[serde(default)]
    algorithms: RawAlgorithms,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    kill_switch: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfiles {
    user_profiles: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlgorithms {
    #[serde(default)]
    forbid: Vec<String>,
}

/// The names a proposal string is made of (`aes128-sha256-modp2048` → its three parts).
/// The algorithm names of a proposal; a PRF token counts as its hash (`prfsha1` is
/// `sha1`) and `x25519` as `curve25519`, so forbidding a name catches every spelling.
fn parts(proposal: &str) -> impl Iterator<Item = String> + '_ {
    proposal.split('-').map(|t| {
        let t = t.to_ascii_lowercase();
        match t.strip_prefix("prf") {
            Some(h) => h.to_string(),
            None if t == "x25519" => "curve25519".to_string(),
            None => t,
        }
    })
}

impl Policy {
    /// No policy: everything the profile contract accepts.
    pub fn open() -> Policy {
        Policy {
            user_profiles: true,
            forbid: Vec::new(),
            force_kill_switch: false,
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Policy, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| format!("{origin}: {}", e.message()))?;
        let mut forbid = Vec::new();
        for name in raw.algorithms.forbid {
            let n = name.trim().to_ascii_lowercase();
            if n.is_empty() || n.contains('-') || !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "{origin}: algorithms.forbid: '{name}' is not one algorithm name (e.g. \"modp1024\", \"md5\", \"3des\")"
                ));
            }
            forbid.push(n);
        }
        let force_kill_switch = match raw.network.kill_switch.as_deref() {
            None | Some("profile") => false,
            Some("force") => true,
            Some(other) => {
                return Err(format!(
                    "{origin}: network.kill_switch: '{other}' is not \"force\" (on for every profile) or \"profile\" (each profile decides)"
                ));
            }
        };
        Ok(Policy {
            user_profiles: raw.profiles.user_profiles.unwrap_or(true),
            forbid,
            force_kill_switch,
        })
    }

    /// Reads the policy at `path`; a missing file is the open policy.
    pub fn load(path: &Path) -> Result<Policy, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Policy::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::open()),
            Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
        }
    }

    fn forbidden_part(&self, proposal: &str) -> Option<String> {
        parts(proposal).find(|part| self.forbid.contains(part))
    }

    /// Applies the policy to `p`: the default proposals (the profile names none) lose
    /// the forbidden ones quietly; a proposal the profile names that uses a forbidden
    /// algorithm refuses the profile, as `(key, sentence)`.
    pub fn apply(&self, p: &mut Profile) -> Result<(), (String, String)> {
        if self.force_kill_switch {
            // Either datapath: with XFRM the rules know the tunnel's packets by their
            // inner source address.
            p.network.kill_switch = true;
        }
        if self.forbid.is_empty() {
            return Ok(());
        }
        let refuse = |key: &str, proposal: &str, bad: &str| {
            (
                key.to_string(),
                format!("{proposal} uses {bad}, which this machine's policy forbids"),
            )
        };
        let ike_default: Vec<String> = DEFAULT_IKE_PROPOSALS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ike: Vec<String> = p.phase1.proposals.iter().map(ToString::to_string).collect();
        if ike == ike_default {
            p.phase1
                .proposals
                .retain(|x| self.forbidden_part(&x.to_string()).is_none());
        } else if let Some((s, bad)) = ike.iter().find_map(|s| Some((s, self.forbidden_part(s)?))) {
            return Err(refuse("phase1.proposals", s, &bad));
        }
        if let Some(g) = p.phase2.pfs
            && let Some(bad) = self.forbidden_part(g.name())
        {
            return Err(refuse("phase2.pfs", g.name(), &bad));
        }
        let esp_default: Vec<String> = DEFAULT_ESP_PROPOSALS
            .iter()
            .map(|s| s.to_string())
            .collect();
        let esp: Vec<String> = p.phase2.proposals.iter().map(ToString::to_string).collect();
        if esp == esp_default {
            p.phase2
                .proposals
                .retain(|x| self.forbidden_part(&x.to_string()).is_none());
        } else if let Some((s, bad)) = esp.iter().find_map(|s| Some((s, self.forbidden_part(s)?))) {
            return Err(refuse("phase2.proposals", s, &bad));
        }
        if p.phase1.proposals.is_empty() || p.phase2.proposals.is_empty() {
            let key = if p.phase1.proposals.is_empty() {
                "phase1.proposals"
            } else {
                "phase2.proposals"
            };
            return Err((
                key.to_string(),
                "every default proposal uses an algorithm this machine's policy forbids: name allowed proposals".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_dbus::profile::SecretPolicy;

    fn profile(extra: &str) -> Profile {
        let text = format!(
            "name = \"p\"\ngateway = \"vpn.example.com\"\n[auth]\nmethod = \"psk\"\n{extra}"
        );
        Profile::from_toml_str(&text, "p.toml", SecretPolicy::Forbid).unwrap()
    }

    #[test]
    fn forbids_by_name() {
        let pol = Policy::parse(
            "[algorithms]\nforbid = [\"MODP1024\", \"md5\"]\n",
            "policy.toml",
        )
        .unwrap();
        assert!(pol.user_profiles);
        let mut ok = profile(
            "[phase1]\nproposals = [\"aes256-sha256-modp2048\"]\n[phase2]\nproposals = [\"aes128gcm16\"]\n",
        );
        assert_eq!(pol.apply(&mut ok), Ok(()));
        let mut weak =
            profile("[phase1]\nproposals = [\"aes256-sha256-modp2048\", \"3des-sha1-modp1024\"]\n");
        let (key, why) = pol.apply(&mut weak).unwrap_err();
        assert_eq!(key, "phase1.proposals");
        assert!(why.contains("3des-sha1-modp1024 uses modp1024"), "{why}");
        let mut pfs = profile(
            "[phase1]\nproposals = [\"aes256-sha256-modp2048\"]\n[phase2]\nproposals = [\"aes128-sha256\"]\npfs = \"modp1024\"\n",
        );
        assert_eq!(pol.apply(&mut pfs).unwrap_err().0, "phase2.pfs");
        // The defaults lose the forbidden proposals quietly.
        let mut defaults = profile("");
        assert_eq!(pol.apply(&mut defaults), Ok(()));
        let left: Vec<String> = defaults
            .phase1
            .proposals
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(left, ["aes256-sha256-modp2048", "aes128-sha1-modp2048"]);
        // The PRF of an IKEv2 AEAD proposal and the x25519 spelling are caught too.
        let pol2 =
            Policy::parse("[algorithms]\nforbid = [\"sha384\", \"curve25519\"]\n", "p").unwrap();
        for p in [
            "aes256gcm16-prfsha384-ecp256",
            "aes256gcm16-prfsha256-x25519",
        ] {
            let mut v2 = profile("");
            v2.ike_version = 2;
            v2.phase1.proposals = vec![postern_engine::proposal::parse_ike(p).unwrap()];
            assert_eq!(
                pol2.apply(&mut v2).unwrap_err().0,
                "phase1.proposals",
                "{p}"
            );
        }
        let strict = Policy::parse("[algorithms]\nforbid = [\"sha1\", \"sha256\"]\n", "p").unwrap();
        let mut defaults = profile("");
        assert!(
            strict.apply(&mut defaults).is_err(),
            "nothing left to offer"
        );
    }

    #[test]
    fn forces_the_kill_switch() {
        let pol = Policy::parse("[network]\nkill_switch = \"force\"\n", "policy.toml").unwrap();
        assert!(pol.force_kill_switch);
        let mut p = profile("");
        assert!(!p.network.kill_switch);
        assert_eq!(pol.apply(&mut p), Ok(()));
        assert!(p.network.kill_switch, "forced on");
        let mut kernel = profile("[network]\ndatapath = \"kernel\"\n");
        assert_eq!(pol.apply(&mut kernel), Ok(()));
        assert!(kernel.network.kill_switch, "forced on with XFRM too");
        // "profile" (the default): each profile decides.
        let open = Policy::parse("[network]\nkill_switch = \"profile\"\n", "p").unwrap();
        let mut p = profile("");
        assert_eq!(open.apply(&mut p), Ok(()));
        assert!(!p.network.kill_switch);
        let e = Policy::parse("[network]\nkill_switch = \"yes\"\n", "policy.toml").unwrap_err();
        assert!(e.starts_with("policy.toml: network.kill_switch"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_file() {
        let e = Policy::parse(
            "[algorithms]\nforbid = [\"aes-128\"]\n",
            "/etc/postern/policy.toml",
        )
        .unwrap_err();
        assert!(
            e.starts_with("/etc/postern/policy.toml: algorithms.forbid"),
            "{e}"
        );
        let e = Policy::parse("[algorithm]\n", "policy.toml").unwrap_err();
        assert!(e.starts_with("policy.toml"), "{e}");
        let p = Policy::parse("[profiles]\nuser_profiles = false\n", "x").unwrap();
        assert!(!p.user_profiles);
        assert_eq!(
            Policy::load(Path::new("/nonexistent/policy.toml")).unwrap(),
            Policy::open()
        );
    }
}
