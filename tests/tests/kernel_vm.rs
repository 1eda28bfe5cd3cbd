//! The kernel XFRM datapath against a strongSwan gateway that does ESP in the kernel too,
//! proven inside a throw-away VM (scripts/vm/run-in-vm.sh: Debian's stock kernel, which
//! has ESP, on this machine's own files under qemu TCG), because this machine's kernel
//! has XFRM but no ESP.
//!
//! The host test boots the VM and runs this same test binary inside it with
//! `--ignored --exact inner_kernel_datapath`; the inner test is an ordinary lab scenario:
//! `postern-helper up` with `datapath = "kernel"` and raw ESP (NAT-T off), ping through
//! the tunnel, the SAs and policies checked in the client's XFRM tables, then after
//! SIGTERM nothing of ours left (SAs, policies, address, routes). Root only.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postern_lab::config::{CLIENT_VIP, LAN_HOST};
use postern_lab::postern::exit;
use postern_lab::{Lab, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

/// Modules the guest loads up front (one modprobe; on-demand loading of the crypto
/// modules is very slow under TCG).
const MODULES: &str = "esp4 xfrm_user veth authenc echainiv seqiv cbc aes_generic \
                       sha256_generic hmac drbg jitterentropy_rng ctr";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm/run-in-vm.sh")
}

#[test]
fn kernel_datapath_in_a_vm() {
    postern_lab::lab::require_root().unwrap_or_else(|e| panic!("{e}"));
    let me = std::env::current_exe().expect("test binary path");
    let start = Instant::now();
    let out = Command::new(script())
        .arg(&me)
        .args([
            "--ignored",
            "--exact",
            "inner_kernel_datapath",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env("VM_MODULES", MODULES)
        .env("VM_ENV", "POSTERN_IN_VM RUST_BACKTRACE")
        .env("POSTERN_IN_VM", "1")
        .env("RUST_BACKTRACE", "1")
        .env("VM_TIMEOUT", "420")
        .output()
        .expect("run-in-vm.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    eprintln!(
        "VM run: exit {code} after {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        start.elapsed().as_secs_f64()
    );
    assert!(
        code != 125,
        "the VM could not be set up (scripts/install-deps.sh installs qemu-system-x86, \
         linux-image-amd64, busybox-static): {stderr}"
    );
    assert!(code != 124, "the VM timed out");
    assert_eq!(code, 0, "the scenario failed inside the VM");
    assert!(
        stdout.contains("test inner_kernel_datapath ... ok"),
        "the inner test did not run"
    );
}

fn xfrm(lab: &Lab, what: &str) -> String {
    lab.exec(Role::Client, &["ip", "xfrm", what])
        .unwrap_or_default()
}

#[test]
#[ignore = "runs inside the VM, started by kernel_datapath_in_a_vm"]
fn inner_kernel_datapath() {
    assert_eq!(
        std::env::var("POSTERN_IN_VM").as_deref(),
        Ok("1"),
        "only inside the VM"
    );
    let t = Tunnel::main_psk("kvm-raw").kernel_esp("off");
    run_scenario("kvm-raw", |lab: &Lab| {
        let before_addr = lab.exec(Role::Client, &["ip", "-4", "addr"])?;
        let before_route =
            lab.exec(Role::Client, &["ip", "-4", "route", "show", "table", "all"])?;
        let gw = lab.start_gateway(&t)?;
        let client = lab.start_postern(&t)?;
        client.wait_connected()?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().any(|l| l.starts_with("datapath kernel")),
            "not the kernel datapath: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        let states = xfrm(lab, "state");
        let policies = xfrm(lab, "policy");
        lab_ensure!(
            states.matches("proto esp").count() == 2 && !states.contains("encap"),
            "expected two raw ESP SAs:\n{states}"
        );
        lab_ensure!(
            policies.contains("dir out")
                && policies.contains("dir in")
                && policies.contains("dir fwd"),
            "expected out/in/fwd policies:\n{policies}"
        );
        let shown = gw.list_sas_text();
        lab_ensure!(
            shown.contains("INSTALLED") && shown.contains(CLIENT_VIP),
            "the gateway's view:\n{shown}"
        );
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(30))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        let states = xfrm(lab, "state");
        let policies = xfrm(lab, "policy");
        if !states.trim().is_empty() || !policies.trim().is_empty() {
            lab_bail!("left behind:\n{states}\n{policies}");
        }
        let after_addr = lab.exec(Role::Client, &["ip", "-4", "addr"])?;
        let after_route = lab.exec(Role::Client, &["ip", "-4", "route", "show", "table", "all"])?;
        lab_ensure!(
            after_addr == before_addr && after_route == before_route,
            "addresses or routes differ after the tunnel:\n{before_addr}\n{after_addr}\n{before_route}\n{after_route}"
        );
        Ok(())
    });
}
