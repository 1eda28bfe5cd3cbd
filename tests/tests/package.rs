//! The installed Debian package (issue 14): its bus policy lets root own
//! org.postern.Helper1 and nobody else, and the helper started exactly as the unit
//! starts it (the installed unit's `ExecStart`, as root) serves `List` and the
//! `Version` property to root and to an unprivileged user over a private system bus
//! whose only Postern policy is the installed file. SIGTERM then ends it cleanly.
//!
//! Needs the package installed: `packaging/check-deb.sh` builds, installs, runs this
//! test and purges. Without the package (the ordinary lab run) it is skipped with a
//! message. Root only.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use postern_dbus::interface::{BUS_NAME, HelperProxy};
use postern_lab::process::Proc;
use postern_lab::sysbus::wait_name;

const UNIT: &str = "/usr/lib/systemd/system/postern-helper.service";
const POLICY: &str = "/usr/share/dbus-1/system.d/org.postern.Helper1.conf";
const ACTIVATION: &str = "/usr/share/dbus-1/system-services/org.postern.Helper1.service";

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "postern"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout) == "install ok installed")
}

/// The value of `key=` in an ini-style file (the first one).
fn ini_value(path: &str, key: &str) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{path}: no {key}="))
        .trim()
        .to_string()
}

/// A private system bus whose policy is the default deny plus the installed file.
struct Bus {
    dir: PathBuf,
    addr: String,
    daemon: std::sync::Arc<Proc>,
}

impl Bus {
    fn start() -> Bus {
        let dir = std::env::temp_dir().join(format!("postern-package-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("bus dir");
        // An unprivileged user connects to the socket in here.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let sock = dir.join("system_bus_socket");
        let conf = dir.join("system.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>{POLICY}</include>
</busconfig>
"#,
                sock = sock.display()
            ),
        )
        .expect("bus config");
        let mut c = Command::new("dbus-daemon");
        c.arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"]);
        let daemon =
            Proc::spawn("dbus-daemon", c, Some(&dir.join("dbus.out"))).expect("dbus-daemon");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            sock.exists(),
            "dbus-daemon did not listen: {}",
            daemon.tail(10)
        );
        Bus {
            addr: format!("unix:path={}", sock.display()),
            dir,
            daemon,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.daemon.stop(Duration::from_secs(2));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The unit's ExecStart as a command, with the bus address and optionally as `user`
/// (through setpriv, as nobody; as root otherwise).
fn exec_start(bus: &Bus, as_nobody: bool) -> Command {
    let exec = ini_value(UNIT, "ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let mut c = if as_nobody {
        // Bounded: should the policy ever let nobody own the name, the helper would
        // serve until its idle exit.
        let mut c = Command::new("timeout");
        c.args([
            "20",
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
        ]);
        c.args(&argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    c.env("DBUS_SYSTEM_BUS_ADDRESS", &bus.addr);
    c
}

#[test]
fn the_installed_helper_serves_list_on_a_bus_with_the_installed_policy() {
    if !installed() {
        eprintln!(
            "skipped: the postern package is not installed \
             (packaging/check-deb.sh builds and installs it, runs this test, then purges it)"
        );
        return;
    }
    // The files name each other as they must.
    let exec = ini_value(UNIT, "ExecStart");
    assert!(
        Path::new(exec.split_whitespace().next().unwrap()).is_file(),
        "{exec}"
    );
    assert_eq!(ini_value(ACTIVATION, "Name"), BUS_NAME);
    assert_eq!(
        ini_value(ACTIVATION, "SystemdService"),
        "postern-helper.service"
    );
    assert_eq!(
        ini_value(ACTIVATION, "Exec"),
        exec,
        "activation without systemd runs the unit's command"
    );
    assert_eq!(ini_value(UNIT, "BusName"), BUS_NAME);

    let bus = Bus::start();

    // Not root: the policy refuses the name and the helper says so.
    let out = exec_start(&bus, true).output().expect("helper as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the helper owned the name as nobody: {err}"
    );
    assert!(err.contains(&format!("cannot own {BUS_NAME}")), "{err}");

    // Root, as the unit starts it.
    let helper = Proc::spawn(
        "postern-helper (ExecStart)",
        exec_start(&bus, false),
        Some(&bus.dir.join("helper.out")),
    )
    .expect("helper");
    let guard = scopeguard(helper.clone());
    wait_name(&bus.addr, BUS_NAME, &helper).expect("the helper owns its name");

    // List and Version through the contract's proxy, as root.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (list, version) = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.addr.as_str())
            .expect("address")
            .build()
            .await
            .expect("connect to the private bus");
        let p = HelperProxy::new(&conn).await.expect("proxy");
        let list = tokio::time::timeout(Duration::from_secs(10), p.list())
            .await
            .expect("List answered in time")
            .expect("List");
        let version = p.version().await.expect("Version");
        (list, version)
    });
    assert!(list.is_empty(), "a fresh helper has no tunnels: {list:?}");
    assert_eq!(version, 1);

    // An unprivileged user may call it too (the policy's "anyone may send").
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(["busctl", "--address", &bus.addr, "--timeout=10", "call"])
        .args([BUS_NAME, "/org/postern/Helper1", BUS_NAME, "List"])
        .output()
        .expect("busctl as nobody");
    assert!(
        out.status.success(),
        "List as nobody: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ao 0");

    // The SIGTERM path (what the package's prerm uses): a clean exit.
    helper.sigterm().expect("SIGTERM");
    let st = helper
        .exit_status(Duration::from_secs(10))
        .expect("the helper exits after SIGTERM");
    assert!(
        st.success(),
        "exit after SIGTERM: {st}: {}",
        helper.tail(10)
    );
    drop(guard);
}

/// Stops the helper if the test fails half-way.
struct StopOnDrop(std::sync::Arc<Proc>);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop(Duration::from_secs(5));
    }
}
fn scopeguard(p: std::sync::Arc<Proc>) -> StopOnDrop {
    StopOnDrop(p)
}
