//! `values:batchUpdate` and `values.get`: A1 ranges against the grid, the data against
//! the range, 50,000 characters per cell (UTF-16 units), RAW or USER_ENTERED, rendering.
use super::*;

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
    let option = match text(body, "valueInputOption") {
        Some("RAW") => ValueInputOption::Raw,
        Some("USER_ENTERED") => ValueInputOption::UserEntered,
        _ => return Err(invalid_argument("'valueInputOption' is required but not specified")),
    };
    if flag(body, "includeValuesInResponse") {
        // Nothing the daemon or a test sends: refused as unimplemented, so a test that needs it fails loudly.
        return Err(invalid_argument(
            "The fake Google does not implement includeValuesInResponse: true.",
        ));
    }
    let data = list(body, "data");
    // Validate every ValueRange before applying any (atomic, notes §2.7).
    let plans = data
        .iter()
        .enumerate()
        .map(|(i, vr)| plan_write(ss, i, vr, option))
        .collect::<Result<Vec<_>, _>>()?;
    let mut responses = Vec::with_capacity(plans.len());
    let (mut rows, mut cols, mut cells) = (0u64, 0u64, 0u64);
    let mut sheets_touched = BTreeSet::new();
    for plan in plans {
        let n = plan.cells.len() as u64;
        (rows, cols, cells) = (rows + plan.rows, cols + plan.cols, cells + n);
        if n > 0 {
            sheets_touched.insert(plan.sheet);
        }
        for (at, cell) in plan.cells {
            ss.sheets[plan.sheet].set(at, cell, option);
        }
        responses.push(proto3(json!({
            "spreadsheetId": ss.id,
            "updatedRange": plan.updated_range,
            "updatedRows": plan.rows,
            "updatedColumns": plan.cols,
            "updatedCells": n,
        })));
    }
    let out = proto3(json!({
        "spreadsheetId": ss.id,
        "totalUpdatedRows": rows,
        "totalUpdatedColumns": cols,
        "totalUpdatedCells": cells,
        "totalUpdatedSheets": sheets_touched.len(),
        "responses": responses,
    }));
    Ok((out, option))
}

/// proto3 JSON leaves out fields at their default (0, empty list, unset); so does the fake.
pub(super) fn proto3(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !(v.is_null() || *v == json!(0) || *v == json!([])));
    }
    value
}

pub(super) fn plan_write(
    ss: &Spreadsheet,
    i: usize,
    vr: &Value,
    option: ValueInputOption,
) -> Result<PlannedWrite, Response> {
    let obj = vr.as_object().expect("the schema refuses a null list element");
    let range_text = text(obj, "range").unwrap_or("");
    // 1. The stated range must fit the grid (checked by `resolve_range`).
    let range = resolve_range(ss, range_text)?;
    let by_rows = text(obj, "majorDimension") != Some("COLUMNS");
    let props = &ss.sheets[range.sheet].props;
    // The schema made `values` a list of lists, none of them null.
    let lines: Vec<&Vec<Value>> = list(obj, "values").iter().filter_map(Value::as_array).collect();
    // The data's extent, in (row, col) terms.
    let major = lines.len() as u64;
    let minor = lines.iter().map(|l| l.len() as u64).max().unwrap_or(0);
    let (n_rows, n_cols) = if by_rows { (major, minor) } else { (minor, major) };
    let (r0, c0) = (u64::from(range.r0), u64::from(range.c0));
    let last_row = r0 + n_rows.max(1) - 1;
    let last_col = c0 + n_cols.max(1) - 1;
    // 2. The data must fit the stated range (a single cell or a whole tab is an anchor).
    let beyond = match (range.r1.map(u64::from), range.c1) {
        (Some(r1), _) if n_rows > 0 && last_row > r1 => Some(format!("row [{}]", r1 + 2)),
        (_, Some(c1)) if n_cols > 0 && last_col > u64::from(c1) => Some(format!("column [{}]", column_letters(c1 + 1))),
        _ => None,
    };
    if let (false, Some(beyond)) = (range.anchor, beyond) {
        let message = format!("Requested writing within range [{range_text}], but tried writing to {beyond}");
        return Err(invalid_argument(&message));
    }
    // 3. The data must fit the grid.
    let prefix = &range.prefix;
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
                    return invalid!(
                        "Invalid value at 'data[{i}].values[{a}][{b}]': refused by the fake (refuse_cells_containing)."
                    )
                }
                // Counted in UTF-16 code units, the strictest reading of Google's limit.
                Value::String(s) if s.encode_utf16().count() > MAX_CELL_CHARS => {
                    return invalid!(
                        "Your input contains more than the maximum of {MAX_CELL_CHARS} \
                         characters in a single cell."
                    )
                }
                Value::String(s) => match option {
                    ValueInputOption::Raw => Cell::Text(s.clone()),
                    ValueInputOption::UserEntered => user_entered(s),
                },
                Value::Object(_) | Value::Array(_) => {
                    let kind = if value.is_object() {
                        "struct_value"
                    } else {
                        "list_value"
                    };
                    let message = format!("Invalid values[{a}][{b}]: {kind} {}", proto_text(value));
                    return Err(invalid_argument(&message));
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
pub(crate) fn user_entered(s: &str) -> Cell {
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

// --- values.get ----------------------------------------------------------------------------

pub(super) fn get_values(ss: &Spreadsheet, raw_range: &str, req: &HttpRequest) -> Result<Value, Response> {
    let Some(range_text) = percent_decode(raw_range) else {
        return invalid!("Unable to parse range: {raw_range}");
    };
    // A query parameter outside the discovery document's enum: Google names the field in
    // snake case and the enum by its proto type.
    let query = |name: &str, proto: &str| match req.query_param(name) {
        Some(v) if !discovery::values_get_enum(name).contains(&v) => Err(invalid_value(
            &discovery::snake(name),
            &format!("type.googleapis.com/google.apps.sheets.v4.{proto}"),
            &json!(v),
        )),
        v => Ok(v),
    };
    let render = query("valueRenderOption", "ValueRenderOption")?.unwrap_or("FORMATTED_VALUE");
    query("dateTimeRenderOption", "DateTimeRenderOption")?;
    let by_columns = query("majorDimension", "Dimension")? == Some("COLUMNS");
    let range = resolve_range(ss, &range_text)?;
    let sheet = &ss.sheets[range.sheet];
    let props = &sheet.props;
    let (r0, c0) = (range.r0, range.c0);
    // Unbounded ends stop at the grid's edge (a single cell is bounded both ways).
    let r1 = range.r1.unwrap_or(props.rows - 1);
    let c1 = range.c1.unwrap_or(props.cols - 1);
    let grid = sheet.grid((r0, c0), (r1, c1), by_columns, json!(""), |cell| {
        render_cell(cell, render)
    });
    let range = format!(
        "{}!{}",
        quote_sheet(&props.title),
        span_name(u64::from(r0), u64::from(c0), u64::from(r1), u64::from(c1))
    );
    let major = if by_columns { "COLUMNS" } else { "ROWS" };
    Ok(proto3(
        json!({ "range": range, "majorDimension": major, "values": grid }),
    ))
}

/// A cell as `valueRenderOption` `render` asks: `FORMATTED_VALUE` as text, the others as
/// JSON values; integral numbers as `3`, not `3.0`, as Google sends them.
pub(super) fn render_cell(cell: &Cell, render: &str) -> Value {
    let formatted = render == "FORMATTED_VALUE";
    match cell {
        Cell::Empty => json!(""),
        Cell::Number(n) => match (formatted, n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0) {
            (true, true) => json!((*n as i64).to_string()),
            (true, false) => json!(n.to_string()),
            (false, true) => json!(*n as i64),
            (false, false) => json!(n),
        },
        Cell::Bool(b) if formatted => json!(if *b { "TRUE" } else { "FALSE" }),
        Cell::Bool(b) => json!(b),
        Cell::Text(s) => json!(s),
    }
}
