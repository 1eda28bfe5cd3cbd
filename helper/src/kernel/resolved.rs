//! DNS for the tunnel through systemd-resolved (`org.freedesktop.resolve1` on the system
//! bus), when it runs: per-link DNS servers and domains on the tunnel's device, so
//! resolved routes queries itself and nothing else on the machine changes.
//!
//! - `dns = "split"`: the tunnel's servers answer for the tunnel's domains (Mode Config
//!   default domain and split-DNS names, as routing + search domains); with no domain
//!   from the gateway the link also becomes a default route for DNS (there is nothing
//!   else to route by, like the resolv.conf backend's "tunnel servers first").
//! - `dns = "full"`: the tunnel's servers answer everything (`~.` and default route).
//!
//! Undo is `RevertLink`; resolved also forgets a link's settings when the link goes, so
//! after a crash, removing the TUN device (the journal's `link` entry) is the undo.
//!
//! Like [`super::net`], the functions are synchronous and run their bus calls on a
//! short-lived thread with its own runtime; they run at setup and teardown only.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use super::KernelError;
use super::dns::DnsConfig;

const DEST: &str = "org.freedesktop.resolve1";
const PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
/// No bus call may hang a connect or a teardown.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

fn bus_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> KernelError {
    KernelError::Netlink {
        what: format!("systemd-resolved: {what}"),
        source: Box::new(e),
    }
}

/// Runs `f` on the system bus, to completion or [`CALL_TIMEOUT`].
fn with_bus<T, F, Fut>(what: &str, f: F) -> Result<T, KernelError>
where
    T: Send,
    F: FnOnce(zbus::Connection) -> Fut + Send,
    Fut: Future<Output = Result<T, KernelError>>,
{
    let what = what.to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| bus_error(&what, e))?;
            rt.block_on(async move {
                let run = async {
                    let conn = zbus::Connection::system()
                        .await
                        .map_err(|e| bus_error("system bus", e))?;
                    f(conn).await
                };
                match tokio::time::timeout(CALL_TIMEOUT, run).await {
                    Ok(r) => r,
                    Err(e) => Err(bus_error(&what, e)),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Err(bus_error("bus thread", std::fmt::Error)))
    })
}

/// Whether this namespace's resolv.conf sends queries to resolved's stub (127.0.0.53,
/// or a link into /run/systemd/resolve): only then are resolved's per-link settings
/// ours to use. (A helper in another network namespace than resolved must not hand it
/// an interface index of its own namespace.)
pub fn manages_resolv_conf() -> bool {
    let path = super::dns::resolv_conf_path();
    if let Ok(target) = std::fs::read_link(&path)
        && target.starts_with("/run/systemd/resolve")
    {
        return true;
    }
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    if meta.len() > 64 * 1024 {
        return false;
    }
    std::fs::read_to_string(&path).is_ok_and(|t| {
        t.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("nameserver") && w.next() == Some("127.0.0.53")
        })
    })
}

/// Whether systemd-resolved is on the system bus (checked once per tunnel).
pub fn running() -> bool {
    with_bus("is it running", |conn| async move {
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(|e| bus_error("org.freedesktop.DBus", e))?;
        let name = zbus::names::BusName::try_from(DEST).map_err(|e| bus_error("name", e))?;
        dbus.name_has_owner(name)
            .await
            .map_err(|e| bus_error("NameHasOwner", e))
    })
    .unwrap_or(false)
}

async fn call<B>(conn: &zbus::Connection, method: &str, body: &B) -> Result<(), KernelError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(DEST), PATH, Some(MANAGER), method, body)
        .await
        .map(|_| ())
        .map_err(|e| bus_error(method, e))
}

/// What we tell resolved for `cfg`: servers, `(domain, routing only)`, default route.
#[allow(clippy::type_complexity)]
pub fn link_settings(cfg: &DnsConfig) -> (Vec<(i32, Vec<u8>)>, Vec<(String, bool)>, bool) {
    let servers = cfg
        .servers
        .iter()
        .map(|a| match a {
            IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
            IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
        })
        .collect();
    let mut domains: Vec<(String, bool)> = Vec::new();
    for d in &cfg.domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok && !domains.iter().any(|(x, _)| *x == d) {
            domains.push((d, false));
        }
    }
    let default_route = cfg.exclusive || domains.is_empty();
    if cfg.exclusive {
        domains.push((".".to_string(), true));
    }
    (servers, domains, default_route)
}

/// Sets the tunnel's DNS on link `ifindex`. Returns a line for the user.
pub fn apply(ifindex: u32, dev: &str, cfg: &DnsConfig) -> Result<String, KernelError> {
    let idx = i32::try_from(ifindex).map_err(|e| bus_error("interface index", e))?;
    let (servers, domains, default_route) = link_settings(cfg);
    let shown: Vec<String> = cfg.servers.iter().map(IpAddr::to_string).collect();
    let routed: Vec<String> = domains.iter().map(|(d, _)| d.clone()).collect();
    with_bus("SetLinkDNS", move |conn| async move {
        call(&conn, "SetLinkDNS", &(idx, servers)).await?;
        call(&conn, "SetLinkDomains", &(idx, domains)).await?;
        call(&conn, "SetLinkDefaultRoute", &(idx, default_route)).await?;
        Ok(())
    })?;
    Ok(format!(
        "dns {} via systemd-resolved on {dev} ({}{})",
        shown.join(","),
        if routed.is_empty() {
            "all queries".to_string()
        } else {
            format!("domains {}", routed.join(","))
        },
        if default_route && !cfg.exclusive && !routed.is_empty() {
            ", default route"
        } else {
            ""
        }
    ))
}

/// Takes the tunnel's DNS off link `ifindex` (best effort: the link may be gone).
pub fn revert(ifindex: u32) -> Result<(), KernelError> {
    let idx = i32::try_from(ifindex).map_err(|e| bus_error("interface index", e))?;
    with_bus("RevertLink", move |conn| async move {
        call(&conn, "RevertLink", &(idx,)).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(domains: &[&str], exclusive: bool) -> DnsConfig {
        DnsConfig {
            servers: vec!["10.77.0.53".parse().unwrap(), "fd00::53".parse().unwrap()],
            domains: domains.iter().map(|d| d.to_string()).collect(),
            exclusive,
        }
    }

    #[test]
    fn split_routes_the_tunnel_domains_only() {
        let (s, d, def) = link_settings(&cfg(&["Corp.Example.", "lab.example", "bad name"], false));
        assert_eq!(s[0], (AF_INET, vec![10, 77, 0, 53]));
        assert_eq!(s[1].0, AF_INET6);
        assert_eq!(
            d,
            vec![
                ("corp.example".into(), false),
                ("lab.example".into(), false)
            ]
        );
        assert!(!def);
    }

    #[test]
    fn split_without_domains_is_a_default_route() {
        let (_, d, def) = link_settings(&cfg(&[], false));
        assert!(d.is_empty());
        assert!(def);
    }

    #[test]
    fn full_takes_every_query() {
        let (_, d, def) = link_settings(&cfg(&["corp.example"], true));
        assert!(d.contains(&(".".into(), true)));
        assert!(def);
    }
}
