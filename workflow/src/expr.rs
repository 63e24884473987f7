//! Value templates: the `${…}` expressions of `with`, `for_each`, `when` and `output`.
//!
//! A template is any JSON value. Strings in it may contain expressions:
//! - a string that is exactly one expression (`"${get_recording.tracks}"`) becomes the value
//!   the expression names, of whatever JSON type;
//! - a string with text around expressions (`"pad_track_${input.track_index}"`) is rendered
//!   as a string, each value formatted as plain text (strings unquoted, others as JSON).
//!
//! An expression is a path: a root (`input`, `item`, `index`, `workflow`, or a step id)
//! followed by `.field`, `.0`, `[0]`, `[*]` or (in a fan-out) `[index]` segments. Nothing else is evaluated, on purpose: the
//! interpreter must stay deterministic and the YAML readable. This module is pure; the
//! validator uses [`references`] and the interpreter uses [`render`].

use std::collections::BTreeMap;

use serde_json::Value;

/// One segment of a path after its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `.name`
    Field(String),
    /// `.3` or `[3]`
    Index(usize),
    /// `[*]`: the rest of the path applied to every item of an array, giving an array
    /// (`${pad[*].padded_key}`).
    Each,
    /// `[index]`: the item of a fan-out member's own position (`${pad_track[index]}` in a
    /// fan-out over the same list: the member's counterpart).
    CurrentIndex,
}

/// A parsed `${…}` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The text between `${` and `}`, trimmed; used in messages.
    pub text: String,
    /// The first name: `input`, `item`, `index`, `workflow` or a step id.
    pub root: String,
    /// What follows the root.
    pub segments: Vec<Segment>,
}

/// Why a template could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The text is not a well-formed expression.
    #[error("invalid expression `{text}`: {reason}")]
    Syntax {
        /// The offending text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The root names nothing in scope.
    #[error("expression `${{{expr}}}`: `{root}` is not in scope here")]
    UnknownRoot {
        /// The whole expression.
        expr: String,
        /// Its root.
        root: String,
    },
    /// A field is missing from an object.
    #[error("expression `${{{expr}}}`: no field `{field}` in {found}")]
    MissingField {
        /// The whole expression.
        expr: String,
        /// The missing field.
        field: String,
        /// A short description of the object that lacks it.
        found: String,
    },
    /// An index is past the end of an array.
    #[error("expression `${{{expr}}}`: index {index} is out of range (length {len})")]
    OutOfRange {
        /// The whole expression.
        expr: String,
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A segment was applied to a value that has no such thing.
    #[error("expression `${{{expr}}}`: cannot take `{segment}` of a {kind}")]
    WrongType {
        /// The whole expression.
        expr: String,
        /// The segment as written.
        segment: String,
        /// The JSON type found.
        kind: &'static str,
    },
    /// `for_each` did not yield an array.
    #[error("expression `{expr}` must yield an array, got a {kind}")]
    NotAnArray {
        /// The expression.
        expr: String,
        /// The JSON type found.
        kind: &'static str,
    },
}

/// Named values an expression can start from.
pub type Scope = BTreeMap<String, Value>;

/// Every expression in `template`, in document order.
pub fn references(template: &Value) -> Result<Vec<Path>, ExprError> {
    let mut out = Vec::new();
    collect(template, &mut out)?;
    Ok(out)
}

fn collect(v: &Value, out: &mut Vec<Path>) -> Result<(), ExprError> {
    match v {
        Value::String(s) => {
            for piece in split(s)? {
                if let Piece::Expr(p) = piece {
                    out.push(p);
                }
            }
        }
        Value::Array(items) => items.iter().try_for_each(|i| collect(i, out))?,
        Value::Object(map) => map.values().try_for_each(|i| collect(i, out))?,
        _ => {}
    }
    Ok(())
}

/// Parse a string that must be exactly one expression (`for_each`, `when`).
pub fn parse_single(s: &str) -> Result<Path, ExprError> {
    let pieces = split(s.trim())?;
    match pieces.as_slice() {
        [Piece::Expr(p)] => Ok(p.clone()),
        _ => Err(ExprError::Syntax {
            text: s.to_owned(),
            reason: "expected exactly one `${…}` expression, e.g. `${get_recording.tracks}`".into(),
        }),
    }
}

/// Evaluate `template` in `scope`.
pub fn render(template: &Value, scope: &Scope) -> Result<Value, ExprError> {
    Ok(match template {
        Value::String(s) => render_str(s, scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, scope)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// Evaluate a single-expression string to an array (for `for_each`).
pub fn render_array(expr: &str, scope: &Scope) -> Result<Vec<Value>, ExprError> {
    match eval(&parse_single(expr)?, scope)? {
        Value::Array(items) => Ok(items),
        other => Err(ExprError::NotAnArray {
            expr: expr.to_owned(),
            kind: kind(&other),
        }),
    }
}

/// Evaluate a single-expression string to a truth value (for `when`): `null`, `false`, `0`,
/// `""`, `[]` and `{}` are false.
pub fn render_condition(expr: &str, scope: &Scope) -> Result<bool, ExprError> {
    Ok(match eval(&parse_single(expr)?, scope)? {
        Value::Null => false,
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    })
}

fn render_str(s: &str, scope: &Scope) -> Result<Value, ExprError> {
    let pieces = split(s)?;
    if let [Piece::Expr(p)] = pieces.as_slice() {
        return eval(p, scope);
    }
    if pieces.iter().all(|p| matches!(p, Piece::Text(_))) {
        return Ok(Value::String(s.to_owned()));
    }
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Expr(p) => match eval(&p, scope)? {
                Value::String(v) => out.push_str(&v),
                Value::Null => {}
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Evaluate one path. A field of `null` is `null` (so the output of a skipped or failed
/// optional step can be read through); a missing field of an object is an error.
pub fn eval(path: &Path, scope: &Scope) -> Result<Value, ExprError> {
    let root = scope
        .get(&path.root)
        .ok_or_else(|| ExprError::UnknownRoot {
            expr: path.text.clone(),
            root: path.root.clone(),
        })?;
    let current = scope
        .get("index")
        .and_then(Value::as_u64)
        .map(|i| i as usize);
    walk(path, root, &path.segments, current)
}

fn walk(
    path: &Path,
    mut cur: &Value,
    segments: &[Segment],
    current: Option<usize>,
) -> Result<Value, ExprError> {
    for (n, seg) in segments.iter().enumerate() {
        cur = match (cur, seg) {
            (Value::Null, _) => return Ok(Value::Null),
            (Value::Array(items), Segment::Each) => {
                return items
                    .iter()
                    .map(|item| walk(path, item, &segments[n + 1..], current))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array);
            }
            (Value::Object(map), Segment::Field(f)) => {
                map.get(f).ok_or_else(|| ExprError::MissingField {
                    expr: path.text.clone(),
                    field: f.clone(),
                    found: describe_object(map),
                })?
            }
            (Value::Object(map), Segment::Index(i)) => {
                map.get(&i.to_string())
                    .ok_or_else(|| ExprError::MissingField {
                        expr: path.text.clone(),
                        field: i.to_string(),
                        found: describe_object(map),
                    })?
            }
            (Value::Array(items), Segment::Index(i)) => {
                items.get(*i).ok_or_else(|| ExprError::OutOfRange {
                    expr: path.text.clone(),
                    index: *i,
                    len: items.len(),
                })?
            }
            (Value::Array(items), Segment::CurrentIndex) => {
                let i = current.ok_or_else(|| ExprError::UnknownRoot {
                    expr: path.text.clone(),
                    root: "index".into(),
                })?;
                items.get(i).ok_or_else(|| ExprError::OutOfRange {
                    expr: path.text.clone(),
                    index: i,
                    len: items.len(),
                })?
            }
            (other, seg) => {
                return Err(ExprError::WrongType {
                    expr: path.text.clone(),
                    segment: match seg {
                        Segment::Field(f) => f.clone(),
                        Segment::Index(i) => i.to_string(),
                        Segment::Each => "[*]".into(),
                        Segment::CurrentIndex => "[index]".into(),
                    },
                    kind: kind(other),
                });
            }
        };
    }
    Ok(cur.clone())
}

fn describe_object(map: &serde_json::Map<String, Value>) -> String {
    let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    if keys.is_empty() {
        "an empty object".into()
    } else {
        format!("an object with fields {}", keys.join(", "))
    }
}

/// The JSON type name of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

enum Piece {
    Text(String),
    Expr(Path),
}

fn split(s: &str) -> Result<Vec<Piece>, ExprError> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ExprError::Syntax {
            text: s.to_owned(),
            reason: "`${` without a closing `}`".into(),
        })?;
        pieces.push(Piece::Expr(parse_path(&after[..end])?));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

fn parse_path(text: &str) -> Result<Path, ExprError> {
    let text = text.trim();
    let err = |reason: &str| ExprError::Syntax {
        text: format!("${{{text}}}"),
        reason: reason.to_owned(),
    };
    let mut chars = text.char_indices().peekable();
    let ident_end = |from: usize| {
        text[from..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(text.len(), |n| from + n)
    };
    if text.is_empty() {
        return Err(err("empty expression"));
    }
    let root_end = ident_end(0);
    if root_end == 0 || text.as_bytes()[0].is_ascii_digit() {
        return Err(err("must start with a name such as `input` or a step id"));
    }
    let root = text[..root_end].to_owned();
    let mut segments = Vec::new();
    let mut pos = root_end;
    while pos < text.len() {
        match text.as_bytes()[pos] {
            b'.' => {
                let end = ident_end(pos + 1);
                if end == pos + 1 {
                    return Err(err("`.` must be followed by a field name or an index"));
                }
                let name = &text[pos + 1..end];
                segments.push(match name.parse::<usize>() {
                    Ok(i) => Segment::Index(i),
                    Err(_) => Segment::Field(name.to_owned()),
                });
                pos = end;
            }
            b'[' => {
                let close = text[pos..]
                    .find(']')
                    .map(|n| pos + n)
                    .ok_or_else(|| err("`[` without `]`"))?;
                let inner = text[pos + 1..close].trim();
                if inner == "*" {
                    segments.push(Segment::Each);
                } else if inner == "index" {
                    segments.push(Segment::CurrentIndex);
                } else {
                    let idx = inner.parse::<usize>().map_err(|_| {
                        err("`[…]` must hold a non-negative integer, `*` or `index`")
                    })?;
                    segments.push(Segment::Index(idx));
                }
                pos = close + 1;
            }
            _ => {
                return Err(err(
                    "only paths are allowed: names joined by `.`, `[n]` indexes, `[*]` and `[index]`",
                ));
            }
        }
    }
    chars.next();
    Ok(Path {
        text: text.to_owned(),
        root,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.insert(
            "input".into(),
            json!({"id": "r1", "tracks": [{"k": "a"}, {"k": "b"}]}),
        );
        s.insert("index".into(), json!(3));
        s.insert("skipped".into(), Value::Null);
        s
    }

    #[test]
    fn whole_string_expression_keeps_its_type() {
        let v = render(&json!({"t": "${input.tracks}"}), &scope()).unwrap();
        assert_eq!(v, json!({"t": [{"k": "a"}, {"k": "b"}]}));
    }

    #[test]
    fn interpolation_renders_text() {
        let v = render(&json!("pad_track_${index}-${input.tracks[1].k}"), &scope()).unwrap();
        assert_eq!(v, json!("pad_track_3-b"));
        let v = render(&json!("${input.tracks.0.k}"), &scope()).unwrap();
        assert_eq!(v, json!("a"));
    }

    #[test]
    fn missing_field_names_what_exists() {
        let e = render(&json!("${input.nope}"), &scope()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expression `${input.nope}`: no field `nope` in an object with fields id, tracks"
        );
    }

    #[test]
    fn null_reads_through() {
        assert_eq!(
            render(&json!("${skipped.a.b}"), &scope()).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(references(&json!("${input.a + 1}")).is_err());
        assert!(references(&json!("${input")).is_err());
        assert!(parse_single("input.tracks").is_err());
        let refs = references(&json!({"a": ["${x.y}", "z ${w}"]})).unwrap();
        assert_eq!(
            refs.iter().map(|p| p.root.as_str()).collect::<Vec<_>>(),
            ["x", "w"]
        );
    }

    #[test]
    fn each_maps_the_rest_of_the_path_over_an_array() {
        let v = render(&json!("${input.tracks[*].k}"), &scope()).unwrap();
        assert_eq!(v, json!(["a", "b"]));
        assert_eq!(
            render(&json!("${input.tracks[*]}"), &scope()).unwrap(),
            json!([{"k": "a"}, {"k": "b"}])
        );
        let e = render(&json!("${input.id[*]}"), &scope())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[*]") && e.contains("string"), "{e}");
        let e = render(&json!("${input.tracks[*].nope}"), &scope())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn conditions_and_arrays() {
        assert!(render_condition("${input.tracks}", &scope()).unwrap());
        assert!(!render_condition("${skipped}", &scope()).unwrap());
        assert_eq!(render_array("${input.tracks}", &scope()).unwrap().len(), 2);
        assert!(render_array("${input.id}", &scope()).is_err());
    }

    #[test]
    fn index_picks_the_members_counterpart() {
        let mut scope = Scope::new();
        scope.insert("pad".into(), json!([{"key": "a"}, {"key": "b"}]));
        scope.insert("index".into(), json!(1));
        assert_eq!(
            render(&json!("${pad[index].key}"), &scope).unwrap(),
            json!("b")
        );
        scope.insert("index".into(), json!(2));
        assert!(matches!(
            render(&json!("${pad[index].key}"), &scope),
            Err(ExprError::OutOfRange {
                index: 2,
                len: 2,
                ..
            })
        ));
        scope.remove("index");
        assert!(matches!(
            render(&json!("${pad[index]}"), &scope),
            Err(ExprError::UnknownRoot { .. })
        ));
        assert!(parse_path("pad[idx]").is_err());
    }
}
