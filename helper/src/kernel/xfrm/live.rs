use super::*;

/// As root (CI): runs [`inner_policy_installs_stays_and_goes`] and
/// [`inner_acquire_reaches_the_listener`] in a scratch network namespace
/// (`unshare -n`), since the host kernel has XFRM policies (and acquires) even without
/// ESP.
#[test]
fn policies_install_and_go_for_real() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().nth(1) == Some("0"))
        });
    if uid != Some(true) {
        eprintln!("not root: the live XFRM policy test runs in CI (root) only");
        return;
    }
    let me = std::env::current_exe().unwrap();
    // Each in a namespace of its own.
    for inner in [
        "kernel::xfrm::live::inner_policy_installs_stays_and_goes",
        "kernel::xfrm::live::inner_acquire_reaches_the_listener",
        "kernel::xfrm::live::inner_policy_template_migrates",
    ] {
        let out = std::process::Command::new("unshare")
            .arg("-n")
            .arg(&me)
            .args(["--ignored", "--exact", inner])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{inner}:\n{text}\n{err}"
        );
    }
}

/// In a scratch network namespace: a policy installs, stays, and goes, through the
/// async [`Xfrm`] on a current-thread runtime (the tunnel driver's); deleting or
/// reading an SA that does not exist is "already gone", not an error.
#[test]
#[ignore = "run by policies_install_and_go_for_real in a scratch namespace"]
fn inner_policy_installs_stays_and_goes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let x = Xfrm::open().unwrap();
    let p = PolicySpec {
        src: parse_ts("10.200.0.5/32").unwrap(),
        dst: parse_ts("10.77.0.0/24").unwrap(),
        dir: Dir::Out,
        tmpl_src: "192.0.2.2".parse().unwrap(),
        tmpl_dst: "192.0.2.1".parse().unwrap(),
        reqid: REQID_BASE + 9,
        mode: MODE_TUNNEL,
    };
    rt.block_on(x.add_policy(&p)).unwrap();
    // Twice is refused by the kernel (NLM_F_EXCL), with its errno.
    match rt.block_on(x.add_policy(&p)) {
        Err(KernelError::Errno { errno, .. }) => assert_eq!(errno, 17, "EEXIST"),
        other => panic!("second add: {other:?}"),
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let shown = std::process::Command::new("ip")
        .args(["xfrm", "policy"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("10.200.0.5/32"), "{shown}");
    assert!(shown.contains("reqid 1884749833"), "{shown}");
    assert!(shown.contains("priority 1500"), "{shown}");
    x.blocking().del_policy(p.src, p.dst, p.dir).unwrap();
    let shown = std::process::Command::new("ip")
        .args(["xfrm", "policy"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).trim().is_empty());
    // Gone already: still Ok.
    x.blocking().del_policy(p.src, p.dst, p.dir).unwrap();
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    rt.block_on(x.del_sa(gw, 0x7057_0001)).unwrap();
    assert_eq!(rt.block_on(x.sa_traffic(vec![(gw, 0x7057_0001)])), [None]);
    x.blocking().del_sa(gw, 0x7057_0001).unwrap();
}

/// In a scratch network namespace: traffic matching an outbound policy with no SA
/// makes the kernel send an acquire, and the listener hands over the policy's reqid.
#[test]
#[ignore = "run by policies_install_and_go_for_real in a scratch namespace"]
fn inner_acquire_reaches_the_listener() {
    // Not over loopback: the kernel never applies XFRM policies there.
    for args in [
        &["link", "add", "pv0", "type", "veth", "peer", "name", "pv1"][..],
        &["addr", "add", "198.51.100.1/24", "dev", "pv0"],
        &["link", "set", "pv0", "up"],
        &["link", "set", "pv1", "up"],
    ] {
        let ok = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "ip {args:?}");
    }
    let x = Xfrm::open().unwrap();
    let p = PolicySpec {
        src: parse_ts("198.51.100.1/32").unwrap(),
        dst: parse_ts("198.51.100.2/32").unwrap(),
        dir: Dir::Out,
        tmpl_src: "198.51.100.1".parse().unwrap(),
        tmpl_dst: "198.51.100.2".parse().unwrap(),
        reqid: REQID_BASE + 10,
        mode: MODE_TUNNEL,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(x.add_policy(&p)).unwrap();
    let got = rt.block_on(async {
        let mut l = EventListener::open().unwrap();
        let s = std::net::UdpSocket::bind("198.51.100.1:0").unwrap();
        // Dropped (no SA yet): the send may fail; the acquire is what counts.
        let _ = s.send_to(b"hello", "198.51.100.2:9");
        tokio::time::timeout(std::time::Duration::from_secs(5), l.next()).await
    });
    let events = got.expect("no acquire within 5 s").unwrap();
    assert!(
        events.contains(&XfrmEvent::Acquire {
            reqid: REQID_BASE + 10,
            remote: parse_ts("198.51.100.2/32"),
        }),
        "{events:?}"
    );
    x.blocking().del_policy(p.src, p.dst, p.dir).unwrap();
}

/// In a scratch network namespace: `XFRM_MSG_MIGRATE` (MOBIKE with the kernel
/// datapath) moves a policy's template to the new outer addresses; a policy that is
/// not there is refused with ENOENT. (This kernel has no ESP, so no SA moves here:
/// tests/tests/kernel_vm.rs moves real SAs in the VM.) A kernel without
/// CONFIG_XFRM_MIGRATE must say ENOPROTOOPT, which the datapath turns into a new
/// negotiation.
#[test]
#[ignore = "run by policies_install_and_go_for_real in a scratch namespace"]
fn inner_policy_template_migrates() {
    use super::migrate::{MIGRATE_UNSUPPORTED, MigrateSpec};
    let x = XfrmSocket::open().unwrap();
    let p = PolicySpec {
        src: parse_ts("10.200.0.5/32").unwrap(),
        dst: parse_ts("10.77.0.0/24").unwrap(),
        dir: Dir::Out,
        tmpl_src: "192.0.2.2".parse().unwrap(),
        tmpl_dst: "192.0.2.1".parse().unwrap(),
        reqid: REQID_BASE + 11,
        mode: MODE_TUNNEL,
    };
    x.run(&x.add_policy_request(&p)).unwrap();
    let m = MigrateSpec {
        src: p.src,
        dst: p.dst,
        dir: Dir::Out,
        old_src: p.tmpl_src,
        old_dst: p.tmpl_dst,
        new_src: "192.0.2.3".parse().unwrap(),
        new_dst: p.tmpl_dst,
        reqid: p.reqid,
        mode: MODE_TUNNEL,
        encap: None,
    };
    match x.migrate(&m) {
        Ok(()) => {
            let shown = std::process::Command::new("ip")
                .args(["xfrm", "policy"])
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&shown.stdout);
            assert!(
                shown.contains("tmpl src 192.0.2.3 dst 192.0.2.1"),
                "{shown}"
            );
            assert!(!shown.contains("192.0.2.2"), "{shown}");
            // The same selector in another direction: no such policy.
            let none = MigrateSpec { dir: Dir::In, ..m };
            match x.migrate(&none) {
                Err(KernelError::Errno { errno, .. }) => assert_eq!(errno, ENOENT),
                other => panic!("migrating a missing policy: {other:?}"),
            }
        }
        Err(KernelError::Errno { errno, .. }) => {
            assert_eq!(errno, MIGRATE_UNSUPPORTED, "refused otherwise");
            eprintln!("this kernel has no CONFIG_XFRM_MIGRATE (ENOPROTOOPT)");
        }
        Err(e) => panic!("{e}"),
    }
    x.del_policy(p.src, p.dst, p.dir).unwrap();
}
