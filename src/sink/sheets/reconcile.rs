//! Set-up decided by reading the spreadsheet, not by trial and error (issue 18).
//!
//! At start, and after every ambiguous failure (a lost reply, a 5xx, a timeout after the
//! request was sent), one `spreadsheets.get` with a `fields` mask (tab ids, titles, grid
//! sizes, each tab's charts) says what exists (`Worker::reconcile`). Before a batch's
//! values go up, everything the batch needs that is missing (new tabs, rows, columns,
//! charts, and unused grid rows given back when cells are short) is requested in **one**
//! `spreadsheets.batchUpdate` (`Worker::add_structure`), which Google applies whole or
//! not at all.
//!
//! A tab the daemon creates gets an id it chooses ([`layout::sheet_id_for`]), so after a
//! lost reply the next read recognises it by title and id and adopts it; a chart's id is
//! fixed by its tab's title ([`layout::chart_id`]), so an existing one is updated rather
//! than added again. A tab of the wanted title with another id (made by an older version,
//! or by someone else) is adopted only when its first row is empty or the daemon's header.
//! So a restart after a crash at any point of the set-up costs a constant number of
//! requests: one read, one `batchUpdate`, one values write, whatever the number of tabs.
//!
//! Grids are sized to the cell budget (`sheets.cell_budget_percent` of `sheets.max_cells`):
//! a new tab's first grid and each growth step take `sheets.grow_rows` when the budget
//! leaves room for it, and only the rows the batch needs when it does not.

use serde_json::{json, Value};

use super::client::{ApiError, Spreadsheet, Tab};
use super::layout::{self, Plan};
use super::worker::{refused, Stall, Worker};

/// Columns the overview tab starts with.
pub const OVERVIEW_COLUMNS: u64 = 16;

/// Whether a failure leaves the request's outcome unknown (it may have been applied).
pub fn ambiguous(e: &ApiError) -> bool {
    match e {
        ApiError::Transport(_) | ApiError::Decode(_) => true,
        ApiError::Status { code, .. } => *code >= 500,
    }
}

/// What one `batchUpdate` will change, applied to the target once Google confirms it.
#[derive(Default)]
struct Changes {
    requests: Vec<Value>,
    /// Chart requests, sent after `requests`: left out if Google refuses them.
    charts: Vec<Value>,
    chart_ids: Vec<i64>,
    new_tabs: Vec<Tab>,
    /// (title, rows added, columns added) of existing tabs; negative rows = given back.
    grown: Vec<(String, i64, u64)>,
}

impl Worker {
    /// The cells `sheets.cell_budget_percent` allows.
    pub(super) fn budget(&self) -> u64 {
        self.cfg.max_cells / 100 * u64::from(self.cfg.cell_budget_percent)
    }

    /// One `spreadsheets.get`: the tabs written to get their grid sizes from it, every
    /// other tab and every chart id is noted (to adopt what a lost reply left behind).
    pub(super) fn reconcile(&mut self) -> std::result::Result<(), Stall> {
        let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
        let Some(target) = self.target.as_mut() else {
            return Ok(());
        };
        let mut tabs = Vec::with_capacity(target.tabs.len());
        for known in &target.tabs {
            match sheet.tab(&known.title) {
                Some(t) => tabs.push(t.clone()),
                None => {
                    let title = known.title.clone();
                    self.target = None; // set up again
                    return Err(Stall::Operator(format!(
                        "tab {title:?} disappeared from the spreadsheet; restore it, or delete {} to upload the whole CSV again",
                        self.cfg.cursor_file.display()
                    )));
                }
            }
        }
        *target = super::target::Target::from_read(tabs, &sheet);
        log::debug!(
            "Read the spreadsheet: {} tabs, {} charts, {} cells.",
            sheet.tabs.len(),
            sheet.charts.len(),
            target.cells
        );
        Ok(())
    }

    /// Cells the grid must gain for `plan` at the least (the rows and columns it writes,
    /// nothing ahead of need), counting a tab that exists but is not adopted yet as there.
    pub(super) fn min_growth(&self, plan: &Plan) -> u64 {
        let Some(target) = self.target.as_ref() else { return 0 };
        needs(plan, &self.cfg.overview_tab)
            .iter()
            .map(
                |(title, rows, cols)| match target.tabs.iter().chain(&target.others).find(|t| &t.title == title) {
                    Some(t) => (t.rows.max(*rows) * t.columns.max(*cols)).saturating_sub(t.rows * t.columns),
                    None => rows * cols,
                },
            )
            .sum()
    }

    /// Unused grid rows of board tabs (below their last reading and below what `plan`
    /// writes): (title, first unused row, grid rows).
    pub(super) fn spare_rows(&self, plan: &Plan) -> Vec<(String, u64, u64, u64)> {
        let (Some(target), Some(state)) = (self.target.as_ref(), self.cursor.layout.as_ref()) else {
            return Vec::new();
        };
        let wanted = needs(plan, &self.cfg.overview_tab);
        state
            .tabs
            .iter()
            .filter_map(|s| {
                let grid = target.tabs.iter().find(|t| t.title == s.title)?;
                let need = wanted.iter().find(|w| w.0 == s.title).map_or(0, |w| w.1);
                let keep = (s.next_row - 1).max(need).max(2);
                (grid.rows > keep).then(|| (s.title.clone(), keep, grid.rows, grid.columns.max(1)))
            })
            .collect()
    }

    /// Everything `plan` needs that the spreadsheet lacks, in one `batchUpdate`: tabs
    /// (adopted when they exist), rows, columns, charts; unused rows given back first when
    /// the budget is short. Charts Google refuses are left out (the readings go on).
    pub(super) fn add_structure(&mut self, plan: &Plan) -> std::result::Result<(), Stall> {
        if self.target.as_ref().is_some_and(|t| t.grid_stale) {
            self.reconcile()?;
        }
        self.adopt(plan)?;
        let changes = self.changes(plan);
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
            if let Some(t) = self.target.as_mut() {
                t.fresh = false;
            }
            match self.call(move |c, t| {
                let r = requests.clone();
                Box::pin(async move { c.batch_requests(t, r).await })
            }) {
                Ok(_) => {
                    self.apply(&changes, with_charts);
                    return Ok(());
                }
                Err(Stall::Api(e)) if refused(&e) && with_charts => {
                    log::warn!(
                        "Google Sheets refused the charts of tabs {:?} ({}); readings go on without them.",
                        plan.charts
                            .iter()
                            .map(|&(t, _)| plan.state.tabs[t].title.as_str())
                            .collect::<Vec<_>>(),
                        super::auth::trim_period(&e.to_string())
                    );
                    with_charts = false;
                }
                Err(Stall::Api(e)) => {
                    // Applied or not is unknown (or what we knew was wrong): read again first.
                    if ambiguous(&e) || refused(&e) {
                        if let Some(t) = self.target.as_mut() {
                            t.grid_stale = true;
                        }
                    }
                    if refused(&e) {
                        return Err(Stall::Operator(super::explain(
                            &e,
                            &self.cfg.spreadsheet_id,
                            &self.email,
                        )));
                    }
                    return Err(Stall::Api(e));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the tabs `plan` writes that exist already (made by a request whose reply was
    /// lost, or by an older version) into the target; refuses one holding other data.
    fn adopt(&mut self, plan: &Plan) -> std::result::Result<(), Stall> {
        for (title, _, _) in needs(plan, &self.cfg.overview_tab) {
            let Some(target) = self.target.as_ref() else {
                return Ok(());
            };
            if target.tabs.iter().any(|t| t.title == title) {
                continue;
            }
            let Some(found) = target.others.iter().find(|t| t.title == title).cloned() else {
                continue;
            };
            if !(0..layout::SHEET_ID_TRIES).any(|n| layout::sheet_id_for(&title, n) == found.sheet_id) {
                let header = if title == self.cfg.overview_tab {
                    vec![Value::from(layout::OVERVIEW_HEADER[0])]
                } else {
                    plan.state
                        .tabs
                        .iter()
                        .find(|t| t.title == title)
                        .map(layout::header)
                        .unwrap_or_default()
                };
                self.check_ours(&found, &header)?;
            }
            log::info!(
                "Tab {title:?} exists already (created before a reply was lost, or by an earlier run): using it."
            );
            let target = self.target.as_mut().expect("set up");
            target.others.retain(|t| t.title != title);
            target.tabs.push(found);
        }
        Ok(())
    }

    /// The requests that give `plan` its grid, sized to the budget.
    fn changes(&self, plan: &Plan) -> Changes {
        let target = self.target.as_ref().expect("set up");
        let wanted = needs(plan, &self.cfg.overview_tab);
        let budget = self.budget();
        let grow_rows = u64::from(self.cfg.grow_rows);
        let mut out = Changes::default();
        // Give back unused rows when the least growth does not fit.
        let mut total = target.cells + self.min_growth(plan);
        if total > budget {
            for (title, keep, rows, columns) in self.spare_rows(plan) {
                if total <= budget {
                    break;
                }
                let Some(grid) = target.tabs.iter().find(|t| t.title == title) else {
                    continue;
                };
                out.requests.push(json!({"deleteDimension": {"range": {
                    "sheetId": grid.sheet_id, "dimension": "ROWS", "startIndex": keep, "endIndex": rows
                }}}));
                out.grown.push((title.clone(), -((rows - keep) as i64), 0));
                total = total.saturating_sub((rows - keep) * columns);
                log::info!(
                    "Giving back {} unused rows of tab {title:?}: the spreadsheet is near its cell budget ({} of {budget} cells).",
                    rows - keep,
                    target.cells
                );
            }
        }
        // What the budget leaves for rows ahead of need, shared in order.
        let mut room = budget.saturating_sub(total);
        let mut taken: Vec<i64> = target.tabs.iter().chain(&target.others).map(|t| t.sheet_id).collect();
        let mut adds = Vec::new();
        let mut grows = Vec::new();
        for (title, need_rows, need_cols) in &wanted {
            match target.tabs.iter().find(|t| &t.title == title) {
                Some(t) => {
                    if t.rows < *need_rows {
                        let need = need_rows - t.rows;
                        let cols = t.columns.max(*need_cols).max(1);
                        let extra = grow_rows.saturating_sub(need).min(room / cols);
                        room -= extra * cols;
                        let n = need + extra;
                        grows.push(
                            json!({"appendDimension": {"sheetId": t.sheet_id, "dimension": "ROWS", "length": n}}),
                        );
                        out.grown.push((title.clone(), n as i64, 0));
                    }
                    if t.columns < *need_cols {
                        let n = need_cols - t.columns;
                        grows.push(
                            json!({"appendDimension": {"sheetId": t.sheet_id, "dimension": "COLUMNS", "length": n}}),
                        );
                        out.grown.push((title.clone(), 0, n));
                    }
                }
                None => {
                    let overview = *title == self.cfg.overview_tab;
                    let cols = (*need_cols).max(1);
                    let first = if overview { *need_rows } else { grow_rows + 1 };
                    let extra = first.saturating_sub(*need_rows).min(room / cols);
                    room -= extra * cols;
                    let rows = (need_rows + extra).max(2);
                    let mut n = 0;
                    let id = loop {
                        let id = layout::sheet_id_for(title, n);
                        if !taken.contains(&id) || n >= layout::SHEET_ID_TRIES {
                            break id;
                        }
                        n += 1;
                    };
                    taken.push(id);
                    let mut properties = json!({"sheetId": id, "title": title,
                        "gridProperties": {"rowCount": rows, "columnCount": cols, "frozenRowCount": 1}});
                    if overview {
                        properties["index"] = json!(0);
                    }
                    adds.push(json!({"addSheet": {"properties": properties}}));
                    out.new_tabs.push(Tab {
                        sheet_id: id,
                        title: title.clone(),
                        rows,
                        columns: cols,
                    });
                }
            }
        }
        out.requests.extend(adds);
        out.requests.extend(grows);
        if self.cfg.charts && self.cfg.layout == crate::sink::sheets::settings::SheetsLayout::PerDevice {
            for &(t, _) in &plan.charts {
                let tab = &plan.state.tabs[t];
                let grid = target
                    .tabs
                    .iter()
                    .chain(&out.new_tabs)
                    .find(|g| g.title == tab.title)
                    .cloned();
                let Some(grid) = grid else { continue };
                let columns = grid.columns + out.grown.iter().filter(|g| g.0 == tab.title).map(|g| g.2).sum::<u64>();
                let anchor = (tab.columns.len() as u64).min(columns.saturating_sub(1));
                let id = layout::chart_id(&tab.title);
                // Decided by what exists, not by what the saved state expected.
                out.charts.push(if target.charts.contains(&id) {
                    layout::update_chart_request(tab, grid.sheet_id)
                } else {
                    layout::add_chart_request(tab, grid.sheet_id, anchor)
                });
                out.chart_ids.push(id);
            }
        }
        out
    }

    fn apply(&mut self, changes: &Changes, with_charts: bool) {
        let target = self.target.as_mut().expect("set up");
        for tab in &changes.new_tabs {
            target.cells += tab.rows * tab.columns;
            target.tabs.push(tab.clone());
            log::info!(
                "Created tab {:?} ({} rows x {} columns).",
                tab.title,
                tab.rows,
                tab.columns
            );
        }
        for (title, rows, cols) in &changes.grown {
            if let Some(t) = target.tabs.iter_mut().find(|t| &t.title == title) {
                let before = t.rows * t.columns;
                t.rows = t.rows.saturating_add_signed(*rows);
                t.columns += cols;
                target.cells = (target.cells + t.rows * t.columns).saturating_sub(before);
            }
        }
        if with_charts {
            for id in &changes.chart_ids {
                if !target.charts.contains(id) {
                    target.charts.push(*id);
                }
            }
        }
        self.check_cells();
    }
}

/// (title, rows, columns) every tab of `plan` must have: the touched ones as planned
/// (the overview at least [`OVERVIEW_COLUMNS`] wide), every other tab of the state at
/// least its header row.
fn needs(plan: &Plan, overview: &str) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = plan
        .needs
        .iter()
        .map(|(t, r, c)| {
            let c = if t == overview {
                (*c).max(OVERVIEW_COLUMNS)
            } else {
                (*c).max(1)
            };
            (t.clone(), (*r).max(1), c)
        })
        .collect();
    for t in &plan.state.tabs {
        if !out.iter().any(|(title, _, _)| *title == t.title) {
            out.push((t.title.clone(), 1, (t.columns.len() as u64).max(1)));
        }
    }
    out
}
