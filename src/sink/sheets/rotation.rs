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

use crate::sink::cursor::Cursor;
use crate::sink::follower::rows::header_len;

/// Every row of the rotated file is in the sheet: `cursor` moves to the new file's first
/// data row (the uploader saves it, in one atomic write). In the `csv` layout
/// (`csv_layout`) the new file's rows follow the old ones in the tab.
pub fn to_new_file(cursor: &mut Cursor, csv_layout: bool) {
    if csv_layout {
        cursor.sheet_rows_before += cursor.rows_done.saturating_sub(cursor.origin);
        cursor.origin = 0;
    }
    cursor.rows_done = 0;
    cursor.offset_done = header_len();
    cursor.last_row = None;
    cursor.file = None;
}
