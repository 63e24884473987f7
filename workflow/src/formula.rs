//! Timeout formulas: a `start_to_close` computed per run from the run's own data.
//!
//! Some steps' budgets depend on the meeting: mixdown gets
//! `max(720 s, 300 s + 60 s·N + duration_s/10)` (docs/contracts/pipeline.md §4.5). A pipeline
//! writes that as
//!
//! ```yaml
//! start_to_close: "max(720s, 300s + 60s * len(${input.tracks}) + default(${get_recording.duration_s}, 0) / 10)"
//! ```
//!
//! The language is deliberately small: numbers (seconds) with an optional unit (`ms`, `s`, `m`,
//! `h`), `${…}` references (the same paths as templates, resolved in the step's scope),
//! `+ - * /`, parentheses, and four functions: `max(a, …)`, `min(a, …)`, `len(x)` (items of an
//! array, characters of a string, fields of an object) and `default(x, y)` (`y` when `x` is
//! null). The result is a number of seconds. Evaluation is pure, so the interpreter stays
//! deterministic; [`Formula::parse`] runs at validation, so a typo fails `reflow validate`.

use serde_json::Value;

use crate::expr::{self, ExprError, Path, Scope};

/// The largest result of a formula: a year, longer than any step's timeout.
pub const MAX_SECONDS: f64 = 365.0 * 86_400.0;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    text: String,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    Ref(Path),
    Neg(Box<Node>),
    Bin(Box<Node>, Op, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Max,
    Min,
    Len,
    Default,
}

/// A value during evaluation: a number, or a referenced JSON value not yet used as one.
enum Val {
    Num(f64),
    Json(Value),
}

/// Whether a duration field's text is a formula rather than a plain duration.
pub fn is_formula(text: &str) -> bool {
    text.contains("${") || text.contains('(')
}

impl Formula {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Formula, ExprError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
            operands: 0,
        };
        let root = p.expr()?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error(&format!("unexpected `{}`", &text[p.pos..])));
        }
        Ok(Formula {
            text: text.to_owned(),
            root,
        })
    }

    /// The formula as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every `${…}` reference, in order.
    pub fn references(&self) -> Vec<Path> {
        let mut out = Vec::new();
        collect(&self.root, &mut out);
        out
    }

    /// Evaluate to seconds in `scope`: a finite number of at most [`MAX_SECONDS`], so that it
    /// always makes a timeout (`Duration::from_secs_f64` panics on what it cannot hold, and run
    /// data such as a local source's `duration_s: 1e300` reaches formulas).
    pub fn seconds(&self, scope: &Scope) -> Result<f64, ExprError> {
        let v = num(self, eval(self, &self.root, scope)?, "the result")?;
        if !v.is_finite() {
            return Err(self.fail("the result is not a finite number"));
        }
        if v > MAX_SECONDS {
            return Err(self.fail(&format!(
                "the result, {v:.3e} s, is more than a year: not a timeout"
            )));
        }
        Ok(v)
    }

    fn fail(&self, reason: &str) -> ExprError {
        ExprError::Syntax {
            text: self.text.clone(),
            reason: reason.to_owned(),
        }
    }
}

fn collect(n: &Node, out: &mut Vec<Path>) {
    match n {
        Node::Num(_) => {}
        Node::Ref(p) => out.push(p.clone()),
        Node::Neg(a) => collect(a, out),
        Node::Bin(a, _, b) => {
            collect(a, out);
            collect(b, out);
        }
        Node::Call(_, args) => args.iter().for_each(|a| collect(a, out)),
    }
}

fn num(f: &Formula, v: Val, what: &str) -> Result<f64, ExprError> {
    match v {
        Val::Num(n) => Ok(n),
        Val::Json(Value::Number(n)) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Val::Json(other) => Err(f.fail(&format!(
            "{what} is {} {}, not a number (wrap it in `default(…, 0)` if it may be null)",
            article(expr::kind(&other)),
            expr::kind(&other)
        ))),
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'o']) {
        "an"
    } else {
        "a"
    }
}

fn eval(f: &Formula, n: &Node, scope: &Scope) -> Result<Val, ExprError> {
    Ok(match n {
        Node::Num(v) => Val::Num(*v),
        Node::Ref(p) => Val::Json(expr::eval(p, scope)?),
        Node::Neg(a) => Val::Num(-num(f, eval(f, a, scope)?, "an operand")?),
        Node::Bin(a, op, b) => {
            let (a, b) = (
                num(f, eval(f, a, scope)?, "an operand")?,
                num(f, eval(f, b, scope)?, "an operand")?,
            );
            Val::Num(match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div if b == 0.0 => return Err(f.fail("division by zero")),
                Op::Div => a / b,
            })
        }
        Node::Call(Func::Len, args) => match eval(f, &args[0], scope)? {
            Val::Json(Value::Array(a)) => Val::Num(a.len() as f64),
            Val::Json(Value::String(s)) => Val::Num(s.chars().count() as f64),
            Val::Json(Value::Object(o)) => Val::Num(o.len() as f64),
            Val::Json(other) => {
                return Err(f.fail(&format!("len() of {}", expr::kind(&other))));
            }
            Val::Num(_) => return Err(f.fail("len() of a number")),
        },
        Node::Call(Func::Default, args) => match eval(f, &args[0], scope)? {
            Val::Json(Value::Null) => eval(f, &args[1], scope)?,
            v => v,
        },
        Node::Call(func, args) => {
            let mut best: Option<f64> = None;
            for a in args {
                let v = num(f, eval(f, a, scope)?, "an argument")?;
                best = Some(match (best, func) {
                    (None, _) => v,
                    (Some(b), Func::Max) => b.max(v),
                    (Some(b), _) => b.min(v),
                });
            }
            Val::Num(best.unwrap_or(0.0))
        }
    })
}

/// How deep parentheses, function calls and unary minus may nest, and how many operands a
/// formula may have: parsing, evaluating and dropping a formula recurse once per level of its
/// tree, and a pipeline file could otherwise overflow the stack (found by fuzzing).
const MAX_DEPTH: usize = 32;
const MAX_OPERANDS: usize = 256;

struct Parser<'a> {
    text: &'a str,
    /// A byte offset, always on a character boundary.
    pos: usize,
    depth: usize,
    operands: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &str) -> ExprError {
        ExprError::Syntax {
            text: self.text.to_owned(),
            reason: format!("{reason} (at character {})", self.pos + 1),
        }
    }

    fn skip_ws(&mut self) {
        // Whitespace may be more than one byte (U+00A0, U+3000): skip whole characters.
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        let mut left = self.term()?;
        loop {
            let op = if self.eat("+") {
                Op::Add
            } else if self.eat("-") {
                Op::Sub
            } else {
                return Ok(left);
            };
            left = Node::Bin(Box::new(left), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                Op::Mul
            } else if self.eat("/") {
                Op::Div
            } else {
                return Ok(left);
            };
            left = Node::Bin(Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        // Every operand passes here once, and every level of nesting adds one call.
        self.operands += 1;
        if self.operands > MAX_OPERANDS {
            return Err(self.error(&format!("more than {MAX_OPERANDS} operands")));
        }
        if self.depth == MAX_DEPTH {
            return Err(self.error(&format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.depth += 1;
        let node = if self.eat("-") {
            self.unary().map(|n| Node::Neg(Box::new(n)))
        } else {
            self.atom()
        };
        self.depth -= 1;
        node
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        self.skip_ws();
        if self.eat("(") {
            let inner = self.expr()?;
            if !self.eat(")") {
                return Err(self.error("missing `)`"));
            }
            return Ok(inner);
        }
        if self.rest().starts_with("${") {
            let end = self
                .rest()
                .find('}')
                .ok_or_else(|| self.error("`${` without `}`"))?;
            let piece = &self.rest()[..=end];
            let path = expr::parse_single(piece)?;
            self.pos += end + 1;
            return Ok(Node::Ref(path));
        }
        let rest = self.rest();
        if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            let n = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let value: f64 = rest[..n]
                .parse()
                .map_err(|_| self.error(&format!("`{}` is not a number", &rest[..n])))?;
            self.pos += n;
            let scale = if self.rest().starts_with("ms") {
                self.pos += 2;
                0.001
            } else if self.rest().starts_with('s') {
                self.pos += 1;
                1.0
            } else if self.rest().starts_with('m') {
                self.pos += 1;
                60.0
            } else if self.rest().starts_with('h') {
                self.pos += 1;
                3600.0
            } else {
                1.0
            };
            return Ok(Node::Num(value * scale));
        }
        let n = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        let name = rest[..n].to_owned();
        let (func, arity) = match name.as_str() {
            "max" => (Func::Max, 1..=usize::MAX),
            "min" => (Func::Min, 1..=usize::MAX),
            "len" => (Func::Len, 1..=1),
            "default" => (Func::Default, 2..=2),
            "" => return Err(self.error("expected a number, `${…}`, `(` or a function")),
            other => {
                return Err(self.error(&format!(
                    "unknown function `{other}` (known: max, min, len, default)"
                )));
            }
        };
        self.pos += n;
        if !self.eat("(") {
            return Err(self.error(&format!("`{name}` must be followed by `(`")));
        }
        let mut args = vec![self.expr()?];
        while self.eat(",") {
            args.push(self.expr()?);
        }
        if !self.eat(")") {
            return Err(self.error("missing `)` after the arguments"));
        }
        if !arity.contains(&args.len()) {
            return Err(self.error(&format!(
                "`{name}` takes {} argument(s), got {}",
                if *arity.end() == usize::MAX {
                    "one or more".to_owned()
                } else {
                    arity.start().to_string()
                },
                args.len()
            )));
        }
        Ok(Node::Call(func, args))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MIXDOWN: &str = "max(720s, 300s + 60s * len(${input.tracks}) + default(${get_recording.duration_s}, 0) / 10)";

    fn scope(tracks: usize, duration: Value) -> Scope {
        let mut s = Scope::new();
        s.insert("input".into(), json!({"tracks": vec![json!({}); tracks]}));
        s.insert("get_recording".into(), json!({"duration_s": duration}));
        s
    }

    #[test]
    fn the_mixdown_formula_follows_the_meeting() {
        let f = Formula::parse(MIXDOWN).unwrap();
        assert_eq!(f.references().len(), 2);
        // Short meetings get the floor; long ones grow with tracks and length.
        assert_eq!(f.seconds(&scope(2, json!(600))).unwrap(), 720.0);
        assert_eq!(
            f.seconds(&scope(4, json!(7200))).unwrap(),
            300.0 + 240.0 + 720.0
        );
        // Daily gave no duration: the track count alone decides.
        assert_eq!(f.seconds(&scope(10, Value::Null)).unwrap(), 900.0);
    }

    #[test]
    fn units_precedence_and_errors() {
        let s = Scope::new();
        let v = |t: &str| Formula::parse(t).unwrap().seconds(&s).unwrap();
        assert_eq!(v("1m + 30s"), 90.0);
        assert_eq!(v("500ms * 4"), 2.0);
        assert_eq!(v("2 + 3 * 4"), 14.0);
        assert_eq!(v("(2 + 3) * 4"), 20.0);
        assert_eq!(v("min(1h, 90m, 7200)"), 3600.0);
        assert_eq!(v("-5 + 10"), 5.0);
        for bad in ["max(", "1 +", "foo(1)", "len(1, 2)", "3 $ 4", "${input.x"] {
            assert!(Formula::parse(bad).is_err(), "{bad}");
        }
        let nul = Formula::parse("${get_recording.duration_s} / 10").unwrap();
        let e = nul.seconds(&scope(1, Value::Null)).unwrap_err().to_string();
        assert!(e.contains("null") && e.contains("default("), "{e}");
        assert!(Formula::parse("1 / 0").unwrap().seconds(&s).is_err());
    }

    /// Crashes the `expr` fuzz target found (fuzz/, bench/results/fuzz.md): a multi-byte space
    /// made the parser slice inside a character (a panic), and deep nesting or a long chain of
    /// operators overflowed the stack (an abort) while parsing, evaluating or dropping.
    #[test]
    fn unicode_spaces_deep_nesting_and_long_chains_are_errors_not_crashes() {
        let s = Scope::new();
        // The fuzzer's input, then the same spaces where they are legal.
        assert!(Formula::parse("-(1.530\u{85} * 2 / min(3, 4h,25m").is_err());
        let v = |t: &str| Formula::parse(t).unwrap().seconds(&s).unwrap();
        assert_eq!(v("(\u{85}1)\u{3000}+\u{a0}2\u{2028}"), 3.0);
        let deep = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(v(&deep(MAX_DEPTH - 1)), 1.0);
        for text in [
            deep(100_000),
            format!("{}1", "-".repeat(100_000)),
            format!("{}1", "max(".repeat(1_000)),
            format!("{}1", "1 + ".repeat(100_000)),
        ] {
            let e = Formula::parse(&text).unwrap_err().to_string();
            assert!(e.contains("levels deep") || e.contains("operands"), "{e}");
        }
        assert_eq!(v(&vec!["1"; MAX_OPERANDS].join("+")), MAX_OPERANDS as f64);
    }

    /// A result no timeout can hold is an error: the interpreter's `Duration::from_secs_f64`
    /// panicked on it (a local source's `recording.json` declaring `duration_s: 1e300` reached
    /// the mixdown formula through `get_recording`).
    #[test]
    fn a_result_longer_than_a_year_is_an_error() {
        let f = Formula::parse(MIXDOWN).unwrap();
        let e = f.seconds(&scope(2, json!(1e300))).unwrap_err().to_string();
        assert!(e.contains("more than a year"), "{e}");
        assert!(f.seconds(&scope(2, json!(-1e300))).is_ok());
        let year = Formula::parse("8760h").unwrap();
        assert_eq!(year.seconds(&Scope::new()).unwrap(), MAX_SECONDS);
        let digits = Formula::parse("99999999999999999999999h").unwrap();
        assert!(digits.seconds(&Scope::new()).is_err());
    }
}
