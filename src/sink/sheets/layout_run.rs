//! The uploader's side of the `per-device` and `single` layouts: setting up the overview
//! tab, creating a board's tab when its first reading goes up, growing tabs, and sending
//! each batch as one multi-range `values:batchUpdate` before saving the cursor with the
//! layout's [`State`]. The cells themselves come from
//! [`layout::plan`], a pure function; see that module for why this
//! is exactly once.
//!
//! Creating a tab (`addSheet`) is not idempotent: when its reply is lost, the retry is
//! refused with "already exists". The title was chosen from the saved state alone, so a
//! tab of that title with an empty first row or our header is the one we created, and is
//! taken; one holding anything else stops the upload with an ERROR naming it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::SheetsLayout;
use crate::sink::cursor::{self, Cursor};

use super::auth::trim_period;
use super::client::{ApiError, Spreadsheet, Tab};
use super::layout::{self, Shape, State};
use super::target::Target;
use super::worker::{refused, Stall, Worker};
use crate::sink::follower::rows::header_len;

/// Columns the overview tab starts with.
const OVERVIEW_COLUMNS: u64 = 16;

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
    /// batch of a readable layout.
    pub(super) fn set_up_layout(&mut self) -> std::result::Result<(), Stall> {
        self.authenticate()?;
        let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
        self.cursor = self.choose_layout_cursor();
        let state = self.cursor.layout.clone().unwrap_or_default();
        let mut tabs = Vec::new();
        if !self.cfg.overview_tab.is_empty() {
            let title = self.cfg.overview_tab.clone();
            match sheet.tab(&title) {
                Some(t) => {
                    self.check_ours(t, &[Value::from(layout::OVERVIEW_HEADER[0])])?;
                    tabs.push(t.clone());
                }
                None => match self.create_tab(&title, 2, OVERVIEW_COLUMNS, Some(0))? {
                    Some(t) => tabs.push(t),
                    None => return Ok(()), // it exists after all: read again
                },
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
        self.target = Some(Target {
            tabs,
            cells: sheet.cells(),
            grid_stale: false,
        });
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

    /// Creates a tab; `None` when a tab of that title exists already (a lost reply to
    /// an applied `addSheet`): the caller reads the spreadsheet again.
    fn create_tab(
        &mut self,
        title: &str,
        rows: u64,
        columns: u64,
        index: Option<u64>,
    ) -> std::result::Result<Option<Tab>, Stall> {
        let t2 = title.to_string();
        let result = self.call(move |c, t| {
            let t2 = t2.clone();
            Box::pin(async move { c.add_tab(t, &t2, rows, columns, index).await })
        });
        match result {
            Ok(tab) => {
                log::info!("Created tab {title:?} ({rows} rows x {columns} columns).");
                if let Some(target) = self.target.as_mut() {
                    target.cells += rows * columns;
                }
                Ok(Some(tab))
            }
            Err(Stall::Api(ApiError::Status { code: 400, message, .. })) if message.contains("already exists") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Refuses a tab whose first row is neither empty nor starts like `header`.
    fn check_ours(&mut self, tab: &Tab, header: &[Value]) -> std::result::Result<(), Stall> {
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

    /// Makes sure the tab exists in the spreadsheet and in the target.
    fn ensure_tab(&mut self, title: &str, header: &[Value]) -> std::result::Result<usize, Stall> {
        if let Some(i) = self.tab_index(title) {
            return Ok(i);
        }
        let rows = u64::from(self.cfg.grow_rows) + 1;
        // Exactly the columns in use: every spare column costs a cell per row against
        // Google's cell limit (grown one field at a time as fields appear).
        let columns = (header.len() as u64).max(1);
        let tab = match self.create_tab(title, rows, columns, None)? {
            Some(t) => t,
            None => {
                let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
                let Some(t) = sheet.tab(title).cloned() else {
                    return Err(Stall::Operator(format!(
                        "Google says tab {title:?} exists but does not list it"
                    )));
                };
                self.check_ours(&t, header)?;
                let target = self.target.as_mut().expect("set up");
                target.cells = sheet.cells();
                t
            }
        };
        let target = self.target.as_mut().expect("set up");
        target.tabs.push(tab);
        Ok(target.tabs.len() - 1)
    }

    /// Creates the missing tabs of `tabs` in one request when there are several (50 new
    /// boards cost one request, not 50); any refusal (a title that exists after a lost
    /// reply) leaves them to [`Self::ensure_tab`], one at a time.
    fn add_tabs_at_once(&mut self, tabs: &[layout::TabState]) -> std::result::Result<(), Stall> {
        let missing: Vec<&layout::TabState> = tabs.iter().filter(|t| self.tab_index(&t.title).is_none()).collect();
        if missing.len() < 2 {
            return Ok(());
        }
        let rows = u64::from(self.cfg.grow_rows) + 1;
        let wanted: Vec<(String, u64)> = missing
            .iter()
            .map(|t| (t.title.clone(), (t.columns.len() as u64).max(1)))
            .collect();
        let cells: u64 = wanted.iter().map(|(_, c)| rows * c).sum();
        let requests: Vec<Value> = wanted
            .iter()
            .map(|(title, columns)| {
                serde_json::json!({"addSheet": {"properties": {"title": title,
                    "gridProperties": {"rowCount": rows, "columnCount": columns, "frozenRowCount": 1}}}})
            })
            .collect();
        let reply = match self.call(move |c, t| {
            let r = requests.clone();
            Box::pin(async move { c.batch_requests(t, r).await })
        }) {
            Ok(v) => v,
            Err(Stall::Api(e)) if refused(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        let target = self.target.as_mut().expect("set up");
        for (i, (title, columns)) in wanted.iter().enumerate() {
            let id = reply
                .pointer(&format!("/replies/{i}/addSheet/properties/sheetId"))
                .and_then(Value::as_i64)
                .ok_or_else(|| Stall::Api(ApiError::Decode("addSheet reply without sheetId".into())))?;
            target.tabs.push(Tab {
                sheet_id: id,
                title: title.clone(),
                rows,
                columns: *columns,
            });
        }
        target.cells += cells;
        log::info!("Created {} tabs ({rows} rows each) in one request.", wanted.len());
        Ok(())
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

    /// Creates or updates a board tab's chart. A lost reply to an applied `addChart`
    /// makes the retry fail with "already exists" (the id is fixed by the title): done.
    fn chart(&mut self, tab: &layout::TabState, create: bool) -> std::result::Result<(), Stall> {
        let Some(i) = self.tab_index(&tab.title) else {
            return Err(Stall::Operator(format!("tab {:?} is not set up", tab.title)));
        };
        let grid = &self.target.as_ref().expect("set up").tabs[i];
        let sheet_id = grid.sheet_id;
        // Right of the data when the grid has room, else over its last column.
        let anchor = (tab.columns.len() as u64).min(grid.columns.saturating_sub(1));
        let request = if create {
            layout::add_chart_request(tab, sheet_id, anchor)
        } else {
            layout::update_chart_request(tab, sheet_id)
        };
        match self.call(move |c, t| {
            let request = request.clone();
            Box::pin(async move { c.batch_requests(t, vec![request]).await })
        }) {
            Ok(_) => Ok(()),
            Err(Stall::Api(ApiError::Status { code: 400, message, .. }))
                if create && message.contains("already exists") =>
            {
                Ok(())
            }
            Err(Stall::Api(e)) if refused(&e) => {
                // A chart is a convenience: the readings go on without it.
                log::warn!(
                    "Google Sheets refused the chart of tab {:?} ({}); readings go on without it.",
                    tab.title,
                    trim_period(&e.to_string())
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// One batch of a readable layout: plan, create and grow tabs, one write, save.
    pub(super) fn send_layout_batch(&mut self) -> std::result::Result<(), Stall> {
        let n = self.next_batch().len();
        if n == 0 {
            return Ok(());
        }
        let rows: Vec<_> = self.source.ready().take(n).map(|(r, _)| r.clone()).collect();
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
        loop {
            let state = self.cursor.layout.clone().unwrap_or_default();
            plan = layout::plan(&state, &rows, &shape, now_ms, placeholder.as_deref());
            // Deleting rows moves the next rows up: plan again (bounded: each round
            // deletes at least one row, and most rounds `sheets.grow_rows`).
            if deletes >= 64 || !self.fit_budget(&plan)? {
                break;
            }
            deletes += 1;
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
        self.add_tabs_at_once(&plan.state.tabs)?;
        for tab in &plan.state.tabs {
            self.ensure_tab(&tab.title, &layout::header(tab))?;
        }
        for (title, need_rows, need_cols) in &plan.needs {
            let Some(i) = self.tab_index(title) else {
                return Err(Stall::Operator(format!("tab {title:?} is not set up")));
            };
            self.ensure_rows(i, *need_rows)?;
            let i = self.tab_index(title).expect("still known");
            self.ensure_columns(i, *need_cols)?;
        }
        if self.cfg.charts && self.cfg.layout == SheetsLayout::PerDevice && !plan.charts.is_empty() {
            // All of a batch's charts in one request; one by one if Google refuses it.
            let requests: Option<Vec<Value>> = plan
                .charts
                .iter()
                .map(|&(t, create)| {
                    let tab = &plan.state.tabs[t];
                    let i = self.tab_index(&tab.title)?;
                    let grid = &self.target.as_ref()?.tabs[i];
                    let anchor = (tab.columns.len() as u64).min(grid.columns.saturating_sub(1));
                    Some(if create {
                        layout::add_chart_request(tab, grid.sheet_id, anchor)
                    } else {
                        layout::update_chart_request(tab, grid.sheet_id)
                    })
                })
                .collect();
            let together = match requests {
                Some(r) if r.len() > 1 => match self.call(move |c, t| {
                    let r = r.clone();
                    Box::pin(async move { c.batch_requests(t, r).await })
                }) {
                    Ok(_) => true,
                    Err(Stall::Api(e)) if refused(&e) => false,
                    Err(e) => return Err(e),
                },
                _ => false,
            };
            if !together {
                for (t, create) in plan.charts.clone() {
                    self.chart(&plan.state.tabs[t], create)?;
                }
            }
        }
        let writes = plan.writes;
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
