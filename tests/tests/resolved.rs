//! DNS through systemd-resolved (issue 3): a real systemd-resolved (Debian's, unpacked
//! by scripts/install-deps.sh, never installed) runs in the client namespace on a
//! private bus, and the namespace's resolv.conf points at its stub, as on a desktop
//! with resolved. The gateway hands out a DNS server and a split-DNS domain by Mode
//! Config; the tunnel's link must carry them in resolved (routing domain, not the
//! default route), and nothing of it must remain after the tunnel ends. Root only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_lab::config::POOL_DNS;
use postern_lab::postern::{exit, helper_path};
use postern_lab::process::Proc;
use postern_lab::{Client, Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

const RESOLVED_DIR: &str = "/var/cache/postern-lab/systemd-resolved";
/// The uid/gid resolved drops to, only inside the test's mount namespace.
const RESOLVE_UID: u32 = 60991;
const SPLIT_DOMAIN: &str = "corp.example";

/// Starts dbus-daemon and systemd-resolved in the client namespace (their own mount
/// namespace: private /run, a passwd with resolved's user). Returns the bus address.
fn start_resolved(lab: &Lab) -> Result<String> {
    let bin = Path::new(RESOLVED_DIR).join("lib/systemd/systemd-resolved");
    if !bin.exists() {
        lab_bail!(
            "{} is missing: run scripts/install-deps.sh (it unpacks systemd-resolved)",
            bin.display()
        );
    }
    let dir = lab.dir.join("resolved");
    std::fs::create_dir_all(&dir)?;
    let bus = dir.join("bus");
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            bus.display()
        ),
    )?;
    let mut passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd.push_str(&format!(
        "systemd-resolve:x:{RESOLVE_UID}:{RESOLVE_UID}::/:/usr/sbin/nologin\n"
    ));
    let mut group = std::fs::read_to_string("/etc/group")?;
    group.push_str(&format!("systemd-resolve:x:{RESOLVE_UID}:\n"));
    std::fs::write(dir.join("passwd"), passwd)?;
    std::fs::write(dir.join("group"), group)?;
    let d = dir.display();
    let script = format!(
        "set -e
mount -t tmpfs lab-run /run
mount --bind {d}/passwd /etc/passwd
mount --bind {d}/group /etc/group
mkdir -p /run/systemd/resolve
chown {RESOLVE_UID}:{RESOLVE_UID} /run/systemd/resolve
dbus-daemon --config-file={conf} --nofork --nopidfile &
i=0; while [ ! -S {bus} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
DBUS_SYSTEM_BUS_ADDRESS=unix:path={bus} exec {bin}
",
        conf = conf.display(),
        bus = bus.display(),
        bin = bin.display()
    );
    let mut cmd = lab.command(Role::Client, Path::new("unshare"));
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let p = Proc::spawn("systemd-resolved", cmd, Some(&dir.join("resolved.out")))?;
    lab.adopt(&p);
    let addr = format!("unix:path={}", bus.display());
    // Wait until resolved owns its name.
    for _ in 0..50 {
        let out = std::process::Command::new("busctl")
            .args(["--address", &addr, "--timeout=2", "list", "--no-pager"])
            .output();
        if out
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("org.freedesktop.resolve1"))
        {
            return Ok(addr);
        }
        if let Some(st) = p.try_status() {
            lab_bail!("systemd-resolved exited ({st}): {}", p.tail(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    lab_bail!("systemd-resolved did not come up on {addr}: {}", p.tail(20))
}

/// `resolvectl ARGS` in the client namespace against the lab bus.
fn resolvectl(lab: &Lab, addr: &str, args: &[&str]) -> String {
    let bin = PathBuf::from(RESOLVED_DIR).join("usr/bin/resolvectl");
    let mut cmd = lab.command(Role::Client, &bin);
    cmd.args(args).env("DBUS_SYSTEM_BUS_ADDRESS", addr);
    match cmd.output() {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("resolvectl: {e}"),
    }
}

#[test]
fn split_dns_through_systemd_resolved() {
    let t = Tunnel::main_psk("rs-dns")
        .xauth("alice", "alice-pass-9", "alice-pass-9")
        .mode_config(true);
    run_scenario("rs-dns", |lab: &Lab| {
        // As on a desktop with resolved: resolv.conf names its stub.
        let etc = Path::new("/etc/netns").join(lab.ns(Role::Client));
        std::fs::create_dir_all(&etc)?;
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        std::fs::write(etc.join("resolv.conf"), stub)?;
        let addr = start_resolved(lab)?;

        // The gateway also hands out a split-DNS domain (Cisco Unity 28675).
        let conf = t.gateway_swanctl().replace(
            &format!("dns = {POOL_DNS}"),
            &format!("dns = {POOL_DNS}\n    28675 = {SPLIT_DOMAIN}"),
        );
        lab_ensure!(conf.contains("28675"), "no pool to extend:\n{conf}");
        let gw = lab.start_gateway_conf(&conf)?;
        let profile = lab.write_profile(&t)?;
        let client = Client::start_with_env(
            lab,
            &helper_path()?,
            &profile,
            &[("DBUS_SYSTEM_BUS_ADDRESS", &addr)],
        )?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        let line = client.wait_line("via systemd-resolved", Duration::from_secs(5))?;
        lab_ensure!(
            line.text.contains(POOL_DNS) && line.text.contains(SPLIT_DOMAIN),
            "unexpected DNS line: {}",
            line.text
        );
        let status = resolvectl(lab, &addr, &["status", "postern0"]);
        lab_ensure!(
            status.contains(&format!("DNS Servers: {POOL_DNS}"))
                && status.contains(&format!("DNS Domain: {SPLIT_DOMAIN}"))
                && status.contains("-DefaultRoute"),
            "resolved's view of the tunnel link:\n{status}"
        );
        // resolv.conf itself is not touched.
        let rc = std::fs::read_to_string(etc.join("resolv.conf"))?;
        lab_ensure!(rc == stub, "resolv.conf was changed:\n{rc}");

        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        gw.wait_no_sas(Duration::from_secs(10))?;
        let all = resolvectl(lab, &addr, &["dns"]);
        lab_ensure!(
            !all.contains(POOL_DNS) && !all.contains("postern0"),
            "resolved still has the tunnel's DNS:\n{all}"
        );

        // After a crash the link goes (cleanup), and resolved forgets its settings.
        let client = Client::start_with_env(
            lab,
            &helper_path()?,
            &profile,
            &[("DBUS_SYSTEM_BUS_ADDRESS", &addr)],
        )?;
        lab.adopt(&client.proc);
        client.wait_connected()?;
        client.wait_line("via systemd-resolved", Duration::from_secs(5))?;
        client.sigkill()?;
        let _ = client.exit_status(Duration::from_secs(10))?;
        postern_lab::postern::cleanup(lab)?;
        let all = resolvectl(lab, &addr, &["dns"]);
        lab_ensure!(
            !all.contains(POOL_DNS) && !all.contains("postern0"),
            "resolved still has the tunnel's DNS after SIGKILL + cleanup:\n{all}"
        );
        Ok(())
    });
}
