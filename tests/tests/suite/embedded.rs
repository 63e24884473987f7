//! The embedded backends end to end on Temporal, no network: two speakers' tracks of real
//! speech (espeak-ng) transcribed by the in-process Whisper (tiny.en) and merged, then the LLM
//! chain on the in-process SmolLM2 with its guards and extractive fallback. A second run of
//! every step is served from its checkpoint: the process's usage ledger shows no new model
//! call.

use activities::asr::wer::word_error_rate;
use activities::transcript::{Participant, Word};
use activities::usage::ledger;
use reflow::runs;
use reflow_tests::media::speech_track;
use reflow_tests::{db, started, storage};
use serde_json::{Value, json};

const ANA: &str = "Good morning. The quarterly budget review is scheduled for next Tuesday, \
                   and every team lead should bring their hiring plan.";
const BEN: &str = "I will send the hiring plan for the support team by Friday, \
                   and we should freeze travel spending until the review.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_becomes_words_topics_title_and_summaries_without_any_network() {
    let (queue, tp, _worker, c) = started("embedded-asr", "transcribe.yaml").await;
    let tid = "9f0e3c52-1b7d-4a8e-b2c4-6d5e7f809a1b";
    reflow_tests::transcript(tid).await;
    db().set_participants(
        tid,
        &[
            Participant {
                id: "p-ana".into(),
                speaker: 0,
                name: "Ana".into(),
                user_id: None,
                email: None,
            },
            Participant {
                id: "p-ben".into(),
                speaker: 1,
                name: "Ben".into(),
                user_id: None,
                email: None,
            },
        ],
    )
    .await
    .unwrap();

    // Ana speaks first; Ben answers after her, on his own track (as Daily records them).
    let dir = tempfile::tempdir().unwrap();
    let (ana, ana_span) = speech_track(dir.path(), "ana", "en-us+f3", ANA, 500);
    let ben_delay = ((ana_span.1 + 0.8) * 1000.0) as u64;
    let (ben, ben_span) = speech_track(dir.path(), "ben", "en-us+m3", BEN, ben_delay);
    let keys = [
        format!("{tid}/pipeline/padded_0.webm"),
        format!("{tid}/pipeline/padded_1.webm"),
    ];
    storage().put_file(&keys[0], &ana).await.unwrap();
    storage().put_file(&keys[1], &ben).await.unwrap();

    let before = ledger().totals();
    let input = json!({"transcript_id": tid, "padded_keys": keys});
    runs::start(&c, &tp.pipeline, input.clone(), "embedded-asr-1")
        .await
        .unwrap();
    let out = runs::wait(&c, "embedded-asr-1").await.unwrap();
    let after = ledger().totals();
    assert!(after.asr_calls > before.asr_calls, "the model ran");
    assert!(
        out["transcribe"][0]["usage"]["backend"]
            .as_str()
            .unwrap()
            .starts_with("embedded:whisper-tiny.en")
    );

    let merged: Vec<Word> = serde_json::from_slice(
        &storage()
            .get(&format!("{tid}/pipeline/words.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    let said = |speaker: i64| {
        merged
            .iter()
            .filter(|w| w.speaker == speaker)
            .map(|w| w.text.as_str())
            .collect::<String>()
    };
    let (wer_ana, wer_ben) = (
        word_error_rate(ANA, &said(0)),
        word_error_rate(BEN, &said(1)),
    );
    assert!(
        wer_ana < 0.25 && wer_ben < 0.25,
        "WER {wer_ana:.2} / {wer_ben:.2}: {:?} / {:?}",
        said(0),
        said(1)
    );
    // Each word sits inside its speaker's spoken span, and the merge interleaves by time:
    // Ana's words all come before Ben's.
    for w in &merged {
        let span = if w.speaker == 0 { ana_span } else { ben_span };
        assert!(
            w.start >= span.0 - 0.3 && w.end <= span.1 + 0.3,
            "{w:?} outside {span:?}"
        );
    }
    let first_ben = merged.iter().position(|w| w.speaker == 1).unwrap();
    assert!(
        merged[..first_ben].iter().all(|w| w.speaker == 0)
            && merged[first_ben..].iter().all(|w| w.speaker == 1)
    );

    // Again: every result from its checkpoint, no model run.
    runs::start(&c, &tp.pipeline, input, "embedded-asr-2")
        .await
        .unwrap();
    let again = runs::wait(&c, "embedded-asr-2").await.unwrap();
    let last = ledger().totals();
    assert_eq!(
        last.asr_calls, after.asr_calls,
        "no transcription ran on the second run"
    );
    assert_eq!(again["transcribe"][1]["usage"]["from_checkpoint"], true);
    assert_eq!(again["merge"], out["merge"]);

    // The LLM chain over those words, on the embedded model.
    let summary = reflow_tests::TestPipeline::load("summary.yaml", queue);
    let input = json!({"transcript_id": tid, "words_key": out["merge"]["words_key"]});
    runs::start(&c, &summary.pipeline, input.clone(), "embedded-llm-1")
        .await
        .unwrap();
    let out = runs::wait(&c, "embedded-llm-1").await.unwrap();
    let after = ledger().totals();
    assert!(after.llm_calls > last.llm_calls, "the model ran");

    // Every result says how it was made, and whatever the method, the text is there and is
    // made of the meeting's words (the guard or the extractive method saw to it).
    let transcript_text = format!("{ANA} {BEN}").to_lowercase();
    let methods: Vec<&Value> = [
        &out["title"]["method"],
        &out["subjects"]["method"],
        &out["recap"]["method"],
        &out["actions"]["method"],
    ]
    .into_iter()
    .chain(
        out["chunk_topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["method"]),
    )
    .collect();
    assert!(
        methods.iter().all(|m| *m == "llm" || *m == "extractive"),
        "{methods:?}"
    );
    let t = db().transcript(tid).await.unwrap();
    let title = t.title.clone().unwrap_or_default();
    assert!(
        (1..=10).contains(&title.split_whitespace().count()),
        "title {title:?}"
    );
    let grounded = activities::llm::guard::grounded(&title, &transcript_text);
    assert!(
        grounded >= 0.5,
        "title {title:?} is not about the meeting ({grounded:.2})"
    );
    assert!(t.short_summary.as_deref().is_some_and(|s| !s.is_empty()));
    assert!(
        t.long_summary
            .as_deref()
            .unwrap()
            .starts_with("# Quick recap\n\n")
    );
    assert!(t.action_items.is_some());
    for (step, v) in out.as_object().unwrap() {
        let usages: Vec<&Value> = match v {
            Value::Array(items) => items.iter().map(|i| &i["usage"]).collect(),
            other => vec![&other["usage"]],
        };
        for u in usages.into_iter().filter(|u| !u.is_null()) {
            println!(
                "{step}: {} calls, {} prompt + {} completion tokens, {} ms",
                u["calls"], u["prompt_tokens"], u["completion_tokens"], u["backend_ms"]
            );
        }
    }
    println!(
        "embedded title: {title:?} ({}), recap: {:?} ({})",
        out["title"]["method"], t.short_summary, out["recap"]["method"]
    );

    runs::start(&c, &summary.pipeline, input, "embedded-llm-2")
        .await
        .unwrap();
    let again = runs::wait(&c, "embedded-llm-2").await.unwrap();
    assert_eq!(
        ledger().totals().llm_calls,
        after.llm_calls,
        "no LLM call on the second run"
    );
    assert_eq!(again["title"]["title"], out["title"]["title"]);
}
