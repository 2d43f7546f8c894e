//! The spreadsheet model (tabs, grid, cells) and the Sheets endpoints with Google's limits:
//! grid size, workbook cell cap, 50,000 characters per cell (UTF-16 units), request shapes.
use super::*;

pub(super) struct Spreadsheet {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) sheets: Vec<Sheet>,
    pub(super) access: BTreeMap<String, Role>,
    /// Injected refusal: text cells containing this get 400 ([`FakeGoogle::refuse_cells_containing`]).
    pub(super) refuse_text: Option<String>,
}

impl Spreadsheet {
    pub(super) fn sheet_by_title(&self, title: &str) -> Option<&Sheet> {
        self.sheets.iter().find(|s| s.props.title == title)
    }

    pub(super) fn sheet_by_title_mut(&mut self, title: &str) -> Option<&mut Sheet> {
        self.sheets.iter_mut().find(|s| s.props.title == title)
    }

    pub(super) fn to_json(&self) -> Value {
        let sheets: Vec<Value> = self
            .sheets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut sheet = json!({ "properties": s.props.to_json(i) });
                if !s.props.charts.is_empty() {
                    let charts: Vec<Value> = s
                        .props
                        .charts
                        .iter()
                        .map(|(id, spec)| json!({"chartId": id, "spec": spec}))
                        .collect();
                    sheet["charts"] = Value::Array(charts);
                }
                sheet
            })
            .collect();
        json!({
            "spreadsheetId": self.id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Etc/GMT",
            },
            "sheets": sheets,
            "spreadsheetUrl": format!("https://docs.google.com/spreadsheets/d/{}/edit", self.id),
        })
    }
}

#[derive(Clone)]
pub(super) struct SheetProps {
    pub(super) sheet_id: i64,
    pub(super) title: String,
    pub(super) rows: u32,
    pub(super) cols: u32,
    pub(super) frozen_rows: u32,
    pub(super) frozen_cols: u32,
    /// Charts anchored on this tab: (chartId, ChartSpec as sent).
    pub(super) charts: Vec<(i64, Value)>,
}

impl SheetProps {
    pub(super) fn cells(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.cols)
    }

    pub(super) fn to_json(&self, index: usize) -> Value {
        let mut grid = Map::new();
        grid.insert("rowCount".into(), json!(self.rows));
        grid.insert("columnCount".into(), json!(self.cols));
        if self.frozen_rows > 0 {
            grid.insert("frozenRowCount".into(), json!(self.frozen_rows));
        }
        if self.frozen_cols > 0 {
            grid.insert("frozenColumnCount".into(), json!(self.frozen_cols));
        }
        json!({
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": grid,
        })
    }
}

pub(super) struct StoredCell {
    /// Never `Cell::Empty`: an empty cell is an absent key.
    pub(super) cell: Cell,
    pub(super) written_as: ValueInputOption,
}

pub(super) struct Sheet {
    pub(super) props: SheetProps,
    /// Sparse: `(row, column)`, zero-based.
    pub(super) cells: BTreeMap<(u32, u32), StoredCell>,
}

impl Sheet {
    pub(super) fn set(&mut self, at: (u32, u32), cell: Cell, written_as: ValueInputOption) {
        match cell {
            Cell::Empty => {
                self.cells.remove(&at);
            }
            Cell::Text(ref s) if s.is_empty() => {
                self.cells.remove(&at);
            }
            cell => {
                self.cells.insert(at, StoredCell { cell, written_as });
            }
        }
    }

    pub(super) fn trimmed_values(&self) -> Vec<Vec<Cell>> {
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for (&(r, c), stored) in &self.cells {
            let (r, c) = (r as usize, c as usize);
            if rows.len() <= r {
                rows.resize_with(r + 1, Vec::new);
            }
            let row = &mut rows[r];
            if row.len() <= c {
                row.resize(c + 1, Cell::Empty);
            }
            row[c] = stored.cell.clone();
        }
        rows
    }

    /// Cells of the rectangle, relative to its top-left corner.
    pub(super) fn rect(&self, r0: u32, c0: u32, r1: u32, c1: u32) -> Vec<((u32, u32), &Cell)> {
        if r0 > r1 || c0 > c1 {
            return Vec::new(); // BTreeMap::range panics on an inverted range
        }
        self.cells
            .range((r0, 0)..=(r1, u32::MAX))
            .filter(|(&(_, c), _)| c >= c0 && c <= c1)
            .map(|(&(r, c), s)| ((r - r0, c - c0), &s.cell))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Sheets endpoints
// ---------------------------------------------------------------------------------------

pub(super) fn sheets_endpoint(
    st: &mut State,
    route: &Route,
    req: &HttpRequest,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let account = match st.authenticate(req, now) {
        Ok(account) => account,
        Err(response) => {
            st.stats.unauthenticated += 1;
            return (response, None, "bad bearer token");
        }
    };
    let result = authorized_sheets(st, route, req, &account, now);
    let why = match &result {
        Err(r) if r.status == 429 => "quota",
        _ => "",
    };
    (result.unwrap_or_else(|e| e), Some(account), why)
}

pub(super) fn authorized_sheets(
    st: &mut State,
    route: &Route,
    req: &HttpRequest,
    account: &str,
    now: Instant,
) -> Result<Response, Response> {
    if st.api_disabled {
        return Err(service_disabled());
    }
    let kind = route.kind();
    st.charge_quota(account, kind, now)?;
    let max_cells = st.max_cells;
    let State {
        spreadsheets,
        rng,
        stats,
        ..
    } = st;
    let Some(ss) = spreadsheets.get_mut(route.spreadsheet_id()) else {
        return Err(rpc_error(404, "NOT_FOUND", MSG_NOT_FOUND));
    };
    match (ss.access.get(account), kind.is_write()) {
        (Some(Role::Writer), _) | (Some(Role::Reader), false) => {}
        _ => return Err(rpc_error(403, "PERMISSION_DENIED", MSG_PERMISSION_DENIED)),
    }
    let schema = match route {
        Route::BatchUpdate(_) => Some("BatchUpdateSpreadsheetRequest"),
        Route::ValuesBatchUpdate(_) => Some("BatchUpdateValuesRequest"),
        _ => None,
    };
    if let Some(schema) = schema {
        if let Err(message) = discovery::check(schema, &Value::Object(json_body(req)?)) {
            stats.schema_violations += 1;
            return Err(invalid_argument(&message));
        }
    }
    let body = match route {
        Route::GetSpreadsheet(_) => partial(ss.to_json(), req.query_param("fields"))?,
        Route::GetValues(_, range) => get_values(ss, range, req)?,
        Route::BatchUpdate(_) => {
            let body = batch_update(ss, &json_body(req)?, max_cells, rng)?;
            let cells: u64 = ss.sheets.iter().map(|s| s.props.cells()).sum();
            stats.max_workbook_cells = stats.max_workbook_cells.max(cells);
            body
        }
        Route::ValuesBatchUpdate(_) => {
            let (body, option) = values_batch_update(ss, &json_body(req)?)?;
            stats.writes_applied += 1;
            if option != ValueInputOption::Raw {
                stats.non_raw_writes += 1;
            }
            body
        }
        _ => return Err(rpc_error(404, "NOT_FOUND", MSG_NOT_FOUND)),
    };
    Ok(json_response(200, &body))
}

/// The request body as a JSON object (an empty body counts as `{}`).
pub(super) fn json_body(req: &HttpRequest) -> Result<Map<String, Value>, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_argument(
            "Invalid JSON payload received. Root element must be a message.",
        )),
        Err(e) => Err(invalid_argument(&format!("Invalid JSON payload received. {e}"))),
    }
}

/// Proto JSON is strict: unknown field names are refused.
pub(super) fn check_fields(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Response> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) if at.is_empty() => Err(invalid_argument(&format!(
            "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
        ))),
        Some(name) => Err(invalid_argument(&format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ))),
    }
}

pub(super) fn invalid_value(at: &str, type_name: &str, value: &Value) -> Response {
    invalid_argument(&format!("Invalid value at '{at}' ({type_name}), {value}"))
}

/// An optional int32 field; proto JSON accepts numbers and numeric strings.
pub(super) fn int_field(obj: &Map<String, Value>, name: &str, at: &str) -> Result<Option<i64>, Response> {
    let parsed = match obj.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(n) if i64::from(i32::MIN) <= n && n <= i64::from(i32::MAX) => Ok(Some(n)),
        _ => Err(invalid_value(
            &format!("{at}.{name}"),
            "TYPE_INT32",
            obj.get(name).unwrap_or(&Value::Null),
        )),
    }
}

pub(super) fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<bool, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(invalid_value(name, "TYPE_BOOL", other)),
    }
}

pub(super) fn object_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(invalid_value(&format!("{at}.{name}"), "TYPE_MESSAGE", other)),
    }
}

// --- spreadsheets.batchUpdate ------------------------------------------------------------

pub(super) fn batch_update(
    ss: &mut Spreadsheet,
    body: &Map<String, Value>,
    max_cells: u64,
    rng: &mut u64,
) -> Result<Value, Response> {
    check_fields(
        body,
        &[
            "requests",
            "includeSpreadsheetInResponse",
            "responseRanges",
            "responseIncludeGridData",
        ],
        "",
    )?;
    let include_spreadsheet = bool_field(body, "includeSpreadsheetInResponse")?;
    let requests: &[Value] = match body.get("requests") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(other) => return Err(invalid_value("requests", "TYPE_MESSAGE", other)),
    };
    if requests.is_empty() {
        return Err(invalid_argument("Must specify at least one request."));
    }
    // Validate and apply on a copy of the tab properties; commit only if all succeed.
    let mut work: Vec<SheetProps> = ss.sheets.iter().map(|s| s.props.clone()).collect();
    let mut replies = Vec::with_capacity(requests.len());
    let mut deletions = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let Some(obj) = request.as_object() else {
            return Err(invalid_value(&format!("requests[{i}]"), "TYPE_MESSAGE", request));
        };
        let mut set = obj.iter().filter(|(_, v)| !v.is_null());
        let (name, inner) = match (set.next(), set.next()) {
            (Some(first), None) => first,
            (None, _) => return Err(invalid_argument(&format!("Invalid requests[{i}]: No request set."))),
            (Some(_), Some((second, _))) => {
                return Err(invalid_argument(&format!(
                    "Invalid JSON payload received. Oneof field 'kind' is already set. \
                     Cannot set '{second}' at 'requests[{i}]'."
                )))
            }
        };
        let reply = match name.as_str() {
            "addSheet" => add_sheet(&mut work, i, inner, max_cells, rng)?,
            "appendDimension" => append_dimension(&mut work, i, inner, max_cells)?,
            "addChart" => add_chart(&mut work, i, inner, rng)?,
            "updateChartSpec" => update_chart_spec(&mut work, i, inner)?,
            "deleteDimension" => delete_dimension(&mut work, i, inner, &mut deletions)?,
            other => {
                return Err(invalid_argument(&format!(
                    "Invalid JSON payload received. Unknown name \"{other}\" at \
                     'requests[{i}]': Cannot find field. (The fake Google implements only \
                     addSheet, appendDimension, addChart, updateChartSpec and deleteDimension.)"
                )))
            }
        };
        replies.push(reply);
    }
    // Commit: keep each surviving tab's cells, in the new order.
    let mut old: HashMap<i64, Sheet> = ss.sheets.drain(..).map(|s| (s.props.sheet_id, s)).collect();
    ss.sheets = work
        .into_iter()
        .map(|props| {
            let cells = old.remove(&props.sheet_id).map(|s| s.cells).unwrap_or_default();
            Sheet { props, cells }
        })
        .collect();
    apply_deletions(&mut ss.sheets, &deletions);
    let mut response = json!({ "spreadsheetId": ss.id, "replies": replies });
    if include_spreadsheet {
        response["updatedSpreadsheet"] = ss.to_json();
    }
    Ok(response)
}

pub(super) fn total_cells(work: &[SheetProps]) -> u64 {
    work.iter().map(SheetProps::cells).sum()
}

pub(super) fn cell_cap_error(max_cells: u64) -> Response {
    invalid_argument(&format!(
        "This action would increase the number of cells in the workbook above the limit of \
         {max_cells} cells."
    ))
}

pub(super) fn add_sheet(
    work: &mut Vec<SheetProps>,
    i: usize,
    inner: &Value,
    max_cells: u64,
    rng: &mut u64,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].addSheet");
    let at = format!("requests[{i}].addSheet");
    let Some(obj) = inner.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", inner));
    };
    check_fields(obj, &["properties"], &at)?;
    let empty = Map::new();
    let at = format!("{at}.properties");
    let props = object_field(obj, "properties", &at)?.unwrap_or(&empty);
    check_fields(
        props,
        &[
            "sheetId",
            "title",
            "index",
            "sheetType",
            "gridProperties",
            "hidden",
            "tabColor",
            "tabColorStyle",
            "rightToLeft",
            "dataSourceSheetProperties",
        ],
        &at,
    )?;
    let title = match props.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid_value(&format!("{at}.title"), "TYPE_STRING", other)),
    };
    let title = if title.is_empty() {
        // Google names an untitled tab "SheetN".
        (1..=work.len() + 1)
            .map(|n| format!("Sheet{n}"))
            .find(|t| work.iter().all(|p| &p.title != t))
            .unwrap_or_else(|| format!("Sheet{}", work.len() + 1))
    } else {
        title
    };
    if work.iter().any(|p| p.title == title) {
        return Err(invalid_argument(&format!(
            "{ctx}: A sheet with the name \"{title}\" already exists. Please enter another name."
        )));
    }
    let sheet_id = match int_field(props, "sheetId", &at)? {
        Some(id) if id < 0 => return Err(invalid_argument(&format!("{ctx}: sheetId must not be negative."))),
        Some(id) if work.iter().any(|p| p.sheet_id == id) => {
            // (fake's wording)
            return Err(invalid_argument(&format!(
                "{ctx}: A sheet with the id {id} already exists."
            )));
        }
        Some(id) => id,
        None => random_sheet_id(rng, &work.iter().map(|p| p.sheet_id).collect::<Vec<_>>()),
    };
    match props.get("sheetType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "GRID" => {}
        Some(other) => {
            return Err(invalid_argument(&format!(
                "{ctx}: the fake Google supports only sheetType GRID, not {other}."
            )))
        }
    }
    let grid_at = format!("{at}.gridProperties");
    let grid = object_field(props, "gridProperties", &at)?.unwrap_or(&empty);
    check_fields(
        grid,
        &[
            "rowCount",
            "columnCount",
            "frozenRowCount",
            "frozenColumnCount",
            "hideGridlines",
            "rowGroupControlAfter",
            "columnGroupControlAfter",
        ],
        &grid_at,
    )?;
    let count = |name: &str, default: u32| -> Result<u32, Response> {
        match int_field(grid, name, &grid_at)? {
            None | Some(0) => Ok(default),
            Some(n) if n < 0 => Err(invalid_argument(&format!("{ctx}: {name} must not be negative."))),
            Some(n) => Ok(n as u32),
        }
    };
    let rows = count("rowCount", DEFAULT_GRID.0)?;
    let cols = count("columnCount", DEFAULT_GRID.1)?;
    let frozen_rows = count("frozenRowCount", 0)?;
    let frozen_cols = count("frozenColumnCount", 0)?;
    if cols > MAX_COLUMNS {
        return Err(invalid_argument(&format!(
            "{ctx}: This action would increase the number of columns in the sheet above the \
             limit of {MAX_COLUMNS}."
        )));
    }
    if frozen_rows >= rows || frozen_cols >= cols {
        // (fake's wording, after the Sheets UI)
        return Err(invalid_argument(&format!(
            "{ctx}: You can't freeze all visible rows or columns on the sheet."
        )));
    }
    let added = u64::from(rows) * u64::from(cols);
    if total_cells(work) + added > max_cells {
        return Err(cell_cap_error(max_cells));
    }
    let index = match int_field(props, "index", &at)? {
        Some(n) if n < 0 => return Err(invalid_argument(&format!("{ctx}: index must not be negative."))),
        Some(n) => (n as usize).min(work.len()),
        None => work.len(),
    };
    let new = SheetProps {
        sheet_id,
        title,
        rows,
        cols,
        frozen_rows,
        frozen_cols,
        charts: Vec::new(),
    };
    let reply = json!({ "addSheet": { "properties": new.to_json(index) } });
    work.insert(index, new);
    Ok(reply)
}

pub(super) fn append_dimension(
    work: &mut [SheetProps],
    i: usize,
    inner: &Value,
    max_cells: u64,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].appendDimension");
    let at = format!("requests[{i}].appendDimension");
    let Some(obj) = inner.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", inner));
    };
    check_fields(obj, &["sheetId", "dimension", "length"], &at)?;
    // proto3: an absent sheetId is 0.
    let sheet_id = int_field(obj, "sheetId", &at)?.unwrap_or(0);
    let rows_dimension = match obj.get("dimension") {
        Some(Value::String(d)) if d == "ROWS" => true,
        Some(Value::String(d)) if d == "COLUMNS" => false,
        None | Some(Value::Null) => {
            return Err(invalid_argument(&format!("{ctx}: dimension must be ROWS or COLUMNS.")))
        }
        Some(Value::String(d)) if d == "DIMENSION_UNSPECIFIED" => {
            return Err(invalid_argument(&format!("{ctx}: dimension must be ROWS or COLUMNS.")))
        }
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.dimension"),
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                other,
            ))
        }
    };
    let length = match int_field(obj, "length", &at)? {
        Some(n) if n > 0 => n as u64,
        _ => return Err(invalid_argument(&format!("{ctx}: length must be greater than zero."))),
    };
    let total = total_cells(work);
    let Some(props) = work.iter_mut().find(|p| p.sheet_id == sheet_id) else {
        return Err(invalid_argument(&format!("{ctx}: No grid with id: {sheet_id}")));
    };
    let (new_rows, new_cols) = if rows_dimension {
        (u64::from(props.rows) + length, u64::from(props.cols))
    } else {
        (u64::from(props.rows), u64::from(props.cols) + length)
    };
    if new_cols > u64::from(MAX_COLUMNS) {
        return Err(invalid_argument(&format!(
            "{ctx}: This action would increase the number of columns in the sheet above the \
             limit of {MAX_COLUMNS}."
        )));
    }
    let new_total = total - props.cells() + new_rows * new_cols;
    if new_total > max_cells || new_rows > u64::from(u32::MAX) {
        return Err(cell_cap_error(max_cells));
    }
    props.rows = new_rows as u32;
    props.cols = new_cols as u32;
    Ok(json!({}))
}

pub(super) fn random_sheet_id(rng: &mut u64, used: &[i64]) -> i64 {
    // xorshift64; bounded: 1000 draws can only all collide with a pathological `used`.
    for _ in 0..1000 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let id = (*rng % (i32::MAX as u64 - 1)) as i64 + 1;
        if !used.contains(&id) {
            return id;
        }
    }
    used.iter().copied().max().unwrap_or(0) + 1
}

// --- values:batchUpdate ------------------------------------------------------------------

/// One validated ValueRange, ready to apply.
pub(super) struct PlannedWrite {
    pub(super) sheet: usize,
    /// `(row, col, value)`; `Cell::Empty` clears.
    pub(super) cells: Vec<((u32, u32), Cell)>,
    pub(super) updated_range: String,
    pub(super) rows: u64,
    pub(super) cols: u64,
}

pub(super) fn values_batch_update(
    ss: &mut Spreadsheet,
    body: &Map<String, Value>,
) -> Result<(Value, ValueInputOption), Response> {
    check_fields(
        body,
        &[
            "valueInputOption",
            "data",
            "includeValuesInResponse",
            "responseValueRenderOption",
            "responseDateTimeRenderOption",
        ],
        "",
    )?;
    let option = match body.get("valueInputOption") {
        Some(Value::String(s)) if s == "RAW" => ValueInputOption::Raw,
        Some(Value::String(s)) if s == "USER_ENTERED" => ValueInputOption::UserEntered,
        None | Some(Value::Null) => return Err(invalid_argument("'valueInputOption' is required but not specified")),
        Some(Value::String(s)) if s == "INPUT_VALUE_OPTION_UNSPECIFIED" => {
            return Err(invalid_argument("'valueInputOption' is required but not specified"))
        }
        Some(other) => {
            return Err(invalid_value(
                "value_input_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueInputOption",
                other,
            ))
        }
    };
    let include_values = bool_field(body, "includeValuesInResponse")?;
    let render = match body.get("responseValueRenderOption") {
        None | Some(Value::Null) => Render::Formatted,
        Some(Value::String(s)) => Render::parse(s).ok_or_else(|| {
            invalid_value(
                "response_value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                &json!(s),
            )
        })?,
        Some(other) => {
            return Err(invalid_value(
                "response_value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                other,
            ))
        }
    };
    let data: &[Value] = match body.get("data") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(other) => return Err(invalid_value("data", "TYPE_MESSAGE", other)),
    };
    // Validate every ValueRange before applying any (atomic, notes §2.7).
    let plans = data
        .iter()
        .enumerate()
        .map(|(i, vr)| plan_write(ss, i, vr, option))
        .collect::<Result<Vec<_>, _>>()?;
    for plan in &plans {
        let sheet = &mut ss.sheets[plan.sheet];
        for (at, cell) in &plan.cells {
            sheet.set(*at, cell.clone(), option);
        }
    }
    let mut responses = Vec::with_capacity(plans.len());
    let (mut rows, mut cols, mut cells) = (0u64, 0u64, 0u64);
    let mut sheets_touched = BTreeSet::new();
    for plan in &plans {
        let n = plan.cells.len() as u64;
        rows += plan.rows;
        cols += plan.cols;
        cells += n;
        if n > 0 {
            sheets_touched.insert(plan.sheet);
        }
        let mut response = Map::new();
        response.insert("spreadsheetId".into(), json!(ss.id));
        response.insert("updatedRange".into(), json!(plan.updated_range));
        insert_nonzero(&mut response, "updatedRows", plan.rows);
        insert_nonzero(&mut response, "updatedColumns", plan.cols);
        insert_nonzero(&mut response, "updatedCells", n);
        if include_values {
            let updated = read_values(ss, &plan.updated_range, render, false)?;
            response.insert("updatedData".into(), updated);
        }
        responses.push(Value::Object(response));
    }
    let mut out = Map::new();
    out.insert("spreadsheetId".into(), json!(ss.id));
    insert_nonzero(&mut out, "totalUpdatedRows", rows);
    insert_nonzero(&mut out, "totalUpdatedColumns", cols);
    insert_nonzero(&mut out, "totalUpdatedCells", cells);
    insert_nonzero(&mut out, "totalUpdatedSheets", sheets_touched.len() as u64);
    if !responses.is_empty() {
        out.insert("responses".into(), Value::Array(responses));
    }
    Ok((Value::Object(out), option))
}

/// proto3 JSON omits zero-valued scalars; so does the fake.
pub(super) fn insert_nonzero(map: &mut Map<String, Value>, key: &str, n: u64) {
    if n > 0 {
        map.insert(key.into(), json!(n));
    }
}

pub(super) fn plan_write(
    ss: &Spreadsheet,
    i: usize,
    vr: &Value,
    option: ValueInputOption,
) -> Result<PlannedWrite, Response> {
    let at = format!("data[{i}]");
    let Some(obj) = vr.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", vr));
    };
    check_fields(obj, &["range", "majorDimension", "values"], &at)?;
    let range_text = match obj.get("range") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(invalid_value(&format!("{at}.range"), "TYPE_STRING", other)),
    };
    let range = resolve_range(ss, range_text)?;
    let by_rows = match obj.get("majorDimension") {
        None | Some(Value::Null) => true,
        Some(Value::String(d)) if d == "ROWS" || d == "DIMENSION_UNSPECIFIED" => true,
        Some(Value::String(d)) if d == "COLUMNS" => false,
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.major_dimension"),
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                other,
            ))
        }
    };
    let empty = Vec::new();
    let outer: &Vec<Value> = match obj.get("values") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.values"),
                "type.googleapis.com/google.protobuf.ListValue",
                other,
            ))
        }
    };
    let props = &ss.sheets[range.sheet].props;
    // 1. The stated range must fit the grid.
    if range.exceeds(props) {
        return Err(grid_limit_error(range_text, props));
    }
    // The data's extent, in (row, col) terms.
    let mut lines: Vec<&Vec<Value>> = Vec::with_capacity(outer.len());
    for (r, line) in outer.iter().enumerate() {
        match line {
            Value::Array(items) => lines.push(items),
            other => {
                return Err(invalid_value(
                    &format!("{at}.values[{r}]"),
                    "type.googleapis.com/google.protobuf.ListValue",
                    other,
                ))
            }
        }
    }
    let major = lines.len() as u64;
    let minor = lines.iter().map(|l| l.len() as u64).max().unwrap_or(0);
    let (n_rows, n_cols) = if by_rows { (major, minor) } else { (minor, major) };
    let (r0, c0) = (u64::from(range.r0), u64::from(range.c0));
    let last_row = r0 + n_rows.max(1) - 1;
    let last_col = c0 + n_cols.max(1) - 1;
    // 2. The data must fit the stated range (a single cell or a whole tab is an anchor).
    if !range.anchor {
        if let Some(r1) = range.r1 {
            if n_rows > 0 && last_row > u64::from(r1) {
                return Err(invalid_argument(&format!(
                    "Requested writing within range [{range_text}], but tried writing to row [{}]",
                    u64::from(r1) + 2
                )));
            }
        }
        if let Some(c1) = range.c1 {
            if n_cols > 0 && last_col > u64::from(c1) {
                return Err(invalid_argument(&format!(
                    "Requested writing within range [{range_text}], but tried writing to column [{}]",
                    column_letters(c1 + 1)
                )));
            }
        }
    }
    // 3. The data must fit the grid.
    let prefix = sheet_prefix(range_text, &props.title);
    if n_rows > 0 && n_cols > 0 && (last_row >= u64::from(props.rows) || last_col >= u64::from(props.cols)) {
        let effective = format!("{prefix}{}:{}", cell_name(r0, c0), cell_name(last_row, last_col));
        return Err(grid_limit_error(&effective, props));
    }
    let mut cells = Vec::new();
    let (mut rows_hit, mut cols_hit) = (BTreeSet::new(), BTreeSet::new());
    for (a, line) in lines.iter().enumerate() {
        for (b, value) in line.iter().enumerate() {
            let (r, c) = if by_rows { (a, b) } else { (b, a) };
            let cell = match value {
                Value::Null => continue,
                Value::Bool(v) => Cell::Bool(*v),
                Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) if ss.refuse_text.as_ref().is_some_and(|t| s.contains(t.as_str())) => {
                    return Err(invalid_argument(&format!(
                        "Invalid value at 'data[{i}].values[{a}][{b}]': refused by the fake (refuse_cells_containing)."
                    )))
                }
                // Counted in UTF-16 code units, the strictest reading of Google's limit.
                Value::String(s) if s.encode_utf16().count() > MAX_CELL_CHARS => {
                    return Err(invalid_argument(&format!(
                        "Your input contains more than the maximum of {MAX_CELL_CHARS} \
                         characters in a single cell."
                    )))
                }
                Value::String(s) => match option {
                    ValueInputOption::Raw => Cell::Text(s.clone()),
                    ValueInputOption::UserEntered => user_entered(s),
                },
                Value::Object(_) => {
                    return Err(invalid_argument(&format!(
                        "Invalid values[{a}][{b}]: struct_value {}",
                        proto_text(value)
                    )))
                }
                Value::Array(_) => {
                    return Err(invalid_argument(&format!(
                        "Invalid values[{a}][{b}]: list_value {}",
                        proto_text(value)
                    )))
                }
            };
            let at = ((r0 + r as u64) as u32, (c0 + c as u64) as u32);
            rows_hit.insert(at.0);
            cols_hit.insert(at.1);
            cells.push((at, cell));
        }
    }
    let updated_range = if n_rows == 0 || n_cols == 0 {
        format!("{prefix}{}", cell_name(r0, c0))
    } else {
        format!(
            "{}!{}",
            quote_sheet(&props.title),
            span_name(r0, c0, last_row, last_col)
        )
    };
    Ok(PlannedWrite {
        sheet: range.sheet,
        cells,
        updated_range,
        rows: rows_hit.len() as u64,
        cols: cols_hit.len() as u64,
    })
}

/// A crude USER_ENTERED parse: numbers and TRUE/FALSE; everything else stays text.
pub(super) fn user_entered(s: &str) -> Cell {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        return Cell::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Cell::Bool(false);
    }
    if t.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse::<f64>() {
            if n.is_finite() {
                return Cell::Number(n);
            }
        }
    }
    Cell::Text(s.to_string())
}

/// Roughly protobuf's text format, for the `struct_value {…}` error messages.
pub(super) fn proto_text(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "{\n}".into(),
        Value::Array(list) if list.is_empty() => "{\n}".into(),
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("fields {{ key: {k:?} value {{ {v} }} }}"))
                .collect();
            format!("{{ {} }}", fields.join(" "))
        }
        Value::Array(list) => {
            let values: Vec<String> = list.iter().map(|v| format!("values {{ {v} }}")).collect();
            format!("{{ {} }}", values.join(" "))
        }
        other => other.to_string(),
    }
}

pub(super) fn grid_limit_error(range_text: &str, props: &SheetProps) -> Response {
    invalid_argument(&format!(
        "Range ({range_text}) exceeds grid limits. Max rows: {}, max columns: {}",
        props.rows, props.cols
    ))
}

/// The `Sheet!` part as the client wrote it, or the tab's own name when it wrote none.
pub(super) fn sheet_prefix(range_text: &str, title: &str) -> String {
    let trimmed = range_text.trim();
    if trimmed.starts_with('\'') {
        if let Some(i) = trimmed.rfind("'!") {
            return trimmed[..i + 2].to_string();
        }
    } else if let Some(i) = trimmed.rfind('!') {
        return trimmed[..i + 1].to_string();
    }
    format!("{}!", quote_sheet(title))
}

// --- values.get ----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Render {
    Formatted,
    Unformatted,
    Formula,
}

impl Render {
    pub(super) fn parse(s: &str) -> Option<Render> {
        match s {
            "FORMATTED_VALUE" => Some(Render::Formatted),
            "UNFORMATTED_VALUE" => Some(Render::Unformatted),
            "FORMULA" => Some(Render::Formula),
            _ => None,
        }
    }
}

pub(super) fn get_values(ss: &Spreadsheet, raw_range: &str, req: &HttpRequest) -> Result<Value, Response> {
    let Some(range_text) = percent_decode(raw_range.as_bytes(), false).and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return Err(invalid_argument(&format!("Unable to parse range: {raw_range}")));
    };
    let render = match req.query_param("valueRenderOption") {
        None => Render::Formatted,
        Some(s) => Render::parse(s).ok_or_else(|| {
            invalid_value(
                "value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                &json!(s),
            )
        })?,
    };
    match req.query_param("dateTimeRenderOption") {
        None | Some("SERIAL_NUMBER") | Some("FORMATTED_STRING") => {}
        Some(other) => {
            return Err(invalid_value(
                "date_time_render_option",
                "type.googleapis.com/google.apps.sheets.v4.DateTimeRenderOption",
                &json!(other),
            ))
        }
    }
    let by_columns = match req.query_param("majorDimension") {
        None | Some("ROWS") | Some("DIMENSION_UNSPECIFIED") => false,
        Some("COLUMNS") => true,
        Some(other) => {
            return Err(invalid_value(
                "major_dimension",
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                &json!(other),
            ))
        }
    };
    read_values(ss, &range_text, render, by_columns)
}

/// A ValueRange for `range_text`, trimmed as Google trims it.
pub(super) fn read_values(
    ss: &Spreadsheet,
    range_text: &str,
    render: Render,
    by_columns: bool,
) -> Result<Value, Response> {
    let range = resolve_range(ss, range_text)?;
    let sheet = &ss.sheets[range.sheet];
    let props = &sheet.props;
    if range.exceeds(props) {
        return Err(grid_limit_error(range_text, props));
    }
    let (r0, c0) = (range.r0, range.c0);
    // Unbounded ends stop at the grid's edge (a single cell is bounded both ways).
    let r1 = range.r1.unwrap_or(props.rows - 1);
    let c1 = range.c1.unwrap_or(props.cols - 1);
    let mut grid: Vec<Vec<Value>> = Vec::new();
    for ((r, c), cell) in sheet.rect(r0, c0, r1, c1) {
        let (a, b) = if by_columns {
            (c as usize, r as usize)
        } else {
            (r as usize, c as usize)
        };
        if grid.len() <= a {
            grid.resize_with(a + 1, Vec::new);
        }
        let line = &mut grid[a];
        if line.len() <= b {
            line.resize(b + 1, json!(""));
        }
        line[b] = render_cell(cell, render);
    }
    let mut out = Map::new();
    out.insert(
        "range".into(),
        json!(format!(
            "{}!{}",
            quote_sheet(&props.title),
            span_name(u64::from(r0), u64::from(c0), u64::from(r1), u64::from(c1))
        )),
    );
    out.insert(
        "majorDimension".into(),
        json!(if by_columns { "COLUMNS" } else { "ROWS" }),
    );
    if !grid.is_empty() {
        out.insert(
            "values".into(),
            Value::Array(grid.into_iter().map(Value::Array).collect()),
        );
    }
    Ok(Value::Object(out))
}

pub(super) fn render_cell(cell: &Cell, render: Render) -> Value {
    match (cell, render) {
        (Cell::Empty, _) => json!(""),
        (Cell::Number(n), Render::Formatted) => json!(format_number(*n)),
        (Cell::Number(n), _) => number_json(*n),
        (Cell::Bool(b), Render::Formatted) => json!(if *b { "TRUE" } else { "FALSE" }),
        (Cell::Bool(b), _) => json!(b),
        (Cell::Text(s), _) => json!(s),
    }
}

pub(super) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Integral numbers as JSON integers (`3`, not `3.0`), as Google sends them.
pub(super) fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        json!(n as i64)
    } else {
        json!(n)
    }
}
