//! Sheets set-up shared by the Sheets tests and the Sheets benches: a fake Google with
//! one spreadsheet, a `[sheets]` config pointing at it, and what both read back (the
//! cursor's row count, the requests to the first values write, the grid cells).

use std::path::{Path, PathBuf};

use super::fake_google::{FakeGoogle, RequestKind, DEFAULT_ACCOUNT, TEST_KEY_PEM};
use super::TestDir;

/// A fake Google holding `sheet`, shared with the default account; with `quota`, that
/// many writes and reads a minute.
pub fn fake_with(sheet: &str, quota: Option<u32>) -> FakeGoogle {
    let fake = FakeGoogle::start();
    fake.add_spreadsheet(sheet, &[DEFAULT_ACCOUNT]);
    if let Some(q) = quota {
        fake.rules(|r| (r.write_quota, r.read_quota) = (q, q));
    }
    fake
}

/// Writes `dir/key.json` (once) and `dir/sensorlog.toml` with a `[sheets]` section for
/// `sheet` at `fake`: `defaults` then `extra`, both `key = value` lines, a key in `extra`
/// replacing the same key in `defaults`.
pub fn config(dir: &TestDir, fake: &FakeGoogle, sheet: &str, defaults: &str, extra: &str) -> PathBuf {
    let key = dir.join("key.json");
    if !key.exists() {
        fake.write_key_file(&key, DEFAULT_ACCOUNT, TEST_KEY_PEM);
    }
    let mut keys: Vec<(String, String)> = vec![
        ("key_file".into(), format!("{:?}", key.display().to_string())),
        ("spreadsheet".into(), format!("{sheet:?}")),
        ("api_base_url".into(), format!("{:?}", fake.base_url())),
    ];
    for line in defaults.lines().chain(extra.lines()).filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').expect("key = value");
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        match keys.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => keys.push((k, v)),
        }
    }
    let body: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    dir.write("sensorlog.toml", &format!("[sheets]\n{body}"))
}

/// Rows the Sheets cursor of the CSV at `csv` says are done (0 before there is one).
pub fn cursor_rows(csv: &Path) -> u64 {
    std::fs::read_to_string(format!("{}.sheets-cursor.json", csv.display()))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("rows_done").and_then(|r| r.as_u64()))
        .unwrap_or(0)
}

/// Sheets requests (tokens aside) from log entry `mark` up to and including the first
/// values write Google applied; `None` when there is none.
pub fn requests_to_first_write(fake: &FakeGoogle, mark: usize) -> Option<usize> {
    let mut n = 0;
    for r in fake.requests().iter().skip(mark) {
        if r.kind == RequestKind::Token {
            continue;
        }
        n += 1;
        if r.kind == RequestKind::ValuesBatchUpdate && r.status == Some(200) {
            return Some(n);
        }
    }
    None
}

/// Cells of the whole spreadsheet as the fake counts them (every tab's grid).
pub fn cells(fake: &FakeGoogle, sheet: &str) -> u64 {
    fake.tabs(sheet)
        .expect("the spreadsheet exists")
        .iter()
        .filter_map(|t| fake.grid(sheet, t))
        .map(|(r, c, _)| u64::from(r) * u64::from(c))
        .sum()
}
