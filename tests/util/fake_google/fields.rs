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

fn parse_list(c: &[char], i: &mut usize) -> Result<Mask, String> {
    let mut mask = Mask::default();
    loop {
        // One path: name(.name)* [ '(' list ')' ]
        let mut path = Vec::new();
        loop {
            let start = *i;
            while *i < c.len() && (c[*i].is_ascii_alphanumeric() || c[*i] == '_' || c[*i] == '*') {
                *i += 1;
            }
            if *i == start {
                return Err(format!("a field name expected at {start}"));
            }
            path.push(c[start..*i].iter().collect::<String>());
            if *i < c.len() && c[*i] == '.' {
                *i += 1;
                continue;
            }
            break;
        }
        let mut node = &mut mask;
        for name in &path {
            node = node.0.entry(name.clone()).or_default();
        }
        if *i < c.len() && c[*i] == '(' {
            *i += 1;
            let inner = parse_list(c, i)?;
            if *i >= c.len() || c[*i] != ')' {
                return Err("unbalanced parentheses".into());
            }
            *i += 1;
            for (k, v) in inner.0 {
                node.0.insert(k, v);
            }
        }
        if *i < c.len() && c[*i] == ',' {
            *i += 1;
            continue;
        }
        return Ok(mask);
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
