//! The Conductor-compatible status shim (conductor-status.md): `GET /api/workflow/{id}`,
//! `GET /api/workflow/{id}/status`, computed from Temporal and the `step_attempt` table, and
//! `POST /api/workflow/{id}/retry`, a Temporal reset to just before the earliest failed step
//! (completed steps answer from their checkpoints, so nothing paid is redone).
//!
//! Sources, per run: describe-workflow (status, times, pending activities with their attempt,
//! heartbeat and backoff), the history (scheduled activities with their options and input,
//! the close of each, child workflows; `local: true` steps from their local-activity markers,
//! which carry the input, the last attempt and the result or failure), and `step_attempt` (one row per attempt, which
//! Temporal does not keep). Each attempt becomes a task row; a fan-out becomes a FORK row, its
//! members and a JOIN row; activities of child workflows are listed flattened under the fan-out
//! that started them. Refs are the activity ids the pipeline gave (`pad_track_2`); fan-out refs
//! are `fork_{name}` / `join_{name}`, where `name` is the fan-out step's id, or the activity
//! type for activities of child workflows. A local step is listed once it finished (a marker is
//! written then); while it runs, its `step_attempt` row is all there is. The local progress
//! reporter is internal and not listed.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};
use workflow::interpreter::REPORT_PROGRESS;
use workflow::pipeline::{Pipeline, Run, Step};

use super::ApiState;
use super::auth::Caller;
use activities::db::attempts::AttemptRow;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/workflow/{id}", get(workflow_json))
        .route("/api/workflow/{id}/status", get(status_json))
        .route("/api/workflow/{id}/retry", axum::routing::post(retry))
}

/// Conductor's error body.
#[derive(Debug)]
pub struct ConductorError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ConductorError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConductorError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ConductorError {
    fn into_response(self) -> Response {
        let host = instance();
        (
            self.status,
            axum::Json(
                json!({"status": self.status.as_u16(), "message": self.message,
                              "instance": host, "retryable": self.status.is_server_error()}),
            ),
        )
            .into_response()
    }
}

/// Conductor's `instance`: this host's name, read once.
fn instance() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkflowQuery {
    include_tasks: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusQuery {
    include_output: Option<bool>,
    include_variables: Option<bool>,
}

/// Who is asking for run `id`, if they may see it (events-and-api.md §5.1: the operator or the
/// owner of the run's transcript; a share-link token is no bearer token).
async fn authorized(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
) -> Result<Caller, ConductorError> {
    let to_conductor = |e: super::ApiError| ConductorError::new(e.status, e.detail);
    let caller = state.caller(headers).map_err(to_conductor)?;
    state.run_access(&caller, id).await.map_err(to_conductor)?;
    Ok(caller)
}

async fn workflow_json(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<WorkflowQuery>,
) -> Result<axum::Json<Value>, ConductorError> {
    let caller = authorized(&state, &headers, &id).await?;
    let exec = Execution::load(&state, &id, 0).await?;
    let mut json = exec
        .workflow(&state, q.include_tasks.unwrap_or(true))
        .await?;
    if !ApiState::sees_full_failures(&caller) {
        super::redact::conductor_json(&mut json);
    }
    Ok(axum::Json(json))
}

async fn status_json(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
) -> Result<axum::Json<Value>, ConductorError> {
    authorized(&state, &headers, &id).await?;
    let exec = Execution::load(&state, &id, 0).await?;
    let mut out = Map::new();
    out.insert("workflowId".into(), json!(exec.workflow_id));
    if let Some(c) = exec.correlation_id() {
        out.insert("correlationId".into(), json!(c));
    }
    if q.include_output.unwrap_or(false) {
        out.insert("output".into(), exec.output());
    }
    if q.include_variables.unwrap_or(false) {
        out.insert("variables".into(), json!({}));
    }
    out.insert("status".into(), json!(exec.conductor_status()));
    Ok(axum::Json(Value::Object(out)))
}

/// `POST /api/workflow/{id}/retry` (conductor-status.md §4): reset the latest run to the
/// workflow task before its earliest failed step (for a completed run, its earliest step that
/// completed with errors); 204, or 409 when there is nothing to retry.
async fn retry(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ConductorError> {
    authorized(&state, &headers, &id).await?;
    retry_run(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resume the latest run of `id` from just before its earliest failed step (a Temporal reset;
/// completed steps are not run again). Returns the new run's id. 409 while it runs, or when
/// nothing failed.
pub(crate) async fn retry_run(state: &ApiState, id: &str) -> Result<String, ConductorError> {
    let exec = Execution::load(state, id, 0).await?;
    let pipeline = exec.pipeline();
    let failed = |a: &&Act| {
        let optional = exec.optional(pipeline.as_ref(), a);
        matches!(a.close, Some(Close::Failed { .. } | Close::TimedOut { .. }))
            && (optional == (exec.status == 2))
    };
    let target = match exec.status {
        1 => {
            // A step waiting out its retry backoff (or paused): `temporal activity reset`.
            let reset = reset_waiting_activities(state, &exec).await?;
            if reset == 0 {
                return Err(ConductorError::new(
                    StatusCode::CONFLICT,
                    "Workflow is still running. status=RUNNING",
                ));
            }
            resume_transcript(state, id).await;
            return Ok(exec.run_id.clone());
        }
        2 => exec
            .acts
            .iter()
            .find(failed)
            .map(|a| a.reset_point)
            .ok_or_else(|| {
                ConductorError::new(StatusCode::CONFLICT, "There are no retryable tasks")
            })?,
        _ => exec
            .acts
            .iter()
            .find(failed)
            .map(|a| a.reset_point)
            .or(exec.failed_child_reset_point)
            .unwrap_or(exec.first_task_completed),
    };
    if target <= 0 {
        return Err(ConductorError::new(
            StatusCode::CONFLICT,
            "There are no retryable tasks",
        ));
    }
    let client = state.temporal.as_ref().ok_or_else(|| {
        ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "no Temporal connection")
    })?;
    let request = temporalio_common::protos::temporal::api::workflowservice::v1::ResetWorkflowExecutionRequest {
        namespace: temporalio_client::NamespacedClient::namespace(client),
        workflow_execution: Some(temporalio_common::protos::temporal::api::common::v1::WorkflowExecution {
            workflow_id: id.to_owned(),
            run_id: exec.run_id.clone(),
        }),
        reason: "conductor-retry".into(),
        workflow_task_finish_event_id: target,
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let reset = client
        .connection()
        .workflow_service()
        .reset_workflow_execution(tonic::Request::new(request))
        .await
        .map_err(|e| {
            ConductorError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reset refused: {}", e.message()),
            )
        })?;
    let run_id = reset.into_inner().run_id;
    tracing::info!(workflow_id = %id, event = target, run_id = %run_id, "run reset for a retry");
    resume_transcript(state, id).await;
    Ok(run_id)
}

/// Reset every activity of the run (and of its running children) that waits in retry backoff
/// or is paused: attempt back to 1, scheduled now, unpaused. Returns how many.
async fn reset_waiting_activities(
    state: &ApiState,
    exec: &Execution,
) -> Result<usize, ConductorError> {
    use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
    use temporalio_common::protos::temporal::api::workflowservice::v1::{
        ResetActivityRequest, reset_activity_request,
    };
    let client = state.temporal.as_ref().ok_or_else(|| {
        ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "no Temporal connection")
    })?;
    let waiting = |pending: &[Value]| -> Vec<String> {
        pending
            .iter()
            .filter(|p| {
                let backoff = p["state"].as_i64() == Some(1) && p["attempt"].as_i64() > Some(1);
                backoff || p["paused"].as_bool() == Some(true)
            })
            .filter_map(|p| p["activity_id"].as_str().map(str::to_owned))
            .collect()
    };
    let mut targets: Vec<(String, String, String)> = waiting(&exec.pending)
        .into_iter()
        .map(|a| (exec.workflow_id.clone(), exec.run_id.clone(), a))
        .collect();
    for child in &exec.children {
        let handle = client.get_workflow_handle::<UntypedWorkflow>(child);
        let Ok(desc) = handle.describe(WorkflowDescribeOptions::default()).await else {
            continue;
        };
        let desc = serde_json::to_value(&desc.raw_description).unwrap_or(Value::Null);
        if desc["workflow_execution_info"]["status"].as_i64() != Some(1) {
            continue;
        }
        let run = desc["workflow_execution_info"]["execution"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pending = desc["pending_activities"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        targets.extend(
            waiting(&pending)
                .into_iter()
                .map(|a| (child.clone(), run.clone(), a)),
        );
    }
    for (workflow_id, run_id, activity_id) in &targets {
        let request = ResetActivityRequest {
            namespace: temporalio_client::NamespacedClient::namespace(client),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.clone(),
                run_id: run_id.clone(),
            }),
            identity: "reflow-conductor-retry".into(),
            reset_heartbeat: true,
            activity: Some(reset_activity_request::Activity::Id(activity_id.clone())),
            ..Default::default()
        };
        client
            .connection()
            .workflow_service()
            .reset_activity(tonic::Request::new(request))
            .await
            .map_err(|e| {
                ConductorError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("activity reset refused: {}", e.message()),
                )
            })?;
        tracing::info!(workflow_id = %workflow_id, activity_id = %activity_id, "activity reset for a retry");
    }
    Ok(targets.len())
}

/// After a retry, a transcript in `error` is `processing` again (pipeline.md §5), with STATUS.
async fn resume_transcript(state: &ApiState, workflow_id: &str) {
    let db = state.events.db();
    let Ok(Some(tid)) = db.transcript_of_workflow(workflow_id).await else {
        return;
    };
    match db.resume_from_error(&tid).await {
        Ok(true) => {
            if let Err(e) = state
                .events
                .announce(&tid, "STATUS", serde_json::json!({"value": "processing"}))
                .await
            {
                tracing::warn!(transcript_id = %tid, error = %e, "STATUS not published");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(transcript_id = %tid, error = %e, "status not resumed"),
    }
}

/// Epoch ms of an RFC 3339 time (0 when absent or unreadable).
fn ms(t: Option<&str>) -> i64 {
    t.and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A `WorkflowExecution` field (`workflowId`/`runId`; serialized in camel case).
fn execution_field<'a>(execution: &'a Value, camel: &str, snake: &str) -> Option<&'a str> {
    execution[camel]
        .as_str()
        .or_else(|| execution[snake].as_str())
        .filter(|s| !s.is_empty())
}

/// Seconds of a protobuf JSON duration (`"10.000000000s"`).
fn secs(d: &Value) -> i64 {
    d.as_str()
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .map_or(0, |s| s.round() as i64)
}

/// The JSON value of the first payload of `payloads` (`{"payloads": [{"data": base64}]}`).
pub(crate) fn payload(payloads: &Value) -> Value {
    payloads["payloads"][0]["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The root cause of a failure in history: its type (or `timeout: KIND`) and message.
/// Failures are in protobuf JSON (`applicationFailureInfo`, `timeoutType:
/// "TIMEOUT_TYPE_HEARTBEAT"`), the rest of the history event in serde's snake case.
fn failure(f: &Value) -> (String, String) {
    let mut root = f;
    while !root["cause"].is_null() {
        root = &root["cause"];
    }
    let kind = root["applicationFailureInfo"]["type"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            let t = &root["timeoutFailureInfo"]["timeoutType"];
            let name = match t.as_str() {
                Some(s) => s.trim_start_matches("TIMEOUT_TYPE_").to_owned(),
                None => timeout_name(t.as_i64()?).to_owned(),
            };
            Some(format!("timeout: {name}"))
        })
        .unwrap_or_default();
    (
        kind,
        root["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn timeout_name(t: i64) -> &'static str {
    match t {
        1 => "START_TO_CLOSE",
        2 => "SCHEDULE_TO_START",
        3 => "SCHEDULE_TO_CLOSE",
        4 => "HEARTBEAT",
        _ => "UNSPECIFIED",
    }
}

/// How an activity closed, from history.
#[derive(Debug, Clone)]
enum Close {
    Completed {
        at: i64,
        result: Value,
    },
    Failed {
        at: i64,
        kind: String,
        message: String,
        non_retryable: bool,
    },
    TimedOut {
        at: i64,
        kind: String,
    },
    Canceled {
        at: i64,
    },
}

/// One scheduled activity of a run.
#[derive(Debug, Clone)]
struct Act {
    activity_id: String,
    activity_type: String,
    scheduled: i64,
    input: Value,
    response_timeout: i64,
    max_attempts: i64,
    started: Option<(i64, i64, String)>,
    /// The previous attempt's failure (`{type}`, message), from `ActivityTaskStarted`.
    last_failure: Option<(String, String)>,
    close: Option<Close>,
    /// The `WorkflowTaskCompleted` event that scheduled it (a reset point).
    reset_point: i64,
    /// A `local: true` step (a local activity marker, not a scheduled activity).
    local: bool,
}

/// The marker Temporal's Core SDK records for a finished local activity.
const LOCAL_ACTIVITY_MARKER: &str = "core_local_activity";

/// A `local: true` step from its history marker, recorded at `at` when the activity finished
/// (its last attempt, its input and its result or failure are in the marker; its attempts'
/// times are in `step_attempt`). `None` for other markers and for the progress reporter.
fn local_act(a: &Value, at: i64) -> Option<Act> {
    if a["marker_name"].as_str() != Some(LOCAL_ACTIVITY_MARKER) {
        return None;
    }
    let details = &a["details"];
    let data = payload(&details["data"]);
    let activity_type = data["activity_type"].as_str()?.to_owned();
    if activity_type == REPORT_PROGRESS {
        return None;
    }
    let stamp = |t: &Value| {
        t["seconds"].as_i64().map_or(0, |s| {
            s * 1000 + t["nanos"].as_i64().unwrap_or(0) / 1_000_000
        })
    };
    let scheduled = match stamp(&data["original_schedule_time"]) {
        0 => at,
        t => t.min(at),
    };
    let close = if a["failure"].is_object() {
        let (kind, message) = failure(&a["failure"]);
        if kind.starts_with("timeout: ") {
            Close::TimedOut { at, kind }
        } else {
            Close::Failed {
                at,
                kind,
                message,
                non_retryable: a["failure"]["applicationFailureInfo"]["nonRetryable"]
                    .as_bool()
                    .unwrap_or(false),
            }
        }
    } else {
        Close::Completed {
            at,
            result: payload(&details["result"]),
        }
    };
    Some(Act {
        activity_id: data["activity_id"].as_str().unwrap_or_default().to_owned(),
        activity_type,
        scheduled,
        input: payload(&details["input"]),
        response_timeout: 0,
        max_attempts: 0,
        started: Some((
            scheduled,
            data["attempt"].as_i64().unwrap_or(1),
            String::new(),
        )),
        last_failure: None,
        close: Some(close),
        reset_point: a["workflow_task_completed_event_id"].as_i64().unwrap_or(0),
        local: true,
    })
}

/// One Temporal run, as far as the shim needs it.
struct Execution {
    workflow_id: String,
    run_id: String,
    workflow_type: String,
    /// Temporal `WorkflowExecutionStatus` number.
    status: i64,
    start: i64,
    close: i64,
    update: i64,
    input: Value,
    result: Value,
    reason: Option<String>,
    parent_id: Option<String>,
    acts: Vec<Act>,
    pending: Vec<Value>,
    /// Child workflows started, in order.
    children: Vec<String>,
    /// Reset point before the earliest child that failed, if any.
    failed_child_reset_point: Option<i64>,
    /// The first `WorkflowTaskCompleted` event (reset point of a run that failed before any
    /// step).
    first_task_completed: i64,
}

impl Execution {
    async fn load(state: &ApiState, id: &str, depth: usize) -> Result<Execution, ConductorError> {
        let client = state.temporal.as_ref().ok_or_else(|| {
            ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "no Temporal connection")
        })?;
        let handle = client.get_workflow_handle::<UntypedWorkflow>(id);
        let not_found = |e: &dyn std::fmt::Display| {
            let text = e.to_string();
            if text.to_lowercase().contains("not found") {
                ConductorError::new(
                    StatusCode::NOT_FOUND,
                    format!("No such workflow found by id: {id}"),
                )
            } else {
                tracing::warn!(workflow_id = %id, error = %text, "reading the run from Temporal");
                ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "Temporal unavailable")
            }
        };
        let desc = handle
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| not_found(&e))?;
        let mut raw = desc.raw_description;
        // Pending activities' heartbeat details are payloads too.
        if let Err(e) = temporalio_common::payload_visitor::decode_payloads(
            &mut raw,
            temporalio_client::NamespacedClient::data_converter(client).codec(),
            &temporalio_common::data_converters::SerializationContextData::None,
        )
        .await
        {
            // Heartbeat details stay sealed; the rest of the view is still right.
            tracing::warn!(workflow_id = %id, error = %e, "decoding pending activities");
        }
        let desc = serde_json::to_value(&raw).unwrap_or(Value::Null);
        let history = crate::history::fetch(client, id)
            .await
            .map_err(|e| not_found(&e))?;
        let info = &desc["workflow_execution_info"];
        let mut exec = Execution {
            workflow_id: id.to_owned(),
            run_id: info["execution"]["run_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            workflow_type: info["type"]["name"].as_str().unwrap_or_default().to_owned(),
            status: info["status"].as_i64().unwrap_or(0),
            start: ms(info["start_time"].as_str()),
            close: ms(info["close_time"].as_str()),
            update: 0,
            input: Value::Null,
            result: Value::Null,
            reason: None,
            parent_id: execution_field(&info["parent_execution"], "workflowId", "workflow_id")
                .map(str::to_owned),
            acts: Vec::new(),
            pending: desc["pending_activities"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            children: Vec::new(),
            failed_child_reset_point: None,
            first_task_completed: 0,
        };
        let mut by_event: BTreeMap<i64, usize> = BTreeMap::new();
        // Child initiations: event id → its reset point.
        let mut child_points: BTreeMap<i64, i64> = BTreeMap::new();
        for e in crate::history::events(&history) {
            let at = ms(e.time);
            exec.update = exec.update.max(at);
            let (kind, a) = (e.kind, e.attrs);
            let scheduled = a["scheduled_event_id"]
                .as_i64()
                .and_then(|s| by_event.get(&s).copied());
            match kind {
                "WorkflowExecutionStartedEventAttributes" => {
                    exec.input = payload(&a["input"]);
                    if let Some(p) = execution_field(
                        &a["parent_workflow_execution"],
                        "workflowId",
                        "workflow_id",
                    ) {
                        exec.parent_id = Some(p.to_owned());
                    }
                }
                "WorkflowExecutionCompletedEventAttributes" => exec.result = payload(&a["result"]),
                "WorkflowExecutionFailedEventAttributes" => {
                    let (_, message) = failure(&a["failure"]);
                    exec.reason = Some(message);
                }
                "WorkflowExecutionTerminatedEventAttributes" => {
                    exec.reason = a["reason"].as_str().map(str::to_owned);
                }
                "WorkflowExecutionCanceledEventAttributes" => {
                    exec.reason = Some("canceled: the run was canceled".into());
                }
                "ActivityTaskScheduledEventAttributes" => {
                    let activity_type = a["activity_type"]["name"].as_str().unwrap_or_default();
                    if activity_type == REPORT_PROGRESS {
                        continue;
                    }
                    let heartbeat = secs(&a["heartbeat_timeout"]);
                    by_event.insert(e.id, exec.acts.len());
                    exec.acts.push(Act {
                        activity_id: a["activity_id"].as_str().unwrap_or_default().to_owned(),
                        activity_type: activity_type.to_owned(),
                        scheduled: at,
                        input: payload(&a["input"]),
                        response_timeout: if heartbeat > 0 {
                            heartbeat
                        } else {
                            secs(&a["start_to_close_timeout"])
                        },
                        max_attempts: a["retry_policy"]["maximum_attempts"].as_i64().unwrap_or(0),
                        started: None,
                        last_failure: None,
                        close: None,
                        reset_point: a["workflow_task_completed_event_id"].as_i64().unwrap_or(0),
                        local: false,
                    });
                }
                "ActivityTaskStartedEventAttributes" => {
                    if let Some(i) = scheduled {
                        exec.acts[i].started = Some((
                            at,
                            a["attempt"].as_i64().unwrap_or(1),
                            a["identity"].as_str().unwrap_or_default().to_owned(),
                        ));
                        let last = &a["last_failure"];
                        exec.acts[i].last_failure = (last.is_object()).then(|| failure(last));
                    }
                }
                "ActivityTaskCompletedEventAttributes" => {
                    if let Some(i) = scheduled {
                        exec.acts[i].close = Some(Close::Completed {
                            at,
                            result: payload(&a["result"]),
                        });
                    }
                }
                "ActivityTaskFailedEventAttributes" => {
                    if let Some(i) = scheduled {
                        let (kind, message) = failure(&a["failure"]);
                        // RetryState NON_RETRYABLE_FAILURE = 2.
                        exec.acts[i].close = Some(Close::Failed {
                            at,
                            kind,
                            message,
                            non_retryable: a["retry_state"].as_i64() == Some(2),
                        });
                    }
                }
                "ActivityTaskTimedOutEventAttributes" => {
                    if let Some(i) = scheduled {
                        let (kind, _) = failure(&a["failure"]);
                        exec.acts[i].close = Some(Close::TimedOut { at, kind });
                    }
                }
                "ActivityTaskCanceledEventAttributes" => {
                    if let Some(i) = scheduled {
                        exec.acts[i].close = Some(Close::Canceled { at });
                    }
                }
                "MarkerRecordedEventAttributes" => {
                    if let Some(act) = local_act(a, at) {
                        exec.acts.push(act);
                    }
                }
                "StartChildWorkflowExecutionInitiatedEventAttributes" => {
                    if let Some(w) = a["workflow_id"].as_str() {
                        exec.children.push(w.to_owned());
                    }
                    child_points.insert(
                        e.id,
                        a["workflow_task_completed_event_id"].as_i64().unwrap_or(0),
                    );
                }
                "ChildWorkflowExecutionFailedEventAttributes"
                | "ChildWorkflowExecutionTimedOutEventAttributes"
                | "StartChildWorkflowExecutionFailedEventAttributes" => {
                    let point = a["initiated_event_id"]
                        .as_i64()
                        .and_then(|i| child_points.get(&i).copied());
                    if exec.failed_child_reset_point.is_none() {
                        exec.failed_child_reset_point = point;
                    }
                }
                "WorkflowTaskCompletedEventAttributes" if exec.first_task_completed == 0 => {
                    exec.first_task_completed = e.id;
                }
                _ => {}
            }
        }
        let _ = depth;
        // A local step's timeout and attempts are in the pinned definition, not in history.
        if let Some(p) = exec.pipeline() {
            let filled: Vec<(usize, i64, i64)> = exec
                .acts
                .iter()
                .enumerate()
                .filter(|(_, a)| a.local)
                .filter_map(|(i, a)| {
                    let s = exec.step_of(Some(&p), a)?;
                    let timeout = s
                        .options
                        .start_to_close_ms
                        .or(s.options.schedule_to_close_ms)
                        .map_or(0, |t| (t / 1000) as i64);
                    Some((i, timeout, i64::from(s.options.retry.maximum_attempts)))
                })
                .collect();
            for (i, timeout, attempts) in filled {
                exec.acts[i].response_timeout = timeout;
                exec.acts[i].max_attempts = attempts;
            }
        }
        Ok(exec)
    }

    fn pipeline(&self) -> Option<Pipeline> {
        serde_json::from_value(self.input["pipeline"].clone()).ok()
    }

    fn correlation_id(&self) -> Option<String> {
        self.input["input"]["transcript_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn is_closed(&self) -> bool {
        self.status != 1
    }

    fn conductor_status(&self) -> &'static str {
        match self.status {
            1 if !self.pending.is_empty()
                && self
                    .pending
                    .iter()
                    .all(|p| p["paused"].as_bool() == Some(true)) =>
            {
                "PAUSED"
            }
            1 => "RUNNING",
            2 => "COMPLETED",
            3 => "FAILED",
            7 => "TIMED_OUT",
            4 | 5 => "TERMINATED",
            _ => "RUNNING",
        }
    }

    fn output(&self) -> Value {
        match (&self.result, self.status) {
            (Value::Object(_), 2) => self.result.clone(),
            (Value::Null, _) => json!({}),
            (v, 2) => json!({ "result": v }),
            _ => json!({}),
        }
    }

    /// Whether the pinned definition marks the step running `activity_id` optional.
    fn optional(&self, pipeline: Option<&Pipeline>, act: &Act) -> bool {
        self.step_of(pipeline, act).is_some_and(|s| s.optional)
    }

    /// The declared step `act` ran for.
    fn step_of<'p>(&self, pipeline: Option<&'p Pipeline>, act: &Act) -> Option<&'p Step> {
        let p = pipeline?;
        let graph = p.graph(&self.workflow_type).unwrap_or(&p.main);
        // The step with that id, else the fan-out it is a member of, else the only step of
        // that activity type (an `activity_id` template).
        let steps = &graph.steps;
        steps
            .iter()
            .find(|s| s.id == act.activity_id)
            .or_else(|| {
                steps.iter().find(|s| {
                    s.for_each.is_some() && act.activity_id.starts_with(&format!("{}_", s.id))
                })
            })
            .or_else(|| {
                let mut of_type = steps
                    .iter()
                    .filter(|s| matches!(&s.run, Run::Activity(a) if *a == act.activity_type));
                match (of_type.next(), of_type.next()) {
                    (Some(s), None) => Some(s),
                    _ => None,
                }
            })
    }

    /// Task rows of this run's activities (children not included), one per attempt.
    fn activity_rows(&self, pipeline: Option<&Pipeline>, attempts: &[AttemptRow]) -> Vec<Value> {
        let mut out = Vec::new();
        for act in &self.acts {
            let pending = self
                .pending
                .iter()
                .find(|p| p["activity_id"].as_str() == Some(act.activity_id.as_str()));
            let recorded: Vec<&AttemptRow> = attempts
                .iter()
                .filter(|a| a.activity_id == act.activity_id)
                .collect();
            let last = act
                .started
                .as_ref()
                .map(|s| s.1)
                .or_else(|| pending.and_then(|p| p["attempt"].as_i64()))
                .unwrap_or(1)
                .max(recorded.iter().map(|a| a.attempt).max().unwrap_or(1));
            let optional = self.optional(pipeline, act);
            let mut previous: Option<String> = None;
            for attempt in 1..=last {
                let db = recorded.iter().find(|a| a.attempt == attempt);
                let reference = &act.activity_id;
                let task_id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("{}/{reference}/{attempt}", self.run_id).as_bytes(),
                )
                .simple()
                .to_string();
                let mut row = Map::new();
                let start = db.map_or(0, |a| ms(Some(&a.started_at)));
                let end = db
                    .and_then(|a| a.ended_at.as_deref())
                    .map_or(0, |t| ms(Some(t)));
                let (mut status, mut reason, mut output) = match db.map(|a| a.status.as_str()) {
                    Some("completed") => ("COMPLETED", None, json!({})),
                    Some("non_retryable") => {
                        ("FAILED_WITH_TERMINAL_ERROR", failure_text(db), json!({}))
                    }
                    Some("failed") => ("FAILED", failure_text(db), json!({})),
                    Some("cancelled") => ("CANCELED", None, json!({})),
                    Some("skipped") => ("SKIPPED", None, json!({})),
                    // The attempt just before the last one: Temporal kept its failure.
                    Some(_) | None if attempt + 1 == last && act.last_failure.is_some() => {
                        let (kind, message) = act.last_failure.clone().unwrap_or_default();
                        if kind.starts_with("timeout: ") {
                            ("TIMED_OUT", Some(kind), json!({}))
                        } else {
                            ("FAILED", Some(reason_text(&kind, &message)), json!({}))
                        }
                    }
                    Some(_) if attempt < last => (
                        "TIMED_OUT",
                        Some("timeout: worker lost or timed out".to_owned()),
                        json!({}),
                    ),
                    Some(_) => ("IN_PROGRESS", None, json!({})),
                    None if attempt < last => (
                        "FAILED",
                        Some("attempt details not recorded".to_owned()),
                        json!({}),
                    ),
                    None => ("SCHEDULED", None, json!({})),
                };
                let (mut start, mut end, mut worker) =
                    (start, end, db.and_then(|a| a.worker_identity.clone()));
                let mut delay = 0;
                if attempt == last {
                    match (&act.close, pending) {
                        (Some(Close::Completed { at, result }), _) => {
                            status = "COMPLETED";
                            reason = None;
                            output = if result.is_object() {
                                result.clone()
                            } else {
                                json!({"result": result})
                            };
                            end = *at;
                        }
                        (
                            Some(Close::Failed {
                                at,
                                kind,
                                message,
                                non_retryable,
                            }),
                            _,
                        ) => {
                            status = if optional {
                                "COMPLETED_WITH_ERRORS"
                            } else if *non_retryable {
                                "FAILED_WITH_TERMINAL_ERROR"
                            } else {
                                "FAILED"
                            };
                            reason = Some(reason_text(kind, message));
                            end = *at;
                        }
                        (Some(Close::TimedOut { at, kind }), _) => {
                            status = if optional {
                                "COMPLETED_WITH_ERRORS"
                            } else {
                                "TIMED_OUT"
                            };
                            reason = Some(kind.clone());
                            end = *at;
                        }
                        (Some(Close::Canceled { at }), _) => {
                            status = "CANCELED";
                            end = *at;
                        }
                        (None, Some(p)) => {
                            // PendingActivityState: 1 SCHEDULED, 2 STARTED, 3 CANCEL_REQUESTED,
                            // 4 PAUSED, 5 PAUSE_REQUESTED.
                            let state = p["state"].as_i64().unwrap_or(1);
                            status = if matches!(state, 2 | 3) {
                                "IN_PROGRESS"
                            } else {
                                "SCHEDULED"
                            };
                            if status == "IN_PROGRESS" {
                                start = ms(p["last_started_time"].as_str()).max(start);
                                output = json!({"heartbeat": payload(&p["heartbeat_details"])});
                            } else {
                                let next = ms(p["next_attempt_schedule_time"].as_str());
                                if next > 0 {
                                    delay = ((next - now_ms()) / 1000).max(0);
                                }
                            }
                            if matches!(state, 4 | 5) {
                                reason = Some("paused: activity paused".into());
                            }
                            if let Some(w) =
                                p["last_worker_identity"].as_str().filter(|w| !w.is_empty())
                            {
                                worker = Some(w.to_owned());
                            }
                        }
                        (None, None) if self.is_closed() => {
                            status = "CANCELED";
                        }
                        (None, None) => {}
                    }
                    if let Some((at, _, identity)) = &act.started {
                        if start == 0 {
                            start = *at;
                        }
                        if worker.is_none() && !identity.is_empty() {
                            worker = Some(identity.clone());
                        }
                    }
                }
                let scheduled = if attempt == 1 {
                    act.scheduled
                } else {
                    start.max(act.scheduled)
                };
                let terminal = !matches!(status, "SCHEDULED" | "IN_PROGRESS");
                row.insert("taskType".into(), json!(act.activity_type));
                row.insert("taskDefName".into(), json!(act.activity_type));
                row.insert("referenceTaskName".into(), json!(reference));
                row.insert("taskId".into(), json!(task_id));
                row.insert("status".into(), json!(status));
                row.insert("retryCount".into(), json!(attempt - 1));
                if let Some(p) = &previous {
                    row.insert("retriedTaskId".into(), json!(p));
                }
                row.insert("retried".into(), json!(attempt < last));
                row.insert("executed".into(), json!(terminal));
                row.insert("scheduledTime".into(), json!(scheduled));
                row.insert("startTime".into(), json!(start));
                row.insert("endTime".into(), json!(if terminal { end } else { 0 }));
                row.insert("updateTime".into(), json!(end.max(start).max(scheduled)));
                row.insert("firstStartTime".into(), json!(act.scheduled));
                row.insert(
                    "queueWaitTime".into(),
                    json!(if start > 0 {
                        (start - scheduled).max(0)
                    } else {
                        0
                    }),
                );
                row.insert("startDelayInSeconds".into(), json!(delay));
                row.insert("callbackAfterSeconds".into(), json!(delay));
                row.insert("pollCount".into(), json!(i64::from(start > 0)));
                row.insert("responseTimeoutSeconds".into(), json!(act.response_timeout));
                if let Some(w) = worker {
                    row.insert("workerId".into(), json!(w));
                }
                row.insert(
                    "inputData".into(),
                    if act.input.is_object() {
                        act.input.clone()
                    } else {
                        json!({"input": act.input})
                    },
                );
                row.insert("outputData".into(), output);
                if let Some(r) = reason {
                    row.insert("reasonForIncompletion".into(), json!(r));
                }
                row.insert("workflowInstanceId".into(), json!(self.workflow_id));
                row.insert("workflowType".into(), json!(self.workflow_type));
                if let Some(c) = self.correlation_id() {
                    row.insert("correlationId".into(), json!(c));
                }
                row.insert(
                    "workflowTask".into(),
                    json!({"name": act.activity_type, "taskReferenceName": reference, "type": "SIMPLE",
                           "inputParameters": {}, "optional": optional,
                           "retryCount": (act.max_attempts - 1).max(0)}),
                );
                for (k, v) in [
                    ("callbackFromWorker", json!(true)),
                    ("loopOverTask", json!(false)),
                    ("workflowPriority", json!(0)),
                    ("iteration", json!(0)),
                    ("rateLimitPerFrequency", json!(0)),
                    ("rateLimitFrequencyInSeconds", json!(0)),
                ] {
                    row.insert(k.into(), v);
                }
                previous = Some(task_id);
                out.push(Value::Object(row));
            }
        }
        out
    }

    /// The Workflow JSON (§2).
    async fn workflow(
        &self,
        state: &ApiState,
        include_tasks: bool,
    ) -> Result<Value, ConductorError> {
        let pipeline = self.pipeline();
        let tasks = if include_tasks {
            self.tasks(state, pipeline.as_ref()).await?
        } else {
            Vec::new()
        };
        let failed: Vec<&Value> = latest_per_ref(&tasks)
            .into_iter()
            .filter(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("FAILED" | "FAILED_WITH_TERMINAL_ERROR" | "TIMED_OUT")
                )
            })
            .collect();
        let mut input = self.input["input"].clone();
        if let (Value::Object(m), Some(p)) = (&mut input, &pipeline) {
            m.insert("pipeline_hash".into(), json!(p.hash));
        }
        let mut w = Map::new();
        w.insert("workflowId".into(), json!(self.workflow_id));
        w.insert("workflowName".into(), json!(self.workflow_type));
        w.insert(
            "workflowVersion".into(),
            json!(pipeline.as_ref().map_or(1, |p| p.version)),
        );
        if let Some(c) = self.correlation_id() {
            w.insert("correlationId".into(), json!(c));
        }
        w.insert("status".into(), json!(self.conductor_status()));
        w.insert("createTime".into(), json!(self.start));
        w.insert("startTime".into(), json!(self.start));
        w.insert("updateTime".into(), json!(self.update));
        w.insert("endTime".into(), json!(self.close));
        w.insert(
            "input".into(),
            if input.is_object() { input } else { json!({}) },
        );
        w.insert("output".into(), self.output());
        if let Some(r) = &self.reason {
            w.insert("reasonForIncompletion".into(), json!(r));
        }
        w.insert(
            "failedReferenceTaskNames".into(),
            json!(
                failed
                    .iter()
                    .map(|t| t["referenceTaskName"].clone())
                    .collect::<Vec<_>>()
            ),
        );
        w.insert(
            "failedTaskNames".into(),
            json!(
                failed
                    .iter()
                    .map(|t| t["taskDefName"].clone())
                    .collect::<Vec<_>>()
            ),
        );
        if let Some(p) = &self.parent_id {
            w.insert("parentWorkflowId".into(), json!(p));
        }
        w.insert("priority".into(), json!(0));
        w.insert("variables".into(), json!({}));
        w.insert("taskToDomain".into(), json!({}));
        w.insert("lastRetriedTime".into(), json!(0));
        w.insert(
            "workflowDefinition".into(),
            definition(pipeline.as_ref(), &self.workflow_type),
        );
        w.insert("tasks".into(), Value::Array(tasks));
        Ok(Value::Object(w))
    }

    /// Every task row: this run's activities, and the activities of its children flattened
    /// under FORK/JOIN rows, ordered by scheduled time with `seq` set.
    async fn tasks(
        &self,
        state: &ApiState,
        pipeline: Option<&Pipeline>,
    ) -> Result<Vec<Value>, ConductorError> {
        let db = state.events.db();
        let attempts = db.attempts(&self.workflow_id).await.unwrap_or_default();
        let mut rows = self.activity_rows(pipeline, &attempts);
        // Activity fan-outs of this run: members are `{step}_{i}` of a step with for_each.
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        if let Some(p) = pipeline {
            let graph = p.graph(&self.workflow_type).unwrap_or(&p.main);
            for step in graph.steps.iter().filter(|s| s.for_each.is_some()) {
                if let Run::Activity(_) = step.run {
                    let prefix = format!("{}_", step.id);
                    let (members, rest): (Vec<Value>, Vec<Value>) =
                        rows.into_iter().partition(|r| {
                            r["referenceTaskName"]
                                .as_str()
                                .is_some_and(|n| n.starts_with(&prefix))
                        });
                    rows = rest;
                    if !members.is_empty() {
                        groups.push((step.id.clone(), members));
                    }
                }
            }
        }
        // Children: their activity rows, grouped by activity type.
        let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for child in &self.children {
            let Ok(exec) = Execution::load(state, child, 1).await else {
                continue;
            };
            let child_attempts = db.attempts(child).await.unwrap_or_default();
            let child_pipeline = exec.pipeline();
            for mut r in exec.activity_rows(child_pipeline.as_ref(), &child_attempts) {
                if let Value::Object(input) = &mut r["inputData"] {
                    input.insert("track_workflow_id".into(), json!(child));
                }
                let t = r["taskDefName"].as_str().unwrap_or_default().to_owned();
                by_type.entry(t).or_default().push(r);
            }
        }
        groups.extend(by_type);
        // Units: a plain row, or FORK + members + JOIN, ordered by their first scheduled time.
        let mut units: Vec<(i64, Vec<Value>)> = rows
            .into_iter()
            .map(|r| (r["scheduledTime"].as_i64().unwrap_or(0), vec![r]))
            .collect();
        for (name, mut members) in groups {
            members.sort_by_key(|m| {
                (
                    m["scheduledTime"].as_i64().unwrap_or(0),
                    m["retryCount"].as_i64().unwrap_or(0),
                )
            });
            let first = members[0]["scheduledTime"].as_i64().unwrap_or(0);
            let refs: Vec<Value> = distinct_refs(&members);
            let latest = latest_per_ref(&members);
            let all_terminal = latest
                .iter()
                .all(|m| !matches!(m["status"].as_str(), Some("SCHEDULED" | "IN_PROGRESS")));
            let all_ok = latest.iter().all(|m| {
                matches!(
                    m["status"].as_str(),
                    Some("COMPLETED" | "COMPLETED_WITH_ERRORS" | "SKIPPED")
                )
            });
            let join_status = if !all_terminal {
                if self.is_closed() {
                    "CANCELED"
                } else {
                    "IN_PROGRESS"
                }
            } else if all_ok {
                "COMPLETED"
            } else {
                "FAILED"
            };
            let end = latest
                .iter()
                .filter_map(|m| m["endTime"].as_i64())
                .max()
                .unwrap_or(0);
            let output: Map<String, Value> = latest
                .iter()
                .map(|m| {
                    (
                        m["referenceTaskName"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        m["outputData"].clone(),
                    )
                })
                .collect();
            let fork = synthetic(
                self,
                "FORK",
                &format!("fork_{name}"),
                "COMPLETED",
                first,
                first,
                json!({"forkedTasks": refs, "forkedTaskDefs": latest.iter().map(|m| m["workflowTask"].clone()).collect::<Vec<_>>()}),
                json!({}),
            );
            let join = synthetic(
                self,
                "JOIN",
                &format!("join_{name}"),
                join_status,
                first,
                if join_status == "IN_PROGRESS" { 0 } else { end },
                json!({"joinOn": refs}),
                Value::Object(output),
            );
            let mut unit = vec![fork];
            unit.extend(members);
            unit.push(join);
            units.push((first, unit));
        }
        units.sort_by_key(|u| u.0);
        let mut tasks: Vec<Value> = units.into_iter().flat_map(|u| u.1).collect();
        for (i, t) in tasks.iter_mut().enumerate() {
            t["seq"] = json!(i + 1);
        }
        Ok(tasks)
    }
}

/// A recorded attempt's failure as a `reasonForIncompletion`.
fn failure_text(a: Option<&&AttemptRow>) -> Option<String> {
    let a = a?;
    let message = a.failure_message.as_deref()?;
    Some(reason_text(
        a.failure_type.as_deref().unwrap_or_default(),
        message,
    ))
}

/// `reasonForIncompletion` of a failure: `{type}: {message}`, the bare message when the
/// failure has no type.
fn reason_text(kind: &str, message: &str) -> String {
    if kind.is_empty() {
        message.to_owned()
    } else {
        format!("{kind}: {message}")
    }
}

/// The last row (highest retryCount) of every ref, in first-seen order.
fn latest_per_ref(rows: &[Value]) -> Vec<&Value> {
    let mut latest: Vec<&Value> = Vec::new();
    for r in rows {
        let name = &r["referenceTaskName"];
        match latest.iter_mut().find(|l| &l["referenceTaskName"] == name) {
            Some(l) if l["retryCount"].as_i64() < r["retryCount"].as_i64() => *l = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    latest
}

fn distinct_refs(rows: &[Value]) -> Vec<Value> {
    let mut refs: Vec<Value> = Vec::new();
    for r in rows {
        if !refs.contains(&r["referenceTaskName"]) {
            refs.push(r["referenceTaskName"].clone());
        }
    }
    refs
}

#[allow(clippy::too_many_arguments)]
fn synthetic(
    exec: &Execution,
    kind: &str,
    reference: &str,
    status: &str,
    scheduled: i64,
    end: i64,
    input: Value,
    output: Value,
) -> Value {
    let task_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{}/{reference}/1", exec.run_id).as_bytes(),
    )
    .simple()
    .to_string();
    json!({
        "taskType": kind, "taskDefName": kind, "referenceTaskName": reference, "taskId": task_id,
        "status": status, "retryCount": 0, "retried": false,
        "executed": !matches!(status, "IN_PROGRESS" | "SCHEDULED"),
        "scheduledTime": scheduled, "startTime": scheduled, "endTime": end,
        "updateTime": end.max(scheduled), "firstStartTime": scheduled, "queueWaitTime": 0,
        "startDelayInSeconds": 0, "callbackAfterSeconds": 0, "pollCount": 0,
        "responseTimeoutSeconds": 0, "inputData": input, "outputData": output,
        "workflowInstanceId": exec.workflow_id, "workflowType": exec.workflow_type,
        "workflowTask": {"name": kind, "taskReferenceName": reference, "type": kind,
                         "inputParameters": {}, "optional": false, "retryCount": 0},
        "callbackFromWorker": true, "loopOverTask": false, "workflowPriority": 0, "iteration": 0,
        "rateLimitPerFrequency": 0, "rateLimitFrequencyInSeconds": 0,
    })
}

/// `workflowDefinition` from the pinned pipeline.
fn definition(pipeline: Option<&Pipeline>, workflow_type: &str) -> Value {
    let Some(p) = pipeline else {
        return json!({"name": workflow_type, "version": 1, "schemaVersion": 2, "timeoutSeconds": 0, "tasks": []});
    };
    let graph = p.graph(workflow_type).unwrap_or(&p.main);
    let tasks: Vec<Value> = graph
        .steps
        .iter()
        .map(|s| {
            let (name, kind) = match &s.run {
                Run::Activity(a) if s.for_each.is_some() => (a.clone(), "FORK_JOIN_DYNAMIC"),
                Run::Activity(a) => (a.clone(), "SIMPLE"),
                Run::Child(c) if s.for_each.is_some() => (c.clone(), "FORK_JOIN_DYNAMIC"),
                Run::Child(c) => (c.clone(), "SUB_WORKFLOW"),
            };
            json!({"name": name, "taskReferenceName": s.id, "type": kind, "inputParameters": {},
                   "optional": s.optional, "retryCount": (i64::from(s.options.retry.maximum_attempts) - 1).max(0)})
        })
        .collect();
    json!({"name": graph.name, "version": p.version, "schemaVersion": 2, "timeoutSeconds": 0, "tasks": tasks})
}
