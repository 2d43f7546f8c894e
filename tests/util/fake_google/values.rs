//! `values:batchUpdate` and `values.get`. Only what the uploader sends is modelled: RAW
//! writes by rows, unformatted reads by rows. The other options Google has (`USER_ENTERED`,
//! `COLUMNS`, `FORMATTED_VALUE`, response options) are refused as unimplemented.
use super::*;

// --- values:batchUpdate ------------------------------------------------------------------

pub(super) fn values_batch_update(ss: &mut Spreadsheet, body: &Map<String, Value>) -> Result<Value, Response> {
    match text(body, "valueInputOption") {
        Some("RAW") => {}
        None => return Err(invalid_argument("'valueInputOption' is required but not specified")),
        Some(other) => return Err(unimplemented(&format!("valueInputOption {other}"))),
    }
    if body.get("includeValuesInResponse") == Some(&Value::Bool(true)) {
        return Err(unimplemented("includeValuesInResponse: true"));
    }
    only_modelled(body, &["valueInputOption", "data", "includeValuesInResponse"], "")?;
    let data = list(body, "data");
    // Validate every ValueRange before applying any (atomic, notes §2.7).
    let plans = data
        .iter()
        .enumerate()
        .map(|(i, vr)| plan_write(ss, i, vr))
        .collect::<Result<Vec<_>, _>>()?;
    for (sheet, cells) in plans {
        for (at, cell) in cells {
            ss.sheets[sheet].set(at, cell);
        }
    }
    // Google also counts the updated rows, columns, cells and sheets, per range and in
    // total; the uploader reads none of it, so the fake leaves it out.
    Ok(json!({ "spreadsheetId": ss.id }))
}

/// proto3 JSON leaves out fields at their default (0, empty list, unset); so does the fake.
pub(super) fn proto3(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !(v.is_null() || *v == json!(0) || *v == json!([])));
    }
    value
}

/// ValueRange `i`, validated and ready to apply: its tab and `(cell, value)`s (`Cell::Empty` clears).
pub(super) fn plan_write(ss: &Spreadsheet, i: usize, vr: &Value) -> Result<(usize, Vec<(At, Cell)>), Response> {
    let obj = vr.as_object().expect("the schema refuses a null list element");
    only_modelled(obj, &["range", "majorDimension", "values"], &format!("data[{i}]"))?;
    let range_text = text(obj, "range").unwrap_or("");
    let (sheet, (r0, c0), (r1, c1)) = resolve_range(ss, range_text)?;
    if text(obj, "majorDimension") == Some("COLUMNS") {
        return Err(unimplemented("majorDimension COLUMNS"));
    }
    // The schema made `values` a list of lists, none of them null. They must fit the
    // stated range (which `resolve_range` has held inside the grid).
    let lines: Vec<&Vec<Value>> = list(obj, "values").iter().filter_map(Value::as_array).collect();
    let n_cols = lines.iter().map(|l| l.len()).max().unwrap_or(0) as u32;
    let beyond = |what: String| invalid!("Requested writing within range [{range_text}], but tried writing to {what}");
    if lines.len() as u32 > r1 - r0 + 1 {
        return beyond(format!("row [{}]", r1 + 2));
    }
    if n_cols > c1 - c0 + 1 {
        return beyond(format!("column [{}]", column_letters(c1 + 1)));
    }
    let mut cells = Vec::new();
    for (a, line) in lines.iter().enumerate() {
        for (b, value) in line.iter().enumerate() {
            let cell = match value {
                Value::Null => continue,
                Value::Bool(v) => Cell::Bool(*v),
                Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) if ss.refuse_text.as_ref().is_some_and(|t| s.contains(t.as_str())) => {
                    return invalid!(
                        "Invalid value at 'data[{i}].values[{a}][{b}]': refused by the fake (refuse_cells_containing)."
                    )
                }
                Value::String(s) if s.encode_utf16().count() > MAX_CELL_CHARS => {
                    return invalid!(
                        "Your input contains more than the maximum of {MAX_CELL_CHARS} \
                         characters in a single cell."
                    )
                }
                Value::String(s) => Cell::Text(s.clone()),
                Value::Object(_) => return invalid!("Invalid values[{a}][{b}]: struct_value {value}"),
                Value::Array(_) => return invalid!("Invalid values[{a}][{b}]: list_value {value}"),
            };
            cells.push(((r0 + a as u32, c0 + b as u32), cell));
        }
    }
    Ok((sheet, cells))
}

// --- values.get ----------------------------------------------------------------------------

pub(super) fn get_values(ss: &Spreadsheet, raw_range: &str, req: &HttpRequest) -> Result<Value, Response> {
    let Some(range_text) = percent_decode(raw_range) else {
        return invalid!("Unable to parse range: {raw_range}");
    };
    // The uploader reads unformatted values by rows and sets nothing else.
    if req.query_param("valueRenderOption") != Some("UNFORMATTED_VALUE") {
        return Err(unimplemented("values.get without valueRenderOption=UNFORMATTED_VALUE"));
    }
    let (sheet, from, to) = resolve_range(ss, &range_text)?;
    let grid = ss.sheets[sheet].grid(from, to, json!(""), unformatted);
    // Google also names the range read, normalized; the uploader does not read it.
    Ok(proto3(json!({ "majorDimension": "ROWS", "values": grid })))
}

/// A cell as `UNFORMATTED_VALUE` renders it: integral numbers as `3`, not `3.0`, as
/// Google sends them.
pub(super) fn unformatted(cell: &Cell) -> Value {
    match cell {
        Cell::Empty => json!(""),
        Cell::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => json!(*n as i64),
        Cell::Number(n) => json!(n),
        Cell::Bool(b) => json!(b),
        Cell::Text(s) => json!(s),
    }
}
