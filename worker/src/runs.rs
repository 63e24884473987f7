//! Loading pipelines and starting, awaiting and inspecting runs.
//!
//! A run's input names a registered version of its definition ([`RunInput`]: name, version
//! and content hash; the worker resolves the definition, `workflow::interpreter::resolve`), so
//! the run is pinned to what was validated and registered; the same three go into the memo,
//! where `temporal workflow describe` and the Web UI show them. Register a definition first
//! (`reflow apply`, or [`crate::gitops::register`]): a run of an unregistered hash fails at
//! its first workflow task. The input also names the run's own workflow id, so that a copy
//! of it started under another id is refused (`workflow::interpreter::binding`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use temporalio_client::{
    Client, UntypedQuery, UntypedWorkflow, WorkflowGetResultOptions, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::MemoValues;
use temporalio_common::data_converters::RawValue;
use workflow::StepStatus;
use workflow::interpreter::resolve::Pinned;
use workflow::progress::{Progress, StepRow};
use workflow::workflows::PROGRESS_QUERY;
use workflow::{Catalog, Pipeline, RunInput, ValidationReport, payload};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The pipeline is invalid.
    #[error("{0}")]
    Invalid(#[from] ValidationReport),
    /// The input is not JSON.
    #[error("--input is not valid JSON: {0}")]
    Input(serde_json::Error),
    /// Temporal refused or failed a call.
    #[error("{action} {workflow_id}: {message}")]
    Temporal {
        /// What was being done.
        action: &'static str,
        /// The workflow.
        workflow_id: String,
        /// Why.
        message: String,
    },
    /// A run with this workflow id exists (or existed, under a reuse policy that forbids
    /// another).
    #[error("workflow {workflow_id} already started")]
    AlreadyStarted {
        /// The workflow.
        workflow_id: String,
        /// The existing run, when the server says.
        run_id: Option<String>,
    },
    /// No run of this workflow id is running.
    #[error("workflow {workflow_id} has no run in progress")]
    NotRunning {
        /// The workflow.
        workflow_id: String,
    },
    /// The run ended unsuccessfully.
    #[error("workflow {workflow_id} {message}")]
    Failed {
        /// The workflow.
        workflow_id: String,
        /// Its failure, cause chain included.
        message: String,
    },
}

/// Read and validate a pipeline file.
pub fn load_pipeline(path: &Path, catalog: &Catalog) -> Result<Pipeline, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(workflow::parse_and_validate(
        &path.display().to_string(),
        &text,
        catalog,
    )?)
}

/// A started run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartedRun {
    /// Workflow id.
    pub workflow_id: String,
    /// Run id of the first run.
    pub run_id: Option<String>,
}

/// Start the registered version `pipeline` with `input` as workflow `workflow_id` (a failed
/// or terminated run of the same id may be replaced; a running one may not).
pub async fn start(
    client: &Client,
    pipeline: &Pipeline,
    input: Value,
    workflow_id: &str,
) -> Result<StartedRun, RunError> {
    start_with(
        client,
        pipeline,
        input,
        workflow_id,
        WorkflowIdReusePolicy::AllowDuplicateFailedOnly,
    )
    .await
}

/// [`start`] with an explicit id-reuse policy; a workflow id in use answers
/// [`RunError::AlreadyStarted`].
pub async fn start_with(
    client: &Client,
    pipeline: &Pipeline,
    input: Value,
    workflow_id: &str,
    reuse: WorkflowIdReusePolicy,
) -> Result<StartedRun, RunError> {
    let mut memo = MemoValues::new();
    memo.insert("pipeline", pipeline.name.clone());
    memo.insert("pipeline_version", pipeline.version);
    memo.insert("pipeline_hash", pipeline.hash.clone());
    let opts = WorkflowStartOptions::new(pipeline.main.task_queue.clone(), workflow_id.to_owned())
        .id_reuse_policy(reuse)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .memo(memo)
        .static_summary(format!(
            "{} v{} ({})",
            pipeline.name,
            pipeline.version,
            &pipeline.hash[..12]
        ))
        .build();
    let run_input = run_input(pipeline, input, workflow_id);
    let handle = client
        .start_workflow(
            UntypedWorkflow::new(pipeline.name.clone()),
            payload::to_raw(&run_input),
            opts,
        )
        .await
        .map_err(|e| match e {
            temporalio_client::errors::WorkflowStartError::AlreadyStarted { run_id, .. } => {
                RunError::AlreadyStarted {
                    workflow_id: workflow_id.to_owned(),
                    run_id,
                }
            }
            e => RunError::Temporal {
                action: "start",
                workflow_id: workflow_id.to_owned(),
                message: chain(&e),
            },
        })?;
    Ok(StartedRun {
        workflow_id: workflow_id.to_owned(),
        run_id: handle.run_id().map(str::to_owned),
    })
}

/// The input of a main run of the registered version `pipeline` as workflow `workflow_id`:
/// bound to that id (sealed with it), so a copy started under another id is refused
/// (`workflow::interpreter::binding`).
pub fn run_input(pipeline: &Pipeline, input: Value, workflow_id: &str) -> RunInput {
    RunInput {
        pinned: Pinned::Reference(pipeline.reference()),
        graph: None,
        input,
        parent: None,
        search_attributes: Default::default(),
        workflow_id: Some(workflow_id.to_owned()),
        scheduled: false,
        lean: 0,
    }
}

/// Wait for the latest run of `workflow_id` to close and return its output.
pub async fn wait(client: &Client, workflow_id: &str) -> Result<Value, RunError> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let raw: RawValue = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| RunError::Failed {
            workflow_id: workflow_id.to_owned(),
            message: chain(&e),
        })?;
    payload::from_raw(&raw).map_err(|message| RunError::Failed {
        workflow_id: workflow_id.to_owned(),
        message,
    })
}

/// Request the cancellation of the running run of `workflow_id` (its children and their
/// heartbeating steps stop; the interpreter runs the pipeline's failure hook, which leaves a
/// cancelled transcript `idle`). `NotRunning` when no run of it is running.
pub async fn cancel(client: &Client, workflow_id: &str, reason: &str) -> Result<(), RunError> {
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let err = |message: String| RunError::Temporal {
        action: "cancel",
        workflow_id: workflow_id.to_owned(),
        message,
    };
    let running = handle
        .describe(temporalio_client::WorkflowDescribeOptions::default())
        .await
        .ok()
        .and_then(|d| d.raw_description.workflow_execution_info)
        .and_then(|i| WorkflowExecutionStatus::try_from(i.status).ok())
        == Some(WorkflowExecutionStatus::Running);
    if !running {
        return Err(RunError::NotRunning {
            workflow_id: workflow_id.to_owned(),
        });
    }
    handle
        .cancel(
            temporalio_client::WorkflowCancelOptions::builder()
                .reason(reason.to_owned())
                .build(),
        )
        .await
        .map_err(|e| err(chain(&e)))
}

/// Query one workflow's `progress`.
pub async fn query_progress(client: &Client, workflow_id: &str) -> Result<Progress, RunError> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let err = |message: String| RunError::Temporal {
        action: "query progress of",
        workflow_id: workflow_id.to_owned(),
        message,
    };
    let raw = handle
        .query(
            UntypedQuery::new(PROGRESS_QUERY),
            RawValue::new(Vec::new()),
            WorkflowQueryOptions::default(),
        )
        .await
        .map_err(|e| err(chain(&e)))?;
    let value = payload::from_raw(&raw).map_err(err)?;
    serde_json::from_value(value).map_err(|e| err(e.to_string()))
}

/// Render a run's table (child tables nested under the rows that started them) as text.
pub fn render(workflow_id: &str, progress: &Progress) -> String {
    let mut lines =
        vec![["STEP", "STATUS", "ATTEMPT", "STARTED", "FINISHED", "ERROR"].map(str::to_owned)];
    rows(progress, 0, &mut lines);
    let mut out = format!(
        "{workflow_id} — {} v{} ({}) — {:?}\n",
        progress.pipeline,
        progress.version,
        progress.pipeline_hash.get(..12).unwrap_or(""),
        progress.status
    );
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            line.push_str(&format!("{:<w$}  ", l[c], w = *w));
        }
        line.push_str(&l[5]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A step's status as `reflow status` prints it (the table and the live bars): a completed
/// step that took a previous run's result (`reused`: a memoized run reused it, nothing ran)
/// says "reused".
pub(crate) fn status_text(s: StepStatus, reused: bool) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Completed if reused => "reused",
        StepStatus::Completed => "completed",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    }
}

fn rows(progress: &Progress, depth: usize, out: &mut Vec<[String; 6]>) {
    let line = |r: &StepRow, depth: usize| {
        [
            format!("{}{}", "  ".repeat(depth), r.id),
            status_text(r.status, r.reused).to_owned(),
            match (r.attempt, r.max_attempts) {
                (0, _) => String::new(),
                (a, 0) => a.to_string(),
                (a, m) => format!("{a}/{m}"),
            },
            r.started_at.clone().unwrap_or_default(),
            r.finished_at.clone().unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        ]
    };
    for r in &progress.steps {
        out.push(line(r, depth));
        if let Some(child) = &r.child {
            rows(child, depth + 1, out);
        }
        for m in &r.members {
            out.push(line(m, depth + 1));
            if let Some(child) = &m.child {
                rows(child, depth + 2, out);
            }
        }
    }
}

/// An error and its sources, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
