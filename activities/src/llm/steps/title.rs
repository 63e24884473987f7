//! The meeting's title (§4.8): `generate_title` asks for a title built from the topic
//! titles, cleans it, stores it unless the transcript already has one, and emits
//! `FINAL_TITLE`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_sdk::activities::ActivityContext;

use super::{Method, SummaryActivities, TranscriptInput};
use crate::error::ActivityFailure;
use crate::llm::guard::title_ok;
use crate::llm::{extractive, prompts};
use crate::usage::Usage;

/// Output of `generate_title`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TitleOutput {
    /// The generated title (cleaned).
    pub title: String,
    /// What produced it.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
}

/// The title cleaning of §4.8: first non-empty line; whitespace, quotes, markdown markers and
/// a leading `Title:` stripped; no trailing period; spaces collapsed.
pub fn clean_title(raw: &str) -> String {
    let line = raw
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut t = line
        .trim_start_matches(['#', '*', '-', '>', ' '])
        .to_owned();
    if t.len() >= 6 && t[..6].eq_ignore_ascii_case("title:") {
        t = t[6..].to_owned();
    }
    let t = t
        .trim()
        .trim_matches(['"', '\'', '“', '”', '‘', '’', '`', '*', '_'])
        .trim()
        .trim_end_matches('.')
        .trim();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SummaryActivities {
    pub(super) async fn title(
        &self,
        ctx: &ActivityContext,
        input: &TranscriptInput,
    ) -> Result<TitleOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let topics = self.topics(tid).await?;
        let titles: Vec<String> = topics.iter().map(|t| t.title.clone()).collect();
        let out = self
            .checkpointed(
                tid,
                SummaryActivities::generate_title.name(),
                &(input, &titles),
                || async {
                    if topics.is_empty() {
                        return Ok(TitleOutput {
                            title: String::new(),
                            method: Method::None,
                            usage: Usage::default(),
                        });
                    }
                    let list = titles
                        .iter()
                        .map(|t| format!("- {t}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let source = topics
                        .iter()
                        .map(|t| format!("{} {}", t.title, t.transcript))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let answered = self
                        .llm
                        .answer(
                            ctx,
                            prompts::TITLE,
                            &list,
                            0.5,
                            |raw| clean_title(&raw),
                            |title| title_ok(title, &source),
                            || extractive::title(&format!("{}. {source}", titles.join(". ")), 10),
                        )
                        .await?;
                    Ok(TitleOutput {
                        title: answered.value,
                        method: answered.method,
                        usage: answered.usage,
                    })
                },
            )
            .await?;
        if !out.title.is_empty() {
            let stored = self.events.db().set_title_if_empty(tid, &out.title).await?;
            self.events
                .publish(
                    SummaryActivities::generate_title.name(),
                    tid,
                    crate::events::Event::FinalTitle,
                    json!({"title": stored}),
                )
                .await?;
        }
        Ok(out)
    }
}

/// `generate_title`, declared (`crate::step`): a title is one line.
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Event, Step};
    catalog.declare(
        SummaryActivities::generate_title,
        Step::costing(Cost::Llm {
            embedded_max_tokens: 24,
        })
        .emitting(&[Event::FinalTitle]),
    )
}

impl super::HasUsage for TitleOutput {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cleaned() {
        assert_eq!(
            clean_title("\n  **Title: \"Q3 Budget  Review.\"**\nmore"),
            "Q3 Budget Review"
        );
        assert_eq!(
            clean_title("# Hiring plan for support"),
            "Hiring plan for support"
        );
    }
}
