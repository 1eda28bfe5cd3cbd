//! `postern-helper respond PROFILE.toml`: a minimal IKEv1 responder for one peer, for
//! the lab's Postern-to-Postern throughput benchmark (`bench/throughput.sh`), where a
//! strongSwan gateway's kernel-libipsec would be the bottleneck. Not a gateway: one
//! peer, PSK, no XAuth or Mode Config, the userspace datapath only.
//!
//! The profile is written from the responder's side: `gateway` is the peer (the
//! client), `phase2.local_networks` the networks behind us, `phase2.remote_networks`
//! the client's inner address, `network.virtual_ip` our inner address (put on the TUN
//! device; packets for the client's address are routed into it, and what comes out of
//! it is forwarded by this namespace). One line per event; SIGINT/SIGTERM end it, and
//! everything installed is removed as in `up`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use postern_dbus::profile::{Profile, SecretPolicy};
use postern_engine::ike::{self, Ike};
use tokio::net::UdpSocket;

use crate::tunnel::{IKE_PORT, bind_shared, send};
use crate::up::engine_config;
use postern_dbus::failure::exit::{FAILURE as EXIT_FAILURE, USAGE as EXIT_USAGE};
use postern_engine::ike::NAT_T_PORT;

pub fn run(path: &Path) -> ExitCode {
    let profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for line in crate::kernel::cleanup_stale() {
        println!("{line}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(respond(profile)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn bound_to(peer: SocketAddr, port: u16) -> Result<UdpSocket, String> {
    let any: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], port).into()
    } else {
        ([0u16; 8], port).into()
    };
    let s = bind_shared(any).map_err(|e| format!("cannot bind UDP port {port}: {e}"))?;
    let mut to = peer;
    to.set_port(port);
    s.connect(to)
        .await
        .map_err(|e| format!("cannot reach {to}: {e}"))?;
    Ok(s)
}

async fn respond(profile: Profile) -> Result<(), String> {
    let peer: SocketAddr = format!("{}:{IKE_PORT}", profile.gateway)
        .parse()
        .or_else(|_| format!("[{}]:{IKE_PORT}", profile.gateway).parse())
        .map_err(|_| format!("the peer must be an address: {}", profile.gateway))?;
    let socket = bound_to(peer, IKE_PORT).await?;
    let natt = bound_to(peer, NAT_T_PORT).await?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut natt_local = local;
    natt_local.set_port(NAT_T_PORT);
    let config = engine_config(&profile, local.ip()).map_err(|f| f.message)?;
    let rng = crate::rng::os_rng().map_err(|e| format!("no randomness: {e}"))?;
    let mut ike = Ike::respond(config, local, peer, Box::new(rng));
    println!("responding to {peer} on {local}");

    let mut datapath: Option<crate::datapath::Datapath> = None;
    let mut raw: Option<UdpSocket> = None;
    let (rekey_tx, mut rekey_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let mut buf = vec![0u8; 65536];
    let mut buf4500 = vec![0u8; 65536];
    let mut buf_raw = vec![0u8; 65536];
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        while let Some(t) = ike.poll_transmit() {
            if let Err(e) = send(&socket, Some(&natt), &t).await
                && e.kind() != std::io::ErrorKind::ConnectionRefused
            {
                return Err(format!("send to {peer}: {e}"));
            }
        }
        while let Some(ev) = ike.poll_event() {
            match ev {
                ike::Event::Phase1Established(_) => println!("phase1 established"),
                ike::Event::Phase2Established(c) => {
                    if !c.udp_encapsulation && raw.is_none() {
                        raw = Some(
                            crate::tunnel::open_raw_esp(peer.ip())
                                .map_err(|e| format!("raw ESP socket: {e}"))?,
                        );
                    }
                    let sock = if c.udp_encapsulation {
                        Some(&natt)
                    } else {
                        raw.as_ref()
                    };
                    let line = crate::datapath::on_established(
                        &mut datapath,
                        sock,
                        peer.ip(),
                        profile.network.virtual_ip,
                        false,
                        &rekey_tx,
                        &c,
                    )
                    .map_err(|e| format!("datapath: {e}"))?;
                    println!(
                        "phase2 established spi_in={:#010x} spi_out={:#010x}",
                        c.spi_in, c.spi_out
                    );
                    println!("{line}");
                }
                ike::Event::Phase2Deleted {
                    spi_in, spi_out, ..
                } => {
                    println!("phase2 deleted spi_in={spi_in:#010x}");
                    if let Some(dp) = datapath.as_mut() {
                        dp.remove(spi_in, spi_out);
                    }
                }
                ike::Event::Failed(e) => return Err(e.to_string()),
                ike::Event::Phase1Deleted | ike::Event::Closed => {
                    println!("closed by the peer");
                    return Ok(());
                }
                _ => {}
            }
        }
        let deadline = ike
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            r = socket.recv(&mut buf) => {
                if let Ok(n) = r {
                    ike.handle_datagram(Instant::now(), local, peer, &buf[..n]);
                }
            }
            r = natt.readable() => {
                r.map_err(|e| e.to_string())?;
                let mut from = peer;
                from.set_port(NAT_T_PORT);
                match datapath.as_mut() {
                    Some(dp) => {
                        dp.drain_natt(&natt, |d| {
                            ike.handle_datagram(Instant::now(), natt_local, from, d)
                        })
                        .map_err(|e| e.to_string())?;
                        dp.flush_inbound();
                    }
                    None => {
                        if let Ok(n) = natt.try_recv(&mut buf4500)
                            && n > 4
                            && buf4500[..4] == [0, 0, 0, 0]
                        {
                            ike.handle_datagram(Instant::now(), natt_local, from, &buf4500[4..n]);
                        }
                    }
                }
            },
            r = async {
                match raw.as_ref() {
                    Some(s) => s.recv(&mut buf_raw).await,
                    None => std::future::pending().await,
                }
            } => {
                if let (Ok(n), Some(dp)) = (r, datapath.as_mut()) {
                    dp.inbound_raw(&mut buf_raw[..n]);
                }
            }
            Some(spi_in) = rekey_rx.recv() => {
                ike.rekey(Instant::now(), spi_in);
            }
            _ = tokio::time::sleep_until(deadline) => ike.handle_timeout(Instant::now()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    ike.close(Instant::now());
    while let Some(t) = ike.poll_transmit() {
        let _ = send(&socket, Some(&natt), &t).await;
    }
    drop(datapath);
    println!("stopped");
    Ok(())
}
