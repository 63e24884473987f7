//! A pipeline file as an importer builds it: the keys of `workflow::pipeline::raw` plus the
//! comment lines a reader needs at each place, rendered as block YAML in the style of
//! `pipelines/*.yaml` (serde cannot write comments, so the text is built here, from this
//! model only).
//!
//! Scalars are written plain when that is unambiguous and as JSON strings (valid YAML
//! double-quoted scalars) otherwise; nested values of a `with:` or `output:` entry are written
//! in JSON flow style, which is YAML too. The tests parse what is rendered back with the
//! pipeline parser.

use std::fmt::Write as _;

use serde_json::Value;

/// A whole pipeline file.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
    /// Comment lines just above `name:`.
    pub name_comments: Vec<String>,
    /// The workflow type.
    pub name: String,
    /// The definition version.
    pub version: u32,
    /// Free text.
    pub description: Option<String>,
    /// The main pipeline.
    pub main: GraphDoc,
    /// Child pipelines: name, comment lines, graph.
    pub children: Vec<(String, Vec<String>, GraphDoc)>,
    /// Comment lines at the end of the file.
    pub footer: Vec<String>,
}

/// The inputs, steps and output of a pipeline or child pipeline.
#[derive(Debug, Clone, Default)]
pub struct GraphDoc {
    /// Free text (children only; the main pipeline's is [`Doc::description`]).
    pub description: Option<String>,
    /// Declared inputs, in order.
    pub inputs: Vec<InputDoc>,
    /// Steps and comment-only entries, in order.
    pub items: Vec<Item>,
    /// The output template.
    pub output: Option<Vec<(String, Value)>>,
    /// Comment lines below `output:`.
    pub output_comments: Vec<String>,
}

/// One declared input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDoc {
    /// Its name.
    pub name: String,
    /// Its JSON type (`string`, `array`, …, `any`).
    pub kind: String,
    /// Whether a run without it is refused.
    pub required: bool,
    /// Its default value.
    pub default: Option<Value>,
    /// A trailing comment.
    pub comment: Option<String>,
}

/// An entry of a step list.
#[derive(Debug, Clone)]
pub enum Item {
    /// A step.
    Step(Box<StepDoc>),
    /// Comment lines where a step would be.
    Comment(Vec<String>),
}

/// One step.
#[derive(Debug, Clone, Default)]
pub struct StepDoc {
    /// Comment lines above the step.
    pub comments: Vec<String>,
    /// Written as comment lines only: shown, not run.
    pub commented_out: bool,
    /// Step id.
    pub id: String,
    /// Activity type (none: the step has neither `activity` nor `child` yet).
    pub activity: Option<String>,
    /// Child pipeline.
    pub child: Option<String>,
    /// Fan-out expression.
    pub for_each: Option<String>,
    /// Upstream steps.
    pub needs: Vec<String>,
    /// Condition.
    pub when: Option<String>,
    /// A final failure does not fail the run.
    pub optional: bool,
    /// FORK and JOIN refs of the Conductor view.
    pub conductor: Option<(String, String)>,
    /// Events the step may publish.
    pub emits: Vec<String>,
    /// Seconds.
    pub start_to_close: Option<u64>,
    /// Seconds.
    pub heartbeat: Option<u64>,
    /// Seconds.
    pub schedule_to_close: Option<u64>,
    /// Retry policy.
    pub retry: Option<RetryDoc>,
    /// The input.
    pub with: Option<WithDoc>,
}

/// A retry policy; unset fields are not written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryDoc {
    /// Seconds.
    pub initial_interval: Option<u64>,
    /// Multiplier per attempt.
    pub backoff_coefficient: Option<f64>,
    /// Seconds.
    pub maximum_interval: Option<u64>,
    /// Attempts in all.
    pub maximum_attempts: Option<u32>,
}

/// A step's input.
#[derive(Debug, Clone, PartialEq)]
pub enum WithDoc {
    /// One expression: the whole input (`with: ${item}`).
    Expr(String),
    /// Named entries.
    Map {
        /// Trailing comment of the `with:` line.
        comment: Option<String>,
        /// Key and template, in order.
        entries: Vec<(String, Value)>,
        /// Comment lines after the entries (what could not be given).
        missing: Vec<String>,
    },
}

const WIDTH: usize = 96;

impl Doc {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        comments(&mut out, 0, &self.header);
        comments(&mut out, 0, &self.name_comments);
        let _ = writeln!(out, "name: {}", scalar(&self.name));
        let _ = writeln!(out, "version: {}", self.version);
        if let Some(d) = &self.description {
            let _ = writeln!(out, "description: {}", scalar(d));
        }
        graph(&mut out, 0, &self.main);
        if !self.children.is_empty() {
            out.push_str("\nchildren:\n");
            for (name, notes, g) in &self.children {
                comments(&mut out, 2, notes);
                let _ = writeln!(out, "  {}:", scalar(name));
                if let Some(d) = &g.description {
                    let _ = writeln!(out, "    description: {}", scalar(d));
                }
                graph(&mut out, 4, g);
            }
        }
        if !self.footer.is_empty() {
            out.push('\n');
            comments(&mut out, 0, &self.footer);
        }
        out
    }
}

fn graph(out: &mut String, indent: usize, g: &GraphDoc) {
    let pad = " ".repeat(indent);
    if !g.inputs.is_empty() {
        let _ = writeln!(out, "\n{pad}inputs:");
        for i in &g.inputs {
            let mut spec = format!("{{type: {}", i.kind);
            if !i.required && i.default.is_none() {
                spec.push_str(", required: false");
            }
            if let Some(d) = &i.default {
                let _ = write!(spec, ", default: {}", flow(d));
            }
            spec.push('}');
            let trailing = i
                .comment
                .as_ref()
                .map(|c| format!("  # {c}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{pad}  {}: {spec}{trailing}", scalar(&i.name));
        }
    }
    let _ = writeln!(
        out,
        "\n{pad}steps:{}",
        if g.items.is_empty() { " []" } else { "" }
    );
    for (n, item) in g.items.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        match item {
            Item::Comment(lines) => comments(out, indent + 2, lines),
            Item::Step(s) => step(out, indent + 2, s),
        }
    }
    if let Some(o) = &g.output {
        let _ = writeln!(
            out,
            "\n{pad}output:{}",
            if o.is_empty() { " {}" } else { "" }
        );
        for (k, v) in o {
            let _ = writeln!(out, "{pad}  {}: {}", scalar(k), block_value(v));
        }
        comments(out, indent + 2, &g.output_comments);
    }
}

fn step(out: &mut String, indent: usize, s: &StepDoc) {
    comments(out, indent, &s.comments);
    let mut body = String::new();
    let pad = "  ";
    let _ = writeln!(body, "- id: {}", scalar(&s.id));
    if let Some(a) = &s.activity {
        let _ = writeln!(body, "{pad}activity: {}", scalar(a));
    }
    if let Some(c) = &s.child {
        let _ = writeln!(body, "{pad}child: {}", scalar(c));
    }
    if let Some(f) = &s.for_each {
        let _ = writeln!(body, "{pad}for_each: {}", scalar(f));
    }
    if !s.needs.is_empty() {
        let _ = writeln!(body, "{pad}needs: {}", flow_names(&s.needs));
    }
    if let Some(w) = &s.when {
        let _ = writeln!(body, "{pad}when: {}", scalar(w));
    }
    if s.optional {
        let _ = writeln!(body, "{pad}optional: true");
    }
    if let Some((fork, join)) = &s.conductor {
        let _ = writeln!(
            body,
            "{pad}conductor: {{fork: {}, join: {}}}",
            flow_scalar(fork),
            flow_scalar(join)
        );
    }
    if !s.emits.is_empty() {
        let _ = writeln!(body, "{pad}emits: {}", flow_names(&s.emits));
    }
    for (key, secs) in [
        ("start_to_close", s.start_to_close),
        ("heartbeat", s.heartbeat),
        ("schedule_to_close", s.schedule_to_close),
    ] {
        if let Some(secs) = secs {
            let _ = writeln!(body, "{pad}{key}: {secs}s");
        }
    }
    if let Some(r) = &s.retry {
        let mut parts = Vec::new();
        if let Some(a) = r.maximum_attempts {
            parts.push(format!("maximum_attempts: {a}"));
        }
        if let Some(c) = r.backoff_coefficient {
            parts.push(format!("backoff_coefficient: {c:?}"));
        }
        if let Some(i) = r.initial_interval {
            parts.push(format!("initial_interval: {i}s"));
        }
        if let Some(m) = r.maximum_interval {
            parts.push(format!("maximum_interval: {m}s"));
        }
        if !parts.is_empty() {
            let _ = writeln!(body, "{pad}retry: {{{}}}", parts.join(", "));
        }
    }
    match &s.with {
        None => {}
        Some(WithDoc::Expr(e)) => {
            let _ = writeln!(body, "{pad}with: {}", scalar(e));
        }
        Some(WithDoc::Map {
            comment,
            entries,
            missing,
        }) => {
            let trailing = comment
                .as_ref()
                .map(|c| format!("  # {c}"))
                .unwrap_or_default();
            if entries.is_empty() {
                let _ = writeln!(body, "{pad}with: {{}}{trailing}");
            } else {
                let _ = writeln!(body, "{pad}with:{trailing}");
            }
            for (k, v) in entries {
                let _ = writeln!(body, "{pad}  {}: {}", scalar(k), block_value(v));
            }
            comments(&mut body, 4, missing);
        }
    }
    let lead = " ".repeat(indent);
    for line in body.lines() {
        if s.commented_out {
            let _ = writeln!(out, "{lead}# {line}");
        } else if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{lead}{line}");
        }
    }
}

/// Comment lines at `indent`, each wrapped to the file's width (continuations indented by two
/// spaces); an empty line is a bare `#`.
fn comments(out: &mut String, indent: usize, lines: &[String]) {
    let lead = " ".repeat(indent);
    for line in lines {
        for wrapped in wrap(line, WIDTH.saturating_sub(indent + 2).max(40)) {
            if wrapped.is_empty() {
                let _ = writeln!(out, "{lead}#");
            } else {
                let _ = writeln!(out, "{lead}# {wrapped}");
            }
        }
    }
}

/// Words of `text` in lines of at most `width` characters (a longer word gets its own line);
/// continuation lines are indented by two spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let cont = if lines.is_empty() { "" } else { "  " };
        if !current.is_empty() && cont.len() + current.len() + 1 + word.len() > width {
            lines.push(format!("{cont}{current}"));
            current.clear();
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() || lines.is_empty() {
        let cont = if lines.is_empty() { "" } else { "  " };
        lines.push(format!("{cont}{current}"));
    }
    lines
}

/// A value after `key: ` in block context: a scalar, or JSON flow for lists and maps.
fn block_value(v: &Value) -> String {
    match v {
        Value::String(s) => scalar(s),
        other => flow(other),
    }
}

/// JSON flow style, which YAML reads as it is (spaces after `:` and `,` for readers).
fn flow(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", json_string(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(s) => json_string(s),
        other => other.to_string(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Names in a flow list (`[a, b]`).
fn flow_names(names: &[String]) -> String {
    format!(
        "[{}]",
        names
            .iter()
            .map(|n| flow_scalar(n))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A string inside a flow collection: plain only if it is a simple name.
fn flow_scalar(s: &str) -> String {
    let simple = !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if simple && !reserved(s) {
        s.to_owned()
    } else {
        json_string(s)
    }
}

/// A string scalar in block context: plain when YAML reads it back as this same string,
/// otherwise double-quoted.
pub fn scalar(s: &str) -> String {
    if plain_ok(s) {
        s.to_owned()
    } else {
        json_string(s)
    }
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let looks_numeric = first.is_ascii_digit() || matches!(first, '+' | '.');
    !indicator
        && !looks_numeric
        && s.trim() == s
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.chars().any(|c| c.is_control())
        && !reserved(s)
}

/// Words YAML 1.1 or 1.2 reads as something other than a string.
fn reserved(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use workflow::Catalog;

    fn catalog() -> Catalog {
        Catalog::new().activity("a", &[]).workflow_type("T")
    }

    #[test]
    fn import_yaml_what_is_rendered_parses_back_to_the_same_values() {
        let tricky = [
            "${input.x}",
            "pad_${input.i}: done",
            "# not a comment",
            "yes",
            "12",
            "- dash",
            "a #b",
            " lead",
            "quote\"d",
            "line\nbreak",
            "{brace}",
            "",
        ];
        let entries: Vec<(String, Value)> = tricky
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("k{i}"), json!(s)))
            .chain([(
                "nested".to_owned(),
                json!({"a b": ["${input.x}", 1, null, {"c": true}]}),
            )])
            .collect();
        let doc = Doc {
            header: vec!["imported".into(), String::new()],
            name: "T".into(),
            version: 3,
            description: Some("A: description # with marks".into()),
            main: GraphDoc {
                inputs: vec![
                    InputDoc {
                        name: "x".into(),
                        kind: "string".into(),
                        required: true,
                        default: None,
                        comment: Some("why".into()),
                    },
                    InputDoc {
                        name: "i".into(),
                        kind: "integer".into(),
                        required: false,
                        default: Some(json!(3)),
                        comment: None,
                    },
                ],
                items: vec![
                    Item::Comment(vec!["a step that is not there".into()]),
                    Item::Step(Box::new(StepDoc {
                        comments: vec!["a long comment ".repeat(20)],
                        id: "one".into(),
                        activity: Some("a".into()),
                        start_to_close: Some(60),
                        retry: Some(RetryDoc {
                            maximum_attempts: Some(4),
                            backoff_coefficient: Some(2.0),
                            initial_interval: Some(5),
                            maximum_interval: Some(60),
                        }),
                        with: Some(WithDoc::Map {
                            comment: Some("by name".into()),
                            entries,
                            missing: vec!["unmapped: z".into()],
                        }),
                        ..StepDoc::default()
                    })),
                    Item::Step(Box::new(StepDoc {
                        id: "two".into(),
                        activity: Some("a".into()),
                        needs: vec!["one".into()],
                        for_each: Some("${one.list}".into()),
                        when: Some("${input.x}".into()),
                        optional: true,
                        conductor: Some(("fork_two".into(), "join_two".into())),
                        start_to_close: Some(30),
                        heartbeat: Some(10),
                        with: Some(WithDoc::Expr("${item}".into())),
                        ..StepDoc::default()
                    })),
                    Item::Step(Box::new(StepDoc {
                        commented_out: true,
                        id: "three".into(),
                        activity: Some("a".into()),
                        ..StepDoc::default()
                    })),
                ],
                output: Some(vec![("n".into(), json!("${two}"))]),
                ..GraphDoc::default()
            },
            footer: vec!["the end".into()],
            ..Doc::default()
        };
        let text = doc.render();
        let p = workflow::parse_and_validate("t.yaml", &text, &catalog())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(p.name, "T");
        assert_eq!(p.version, 3);
        assert_eq!(
            p.description.as_deref(),
            Some("A: description # with marks")
        );
        assert_eq!(
            p.main.steps.len(),
            2,
            "the commented-out step is not a step:\n{text}"
        );
        let one = &p.main.steps[0];
        for (i, s) in tricky.iter().enumerate() {
            assert_eq!(one.with[format!("k{i}")], json!(s), "{s:?}\n{text}");
        }
        assert_eq!(
            one.with["nested"],
            json!({"a b": ["${input.x}", 1, null, {"c": true}]})
        );
        assert_eq!(one.options.retry.maximum_attempts, 4);
        assert_eq!(one.options.retry.backoff_coefficient, 2.0);
        let two = &p.main.steps[1];
        assert_eq!(two.with, json!("${item}"));
        assert_eq!(two.options.heartbeat_ms, Some(10_000));
        assert!(two.optional);
        assert_eq!(two.when.as_deref(), Some("${input.x}"));
        assert_eq!(p.main.inputs["i"].default, Some(json!(3)));
        assert!(text.contains("\n  # - id: three\n"), "{text}");
        assert!(
            text.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .all(|l| l.chars().count() <= WIDTH),
            "comments are wrapped:\n{text}"
        );
    }
}
