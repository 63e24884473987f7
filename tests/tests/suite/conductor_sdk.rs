//! The official Conductor SDKs against reflow's Conductor-compatible `/api`
//! (docs/contracts/conductor-status.md): `conductor-python` and `@io-orkes/conductor-javascript`,
//! pinned in `tests/conductor-sdk/` (`requirements.txt`, `package-lock.json`) and installed by
//! `just setup-test`, run as subprocesses (`sdk_python.py`, `sdk_node.mjs`) against a meeting of
//! the production pipeline (`pipelines/diarization.yaml`, stand-in backends, a real Temporal dev
//! server):
//!
//! - its transcriptions refused: both SDKs read the FAILED run with and without tasks, its status
//!   (with and without output) and the failed track's `TrackProcessing` child; the Python SDK
//!   retries it (`OrkesWorkflowClient.retry_workflow`) and it fails again; the JavaScript SDK
//!   retries it (`WorkflowExecutor.retry`); both read it RUNNING, a transcription IN_PROGRESS;
//!   then COMPLETED.
//! - every SDK call succeeds and gives back everything reflow sent, unchanged (Python through its
//!   models' attribute maps, which drop unknown keys and coerce values; JavaScript as parsed).
//!   Neither SDK checks types at run time, so reflow's own JSON (fetched with reqwest) is also
//!   compared with each SDK's declared models, which the scripts dump (Python: `swagger_types`,
//!   `attribute_map` and the statuses its setters allow; JavaScript: the TypeScript declarations
//!   in `dist/index.d.ts`, read with the TypeScript compiler): every key a known attribute, every
//!   value of the declared JSON type, required keys present, no nulls.
//! - the values a client reads: refs (`pad_track_0`, `transcribe_track_1`, `join_transcription`),
//!   statuses, times in epoch milliseconds.
//!
//! The API is served with an operator token. The SDKs authenticate with `X-Authorization` after a
//! `/token` exchange that reflow does not have; reflow takes `Authorization: Bearer` only (an
//! `X-Authorization` header is shown refused), so the scripts send it through each SDK's
//! custom-header mechanism.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reflow_tests::meetings::{self, Backends, Stack, voices};
use reflow_tests::standins::{self, Reply, StandIn};
use serde_json::{Value, json};

/// The operator token of the API the SDKs talk to.
const TOKEN: &str = "conductor-sdk-operator-token";

/// What the transcription stand-in answers for now.
#[derive(Debug, Clone)]
enum Asr {
    /// 401 for good to the first track asked (remembered here), the words to the others: one
    /// track fails the run, always the same one, whatever order load gives the requests.
    Refuse(Option<String>),
    /// The words, this late.
    Slow(Duration),
    /// The words at once.
    Fast,
}

/// One of the SDKs, run by its script in `tests/conductor-sdk/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    Python,
    Node,
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conductor-sdk")
}

impl Sdk {
    fn name(self) -> &'static str {
        match self {
            Sdk::Python => "conductor-python",
            Sdk::Node => "@io-orkes/conductor-javascript",
        }
    }

    /// The version the repository pins.
    fn pinned(self) -> String {
        let dir = sdk_dir();
        match self {
            Sdk::Python => std::fs::read_to_string(dir.join("requirements.txt"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("conductor-python==").map(str::to_owned))
                .expect("requirements.txt pins conductor-python"),
            Sdk::Node => {
                let p: Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.join("package.json")).unwrap(),
                )
                .unwrap();
                p["dependencies"][self.name()].as_str().unwrap().to_owned()
            }
        }
    }

    /// What `just setup-test` installs, missing.
    fn missing(self) -> Option<String> {
        let dir = sdk_dir();
        let need = match self {
            Sdk::Python => dir.join(".venv/bin/python"),
            Sdk::Node => dir.join("node_modules/@io-orkes/conductor-javascript/package.json"),
        };
        (!need.exists()).then(|| need.display().to_string())
    }

    fn command(self) -> tokio::process::Command {
        let dir = sdk_dir();
        let (program, script) = match self {
            Sdk::Python => (dir.join(".venv/bin/python"), "sdk_python.py"),
            Sdk::Node => (PathBuf::from("node"), "sdk_node.mjs"),
        };
        let mut c = tokio::process::Command::new(program);
        c.arg(dir.join(script)).current_dir(&dir);
        // Both SDKs read their server and credentials from these before their config.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CONDUCTOR_")) {
            c.env_remove(k);
        }
        c
    }

    /// Run the script with `plan` against the API at `api`: what it wrote (panics with its
    /// output if it fails).
    async fn run(self, api: &str, mut plan: Value) -> Value {
        let out = tempfile::NamedTempFile::new().unwrap();
        plan["server"] = json!(format!("http://{api}/api"));
        plan["token"] = json!(TOKEN);
        plan["out"] = json!(out.path());
        let started = Instant::now();
        let ran = tokio::time::timeout(
            Duration::from_secs(90),
            self.command()
                .arg(plan.to_string())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 90 s: {plan}", self.name()))
        .unwrap_or_else(|e| panic!("{} could not start: {e}", self.name()));
        assert!(
            ran.status.success(),
            "{} failed ({}) on {plan} (an SDK missing or of another version: `just setup-test` \
             installs the pinned ones):\n{}\n{}",
            self.name(),
            ran.status,
            String::from_utf8_lossy(&ran.stderr),
            String::from_utf8_lossy(&ran.stdout)
        );
        eprintln!("{}: {:.1} s", self.name(), started.elapsed().as_secs_f64());
        serde_json::from_slice(&std::fs::read(out.path()).unwrap()).unwrap()
    }

    /// Its installed version (the pinned one) and its models, or a panic that says to run
    /// `just setup-test`.
    async fn models(self) -> Value {
        if let Some(path) = self.missing() {
            panic!(
                "{} is not installed ({path} is missing): `just setup-test` installs the pinned \
                 Conductor SDKs into tests/conductor-sdk/ (.venv from requirements.txt, \
                 node_modules with `npm ci`)",
                self.name()
            );
        }
        // No call is made: any address will do.
        let got = self.run("127.0.0.1:9", json!({"models": true})).await;
        let version = got["version"].as_str().unwrap().trim_start_matches('v');
        assert_eq!(
            version,
            self.pinned(),
            "{} installed is not the pinned one: run `just setup-test`",
            self.name()
        );
        got["models"].clone()
    }
}

/// What both SDKs read in one state of the run.
struct Reads {
    /// Workflow ids, with or without their tasks.
    workflows: Vec<(String, bool)>,
    /// Workflow ids whose status summary is read (with and without output).
    statuses: Vec<String>,
}

impl Reads {
    fn plan(&self, retry: Option<&str>) -> Value {
        json!({
            "workflows": self.workflows.iter().map(|(id, t)| json!({"id": id, "includeTasks": t})).collect::<Vec<_>>(),
            "statuses": self.statuses,
            "retry": retry,
        })
    }

    /// The requests behind the SDK calls of [`Reads::plan`].
    fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .workflows
            .iter()
            .map(|(id, t)| workflow_url(id, *t))
            .collect();
        for id in &self.statuses {
            urls.extend([status_url(id, true), status_url(id, false)]);
        }
        urls
    }
}

fn workflow_url(id: &str, tasks: bool) -> String {
    format!("/api/workflow/{id}?includeTasks={tasks}")
}

fn status_url(id: &str, output: bool) -> String {
    format!("/api/workflow/{id}/status?includeOutput={output}&includeVariables={output}")
}

/// The request behind one call a script made (`None`: the retry).
fn url_of(call: &Value) -> Option<String> {
    let id = call["id"].as_str()?;
    match call["model"].as_str()? {
        "Workflow" => Some(workflow_url(id, call["includeTasks"].as_bool()?)),
        "WorkflowStatus" => Some(status_url(id, call["includeOutput"].as_bool()?)),
        other => panic!("a call returning {other}"),
    }
}

/// reflow's JSON, as the operator fetches it.
async fn raw(api: &str, url: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("http://{api}{url}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every URL of `urls`, once two fetches in a row agree (a closed run's children may still be
/// settling).
async fn settled(api: &str, urls: &[String]) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = fetch(api, urls).await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fetch(api, urls).await;
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the view of {urls:?} does not settle"
        );
        last = now;
    }
}

/// Every URL of `urls`, once.
async fn fetch(api: &str, urls: &[String]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for u in urls {
        all.insert(u.clone(), raw(api, u).await);
    }
    all
}

/// Where `value` departs from `ty`, a type as an SDK declares it (the scripts' `{kind, of,
/// model, enum, sdk}`): a key that is no attribute of its model, a value of another JSON type or
/// outside the declared literals, a set (Python's `set[str]`) with an item twice, a missing
/// required key, a null.
fn departures(value: &Value, ty: &Value, models: &Value, path: &str, out: &mut Vec<String>) {
    let kind = ty["kind"].as_str().expect("a kind");
    if kind == "any" {
        return;
    }
    if value.is_null() {
        out.push(format!("{path}: null where {} is declared", ty["sdk"]));
        return;
    }
    if kind == "union" {
        let fits = ty["of"].as_array().unwrap().iter().any(|t| {
            let mut o = Vec::new();
            departures(value, t, models, path, &mut o);
            o.is_empty()
        });
        if !fits {
            out.push(format!("{path}: {value} is none of {}", ty["sdk"]));
        }
        return;
    }
    let fits = match kind {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "map" | "model" => value.is_object(),
        other => panic!("unknown kind {other} in {ty}"),
    };
    if !fits {
        out.push(format!(
            "{path}: {value} is not {kind} ({} declared)",
            ty["sdk"]
        ));
        return;
    }
    if let Some(allowed) = ty["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {}", ty["enum"]));
    }
    match kind {
        "array" => {
            let items = value.as_array().unwrap();
            if ty["sdk"].as_str().is_some_and(|t| t.starts_with("set["))
                && (1..items.len()).any(|i| items[..i].contains(&items[i]))
            {
                out.push(format!("{path}: {value} repeats an item of a set"));
            }
            for (i, v) in items.iter().enumerate() {
                departures(v, &ty["of"], models, &format!("{path}[{i}]"), out);
            }
        }
        "map" => {
            for (k, v) in value.as_object().unwrap() {
                departures(v, &ty["of"], models, &format!("{path}.{k}"), out);
            }
        }
        "model" => {
            let name = ty["model"].as_str().unwrap();
            let model = &models[name];
            if model.is_null() {
                // A type the SDK has no attribute map for: kept as it came.
                return;
            }
            let object = value.as_object().unwrap();
            for (k, v) in object {
                match model["keys"].get(k) {
                    Some(t) => departures(v, t, models, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: not an attribute of {name}")),
                }
            }
            for r in model["required"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                if !object.contains_key(r) {
                    out.push(format!("{path}.{r}: required by {name}, missing"));
                }
            }
        }
        _ => {}
    }
}

/// Where what an SDK gave back differs from what reflow sent: a key dropped, a value changed
/// (string lists compared as sets: the Python SDK holds them as sets; numbers by value). Keys
/// only the SDK has (its models' defaults) go to `added`.
fn kept(sent: &Value, got: &Value, path: &str, out: &mut Vec<String>, added: &mut Vec<String>) {
    match (sent, got) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                match g.get(k) {
                    Some(gv) => kept(v, gv, &format!("{path}.{k}"), out, added),
                    None => out.push(format!("{path}.{k}: dropped")),
                }
            }
            for (k, v) in g {
                if !s.contains_key(k) {
                    added.push(format!("{path}.{k} = {v}"));
                }
            }
        }
        (Value::Array(s), Value::Array(g)) if path.ends_with("TaskNames") => {
            let mut s = s.clone();
            let mut g = g.clone();
            s.sort_by_key(Value::to_string);
            g.sort_by_key(Value::to_string);
            if s != g {
                out.push(format!("{path}: sent {s:?}, got {g:?}"));
            }
        }
        (Value::Array(s), Value::Array(g)) if s.len() == g.len() => {
            for (i, (sv, gv)) in s.iter().zip(g).enumerate() {
                kept(sv, gv, &format!("{path}[{i}]"), out, added);
            }
        }
        // The same number (JavaScript writes 8.0 as 8); a declared integer is checked apart.
        (Value::Number(s), Value::Number(g)) if s.as_f64() == g.as_f64() => {}
        _ if sent != got => out.push(format!("{path}: sent {sent}, got {got}")),
        _ => {}
    }
}

/// Both SDKs with their models, and what the test saw of them.
struct Clients {
    api: String,
    models: BTreeMap<&'static str, Value>,
    /// Calls made, by SDK and call name.
    calls: BTreeMap<String, usize>,
    /// Keys an SDK added to what reflow sent (its defaults), once each.
    added: BTreeMap<String, String>,
}

impl Clients {
    /// `sdk` reads `reads` (then retries `retry`); `sent` is reflow's JSON of the same requests,
    /// fetched before. `stable`: the run is closed, so what the SDK got must equal what was
    /// sent; else only the ids and `status`.
    async fn read(
        &mut self,
        sdk: Sdk,
        reads: &Reads,
        sent: &BTreeMap<String, Value>,
        stable: bool,
        retry: Option<&str>,
    ) {
        let got = sdk.run(&self.api, reads.plan(retry)).await;
        let models = &self.models[sdk.name()];
        let calls = got["calls"].as_array().unwrap();
        assert_eq!(
            calls.len(),
            reads.urls().len() + usize::from(retry.is_some()),
            "{calls:?}"
        );
        for call in calls {
            *self
                .calls
                .entry(format!("{} {}", sdk.name(), call["call"].as_str().unwrap()))
                .or_default() += 1;
            let Some(url) = url_of(call) else {
                assert_eq!(call["id"].as_str(), retry);
                continue;
            };
            let sent = &sent[&url];
            let model = call["model"].as_str().unwrap();
            let what = format!("{} {} {url}", sdk.name(), call["call"]);
            // reflow's JSON against the SDK's model, and what the SDK made of it.
            let ty = json!({"kind": "model", "model": model, "sdk": model});
            let mut out = Vec::new();
            departures(sent, &ty, models, model, &mut out);
            assert!(
                out.is_empty(),
                "reflow's {url} does not fit {}'s {model}:\n{}",
                sdk.name(),
                out.join("\n")
            );
            let result = &call["result"];
            departures(result, &ty, models, model, &mut out);
            assert!(out.is_empty(), "{what}:\n{}", out.join("\n"));
            if stable {
                let mut added = Vec::new();
                kept(sent, result, model, &mut out, &mut added);
                assert!(
                    out.is_empty(),
                    "{what} is not what reflow sent:\n{}",
                    out.join("\n")
                );
                for a in added {
                    let (k, v) = a.split_once(" = ").unwrap();
                    self.added
                        .entry(format!("{} {k}", sdk.name()))
                        .or_insert_with(|| v.to_owned());
                }
            } else {
                // The run goes on between reflow's answer and the SDK's own read of it: the
                // SDK may see it one state later (RUNNING, then ended), never another run.
                assert_eq!(result["workflowId"], sent["workflowId"], "{what}");
                let moved_on = sent["status"] == "RUNNING"
                    && ["COMPLETED", "FAILED", "TERMINATED", "TIMED_OUT"]
                        .contains(&result["status"].as_str().unwrap_or_default());
                assert!(
                    result["status"] == sent["status"] || moved_on,
                    "{what}: the SDK read {} where reflow sent {}",
                    result["status"],
                    sent["status"]
                );
            }
        }
    }

    /// Both SDKs read `reads`, one after the other: what reflow sent.
    async fn read_both(&mut self, reads: &Reads, stable: bool) -> BTreeMap<String, Value> {
        let sent = if stable {
            settled(&self.api, &reads.urls()).await
        } else {
            fetch(&self.api, &reads.urls()).await
        };
        self.read(Sdk::Python, reads, &sent, stable, None).await;
        self.read(Sdk::Node, reads, &sent, stable, None).await;
        sent
    }
}

/// A time in epoch milliseconds (`0`: not yet, when `zero_ok`).
fn epoch_ms(v: &Value, what: &str, zero_ok: bool) -> i64 {
    let ms = v
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: {v} is no integer"));
    if zero_ok && ms == 0 {
        return 0;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (1_600_000_000_000..=now + 60_000).contains(&ms),
        "{what}: {ms} is no epoch millisecond time (now {now})"
    );
    ms
}

fn tasks(w: &Value) -> &[Value] {
    w["tasks"].as_array().map_or(&[], Vec::as_slice)
}

fn refs(w: &Value) -> Vec<&str> {
    tasks(w)
        .iter()
        .map(|t| t["referenceTaskName"].as_str().unwrap())
        .collect()
}

fn rows<'a>(w: &'a Value, reference: &str) -> Vec<&'a Value> {
    tasks(w)
        .iter()
        .filter(|t| t["referenceTaskName"] == reference)
        .collect()
}

/// The contract's values (§2, §3) that a client reads: names, status, times.
fn workflow_values(w: &Value, name: &str, status: &str) {
    let id = w["workflowId"].as_str().unwrap();
    assert_eq!(w["workflowName"], name, "{id}");
    assert_eq!(w["status"], status, "{id}: {}", w["reasonForIncompletion"]);
    let start = epoch_ms(&w["startTime"], "startTime", false);
    assert_eq!(w["createTime"], w["startTime"]);
    assert!(epoch_ms(&w["updateTime"], "updateTime", false) >= start);
    let end = epoch_ms(&w["endTime"], "endTime", true);
    assert_eq!(end == 0, status == "RUNNING", "{id}: endTime {end}");
    assert!(end == 0 || end >= start);
    epoch_ms(&w["lastRetriedTime"], "lastRetriedTime", true);
    for (i, t) in tasks(w).iter().enumerate() {
        let r = t["referenceTaskName"].as_str().unwrap();
        assert_eq!(t["seq"], i + 1, "{id} {r}");
        epoch_ms(&t["scheduledTime"], &format!("{r} scheduledTime"), false);
        for k in ["startTime", "endTime", "updateTime", "firstStartTime"] {
            epoch_ms(&t[k], &format!("{id} {r} {k}"), true);
        }
        match t["status"].as_str().unwrap() {
            "IN_PROGRESS" | "SCHEDULED" => assert_eq!(t["endTime"], 0, "{id}: {t}"),
            "COMPLETED" | "FAILED" | "FAILED_WITH_TERMINAL_ERROR" if t["taskType"] != "FORK" => {
                assert!(
                    t["endTime"].as_i64() >= t["startTime"].as_i64(),
                    "{id}: {t}"
                );
                assert!(t["endTime"].as_i64() > Some(0), "{id}: {t}");
            }
            _ => {}
        }
    }
}

/// A status summary (`GET …/status`) of `w`.
fn status_values(s: &Value, w: &Value, output: bool) {
    assert_eq!(s["workflowId"], w["workflowId"]);
    assert_eq!(s["correlationId"], w["correlationId"]);
    assert_eq!(s["status"], w["status"]);
    if output {
        assert_eq!(s["output"], w["output"]);
        assert_eq!(s["variables"], json!({}));
    } else {
        assert!(
            s.get("output").is_none() && s.get("variables").is_none(),
            "{s}"
        );
    }
}

/// The parent's fan-out rows a Conductor-era client looks for.
fn parent_refs(w: &Value, both_tracks: bool) {
    let refs = refs(w);
    for r in [
        "get_recording",
        "get_participants",
        "fork_track_padding",
        "pad_track_0",
        "pad_track_1",
        "join_padding",
        "fork_transcription",
        "join_transcription",
    ] {
        assert!(refs.contains(&r), "{r}: {refs:?}");
    }
    let tracks = (0..2)
        .filter(|i| refs.contains(&format!("transcribe_track_{i}").as_str()))
        .count();
    assert!(
        tracks == 2 || (!both_tracks && tracks == 1),
        "transcription rows: {refs:?}"
    );
    assert!(!refs.contains(&"mark_failed"), "internal: {refs:?}");
}

/// A stack whose transcription stand-in answers as `asr` says at the time of the request.
async fn stack(asr: Arc<Mutex<Asr>>) -> (Stack, reflow_tests::InProcessWorker) {
    let transcription = StandIn::start(move |r| match meetings::asr_key(r) {
        Some(key) => {
            let words = Reply::Json(meetings::asr_words(&key));
            match &mut *asr.lock().unwrap() {
                Asr::Refuse(refused) => {
                    if *refused.get_or_insert_with(|| key.clone()) == key {
                        Reply::status(401)
                    } else {
                        words
                    }
                }
                Asr::Slow(d) => Reply::After(*d, Box::new(words)),
                Asr::Fast => words,
            }
        }
        None => Reply::status(400),
    })
    .await;
    let backends = Backends {
        asr: transcription,
        llm: StandIn::start(meetings::tagged_chat_reply).await,
        zulip: standins::zulip(meetings::ZULIP_BOT.0, meetings::ZULIP_BOT.1).await,
        receiver: standins::webhook_receiver(meetings::HOOK_SECRET).await,
        daily: reflow_tests::daily::DailyStandIn::start(meetings::DAILY_KEY).await,
    };
    let dir = tempfile::Builder::new()
        .prefix("reflow-conductor-sdk-db-")
        .tempdir()
        .unwrap()
        .keep();
    let stack = Stack::start(
        &format!("sqlite://{}/reflow.db", dir.display()),
        reflow_tests::client().await,
        backends,
        false,
        meetings::short_timeouts(),
    )
    .await;
    let queues: Vec<String> = meetings::QUEUES.iter().map(|q| q.to_string()).collect();
    let worker = reflow_tests::InProcessWorker::start_with(&queues, stack.services(100));
    (stack, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conductor_sdks_read_and_retry_a_meeting() {
    let began = Instant::now();
    let _one = meetings::exclusive().await;
    let asr = Arc::new(Mutex::new(Asr::Refuse(None)));
    // The SDKs' models (and whether they are installed at all) while the stack starts.
    let (python, node, (stack, _worker)) =
        tokio::join!(Sdk::Python.models(), Sdk::Node.models(), stack(asr.clone()));
    // The API the SDKs use: the same stack's, with an operator token.
    let api = reflow_tests::serve_api(reflow::http::ApiState {
        api_token: Some(TOKEN.into()),
        temporal: Some(stack.client.clone()),
        intake: Some(stack.intake.clone()),
        ..reflow::http::ApiState::new(stack.events.clone(), stack.storage.clone())
    })
    .await;
    let mut clients = Clients {
        api: api.clone(),
        models: BTreeMap::from([(Sdk::Python.name(), python), (Sdk::Node.name(), node)]),
        calls: BTreeMap::new(),
        added: BTreeMap::new(),
    };

    // A meeting one of whose transcriptions is refused for good: the run fails.
    let tracks = tempfile::tempdir().unwrap();
    let m = stack
        .meeting("conductor-sdk", 0, &voices(tracks.path(), 2))
        .await;
    let wf = m.workflow_id.clone();
    let (tid, out) = stack.run(&m).await;
    assert!(out.is_err(), "the meeting fails");

    // reflow takes the operator's token as a bearer token only.
    let http = reqwest::Client::new();
    let url = format!("http://{api}{}", workflow_url(&wf, false));
    for (header, value) in [
        ("X-Authorization", TOKEN.to_owned()),
        ("Authorization", TOKEN.to_owned()),
    ] {
        let r = http.get(&url).header(header, value).send().await.unwrap();
        assert_eq!(r.status(), 401, "{header}");
    }

    // FAILED: the run, its status, the failed track's child.
    let w = raw(&api, &workflow_url(&wf, true)).await;
    let failed: Vec<String> = w["failedReferenceTaskNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|r| r.starts_with("transcribe_track_")),
        "{failed:?}"
    );
    let first = failed[0].clone();
    let child = rows(&w, &first)[0]["workflowInstanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        child,
        format!("{wf}-track-{}", &first["transcribe_track_".len()..])
    );
    let reads = Reads {
        workflows: vec![
            (wf.clone(), true),
            (wf.clone(), false),
            (child.clone(), true),
        ],
        statuses: vec![wf.clone(), child.clone()],
    };
    let sent = settled(&api, &reads.urls()).await;
    let check_failed = |sent: &BTreeMap<String, Value>, attempts: usize| {
        let w = &sent[&workflow_url(&wf, true)];
        workflow_values(w, "DiarizationPipeline", "FAILED");
        assert_eq!(w["correlationId"], tid.as_str());
        parent_refs(w, false);
        let reason = w["reasonForIncompletion"].as_str().unwrap();
        assert!(
            reason.starts_with("step transcribe_track_") && reason.contains("401"),
            "{reason}"
        );
        let bare = &sent[&workflow_url(&wf, false)];
        assert_eq!(w["failedTaskNames"], json!(["transcribe_track"]), "a set");
        assert_eq!(bare["tasks"], json!([]));
        assert_eq!(
            bare["failedReferenceTaskNames"],
            w["failedReferenceTaskNames"]
        );
        let c = &sent[&workflow_url(&child, true)];
        workflow_values(c, "TrackProcessing", "FAILED");
        assert_eq!(c["parentWorkflowId"], wf.as_str());
        assert!(refs(c).iter().all(|r| *r == first), "{c}");
        let last = tasks(c).last().unwrap();
        assert_eq!(last["status"], "FAILED_WITH_TERMINAL_ERROR");
        assert!(
            last["reasonForIncompletion"]
                .as_str()
                .unwrap()
                .contains("401")
        );
        assert_eq!(rows(w, &first).len(), attempts);
        for (id, run) in [(&wf, w), (&child, c)] {
            status_values(&sent[&status_url(id, true)], run, true);
            status_values(&sent[&status_url(id, false)], run, false);
        }
    };
    check_failed(&sent, 1);
    assert_eq!(sent[&workflow_url(&wf, true)]["lastRetriedTime"], 0);
    clients.read(Sdk::Node, &reads, &sent, true, None).await;
    // The Python SDK retries it; the transcription is refused again.
    clients
        .read(Sdk::Python, &reads, &sent, true, Some(&wf))
        .await;
    let again = reflow::runs::wait(&stack.client, &wf).await;
    assert!(again.is_err(), "refused again");
    let sent = settled(&api, &reads.urls()).await;
    check_failed(&sent, 2);
    let w = &sent[&workflow_url(&wf, true)];
    assert!(
        epoch_ms(&w["lastRetriedTime"], "lastRetriedTime", false)
            > epoch_ms(&w["startTime"], "startTime", false)
    );
    let attempts = rows(w, &first);
    assert_eq!(attempts[0]["retried"], true);
    assert_eq!(attempts[1]["retriedTaskId"], attempts[0]["taskId"]);
    clients.read(Sdk::Python, &reads, &sent, true, None).await;
    // The JavaScript SDK retries it; the transcriptions now take a while: RUNNING.
    *asr.lock().unwrap() = Asr::Slow(Duration::from_secs(25));
    clients
        .read(Sdk::Node, &reads, &sent, true, Some(&wf))
        .await;
    reflow_tests::wait_for(
        "a transcription runs again",
        Duration::from_secs(60),
        || async {
            let w = raw(&api, &workflow_url(&wf, true)).await;
            (w["status"] == "RUNNING"
                && tasks(&w)
                    .iter()
                    .any(|t| t["taskType"] == "transcribe_track" && t["status"] == "IN_PROGRESS"))
            .then_some(())
        },
    )
    .await;
    *asr.lock().unwrap() = Asr::Fast;
    let sent = clients.read_both(&reads, false).await;
    let w = &sent[&workflow_url(&wf, true)];
    workflow_values(w, "DiarizationPipeline", "RUNNING");
    parent_refs(w, false);
    assert_eq!(w["failedReferenceTaskNames"], json!([]));
    let running = rows(w, &first);
    let row = running.last().unwrap();
    assert_eq!(row["status"], "IN_PROGRESS", "{row}");
    assert!(row["startTime"].as_i64() > Some(0));
    assert_eq!(row["retriedTaskId"], running[running.len() - 2]["taskId"]);
    let c = &sent[&workflow_url(&child, true)];
    workflow_values(c, "TrackProcessing", "RUNNING");
    assert_eq!(sent[&status_url(&wf, false)]["status"], "RUNNING");

    // COMPLETED.
    let done = tokio::time::timeout(
        Duration::from_secs(300),
        reflow::runs::wait(&stack.client, &wf),
    )
    .await
    .expect("the retried run ends");
    done.unwrap_or_else(|e| panic!("the retried run fails: {e}"));
    let sent = clients.read_both(&reads, true).await;
    let w = &sent[&workflow_url(&wf, true)];
    workflow_values(w, "DiarizationPipeline", "COMPLETED");
    parent_refs(w, true);
    assert_eq!(w["failedReferenceTaskNames"], json!([]));
    assert!(w.get("reasonForIncompletion").is_none());
    assert_eq!(
        w["output"].as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "transcript_id",
            "title",
            "summary",
            "duration",
            "word_count"
        ]
    );
    assert_eq!(w["output"]["transcript_id"], tid.as_str());
    for i in 0..2 {
        let r = rows(w, &format!("transcribe_track_{i}"));
        assert_eq!(r.last().unwrap()["status"], "COMPLETED", "{r:?}");
    }
    assert_eq!(
        rows(w, &first).len(),
        3,
        "two refused attempts, then the one that ran"
    );
    assert_eq!(rows(w, "join_transcription")[0]["status"], "COMPLETED");
    let c = &sent[&workflow_url(&child, true)];
    workflow_values(c, "TrackProcessing", "COMPLETED");
    assert_eq!(tasks(c).last().unwrap()["status"], "COMPLETED");
    for (id, run) in [(&wf, w), (&child, c)] {
        status_values(&sent[&status_url(id, true)], run, true);
    }

    eprintln!("SDK calls made: {:#?}", clients.calls);
    eprintln!(
        "keys the SDKs added to reflow's JSON (their defaults): {:#?}",
        clients.added
    );
    eprintln!("conductor_sdk: {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn departures_name_every_kind_of_mismatch() {
    let models = json!({
        "W": {"keys": {
            "id": {"kind": "string", "sdk": "str"},
            "n": {"kind": "integer", "sdk": "int"},
            "status": {"kind": "string", "enum": ["RUNNING"], "sdk": "str"},
            "names": {"kind": "array", "of": {"kind": "string", "sdk": "str"}, "sdk": "set[str]"},
            "data": {"kind": "map", "of": {"kind": "any", "sdk": "object"}, "sdk": "dict(str, object)"},
        }, "required": ["id"]},
    });
    let ty = json!({"kind": "model", "model": "W", "sdk": "W"});
    let mut out = Vec::new();
    departures(
        &json!({"id": "a", "n": 1, "status": "RUNNING", "names": ["x", "y"], "data": {"k": null}}),
        &ty,
        &models,
        "W",
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    departures(
        &json!({"n": 1.5, "status": "DONE", "names": ["x", "x"], "data": [], "extra": 1, "id2": null}),
        &ty,
        &models,
        "W",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "W.n: 1.5 is not integer (\"int\" declared)",
            "W.status: \"DONE\" is not one of [\"RUNNING\"]",
            "W.names: [\"x\",\"x\"] repeats an item of a set",
            "W.data: [] is not map (\"dict(str, object)\" declared)",
            "W.extra: not an attribute of W",
            "W.id2: not an attribute of W",
            "W.id: required by W, missing",
        ]
    );
}
