//! A tunnel's state as front ends show it, folded from its [`Event`]s.
//!
//! The D-Bus service keeps one [`Status`] per connection and publishes it as
//! properties; nothing here holds a key.

use std::net::IpAddr;

use postern_dbus::interface::detail;

use super::{Event, Failure, SaSummary};

/// Where a tunnel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Connecting,
    /// Waiting for the user's XAuth answers.
    NeedsCredentials,
    Connected,
    /// Lost the gateway; waiting to try again.
    Reconnecting,
    Disconnecting,
    Disconnected,
    Failed,
}

impl State {
    /// The tunnel has ended (its object only lingers for front ends to read).
    pub fn is_final(self) -> bool {
        matches!(self, State::Disconnected | State::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::NeedsCredentials => "needs-credentials",
            State::Connected => "connected",
            State::Reconnecting => "reconnecting",
            State::Disconnecting => "disconnecting",
            State::Disconnected => "disconnected",
            State::Failed => "failed",
        }
    }
}

/// Everything a front end may see of one tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// `resolving`, `phase1`, `xauth`, `mode-config`, `phase2`, `established`.
    pub phase: &'static str,
    /// What the tunnel is doing beyond its state (`postern_dbus::interface::detail`),
    /// or empty.
    pub detail: &'static str,
    pub gateway: String,
    pub virtual_ip: Option<IpAddr>,
    /// The IPv6 inner address beside an IPv4 `virtual_ip` (dual stack).
    pub virtual_ip6: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    /// The domain the gateway gave (its default domain, else the first split-DNS name).
    pub domain: Option<String>,
    pub routes: Vec<String>,
    /// Live ESP SA pairs, oldest first.
    pub sas: Vec<SaSummary>,
    /// Phase 1 algorithms, e.g. `aes256-sha256-modp2048`.
    pub ike_proposal: String,
    /// The profile's IKE version (1 or 2); 0: not known.
    pub ike_version: u32,
    /// The last failure or gateway complaint: its kind and one sentence.
    pub last_error: Option<postern_dbus::failure::Failure>,
    /// What the firewall holds: `kill switch on: ...`, `IPv6 blocked while
    /// connected: ...` (empty: nothing). Kept while reconnecting.
    pub protection: Vec<String>,
}

impl Status {
    pub fn new(gateway: &str) -> Self {
        Status {
            phase: "resolving",
            gateway: gateway.to_string(),
            ..Status::default()
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &Event) {
        match e {
            Event::Connecting { remote, .. } => {
                // A negotiation after a network change stays "reconnecting".
                self.state = if self.detail == detail::NETWORK_CHANGED {
                    State::Reconnecting
                } else {
                    State::Connecting
                };
                self.phase = "phase1";
                self.gateway = remote.ip().to_string();
                self.sas.clear();
            }
            Event::Phase1Established(i) => {
                self.phase = "phase2";
                self.ike_proposal = i.proposal.clone();
            }
            Event::Phase1Renewed { proposal, .. } => self.ike_proposal = proposal.clone(),
            Event::Phase2Established(sa) => {
                self.sas.push(sa.clone());
                if let Some(ip) = host_of(&sa.local_ts) {
                    self.add_address(ip);
                }
                if !self.routes.contains(&sa.remote_ts) {
                    self.routes.push(sa.remote_ts.clone());
                }
                for (local, remote) in &sa.more_ts {
                    if let Some(ip) = host_of(local) {
                        self.add_address(ip);
                    }
                    if !self.routes.contains(remote) {
                        self.routes.push(remote.clone());
                    }
                }
            }
            Event::Connected { .. } => {
                self.state = State::Connected;
                self.phase = "established";
                self.detail = "";
            }
            Event::NetworkChanged { .. } => {
                self.state = State::Reconnecting;
                self.detail = detail::NETWORK_CHANGED;
                self.phase = "resolving";
                self.sas.clear();
            }
            Event::Resumed => self.detail = detail::RESUMED,
            Event::GatewayAnswered => {
                if self.detail == detail::RESUMED {
                    self.detail = "";
                }
            }
            Event::CredentialsRequired(_) => {
                self.state = State::NeedsCredentials;
                self.phase = "xauth";
            }
            Event::XAuthSucceeded => {
                if self.state != State::Reconnecting {
                    self.state = State::Connecting;
                }
                self.phase = "mode-config";
            }
            Event::ModeConfig(info) => {
                if let Some(a) = info.address {
                    self.virtual_ip = Some(IpAddr::V4(a));
                }
                if let Some((a, _)) = info.address6 {
                    self.add_address(IpAddr::V6(a));
                }
                self.dns = info.dns.clone();
                self.domain = info
                    .default_domain
                    .clone()
                    .or_else(|| info.split_dns.first().cloned());
                self.phase = "phase2";
            }
            Event::Phase2Failed(f) | Event::Phase1RenewalFailed(f) => {
                self.last_error = Some(f.public())
            }
            Event::Phase2Deleted { spi_in, .. } => self.sas.retain(|s| s.spi_in != *spi_in),
            Event::ConnectionLost { failure, .. } | Event::ReconnectFailed { failure, .. } => {
                self.state = State::Reconnecting;
                self.detail = "";
                self.phase = "resolving";
                self.last_error = Some(failure.public());
                self.sas.clear();
                self.routes.clear();
            }
            Event::FailedHolding(failure) => {
                // Failed; the kill switch (in `protection`) stays until the disconnect.
                self.state = State::Failed;
                self.detail = "";
                self.phase = "resolving";
                self.last_error = Some(failure.public());
                self.sas.clear();
                self.routes.clear();
                self.virtual_ip = None;
            }
            Event::Closing { .. } => self.state = State::Disconnecting,
            Event::Disconnected => self.finish(None),
            Event::Protection(lines) => self.protection = lines.clone(),
            Event::Datapath(_)
            | Event::Responding { .. }
            | Event::Note(_)
            | Event::Roamed { .. } => {}
        }
    }

    /// The task ended: cleanly (`None`) or with a failure.
    pub fn finish(&mut self, failure: Option<&Failure>) {
        self.detail = "";
        self.state = if failure.is_some() {
            State::Failed
        } else {
            State::Disconnected
        };
        if let Some(f) = failure {
            self.last_error = Some(f.public());
        }
        self.sas.clear();
        self.routes.clear();
        self.dns.clear();
        self.domain = None;
        self.virtual_ip = None;
        self.virtual_ip6 = None;
        self.protection.clear();
    }

    /// An inner address of the tunnel: the first one, or an IPv6 one beside IPv4.
    fn add_address(&mut self, ip: IpAddr) {
        match self.virtual_ip {
            None => self.virtual_ip = Some(ip),
            Some(v) if v.is_ipv4() && ip.is_ipv6() => {
                self.virtual_ip6.get_or_insert(ip);
            }
            Some(_) => {}
        }
    }

    /// The inner addresses as front ends show them (`VirtualIp`): `10.200.1.1`, or
    /// `10.200.1.1,fd01::1` with IPv6 beside IPv4; empty when none yet.
    pub fn addresses(&self) -> String {
        [self.virtual_ip, self.virtual_ip6]
            .into_iter()
            .flatten()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `10.200.0.5/32` → `10.200.0.5`; anything wider → `None`.
fn host_of(ts: &str) -> Option<IpAddr> {
    match ts.split_once('/') {
        Some((a, p)) if p == "32" || p == "128" => a.parse().ok(),
        Some(_) => None,
        None => ts.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sa(spi: u32) -> SaSummary {
        SaSummary {
            spi_in: spi,
            spi_out: spi + 1,
            proposal: "aes128-sha256".into(),
            mode: "tunnel",
            udp_encapsulation: true,
            local_ts: "10.200.0.5/32".into(),
            remote_ts: "10.77.0.0/24".into(),
            more_ts: Vec::new(),
            lifetime: Duration::from_secs(3600),
            lifetime_kb: None,
        }
    }

    #[test]
    fn ipv6_beside_ipv4_is_shown_with_its_network() {
        let mut s = Status::new("gw");
        s.apply(&Event::Phase2Established(sa(7)));
        let mut v6 = sa(9);
        v6.local_ts = "fd01::1/128".into();
        v6.remote_ts = "fd00:77::/64".into();
        s.apply(&Event::Phase2Established(v6));
        assert_eq!(s.addresses(), "10.200.0.5,fd01::1");
        assert_eq!(
            s.routes,
            vec!["10.77.0.0/24".to_string(), "fd00:77::/64".to_string()]
        );
        // IPv6 only: the one address.
        let mut only = Status::new("gw");
        let mut v6 = sa(9);
        v6.local_ts = "fd01::1/128".into();
        only.apply(&Event::Phase2Established(v6));
        assert_eq!(only.addresses(), "fd01::1");
        s.apply(&Event::Disconnected);
        assert_eq!(s.addresses(), "");
    }

    #[test]
    fn one_ikev2_sa_with_an_ipv6_pair_shows_both_addresses_and_networks() {
        let mut s = Status::new("gw");
        let mut both = sa(7);
        both.more_ts = vec![("fd01::5/128".into(), "fd00:77::/64".into())];
        s.apply(&Event::Phase2Established(both.clone()));
        assert_eq!(s.addresses(), "10.200.0.5,fd01::5");
        assert_eq!(
            s.routes,
            vec!["10.77.0.0/24".to_string(), "fd00:77::/64".to_string()]
        );
        assert!(
            Event::Phase2Established(both)
                .to_string()
                .contains("remote_ts=10.77.0.0/24 local_ts=fd01::5/128 remote_ts=fd00:77::/64 ")
        );
    }

    #[test]
    fn a_tunnel_comes_up_and_goes_down() {
        let mut s = Status::new("gw");
        s.apply(&Event::Connecting {
            name: "x".into(),
            remote: "192.0.2.1:500".parse().expect("addr"),
            local: "192.0.2.2".parse().expect("addr"),
            mode: "main",
        });
        assert_eq!(s.phase, "phase1");
        s.apply(&Event::Phase2Established(sa(7)));
        s.apply(&Event::Connected {
            elapsed: Duration::from_millis(5),
        });
        assert_eq!(s.state, State::Connected);
        assert_eq!(s.virtual_ip, Some("10.200.0.5".parse().expect("ip")));
        assert_eq!(s.routes, vec!["10.77.0.0/24".to_string()]);
        s.apply(&Event::Phase2Deleted {
            spi_in: 7,
            spi_out: 8,
            by_peer: true,
        });
        assert!(s.sas.is_empty());
        s.apply(&Event::Closing {
            reason: "D-Bus".into(),
        });
        assert_eq!(s.state, State::Disconnecting);
        s.apply(&Event::Disconnected);
        assert_eq!(s.state, State::Disconnected);
        assert_eq!(s.virtual_ip, None);
    }

    #[test]
    fn a_network_change_shows_until_connected_again() {
        let mut s = Status::new("gw");
        s.apply(&Event::Phase2Established(sa(7)));
        s.apply(&Event::Connected {
            elapsed: Duration::from_millis(5),
        });
        s.apply(&Event::NetworkChanged {
            from: "192.0.2.2".parse().expect("addr"),
            to: "192.0.2.77".parse().expect("addr"),
        });
        assert_eq!(s.state, State::Reconnecting);
        assert_eq!(s.detail, "reconnecting: network changed");
        assert!(s.sas.is_empty());
        // The inner address and routes stay meanwhile.
        assert_eq!(s.virtual_ip, Some("10.200.0.5".parse().expect("ip")));
        assert_eq!(s.routes, vec!["10.77.0.0/24".to_string()]);
        s.apply(&Event::Connecting {
            name: "x".into(),
            remote: "192.0.2.1:500".parse().expect("addr"),
            local: "192.0.2.77".parse().expect("addr"),
            mode: "main",
        });
        assert_eq!(s.state, State::Reconnecting);
        assert_eq!(s.detail, "reconnecting: network changed");
        s.apply(&Event::Phase2Established(sa(9)));
        s.apply(&Event::Connected {
            elapsed: Duration::from_millis(5),
        });
        assert_eq!(s.state, State::Connected);
        assert_eq!(s.detail, "");
    }

    #[test]
    fn a_resume_shows_until_the_gateway_answers() {
        let mut s = Status::new("gw");
        s.apply(&Event::Connected {
            elapsed: Duration::from_millis(5),
        });
        s.apply(&Event::Resumed);
        assert_eq!(s.state, State::Connected);
        assert_eq!(s.detail, "resumed: checking the gateway");
        s.apply(&Event::GatewayAnswered);
        assert_eq!(s.detail, "");
    }

    #[test]
    fn a_failure_holding_the_kill_switch_shows_it_until_the_disconnect() {
        use postern_dbus::failure::FailureKind;
        let mut s = Status::new("gw");
        let on = vec!["kill switch on: nothing leaves outside the tunnel".to_string()];
        s.apply(&Event::Protection(on.clone()));
        assert_eq!(s.protection, on, "from the first attempt");
        s.apply(&Event::FailedHolding(Failure::new(
            FailureKind::AuthenticationFailed,
            "XAuth failed: Login incorrect",
        )));
        assert_eq!(s.state, State::Failed);
        assert_eq!(s.protection, on, "held after the failure");
        assert_eq!(
            s.last_error.as_ref().map(|e| e.kind),
            Some(FailureKind::AuthenticationFailed)
        );
        // The user disconnects: the table goes, then the task ends.
        s.apply(&Event::Protection(Vec::new()));
        assert!(s.protection.is_empty());
        assert_eq!(
            Event::FailedHolding(Failure::new(FailureKind::NotResponding, "gone")).to_string(),
            "failed: gone; the kill switch holds until you disconnect"
        );
    }

    #[test]
    fn failures_are_kept_with_their_kind() {
        use postern_dbus::failure::FailureKind;
        let mut s = Status::new("gw");
        s.finish(Some(&Failure::new(
            FailureKind::AuthenticationFailed,
            "authentication failed (x)",
        )));
        assert_eq!(s.state, State::Failed);
        let e = s.last_error.expect("a failure");
        assert_eq!(e.kind, FailureKind::AuthenticationFailed);
        assert_eq!(e.message, "authentication failed (x)");
    }
}
