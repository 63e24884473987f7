//! Synthesized Daily meetings on the whole production path, for the reliability suites (chaos,
//! faults, load) and the pipeline benchmarks: real speech tracks (espeak-ng, WebM/Opus) in a
//! real S3-compatible server, a Daily stand-in that knows the recordings, signed webhooks into
//! reflow's own HTTP API, and fast stand-in backends that count every call.
//!
//! - [`Backends`]: the transcription stand-in (Reflector's `gpu-url` API, a fixed latency,
//!   words that name the track they came from), the LLM stand-in (OpenAI's chat completions;
//!   every answer carries a short hash of its prompt, so the prompts of one transcript never
//!   equal another's and a repeated call is visible at the backend), Zulip, the customer's
//!   webhook receiver and Daily.
//! - [`Stack`]: S3 (optionally behind a fault-injecting proxy), the database, reflow's HTTP
//!   API with Daily intake, and the settings of a worker, in process or as a separate
//!   `reflow worker` process ([`Stack::worker_env`]).
//!
//! One concept, one file: a synthesized meeting on the production path, with its stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use activities::daily::client::DailyConfig;
use activities::db::Db;
use activities::db::meetings::NewRoom;
use activities::events::{EventHub, Events};
use activities::storage::Storage;
use activities::zulip::ZulipConfig;
use futures::StreamExt;
use reflow::intake::{self, Intake};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::daily::{DailyStandIn, ready_to_download};
use crate::s3::S3Server;
use crate::standins::{self, Recorded, Reply, StandIn, completion};

/// Daily's API key as the stand-in expects it.
pub const DAILY_KEY: &str = "daily-test-key";
/// Daily's webhook secret (base64).
pub const DAILY_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The rooms' customer webhook secret.
pub const HOOK_SECRET: &str = "whsec-test";
/// Zulip's bot.
pub const ZULIP_BOT: (&str, &str) = ("bot@zulip.test", "zulip-key");
/// The queues of the meeting pipeline.
pub const QUEUES: [&str; 5] = [
    "reflow",
    "reflow-audio",
    "reflow-mixdown",
    "reflow-asr",
    "reflow-llm",
];

const LINES: [&str; 4] = [
    "Good morning. Let us review the release plan for Monday.",
    "The budget for the campaign is ready and I will send it on Friday.",
    "We should hire two engineers for the mobile team next month.",
    "I will schedule the interviews and share the notes afterwards.",
];
const VOICES: [&str; 4] = ["en-us", "en-gb", "en+f3", "en+m3"];

/// One synthesized speaker track (WebM/Opus, its speech starting at `offset_s`).
#[derive(Debug, Clone)]
pub struct Voice {
    /// The file.
    pub path: PathBuf,
    /// Where its speech starts in the recording.
    pub offset_s: f64,
    /// Its length, offset included.
    pub end_s: f64,
}

/// `n` speaker tracks under `dir` (voices and lines cycle; track `i` starts at `1.5 * i` s).
/// Made once and uploaded under every meeting's keys.
pub fn voices(dir: &Path, n: usize) -> Vec<Voice> {
    (0..n)
        .map(|i| {
            let wav = crate::media::espeak(
                dir,
                &format!("voice{i}"),
                VOICES[i % VOICES.len()],
                LINES[i % LINES.len()],
            );
            let path = dir.join(format!("voice{i}.webm"));
            let offset_s = 1.5 * i as f64;
            crate::media::opus_webm(
                &wav,
                &path,
                "aresample=48000",
                &["-output_ts_offset", &format!("{offset_s:.3}")],
            );
            let end_s = offset_s + crate::media::seconds(&path);
            Voice {
                path,
                offset_s,
                end_s,
            }
        })
        .collect()
}

const PARAGRAPH: &str = "The quarterly review starts with the support numbers. Ticket volume \
    went down by twelve percent after the new help center pages went live, and the average \
    first response time is now under two hours. The mobile team shipped the offline mode to \
    beta testers last week; crash reports are stable and the battery use is lower than \
    expected. Next we discussed the hiring plan: two backend engineers in the spring and one \
    designer for the onboarding flow. Finally, the office move is planned for the end of \
    March, and everyone should pack their desks on the Friday before.";

/// One speaker talking for `seconds` (a paragraph spoken again and again), as a Daily track
/// starting at the recording's start.
pub fn talking(dir: &Path, seconds: u32) -> Voice {
    let wav = crate::media::espeak(dir, &format!("paragraph{seconds}"), "en-us", PARAGRAPH);
    let looped = dir.join(format!("looped{seconds}.wav"));
    crate::media::ffmpeg(&[
        "-stream_loop",
        "-1",
        "-i",
        wav.to_str().unwrap(),
        "-t",
        &seconds.to_string(),
        looped.to_str().unwrap(),
    ]);
    let path = dir.join(format!("talking{seconds}.webm"));
    crate::media::opus_webm(&looped, &path, "aresample=48000", &[]);
    Voice {
        end_s: crate::media::seconds(&path),
        path,
        offset_s: 0.0,
    }
}

/// The attempt and heartbeat details the server holds for the running `transcribe_track` of
/// track `track` of the run `workflow_id` (its child `{workflow_id}-track-{track}`).
pub async fn transcription_progress(
    client: &temporalio_client::Client,
    workflow_id: &str,
    track: usize,
) -> Option<(i32, activities::heartbeat::Progress)> {
    let child = format!("{workflow_id}-track-{track}");
    let d = client
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>(&child)
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .ok()?;
    let p = d.raw_description.pending_activities.first()?;
    let data = &p.heartbeat_details.as_ref()?.payloads.first()?.data;
    Some((p.attempt, serde_json::from_slice(data).ok()?))
}

/// Tests of one binary share its dev server, and every [`Stack`]'s worker serves the
/// pipeline's fixed queues: hold this for the whole test so two tests never take each other's
/// tasks (which would read another test's storage).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The meeting pipeline (`pipelines/diarization.yaml`) with every start-to-close 90 s, every
/// heartbeat at most 15 s and every retry starting 1 s after a failure: with fast stand-in
/// backends, a killed worker's or a hung call's activity is retried within a minute and a half
/// instead of the production values' (up to 30 minutes), and a failed webhook delivery after 1 s
/// instead of a minute. Everything else (attempts, backoff coefficients, queues, the graph) is
/// the production definition.
pub fn short_timeouts() -> workflow::Pipeline {
    workflow::parse_and_validate(
        "diarization.yaml",
        &short_timeouts_yaml(),
        crate::registry().catalog(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The version `pipelines/diarization.yaml` declares.
pub fn repository_version() -> u32 {
    let line = intake::DIARIZATION_YAML
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .expect("pipelines/diarization.yaml declares its version");
    line.trim().parse().expect("a version number")
}

/// `yaml` (a pipeline definition) declaring version `version`.
pub fn with_version(yaml: &str, version: u32) -> String {
    yaml.lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if yaml.ends_with('\n') { "\n" } else { "" }
}

/// The version the tests' stack registers [`short_timeouts`] as, whatever the repository's
/// file declares: the rollout tests' candidates are this plus one.
pub const SHORT_TIMEOUTS_VERSION: u32 = 2;

/// [`short_timeouts`] as the YAML a pipelines directory holds (for a `reflow` process),
/// declaring version [`SHORT_TIMEOUTS_VERSION`].
pub fn short_timeouts_yaml() -> String {
    let yaml = intake::DIARIZATION_YAML
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            let indent = &l[..l.len() - trimmed.len()];
            if trimmed.starts_with("start_to_close:") {
                format!("{indent}start_to_close: 90s")
            } else if trimmed.starts_with("heartbeat:") {
                format!("{indent}heartbeat: 15s")
            } else if trimmed.starts_with("initial_interval:") {
                format!("{indent}initial_interval: 1s")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    with_version(&yaml, SHORT_TIMEOUTS_VERSION)
}

/// [`short_timeouts`] as version 3 with `generate_title`'s `with:` written differently: its
/// fingerprint (the definition's, not what it renders) changes, so a memoized re-run on it runs
/// that LLM step and its dependents only.
pub fn title_changed() -> workflow::Pipeline {
    let yaml = with_version(&short_timeouts_yaml(), SHORT_TIMEOUTS_VERSION + 1).replacen(
        "    emits: [FINAL_TITLE]\n    with: {transcript_id: \"${input.transcript_id}\"}",
        "    emits: [FINAL_TITLE]\n    with: {transcript_id: \"${ input.transcript_id }\"}",
        1,
    );
    let v3 = workflow::parse_and_validate("diarization.yaml", &yaml, crate::registry().catalog())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(v3.hash, short_timeouts().hash);
    v3
}

/// The stand-in backends of a run and what they were asked.
#[derive(Clone)]
pub struct Backends {
    /// Transcription (`gpu-url`).
    pub asr: StandIn,
    /// OpenAI-compatible chat completions.
    pub llm: StandIn,
    /// Zulip's messages API.
    pub zulip: StandIn,
    /// The customer's webhook receiver.
    pub receiver: StandIn,
    /// Daily's REST API.
    pub daily: DailyStandIn,
}

/// The words the transcription stand-in answers for the padded track at `key`
/// (`{transcript}/pipeline/padded_{i}.webm`): they name the transcript and the track, so
/// every transcript's prompts differ.
pub fn asr_words(key: &str) -> Value {
    let tag = short_hash(key.split('/').next().unwrap_or(key));
    let track = key
        .rsplit('_')
        .next()
        .and_then(|t| t.split('.').next())
        .unwrap_or("0");
    let offset = 1.5 * track.parse::<f64>().unwrap_or(0.0);
    let text = format!(
        "meeting {tag} track {track} we reviewed the release plan and the budget and agreed on the next steps"
    );
    let words: Vec<(&str, f64, f64)> = text
        .split(' ')
        .enumerate()
        .map(|(n, w)| (w, offset + 0.4 * n as f64, offset + 0.4 * n as f64 + 0.3))
        .collect();
    standins::transcription(&words)
}

/// The storage key a `gpu-url` request asks to transcribe (the presigned URL's path, less the
/// bucket).
pub fn asr_key(r: &Recorded) -> Option<String> {
    let url = r.json.as_ref()?["audio_file_url"].as_str()?;
    let url = url::Url::parse(url).ok()?;
    let path = url.path().trim_start_matches('/');
    Some(path.split_once('/').map_or(path, |(_, k)| k).to_owned())
}

/// The transcript a Zulip request posted a message about, when it posted one that was
/// accepted (not an update, not a refused attempt).
fn zulip_post(r: &Recorded) -> Option<String> {
    if r.method != "POST" || r.answered != Some(200) {
        return None;
    }
    let content = r.form.get("content").cloned().unwrap_or_default();
    Some(
        content
            .split("/transcripts/")
            .nth(1)
            .map(|t| t.chars().take_while(|c| *c != ')' && *c != ' ').collect())
            .unwrap_or_default(),
    )
}

fn short_hash(s: &str) -> String {
    let h = Sha256::digest(s.as_bytes());
    h.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// What identifies an LLM call: a hash of its messages, 64 bits of it. (24 bits gave two of a
/// soak's 1,800 different prompts the same key about one soak in ten, and the soak counted
/// the second as the first paid twice.)
pub fn llm_key(r: &Recorded) -> String {
    let messages = r.json.as_ref().map(|b| b["messages"].to_string());
    let h = Sha256::digest(messages.unwrap_or_default().as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The LLM stand-in's answer to `r`: the shapes reflow's prompts ask for, each naming the hash
/// of its prompt (so the prompts built from it are unique too).
pub fn tagged_chat_reply(r: &Recorded) -> Reply {
    let body = r.json.clone().unwrap_or_default();
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    let tag = llm_key(r);
    let content = if system.contains("main topic of the excerpt") {
        json!({"Title": format!("Release plan {tag}"), "Summary": format!("The team reviewed the plan ({tag}).")}).to_string()
    } else if system.contains("main subjects") {
        json!({"subjects": [format!("Release {tag}"), format!("Budget {tag}")]}).to_string()
    } else if system.contains("decisions made") {
        json!({
            "decisions": [{"decision": format!("Ship on Monday ({tag})"), "rationale": null, "decided_by": null}],
            "next_steps": [{"task": format!("Send the budget ({tag})"), "assigned_to": null, "deadline": "Friday", "context": null}]
        })
        .to_string()
    } else if system.contains("single-line title") {
        format!("Release planning {tag}")
    } else if system.contains("detailed analysis") {
        format!("A detailed analysis of the release and the budget ({tag}).")
    } else if system.contains("Condense") {
        format!("The team agreed on the release ({tag}).")
    } else if system.contains("recapping") {
        format!("During the meeting, the team reviewed the plan ({tag}).")
    } else {
        format!("An answer ({tag}).")
    };
    Reply::Json(completion(&content, 100))
}

impl Backends {
    /// Start every stand-in; the transcription stand-in answers after `asr_latency`.
    pub async fn start(asr_latency: Duration) -> Self {
        let asr = StandIn::start(move |r| match asr_key(r) {
            Some(key) => Reply::After(asr_latency, Box::new(Reply::Json(asr_words(&key)))),
            None => Reply::status(400),
        })
        .await;
        Backends {
            asr,
            llm: StandIn::start(tagged_chat_reply).await,
            zulip: standins::zulip(ZULIP_BOT.0, ZULIP_BOT.1).await,
            receiver: standins::webhook_receiver(HOOK_SECRET).await,
            daily: DailyStandIn::start(DAILY_KEY).await,
        }
    }

    /// When each track was sent to transcription, by storage key.
    pub fn asr_calls(&self) -> BTreeMap<String, Vec<Instant>> {
        let mut out: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        for r in self.asr.requests() {
            if let Some(k) = asr_key(&r) {
                out.entry(k).or_default().push(r.at);
            }
        }
        out
    }

    /// Transcription requests, all tracks together.
    pub fn asr_call_count(&self) -> usize {
        self.asr_calls().values().map(Vec::len).sum()
    }

    /// When each distinct prompt was sent to the LLM.
    pub fn llm_calls(&self) -> BTreeMap<String, Vec<Instant>> {
        let mut out: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        for r in self.llm.requests() {
            out.entry(llm_key(&r)).or_default().push(r.at);
        }
        out
    }

    /// Zulip messages posted and accepted (not updates, not refused attempts), by the transcript
    /// link in their content.
    pub fn zulip_posts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.zulip.requests() {
            if let Some(tid) = zulip_post(&r) {
                *out.entry(tid).or_insert(0) += 1;
            }
        }
        out
    }

    /// Every call a vendor was paid for — answered 200: a track's transcription (by storage
    /// key), an LLM prompt (by [`llm_key`]), a Zulip message (by transcript), a webhook event
    /// (by `event_id`) — and when each arrived, by kind (`transcription`, `llm`, `zulip`,
    /// `webhook`).
    pub fn paid_calls(&self) -> BTreeMap<&'static str, BTreeMap<String, Vec<Instant>>> {
        let answered = |s: &StandIn| -> Vec<Recorded> {
            s.requests()
                .into_iter()
                .filter(|r| r.answered == Some(200))
                .collect()
        };
        let by = |rs: Vec<Recorded>, key: &dyn Fn(&Recorded) -> Option<String>| {
            let mut out: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
            for r in rs {
                if let Some(k) = key(&r) {
                    out.entry(k).or_default().push(r.at);
                }
            }
            out
        };
        BTreeMap::from([
            ("transcription", by(answered(&self.asr), &asr_key)),
            ("llm", by(answered(&self.llm), &|r| Some(llm_key(r)))),
            ("zulip", by(self.zulip.requests(), &zulip_post)),
            (
                "webhook",
                by(answered(&self.receiver), &|r| {
                    standins::signature_ok(HOOK_SECRET, r)
                        .then(|| r.json.as_ref()?["event_id"].as_str().map(str::to_owned))
                        .flatten()
                }),
            ),
        ])
    }

    /// Signed webhook deliveries the receiver accepted, by transcript: the distinct
    /// `event_id`s and the number of requests.
    pub fn webhooks(&self) -> BTreeMap<String, (std::collections::BTreeSet<String>, usize)> {
        let mut out: BTreeMap<String, (std::collections::BTreeSet<String>, usize)> =
            BTreeMap::new();
        for r in self.receiver.requests() {
            if !standins::signature_ok(HOOK_SECRET, &r) {
                continue;
            }
            let body = r.json.clone().unwrap_or_default();
            let tid = body["transcript"]["id"].as_str().unwrap_or("").to_owned();
            let e = out.entry(tid).or_default();
            e.0.insert(body["event_id"].as_str().unwrap_or("").to_owned());
            e.1 += 1;
        }
        out
    }
}

/// One meeting handed to Daily.
#[derive(Debug, Clone)]
pub struct Meeting {
    /// Daily's recording id.
    pub recording_id: String,
    /// The signed `recording.ready-to-download` body.
    pub webhook: String,
    /// The workflow intake starts.
    pub workflow_id: String,
}

/// S3, the database, reflow's API with Daily intake, and the backends.
pub struct Stack {
    /// The S3 server.
    pub s3: S3Server,
    /// What reflow talks to for S3: the server, or a fault proxy in front of it.
    pub s3_endpoint: String,
    /// The fault proxy, when asked for.
    pub s3_proxy: Option<StandIn>,
    /// The backends.
    pub backends: Backends,
    /// The database.
    pub db: Db,
    /// Its URL.
    pub db_url: String,
    /// Event publishing of this process (the API's).
    pub events: Events,
    /// Transcripts' store.
    pub storage: Storage,
    /// Daily's bucket.
    pub recordings: Storage,
    /// reflow's HTTP API, `host:port`.
    pub api: String,
    /// Daily intake.
    pub intake: Arc<Intake>,
    /// A client of the Temporal server.
    pub client: temporalio_client::Client,
}

impl Stack {
    /// Start S3 (behind a fault proxy when `proxy`), serve the API over `db`, and use
    /// `backends`; Daily intake starts `pipeline`.
    pub async fn start(
        db_url: &str,
        client: temporalio_client::Client,
        backends: Backends,
        proxy: bool,
        pipeline: workflow::Pipeline,
    ) -> Stack {
        let s3 = S3Server::start("transcripts");
        s3.add_bucket("daily-recordings");
        let s3_proxy = if proxy {
            Some(StandIn::proxy(&s3.endpoint).await)
        } else {
            None
        };
        let s3_endpoint = s3_proxy
            .as_ref()
            .map_or_else(|| s3.endpoint.clone(), |p| p.url.clone());
        let open = |url: &str| {
            let mut c = s3.config(url);
            c.endpoint = Some(s3_endpoint.clone());
            Storage::open(&c).expect("S3 store")
        };
        let storage = open("s3://transcripts");
        let recordings = open("s3://daily-recordings");
        let db = crate::postgres::connect(db_url).await;
        // The versions this stack's runs name: the pipeline intake starts, and the repository's
        // others (the example, the poll), as `reflow apply` would have registered them.
        crate::register_in(&db, &pipeline).await;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        for file in ["digest.yaml", "daily-poll.yaml"] {
            let p = reflow::runs::load_pipeline(&repo.join(file), crate::registry().catalog())
                .unwrap_or_else(|e| panic!("{e}"));
            crate::register_in(&db, &p).await;
        }
        let hub = EventHub::default();
        if db.backend() == activities::db::Backend::Postgres {
            tokio::spawn(hub.clone().listen_postgres(db.clone()));
        }
        let events = Events::new(db.clone(), hub, crate::registry().emits());
        let intake = Arc::new(Intake {
            db: db.clone(),
            client: client.clone(),
            pipeline,
            bucket_name: Some("daily-recordings".into()),
        });
        let state = reflow::http::ApiState {
            temporal: Some(client.clone()),
            intake: Some(intake.clone()),
            daily_webhook_secret: Some(DAILY_SECRET.into()),
            ..reflow::http::ApiState::new(events.clone(), storage.clone())
        };
        // The API process's backlog loop, as `reflow worker --http` runs it (runs Temporal did
        // not start when they were asked for; a worker process runs its own beside it).
        tokio::spawn(
            reflow::backlog::Backlog::new(intake.clone(), Some(state.clone()))
                .run(std::future::pending()),
        );
        let api = crate::serve_api(state).await;
        Stack {
            s3,
            s3_endpoint,
            s3_proxy,
            backends,
            db,
            db_url: db_url.to_owned(),
            events,
            storage,
            recordings,
            api,
            intake,
            client,
        }
    }

    /// The environment of a `reflow worker` process using this stack against `temporal`.
    pub fn worker_env(&self, temporal: &str, data_dir: &Path) -> Vec<(String, String)> {
        let b = &self.backends;
        [
            ("TEMPORAL_ADDRESS", temporal.to_owned()),
            ("REFLOW_DATA_DIR", data_dir.display().to_string()),
            ("DATABASE_URL", self.db_url.clone()),
            ("REFLOW_STORAGE_URL", "s3://transcripts".into()),
            ("DAILYCO_STORAGE_AWS_BUCKET_NAME", "daily-recordings".into()),
            ("AWS_ENDPOINT_URL", self.s3_endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", crate::s3::KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET.into()),
            ("S3_PATH_STYLE", "true".into()),
            ("TRANSCRIPT_BACKEND", "gpu-url".into()),
            ("TRANSCRIPT_URL", b.asr.url.clone()),
            ("LLM_BACKEND", "openai".into()),
            ("LLM_URL", b.llm.url.clone()),
            ("LLM_MODEL", "gpt-test".into()),
            ("LLM_RATE_LIMIT_PER_SECOND", "1000".into()),
            ("DAILY_API_KEY", DAILY_KEY.into()),
            ("DAILY_API_URL", b.daily.api_url()),
            ("DAILY_WEBHOOK_SECRET", DAILY_SECRET.into()),
            ("ZULIP_REALM", b.zulip.url.clone()),
            ("ZULIP_BOT_EMAIL", ZULIP_BOT.0.into()),
            ("ZULIP_API_KEY", ZULIP_BOT.1.into()),
            ("REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS", "127.0.0.1".into()),
            ("RUST_LOG", "warn".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// [`Stack::worker_env`] of a worker whose pipelines directory (`dir/pipelines`, written
    /// here) holds [`short_timeouts_yaml`], so its intake starts the definition this stack's does.
    pub fn worker_env_with_pipelines(&self, temporal: &str, dir: &Path) -> Vec<(String, String)> {
        let pipelines = dir.join("pipelines");
        std::fs::create_dir_all(&pipelines).expect("pipelines directory");
        std::fs::write(pipelines.join("diarization.yaml"), short_timeouts_yaml())
            .expect("write the pipeline");
        let mut env = self.worker_env(temporal, &dir.join("worker"));
        env.push(("REFLOW_PIPELINES".into(), pipelines.display().to_string()));
        env
    }

    /// [`Stack::worker_env`] with the embedded Whisper (tiny.en) transcribing, and the log
    /// lines the heartbeat tests read (`window transcribed`, cancels, resumes).
    pub fn embedded_asr_worker_env(
        &self,
        temporal: &str,
        data_dir: &Path,
    ) -> Vec<(String, String)> {
        let mut env = self.worker_env(temporal, data_dir);
        env.retain(|(k, _)| !k.starts_with("TRANSCRIPT_") && k != "RUST_LOG");
        env.extend(
            [
                ("TRANSCRIPT_BACKEND", "embedded"),
                ("TRANSCRIPT_MODEL", "tiny.en"),
                ("NO_COLOR", "1"),
                (
                    "RUST_LOG",
                    "warn,activities::heartbeat=info,activities::asr=debug",
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env
    }

    /// Services of an in-process worker using this stack (`llm_rate`: calls per second).
    pub fn services(&self, llm_rate: u32) -> reflow::registry::Services {
        use activities::asr::remote::{Api, RemoteAsr};
        use activities::asr::{AsrConfig, Transcriber};
        use activities::llm::{Llm, LlmBackend, LlmConfig};
        let b = &self.backends;
        reflow::registry::Services {
            storage: self.storage.clone(),
            recordings: self.recordings.clone(),
            scratch: std::env::temp_dir().join("reflow-scratch"),
            data_dir: std::env::temp_dir().join("reflow-data"),
            events: self.events.clone(),
            transcriber: Arc::new(Transcriber::new(AsrConfig::Remote(RemoteAsr {
                api: Api::GpuUrl,
                url: b.asr.url.clone(),
                api_key: None,
                model: None,
                timeout: None,
            }))),
            llm: Arc::new(Llm::new(LlmConfig {
                backend: LlmBackend::OpenAi {
                    url: b.llm.url.clone(),
                    api_key: None,
                    model: "gpt-test".into(),
                },
                context_window: 16_000,
                parse_max_retries: 3,
                rate_limit_per_second: llm_rate,
                timeout: None,
            })),
            daily: DailyConfig {
                api_key: Some(DAILY_KEY.into()),
                api_url: b.daily.api_url(),
                webhook_secret: Some(DAILY_SECRET.into()),
                webhook_uuid: None,
            },
            zulip: ZulipConfig {
                realm: Some(b.zulip.url.clone()),
                bot_email: ZULIP_BOT.0.into(),
                api_key: ZULIP_BOT.1.into(),
                ui_base_url: "http://reflow.test".into(),
            },
            webhook_private_hosts: vec!["127.0.0.1".into()],
            intake: Some(self.intake.clone()),
        }
    }

    /// Meeting `i` of room `{prefix}{i}`: its room and calendar meeting, `voices` uploaded as
    /// its raw tracks, the recording and participants known to Daily.
    pub async fn meeting(&self, prefix: &str, i: usize, voices: &[Voice]) -> Meeting {
        let room_name = format!("{prefix}{i}-20260110042117");
        let rec_s = 1_768_018_896u64 + i as u64;
        let rec_ms = rec_s * 1000 + 877;
        let recording_id = format!("{prefix}-rec-{i:04}");
        let room = self
            .db
            .create_room(&NewRoom {
                id: format!("room-{prefix}-{i}"),
                name: format!("{prefix}{i}"),
                user_id: Some("u-7".into()),
                zulip_stream: Some("meetings".into()),
                zulip_topic: Some(format!("{prefix}{i}")),
                webhook_url: Some(format!("{}/hooks/reflow", self.backends.receiver.url)),
                webhook_secret: Some(HOOK_SECRET.into()),
            })
            .await
            .expect("room");
        let start = std::time::UNIX_EPOCH + Duration::from_secs(rec_s - 120);
        self.db
            .create_meeting(
                &format!("m-{prefix}-{i}"),
                &room,
                &room_name,
                &humantime::format_rfc3339_seconds(start).to_string(),
            )
            .await
            .expect("meeting");
        let mut tracks = Vec::new();
        let mut participants = Vec::new();
        let mut end = 0.0f64;
        for (n, v) in voices.iter().enumerate() {
            let pid = format!("{:08x}-0000-4000-8000-{:012x}", i, n);
            let key = format!(
                "acme/{room_name}/{rec_ms}-{pid}-cam-audio-{}",
                rec_ms + (v.offset_s * 1000.0) as u64 + 200
            );
            let size = self
                .recordings
                .put_file(&key, &v.path)
                .await
                .expect("upload a track");
            tracks.push(json!({"type": "audio", "s3Key": key, "size": size}));
            participants.push(json!({"participant_id": pid, "user_id": format!("u-{n}"), "user_name": format!("Speaker {n}"), "join_time": rec_s, "duration": 60}));
            end = end.max(v.end_s);
        }
        let session = format!("sess-{prefix}-{i}");
        let recording = json!({
            "id": recording_id, "room_name": room_name, "start_ts": rec_s, "status": "finished",
            "duration": end.ceil(), "mtgSessionId": session, "s3key": null, "tracks": tracks,
        });
        self.backends.daily.add_recording(recording.clone());
        self.backends.daily.add_participants(&session, participants);
        Meeting {
            workflow_id: intake::workflow_id(&recording_id),
            recording_id,
            webhook: ready_to_download(&recording),
        }
    }

    /// Deliver `m`'s webhook as Daily does, retrying (as Daily would) until reflow accepts it
    /// (a Temporal server down for a moment answers 5xx); the transcript id.
    pub async fn deliver(&self, m: &Meeting) -> String {
        let hook = format!("http://{}/v1/daily/webhook", self.api);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, answer) = self
                .backends
                .daily
                .send_webhook(&hook, DAILY_SECRET, &m.webhook, false)
                .await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook of {} is refused: {status} {answer}",
                m.recording_id
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.db
            .transcript_id_of_recording(&m.recording_id)
            .await
            .expect("read the recording")
            .expect("intake created the transcript")
    }

    /// Deliver `m` and wait (10 minutes at most, then panic) for its run to close: the
    /// transcript id and the run's result.
    pub async fn run(&self, m: &Meeting) -> (String, Result<Value, reflow::runs::RunError>) {
        let tid = self.deliver(m).await;
        let out = tokio::time::timeout(
            Duration::from_secs(600),
            reflow::runs::wait(&self.client, &m.workflow_id),
        )
        .await
        .unwrap_or_else(|_| panic!("{} does not close within 10 minutes", m.workflow_id));
        (tid, out)
    }

    /// A transcript's events as a WebSocket client connecting now receives them: the replay of
    /// the log (which leaves out `TRANSCRIPT` and `STATUS`, Reflector's rule) and the latest
    /// progress, then live events until `STATUS ended`/`error` or until `quiet` passes without
    /// one (the server's pings do not count).
    pub async fn replay(&self, transcript_id: &str, quiet: Duration) -> Vec<Value> {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/v1/transcripts/{transcript_id}/events",
            self.api
        ))
        .await
        .expect("websocket");
        let mut out = Vec::new();
        let mut until = tokio::time::Instant::now() + quiet;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let event: Value = serde_json::from_str(&t).expect("JSON event");
                let last = event["event"] == "STATUS"
                    && matches!(event["data"]["value"].as_str(), Some("ended" | "error"));
                out.push(event);
                if last {
                    break;
                }
                until = tokio::time::Instant::now() + quiet;
            }
        }
        let _ = ws.close(None).await;
        out
    }
}

/// A [`Stack`] on a fresh SQLite database (behind an S3 fault proxy when `proxy`), with an
/// in-process worker serving the meeting pipeline's queues; `asr_latency` as in
/// [`Backends::start`]. Hold [`exclusive`] while it runs.
pub async fn in_process(asr_latency: Duration, proxy: bool) -> (Stack, crate::InProcessWorker) {
    in_process_with(asr_latency, proxy, |_| {}).await
}

/// [`in_process`] with the worker's services changed by `configure` first (a service left
/// unconfigured, as an operator might).
pub async fn in_process_with(
    asr_latency: Duration,
    proxy: bool,
    configure: impl FnOnce(&mut reflow::registry::Services),
) -> (Stack, crate::InProcessWorker) {
    let dir = tempfile::Builder::new()
        .prefix("reflow-stack-db-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let db_url = format!("sqlite://{}/reflow.db", dir.display());
    let backends = Backends::start(asr_latency).await;
    let stack = Stack::start(
        &db_url,
        crate::client().await,
        backends,
        proxy,
        short_timeouts(),
    )
    .await;
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let mut services = stack.services(100);
    configure(&mut services);
    let worker = crate::InProcessWorker::start_with(&queues, services);
    (stack, worker)
}

/// A `reflow worker` process (the test registry's build of it), SIGKILLed when dropped.
pub struct WorkerProcess {
    child: std::process::Child,
}

impl WorkerProcess {
    /// Start `binary worker --queues …` with `env`, its log appended to `log`.
    pub fn spawn(binary: &Path, queues: &[&str], env: &[(String, String)], log: &Path) -> Self {
        Self::spawn_with(&[], binary, queues, env, log)
    }

    /// [`WorkerProcess::spawn`] under `prefix`, a command that runs the rest (`ip netns exec
    /// <name>`: [`crate::netns::NetNs::exec_prefix`]) and execs it, so the pid stays the
    /// worker's.
    pub fn spawn_with(
        prefix: &[String],
        binary: &Path,
        queues: &[&str],
        env: &[(String, String)],
        log: &Path,
    ) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("worker log");
        // `setpriv --pdeathsig`: a test killed mid-run takes its worker with it.
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg("setpriv");
                c
            }
            None => std::process::Command::new("setpriv"),
        };
        let child = command
            .arg("--pdeathsig=SIGKILL")
            .arg(binary)
            .args(["worker", "--queues", &queues.join(",")])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn the worker");
        WorkerProcess { child }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (reaped if so).
    pub fn try_wait(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Send `sig` (`libc::SIGTERM`, `SIGSTOP`, …).
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling the child process this handle owns (not yet reaped: `try_wait`
        // and `kill` reap it, after which the pid is not signalled again by the tests).
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One activity execution as the server recorded it (the last attempt's start to its close).
#[derive(Debug, Clone)]
pub struct ActivitySpan {
    /// Its task queue.
    pub queue: String,
    /// Activity type.
    pub activity: String,
    /// When the last attempt started.
    pub started: std::time::SystemTime,
    /// When it closed.
    pub closed: std::time::SystemTime,
}

/// Every closed activity of `workflow_ids` and of all their child workflows, from history.
pub async fn activity_spans(
    client: &temporalio_client::Client,
    workflow_ids: &[String],
) -> Vec<ActivitySpan> {
    let mut todo: Vec<String> = workflow_ids.to_vec();
    let mut spans = Vec::new();
    let at = |ms: i64| std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    while let Some(id) = todo.pop() {
        let run = reflow::history::load(client, &id)
            .await
            .unwrap_or_else(|e| panic!("history of {id}: {e}"));
        for s in run.steps.iter().filter(|s| !s.local) {
            if let (Some(start), Some(close)) = (&s.started, &s.close)
                && !matches!(close, reflow::history::Close::Canceled { .. })
            {
                spans.push(ActivitySpan {
                    queue: s.task_queue.clone(),
                    activity: s.activity_type.clone(),
                    started: at(start.at_ms),
                    closed: at(close.at_ms()),
                });
            }
        }
        todo.extend(run.children.iter().map(|c| c.workflow_id.clone()));
    }
    spans
}

/// The most activities that ran at one moment, per task queue (the worker's slots in use).
pub fn peak_concurrency(spans: &[ActivitySpan]) -> BTreeMap<String, usize> {
    let mut by_queue: BTreeMap<String, Vec<(std::time::SystemTime, i32)>> = BTreeMap::new();
    for s in spans {
        let edges = by_queue.entry(s.queue.clone()).or_default();
        edges.push((s.started, 1));
        edges.push((s.closed, -1));
    }
    by_queue
        .into_iter()
        .map(|(queue, mut edges)| {
            // A close and a start at the same instant: the close first.
            edges.sort();
            let (mut now, mut peak) = (0i32, 0i32);
            for (_, d) in edges {
                now += d;
                peak = peak.max(now);
            }
            (queue, peak as usize)
        })
        .collect()
}
