//! The helper never blocks: one tunnel's setup held on the datapath (the lab's stand-in
//! for a slow netlink, `POSTERN_TEST_HOLD_DATAPATH`, which sleeps where netlink, XFRM
//! and the DNS calls run) while a second tunnel connects, and `List` and the held
//! tunnel's properties answer within 100 ms all along. Before the driver moved its host
//! calls to the blocking pool, the D-Bus service and every tunnel shared the thread
//! that made them.
//!
//! Real helper on the lab's private system bus with Debian's polkitd, one strongSwan
//! with two gateway addresses. Root only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use postern_dbus::interface::{ConnectionProxy, HelperProxy, state};
use postern_lab::multi::{CLIENT2_VIP, LAN_HOST2, two_gateways};
use postern_lab::sysbus::SystemBus;
use postern_lab::{Lab, LabError, Result, Role, lab_ensure, run_scenario};

/// How long the first tunnel's datapath setup is held.
const HOLD: Duration = Duration::from_secs(6);
/// How long D-Bus answers may take while it is held: 99 % within 100 ms (the issue's
/// figure), none over 500 ms (a blocked thread would hold them for the whole 6 s; a
/// loaded CI machine may delay one or two by a scheduling slice).
const MAX_ANSWER: Duration = Duration::from_millis(100);
const WORST_ANSWER: Duration = Duration::from_millis(500);

fn bus_err(e: impl std::fmt::Display) -> LabError {
    LabError(format!("D-Bus: {e}"))
}

/// The profile without its `psk` line, and the PSK (sent beside it, as front ends do).
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

async fn connection<'a>(
    conn: &'a zbus::Connection,
    path: &zbus::zvariant::OwnedObjectPath,
) -> Result<ConnectionProxy<'a>> {
    ConnectionProxy::builder(conn)
        .path(path.clone())
        .map_err(bus_err)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(bus_err)
}

/// Waits (bounded) until the tunnel's log has a line containing `needle`.
async fn wait_log(c: &ConnectionProxy<'_>, needle: &str, within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let (_, lines) = c.recent_log().await.map_err(bus_err)?;
        if lines.iter().any(|l| l.contains(needle)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, lines) = c.recent_log().await.map_err(bus_err)?;
    Err(LabError(format!(
        "no {needle:?} in the log:\n{}",
        lines.join("\n")
    )))
}

async fn wait_state(c: &ConnectionProxy<'_>, want: &str, within: Duration) -> Result<()> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if c.state().await.map_err(bus_err)? == want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, lines) = c.recent_log().await.map_err(bus_err)?;
    Err(LabError(format!(
        "not {want} after {within:?}:\n{}",
        lines.join("\n")
    )))
}

#[test]
fn a_held_tunnel_setup_stalls_no_other_tunnel_and_no_call() {
    run_scenario("nonblock", |lab: &Lab| {
        let (gw, prof_a, prof_b) = two_gateways(lab, "held-a", "quick-b")?;
        let rules = "polkit.addRule(function(action, subject) {\n  if (action.id.indexOf(\"org.postern.helper1.\") == 0 && subject.user == \"root\") {\n    return polkit.Result.YES;\n  }\n});\n";
        let hold = format!("held-a:{}", HOLD.as_millis());
        let sys = SystemBus::start_with(lab, rules, &[("POSTERN_TEST_HOLD_DATAPATH", &hold)])?;
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
            let (text_a, psk_a) = split_psk(&prof_a)?;
            let (text_b, psk_b) = split_psk(&prof_b)?;

            let path_a = helper
                .connect(&text_a, HashMap::from([("psk", psk_a.as_str())]))
                .await
                .map_err(bus_err)?;
            let a = connection(&conn, &path_a).await?;
            // A's first SA is up: its datapath setup starts now and is held.
            wait_log(&a, "phase2 established", Duration::from_secs(20)).await?;
            let held_since = Instant::now();

            let path_b = helper
                .connect(&text_b, HashMap::from([("psk", psk_b.as_str())]))
                .await
                .map_err(bus_err)?;
            let b = connection(&conn, &path_b).await?;
            let mut times: Vec<Duration> = Vec::new();
            let mut b_up = None;
            // Bounded: the hold plus a margin.
            while held_since.elapsed() < HOLD + Duration::from_secs(4) {
                for call in 0..3 {
                    let t = Instant::now();
                    match call {
                        0 => drop(helper.list().await.map_err(bus_err)?),
                        1 => drop(a.state().await.map_err(bus_err)?),
                        _ => drop(a.phase().await.map_err(bus_err)?),
                    }
                    times.push(t.elapsed());
                }
                if b_up.is_none() && b.state().await.map_err(bus_err)? == state::CONNECTED {
                    let a_state = a.state().await.map_err(bus_err)?;
                    b_up = Some((held_since.elapsed(), a_state));
                }
                if b_up.is_some() && held_since.elapsed() > HOLD {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            times.sort();
            let slowest = times.last().copied().unwrap_or_default();
            let p99 = times
                .get(times.len().saturating_sub(1) * 99 / 100)
                .copied()
                .unwrap_or_default();
            eprintln!(
                "while A was held: {} calls, 99th percentile {} ms, slowest {} ms; B connected after {:?}",
                times.len(),
                p99.as_millis(),
                slowest.as_millis(),
                b_up.as_ref().map(|b| b.0)
            );
            let Some((b_after, a_then)) = b_up else {
                let (_, lines) = b.recent_log().await.map_err(bus_err)?;
                return Err(LabError(format!(
                    "B never connected while A was held:\n{}",
                    lines.join("\n")
                )));
            };
            lab_ensure!(
                b_after < HOLD && a_then != state::CONNECTED,
                "B connected after {b_after:?}, A was {a_then}: not while A was held"
            );
            lab_ensure!(
                times.len() >= 30 && p99 < MAX_ANSWER && slowest < WORST_ANSWER,
                "{} D-Bus calls while A was held: 99th percentile {} ms (at most {} ms), slowest {} ms (at most {} ms)",
                times.len(),
                p99.as_millis(),
                MAX_ANSWER.as_millis(),
                slowest.as_millis(),
                WORST_ANSWER.as_millis()
            );
            lab.ping(Role::Client, Some(CLIENT2_VIP), LAN_HOST2)?;

            // A comes up once its setup is released.
            wait_state(&a, state::CONNECTED, HOLD + Duration::from_secs(15)).await?;
            helper.disconnect(&path_a).await.map_err(bus_err)?;
            helper.disconnect(&path_b).await.map_err(bus_err)?;
            for c in [&a, &b] {
                wait_state(c, state::DISCONNECTED, Duration::from_secs(15)).await?;
            }
            Ok::<(), LabError>(())
        })?;
        gw.wait_no_sas(Duration::from_secs(10))?;
        let links = lab.exec(Role::Client, &["ip", "-o", "link"])?;
        lab_ensure!(
            !links.contains("postern"),
            "a TUN device was left behind:\n{links}"
        );
        Ok(())
    });
}
