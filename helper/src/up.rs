//! `postern-helper up PROFILE.toml`: one tunnel in the foreground.
//!
//! Drives the sans-IO engine with a UDP socket, the tokio clock, the OS RNG and
//! the signals. Prints one line per state change on stdout; on failure one
//! `error: ...` line on stderr and an exit code that says what kind of failure.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use postern_dbus::profile::{self, Profile, SecretPolicy};
use postern_engine::ike::{
    self, ChildConfig, Config, Credentials, CredentialsRequest, DpdConfig, Encapsulation, Event,
    Identity, Ike, ModeConfigInfo, ModeConfigMode, NAT_T_PORT, NatTraversal, TrafficSelector,
    XAuthConfig, XAuthField,
};
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;
pub const EXIT_NO_PROPOSAL: u8 = 4;
pub const EXIT_NOT_RESPONDING: u8 = 5;

const IKE_PORT: u16 = 500;
/// After a DELETE is queued on shutdown, give the socket this long to send it.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

pub fn run(path: &Path) -> ExitCode {
    let profile = match Profile::load(path, SecretPolicy::AllowIfPrivate) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // --- datapath (issue 3): undo what a killed helper left in this namespace ---
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
    match rt.block_on(tunnel(profile)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, message, .. }) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

struct Failure {
    code: u8,
    message: String,
    /// The tunnel had been up and the gateway went away (dead peer, deleted):
    /// worth reconnecting.
    lost: bool,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            lost: false,
        }
    }
}

impl From<ike::Error> for Failure {
    fn from(e: ike::Error) -> Self {
        let code = match e {
            ike::Error::AuthenticationFailed(_)
            | ike::Error::XAuthFailed(_)
            | ike::Error::Certificate(_) => EXIT_AUTH,
            ike::Error::NoProposalChosen(_) => EXIT_NO_PROPOSAL,
            ike::Error::NotResponding(_) | ike::Error::DeadPeer(_) | ike::Error::Phase1Expired => {
                EXIT_NOT_RESPONDING
            }
            _ => EXIT_FAILURE,
        };
        Failure::new(code, e.to_string())
    }
}

async fn resolve(gateway: &str) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = gateway.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, IKE_PORT));
    }
    let mut addrs = tokio::net::lookup_host((gateway, IKE_PORT))
        .await
        .map_err(|e| {
            Failure::new(
                EXIT_FAILURE,
                format!("cannot resolve gateway {gateway}: {e}"),
            )
        })?;
    addrs
        .next()
        .ok_or_else(|| Failure::new(EXIT_FAILURE, format!("gateway {gateway} has no address")))
}

/// Runs the tunnel; when the gateway is lost after the tunnel was up, reconnects
/// with growing waits (1 s doubling to 60 s) unless the profile says
/// `reconnect = false`. SIGINT/SIGTERM end it cleanly at any point.
async fn tunnel(profile: Profile) -> Result<(), Failure> {
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    let mut wait = Duration::from_secs(1);
    let mut ever_connected = false;
    loop {
        let mut connected = false;
        let r = connect_once(&profile, &mut sigint, &mut sigterm, &mut connected).await;
        ever_connected |= connected;
        match r {
            Err(f) if f.lost && profile.network.reconnect => {
                if connected {
                    wait = Duration::from_secs(1);
                }
                println!(
                    "connection lost: {}; reconnecting in {} s",
                    f.message,
                    wait.as_secs()
                );
            }
            // A reconnect attempt that fails the way a dead gateway does: keep trying.
            Err(f)
                if ever_connected && profile.network.reconnect && f.code == EXIT_NOT_RESPONDING =>
            {
                println!(
                    "reconnect failed: {}; next try in {} s",
                    f.message,
                    wait.as_secs()
                );
            }
            other => return other,
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sigint.recv() => { println!("disconnected"); return Ok(()); }
            _ = sigterm.recv() => { println!("disconnected"); return Ok(()); }
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// One connection attempt, until the user closes it or it fails.
async fn connect_once(
    profile: &Profile,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
    connected: &mut bool,
) -> Result<(), Failure> {
    let r = connect_inner(profile, sigint, sigterm, connected).await;
    match r {
        Err(mut f) if *connected => {
            f.lost = f.lost || f.code == EXIT_NOT_RESPONDING;
            Err(f)
        }
        other => other,
    }
}

async fn connect_inner(
    profile: &Profile,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
    connected: &mut bool,
) -> Result<(), Failure> {
    let remote = resolve(&profile.gateway).await?;
    let bind: SocketAddr = match remote {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], IKE_PORT)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], IKE_PORT)),
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| {
        Failure::new(
            EXIT_FAILURE,
            format!(
                "cannot bind UDP port {IKE_PORT}: {e} (run as root; is another IKE daemon running?)"
            ),
        )
    })?;
    socket.connect(remote).await.map_err(|e| {
        Failure::new(
            EXIT_NOT_RESPONDING,
            format!("gateway {remote} unreachable: {e}"),
        )
    })?;
    let local = socket
        .local_addr()
        .map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    // The NAT-T socket: IKE floats here when a NAT is found (RFC 3947), with the
    // 4-byte non-ESP marker in front of each IKE message.
    let natt_socket = if matches!(profile.network.nat_traversal, profile::NatTraversal::Off) {
        None
    } else {
        let mut b = bind;
        b.set_port(NAT_T_PORT);
        let s = UdpSocket::bind(b).await.map_err(|e| {
            Failure::new(
                EXIT_FAILURE,
                format!("cannot bind UDP port {NAT_T_PORT}: {e} (is another IKE daemon running?)"),
            )
        })?;
        let mut r = remote;
        r.set_port(NAT_T_PORT);
        s.connect(r).await.map_err(|e| {
            Failure::new(EXIT_NOT_RESPONDING, format!("gateway {r} unreachable: {e}"))
        })?;
        Some(s)
    };
    let mut natt_local = local;
    natt_local.set_port(NAT_T_PORT);

    let config = engine_config(&profile, local.ip())?;
    println!(
        "connecting {} to {remote} from {} ({} mode)",
        profile.name,
        local.ip(),
        config.mode.name()
    );
    let start = Instant::now();
    let rng = crate::rng::os_rng()
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("no randomness: {e}")))?;
    let mut ike = Ike::initiate(config, local, remote, start, Box::new(rng))?;

    let mut expected_children = profile_children(&profile, local.ip()).len();
    let mut up_children = 0usize;
    let mut prompt: Option<tokio::task::JoinHandle<Result<Credentials, String>>> = None;
    let mut buf = vec![0u8; 65536];
    let mut buf4500 = vec![0u8; 65536];
    // --- datapath (issue 3): created with the first SA; dropping it tears it down ---
    let mut datapath: Option<crate::datapath::Datapath> = None;
    loop {
        // Outputs, in the engine's documented order.
        while let Some(t) = ike.poll_transmit() {
            if let Err(e) = send(&socket, natt_socket.as_ref(), &t).await {
                // ICMP unreachable comes back as ECONNREFUSED on a connected socket:
                // keep retransmitting; the engine gives up in bounded time.
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    return Err(Failure::new(EXIT_FAILURE, format!("send to {remote}: {e}")));
                }
            }
        }
        while let Some(ev) = ike.poll_event() {
            match ev {
                Event::Phase1Established(i) => println!(
                    "phase1 established {} ike={} lifetime={}s local_id={} peer_id={} nat-t={}",
                    i.mode.name(),
                    i.proposal,
                    i.lifetime.as_secs(),
                    i.local_id,
                    i.peer_id,
                    match (i.nat_t, i.nat.local_behind_nat, i.nat.remote_behind_nat) {
                        (None, _, _) => "no",
                        (Some(_), true, true) => "yes (both sides behind NAT)",
                        (Some(_), true, false) => "yes (we are behind NAT)",
                        (Some(_), false, true) => "yes (gateway behind NAT)",
                        (Some(_), false, false) => "available (no NAT)",
                    }
                ),
                Event::Phase2Established(c) => {
                    up_children += 1;
                    println!(
                        "phase2 established spi_in=0x{:08x} spi_out=0x{:08x} esp={} mode={}{} local_ts={} remote_ts={} lifetime={}s",
                        c.spi_in,
                        c.spi_out,
                        c.proposal,
                        match c.encapsulation {
                            Encapsulation::Tunnel => "tunnel",
                            Encapsulation::Transport => "transport",
                        },
                        if c.udp_encapsulation { "-in-udp" } else { "" },
                        c.local_ts
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| local.ip().to_string()),
                        c.remote_ts
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| remote.ip().to_string()),
                        c.lifetime.as_secs()
                    );
                    // --- datapath (issue 3): install the SA pair ---
                    match crate::datapath::on_established(
                        &mut datapath,
                        natt_socket.as_ref(),
                        profile.network.virtual_ip,
                        profile.phase2.remote_networks.is_empty(),
                        &c,
                    ) {
                        Ok(line) => println!("{line}"),
                        Err(e) => {
                            ike.close(Instant::now());
                            flush(&socket, natt_socket.as_ref(), &mut ike).await;
                            return Err(Failure::new(EXIT_FAILURE, format!("datapath: {e}")));
                        }
                    }
                    if up_children == expected_children {
                        println!("connected in {} ms", start.elapsed().as_millis());
                        *connected = true;
                    }
                }
                Event::CredentialsRequired(req) => {
                    println!("xauth: the gateway asks for {}", describe_fields(&req));
                    let username = profile
                        .xauth
                        .as_ref()
                        .map(|x| x.username.clone())
                        .unwrap_or_default();
                    prompt = Some(tokio::task::spawn_blocking(move || {
                        ask_terminal(&req, &username)
                    }));
                }
                Event::XAuthSucceeded => println!("xauth ok"),
                Event::Phase1Renewed(i) => println!(
                    "phase1 renewed ike={} lifetime={}s (ESP SAs unchanged)",
                    i.proposal,
                    i.lifetime.as_secs()
                ),
                Event::Phase1RenewalFailed(e) => {
                    println!("phase1 renewal failed: {e} (will retry)")
                }
                Event::ModeConfig(info) => {
                    println!("{}", describe_mode_config(&info));
                    if let Some(b) = &info.banner {
                        for line in b.lines() {
                            println!("banner: {line}");
                        }
                    }
                    expected_children = if !profile.phase2.remote_networks.is_empty() {
                        profile.phase2.remote_networks.len()
                    } else {
                        info.split_include
                            .iter()
                            .filter(|t| t.addr.is_ipv4())
                            .count()
                            .max(1)
                    };
                }
                Event::Phase2Failed(e) => {
                    println!("phase2 failed: {e}");
                    if ike.children().is_empty() {
                        // Nothing usable is left: close phase 1 too, and fail.
                        ike.close(Instant::now());
                        flush(&socket, natt_socket.as_ref(), &mut ike).await;
                        return Err(e.into());
                    }
                }
                Event::Phase2Deleted {
                    spi_in,
                    spi_out,
                    by_peer,
                } => {
                    println!(
                        "phase2 deleted spi_in=0x{spi_in:08x} spi_out=0x{spi_out:08x}{}",
                        if by_peer { " by the gateway" } else { "" }
                    );
                    // --- datapath (issue 3) ---
                    if let Some(dp) = datapath.as_mut() {
                        dp.remove(spi_in, spi_out);
                    }
                }
                Event::Phase1Deleted => {
                    let mut f = Failure::new(
                        EXIT_FAILURE,
                        "the gateway closed the connection (deleted the IKE SA)",
                    );
                    f.lost = true;
                    return Err(f);
                }
                Event::Failed(e) => return Err(e.into()),
                Event::Closed => {
                    println!("disconnected");
                    return Ok(());
                }
            }
        }
        let deadline = ike.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => ike.handle_datagram(Instant::now(), local, remote, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(Failure::new(EXIT_FAILURE, format!("receive: {e}"))),
            },
            r = recv_natt(natt_socket.as_ref(), &mut buf4500) => match r {
                // Non-ESP marker: an IKE message. Anything else is ESP or a NAT keepalive.
                Ok(n) if n > 4 && buf4500[..4] == [0, 0, 0, 0] => {
                    let mut from = remote;
                    from.set_port(NAT_T_PORT);
                    ike.handle_datagram(Instant::now(), natt_local, from, &buf4500[4..n]);
                }
                // --- datapath (issue 3): ESP and NAT keepalives ---
                Ok(n) => if let Some(dp) = datapath.as_mut() { dp.inbound(&mut buf4500[..n]) },
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(Failure::new(EXIT_FAILURE, format!("receive on port {NAT_T_PORT}: {e}"))),
            },
            _ = sleep_until(deadline) => ike.handle_timeout(Instant::now()),
            answer = wait_prompt(&mut prompt) => {
                prompt = None;
                match answer {
                    Ok(creds) => ike.submit_credentials(Instant::now(), creds)?,
                    Err(msg) => {
                        ike.close(Instant::now());
                        flush(&socket, natt_socket.as_ref(), &mut ike).await;
                        return Err(Failure::new(EXIT_AUTH, msg));
                    }
                }
            }
            _ = sigint.recv() => { println!("closing (SIGINT)"); ike.close(Instant::now()); flush(&socket, natt_socket.as_ref(), &mut ike).await; }
            _ = sigterm.recv() => { println!("closing (SIGTERM)"); ike.close(Instant::now()); flush(&socket, natt_socket.as_ref(), &mut ike).await; }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn wait_prompt(
    p: &mut Option<tokio::task::JoinHandle<Result<Credentials, String>>>,
) -> Result<Credentials, String> {
    match p {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => Err(format!("XAuth prompt failed: {e}")),
        },
        None => std::future::pending().await,
    }
}

fn field_name(f: XAuthField) -> &'static str {
    match f {
        XAuthField::UserName => "user name",
        XAuthField::Password => "password",
        XAuthField::Passcode => "passcode",
        XAuthField::NextPin => "next PIN",
        XAuthField::Answer => "answer",
    }
}

fn describe_fields(req: &CredentialsRequest) -> String {
    let names: Vec<&str> = req.fields.iter().map(|f| field_name(*f)).collect();
    match &req.message {
        Some(m) => format!("{} ({m})", names.join(", ")),
        None => names.join(", "),
    }
}

/// Asks on the controlling terminal; secrets without echo.
fn ask_terminal(req: &CredentialsRequest, username: &str) -> Result<Credentials, String> {
    let no_tty = |e: std::io::Error| {
        format!(
            "XAuth needs an answer and there is no terminal to ask on ({e}): put `password` under [xauth] in a 0600 profile"
        )
    };
    let mut values = Vec::new();
    for f in &req.fields {
        let v = match f {
            XAuthField::UserName if !username.is_empty() => username.to_string(),
            XAuthField::UserName => {
                use std::io::Write;
                print!("XAuth user name: ");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(no_tty)?;
                line.trim().to_string()
            }
            other => rpassword::prompt_password(format!("XAuth {}: ", field_name(*other)))
                .map_err(no_tty)?,
        };
        values.push((*f, Zeroizing::new(v)));
    }
    Ok(Credentials { values })
}

fn describe_mode_config(info: &ModeConfigInfo) -> String {
    let mut s = String::from("mode-config");
    match info.address {
        Some(a) => s.push_str(&format!(" {a}")),
        None => s.push_str(" (no address)"),
    }
    let join = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    s.push_str(&format!(
        " dns {}",
        join(info.dns.iter().map(|d| d.to_string()).collect())
    ));
    s.push_str(&format!(
        " split {}",
        join(info.split_include.iter().map(|t| t.to_string()).collect())
    ));
    if !info.split_exclude.is_empty() {
        s.push_str(&format!(
            " exclude {}",
            join(info.split_exclude.iter().map(|t| t.to_string()).collect())
        ));
    }
    if let Some(d) = &info.default_domain {
        s.push_str(&format!(" domain {d}"));
    }
    if !info.split_dns.is_empty() {
        s.push_str(&format!(" split-dns {}", info.split_dns.join(",")));
    }
    s
}

/// Sends one datagram: on port 500, or on 4500 behind the non-ESP marker.
async fn send(
    socket: &UdpSocket,
    natt: Option<&UdpSocket>,
    t: &ike::Transmit,
) -> std::io::Result<()> {
    match (t.nat_t, natt) {
        (true, Some(s)) => {
            let mut d = Vec::with_capacity(t.data.len() + 4);
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&t.data);
            s.send(&d).await.map(drop)
        }
        _ => socket.send(&t.data).await.map(drop),
    }
}

async fn recv_natt(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match s {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends whatever the engine queued (the DELETEs) before we go.
async fn flush(socket: &UdpSocket, natt: Option<&UdpSocket>, ike: &mut Ike) {
    let mut pending = Vec::new();
    while let Some(t) = ike.poll_transmit() {
        pending.push(t);
    }
    let _ = tokio::time::timeout(FLUSH_GRACE, async {
        for t in pending {
            let _ = send(socket, natt, &t).await;
        }
    })
    .await;
}

fn identity(id: &profile::Identity) -> Identity {
    match id {
        profile::Identity::Address(a) => Identity::address(*a),
        profile::Identity::Fqdn(s) => Identity::fqdn(s),
        profile::Identity::UserFqdn(s) => Identity::user_fqdn(s),
        profile::Identity::KeyId(b) => Identity::key_id(b),
        // Checked to parse in engine_config before this is called.
        profile::Identity::Dn(s) => Identity {
            kind: postern_engine::codec::IdType::DER_ASN1_DN,
            data: postern_engine::cert::dn_der(s).unwrap_or_default(),
        },
    }
}

/// Reads one file named by the (root-owned) profile for certificate authentication.
fn read_material(what: &str, path: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("cannot read {what} {path}: {e}")))
}

/// The engine's `Auth` for a certificate (`rsa-sig`) or `hybrid` profile, and the
/// identity our certificate names (our ID when the profile gives none).
fn certificate_auth(p: &Profile) -> Result<(ike::Auth, Option<Identity>), Failure> {
    use postern_engine::cert::{self, PrivateKey};
    use std::sync::Arc;
    let usage = |m: String| Failure::new(EXIT_USAGE, m);
    let ca_path = p
        .auth
        .ca
        .as_deref()
        .ok_or_else(|| usage("auth.ca is needed to check the gateway's certificate".into()))?;
    let trusted = cert::parse_certificates(&read_material("the CA certificate", ca_path)?)
        .map_err(|e| usage(format!("{ca_path}: {e}")))?;
    if matches!(p.auth.method, profile::AuthMethod::Hybrid) {
        let certs = ike::Certs {
            key: None,
            chain: Vec::new(),
            trusted,
            crls: Vec::new(),
        };
        return Ok((ike::Auth::Hybrid(Arc::new(certs)), None));
    }
    let (Some(cert_path), Some(key_path)) = (p.auth.cert.as_deref(), p.auth.key.as_deref()) else {
        return Err(usage("\"rsa-sig\" needs auth.cert and auth.key".into()));
    };
    let chain = cert::parse_certificates(&read_material("the certificate", cert_path)?)
        .map_err(|e| usage(format!("{cert_path}: {e}")))?;
    let key = PrivateKey::parse(&read_material("the private key", key_path)?, None)
        .map_err(|e| usage(format!("{key_path}: {e}")))?;
    let own = chain
        .first()
        .ok_or_else(|| usage(format!("{cert_path}: no certificate")))?;
    key.matches(own)
        .map_err(|e| usage(format!("{key_path}: {e}")))?;
    let id = Identity {
        kind: postern_engine::codec::IdType::DER_ASN1_DN,
        data: own.subject_der(),
    };
    let certs = ike::Certs {
        key: Some(key),
        chain,
        trusted,
        crls: Vec::new(),
    };
    Ok((ike::Auth::Signature(Arc::new(certs)), Some(id)))
}

fn ts(s: &profile::Subnet) -> TrafficSelector {
    TrafficSelector {
        addr: s.addr,
        prefix: s.prefix,
    }
}

fn profile_children(p: &Profile, local: IpAddr) -> Vec<ChildConfig> {
    if matches!(p.phase2.mode, profile::EncapMode::Transport) {
        return vec![ChildConfig {
            local: None,
            remote: None,
        }];
    }
    let locals: Vec<TrafficSelector> = if !p.phase2.local_networks.is_empty() {
        p.phase2.local_networks.iter().map(ts).collect()
    } else if let Some(v) = p.network.virtual_ip {
        vec![TrafficSelector::host(IpAddr::V4(v))]
    } else {
        vec![TrafficSelector::host(local)]
    };
    let remotes: Vec<TrafficSelector> = if p.phase2.remote_networks.is_empty() {
        let any = if local.is_ipv4() {
            "0.0.0.0".parse()
        } else {
            "::".parse()
        };
        vec![TrafficSelector {
            addr: any.unwrap_or(local),
            prefix: 0,
        }]
    } else {
        p.phase2.remote_networks.iter().map(ts).collect()
    };
    let mut out = Vec::new();
    for l in &locals {
        for r in &remotes {
            if l.addr.is_ipv4() == r.addr.is_ipv4() {
                out.push(ChildConfig {
                    local: Some(*l),
                    remote: Some(*r),
                });
            }
        }
    }
    out
}

fn engine_config(p: &Profile, local: IpAddr) -> Result<Config, Failure> {
    let usage = |m: &str| Failure::new(EXIT_USAGE, m.to_string());
    for id in [&p.auth.local_id, &p.auth.remote_id].into_iter().flatten() {
        if let profile::Identity::Dn(s) = id {
            postern_engine::cert::dn_der(s).map_err(|e| usage(&e.to_string()))?;
        }
    }
    let mut c;
    let mut cert_id = None;
    if matches!(p.auth.method, profile::AuthMethod::Psk) {
        let psk = p.auth.psk.as_ref().ok_or_else(|| {
            usage(
                "the profile has no pre-shared key: add `psk` under [auth] (file must be mode 0600)",
            )
        })?;
        c = Config::psk(psk.expose().as_bytes());
    } else {
        let (auth, id) = certificate_auth(p)?;
        c = Config::psk(&[]);
        c.auth = auth;
        cert_id = id;
        // Certificates are checked against the wall time; the engine reads no clock.
        c.wall_clock = Some((Instant::now(), std::time::SystemTime::now()));
    }
    c.mode = match p.exchange_mode {
        profile::ExchangeMode::Main => ike::ExchangeMode::Main,
        profile::ExchangeMode::Aggressive => ike::ExchangeMode::Aggressive,
    };
    c.local_id = p.auth.local_id.as_ref().map(identity).or(cert_id);
    c.remote_id = p.auth.remote_id.as_ref().map(identity);
    c.ike_proposals = p.phase1.proposals.clone();
    c.ike_lifetime = p.phase1.lifetime;
    c.esp_proposals = p
        .phase2
        .proposals
        .iter()
        .map(|e| {
            let mut e = *e;
            if e.group.is_none() {
                e.group = p.phase2.pfs;
            }
            e
        })
        .collect();
    c.esp_lifetime = p.phase2.lifetime;
    c.esp_lifetime_kb = p.phase2.lifetime_kb;
    c.encapsulation = match p.phase2.mode {
        profile::EncapMode::Tunnel => Encapsulation::Tunnel,
        profile::EncapMode::Transport => Encapsulation::Transport,
    };
    c.children = profile_children(p, local);
    c.nat_traversal = match p.network.nat_traversal {
        profile::NatTraversal::Auto => NatTraversal::Auto,
        profile::NatTraversal::Force => NatTraversal::Force,
        profile::NatTraversal::Off => NatTraversal::Off,
    };
    c.retransmit = ike::RetransmitConfig {
        tries: p.network.retransmit.tries,
        base: p.network.retransmit.base,
        cap: p.network.retransmit.cap,
    };
    c.xauth = p.xauth.as_ref().map(|x| XAuthConfig {
        username: x.username.clone(),
        password: x
            .password
            .as_ref()
            .map(|s| Zeroizing::new(s.expose().to_string())),
    });
    c.mode_config = match p.network.mode_config {
        profile::ModeConfig::Off => ModeConfigMode::Off,
        profile::ModeConfig::Pull => ModeConfigMode::Pull,
        profile::ModeConfig::Push => ModeConfigMode::Push,
    };
    c.remote_networks = p.phase2.remote_networks.iter().map(ts).collect();
    c.dpd = p.network.dpd.as_ref().map(|d| DpdConfig {
        interval: d.interval,
        timeout: d.timeout,
    });
    Ok(c)
}
