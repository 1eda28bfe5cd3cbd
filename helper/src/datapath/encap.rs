//! Which ESP encapsulation to ask the gateway for, decided before phase 1: ESP in UDP
//! (RFC 3948, port 4500) or raw ESP (IP protocol 50).
//!
//! The userspace datapath carries ESP in UDP several times faster than raw ESP: the
//! UDP socket has segmentation offload both ways (one trip through the stack for a run
//! of packets: UDP GSO out, UDP GRO in), a raw socket has neither. So with the
//! userspace datapath and `nat_traversal = "auto"` we ask for UDP encapsulation the way
//! `"force"` does (NAT-T offered and a NAT claimed, as strongSwan's kernel-libipsec
//! always does); a gateway without NAT-T still gets raw ESP. With the kernel datapath
//! `"auto"` keeps its meaning (UDP only when a NAT is found): the kernel's ESP needs no
//! help. The datapath is decided here for that when the profile says `datapath =
//! "auto"` (the caller asks the kernel whether it has ESP, as the tunnel would with
//! the first SA: [`needs_probe`]).

use postern_dbus::profile::{self, Profile};
use postern_engine::ike::NatTraversal;

/// Why the engine's NAT-T setting is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The profile's `nat_traversal = "off"`: raw ESP whatever the path.
    ProfileOff,
    /// The profile's `nat_traversal = "force"`.
    ProfileForce,
    /// `"auto"` with the kernel datapath: ESP in UDP only across a NAT.
    KernelAuto,
    /// `"auto"` with the userspace datapath: ESP in UDP asked for, as it is faster.
    UserspaceUdp,
}

/// What to tell the engine, and what was found out on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub nat_traversal: NatTraversal,
    pub reason: Reason,
    /// The datapath, when it had to be decided now (`Some(true)`: the kernel's).
    pub kernel: Option<bool>,
    /// The line saying why `auto` chose that datapath, when it was decided now.
    pub datapath_line: Option<String>,
}

/// Whether [`plan`] needs to know if the kernel has ESP (`datapath = "auto"` with
/// `nat_traversal = "auto"`): then the caller probes (`xfrm::probe_esp`) and passes
/// the answer.
pub fn needs_probe(p: &Profile) -> bool {
    p.network.nat_traversal == profile::NatTraversal::Auto
        && p.network.datapath == profile::Datapath::Auto
}

/// Decides the NAT-T setting for `p`. `probed`: when [`needs_probe`], whether the
/// kernel has ESP (`Ok(why)`) or not (`Err(why)`); without an answer there, the
/// userspace datapath is assumed (the one that gains from asking).
pub fn plan(p: &Profile, probed: Option<Result<String, String>>) -> Plan {
    let fixed = |nat_traversal, reason| Plan {
        nat_traversal,
        reason,
        kernel: None,
        datapath_line: None,
    };
    match p.network.nat_traversal {
        profile::NatTraversal::Off => fixed(NatTraversal::Off, Reason::ProfileOff),
        profile::NatTraversal::Force => fixed(NatTraversal::Force, Reason::ProfileForce),
        profile::NatTraversal::Auto => {
            let (kernel, datapath_line) = match p.network.datapath {
                profile::Datapath::Kernel => (true, None),
                profile::Datapath::Userspace => (false, None),
                profile::Datapath::Auto => match probed {
                    Some(Ok(why)) => (true, Some(format!("datapath auto: kernel ({why})"))),
                    Some(Err(why)) => (false, Some(format!("datapath auto: userspace ({why})"))),
                    None => (false, None),
                },
            };
            let decided = datapath_line.is_some().then_some(kernel);
            if kernel {
                Plan {
                    nat_traversal: NatTraversal::Auto,
                    reason: Reason::KernelAuto,
                    kernel: decided,
                    datapath_line,
                }
            } else {
                Plan {
                    nat_traversal: NatTraversal::Force,
                    reason: Reason::UserspaceUdp,
                    kernel: decided,
                    datapath_line,
                }
            }
        }
    }
}

impl Plan {
    /// The line said before phase 1, when the plan changes what the profile says.
    pub fn asking_line(&self) -> Option<String> {
        (self.reason == Reason::UserspaceUdp).then(|| {
            "encapsulation: asking for ESP in UDP (the userspace datapath carries it several times faster than raw ESP); raw ESP if the gateway has no NAT traversal".to_string()
        })
    }

    /// The line said with the first SA: which encapsulation the gateway agreed to, and
    /// why. `udp`: the SA is UDP-encapsulated; `nat_t`: the gateway speaks NAT-T;
    /// `remote_nat`: a NAT was found in front of the gateway.
    pub fn chosen_line(&self, udp: bool, nat_t: bool, remote_nat: bool) -> String {
        let why = match (self.reason, udp) {
            (Reason::ProfileOff, _) => "nat_traversal = \"off\"",
            (Reason::ProfileForce, true) => "nat_traversal = \"force\"",
            (Reason::ProfileForce | Reason::UserspaceUdp, false) if !nat_t => {
                "the gateway does not do NAT traversal"
            }
            (Reason::ProfileForce | Reason::UserspaceUdp, false) => {
                "the gateway did not agree to UDP encapsulation"
            }
            (Reason::UserspaceUdp, true) => "asked for by the userspace datapath",
            (Reason::KernelAuto, true) if remote_nat => "a NAT was found in front of the gateway",
            (Reason::KernelAuto, true) => "a NAT was found",
            (Reason::KernelAuto, false) => "no NAT on the path",
        };
        let what = if udp {
            "ESP in UDP (port 4500)"
        } else {
            "raw ESP (IP protocol 50)"
        };
        format!("encapsulation: {what}: {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(nat: &str, datapath: &str) -> Profile {
        let mut p = Profile::new("t", "192.0.2.1");
        p.network.nat_traversal = match nat {
            "off" => profile::NatTraversal::Off,
            "force" => profile::NatTraversal::Force,
            _ => profile::NatTraversal::Auto,
        };
        p.network.datapath = match datapath {
            "kernel" => profile::Datapath::Kernel,
            "userspace" => profile::Datapath::Userspace,
            _ => profile::Datapath::Auto,
        };
        p
    }

    #[test]
    fn userspace_with_auto_asks_for_udp() {
        let prof = profile("auto", "userspace");
        assert!(!needs_probe(&prof));
        let p = plan(&prof, None);
        assert_eq!(p.nat_traversal, NatTraversal::Force);
        assert_eq!(p.reason, Reason::UserspaceUdp);
        assert_eq!((p.kernel, p.datapath_line.as_deref()), (None, None));
        assert!(p.asking_line().is_some_and(|l| l.contains("ESP in UDP")));
    }

    #[test]
    fn auto_datapath_follows_the_probe() {
        let prof = profile("auto", "auto");
        assert!(needs_probe(&prof));
        let p = plan(&prof, Some(Err("the kernel has no ESP".into())));
        assert_eq!(p.nat_traversal, NatTraversal::Force);
        assert_eq!(p.kernel, Some(false));
        assert_eq!(
            p.datapath_line.as_deref(),
            Some("datapath auto: userspace (the kernel has no ESP)")
        );
        let p = plan(&prof, Some(Ok("esp4 works".into())));
        assert_eq!(p.nat_traversal, NatTraversal::Auto);
        assert_eq!(p.reason, Reason::KernelAuto);
        assert_eq!(p.kernel, Some(true));
        assert!(p.asking_line().is_none());
    }

    #[test]
    fn the_profile_decides_when_it_says_so() {
        for dp in ["auto", "kernel", "userspace"] {
            for nat in ["off", "force"] {
                assert!(!needs_probe(&profile(nat, dp)), "{nat} {dp}");
            }
            let p = plan(&profile("off", dp), None);
            assert_eq!((p.nat_traversal, p.kernel), (NatTraversal::Off, None));
            assert!(p.asking_line().is_none());
            let p = plan(&profile("force", dp), None);
            assert_eq!((p.nat_traversal, p.kernel), (NatTraversal::Force, None));
        }
        let p = plan(&profile("auto", "kernel"), None);
        assert_eq!(p.nat_traversal, NatTraversal::Auto);
        assert_eq!(
            p.kernel, None,
            "nothing probed: the tunnel decides as before"
        );
    }

    #[test]
    fn the_chosen_line_says_what_and_why() {
        let user = plan(&profile("auto", "userspace"), None);
        assert_eq!(
            user.chosen_line(true, true, false),
            "encapsulation: ESP in UDP (port 4500): asked for by the userspace datapath"
        );
        assert_eq!(
            user.chosen_line(false, false, false),
            "encapsulation: raw ESP (IP protocol 50): the gateway does not do NAT traversal"
        );
        let off = plan(&profile("off", "userspace"), None);
        assert_eq!(
            off.chosen_line(false, false, false),
            "encapsulation: raw ESP (IP protocol 50): nat_traversal = \"off\""
        );
        let kernel = plan(&profile("auto", "kernel"), None);
        assert!(
            kernel
                .chosen_line(false, true, false)
                .ends_with("no NAT on the path")
        );
        assert!(
            kernel
                .chosen_line(true, true, true)
                .ends_with("in front of the gateway")
        );
    }
}
