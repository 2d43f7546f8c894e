//! Set-up decided by reading the spreadsheet, not by trial and error (issue 18).
//!
//! At start, and after every ambiguous failure (a lost reply, a 5xx, a timeout after the
//! request was sent), one `spreadsheets.get` with a `fields` mask (tab ids, titles, grid
//! sizes, each tab's charts) says what exists (`Target::reconcile`). Before a batch's
//! values go up, everything the batch needs that is missing (new tabs, rows, columns,
//! charts, and unused grid rows given back when cells are short) is requested in **one**
//! `spreadsheets.batchUpdate` (`Target::add_structure`), which Google applies whole or
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
//!
//! This file is the pure half: [`Grid`] (the spreadsheet as last read, kept up to date
//! with every confirmed change) and what a plan needs of it ([`Grid::changes`]). The
//! requests themselves are sent by `target`.

use serde_json::{json, Value};

use super::settings::{SheetsConfig, SheetsLayout};

use super::client::{ApiError, Spreadsheet, Tab};
use super::layout::{self, Plan, State};

/// Columns the overview tab starts with.
pub const OVERVIEW_COLUMNS: u64 = 16;

/// Whether a failure leaves the request's outcome unknown (it may have been applied).
pub fn ambiguous(e: &ApiError) -> bool {
    match e {
        ApiError::Transport(_) | ApiError::Decode(_) => true,
        ApiError::Status { code, .. } => *code >= 500,
    }
}

/// The spreadsheet as the uploader knows it.
pub struct Grid {
    /// The tabs written to, in a fixed order (index 0 is `sheets.tab` in the csv layout).
    pub tabs: Vec<Tab>,
    /// Cells of the whole workbook (what Google's cell limit counts).
    pub cells: u64,
    /// A grow may have been applied without our knowing: read the grid again.
    pub stale: bool,
    /// Readable layouts: the spreadsheet's other tabs, as last read (a tab the daemon
    /// created but did not record yet is adopted from here).
    pub others: Vec<Tab>,
    /// Readable layouts: the ids of the charts the spreadsheet holds, as last read and
    /// kept up to date with every confirmed `addChart`.
    pub charts: Vec<i64>,
    /// The grid sizes were read from Google and nothing that changes them was sent
    /// since: they can be trusted without reading again.
    pub fresh: bool,
}

/// What one `batchUpdate` will change, applied to the grid once Google confirms it.
#[derive(Default)]
pub struct Changes {
    pub requests: Vec<Value>,
    /// Chart requests, sent after `requests`: left out if Google refuses them.
    pub charts: Vec<Value>,
    chart_ids: Vec<i64>,
    new_tabs: Vec<Tab>,
    /// (title, rows added, columns added) of existing tabs; negative rows = given back.
    grown: Vec<(String, i64, u64)>,
}

impl Grid {
    /// The grid as one `spreadsheets.get` describes it: `tabs` are the ones written to;
    /// every other tab goes to `others`.
    pub fn from_read(tabs: Vec<Tab>, sheet: &Spreadsheet) -> Grid {
        let others = sheet
            .tabs
            .iter()
            .filter(|t| !tabs.iter().any(|o| o.title == t.title))
            .cloned()
            .collect();
        Grid {
            tabs,
            cells: sheet.cells(),
            stale: false,
            others,
            charts: sheet.charts.iter().map(|&(_, id)| id).collect(),
            fresh: true,
        }
    }

    /// Cells the grid must gain for `plan` at the least (the rows and columns it writes,
    /// nothing ahead of need), counting a tab that exists but is not adopted yet as there.
    pub fn min_growth(&self, plan: &Plan, overview: &str) -> u64 {
        needs(plan, overview)
            .iter()
            .map(
                |(title, rows, cols)| match self.tabs.iter().chain(&self.others).find(|t| &t.title == title) {
                    Some(t) => (t.rows.max(*rows) * t.columns.max(*cols)).saturating_sub(t.rows * t.columns),
                    None => rows * cols,
                },
            )
            .sum()
    }

    /// Unused grid rows of board tabs (below their last reading in `state` and below what
    /// `plan` writes): (title, first unused row, grid rows, columns).
    pub fn spare_rows(&self, state: &State, plan: &Plan, overview: &str) -> Vec<(String, u64, u64, u64)> {
        let wanted = needs(plan, overview);
        state
            .tabs
            .iter()
            .filter_map(|s| {
                let grid = self.tabs.iter().find(|t| t.title == s.title)?;
                let need = wanted.iter().find(|w| w.0 == s.title).map_or(0, |w| w.1);
                let keep = (s.next_row - 1).max(need).max(2);
                (grid.rows > keep).then(|| (s.title.clone(), keep, grid.rows, grid.columns.max(1)))
            })
            .collect()
    }

    /// The tabs `plan` writes that exist already but are not written to yet (made by a
    /// request whose reply was lost, or by an older version): (tab, whether its id is one
    /// the daemon chose, the header its first row must start with otherwise).
    pub fn adoptable(&self, plan: &Plan, overview: &str) -> Vec<(Tab, bool, Vec<Value>)> {
        needs(plan, overview)
            .into_iter()
            .filter(|(title, _, _)| !self.tabs.iter().any(|t| &t.title == title))
            .filter_map(|(title, _, _)| {
                let found = self.others.iter().find(|t| t.title == title)?.clone();
                let ours = (0..layout::SHEET_ID_TRIES).any(|n| layout::sheet_id_for(&title, n) == found.sheet_id);
                let header = if title == overview {
                    vec![Value::from(layout::OVERVIEW_HEADER[0])]
                } else {
                    plan.state
                        .tabs
                        .iter()
                        .find(|t| t.title == title)
                        .map(layout::header)
                        .unwrap_or_default()
                };
                Some((found, ours, header))
            })
            .collect()
    }

    /// Tab `title`, found in `others`, is written to from now on.
    pub fn adopt(&mut self, title: &str) {
        if let Some(i) = self.others.iter().position(|t| t.title == title) {
            let found = self.others.remove(i);
            self.others.retain(|t| t.title != title);
            self.tabs.push(found);
        }
    }

    /// The requests that give `plan` its grid, sized to `budget` cells; `state` is the
    /// layout as confirmed (its spare rows can be given back).
    pub fn changes(&self, plan: &Plan, state: Option<&State>, cfg: &SheetsConfig, budget: u64) -> Changes {
        let wanted = needs(plan, &cfg.overview_tab);
        let grow_rows = u64::from(cfg.grow_rows);
        let mut out = Changes::default();
        // Give back unused rows when the least growth does not fit.
        let mut total = self.cells + self.min_growth(plan, &cfg.overview_tab);
        if total > budget {
            let spare = state.map_or_else(Vec::new, |s| self.spare_rows(s, plan, &cfg.overview_tab));
            for (title, keep, rows, columns) in spare {
                if total <= budget {
                    break;
                }
                let Some(grid) = self.tabs.iter().find(|t| t.title == title) else {
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
                    self.cells
                );
            }
        }
        // What the budget leaves for rows ahead of need, shared in order.
        let mut room = budget.saturating_sub(total);
        let mut taken: Vec<i64> = self.tabs.iter().chain(&self.others).map(|t| t.sheet_id).collect();
        let mut adds = Vec::new();
        let mut grows = Vec::new();
        for (title, need_rows, need_cols) in &wanted {
            match self.tabs.iter().find(|t| &t.title == title) {
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
                    let overview = *title == cfg.overview_tab;
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
        if cfg.charts && cfg.layout == SheetsLayout::PerDevice {
            for &(t, _) in &plan.charts {
                let tab = &plan.state.tabs[t];
                let grid = self
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
                out.charts.push(if self.charts.contains(&id) {
                    layout::update_chart_request(tab, grid.sheet_id)
                } else {
                    layout::add_chart_request(tab, grid.sheet_id, anchor)
                });
                out.chart_ids.push(id);
            }
        }
        out
    }

    /// Google confirmed `changes` (with their charts or without).
    pub fn apply(&mut self, changes: &Changes, with_charts: bool) {
        for tab in &changes.new_tabs {
            self.cells += tab.rows * tab.columns;
            self.tabs.push(tab.clone());
            log::info!(
                "Created tab {:?} ({} rows x {} columns).",
                tab.title,
                tab.rows,
                tab.columns
            );
        }
        for (title, rows, cols) in &changes.grown {
            if let Some(t) = self.tabs.iter_mut().find(|t| &t.title == title) {
                let before = t.rows * t.columns;
                t.rows = t.rows.saturating_add_signed(*rows);
                t.columns += cols;
                self.cells = (self.cells + t.rows * t.columns).saturating_sub(before);
            }
        }
        if with_charts {
            for id in &changes.chart_ids {
                if !self.charts.contains(id) {
                    self.charts.push(*id);
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tab(sheet_id: i64, title: &str, rows: u64, columns: u64) -> Tab {
        Tab {
            sheet_id,
            title: title.into(),
            rows,
            columns,
        }
    }

    #[test]
    fn the_grid_tracks_adopted_tabs_and_confirmed_changes() {
        let sheet = Spreadsheet {
            title: "s".into(),
            tabs: vec![tab(1, "Latest", 3, 16), tab(2, "kitchen", 10, 3), tab(3, "other", 5, 2)],
            charts: vec![(2, 77)],
        };
        let mut grid = Grid::from_read(vec![tab(1, "Latest", 3, 16)], &sheet);
        assert_eq!(grid.cells, 3 * 16 + 10 * 3 + 5 * 2);
        assert_eq!(grid.others.len(), 2);
        assert_eq!(grid.charts, vec![77]);
        assert!(grid.fresh && !grid.stale);
        grid.adopt("kitchen");
        assert_eq!(
            grid.tabs.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(),
            ["Latest", "kitchen"]
        );
        assert_eq!(grid.others, vec![tab(3, "other", 5, 2)]);
        let changes = Changes {
            new_tabs: vec![tab(9, "garage", 4, 2)],
            grown: vec![("kitchen".into(), -6, 1)],
            chart_ids: vec![78],
            ..Changes::default()
        };
        let before = grid.cells;
        grid.apply(&changes, false);
        assert_eq!(grid.tabs[1], tab(2, "kitchen", 4, 4));
        assert_eq!(grid.tabs[2], tab(9, "garage", 4, 2));
        assert_eq!(grid.cells, before + 4 * 2 + 4 * 4 - 10 * 3);
        assert_eq!(grid.charts, vec![77], "charts left out stay unknown");
    }
}
