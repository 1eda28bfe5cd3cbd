//! `bench/cycles.sh N`: N connect/disconnect cycles over D-Bus, two tunnels at a time,
//! against the lab's strongSwan (`postern_lab::cycles`); prints the helper daemon's fd
//! count and RSS (first vs last 50 cycles) and fails when anything was left behind.

use std::process::ExitCode;

use postern_lab::Lab;

fn main() -> ExitCode {
    let n: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 200,
        Some(Ok(n)) if n > 0 && n <= 10_000 => n,
        _ => {
            eprintln!("usage: cycles [N]   (1..=10000, default 200)");
            return ExitCode::from(2);
        }
    };
    let lab = match Lab::new("cycles") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cycles: cannot build the lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = std::time::Instant::now();
    match postern_lab::cycles::run(&lab, n, true) {
        Ok(r) => {
            println!("{}", r.summary());
            println!(
                "after {n} cycles ({} s): nothing left in the client namespace (addresses, routes, rules, XFRM, links, nftables, resolv.conf), no SA at the gateway",
                t.elapsed().as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cycles: {e}\n{}", lab.diagnostics());
            ExitCode::FAILURE
        }
    }
}
