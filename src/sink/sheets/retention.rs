//! Retention for the readable layouts: the spreadsheet never fills up.
//!
//! Google allows `sheets.max_cells` (10 million) cells per spreadsheet, counted over
//! every tab's grid. Before a batch would grow the grid past `sheets.cell_budget_percent`
//! of that, the oldest rows are deleted (`deleteDimension`), from the tab whose row 2 is
//! oldest first, until the growth fits; with `sheets.keep_days` set, rows older than that
//! are deleted from every board tab (checked at most once a minute). The CSV keeps
//! everything. The cell count is the sum of the grid sizes `spreadsheets.get` reported,
//! kept up to date with every grow and delete.
//!
//! # A delete is not idempotent
//!
//! Repeating a `deleteDimension` whose reply was lost would delete rows twice. So before
//! sending it, the uploader reads the tab's grid size (`spreadsheets.get`) and saves, in
//! the cursor file, the delete it is about to do with that row count. Until the delete is
//! confirmed nothing else is written to the spreadsheet (no grow, no values); after a
//! failure or a restart the grid size is read again: fewer by the count means it was
//! applied, unchanged that it was not (it is sent again), anything else stops the upload
//! with an ERROR rather than guess. (Row contents cannot tell: readings of one TCP read
//! share their `received_at`, and two readings can hold the same values.) The rows kept
//! move up, so the tab's next row moves up by the count, in the same cursor save that
//! clears the pending delete.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::settings::SheetsConfig;
use crate::sink::cursor::{self, Cursor};

use super::client::quote_tab;
use super::google::{Google, Stall};
use super::layout::{PendingDelete, Plan};
use super::target::Target;

/// What [`Retention::fit_budget`] did.
pub enum Fit {
    /// The plan's growth fits the budget.
    Fits,
    /// Oldest rows were deleted: plan again.
    Deleted,
    /// Every board tab is down to its newest reading and it still does not fit.
    Full { want: u64, budget: u64 },
}

/// Why the oldest rows of a tab are deleted (said in the INFO line).
enum Why {
    /// To fit the cell budget; `newer_coming`: the batch being planned holds a newer
    /// reading of the tab, which takes row 2 then (so its latest row may go too).
    Budget { newer_coming: bool },
    /// Older than `sheets.keep_days`.
    KeepDays,
}

/// Most rows read (and deleted) at a time for `sheets.keep_days`.
const KEEP_DAYS_CHUNK: u64 = 10_000;
/// How often `sheets.keep_days` is checked.
const KEEP_DAYS_EVERY: Duration = Duration::from_secs(60);

/// Retention's own state: when `sheets.keep_days` was last applied. The deletes it makes
/// are recorded in the cursor's layout state (`PendingDelete`, the tabs' rows), which the
/// uploader hands to each call with the grid (`Target`) and the line to Google.
pub struct Retention {
    cfg: Arc<SheetsConfig>,
    kept_at: Option<Instant>,
}

impl Retention {
    pub fn new(cfg: Arc<SheetsConfig>) -> Retention {
        Retention { cfg, kept_at: None }
    }

    /// A delete left pending by a failure or a crash: find out whether it was applied.
    pub fn resolve_pending_delete(
        &self,
        google: &mut Google,
        target: &mut Target,
        cursor: &mut Cursor,
    ) -> Result<(), Stall> {
        let Some(p) = cursor.layout.as_ref().and_then(|s| s.pending_delete.clone()) else {
            return Ok(());
        };
        let title = cursor.layout.as_ref().expect("some").pending_title(&p);
        let rows = target.grid_rows(google, &title)?;
        if rows + p.rows == p.grid_rows {
            return self.finish_delete(target, cursor, &p, false); // the grid just read is after the delete
        }
        if rows == p.grid_rows {
            return self.send_delete(google, target, cursor, &p);
        }
        Err(Stall::Operator(format!(
            "cannot tell whether {} rows of tab {title:?} were deleted: it has {rows} rows, neither {} (before) nor {} (after); check the tab, then delete {} to upload the whole CSV again",
            p.rows,
            p.grid_rows,
            p.grid_rows - p.rows,
            self.cfg.cursor_file.display()
        )))
    }

    /// Deletes the `rows` oldest data rows of tab `t`; `false` when nothing could be
    /// deleted. The row of its latest reading is kept, unless a newer reading of the tab
    /// is coming (`Why::Budget { newer_coming }`).
    fn delete_oldest(
        &self,
        google: &mut Google,
        target: &mut Target,
        cursor: &mut Cursor,
        (t, rows): (usize, u64),
        why: Why,
    ) -> Result<bool, Stall> {
        let newer_coming = matches!(why, Why::Budget { newer_coming: true });
        let why = match why {
            Why::Budget { .. } => format!(
                "to keep the spreadsheet under {}% of {} cells (sheets.cell_budget_percent)",
                self.cfg.cell_budget_percent, self.cfg.max_cells
            ),
            Why::KeepDays => format!("older than {} days (sheets.keep_days)", self.cfg.keep_days),
        };
        let state = cursor.layout.as_ref().expect("layout");
        let tab = &state.tabs[t];
        let deletable = tab.next_row.saturating_sub(if newer_coming { 2 } else { 3 });
        let k = rows.min(deletable);
        if k == 0 {
            return Ok(false);
        }
        let title = tab.title.clone();
        let after = if 2 + k >= tab.next_row {
            String::new() // every reading goes: row 2 will be the batch's newer one
        } else {
            read_column(google, &title, 2 + k, 2 + k)?.pop().unwrap_or_default()
        };
        let grid_rows = target.grid_rows(google, &title)?;
        let p = PendingDelete {
            tab: t,
            title: title.clone(),
            rows: k,
            grid_rows,
            after,
        };
        cursor.layout.as_mut().expect("layout").pending_delete = Some(p.clone());
        cursor::save(&self.cfg.cursor_file, cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        log::info!(
            "Deleting the {k} oldest rows of tab {title:?} (readings before {}) {why}; the CSV keeps them.",
            p.after
        );
        self.send_delete(google, target, cursor, &p).map(|()| true)
    }

    fn send_delete(
        &self,
        google: &mut Google,
        target: &mut Target,
        cursor: &mut Cursor,
        p: &PendingDelete,
    ) -> Result<(), Stall> {
        let title = cursor.layout.as_ref().expect("layout").pending_title(p);
        target.delete_rows(google, &title, p.rows)?;
        self.finish_delete(target, cursor, p, true)
    }

    /// The delete is applied: move the tab's rows up in the cursor (and in the tracked
    /// grid, unless `shrink_grid` is false because it was just read from Google).
    fn finish_delete(
        &self,
        target: &mut Target,
        cursor: &mut Cursor,
        p: &PendingDelete,
        shrink_grid: bool,
    ) -> Result<(), Stall> {
        let state = cursor.layout.as_mut().expect("layout");
        let title = state.pending_title(p);
        match state.tabs.iter_mut().find(|t| t.title == title) {
            Some(tab) => {
                tab.next_row -= p.rows;
                tab.deleted += p.rows;
                tab.oldest = p.after.clone();
                if tab.next_row <= 2 {
                    // The latest reading's row went too: more of its cells start a row.
                    tab.last = None;
                }
            }
            // A replay that has not met the tab yet: it drops that many more readings.
            None => *state.replay_skip.entry(title.clone()).or_default() += p.rows,
        }
        state.pending_delete = None;
        cursor::save(&self.cfg.cursor_file, cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        if shrink_grid {
            target.rows_deleted(&title, p.rows);
        }
        Ok(())
    }

    /// Deletes oldest rows until `plan`'s growth fits the cell budget: one delete per
    /// call; after [`Fit::Deleted`] the plan must be made again (the next rows moved up).
    pub fn fit_budget(
        &self,
        google: &mut Google,
        target: &mut Target,
        cursor: &mut Cursor,
        plan: &Plan,
    ) -> Result<Fit, Stall> {
        target.read_if_stale(google)?;
        let budget = target.budget();
        let cells = target.cells();
        let state = cursor.layout.as_ref().expect("layout");
        // The least growth: rows ahead of need are only taken where the budget leaves
        // room. Unused grid rows are given back first (in the batch's `batchUpdate`).
        let (growth, spare) = target.growth(plan, state);
        let need = (cells + growth).saturating_sub(budget).saturating_sub(spare);
        log::debug!("Cell budget: {cells} cells, {growth} to grow, {spare} spare, budget {budget}.");
        if need == 0 {
            return Ok(Fit::Fits);
        }
        // A tab down to its latest reading may give that row too when this batch holds a
        // newer reading of it (which then takes row 2): a full spreadsheet still moves on.
        let newer = |i: usize| {
            plan.state
                .tabs
                .get(i)
                .zip(state.tabs.get(i))
                .is_some_and(|(p, s)| p.title == s.title && p.next_row > s.next_row)
        };
        let Some(t) = state
            .tabs
            .iter()
            .enumerate()
            .filter(|(i, t)| !t.oldest.is_empty() && (t.next_row > 3 || (t.next_row == 3 && newer(*i))))
            .min_by(|a, b| a.1.oldest.cmp(&b.1.oldest))
            .map(|(i, _)| i)
        else {
            return Ok(Fit::Full {
                want: cells + growth,
                budget,
            });
        };
        let columns = target.columns(&state.tabs[t].title);
        // A chunk at a time (fewer deletes), but never most of a small spreadsheet at once.
        let chunk = u64::from(self.cfg.grow_rows).min(budget / columns / 10);
        let rows = need.div_ceil(columns).max(chunk);
        // Only a tab down to one reading gives its latest row (others keep it, as ever).
        let why = Why::Budget {
            newer_coming: state.tabs[t].next_row == 3 && newer(t),
        };
        Ok(if self.delete_oldest(google, target, cursor, (t, rows), why)? {
            Fit::Deleted
        } else {
            Fit::Full {
                want: cells + growth,
                budget,
            }
        })
    }

    /// `sheets.keep_days`: deletes rows older than that from every board tab.
    pub fn keep_days(&mut self, google: &mut Google, target: &mut Target, cursor: &mut Cursor) -> Result<(), Stall> {
        if self.cfg.keep_days == 0 || self.kept_at.is_some_and(|t| t.elapsed() < KEEP_DAYS_EVERY) {
            return Ok(());
        }
        let cutoff = crate::sink::csv::encode::rfc3339_millis(
            SystemTime::now() - Duration::from_secs(u64::from(self.cfg.keep_days) * 86_400),
        );
        let n = cursor.layout.as_ref().map_or(0, |s| s.tabs.len());
        if n == 0 {
            return Ok(()); // nothing written yet: check at the next batch
        }
        for t in 0..n {
            let tab = &cursor.layout.as_ref().expect("layout").tabs[t];
            if tab.oldest.is_empty() || tab.oldest >= cutoff || tab.next_row <= 3 {
                continue;
            }
            let title = tab.title.clone();
            let last = 2 + KEEP_DAYS_CHUNK.min(tab.next_row - 3);
            let col = read_column(google, &title, 2, last)?;
            let old = col.iter().take_while(|v| **v < cutoff).count() as u64;
            self.delete_oldest(google, target, cursor, (t, old), Why::KeepDays)?;
        }
        self.kept_at = Some(Instant::now());
        Ok(())
    }
}

/// Every board tab is down to its newest reading and the batch still does not fit:
/// one ERROR (a minute apart at most) naming the boards whose readings wait.
pub fn cannot_fit(waiting: &[String], tabs: usize, want: u64, budget: u64) {
    super::refusals::log_once_a_minute("cannot fit", || {
        log::error!(
            "The spreadsheet cannot hold the newest reading of every board: {tabs} tabs need {want} cells, the budget is {budget} (sheets.cell_budget_percent of sheets.max_cells) and every board tab is down to its newest reading. {}. Raise sheets.max_cells if Google allows it, or point sheets.spreadsheet at a new spreadsheet; the CSV keeps every reading.",
            if waiting.is_empty() {
                "No board can be held back".to_string()
            } else {
                format!("Boards {waiting:?} wait (their readings stay in the CSV; they go to the sheet from the first batch with room); the other boards go on")
            }
        )
    });
}

/// Column A of rows `from..=to` of a tab, as text.
fn read_column(google: &mut Google, title: &str, from: u64, to: u64) -> Result<Vec<String>, Stall> {
    let rows = google.read(format!("{}!A{from}:A{to}", quote_tab(title)))?;
    Ok(rows
        .iter()
        .map(|r| match r.first() {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect())
}
