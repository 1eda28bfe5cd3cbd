//! docs/troubleshooting.md has a section for every kind of failure, under the headline
//! the app and the CLI show (`explain`), with the kind's wire name and its exit code:
//! a new `FailureKind` cannot ship without its section.

use postern_frontend::FailureKind;
use postern_frontend::explain::explain;

fn doc() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text of the `## heading` section, up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let start = doc.find(&format!("\n## {heading}\n"))? + 1;
    let body = &doc[start..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    Some(&body[..end])
}

#[test]
fn every_failure_kind_has_its_section() {
    let doc = doc();
    for kind in FailureKind::ALL {
        let e = explain(kind);
        let s = section(&doc, e.headline)
            .unwrap_or_else(|| panic!("no section \"## {}\" ({kind})", e.headline));
        let tag = format!("`{}`, exit code {}.", kind.as_str(), kind.exit_code());
        assert!(s.contains(&tag), "section {:?} lacks {tag:?}", e.headline);
        assert!(
            s.lines().filter(|l| l.starts_with("- ")).count() >= 1,
            "section {:?} has nothing to check",
            e.headline
        );
    }
}

#[test]
fn no_section_for_a_failure_that_does_not_exist() {
    let doc = doc();
    let headlines: Vec<&str> = FailureKind::ALL
        .iter()
        .map(|k| explain(*k).headline)
        .collect();
    for line in doc.lines().filter_map(|l| l.strip_prefix("## ")) {
        if line == "Collecting diagnostics" {
            continue;
        }
        assert!(
            headlines.contains(&line),
            "section {line:?} is no failure's headline"
        );
    }
}
