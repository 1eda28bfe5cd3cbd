//! "Check the tunnel" (issue 12, point 6) against a real strongSwan gateway: the
//! helper's `Check` method on the lab's private system bus, first on a healthy tunnel
//! (traffic both ways, the DNS server answering ping and a query, the path MTU, no
//! captive portal), then on the "connected but nothing works" tunnel users report: the
//! gateway drops what the office sends back, and the network in front of it redirects
//! web requests to a login page. Each step must say what it saw. Root only.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use postern_dbus::interface::{CheckStep, ConnectionProxy, HelperProxy, check, state};
use postern_lab::config::{GW_ADDR, POOL_DNS};
use postern_lab::process::Proc;
use postern_lab::sysbus::SystemBus;
use postern_lab::{Lab, LabError, Result, Role, Tunnel, lab_ensure, run_scenario};

const DOMAIN: &str = "corp.example";
const PORTAL_PORT: u16 = 8080;

fn bus_err(e: impl std::fmt::Display) -> LabError {
    LabError(format!("D-Bus: {e}"))
}

/// Answers every DNS query with "no such name" (enough to show the server answers).
const DNS_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, a = s.recvfrom(1500)
    if len(q) < 12:
        continue
    s.sendto(q[:2] + bytes([0x80 | (q[2] & 1), 0x83]) + q[4:6] + b"\0" * 6 + q[12:], a)
"#;

/// 204 until the flag file exists, then a redirect to a login page (a captive portal).
const PORTAL_SERVER: &str = r#"
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if os.path.exists(sys.argv[3]):
            self.send_response(302)
            self.send_header("Location", "http://login.hotel.example/")
        else:
            self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

fn python(lab: &Lab, role: Role, name: &str, script: &str, args: &[&str]) -> Result<()> {
    let path = lab.dir.join(format!("{name}.py"));
    std::fs::write(&path, script)?;
    let mut c = lab.command(role, std::path::Path::new("python3"));
    c.arg(&path).args(args);
    let p = Proc::spawn(name, c, Some(&lab.dir.join(format!("{name}.out"))))?;
    lab.adopt(&p);
    Ok(())
}

/// The profile without its `psk` line, and the PSK.
fn split_psk(profile: &str) -> Result<(String, String)> {
    let mut psk = None;
    let mut text = String::new();
    for line in profile.lines() {
        match line.trim().strip_prefix("psk = ") {
            Some(v) => psk = Some(v.trim_matches('"').to_string()),
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let psk = psk.ok_or_else(|| LabError(format!("no psk in the profile:\n{profile}")))?;
    Ok((text, psk))
}

fn find<'a>(steps: &'a [CheckStep], name: &str) -> Result<&'a CheckStep> {
    steps
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| LabError(format!("no {name} step in {steps:?}")))
}

fn show(steps: &[CheckStep]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {}: {}", s.name, s.outcome, s.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_the_tunnel_healthy_then_connected_but_nothing_works() {
    let t = Tunnel::main_psk("office").mode_config(true);
    run_scenario("check", |lab: &Lab| {
        let _gw = lab.start_gateway(&t)?;
        // The office: a DNS server at the address Mode Config hands out.
        let addrs = lab.exec(Role::Lan, &["ip", "-o", "-4", "addr", "show"])?;
        let dev = addrs
            .lines()
            .find(|l| l.contains("10.77.0.10/"))
            .and_then(|l| l.split_whitespace().nth(1))
            .ok_or_else(|| LabError(format!("no LAN interface in:\n{addrs}")))?
            .to_string();
        lab.exec(
            Role::Lan,
            &["ip", "addr", "add", &format!("{POOL_DNS}/24"), "dev", &dev],
        )?;
        python(lab, Role::Lan, "dns", DNS_SERVER, &[POOL_DNS])?;
        let flag = lab.dir.join("portal-on");
        let port = PORTAL_PORT.to_string();
        python(
            lab,
            Role::Gw,
            "portal",
            PORTAL_SERVER,
            &[GW_ADDR, &port, &flag.to_string_lossy()],
        )?;

        let profile = t.postern_profile().replace(
            "\n[network]\nmode_config = \"pull\"\n",
            &format!(
                "\n[network]\nmode_config = \"pull\"\ncheck_domain = \"{DOMAIN}\"\nportal_url = \"http://{GW_ADDR}:{PORTAL_PORT}/generate_204\"\n"
            ),
        );
        lab_ensure!(
            profile.contains("portal_url"),
            "no [network] to extend:\n{profile}"
        );
        let (text, psk) = split_psk(&profile)?;
        let rules = "polkit.addRule(function(action, subject) {\n  if (action.id.indexOf(\"org.postern.helper1.\") == 0 && subject.user == \"root\") {\n    return polkit.Result.YES;\n  }\n});\n";
        let sys = SystemBus::start(lab, rules)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let conn = zbus::connection::Builder::address(sys.addr.as_str())
                .map_err(bus_err)?
                .build()
                .await
                .map_err(bus_err)?;
            let helper = HelperProxy::new(&conn).await.map_err(bus_err)?;
            let path = helper
                .connect(&text, HashMap::from([("psk", psk.as_str())]))
                .await
                .map_err(bus_err)?;
            let c = ConnectionProxy::builder(&conn)
                .path(path.clone())
                .map_err(bus_err)?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .map_err(bus_err)?;
            // Until connected (bounded).
            for _ in 0..200 {
                if c.state().await.map_err(bus_err)? == state::CONNECTED {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (_, log) = c.recent_log().await.map_err(bus_err)?;
            lab_ensure!(
                c.state().await.map_err(bus_err)? == state::CONNECTED,
                "not connected:\n{}",
                log.join("\n")
            );

            // 1. Healthy.
            let steps = c.check().await.map_err(bus_err)?;
            eprintln!("healthy:\n{}", show(&steps));
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            lab_ensure!(names == check::ALL, "steps {names:?}");
            for s in &steps {
                lab_ensure!(s.outcome == check::OK, "healthy tunnel:\n{}", show(&steps));
            }
            lab_ensure!(
                find(&steps, check::HOST)?.detail.contains(POOL_DNS)
                    && find(&steps, check::DNS)?.detail.contains(DOMAIN)
                    && find(&steps, check::MTU)?.detail.contains("bytes"),
                "details:\n{}",
                show(&steps)
            );
            let (_, log) = c.recent_log().await.map_err(bus_err)?;
            lab_ensure!(
                log.iter().any(|l| l.starts_with("check traffic: ok")),
                "the check is not in the tunnel's log:\n{}",
                log.join("\n")
            );

            // 2. Connected but nothing works: the gateway drops the office's answers,
            // and the network in front of it turns into a captive portal.
            lab.exec(Role::Gw, &["nft", "add", "table", "inet", "pcheck"])?;
            lab.exec(
                Role::Gw,
                &[
                    "nft",
                    "add",
                    "chain",
                    "inet",
                    "pcheck",
                    "pfwd",
                    "{ type filter hook forward priority 0 ; }",
                ],
            )?;
            lab.exec(
                Role::Gw,
                &[
                    "nft",
                    "add",
                    "rule",
                    "inet",
                    "pcheck",
                    "pfwd",
                    "ip",
                    "saddr",
                    "10.77.0.0/24",
                    "drop",
                ],
            )?;
            std::fs::write(&flag, "on")?;
            // Through the CLI this time, as a user would run it.
            let out = Command::new(sys.bin.join("postern"))
                .args(["check", "office"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &sys.addr)
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("broken:\n{stdout}{stderr}");
            lab_ensure!(!out.status.success(), "postern check succeeded:\n{stdout}");
            let line = |name: &str| {
                stdout
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(name))
                    .unwrap_or("")
                    .to_string()
            };
            lab_ensure!(
                line("traffic").contains("failed") && line("traffic").contains("nothing came back"),
                "traffic: {stdout}"
            );
            lab_ensure!(
                line("host").contains("failed") && line("host").contains("did not answer"),
                "host: {stdout}"
            );
            lab_ensure!(
                line("dns").contains("failed") && line("dns").contains("will not resolve"),
                "dns: {stdout}"
            );
            lab_ensure!(line("mtu").contains("skipped"), "mtu: {stdout}");
            lab_ensure!(
                line("portal").contains("failed")
                    && line("portal").contains("captive portal")
                    && line("portal").contains("login.hotel.example"),
                "portal: {stdout}"
            );
            lab_ensure!(stderr.contains("checks failed"), "stderr: {stderr}");
            // The tunnel itself stays up.
            lab_ensure!(
                c.state().await.map_err(bus_err)? == state::CONNECTED,
                "the check disturbed the tunnel"
            );

            helper.disconnect(&path).await.map_err(bus_err)?;
            // A check of a tunnel that is not up is refused in one sentence.
            for _ in 0..100 {
                if c.state().await.map_err(bus_err)? == state::DISCONNECTED {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match c.check().await {
                Err(e) => lab_ensure!(
                    e.to_string().contains("once it is connected"),
                    "refusal: {e}"
                ),
                Ok(s) => lab_ensure!(false, "checked a closed tunnel: {s:?}"),
            }
            Ok::<(), LabError>(())
        })?;
        Ok(())
    });
}
