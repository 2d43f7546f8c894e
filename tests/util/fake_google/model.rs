//! The spreadsheet model: tabs, their grid properties and charts, sparse cells.
use super::*;

pub(super) struct Spreadsheet {
    pub(super) id: String,
    pub(super) sheets: Vec<Sheet>,
    pub(super) access: BTreeMap<String, Role>,
    /// Injected refusal: text cells containing this get 400 ([`FakeGoogle::refuse_cells_containing`]).
    pub(super) refuse_text: Option<String>,
}

impl Spreadsheet {
    pub(super) fn sheet_by_title(&self, title: &str) -> Option<&Sheet> {
        self.sheets.iter().find(|s| s.props.title == title)
    }

    pub(super) fn to_json(&self) -> Value {
        let sheets: Vec<Value> = self
            .sheets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let charts: Vec<Value> = s
                    .props
                    .charts
                    .iter()
                    .map(|(id, spec)| json!({"chartId": id, "spec": spec}))
                    .collect();
                proto3(json!({ "properties": s.props.to_json(i), "charts": charts }))
            })
            .collect();
        // Google also sends the locale, time zone, recalculation and URL; the uploader reads none.
        let properties = json!({ "title": format!("sensorlog test {}", self.id) });
        json!({ "spreadsheetId": self.id, "properties": properties, "sheets": sheets })
    }
}

#[derive(Clone, Default)]
pub(super) struct SheetProps {
    pub(super) sheet_id: i64,
    pub(super) title: String,
    pub(super) rows: u32,
    pub(super) cols: u32,
    pub(super) frozen_rows: u32,
    /// Charts anchored on this tab: (chartId, ChartSpec as sent).
    pub(super) charts: Vec<(i64, Value)>,
}

impl SheetProps {
    pub(super) fn cells(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.cols)
    }

    pub(super) fn to_json(&self, index: usize) -> Value {
        let grid = proto3(json!({
            "rowCount": self.rows,
            "columnCount": self.cols,
            "frozenRowCount": self.frozen_rows,
        }));
        json!({
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": grid,
        })
    }
}

pub(super) struct Sheet {
    pub(super) props: SheetProps,
    /// Sparse: `(row, column)`, zero-based; never `Cell::Empty` (an empty cell is an
    /// absent key).
    pub(super) cells: BTreeMap<(u32, u32), Cell>,
}

impl Sheet {
    /// An empty tab.
    pub(super) fn new(sheet_id: i64, title: &str, rows: u32, cols: u32) -> Sheet {
        let props = SheetProps {
            sheet_id,
            title: title.to_string(),
            rows,
            cols,
            ..SheetProps::default()
        };
        Sheet {
            props,
            cells: BTreeMap::new(),
        }
    }

    pub(super) fn set(&mut self, at: (u32, u32), cell: Cell) {
        if cell == Cell::Empty || cell == Cell::text("") {
            self.cells.remove(&at);
        } else {
            self.cells.insert(at, cell);
        }
    }

    /// The rectangle `from`..=`to` (row, column) as rows, trimmed as Google trims: no
    /// trailing empty rows or cells, `empty` in the gaps.
    pub(super) fn grid<T: Clone>(
        &self,
        (r0, c0): (u32, u32),
        (r1, c1): (u32, u32),
        empty: T,
        render: impl Fn(&Cell) -> T,
    ) -> Vec<Vec<T>> {
        // Callers pass ordered corners (`parse_a1` refuses reversed ones): BTreeMap::range
        // panics on an inverted range.
        let mut grid: Vec<Vec<T>> = Vec::new();
        for (&(r, c), cell) in self.cells.range((r0, c0)..=(r1, c1)) {
            if !(c0..=c1).contains(&c) {
                continue;
            }
            let (r, c) = ((r - r0) as usize, (c - c0) as usize);
            if grid.len() <= r {
                grid.resize_with(r + 1, Vec::new);
            }
            let line = &mut grid[r];
            if line.len() <= c {
                line.resize(c + 1, empty.clone());
            }
            line[c] = render(cell);
        }
        grid
    }
}

/// The fake's random numbers (sheet and chart ids): the tests' one xorshift (`util::rng`).
pub(super) type Rng = Box<dyn FnMut() -> u64 + Send>;

/// A random id in 1..i32::MAX that `used` does not hold, as Google draws them.
pub(super) fn random_sheet_id(rng: &mut Rng, used: &[i64]) -> i64 {
    // Bounded: 1000 draws can only all collide with a pathological `used`.
    for _ in 0..1000 {
        let id = (rng() % (i32::MAX as u64 - 1)) as i64 + 1;
        if !used.contains(&id) {
            return id;
        }
    }
    used.iter().copied().max().unwrap_or(0) + 1
}
