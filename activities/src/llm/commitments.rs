//! Next steps as people took them on, in their own words: the embedded model's source of
//! `identify_action_items`' next steps.
//!
//! Measured on the demo meeting, the embedded 0.5B model lists tasks but gives them the wrong
//! owners (Ben for the fix Chloe said she would merge, Ana for the report Ben said he would
//! send) on every prompt tried, and an attendee trusts a next step only if its owner is right.
//! Who owns a commitment is in the transcript's form, not its meaning:
//!
//! - `Ben: … I will send the report by Wednesday.` — the speaker ("I will", "I'll");
//! - `Ana: Chloe, can you write the job descriptions?` — the person asked, by name
//!   ("Name, can you / could you / please …");
//! - `Ana: … Ben will send the budget report.` — the participant named before "will".
//!
//! The task is the words after the cue, the deadline the first time phrase in it ("by
//! Wednesday", "this week", "next Tuesday"). Like [`super::extractive`], nothing is invented:
//! every task is a span of the transcript.

use regex::Regex;
use std::sync::LazyLock;

/// A task someone took on.
#[derive(Debug, Clone, PartialEq)]
pub struct Commitment {
    /// What is to be done, from the transcript ("Send the budget report to finance by
    /// Wednesday").
    pub task: String,
    /// Who does it: a participant's name.
    pub owner: String,
    /// The time phrase said with it, if any ("by Wednesday").
    pub deadline: Option<String>,
}

/// Tasks shorter than this many words carry no meaning on their own ("own it", "do that").
const MIN_TASK_WORDS: usize = 3;

static DEADLINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:(?:by|on|before|until|next|this)\s+(?:the\s+)?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|month|quarter|year|end of (?:the )?(?:day|week|month))|today|tomorrow|tonight)\b",
    )
    .expect("a valid regex")
});

/// The commitments of `text` (`Name: words` lines, as the summary input has them) whose
/// owner is one of `participants`, in the order they were said, each task once.
pub fn commitments(text: &str, participants: &[&str]) -> Vec<Commitment> {
    let mut out: Vec<Commitment> = Vec::new();
    for line in text.lines() {
        let Some((speaker, said)) = line.split_once(": ") else {
            continue;
        };
        let Some(speaker) = participants.iter().find(|p| **p == speaker.trim()) else {
            continue;
        };
        for sentence in super::extractive::sentences(said) {
            if let Some(c) = in_sentence(&sentence, speaker, participants)
                && !out.iter().any(|o| o.task.eq_ignore_ascii_case(&c.task))
            {
                out.push(c);
            }
        }
    }
    out
}

/// The commitment `sentence`, said by `speaker`, makes, if any.
fn in_sentence(sentence: &str, speaker: &str, participants: &[&str]) -> Option<Commitment> {
    let lower = sentence.to_lowercase();
    let after = |i: usize| sentence[i..].trim();
    let found = ["i will ", "i'll "]
        .iter()
        .find_map(|cue| word_at(&lower, cue).map(|i| (speaker, after(i + cue.len()))))
        .or_else(|| {
            participants.iter().find_map(|name| {
                let asked = [", can you ", ", could you ", ", please "]
                    .iter()
                    .find_map(|cue| {
                        let cue = format!("{}{cue}", name.to_lowercase());
                        lower.starts_with(&cue).then(|| (*name, after(cue.len())))
                    });
                asked.or_else(|| {
                    let cue = format!("{} will ", name.to_lowercase());
                    word_at(&lower, &cue).map(|i| (*name, after(i + cue.len())))
                })
            })
        })?;
    let (owner, task) = found;
    let task = task.trim_end_matches(['.', '?', '!', ',']).trim();
    if task.split_whitespace().count() < MIN_TASK_WORDS {
        return None;
    }
    Some(Commitment {
        task: super::extractive::capitalised(task),
        owner: owner.to_owned(),
        deadline: DEADLINE.find(task).map(|m| m.as_str().to_owned()),
    })
}

/// Where `cue` starts in `lower` at a word boundary.
fn word_at(lower: &str, cue: &str) -> Option<usize> {
    lower.match_indices(cue).map(|(i, _)| i).find(|&i| {
        i == 0
            || lower[..i]
                .chars()
                .next_back()
                .is_some_and(|c| !c.is_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEOPLE: &[&str] = &["Ana", "Ben", "Chloe"];

    #[test]
    fn the_speaker_owns_what_they_say_they_will_do() {
        let text = "Ben: Agreed. I will send the budget report to finance by Wednesday.\n\
                    Chloe: Yes, I'll write both job descriptions this week.";
        assert_eq!(
            commitments(text, PEOPLE),
            vec![
                Commitment {
                    task: "Send the budget report to finance by Wednesday".into(),
                    owner: "Ben".into(),
                    deadline: Some("by Wednesday".into()),
                },
                Commitment {
                    task: "Write both job descriptions this week".into(),
                    owner: "Chloe".into(),
                    deadline: Some("this week".into()),
                },
            ]
        );
    }

    #[test]
    fn a_request_by_name_belongs_to_the_person_asked() {
        let text = "Ana: Yes, both positions are approved. Chloe, can you write the job descriptions?\n\
                    Ana: Let us approve it, and Ben will send the detailed report.";
        let found = commitments(text, PEOPLE);
        assert_eq!(found[0].owner, "Chloe");
        assert_eq!(found[0].task, "Write the job descriptions");
        assert_eq!(found[0].deadline, None);
        assert_eq!(found[1].owner, "Ben");
        assert_eq!(found[1].task, "Send the detailed report");
    }

    #[test]
    fn no_owner_or_no_task_is_no_commitment() {
        let text = "Ana: Chloe will own it. We will see.\nDana: I will do the slides tomorrow.\n\
                    Ben: The team will ship it. Say hi will you, to the whole team.";
        // "own it" is too short to mean anything; Dana is not a participant; "The team" is
        // nobody in particular; "hi will" is not "I will".
        assert_eq!(commitments(text, PEOPLE), vec![]);
    }
}
