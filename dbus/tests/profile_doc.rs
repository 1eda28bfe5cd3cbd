//! docs/profile.md is checked against the parser, so the reference cannot drift:
//! every TOML example parses; the keys of the document's tables are exactly the keys
//! the parser knows (learnt from the parser itself: the "expected one of ..." list of
//! its unknown-key refusal, table by table); and every default written as a TOML value
//! is the parser's default (writing it gives the same profile as leaving it out).

use std::collections::BTreeSet;

use postern_dbus::profile::{Profile, ProfileErrorKind, SecretPolicy};

const MINIMAL: &str = "name = \"doc\"\ngateway = \"vpn.example.com\"\n";

fn doc() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/profile.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text of a profile with `key` (dotted, e.g. `network.retransmit.tries`) set to
/// the TOML `value`.
fn with_key(key: &str, value: &str) -> String {
    match key.rsplit_once('.') {
        None => format!("{key} = {value}\n{MINIMAL}"),
        Some((table, leaf)) => format!("{MINIMAL}\n[{table}]\n{leaf} = {value}\n"),
    }
}

fn parse(text: &str) -> Result<Profile, postern_dbus::profile::ProfileError> {
    Profile::from_toml_str(text, "profile.md", SecretPolicy::AllowIfPrivate)
}

/// The keys directly under `table` ("" for the top level) as the parser names them
/// when it refuses an unknown one, or None when `table` is not a table to the parser.
fn keys_under(table: &str) -> Option<Vec<String>> {
    let unknown = "zz_not_a_key";
    let text = if table.is_empty() {
        format!("{unknown} = 1\n{MINIMAL}")
    } else {
        // [xauth] needs its user name before its unknown key is looked at.
        let extra = if table == "xauth" {
            "username = \"u\"\n"
        } else {
            ""
        };
        format!("{MINIMAL}\n[{table}]\n{extra}{unknown} = 1\n")
    };
    let err = parse(&text).err()?;
    if err.kind != ProfileErrorKind::UnknownKey {
        return None;
    }
    let msg = err.message;
    let expected = &msg[msg.find("expected")?..];
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{table}: no key list in {msg:?}");
    Some(keys)
}

/// Every key the parser knows, dotted, tables included (`network.dpd` and its keys).
fn parser_keys() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut todo = vec![String::new()];
    while let Some(table) = todo.pop() {
        let keys = keys_under(&table).unwrap_or_else(|| panic!("{table:?} is not a table"));
        for k in keys {
            let full = if table.is_empty() {
                k
            } else {
                format!("{table}.{k}")
            };
            if keys_under(&full).is_some() {
                todo.push(full.clone());
            }
            all.insert(full);
        }
    }
    all
}

/// The rows of the document's key tables: (key, default cell).
fn doc_rows() -> Vec<(String, String)> {
    doc()
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // "| `key` | default | values | what |" splits into ["", key, default, ...].
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
            {
                return None;
            }
            Some((key.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn every_example_parses() {
    let doc = doc();
    let mut n = 0;
    let mut rest = doc.as_str();
    // Profile examples are fenced "```toml"; other files' ("```toml policy.toml")
    // are not profiles.
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed code block");
        let text = &body[..end];
        if let Err(e) = parse(text) {
            panic!("example {} does not parse: {e}\n{text}", n + 1);
        }
        n += 1;
        rest = &body[end + 3..];
    }
    assert!(n >= 4, "only {n} TOML examples found");
}

#[test]
fn the_document_has_every_key_and_only_those() {
    let parser = parser_keys();
    // Sanity: the walk reached the nested tables.
    for k in [
        "name",
        "auth.psk",
        "network.dpd.interval",
        "network.retransmit.cap",
    ] {
        assert!(parser.contains(k), "the parser walk missed {k}: {parser:?}");
    }
    let rows = doc_rows();
    let mut documented: BTreeSet<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(rows.len(), documented.len(), "a key has two rows");
    // A section (`[auth]`, `[network]`, ...) is documented by its heading.
    let doc = doc();
    for k in &parser {
        if !k.contains('.') && keys_under(k).is_some() {
            assert!(
                doc.contains(&format!("\n## `[{k}]`")),
                "no section heading for [{k}] in docs/profile.md"
            );
            documented.insert(k.clone());
        }
    }
    let missing: Vec<_> = parser.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&parser).collect();
    assert!(
        missing.is_empty(),
        "keys without a row in docs/profile.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "rows for keys the parser does not know: {unknown:?}"
    );
}

#[test]
fn the_defaults_written_as_values_are_the_parsers() {
    let minimal = parse(MINIMAL).expect("minimal profile");
    let mut checked = 0;
    for (key, default) in doc_rows() {
        // A default cell that is one TOML value in backticks; prose defaults
        // ("keyring or prompt", "none") are not values.
        let Some(value) = default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else {
            continue;
        };
        if value.contains('`') {
            continue;
        }
        let text = with_key(&key, value);
        let p = parse(&text).unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
        assert_eq!(p, minimal, "{key} = {value} is not the default");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} defaults checked");
}
