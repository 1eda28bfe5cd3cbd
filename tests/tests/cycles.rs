//! 20 connect/disconnect cycles over D-Bus, two tunnels at a time (`postern_lab::cycles`;
//! `bench/cycles.sh 200` is the long run): nothing left behind, no stale SA at the
//! gateway, and the helper daemon flat: the same fd count after cycle 5 and cycle 20,
//! RSS grown by less than 2 MiB between them. No timing is asserted. Root only.

use postern_lab::{Lab, lab_ensure, run_scenario};

#[test]
fn cycles_leave_nothing_and_stay_flat() {
    run_scenario("cycles", |lab: &Lab| {
        let r = postern_lab::cycles::run(lab, 20, false)?;
        eprintln!("{}", r.summary());
        let (s5, s20) = (r.samples[4], r.samples[19]);
        lab_ensure!(
            s5.fds == s20.fds,
            "the daemon's fd count went from {} (cycle 5) to {} (cycle 20): {:?}",
            s5.fds,
            s20.fds,
            r.samples.iter().map(|s| s.fds).collect::<Vec<_>>()
        );
        lab_ensure!(
            s20.rss_kib < s5.rss_kib + 2048,
            "the daemon's RSS went from {} KiB (cycle 5) to {} KiB (cycle 20)",
            s5.rss_kib,
            s20.rss_kib
        );
        Ok(())
    });
}
