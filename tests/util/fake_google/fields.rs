//! The `fields` system parameter (a partial response): `a.b,c(d,e(f))` keeps only the
//! named paths of the answer; a path through an array applies to each element.
use super::*;

#[derive(Debug, Default)]
struct Mask(BTreeMap<String, Mask>);

/// Adds `path(,path)*` to `mask`, where a path is `name(.name)*`, optionally followed by
/// `(list)`; returns what follows.
fn parse_list<'a>(mut s: &'a str, mask: &mut Mask) -> Result<&'a str, String> {
    loop {
        let mut node = &mut *mask;
        loop {
            let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '*'));
            let (name, rest) = s.split_at(end.unwrap_or(s.len()));
            if name.is_empty() {
                return Err(format!("a field name expected before {rest:?}"));
            }
            node = node.0.entry(name.to_string()).or_default();
            s = rest;
            match s.strip_prefix('.') {
                Some(rest) => s = rest,
                None => break,
            }
        }
        if let Some(inner) = s.strip_prefix('(') {
            s = parse_list(inner, node)?
                .strip_prefix(')')
                .ok_or("unbalanced parentheses")?;
        }
        match s.strip_prefix(',') {
            Some(rest) => s = rest,
            None => return Ok(s),
        }
    }
}

fn apply(mask: &Mask, v: &Value) -> Value {
    if mask.0.is_empty() || mask.0.contains_key("*") {
        return v.clone();
    }
    match v {
        Value::Array(items) => Value::Array(items.iter().map(|x| apply(mask, x)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, sub) in &mask.0 {
                if let Some(x) = map.get(k) {
                    out.insert(k.clone(), apply(sub, x));
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Refuses a name that `schema` does not have at its place in the mask (`*`: every field).
fn check(mask: &Mask, schema: &str) -> Result<(), String> {
    for (name, sub) in mask.0.iter().filter(|(name, _)| *name != "*") {
        let Some(field) = discovery::property(schema, name) else {
            return Err(format!("{schema} has no field {name}"));
        };
        match field.get("items").unwrap_or(field).get("$ref").and_then(Value::as_str) {
            Some(inner) => check(sub, inner)?,
            None if sub.0.is_empty() => {}
            None => return Err(format!("{schema}.{name} has no fields")),
        }
    }
    Ok(())
}

/// `resource`, of schema `schema`, as the `fields` parameter asks (all of it without one).
pub(super) fn partial(resource: Value, schema: &str, fields: Option<&str>) -> Result<Value, Response> {
    let Some(fields) = fields.filter(|f| !f.trim().is_empty()) else {
        return Ok(resource);
    };
    let compact: String = fields.chars().filter(|c| !c.is_whitespace()).collect();
    let mut mask = Mask::default();
    let checked = match parse_list(&compact, &mut mask) {
        Ok("") => check(&mask, schema),
        Ok(rest) => Err(format!("unexpected {rest:?}")),
        Err(e) => Err(e),
    };
    checked.map_err(|e| invalid_argument(&format!("Invalid field selection {fields}: {e}")))?;
    Ok(apply(&mask, &resource))
}
