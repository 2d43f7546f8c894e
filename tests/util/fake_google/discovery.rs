//! Request bodies checked against the discovery document, as Google parses proto JSON
//! (the document comes from `google-api-python-client` 2.202.0; see `tests/fixtures/README.md`).
//! `int32` and `double` take only JSON numbers here (Google also takes numeric strings,
//! which the uploader never sends). `null` means "unset" and is accepted for any field,
//! but not as an element of a list of messages or lists.
use std::sync::OnceLock;

use super::*;

/// The discovery document's revision (asserted by a test so an update is deliberate).
pub const REVISION: &str = "20261019";

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    let text = include_str!("../../fixtures/sheets.v4.json");
    DOC.get_or_init(|| serde_json::from_str(text).expect("tests/fixtures/sheets.v4.json is JSON"))
}

/// The revision the vendored document declares.
pub fn revision() -> String {
    document()["revision"].as_str().unwrap_or("").to_string()
}

/// Field `field` of schema `name`, as the document describes it.
pub(super) fn property(name: &str, field: &str) -> Option<&'static Value> {
    document().pointer(&format!("/schemas/{name}/properties/{field}"))
}

/// `valueRenderOption` → `value_render_option`, as Google names fields in its errors.
fn snake(name: &str) -> String {
    name.chars()
        .flat_map(|c| match c.is_ascii_uppercase() {
            true => vec!['_', c.to_ascii_lowercase()],
            false => vec![c],
        })
        .collect()
}

/// `at.name`, or `name` at the root (`at` empty): a field's path in Google's errors.
pub(super) fn field_path(at: &str, name: &str) -> String {
    match at {
        "" => name.to_string(),
        _ => format!("{at}.{name}"),
    }
}

/// Google's message for a field name its schema does not have (`at` empty: the root).
pub(super) fn unknown_name(field: &str, at: &str) -> String {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!(" at '{at}'")
    };
    format!("Invalid JSON payload received. Unknown name \"{field}\"{at}: Cannot find field.")
}

/// `value`, at path `at` (empty: the root), checked against schema `name` (e.g.
/// `BatchUpdateSpreadsheetRequest`); the error is the message Google gives (400 INVALID_ARGUMENT).
pub(super) fn check(name: &str, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = document().pointer(&format!("/schemas/{name}")) else {
        return Err(format!("the discovery document has no schema {name}"));
    };
    if value.is_null() {
        return Ok(());
    }
    let Some(obj) = value.as_object() else {
        return Err(format!(
            "Invalid value at '{at}' (type.googleapis.com/google.apps.sheets.v4.{name}), {value}"
        ));
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (field, v) in obj {
        let Some(p) = props.and_then(|p| p.get(field)) else {
            return Err(unknown_name(field, at));
        };
        check_property(p, v, &field_path(at, &snake(field)))?;
    }
    // A `Request` sets exactly one of its fields (the oneof `kind`).
    let set: Vec<&String> = obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
    match (name, set.as_slice()) {
        ("Request", []) => Err(format!("Invalid {at}: No request set.")),
        ("Request", [first, second, ..]) => Err(format!(
            "Invalid JSON payload received. Oneof field 'kind' is already set ({first}). Cannot set '{second}' at '{at}'."
        )),
        _ => Ok(()),
    }
}

fn check_property(p: &Value, v: &Value, at: &str) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        return check(r, v, at);
    }
    let bad = |t: &str| Err(format!("Invalid value at '{at}' ({t}), {v}"));
    let want = |ok: bool, t: &str| if ok { Ok(()) } else { bad(t) };
    match p.get("type").and_then(Value::as_str).unwrap_or("") {
        "any" => Ok(()),
        "boolean" => want(v.is_boolean(), "TYPE_BOOL"),
        // Google also takes numbers as strings ("5", "NaN"); the uploader sends JSON
        // numbers, so the fake refuses the strings rather than imitate that.
        "integer" => want(v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()), "TYPE_INT32"),
        "number" => want(v.is_number(), "TYPE_DOUBLE"),
        "string" if !v.is_string() => bad("TYPE_STRING"),
        "string" => want(
            p.get("enum").and_then(Value::as_array).is_none_or(|e| e.contains(v)),
            "TYPE_ENUM",
        ),
        "array" => {
            let Some(items) = v.as_array() else {
                return bad("TYPE_ARRAY");
            };
            let item = p.get("items").cloned().unwrap_or(Value::Null);
            for (i, x) in items.iter().enumerate() {
                let at = format!("{at}[{i}]");
                // `null` leaves a field unset, but a list has no unset elements: Google
                // refuses a null message or list inside one (a null `any` is a null value).
                let null_type = match (item.get("$ref"), item.get("type").and_then(Value::as_str)) {
                    (Some(_), _) => Some("TYPE_MESSAGE"),
                    (None, Some("array")) => Some("type.googleapis.com/google.protobuf.ListValue"),
                    _ => None,
                };
                if let (true, Some(t)) = (x.is_null(), null_type) {
                    return Err(format!("Invalid value at '{at}' ({t}), null"));
                }
                check_property(&item, x, &at)?;
            }
            Ok(())
        }
        "object" => {
            let Some(map) = v.as_object() else {
                return bad("TYPE_MESSAGE");
            };
            if let Some(inner) = p.get("additionalProperties") {
                for (k, x) in map {
                    check_property(inner, x, &format!("{at}[{k}]"))?;
                }
            }
            Ok(())
        }
        other => Err(format!(
            "the discovery document has a property of unknown type {other:?} at '{at}'"
        )),
    }
}
