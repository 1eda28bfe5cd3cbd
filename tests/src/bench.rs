//! Throughput measurements in the lab: iperf3 (TCP) from the client namespace to a
//! host, with the server in the lan namespace. Used by a lab test (no timed assertion)
//! and by the throughput benchmark.

use std::path::Path;
use std::time::Duration;

use crate::lab::{Lab, Role};
use crate::process::{Proc, run};
use crate::{LabError, Result};

/// Runs a one-off iperf3 server in the lan namespace and an iperf3 client for `secs`
/// seconds from the client namespace to `dst`; returns the receiver's Mbit/s.
pub fn iperf3(lab: &Lab, dst: &str, secs: u32) -> Result<f64> {
    iperf3_from(lab, Role::Client, None, dst, secs)
}

/// Like [`iperf3`], with the client in namespace `from`, bound to `bind` when given.
pub fn iperf3_from(lab: &Lab, from: Role, bind: Option<&str>, dst: &str, secs: u32) -> Result<f64> {
    iperf3_dir(lab, from, bind, dst, secs, false)
}

/// Like [`iperf3_from`]; `reverse`: the server sends (iperf3 -R), so the data flows
/// towards `from`.
pub fn iperf3_dir(
    lab: &Lab,
    from: Role,
    bind: Option<&str>,
    dst: &str,
    secs: u32,
    reverse: bool,
) -> Result<f64> {
    let mut server = lab.command(Role::Lan, Path::new("iperf3"));
    server.args(["-s", "-1", "-p", "5201"]);
    let server = Proc::spawn(
        "iperf3-server",
        server,
        Some(&lab.dir.join("iperf3-server.out")),
    )?;
    lab.adopt(&server);
    // Wait for the server to listen (bounded).
    let mut last = String::new();
    for _ in 0..50 {
        let ss = lab.exec(Role::Lan, &["ss", "-ltn"])?;
        if ss.contains(":5201") {
            break;
        }
        last = ss;
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs_s = secs.to_string();
    let limit = (secs + 20).to_string();
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns(from)]).args([
        "timeout",
        &limit,
        "iperf3",
        "-c",
        dst,
        "-p",
        "5201",
        "-t",
        &secs_s,
        "-f",
        "m",
        "--connect-timeout",
        "3000",
    ]);
    if let Some(b) = bind {
        cmd.args(["-B", b]);
    }
    if reverse {
        cmd.arg("-R");
    }
    let out = run(&mut cmd)
        .map_err(|e| LabError(format!("iperf3 to {dst} failed: {e} (server: {last})")))?;
    server.stop(Duration::from_secs(2));
    if std::env::var_os("POSTERN_BENCH_IPERF").is_some() {
        eprintln!("{out}");
    }
    receiver_mbits(&out)
        .ok_or_else(|| LabError(format!("no receiver line in iperf3 output:\n{out}")))
}

/// The Mbit/s of iperf3's `... receiver` summary line (`-f m`).
pub fn receiver_mbits(out: &str) -> Option<f64> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("receiver"))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "Mbits/sec")?;
    w.get(i.checked_sub(1)?)?.parse().ok()
}

/// The other end of [`checked_transfer`]: `python3 -c TRANSFER recv|send PORT BYTES
/// [HOST]` listens (no HOST) or connects (HOST), then receives until EOF or sends
/// BYTES seeded pseudo-random bytes; prints the byte count and SHA-256.
const TRANSFER: &str = r#"
import hashlib, random, socket, sys, time
mode, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 4:
    for _ in range(50):
        try:
            c = socket.create_connection((sys.argv[4], port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("cannot connect")
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    s.settimeout(30)
    c, _ = s.accept()
c.settimeout(30)
h, n = hashlib.sha256(), 0
if mode == "recv":
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
else:
    data = random.Random(size).randbytes(size)
    c.sendall(data)
    h.update(data)
    n = len(data)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
print(n, h.hexdigest(), flush=True)
"#;

/// Sends `bytes` pseudo-random bytes over one TCP connection from namespace `from` to
/// `dst` (a server in the lan namespace), or the other way when `download`, and checks
/// that what arrived has the SHA-256 of what was sent: iperf3 does not look at its
/// data, this does (segmentation, coalescing and ESP all on the way).
pub fn checked_transfer(
    lab: &Lab,
    from: Role,
    dst: &str,
    bytes: usize,
    download: bool,
) -> Result<()> {
    let size = bytes.to_string();
    let (server_mode, client_mode) = if download {
        ("send", "recv")
    } else {
        ("recv", "send")
    };
    let mut server = lab.command(Role::Lan, Path::new("timeout"));
    server.args(["60", "python3", "-c", TRANSFER, server_mode, "5301", &size]);
    let server = Proc::spawn("transfer-server", server, None)?;
    lab.adopt(&server);
    let mut client = std::process::Command::new("ip");
    client.args(["netns", "exec", &lab.ns(from)]).args([
        "timeout",
        "60",
        "python3",
        "-c",
        TRANSFER,
        client_mode,
        "5301",
        &size,
        dst,
    ]);
    let got = run(&mut client)?;
    let _ = server.exit_status(Duration::from_secs(30));
    let sent = server
        .lines_of(crate::process::Stream::Stdout)
        .pop()
        .unwrap_or_else(|| server.tail(5));
    let (a, b) = (got.trim(), sent.trim());
    if a.is_empty() || a != b || !a.starts_with(&format!("{bytes} ")) {
        crate::lab_bail!(
            "the transfer ({} bytes {}) arrived changed: client {a:?}, server {b:?}",
            bytes,
            if download { "down" } else { "up" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_receiver_line() {
        let out = "[ ID] Interval           Transfer     Bitrate         Retr\n\
                   [  5]   0.00-3.00   sec   120 MBytes   335 Mbits/sec   12             sender\n\
                   [  5]   0.00-3.04   sec   118 MBytes   326.5 Mbits/sec                  receiver\n";
        assert_eq!(super::receiver_mbits(out), Some(326.5));
    }
}
