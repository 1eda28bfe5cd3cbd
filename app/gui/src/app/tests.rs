//! The app's `update()` against a fake watcher (commands land in a channel, updates
//! are made by hand), and `iced_test` simulations of its screens.

use super::*;
use iced_test::simulator;
use postern_frontend::watcher::Handle;
use tokio::sync::mpsc::UnboundedReceiver;

fn app_with(names: &[&str]) -> (App, UnboundedReceiver<Command>) {
    let mut app = App::new(false);
    app.profiles.set_entries(
        names
            .iter()
            .map(|n| plist::Entry::user(n, Ok("192.0.2.1".into())))
            .collect(),
    );
    let (h, rx) = Handle::fake();
    let _ = app.update(Message::Watcher(Update::Ready(h)));
    (app, rx)
}

fn key(k: Named) -> Message {
    match iced_test::simulator::press_key(Key::Named(k), None) {
        iced::Event::Keyboard(e) => Message::Key(e),
        _ => unreachable!(),
    }
}

fn tunnel(state: &str, phase: &str) -> Tunnel {
    Tunnel {
        profile: "office".into(),
        path: "/org/postern/Helper1/Connection/1".into(),
        state: state.into(),
        phase: phase.into(),
        gateway: "192.0.2.1".into(),
        virtual_ip: if state == "connected" {
            "10.200.0.5".into()
        } else {
            String::new()
        },
        ..Tunnel::default()
    }
}

#[test]
fn enter_connects_the_selected_profile_and_the_prompt_answers_the_gateway() {
    let (mut app, mut rx) = app_with(&["lab", "office"]);
    let _ = app.update(Message::Profiles(plist::Message::Select("office".into())));
    let _ = app.update(key(Named::Enter));
    match rx.try_recv() {
        Ok(Command::Connect { profile, psk, .. }) => {
            assert_eq!(profile, "office");
            assert!(psk.is_none(), "the watcher takes the PSK from the keyring");
        }
        other => panic!("{other:?}"),
    }
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connecting",
        "phase1",
    ))));
    assert_eq!(app.tunnels["office"].phase, "phase1");
    let _ = app.update(Message::Watcher(Update::Credentials {
        profile: "office".into(),
        fields: vec!["username".into(), "password".into()],
        message: "Welcome to the lab".into(),
    }));
    assert!(app.prompt.is_some());
    let _ = app.update(Message::Prompt(prompt::Message::Input(0, "alice".into())));
    let _ = app.update(Message::Prompt(prompt::Message::Input(1, "pw".into())));
    let _ = app.update(Message::Prompt(prompt::Message::Submit));
    assert!(app.prompt.is_none());
    match rx.try_recv() {
        Ok(Command::Submit {
            profile, answers, ..
        }) => {
            assert_eq!(profile, "office");
            assert_eq!(answers.len(), 2);
            assert_eq!(answers[1].0, "password");
            assert_eq!(answers[1].1.expose(), "pw");
        }
        other => panic!("{other:?}"),
    }
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connected",
        "established",
    ))));
    assert_eq!(
        app.notified.last().map(|(s, b)| (s.as_str(), b.as_str())),
        Some((
            "Connected to office",
            "Your address in the tunnel is 10.200.0.5."
        ))
    );
    assert_eq!(
        app.last_tray.as_ref().map(|t| t.icon),
        Some(desktop::Icon::Connected)
    );
    assert!(
        app.last_tray
            .as_ref()
            .is_some_and(|t| t.tooltip.contains("10.200.0.5"))
    );
    // The row's button now disconnects.
    let _ = app.update(key(Named::Enter));
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Disconnect { profile }) if profile == "office"
    ));
}

#[test]
fn a_wrong_psk_reads_as_a_refused_login() {
    let (mut app, _rx) = app_with(&["office"]);
    app.connect("office");
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connecting",
        "phase1",
    ))));
    let mut t = tunnel("failed", "phase1");
    t.last_error = Some(Fail::new(
        FailureKind::AuthenticationFailed,
        "authentication failed (pre-shared key mismatch?)",
    ));
    let _ = app.update(Message::Watcher(Update::Tunnel(t)));
    let (summary, body) = app.notified.last().cloned().unwrap_or_default();
    assert_eq!(summary, "office: The gateway refused the login.");
    assert!(body.contains("pre-shared key"), "{body}");
    assert_eq!(
        app.last_tray.as_ref().map(|t| t.icon),
        Some(desktop::Icon::Error)
    );
    // And the window says it, the helper's sentence beneath.
    let mut ui = simulator(app.view(window::Id::unique()));
    assert!(ui.find("The gateway refused the login.").is_ok());
    assert!(
        ui.find("authentication failed (pre-shared key mismatch?)")
            .is_ok()
    );
    assert!(ui.find("not responding").is_err());
}

#[test]
fn a_missing_psk_is_asked_for_and_sent_with_the_connect() {
    let (mut app, mut rx) = app_with(&["office"]);
    let _ = app.update(Message::Watcher(Update::SecretNeeded {
        profile: "office".into(),
        key: "psk",
        reason: None,
    }));
    assert!(matches!(
        app.prompt.as_ref().map(|p| &p.ask),
        Some(prompt::Ask::Psk)
    ));
    let _ = app.update(Message::Prompt(prompt::Message::Input(0, "k3y".into())));
    let _ = app.update(Message::Prompt(prompt::Message::Remember(true)));
    let _ = app.update(Message::Prompt(prompt::Message::Submit));
    match rx.try_recv() {
        Ok(Command::Connect {
            profile,
            psk,
            remember,
            ..
        }) => {
            assert_eq!(profile, "office");
            assert_eq!(psk.map(|p| p.expose().to_string()).as_deref(), Some("k3y"));
            assert!(remember);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn escape_closes_dialogs_and_a_cancelled_login_ends_the_attempt() {
    let (mut app, mut rx) = app_with(&["office"]);
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "needs-credentials",
        "xauth",
    ))));
    assert!(
        app.prompt.is_some(),
        "a missed signal still brings the prompt"
    );
    let _ = app.update(key(Named::Escape));
    assert!(app.prompt.is_none());
    assert!(matches!(rx.try_recv(), Ok(Command::Disconnect { .. })));
    let _ = app.update(Message::Profiles(plist::Message::Delete));
    assert!(app.profiles.dialog.is_some());
    let _ = app.update(key(Named::Escape));
    assert!(app.profiles.dialog.is_none());
}

#[test]
fn tab_walks_every_control_and_enter_presses_the_focused_button() {
    let (mut app, mut rx) = app_with(&["lab", "office"]);
    let keys: Vec<String> = app.controls().into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(
        keys,
        vec![
            "search",
            "toggle:lab",
            "toggle:office",
            "add",
            "import",
            "settings",
            "duplicate",
            "rename",
            "delete",
            "conn-toggle",
            "conn-edit",
            "conn-check",
            "conn-export",
            "conn-copy",
            "conn-save",
            "log-filter"
        ]
    );
    let _ = app.update(key(Named::Tab));
    let _ = app.update(key(Named::Tab));
    let _ = app.update(key(Named::Tab));
    assert_eq!(app.focused.as_deref(), Some("toggle:office"));
    let _ = app.update(key(Named::Enter));
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Connect { profile, .. }) if profile == "office"
    ));
    // The focused button is drawn as focused (a row renders with it).
    let mut ui = simulator(app.view(window::Id::unique()));
    assert!(ui.find("Disconnected").is_ok() || ui.find("Connecting").is_ok());
}

#[test]
fn without_the_helper_the_app_says_so_and_the_connect_waits() {
    let (mut app, _rx) = app_with(&["office"]);
    let _ = app.update(Message::Watcher(Update::Helper(Err(Fail::new(
        FailureKind::HelperUnreachable,
        "postern-helper is not on the system bus (org.postern.Helper1)",
    )))));
    app.connect("office");
    assert!(app.live["office"].waiting_for_helper);
    {
        let mut ui = simulator(app.view(window::Id::unique()));
        assert!(ui.find("The Postern service is not running.").is_ok());
        assert!(ui.find("Waiting for the Postern service").is_ok());
    }
    let _ = app.update(Message::Watcher(Update::Helper(Ok(()))));
    assert!(!app.live["office"].waiting_for_helper);
}

#[test]
fn a_drop_and_a_reconnect_are_notified() {
    let (mut app, _rx) = app_with(&["office"]);
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connected",
        "established",
    ))));
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "reconnecting",
        "phase1",
    ))));
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connected",
        "established",
    ))));
    let mut d = tunnel("failed", "established");
    d.last_error = Some(Fail::new(
        FailureKind::DroppedByPeer,
        "the gateway deleted it",
    ));
    let _ = app.update(Message::Watcher(Update::Tunnel(d)));
    let summaries: Vec<&str> = app.notified.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        summaries,
        vec![
            "Connected to office",
            "Reconnecting office",
            "Reconnected to office",
            "office: The gateway closed the tunnel."
        ]
    );
}

#[test]
fn the_connection_pane_says_why_it_reconnects_or_checks() {
    let (mut app, _rx) = app_with(&["office"]);
    let mut t = tunnel("reconnecting", "phase1");
    t.detail = postern_dbus::interface::detail::NETWORK_CHANGED.into();
    let _ = app.update(Message::Watcher(Update::Tunnel(t)));
    {
        let mut ui = simulator(app.view(window::Id::unique()));
        assert!(ui.find("Reconnecting: network changed").is_ok());
    }
    let mut t = tunnel("connected", "established");
    t.detail = postern_dbus::interface::detail::RESUMED.into();
    let _ = app.update(Message::Watcher(Update::Tunnel(t)));
    {
        let mut ui = simulator(app.view(window::Id::unique()));
        assert!(ui.find("Resumed: checking the gateway").is_ok());
    }
    // The gateway answered: the plain state again.
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connected",
        "established",
    ))));
    let mut ui = simulator(app.view(window::Id::unique()));
    assert!(ui.find("Resumed: checking the gateway").is_err());
    assert!(ui.find("Connected").is_ok());
}

#[test]
fn connected_shows_address_and_sa_table() {
    let (mut app, _rx) = app_with(&["office"]);
    let mut t = tunnel("connected", "established");
    t.dns = vec!["10.77.0.53".into()];
    t.routes = vec!["10.77.0.0/24".into()];
    t.sas = vec![postern_dbus::interface::SaInfo {
        spi_in: 0xc1a2b3c4,
        spi_out: 0x0d0e0f10,
        proposal: "aes128-sha256".into(),
        mode: "tunnel".into(),
        udp_encapsulation: true,
        local_ts: "10.200.0.5/32".into(),
        remote_ts: "10.77.0.0/24".into(),
        lifetime_secs: 3600,
        lifetime_kb: 0,
    }];
    let _ = app.update(Message::Watcher(Update::Tunnel(t)));
    let _ = app.update(Message::Watcher(Update::Traffic {
        profile: "office".into(),
        total: postern_dbus::interface::Traffic {
            rx_bytes: 2500,
            tx_bytes: 1200,
            ..Default::default()
        },
        per_sa: vec![postern_dbus::interface::SaTraffic {
            spi_in: 0xc1a2b3c4,
            spi_out: 0x0d0e0f10,
            in_bytes: 2500,
            in_packets: 3,
            out_bytes: 1200,
            out_packets: 2,
        }],
    }));
    let mut ui = simulator(app.view(window::Id::unique()));
    for s in [
        "10.200.0.5",
        "10.77.0.53",
        "c1a2b3c4",
        "0d0e0f10",
        "aes128-sha256 udp",
        "3600s",
        "2.5 kB / 3",
    ] {
        assert!(ui.find(s).is_ok(), "{s} not shown");
    }
}

#[test]
fn the_editor_disables_save_while_the_parser_refuses() {
    let mut ed = editor::State::new(vec![]);
    let _ = ed.update(editor::Message::Input(editor::NAME, "office".into()));
    // No gateway yet: invalid; clicking Save does nothing.
    {
        let mut ui = simulator(ed.view(None));
        assert!(ui.click("Save").is_ok());
        assert!(
            ui.into_messages()
                .all(|m| !matches!(m, editor::Message::Save))
        );
    }
    // Typing the gateway into its field (a real text input) makes it valid.
    let msgs: Vec<editor::Message> = {
        let mut ui = simulator(ed.view(None));
        assert!(ui.click(editor::field_id(1)).is_ok());
        let _ = ui.typewrite("vpn.example.com");
        ui.into_messages().collect()
    };
    for m in msgs {
        let _ = ed.update(m);
    }
    assert_eq!(ed.values[1], "vpn.example.com");
    assert!(ed.is_valid(), "{:?}", ed.invalid);
    let mut ui = simulator(ed.view(None));
    assert!(ui.click("Save").is_ok());
    assert!(
        ui.into_messages()
            .any(|m| matches!(m, editor::Message::Save))
    );
}

#[test]
fn the_editor_shows_the_parsers_message_under_the_field() {
    let mut ed = editor::State::new(vec![]);
    let _ = ed.update(editor::Message::Input(editor::NAME, "office".into()));
    let _ = ed.update(editor::Message::Input(1, "vpn.example.com".into()));
    let _ = ed.update(editor::Message::ToggleAdvanced(true));
    let i = editor::FIELDS
        .iter()
        .position(|f| f.key == "phase2.proposals")
        .unwrap_or(0);
    let _ = ed.update(editor::Message::Input(i, "aes999-sha1".into()));
    let msg = ed.invalid.clone().map(|i| i.message).unwrap_or_default();
    assert!(msg.starts_with("phase2.proposals"), "{msg}");
    let mut ui = simulator(ed.view(None));
    assert!(ui.find(msg.as_str()).is_ok(), "{msg}");
}

#[test]
fn the_prompt_dialog_sends_what_is_typed() {
    let p = prompt::State::new(
        "office",
        prompt::Ask::Xauth {
            fields: vec!["username".into(), "passcode".into()],
            message: "Enter the code from your token".into(),
        },
        Some("alice"),
    );
    let mut ui = simulator(p.view());
    assert!(ui.find("Enter the code from your token").is_ok());
    assert!(ui.find("Passcode").is_ok());
    assert!(
        ui.find("Remember the password in my keyring").is_err(),
        "a passcode is never remembered"
    );
    assert!(ui.click(prompt::field_id(1)).is_ok());
    let _ = ui.typewrite("123456");
    assert!(ui.click("Log in").is_ok());
    let msgs: Vec<prompt::Message> = ui.into_messages().collect();
    assert!(
        msgs.iter()
            .any(|m| matches!(m, prompt::Message::Input(1, v) if v == "123456"))
    );
}

#[test]
fn the_list_connects_by_the_rows_button() {
    let (app, _rx) = app_with(&["lab", "office"]);
    let mut ui = simulator(app.profiles.view(&app.tunnels, None));
    assert!(ui.find("office").is_ok());
    // The first "Connect" button is lab's (rows in name order).
    assert!(ui.click("Connect").is_ok());
    let msgs: Vec<plist::Message> = ui.into_messages().collect();
    assert!(
        msgs.iter()
            .any(|m| matches!(m, plist::Message::Toggle(n) if n == "lab")),
        "{msgs:?}"
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../frontend/tests/fixtures/import")
        .join(name)
}

#[test]
fn import_opens_the_editor_on_the_result_with_what_was_not_carried_over() {
    let (mut app, _rx) = app_with(&["office"]);
    let _ = app.update(Message::Picked(
        Job::Import,
        Pick::File(fixture("pcf_group_crlf_latin1.pcf")),
    ));
    let ed = app.editor.as_ref().expect("the editor opens on the import");
    let notes = ed.import.as_ref().expect("with the import's notes");
    assert!(
        notes.source.starts_with("pcf_group_crlf_latin1.pcf (Cisco"),
        "{}",
        notes.source
    );
    assert!(
        notes.warnings.iter().any(|w| w.contains("EnableBackup")),
        "{:?}",
        notes.warnings
    );
    assert!(notes.secrets.contains_key("psk"), "enc_GroupPwd decrypted");
    assert!(ed.is_valid(), "{:?}", ed.invalid);
    assert_eq!(ed.values[1], "vpn.lyon.example.com");
    assert_eq!(
        app.focused.as_deref(),
        Some("field-0"),
        "the name is focused"
    );
    let state = crate::state_file::render(&app, &Default::default());
    assert!(state.contains("\"screen\":\"editor\""), "{state}");
    assert!(state.contains("EnableBackup"), "{state}");
    // Shown above the form; secrets never on screen.
    let ed = app.editor.as_ref().unwrap();
    let mut ui = simulator(ed.view(None));
    assert!(ui.find("What could not be carried over:").is_ok());
    assert!(ui.find("Imported profile").is_ok());
    let w = notes_first(&app, "EnableBackup");
    assert!(ui.find(format!("• {w}").as_str()).is_ok(), "{w}");
    assert!(
        ui.find("Found in the file, kept in your keyring when you save: the pre-shared key.")
            .is_ok()
    );
    assert!(
        !state.contains(notes_secret(&app).as_str()),
        "no secret in the state"
    );
}

fn notes_first(app: &App, word: &str) -> String {
    app.editor
        .as_ref()
        .and_then(|e| e.import.as_ref())
        .and_then(|n| n.warnings.iter().find(|w| w.contains(word)).cloned())
        .unwrap_or_default()
}

fn notes_secret(app: &App) -> String {
    app.editor
        .as_ref()
        .and_then(|e| e.import.as_ref())
        .and_then(|n| n.secrets.get("psk"))
        .map(|s| s.expose().to_string())
        .unwrap_or_else(|| "no secret".into())
}

#[test]
fn an_imported_name_that_is_taken_gets_a_free_one() {
    let (mut app, _rx) = app_with(&["office"]);
    let _ = app.update(Message::Picked(
        Job::Import,
        Pick::File(fixture("nm_vpnc_office.nmconnection")),
    ));
    let ed = app.editor.as_ref().expect("editor");
    assert!(
        ed.values[editor::NAME] != "office",
        "{}",
        ed.values[editor::NAME]
    );
    assert!(ed.is_valid(), "{:?}", ed.invalid);
}

#[test]
fn without_a_portal_import_asks_for_a_path_and_a_file_with_two_connections_asks_which() {
    let (mut app, _rx) = app_with(&[]);
    let _ = app.update(Message::Picked(
        Job::Import,
        Pick::Unavailable("no file dialog portal".into()),
    ));
    assert!(matches!(app.files, Some(files::Dialog::Path { .. })));
    assert_eq!(app.focused.as_deref(), Some("path"));
    {
        let d = app.files.as_ref().unwrap();
        let mut ui = simulator(d.view(None));
        assert!(
            ui.find(
                "This desktop has no file dialog (no file dialog portal): type the file's path."
            )
            .is_ok()
        );
    }
    // A file that is not there: the error stays in the dialog.
    let _ = app.update(Message::Files(files::Message::PathInput(
        "/nonexistent/office.pcf".into(),
    )));
    let _ = app.update(Message::Files(files::Message::PathConfirm));
    match &app.files {
        Some(files::Dialog::Path { error: Some(e), .. }) => {
            assert!(
                e.starts_with("Cannot import /nonexistent/office.pcf"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let two = fixture("swanctl_two_conns.conf").display().to_string();
    let _ = app.update(Message::Files(files::Message::PathInput(two)));
    let _ = app.update(Message::Files(files::Message::PathConfirm));
    let names: Vec<String> = match &app.files {
        Some(files::Dialog::Choose { found, .. }) => found.iter().map(|i| i.name.clone()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names.len(), 2, "{names:?}");
    let _ = app.update(Message::Files(files::Message::Pick(1)));
    assert!(app.files.is_none());
    let ed = app
        .editor
        .as_ref()
        .expect("editor on the second connection");
    assert_eq!(
        ed.import.as_ref().map(|n| n.source.contains("swanctl")),
        Some(true)
    );
}

#[test]
fn save_as_writes_the_file_or_asks_for_a_path() {
    let (mut app, _rx) = app_with(&["office"]);
    let dir = std::env::temp_dir().join(format!("postern-gui-save-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let out = dir.join("diag.txt");
    let job = Job::Save {
        contents: "Postern diagnostics for office\n".into(),
        name: "postern-office-diagnostics.txt".into(),
        done: "Saved the diagnostics of office to".into(),
    };
    let _ = app.update(Message::Picked(job.clone(), Pick::File(out.clone())));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "Postern diagnostics for office\n"
    );
    assert_eq!(
        app.notice.as_deref(),
        Some(format!("Saved the diagnostics of office to {}.", out.display()).as_str())
    );
    let _ = app.update(Message::Picked(job, Pick::Unavailable("no portal".into())));
    match &app.files {
        Some(files::Dialog::Path { path, .. }) => {
            assert!(path.ends_with("/postern-office-diagnostics.txt"), "{path}")
        }
        other => panic!("{other:?}"),
    }
    let out2 = dir.join("diag2.txt");
    let _ = app.update(Message::Files(files::Message::PathInput(
        out2.display().to_string(),
    )));
    let _ = app.update(Message::Files(files::Message::PathConfirm));
    assert!(app.files.is_none());
    assert!(std::fs::read_to_string(&out2).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_editors_file_fields_take_the_chosen_path_and_are_in_the_tab_order() {
    let (mut app, _rx) = app_with(&[]);
    let _ = app.update(Message::Profiles(plist::Message::Add));
    let _ = app.update(Message::Editor(editor::Message::ToggleAdvanced(true)));
    let i = editor::FIELDS
        .iter()
        .position(|f| f.key == "auth.cert")
        .unwrap();
    let keys: Vec<String> = app.controls().into_iter().map(|(k, _, _)| k).collect();
    let at = keys
        .iter()
        .position(|k| *k == format!("field-{i}"))
        .unwrap();
    assert_eq!(keys[at + 1], editor::choose_key(i));
    let _ = app.update(Message::Picked(
        Job::Field(i),
        Pick::File("/home/alice/certs/alice.pem".into()),
    ));
    assert_eq!(
        app.editor.as_ref().unwrap().values[i],
        "/home/alice/certs/alice.pem"
    );
    let _ = app.update(Message::Picked(
        Job::Field(i),
        Pick::Unavailable("no portal".into()),
    ));
    assert_eq!(app.focused, Some(format!("field-{i}")));
    assert!(
        app.notice
            .as_deref()
            .unwrap_or("")
            .contains("type the file's path")
    );
}

#[test]
fn an_import_whose_secrets_the_keyring_refused_says_so() {
    let stored = vec![
        ("psk".to_string(), Ok(())),
        (
            "xauth-password".to_string(),
            Err(Fail::new(
                FailureKind::Keyring,
                "keyring: the keyring is locked; unlock it (log in to the desktop) and try again",
            )),
        ),
    ];
    assert_eq!(
        import_sentence("office", &stored),
        "Imported office. In your keyring: the pre-shared key. Not kept (the keyring is locked): the XAuth password; Postern asks when you connect."
    );
}

#[test]
fn settings_open_from_the_list() {
    let (mut app, _rx) = app_with(&["office"]);
    let _ = app.update(Message::Profiles(plist::Message::Settings));
    assert!(matches!(app.files, Some(files::Dialog::Settings { .. })));
    {
        let d = app.files.as_ref().unwrap();
        let mut ui = simulator(d.view(None));
        assert!(ui.find("Start hidden in the tray").is_ok());
        assert!(ui.find("Start at login (in the tray)").is_ok());
    }
    let _ = app.update(key(Named::Escape));
    assert!(app.files.is_none());
}

#[test]
fn a_locked_keyring_is_said_in_one_sentence_and_the_secret_asked_for() {
    let (mut app, _rx) = app_with(&["office"]);
    let sentence = "Your keyring is locked, so Postern asks for the pre-shared key instead.";
    let _ = app.update(Message::Watcher(Update::SecretNeeded {
        profile: "office".into(),
        key: "psk",
        reason: Some(sentence.into()),
    }));
    let p = app.prompt.as_ref().expect("the PSK is asked for");
    assert_eq!(p.note.as_deref(), Some(sentence));
    {
        let mut ui = simulator(p.view());
        assert!(ui.find(sentence).is_ok());
        assert!(ui.find("Pre-shared key for office").is_ok());
    }
    let _ = app.update(key(Named::Escape));
    // The XAuth password: the note waits for the gateway's question.
    let pw = "Your keyring is locked, so Postern asks for your password instead.";
    let _ = app.update(Message::Watcher(Update::KeyringNote {
        profile: "office".into(),
        sentence: pw.into(),
    }));
    assert!(app.prompt.is_none());
    let _ = app.update(Message::Watcher(Update::Credentials {
        profile: "office".into(),
        fields: vec!["username".into(), "password".into()],
        message: String::new(),
    }));
    assert_eq!(
        app.prompt.as_ref().and_then(|p| p.note.as_deref()),
        Some(pw)
    );
    assert!(app.keyring_notes.is_empty(), "said once");
}

#[test]
fn check_the_tunnel_asks_the_helper_and_shows_each_step() {
    let (mut app, mut rx) = app_with(&["office"]);
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connected",
        "established",
    ))));
    let _ = app.update(Message::Connection(connection::Message::Check));
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Check { profile }) if profile == "office"
    ));
    assert_eq!(app.live["office"].check, Some(connection::Check::Running));
    let step = |name: &str, outcome: &str, detail: &str| postern_dbus::interface::CheckStep {
        name: name.into(),
        outcome: outcome.into(),
        detail: detail.into(),
    };
    let _ = app.update(Message::Watcher(Update::Checked {
        profile: "office".into(),
        result: Ok(vec![
            step("traffic", "ok", "12 packets out, 12 back."),
            step(
                "host",
                "failed",
                "10.77.0.10 does not answer: traffic goes in but nothing comes back.",
            ),
        ]),
    }));
    let mut ui = simulator(app.view(window::Id::unique()));
    for s in [
        "Check the tunnel",
        "Traffic both ways",
        "A host behind the tunnel",
        "failed",
        "10.77.0.10 does not answer: traffic goes in but nothing comes back.",
    ] {
        assert!(ui.find(s).is_ok(), "{s} not shown");
    }
    // "Hide" closes the results; the log has the pane again.
    assert!(ui.click("Hide").is_ok(), "no Hide button");
    drop(ui);
    let _ = app.update(Message::Connection(connection::Message::HideCheck));
    assert_eq!(app.live["office"].check, None);
    let mut ui = simulator(app.view(window::Id::unique()));
    assert!(
        ui.find("Traffic both ways").is_err(),
        "the results are still shown"
    );
}

/// Started at login: the profiles marked `autoconnect = "login"` are connected as
/// soon as the watcher runs (asked before it did, as `boot` does), once each, and not
/// again while they are up.
#[test]
fn login_profiles_are_connected_at_start() {
    let mut app = App::new(false);
    app.profiles.set_entries(
        ["lab", "office"]
            .iter()
            .map(|n| plist::Entry::user(n, Ok("192.0.2.1".into())))
            .collect(),
    );
    app.connect_login_profiles(&["office".to_string()]);
    let (h, mut rx) = Handle::fake();
    let _ = app.update(Message::Watcher(Update::Ready(h)));
    match rx.try_recv() {
        Ok(Command::Connect { profile, psk, .. }) => {
            assert_eq!(profile, "office");
            assert!(psk.is_none(), "the watcher takes the PSK from the keyring");
        }
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "only the login profile");
    let _ = app.update(Message::Watcher(Update::Tunnel(tunnel(
        "connecting",
        "phase1",
    ))));
    app.connect_login_profiles(&["office".to_string()]);
    assert!(rx.try_recv().is_err(), "connected twice");
}

/// The `autoconnect` key survives the editor (and the contract's export).
#[test]
fn the_autoconnect_key_round_trips_through_the_editor() {
    let text = "name = \"office\"\ngateway = \"192.0.2.1\"\nautoconnect = \"login\"\n";
    let s = editor::State::edit("office", text, vec!["office".into()], true);
    assert!(s.is_valid(), "{:?}", s.invalid);
    let out = s.to_toml();
    assert!(out.contains("autoconnect = \"login\"\n"), "{out}");
    let p = postern_dbus::profile::Profile::from_toml_str(
        &out,
        "form",
        postern_dbus::profile::SecretPolicy::Forbid,
    )
    .expect("parses");
    assert_eq!(p.autoconnect, postern_dbus::profile::Autoconnect::Login);
    assert!(p.to_toml_string().contains("autoconnect = \"login\"\n"));
}

fn system_list() -> Vec<postern_dbus::interface::SystemProfile> {
    use postern_dbus::interface::SystemProfile;
    vec![
        SystemProfile {
            name: "office".into(),
            title: "Office".into(),
            gateway: "192.0.2.1".into(),
            autoconnect: "boot".into(),
            file: "/etc/postern/profiles/office.toml".into(),
            refused: String::new(),
        },
        SystemProfile {
            name: "open".into(),
            title: "open".into(),
            gateway: "192.0.2.2".into(),
            autoconnect: "no".into(),
            file: "/etc/postern/profiles/open.toml".into(),
            refused: "/etc/postern/profiles/open.toml: mode 0666: group or others may change it; chmod go-w it".into(),
        },
    ]
}

/// The helper's system profiles are rows of the list, tagged; a refused one shows
/// why; connecting one sends its `system:` name (the watcher calls ConnectSystem);
/// the toolbar does not duplicate, rename or delete one.
#[test]
fn system_profiles_are_listed_marked_and_connected_by_name() {
    let (mut app, mut rx) = app_with(&["lab"]);
    let _ = app.update(Message::Watcher(Update::SystemProfiles(system_list())));
    let office = app
        .profiles
        .entries
        .iter()
        .find(|e| e.name == "system:office")
        .cloned();
    assert!(
        office.as_ref().is_some_and(|e| e.system
            && e.refused.is_none()
            && e.gateway == Ok("192.0.2.1".into())),
        "{office:?}"
    );
    assert!(
        app.profiles.entries.iter().any(|e| e.name == "system:open"
            && e.system
            && e.refused
                .as_deref()
                .is_some_and(|r| r.contains("open.toml: mode 0666"))),
        "{:?}",
        app.profiles.entries
    );
    {
        let mut ui = simulator(app.profiles.view(&app.tunnels, None));
        assert!(ui.find("system").is_ok(), "the tag");
        assert!(
            ui.find("office").is_ok(),
            "the file's name, without system:"
        );
        assert!(ui.find("Refused").is_ok(), "the refusal in the row");
    }
    app.connect("system:office");
    match rx.try_recv() {
        Ok(Command::Connect { profile, psk, .. }) => {
            assert_eq!(profile, "system:office");
            assert!(psk.is_none());
        }
        other => panic!("{other:?}"),
    }
    let _ = app.update(Message::Profiles(plist::Message::Select(
        "system:office".into(),
    )));
    let _ = app.update(Message::Profiles(plist::Message::Delete));
    assert!(
        app.profiles.dialog.is_none(),
        "no delete of a system profile"
    );
    let _ = app.update(Message::Profiles(plist::Message::Rename));
    assert!(
        app.profiles.dialog.is_none(),
        "no rename of a system profile"
    );
    // The connection pane says whose it is, and Edit is View.
    let mut ui = simulator(app.view(window::Id::unique()));
    assert!(ui.find(editor::SYSTEM_LINE).is_ok());
    assert!(ui.find("View").is_ok());
}

/// Edit on a system profile asks the helper for its text and opens the editor
/// read-only; "Edit as administrator" unlocks it; Save goes to the helper
/// (SaveSystemProfile); a refusal is one sentence under the form; a save that went
/// through reads the file again.
#[test]
fn a_system_profile_opens_read_only_and_saves_through_the_helper() {
    let (mut app, mut rx) = app_with(&["lab"]);
    let _ = app.update(Message::Watcher(Update::SystemProfiles(system_list())));
    let _ = app.update(Message::Profiles(plist::Message::Select(
        "system:office".into(),
    )));
    let _ = app.update(Message::Connection(connection::Message::Edit));
    match rx.try_recv() {
        Ok(Command::SystemText { name }) => assert_eq!(name, "office"),
        other => panic!("{other:?}"),
    }
    assert!(app.editor.is_none(), "opens when the text comes");
    let text = "name = \"Office\"\ngateway = \"192.0.2.1\"\nautoconnect = \"boot\"\n\n[xauth]\nusername = \"kiosk\"\n";
    let _ = app.update(Message::Watcher(Update::SystemText {
        name: "office".into(),
        result: Ok(text.into()),
    }));
    let ed = app.editor.as_ref().expect("the editor");
    assert!(ed.read_only());
    assert_eq!(ed.values[editor::NAME], "Office", "the file's own name key");
    {
        let mut ui = simulator(ed.view(None));
        assert!(ui.find(editor::SYSTEM_LINE).is_ok());
        assert!(ui.find("Edit as administrator").is_ok());
        assert!(ui.find("Close").is_ok());
        assert!(
            ui.find("Save as administrator").is_err(),
            "no Save while locked"
        );
    }
    // Typing does nothing while locked.
    let _ = app.update(Message::Editor(editor::Message::Input(
        1,
        "evil.example".into(),
    )));
    let _ = app.update(Message::Editor(editor::Message::Save));
    assert_eq!(
        app.editor.as_ref().map(|e| e.values[1].clone()),
        Some("192.0.2.1".into())
    );
    assert!(rx.try_recv().is_err(), "nothing sent while locked");
    // Unlocked, the gateway changes and Save asks the helper.
    let _ = app.update(Message::Editor(editor::Message::Unlock));
    let _ = app.update(Message::Editor(editor::Message::Input(
        NAME_OF_GATEWAY,
        "192.0.2.9".into(),
    )));
    let _ = app.update(Message::Editor(editor::Message::Save));
    match rx.try_recv() {
        Ok(Command::SaveSystem { name, text }) => {
            assert_eq!(name, "office");
            assert!(text.contains("gateway = \"192.0.2.9\""), "{text}");
            assert!(text.contains("autoconnect = \"boot\""), "{text}");
            assert!(text.contains("name = \"Office\""), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        app.editor.as_ref().is_some_and(|e| e.read_only()),
        "locked while saving"
    );
    // polkit said no (no administrator's password): one sentence, the form stays.
    let _ = app.update(Message::Watcher(Update::SystemSaved {
        name: "office".into(),
        result: Err(Fail::new(
            FailureKind::AccessDenied,
            "refused: not authorized (org.postern.helper1.edit-system): polkit said no",
        )),
    }));
    let ed = app.editor.as_ref().expect("still open");
    let err = ed.save_error.clone().unwrap_or_default();
    assert_eq!(
        err,
        "Not saved: changing a system profile needs an administrator's password (polkit said no)."
    );
    assert!(!ed.read_only(), "editable again after the refusal");
    // Saved: the file is read again and shown, locked.
    let _ = app.update(Message::Editor(editor::Message::Save));
    assert!(matches!(rx.try_recv(), Ok(Command::SaveSystem { .. })));
    let _ = app.update(Message::Watcher(Update::SystemSaved {
        name: "office".into(),
        result: Ok(()),
    }));
    match rx.try_recv() {
        Ok(Command::SystemText { name }) => assert_eq!(name, "office"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(rx.try_recv(), Ok(Command::Refresh)));
    let _ = app.update(Message::Watcher(Update::SystemText {
        name: "office".into(),
        result: Ok(text.replace("192.0.2.1", "192.0.2.9")),
    }));
    let ed = app.editor.as_ref().expect("the editor");
    assert!(ed.read_only() && ed.values[1] == "192.0.2.9");
    assert!(ed.save_error.is_none());
}

const NAME_OF_GATEWAY: usize = 1;

/// The helper's `CheckProfile` answers mark the user's refused profiles in the list
/// (a mark and the sentence), in the connection pane and in the editor; a connect on
/// one shows the helper's refusal; a save asks again.
#[test]
fn a_profile_the_policy_refuses_says_why() {
    let (mut app, mut rx) = app_with(&["lab", "weak"]);
    let why =
        "phase1.proposals: 3des-sha1-modp1024 uses modp1024, which this machine's policy forbids";
    let _ = app.update(Message::Watcher(Update::Policy(vec![
        ("lab".into(), String::new()),
        ("weak".into(), why.into()),
    ])));
    let row = |app: &App, n: &str| {
        app.profiles
            .entries
            .iter()
            .find(|e| e.name == n)
            .and_then(|e| e.refused.clone())
    };
    assert_eq!(row(&app, "weak").as_deref(), Some(why));
    assert_eq!(row(&app, "lab"), None);
    {
        let mut ui = simulator(app.profiles.view(&app.tunnels, None));
        assert!(ui.find("Refused").is_ok(), "the row says it");
    }
    let _ = app.update(Message::Profiles(plist::Message::Select("weak".into())));
    {
        let mut ui = simulator(app.view(window::Id::unique()));
        assert!(ui.find(editor::REFUSED_LINE).is_ok());
        assert!(ui.find(why).is_ok());
    }
    // A connect says the same sentence at once (no PSK asked for first) and asks the
    // helper again (the policy may have changed).
    app.connect("weak");
    match rx.try_recv() {
        Ok(Command::CheckPolicy { profiles }) => assert_eq!(profiles, ["weak"]),
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "no connect sent");
    assert_eq!(
        app.live["weak"]
            .failure
            .as_ref()
            .map(|f| (f.kind, f.message.as_str())),
        Some((FailureKind::BadProfile, why))
    );
    assert!(app.notified.last().is_some_and(|(_, b)| b == why));
    {
        let mut ui = simulator(app.view(window::Id::unique()));
        assert!(ui.find(why).is_ok());
        assert!(ui.find("The profile is not valid.").is_ok());
    }
    // The editor says it above the form.
    let mut ed = editor::State::edit("weak", "gateway = \"192.0.2.1\"\n", vec![], false);
    ed.refused = app.refused.get("weak").cloned();
    {
        let mut ui = simulator(ed.view(None));
        assert!(ui.find(editor::REFUSED_LINE).is_ok());
        assert!(ui.find(why).is_ok());
    }
    // A later answer clears the mark, and the next connect goes to the helper.
    let _ = app.update(Message::Watcher(Update::Policy(vec![(
        "weak".into(),
        String::new(),
    )])));
    assert_eq!(row(&app, "weak"), None);
    assert!(app.refused.is_empty());
    app.connect("weak");
    assert!(matches!(rx.try_recv(), Ok(Command::Connect { .. })));
    // "System profiles only" is the caller's refusal, as the helper's Connect says it.
    let f = policy_failure("this machine's policy allows system profiles only");
    assert_eq!(f.kind, FailureKind::AccessDenied);
    assert_eq!(
        f.message,
        "refused: this machine's policy allows system profiles only"
    );
}
