//! `postern-pkg-gen OUTDIR`: the man pages and shell completions of the .deb, from the
//! clap definitions the binaries parse their command lines with (each binary's
//! `cli.rs`, included here as source so the pages cannot drift from the parsers).
//!
//! Writes `OUTDIR/man/{postern.1,postern-gui.1,postern-helper.8}` and
//! `OUTDIR/completions/{postern,postern-gui}.{bash,fish}` and `_postern`, `_postern-gui`
//! (zsh). Called by packaging/build-deb.sh.
#![forbid(unsafe_code)]

#[path = "../../../app/gui/src/cli.rs"]
#[allow(dead_code)]
mod gui_cli;
#[path = "../../../helper/src/cli.rs"]
#[allow(dead_code)]
mod helper_cli;
#[path = "../../../app/cli/src/cli.rs"]
#[allow(dead_code)]
mod postern_cli;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// One page: the binary's command, its section, and the extra sections (roff) after
/// the generated ones.
struct Page {
    cmd: clap::Command,
    section: &'static str,
    extra: &'static str,
}

const POSTERN_EXTRA: &str = r#".SH FILES
.TP
.I $XDG_CONFIG_HOME/postern/profiles/NAME.toml
One profile (default directory ~/.config/postern/profiles). Profiles never hold
secrets: the pre-shared key and the XAuth password are kept in your keyring (Secret
Service). The keys are described in /usr/share/doc/postern/profile.md.
.SH EXIT STATUS
0 ok, 1 failure, 2 usage or bad profile, 3 authentication failed or refused by polkit,
4 no proposal chosen, 5 gateway not responding, 6 the helper is not reachable.
.SH ENVIRONMENT
.TP
.B DBUS_SYSTEM_BUS_ADDRESS
The bus postern-helper is on (default: the system bus).
.TP
.B EDITOR
The editor of \fBpostern edit\fR.
.SH SEE ALSO
.BR postern-gui (1),
.BR postern-helper (8)
"#;

const GUI_EXTRA: &str = r#".SH FILES
.TP
.I $XDG_CONFIG_HOME/postern/profiles/NAME.toml
The profiles, shared with postern(1).
.SH SEE ALSO
.BR postern (1),
.BR postern-helper (8)
"#;

const HELPER_EXTRA: &str = r#".SH FILES
.TP
.I /usr/lib/systemd/system/postern-helper.service
The hardened unit D-Bus activation starts.
.TP
.I /usr/share/dbus-1/system.d/org.postern.Helper1.conf
The bus policy: only root owns org.postern.Helper1; anyone may call it.
.TP
.I /usr/share/polkit-1/actions/org.postern.helper1.policy
The polkit actions each state-changing call is authorized with.
.TP
.I /run/postern
The journal of what each tunnel installed, so that a restarted helper removes what a
killed one left behind.
.SH SEE ALSO
.BR postern (1),
.BR postern-gui (1),
.BR systemctl (1)
"#;

fn pages() -> Vec<Page> {
    vec![
        Page {
            cmd: postern_cli::Cli::command(),
            section: "1",
            extra: POSTERN_EXTRA,
        },
        Page {
            cmd: gui_cli::Cli::command(),
            section: "1",
            extra: GUI_EXTRA,
        },
        Page {
            cmd: helper_cli::Cli::command(),
            section: "8",
            extra: HELPER_EXTRA,
        },
    ]
}

/// The page of `cmd`: clap_mangen's sections, then one sub-section per subcommand
/// (its synopsis, description and options), then `extra`.
fn render(page: &Page) -> std::io::Result<Vec<u8>> {
    let cmd = page.cmd.clone().disable_help_subcommand(true);
    let mut cmd = cmd;
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(page.section)
        .manual("Postern")
        .source(format!("Postern {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        writeln!(out, ".SH COMMANDS")?;
        for sub in subs {
            render_subcommand(&mut out, cmd.get_name(), sub)?;
        }
    }
    out.extend_from_slice(page.extra.as_bytes());
    Ok(out)
}

/// `.SS` for `parent sub`, its long help as text, its arguments as a `.TP` list; nested
/// subcommands (e.g. `postern secret set`) recursively.
fn render_subcommand(out: &mut Vec<u8>, parent: &str, sub: &clap::Command) -> std::io::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    let nested: Vec<&clap::Command> = sub.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !nested.is_empty() {
        for n in nested {
            render_subcommand(out, &name, n)?;
        }
        return Ok(());
    }
    let mut usage = String::new();
    for a in sub.get_arguments() {
        if a.is_hide_set() || a.is_global_set() || a.get_id() == "help" {
            continue;
        }
        let item = arg_synopsis(a);
        usage.push(' ');
        if a.is_required_set() {
            usage.push_str(&item);
        } else {
            usage.push_str(&format!("[{item}]"));
        }
    }
    writeln!(out, ".SS \"{}\"", escape(&format!("{name}{usage}")))?;
    let about = sub
        .get_long_about()
        .or_else(|| sub.get_about())
        .map(|s| s.to_string())
        .unwrap_or_default();
    for para in about.split("\n\n") {
        writeln!(out, ".PP\n{}", escape(&para.replace('\n', " ")))?;
    }
    for a in sub.get_arguments() {
        if a.is_hide_set() || a.is_global_set() || a.get_id() == "help" {
            continue;
        }
        let help = a
            .get_long_help()
            .or_else(|| a.get_help())
            .map(|s| s.to_string())
            .unwrap_or_default();
        if help.is_empty() && a.is_positional() {
            continue;
        }
        writeln!(out, ".TP\n\\fB{}\\fR", escape(&arg_synopsis(a)))?;
        let mut text = help.replace('\n', " ");
        if let Some(v) = a
            .get_default_values()
            .first()
            .filter(|_| a.get_action().takes_values())
        {
            text.push_str(&format!(" [default: {}]", v.to_string_lossy()));
        }
        let values: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !values.is_empty() && values.len() <= 16 {
            text.push_str(&format!(" [values: {}]", values.join(", ")));
        }
        writeln!(out, "{}", escape(&text))?;
    }
    Ok(())
}

fn arg_synopsis(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    let takes_value = a.get_action().takes_values();
    match (a.get_long(), a.get_short()) {
        (Some(l), _) if takes_value => format!("--{l} {value}"),
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) if takes_value => format!("-{s} {value}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => value,
    }
}

/// roff: a backslash doubled, a leading dot or quote protected, hyphens as hyphens.
fn escape(s: &str) -> String {
    let s = s
        .replace('\\', "\\\\")
        .replace('-', "\\-")
        .replace('"', "\\(dq");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn completions(dir: &Path) -> std::io::Result<()> {
    for (mut cmd, bin) in [
        (postern_cli::Cli::command(), "postern"),
        (gui_cli::Cli::command(), "postern-gui"),
    ] {
        for (shell, file) in [
            (Shell::Bash, format!("{bin}.bash")),
            (Shell::Zsh, format!("_{bin}")),
            (Shell::Fish, format!("{bin}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, bin, &mut buf);
            fs::write(dir.join(file), buf)?;
        }
    }
    Ok(())
}

fn run(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    let comp = out.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&comp)?;
    for page in pages() {
        let file = man.join(format!("{}.{}", page.cmd.get_name(), page.section));
        fs::write(&file, render(&page)?)?;
    }
    completions(&comp)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: postern-pkg-gen OUTDIR");
        return ExitCode::from(2);
    };
    match run(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-pkg-gen: {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand of each binary has a section in its page, and every long
    /// option appears: the page is the parser's.
    #[test]
    fn pages_cover_every_subcommand_and_option() {
        for page in pages() {
            let text = String::from_utf8(render(&page).unwrap()).unwrap();
            let name = page.cmd.get_name().to_string();
            assert!(
                text.starts_with(".ie") || text.contains(".TH"),
                "{name}: no title"
            );
            let mut cmds = vec![page.cmd.clone()];
            while let Some(c) = cmds.pop() {
                for a in c.get_arguments() {
                    if let Some(l) = a.get_long() {
                        if l == "help" || (l == "version" && c.get_name() != name) {
                            continue;
                        }
                        assert!(
                            text.contains(&format!("\\-\\-{}", l.replace('-', "\\-"))),
                            "{name}: --{l} of {} missing",
                            c.get_name()
                        );
                    }
                }
                for s in c.get_subcommands() {
                    if s.get_name() != "help" {
                        assert!(
                            text.contains(&format!(" {}", escape(s.get_name()))),
                            "{name}: subcommand {} missing",
                            s.get_name()
                        );
                        cmds.push(s.clone());
                    }
                }
            }
        }
    }
}
