//! Connect time: `postern-helper up` against strongSwan's charon as the client, same
//! gateway, same lab, same run.
//!
//! What is measured (wall clock, `Instant`, in this process):
//! - charon: charon is already running in the client namespace with the connection loaded
//!   (its start-up is NOT timed). Timed: from spawning `swanctl --initiate --child net`
//!   until that swanctl process exits successfully, which it does once the CHILD_SA is
//!   established and installed (kernel-libipsec). Includes swanctl's own process start
//!   and vici round trip.
//! - postern: timed from spawning `ip netns exec <client> postern-helper up PROFILE`
//!   until its stdout line containing `connected` is read. Includes `ip netns exec`,
//!   postern-helper's process start, profile parsing, the IKE exchanges, SA install,
//!   TUN/addresses/routes.
//!
//! Both: main mode PSK, aes128-sha256-modp2048, ESP aes128-sha256, no PFS, against one
//! charon gateway (kernel-libipsec) in a veth-connected namespace. Between runs the
//! client disconnects and we wait until the gateway has no SA left (not timed). One
//! warm-up run of each is not counted. The charon runs come first (charon then stops and
//! its inner address is removed, since both clients need UDP 500/4500 and 10.200.0.5 in
//! the client namespace), then the postern runs.
//!
//! With `--ike 2` both clients speak IKEv2 (charon `version = 2`, the profile's
//! `ike_version = 2`): IKE_SA_INIT + IKE_AUTH PSK, same proposals, the same gateway
//! with `version = 2`.
//!
//! Usage: connect-time [--runs N] [--only charon|postern|both] [--ike 1|2]

use std::process::ExitCode;
use std::time::Duration;

use postern_lab::config::{CHILD, CONN};
use postern_lab::postern::helper_path;
use postern_lab::{Lab, LabError, Result, Tunnel};

struct Args {
    runs: usize,
    charon: bool,
    postern: bool,
    ike: u8,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut a = Args {
        runs: 10,
        charon: true,
        postern: true,
        ike: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" | "-n" => {
                a.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n: &usize| (1..=1000).contains(&n))
                    .ok_or("--runs needs a number 1..=1000")?;
            }
            "--only" => match it.next().as_deref() {
                Some("charon") => a.postern = false,
                Some("postern") => a.charon = false,
                Some("both") => {}
                _ => return Err("--only charon|postern|both".into()),
            },
            "--ike" => match it.next().as_deref() {
                Some("1") => a.ike = 1,
                Some("2") => a.ike = 2,
                _ => return Err("--ike 1|2".into()),
            },
            "-h" | "--help" => {
                return Err(
                    "usage: connect-time [--runs N (default 10)] [--only charon|postern|both] [--ike 1|2]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("connect-time: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn median_ms(v: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    }
}

fn report(label: &str, v: &[Duration]) -> f64 {
    let ms: Vec<String> = v
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    let min = v
        .iter()
        .min()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let max = v
        .iter()
        .max()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let med = median_ms(v);
    println!(
        "{label:<26} median {med:8.1} ms   min {min:.1}  max {max:.1}   n={}",
        v.len()
    );
    println!("{:<26} runs (ms): {}", "", ms.join(" "));
    med
}

fn charon_runs(
    lab: &Lab,
    gw: &postern_lab::Charon,
    t: &Tunnel,
    runs: usize,
) -> Result<Vec<Duration>> {
    let client = lab.start_charon_client(t)?;
    let mut times = Vec::new();
    for i in 0..=runs {
        let took = client.initiate(CHILD, 20)?;
        gw.wait_established(Duration::from_secs(5))?;
        if i > 0 {
            times.push(took);
        }
        client.terminate(CONN)?;
        gw.wait_no_sas(Duration::from_secs(10))?;
        client.wait_no_sas(Duration::from_secs(10))?;
    }
    client.stop();
    lab.remove_client_vip()?;
    Ok(times)
}

fn postern_runs(
    lab: &Lab,
    gw: &postern_lab::Charon,
    t: &Tunnel,
    runs: usize,
) -> Result<Vec<Duration>> {
    helper_path()?;
    let mut times = Vec::new();
    for i in 0..=runs {
        let client = lab.start_postern(t)?;
        let line = client.wait_connected()?;
        gw.wait_established(Duration::from_secs(5))?;
        if i > 0 {
            times.push(line.at);
        }
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        if code != 0 {
            return Err(LabError(format!(
                "postern-helper exited {code} after SIGTERM"
            )));
        }
        gw.wait_no_sas(Duration::from_secs(10))?;
    }
    Ok(times)
}

fn run(a: &Args) -> Result<bool> {
    let t = Tunnel::main_psk("bench");
    let t = if a.ike == 2 { t.ikev2() } else { t };
    let lab = Lab::new("bench")?;
    let gw = lab.start_gateway(&t)?;
    println!(
        "connect-time: {} runs each (+1 warm-up), IKEv{} {}PSK aes128-sha256-modp2048, esp aes128-sha256, lab {}",
        a.runs,
        a.ike,
        if a.ike == 1 { "main mode " } else { "" },
        lab.name
    );
    let charon = if a.charon {
        Some(
            charon_runs(&lab, &gw, &t, a.runs)
                .map_err(|e| LabError(format!("charon client: {e}\n{}", lab.diagnostics())))?,
        )
    } else {
        None
    };
    let postern = if a.postern {
        Some(postern_runs(&lab, &gw, &t, a.runs))
    } else {
        None
    };
    println!();
    let mc = charon
        .as_ref()
        .map(|v| report("charon (swanctl --initiate)", v));
    let mut ok = true;
    let mp = match postern {
        Some(Ok(v)) => Some(report("postern-helper up", &v)),
        Some(Err(e)) => {
            println!("postern-helper up          FAILED: {e}");
            ok = false;
            None
        }
        None => None,
    };
    if let (Some(c), Some(p)) = (mc, mp) {
        println!("ratio postern/charon (medians): {:.2}", p / c);
    } else if a.charon && a.postern {
        println!("ratio postern/charon (medians): n/a");
    }
    Ok(ok)
}
