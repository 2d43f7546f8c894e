//! The uploader following the CSV through rotation (logrotate, a deleted file, SIGHUP).
//!
//! The source keeps reading the rotated file through the handle it holds
//! ([`crate::sink::follower`], shared with the PostgreSQL sink) until every durable row of
//! it is confirmed in the sheet; then the cursor moves to the new file's first data row,
//! and the sheet goes on after the old file's rows: in the readable layouts each board's
//! tab simply continues (the layout state is kept), in the `csv` layout the new file's
//! rows follow the old ones (`Cursor::sheet_rows_before`). The cursor names its file by
//! its first data row, recorded once that row is confirmed, so a restart can tell the
//! new file from the old one. Exactly once and in order across the switch: the move is
//! one atomic cursor save, after the old file's last confirmation.

use crate::sink::cursor;
use crate::sink::sheets::settings::SheetsLayout;

use super::worker::{Stall, Worker};
use crate::sink::follower::rows::header_len;

impl Worker {
    /// Every row of the rotated file is in the sheet: continue with the new file.
    pub(super) fn follow_rotation(&mut self) -> std::result::Result<(), Stall> {
        let old_rows = self.cursor.rows_done;
        let skipped = self.source.switch_file().map_err(Stall::Operator)?;
        if skipped > 0 {
            log::error!(
                "{} was replaced {} times while the Sheets upload was behind; the rows of the {skipped} files in between are not in the sheet (they are in the moved files).",
                self.sink.path().display(),
                skipped + 1
            );
        }
        if self.cfg.layout == SheetsLayout::Csv {
            self.cursor.sheet_rows_before += old_rows.saturating_sub(self.cursor.origin);
            self.cursor.origin = 0;
        }
        self.cursor.rows_done = 0;
        self.cursor.offset_done = header_len();
        self.cursor.last_row = None;
        self.cursor.file = None;
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        log::info!(
            "{} was rotated: all {old_rows} of its rows are in Google Sheets; continuing with the new file from its first row.",
            self.sink.path().display()
        );
        Ok(())
    }
}
