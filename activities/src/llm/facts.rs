//! The invented-facts filter on what the summary steps publish: every number, date and
//! capitalised name in a decision or next step must occur in the transcript.
//!
//! A *fact* of a text is
//! - a number: a token with a digit, compared without its commas, currency signs and
//!   ordinal suffix ("$10,000" and "10000" match, "14th" and "14" match), or a run of number
//!   words ("ten thousand" is 10000), so either spelling in the transcript covers the other;
//! - a date word: a weekday, in any case (a month is capitalised, so it is a name: "may"
//!   is a verb too);
//! - a name: a capitalised word that does not open a sentence (the first word of "Send the
//!   report" is capitalised because it opens the sentence, not because it names someone).
//!
//! Comparison is case-insensitive. [`invented`] lists the facts of a text that the
//! transcript does not contain; the action-items step drops a decision or next step whose
//! text has one and clears an owner or deadline that is one.

use std::collections::HashSet;

/// The weekdays, lowercase (the evaluation set's scorer reads dates with the same words).
pub const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The English number words below twenty, by value (the evaluation set's scorer spells
/// numbers with the same words).
pub const UNITS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
/// The English tens, by value / 10 (`""` below twenty).
pub const TENS: &[&str] = &[
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// A word without surrounding punctuation or a possessive `'s`.
fn bare(token: &str) -> &str {
    let t = token.trim_matches(|c: char| !c.is_alphanumeric());
    t.strip_suffix("'s")
        .or_else(|| t.strip_suffix("’s"))
        .unwrap_or(t)
}

/// `token` as a number ("$10,000." is "10000", "14th" is "14"), if it has a digit.
fn number(token: &str) -> Option<String> {
    if !token.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let t = bare(token).to_lowercase();
    let t = ["st", "nd", "rd", "th", "k", "%"]
        .iter()
        .find_map(|s| {
            t.strip_suffix(s)
                .filter(|r| r.ends_with(|c: char| c.is_ascii_digit()))
        })
        .map(|r| {
            if t.ends_with('k') {
                format!("{r}000")
            } else {
                r.to_owned()
            }
        })
        .unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let digits = digits.trim_end_matches('.').to_owned();
    (!digits.is_empty()).then_some(digits)
}

/// The value of a number word ("seven", "forty"), and whether it is a scale ("hundred").
fn number_word(word: &str) -> Option<(u64, bool)> {
    if let Some(i) = UNITS.iter().position(|u| *u == word) {
        return Some((i as u64, false));
    }
    if let Some(i) = TENS.iter().position(|t| !t.is_empty() && *t == word) {
        return Some((10 * i as u64, false));
    }
    match word {
        "hundred" => Some((100, true)),
        "thousand" => Some((1_000, true)),
        "million" => Some((1_000_000, true)),
        _ => None,
    }
}

/// The values of the runs of number words in `words` ("ten thousand" is 10000; "one" alone is
/// left out: "one of them" is seldom a figure).
fn spelled_numbers(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let (mut total, mut current, mut any) = (0u64, 0u64, false);
    let mut flush = |total: &mut u64, current: &mut u64, any: &mut bool| {
        let value = *total + *current;
        if *any && value != 1 {
            out.push(value.to_string());
        }
        (*total, *current, *any) = (0, 0, false);
    };
    for w in words {
        let w = w.trim_end_matches(|c: char| !c.is_alphanumeric());
        let parts: Vec<&str> = w.split('-').collect();
        let values: Option<Vec<(u64, bool)>> = parts.iter().map(|p| number_word(p)).collect();
        match values {
            Some(values) if w != "and" => {
                for (v, scale) in values {
                    if !scale {
                        current += v;
                    } else if v == 100 {
                        current = current.max(1) * 100;
                    } else {
                        total += current.max(1) * v;
                        current = 0;
                    }
                    any = true;
                }
            }
            _ if w == "and" && any => {}
            _ => flush(&mut total, &mut current, &mut any),
        }
    }
    flush(&mut total, &mut current, &mut any);
    out
}

/// The facts of `text`, lower-cased (numbers normalised).
fn facts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut opens_sentence = true;
    for token in text.split_whitespace() {
        let word = bare(token);
        let lower = word.to_lowercase();
        if let Some(n) = number(token) {
            out.push(n);
        } else if WEEKDAYS.contains(&lower.as_str())
            || (!opens_sentence
                && word != "I"
                && word.chars().next().is_some_and(char::is_uppercase))
        {
            out.push(lower);
        }
        opens_sentence = token.ends_with(['.', '?', '!', '…', ':']);
    }
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    out.extend(spelled_numbers(&words));
    out
}

/// What a transcript contains, for [`invented`]: its words and its numbers, lower-cased.
pub struct Transcript {
    words: HashSet<String>,
}

impl Transcript {
    /// The words and numbers of `text` (both spellings of each number).
    pub fn new(text: &str) -> Transcript {
        let mut words: HashSet<String> = text
            .split_whitespace()
            .flat_map(|t| {
                let b = bare(t).to_lowercase();
                [number(t), Some(b)]
            })
            .flatten()
            .collect();
        let lower: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        words.extend(spelled_numbers(&lower));
        Transcript { words }
    }

    /// The facts of `text` that this transcript does not contain.
    pub fn invented(&self, text: &str) -> Vec<String> {
        facts(text)
            .into_iter()
            .filter(|f| !self.words.contains(f))
            .collect()
    }

    /// Whether `text` has a fact this transcript does not contain.
    pub fn invents(&self, text: &str) -> bool {
        !self.invented(text).is_empty()
    }

    /// Whether `name` (an owner, a deadline) has a word this transcript does not contain;
    /// unlike [`Transcript::invents`], its first word counts too.
    pub fn invents_field(&self, field: &str) -> bool {
        self.invents(&format!("- {field}"))
    }
}

/// The facts of `text` that `transcript` does not contain.
pub fn invented(text: &str, transcript: &str) -> Vec<String> {
    Transcript::new(transcript).invented(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEETING: &str = "Ana Lima: We decided the marketing budget is ten thousand dollars.\n\
        Ben: I will send the budget report to finance by Wednesday. Version 2 ships on the 14th.";

    #[test]
    fn numbers_match_in_either_spelling() {
        assert!(invented("The budget is $10,000.", MEETING).is_empty());
        assert!(invented("The budget is 10000 dollars.", MEETING).is_empty());
        assert!(invented("Version 2 ships on March 14.", MEETING) == vec!["march"]);
        assert_eq!(invented("The budget is $12,000.", MEETING), vec!["12000"]);
        assert_eq!(invented("Hire three engineers.", MEETING), vec!["3"]);
    }

    #[test]
    fn names_and_dates_must_be_said() {
        assert!(invented("Send the report to Ana by Wednesday.", MEETING).is_empty());
        assert!(invented("Ben sends the report to finance.", MEETING).is_empty());
        assert_eq!(
            invented("Send the report to Chloe by Friday.", MEETING),
            vec!["chloe", "friday"]
        );
        // A capitalised word opening a sentence is not a name; "Send" needs no checking.
        assert!(invented("Freeze spending. Ship it.", MEETING).is_empty());
        let t = Transcript::new(MEETING);
        assert!(t.invents_field("Chloe"));
        assert!(!t.invents_field("Ben"));
        assert!(!t.invents_field("by Wednesday"));
        assert!(t.invents_field("next Friday"));
    }
}
