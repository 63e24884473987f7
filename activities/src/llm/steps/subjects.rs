//! Subjects and their summaries (§4.9, §4.10): `extract_subjects` writes the summary input
//! (the topics' words as speaker lines, then the participants) and lists the main subjects;
//! `generate_detailed_summary` writes one paragraph per subject.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::ActivityContext;

use super::{Method, SummaryActivities, TranscriptInput, digest};
use crate::error::ActivityFailure;
use crate::llm::guard::{complete_sentences, grounded, summary_ok};
use crate::llm::{extractive, prompts};
use crate::storage::keys;
use crate::transcript::{Participant, Topic, in_utterance_order};
use crate::usage::Usage;

/// Subjects kept (§4.9).
const MAX_SUBJECTS: usize = 6;

/// Output of `extract_subjects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectsOutput {
    /// `{transcript_id}/pipeline/summary_input.md`.
    pub summary_input_key: String,
    /// At most six subjects.
    pub subjects: Vec<String>,
    /// What produced them.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// Input of `generate_detailed_summary`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectInput {
    /// The transcript.
    pub transcript_id: String,
    /// The summary input.
    pub summary_input_key: String,
    /// Position of the subject.
    pub subject_index: usize,
    /// The subject.
    pub subject: String,
}

/// Output of `generate_detailed_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectSummary {
    /// Position of the subject.
    pub subject_index: usize,
    /// One paragraph.
    pub paragraph: String,
    /// What produced it.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SubjectsAnswer {
    subjects: Vec<String>,
}

/// The summary input of §4.9: per topic, segments split at speaker changes or after a
/// sentence end once over 120 characters, as `{name}: {text}` lines; then the participants.
/// A reflow decision: the topic's words are read in utterance order
/// ([`in_utterance_order`], as `transcript.txt` shows them), so that a word said over another
/// speaker does not cut a sentence in two lines the model must stitch back.
pub fn summary_input(topics: &[Topic], participants: &[Participant]) -> String {
    let name = |speaker: i64| {
        participants
            .iter()
            .find(|p| p.speaker == speaker)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("Speaker {speaker}"))
    };
    let mut lines = Vec::new();
    for topic in topics {
        let mut current: Option<(i64, String)> = None;
        for w in in_utterance_order(&topic.words) {
            let text = w.text.trim();
            if text.is_empty() {
                continue;
            }
            match &mut current {
                Some((s, seg)) if *s == w.speaker => {
                    seg.push(' ');
                    seg.push_str(text);
                }
                _ => {
                    if let Some((s, seg)) = current.take() {
                        lines.push(format!("{}: {seg}", name(s)));
                    }
                    current = Some((w.speaker, text.to_owned()));
                }
            }
            if let Some((s, seg)) = &current
                && seg.len() > 120
                && text.ends_with(['.', ';', ':', '?', '!', '…'])
            {
                lines.push(format!("{}: {seg}", name(*s)));
                current = None;
            }
        }
        if let Some((s, seg)) = current {
            lines.push(format!("{}: {seg}", name(s)));
        }
    }
    let mut sorted: Vec<&Participant> = participants.iter().collect();
    sorted.sort_by_key(|p| p.speaker);
    let mut out = lines.join("\n");
    out.push_str("\n\n# Participants\n\n");
    for p in sorted {
        out.push_str(&format!("- {}\n", p.name));
    }
    out
}

impl SummaryActivities {
    pub(super) async fn subjects(
        &self,
        ctx: &ActivityContext,
        input: &TranscriptInput,
    ) -> Result<SubjectsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let topics = self.topics(tid).await?;
        let participants = self.participants(tid).await?;
        let text = summary_input(&topics, &participants);
        let key = keys::summary_input(tid);
        self.storage.put(&key, Bytes::from(text.clone())).await?;
        self.checkpointed(
            tid,
            SummaryActivities::extract_subjects.name(),
            &(input, digest(&text)),
            || async {
                let validate = |a: &SubjectsAnswer| {
                    if a.subjects.iter().any(|s| s.trim().is_empty()) {
                        return Err("a subject is empty".to_owned());
                    }
                    Ok(())
                };
                let answered = self
                    .llm
                    .answer_json(
                        ctx,
                        &prompts::subjects(&participants),
                        prompts::SUBJECTS_SCHEMA,
                        &text,
                        0.4,
                        validate,
                        |a: SubjectsAnswer| {
                            a.subjects
                                .iter()
                                .map(|s| super::clean_title(s))
                                .take(MAX_SUBJECTS)
                                .collect::<Vec<_>>()
                        },
                        |subjects| {
                            !subjects.is_empty()
                                && subjects.iter().all(|s| {
                                    s.split_whitespace().count() <= 8 && grounded(s, &text) >= 0.5
                                })
                        },
                        || extractive::subjects(&text, 4),
                    )
                    .await?;
                Ok(SubjectsOutput {
                    summary_input_key: key.clone(),
                    subjects: answered.value,
                    method: answered.method,
                    usage: answered.usage,
                })
            },
        )
        .await
    }

    pub(super) async fn detailed(
        &self,
        ctx: &ActivityContext,
        input: &SubjectInput,
    ) -> Result<SubjectSummary, ActivityFailure> {
        let tid = &input.transcript_id;
        let (text, digest) = self.text(&input.summary_input_key).await?;
        let participants = self.participants(tid).await?;
        self.checkpointed(
            tid,
            SummaryActivities::generate_detailed_summary.name(),
            &(input, &digest),
            || async {
                // A hosted model analyses the subject, then condenses the analysis (§4.10);
                // the embedded one writes the paragraph from the transcript in one call
                // (generation is the slow part on a CPU, and the analysis is never shown).
                let (instruction, input_text, mut usage) = if self.llm.is_embedded() {
                    let paragraph = prompts::subject_paragraph(&input.subject, &participants);
                    (paragraph, text.clone(), Usage::default())
                } else {
                    let analyse = prompts::analyse_subject(&input.subject, &participants);
                    let (detail, usage) = self.llm.text(ctx, &analyse, &text, 0.4).await?;
                    let condense = prompts::condense_subject(&input.subject, &participants);
                    (condense, detail, usage)
                };
                let answered = self
                    .llm
                    .answer(
                        ctx,
                        &instruction,
                        &input_text,
                        0.4,
                        // The embedded model was asked for two or three sentences and writes
                        // on until its token bound.
                        |p| {
                            if self.llm.is_embedded() {
                                complete_sentences(&p, 3)
                            } else {
                                p.trim().to_owned()
                            }
                        },
                        |p| summary_ok(p, &text),
                        || {
                            let extracted = extractive::about(&text, &input.subject, 3);
                            if extracted.is_empty() {
                                extractive::summary(&text, 2)
                            } else {
                                extracted
                            }
                        },
                    )
                    .await?;
                usage.add(&answered.usage);
                Ok(SubjectSummary {
                    subject_index: input.subject_index,
                    paragraph: answered.value,
                    method: answered.method,
                    usage,
                })
            },
        )
        .await
    }
}

/// The subject steps, declared (`crate::step`): a list of a few subjects, then two or three
/// sentences per subject.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Step};
    catalog
        .declare(
            SummaryActivities::extract_subjects,
            Step::costing(Cost::Llm {
                embedded_max_tokens: 64,
            }),
        )
        .declare(
            SummaryActivities::generate_detailed_summary,
            Step::costing(Cost::Llm {
                embedded_max_tokens: 120,
            }),
        )
}

impl super::HasUsage for SubjectsOutput {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

impl super::HasUsage for SubjectSummary {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Word;

    fn word(text: &str, start: f64, speaker: i64) -> Word {
        Word {
            text: format!(" {text}"),
            start,
            end: start + 0.3,
            speaker,
        }
    }

    fn topic(words: Vec<Word>) -> Topic {
        Topic {
            id: "t".into(),
            title: "x".into(),
            summary: "y".into(),
            timestamp: 0.0,
            duration: None,
            transcript: String::new(),
            words,
        }
    }

    fn person(speaker: i64, name: &str) -> Participant {
        Participant {
            id: format!("p{speaker}"),
            speaker,
            name: name.into(),
            user_id: None,
            email: None,
        }
    }

    #[test]
    fn the_summary_input_names_speakers_and_lists_participants() {
        let topic = topic(vec![
            word("Hello", 0.0, 0),
            word("there.", 0.5, 0),
            word("Hi", 1.0, 1),
        ]);
        let people = vec![person(1, "Ben")];
        let text = summary_input(&[topic], &people);
        assert_eq!(
            text,
            "Speaker 0: Hello there.\nBen: Hi\n\n# Participants\n\n- Ben\n"
        );
    }

    #[test]
    fn a_word_said_over_another_speaker_does_not_cut_a_sentence() {
        // Ana's "Great." falls in the middle of Ben's sentence (as the demo's ASR heard it).
        let ben = [
            "No",
            "objection,",
            "Monday",
            "works,",
            "as",
            "long",
            "as",
            "it",
            "is",
            "merged.",
        ];
        let mut words: Vec<Word> = ben
            .iter()
            .enumerate()
            .map(|(i, w)| word(w, i as f64 * 0.35, 1))
            .collect();
        words.push(word("Great.", 1.5, 0));
        words.sort_by(|a, b| a.start.total_cmp(&b.start));
        let people = vec![person(0, "Ana"), person(1, "Ben")];
        let text = summary_input(&[topic(words)], &people);
        assert!(
            text.starts_with(
                "Ben: No objection, Monday works, as long as it is merged.\nAna: Great.\n"
            ),
            "{text}"
        );
    }
}
