//! The recap and the long summary (§4.11): `generate_recap` writes one high-level paragraph
//! from the subjects' paragraphs, builds the long summary (recap, then one section per
//! subject), stores both on the transcript and emits `FINAL_SHORT_SUMMARY` and
//! `FINAL_LONG_SUMMARY`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_sdk::activities::ActivityContext;

use super::{Method, SummaryActivities};
use crate::error::ActivityFailure;
use crate::llm::guard::{complete_sentences, recap_ok};
use crate::llm::{extractive, prompts};
use crate::usage::Usage;

/// Input of `generate_recap`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecapInput {
    /// The transcript.
    pub transcript_id: String,
    /// The subjects, in order.
    pub subjects: Vec<String>,
    /// One paragraph per subject (matched by `subject_index`).
    pub summaries: Vec<SubjectParagraph>,
}

/// A subject's paragraph, as `generate_recap` needs it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectParagraph {
    /// Position of the subject.
    pub subject_index: usize,
    /// The paragraph.
    pub paragraph: String,
}

/// Output of `generate_recap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecapOutput {
    /// Characters in the recap (the text is on the transcript).
    pub short_summary_chars: usize,
    /// Characters in the long summary.
    pub long_summary_chars: usize,
    /// What produced the recap.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// The recap's checkpointed part.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub(super) struct RecapResult {
    recap: String,
    method: Method,
    pub(super) usage: Usage,
}

/// The long summary of §4.11.
pub fn long_summary(recap: &str, subjects: &[String], paragraphs: &[String]) -> String {
    let mut out = format!("# Quick recap\n\n{recap}\n\n# Summary\n\n");
    for (s, p) in subjects.iter().zip(paragraphs) {
        out.push_str(&format!("**{s}**\n{p}\n\n"));
    }
    out
}

/// The recap as asked for: its first paragraph only, at most four complete sentences, none
/// that only lists the participants ([`complete_sentences`]; the embedded model was seen
/// adding a second paragraph that copies a subject's paragraph, label and all), and without
/// the opening "During the meeting" (§4.11).
fn tidy(recap: &str) -> String {
    let first = recap
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty())
        .unwrap_or("");
    strip_opening(&complete_sentences(first, 4))
}

/// A recap must not open with "During the meeting" (§4.11).
fn strip_opening(recap: &str) -> String {
    let lower = recap.to_lowercase();
    for opening in ["during the meeting,", "during the meeting"] {
        if lower.starts_with(opening) {
            return extractive::capitalised(recap[opening.len()..].trim_start());
        }
    }
    recap.to_owned()
}

impl SummaryActivities {
    pub(super) async fn recap(
        &self,
        ctx: &ActivityContext,
        input: &RecapInput,
    ) -> Result<RecapOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let paragraphs = (0..input.subjects.len())
            .map(|i| {
                input
                    .summaries
                    .iter()
                    .find(|s| s.subject_index == i)
                    .map(|p| p.paragraph.clone())
                    .ok_or_else(|| {
                        ActivityFailure::InvalidInput(format!(
                            "generate_recap: no paragraph for subject {i}"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let blocks = input
            .subjects
            .iter()
            .zip(&paragraphs)
            .map(|(s, p)| format!("{s}: {p}"))
            .collect::<Vec<_>>()
            .join("\n\n");
        let participants = self.participants(tid).await?;
        let out = self
            .checkpointed(
                tid,
                SummaryActivities::generate_recap.name(),
                input,
                || async {
                    let answered = self
                        .llm
                        .answer(
                            ctx,
                            &prompts::recap(&participants),
                            &blocks,
                            0.4,
                            |r| tidy(r.trim()),
                            |r| recap_ok(r, &blocks),
                            || extractive::summary(&paragraphs.join("\n"), 2),
                        )
                        .await?;
                    Ok(RecapResult {
                        recap: answered.value,
                        method: answered.method,
                        usage: answered.usage,
                    })
                },
            )
            .await?;
        let long = long_summary(&out.recap, &input.subjects, &paragraphs);
        self.events
            .db()
            .set_summaries(tid, &out.recap, &long)
            .await?;
        self.events
            .publish(
                SummaryActivities::generate_recap.name(),
                tid,
                crate::events::Event::FinalShortSummary,
                json!({"short_summary": out.recap}),
            )
            .await?;
        self.events
            .publish(
                SummaryActivities::generate_recap.name(),
                tid,
                crate::events::Event::FinalLongSummary,
                json!({"long_summary": long}),
            )
            .await?;
        Ok(RecapOutput {
            short_summary_chars: out.recap.chars().count(),
            long_summary_chars: long.chars().count(),
            method: out.method,
            usage: out.usage,
        })
    }
}

/// `generate_recap`, declared (`crate::step`): one paragraph.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Event, Step};
    catalog.declare(
        SummaryActivities::generate_recap,
        Step::costing(Cost::Llm {
            embedded_max_tokens: 160,
        })
        .emitting(&[Event::FinalShortSummary, Event::FinalLongSummary]),
    )
}

impl super::HasUsage for RecapResult {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_summary_has_two_sections() {
        let long = long_summary(
            "All good.",
            &["Budget".into(), "Hiring".into()],
            &["Cut 5%.".into(), "Two roles.".into()],
        );
        assert_eq!(
            long,
            "# Quick recap\n\nAll good.\n\n# Summary\n\n**Budget**\nCut 5%.\n\n**Hiring**\nTwo roles.\n\n"
        );
    }

    #[test]
    fn a_recap_never_opens_with_during_the_meeting() {
        assert_eq!(
            strip_opening("During the meeting, the team agreed."),
            "The team agreed."
        );
        assert_eq!(strip_opening("The team agreed."), "The team agreed.");
        assert_eq!(
            tidy("The team agreed. The participants are Ana, Ben."),
            "The team agreed."
        );
        assert_eq!(
            tidy("The participants are Ana, Ben. Ana ships on Monday."),
            "Ana ships on Monday."
        );
        assert_eq!(
            tidy("Ana ships on Monday.\n\nHiring: Chloe hires two engineers."),
            "Ana ships on Monday."
        );
    }
}
