//! `addChart` and `updateChartSpec` (spreadsheets.batchUpdate), validated against the
//! Sheets API v4 reference: `AddChartRequest {chart: EmbeddedChart}`, `EmbeddedChart
//! {chartId, spec, position, border}`, `ChartSpec` with one chart kind set (the fake
//! supports `basicChart` only), `BasicChartSpec {chartType, legendPosition, axis, domains,
//! series, headerCount, ...}`, `ChartData {sourceRange: {sources: [GridRange]}}`,
//! `EmbeddedObjectPosition` (one of `sheetId`, `overlayPosition`, `newSheet`).
//!
//! Where the reference does not say what Google refuses, the fake is strict: a basic
//! chart needs a `chartType`, exactly one domain (the reference: "Only a single domain is
//! supported") and at least one series, and every source range is one column wide in a
//! grid that exists. Unknown field names are refused as Google's JSON parser does.
use super::*;

const CHART_TYPES: &[&str] = &["BAR", "LINE", "AREA", "COLUMN", "SCATTER", "COMBO", "STEPPED_AREA"];
const LEGENDS: &[&str] = &[
    "BOTTOM_LEGEND",
    "LEFT_LEGEND",
    "RIGHT_LEGEND",
    "TOP_LEGEND",
    "NO_LEGEND",
];
const AXES: &[&str] = &["BOTTOM_AXIS", "LEFT_AXIS", "RIGHT_AXIS"];

fn enum_field(obj: &Map<String, Value>, name: &str, allowed: &[&str], at: &str) -> Result<Option<String>, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_value(&format!("{at}.{name}"), "TYPE_ENUM", other)),
    }
}

fn array_field<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a [Value], Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(invalid_value(&format!("{at}.{name}"), "TYPE_MESSAGE", other)),
    }
}

fn as_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Response> {
    v.as_object().ok_or_else(|| invalid_value(at, "TYPE_MESSAGE", v))
}

/// A `GridRange` one column wide in an existing grid.
fn grid_range(work: &[SheetProps], v: &Value, at: &str, ctx: &str) -> Result<(), Response> {
    let obj = as_object(v, at)?;
    check_fields(
        obj,
        &[
            "sheetId",
            "startRowIndex",
            "endRowIndex",
            "startColumnIndex",
            "endColumnIndex",
        ],
        at,
    )?;
    let sheet_id = int_field(obj, "sheetId", at)?.unwrap_or(0);
    let Some(props) = work.iter().find(|p| p.sheet_id == sheet_id) else {
        return Err(invalid_argument(&format!("{ctx}: No grid with id: {sheet_id}")));
    };
    let (sc, ec) = (
        int_field(obj, "startColumnIndex", at)?,
        int_field(obj, "endColumnIndex", at)?,
    );
    let (sr, er) = (int_field(obj, "startRowIndex", at)?, int_field(obj, "endRowIndex", at)?);
    for (s, e) in [(sc, ec), (sr, er)] {
        if let (Some(s), Some(e)) = (s, e) {
            if s < 0 || e < s {
                return Err(invalid_argument(&format!("{ctx}: Invalid GridRange: {v}")));
            }
        }
    }
    match (sc, ec) {
        (Some(s), Some(e)) if e - s == 1 && e <= i64::from(props.cols) => Ok(()),
        _ => Err(invalid_argument(&format!(
            "{ctx}: the fake Google wants every chart source range one column wide inside the grid, got {v}"
        ))),
    }
}

/// `ChartData`: a source range of one or more grid ranges.
fn chart_data(work: &[SheetProps], v: &Value, at: &str, ctx: &str) -> Result<(), Response> {
    let obj = as_object(v, at)?;
    check_fields(
        obj,
        &["sourceRange", "groupRule", "aggregateType", "columnReference"],
        at,
    )?;
    let empty = Map::new();
    let source = object_field(obj, "sourceRange", at)?.unwrap_or(&empty);
    let at = format!("{at}.sourceRange");
    check_fields(source, &["sources"], &at)?;
    let sources = array_field(source, "sources", &at)?;
    if sources.is_empty() {
        return Err(invalid_argument(&format!("{ctx}: ChartData must have a source range.")));
    }
    for (i, s) in sources.iter().enumerate() {
        grid_range(work, s, &format!("{at}.sources[{i}]"), ctx)?;
    }
    Ok(())
}

/// A `ChartSpec` with a `basicChart`.
pub(super) fn chart_spec(work: &[SheetProps], v: &Value, at: &str, ctx: &str) -> Result<(), Response> {
    let spec = as_object(v, at)?;
    let kinds = [
        "basicChart",
        "pieChart",
        "bubbleChart",
        "candlestickChart",
        "orgChart",
        "histogramChart",
        "waterfallChart",
        "treemapChart",
        "scorecardChart",
    ];
    let mut allowed = vec![
        "title",
        "altText",
        "subtitle",
        "fontName",
        "maximized",
        "hiddenDimensionStrategy",
        "titleTextFormat",
        "titleTextPosition",
        "subtitleTextFormat",
        "subtitleTextPosition",
        "backgroundColor",
        "backgroundColorStyle",
    ];
    allowed.extend(kinds);
    check_fields(spec, &allowed, at)?;
    let set: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match set.as_slice() {
        ["basicChart"] => {}
        [] => {
            return Err(invalid_argument(&format!(
                "{ctx}: ChartSpec must have a chart type set."
            )))
        }
        [_] => {
            return Err(invalid_argument(&format!(
                "{ctx}: the fake Google supports only basicChart, not {}",
                set[0]
            )))
        }
        [_, second, ..] => {
            return Err(invalid_argument(&format!(
                "Invalid JSON payload received. Oneof field 'chart' is already set. Cannot set '{second}' at '{at}'."
            )))
        }
    }
    let at = format!("{at}.basicChart");
    let basic = object_field(spec, "basicChart", &at)?.expect("set");
    check_fields(
        basic,
        &[
            "chartType",
            "legendPosition",
            "axis",
            "domains",
            "series",
            "headerCount",
            "threeDimensional",
            "interpolateNulls",
            "stackedType",
            "lineSmoothing",
            "compareMode",
            "totalDataLabel",
        ],
        &at,
    )?;
    if enum_field(basic, "chartType", CHART_TYPES, &at)?.is_none() {
        return Err(invalid_argument(&format!("{ctx}: chartType must be specified.")));
    }
    enum_field(basic, "legendPosition", LEGENDS, &at)?;
    for (i, a) in array_field(basic, "axis", &at)?.iter().enumerate() {
        let a_at = format!("{at}.axis[{i}]");
        let obj = as_object(a, &a_at)?;
        check_fields(
            obj,
            &["position", "title", "format", "titleTextPosition", "viewWindowOptions"],
            &a_at,
        )?;
        enum_field(obj, "position", AXES, &a_at)?;
    }
    let domains = array_field(basic, "domains", &at)?;
    if domains.len() != 1 {
        return Err(invalid_argument(&format!(
            "{ctx}: a basic chart has exactly one domain, got {}.",
            domains.len()
        )));
    }
    for (i, d) in domains.iter().enumerate() {
        let d_at = format!("{at}.domains[{i}]");
        let obj = as_object(d, &d_at)?;
        check_fields(obj, &["domain", "reversed"], &d_at)?;
        let data = obj
            .get("domain")
            .ok_or_else(|| invalid_argument(&format!("{ctx}: a domain needs data.")))?;
        chart_data(work, data, &format!("{d_at}.domain"), ctx)?;
    }
    let series = array_field(basic, "series", &at)?;
    if series.is_empty() {
        return Err(invalid_argument(&format!(
            "{ctx}: a basic chart needs at least one series."
        )));
    }
    for (i, s) in series.iter().enumerate() {
        let s_at = format!("{at}.series[{i}]");
        let obj = as_object(s, &s_at)?;
        check_fields(
            obj,
            &[
                "series",
                "targetAxis",
                "type",
                "lineStyle",
                "color",
                "colorStyle",
                "dataLabel",
                "pointStyle",
            ],
            &s_at,
        )?;
        enum_field(obj, "targetAxis", AXES, &s_at)?;
        let data = obj
            .get("series")
            .ok_or_else(|| invalid_argument(&format!("{ctx}: a series needs data.")))?;
        chart_data(work, data, &format!("{s_at}.series"), ctx)?;
    }
    Ok(())
}

fn chart_ids(work: &[SheetProps]) -> Vec<i64> {
    work.iter().flat_map(|p| p.charts.iter().map(|(id, _)| *id)).collect()
}

pub(super) fn add_chart(work: &mut [SheetProps], i: usize, inner: &Value, rng: &mut u64) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].addChart");
    let at = format!("requests[{i}].addChart");
    let obj = as_object(inner, &at)?;
    check_fields(obj, &["chart"], &at)?;
    let at = format!("{at}.chart");
    let chart = object_field(obj, "chart", &at)?
        .ok_or_else(|| invalid_argument(&format!("{ctx}: chart must be specified.")))?;
    check_fields(chart, &["chartId", "spec", "position", "border"], &at)?;
    let spec = chart
        .get("spec")
        .ok_or_else(|| invalid_argument(&format!("{ctx}: chart.spec must be specified.")))?;
    chart_spec(work, spec, &format!("{at}.spec"), &ctx)?;
    let p_at = format!("{at}.position");
    let position = object_field(chart, "position", &at)?
        .ok_or_else(|| invalid_argument(&format!("{ctx}: chart.position must be specified.")))?;
    check_fields(position, &["sheetId", "overlayPosition", "newSheet"], &p_at)?;
    let anchor_sheet = match (
        int_field(position, "sheetId", &p_at)?,
        object_field(position, "overlayPosition", &p_at)?,
    ) {
        (Some(id), None) => id,
        (None, Some(overlay)) => {
            let o_at = format!("{p_at}.overlayPosition");
            check_fields(
                overlay,
                &[
                    "anchorCell",
                    "offsetXPixels",
                    "offsetYPixels",
                    "widthPixels",
                    "heightPixels",
                ],
                &o_at,
            )?;
            let anchor = object_field(overlay, "anchorCell", &o_at)?
                .ok_or_else(|| invalid_argument(&format!("{ctx}: overlayPosition needs an anchorCell.")))?;
            let a_at = format!("{o_at}.anchorCell");
            check_fields(anchor, &["sheetId", "rowIndex", "columnIndex"], &a_at)?;
            let id = int_field(anchor, "sheetId", &a_at)?.unwrap_or(0);
            let (r, c) = (
                int_field(anchor, "rowIndex", &a_at)?.unwrap_or(0),
                int_field(anchor, "columnIndex", &a_at)?.unwrap_or(0),
            );
            let inside = work
                .iter()
                .find(|p| p.sheet_id == id)
                .is_some_and(|p| (0..i64::from(p.rows)).contains(&r) && (0..i64::from(p.cols)).contains(&c));
            if !inside {
                return Err(invalid_argument(&format!(
                    "{ctx}: the anchor cell (row {r}, column {c}) is not in grid {id}."
                )));
            }
            id
        }
        _ => {
            return Err(invalid_argument(&format!(
                "{ctx}: the fake Google wants exactly one of position.sheetId and position.overlayPosition."
            )))
        }
    };
    let used = chart_ids(work);
    let id = match int_field(chart, "chartId", &at)? {
        Some(id) if used.contains(&id) => {
            return Err(invalid_argument(&format!(
                "{ctx}: An object with id {id} already exists."
            )))
        }
        Some(id) => id,
        None => random_sheet_id(rng, &used),
    };
    let Some(props) = work.iter_mut().find(|p| p.sheet_id == anchor_sheet) else {
        return Err(invalid_argument(&format!("{ctx}: No grid with id: {anchor_sheet}")));
    };
    props.charts.push((id, spec.clone()));
    Ok(json!({"addChart": {"chart": {"chartId": id, "spec": spec, "position": chart.get("position")}}}))
}

pub(super) fn update_chart_spec(work: &mut [SheetProps], i: usize, inner: &Value) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].updateChartSpec");
    let at = format!("requests[{i}].updateChartSpec");
    let obj = as_object(inner, &at)?;
    check_fields(obj, &["chartId", "spec"], &at)?;
    let id = int_field(obj, "chartId", &at)?.unwrap_or(0);
    let spec = obj
        .get("spec")
        .ok_or_else(|| invalid_argument(&format!("{ctx}: spec must be specified.")))?;
    chart_spec(work, spec, &format!("{at}.spec"), &ctx)?;
    let Some(slot) = work
        .iter_mut()
        .flat_map(|p| p.charts.iter_mut())
        .find(|(c, _)| *c == id)
    else {
        return Err(invalid_argument(&format!("{ctx}: No chart with id: {id}")));
    };
    slot.1 = spec.clone();
    Ok(json!({}))
}
