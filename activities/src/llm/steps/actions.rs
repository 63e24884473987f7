//! Decisions and next steps (§4.12): `identify_action_items` lists them from the summary
//! input, maps names to participant ids, stores them on the transcript and emits
//! `ACTION_ITEMS`. On the embedded model the LLM lists the decisions and the next steps are
//! the commitments people made in their own words ([`commitments`]), owners exact. When the
//! model's answer is refused, nothing of the transcript is published as it was said
//! ([`fallback_items`]), and nothing published names a number, date or name the transcript
//! does not ([`without_invented_facts`]).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use temporalio_sdk::activities::ActivityContext;

use super::{Method, SummaryActivities};
use crate::error::ActivityFailure;
use crate::llm::commitments::commitments;
use crate::llm::guard::{echoes, grounded};
use crate::llm::{facts, prompts};
use crate::transcript::Participant;
use crate::usage::Usage;

/// Input of `identify_action_items`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionItemsInput {
    /// The transcript.
    pub transcript_id: String,
    /// The summary input.
    pub summary_input_key: String,
}

/// Output of `identify_action_items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionItemsOutput {
    /// Decisions found.
    pub decisions: usize,
    /// Next steps found.
    pub next_steps: usize,
    /// What produced them.
    pub method: Method,
    /// What it cost.
    pub usage: Usage,
    /// The items themselves (small; saved on the transcript as well).
    pub action_items: Value,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ActionAnswer {
    #[serde(default)]
    decisions: Vec<Value>,
    #[serde(default)]
    next_steps: Vec<Value>,
}

/// Decisions and next steps as lists of JSON objects.
type Items = (Vec<Value>, Vec<Value>);

/// A participant id for `name`: case-insensitive exact match, else null (§4.12).
fn participant_id(participants: &[Participant], name: Option<&str>) -> Value {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Value::Null;
    };
    participants
        .iter()
        .find(|p| p.name.trim().eq_ignore_ascii_case(name))
        .map_or(Value::Null, |p| json!(p.id))
}

/// Words in a row that make a next step a copy of the transcript rather than a task.
const COPIED_RUN: usize = 6;

/// The fallback when the model's answer is refused or unparseable. It never publishes
/// transcript sentences (on real meetings they are ASR garble: "Good. Victorone's Dix. I re
/// alert."): no decisions ("none recorded" is honest), and as next steps only the commitments
/// people made ([`commitments`]) whose task does not copy a run of [`COPIED_RUN`] words of
/// the transcript.
fn fallback_items(text: &str, participants: &[Participant]) -> Items {
    let names: Vec<&str> = participants.iter().map(|p| p.name.as_str()).collect();
    let next_steps = commitments(text, &names)
        .into_iter()
        .filter(|c| !echoes(&c.task, text, COPIED_RUN))
        .map(|c| json!({"task": c.task, "assigned_to": c.owner, "deadline": c.deadline, "context": null}))
        .collect();
    (Vec::new(), next_steps)
}

/// The items without invented facts ([`facts`]): a decision or next step whose text has a
/// number, date or name the transcript does not is dropped; such an owner, decider, deadline
/// or rationale is cleared.
fn without_invented_facts(items: Items, text: &str) -> Items {
    let transcript = facts::Transcript::new(text);
    let keep = |item: &Value, field: &str| !transcript.invents(item[field].as_str().unwrap_or(""));
    // Names and deadlines are checked word by word; prose (a rationale, a context) as a text.
    let clear = |item: &mut Value, names: &[&str], prose: &str| {
        for field in names {
            if item[*field]
                .as_str()
                .is_some_and(|v| transcript.invents_field(v))
            {
                item[*field] = Value::Null;
            }
        }
        if item[prose].as_str().is_some_and(|v| transcript.invents(v)) {
            item[prose] = Value::Null;
        }
    };
    let (decisions, next_steps) = items;
    let decisions = decisions
        .into_iter()
        .filter(|d| keep(d, "decision"))
        .map(|mut d| {
            clear(&mut d, &["decided_by"], "rationale");
            d
        })
        .collect();
    let next_steps = next_steps
        .into_iter()
        .filter(|t| keep(t, "task"))
        .map(|mut t| {
            clear(&mut t, &["assigned_to", "deadline"], "context");
            t
        })
        .collect();
    (decisions, next_steps)
}

/// The embedded model's items: its decisions, each `decided_by` kept only when that person's
/// own lines carry the decision (the small model hands out names in turn), and as next steps
/// the commitments people made ([`commitments`]).
fn embedded_items(decisions: Vec<Value>, text: &str, participants: &[Participant]) -> Items {
    let said_by = |name: &str| {
        let label = format!("{name}: ");
        text.lines()
            .filter_map(|l| l.strip_prefix(&label))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let decisions = decisions
        .into_iter()
        .map(|mut d| {
            let decision = d["decision"].as_str().unwrap_or("").to_owned();
            if let Some(by) = d["decided_by"].as_str()
                && grounded(&decision, &said_by(by)) < 0.6
            {
                d["decided_by"] = Value::Null;
            }
            d
        })
        .collect();
    let names: Vec<&str> = participants.iter().map(|p| p.name.as_str()).collect();
    let next_steps = commitments(text, &names)
        .into_iter()
        .map(|c| json!({"task": c.task, "assigned_to": c.owner, "deadline": c.deadline, "context": null}))
        .collect();
    (decisions, next_steps)
}

/// The items in the shape of §4.12, names mapped to participant ids.
fn with_participant_ids(items: Items, participants: &[Participant]) -> Value {
    let (decisions, next_steps) = items;
    let decisions: Vec<Value> = decisions
        .into_iter()
        .map(|d| {
            let by = d["decided_by"].as_str().map(str::to_owned);
            json!({
                "decision": d["decision"],
                "rationale": d.get("rationale").cloned().unwrap_or(Value::Null),
                "decided_by": by,
                "decided_by_participant_id": participant_id(participants, by.as_deref()),
            })
        })
        .collect();
    let next_steps: Vec<Value> = next_steps
        .into_iter()
        .map(|t| {
            let to = t["assigned_to"].as_str().map(str::to_owned);
            json!({
                "task": t["task"],
                "assigned_to": to,
                "assigned_to_participant_id": participant_id(participants, to.as_deref()),
                "deadline": t.get("deadline").cloned().unwrap_or(Value::Null),
                "context": t.get("context").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({"decisions": decisions, "next_steps": next_steps})
}

impl SummaryActivities {
    pub(super) async fn action_items(
        &self,
        ctx: &ActivityContext,
        input: &ActionItemsInput,
    ) -> Result<ActionItemsOutput, ActivityFailure> {
        let tid = &input.transcript_id;
        let (text, digest) = self.text(&input.summary_input_key).await?;
        let participants = self.participants(tid).await?;
        let out = self
            .checkpointed(
                tid,
                SummaryActivities::identify_action_items.name(),
                &(input, &digest),
                || async {
                    let validate = |a: &ActionAnswer| {
                        let blank = |v: &Value, field: &str| {
                            v[field].as_str().is_none_or(|s| s.trim().is_empty())
                        };
                        if a.decisions.iter().any(|d| blank(d, "decision")) {
                            return Err("every decision needs a `decision` text".to_owned());
                        }
                        if a.next_steps.iter().any(|t| blank(t, "task")) {
                            return Err("every next step needs a `task` text".to_owned());
                        }
                        Ok(())
                    };
                    let embedded = self.llm.is_embedded();
                    let (instruction, schema) = if embedded {
                        (
                            prompts::decisions_embedded(&participants),
                            prompts::DECISIONS_SCHEMA_EMBEDDED,
                        )
                    } else {
                        (
                            prompts::action_items(&participants),
                            prompts::ACTION_ITEMS_SCHEMA,
                        )
                    };
                    let mut answered = self
                        .llm
                        .answer_json(
                            ctx,
                            &instruction,
                            schema,
                            &text,
                            0.4,
                            validate,
                            |a: ActionAnswer| (a.decisions, a.next_steps),
                            |(decisions, next_steps): &Items| {
                                decisions
                                    .iter()
                                    .map(|d| d["decision"].as_str().unwrap_or(""))
                                    .chain(
                                        next_steps.iter().map(|t| t["task"].as_str().unwrap_or("")),
                                    )
                                    .all(|s| grounded(s, &text) >= 0.6)
                            },
                            || fallback_items(&text, &participants),
                        )
                        .await?;
                    if embedded && answered.method == Method::Llm {
                        answered.value = embedded_items(answered.value.0, &text, &participants);
                    }
                    answered.value = without_invented_facts(answered.value, &text);
                    let (decisions, next_steps) = (answered.value.0.len(), answered.value.1.len());
                    Ok(ActionItemsOutput {
                        decisions,
                        next_steps,
                        method: answered.method,
                        usage: answered.usage,
                        action_items: with_participant_ids(answered.value, &participants),
                    })
                },
            )
            .await?;
        self.events
            .db()
            .set_action_items(tid, &out.action_items)
            .await?;
        self.events
            .publish(
                SummaryActivities::identify_action_items.name(),
                tid,
                crate::events::Event::ActionItems,
                json!({"action_items": out.action_items}),
            )
            .await?;
        Ok(out)
    }
}

/// `identify_action_items`, declared (`crate::step`): on the embedded model the answer is the
/// decisions as JSON (the next steps are the commitments people made, read from the words).
pub fn declare(catalog: workflow::Catalog) -> workflow::Catalog {
    use crate::step::{Cost, Declare as _, Event, Step};
    catalog.declare(
        SummaryActivities::identify_action_items,
        Step::costing(Cost::Llm {
            embedded_max_tokens: 200,
        })
        .emitting(&[Event::ActionItems]),
    )
}

impl super::HasUsage for ActionItemsOutput {
    fn usage_mut(&mut self) -> &mut Usage {
        &mut self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ana() -> Vec<Participant> {
        vec![Participant {
            id: "p1".into(),
            speaker: 0,
            name: "Ana Lima".into(),
            user_id: None,
            email: None,
        }]
    }

    #[test]
    fn names_map_to_participants_case_insensitively() {
        let people = ana();
        assert_eq!(participant_id(&people, Some("ana lima")), json!("p1"));
        assert_eq!(participant_id(&people, Some("Ana")), Value::Null);
        assert_eq!(participant_id(&people, None), Value::Null);
    }

    #[test]
    fn items_carry_participant_ids_and_nulls_for_what_was_not_said() {
        let items = (
            vec![json!({"decision": "Ship on the 14th", "decided_by": "ANA LIMA"})],
            vec![json!({"task": "Hire two engineers", "assigned_to": "Ben"})],
        );
        let out = with_participant_ids(items, &ana());
        assert_eq!(out["decisions"][0]["decided_by_participant_id"], "p1");
        assert_eq!(out["decisions"][0]["rationale"], Value::Null);
        assert_eq!(
            out["next_steps"][0]["assigned_to_participant_id"],
            Value::Null
        );
        assert_eq!(out["next_steps"][0]["deadline"], Value::Null);
    }

    /// An incident review as the ASR wrote it (the held-back meeting of issue 40).
    const GARBLED: &str = "Dana: Good. Victorone's Dix. I re alert. You next Monday.\n\
        Eli: Sorry I'm late, legal act whenever we must notify the remurator.\n\
        Dana: We agreed the root cause was the expired certificate on the gateway.\n\
        Eli: I will rotate the certificates on every gateway before the end of the week.\n\
        Dana: I'll page the security team.";

    fn people() -> Vec<Participant> {
        ["Dana", "Eli"]
            .iter()
            .enumerate()
            .map(|(i, name)| Participant {
                id: format!("p{i}"),
                speaker: i as i64,
                name: (*name).into(),
                user_id: None,
                email: None,
            })
            .collect()
    }

    #[test]
    fn a_refused_answer_lists_no_sentence_of_the_transcript() {
        let (decisions, next_steps) = fallback_items(GARBLED, &people());
        assert!(decisions.is_empty(), "none recorded: {decisions:?}");
        let sentences = crate::llm::extractive::sentences(GARBLED);
        for t in &next_steps {
            let task = t["task"].as_str().unwrap();
            assert!(!echoes(task, GARBLED, COPIED_RUN), "{task:?} is copied");
            assert!(
                sentences.iter().all(|s| !s.ends_with(task)),
                "{task:?} is a sentence of the transcript"
            );
        }
        // The long commitment copies the transcript and is left out; the short one is kept
        // with its owner, so the fallback is not simply empty.
        let tasks: Vec<&str> = next_steps
            .iter()
            .filter_map(|t| t["task"].as_str())
            .collect();
        assert_eq!(tasks, ["Page the security team"], "{next_steps:?}");
        assert_eq!(next_steps[0]["assigned_to"], "Dana");
    }

    #[test]
    fn invented_numbers_dates_and_names_are_not_published() {
        let items = (
            vec![
                json!({"decision": "The root cause was the expired certificate", "rationale": "Seen by Frank", "decided_by": "Dana"}),
                json!({"decision": "Rotate 500 certificates", "rationale": null, "decided_by": "Dana"}),
                json!({"decision": "Notify the regulator within 72 hours", "rationale": null, "decided_by": "Gwen"}),
            ],
            vec![
                json!({"task": "Rotate the certificates on every gateway", "assigned_to": "Eli", "deadline": "by Friday", "context": null}),
                json!({"task": "Rotate the certificates", "assigned_to": "Frank", "deadline": "next Monday", "context": null}),
                json!({"task": "Call Acme about the gateway", "assigned_to": "Eli", "deadline": null, "context": null}),
            ],
        );
        let (decisions, next_steps) = without_invented_facts(items, GARBLED);
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0]["decided_by"], "Dana");
        assert_eq!(
            decisions[0]["rationale"],
            Value::Null,
            "Frank was never named"
        );
        assert_eq!(next_steps.len(), 2, "Acme was never named: {next_steps:?}");
        assert_eq!(
            next_steps[0]["deadline"],
            Value::Null,
            "Friday was never said"
        );
        assert_eq!(next_steps[0]["assigned_to"], "Eli");
        assert_eq!(next_steps[1]["assigned_to"], Value::Null);
        assert_eq!(next_steps[1]["deadline"], "next Monday");
    }
}
