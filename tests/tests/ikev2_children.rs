//! IKEv2 with more than one CHILD_SA against a real strongSwan gateway: a gateway
//! with two networks behind it (the office LAN 10.77.0.0/24 and a second network
//! 10.88.0.0/24 on a second link from the gateway to the LAN host), two children in its swanctl.conf
//! (`net` and `net2`), a profile with both `remote_networks`: the first child comes in
//! IKE_AUTH, the second with CREATE_CHILD_SA (PFS), a ping reaches each network,
//! `swanctl --list-sas` shows both children; the gateway rekeys `net2` alone under a
//! continuous ping losing nothing while `net` keeps its SPIs. A network the gateway
//! does not have is refused in one line and the others stay up. Userspace datapath
//! (the lab's default). Root only.

use std::path::Path;
use std::time::Duration;

use postern_lab::config::{LAN_HOST, LAN_NET, POOL_FIRST};
use postern_lab::postern::exit;
use postern_lab::process::{Proc, Stream};
use postern_lab::strongswan::{Charon, ChildSa};
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

const NET2: &str = "10.88.0.0/24";
const NET2_HOST: &str = "10.88.0.10";

/// The second network: a veth pair from the gateway (10.88.0.1/24) to a second
/// interface of the LAN host (10.88.0.10/24).
fn add_second_network(lab: &Lab) -> postern_lab::Result<()> {
    let lan = lab.ns(Role::Lan);
    lab.exec(
        Role::Gw,
        &[
            "ip", "link", "add", "g2", "type", "veth", "peer", "name", "l1", "netns", &lan,
        ],
    )?;
    lab.exec(
        Role::Gw,
        &["ip", "addr", "add", "10.88.0.1/24", "dev", "g2"],
    )?;
    lab.exec(Role::Gw, &["ip", "link", "set", "g2", "up"])?;
    lab.exec(
        Role::Lan,
        &["ip", "addr", "add", "10.88.0.10/24", "dev", "l1"],
    )?;
    lab.exec(Role::Lan, &["ip", "link", "set", "l1", "up"])?;
    Ok(())
}

/// The tunnel: PSK, a pool address, ESP with PFS (modp2048) on both sides.
fn tunnel(name: &str) -> Tunnel {
    Tunnel::main_psk(name)
        .ikev2()
        .mode_config(true)
        .gateway_proposals(&["aes128-sha256-modp2048"], &["aes128-sha256-modp2048"])
        .pfs("modp2048")
}

/// The gateway's swanctl.conf with a second child `net2` for [`NET2`] (`extra`: more
/// lines in it, e.g. its rekey time).
fn gateway_conf(t: &Tunnel, extra: &str) -> String {
    let conf = t.gateway_swanctl();
    let first = format!("        local_ts = {LAN_NET}\n");
    let at = conf.find("      }\n    }\n  }\n}").unwrap_or(conf.len());
    let esp = "aes128-sha256-modp2048";
    let net2 = format!(
        "      }}\n      net2 {{\n        local_ts = {NET2}\n        remote_ts = dynamic\n        esp_proposals = {esp}\n{extra}"
    );
    assert!(conf.contains(&first), "{conf}");
    let mut c = conf.clone();
    c.insert_str(at, &net2);
    c
}

/// The client's profile with `networks` as its remote networks.
fn profile(t: &Tunnel, networks: &[&str]) -> String {
    let list: Vec<String> = networks.iter().map(|n| format!("\"{n}\"")).collect();
    t.postern_profile().replacen(
        "mode = \"tunnel\"\n",
        &format!(
            "mode = \"tunnel\"\nremote_networks = [{}]\n",
            list.join(", ")
        ),
        1,
    )
}

fn installed(gw: &Charon) -> postern_lab::Result<Vec<ChildSa>> {
    Ok(gw
        .list_sas()?
        .iter()
        .flat_map(|s| s.children.iter())
        .filter(|c| c.state() == "INSTALLED")
        .cloned()
        .collect())
}

/// The gateway's installed child for `net` (its local-ts), with our pool address on
/// the other side.
fn child_for(gw: &Charon, net: &str) -> postern_lab::Result<ChildSa> {
    let all = installed(gw)?;
    let found: Vec<&ChildSa> = all.iter().filter(|c| c.ts("local-ts") == [net]).collect();
    let [c] = found.as_slice() else {
        lab_bail!(
            "not exactly one installed child for {net}:\n{}",
            gw.list_sas_text()
        )
    };
    lab_ensure!(
        c.ts("remote-ts") == [format!("{POOL_FIRST}/32")],
        "the child for {net} is not for {POOL_FIRST}/32:\n{}",
        gw.list_sas_text()
    );
    Ok((*c).clone())
}

/// Pings `dst` 5 times a second for `seconds` from the client: (sent, received, line).
fn continuous_ping(lab: &Lab, dst: &str, seconds: u32) -> postern_lab::Result<(u64, u64, String)> {
    let count = (seconds * 5).to_string();
    let mut cmd = lab.command(Role::Client, Path::new("ping"));
    cmd.args(["-n", "-O", "-i", "0.2", "-c", &count, "-W", "1", dst]);
    let ping = Proc::spawn("ping", cmd, None)?;
    lab.adopt(&ping);
    let _ = ping.exit_status(Duration::from_secs(u64::from(seconds) + 20));
    let summary = ping.lines_of(Stream::Stdout);
    let stats = summary
        .iter()
        .find(|l| l.contains("packets transmitted"))
        .cloned()
        .unwrap_or_default();
    let nums: Vec<u64> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    lab_ensure!(nums.len() >= 2, "no ping summary: {summary:?}");
    Ok((nums[0], nums[1], stats))
}

/// Two networks, two children (the second by CREATE_CHILD_SA with PFS), a ping to
/// each; then strongSwan rekeys `net2` (rekey_time 15 s) under a continuous ping to
/// the second network: nothing lost, `net2`'s SPIs new, `net`'s the same as before.
#[test]
fn ikev2_two_children_and_one_rekeyed_by_the_gateway() {
    let t = tunnel("v2-kids");
    run_scenario("v2-kids", |lab: &Lab| {
        add_second_network(lab)?;
        let gw = lab.start_gateway_as(&t, &gateway_conf(&t, "        rekey_time = 15s\n"))?;
        let client = lab.start_postern_text("v2-kids", &profile(&t, &[LAN_NET, NET2]))?;
        client.wait_connected()?;
        let out = client.stdout();
        for net in [LAN_NET, NET2] {
            lab_ensure!(
                out.iter().any(|l| l.starts_with("phase2 established")
                    && l.contains(&format!("local_ts={POOL_FIRST}/32"))
                    && l.contains(&format!("remote_ts={net}"))),
                "no child SA for {net} before `connected`: {out:?}"
            );
        }
        gw.wait_established(Duration::from_secs(10))?;
        let net1 = child_for(&gw, LAN_NET)?;
        let net2 = child_for(&gw, NET2)?;
        lab_ensure!(
            net2.algorithms().ends_with("MODP_2048"),
            "the second child is not with PFS: {}\n{}",
            net2.algorithms(),
            gw.list_sas_text()
        );
        lab_ensure!(
            installed(&gw)?.len() == 2,
            "not two children:\n{}",
            gw.list_sas_text()
        );
        lab.ping_within(Role::Client, None, LAN_HOST, Duration::from_secs(3))?;
        lab.ping_within(Role::Client, None, NET2_HOST, Duration::from_secs(3))?;
        // strongSwan rekeys net2 at 13.5-15 s after it was made.
        let (sent, received, stats) = continuous_ping(lab, NET2_HOST, 22)?;
        let out = client.stdout();
        lab_ensure!(
            sent >= 100 && received == sent,
            "{} of {sent} pings to {NET2_HOST} lost across the gateway's rekey: {stats}\nclient: {out:?}",
            sent.saturating_sub(received)
        );
        let after1 = child_for(&gw, LAN_NET)?;
        let after2 = child_for(&gw, NET2)?;
        lab_ensure!(
            after2.get("spi-in") != net2.get("spi-in")
                && after2.get("spi-out") != net2.get("spi-out"),
            "net2 was not rekeyed:\n{}",
            gw.list_sas_text()
        );
        lab_ensure!(
            after1.get("spi-in") == net1.get("spi-in")
                && after1.get("spi-out") == net1.get("spi-out"),
            "net changed its SPIs although only net2 was rekeyed:\n{}",
            gw.list_sas_text()
        );
        let rekeyed = out
            .iter()
            .filter(|l| l.starts_with("phase2 established") && l.contains(NET2))
            .count();
        lab_ensure!(rekeyed >= 2, "the client saw no rekey of net2: {out:?}");
        // Both networks still answer.
        lab.ping(Role::Client, None, LAN_HOST)?;
        lab.ping(Role::Client, None, NET2_HOST)?;
        for l in out.iter().filter(|l| l.starts_with("phase2")) {
            println!("v2-kids: {l}");
        }
        println!("v2-kids: {stats}");
        lab_ensure!(
            client.error_line().is_none(),
            "the client failed: {:?}",
            client.stderr()
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

/// Three networks, the gateway has two: the third is refused (TS_UNACCEPTABLE) in
/// one line naming it, the tunnel connects with the other two, which carry pings;
/// then the gateway deletes one child and the other still carries a ping.
#[test]
fn ikev2_a_network_the_gateway_lacks_is_refused_and_the_others_work() {
    let t = tunnel("v2-kidsno");
    run_scenario("v2-kidsno", |lab: &Lab| {
        add_second_network(lab)?;
        let gw = lab.start_gateway_as(&t, &gateway_conf(&t, ""))?;
        let client =
            lab.start_postern_text("v2-kidsno", &profile(&t, &[LAN_NET, "10.99.0.0/24", NET2]))?;
        client.wait_connected()?;
        let out = client.stdout();
        let refused: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("phase2 failed"))
            .collect();
        lab_ensure!(
            refused.len() == 1
                && refused[0].contains("the gateway refused a child SA for 10.99.0.0/24"),
            "not one refusal of 10.99.0.0/24: {out:?}"
        );
        gw.wait_established(Duration::from_secs(10))?;
        child_for(&gw, LAN_NET)?;
        child_for(&gw, NET2)?;
        lab.ping_within(Role::Client, None, LAN_HOST, Duration::from_secs(3))?;
        lab.ping_within(Role::Client, None, NET2_HOST, Duration::from_secs(3))?;
        // The gateway deletes net2 alone: the client removes that child only.
        gw.swanctl(&["--terminate", "--child", "net2", "--timeout", "5"], None)?;
        client.wait_line("by the gateway", Duration::from_secs(10))?;
        let out = client.stdout();
        let deleted: Vec<&String> = out
            .iter()
            .filter(|l| l.starts_with("phase2 deleted"))
            .collect();
        lab_ensure!(deleted.len() == 1, "not one child deleted: {out:?}");
        lab.ping(Role::Client, None, LAN_HOST)?;
        child_for(&gw, LAN_NET)?;
        lab_ensure!(
            installed(&gw)?.len() == 1,
            "the gateway holds more than net:\n{}",
            gw.list_sas_text()
        );
        lab_ensure!(
            client.error_line().is_none(),
            "the client failed: {:?}",
            client.stderr()
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))
    });
}

// ----- the kernel datapath, in the throw-away VM (as tests/tests/kernel_vm.rs) -----

/// Modules the guest loads up front (on-demand loading is very slow under TCG).
const VM_MODULES: &str = "esp4 xfrm_user veth authenc echainiv seqiv cbc aes_generic \
                          sha256_generic hmac drbg jitterentropy_rng ctr gcm ghash_generic";

/// Boots the VM (scripts/vm/run-in-vm.sh) and runs this binary's ignored tests
/// matching `filter` inside it; returns their stdout.
fn run_inner_tests(filter: &str, timeout_s: u32) -> String {
    postern_lab::lab::require_root().unwrap_or_else(|e| panic!("{e}"));
    let me = std::env::current_exe().expect("test binary path");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm/run-in-vm.sh");
    let start = std::time::Instant::now();
    // The helper under test, inside the VM too.
    let helper = postern_lab::postern::helper_path().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(script)
        .arg(&me)
        .args(["--ignored", filter, "--nocapture", "--test-threads", "1"])
        .env("VM_MODULES", VM_MODULES)
        .env("VM_ENV", "POSTERN_IN_VM RUST_BACKTRACE POSTERN_HELPER")
        .env("POSTERN_HELPER", helper)
        .env("POSTERN_IN_VM", "1")
        .env("RUST_BACKTRACE", "1")
        .env("VM_TIMEOUT", timeout_s.to_string())
        .output()
        .expect("run-in-vm.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    eprintln!(
        "VM run ({filter}): exit {code} after {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        start.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(code != 125, "the VM could not be set up");
    assert!(code != 124, "the VM timed out");
    assert_eq!(code, 0, "the scenario failed inside the VM");
    stdout
}

/// The two children with kernel ESP on both sides (XFRM states and policies per
/// child), through the gateway's rekey of one of them.
#[test]
fn ikev2_children_kernel_datapath_in_a_vm() {
    let stdout = run_inner_tests("inner_v2kids_", 400);
    for t in ["inner_v2kids_kernel", "inner_v2kids_ikev1_kernel"] {
        assert!(
            stdout.contains(&format!("test {t} ... ok")),
            "the inner test {t} did not pass"
        );
    }
}

/// Bounded: until the gateway shows an installed child for each of `nets`.
fn wait_gateway_children(gw: &Charon, nets: &[&str]) -> postern_lab::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if nets.iter().all(|n| child_for(gw, n).is_ok()) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            lab_bail!(
                "the gateway did not install both children:\n{}",
                gw.list_sas_text()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
#[ignore = "runs inside the VM, started by ikev2_children_kernel_datapath_in_a_vm"]
fn inner_v2kids_kernel() {
    assert_eq!(
        std::env::var("POSTERN_IN_VM").as_deref(),
        Ok("1"),
        "only inside the VM"
    );
    let t = tunnel("kvm-kids").kernel_esp("auto");
    run_scenario("kvm-kids", |lab: &Lab| {
        add_second_network(lab)?;
        let gw = lab.start_gateway_as(&t, &gateway_conf(&t, "        rekey_time = 20s\n"))?;
        let client = lab.start_postern_text("kvm-kids", &profile(&t, &[LAN_NET, NET2]))?;
        client.wait_connected()?;
        wait_gateway_children(&gw, &[LAN_NET, NET2])?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("datapath kernel")),
            "not the kernel datapath: {out:?}"
        );
        lab.ping_within(Role::Client, None, LAN_HOST, Duration::from_secs(5))?;
        lab.ping_within(Role::Client, None, NET2_HOST, Duration::from_secs(5))?;
        let xfrm = |what: &str| {
            lab.exec(Role::Client, &["ip", "xfrm", what])
                .unwrap_or_default()
        };
        let states = xfrm("state");
        let policies = xfrm("policy");
        lab_ensure!(
            states.matches("proto esp").count() == 4,
            "expected two SA pairs:\n{states}"
        );
        for net in [LAN_NET, NET2] {
            lab_ensure!(
                policies.contains(&format!("dst {net}")),
                "no policy for {net}:\n{policies}"
            );
        }
        let net1 = child_for(&gw, LAN_NET)?;
        // The gateway rekeys net2 after 18-20 s: bounded wait, with traffic.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while !client
            .stdout()
            .iter()
            .any(|l| l.starts_with("phase2 deleted"))
        {
            lab_ensure!(
                std::time::Instant::now() < deadline,
                "no rekey of net2 within 90 s: {:?}",
                client.stdout()
            );
            let _ = lab.ping(Role::Client, None, NET2_HOST);
            std::thread::sleep(Duration::from_millis(500));
        }
        wait_gateway_children(&gw, &[LAN_NET, NET2])?;
        lab.ping_within(Role::Client, None, NET2_HOST, Duration::from_secs(5))?;
        lab.ping(Role::Client, None, LAN_HOST)?;
        let after1 = child_for(&gw, LAN_NET)?;
        lab_ensure!(
            after1.get("spi-in") == net1.get("spi-in"),
            "net changed its SPIs:\n{}",
            gw.list_sas_text()
        );
        let states = xfrm("state");
        lab_ensure!(
            states.matches("proto esp").count() == 4,
            "after the rekey, expected two SA pairs:\n{states}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(30))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        let left = format!("{}{}", xfrm("state"), xfrm("policy"));
        lab_ensure!(left.trim().is_empty(), "left behind:\n{left}");
        Ok(())
    });
}

/// The same two networks with IKEv1 (two quick modes) and kernel ESP: the SA pairs of
/// the two networks share the datapath's reqid and each carries only its network's
/// packets (the SAs' own selectors).
#[test]
#[ignore = "runs inside the VM, started by ikev2_children_kernel_datapath_in_a_vm"]
fn inner_v2kids_ikev1_kernel() {
    assert_eq!(
        std::env::var("POSTERN_IN_VM").as_deref(),
        Ok("1"),
        "only inside the VM"
    );
    let t = Tunnel::main_psk("kvm-kids1")
        .mode_config(true)
        .gateway_proposals(&["aes128-sha256-modp2048"], &["aes128-sha256-modp2048"])
        .pfs("modp2048")
        .kernel_esp("auto");
    run_scenario("kvm-kids1", |lab: &Lab| {
        add_second_network(lab)?;
        let gw = lab.start_gateway_as(&t, &gateway_conf(&t, ""))?;
        let client = lab.start_postern_text("kvm-kids1", &profile(&t, &[LAN_NET, NET2]))?;
        client.wait_connected()?;
        wait_gateway_children(&gw, &[LAN_NET, NET2])?;
        lab.ping_within(Role::Client, None, LAN_HOST, Duration::from_secs(5))?;
        lab.ping_within(Role::Client, None, NET2_HOST, Duration::from_secs(5))?;
        let states = lab
            .exec(Role::Client, &["ip", "xfrm", "state"])
            .unwrap_or_default();
        lab_ensure!(
            states.matches("proto esp").count() == 4,
            "expected two SA pairs:\n{states}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(30))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}
