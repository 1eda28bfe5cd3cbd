//! The kill switch and the IPv6 leak block: an nftables table of Postern's own
//! (`inet postern_<pid>_<n>`), one per tunnel, with one `output` chain.
//!
//! Made with the `nftables` crate: typed rules serialised to nftables' JSON and handed
//! to `nft -j -f -` (no shell, no rule strings). Each change is one nft transaction:
//! the table is deleted and made again in the same batch, so there is never a moment
//! without it. The table is recorded in a crash journal of its own before it is made, so
//! `postern-helper cleanup` deletes it after a crash like every other kernel object.
//!
//! What the `output` chain lets out, in order (everything else it refuses, with an
//! ICMP "administratively prohibited" so applications fail at once instead of hanging):
//!
//! 1. loopback;
//! 2. IKE (UDP 500, 4500) and raw ESP to the gateway;
//! 3. DHCP and DHCPv6 client traffic, IPv6 neighbour discovery on the link;
//! 4. DNS (port 53, UDP and TCP) only to the tunnel's servers, when pinned;
//! 5. anything through Postern's TUN devices (`postern*`); with the kernel (XFRM)
//!    datapath, which has no device, the tunnel's own packets: source = the inner
//!    address (to the tunnel's networks, or anywhere for a full tunnel). The output
//!    hook sees them in the clear before XFRM encrypts them (the ESP packet then
//!    passes the hook again, to the gateway: rule 2); XFRM's `out` policy for that
//!    source sends them through an SA or drops them, and without the inner address
//!    on the host no packet can have that source, so nothing of it leaves in the clear;
//! 6. the local networks (RFC 1918, link-local, multicast; IPv6 ULA and link-local),
//!    when `allow_lan`;
//! 7. then: a full tunnel refuses everything else; a split tunnel refuses only its
//!    networks (the rest of the traffic goes out as it would without Postern).
//!
//! The IPv6 leak block alone (full tunnel without IPv6 inside, no kill switch) keeps
//! 1, 2, 3 and 5 and refuses every other IPv6 packet.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Reject, RejectType, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};

use super::KernelError;
use super::journal::{Entry, Journal, run_dir};

/// Every table Postern makes starts with this.
pub const TABLE_PREFIX: &str = "postern_";

/// What the table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The kill switch: the tunnel's traffic never leaves outside it.
    KillSwitch,
    /// Only IPv6 refused outside the tunnel (a full tunnel that carries IPv4 only).
    Ipv6Block,
}

/// The facts the rules are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub mode: Mode,
    /// The gateway's address: IKE and ESP to it always go out.
    pub gateway: IpAddr,
    /// Everything goes through the tunnel (else only `networks`).
    pub full_tunnel: bool,
    /// The tunnel's networks (split tunnel), as (address, prefix).
    pub networks: Vec<(IpAddr, u8)>,
    /// Port 53 only to `dns` (an empty list: no DNS outside loopback).
    pub pin_dns: bool,
    pub dns: Vec<IpAddr>,
    /// The local networks stay reachable outside the tunnel.
    pub allow_lan: bool,
    /// A full tunnel without IPv6 inside: every IPv6 packet outside it is refused.
    pub block_ipv6: bool,
    /// The kernel (XFRM) datapath's inner address: its packets are the tunnel's.
    pub inner: Option<IpAddr>,
    /// Held before the tunnel is up (its networks not known yet: everything but the
    /// way to the gateway is refused).
    pub connecting: bool,
}

impl Rules {
    /// The lines said at connect (and shown by the front ends).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode == Mode::KillSwitch {
            let scope = if self.full_tunnel {
                "nothing leaves outside the tunnel".to_string()
            } else {
                let nets: Vec<String> = self
                    .networks
                    .iter()
                    .map(|(a, p)| format!("{a}/{p}"))
                    .collect();
                format!(
                    "the tunnel's networks ({}) only through it",
                    if nets.is_empty() {
                        "-".to_string()
                    } else {
                        nets.join(",")
                    }
                )
            };
            let mut extra = Vec::new();
            if self.pin_dns {
                let d: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
                extra.push(if d.is_empty() {
                    "DNS: loopback only".to_string()
                } else {
                    format!("DNS only to {}", d.join(","))
                });
            }
            if self.allow_lan {
                extra.push("local network allowed".to_string());
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("; {}", extra.join("; "))
            };
            let when = if self.connecting {
                " (while connecting: only the gateway is reached)"
            } else {
                ""
            };
            out.push(format!("kill switch on: {scope}{extra}{when}"));
        }
        if self.block_ipv6 {
            out.push("IPv6 blocked while connected: the tunnel carries IPv4 only".to_string());
        }
        out
    }
}

/// An installed table; [`Firewall::remove`] deletes it (also done on drop).
pub struct Firewall {
    table: String,
    journal: Option<Journal>,
    rules: Rules,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn nft_error(what: &str, e: nftables::helper::NftablesError) -> KernelError {
    let detail = match &e {
        nftables::helper::NftablesError::NftFailed { stderr, .. } => {
            let s = stderr.trim();
            // nft's own message, first line, bounded.
            s.lines().next().unwrap_or("").chars().take(200).collect()
        }
        other => other.to_string(),
    };
    KernelError::Netlink {
        what: what.to_string(),
        source: detail.into(),
    }
}

// ----- expression helpers -----

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(v.into().into())
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn is_not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn prefix(addr: IpAddr, len: u8) -> Expression<'static> {
    if (addr.is_ipv4() && len == 32) || (addr.is_ipv6() && len == 128) {
        return s(addr.to_string());
    }
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(addr.to_string())),
        len: u32::from(len),
    }))
}

fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items
            .into_iter()
            .map(nftables::expr::SetItem::Element)
            .collect(),
    ))
}

fn daddr(v6: bool) -> Expression<'static> {
    if v6 {
        field("ip6", "daddr")
    } else {
        field("ip", "daddr")
    }
}

fn saddr(v6: bool) -> Expression<'static> {
    if v6 {
        field("ip6", "saddr")
    } else {
        field("ip", "saddr")
    }
}

fn nfproto(v6: bool) -> Statement<'static> {
    is(meta(MetaKey::Nfproto), s(if v6 { "ipv6" } else { "ipv4" }))
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn refuse() -> Statement<'static> {
    Statement::Reject(Some(Reject::new(
        Some(RejectType::ICMPX),
        Some(RejectCode::AdminProhibited),
    )))
}

/// The local networks (`allow_lan`); also kept outside a full tunnel's routes.
pub fn lan(v6: bool) -> Vec<(IpAddr, u8)> {
    let list: &[(&str, u8)] = if v6 {
        &[("fe80::", 10), ("fc00::", 7), ("ff00::", 8)]
    } else {
        &[
            ("10.0.0.0", 8),
            ("172.16.0.0", 12),
            ("192.168.0.0", 16),
            ("169.254.0.0", 16),
            ("224.0.0.0", 4),
            ("255.255.255.255", 32),
        ]
    };
    list.iter()
        .filter_map(|(a, l)| a.parse().ok().map(|a| (a, *l)))
        .collect()
}

impl Rules {
    /// The `output` chain's rules, in order.
    pub fn statements(&self) -> Vec<Vec<Statement<'static>>> {
        let mut r: Vec<Vec<Statement<'static>>> = Vec::new();
        r.push(vec![is(meta(MetaKey::Oifname), s("lo")), accept()]);
        // IKE and ESP to the gateway.
        let gv6 = self.gateway.is_ipv6();
        r.push(vec![
            is(daddr(gv6), s(self.gateway.to_string())),
            is(meta(MetaKey::L4proto), s("udp")),
            is(
                field("udp", "dport"),
                set(vec![Expression::Number(500), Expression::Number(4500)]),
            ),
            accept(),
        ]);
        r.push(vec![
            is(daddr(gv6), s(self.gateway.to_string())),
            is(meta(MetaKey::L4proto), s("esp")),
            accept(),
        ]);
        // DHCP, DHCPv6 and the link's IPv6 neighbour discovery.
        r.push(vec![
            is(field("udp", "sport"), Expression::Number(68)),
            is(field("udp", "dport"), Expression::Number(67)),
            accept(),
        ]);
        r.push(vec![
            is(field("udp", "sport"), Expression::Number(546)),
            is(field("udp", "dport"), Expression::Number(547)),
            accept(),
        ]);
        r.push(vec![
            is(meta(MetaKey::L4proto), s("ipv6-icmp")),
            is(
                field("ip6", "daddr"),
                set(vec![
                    prefix(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0).into(), 10),
                    prefix(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0).into(), 16),
                ]),
            ),
            accept(),
        ]);
        if self.mode == Mode::KillSwitch && self.pin_dns {
            for proto in ["udp", "tcp"] {
                for v6 in [false, true] {
                    let servers: Vec<Expression<'static>> = self
                        .dns
                        .iter()
                        .filter(|a| a.is_ipv6() == v6)
                        .map(|a| s(a.to_string()))
                        .collect();
                    let mut rule = vec![
                        nfproto(v6),
                        is(meta(MetaKey::L4proto), s(proto)),
                        is(field(proto_static(proto), "dport"), Expression::Number(53)),
                    ];
                    if !servers.is_empty() {
                        rule.push(is_not(daddr(v6), set(servers)));
                    }
                    rule.push(refuse());
                    r.push(rule);
                }
            }
        }
        // Through the tunnel (Postern's TUN devices).
        r.push(vec![is(meta(MetaKey::Oifname), s("postern*")), accept()]);
        // The kernel datapath's packets, in the clear before XFRM takes them.
        if let Some(inner) = self.inner {
            let v6 = inner.is_ipv6();
            let from = is(saddr(v6), s(inner.to_string()));
            if self.full_tunnel {
                r.push(vec![from, accept()]);
            } else {
                let nets: Vec<Expression<'static>> = self
                    .networks
                    .iter()
                    .filter(|(a, _)| a.is_ipv6() == v6)
                    .map(|(a, l)| prefix(*a, *l))
                    .collect();
                if !nets.is_empty() {
                    r.push(vec![from, is(daddr(v6), set(nets)), accept()]);
                }
            }
        }
        match self.mode {
            Mode::Ipv6Block => {
                r.push(vec![nfproto(true), refuse()]);
            }
            Mode::KillSwitch => {
                if self.full_tunnel {
                    if self.allow_lan {
                        for v6 in [false, true] {
                            let nets: Vec<Expression<'static>> =
                                lan(v6).into_iter().map(|(a, l)| prefix(a, l)).collect();
                            r.push(vec![is(daddr(v6), set(nets)), accept()]);
                        }
                    }
                    r.push(vec![refuse()]);
                } else {
                    for v6 in [false, true] {
                        let nets: Vec<Expression<'static>> = self
                            .networks
                            .iter()
                            .filter(|(a, _)| a.is_ipv6() == v6)
                            .map(|(a, l)| prefix(*a, *l))
                            .collect();
                        if !nets.is_empty() {
                            r.push(vec![is(daddr(v6), set(nets)), refuse()]);
                        }
                    }
                    if self.block_ipv6 {
                        r.push(vec![nfproto(true), refuse()]);
                    }
                }
            }
        }
        r
    }

    /// The whole nft transaction that (re)makes `table`.
    fn batch(&self, table: &str) -> Nftables<'static> {
        let mut b = Batch::new();
        let t = Table {
            family: NfFamily::INet,
            name: table.to_string().into(),
            handle: None,
        };
        // add + delete + add: one transaction, whether or not the table exists.
        b.add(NfListObject::Table(t.clone()));
        b.delete(NfListObject::Table(t.clone()));
        b.add(NfListObject::Table(t));
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: table.to_string().into(),
            name: "output".into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Output),
            prio: Some(0),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        for expr in self.statements() {
            b.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: table.to_string().into(),
                chain: "output".into(),
                expr: expr.into(),
                ..Rule::default()
            }));
        }
        b.to_nftables()
    }
}

fn proto_static(p: &str) -> &'static str {
    if p == "tcp" { "tcp" } else { "udp" }
}

impl Firewall {
    /// Makes the table (journaled first).
    pub fn install(rules: Rules) -> Result<Firewall, KernelError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let table = format!("{TABLE_PREFIX}{}_{n}", std::process::id());
        let mut journal = Journal::create(&run_dir(), &table)?;
        journal.record(Entry::NfTable {
            family: "inet".into(),
            name: table.clone(),
        })?;
        if let Err(e) = nftables::helper::apply_ruleset(&rules.batch(&table)) {
            journal.finish();
            return Err(nft_error(&format!("nftables table inet {table}"), e));
        }
        Ok(Firewall {
            table,
            journal: Some(journal),
            rules,
        })
    }

    /// Replaces the rules (one transaction); nothing when they are the same.
    pub fn update(&mut self, rules: Rules) -> Result<(), KernelError> {
        if rules == self.rules {
            return Ok(());
        }
        nftables::helper::apply_ruleset(&rules.batch(&self.table))
            .map_err(|e| nft_error(&format!("nftables table inet {}", self.table), e))?;
        self.rules = rules;
        Ok(())
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table and the journal.
    pub fn remove(mut self) -> Result<(), KernelError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), KernelError> {
        let Some(j) = self.journal.take() else {
            return Ok(());
        };
        let r = delete_table("inet", &self.table).map(|_| ());
        if r.is_ok() {
            j.finish();
        }
        r
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// Deletes one of our tables (`Ok(false)`: it was not there).
pub fn delete_table(family: &str, name: &str) -> Result<bool, KernelError> {
    let family = match family {
        "inet" => NfFamily::INet,
        "ip" => NfFamily::IP,
        "ip6" => NfFamily::IP6,
        _ => return Ok(false),
    };
    if !name.starts_with(TABLE_PREFIX) {
        return Ok(false);
    }
    let t = Table {
        family,
        name: name.to_string().into(),
        handle: None,
    };
    // add + delete: deletes it whether or not it is there; report whether it was.
    let existed = table_exists(name);
    let mut b = Batch::new();
    b.add(NfListObject::Table(t.clone()));
    b.delete(NfListObject::Table(t));
    nftables::helper::apply_ruleset(&b.to_nftables())
        .map_err(|e| nft_error(&format!("delete nftables table {name}"), e))?;
    Ok(existed)
}

/// Whether a table of that name exists (any family).
pub fn table_exists(name: &str) -> bool {
    our_tables().iter().any(|t| t == name)
}

/// The names of Postern's tables in this network namespace.
pub fn our_tables() -> Vec<String> {
    let Ok(set) = nftables::helper::get_current_ruleset_with_args(
        nftables::helper::DEFAULT_NFT,
        ["list", "tables"],
    ) else {
        return Vec::new();
    };
    set.objects
        .iter()
        .filter_map(|o| match o {
            nftables::schema::NfObject::ListObject(NfListObject::Table(t))
                if t.name.starts_with(TABLE_PREFIX) =>
            {
                Some(t.name.to_string())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(mode: Mode, full: bool) -> Rules {
        Rules {
            mode,
            gateway: "192.0.2.1".parse().unwrap(),
            full_tunnel: full,
            networks: vec![("10.77.0.0".parse().unwrap(), 24)],
            pin_dns: true,
            dns: vec!["10.77.0.53".parse().unwrap()],
            allow_lan: false,
            block_ipv6: full,
            inner: None,
            connecting: false,
        }
    }

    fn json(r: &Rules) -> String {
        serde_json::to_string(&r.batch("postern_1_0")).unwrap()
    }

    #[test]
    fn split_kill_switch_refuses_only_the_tunnels_networks() {
        let r = rules(Mode::KillSwitch, false);
        let j = json(&r);
        assert!(j.contains(r#""name":"postern_1_0""#), "{j}");
        assert!(j.contains(r#""hook":"output""#), "{j}");
        // The office network is refused outside the tunnel; the last rule is that.
        let last = r.statements().pop().unwrap();
        let text = serde_json::to_string(&last).unwrap();
        assert!(
            text.contains(r#""prefix":{"addr":"10.77.0.0","len":24}"#),
            "{text}"
        );
        assert!(text.contains("reject"), "{text}");
        // DNS pinned to the tunnel's server.
        assert!(j.contains(r#""op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"set":["10.77.0.53"]}"#) || j.contains(r#""right":{"set":["10.77.0.53"]}"#), "{j}");
        assert_eq!(
            r.describe(),
            [
                "kill switch on: the tunnel's networks (10.77.0.0/24) only through it; DNS only to 10.77.0.53"
            ]
        );
    }

    #[test]
    fn full_kill_switch_ends_with_a_refusal_of_everything() {
        let mut r = rules(Mode::KillSwitch, true);
        let last = r.statements().pop().unwrap();
        assert_eq!(last.len(), 1, "{last:?}");
        assert!(matches!(last[0], Statement::Reject(_)));
        r.allow_lan = true;
        let j = json(&r);
        assert!(j.contains(r#""addr":"192.168.0.0","len":16"#), "{j}");
        assert!(j.contains(r#""addr":"fc00::","len":7"#), "{j}");
        assert_eq!(
            r.describe(),
            [
                "kill switch on: nothing leaves outside the tunnel; DNS only to 10.77.0.53; local network allowed",
                "IPv6 blocked while connected: the tunnel carries IPv4 only"
            ]
        );
    }

    #[test]
    fn ipv6_block_alone() {
        let r = Rules {
            pin_dns: false,
            ..rules(Mode::Ipv6Block, true)
        };
        let st = r.statements();
        let last = serde_json::to_string(st.last().unwrap()).unwrap();
        assert!(last.contains(r#""right":"ipv6""#), "{last}");
        // Nothing of IPv4 is refused, no DNS rule.
        assert!(!serde_json::to_string(&st).unwrap().contains(r#"53"#));
        assert_eq!(
            r.describe(),
            ["IPv6 blocked while connected: the tunnel carries IPv4 only"]
        );
    }

    #[test]
    fn kernel_datapath_lets_the_inner_address_out_for_xfrm() {
        // Split: from the inner address to the tunnel's networks, before the refusal
        // of those networks.
        let r = Rules {
            inner: Some("10.200.1.1".parse().unwrap()),
            ..rules(Mode::KillSwitch, false)
        };
        let st: Vec<String> = r
            .statements()
            .iter()
            .map(|x| serde_json::to_string(x).unwrap())
            .collect();
        let from = st
            .iter()
            .position(|x| {
                x.contains(r#""field":"saddr"}},"right":"10.200.1.1""#)
                    && x.contains(r#""prefix":{"addr":"10.77.0.0","len":24}"#)
                    && x.contains("accept")
            })
            .unwrap_or_else(|| panic!("no inner-address rule: {st:#?}"));
        let refusal = st
            .iter()
            .position(|x| x.contains(r#""addr":"10.77.0.0""#) && x.contains("reject"))
            .unwrap();
        assert!(from < refusal, "{st:#?}");
        // Full: everything from the inner address, before the final refusal.
        let full = Rules {
            inner: Some("10.200.1.1".parse().unwrap()),
            ..rules(Mode::KillSwitch, true)
        };
        let st = full.statements();
        let n = st.len();
        let text = serde_json::to_string(&st[n - 2]).unwrap();
        assert!(
            text.contains(r#""right":"10.200.1.1""#) && text.contains("accept"),
            "{text}"
        );
        // The userspace datapath has no such rule.
        let none = serde_json::to_string(&rules(Mode::KillSwitch, true).statements()).unwrap();
        assert!(!none.contains("saddr"), "{none}");
    }

    #[test]
    fn while_connecting_only_the_gateway_is_reached() {
        let r = Rules {
            connecting: true,
            pin_dns: false,
            dns: Vec::new(),
            networks: Vec::new(),
            block_ipv6: false,
            ..rules(Mode::KillSwitch, true)
        };
        let st = r.statements();
        assert!(matches!(st.last().unwrap()[..], [Statement::Reject(_)]));
        let j = serde_json::to_string(&st).unwrap();
        assert!(j.contains(r#""right":"192.0.2.1""#), "{j}");
        assert_eq!(
            r.describe(),
            [
                "kill switch on: nothing leaves outside the tunnel (while connecting: only the gateway is reached)"
            ]
        );
    }

    #[test]
    fn lan_ranges() {
        assert_eq!(lan(false).len(), 6);
        assert_eq!(lan(true).len(), 3);
    }
}
