//! The import end to end on small definitions, one mapping rule each (the imported file is
//! validated against the built-in registry wherever the rule allows it), and on the seed.

use serde_json::{Value, json};
use workflow::pipeline::{Pipeline, Run};

use super::*;
use crate::registry::Registry;

const SEED: &str = include_str!("../../../../tests/fixtures/conductor/seed-workflow.json");

/// Import `wf` with a task definition (60 s, EXPONENTIAL_BACKOFF, 2 retries) for every name
/// in `names`.
fn import_with(wf: Value, names: &[&str]) -> Imported {
    let defs: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"name": n, "timeoutSeconds": 60, "retryCount": 2,
                        "retryLogic": "EXPONENTIAL_BACKOFF", "retryDelaySeconds": 2})
        })
        .collect();
    let defs = Definitions::parse(
        "w.json",
        &wf.to_string(),
        Some(("defs.json", &Value::Array(defs).to_string())),
    )
    .unwrap();
    let registry = Registry::builtin();
    import(&defs, &Target::new(registry.catalog())).unwrap()
}

fn validated(i: &Imported) -> Pipeline {
    let registry = Registry::builtin();
    workflow::parse_and_validate("imported.yaml", &i.yaml, registry.catalog())
        .unwrap_or_else(|e| panic!("{e}\n{}", i.yaml))
}

fn needs(p: &Pipeline, id: &str) -> Vec<String> {
    p.main
        .step(id)
        .unwrap_or_else(|| panic!("no step {id}"))
        .needs
        .clone()
}

fn tid() -> Value {
    json!({"transcript_id": "${workflow.input.transcript_id}"})
}

fn unmapped(i: &Imported) -> Vec<String> {
    i.unmapped().map(ToString::to_string).collect()
}

#[test]
fn import_fork_join_runs_the_branches_in_parallel_and_the_join_is_the_next_needs() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "version": 3, "inputParameters": ["transcript_id"],
        "tasks": [
          {"name": "generate_waveform", "taskReferenceName": "wave", "inputParameters": tid()},
          {"name": "fork", "taskReferenceName": "fork_gen", "type": "FORK_JOIN", "forkTasks": [
              [{"name": "generate_title", "taskReferenceName": "title", "inputParameters": tid()}],
              [{"name": "extract_subjects", "taskReferenceName": "subjects", "inputParameters": tid()},
               {"name": "identify_action_items", "taskReferenceName": "actions", "inputParameters": {
                   "transcript_id": "${workflow.input.transcript_id}",
                   "summary_input_key": "${subjects.output.summary_input_key}"}}]]},
          {"name": "join", "taskReferenceName": "join_gen", "type": "JOIN", "joinOn": ["title", "actions"]},
          {"name": "post_zulip", "taskReferenceName": "zulip", "optional": true, "inputParameters": tid()}
        ]}),
        &[
            "generate_waveform",
            "generate_title",
            "extract_subjects",
            "identify_action_items",
            "post_zulip",
        ],
    );
    let p = validated(&i);
    assert_eq!(p.version, 3);
    assert_eq!(needs(&p, "wave"), Vec::<String>::new());
    assert_eq!(needs(&p, "title"), ["wave"]);
    assert_eq!(needs(&p, "subjects"), ["wave"]);
    assert_eq!(needs(&p, "actions"), ["subjects"]);
    assert_eq!(needs(&p, "zulip"), ["actions", "title"]);
    assert!(p.main.step("zulip").unwrap().optional);
    assert_eq!(
        p.main.step("actions").unwrap().with["summary_input_key"],
        "${subjects.summary_input_key}"
    );
    assert!(
        p.main
            .step("wave")
            .unwrap()
            .emits
            .contains(&"WAVEFORM".to_owned())
    );
    assert!(
        i.yaml.contains(
            "  # fork_gen (FORK_JOIN): 2 branches run in parallel; join_gen (JOIN): the next step \
             needs\n  #   actions, title."
        ),
        "{}",
        i.yaml
    );
    assert!(unmapped(&i).is_empty(), "{:?}", unmapped(&i));

    // Without a JOIN (the seed's way), the next step waits for every branch.
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "tasks": [
            {"name": "fork", "taskReferenceName": "fork_gen", "type": "FORK_JOIN",
             "forkTasks": [["generate_title"], ["extract_subjects"]]},
            {"name": "post_zulip", "taskReferenceName": "zulip", "inputParameters": tid()}]}),
        &["generate_title", "extract_subjects", "post_zulip"],
    );
    assert!(
        i.yaml.contains("no JOIN follows it in the definition"),
        "{}",
        i.yaml
    );
    let p = validated(&i);
    assert_eq!(needs(&p, "zulip"), ["generate_title", "extract_subjects"]);
}

#[test]
fn import_a_dynamic_fork_becomes_a_fan_out_with_the_member_s_options() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id", "tracks"],
        "tasks": [
          {"name": "fork", "taskReferenceName": "fork_track_padding", "type": "FORK_JOIN_DYNAMIC",
           "inputParameters": {"forkTaskName": "pad_track",
                               "forkTaskInputs": "${workflow.input.tracks}"}},
          {"name": "join", "taskReferenceName": "join_padding", "type": "JOIN"},
          {"name": "generate_waveform", "taskReferenceName": "wave", "inputParameters": tid()}
        ]}),
        &["pad_track", "generate_waveform"],
    );
    let p = validated(&i);
    let pad = p.main.step("pad_track").unwrap();
    assert_eq!(pad.run, Run::Activity("pad_track".into()));
    assert_eq!(pad.for_each.as_deref(), Some("${input.tracks}"));
    assert_eq!(pad.with, json!("${item}"));
    assert_eq!(
        pad.fork_join(),
        ("fork_track_padding".to_owned(), "join_padding".to_owned())
    );
    assert_eq!(pad.options.start_to_close_ms, Some(60_000));
    assert_eq!(pad.options.retry.maximum_attempts, 3);
    assert_eq!(needs(&p, "wave"), ["pad_track"]);

    // The classic form: the member is chosen at run time, so the step says what to give.
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "tasks": [
            {"name": "fork", "taskReferenceName": "fork_padding", "type": "FORK_JOIN_DYNAMIC",
             "dynamicForkTasksParam": "dynamicTasks",
             "inputParameters": {"dynamicTasks": "${workflow.input.tasks}"}},
            {"name": "join", "taskReferenceName": "join_padding", "type": "JOIN"},
            {"name": "generate_waveform", "taskReferenceName": "wave", "inputParameters": tid()}]}),
        &["pad_track", "generate_waveform"],
    );
    let u = unmapped(&i);
    assert!(
        u.iter().any(|f| f.starts_with("unmapped: step fork_padding: its member task and inputs are chosen at run time (dynamicForkTasksParam dynamicTasks = \"${workflow.input.tasks}\")")
            && f.ends_with("task definitions no task runs: pad_track")),
        "{u:?}"
    );
    assert!(i.yaml.contains("  - id: fork_padding\n"), "{}", i.yaml);
}

#[test]
fn import_switch_case_true_becomes_when_and_other_cases_are_commented_out() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id", "notify"],
        "tasks": [
          {"name": "generate_title", "taskReferenceName": "title", "inputParameters": tid()},
          {"name": "sw", "taskReferenceName": "should_post", "type": "SWITCH",
           "evaluatorType": "value-param", "expression": "flag",
           "inputParameters": {"flag": "${workflow.input.notify}"},
           "decisionCases": {
              "true": [{"name": "post_zulip", "taskReferenceName": "zulip", "inputParameters": tid()}],
              "maybe": [{"name": "send_webhook", "taskReferenceName": "hook", "inputParameters": tid()}]},
           "defaultCase": [{"name": "cleanup_consent", "taskReferenceName": "consent"}]},
          {"name": "finalize", "taskReferenceName": "fin", "inputParameters": {
              "transcript_id": "${workflow.input.transcript_id}", "padded_keys": [],
              "started_at": "${workflow.input.started}"}}
        ]}),
        &[
            "generate_title",
            "post_zulip",
            "send_webhook",
            "cleanup_consent",
            "finalize",
        ],
    );
    let p = validated(&i);
    let zulip = p.main.step("zulip").unwrap();
    assert_eq!(zulip.when.as_deref(), Some("${input.notify}"));
    assert_eq!(zulip.needs, ["title"]);
    assert!(p.main.step("hook").is_none() && p.main.step("consent").is_none());
    assert_eq!(needs(&p, "fin"), ["zulip"]);
    assert!(i.yaml.contains("  # - id: hook\n"), "{}", i.yaml);
    let u = unmapped(&i);
    assert_eq!(u.len(), 2, "{u:?}");
    assert!(
        u[0].contains("case \"maybe\": reflow's `when:` tests whether `${input.notify}` is truthy"),
        "{u:?}"
    );
    assert!(
        u[1].contains("the default case: it runs when no case matches"),
        "{u:?}"
    );
    // An input read by a task but not listed is declared, and said so.
    assert!(
        i.yaml
            .contains("started: {type: any, required: false}  # read by the tasks"),
        "{}",
        i.yaml
    );

    // A script picks nothing reflow can read: every case is commented out.
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "tasks": [
            {"name": "sw", "taskReferenceName": "js", "type": "SWITCH", "evaluatorType": "javascript",
             "expression": "$.x > 1 ? 'a' : 'b'",
             "decisionCases": {"true": [{"name": "post_zulip", "taskReferenceName": "z", "inputParameters": tid()}]}}]}),
        &["post_zulip"],
    );
    assert!(
        unmapped(&i)[0].contains("a javascript expression"),
        "{:?}",
        unmapped(&i)
    );
}

#[test]
fn import_an_unmappable_expression_is_left_out_and_named_in_a_comment_and_a_finding() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "tasks": [
            {"name": "fork", "taskReferenceName": "fork_pad", "type": "FORK_JOIN_DYNAMIC",
             "inputParameters": {"forkTaskName": "pad_track", "forkTaskInputs": "${workflow.input.tracks}"}},
            {"name": "join", "taskReferenceName": "join_pad", "type": "JOIN"},
            {"name": "mixdown_tracks", "taskReferenceName": "mix", "inputParameters": {
                "transcript_id": "${workflow.input.transcript_id}",
                "padded_keys": "${join_pad.output..padded_key}"}}]}),
        &["pad_track", "mixdown_tracks"],
    );
    let u = unmapped(&i);
    let want = "unmapped: step mix: input padded_keys: ${join_pad.output..padded_key} (a JSONPath \
                expression: reflow reads plain paths only; the members' outputs are `${pad_track}` \
                in reflow (one field of each: `${pad_track[*].field}`))";
    assert_eq!(u, [want], "{u:?}");
    assert!(
        i.yaml.contains(
            "      # unmapped: input padded_keys: ${join_pad.output..padded_key} (a JSONPath"
        ),
        "{}",
        i.yaml
    );
    // Left out, so validation names what is missing.
    let registry = Registry::builtin();
    let report = workflow::parse_and_validate("x.yaml", &i.yaml, registry.catalog())
        .unwrap_err()
        .to_string();
    assert!(report.contains("padded_keys"), "{report}");
}

#[test]
fn import_task_definitions_become_timeouts_heartbeats_and_retries() {
    let wf = json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "tasks": [
        {"name": "generate_waveform", "taskReferenceName": "wave", "inputParameters": tid()},
        {"name": "send_webhook", "taskReferenceName": "hook", "inputParameters": tid()}]});
    let defs = json!([
        {"name": "generate_waveform", "timeoutSeconds": 120, "responseTimeoutSeconds": 60,
         "retryCount": 3, "retryLogic": "EXPONENTIAL_BACKOFF"},
        {"name": "send_webhook", "timeoutSeconds": 60, "responseTimeoutSeconds": 30,
         "retryCount": 30, "retryLogic": "FIXED", "retryDelaySeconds": 90}]);
    let defs = Definitions::parse(
        "w.json",
        &wf.to_string(),
        Some(("d.json", &defs.to_string())),
    )
    .unwrap();
    let registry = Registry::builtin();
    let i = import(&defs, &Target::new(registry.catalog())).unwrap();
    let p = validated(&i);
    let wave = &p.main.step("wave").unwrap().options;
    assert_eq!(
        (wave.start_to_close_ms, wave.heartbeat_ms),
        (Some(120_000), Some(60_000))
    );
    assert_eq!(
        (wave.retry.maximum_attempts, wave.retry.backoff_coefficient),
        (4, 2.0)
    );
    assert_eq!(
        wave.retry.initial_interval_ms, 5_000,
        "reflow's default delay"
    );
    let hook = &p.main.step("hook").unwrap().options;
    assert_eq!(
        (hook.start_to_close_ms, hook.heartbeat_ms),
        (Some(60_000), None)
    );
    assert_eq!(
        (
            hook.retry.maximum_attempts,
            hook.retry.backoff_coefficient,
            hook.retry.initial_interval_ms,
            hook.retry.maximum_interval_ms
        ),
        (31, 1.0, 90_000, Some(90_000))
    );
    assert_eq!(
        unmapped(&i),
        [
            "unmapped: step hook: responseTimeoutSeconds 30: activity send_webhook does not heartbeat, \
          so it gets no heartbeat timeout (start_to_close bounds each attempt)"
        ]
    );
    assert!(i.findings.iter().any(|f| {
        f.kind == FindingKind::Note
            && f.text
                .starts_with("1 task definitions give no retryDelaySeconds")
    }));
}

#[test]
fn import_a_sub_workflow_becomes_a_child_pipeline() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id", "key"], "tasks": [
            {"name": "sub", "taskReferenceName": "track", "type": "SUB_WORKFLOW",
             "inputParameters": {"transcript_id": "${workflow.input.transcript_id}", "padded_key": "${workflow.input.key}"},
             "subWorkflowParam": {"name": "TrackProcessing", "version": 1, "workflowDefinition": {
                "name": "TrackProcessing", "inputParameters": ["transcript_id", "padded_key"],
                "outputParameters": {"words_key": "${tr.output.words_key}"},
                "tasks": [{"name": "transcribe_track", "taskReferenceName": "tr", "inputParameters": {
                    "transcript_id": "${workflow.input.transcript_id}", "track_index": 0,
                    "padded_key": "${workflow.input.padded_key}"}}]}}},
            {"name": "merge_transcripts", "taskReferenceName": "merge", "inputParameters": {
                "transcript_id": "${workflow.input.transcript_id}", "words_keys": ["${track.output.words_key}"]}}]}),
        &["transcribe_track", "merge_transcripts"],
    );
    let p = validated(&i);
    assert_eq!(
        p.main.step("track").unwrap().run,
        Run::Child("TrackProcessing".into())
    );
    let child = &p.children["TrackProcessing"];
    let tr = child.step("tr").unwrap();
    assert_eq!(tr.with["padded_key"], "${input.padded_key}");
    assert_eq!(
        tr.options.heartbeat_ms, None,
        "no responseTimeoutSeconds given"
    );
    assert_eq!(child.output, json!({"words_key": "${tr.words_key}"}));
    assert_eq!(
        p.main.step("merge").unwrap().with["words_keys"],
        json!(["${track.words_key}"])
    );

    // Without the definition inline, the child is named as missing.
    let i = import_with(
        json!({"name": "DiarizationPipeline", "tasks": [
            {"name": "sub", "taskReferenceName": "track", "type": "SUB_WORKFLOW",
             "subWorkflowParam": {"name": "track_processing", "version": 2}}]}),
        &[],
    );
    let u = unmapped(&i);
    assert!(u.iter().any(|f| f == "unmapped: step track: no workflow type track_processing is registered by this worker"), "{u:?}");
    assert!(u.iter().any(|f| f.starts_with("unmapped: child track_processing: the definition of track_processing v2 is not in this file")), "{u:?}");
}

#[test]
fn import_unsupported_tasks_are_named_where_they_were() {
    let i = import_with(
        json!({"name": "DiarizationPipeline", "inputParameters": ["transcript_id"], "timeoutSeconds": 3600, "tasks": [
            {"name": "generate_title", "taskReferenceName": "title", "inputParameters": tid()},
            {"name": "http", "taskReferenceName": "ping", "type": "HTTP"},
            {"name": "loop", "taskReferenceName": "again", "type": "DO_WHILE", "loopOver": [{"name": "x", "taskReferenceName": "x1"}]},
            {"name": "post_zulip", "taskReferenceName": "zulip", "inputParameters": {
                "transcript_id": "${workflow.input.transcript_id}", "status": "${ping.output.status}"}}]}),
        &["generate_title", "post_zulip"],
    );
    let u = unmapped(&i);
    assert_eq!(u.len(), 4, "{u:?}");
    assert!(
        u[0].starts_with(
            "unmapped: pipeline: timeoutSeconds 3600: reflow runs have no workflow timeout"
        ),
        "{u:?}"
    );
    assert_eq!(
        u[1],
        "unmapped: step ping: task ping (HTTP) is not imported: reflow runs registered activities and child pipelines only"
    );
    assert!(u[2].ends_with("(its loop runs x1)"), "{u:?}");
    assert_eq!(
        u[3],
        "unmapped: step zulip: input status: ${ping.output.status} (task ping is not imported (a HTTP task))"
    );
    let p = validated(&i);
    assert_eq!(needs(&p, "zulip"), ["title"]);
    assert!(
        i.yaml
            .contains("  # unmapped: task ping (HTTP) is not imported"),
        "{}",
        i.yaml
    );
}

#[test]
fn import_errors_name_the_task() {
    let wf =
        json!({"name": "w", "tasks": [{"name": "a"}, {"name": "b", "taskReferenceName": "a"}]});
    let defs = Definitions::parse("w.json", &wf.to_string(), None).unwrap();
    let registry = Registry::builtin();
    let err = import(&defs, &Target::new(registry.catalog()))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "task a: its taskReferenceName is used twice");
    let wf = json!({"name": "w", "tasks": [{"name": "f", "taskReferenceName": "fork1", "type": "FORK_JOIN"}]});
    let defs = Definitions::parse("w.json", &wf.to_string(), None).unwrap();
    let err = import(&defs, &Target::new(registry.catalog()))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "task fork1: a FORK_JOIN without forkTasks");
}

/// The seed: what it says it could not map, and what `reflow validate` then names.
#[test]
fn import_the_seed_names_what_it_could_not_map() {
    let defs = Definitions::parse("seed-workflow.json", SEED, None).unwrap();
    let registry = Registry::builtin();
    let i = import(&defs, &Target::new(registry.catalog())).unwrap();
    let u = unmapped(&i);
    let has = |at: &str, text: &str| {
        u.iter()
            .any(|f| f.starts_with(&format!("unmapped: {at}: {text}")))
    };
    assert!(
        has(
            "pipeline",
            "no workflow type daily_diarization_pipeline is registered"
        ),
        "{u:?}"
    );
    assert!(
        has(
            "step generate_summary",
            "no activity generate_summary is registered"
        ),
        "{u:?}"
    );
    assert!(
        has(
            "task definition generate_dynamic_fork_tasks",
            "no task of the workflow runs it, and no activity generate_dynamic_fork_tasks is registered"
        ),
        "{u:?}"
    );
    for fork in ["fork_padding", "fork_transcription"] {
        assert!(
            has(
                &format!("step {fork}"),
                "its member task and inputs are chosen at run time"
            ),
            "{u:?}"
        );
    }
    assert!(
        has(
            "step get_recording",
            "responseTimeoutSeconds 30: activity get_recording does not heartbeat"
        ),
        "{u:?}"
    );
    assert!(
        has(
            "step mixdown_tracks",
            "input padded_keys (required by mixdown_tracks)"
        ),
        "{u:?}"
    );
    // Heartbeats where the activities heartbeat (§6.1's column), attempts = retries + 1.
    let mix = i.yaml.split("- id: mixdown_tracks").nth(1).unwrap();
    assert!(mix.contains("heartbeat: 300s"), "{}", i.yaml);
    let hook = i.yaml.split("- id: send_webhook").nth(1).unwrap();
    assert!(
        hook.contains("retry: {maximum_attempts: 31, backoff_coefficient: 2.0}"),
        "{}",
        i.yaml
    );

    let report = workflow::parse_and_validate("seed.yaml", &i.yaml, registry.catalog())
        .unwrap_err()
        .to_string();
    for want in [
        "daily_diarization_pipeline",
        "fork_padding",
        "fork_transcription",
        "generate_summary",
        "padded_keys",
        "words_keys",
    ] {
        assert!(report.contains(want), "{want}:\n{report}\n{}", i.yaml);
    }
}
