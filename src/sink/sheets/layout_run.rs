//! The uploader's side of the `per-device` and `single` layouts: setting up the overview
//! tab, creating a board's tab when its first reading goes up, growing tabs, and sending
//! each batch as one multi-range `values:batchUpdate` before saving the cursor with the
//! layout's [`State`]. The cells themselves come from
//! [`layout::plan`], a pure function; see that module for why this
//! is exactly once.
//!
//! Tabs, rows, columns and charts a batch needs go up in one `batchUpdate` decided by
//! what the spreadsheet holds (see [`super::reconcile`]): a tab or chart whose reply was
//! lost is recognised by its title and the id the daemon chose, and adopted.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::SheetsLayout;
use crate::sink::cursor::{self, Cursor};

use super::auth::trim_period;
use super::client::{Spreadsheet, Tab};
use super::layout::{self, Shape, State};
use super::retention::Fit;
use super::target::Target;
use super::worker::{refused, Stall, Worker};
use crate::sink::follower::rows::header_len;

impl Worker {
    pub(super) fn shape(&self) -> Shape {
        Shape {
            per_device: self.cfg.layout == SheetsLayout::PerDevice,
            overview: self.cfg.overview_tab.clone(),
            csv_tab: self.cfg.tab.clone(),
            max_board_tabs: self.cfg.max_board_tabs as usize,
            silent_factor: self.cfg.silent_factor,
            min_silent_ms: self.cfg.min_silent.as_millis() as i64,
        }
    }

    /// Token, spreadsheet, overview tab, the tabs the cursor knows: all before the first
    /// batch of a readable layout, from one `spreadsheets.get` (see `reconcile`). What is
    /// missing is created with the first batch that needs it, in that batch's one
    /// `batchUpdate`.
    pub(super) fn set_up_layout(&mut self) -> std::result::Result<(), Stall> {
        self.authenticate()?;
        let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
        self.cursor = self.choose_layout_cursor();
        let state = self.cursor.layout.clone().unwrap_or_default();
        // A resumed cursor of this spreadsheet and layout: its tabs are the daemon's own.
        let resumed = self.cursor.rows_done > 0 || !state.tabs.is_empty();
        let mut tabs = Vec::new();
        if !self.cfg.overview_tab.is_empty() {
            let title = self.cfg.overview_tab.clone();
            if let Some(t) = sheet.tab(&title) {
                let ours = (0..layout::SHEET_ID_TRIES).any(|n| layout::sheet_id_for(&title, n) == t.sheet_id);
                if !ours && !resumed {
                    self.check_ours(t, &[Value::from(layout::OVERVIEW_HEADER[0])])?;
                }
                tabs.push(t.clone());
            }
        }
        for known in &state.tabs {
            match sheet.tab(&known.title) {
                Some(t) => tabs.push(t.clone()),
                None => {
                    return Err(Stall::Operator(format!(
                        "tab {:?}, which holds uploaded readings, is missing from the spreadsheet; restore it, or delete {} to upload the whole CSV again",
                        known.title,
                        self.cfg.cursor_file.display()
                    )))
                }
            }
        }
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        self.source.reset(&self.cursor);
        log::info!(
            "Google Sheets ready: layout {}, spreadsheet {:?}, {} board tab{}, overview {}; {} to upload.",
            self.shape().name(),
            sheet.title,
            state.tabs.len(),
            if state.tabs.len() == 1 { "" } else { "s" },
            if self.cfg.overview_tab.is_empty() {
                "off".to_string()
            } else {
                format!("{:?}", self.cfg.overview_tab)
            },
            self.source.backlog()
        );
        self.target = Some(Target::from_read(tabs, &sheet));
        self.check_cells();
        self.recovered();
        Ok(())
    }

    /// Resumes a saved cursor of this spreadsheet and layout; anything else starts over
    /// from the CSV's first row (the CSV's retained window) into the new layout's tabs.
    fn choose_layout_cursor(&self) -> Cursor {
        let shape = self.shape();
        let fresh = Cursor {
            spreadsheet_id: self.cfg.spreadsheet_id.clone(),
            tab: String::new(),
            origin: 0,
            rows_done: 0,
            offset_done: header_len(),
            last_row: None,
            layout: Some(State {
                layout: shape.name().to_string(),
                ..State::default()
            }),
            file: None,
            sheet_rows_before: 0,
        };
        let Some(saved) = self.saved.clone() else {
            return fresh;
        };
        let saved_layout = saved.layout.as_ref().map_or("csv", |s| s.layout.as_str());
        if saved.spreadsheet_id == self.cfg.spreadsheet_id && saved_layout == shape.name() {
            return saved;
        }
        log::info!(
            "Sheets layout is now {} (the cursor was for layout {saved_layout} in spreadsheet {}): writing the new tabs from the CSV's first row; {} rows to upload.",
            shape.name(),
            saved.spreadsheet_id,
            self.sink.position().0
        );
        fresh
    }

    /// Refuses a tab whose first row is neither empty nor starts like `header`.
    pub(super) fn check_ours(&mut self, tab: &Tab, header: &[Value]) -> std::result::Result<(), Stall> {
        let probe = tab.clone();
        let first = self.call(move |c, t| {
            let probe = probe.clone();
            Box::pin(async move { c.first_row(t, &probe).await })
        })?;
        let ours = first
            .iter()
            .zip(header)
            .all(|(have, want)| want.as_str().is_some_and(|w| w == have));
        if first.is_empty() || ours {
            return Ok(());
        }
        Err(Stall::Operator(format!(
            "tab {:?} already holds other data (its first row is {:?}); rename or clear it",
            tab.title,
            first.join(",")
        )))
    }

    pub(super) fn tab_index(&self, title: &str) -> Option<usize> {
        self.target.as_ref()?.tabs.iter().position(|t| t.title == title)
    }

    /// Makes sure tab `index` has at least `columns` columns.
    pub(super) fn ensure_columns(&mut self, index: usize, columns: u64) -> std::result::Result<(), Stall> {
        let target = self.target.as_ref().expect("set up");
        let tab = &target.tabs[index];
        if tab.columns >= columns {
            return Ok(());
        }
        let grow = columns - tab.columns;
        let (sheet_id, rows) = (tab.sheet_id, tab.rows);
        if target.cells + grow * rows > self.cfg.max_cells {
            return Err(Stall::Operator(format!(
                "spreadsheet {} is full: {} of Google's {} cells are used (sheets.max_cells). Rows keep going to the CSV",
                self.cfg.spreadsheet_id, target.cells, self.cfg.max_cells
            )));
        }
        self.target.as_mut().expect("set up").fresh = false;
        match self.call(move |c, t| Box::pin(c.grow(t, sheet_id, "COLUMNS", grow))) {
            Ok(()) => {
                let target = self.target.as_mut().expect("set up");
                target.tabs[index].columns += grow;
                target.cells += grow * rows;
                self.check_cells();
                Ok(())
            }
            Err(e) => {
                self.target.as_mut().expect("set up").grid_stale = true;
                Err(e)
            }
        }
    }

    /// One batch of a readable layout: plan, create and grow tabs, one write, save.
    pub(super) fn send_layout_batch(&mut self) -> std::result::Result<(), Stall> {
        let n = self.next_batch().len();
        if n == 0 {
            return Ok(());
        }
        let mut rows: Vec<_> = self.source.ready().take(n).map(|(r, _)| r.clone()).collect();
        self.resolve_pending_delete()?;
        self.keep_days()?;
        let shape = self.shape();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let first = self.cursor.rows_done;
        // A single row Google refused: the next try writes a placeholder in its place.
        let reason = if n == 1 { self.narrow_reason.clone() } else { None };
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
            let state = self.cursor.layout.clone().unwrap_or_default();
            plan = layout::plan(&state, &rows, &shape, now_ms, placeholder.as_deref());
            // Deleting rows moves the next rows up: plan again (bounded: each round
            // deletes at least one row, and most rounds `sheets.grow_rows`).
            if deletes >= 64 || waiting.len() > 1000 {
                break;
            }
            match self.fit_budget(&plan)? {
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
            self.cannot_fit(&waiting, tabs, want, budget);
        }
        let known = self.cursor.layout.as_ref().map_or(0, |s| s.boards.len());
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
        self.add_structure(&plan)?;
        let writes = plan.writes;
        if writes.is_empty() {
            // Only readings of boards that wait for room: nothing to write.
            self.cursor.layout = Some(plan.state);
            return self.confirmed(n, 0, 0);
        }
        match self.call(move |c, t| {
            let writes = writes.clone();
            Box::pin(async move { c.write_many(t, writes).await })
        }) {
            Ok(()) => {}
            Err(Stall::Api(e)) if refused(&e) => {
                let end = self
                    .narrow
                    .map_or(first + n as u64, |(_, end)| end.max(first + n as u64));
                if n > 1 {
                    self.narrow = Some((n / 2, end));
                    log::debug!(
                        "Google Sheets refused CSV rows {first}..{} ({e}); trying {} rows.",
                        first + n as u64,
                        n / 2
                    );
                    return Ok(());
                }
                if placeholder.is_none() {
                    self.narrow = Some((1, end));
                    self.narrow_reason = Some(e.to_string());
                    return Ok(());
                }
                // Not the row's fault: full batches again once the operator fixed it.
                self.narrow = None;
                self.narrow_reason = None;
                return Err(Stall::Operator(super::explain(
                    &e,
                    &self.cfg.spreadsheet_id,
                    &self.email,
                )));
            }
            Err(e) => return Err(e),
        }
        if let Some(r) = self.narrow_reason.take().filter(|_| placeholder.is_some()) {
            log::error!(
                "Google Sheets refused CSV row {} (line {} of {}): {}. Wrote a placeholder naming it in its board's tab; the CSV keeps the row whole. The upload goes on.",
                first + 1,
                first + 2,
                self.sink.path().display(),
                trim_period(&r)
            );
        }
        if plan.overview.is_some() {
            self.overview_sent = super::overview::OverviewSent {
                at: Some(std::time::Instant::now()),
                table: plan.overview,
            };
        }
        self.cursor.layout = Some(plan.state);
        self.confirmed(n, 0, 0)
    }
}
