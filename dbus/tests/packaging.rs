//! The packaging files name exactly what the contract names.

use postern_dbus::interface::{BUS_NAME, CONNECTION_INTERFACE, MANAGER_INTERFACE, action};

fn read(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_polkit_policy_has_every_action() {
    let policy = read("org.postern.helper1.policy");
    for a in [
        action::CONNECT,
        action::MANAGE_OWN,
        action::MANAGE_ANY,
        action::CONNECT_SYSTEM,
        action::EDIT_SYSTEM,
    ] {
        assert!(policy.contains(&format!("<action id=\"{a}\">")), "{a}");
    }
    assert_eq!(policy.matches("<action id=").count(), 5);
    // Editing a system profile is for admins even in the active session.
    let edit = policy
        .split(&format!("<action id=\"{}\">", action::EDIT_SYSTEM))
        .nth(1)
        .and_then(|r| r.split("</action>").next())
        .unwrap_or_default();
    assert!(
        edit.contains("<allow_active>auth_admin</allow_active>"),
        "{edit}"
    );
}

#[test]
fn the_bus_policy_lets_root_own_and_anyone_call() {
    let conf = read("org.postern.Helper1.conf");
    assert!(conf.contains(&format!("<allow own=\"{BUS_NAME}\"/>")));
    for i in [MANAGER_INTERFACE, CONNECTION_INTERFACE] {
        assert!(conf.contains(&format!("send_interface=\"{i}\"")), "{i}");
    }
    assert_eq!(conf.matches("<allow own=").count(), 1, "only root owns it");
    assert!(!conf.contains("eavesdrop"), "no eavesdropping");
}

#[test]
fn activation_and_unit_agree() {
    let svc = read("org.postern.Helper1.service");
    let unit = read("postern-helper.service");
    assert!(svc.contains(&format!("Name={BUS_NAME}")));
    assert!(unit.contains(&format!("BusName={BUS_NAME}")));
    assert!(unit.contains("Type=dbus"));
    assert!(unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE\n"));
}
