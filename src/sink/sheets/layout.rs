//! The readable layouts (`sheets.layout = "per-device"` or `"single"`): one row per
//! reading, a column per field, and the overview tab. This module is pure: it turns the
//! confirmed [`State`] and the next CSV rows into the cells to write and the next state.
//!
//! # Exactly once, without a fixed row per CSV row
//!
//! In the `csv` layout CSV row `n` has a fixed sheet row. Here a reading's row depends on
//! which readings came before it in its tab, so that knowledge is kept in the cursor file
//! ([`State`], saved atomically with the CSV offset): per tab its title, its columns in
//! order, the sheet row of the next new reading, and the key of the reading on the row
//! before it. [`plan`] is a deterministic function of that state and the CSV rows, so:
//!
//! - a retry after a lost reply, or a restart after a crash between a write and the save
//!   of the cursor, plans the same batch from the same state and rewrites the same cells
//!   with the same values;
//! - replaying the whole CSV from an empty state lands every reading in the same row and
//!   every field in the same column again (tab titles are chosen from the state alone,
//!   never from what the spreadsheet holds), which is what happens when the cursor cannot
//!   be trusted or the layout changes.
//!
//! All of a batch's cells (every tab's header and rows, and the overview) go in ONE
//! `values:batchUpdate` with explicit ranges, which Google applies atomically; only then
//! is the cursor saved. Cells of a reading that are not in a batch are sent as JSON
//! `null`, which Google skips, so a reading split across two batches (its CSV rows are
//! consecutive, but a batch can end between them) fills in the same row without erasing
//! the part written before.
//!
//! # Titles
//!
//! A board's tab is named after its device: the characters `[ ] * ? / \ :` (refused in
//! tab titles by spreadsheet apps) and control characters become `_`, the title is cut to
//! 100 characters, and when it equals (ignoring case) a title already taken — another
//! board's, the overview tab's or `sheets.tab` — it gets the first free suffix ` (2)`,
//! ` (3)`, ... (the name cut so that the whole stays within 100 characters).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sink::csv::encode::Row;

use super::cells;
use super::client::{column_letters, quote_tab};

/// Most characters in a tab title (Google's limit).
pub const MAX_TITLE_CHARS: usize = 100;
/// The one tab of the `single` layout.
pub const SINGLE_TAB: &str = "All boards";
/// The shared tab of boards beyond `sheets.max_board_tabs` (made distinct like any title).
pub const OVERFLOW_TAB: &str = "Other boards";
/// Columns of an overview row before the latest values.
pub const OVERVIEW_HEADER: [&str; 6] = [
    "device",
    "last_seen",
    "seconds_since",
    "readings_today",
    "status",
    "latest_values",
];

/// Column keys that are not fields (fields are `FIELD_PREFIX` + name).
const RECEIVED_AT: &str = "received_at";
const DEVICE: &str = "device";
const DEVICE_TIME: &str = "device_time";
const FIELD_PREFIX: &str = "field:";

/// What the sheet holds, as far as the cursor's CSV position: saved with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `per-device` or `single`: a cursor of another layout is not resumed.
    pub layout: String,
    pub tabs: Vec<TabState>,
    /// Boards in the order first seen (the overview's rows).
    pub boards: Vec<BoardSummary>,
    /// A `deleteDimension` sent but not known to be applied (see `retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_delete: Option<PendingDelete>,
    /// A replay from the CSV's first row ([`State::replay`]): per tab title not met again
    /// yet, how many of its first readings retention deleted (they are not written again).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replay_skip: BTreeMap<String, u64>,
}

impl State {
    /// The state to replay the CSV from its first row with, when the cursor had to move
    /// (see `source::verify_cursor`): empty, but remembering per tab how many rows
    /// retention deleted from its top. Those are the tab's first readings in CSV order
    /// (retention always deletes the oldest), so the replay drops exactly them and every
    /// other reading lands on the row it has now: row 2 is the oldest reading kept, not
    /// the CSV's first. A pending delete must be resolved first (its count is part of it).
    pub fn replay(&self) -> State {
        let mut skip = self.replay_skip.clone();
        for t in &self.tabs {
            skip.insert(t.title.clone(), t.deleted);
        }
        skip.retain(|_, n| *n > 0);
        let pending_delete = self.pending_delete.clone().map(|mut p| {
            if p.title.is_empty() {
                p.title = self.tabs.get(p.tab).map(|t| t.title.clone()).unwrap_or_default();
            }
            p.tab = usize::MAX; // not in the replay's tabs: found by title
            p
        });
        State {
            layout: self.layout.clone(),
            replay_skip: skip,
            pending_delete,
            ..State::default()
        }
    }

    /// The title of the pending delete's tab.
    pub fn pending_title(&self, p: &PendingDelete) -> String {
        match self.tabs.get(p.tab) {
            Some(t) if p.title.is_empty() || t.title == p.title => t.title.clone(),
            _ => p.title.clone(),
        }
    }
}

/// Rows 2..2+rows of tab `tab` are being deleted: its grid has `grid_rows` rows until
/// the delete is applied and `grid_rows - rows` once it is; row 2 then reads `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    pub tab: usize,
    /// The tab's title (empty in cursors from before it was recorded: then `tab` says).
    /// In a replay the tab may not be in [`State::tabs`] yet; the title still names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    pub rows: u64,
    pub grid_rows: u64,
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabState {
    pub title: String,
    /// Column keys in sheet order: `received_at`, `device`, `device_time`, `field:<name>`.
    pub columns: Vec<String>,
    /// 1-based sheet row of the next new reading (row 1 is the header).
    pub next_row: u64,
    /// Key of the reading on row `next_row - 1`, which a batch may still add cells to.
    pub last: Option<String>,
    /// Column keys of the numeric fields in the tab's chart (a field whose first value
    /// was a number), in the order they joined it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charted: Vec<String>,
    /// `received_at` of row 2, the oldest reading still in the tab (retention).
    #[serde(default)]
    pub oldest: String,
    /// The shared tab of boards beyond `sheets.max_board_tabs` (`single` shape).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// Rows retention deleted from the top of this tab, in all (its first readings).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deleted: u64,
    /// In a replay: how many of this tab's next readings to drop (retention deleted them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// In a replay: the reading `last` was dropped, so are its remaining cells.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropping: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardSummary {
    pub device: String,
    /// Index in [`State::tabs`].
    pub tab: usize,
    /// `received_at` of its last reading, and that as Unix milliseconds.
    pub last_seen: String,
    pub last_ms: i64,
    /// Smoothed gap between its readings (ms), once it sent two.
    pub interval_ms: Option<i64>,
    /// UTC day (`YYYY-MM-DD`) of `today`'s count.
    pub day: String,
    pub today: u64,
    /// Latest value of each field, in first-seen order.
    pub latest: Vec<(String, Value)>,
}

/// How the cells are laid out.
#[derive(Debug, Clone)]
pub struct Shape {
    /// A tab per board (`per-device`) or one tab for all (`single`).
    pub per_device: bool,
    /// The overview tab's title; empty for none.
    pub overview: String,
    /// `sheets.tab` (kept free in `per-device`, so a board never lands on the csv tab).
    pub csv_tab: String,
    /// Most board tabs; later boards share one tab (`sheets.max_board_tabs`).
    pub max_board_tabs: usize,
    /// A board is `silent` when quiet for this many times its usual interval
    /// (`alerts.silent_factor`)...
    pub silent_factor: f64,
    /// ...and for at least this long, in ms (`alerts.min_silent_secs`).
    pub min_silent_ms: i64,
}

impl Shape {
    pub fn name(&self) -> &'static str {
        if self.per_device {
            "per-device"
        } else {
            "single"
        }
    }
}

/// One batch: the next state, the ranges to write, and the grid each tab needs.
#[derive(Debug)]
pub struct Plan {
    pub state: State,
    pub writes: Vec<(String, Vec<Vec<Value>>)>,
    /// (title, rows, columns) each touched tab must have, overview included.
    pub needs: Vec<(String, u64, u64)>,
    /// Tabs (index in `state.tabs`) whose chart must be created (`true`) or updated
    /// (`false`) because a numeric field joined it.
    pub charts: Vec<(usize, bool)>,
    /// The overview table written with this batch (`None`: no overview, or no rows).
    pub overview: Option<Vec<Vec<Value>>>,
}

/// Plans writing `rows` (the next CSV rows, in order) on top of `state`. `placeholder`
/// replaces every value cell (a row Google refused). `now_ms` only feeds the overview.
pub fn plan(state: &State, rows: &[Row], shape: &Shape, now_ms: i64, placeholder: Option<&str>) -> Plan {
    let mut st = state.clone();
    st.layout = shape.name().to_string();
    // Per tab: sheet row -> cells (None = leave as is).
    let mut cells_by_tab: BTreeMap<usize, BTreeMap<u64, Vec<Option<Value>>>> = BTreeMap::new();
    for row in rows {
        let col = |i: usize| row.0.get(i).map(String::as_str).unwrap_or("");
        let device = crate::sink::csv::encode::original(col(1)).to_string();
        let key = [col(0), col(1), col(5), col(6), col(7)].join("\u{1f}");
        let typed = cells::sheet_values(row);
        let board = match st.boards.iter().position(|b| b.device == device) {
            Some(b) => b,
            None => {
                let tab = tab_for(&mut st, &device, shape);
                st.boards.push(BoardSummary {
                    device: device.clone(),
                    tab,
                    last_seen: String::new(),
                    last_ms: 0,
                    interval_ms: None,
                    day: String::new(),
                    today: 0,
                    latest: Vec::new(),
                });
                st.boards.len() - 1
            }
        };
        let t = st.boards[board].tab;
        let tab = &mut st.tabs[t];
        let new_reading = tab.last.as_deref() != Some(key.as_str());
        if new_reading {
            tab.last = Some(key);
            // A replay drops the readings retention deleted (the tab's first ones).
            tab.dropping = tab.skip > 0;
            if tab.dropping {
                tab.skip -= 1;
            } else {
                tab.next_row += 1;
            }
        }
        let sheet_row = tab.next_row - 1;
        if sheet_row == 2 && new_reading && !tab.dropping {
            tab.oldest = col(0).to_string();
        }
        let mut set = vec![(RECEIVED_AT.to_string(), typed[0].clone())];
        if !shape.per_device || tab.shared {
            set.push((DEVICE.to_string(), typed[1].clone()));
        }
        if !col(8).is_empty() {
            set.push((DEVICE_TIME.to_string(), typed[8].clone()));
        }
        let value = match placeholder {
            Some(p) => cells::text_cell(p),
            None => typed[3].clone(),
        };
        let field = crate::sink::csv::encode::original(col(2)).to_string();
        let field_key = format!("{FIELD_PREFIX}{field}");
        if placeholder.is_none() && value.is_number() && !tab.charted.contains(&field_key) {
            tab.charted.push(field_key.clone());
        }
        set.push((field_key, value.clone()));
        // A dropped reading still gives its fields their columns, as it did the first time.
        let mut scratch = Vec::new();
        let cells = if tab.dropping {
            &mut scratch
        } else {
            cells_by_tab.entry(t).or_default().entry(sheet_row).or_default()
        };
        for (k, v) in set {
            let i = match tab.columns.iter().position(|c| *c == k) {
                Some(i) => i,
                None => {
                    tab.columns.push(k);
                    tab.columns.len() - 1
                }
            };
            if cells.len() <= i {
                cells.resize(i + 1, None);
            }
            cells[i] = Some(v);
        }
        // The overview's numbers count readings, not rows.
        let b = &mut st.boards[board];
        if new_reading {
            let ms = parse_millis(col(0)).unwrap_or(b.last_ms);
            if !b.last_seen.is_empty() && ms > b.last_ms {
                let gap = ms - b.last_ms;
                b.interval_ms = Some(b.interval_ms.map_or(gap, |i| (i * 3 + gap) / 4));
            }
            let day = col(0).get(..10).unwrap_or("").to_string();
            if day != b.day {
                b.day = day;
                b.today = 0;
            }
            b.today += 1;
            b.last_seen = col(0).to_string();
            b.last_ms = ms.max(b.last_ms);
        }
        match b.latest.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => b.latest.push((field, value)),
        }
    }

    let mut writes = Vec::new();
    let mut needs = Vec::new();
    let mut overview_table = None;
    for (t, rows) in &cells_by_tab {
        let tab = &st.tabs[*t];
        let q = quote_tab(&tab.title);
        let width = tab.columns.len() as u64;
        let last = column_letters(width);
        let old_width = state.tabs.get(*t).map_or(0, |o| o.columns.len());
        if old_width != tab.columns.len() {
            writes.push((format!("{q}!A1:{last}1"), vec![header(tab)]));
        }
        // Consecutive sheet rows go in one range.
        let mut run: Option<(u64, Vec<Vec<Value>>)> = None;
        for (r, cells) in rows {
            let values: Vec<Value> = cells.iter().map(|c| c.clone().unwrap_or(Value::Null)).collect();
            match &mut run {
                Some((start, vals)) if *start + vals.len() as u64 == *r => vals.push(values),
                _ => {
                    if let Some((start, vals)) = run.take() {
                        let end = start + vals.len() as u64 - 1;
                        writes.push((format!("{q}!A{start}:{last}{end}"), vals));
                    }
                    run = Some((*r, vec![values]));
                }
            }
        }
        if let Some((start, vals)) = run {
            let end = start + vals.len() as u64 - 1;
            writes.push((format!("{q}!A{start}:{last}{end}"), vals));
        }
        needs.push((tab.title.clone(), tab.next_row - 1, width));
    }
    if !shape.overview.is_empty() && !rows.is_empty() {
        let table = overview(&st, now_ms, shape);
        let (range, n, width) = overview_range(&table, shape);
        writes.push((range, table.clone()));
        needs.push((shape.overview.clone(), n, width));
        overview_table = Some(table);
    }
    let charts = st
        .tabs
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let before = state.tabs.get(i).map_or(0, |o| o.charted.len());
            (t.charted.len() > before).then_some((i, before == 0))
        })
        .collect();
    Plan {
        state: st,
        writes,
        needs,
        charts,
        overview: overview_table,
    }
}

/// Where an overview table goes: its range, rows and columns (from A1, in place).
pub fn overview_range(table: &[Vec<Value>], shape: &Shape) -> (String, u64, u64) {
    let width = table.iter().map(Vec::len).max().unwrap_or(1) as u64;
    let n = table.len() as u64;
    (
        format!("{}!A1:{}{n}", quote_tab(&shape.overview), column_letters(width)),
        n,
        width,
    )
}

/// The tab a new board's readings go to (creating its [`TabState`] when needed).
fn tab_for(st: &mut State, device: &str, shape: &Shape) -> usize {
    if !shape.per_device {
        if st.tabs.is_empty() {
            st.tabs.push(new_tab(SINGLE_TAB.to_string()));
            replay_skip(st, 0);
        }
        return 0;
    }
    let mut taken: Vec<String> = st.tabs.iter().map(|t| t.title.clone()).collect();
    taken.push(shape.overview.clone());
    taken.push(shape.csv_tab.clone());
    if st.tabs.iter().filter(|t| !t.shared).count() >= shape.max_board_tabs {
        if let Some(i) = st.tabs.iter().position(|t| t.shared) {
            return i;
        }
        let mut tab = new_tab(title_for(OVERFLOW_TAB, &taken));
        tab.shared = true;
        st.tabs.push(tab);
    } else {
        st.tabs.push(new_tab(title_for(device, &taken)));
    }
    let i = st.tabs.len() - 1;
    replay_skip(st, i);
    i
}

/// A tab met again in a replay takes over its count of deleted readings to drop.
fn replay_skip(st: &mut State, i: usize) {
    if let Some(n) = st.replay_skip.remove(&st.tabs[i].title) {
        st.tabs[i].skip = n;
        st.tabs[i].deleted = n;
    }
}

fn new_tab(title: String) -> TabState {
    TabState {
        title,
        columns: Vec::new(),
        next_row: 2,
        last: None,
        charted: Vec::new(),
        oldest: String::new(),
        shared: false,
        deleted: 0,
        skip: 0,
        dropping: false,
    }
}

/// The chart's id: fixed by the tab's title, so that a retried or replayed `addChart`
/// names the same chart (and Google refuses the duplicate instead of adding a second).
pub fn chart_id(title: &str) -> i64 {
    let h = crate::sink::follower::rows::row_hash_hex(title.as_bytes());
    let n = u64::from_str_radix(&h, 16).unwrap_or(1);
    (n % (i32::MAX as u64 - 1)) as i64 + 1
}

/// How many ids [`sheet_id_for`] may give one title (when one is taken by another tab).
pub const SHEET_ID_TRIES: u32 = 8;

/// The `sheetId` the daemon gives the tab `title` (try `n`): fixed by the title, so that a
/// tab created by a request whose reply was lost is recognised as the daemon's own.
pub fn sheet_id_for(title: &str, n: u32) -> i64 {
    let h = crate::sink::follower::rows::row_hash_hex(format!("sheet\u{1f}{n}\u{1f}{title}").as_bytes());
    let n = u64::from_str_radix(&h, 16).unwrap_or(1);
    (n % (i32::MAX as u64 - 1)) as i64 + 1
}

/// A one-column `GridRange` covering the whole column (no row bounds: it grows with
/// the data).
fn column_range(sheet_id: i64, column: usize) -> Value {
    serde_json::json!({"sources": [{
        "sheetId": sheet_id,
        "startColumnIndex": column,
        "endColumnIndex": column + 1
    }]})
}

/// The `ChartSpec` of a board tab: a line chart of its charted fields against
/// `received_at` (column A), row 1 as the series names.
pub fn chart_spec(tab: &TabState, sheet_id: i64) -> Value {
    let series: Vec<Value> = tab
        .charted
        .iter()
        .filter_map(|k| tab.columns.iter().position(|c| c == k))
        .map(|col| serde_json::json!({"series": {"sourceRange": column_range(sheet_id, col)}, "targetAxis": "LEFT_AXIS"}))
        .collect();
    serde_json::json!({
        "title": tab.title,
        "basicChart": {
            "chartType": "LINE",
            "legendPosition": "BOTTOM_LEGEND",
            "axis": [{"position": "BOTTOM_AXIS", "title": RECEIVED_AT}],
            "domains": [{"domain": {"sourceRange": column_range(sheet_id, 0)}}],
            "series": series,
            "headerCount": 1
        }
    })
}

/// `addChart` for a board tab: the chart floats over the sheet, its corner on row 2 of
/// column `anchor_column` (0-based; it must exist in the grid).
pub fn add_chart_request(tab: &TabState, sheet_id: i64, anchor_column: u64) -> Value {
    serde_json::json!({"addChart": {"chart": {
        "chartId": chart_id(&tab.title),
        "spec": chart_spec(tab, sheet_id),
        "position": {"overlayPosition": {"anchorCell": {
            "sheetId": sheet_id, "rowIndex": 1, "columnIndex": anchor_column
        }}}
    }}})
}

/// `updateChartSpec` for a board tab whose charted fields changed.
pub fn update_chart_request(tab: &TabState, sheet_id: i64) -> Value {
    serde_json::json!({"updateChartSpec": {"chartId": chart_id(&tab.title), "spec": chart_spec(tab, sheet_id)}})
}

/// A board's tab title: sanitised, cut, made distinct from `taken` (see the module docs).
pub fn title_for(device: &str, taken: &[String]) -> String {
    let clean: String = device
        .chars()
        .map(|c| {
            if matches!(c, '[' | ']' | '*' | '?' | '/' | '\\' | ':') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = if clean.trim().is_empty() {
        "_".to_string()
    } else {
        clean
    };
    let free = |t: &str| !taken.iter().any(|x| x.to_lowercase() == t.to_lowercase());
    let base: String = clean.chars().take(MAX_TITLE_CHARS).collect();
    if free(&base) {
        return base;
    }
    (2u64..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let keep = MAX_TITLE_CHARS - suffix.chars().count();
            format!("{}{suffix}", clean.chars().take(keep).collect::<String>())
        })
        .find(|t| free(t))
        .expect("some suffix is free")
}

/// A tab's header row.
pub fn header(tab: &TabState) -> Vec<Value> {
    tab.columns
        .iter()
        .map(|c| cells::text_cell(c.strip_prefix(FIELD_PREFIX).unwrap_or(c)))
        .collect()
}

/// The overview table: header, then one row per board in first-seen order.
pub fn overview(st: &State, now_ms: i64, shape: &Shape) -> Vec<Vec<Value>> {
    let today = crate::sink::csv::encode::rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms.max(0) as u64),
    );
    let today = today.get(..10).unwrap_or("");
    let mut table = vec![OVERVIEW_HEADER.iter().map(|h| Value::from(*h)).collect::<Vec<_>>()];
    for b in &st.boards {
        let quiet_ms = (now_ms - b.last_ms).max(0);
        let since = quiet_ms / 1000;
        let quiet_after = b.interval_ms.map_or(shape.min_silent_ms, |i| {
            ((i as f64 * shape.silent_factor) as i64).max(shape.min_silent_ms)
        });
        let mut row = vec![
            cells::text_cell(&b.device),
            Value::from(b.last_seen.clone()),
            Value::from(since),
            Value::from(if b.day == today { b.today } else { 0 }),
            Value::from(if quiet_ms > quiet_after { "silent" } else { "ok" }),
        ];
        for (field, value) in &b.latest {
            row.push(cells::text_cell(field));
            row.push(value.clone());
        }
        table.push(row);
    }
    table
}

/// Unix milliseconds of an RFC 3339 UTC time as the CSV writes it
/// (`2026-12-01T11:58:00.123Z`); `None` for anything else (another shape, an offset other
/// than `Z`, a date that does not exist). The calendar is `jiff`'s.
pub fn parse_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !b.ends_with(b"Z") || !(b.len() == 20 || b[19] == b'.') {
        return None;
    }
    let t: jiff::Timestamp = s.parse().ok()?;
    Some(t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, dev: &str, field: &str, value: &str, kind: &str, seq: &str, dt: &str) -> Row {
        Row(vec![at, dev, field, value, kind, "1.2.3.4:5", "b1", seq, dt]
            .into_iter()
            .map(String::from)
            .collect())
    }

    fn shape() -> Shape {
        Shape {
            per_device: true,
            overview: "Latest".into(),
            csv_tab: "Readings".into(),
            max_board_tabs: 2,
            silent_factor: 5.0,
            min_silent_ms: 120_000,
        }
    }

    #[test]
    fn sheet_ids_are_fixed_by_the_title_positive_int32_and_differ_per_try() {
        let a: Vec<i64> = (0..SHEET_ID_TRIES).map(|n| sheet_id_for("kitchen", n)).collect();
        assert_eq!(
            a,
            (0..SHEET_ID_TRIES)
                .map(|n| sheet_id_for("kitchen", n))
                .collect::<Vec<_>>()
        );
        assert!(a.iter().all(|&id| id >= 1 && id < i64::from(i32::MAX)), "{a:?}");
        let distinct: std::collections::BTreeSet<i64> = a.iter().copied().collect();
        assert_eq!(distinct.len(), a.len());
        assert_ne!(sheet_id_for("kitchen", 0), sheet_id_for("garage", 0));
    }

    #[test]
    fn titles_are_sanitised_cut_and_distinct() {
        let taken = vec!["Latest".to_string(), "Readings".to_string(), "a_b".to_string()];
        assert_eq!(title_for("a/b", &taken[..2]), "a_b");
        assert_eq!(title_for("A:B", &taken), "A_B (2)");
        assert_eq!(title_for("latest", &taken), "latest (2)");
        assert_eq!(title_for("[x]*?\\", &[]), "_x____");
        let long = "x".repeat(150);
        assert_eq!(title_for(&long, &[]).chars().count(), 100);
        let t = title_for(&long, &["x".repeat(100)]);
        assert_eq!(t.chars().count(), 100);
        assert!(t.ends_with(" (2)"));
        assert_eq!(title_for("", &[]), "_");
    }

    #[test]
    fn millis() {
        assert_eq!(parse_millis("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(parse_millis("2026-12-01T00:00:00.000Z"), Some(1_796_083_200_000));
        assert_eq!(parse_millis("nope"), None);
        assert_eq!(parse_millis("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(parse_millis("2023-02-29T12:00:00.000Z"), None);
        assert_eq!(parse_millis("2026-12-01T00:00:00.000+01:00"), None);
    }

    #[test]
    fn one_row_per_reading_and_split_batches_fill_the_same_row() {
        let rows = vec![
            row("2026-12-01T00:00:00.000Z", "d1", "t", "21.5", "number", "1", ""),
            row("2026-12-01T00:00:00.000Z", "d1", "h", "40", "number", "1", ""),
            row("2026-12-01T00:00:01.000Z", "d2", "t", "x", "text", "1", "99"),
            row("2026-12-01T00:00:02.000Z", "d1", "t", "22", "number", "2", ""),
        ];
        let whole = plan(&State::default(), &rows, &shape(), 0, None);
        let first = plan(&State::default(), &rows[..1], &shape(), 0, None);
        let rest = plan(&first.state, &rows[1..], &shape(), 0, None);
        assert_eq!(whole.state.tabs, rest.state.tabs);
        assert_eq!(whole.state.tabs[0].title, "d1");
        assert_eq!(whole.state.tabs[0].columns, vec!["received_at", "field:t", "field:h"]);
        assert_eq!(whole.state.tabs[0].next_row, 4);
        assert_eq!(
            whole.state.tabs[1].columns,
            vec!["received_at", "device_time", "field:t"]
        );
        assert_eq!(whole.state.boards[0].today, 2);
        // The second half writes row 2's `h` cell, and leaves its earlier cells alone.
        let r2 = rest.writes.iter().find(|(r, _)| r.starts_with("'d1'!A2")).unwrap();
        assert_eq!(
            r2.1[0],
            vec![Value::from("2026-12-01T00:00:00.000Z"), Value::Null, Value::from(40.0)]
        );
        assert!(whole.writes.iter().any(|(r, _)| r == "'Latest'!A1:I3"));
    }

    #[test]
    fn a_replay_drops_the_readings_retention_deleted_and_lands_the_rest_in_place() {
        let rows: Vec<Row> = (0..6)
            .flat_map(|i| {
                let at = format!("2026-12-01T00:00:{i:02}.000Z");
                let d = if i % 2 == 0 { "d1" } else { "d2" };
                [
                    row(&at, d, "t", &i.to_string(), "number", &i.to_string(), ""),
                    row(&at, d, "h", "40", "number", &i.to_string(), ""),
                ]
            })
            .collect();
        let mut st = plan(&State::default(), &rows, &shape(), 0, None).state;
        // Retention deleted the 2 oldest rows of d1 (readings 0 and 2).
        st.tabs[0].next_row -= 2;
        st.tabs[0].deleted += 2;
        let replay = st.replay();
        assert_eq!(replay.replay_skip.get("d1"), Some(&2));
        assert!(replay.tabs.is_empty() && !replay.replay_skip.contains_key("d2"));
        // In one batch, or split inside a dropped reading and inside a kept one.
        let whole = plan(&replay, &rows, &shape(), 0, None);
        let a = plan(&replay, &rows[..3], &shape(), 0, None);
        let b = plan(&a.state, &rows[3..9], &shape(), 0, None);
        let c = plan(&b.state, &rows[9..], &shape(), 0, None);
        for p in [&whole, &c] {
            assert_eq!(p.state.tabs[0].next_row, st.tabs[0].next_row);
            assert_eq!(p.state.tabs[0].columns, st.tabs[0].columns);
            assert_eq!(p.state.tabs[1].next_row, st.tabs[1].next_row);
            assert_eq!(p.state.tabs[0].oldest, "2026-12-01T00:00:04.000Z");
        }
        // d1's only row is reading 4, on row 2; d2 is rewritten as it was.
        let d1: Vec<_> = whole.writes.iter().filter(|(r, _)| r.starts_with("'d1'!A2")).collect();
        assert_eq!(d1.len(), 1, "{:?}", whole.writes);
        assert_eq!(d1[0].0, "'d1'!A2:C2");
        assert_eq!(d1[0].1[0][1], Value::from(4.0));
        let split: Vec<_> = [&a, &b, &c]
            .iter()
            .flat_map(|p| p.writes.iter())
            .filter(|(r, _)| r.starts_with("'d1'!A") && !r.starts_with("'d1'!A1"))
            .map(|(r, _)| r.clone())
            .collect();
        assert!(split.iter().all(|r| r.starts_with("'d1'!A2:")), "{split:?}");
        assert!(whole.writes.iter().any(|(r, _)| r == "'d2'!A2:C4"));
    }

    #[test]
    fn silent_follows_the_alerts_rule() {
        let at = |s: u32| format!("2026-12-01T00:{:02}:{:02}.000Z", s / 60, s % 60);
        let rows: Vec<Row> = (0..3)
            .map(|i| row(&at(i * 10), "d1", "t", "1", "number", &i.to_string(), ""))
            .collect();
        let p = plan(&State::default(), &rows, &shape(), 0, None);
        let last = parse_millis(&at(20)).unwrap();
        let status = |after_ms: i64| overview(&p.state, last + after_ms, &shape())[1][4].clone();
        // Every 10 s: 5 x 10 s = 50 s is under the 120 s minimum, which rules.
        assert_eq!(status(120_000), Value::from("ok"));
        assert_eq!(status(120_001), Value::from("silent"));
        let mut slow = shape();
        slow.min_silent_ms = 1_000;
        assert_eq!(overview(&p.state, last + 50_000, &slow)[1][4], Value::from("ok"));
        assert_eq!(overview(&p.state, last + 50_001, &slow)[1][4], Value::from("silent"));
    }

    #[test]
    fn boards_beyond_the_tab_limit_share_one_tab_with_a_device_column() {
        let at = "2026-12-01T00:00:00.000Z";
        let rows: Vec<Row> = ["d1", "d2", "d3", "d4", "d1"]
            .iter()
            .enumerate()
            .map(|(i, d)| row(at, d, "t", "1", "number", &i.to_string(), ""))
            .collect();
        let p = plan(&State::default(), &rows, &shape(), 0, None);
        // At N (2) boards each has a tab; N+1 and later share one.
        let titles: Vec<&str> = p.state.tabs.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, ["d1", "d2", "Other boards"]);
        assert!(p.state.tabs[2].shared && !p.state.tabs[0].shared);
        assert_eq!(p.state.tabs[2].columns, ["received_at", "device", "field:t"]);
        assert_eq!(p.state.tabs[2].next_row, 4);
        assert_eq!(p.state.tabs[0].next_row, 4);
        assert_eq!(p.state.boards.iter().map(|b| b.tab).collect::<Vec<_>>(), [0, 1, 2, 2]);
    }
}
