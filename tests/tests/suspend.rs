//! Suspend and resume against a real strongSwan gateway, with a fake logind
//! (`fake-logind`) on a private system bus next to `postern-helper up`:
//!
//! - `keep` (the default): the gateway is restarted while the client "sleeps" (it
//!   forgot the tunnel); on `PrepareForSleep(false)` the helper asks at once
//!   (R-U-THERE), finds it gone within seconds and negotiates again. The time from the
//!   resume signal to traffic through the tunnel is printed (README figure).
//! - `disconnect`: the helper holds a delay inhibitor, sends its DELETEs on
//!   `PrepareForSleep(true)` and only then releases it; the gateway has no SA left.
//!
//! Root only.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_lab::config::LAN_HOST;
use postern_lab::postern::{Client, exit, helper_path};
use postern_lab::process::{Proc, Stream};
use postern_lab::sysbus::{bare_bus, wait_name};
use postern_lab::{Lab, Result, Role, Tunnel, lab_ensure, run_scenario};

/// The fake logind on a bare private bus, and the FIFO that commands it.
struct Logind {
    proc: Arc<Proc>,
    commands: std::fs::File,
    addr: String,
}

impl Logind {
    fn start(lab: &Lab) -> Result<Logind> {
        let addr = bare_bus(lab)?;
        let fifo = lab.dir.join("logind.fifo");
        let st = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        lab_ensure!(st.success(), "mkfifo failed");
        let bin = helper_path()?.with_file_name("fake-logind");
        let mut c = std::process::Command::new(bin);
        c.arg(&fifo).env("DBUS_SYSTEM_BUS_ADDRESS", &addr);
        let proc = Proc::spawn("fake-logind", c, Some(&lab.dir.join("logind.out")))?;
        lab.adopt(&proc);
        wait_name(&addr, "org.freedesktop.login1", &proc)?;
        // Blocks until fake-logind opened its end (it did, or does at once).
        let commands = OpenOptions::new().write(true).open(&fifo)?;
        Ok(Logind {
            proc,
            commands,
            addr,
        })
    }

    fn send(&mut self, cmd: &str) -> Result<()> {
        self.commands.write_all(format!("{cmd}\n").as_bytes())?;
        self.commands.flush()?;
        Ok(())
    }

    fn wait_line(&self, pattern: &str) -> Result<()> {
        self.proc
            .wait_line(Some(Stream::Stdout), pattern, Duration::from_secs(10))
            .map(|_| ())
    }
}

fn start_client(lab: &Lab, t: &Tunnel, logind: &Logind, extra: &str) -> Result<Client> {
    let profile = lab.write_profile(t)?;
    let mut text = std::fs::read_to_string(&profile)?;
    text = text.replace("[network]\n", &format!("[network]\n{extra}"));
    std::fs::write(&profile, text)?;
    let c = Client::start_with_env(
        lab,
        &helper_path()?,
        &profile,
        &[("DBUS_SYSTEM_BUS_ADDRESS", logind.addr.as_str())],
    )?;
    lab.adopt(&c.proc);
    Ok(c)
}

/// Answers of a background ping, as moments.
fn replies(ping: &Proc) -> Vec<Instant> {
    ping.lines()
        .into_iter()
        .filter(|l| l.stream == Stream::Stdout && l.text.contains("bytes from"))
        .map(|l| ping.started() + l.at)
        .collect()
}

#[test]
fn gateway_forgot_the_tunnel_during_sleep() {
    // DPD alone would take 30 s + 150 s here: the resume check must find it.
    let t = Tunnel::main_psk("susp-keep")
        .xauth("alice", "alice-pass-7", "alice-pass-7")
        .mode_config(true)
        .dpd(30, 150);
    run_scenario("susp-keep", |lab: &Lab| {
        let mut logind = Logind::start(lab)?;
        let gw = lab.start_gateway(&t)?;
        let client = start_client(lab, &t, &logind, "")?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        lab.ping(Role::Client, None, LAN_HOST)?;

        logind.send("sleep")?;
        logind.wait_line("sleeping")?;
        client.wait_line("suspend: the tunnel is kept", Duration::from_secs(5))?;
        // While the client "sleeps", the gateway restarts and forgets the tunnel.
        gw.kill()?;
        let gw2 = lab.start_gateway(&t)?;
        lab_ensure!(
            gw2.list_sas()?.is_empty(),
            "the restarted gateway has SAs:\n{}",
            gw2.list_sas_text()
        );
        let mut cmd = lab.command(Role::Client, Path::new("ping"));
        cmd.args(["-n", "-i", "0.05", "-W", "1", "-w", "40", LAN_HOST]);
        let ping = Proc::spawn("ping", cmd, Some(&lab.dir.join("ping.out")))?;
        lab.adopt(&ping);

        let woke = Instant::now();
        logind.send("wake")?;
        client.wait_line("resumed: checking the gateway", Duration::from_secs(5))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Some(t) = replies(&ping).into_iter().find(|t| *t > woke) {
                break t;
            }
            lab_ensure!(
                Instant::now() < deadline,
                "no traffic within 30 s of the resume: {:?}",
                client.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = first - woke;
        println!(
            "resume figure: PrepareForSleep(false) -> ping answered through the tunnel again in {} ms (gateway restarted during the sleep; R-U-THERE unanswered for 3 s, then a new phase 1 with XAuth + Mode Config)",
            took.as_millis()
        );
        let out = client.stdout();
        lab_ensure!(
            out.iter()
                .any(|l| l.starts_with("connection lost: dead peer")),
            "the forgotten tunnel was not found by the resume check: {out:?}"
        );
        lab_ensure!(
            took < Duration::from_secs(15),
            "traffic only {took:?} after the resume (DPD's own 180 s not beaten?): {out:?}"
        );
        gw2.wait_established(Duration::from_secs(10))?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

#[test]
fn a_live_gateway_answers_the_resume_check() {
    let t = Tunnel::main_psk("susp-live").dpd(30, 150);
    run_scenario("susp-live", |lab: &Lab| {
        let mut logind = Logind::start(lab)?;
        let gw = lab.start_gateway(&t)?;
        let client = start_client(lab, &t, &logind, "")?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        logind.send("sleep")?;
        logind.wait_line("sleeping")?;
        logind.send("wake")?;
        client.wait_line("resumed: checking the gateway", Duration::from_secs(5))?;
        client.wait_line(
            "resumed: the gateway answered; the tunnel is up",
            Duration::from_secs(3),
        )?;
        let out = client.stdout();
        lab_ensure!(
            out.iter().filter(|l| l.starts_with("connected")).count() == 1,
            "negotiated again though the gateway lived: {out:?}"
        );
        lab.ping(Role::Client, None, LAN_HOST)?;
        client.sigterm()?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after SIGTERM");
        Ok(())
    });
}

#[test]
fn on_suspend_disconnect_sends_deletes_before_the_sleep() {
    let t = Tunnel::main_psk("susp-disc");
    run_scenario("susp-disc", |lab: &Lab| {
        let mut logind = Logind::start(lab)?;
        let gw = lab.start_gateway(&t)?;
        let client = start_client(lab, &t, &logind, "on_suspend = \"disconnect\"\n")?;
        client.wait_connected()?;
        gw.wait_established(Duration::from_secs(10))?;
        logind.wait_line("inhibit sleep Postern delay")?;
        logind.send("sleep")?;
        client.wait_line("closing (the machine suspends)", Duration::from_secs(5))?;
        // logind was held until the DELETEs were out, then let go.
        logind.wait_line("released after")?;
        let code = client.exit_code(Duration::from_secs(15))?;
        lab_ensure!(code == exit::OK, "exit code {code} after the suspend");
        gw.wait_no_sas(Duration::from_secs(5))?;
        Ok(())
    });
}
