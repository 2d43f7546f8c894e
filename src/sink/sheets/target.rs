//! Where rows go in Google: the spreadsheet, its tab(s), their header row and grid size.
//!
//! [`Target`] owns what the uploader knows of the spreadsheet (a [`Grid`], read by one
//! `spreadsheets.get` at set-up and after every ambiguous failure, see `reconcile`) and
//! makes every request that changes it: it creates a missing tab (with the header
//! frozen), refuses a tab that holds someone else's data, widens a narrow one, grows tabs
//! ahead of need within `sheets.max_cells`, adds in one `batchUpdate` what a batch of a
//! readable layout lacks, and deletes rows for retention. After an ambiguous failure of
//! a change the grid is read again before anything else.
//!
//! The grid holds a list of tabs so that more than one tab can be fed from the same
//! spreadsheet; in the `csv` layout the uploader writes to one (index 0, `sheets.tab`).

use std::sync::Arc;

use serde_json::Value;

use super::settings::SheetsConfig;
use crate::sink::csv::encode::{COLUMNS, HEADER};

use super::client::{self, quote_tab, ApiError, Spreadsheet, Tab};
use super::google::{refused, Google, Stall};
use super::layout::{self, Plan, State};
use super::oauth::trim_period;
use super::reconcile::{ambiguous, Grid};

/// The spreadsheet as the uploader knows it, and the requests that change it.
pub struct Target {
    cfg: Arc<SheetsConfig>,
    /// Set once the spreadsheet, its tabs and header are known good; `None`: set up again.
    grid: Option<Grid>,
    /// The cell use (percent of `sheets.max_cells`) last warned about.
    warned_cells_pct: u64,
}

impl Target {
    pub fn new(cfg: Arc<SheetsConfig>) -> Target {
        Target {
            cfg,
            grid: None,
            warned_cells_pct: 0,
        }
    }

    /// Whether the spreadsheet is set up (else the uploader sets it up first).
    pub fn is_set_up(&self) -> bool {
        self.grid.is_some()
    }

    /// The set-up read `grid`: it is the target from now on.
    pub fn set(&mut self, grid: Grid) {
        self.grid = Some(grid);
        self.check_cells();
    }

    /// The `csv` layout's tab `sheets.tab`: exists with sensorlog's header and enough
    /// columns; `None` when the grid changed and the spreadsheet must be read again.
    /// `resumed`: the saved cursor is for this tab (its rows are the daemon's).
    pub fn csv_tab(&self, google: &mut Google, sheet: &Spreadsheet, resumed: bool) -> Result<Option<Tab>, Stall> {
        let title = self.cfg.tab.as_str();
        let tab = match sheet.tab(title) {
            Some(tab) => {
                let first_row = google.first_row(tab)?;
                let ours = client::is_header(&first_row);
                if !first_row.is_empty() && !ours && !resumed {
                    return Err(Stall::Operator(format!(
                        "tab {title:?} already holds other data (its first row is {:?}); choose another sheets.tab, or clear the tab",
                        first_row.join(",")
                    )));
                }
                if tab.columns < COLUMNS as u64 {
                    google.grow(tab.sheet_id, "COLUMNS", COLUMNS as u64 - tab.columns)?;
                    return Ok(None);
                }
                tab.clone()
            }
            None => match google.add_tab(title, u64::from(self.cfg.grow_rows) + 1, COLUMNS as u64) {
                Ok(tab) => {
                    log::info!("Created tab {title:?} in spreadsheet {:?}.", sheet.title);
                    tab
                }
                // A lost reply to an applied addSheet: the tab exists now; look again.
                Err(Stall::Api(ApiError::Status { code: 400, message, .. })) if message.contains("already exists") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
        };
        google.write_range(
            format!("{}!A1:I1", quote_tab(title)),
            vec![HEADER.iter().map(|h| Value::from(*h)).collect()],
        )?;
        Ok(Some(tab))
    }

    /// A readable layout's tabs as `sheet` holds them: the overview (refused if it holds
    /// other data, unless `resumed`) and every tab `state` wrote to (each must exist).
    pub fn layout_tabs(
        &self,
        google: &mut Google,
        sheet: &Spreadsheet,
        state: &State,
        resumed: bool,
    ) -> Result<Vec<Tab>, Stall> {
        let mut tabs = Vec::new();
        if !self.cfg.overview_tab.is_empty() {
            let title = self.cfg.overview_tab.as_str();
            if let Some(t) = sheet.tab(title) {
                let ours = (0..layout::SHEET_ID_TRIES).any(|n| layout::sheet_id_for(title, n) == t.sheet_id);
                if !ours && !resumed {
                    check_ours(google, t, &[Value::from(layout::OVERVIEW_HEADER[0])])?;
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
        Ok(tabs)
    }

    /// The index of tab `title` among the tabs written to.
    pub fn tab_index(&self, title: &str) -> Option<usize> {
        self.grid.as_ref()?.tabs.iter().position(|t| t.title == title)
    }

    /// The cells `sheets.cell_budget_percent` allows.
    pub fn budget(&self) -> u64 {
        self.cfg.max_cells / 100 * u64::from(self.cfg.cell_budget_percent)
    }

    /// Cells of the whole workbook, as tracked.
    pub fn cells(&self) -> u64 {
        self.grid.as_ref().map_or(0, |g| g.cells)
    }

    /// The least growth of the grid `plan` needs, and the cells of unused rows below
    /// `state`'s readings that could be given back first.
    pub fn growth(&self, plan: &Plan, state: &State) -> (u64, u64) {
        let Some(grid) = self.grid.as_ref() else {
            return (0, 0);
        };
        let spare = grid
            .spare_rows(state, plan, &self.cfg.overview_tab)
            .iter()
            .map(|(_, keep, rows, cols)| (rows - keep) * cols)
            .sum();
        (grid.min_growth(plan, &self.cfg.overview_tab), spare)
    }

    /// The columns of tab `title` (at least 1).
    pub fn columns(&self, title: &str) -> u64 {
        self.grid
            .as_ref()
            .and_then(|x| x.tabs.iter().find(|g| g.title == title))
            .map_or(1, |g| g.columns.max(1))
    }

    /// Reads the grid again if a change may have been applied without our knowing.
    pub fn read_if_stale(&mut self, google: &mut Google) -> Result<(), Stall> {
        if self.grid.as_ref().is_some_and(|g| g.stale) {
            self.reconcile(google)?;
        }
        Ok(())
    }

    /// One `spreadsheets.get`: the tabs written to get their grid sizes from it, every
    /// other tab and every chart id is noted (to adopt what a lost reply left behind).
    pub fn reconcile(&mut self, google: &mut Google) -> Result<(), Stall> {
        let sheet = google.spreadsheet()?;
        let Some(grid) = self.grid.as_mut() else {
            return Ok(());
        };
        let mut tabs = Vec::with_capacity(grid.tabs.len());
        for known in &grid.tabs {
            match sheet.tab(&known.title) {
                Some(t) => tabs.push(t.clone()),
                None => {
                    let title = known.title.clone();
                    self.grid = None; // set up again
                    return Err(Stall::Operator(format!(
                        "tab {title:?} disappeared from the spreadsheet; restore it, or delete {} to upload the whole CSV again",
                        self.cfg.cursor_file.display()
                    )));
                }
            }
        }
        *grid = Grid::from_read(tabs, &sheet);
        log::debug!(
            "Read the spreadsheet: {} tabs, {} charts, {} cells.",
            sheet.tabs.len(),
            sheet.charts.len(),
            grid.cells
        );
        Ok(())
    }

    /// Tab `title`'s row count as Google reports it now (the grid is refreshed), or as
    /// just read when nothing changed it since.
    pub fn grid_rows(&mut self, google: &mut Google, title: &str) -> Result<u64, Stall> {
        if let Some(g) = self.grid.as_ref().filter(|g| g.fresh && !g.stale) {
            if let Some(tab) = g.tabs.iter().chain(&g.others).find(|x| x.title == title) {
                return Ok(tab.rows);
            }
        }
        let sheet = google.spreadsheet()?;
        let Some(tab) = sheet.tab(title) else {
            return Err(Stall::Operator(format!(
                "tab {title:?} disappeared from the spreadsheet"
            )));
        };
        let rows = tab.rows;
        if let Some(grid) = self.grid.as_mut() {
            for known in grid.tabs.iter_mut() {
                if let Some(fresh) = sheet.tab(&known.title) {
                    *known = fresh.clone();
                }
            }
            grid.cells = sheet.cells();
            grid.stale = false;
            grid.fresh = true;
        }
        Ok(rows)
    }

    /// Makes sure tab number `index` has at least `rows` rows, growing it (within the
    /// cell limit).
    pub fn ensure_rows(&mut self, google: &mut Google, index: usize, rows: u64) -> Result<(), Stall> {
        self.read_if_stale(google)?;
        let grid = self.grid.as_mut().expect("set up");
        let tab = &grid.tabs[index];
        if tab.rows >= rows {
            return Ok(());
        }
        let need = rows - tab.rows;
        let columns = tab.columns.max(1);
        let room = self.cfg.max_cells.saturating_sub(grid.cells) / columns;
        let grow = need.max(u64::from(self.cfg.grow_rows)).min(room);
        if grow < need {
            grid.stale = true;
            return Err(Stall::Operator(format!(
                "spreadsheet {} is full: {} of Google's {} cells are used (sheets.max_cells). Rows keep going to the CSV; point sheets.spreadsheet at a new spreadsheet to continue",
                self.cfg.spreadsheet_id, grid.cells, self.cfg.max_cells
            )));
        }
        self.append(google, index, "ROWS", grow, grow * columns)
    }

    /// Makes sure tab `index` has at least `columns` columns.
    pub fn ensure_columns(&mut self, google: &mut Google, index: usize, columns: u64) -> Result<(), Stall> {
        let grid = self.grid.as_ref().expect("set up");
        let tab = &grid.tabs[index];
        if tab.columns >= columns {
            return Ok(());
        }
        let grow = columns - tab.columns;
        let rows = tab.rows;
        if grid.cells + grow * rows > self.cfg.max_cells {
            return Err(Stall::Operator(format!(
                "spreadsheet {} is full: {} of Google's {} cells are used (sheets.max_cells). Rows keep going to the CSV",
                self.cfg.spreadsheet_id, grid.cells, self.cfg.max_cells
            )));
        }
        self.append(google, index, "COLUMNS", grow, grow * rows)
    }

    /// One `appendDimension` of `n` rows or columns (`dimension`) for tab `index`, which
    /// adds `cells` cells; after a failure the grid is read again before anything else
    /// (the grow may have been applied).
    fn append(
        &mut self,
        google: &mut Google,
        index: usize,
        dimension: &'static str,
        n: u64,
        cells: u64,
    ) -> Result<(), Stall> {
        let grid = self.grid.as_mut().expect("set up");
        grid.fresh = false;
        let sent = google.grow(grid.tabs[index].sheet_id, dimension, n);
        if let Err(e) = sent {
            grid.stale = true;
            return Err(e);
        }
        let tab = &mut grid.tabs[index];
        if dimension == "ROWS" {
            tab.rows += n;
            log::debug!("Grew tab {:?} by {n} rows to {}.", tab.title, tab.rows);
        } else {
            tab.columns += n;
        }
        grid.cells += cells;
        self.check_cells();
        Ok(())
    }

    /// Everything `plan` needs that the spreadsheet lacks, in one `batchUpdate`: tabs
    /// (adopted when they exist), rows, columns, charts; unused rows (below `state`'s
    /// readings) given back first when the budget is short. Charts Google refuses are
    /// left out (the readings go on).
    pub fn add_structure(&mut self, google: &mut Google, plan: &Plan, state: Option<&State>) -> Result<(), Stall> {
        self.read_if_stale(google)?;
        self.adopt(google, plan)?;
        let Some(grid) = self.grid.as_ref() else {
            return Ok(());
        };
        let changes = grid.changes(plan, state, &self.cfg, self.budget());
        if changes.requests.is_empty() && changes.charts.is_empty() {
            return Ok(());
        }
        let mut with_charts = !changes.charts.is_empty();
        loop {
            let mut requests = changes.requests.clone();
            if with_charts {
                requests.extend(changes.charts.iter().cloned());
            }
            if requests.is_empty() {
                return Ok(());
            }
            if let Some(g) = self.grid.as_mut() {
                g.fresh = false;
            }
            match google.batch_requests(requests) {
                Ok(_) => {
                    if let Some(g) = self.grid.as_mut() {
                        g.apply(&changes, with_charts);
                    }
                    self.check_cells();
                    return Ok(());
                }
                Err(Stall::Api(e)) if refused(&e) && with_charts => {
                    log::warn!(
                        "Google Sheets refused the charts of tabs {:?} ({}); readings go on without them.",
                        plan.charts
                            .iter()
                            .map(|&(t, _)| plan.state.tabs[t].title.as_str())
                            .collect::<Vec<_>>(),
                        trim_period(&e.to_string())
                    );
                    with_charts = false;
                }
                Err(Stall::Api(e)) => {
                    // Applied or not is unknown (or what we knew was wrong): read again first.
                    if ambiguous(&e) || refused(&e) {
                        if let Some(g) = self.grid.as_mut() {
                            g.stale = true;
                        }
                    }
                    if refused(&e) {
                        return Err(Stall::Operator(google.explain(&e)));
                    }
                    return Err(Stall::Api(e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the tabs `plan` writes that exist already (made by a request whose reply was
    /// lost, or by an older version) into the grid; refuses one holding other data.
    fn adopt(&mut self, google: &mut Google, plan: &Plan) -> Result<(), Stall> {
        let Some(grid) = self.grid.as_ref() else {
            return Ok(());
        };
        for (found, ours, header) in grid.adoptable(plan, &self.cfg.overview_tab) {
            if !ours {
                check_ours(google, &found, &header)?;
            }
            log::info!(
                "Tab {:?} exists already (created before a reply was lost, or by an earlier run): using it.",
                found.title
            );
            if let Some(g) = self.grid.as_mut() {
                g.adopt(&found.title);
            }
        }
        Ok(())
    }

    /// Deletes data rows 2..2+`rows` of tab `title` (one `deleteDimension`); after a
    /// failure the grid is read again before anything else.
    pub fn delete_rows(&mut self, google: &mut Google, title: &str, rows: u64) -> Result<(), Stall> {
        let Some(sheet_id) = self
            .grid
            .as_ref()
            .and_then(|g| g.tabs.iter().find(|x| x.title == title))
            .map(|t| t.sheet_id)
        else {
            return Err(Stall::Operator(format!("tab {title:?} is not set up")));
        };
        let request = serde_json::json!({"deleteDimension": {"range": {
            "sheetId": sheet_id, "dimension": "ROWS", "startIndex": 1, "endIndex": 1 + rows
        }}});
        if let Some(g) = self.grid.as_mut() {
            g.fresh = false;
        }
        match google.batch_requests(vec![request]) {
            Ok(_) => Ok(()),
            Err(e) => {
                // Applied or not, the grid size is unknown until read again.
                if let Some(g) = self.grid.as_mut() {
                    g.stale = true;
                }
                Err(e)
            }
        }
    }

    /// `rows` rows of tab `title` were deleted: the tracked grid shrinks with them.
    pub fn rows_deleted(&mut self, title: &str, rows: u64) {
        if let Some(grid) = self.grid.as_mut() {
            if let Some(tab) = grid.tabs.iter_mut().find(|x| x.title == title) {
                let rows = rows.min(tab.rows.saturating_sub(1));
                tab.rows -= rows;
                grid.cells = grid.cells.saturating_sub(rows * tab.columns);
            }
        }
    }

    /// A WARN at `sheets.warn_cells_percent` of `sheets.max_cells`, and every 5% above.
    fn check_cells(&mut self) {
        let Some(g) = &self.grid else { return };
        let pct = g.cells * 100 / self.cfg.max_cells.max(1);
        let warn_at = u64::from(self.cfg.warn_cells_percent);
        if pct >= warn_at && pct >= self.warned_cells_pct + 5 {
            self.warned_cells_pct = pct;
            log::warn!(
                "Spreadsheet {} uses {} of {} cells ({pct}%, sheets.max_cells). At the limit uploading stops (the CSV keeps everything): plan a new spreadsheet and point sheets.spreadsheet at it.",
                self.cfg.spreadsheet_id,
                g.cells,
                self.cfg.max_cells
            );
        }
    }
}

/// Refuses a tab whose first row is neither empty nor starts like `header`.
fn check_ours(google: &mut Google, tab: &Tab, header: &[Value]) -> Result<(), Stall> {
    let first = google.first_row(tab)?;
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
