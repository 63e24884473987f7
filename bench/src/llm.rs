//! `llm-bench`: the embedded LLMs on the demo meeting's dialogue, side by side in one run —
//! load time, prompt reading (prefill) and generation speed, and how many of the meeting's
//! facts (each decision, owner and date: `scripts/demo-meeting.py --facts`) a title-and-recap
//! answer carries — each model with its weights kept quantized and dequantized to f16 at load
//! (`LLM_WEIGHTS`; candle reads the switch once per process, so each row is measured in a
//! child process of this one). Writes `llm.md` into the results directory; `just bench-llm`
//! runs it.
//!
//! Usage: `llm-bench [--results DIR] [MODEL...]` (GGUF paths, or names under the model
//! directory; default: every installed embedded model).

use std::path::PathBuf;
use std::time::Instant;

use activities::llm::chat_model::{self, ChatModel};
use activities::llm::{EMBEDDED_QWEN, EMBEDDED_SMALL};
use anyhow::{Context, Result};
use reflow_bench::{Fact, demo_meeting};

/// Qwen2.5-Coder-1.5B-Instruct, benchmarked when its GGUF (and `tokenizer.json`) is there.
const EMBEDDED_LARGE: &str = "qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct.gguf";

const INSTRUCTION: &str = "You read a meeting transcript. Write a title for the meeting on the \
    first line (at most 10 words), then a recap of two to four sentences that names every \
    decision with its owner and date. Use only what the transcript says.";

#[derive(serde::Serialize, serde::Deserialize)]
struct Row {
    model: String,
    weights: String,
    load_s: f64,
    prompt_tokens: usize,
    prefill_tps: f64,
    completion_tokens: usize,
    generation_tps: f64,
    total_s: f64,
    found: Vec<bool>,
    answer: String,
}

/// The machine and the build, for the results header.
fn machine() -> String {
    let build = if cfg!(debug_assertions) {
        "dev build (candle crates at opt-level 3)"
    } else {
        "release build"
    };
    format!("{}, {build}", reflow_bench::machine())
}

/// One row, measured in this process (the child's part).
fn measure(path: &std::path::Path, transcript: &str, facts: &[Fact]) -> Result<Row> {
    let loading = Instant::now();
    // One answer at a time: one session on every core.
    let model = ChatModel::load(path, chat_model::Parallelism::resolve(1, 0))?;
    let load_s = loading.elapsed().as_secs_f64();
    let messages = [
        ("system".to_owned(), INSTRUCTION.to_owned()),
        ("user".to_owned(), transcript.to_owned()),
    ];
    let started = Instant::now();
    let g = model.chat(&messages, 0.0, 200, None, &Default::default())?;
    let total_s = started.elapsed().as_secs_f64();
    let found = facts
        .iter()
        .map(|f| f.carried_by(&g.text))
        .collect::<Result<Vec<_>>>()?;
    Ok(Row {
        model: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        weights: if chat_model::f16_weights() {
            "f16"
        } else {
            "quantized"
        }
        .to_owned(),
        load_s,
        prompt_tokens: g.prompt_tokens,
        prefill_tps: g.prompt_tokens as f64 / g.prefill.as_secs_f64().max(1e-9),
        completion_tokens: g.completion_tokens,
        generation_tps: g.completion_tokens as f64 / g.generation.as_secs_f64().max(1e-9),
        total_s,
        found,
        answer: g.text,
    })
}

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let transcript = demo_meeting(&["--transcript"])?;
    let facts = Fact::of_demo()?;
    if args.first().map(String::as_str) == Some("--child") {
        // Before any thread: it sets candle's switch from LLM_WEIGHTS.
        chat_model::prefer_f16_weights();
        let path = PathBuf::from(args.get(1).context("--child MODEL")?);
        let row = measure(&path, &transcript, &facts)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let mut results = None;
    if let Some(i) = args.iter().position(|a| a == "--results") {
        results = Some(PathBuf::from(args.get(i + 1).context("--results DIR")?));
        args.drain(i..=i + 1);
    }
    let models: Vec<PathBuf> = if args.is_empty() {
        [EMBEDDED_SMALL, EMBEDDED_QWEN, EMBEDDED_LARGE]
            .iter()
            .map(|m| activities::models::dir().join(m))
            .filter(|p| p.exists())
            .collect()
    } else {
        args.iter()
            .map(|a| {
                let p = PathBuf::from(a);
                if p.exists() {
                    p
                } else {
                    activities::models::dir().join(a)
                }
            })
            .collect()
    };
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for path in &models {
        for weights in ["quantized", "f16"] {
            let out = std::process::Command::new(&me)
                .arg("--child")
                .arg(path)
                .env("LLM_WEIGHTS", weights)
                .env_remove("CANDLE_DEQUANTIZE_ALL_F16")
                .stderr(std::process::Stdio::inherit())
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{} ({weights}) failed: {}",
                path.display(),
                out.status
            );
            let row: Row = serde_json::from_slice(&out.stdout)?;
            eprintln!(
                "{} ({}): load {:.1} s, prefill {:.1} tok/s, generation {:.1} tok/s, {:.1} s, facts {}/{}",
                row.model,
                row.weights,
                row.load_s,
                row.prefill_tps,
                row.generation_tps,
                row.total_s,
                row.found.iter().filter(|f| **f).count(),
                facts.len()
            );
            rows.push(row);
        }
    }
    let mut md = format!(
        "# Embedded LLMs on the demo meeting\n\n{}; {}; `just bench-llm`.\n\n\
         One answer per model and weights (quantized as in the GGUF, or dequantized to f16 at \
         load) to the same prompt: a title and a 2–4 sentence recap naming every \
         decision with its owner and date, greedy decoding, at most 200 tokens, over the demo \
         dialogue (`scripts/demo-meeting.py --transcript`). Facts: `scripts/demo-meeting.py \
         --facts` (a fact counts when all its patterns match).\n\n\
         | model | weights | load s | prompt tokens | prefill tok/s | generated | generation tok/s | answer s | facts |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        machine()
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {:.1} | {} | {:.1} | {:.1} | {}/{} |\n",
            r.model,
            r.weights,
            r.load_s,
            r.prompt_tokens,
            r.prefill_tps,
            r.completion_tokens,
            r.generation_tps,
            r.total_s,
            r.found.iter().filter(|f| **f).count(),
            facts.len()
        ));
    }
    for r in &rows {
        md.push_str(&format!("\n## {} ({})\n\n", r.model, r.weights));
        for (f, ok) in facts.iter().zip(&r.found) {
            md.push_str(&format!("- [{}] {}\n", if *ok { "x" } else { " " }, f.fact));
        }
        md.push_str(&format!("\n```text\n{}\n```\n", r.answer));
    }
    match results {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("llm.md"), &md)?;
        }
        None => print!("{md}"),
    }
    Ok(())
}
