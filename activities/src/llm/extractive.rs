//! Extractive fallbacks for the embedded LLM: results computed from the transcript's own
//! words, with no model, used when the small model's answer fails its guard.
//!
//! - key phrases by RAKE (rapid automatic keyword extraction): candidate phrases are runs of
//!   content words between stop words and punctuation; a word scores degree/frequency, a
//!   phrase the sum of its words — titles and subjects come from the best phrases;
//! - summaries are the top-ranked sentences (content-word frequency, normalised by length),
//!   kept in their original order.
//!
//! There is no extractive list of decisions or next steps: a transcript sentence is no
//! decision (on real meetings it is ASR garble), see `steps::actions`.
//!
//! Nothing here invents a fact: every output is a span of the input.

use std::collections::HashMap;

const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "else",
    "even",
    "every",
    "everyone",
    "few",
    "first",
    "for",
    "from",
    "further",
    "get",
    "go",
    "going",
    "good",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "know",
    "let",
    "like",
    "look",
    "lot",
    "make",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "need",
    "next",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "ok",
    "okay",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "really",
    "right",
    "said",
    "same",
    "say",
    "see",
    "she",
    "should",
    "so",
    "some",
    "somebody",
    "something",
    "such",
    "sure",
    "take",
    "than",
    "thank",
    "thanks",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "thing",
    "things",
    "think",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "very",
    "want",
    "was",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "yeah",
    "yes",
    "you",
    "your",
    "yours",
    "finally",
    "then",
    "today",
    "week",
    "last",
    "new",
    "since",
    "mostly",
    "per",
    "yet",
];

fn is_stop(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

fn normalise(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// A candidate phrase with its RAKE score.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    /// The phrase as spoken (original case).
    pub text: String,
    /// RAKE score.
    pub score: f64,
}

/// Candidate phrases of `text`, best first, each at most `max_words` words, deduplicated
/// (case-insensitive).
pub fn key_phrases(text: &str, max_words: usize) -> Vec<Phrase> {
    // Candidates: runs of content words, broken at stop words and at punctuation.
    let mut candidates: Vec<Vec<&str>> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for token in text.split_whitespace() {
        let word = normalise(token);
        let breaks_after = token.ends_with(['.', ',', ';', ':', '?', '!', '…']);
        if word.is_empty()
            || is_stop(&word)
            || word.chars().all(|c| c.is_numeric())
            || word.len() < 3
        {
            if !current.is_empty() {
                candidates.push(std::mem::take(&mut current));
            }
        } else {
            current.push(token.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'));
            if current.len() == max_words {
                candidates.push(std::mem::take(&mut current));
            }
        }
        if breaks_after && !current.is_empty() {
            candidates.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        candidates.push(current);
    }
    let mut frequency: HashMap<String, f64> = HashMap::new();
    let mut degree: HashMap<String, f64> = HashMap::new();
    for phrase in &candidates {
        for w in phrase {
            let w = normalise(w);
            *frequency.entry(w.clone()).or_default() += 1.0;
            *degree.entry(w).or_default() += phrase.len() as f64;
        }
    }
    let mut phrases: Vec<Phrase> = Vec::new();
    for phrase in candidates {
        let key = phrase
            .iter()
            .map(|w| normalise(w))
            .collect::<Vec<_>>()
            .join(" ");
        let score: f64 = phrase
            .iter()
            .map(|w| {
                let w = normalise(w);
                degree[&w] / frequency[&w]
            })
            .sum::<f64>();
        // A repeated phrase gains half its score per repetition.
        match phrases.iter_mut().find(|p| p.text.to_lowercase() == key) {
            Some(p) => p.score += score / 2.0,
            None => phrases.push(Phrase {
                text: phrase.join(" "),
                score,
            }),
        }
    }
    phrases.sort_by(|a, b| b.score.total_cmp(&a.score));
    phrases
}

/// A title of at most `max_words` words from the best key phrases: the top phrase, joined
/// with the second when both fit, in title case.
pub fn title(text: &str, max_words: usize) -> String {
    let phrases = key_phrases(text, 4);
    let mut words: Vec<String> = Vec::new();
    for p in phrases.iter().take(2) {
        let n = p.text.split_whitespace().count();
        if words.len() + n + usize::from(!words.is_empty()) > max_words {
            break;
        }
        if !words.is_empty() {
            words.push("and".into());
        }
        words.extend(p.text.split_whitespace().map(str::to_owned));
    }
    if words.is_empty() {
        return "Meeting".into();
    }
    // Title case, except the joining "and".
    words
        .iter()
        .map(|w| if w == "and" { w.clone() } else { title_case(w) })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Up to `n` subjects: the best key phrases of two words or more (single words when there
/// are not enough), title-cased.
pub fn subjects(text: &str, n: usize) -> Vec<String> {
    let phrases = key_phrases(text, 4);
    let mut out: Vec<String> = phrases
        .iter()
        .filter(|p| p.text.split_whitespace().count() >= 2)
        .take(n)
        .map(|p| title_case(&p.text))
        .collect();
    for p in phrases.iter() {
        if out.len() >= n {
            break;
        }
        let t = title_case(&p.text);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Each word with its first letter upper-cased (the rest kept).
pub fn title_case(s: &str) -> String {
    s.split_whitespace()
        .map(capitalised)
        .collect::<Vec<String>>()
        .join(" ")
}

/// `word` with its first letter upper-cased.
pub fn capitalised(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Sentences of `text` (split after `.`, `?`, `!`, `…` and at line ends), trimmed.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        for token in line.split_whitespace() {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(token);
            if token.ends_with(['.', '?', '!', '…']) {
                out.push(std::mem::take(&mut current));
            }
        }
        if !current.trim().is_empty() {
            out.push(current);
        }
    }
    out
}

/// Strip a leading `Name: ` speaker label from a summary-input line.
fn without_speaker(sentence: &str) -> &str {
    match sentence.split_once(": ") {
        Some((name, rest)) if name.split_whitespace().count() <= 3 && !name.contains('.') => rest,
        _ => sentence,
    }
}

/// The `n` most representative sentences of `text`, in their original order, joined with
/// spaces (speaker labels removed).
pub fn summary(text: &str, n: usize) -> String {
    let all = sentences(text);
    let mut frequency: HashMap<String, f64> = HashMap::new();
    for s in &all {
        for w in without_speaker(s).split_whitespace() {
            let w = normalise(w);
            if !w.is_empty() && !is_stop(&w) {
                *frequency.entry(w).or_default() += 1.0;
            }
        }
    }
    let mut scored: Vec<(usize, f64)> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| without_speaker(s).split_whitespace().count() >= 5)
        .map(|(i, s)| {
            let words: Vec<String> = without_speaker(s)
                .split_whitespace()
                .map(normalise)
                .collect();
            let total: f64 = words.iter().filter_map(|w| frequency.get(w)).sum();
            (i, total / (words.len() as f64).sqrt())
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    in_order(&all, scored.iter().map(|(i, _)| *i), n)
}

/// Sentences of `text` mentioning `subject`'s words (case-insensitive), best first.
pub fn about(text: &str, subject: &str, n: usize) -> String {
    let keys: Vec<String> = subject
        .split_whitespace()
        .map(normalise)
        .filter(|w| !w.is_empty() && !is_stop(w))
        .collect();
    let all = sentences(text);
    let mut hits: Vec<(usize, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let lower = s.to_lowercase();
            let found = keys.iter().filter(|k| lower.contains(k.as_str())).count();
            (i, found)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    hits.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    in_order(&all, hits.iter().map(|(i, _)| *i), n)
}

/// The first `n` distinct sentences of `ranked`, put back in their original order and joined
/// (speaker labels removed).
fn in_order(all: &[String], ranked: impl Iterator<Item = usize>, n: usize) -> String {
    let mut chosen = distinct(all, ranked, n);
    chosen.sort_unstable();
    chosen
        .iter()
        .map(|&i| without_speaker(&all[i]).to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `n` of `ranked` whose sentences (without speaker labels, case-insensitive) differ.
fn distinct(all: &[String], ranked: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    ranked
        .filter(|&i| seen.insert(without_speaker(&all[i]).to_lowercase()))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Ana: The quarterly budget review is on Tuesday. The budget review needs \
        every hiring plan.\nBen: The hiring plan for the support team is late. I will send the \
        hiring plan by Friday.\nAna: We decided to freeze travel spending until the budget review.";

    #[test]
    fn titles_come_from_repeated_phrases() {
        let t = title(TEXT, 10);
        assert!(t.split_whitespace().count() <= 10, "{t}");
        assert!(
            t.contains("Budget Review") || t.contains("Hiring Plan"),
            "{t}"
        );
    }

    #[test]
    fn summaries_are_sentences_of_the_input() {
        let s = summary(TEXT, 2);
        for sentence in sentences(&s) {
            assert!(
                TEXT.contains(&sentence),
                "{sentence:?} is not from the input"
            );
        }
        assert!(!s.contains("Ana:"), "speaker labels are removed: {s}");
    }
}
