//! Where rows go in Google: the spreadsheet, its tab(s), their header row and grid size,
//! and which cursor applies to them.
//!
//! The set-up reads the spreadsheet once (`spreadsheets.get`), creates a missing tab (with
//! the header frozen), refuses a tab that holds someone else's data, widens a narrow one,
//! writes the header, and settles the cursor. The grid is then tracked locally and grown
//! ahead of need; after an ambiguous failure of a grow it is read again.
//!
//! [`Target`] holds a list of tabs so that more than one tab can be fed from the same
//! spreadsheet; today the uploader writes to one (index 0, `sheets.tab`).

use serde_json::Value;

use crate::sink::csv::encode::{COLUMNS, HEADER};
use crate::sink::cursor::{self, Cursor};

use super::client::{self, quote_tab, ApiError, Spreadsheet, Tab};
use super::worker::{Stall, Worker};

/// The spreadsheet as the uploader knows it.
pub struct Target {
    /// The tabs written to, in a fixed order (index 0 is `sheets.tab`).
    pub tabs: Vec<Tab>,
    /// Cells of the whole workbook (what Google's cell limit counts).
    pub cells: u64,
    /// A grow may have been applied without our knowing: read the grid again.
    pub grid_stale: bool,
    /// Readable layouts: the spreadsheet's other tabs, as last read (a tab the daemon
    /// created but did not record yet is adopted from here; see `reconcile`).
    pub others: Vec<Tab>,
    /// Readable layouts: the ids of the charts the spreadsheet holds, as last read and
    /// kept up to date with every confirmed `addChart`.
    pub charts: Vec<i64>,
    /// The grid sizes were read from Google and nothing that changes them was sent
    /// since: they can be trusted without reading again.
    pub fresh: bool,
}

impl Target {
    /// The target as one `spreadsheets.get` describes it: `tabs` are the ones written to;
    /// every other tab goes to `others`.
    pub fn from_read(tabs: Vec<Tab>, sheet: &Spreadsheet) -> Target {
        let others = sheet
            .tabs
            .iter()
            .filter(|t| !tabs.iter().any(|o| o.title == t.title))
            .cloned()
            .collect();
        Target {
            tabs,
            cells: sheet.cells(),
            grid_stale: false,
            others,
            charts: sheet.charts.iter().map(|&(_, id)| id).collect(),
            fresh: true,
        }
    }
}

impl Worker {
    /// Token, spreadsheet, tab, header row, cursor: everything before the first batch.
    pub(super) fn set_up(&mut self) -> std::result::Result<(), Stall> {
        if self.cfg.layout != crate::sink::sheets::settings::SheetsLayout::Csv {
            return self.set_up_layout();
        }
        self.authenticate()?;
        let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
        let title = self.cfg.tab.clone();
        let Some(tab) = self.set_up_tab(&sheet, &title)? else {
            return Ok(()); // the grid changed: set up again with a fresh read
        };
        self.cursor = self.choose_cursor();
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        // For the dashboard's backlog and /readyz (issue 13).
        self.stats
            .sheets_rows_done
            .store(self.cursor.rows_done, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .sheets_cursor_known
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.source.reset(&self.cursor);
        log::info!(
            "Google Sheets ready: tab {title:?} of {:?} ({} rows x {} columns); {} CSV rows already in it, {} to upload.",
            sheet.title,
            tab.rows,
            tab.columns,
            self.cursor.rows_done - self.cursor.origin,
            self.source.backlog()
        );
        self.target = Some(Target::from_read(vec![tab], &sheet));
        self.check_cells();
        self.recovered();
        Ok(())
    }

    /// Makes sure tab `title` exists with sensorlog's header and enough columns;
    /// `None` when the grid changed and the spreadsheet must be read again.
    fn set_up_tab(&mut self, sheet: &Spreadsheet, title: &str) -> std::result::Result<Option<Tab>, Stall> {
        let quoted = quote_tab(title);
        let tab = match sheet.tab(title) {
            Some(tab) => {
                let probe = tab.clone();
                let first_row = self.call(move |c, t| {
                    let probe = probe.clone();
                    Box::pin(async move { c.first_row(t, &probe).await })
                })?;
                let ours = client::is_header(&first_row);
                let resumed = self
                    .saved
                    .as_ref()
                    .is_some_and(|c| c.spreadsheet_id == self.cfg.spreadsheet_id && c.tab == title);
                if !first_row.is_empty() && !ours && !resumed {
                    return Err(Stall::Operator(format!(
                        "tab {title:?} already holds other data (its first row is {:?}); choose another sheets.tab, or clear the tab",
                        first_row.join(",")
                    )));
                }
                if tab.columns < COLUMNS as u64 {
                    let (sheet_id, more) = (tab.sheet_id, COLUMNS as u64 - tab.columns);
                    self.call(move |c, t| Box::pin(c.grow(t, sheet_id, "COLUMNS", more)))?;
                    return Ok(None);
                }
                tab.clone()
            }
            None => {
                let rows = u64::from(self.cfg.grow_rows) + 1;
                let t2 = title.to_string();
                match self.call(move |c, t| {
                    let t2 = t2.clone();
                    Box::pin(async move { c.add_tab(t, &t2, rows, COLUMNS as u64, None).await })
                }) {
                    Ok(tab) => {
                        log::info!("Created tab {title:?} in spreadsheet {:?}.", sheet.title);
                        tab
                    }
                    // A lost reply to an applied addSheet: the tab exists now; look again.
                    Err(Stall::Api(ApiError::Status { code: 400, message, .. }))
                        if message.contains("already exists") =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.write_range(
            format!("{quoted}!A1:I1"),
            vec![HEADER.iter().map(|h| Value::from(*h)).collect()],
        )?;
        Ok(Some(tab))
    }

    /// Where to resume: the saved cursor (checked against the CSV at start) if it is for
    /// this target; a new target starts where the old one stopped; no cursor means the
    /// whole CSV.
    fn choose_cursor(&mut self) -> Cursor {
        let fresh = self.cursor.clone();
        let Some(saved) = self.saved.clone() else {
            return fresh;
        };
        if let Some(state) = &saved.layout {
            log::info!(
                "Sheets layout is now csv (the cursor was for layout {}): writing tab {:?} from the CSV's first row.",
                state.layout,
                self.cfg.tab
            );
            return fresh;
        }
        if saved.spreadsheet_id == self.cfg.spreadsheet_id && saved.tab == self.cfg.tab {
            return saved;
        }
        log::info!(
            "New Sheets target (was spreadsheet {} tab {:?}): it continues from CSV row {}.",
            saved.spreadsheet_id,
            saved.tab,
            saved.rows_done
        );
        Cursor {
            origin: saved.rows_done,
            sheet_rows_before: 0,
            spreadsheet_id: self.cfg.spreadsheet_id.clone(),
            tab: self.cfg.tab.clone(),
            ..saved
        }
    }

    /// Makes sure tab number `index` has at least `rows` rows, growing it (within the
    /// cell limit).
    pub(super) fn ensure_rows(&mut self, index: usize, rows: u64) -> std::result::Result<(), Stall> {
        if self.target.as_ref().is_some_and(|t| t.grid_stale) {
            self.reconcile()?;
        }
        let target = self.target.as_ref().expect("set up");
        let tab = &target.tabs[index];
        if tab.rows >= rows {
            return Ok(());
        }
        let need = rows - tab.rows;
        let columns = tab.columns.max(1);
        let room = self.cfg.max_cells.saturating_sub(target.cells) / columns;
        let grow = need.max(u64::from(self.cfg.grow_rows)).min(room);
        if grow < need {
            let used = target.cells;
            self.target.as_mut().expect("set up").grid_stale = true;
            return Err(Stall::Operator(format!(
                "spreadsheet {} is full: {used} of Google's {} cells are used (sheets.max_cells). Rows keep going to the CSV; point sheets.spreadsheet at a new spreadsheet to continue",
                self.cfg.spreadsheet_id, self.cfg.max_cells
            )));
        }
        let (sheet_id, title) = (tab.sheet_id, tab.title.clone());
        self.target.as_mut().expect("set up").fresh = false;
        match self.call(move |c, t| Box::pin(c.grow(t, sheet_id, "ROWS", grow))) {
            Ok(()) => {
                let target = self.target.as_mut().expect("set up");
                target.tabs[index].rows += grow;
                target.cells += grow * columns;
                log::debug!("Grew tab {title:?} by {grow} rows to {}.", target.tabs[index].rows);
                self.check_cells();
                Ok(())
            }
            Err(e) => {
                // It may have been applied: read the grid size again before anything else.
                self.target.as_mut().expect("set up").grid_stale = true;
                Err(e)
            }
        }
    }

    pub(super) fn check_cells(&mut self) {
        let Some(t) = &self.target else { return };
        let pct = t.cells * 100 / self.cfg.max_cells.max(1);
        let warn_at = u64::from(self.cfg.warn_cells_percent);
        if pct >= warn_at && pct >= self.warned_cells_pct + 5 {
            self.warned_cells_pct = pct;
            log::warn!(
                "Spreadsheet {} uses {} of {} cells ({pct}%, sheets.max_cells). At the limit uploading stops (the CSV keeps everything): plan a new spreadsheet and point sheets.spreadsheet at it.",
                self.cfg.spreadsheet_id,
                t.cells,
                self.cfg.max_cells
            );
        }
    }
}
