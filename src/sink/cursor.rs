//! The uploader's ledger: how far the sheet has caught up with the CSV.
//!
//! # Design
//!
//! Exactly-once upload rests on this file, not on memory (Vector's disk-buffer ledger).
//! It records the number of CSV data rows confirmed in the sheet (`rows_done`) and the
//! byte offset in the CSV where the next row starts (`offset_done`), so that after a
//! restart the uploader seeks straight to the first row not yet confirmed.
//!
//! The mapping from CSV rows to sheet rows is fixed by `origin`: CSV row `n` goes to
//! sheet row `n - origin + 2` (row 1 is the header). Because every row has a fixed home,
//! a write can be repeated safely: a retry after a lost response, or a re-send after a
//! crash between a write and the save of this file, rewrites the same cells with the
//! same values. `origin` is 0 for a sheet that mirrors the whole CSV; when the daemon is
//! pointed at a new spreadsheet or tab (e.g. the old one is full), the new target starts
//! where the old one stopped.
//!
//! Since issue 9 it also records the identity of the last confirmed row (`last_row`: its
//! start offset and a hash of its bytes). At start-up, before any board is accepted, the
//! uploader checks that the cursor still lands on that row in the CSV (a power cut, a
//! restored backup or a replaced file can make it lie) and otherwise looks for the right
//! place (`sheets::source::verify_cursor`). Files written before that have no `last_row`;
//! they are read as before, checked against the CSV the same way, and rewritten with it.
//!
//! After a rotation of the CSV the position restarts in the new file, which `file`
//! names by its first data row; in the `csv` layout `sheet_rows_before` counts the sheet
//! rows the earlier files fill, so CSV row `n` of the new file goes to sheet row
//! `n - origin + sheet_rows_before + 2` (see `sheets::rotation`).
//!
//! The file is replaced atomically: written to a temporary file, fsynced, renamed over
//! the old one, and the directory fsynced, so a crash leaves either the old or the new
//! cursor, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The spreadsheet and tab this progress refers to.
    pub spreadsheet_id: String,
    pub tab: String,
    /// CSV row (0-based, header excluded) that lands on sheet row 2.
    pub origin: u64,
    /// CSV rows confirmed in the sheet (rows `0..rows_done`, of which `origin..` are in this tab).
    pub rows_done: u64,
    /// Byte offset in the CSV where row `rows_done` starts.
    pub offset_done: u64,
    /// The last confirmed row (row `rows_done - 1`); `None` before any row or in a file
    /// from before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_row: Option<RowId>,
    /// The `per-device`/`single` layouts' tabs, columns and next rows (issue 10), which
    /// must be saved atomically with the CSV position; `None` in the `csv` layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<crate::sink::sheets::layout::State>,
    /// Which CSV file the position is in: its first data row (offset and hash), recorded
    /// when that row is confirmed. A CSV at the path whose first row differs is another
    /// file (rotated while the daemon was stopped): it continues after this one's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<RowId>,
    /// `csv` layout: sheet data rows that earlier CSV files (rotated away) fill before
    /// this file's rows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sheet_rows_before: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Which row of the CSV a cursor stands on: where it starts and what its bytes hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowId {
    /// Byte offset of the row's first byte; the row ends at the cursor's `offset_done`.
    pub offset: u64,
    /// [`row_hash`] of the row's bytes, newline included.
    pub fnv1a64: String,
}

/// A row's identity hash as the cursor file keeps it: 16 hex digits of
/// [`crate::sink::follower::rows::row_hash`].
pub fn row_hash(bytes: &[u8]) -> String {
    crate::sink::follower::rows::row_hash_hex(bytes)
}

impl Cursor {
    /// The 1-based sheet row of CSV row `csv_row`.
    pub fn sheet_row(&self, csv_row: u64) -> u64 {
        csv_row - self.origin + self.sheet_rows_before + 2
    }
}

#[derive(Debug)]
pub struct CursorError {
    pub path: PathBuf,
    pub action: &'static str,
    pub reason: String,
}

impl std::fmt::Display for CursorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot {} the Sheets cursor file {}: {}",
            self.action,
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for CursorError {}

/// Reads the cursor; `Ok(None)` if the file does not exist yet.
pub fn load(path: &Path) -> Result<Option<Cursor>, CursorError> {
    let text = match crate::small_file::read_to_string(path, crate::small_file::MAX_SECRET_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CursorError {
                path: path.to_path_buf(),
                action: "read",
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| CursorError {
        path: path.to_path_buf(),
        action: "parse",
        reason: format!("{e} (delete the file to upload the whole CSV again)"),
    })
}

/// Replaces the cursor file atomically (temp file, fsync, rename, fsync the directory).
pub fn save(path: &Path, cursor: &Cursor) -> Result<(), CursorError> {
    let err = |action: &'static str| {
        move |e: std::io::Error| CursorError {
            path: path.to_path_buf(),
            action,
            reason: e.to_string(),
        }
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut json = serde_json::to_vec_pretty(cursor).expect("a cursor always serializes");
    json.push(b'\n');
    let mut f = File::create(&tmp).map_err(err("create"))?;
    f.write_all(&json).map_err(err("write"))?;
    f.sync_all().map_err(err("fsync"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err("replace"))?;
    if let Some(dir) = path.parent() {
        crate::sink::csv::sync_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_and_missing_file() {
        let dir = crate::scratch_dir("cursor");
        let p = dir.join("c.json");
        let _ = std::fs::remove_file(&p);
        assert_eq!(load(&p).unwrap(), None);
        let c = Cursor {
            spreadsheet_id: "s".into(),
            tab: "Readings".into(),
            origin: 10,
            rows_done: 15,
            offset_done: 999,
            last_row: Some(RowId {
                offset: 990,
                fnv1a64: row_hash(b"a,b\n"),
            }),
            layout: None,
            file: None,
            sheet_rows_before: 0,
        };
        save(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c.clone()));
        assert_eq!(c.sheet_row(10), 2);
        assert_eq!(c.sheet_row(15), 7);
        // A file from before `last_row` still loads.
        std::fs::write(
            &p,
            r#"{"spreadsheet_id":"s","tab":"Readings","origin":0,"rows_done":3,"offset_done":120}"#,
        )
        .unwrap();
        assert_eq!(load(&p).unwrap().unwrap().last_row, None);
        assert_eq!(row_hash(b""), "cbf29ce484222325");
        std::fs::write(&p, "{not json").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("delete the file"));
    }
}
