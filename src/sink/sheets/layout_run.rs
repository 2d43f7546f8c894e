//! The uploader's side of the `per-device` and `single` layouts ([`Layouts`]): the
//! layout's shape, the cursor it resumes, and each batch planned, fitted to the cell
//! budget (with `retention`), given its tabs and grid (by `target`) and sent as one
//! multi-range `values:batchUpdate`; the new layout [`State`] goes into the cursor, which
//! the uploader saves when it confirms the rows. The overview tab is kept current between
//! batches (`overview`). The cells themselves come from
//! [`layout::plan`], a pure function; see that module for why this
//! is exactly once.
//!
//! Tabs, rows, columns and charts a batch needs go up in one `batchUpdate` decided by
//! what the spreadsheet holds (see `reconcile`): a tab or chart whose reply was
//! lost is recognised by its title and the id the daemon chose, and adopted.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::settings::{SheetsConfig, SheetsLayout};
use crate::sink::csv::encode::Row;
use crate::sink::cursor::Cursor;
use crate::sink::follower::rows::header_len;

use super::google::{refused, Google, Stall};
use super::layout::{self, Shape, State};
use super::narrow::Narrow;
use super::oauth::trim_period;
use super::overview::{Overview, Refresh};
use super::retention::{self, Fit, Retention};
use super::target::Target;

/// A readable layout: its shape, its retention and its overview tab.
pub struct Layouts {
    cfg: Arc<SheetsConfig>,
    shape: Shape,
    retention: Retention,
    overview: Overview,
}

impl Layouts {
    pub fn new(cfg: Arc<SheetsConfig>) -> Layouts {
        Layouts {
            shape: Shape {
                per_device: cfg.layout == SheetsLayout::PerDevice,
                overview: cfg.overview_tab.clone(),
                csv_tab: cfg.tab.clone(),
                max_board_tabs: cfg.max_board_tabs as usize,
                silent_factor: cfg.silent_factor,
                min_silent_ms: cfg.min_silent.as_millis() as i64,
            },
            retention: Retention::new(Arc::clone(&cfg)),
            overview: Overview::new(Arc::clone(&cfg)),
            cfg,
        }
    }

    /// `per-device` or `single`.
    pub fn name(&self) -> &'static str {
        self.shape.name()
    }

    /// Resumes `saved` if it is of this spreadsheet and layout; anything else starts over
    /// from the CSV's first row (the CSV's retained window, `csv_rows` rows) into the new
    /// layout's tabs.
    pub fn choose_cursor(&self, saved: Option<&Cursor>, csv_rows: u64) -> Cursor {
        let fresh = Cursor {
            spreadsheet_id: self.cfg.spreadsheet_id.clone(),
            tab: String::new(),
            origin: 0,
            rows_done: 0,
            offset_done: header_len(),
            last_row: None,
            layout: Some(State {
                layout: self.shape.name().to_string(),
                ..State::default()
            }),
            file: None,
            sheet_rows_before: 0,
        };
        let Some(saved) = saved else {
            return fresh;
        };
        let saved_layout = saved.layout.as_ref().map_or("csv", |s| s.layout.as_str());
        if saved.spreadsheet_id == self.cfg.spreadsheet_id && saved_layout == self.shape.name() {
            return saved.clone();
        }
        log::info!(
            "Sheets layout is now {} (the cursor was for layout {saved_layout} in spreadsheet {}): writing the new tabs from the CSV's first row; {csv_rows} rows to upload.",
            self.shape.name(),
            saved.spreadsheet_id,
        );
        fresh
    }

    /// Rewrites the overview between batches when it is due (see `overview`).
    pub fn refresh_overview(
        &mut self,
        google: &mut Google,
        target: &mut Target,
        cursor: &Cursor,
    ) -> Result<Refresh, Stall> {
        self.overview
            .refresh(google, target, cursor.layout.as_ref(), &self.shape)
    }

    /// One batch of a readable layout, the next CSV rows `rows` (the first is CSV row
    /// `cursor.rows_done`): plan, make room, create and grow tabs, one write. `Ok(true)`
    /// when Google confirmed it (the cursor holds the new layout state: confirm the rows),
    /// `Ok(false)` when it was refused and narrowed (send again).
    pub fn send_batch(
        &mut self,
        google: &mut Google,
        target: &mut Target,
        cursor: &mut Cursor,
        mut rows: Vec<Row>,
        narrow: &mut Narrow,
        csv: &Path,
    ) -> Result<bool, Stall> {
        let n = rows.len();
        self.retention.resolve_pending_delete(google, target, cursor)?;
        self.retention.keep_days(google, target, cursor)?;
        let shape = &self.shape;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let first = cursor.rows_done;
        // A single row Google refused: the next try writes a placeholder in its place.
        let reason = if n == 1 {
            narrow.reason().map(str::to_string)
        } else {
            None
        };
        let placeholder = reason.as_ref().map(|r| {
            format!(
                "sensorlog: CSV row {} (line {} of the CSV) could not be written to Google Sheets: {r}",
                first + 1,
                first + 2
            )
        });
        let mut plan;
        let mut deletes = 0;
        let mut waiting: Vec<String> = Vec::new();
        let mut full = None;
        loop {
            let state = cursor.layout.clone().unwrap_or_default();
            plan = layout::plan(&state, &rows, shape, now_ms, placeholder.as_deref());
            // Deleting rows moves the next rows up: plan again (bounded: each round
            // deletes at least one row, and most rounds `sheets.grow_rows`).
            if deletes >= 64 || waiting.len() > 1000 {
                break;
            }
            match self.retention.fit_budget(google, target, cursor, &plan)? {
                Fit::Fits => break,
                Fit::Deleted => deletes += 1,
                Fit::Full { want, budget } => {
                    full = Some((want, budget, plan.state.tabs.len()));
                    // More boards than the budget holds: the last board new in this batch
                    // waits (its readings stay in the CSV) and the plan is made again
                    // without it (no request), until the others fit.
                    let Some(last) = plan.state.boards[state.boards.len()..].last() else {
                        break;
                    };
                    let device = last.device.clone();
                    rows.retain(|r| {
                        crate::sink::csv::encode::original(r.0.get(1).map_or("", String::as_str)) != device
                    });
                    waiting.insert(0, device);
                }
            }
        }
        if let Some((want, budget, tabs)) = full {
            retention::cannot_fit(&waiting, tabs, want, budget);
        }
        let known = cursor.layout.as_ref().map_or(0, |s| s.boards.len());
        let shared: Vec<&str> = plan.state.boards[known..]
            .iter()
            .filter(|b| shape.per_device && plan.state.tabs[b.tab].shared)
            .map(|b| b.device.as_str())
            .collect();
        if !shared.is_empty() {
            log::warn!(
                "Boards {shared:?} go to the shared tab {:?} with a device column: the spreadsheet already has {} board tabs (sheets.max_board_tabs).",
                plan.state.tabs.iter().find(|t| t.shared).map_or("", |t| t.title.as_str()),
                self.cfg.max_board_tabs
            );
        }
        // Tabs, rows, columns and charts: one request, decided by what exists.
        target.add_structure(google, &plan, cursor.layout.as_ref())?;
        let writes = plan.writes;
        if writes.is_empty() {
            // Only readings of boards that wait for room: nothing to write.
            cursor.layout = Some(plan.state);
            return Ok(true);
        }
        match google.write_many(writes) {
            Ok(()) => {}
            Err(Stall::Api(e)) if refused(&e) => {
                if n > 1 {
                    narrow.halve(first, n, &e);
                    return Ok(false);
                }
                if placeholder.is_none() {
                    narrow.one_row(first, e.to_string());
                    return Ok(false);
                }
                // Not the row's fault: full batches again once the operator fixed it.
                narrow.clear();
                return Err(Stall::Operator(google.explain(&e)));
            }
            Err(e) => return Err(e),
        }
        if let Some(r) = narrow.take_reason().filter(|_| placeholder.is_some()) {
            log::error!(
                "Google Sheets refused CSV row {} (line {} of {}): {}. Wrote a placeholder naming it in its board's tab; the CSV keeps the row whole. The upload goes on.",
                first + 1,
                first + 2,
                csv.display(),
                trim_period(&r)
            );
        }
        if let Some(table) = plan.overview {
            self.overview.written(table);
        }
        cursor.layout = Some(plan.state);
        Ok(true)
    }
}
