//! The evaluation set (`eval/meetings/`, described in `eval/README.md`): loading a meeting's
//! file, the held-out split, and scoring what reflow published for it as its attendees would
//! read it. `just bench-e2e` reports these scores per meeting and as medians over the held-out
//! half; the functions here are pure, so each metric's definition is unit-tested below.
//!
//! What is scored is [`Published`]: the title, the long summary (`# Quick recap`, then
//! `# Summary` with one `**Subject**` paragraph each), the decisions and next steps, the topics'
//! titles and the transcript's text, as `reflow process` writes them (`summary.md`,
//! `transcript.txt`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The directory of the meeting files.
pub fn meetings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/meetings")
}

/// One meeting of the set, as its file states it.
#[derive(Debug, Clone, Deserialize)]
pub struct Meeting {
    /// The meeting's name (the file's stem).
    pub name: String,
    /// What kind of meeting it is.
    pub kind: String,
    /// Nobody decides, plans or promises anything: no decision or next step may be listed.
    #[serde(default)]
    pub decides_nothing: bool,
    /// The speakers, in track order.
    pub speakers: Vec<Speaker>,
    /// The subjects the script moves through (what `topic_count` is scored against).
    pub subjects: Vec<String>,
    /// The facts a summary must carry.
    pub facts: Vec<EvalFact>,
}

/// A speaker of a meeting.
#[derive(Debug, Clone, Deserialize)]
pub struct Speaker {
    /// The name as spoken in the dialogue.
    pub name: String,
}

/// A fact of a meeting.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalFact {
    /// The fact as an attendee would say it.
    pub fact: String,
    /// `decision`, `owner+task`, `date`, `number` or `finding`.
    pub kind: String,
    /// Who does it (for `owner+task`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Case-insensitive patterns that must all match for the fact to count as carried.
    pub patterns: Vec<String>,
}

impl EvalFact {
    /// Whether `text` carries this fact: every pattern matches somewhere in it.
    pub fn carried_by(&self, text: &str) -> Result<bool> {
        for p in &self.patterns {
            let re = regex::RegexBuilder::new(p)
                .case_insensitive(true)
                .build()
                .with_context(|| format!("pattern {p:?} of fact {:?}", self.fact))?;
            if !re.is_match(text) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Meeting {
    /// The meeting `name` (`eval/meetings/{name}.json`).
    pub fn load(name: &str) -> Result<Meeting> {
        let path = meetings_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Every meeting of the set, by name.
    pub fn all() -> Result<Vec<Meeting>> {
        let mut names: Vec<String> = std::fs::read_dir(meetings_dir())?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        names.sort();
        names.iter().map(|n| Meeting::load(n)).collect()
    }

    /// Whether the meeting is in the held-out half (eval/README.md).
    pub fn held_out(&self) -> bool {
        held_out(&self.name)
    }
}

/// The split, fixed before any tuning: a meeting is held out when the first byte of sha256 of
/// its name is odd; `demo`, tuned on since before the set existed, never is.
pub fn held_out(name: &str) -> bool {
    name != "demo" && Sha256::digest(name.as_bytes())[0] % 2 == 1
}

/// What reflow published for a meeting.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The title.
    pub title: String,
    /// The long summary: `# Quick recap`, then `# Summary` with its subject paragraphs.
    pub long_summary: String,
    /// The decisions, one text each (with who decided, if given).
    pub decisions: Vec<String>,
    /// The next steps: the task and whom it is assigned to.
    pub next_steps: Vec<(String, Option<String>)>,
    /// The topics' titles.
    pub topics: Vec<String>,
    /// The transcript's words, as published.
    pub transcript: String,
}

impl Published {
    /// The quick recap (the text between `# Quick recap` and `# Summary`).
    pub fn recap(&self) -> &str {
        self.long_summary
            .split("# Quick recap")
            .nth(1)
            .map(|r| r.split("# Summary").next().unwrap_or(r))
            .unwrap_or("")
            .trim()
    }

    /// The subject paragraphs of `# Summary` (each `**Subject**` heading with its text).
    pub fn subject_paragraphs(&self) -> Vec<String> {
        let body = self.long_summary.split("# Summary").nth(1).unwrap_or("");
        let mut out: Vec<String> = Vec::new();
        for block in body.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
            match block.strip_prefix("**") {
                Some(rest) => {
                    // The heading's own words are not the paragraph's.
                    let text = rest.split_once("**").map_or(rest, |(_, t)| t);
                    out.push(text.trim().to_owned());
                }
                None => match out.last_mut() {
                    Some(last) => {
                        last.push(' ');
                        last.push_str(block);
                    }
                    None => out.push(block.to_owned()),
                },
            }
        }
        out.retain(|p| !p.is_empty());
        out
    }

    /// Everything a reader reads: title, long summary, decisions and next steps.
    pub fn whole(&self) -> String {
        let mut s = format!("{}\n{}\n", self.title, self.long_summary);
        for d in &self.decisions {
            s.push_str(d);
            s.push('\n');
        }
        for (task, who) in &self.next_steps {
            s.push_str(task);
            if let Some(w) = who {
                s.push_str(&format!(" ({w})"));
            }
            s.push('\n');
        }
        s
    }
}

/// The scores of one meeting (eval/README.md defines each).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Facts carried by the title and the quick recap, over all facts (`None`: no facts).
    pub recap_fact_recall: Option<f64>,
    /// Facts carried by anything published, over all facts.
    pub summary_fact_recall: Option<f64>,
    /// Of the `owner+task` facts, the share carried by a next step that also names the
    /// owner (`None`: the meeting has no such fact).
    pub owner_accuracy: Option<f64>,
    /// Numbers, dates and names in what is published that the transcript does not contain.
    pub invented_facts: Vec<String>,
    /// Decisions and next steps listed for a meeting that decides nothing.
    pub invented_decisions: usize,
    /// The number of topics, and the number of scripted subjects.
    pub topic_count: (usize, usize),
    /// Mean share of a subject paragraph's 4-word runs that another paragraph also has.
    pub paragraph_overlap: f64,
    /// Share of the words of the recap, decisions and next steps that lie in a 6-word run
    /// found verbatim in the transcript.
    pub copied_share: f64,
}

/// Score what was published for `meeting`.
pub fn score(meeting: &Meeting, p: &Published) -> Result<Scores> {
    let n = meeting.facts.len();
    let share = |found: usize, of: usize| (of > 0).then(|| found as f64 / of as f64);
    let recap_text = format!("{}\n{}", p.title, p.recap());
    let whole = p.whole();
    let mut in_recap = 0;
    let mut in_whole = 0;
    for f in &meeting.facts {
        in_recap += usize::from(f.carried_by(&recap_text)?);
        in_whole += usize::from(f.carried_by(&whole)?);
    }
    let (mut owned, mut right) = (0, 0);
    for f in meeting.facts.iter().filter(|f| f.kind == "owner+task") {
        let Some(owner) = &f.owner else { continue };
        let mut carrying = Vec::new();
        for (task, who) in &p.next_steps {
            let line = format!("{task} ({})", who.as_deref().unwrap_or(""));
            if f.carried_by(&line)? {
                carrying.push(line);
            }
        }
        owned += 1;
        let named = |line: &String| {
            words(line)
                .iter()
                .any(|w| w.eq_ignore_ascii_case(owner.as_str()))
        };
        right += usize::from(carrying.iter().any(named));
    }
    let listed = p.decisions.len() + p.next_steps.len();
    let copied_from: Vec<&str> = std::iter::once(p.recap())
        .chain(p.decisions.iter().map(String::as_str))
        .chain(p.next_steps.iter().map(|(t, _)| t.as_str()))
        .collect();
    Ok(Scores {
        recap_fact_recall: share(in_recap, n),
        summary_fact_recall: share(in_whole, n),
        owner_accuracy: share(right, owned),
        invented_facts: invented(&whole, &p.transcript),
        invented_decisions: if meeting.decides_nothing { listed } else { 0 },
        topic_count: (p.topics.len(), meeting.subjects.len()),
        paragraph_overlap: paragraph_overlap(&p.subject_paragraphs()),
        copied_share: copied_share(&copied_from.join("\n"), &p.transcript),
    })
}

/// Lowercase words (letters, digits, apostrophes) of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The `n`-word runs of `words`.
fn runs(words: &[String], n: usize) -> BTreeSet<&[String]> {
    words.windows(n).collect()
}

/// Mean, over the paragraphs, of the share of a paragraph's 4-word runs that another
/// paragraph also has (0 with fewer than two paragraphs).
pub fn paragraph_overlap(paragraphs: &[String]) -> f64 {
    if paragraphs.len() < 2 {
        return 0.0;
    }
    let ws: Vec<Vec<String>> = paragraphs.iter().map(|p| words(p)).collect();
    let sets: Vec<BTreeSet<&[String]>> = ws.iter().map(|w| runs(w, 4)).collect();
    let mut total = 0.0;
    for (i, set) in sets.iter().enumerate() {
        if set.is_empty() {
            continue;
        }
        let shared = set
            .iter()
            .filter(|r| {
                sets.iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.contains(*r))
            })
            .count();
        total += shared as f64 / set.len() as f64;
    }
    total / sets.len() as f64
}

/// Share of `text`'s words that lie in a 6-word run found verbatim in `transcript`.
pub fn copied_share(text: &str, transcript: &str) -> f64 {
    let t = words(transcript);
    let source = runs(&t, 6);
    let w = words(text);
    if w.is_empty() {
        return 0.0;
    }
    let mut copied = vec![false; w.len()];
    for (i, run) in w.windows(6).enumerate() {
        if source.contains(run) {
            copied[i..i + 6].iter_mut().for_each(|c| *c = true);
        }
    }
    copied.iter().filter(|c| **c).count() as f64 / w.len() as f64
}

use ::activities::llm::facts::WEEKDAYS;
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The numbers, dates and names of `published` that `transcript` does not contain, each once.
///
/// - A number (digits, `10,000`, `3.5`, `14th`) is contained when the transcript has it in
///   digits or in words (`ten thousand`, `fourteenth`).
/// - A date word (weekday, month) is contained when the transcript has the word.
/// - A name is a capitalized word that does not start a sentence or a line and is not a
///   date word (`Ben`, `Postgres`); it is contained when the transcript has the word in any
///   case. Sentence-initial words are skipped: they cannot be told from ordinary words.
pub fn invented(published: &str, transcript: &str) -> Vec<String> {
    let heard: BTreeSet<String> = words(transcript).into_iter().collect();
    let heard_text = words(transcript).join(" ");
    let mut out = BTreeMap::new();
    for line in published.lines() {
        let line = line.trim_start_matches(['#', '-', '*', ' ']);
        let mut sentence_start = true;
        for raw in line.split_whitespace() {
            let token = raw.trim_matches(|c: char| !c.is_alphanumeric());
            let ends_sentence = raw.ends_with(['.', '!', '?', ':']);
            if token.is_empty() {
                sentence_start |= ends_sentence;
                continue;
            }
            let lower = token.to_lowercase();
            if token.chars().any(|c| c.is_ascii_digit()) {
                if !number_heard(token, &heard, &heard_text) {
                    out.insert(lower, ());
                }
            } else if WEEKDAYS.contains(&lower.as_str()) || MONTHS.contains(&lower.as_str()) {
                if !heard.contains(&lower) {
                    out.insert(lower, ());
                }
            } else if !sentence_start
                && token.chars().next().is_some_and(char::is_uppercase)
                && token.len() > 1
                && !heard.contains(&lower)
            {
                out.insert(token.to_owned(), ());
            }
            sentence_start = ends_sentence;
        }
    }
    out.into_keys().collect()
}

/// Whether the number `token` (`10,000`, `$5`, `14th`, `3.5`, `9am`) is in the transcript, in
/// digits or in words.
fn number_heard(token: &str, heard: &BTreeSet<String>, heard_text: &str) -> bool {
    let digits: String = token
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let plain = digits.trim_matches('.');
    if heard.iter().any(|w| {
        w.chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .collect::<String>()
            == plain
    }) {
        return true;
    }
    let Ok(n) = plain.parse::<u64>() else {
        // A decimal: its whole part in words is enough ("three and a half", "3.5").
        return plain
            .split('.')
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .is_some_and(|w| heard_text.contains(&number_words(w)));
    };
    let said = number_words(n);
    heard_text.contains(&said)
        || heard_text.contains(&ordinal_words(n))
        // "two thousand" for 2000 but also "twenty twenty-six" for a year: a year is heard
        // when both halves are.
        || (1900..2100).contains(&n)
            && heard_text.contains(&format!(
                "{} {}",
                number_words(n / 100),
                number_words(n % 100)
            ))
}

/// `n` in English words, lowercase, hyphens as spaces ("ten thousand", "forty two").
pub fn number_words(n: u64) -> String {
    use ::activities::llm::facts::{TENS, UNITS as ONES};
    fn below_thousand(n: u64) -> String {
        let mut parts = Vec::new();
        if n >= 100 {
            parts.push(format!("{} hundred", ONES[(n / 100) as usize]));
        }
        let rest = n % 100;
        if rest >= 20 {
            parts.push(TENS[(rest / 10) as usize].to_owned());
            if !rest.is_multiple_of(10) {
                parts.push(ONES[(rest % 10) as usize].to_owned());
            }
        } else if rest > 0 || n == 0 {
            parts.push(ONES[rest as usize].to_owned());
        }
        parts.join(" ")
    }
    let mut parts = Vec::new();
    for (scale, name) in [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ] {
        if n >= scale && !(n / scale).is_multiple_of(1000) {
            parts.push(format!("{} {name}", below_thousand((n / scale) % 1000)));
        }
    }
    if !n.is_multiple_of(1000) || n == 0 {
        parts.push(below_thousand(n % 1000));
    }
    parts.join(" ")
}

/// `n` as an ordinal in words ("fourteenth", "twenty first").
fn ordinal_words(n: u64) -> String {
    let words = number_words(n);
    let (head, last) = words.rsplit_once(' ').unwrap_or(("", &words));
    let last = match last {
        "one" => "first".to_owned(),
        "two" => "second".to_owned(),
        "three" => "third".to_owned(),
        "five" => "fifth".to_owned(),
        "eight" => "eighth".to_owned(),
        "nine" => "ninth".to_owned(),
        "twelve" => "twelfth".to_owned(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    if head.is_empty() {
        last
    } else {
        format!("{head} {last}")
    }
}

/// The median of `values` (`None` when empty).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[m - 1] + values[m]) / 2.0
    } else {
        values[m]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(kind: &str, owner: Option<&str>, patterns: &[&str]) -> EvalFact {
        EvalFact {
            fact: patterns.join(" "),
            kind: kind.into(),
            owner: owner.map(Into::into),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn meeting(facts: Vec<EvalFact>, decides_nothing: bool) -> Meeting {
        Meeting {
            name: "m".into(),
            kind: "test".into(),
            decides_nothing,
            speakers: vec![],
            subjects: vec!["a".into(), "b".into()],
            facts,
        }
    }

    const TRANSCRIPT: &str = "Ana: we ship version two on Monday the fourteenth. \
        Ben: I will send the budget report to finance by Wednesday, ten thousand dollars.";

    #[test]
    fn every_file_of_the_set_loads_and_the_split_is_the_documented_one() {
        let all = Meeting::all().unwrap();
        assert!(all.len() >= 7, "{} meetings", all.len());
        for m in &all {
            for f in &m.facts {
                assert_eq!(
                    f.kind == "owner+task",
                    f.owner.is_some(),
                    "{}: {f:?}",
                    m.name
                );
                f.carried_by("").unwrap();
            }
            assert_eq!(m.decides_nothing, m.facts.is_empty(), "{}", m.name);
        }
        let held: Vec<&str> = all
            .iter()
            .filter(|m| m.held_out())
            .map(|m| m.name.as_str())
            .collect();
        // The README's table, computed once when the set was committed.
        assert_eq!(
            held,
            [
                "casual-chat",
                "customer-call",
                "incident-review",
                "radio-net"
            ]
        );
    }

    #[test]
    fn recall_counts_the_recap_and_the_whole_separately_and_owners_by_their_step() {
        let m = meeting(
            vec![
                fact("date", None, &["monday|14th|fourteenth"]),
                fact("owner+task", Some("Ben"), &["budget report", "wednesday"]),
                fact("owner+task", Some("Ana"), &["tag|release candidate"]),
            ],
            false,
        );
        let p = Published {
            title: "Version two ships Monday".into(),
            long_summary: "# Quick recap\n\nThe team agreed the release.\n\n# Summary\n\n\
                           **Budget**\nBen sends the budget report.\n"
                .into(),
            next_steps: vec![
                (
                    "Send the budget report by Wednesday".into(),
                    Some("Ben".into()),
                ),
                ("Tag the release candidate".into(), Some("Chloe".into())),
            ],
            transcript: TRANSCRIPT.into(),
            ..Published::default()
        };
        let s = score(&m, &p).unwrap();
        assert_eq!(s.recap_fact_recall, Some(1.0 / 3.0));
        assert_eq!(s.summary_fact_recall, Some(1.0));
        // Ben's step names Ben; the tag step names Chloe, not Ana.
        assert_eq!(s.owner_accuracy, Some(0.5));
        assert_eq!(s.invented_decisions, 0);
    }

    #[test]
    fn a_meeting_that_decides_nothing_counts_every_listed_decision_and_step() {
        let m = meeting(vec![], true);
        let p = Published {
            decisions: vec!["Have a design for the meeting".into()],
            next_steps: vec![("Go hiking".into(), None)],
            ..Published::default()
        };
        let s = score(&m, &p).unwrap();
        assert_eq!(s.invented_decisions, 2);
        assert_eq!(s.summary_fact_recall, None);
        assert_eq!(s.owner_accuracy, None);
    }

    #[test]
    fn numbers_dates_and_names_absent_from_the_transcript_are_invented() {
        let published = "# Quick recap\n\nThe team ships on Monday the 14th with $10,000 \
            for marketing, and Ben reports by Wednesday.\nThey meet Carol on Friday, 3 times \
            in 2026.";
        assert_eq!(
            invented(published, TRANSCRIPT),
            ["2026", "3", "Carol", "friday"]
        );
        // Words the transcript has in another case, or numbers it has in words, are not.
        assert!(invented("Budget approved: ten thousand. Ship on monday", TRANSCRIPT).is_empty());
        assert!(invented("We ship in 2026.", "twenty twenty six it is").is_empty());
    }

    #[test]
    fn numbers_read_as_people_say_them() {
        assert_eq!(number_words(10_000), "ten thousand");
        assert_eq!(number_words(42), "forty two");
        assert_eq!(
            number_words(1_250_000),
            "one million two hundred fifty thousand"
        );
        assert_eq!(number_words(0), "zero");
        assert_eq!(ordinal_words(14), "fourteenth");
        assert_eq!(ordinal_words(21), "twenty first");
        assert_eq!(ordinal_words(30), "thirtieth");
    }

    #[test]
    fn paragraphs_that_repeat_each_other_overlap_and_distinct_ones_do_not() {
        let same = [
            "Ana and Ben decide on the release date for version two".to_owned(),
            "Ana and Ben decide on the release date and the budget".to_owned(),
        ];
        let distinct = [
            "The release ships on Monday after the settings fix".to_owned(),
            "Marketing gets ten thousand dollars for the launch".to_owned(),
        ];
        assert!(
            paragraph_overlap(&same) > 0.5,
            "{}",
            paragraph_overlap(&same)
        );
        assert_eq!(paragraph_overlap(&distinct), 0.0);
        assert_eq!(paragraph_overlap(&same[..1]), 0.0);
    }

    #[test]
    fn copied_share_counts_words_in_six_word_runs_of_the_transcript() {
        // "i will send the budget report to finance by wednesday" is 10 words of 13.
        let copied = "I will send the budget report to finance by Wednesday. Thanks, team.";
        let share = copied_share(copied, TRANSCRIPT);
        assert!((share - 10.0 / 12.0).abs() < 1e-9, "{share}");
        assert_eq!(
            copied_share("Ben sends finance the budget report", TRANSCRIPT),
            0.0
        );
    }

    #[test]
    fn the_summary_splits_into_recap_and_subject_paragraphs() {
        let p = Published {
            long_summary: "# Quick recap\n\nShip Monday.\n\n# Summary\n\n**Release**\nShip it.\n\n\
                           More on it.\n\n**Budget**\nTen thousand.\n"
                .into(),
            ..Published::default()
        };
        assert_eq!(p.recap(), "Ship Monday.");
        assert_eq!(
            p.subject_paragraphs(),
            ["Ship it. More on it.", "Ten thousand."]
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
