//! One definition per config key: the raw structs the parser uses are the list of keys
//! (`sensorlog::settings::accepted_keys`), and the documentation is held against them.
//! A key accepted but undocumented, documented but refused, or documented with another
//! default than the code's fails here.

use std::collections::{BTreeMap, BTreeSet};

use sensorlog::cli::ServeArgs;
use sensorlog::config::{self, Config, FileConfig};
use sensorlog::settings::accepted_keys;

use crate::util::TestDir;

/// The rows of the configuration reference tables (`| key | default | meaning |`) in the
/// README and in docs/: key -> default cell, as written.
fn documented() -> BTreeMap<String, String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    if let Ok(dir) = std::fs::read_dir(format!("{root}/docs")) {
        files.extend(dir.flatten().map(|e| e.path().display().to_string()));
    }
    let mut rows = BTreeMap::new();
    for f in files.iter().filter(|f| f.ends_with(".md")) {
        let text = std::fs::read_to_string(f).unwrap();
        let mut in_table = false;
        for line in text.lines() {
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            let cells = split_row(line);
            if cells.first().map(String::as_str) == Some("key") && cells.get(1).map(String::as_str) == Some("default") {
                in_table = true;
                continue;
            }
            if !in_table || cells.len() < 3 || cells[0].starts_with("--") {
                continue;
            }
            let key = cells[0].trim_matches('`').to_string();
            let before = rows.insert(key.clone(), cells[1].clone());
            assert!(before.is_none(), "{key} is documented twice ({f})");
        }
    }
    rows
}

/// A Markdown table row's cells, trimmed (`\|` is a `|` inside a cell).
fn split_row(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut chars = line.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'|') {
            chars.next();
            cells.last_mut().unwrap().push('|');
        } else if c == '|' {
            cells.push(String::new());
        } else {
            cells.last_mut().unwrap().push(c);
        }
    }
    if cells.last().is_some_and(|c| c.trim().is_empty()) {
        cells.pop(); // after the closing `|`
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A default cell that is one literal value (`` `4096` ``, `` `per-device` ``) as a TOML
/// value; `None` for a default described in words or computed from other keys
/// ("none", "on if `key_file` is set", `` `<csv>.sheets-cursor.json` ``).
fn literal(cell: &str) -> Option<String> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    if inner.contains('`') || inner.contains('<') {
        return None;
    }
    let as_toml = format!("v = {inner}");
    Some(if toml::from_str::<toml::Table>(&as_toml).is_ok() {
        inner.to_string()
    } else {
        format!("{inner:?}")
    })
}

#[test]
fn every_accepted_key_is_documented_and_every_documented_key_accepted() {
    let accepted: Vec<String> = accepted_keys::<FileConfig>();
    assert!(accepted.len() > 50, "the walk found the keys: {accepted:?}");
    let accepted_set: BTreeSet<&str> = accepted.iter().map(String::as_str).collect();
    let docs = documented();
    let documented: BTreeSet<&str> = docs.keys().map(String::as_str).collect();
    let undocumented: Vec<&&str> = accepted_set.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "accepted but not in the reference table: {undocumented:?}"
    );
    let refused: Vec<&&str> = documented.difference(&accepted_set).collect();
    assert!(refused.is_empty(), "documented but refused by the parser: {refused:?}");
    // And the parser really takes each one, with its documented default when it is a value.
    for (key, cell) in &docs {
        let (section, name) = key.split_once('.').unwrap();
        let value = literal(cell).unwrap_or_else(|| "\"x\"".into());
        let text = format!("[{section}]\n{name} = {value}\n");
        if let Err(e) = config::parse_file(&text) {
            assert!(
                !e.reason.contains("unknown field"),
                "{key} is documented but refused: {e}"
            );
        }
    }
}

#[test]
fn documented_defaults_are_the_real_ones() {
    let dir = TestDir::new("config-defaults");
    let key = dir.join("k.json");
    std::fs::write(
        &key,
        r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#,
    )
    .unwrap();
    // The sections that are off by default are switched on, so their defaults count
    // (TLS with files given, so that `tls.self_signed`'s default is checked too).
    let base: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        (
            "sheets",
            vec![
                format!("key_file = {:?}", key.display().to_string()),
                "spreadsheet = \"abc\"".into(),
            ],
        ),
        ("postgres", vec!["url = \"postgresql://u@127.0.0.1:5432/db\"".into()]),
        (
            "tls",
            vec![
                "listen = \"127.0.0.1:8443\"".into(),
                "cert_file = \"c.pem\"".into(),
                "key_file = \"k.pem\"".into(),
            ],
        ),
    ]);
    let render = |sections: &BTreeMap<&str, Vec<String>>| {
        sections
            .iter()
            .map(|(s, lines)| format!("[{s}]\n{}\n", lines.join("\n")))
            .collect::<String>()
    };
    let build = |text: &str| -> Config {
        let file = config::parse_file(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        Config::build(file, &ServeArgs::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let plain = format!("{:?}", build(&render(&base)));
    assert!(
        ["PostgresConfig", "SheetsConfig", "TlsConfig"]
            .iter()
            .all(|on| plain.contains(on)),
        "{plain}"
    );
    let mut checked = 0;
    for (key, cell) in documented() {
        let Some(value) = literal(&cell) else { continue };
        let (section, name) = key.split_once('.').unwrap();
        let mut sections = base.clone();
        sections.entry(section).or_default().push(format!("{name} = {value}"));
        let text = render(&sections);
        assert_eq!(
            format!("{:?}", build(&text)),
            plain,
            "{key}: the documented default {cell} is not the real one"
        );
        checked += 1;
    }
    assert!(checked > 50, "only {checked} defaults were values");
}
