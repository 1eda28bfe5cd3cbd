//! Addresses, routes and devices over rtnetlink. Each change is recorded in the journal
//! before it is made.
//!
//! The functions are synchronous: each runs its requests on a netlink connection of its
//! own, driven by a current-thread runtime on a short-lived thread (so they can be called
//! from inside up.rs's runtime, from `Drop`, and from `postern-helper cleanup` alike).
//! They run at setup and teardown only, never per packet.

use std::future::Future;
use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::{Entry, Journal, KernelError};

/// Runs `f` with a fresh rtnetlink handle, to completion.
fn with_netlink<T, F, Fut>(what: &str, f: F) -> Result<T, KernelError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let what = what.to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| KernelError::Netlink {
                    what: what.clone(),
                    source: Box::new(e),
                })?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| KernelError::Netlink {
                        what: what.clone(),
                        source: Box::new(e),
                    })?;
                let conn = tokio::spawn(conn);
                let r = f(handle).await;
                conn.abort();
                r.map_err(|e| netlink_error(&what, e))
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(KernelError::Netlink {
                what: "netlink thread".into(),
                source: "panicked".into(),
            })
        })
    })
}

fn netlink_error(what: &str, e: rtnetlink::Error) -> KernelError {
    match &e {
        rtnetlink::Error::NetlinkError(m) if m.code.is_some() => KernelError::Errno {
            what: what.to_string(),
            errno: m.code.map_or(0, |c| -c.get()),
        },
        _ => KernelError::Netlink {
            what: what.to_string(),
            source: Box::new(e),
        },
    }
}

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

async fn link_index(h: &Handle, dev: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(dev.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(m)) if m.code.is_some_and(|c| -c.get() == ENODEV) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The index of device `dev`.
pub fn device_index(dev: &str) -> Result<u32, KernelError> {
    with_netlink(&format!("index of {dev}"), |h| async move {
        link_index(&h, dev).await?.ok_or_else(|| no_device(dev))
    })
}

fn no_device(dev: &str) -> rtnetlink::Error {
    rtnetlink::Error::InvalidNla(format!("no device {dev}"))
}

/// Brings the device up.
pub fn link_up(dev: &str) -> Result<(), KernelError> {
    with_netlink(&format!("set {dev} up"), |h| async move {
        let idx = link_index(&h, dev).await?.ok_or_else(|| no_device(dev))?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
    })
}

/// Adds `addr/prefix` to `dev`.
pub fn add_addr(j: &mut Journal, addr: IpAddr, prefix: u8, dev: &str) -> Result<(), KernelError> {
    j.record(Entry::Addr {
        cidr: format!("{addr}/{prefix}"),
        dev: dev.to_string(),
    })?;
    with_netlink(
        &format!("add address {addr}/{prefix} to {dev}"),
        |h| async move {
            let idx = link_index(&h, dev).await?.ok_or_else(|| no_device(dev))?;
            h.address().add(idx, addr, prefix).execute().await
        },
    )
}

/// Postern's routing table (0x7057): routes to remote networks and the gateway bypass
/// go here, so the user's own tables are untouched; a rule at [`RULE_PRIORITY`] sends
/// lookups to it first (no match falls through to the main table).
pub const POSTERN_TABLE: u32 = 0x7057;
pub const RULE_PRIORITY: u32 = 7057;

fn rule_family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "inet" } else { "inet6" }
}

/// Adds a rule for `dst`'s family once per journal. Each tunnel holds its own rule (the
/// first free priority from [`RULE_PRIORITY`] on: identical rules are refused), so one
/// tunnel going away never takes another's rule with it.
fn ensure_rule(j: &mut Journal, dst: IpAddr) -> Result<(), KernelError> {
    let family = rule_family(dst).to_string();
    if j.entries()
        .iter()
        .any(|e| matches!(e, Entry::Rule { family: f, .. } if *f == family))
    {
        return Ok(());
    }
    const EEXIST: i32 = 17;
    for priority in RULE_PRIORITY..RULE_PRIORITY + 16 {
        j.record(Entry::Rule {
            family: family.clone(),
            priority: priority.to_string(),
        })?;
        let r = with_netlink(
            &format!("add {family} rule {priority} to table {POSTERN_TABLE:#x}"),
            |h| async move {
                let r = h
                    .rule()
                    .add()
                    .table_id(POSTERN_TABLE)
                    .priority(priority)
                    .action(rtnetlink::packet_route::rule::RuleAction::ToTable);
                if dst.is_ipv4() {
                    r.v4().execute().await
                } else {
                    r.v6().execute().await
                }
            },
        );
        match r {
            Err(KernelError::Errno { errno, .. }) if errno == EEXIST => {
                // Another tunnel's: not ours to remove.
                j.forget_last()?;
                continue;
            }
            other => return other,
        }
    }
    Err(KernelError::Errno {
        what: format!(
            "add {family} rule: priorities {RULE_PRIORITY}..{} are taken",
            RULE_PRIORITY + 15
        ),
        errno: EEXIST,
    })
}

fn route_message(
    dst: IpAddr,
    prefix: u8,
    idx: u32,
    src: IpAddr,
) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix)
        .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?
        .pref_source(src)
        .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?
        .output_interface(idx)
        .table_id(POSTERN_TABLE)
        .build())
}

/// Routes `dst/prefix` through `dev` with source address `src` (main table).
pub fn add_route(
    j: &mut Journal,
    dst: IpAddr,
    prefix: u8,
    dev: &str,
    src: IpAddr,
) -> Result<(), KernelError> {
    ensure_rule(j, dst)?;
    j.record(Entry::Route {
        dst: format!("{dst}/{prefix}"),
        dev: dev.to_string(),
        src: src.to_string(),
    })?;
    with_netlink(
        &format!("add route {dst}/{prefix} dev {dev} src {src}"),
        |h| async move {
            let idx = link_index(&h, dev).await?.ok_or_else(|| no_device(dev))?;
            h.route()
                .add(route_message(dst, prefix, idx, src)?)
                .execute()
                .await
        },
    )
}

/// How the host reaches `dst` now: (device name, router or `None` when on link).
pub fn route_to(dst: IpAddr) -> Result<(String, Option<IpAddr>), KernelError> {
    use rtnetlink::packet_route::link::LinkAttribute;
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let prefix = if dst.is_ipv4() { 32 } else { 128 };
    with_netlink(&format!("look up the route to {dst}"), |h| async move {
        let q = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, prefix)
            .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?
            .build();
        let r = h
            .route()
            .get(q)
            .execute()
            .try_next()
            .await?
            .ok_or(rtnetlink::Error::RequestFailed)?;
        let mut oif = None;
        let mut via = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => via = Some(IpAddr::V6(*g)),
                _ => {}
            }
        }
        let oif = oif.ok_or(rtnetlink::Error::RequestFailed)?;
        let link = h
            .link()
            .get()
            .match_index(oif)
            .execute()
            .try_next()
            .await?
            .ok_or(rtnetlink::Error::RequestFailed)?;
        let name = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .ok_or(rtnetlink::Error::RequestFailed)?;
        Ok((name, via))
    })
}

fn bypass_message(
    dst: IpAddr,
    idx: u32,
    via: Option<IpAddr>,
) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
    let prefix = if dst.is_ipv4() { 32 } else { 128 };
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix)
        .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?
        .output_interface(idx)
        .table_id(POSTERN_TABLE);
    if let Some(g) = via {
        b = b
            .gateway(g)
            .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?;
    }
    Ok(b.build())
}

/// Keeps the gateway `dst` on the path it has now (`dev`, `via`), outside a full tunnel.
pub fn add_bypass(
    j: &mut Journal,
    dst: IpAddr,
    dev: &str,
    via: Option<IpAddr>,
) -> Result<(), KernelError> {
    let prefix = if dst.is_ipv4() { 32 } else { 128 };
    ensure_rule(j, dst)?;
    j.record(Entry::Bypass {
        dst: format!("{dst}/{prefix}"),
        dev: dev.to_string(),
        via: via.map_or("-".to_string(), |v| v.to_string()),
    })?;
    with_netlink(
        &format!("add route {dst}/{prefix} dev {dev}"),
        |h| async move {
            let idx = link_index(&h, dev).await?.ok_or_else(|| no_device(dev))?;
            h.route()
                .add(bypass_message(dst, idx, via)?)
                .execute()
                .await
        },
    )
}

fn throw_message(
    dst: IpAddr,
    prefix: u8,
) -> Result<rtnetlink::packet_route::route::RouteMessage, rtnetlink::Error> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix)
        .map_err(|e| rtnetlink::Error::InvalidNla(e.to_string()))?
        .kind(rtnetlink::packet_route::route::RouteType::Throw)
        .table_id(POSTERN_TABLE)
        .build())
}

/// Lets lookups for `dst/prefix` fall through Postern's routing table to the main one
/// (a `throw` route): the local networks stay outside a full tunnel (`allow_lan`).
pub fn add_throw(j: &mut Journal, dst: IpAddr, prefix: u8) -> Result<(), KernelError> {
    ensure_rule(j, dst)?;
    j.record(Entry::Throw {
        dst: format!("{dst}/{prefix}"),
    })?;
    with_netlink(&format!("add throw route {dst}/{prefix}"), |h| async move {
        h.route().add(throw_message(dst, prefix)?).execute().await
    })
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok()?))
}

/// Undoes one entry. `Ok(false)`: it was already gone.
fn undo_one(e: &Entry) -> Result<bool, KernelError> {
    if let Entry::ResolvConf { backup } = e {
        return super::dns::restore(backup).map(|_| true);
    }
    if let Entry::XfrmSa { .. } | Entry::XfrmPolicy { .. } = e {
        return super::xfrm::undo(e);
    }
    if let Entry::NfTable { family, name } = e {
        return super::firewall::delete_table(family, name);
    }
    if let Entry::Throw { dst } = e {
        let Some((dst, prefix)) = parse_cidr(dst) else {
            return Ok(false);
        };
        return with_netlink(
            &format!("delete throw route {dst}/{prefix}"),
            |h| async move {
                h.route()
                    .del(throw_message(dst, prefix)?)
                    .execute()
                    .await
                    .map(|_| true)
            },
        );
    }
    if let Entry::Rule { family, priority } = e {
        let v6 = family == "inet6";
        let Ok(priority) = priority.parse::<u32>() else {
            return Ok(false);
        };
        return with_netlink(&format!("delete {family} rule"), |h| async move {
            use rtnetlink::IpVersion;
            use rtnetlink::packet_route::rule::RuleAttribute;
            let mut rules = h
                .rule()
                .get(if v6 { IpVersion::V6 } else { IpVersion::V4 })
                .execute();
            while let Some(r) = rules.try_next().await? {
                let ours = r
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::Table(t) if *t == POSTERN_TABLE))
                    && r.attributes
                        .iter()
                        .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == priority));
                if ours {
                    h.rule().del(r).execute().await?;
                    return Ok(true);
                }
            }
            Ok(false)
        });
    }
    let what = format!("undo `{}`", e.describe());
    let e = e.clone();
    with_netlink(&what, |h| async move {
        let dev = match &e {
            Entry::Link { dev }
            | Entry::Addr { dev, .. }
            | Entry::Route { dev, .. }
            | Entry::Bypass { dev, .. } => dev.clone(),
            Entry::ResolvConf { .. }
            | Entry::Throw { .. }
            | Entry::Rule { .. }
            | Entry::XfrmSa { .. }
            | Entry::XfrmPolicy { .. }
            | Entry::NfTable { .. } => {
                return Ok(false);
            }
        };
        // No device: it took its addresses and routes with it.
        let Some(idx) = link_index(&h, &dev).await? else {
            return Ok(false);
        };
        match &e {
            Entry::ResolvConf { .. }
            | Entry::Throw { .. }
            | Entry::Rule { .. }
            | Entry::XfrmSa { .. }
            | Entry::XfrmPolicy { .. }
            | Entry::NfTable { .. } => Ok(false),
            Entry::Link { .. } => h.link().del(idx).execute().await.map(|_| true),
            Entry::Addr { cidr, .. } => {
                let Some((addr, prefix)) = parse_cidr(cidr) else {
                    return Ok(false);
                };
                let mut found = h
                    .address()
                    .get()
                    .set_link_index_filter(idx)
                    .set_address_filter(addr)
                    .set_prefix_length_filter(prefix)
                    .execute();
                let mut any = false;
                while let Some(msg) = found.try_next().await? {
                    h.address().del(msg).execute().await?;
                    any = true;
                }
                Ok(any)
            }
            Entry::Bypass { dst, via, .. } => {
                let Some((dst, _)) = parse_cidr(dst) else {
                    return Ok(false);
                };
                let via = if via == "-" {
                    None
                } else {
                    via.parse::<IpAddr>().ok()
                };
                h.route()
                    .del(bypass_message(dst, idx, via)?)
                    .execute()
                    .await
                    .map(|_| true)
            }
            Entry::Route { dst, src, .. } => {
                let (Some((dst, prefix)), Ok(src)) = (parse_cidr(dst), src.parse::<IpAddr>())
                else {
                    return Ok(false);
                };
                h.route()
                    .del(route_message(dst, prefix, idx, src)?)
                    .execute()
                    .await
                    .map(|_| true)
            }
        }
    })
}

/// Undoes `entries` in reverse order. Objects already gone (a TUN device takes its
/// addresses and routes with it) are not errors. Returns the errors.
pub fn undo(entries: &[Entry]) -> Vec<String> {
    let mut errors = Vec::new();
    for e in entries.iter().rev() {
        match undo_one(e) {
            Ok(_) => {}
            Err(KernelError::Errno { errno, .. })
                if [ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL].contains(&errno) => {}
            Err(err) => errors.push(err.to_string()),
        }
    }
    errors
}
