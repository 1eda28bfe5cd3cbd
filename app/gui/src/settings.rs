//! The app's own settings, in `$XDG_CONFIG_HOME/postern/gui.toml` (beside the profiles
//! directory): "Start hidden in the tray" and "Start at login". The latter is the XDG
//! autostart entry `$XDG_CONFIG_HOME/autostart/org.postern.Postern.desktop`, which
//! starts the app with `--hidden --login`; it is written when the box is ticked and
//! removed when it is cleared (the file is the truth: a user who deleted it by hand
//! sees the box cleared). Started with `--login`, the app connects the profiles marked
//! `autoconnect = "login"` unless "Connect the profiles marked for login" is cleared.

use std::path::{Path, PathBuf};

/// The settings file's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Start without the window (in the tray) even when not started at login.
    pub start_hidden: bool,
    /// An autostart entry exists.
    pub start_at_login: bool,
    /// Started at login (`--login`): connect the profiles with `autoconnect = "login"`
    /// (default on).
    pub connect_at_login: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            start_hidden: false,
            start_at_login: false,
            connect_at_login: true,
        }
    }
}

fn config_home() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".config")),
    }
}

/// `$XDG_CONFIG_HOME/postern/gui.toml`.
pub fn file_in(config: &Path) -> PathBuf {
    config.join("postern").join("gui.toml")
}

/// `$XDG_CONFIG_HOME/autostart/org.postern.Postern.desktop`.
pub fn autostart_in(config: &Path) -> PathBuf {
    config
        .join("autostart")
        .join(format!("{}.desktop", crate::desktop::APP_ID))
}

impl Settings {
    /// The settings as saved (defaults when there is no file or it does not parse).
    pub fn load() -> Settings {
        config_home().map_or_else(Settings::default, |c| Settings::load_from(&c))
    }

    pub fn load_from(config: &Path) -> Settings {
        let text = std::fs::read_to_string(file_in(config)).unwrap_or_default();
        let mut s = Settings::parse(&text);
        s.start_at_login = autostart_in(config).is_file();
        s
    }

    /// `start_hidden` from the file's text.
    pub fn parse(text: &str) -> Settings {
        let t = text.parse::<toml::Table>().unwrap_or_default();
        Settings {
            start_hidden: t
                .get("start_hidden")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false),
            start_at_login: false,
            connect_at_login: t
                .get("connect_at_login")
                .and_then(toml::Value::as_bool)
                .unwrap_or(true),
        }
    }

    pub fn to_toml(self) -> String {
        format!(
            "# Postern's desktop app (\"Start at login\" is the autostart entry)\nstart_hidden = {}\nconnect_at_login = {}\n",
            self.start_hidden, self.connect_at_login
        )
    }

    /// Writes the file and makes the autostart entry match. `Err`: one sentence.
    pub fn save(self) -> Result<(), String> {
        let c = config_home().ok_or("There is no home directory (HOME is not set).")?;
        self.save_to(&c, &exec_path())
    }

    pub fn save_to(self, config: &Path, exec: &str) -> Result<(), String> {
        write(&file_in(config), &self.to_toml())?;
        let a = autostart_in(config);
        if self.start_at_login {
            write(&a, &autostart_entry(exec))?;
        } else if a.exists() {
            std::fs::remove_file(&a).map_err(|e| format!("Cannot remove {}: {e}.", a.display()))?;
        }
        Ok(())
    }
}

/// The program the autostart entry runs: this binary (absolute), quoted for Exec=.
fn exec_path() -> String {
    std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "postern-gui".into())
}

/// The autostart entry (Desktop Entry Specification; `Exec` quoting rules applied).
pub fn autostart_entry(exec: &str) -> String {
    let quoted = if exec
        .chars()
        .any(|c| c.is_whitespace() || "\"'\\><~|&;$*?#()`".contains(c))
    {
        let inner: String = exec
            .chars()
            .flat_map(|c| match c {
                '"' | '`' | '$' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{inner}\"")
    } else {
        exec.to_string()
    };
    format!(
        "[Desktop Entry]\nType=Application\nName=Postern\nComment=IPsec VPN client (in the tray)\nExec={quoted} --hidden --login\nIcon=org.postern.Postern\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("Cannot create {}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("Cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_defaults_to_shown() {
        assert_eq!(Settings::parse(""), Settings::default());
        assert_eq!(Settings::parse("start_hidden = 7"), Settings::default());
        let s = Settings {
            start_hidden: true,
            start_at_login: false,
            connect_at_login: false,
        };
        assert_eq!(Settings::parse(&s.to_toml()), s);
        assert!(Settings::parse("start_hidden = true\n").connect_at_login);
    }

    #[test]
    fn start_at_login_writes_and_removes_the_autostart_entry() {
        let dir = std::env::temp_dir().join(format!("postern-gui-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let on = Settings {
            start_hidden: true,
            start_at_login: true,
            connect_at_login: true,
        };
        on.save_to(&dir, "/usr/bin/postern-gui").unwrap();
        let entry = std::fs::read_to_string(autostart_in(&dir)).unwrap();
        assert!(
            entry.contains("Exec=/usr/bin/postern-gui --hidden --login"),
            "{entry}"
        );
        assert_eq!(Settings::load_from(&dir), on);
        let off = Settings {
            start_hidden: false,
            start_at_login: false,
            connect_at_login: false,
        };
        off.save_to(&dir, "/usr/bin/postern-gui").unwrap();
        assert!(!autostart_in(&dir).exists());
        assert_eq!(Settings::load_from(&dir), off);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_autostart_entry_starts_hidden_and_quotes_its_path() {
        let e = autostart_entry("/usr/bin/postern-gui");
        assert!(e.starts_with("[Desktop Entry]\n"), "{e}");
        assert!(
            e.contains("\nExec=/usr/bin/postern-gui --hidden --login\n"),
            "{e}"
        );
        assert!(e.contains("\nType=Application\n"));
        let e = autostart_entry("/home/a b/bin/postern-gui");
        assert!(
            e.contains("\nExec=\"/home/a b/bin/postern-gui\" --hidden --login\n"),
            "{e}"
        );
    }
}
