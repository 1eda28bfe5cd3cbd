//! The demo office: client/gw/lan namespaces, a strongSwan gateway (main mode PSK), a
//! Postern profile, and `postern-helper up` in the client namespace in the foreground.
//! Ctrl-C (or SIGTERM) is passed on to postern-helper once; when it has exited the
//! namespaces and the gateway are removed.
//!
//! `demo --reference` does the same with strongSwan's charon as the client (works without
//! postern-helper), pinging the office LAN through the tunnel.

use std::process::{Command, ExitCode};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use postern_lab::config::{CHILD, CLIENT_VIP, CONN, LAN_HOST};
use postern_lab::postern::helper_path_in;
use postern_lab::{Lab, LabError, Result, Role, Tunnel, signals};

/// The demo stops by itself after this long (every wait in the lab is bounded).
const MAX_RUN: Duration = Duration::from_secs(12 * 3600);

fn main() -> ExitCode {
    let reference = std::env::args().any(|a| a == "--reference");
    match run(reference) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(reference: bool) -> Result<ExitCode> {
    let sig = signals::install()?;
    let tunnel = Tunnel::main_psk("office");
    let lab = Lab::new("demo")?;
    println!("demo: office network up:");
    println!("  {}   192.0.2.2   (you: the laptop)", lab.ns(Role::Client));
    println!(
        "  {}       192.0.2.1 | 10.77.0.1   (strongSwan gateway)",
        lab.ns(Role::Gw)
    );
    println!(
        "  {}      10.77.0.10  (a server in the office)",
        lab.ns(Role::Lan)
    );
    let gw = lab.start_gateway(&tunnel)?;
    println!("demo: strongSwan gateway running (main mode, PSK, aes128-sha256-modp2048)");
    println!(
        "demo: gateway SAs: STRONGSWAN_CONF={0}/strongswan.conf swanctl --list-sas --uri unix://{0}/charon.vici",
        gw.dir.display()
    );
    let code = if reference {
        run_reference(&lab, &tunnel, &sig)?
    } else {
        run_postern(&lab, &tunnel, &sig)?
    };
    println!("demo: tearing down (gateway, namespaces)");
    drop(gw);
    drop(lab);
    println!("demo: done");
    Ok(code)
}

fn run_postern(lab: &Lab, tunnel: &Tunnel, sig: &Receiver<&'static str>) -> Result<ExitCode> {
    let helper = match std::env::var_os("POSTERN_HELPER") {
        Some(_) => postern_lab::postern::helper_path()?,
        None => helper_path_in("release")?,
    };
    let profile = lab.write_profile(tunnel)?;
    println!(
        "demo: profile {} (mode 0600, holds the PSK):",
        profile.display()
    );
    for line in tunnel.postern_profile().lines() {
        if line.starts_with("psk") {
            println!("  psk = \"********\"");
        } else {
            println!("  {line}");
        }
    }
    println!(
        "demo: try in another terminal: ip netns exec {} ping {LAN_HOST}",
        lab.ns(Role::Client)
    );
    println!("demo: starting postern-helper up (Ctrl-C disconnects)\n");
    let mut cmd = lab.command(Role::Client, &helper);
    cmd.arg("up").arg(&profile);
    // Its own process group: the demo passes on exactly one signal (a second one could
    // cut its teardown short).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError(format!("cannot start {}: {e}", helper.display())))?;
    let start = Instant::now();
    let mut forwarded = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Ok(name) = sig.recv_timeout(Duration::from_millis(100))
            && !forwarded
        {
            {
                println!("\ndemo: {name} received, asking postern-helper to disconnect");
                let _ = Command::new("kill")
                    .arg(format!("-{name}"))
                    .arg(child.id().to_string())
                    .status();
                forwarded = true;
            }
        }
        if start.elapsed() > MAX_RUN {
            let _ = child.kill();
            break child.wait()?;
        }
    };
    println!("\ndemo: postern-helper exited: {status}");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_reference(lab: &Lab, tunnel: &Tunnel, sig: &Receiver<&'static str>) -> Result<ExitCode> {
    println!("demo: reference mode: strongSwan's charon as the client");
    let client = lab.start_charon_client(tunnel)?;
    let took = client.initiate(CHILD, 20)?;
    println!(
        "demo: connected in {} ms (swanctl --initiate)",
        took.as_millis()
    );
    println!("{}", client.list_sas_text());
    lab.ping(Role::Client, Some(CLIENT_VIP), LAN_HOST)?;
    println!("demo: ping {LAN_HOST} through the tunnel: ok. Ctrl-C disconnects.");
    let got = sig.recv_timeout(MAX_RUN);
    if let Ok(name) = got {
        println!("\ndemo: {name} received, disconnecting");
    }
    client.terminate(CONN)?;
    Ok(ExitCode::SUCCESS)
}
