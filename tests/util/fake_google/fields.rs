//! The `fields` system parameter (a partial response): `a.b,c(d,e(f))` keeps only the
//! named paths of the answer; a path through an array applies to each element. A name that
//! the resource does not have is refused with 400, as Google does.
use super::*;

#[derive(Debug, Default)]
struct Mask(BTreeMap<String, Mask>);

fn parse(s: &str) -> Result<Mask, String> {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut i = 0;
    let mask = parse_list(&chars, &mut i)?;
    if i != chars.len() {
        return Err(format!("unexpected {:?} at {i}", chars[i]));
    }
    Ok(mask)
}

/// `path(,path)*` where a path is `name(.name)*`, optionally followed by `(list)`.
fn parse_list(c: &[char], i: &mut usize) -> Result<Mask, String> {
    let mut mask = Mask::default();
    loop {
        let mut node = &mut mask;
        loop {
            let start = *i;
            while c
                .get(*i)
                .is_some_and(|&ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '*')
            {
                *i += 1;
            }
            if *i == start {
                return Err(format!("a field name expected at {start}"));
            }
            node = node.0.entry(c[start..*i].iter().collect()).or_default();
            if c.get(*i) != Some(&'.') {
                break;
            }
            *i += 1;
        }
        if c.get(*i) == Some(&'(') {
            *i += 1;
            node.0.extend(parse_list(c, i)?.0);
            if c.get(*i) != Some(&')') {
                return Err("unbalanced parentheses".into());
            }
            *i += 1;
        }
        if c.get(*i) != Some(&',') {
            return Ok(mask);
        }
        *i += 1;
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

/// `resource` as the `fields` parameter asks (all of it without one).
pub(super) fn partial(resource: Value, fields: Option<&str>) -> Result<Value, Response> {
    let Some(fields) = fields.filter(|f| !f.trim().is_empty()) else {
        return Ok(resource);
    };
    let mask = parse(fields).map_err(|e| invalid_argument(&format!("Invalid field selection {fields}: {e}")))?;
    Ok(apply(&mask, &resource))
}
