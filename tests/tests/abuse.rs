//! The privilege boundary (issue 15, point 5), on the lab's private system bus with
//! polkit and the helper daemon, a real strongSwan gateway, and three unprivileged
//! users: `owner` and `peer` may connect and manage their own tunnels (a polkit rule),
//! `stranger` may not (polkit's default, no agent: no). `owner` brings up an XAuth
//! tunnel; then every abuse case below is refused with its error name and sentence,
//! and the tunnel stays up. Last, the secret check: the PSK and the XAuth password are
//! in none of the helper's output, the bus daemon's or polkit's, the connection's
//! properties or its log, and the helper never panicked. Root only.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use postern_lab::bususer::{BusUser, allow_rules, text};
use postern_lab::config::LAN_HOST;
use postern_lab::hoststate::fd_and_rss;
use postern_lab::sysbus::{HostChanges, SystemBus};
use postern_lab::{Lab, Result, Role, Tunnel, lab_bail, lab_ensure, run_scenario};

const BUS: &str = "org.postern.Helper1";
const MANAGER: &str = "/org/postern/Helper1";
const CONN_IFACE: &str = "org.postern.Helper1.Connection";

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `busctl call` on the manager as `u`.
fn manager(u: &BusUser, method: &str, sig_and_args: &[&str]) -> Result<Output> {
    let mut a = vec!["call", BUS, MANAGER, BUS, method];
    a.extend_from_slice(sig_and_args);
    u.busctl(&a)
}

/// Fails unless `o` failed and its message contains every one of `want` (busctl
/// prints the helper's sentence, not the error's name).
fn refused(case: &str, o: &Output, want: &[&str]) -> Result<()> {
    let e = err(o);
    lab_ensure!(
        !o.status.success() && want.iter().all(|w| e.contains(w)),
        "{case}: not refused with {want:?}: {}",
        text(o)
    );
    eprintln!("{case}: refused: {}", e.trim());
    Ok(())
}

/// A profile to a gateway nobody answers (an address on the lab's link), given up fast.
fn dead_profile(name: &str, tries: u32) -> String {
    format!(
        "name = {name:?}\ngateway = \"192.0.2.77\"\n[network]\nretransmit = {{ tries = {tries}, base = \"1s\", cap = \"1s\" }}\nreconnect = false\n"
    )
}

#[test]
fn abuse_of_the_dbus_boundary_is_refused() {
    let t = Tunnel::main_psk("abuse").xauth("alice", "alice-pw-5c1e", "alice-pw-5c1e");
    let pw = "alice-pw-5c1e";
    run_scenario("abuse", |lab: &Lab| {
        let gw = lab.start_gateway(&t)?;
        let mut host = HostChanges::default();
        let sys = SystemBus::start(lab, &allow_rules(&["postern-lab-o", "postern-lab-p"]))?;
        let owner = BusUser::new(lab, &mut host, &sys, "postern-lab-o")?;
        let peer = BusUser::new(lab, &mut host, &sys, "postern-lab-p")?;
        let stranger = BusUser::new(lab, &mut host, &sys, "postern-lab-s")?;
        let profile: String = t
            .postern_profile()
            .lines()
            .filter(|l| !l.starts_with("psk =") && !l.starts_with("password ="))
            .map(|l| format!("{l}\n"))
            .collect();
        let o = manager(
            &owner,
            "Connect",
            &["sa{ss}", &profile, "2", "psk", &t.psk, "xauth-password", pw],
        )?;
        lab_ensure!(o.status.success(), "Connect as the owner: {}", text(&o));
        let path = out(&o).split('"').nth(1).unwrap_or_default().to_string();
        lab_ensure!(
            path.starts_with("/org/postern/Helper1/Connection/"),
            "no object path: {}",
            text(&o)
        );
        let state = |u: &BusUser| -> Result<String> {
            Ok(out(&u.busctl(&[
                "get-property",
                BUS,
                &path,
                CONN_IFACE,
                "State",
            ])?))
        };
        let t0 = Instant::now();
        while !state(&owner)?.contains("\"connected\"") {
            if t0.elapsed() > Duration::from_secs(30) {
                lab_bail!("the owner's tunnel is not up: {}", state(&owner)?);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        lab.ping(Role::Client, None, LAN_HOST)?;

        // Another user's tunnel: neither a user polkit allows nor one it does not may
        // close it, check it, answer for it, watch it or read it; it does not exist for
        // them.
        for (who, u) in [("peer", &peer), ("stranger", &stranger)] {
            refused(
                &format!("{who}: Disconnect"),
                &manager(u, "Disconnect", &["o", &path])?,
                &["no connection"],
            )?;
            refused(
                &format!("{who}: SubmitCredentials"),
                &manager(
                    u,
                    "SubmitCredentials",
                    &["oa{ss}", &path, "1", "password", "x"],
                )?,
                &["no connection"],
            )?;
            refused(
                &format!("{who}: Watch"),
                &manager(u, "Watch", &["o", &path])?,
                &["no connection"],
            )?;
            refused(
                &format!("{who}: Check"),
                &u.busctl(&["call", BUS, &path, CONN_IFACE, "Check"])?,
                &["no connection"],
            )?;
            // org.freedesktop.DBus.Error.AccessDenied: busctl says "Access denied".
            let o = u.busctl(&["call", BUS, &path, CONN_IFACE, "RecentLog"])?;
            lab_ensure!(
                !o.status.success()
                    && (err(&o).contains("Access denied") || err(&o).contains("another user")),
                "{who}: RecentLog: {}",
                text(&o)
            );
            for prop in ["State", "Sas", "VirtualIp", "LastError"] {
                let o = u.busctl(&["get-property", BUS, &path, CONN_IFACE, prop])?;
                lab_ensure!(
                    !o.status.success()
                        && (err(&o).contains("Access denied") || err(&o).contains("another user")),
                    "{who}: {prop}: {}",
                    text(&o)
                );
            }
            eprintln!("{who}: RecentLog and properties: access denied");
            let l = manager(u, "List", &[])?;
            lab_ensure!(out(&l).trim() == "ao 0", "{who} lists: {}", text(&l));
        }
        // Not authorized by polkit at all.
        refused(
            "stranger: Connect",
            &manager(
                &stranger,
                "Connect",
                &["sa{ss}", &dead_profile("s", 1), "1", "psk", "x"],
            )?,
            &["not authorized (org.postern.helper1.connect)"],
        )?;

        // Names: the CLI refuses path-like profile names (its profiles are files); the
        // helper treats a name as data (connections are numbered), so `../` gets a
        // numbered object and touches no file.
        for name in ["../evil", "a/b", "/etc/passwd", ".hidden"] {
            let o = owner.postern(&["add", name, "--from", "-"], Some(&dead_profile("x", 1)))?;
            lab_ensure!(
                o.status.code() == Some(2) && err(&o).contains("is not a profile name"),
                "postern add {name:?}: {}",
                text(&o)
            );
        }
        let o = manager(
            &owner,
            "Connect",
            &[
                "sa{ss}",
                &dead_profile("../../etc/evil", 1),
                "1",
                "psk",
                "x",
            ],
        )?;
        let p2 = out(&o).split('"').nth(1).unwrap_or_default().to_string();
        lab_ensure!(
            o.status.success()
                && p2
                    .trim_start_matches("/org/postern/Helper1/Connection/")
                    .chars()
                    .all(|c| c.is_ascii_digit()),
            "a ../ name: {}",
            text(&o)
        );
        let name = owner.busctl(&["get-property", BUS, &p2, CONN_IFACE, "Name"])?;
        lab_ensure!(
            out(&name).contains("../../etc/evil"),
            "the name as given: {}",
            text(&name)
        );
        lab_ensure!(
            !std::path::Path::new("/etc/evil").exists(),
            "a file was made from a name"
        );
        // Object paths that are not connections.
        for p in [
            "/org/postern/Helper1",
            "/org/postern/Helper1/Connection/1/x",
            "/org/postern/Helper1/Connection/999999",
        ] {
            refused(
                &format!("Disconnect {p}"),
                &manager(&owner, "Disconnect", &["o", p])?,
                &["no connection"],
            )?;
        }

        // Control characters: in the name, the gateway, a secret, a secret's key.
        let ctl_cases: [(&str, String, &str, &str, &[&str]); 4] = [
            (
                "name with ESC",
                "name = \"Off\\u001bice\"\ngateway = \"192.0.2.77\"\n".into(),
                "psk",
                "x",
                &["control characters in name"],
            ),
            (
                "gateway with a newline",
                "name = \"o\"\ngateway = \"192.0.2.77\\nevil\"\n".into(),
                "psk",
                "x",
                &["gateway"],
            ),
            (
                "PSK with a newline",
                dead_profile("o", 1),
                "psk",
                "se\ncret",
                &["secrets: psk"],
            ),
            (
                "secret key with ESC",
                dead_profile("o", 1),
                "ps\u{1b}k",
                "x",
                &["(unprintable key)"],
            ),
        ];
        for (case, prof, key, val, want) in ctl_cases {
            refused(
                case,
                &manager(&owner, "Connect", &["sa{ss}", &prof, "1", key, val])?,
                want,
            )?;
        }

        // Oversized arguments (1 MiB; busctl cannot carry them): bus-oversize as the owner.
        let bin = sys.bin.join("bus-oversize");
        postern_lab::desktop::install_bin(
            &postern_lab::postern::helper_path()?.with_file_name("bus-oversize"),
            &bin,
        )?;
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", owner.uid))
            .arg(format!("--regid={}", owner.uid))
            .args(["--clear-groups", "--", "timeout", "60"])
            .arg(&bin)
            .env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", &sys.addr);
        let o = c.output()?;
        let lines = out(&o);
        eprintln!("oversized:\n{lines}");
        for (case, want) in [
            ("profile 1 MiB:", "InvalidArgument: profile: "),
            ("psk 1 MiB:", "InvalidArgument: secrets: psk: too long"),
            (
                "secret key 1 MiB:",
                "InvalidArgument: secrets: unknown key '(unprintable key)'",
            ),
            ("1000 secrets:", "InvalidArgument: secrets: 1000 entries"),
            ("answers 1 MiB:", "Error."),
            ("path 1 MiB:", "NoSuchConnection"),
        ] {
            let l = lines.lines().find(|l| l.starts_with(case)).unwrap_or("");
            lab_ensure!(
                l.contains(want) && !l.contains(": ok"),
                "{case} not refused with {want:?}: {}",
                text(&o)
            );
        }

        // Flooding Connect: at most CONNECTIONS_PER_UID live tunnels, then one clear
        // refusal each time; the daemon's fds and memory stay bounded.
        let pid = sys.helper.pid();
        let (fd0, rss0) = fd_and_rss(pid)?;
        let (mut accepted, mut refusals) = (Vec::new(), Vec::new());
        for i in 0..40 {
            let o = manager(
                &owner,
                "Connect",
                &[
                    "sa{ss}",
                    // One gateway each (a second tunnel to one gateway fails at once).
                    &dead_profile(&format!("flood{i}"), 5)
                        .replace("192.0.2.77", &format!("192.0.2.{}", 100 + i)),
                    "1",
                    "psk",
                    "x",
                ],
            )?;
            if o.status.success() {
                accepted.push(out(&o).split('"').nth(1).unwrap_or_default().to_string());
            } else {
                refusals.push(err(&o).trim().to_string());
            }
        }
        let (fd1, rss1) = fd_and_rss(pid)?;
        eprintln!(
            "flood: {} accepted, {} refused ({:?}); daemon fds {fd0} -> {fd1}, RSS {rss0} -> {rss1} KiB",
            accepted.len(),
            refusals.len(),
            refusals.first()
        );
        // The owner has 1 tunnel up (the ../ one failed by now or counts too).
        let limit = postern_dbus::interface::limits::CONNECTIONS_PER_UID;
        lab_ensure!(
            accepted.len() < limit && refusals.len() == 40 - accepted.len(),
            "flood: {} accepted: {refusals:?}",
            accepted.len()
        );
        lab_ensure!(
            refusals
                .iter()
                .all(|r| r.contains(&format!("tunnels; at most {limit}"))),
            "flood refusals: {refusals:?}"
        );
        lab_ensure!(
            fd1 <= fd0 + 4 * accepted.len() + 4 && rss1 < rss0 + 8 * 1024,
            "flood: daemon fds {fd0} -> {fd1}, RSS {rss0} -> {rss1} KiB"
        );
        for p in &accepted {
            let _ = manager(&owner, "Disconnect", &["o", p])?;
        }

        // The owner's tunnel survived all of it.
        lab_ensure!(
            state(&owner)?.contains("\"connected\""),
            "the tunnel did not survive: {}",
            state(&owner)?
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        gw.wait_established(Duration::from_secs(5))?;

        // The secret check: properties, log, the helper's and the bus's output.
        let mut seen = String::new();
        for prop in [
            "Name",
            "Owner",
            "State",
            "Phase",
            "Gateway",
            "VirtualIp",
            "Dns",
            "Routes",
            "IkeProposal",
            "Sas",
            "Traffic",
            "SaTraffic",
            "LastError",
        ] {
            let o = owner.busctl(&["get-property", BUS, &path, CONN_IFACE, prop])?;
            lab_ensure!(o.status.success(), "property {prop}: {}", text(&o));
            seen.push_str(&out(&o));
        }
        seen.push_str(&out(&owner.busctl(&[
            "call",
            BUS,
            &path,
            CONN_IFACE,
            "RecentLog",
        ])?));
        lab_ensure!(seen.contains("xauth ok"), "the log lacks XAuth: {seen}");
        let o = manager(&owner, "Disconnect", &["o", &path])?;
        lab_ensure!(o.status.success(), "Disconnect as the owner: {}", text(&o));
        gw.wait_no_sas(Duration::from_secs(10))?;
        for f in ["helper.out", "dbus.out", "polkitd.out"] {
            seen.push_str(&std::fs::read_to_string(sys.dir.join(f)).unwrap_or_default());
        }
        seen.push_str(&sys.helper.tail(1_000_000));
        for (what, secret) in [("PSK", t.psk.as_str()), ("XAuth password", pw)] {
            lab_ensure!(!seen.contains(secret), "the {what} was seen");
        }
        lab_ensure!(!seen.contains("panicked"), "the helper panicked: {seen}");
        eprintln!(
            "secrets in none of {} bytes of properties, log and output",
            seen.len()
        );
        drop(host);
        Ok(())
    });
}
