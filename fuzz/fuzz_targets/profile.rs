//! The profile TOML parser (`postern_dbus::profile`): any text is parsed or refused
//! with an error that names a line within the text; a profile that parses exports
//! to TOML that parses to the same profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_dbus::profile::{Profile, SecretPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Profile::from_toml_str(text, "fuzz.toml", SecretPolicy::AllowIfPrivate) {
        Ok(p) => {
            let out = p.to_toml_string();
            let again = Profile::from_toml_str(&out, "export.toml", SecretPolicy::AllowIfPrivate)
                .unwrap_or_else(|e| panic!("the export does not parse: {e}\n{out}"));
            assert_eq!(again, p.without_secrets(), "{out}");
        }
        Err(e) => {
            if let Some(line) = e.line {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "line {line}"
                );
            }
            let _ = e.to_string();
        }
    }
});
