//! Every prompt of the summary steps, in one place (docs/contracts/pipeline.md §4.7–§4.12).
//!
//! A step asks for its instruction here and sends it with its input; [`VERSION`] is part of
//! every checkpoint hash, so a changed prompt is a new question and never answered from an
//! old checkpoint. Change the version with any wording change.

use crate::transcript::Participant;

/// Version of the prompts (and of the guards of [`super::guard`]); part of every checkpoint
/// hash.
pub const VERSION: &str = "reflow-prompts-4";

/// Notes of one part of a transcript too long for the context window, shared by every step
/// that reads it (`Llm::condense`): what any of them may need from the part.
pub const PART_NOTES: &str = "You read one part of a longer meeting transcript. Write notes on \
    this part for someone who will summarise the whole meeting: each subject discussed, every \
    decision and who made it, every task with its owner and deadline, and every number, date \
    and name mentioned. Use the speakers' names. Write plain short sentences, no preamble.";

/// `detect_chunk_topic`: the main topic of one excerpt.
pub const CHUNK_TOPIC: &str = "You read an excerpt of a meeting transcript. Find the main topic \
    of the excerpt and ignore small talk. Give it a specific, descriptive, professional title, \
    and a summary of at most two sentences on what was discussed or decided.";

/// The JSON shape of [`CHUNK_TOPIC`]'s answer.
pub const CHUNK_TOPIC_SCHEMA: &str = r#"{"title": "a specific title of at least 10 characters", "summary": "one or two sentences, at least 10 characters"}"#;

/// `generate_title`: a title from the topic titles.
pub const TITLE: &str = "These are the topics of a meeting. Write a single-line title for the \
    meeting, at most 10 words, built from noun phrases. Avoid generic terms such as \"meeting\" \
    or \"discussion\"; name the most significant topic, or a compound of the top ones. Answer \
    with the title only.";

/// The JSON shape of [`subjects`]'s answer.
pub const SUBJECTS_SCHEMA: &str = r#"{"subjects": ["a short noun phrase", "..."]}"#;

/// The JSON shape of [`action_items`]'s answer.
pub const ACTION_ITEMS_SCHEMA: &str = r#"{"decisions": [{"decision": "...", "rationale": "... or null", "decided_by": "a name or null"}], "next_steps": [{"task": "...", "assigned_to": "a name or null", "deadline": "... or null", "context": "... or null"}]}"#;

/// The JSON shape of [`decisions_embedded`]'s answer.
pub const DECISIONS_SCHEMA_EMBEDDED: &str =
    r#"{"decisions": [{"decision": "...", "decided_by": "a name or null"}]}"#;

/// `extract_subjects`: the main subjects of the summary input.
pub fn subjects(participants: &[Participant]) -> String {
    format!(
        "You read a meeting transcript. List the main subjects discussed, as short noun \
         phrases; skip subjects only mentioned briefly.{}",
        participant_instruction(participants)
    )
}

/// `generate_detailed_summary`, first call: a detailed analysis of one subject.
pub fn analyse_subject(subject: &str, participants: &[Participant]) -> String {
    format!(
        "You read a meeting transcript. Write a detailed analysis of one subject of it: \
         \"{subject}\". Cover the positions and arguments, the decisions and their rationale, \
         action items with owners and deadlines, and open questions. Name the people \
         involved.{}",
        participant_instruction(participants)
    )
}

/// `generate_detailed_summary`, second call: the analysis condensed into one paragraph.
pub fn condense_subject(subject: &str, participants: &[Participant]) -> String {
    format!(
        "Condense this analysis of the subject \"{subject}\" into one paragraph.{}",
        participant_instruction(participants)
    )
}

/// `generate_detailed_summary` on the embedded model: one call instead of analysis and
/// condensation (half the generation on a CPU), asking for the facts an attendee looks for.
pub fn subject_paragraph(subject: &str, participants: &[Participant]) -> String {
    format!(
        "You read a meeting transcript. Write one paragraph of two or three sentences about \
         one subject of it: \"{subject}\". Say what was decided, by whom, and by when, with \
         the numbers and dates said. Use only what the transcript says.{}",
        participant_instruction(participants)
    )
}

/// `generate_recap`: one high-level paragraph from the subjects' paragraphs, naming the
/// decisions. A reflow decision against §4.11 ("without decisions or action items"): users
/// read the recap first, and a recap without the meeting's decisions was judged useless.
pub fn recap(participants: &[Participant]) -> String {
    format!(
        "These are summaries of the subjects of a meeting. Write a single high-level \
         paragraph of three or four sentences recapping the meeting. Name every decision: \
         what was decided and who does what by when, with the dates and amounts the \
         summaries give. Do not list the participants. Do not open with \"During the \
         meeting\".{}",
        participant_instruction(participants)
    )
}

/// `identify_action_items`: decisions and next steps.
pub fn action_items(participants: &[Participant]) -> String {
    format!(
        "You read a meeting transcript. List the decisions made (with their rationale \
         and who decided) and the next steps (the task, who it is assigned to, the \
         deadline and context). Use null for what the transcript does not say; empty \
         lists are fine.{}",
        participant_instruction(participants)
    )
}

/// `identify_action_items` on the embedded model: the decisions only (with
/// [`DECISIONS_SCHEMA_EMBEDDED`]); the next steps are the commitments people made
/// ([`super::commitments`]), whose owners the small model got wrong on every prompt tried.
/// Of the wordings measured on the demo meeting, this one listed its four decisions in the
/// fewest tokens.
pub fn decisions_embedded(participants: &[Participant]) -> String {
    format!(
        "You read a meeting transcript. List every decision made in the meeting, each with \
         the amounts and dates said. Use null for what the transcript does not say.{}",
        participant_instruction(participants)
    )
}

/// The participant instruction every summary prompt carries (§4.9.2).
fn participant_instruction(participants: &[Participant]) -> String {
    if participants.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = participants.iter().map(|p| p.name.as_str()).collect();
    format!(
        "\n\nThe participants are: {}. Refer to people by these names; never use generic labels such as \"Speaker 1\".",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_name_the_participants_and_never_generic_labels() {
        let people = vec![Participant {
            id: "p1".into(),
            speaker: 0,
            name: "Ana".into(),
            user_id: None,
            email: None,
        }];
        let recap = recap(&people);
        assert!(recap.ends_with(
            "The participants are: Ana. Refer to people by these names; never use generic labels such as \"Speaker 1\"."
        ));
        assert!(!subjects(&[]).contains("participants are"));
        assert!(analyse_subject("Budget", &people).contains("\"Budget\""));
    }
}
