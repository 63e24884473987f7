//! `reflow compare`: a recording's live transcript beside its shadow (issue 37 item 3), one
//! meeting or every meeting since a date, as Markdown or JSON.
//!
//! For each pair: the word error rate of the shadow's transcript against the live one's (the
//! ASR scorer, `activities::asr::wer`, on the text `GET /v1/transcripts/{id}` serves:
//! `{name}: {segment}` lines), the title, topics, summaries and action items side by side,
//! each side's status and failure, and per step (activity type, children included) the time
//! it took and what it paid (`reflow cost`'s data; a step the shadow reused from the live run
//! took and paid nothing and says so). Over N meetings the aggregate gives the medians (WER,
//! time, LLM tokens, transcription seconds) and the worst cases (highest WER, failures).
//!
//! One side can also be a transcript fetched from another system in the shape of
//! `GET /v1/transcripts/{id}?transcript_format=text` ([`Side::from_rest`], `--against FILE`):
//! the system being migrated from serves that shape, so the same report compares it with
//! reflow's run of the same recording (it has no per-step data).

use std::collections::BTreeSet;

use activities::asr::wer::word_error_rate;
use activities::db::transcripts::Transcript;
use activities::db::{Db, DbError};
use activities::transcript::{Participant, Topic};
use serde::Serialize;
use serde_json::Value;
use temporalio_client::Client;

use crate::cost::{CostError, StepCost};

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A run's history.
    #[error(transparent)]
    Cost(#[from] CostError),
    /// Nothing to compare.
    #[error("{0}")]
    NotFound(String),
    /// `--since` is not a date.
    #[error("--since {0:?} is not a date (YYYY-MM-DD or RFC 3339)")]
    Since(String),
}

/// One side of a comparison: a transcript as its system serves it, and its run's steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    /// The transcript.
    pub transcript_id: String,
    /// Its run, when it is reflow's.
    pub workflow_id: Option<String>,
    /// `idle`, `processing`, `ended` or `error`.
    pub status: String,
    /// Why its last run failed.
    pub error: Option<String>,
    /// Title.
    pub title: String,
    /// Recap.
    pub short_summary: String,
    /// Long summary.
    pub long_summary: String,
    /// `{decisions, next_steps}`.
    pub action_items: Value,
    /// Topic titles, in order.
    pub topics: Vec<String>,
    /// Words in its transcript.
    pub words: usize,
    /// The transcript text (`{name}: {segment}` lines).
    #[serde(skip)]
    pub text: String,
    /// Per activity type: time and spending of its run (empty for another system's).
    pub steps: Vec<StepCost>,
}

impl Side {
    /// A reflow transcript (its run's steps read separately).
    pub fn of(t: &Transcript) -> Side {
        let topics: Vec<Topic> = serde_json::from_str(&t.topics).unwrap_or_default();
        let participants: Vec<Participant> =
            serde_json::from_str(&t.participants).unwrap_or_default();
        let text = activities::transcript::render("text", &topics, &participants)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Side {
            transcript_id: t.id.clone(),
            workflow_id: t.workflow_id.clone(),
            status: t.status.clone(),
            error: t.error.clone(),
            title: t.title.clone().unwrap_or_default(),
            short_summary: t.short_summary.clone().unwrap_or_default(),
            long_summary: t.long_summary.clone().unwrap_or_default(),
            action_items: t
                .action_items
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(Value::Null),
            topics: topics.iter().map(|t| t.title.clone()).collect(),
            words: topics.iter().map(|t| t.words.len()).sum(),
            text,
            steps: Vec::new(),
        }
    }

    /// A transcript in the shape of `GET /v1/transcripts/{id}?transcript_format=text` (ours,
    /// or the system being migrated from); `topics` as `GET …/topics` answers, when the
    /// object carries them.
    pub fn from_rest(v: &Value) -> Side {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let text = s("transcript");
        Side {
            transcript_id: s("id"),
            workflow_id: None,
            status: s("status"),
            error: v["error"].as_str().map(str::to_owned),
            title: s("title"),
            short_summary: s("short_summary"),
            long_summary: s("long_summary"),
            action_items: v["action_items"].clone(),
            topics: v["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["title"].as_str().map(str::to_owned))
                .collect(),
            words: text
                .lines()
                .map(|l| l.split_once(": ").map_or(l, |(_, w)| w))
                .map(|l| l.split_whitespace().count())
                .sum(),
            text,
            steps: Vec::new(),
        }
    }

    fn failed(&self) -> bool {
        self.status == "error" || self.error.is_some()
    }

    fn time_s(&self) -> f64 {
        self.steps.iter().map(|s| s.time_s).sum()
    }

    fn tokens(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| s.spent.prompt_tokens + s.spent.completion_tokens)
            .sum()
    }

    fn audio_s(&self) -> f64 {
        self.steps.iter().map(|s| s.spent.audio_s).sum()
    }
}

/// One step (activity type) of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRow {
    /// Activity type.
    pub step: String,
    /// Live: seconds, LLM tokens, transcription seconds (`None`: it did not run).
    pub live: Option<(f64, u64, f64)>,
    /// Shadow: the same (`None`: it did not run: reused from the live run, or skipped).
    pub shadow: Option<(f64, u64, f64)>,
}

/// A recording's live transcript and its shadow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The recording.
    pub recording_id: String,
    /// The live side.
    pub live: Side,
    /// The shadow side (or another system's transcript).
    pub shadow: Side,
    /// Word error rate of the shadow's transcript against the live one's.
    pub wer: f64,
    /// Which fields differ: title, short_summary, long_summary, action_items, topics.
    pub changed: Vec<String>,
    /// Per step, both sides.
    pub steps: Vec<StepRow>,
}

impl Comparison {
    /// Compare `shadow` with `live`.
    pub fn of(recording_id: &str, live: Side, shadow: Side) -> Comparison {
        let mut changed = Vec::new();
        for (name, differs) in [
            ("title", live.title != shadow.title),
            ("short_summary", live.short_summary != shadow.short_summary),
            ("long_summary", live.long_summary != shadow.long_summary),
            ("action_items", live.action_items != shadow.action_items),
            ("topics", live.topics != shadow.topics),
        ] {
            if differs {
                changed.push(name.to_owned());
            }
        }
        let types: BTreeSet<&str> = live
            .steps
            .iter()
            .chain(&shadow.steps)
            .map(|s| s.step.as_str())
            .collect();
        let row = |side: &Side, t: &str| {
            side.steps.iter().find(|s| s.step == t).map(|s| {
                (
                    s.time_s,
                    s.spent.prompt_tokens + s.spent.completion_tokens,
                    s.spent.audio_s,
                )
            })
        };
        let steps = types
            .into_iter()
            .map(|t| StepRow {
                step: t.to_owned(),
                live: row(&live, t),
                shadow: row(&shadow, t),
            })
            .collect();
        Comparison {
            recording_id: recording_id.to_owned(),
            wer: word_error_rate(&live.text, &shadow.text),
            changed,
            steps,
            live,
            shadow,
        }
    }
}

/// Over N meetings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Aggregate {
    /// Meetings compared.
    pub meetings: usize,
    /// Median word error rate, shadow against live.
    pub wer_median: f64,
    /// Medians of each run's time (seconds, summed over its steps).
    pub time_s_median: (f64, f64),
    /// Medians of each run's LLM tokens.
    pub tokens_median: (f64, f64),
    /// Medians of each run's transcription seconds paid.
    pub audio_s_median: (f64, f64),
    /// Meetings whose title, summaries, action items or topics differ, by field.
    pub changed: Vec<(String, usize)>,
    /// The highest word error rates (at most 5): recording and WER.
    pub worst: Vec<(String, f64)>,
    /// Runs that failed: recording, side and why.
    pub failures: Vec<(String, String, String)>,
}

/// The report `reflow compare` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Each meeting.
    pub meetings: Vec<Comparison>,
    /// Over all of them.
    pub aggregate: Aggregate,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Report {
    /// The report of `meetings`, with its aggregate.
    pub fn of(meetings: Vec<Comparison>) -> Report {
        let both = |f: fn(&Side) -> f64| {
            (
                median(meetings.iter().map(|c| f(&c.live)).collect()),
                median(meetings.iter().map(|c| f(&c.shadow)).collect()),
            )
        };
        let mut worst: Vec<(String, f64)> = meetings
            .iter()
            .map(|c| (c.recording_id.clone(), c.wer))
            .collect();
        worst.sort_by(|a, b| b.1.total_cmp(&a.1));
        worst.truncate(5);
        let mut failures = Vec::new();
        for c in &meetings {
            for (label, side) in [("live", &c.live), ("shadow", &c.shadow)] {
                if side.failed() {
                    failures.push((
                        c.recording_id.clone(),
                        label.to_owned(),
                        side.error.clone().unwrap_or_else(|| side.status.clone()),
                    ));
                }
            }
        }
        let changed = [
            "title",
            "short_summary",
            "long_summary",
            "action_items",
            "topics",
        ]
        .iter()
        .map(|f| {
            let n = meetings.iter().filter(|c| c.changed.iter().any(|x| x == f));
            ((*f).to_owned(), n.count())
        })
        .collect();
        let aggregate = Aggregate {
            meetings: meetings.len(),
            wer_median: median(meetings.iter().map(|c| c.wer).collect()),
            time_s_median: both(Side::time_s),
            tokens_median: both(|s| s.tokens() as f64),
            audio_s_median: both(Side::audio_s),
            changed,
            worst,
            failures,
        };
        Report {
            meetings,
            aggregate,
        }
    }
}

/// `side` with its run's steps (`reflow cost`'s data), when it has a run.
async fn with_steps(client: &Client, db: &Db, mut side: Side) -> Result<Side, CompareError> {
    if let Some(wf) = &side.workflow_id {
        side.steps = crate::cost::cost(client, Some(db), wf).await?;
    }
    Ok(side)
}

/// The comparison of live transcript `live` and its shadow (or `against`, another system's
/// transcript of the same recording, in the REST shape).
pub async fn pair(
    client: &Client,
    db: &Db,
    live: &Transcript,
    against: Option<&Value>,
) -> Result<Comparison, CompareError> {
    let shadow = match against {
        Some(v) => Side::from_rest(v),
        None => {
            let s = db.shadow_of(&live.id).await?.ok_or_else(|| {
                CompareError::NotFound(format!("transcript {} has no shadow", live.id))
            })?;
            with_steps(client, db, Side::of(&s)).await?
        }
    };
    beside(client, db, live, shadow).await
}

/// Live transcript `live` (with its run's steps) compared with `shadow`.
async fn beside(
    client: &Client,
    db: &Db,
    live: &Transcript,
    shadow: Side,
) -> Result<Comparison, CompareError> {
    let recording = live.recording_id.clone().unwrap_or_else(|| live.id.clone());
    let live = with_steps(client, db, Side::of(live)).await?;
    Ok(Comparison::of(&recording, live, shadow))
}

/// `reflow compare <recording>`: the recording's live transcript and its shadow (or
/// `against`).
pub async fn recording(
    client: &Client,
    db: &Db,
    recording_id: &str,
    against: Option<&Value>,
) -> Result<Report, CompareError> {
    let id = db
        .transcript_id_of_recording(recording_id)
        .await?
        .ok_or_else(|| {
            CompareError::NotFound(format!("no transcript of recording {recording_id}"))
        })?;
    let live = db.transcript(&id).await?;
    Ok(Report::of(vec![pair(client, db, &live, against).await?]))
}

/// `reflow compare --since DATE [--room R]`: every live/shadow pair whose shadow was made since
/// `since` (YYYY-MM-DD or RFC 3339, UTC), in room `room` (by name).
pub async fn since(
    client: &Client,
    db: &Db,
    since: &str,
    room: Option<&str>,
) -> Result<Report, CompareError> {
    let since = crate::backfill::selection(since, None)
        .map_err(|_| CompareError::Since(since.to_owned()))?
        .since;
    let mut out = Vec::new();
    for (live, shadow) in db.shadow_pairs(&since, room).await? {
        let shadow = with_steps(client, db, Side::of(&shadow)).await?;
        out.push(beside(client, db, &live, shadow).await?);
    }
    Ok(Report::of(out))
}

fn cell(v: Option<(f64, u64, f64)>) -> String {
    match v {
        None => "—".into(),
        Some((t, tok, a)) => {
            let mut s = format!("{t:.1} s");
            if tok > 0 {
                s.push_str(&format!(", {tok} tok"));
            }
            if a > 0.0 {
                s.push_str(&format!(", {a:.0} s ASR"));
            }
            s
        }
    }
}

fn clip(s: &str) -> String {
    let one = s.replace('\n', " ").replace('|', "\\|");
    match one.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one,
    }
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let a = &r.aggregate;
    let mut out = format!("# Live vs shadow: {} meetings\n\n", a.meetings);
    out.push_str("| | live | shadow |\n|---|---|---|\n");
    out.push_str(&format!(
        "| WER (shadow against live), median | | {:.3} |\n",
        a.wer_median
    ));
    for (name, (l, s)) in [
        ("run time, median (s)", a.time_s_median),
        ("LLM tokens, median", a.tokens_median),
        ("transcription paid, median (s)", a.audio_s_median),
    ] {
        out.push_str(&format!("| {name} | {l:.1} | {s:.1} |\n"));
    }
    out.push_str("\nChanged (meetings): ");
    let changed: Vec<String> = a.changed.iter().map(|(f, n)| format!("{f} {n}")).collect();
    out.push_str(&changed.join(", "));
    out.push_str("\n\nWorst WER: ");
    let worst: Vec<String> = a.worst.iter().map(|(r, w)| format!("{r} {w:.3}")).collect();
    out.push_str(&worst.join(", "));
    out.push_str("\n\nFailures: ");
    if a.failures.is_empty() {
        out.push_str("none");
    }
    let failures: Vec<String> = a
        .failures
        .iter()
        .map(|(r, side, why)| format!("{r} ({side}): {}", clip(why)))
        .collect();
    out.push_str(&failures.join("; "));
    out.push('\n');
    for c in &r.meetings {
        out.push_str(&format!(
            "\n## {} — WER {:.3}\n\n| | live | shadow |\n|---|---|---|\n",
            c.recording_id, c.wer
        ));
        let (l, s) = (&c.live, &c.shadow);
        let items = |v: &Value| clip(&v.to_string());
        for (name, lv, sv) in [
            (
                "transcript",
                l.transcript_id.clone(),
                s.transcript_id.clone(),
            ),
            ("status", l.status.clone(), s.status.clone()),
            (
                "failure",
                l.error.clone().unwrap_or_default(),
                s.error.clone().unwrap_or_default(),
            ),
            ("words", l.words.to_string(), s.words.to_string()),
            ("title", l.title.clone(), s.title.clone()),
            ("topics", l.topics.join("; "), s.topics.join("; ")),
            (
                "short summary",
                l.short_summary.clone(),
                s.short_summary.clone(),
            ),
            (
                "long summary",
                l.long_summary.clone(),
                s.long_summary.clone(),
            ),
            (
                "action items",
                items(&l.action_items),
                items(&s.action_items),
            ),
        ] {
            out.push_str(&format!("| {name} | {} | {} |\n", clip(&lv), clip(&sv)));
        }
        if !c.steps.is_empty() {
            out.push_str("\n| step | live | shadow |\n|---|---|---|\n");
            for st in &c.steps {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    st.step,
                    cell(st.live),
                    if st.shadow.is_none() && st.live.is_some() {
                        "reused or skipped".to_owned()
                    } else {
                        cell(st.shadow)
                    }
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(text: &str, title: &str, time_s: f64) -> Side {
        Side {
            status: "ended".into(),
            title: title.into(),
            text: text.into(),
            steps: vec![StepCost {
                step: "generate_title".into(),
                time_s,
                ..StepCost::default()
            }],
            ..Side::default()
        }
    }

    #[test]
    fn the_aggregate_gives_medians_and_the_worst_cases() {
        let c = |r: &str, hyp: &str, t: f64| {
            Comparison::of(r, side("Ana: a b c d", "T", 1.0), side(hyp, "T2", t))
        };
        let r = Report::of(vec![
            c("r1", "Ana: a b c d", 2.0),
            c("r2", "Ana: a b x d", 4.0),
            c("r3", "Ana: x y c d", 6.0),
        ]);
        let a = &r.aggregate;
        assert_eq!(a.meetings, 3);
        assert!((a.wer_median - 0.2).abs() < 1e-9, "{}", a.wer_median);
        assert_eq!(a.time_s_median, (1.0, 4.0));
        assert_eq!(a.worst[0].0, "r3");
        assert_eq!(a.changed[0], ("title".to_owned(), 3));
        assert!(a.failures.is_empty());
        let md = markdown(&r);
        assert!(md.contains("# Live vs shadow: 3 meetings"), "{md}");
        assert!(md.contains("## r3 — WER 0.400"), "{md}");
    }

    #[test]
    fn another_system_s_transcript_is_read_in_the_rest_shape() {
        let s = Side::from_rest(&json!({
            "id": "9b7e", "status": "ended", "title": "Release planning",
            "short_summary": "s", "long_summary": "l",
            "action_items": {"decisions": [], "next_steps": []},
            "transcript": "Ana: Hello everyone.\nBen: Hi.",
            "topics": [{"title": "Scope"}]
        }));
        assert_eq!(s.words, 3);
        assert_eq!(s.topics, ["Scope"]);
        let c = Comparison::of("rec", s.clone(), s);
        assert_eq!(c.wer, 0.0);
        assert!(c.changed.is_empty());
    }
}
