//! Interoperability scenarios against a real strongSwan gateway in network namespaces.
//!
//! `postern_*`: `postern-helper up` (DESIGN.md contract 2) as the client; each checks from
//! the gateway side (`swanctl --list-sas`) that the IKE SA is ESTABLISHED and the CHILD_SA
//! INSTALLED with the expected algorithms, then SIGTERMs the client and expects exit 0 and
//! the gateway's SAs gone (Postern sends DELETE).
//!
//! `harness_selftest` and `reference_*`: strongSwan's charon as the client against the same
//! gateway configurations. They prove the lab and the scenario configurations themselves.
//!
//! Root only (scripts/test.sh runs them with `--test-threads=2`).

use std::time::{Duration, Instant};

use postern_lab::config::{CHILD, CLIENT_VIP, CONN, LAN_HOST, LAN_NET};
use postern_lab::postern::exit;
use postern_lab::{
    Charon, IkeSa, Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_nat_scenario, run_scenario,
};

/// What the gateway must show.
struct Expect {
    ike: &'static str,
    esp: &'static str,
}

fn main_psk() -> (Tunnel, Expect) {
    (
        Tunnel::main_psk("main-psk"),
        Expect {
            ike: "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
            esp: "AES_CBC-128/HMAC_SHA2_256_128",
        },
    )
}

fn aggressive_fqdn() -> (Tunnel, Expect) {
    (
        Tunnel::main_psk("aggressive-fqdn")
            .aggressive("fqdn:client.postern.test", "fqdn:gw.postern.test"),
        Expect {
            ike: "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
            esp: "AES_CBC-128/HMAC_SHA2_256_128",
        },
    )
}

fn legacy_3des() -> (Tunnel, Expect) {
    (
        Tunnel::main_psk("legacy-3des").proposals(&["3des-sha1-modp1024"], &["3des-sha1"]),
        Expect {
            ike: "3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
            esp: "3DES_CBC/HMAC_SHA1_96",
        },
    )
}

fn modern_pfs() -> (Tunnel, Expect) {
    (
        Tunnel::main_psk("modern-pfs")
            .proposals(&["aes256-sha256-modp2048"], &["aes256-sha256"])
            .gateway_proposals(&["aes256-sha256-modp2048"], &["aes256-sha256-modp2048"])
            .pfs("modp2048"),
        Expect {
            ike: "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
            esp: "AES_CBC-256/HMAC_SHA2_256_128/MODP_2048",
        },
    )
}

fn last_proposal() -> (Tunnel, Expect) {
    (
        Tunnel::main_psk("last-proposal")
            .client_proposals(
                &[
                    "aes256-sha512-modp2048",
                    "aes256-sha256-modp2048",
                    "aes128-sha1-modp2048",
                ],
                &["aes256-sha512", "aes256-sha256", "aes128-sha1"],
            )
            .gateway_proposals(&["aes128-sha1-modp2048"], &["aes128-sha1"]),
        Expect {
            ike: "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048",
            esp: "AES_CBC-128/HMAC_SHA1_96",
        },
    )
}

/// Issue 19: the profile offers three suites with three DH groups in both phases; the
/// gateway takes only the last. Phase 1 settles on ECP384, so quick mode must offer the
/// ECP384 proposal (one KE payload: one PFS group per offer) and say what it left out.
fn pfs_group_of_phase1() -> (Tunnel, Expect) {
    let suites = [
        "aes128-sha1-modp1024",
        "aes256-sha512-modp4096",
        "aes192-sha384-ecp384",
    ];
    (
        Tunnel::main_psk("pfs-group")
            .client_proposals(&suites, &suites)
            .gateway_proposals(&["aes192-sha384-ecp384"], &["aes192-sha384-ecp384"]),
        Expect {
            ike: "AES_CBC-192/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384",
            esp: "AES_CBC-192/HMAC_SHA2_384_192/ECP_384",
        },
    )
}

fn wrong_psk() -> Tunnel {
    Tunnel::main_psk("wrong-psk").client_psk("not-the-gateway-secret")
}

fn no_proposal() -> Tunnel {
    Tunnel::main_psk("no-proposal")
        .client_proposals(&["aes128-sha256-modp2048"], &["aes128-sha256"])
        .gateway_proposals(&["aes256-sha512-modp4096"], &["aes256-sha512"])
}

/// The gateway's view: one ESTABLISHED IKEv1 SA and an INSTALLED CHILD_SA, as expected.
fn check_gateway(gw: &Charon, t: &Tunnel, exp: &Expect) -> Result<IkeSa> {
    let sa = gw.wait_established(Duration::from_secs(10))?;
    let shown = gw.list_sas_text();
    lab_ensure!(
        sa.get("version") == "1",
        "gateway SA is not IKEv1:\n{shown}"
    );
    lab_ensure!(
        sa.algorithms() == exp.ike,
        "gateway IKE SA algorithms {} != expected {}:\n{shown}",
        sa.algorithms(),
        exp.ike
    );
    let Some(child) = sa.installed_child() else {
        lab_bail!("no INSTALLED CHILD_SA on the gateway:\n{shown}")
    };
    lab_ensure!(
        child.algorithms() == exp.esp,
        "gateway CHILD_SA algorithms {} != expected {}:\n{shown}",
        child.algorithms(),
        exp.esp
    );
    lab_ensure!(
        child.get("mode") == "TUNNEL",
        "CHILD_SA not in tunnel mode:\n{shown}"
    );
    lab_ensure!(
        child.ts("local-ts") == [LAN_NET] && child.ts("remote-ts") == [format!("{CLIENT_VIP}/32")],
        "unexpected traffic selectors:\n{shown}"
    );
    let want_id = t
        .client_id
        .split_once(':')
        .map_or(t.client_id.as_str(), |(_, v)| v);
    lab_ensure!(
        sa.get("remote-id") == want_id,
        "gateway sees client id {:?}, expected {want_id:?}",
        sa.get("remote-id")
    );
    if t.aggressive {
        // The gateway logs the exchange type; make sure aggressive mode was really used.
        let log = std::fs::read_to_string(gw.log_path()).unwrap_or_default();
        lab_ensure!(
            log.contains("AGGRESSIVE"),
            "gateway log shows no aggressive mode exchange"
        );
    }
    Ok(sa)
}

// ---------------------------------------------------------------- reference client (charon)

fn charon_connects(scenario: &str, (t, exp): (Tunnel, Expect)) {
    run_scenario(scenario, |lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_charon_client(&t)?;
        client.initiate(CHILD, 20)?;
        check_gateway(&gw, &t, &exp)?;
        client.terminate(CONN)?;
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// charon client ↔ charon gateway, main mode PSK: the lab itself works, including ESP
/// through kernel-libipsec on both ends (ping from the client's inner address to the lan).
#[test]
fn harness_selftest() {
    let (t, exp) = main_psk();
    run_scenario("selftest", |lab| {
        lab.ping(Role::Client, None, postern_lab::config::GW_ADDR)?;
        lab.ping(Role::Gw, None, LAN_HOST)?;
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_charon_client(&t)?;
        client.initiate(CHILD, 20)?;
        check_gateway(&gw, &t, &exp)?;
        let csa = client.wait_established(Duration::from_secs(5))?;
        lab_ensure!(
            csa.algorithms() == exp.ike,
            "client sees {}",
            csa.algorithms()
        );
        lab.ping(Role::Client, Some(CLIENT_VIP), LAN_HOST)?;
        let sa = gw.list_sas()?;
        let packets_in: u64 = sa
            .iter()
            .filter_map(|s| s.installed_child())
            .map(|c| c.get("packets-in").parse().unwrap_or(0))
            .sum();
        lab_ensure!(
            packets_in >= 2,
            "ping answered but the gateway CHILD_SA counted {packets_in} packets in"
        );
        client.terminate(CONN)?;
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

#[test]
fn reference_aggressive_fqdn() {
    charon_connects("ref-aggr", aggressive_fqdn());
}

#[test]
fn reference_legacy_3des() {
    charon_connects("ref-3des", legacy_3des());
}

#[test]
fn reference_modern_pfs() {
    charon_connects("ref-pfs", modern_pfs());
}

#[test]
fn reference_last_proposal() {
    charon_connects("ref-last", last_proposal());
}

/// The failure scenarios' gateway configurations really make charon fail too.
#[test]
fn reference_pfs_group_of_phase1() {
    charon_connects("r-pfsgrp", pfs_group_of_phase1());
}

#[test]
fn reference_failures() {
    for (name, t) in [("ref-nopro", no_proposal()), ("ref-wrongpsk", wrong_psk())] {
        run_scenario(name, |lab| {
            let gw = lab.start_gateway(&t)?;
            let client = lab.start_charon_client(&t)?;
            if client.initiate(CHILD, 20).is_ok() {
                lab_bail!(
                    "charon client connected although it must not:\n{}",
                    gw.list_sas_text()
                );
            }
            let sas = gw.list_sas()?;
            lab_ensure!(
                sas.iter().all(|s| s.installed_child().is_none()),
                "gateway installed a CHILD_SA:\n{}",
                gw.list_sas_text()
            );
            Ok(())
        });
    }
}

// ---------------------------------------------------------------- Postern

fn postern_connects(scenario: &str, (t, exp): (Tunnel, Expect)) {
    run_scenario(scenario, |lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab_ensure!(
            client
                .stdout()
                .iter()
                .any(|l| l.starts_with("phase1 established")),
            "no `phase1 established` line before `connected`"
        );
        lab_ensure!(
            client
                .stdout()
                .iter()
                .any(|l| l.starts_with("phase2 established")),
            "no `phase2 established` line before `connected`"
        );
        check_gateway(&gw, &t, &exp)?;
        // Traffic crosses with the negotiated algorithms (userspace datapath).
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(
            code == exit::OK,
            "exit code {code} after SIGTERM, expected 0"
        );
        gw.wait_no_sas(Duration::from_secs(10))
            .map_err(|e| postern_lab::LabError(format!("no DELETE seen by the gateway? {e}")))
    });
}

/// Runs a client that must fail; checks code, message and that it ends within 40 s.
fn postern_fails(scenario: &str, t: Tunnel, with_gateway: bool, want_code: i32, want_msg: &str) {
    run_scenario(scenario, |lab| {
        let gw = if with_gateway {
            Some(lab.start_gateway(&t)?)
        } else {
            None
        };
        let start = Instant::now();
        let client = lab.start_postern(&t)?;
        let code = client.exit_code(Duration::from_secs(40))?;
        let took = start.elapsed();
        let err = client.error_line().unwrap_or_default();
        lab_ensure!(
            code == want_code,
            "exit code {code}, expected {want_code}; stderr: {:?}",
            client.stderr()
        );
        lab_ensure!(
            err.contains(want_msg),
            "expected a stderr line `error: ...{want_msg}...`, got {:?}",
            client.stderr()
        );
        lab_ensure!(took < Duration::from_secs(40), "took {took:?}");
        if let Some(gw) = gw {
            let sas = gw.list_sas()?;
            lab_ensure!(
                sas.iter().all(|s| s.installed_child().is_none()),
                "gateway installed a CHILD_SA:\n{}",
                gw.list_sas_text()
            );
        }
        Ok(())
    });
}

#[test]
fn postern_1_main_mode_psk() {
    postern_connects("p1-main", main_psk());
}

#[test]
fn postern_2_aggressive_fqdn() {
    postern_connects("p2-aggr", aggressive_fqdn());
}

#[test]
fn postern_3_legacy_3des() {
    postern_connects("p3-3des", legacy_3des());
}

#[test]
fn postern_4_modern_pfs() {
    postern_connects("p4-pfs", modern_pfs());
}

#[test]
fn postern_5_last_proposal() {
    postern_connects("p5-last", last_proposal());
}

/// Issue 19 point 1: connects, with ping through the tunnel (`postern_connects`), and
/// the offer left out the other groups' proposals in one line saying why.
#[test]
fn postern_15_pfs_group_of_phase1() {
    let (t, exp) = pfs_group_of_phase1();
    run_scenario("p15-pfsgrp", |lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        check_gateway(&gw, &t, &exp)?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let out = client.stdout();
        let want = "phase2 offer: aes192-sha384-ecp384 (PFS ecp384, the group phase 1 agreed on); \
                    left out: aes128-sha1-modp1024, aes256-sha512-modp4096 (a quick mode carries one key exchange, so one PFS group)";
        lab_ensure!(
            out.iter()
                .filter(|l| l.starts_with("phase2 offer:"))
                .count()
                == 1
                && out.iter().any(|l| l == want),
            "expected the one line `{want}`: {out:?}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

#[test]
fn postern_6_wrong_psk() {
    postern_fails(
        "p6-wrongpsk",
        wrong_psk(),
        true,
        exit::AUTH_FAILED,
        "authentication failed",
    );
}

#[test]
fn postern_7_no_proposal_chosen() {
    postern_fails(
        "p7-nopro",
        no_proposal(),
        true,
        exit::NO_PROPOSAL,
        "no proposal chosen",
    );
}

#[test]
fn postern_8_gateway_not_running() {
    postern_fails(
        "p8-nogw",
        main_psk().0,
        false,
        exit::NOT_RESPONDING,
        "not responding",
    );
}

/// Traffic really flows: ping the lan host through Postern's tunnel (the route to the
/// remote network carries the virtual IP as source).
#[test]
fn postern_9_datapath_ping() {
    let (t, exp) = main_psk();
    run_scenario("p9-ping", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        check_gateway(&gw, &t, &exp)?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        let left = lab.exec(Role::Client, &["ip", "-4", "addr", "show"])?;
        lab_ensure!(
            !left.contains(CLIENT_VIP),
            "virtual IP left behind after exit:\n{left}"
        );
        Ok(())
    });
}

/// The client namespace's kernel state that Postern may touch: after a clean exit and
/// after SIGKILL + `postern-helper cleanup` it must be exactly as before the connect.
fn snapshot(lab: &Lab) -> Result<String> {
    let mut s = String::new();
    for cmd in [
        &["ip", "addr"][..],
        &["ip", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["ip", "rule"],
        &["ip", "xfrm", "state"],
        &["ip", "xfrm", "policy"],
        &["ip", "link"],
    ] {
        s.push_str(&format!("$ {}\n", cmd.join(" ")));
        // DAD may finish between two snapshots: the flag is not ours.
        s.push_str(&lab.exec(Role::Client, cmd)?.replace(" tentative", ""));
    }
    Ok(s)
}

fn ensure_same(before: &str, after: &str, when: &str) -> Result<()> {
    if before != after {
        let diff: Vec<String> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .map(|l| format!("+ {l}"))
            .chain(
                before
                    .lines()
                    .filter(|b| !after.lines().any(|l| l == *b))
                    .map(|l| format!("- {l}")),
            )
            .collect();
        lab_bail!(
            "client kernel state differs {when}:\n{}\n--- after:\n{after}",
            diff.join("\n")
        );
    }
    Ok(())
}

/// Nothing is left behind: after SIGTERM (clean teardown), and after SIGKILL followed by
/// `postern-helper cleanup` (the crash journal), the client's addresses, routes, rules,
/// XFRM state and links are as before the connect.
#[test]
fn postern_10_teardown_leaves_nothing() {
    let (t, _) = main_psk();
    run_scenario("p10-teardown", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let before = snapshot(lab)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        // `datapath = "auto"` (the default) probed the kernel in a scratch namespace:
        // one line says what it chose and why, and the probe left nothing here.
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(
                |l| l.starts_with("datapath auto: ") && l.contains("scratch network namespace")
            ),
            "no line from the auto probe in a scratch namespace: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        ensure_same(&before, &snapshot(lab)?, "after SIGTERM")?;
        gw.wait_no_sas(Duration::from_secs(10))?;

        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigkill()?;
        let _ = client.exit_status(Duration::from_secs(10))?;
        let out = postern_lab::postern::cleanup(lab)?;
        lab_ensure!(
            out.contains("cleanup: removed what pid"),
            "`postern-helper cleanup` found no journal of the killed helper: {out:?}"
        );
        ensure_same(&before, &snapshot(lab)?, "after SIGKILL + cleanup")?;
        let again = postern_lab::postern::cleanup(lab)?;
        lab_ensure!(
            again.trim().is_empty(),
            "second cleanup still found something: {again:?}"
        );
        Ok(())
    });
}

/// TCP through the tunnel: bounded iperf3 runs (3 s) from the client to the lan host and
/// back (`-R`).
#[test]
fn postern_11_datapath_iperf3() {
    let (t, _) = main_psk();
    run_scenario("p11-iperf", |lab: &Lab| {
        let _gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        // The TUN device does segmentation offload, so these runs take the TSO and GRO
        // paths of the userspace datapath.
        lab_ensure!(
            client
                .stdout()
                .iter()
                .any(|l| l.starts_with("datapath userspace") && l.contains("offload=tso")),
            "the TUN device has no offload: {:?}",
            client.stdout()
        );
        let mbits = postern_lab::bench::iperf3(lab, LAN_HOST, 3)?;
        eprintln!("postern_11: iperf3 through the tunnel: {mbits:.0} Mbit/s");
        lab_ensure!(mbits > 0.0, "no throughput");
        // The other way (iperf3 -R): inbound segments coalesced (GRO) into the TUN device.
        let down = postern_lab::bench::iperf3_dir(lab, Role::Client, None, LAN_HOST, 3, true)?;
        eprintln!("postern_11: iperf3 -R through the tunnel: {down:.0} Mbit/s");
        lab_ensure!(down > 0.0, "no throughput from the lan host");
        // And the bytes themselves, both ways (iperf3 does not look at them).
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 8 << 20, false)?;
        postern_lab::bench::checked_transfer(lab, Role::Client, LAN_HOST, 8 << 20, true)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

/// The client behind a masquerading NAT: NAT-T finds it, ESP goes in UDP 4500, ping works.
#[test]
fn postern_12_nat_ping() {
    let (t, exp) = main_psk();
    run_nat_scenario("p12-nat", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        lab_ensure!(
            client
                .stdout()
                .iter()
                // kernel-libipsec gateways also fake their own NAT (to force UDP
                // encapsulation): "both sides" is fine, "gateway behind NAT" is not.
                .any(|l| l.starts_with("phase1 established")
                    && (l.contains("we are behind NAT") || l.contains("both sides behind NAT"))),
            "NAT not detected: {:?}",
            client.stdout()
        );
        check_gateway(&gw, &t, &exp)?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// Every ESP transform of the datapath against strongSwan's libipsec: connect, ping the
/// lan host through the tunnel, check the gateway's algorithms, disconnect.
#[test]
fn postern_13_datapath_algorithms() {
    for (esp, want) in [
        ("aes128gcm16", "AES_GCM_16-128"),
        ("aes192gcm16", "AES_GCM_16-192"),
        ("aes256gcm16", "AES_GCM_16-256"),
        ("aes192-sha384", "AES_CBC-192/HMAC_SHA2_384_192"),
        ("aes256-sha512", "AES_CBC-256/HMAC_SHA2_512_256"),
        ("3des-md5", "3DES_CBC/HMAC_MD5_96"),
    ] {
        let t =
            Tunnel::main_psk(&format!("alg-{esp}")).proposals(&["aes128-sha256-modp2048"], &[esp]);
        let exp = Expect {
            ike: "AES_CBC-128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
            esp: want,
        };
        run_scenario(&format!("p13-{esp}"), |lab: &Lab| {
            let gw = lab.start_gateway(&t)?;
            let client = lab.start_postern(&t)?;
            client.wait_connected()?;
            check_gateway(&gw, &t, &exp)?;
            lab.ping(Role::Client, None, LAN_HOST)
                .map_err(|e| postern_lab::LabError(format!("{esp}: {e}")))?;
            client.sigterm()?;
            let code = client.exit_code(Duration::from_secs(15))?;
            lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
            Ok(())
        });
    }
}

/// Full tunnel: the profile names no remote network, the gateway offers 0.0.0.0/0. Postern
/// routes 0.0.0.0/1 and 128.0.0.0/1 through the tunnel, keeps the gateway's own route
/// outside it, the lan host answers through it, and everything goes away on exit.
/// Run directly and behind the NAT router (where the gateway is reached through the
/// default route, so without the bypass route IKE and ESP would loop into the tunnel).
#[test]
fn postern_14_full_tunnel() {
    full_tunnel(false);
    full_tunnel(true);
}

fn full_tunnel(behind_nat: bool) {
    let t = Tunnel::main_psk("full-tunnel").full_tunnel();
    let scenario = |lab: &Lab| -> Result<()> {
        let _gw = lab.start_gateway(&t)?;
        let before = snapshot(lab)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        // In Postern's own table (0x7057), looked up first by its rule; main is untouched.
        let routes = lab.exec(Role::Client, &["ip", "route", "show", "table", "28759"])?;
        lab_ensure!(
            routes.contains("0.0.0.0/1 dev postern0")
                && routes.contains("128.0.0.0/1 dev postern0"),
            "no full-tunnel routes in Postern's table:\n{routes}"
        );
        let rules = lab.exec(Role::Client, &["ip", "rule"])?;
        lab_ensure!(
            rules.contains("7057:") && rules.contains("lookup 28759"),
            "no rule for Postern's table:\n{rules}"
        );
        let main = lab.exec(Role::Client, &["ip", "route", "show", "table", "main"])?;
        lab_ensure!(
            !main.contains("postern0"),
            "routes in the main table:\n{main}"
        );
        let gw_route = lab.exec(
            Role::Client,
            &["ip", "route", "get", postern_lab::config::GW_ADDR],
        )?;
        lab_ensure!(
            !gw_route.contains("postern0"),
            "the gateway is routed into the tunnel: {gw_route}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        ensure_same(&before, &snapshot(lab)?, "after a full tunnel")
    };
    if behind_nat {
        run_nat_scenario("p14-full-nat", scenario);
    } else {
        run_scenario("p14-full", scenario);
    }
}
