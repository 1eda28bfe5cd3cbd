//! `bus-oversize`: oversized arguments at the helper (issue 15, point 5), which `busctl`
//! cannot send (one command-line argument is at most 128 KiB). Run as a test user with
//! `DBUS_SYSTEM_BUS_ADDRESS` set; sends, one call each: a 1 MiB profile, a 1 MiB PSK,
//! a 1 MiB secret key name, 1 MiB answers to `SubmitCredentials`, and a 1 MiB object
//! path segment; prints one line per call: `CASE: ERROR-NAME: MESSAGE` (or `CASE: ok`).

use std::collections::HashMap;

const MIB: usize = 1024 * 1024;

fn line(case: &str, r: Result<String, zbus::Error>) {
    match r {
        Ok(v) => println!("{case}: ok {v}"),
        Err(zbus::Error::MethodError(name, msg, _)) => {
            // Never the argument back: at most 200 characters of the message.
            let m: String = msg.unwrap_or_default().chars().take(200).collect();
            println!("{case}: {name}: {m}");
        }
        Err(e) => {
            let m: String = e.to_string().chars().take(200).collect();
            println!("{case}: error: {m}");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let conn = match zbus::Connection::system().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bus-oversize: cannot reach the system bus: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let big = "x".repeat(MIB);
    let profile = "name = \"big\"\ngateway = \"192.0.2.77\"\n";
    let connect = |p: String, s: HashMap<String, String>| {
        let conn = conn.clone();
        async move {
            conn.call_method(
                Some("org.postern.Helper1"),
                "/org/postern/Helper1",
                Some("org.postern.Helper1"),
                "Connect",
                &(p, s),
            )
            .await
            .map(|m| {
                format!(
                    "{:?}",
                    m.body()
                        .deserialize::<zbus::zvariant::OwnedObjectPath>()
                        .ok()
                )
            })
        }
    };
    line(
        "profile 1 MiB",
        connect(
            format!("{profile}# {big}\n"),
            HashMap::from([("psk".into(), "x".into())]),
        )
        .await,
    );
    line(
        "psk 1 MiB",
        connect(profile.into(), HashMap::from([("psk".into(), big.clone())])).await,
    );
    line(
        "secret key 1 MiB",
        connect(profile.into(), HashMap::from([(big.clone(), "x".into())])).await,
    );
    let many: HashMap<String, String> = (0..1000).map(|i| (format!("k{i}"), "x".into())).collect();
    line("1000 secrets", connect(profile.into(), many).await);
    let answers = HashMap::from([("password".to_string(), big.clone())]);
    let path = zbus::zvariant::ObjectPath::try_from("/org/postern/Helper1/Connection/1")
        .map(|p| p.into_owned());
    if let Ok(path) = path {
        line(
            "answers 1 MiB",
            conn.call_method(
                Some("org.postern.Helper1"),
                "/org/postern/Helper1",
                Some("org.postern.Helper1"),
                "SubmitCredentials",
                &(path, answers),
            )
            .await
            .map(|_| String::new()),
        );
    }
    let long = format!("/org/postern/Helper1/Connection/{}", "9".repeat(MIB));
    if let Ok(p) = zbus::zvariant::ObjectPath::try_from(long.as_str()) {
        line(
            "path 1 MiB",
            conn.call_method(
                Some("org.postern.Helper1"),
                "/org/postern/Helper1",
                Some("org.postern.Helper1"),
                "Disconnect",
                &(p,),
            )
            .await
            .map(|_| String::new()),
        );
    }
    std::process::ExitCode::SUCCESS
}
