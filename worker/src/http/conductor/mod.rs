//! The Conductor-compatible status shim (docs/contracts/conductor-status.md): `GET
//! /api/workflow/{id}`, `GET /api/workflow/{id}/status` and `POST /api/workflow/{id}/retry`.
//!
//! A run is read once as a typed [`crate::history::Run`] (with its children, loaded
//! concurrently, and the `step_attempt` rows of each), turned into the typed Workflow JSON of
//! [`model`] by [`view`] (rows per attempt in [`rows`]), and redacted for callers who are not
//! the operator. Retries are [`crate::retry`]'s, within what [`budget`] allows the caller (never
//! on a locked transcript; an owner's retry never unpauses an operator's pause and resets a step
//! at most its `maximum_attempts` times per run). Errors answer in Conductor's body
//! ([`ConductorError`]), never with internal error text.

pub mod budget;
pub mod graph;
pub mod model;
pub mod rows;
pub mod view;

use axum::Router;
use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiState;
use super::auth::Caller;
use crate::history::HistoryError;
use crate::retry::RetryError;
use view::Loaded;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/workflow/{id}", get(workflow_json))
        .route("/api/workflow/{id}/graph.svg", get(workflow_svg))
        .route("/api/workflow/{id}/status", get(status_json))
        .route("/api/workflow/{id}/retry", post(retry))
}

/// Conductor's error body: `{status, message, instance, retryable}`.
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

    fn unavailable() -> Self {
        ConductorError::new(StatusCode::SERVICE_UNAVAILABLE, "Temporal unavailable")
    }
}

impl From<HistoryError> for ConductorError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::NotFound(id) => ConductorError::new(
                StatusCode::NOT_FOUND,
                format!("No such workflow found by id: {id}"),
            ),
            other => {
                tracing::warn!(error = %other, "reading a run from Temporal");
                ConductorError::unavailable()
            }
        }
    }
}

impl From<RetryError> for ConductorError {
    fn from(e: RetryError) -> Self {
        let status = match &e {
            RetryError::NotFound(_) => StatusCode::NOT_FOUND,
            RetryError::StillRunning | RetryError::NothingToRetry => StatusCode::CONFLICT,
            RetryError::Temporal(why) => {
                tracing::warn!(error = %why, "retry refused");
                return ConductorError::unavailable();
            }
        };
        ConductorError::new(status, e.to_string())
    }
}

impl IntoResponse for ConductorError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({
                "status": self.status.as_u16(), "message": self.message,
                "instance": instance(), "retryable": self.status.is_server_error(),
            })),
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

/// A query parameter that does not parse (`includeTasks=maybe`): 400 in Conductor's body.
fn bad_parameter(e: QueryRejection) -> ConductorError {
    ConductorError::new(
        StatusCode::BAD_REQUEST,
        format!("Invalid query parameter: {}", e.body_text()),
    )
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

/// Who is asking for run `id`, if they may see it (docs/contracts/events-and-api.md §5.1: the
/// operator or the owner of the run's transcript; a share-link token is no bearer token).
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

fn client(state: &ApiState) -> Result<&temporalio_client::Client, ConductorError> {
    state
        .temporal
        .as_ref()
        .ok_or_else(ConductorError::unavailable)
}

/// What Temporal said of runs read while answering one request: (workflow, run) → the first
/// run of its chain and its parent's (workflow, run).
type Chains =
    tokio::sync::Mutex<BTreeMap<(String, String), Option<(String, Option<(String, String)>)>>>;

async fn chain_of(
    client: &temporalio_client::Client,
    chains: &Chains,
    workflow_id: &str,
    run_id: &str,
) -> Option<(String, Option<(String, String)>)> {
    let key = (workflow_id.to_owned(), run_id.to_owned());
    if let Some(known) = chains.lock().await.get(&key) {
        return known.clone();
    }
    let found = crate::history::chain_of(client, workflow_id, run_id)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(workflow_id, run_id, error = %e, "run not described");
            None
        });
    chains.lock().await.insert(key, found.clone());
    found
}

/// The latest run of `id` with the `step_attempt` rows of its reset chain (§4): its own, those
/// of the runs a retry reset it from and, for a child, those of the children its parent's
/// chain started before. Rows of unrelated earlier runs of the id (a reprocess, a new start
/// after a failure) are left out.
async fn load(state: &ApiState, id: &str, chains: &Chains) -> Result<Loaded, ConductorError> {
    let client = client(state)?;
    let (run, attempts) = tokio::join!(
        crate::history::load(client, id),
        state.events.db().attempts(id)
    );
    let run = run?;
    let mut attempts = attempts.unwrap_or_else(|e| {
        tracing::warn!(workflow_id = %id, error = %e, "step_attempt rows not read");
        Vec::new()
    });
    let others: BTreeSet<String> = attempts
        .iter()
        .filter(|a| !a.run_id.is_empty() && a.run_id != run.run_id)
        .map(|a| a.run_id.clone())
        .collect();
    let mut belong: BTreeSet<String> = BTreeSet::new();
    for other in others {
        let Some((first, parent)) = chain_of(client, chains, id, &other).await else {
            continue;
        };
        let same_chain = !first.is_empty() && first == run.first_run_id;
        let same_parent_chain = match (&parent, &run.parent_id, &run.parent_run_id) {
            (Some((pw, pr)), Some(w), Some(r)) if pw == w => {
                pr == r
                    || {
                        let theirs = chain_of(client, chains, pw, pr).await;
                        let ours = chain_of(client, chains, w, r).await;
                        matches!((theirs, ours), (Some((a, _)), Some((b, _))) if !a.is_empty() && a == b)
                    }
            }
            _ => false,
        };
        if same_chain || same_parent_chain {
            belong.insert(other);
        }
    }
    attempts
        .retain(|a| a.run_id.is_empty() || a.run_id == run.run_id || belong.contains(&a.run_id));
    Ok(Loaded { run, attempts })
}

/// The latest run of `id` and of each child it started, each with its attempts.
async fn load_with_children(
    state: &ApiState,
    id: &str,
) -> Result<(Loaded, Vec<Loaded>), ConductorError> {
    let chains = Chains::default();
    let main = load(state, id, &chains).await?;
    // Children at once (a meeting has one per track); one that cannot be read is left out.
    let children: Vec<Loaded> = futures::future::join_all(
        main.run
            .children
            .iter()
            .map(|c| load(state, &c.workflow_id, &chains)),
    )
    .await
    .into_iter()
    .filter_map(Result::ok)
    .collect();
    Ok((main, children))
}

async fn workflow_json(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<WorkflowQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ConductorError> {
    let caller = authorized(&state, &headers, &id).await?;
    let Query(q) = q.map_err(bad_parameter)?;
    let (main, children) = load_with_children(&state, &id).await?;
    let workflow = view::workflow(&main, &children, q.include_tasks.unwrap_or(true));
    let mut json = serde_json::to_value(&workflow).map_err(|e| {
        tracing::error!(error = %e, "serializing the Conductor view");
        ConductorError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    if !ApiState::sees_full_failures(&caller) {
        super::redact::conductor_json(&mut json);
    }
    Ok(axum::Json(json))
}

/// `GET /api/workflow/{id}/graph.svg` (reflow's extension, beside the JSON it leaves
/// unchanged): the definition the run is pinned to, drawn by `reflow graph`, each step as the
/// Conductor view of the run has it ([`graph`]), for embedding.
async fn workflow_svg(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ConductorError> {
    authorized(&state, &headers, &id).await?;
    let (main, children) = load_with_children(&state, &id).await?;
    let Some(pipeline) = main.run.pipeline() else {
        return Err(ConductorError::new(
            StatusCode::NOT_FOUND,
            format!("{id} is not a run of a reflow pipeline"),
        ));
    };
    let view = view::workflow(&main, &children, true);
    let child_runs: Vec<crate::history::Run> = children.into_iter().map(|c| c.run).collect();
    let svg = graph::svg(&pipeline, &main.run, &child_runs, &view);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            // Drawn text only: nothing in it may run or load anything.
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}

async fn status_json(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> Result<axum::Json<model::StatusBody>, ConductorError> {
    authorized(&state, &headers, &id).await?;
    let Query(q) = q.map_err(bad_parameter)?;
    let run = crate::history::load(client(&state)?, &id).await?;
    Ok(axum::Json(model::StatusBody {
        workflow_id: run.workflow_id.clone(),
        correlation_id: view::correlation_id(&run),
        output: q
            .include_output
            .unwrap_or(false)
            .then(|| view::output(&run)),
        variables: q.include_variables.unwrap_or(false).then(Map::new),
        status: view::status(&run),
    }))
}

/// `POST /api/workflow/{id}/retry` (docs/contracts/conductor-status.md §4): 204, or 409 when there
/// is nothing to retry; 403 for a locked transcript; for an owner, 409 when an operator paused a
/// step and 429 when a step's resets are spent ([`budget`]).
async fn retry(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ConductorError> {
    let caller = authorized(&state, &headers, &id).await?;
    budget::refuse_locked(state.events.db(), &id).await?;
    let client = client(&state)?;
    if matches!(caller, Caller::User(_)) {
        let _one = budget::OWNER_RETRIES.lock().await;
        budget::owner_may_retry(client, &id).await?;
        crate::retry::retry_run(client, &state.events, &id).await?;
    } else {
        crate::retry::retry_run(client, &state.events, &id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
