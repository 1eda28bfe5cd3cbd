//! The real service objects over a peer-to-peer zbus connection (no bus daemon, no
//! polkit): the contract's proxies against the helper's implementation, and the abuse
//! cases that need no network.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use postern_dbus::interface::{ConnectionProxy, Error, HelperProxy, MANAGER_PATH, action};

use super::{Authority, Daemon, Manager};

const ALICE: u32 = 1000;
const MALLORY: u32 = 1001;

struct Peer {
    _server: zbus::Connection,
    client: zbus::Connection,
    uid: Arc<AtomicU32>,
}

async fn peer(allow: fn(&str) -> bool) -> Peer {
    let uid = Arc::new(AtomicU32::new(ALICE));
    let daemon = Daemon::new(Authority::Fixed {
        uid: Arc::clone(&uid),
        allow,
    });
    let (a, b) = tokio::net::UnixStream::pair().expect("socket pair");
    let guid = zbus::Guid::generate();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(guid)
        .expect("server")
        .p2p()
        .serve_at(MANAGER_PATH, Manager { daemon })
        .expect("serve")
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = tokio::try_join!(server, client).expect("p2p connection");
    Peer {
        _server: server,
        client,
        uid,
    }
}

fn secrets(psk: &str) -> HashMap<&str, &str> {
    HashMap::from([("psk", psk)])
}

/// A gateway nobody answers on, tried once: the tunnel fails fast (or cannot bind
/// port 500 when not root); either way it gets an object path first.
const PROFILE: &str = "name = \"Office\"\ngateway = \"127.0.0.1\"\n\
[network]\nretransmit = { tries = 1, base = \"100ms\", cap = \"100ms\" }\nreconnect = false\n";

#[tokio::test]
async fn version_and_an_empty_list() {
    let p = peer(|_| true).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    assert_eq!(h.version().await.expect("version"), 1);
    assert!(h.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn malformed_requests_are_refused_with_their_error_names() {
    let p = peer(|_| true).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    let cases: Vec<(String, HashMap<&str, &str>, &str)> = vec![
        ("name = \"x\"\n".into(), secrets("s3cret"), "InvalidProfile"),
        (
            "name = \"Off\\u0007ice\"\ngateway = \"192.0.2.1\"\n".into(),
            secrets("s3cret"),
            "InvalidProfile",
        ),
        (
            "name = \"Office\"\ngateway = \"192.0.2.1\\nevil\"\n".into(),
            secrets("s3cret"),
            "InvalidProfile",
        ),
        ("#".repeat(100_000), secrets("s3cret"), "InvalidArgument"),
        (
            PROFILE.into(),
            HashMap::from([("psk", "s3cret"), ("cert", "/root/.ssh/id_rsa")]),
            "InvalidArgument",
        ),
        (
            format!("{PROFILE}[auth]\nkey = \"/etc/shadow\"\n"),
            secrets("s3cret"),
            "InvalidProfile",
        ),
        (PROFILE.into(), HashMap::new(), "InvalidArgument"),
        (PROFILE.into(), secrets("s3\ncret"), "InvalidArgument"),
    ];
    for (profile, secrets, want) in cases {
        let e = h.connect(&profile, secrets).await.expect_err(want);
        let name = match &e {
            Error::InvalidProfile(_) => "InvalidProfile",
            Error::InvalidArgument(_) => "InvalidArgument",
            other => panic!("{other:?}"),
        };
        assert_eq!(name, want, "{e:?}");
        assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
    }
    assert!(
        h.list().await.expect("list").is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn polkit_says_no() {
    let p = peer(|a| a != action::CONNECT).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    match h.connect(PROFILE, secrets("s3cret")).await {
        Err(Error::AccessDenied(m)) => assert!(m.contains(action::CONNECT), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(h.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_connection_is_its_owners_only() {
    // manage-any (the admin action) is denied to everyone here.
    let p = peer(|a| a != action::MANAGE_ANY).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    let path = h
        .connect(PROFILE, secrets("s3cret"))
        .await
        .expect("connect");
    assert_eq!(h.list().await.expect("list"), vec![path.clone()]);
    let c = ConnectionProxy::builder(&p.client)
        .path(path.clone())
        .expect("path")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("proxy");
    assert_eq!(c.name().await.expect("name"), "Office");
    assert_eq!(c.owner().await.expect("owner"), ALICE);
    // The tunnel ends by itself (no gateway, or no root): failed, with one sentence.
    let mut state = String::new();
    for _ in 0..100 {
        state = c.state().await.expect("state");
        if state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "failed");
    let err = c.last_error().await.expect("last error");
    // Typed: the kind says what happened, the sentence says it in words.
    match err.kind.as_str() {
        "not-responding" => assert!(err.message.contains("not responding"), "{err:?}"),
        "datapath" => assert!(err.message.contains("cannot bind"), "{err:?}"),
        other => panic!("unexpected failure kind {other}: {err:?}"),
    }

    // Another user: cannot see it, read its SAs, answer or close it.
    p.uid.store(MALLORY, Ordering::Relaxed);
    assert!(h.list().await.expect("list").is_empty());
    assert!(c.sas().await.is_err(), "SAs of another user's tunnel");
    assert!(c.state().await.is_err());
    assert!(matches!(
        h.disconnect(&path.as_ref()).await,
        Err(Error::NoSuchConnection(_))
    ));
    assert!(matches!(
        h.submit_credentials(&path.as_ref(), HashMap::from([("password", "x")]))
            .await,
        Err(Error::NoSuchConnection(_))
    ));
    // Root sees everything.
    p.uid.store(0, Ordering::Relaxed);
    assert_eq!(h.list().await.expect("list"), vec![path.clone()]);
    // The owner again: not asking for credentials.
    p.uid.store(ALICE, Ordering::Relaxed);
    assert!(matches!(
        h.submit_credentials(&path.as_ref(), HashMap::from([("password", "x")]))
            .await,
        Err(Error::NotAsking(_))
    ));
    assert!(matches!(
        h.disconnect(
            &"/org/postern/Helper1/Connection/999"
                .try_into()
                .expect("path")
        )
        .await,
        Err(Error::NoSuchConnection(_))
    ));
}

/// A system profile in a directory of its own (root-owned when the tests run as root,
/// as CI does), with its PSK beside it in `office.secrets`.
fn system_dir(tag: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = std::env::temp_dir().join(format!("postern-sys-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    let office = "name = \"Office\"\ngateway = \"127.0.0.9\"\n[network]\nretransmit = { tries = 3, base = \"1s\", cap = \"1s\" }\nreconnect = false\n";
    for (f, text, mode) in [
        ("office.toml", office, 0o644),
        ("office.secrets", "psk = \"s3cret\"\n", 0o600),
        ("open.toml", office, 0o666),
    ] {
        std::fs::write(d.join(f), text).expect("write");
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    d
}

fn root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

async fn peer_in(dir: std::path::PathBuf, allow: fn(&str) -> bool) -> Peer {
    let uid = Arc::new(AtomicU32::new(ALICE));
    let daemon = Daemon::with_profiles_dir(
        Authority::Fixed {
            uid: Arc::clone(&uid),
            allow,
        },
        dir,
    );
    let (a, b) = tokio::net::UnixStream::pair().expect("socket pair");
    let server = zbus::connection::Builder::unix_stream(a)
        .server(zbus::Guid::generate())
        .expect("server")
        .p2p()
        .serve_at(MANAGER_PATH, Manager { daemon })
        .expect("serve")
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = tokio::try_join!(server, client).expect("p2p connection");
    Peer {
        _server: server,
        client,
        uid,
    }
}

#[tokio::test]
async fn a_system_profile_is_everyones() {
    let dir = system_dir("shared");
    // Admins only may edit; everything else is allowed.
    let p = peer_in(dir.clone(), |a| {
        a != action::EDIT_SYSTEM && a != action::MANAGE_ANY
    })
    .await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    let list = h.system_profiles().await.expect("system profiles");
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["office", "open"], "{list:?}");
    let open = &list[1];
    assert!(
        open.refused.contains("open.toml: ")
            && open.refused.contains("group or others may change it")
            || open.refused.contains("owned by uid"),
        "{open:?}"
    );
    // The text a front end may show: no secret.
    let text = h.system_profile_text("office").await.expect("text");
    assert!(
        text.contains("gateway = \"127.0.0.9\"") && !text.contains("s3cret"),
        "{text}"
    );
    // A caller's path is never a name.
    assert!(matches!(
        h.connect_system("../../etc/passwd").await,
        Err(Error::InvalidProfile(_))
    ));
    // A save without the admin's action: refused, and the file unchanged.
    match h
        .save_system_profile("office", "name = \"x\"\ngateway = \"192.0.2.7\"\n")
        .await
    {
        Err(Error::AccessDenied(m)) => assert!(m.contains(action::EDIT_SYSTEM), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        std::fs::read_to_string(dir.join("office.toml"))
            .expect("read")
            .contains("127.0.0.9")
    );
    if !root() {
        // Files made by a non-root user are not system profiles.
        assert!(list[0].refused.contains("owned by uid"), "{list:?}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert_eq!(list[0].refused, "", "{list:?}");
    assert_eq!(list[0].title, "Office");
    assert!(
        matches!(h.connect_system("open").await, Err(Error::InvalidProfile(m)) if m.contains("open.toml: mode 0666"))
    );

    // Alice connects it; Mallory sees it, joins it (same path) and disconnects it.
    let path = h.connect_system("office").await.expect("connect system");
    let c = ConnectionProxy::builder(&p.client)
        .path(path.clone())
        .expect("path")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("proxy");
    assert_eq!(c.system_profile().await.expect("system"), "office");
    assert_eq!(c.owner().await.expect("owner"), 0);
    p.uid.store(MALLORY, Ordering::Relaxed);
    assert_eq!(h.list().await.expect("list"), vec![path.clone()]);
    assert_eq!(h.connect_system("office").await.expect("again"), path);
    assert!(c.state().await.is_ok(), "Mallory may read a system tunnel");
    h.disconnect(&path.as_ref())
        .await
        .expect("Mallory disconnects");
    let mut state = String::new();
    for _ in 0..100 {
        state = c.state().await.expect("state");
        if state == "disconnected" || state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "disconnected");
    // Mallory's own tunnels are still counted apart: the system one is not Mallory's.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn check_profile_says_nothing_without_a_policy() {
    let p = peer(|_| true).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    // No /etc/postern/policy.toml on a build machine: nothing refused.
    if !std::path::Path::new(crate::fleet::policy::POLICY_PATH).exists() {
        assert_eq!(h.check_profile(PROFILE).await.expect("check"), "");
    }
    assert!(matches!(
        h.check_profile("name = \"x\"\n").await,
        Err(Error::InvalidProfile(_))
    ));
}

/// Connect/disconnect cycles: tunnels that ended linger but neither count against the
/// per-user limit nor pile up (at most `ENDED_PER_UID` are kept, the oldest go first).
#[tokio::test]
async fn ended_tunnels_do_not_count_and_do_not_pile_up() {
    let p = peer(|_| true).await;
    let h = HelperProxy::new(&p.client).await.expect("proxy");
    let n = postern_dbus::interface::limits::CONNECTIONS_PER_UID + super::ENDED_PER_UID + 3;
    for i in 0..n {
        let path = h
            .connect(PROFILE, secrets("s3cret"))
            .await
            .unwrap_or_else(|e| panic!("connect {i}: {e:?}"));
        let c = ConnectionProxy::builder(&p.client)
            .path(path)
            .expect("path")
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .expect("proxy");
        let mut state = String::new();
        for _ in 0..100 {
            state = c.state().await.expect("state");
            if state == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(state, "failed", "connect {i}");
    }
    let listed = h.list().await.expect("list").len();
    assert!(
        listed <= super::ENDED_PER_UID,
        "{listed} ended tunnels kept"
    );
}
