//! One typed view of a Temporal run, read from its protobuf history and its description: what
//! the Conductor status API, `reflow cost`, `reflow reset-point` and the REST retry read.
//!
//! [`load`] fetches the latest run of a workflow id (history and describe, payloads decoded
//! with the client's codec, [`crate::codec`], so readers see the same JSON with encryption on
//! or off) and builds a [`Run`]: its status as Temporal's enum, times, input and result, every
//! step it scheduled ([`run::Step`], activities and `local: true` steps from their markers)
//! with how it closed, its child workflows, and its pending activities. Nothing here matches
//! error text or compares enum numbers.

pub mod failure;
pub mod run;
pub mod step;

pub use failure::Failure;
pub use run::Run;
pub use step::{Child, ChildOutcome, Close, Pending, Started, Step, declared, declared_as};

use temporalio_client::{
    Client, NamespacedClient, UntypedWorkflow, WorkflowDescribeOptions,
    WorkflowFetchHistoryOptions, errors::WorkflowInteractionError,
};
use temporalio_common::data_converters::SerializationContextData;
use temporalio_common::payload_visitor::decode_payloads;

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Temporal knows no workflow with that id.
    #[error("no workflow {0}")]
    NotFound(String),
    /// Temporal could not be asked.
    #[error("reading {workflow_id} from Temporal: {source}")]
    Temporal {
        /// The workflow.
        workflow_id: String,
        /// What the client said.
        #[source]
        source: WorkflowInteractionError,
    },
    /// A run could not be described.
    #[error("describing {workflow_id}: {message}")]
    Describe {
        /// The workflow.
        workflow_id: String,
        /// What the server said.
        message: String,
    },
    /// A payload could not be decoded (a codec key is missing).
    #[error("decoding the payloads of {workflow_id}: {message}")]
    Decode {
        /// The workflow.
        workflow_id: String,
        /// What the codec said.
        message: String,
    },
}

impl HistoryError {
    fn of(workflow_id: &str, e: WorkflowInteractionError) -> Self {
        match e {
            WorkflowInteractionError::NotFound(_) => HistoryError::NotFound(workflow_id.into()),
            source => HistoryError::Temporal {
                workflow_id: workflow_id.into(),
                source,
            },
        }
    }
}

/// The latest run of `workflow_id`: its history and its description, payloads decoded.
pub async fn load(client: &Client, workflow_id: &str) -> Result<Run, HistoryError> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let (described, events) = tokio::join!(
        handle.describe(WorkflowDescribeOptions::default()),
        handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
    );
    let mut described = described
        .map_err(|e| HistoryError::of(workflow_id, e))?
        .raw_description;
    let mut events = events.map_err(|e| HistoryError::of(workflow_id, e))?;
    let codec = client.data_converter().codec();
    let decode_failed = |e: &dyn std::fmt::Display| HistoryError::Decode {
        workflow_id: workflow_id.into(),
        message: e.to_string(),
    };
    for event in &mut events {
        decode_payloads(event, codec, &SerializationContextData::None)
            .await
            .map_err(|e| decode_failed(&e))?;
    }
    // Heartbeat details of pending activities are payloads too; without them the view is
    // still right, so a failure here is logged, not returned.
    if let Err(e) = decode_payloads(&mut described, codec, &SerializationContextData::None).await {
        tracing::warn!(workflow_id, error = %e, "decoding pending activities");
    }
    Ok(Run::new(workflow_id, &events, &described))
}

/// Where run `run_id` of `workflow_id` stands: the first run of its chain (kept across
/// resets) and, for a child, its parent's workflow and run. `None` when Temporal no longer
/// knows the run (retention).
pub async fn chain_of(
    client: &Client,
    workflow_id: &str,
    run_id: &str,
) -> Result<Option<(String, Option<(String, String)>)>, HistoryError> {
    use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeWorkflowExecutionRequest;
    let request = DescribeWorkflowExecutionRequest {
        namespace: client.namespace(),
        execution: Some(WorkflowExecution {
            workflow_id: workflow_id.to_owned(),
            run_id: run_id.to_owned(),
        }),
    };
    match client
        .connection()
        .workflow_service()
        .describe_workflow_execution(tonic::Request::new(request))
        .await
    {
        Ok(r) => Ok(r.into_inner().workflow_execution_info.map(|i| {
            (
                i.first_run_id,
                i.parent_execution
                    .filter(|p| !p.workflow_id.is_empty())
                    .map(|p| (p.workflow_id, p.run_id)),
            )
        })),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(HistoryError::Describe {
            workflow_id: workflow_id.to_owned(),
            message: format!("run {run_id}: {}", e.message()),
        }),
    }
}

/// The status of the latest run of `workflow_id`, `None` when there is none.
pub async fn status(
    client: &Client,
    workflow_id: &str,
) -> Result<
    Option<temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus>,
    HistoryError,
> {
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
    let described = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .describe(WorkflowDescribeOptions::default())
        .await;
    match described.map_err(|e| HistoryError::of(workflow_id, e)) {
        Ok(d) => Ok(Some(
            d.raw_description
                .workflow_execution_info
                .and_then(|i| WorkflowExecutionStatus::try_from(i.status).ok())
                .unwrap_or(WorkflowExecutionStatus::Unspecified),
        )),
        Err(HistoryError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The events of the latest run of `workflow_id`'s history, payloads as stored.
async fn events_of(
    client: &Client,
    workflow_id: &str,
) -> Result<Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent>, HistoryError>
{
    client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .map_err(|e| HistoryError::of(workflow_id, e))
}

/// The events of the latest run of `workflow_id`'s history, counted by type
/// (`ActivityTaskScheduled`, `MarkerRecorded`, …): what a run costs the server in writes.
pub async fn event_counts(
    client: &Client,
    workflow_id: &str,
) -> Result<std::collections::BTreeMap<String, usize>, HistoryError> {
    let events = events_of(client, workflow_id).await?;
    let mut counts = std::collections::BTreeMap::new();
    for e in &events {
        *counts.entry(event_name(e.event_type)).or_default() += 1;
    }
    Ok(counts)
}

/// An event type as `event_counts` names it (`marker_recorded`, …).
fn event_name(event_type: i32) -> String {
    use temporalio_common::protos::temporal::api::enums::v1::EventType;
    EventType::try_from(event_type)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("EVENT_TYPE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("type {event_type}"))
}

/// The size of the latest run of `workflow_id`'s history as the server stores it (protobuf
/// bytes, payloads as they are on the wire).
pub async fn stored_bytes(client: &Client, workflow_id: &str) -> Result<usize, HistoryError> {
    let events = events_of(client, workflow_id).await?;
    Ok(events.iter().map(prost::Message::encoded_len).sum())
}

/// The stored bytes of the latest run of `workflow_id`'s history ([`stored_bytes`]) by kind of
/// event: its type (`activity_task_scheduled`, …), a marker by its name and, for a local
/// activity's, the activity type (`marker_recorded core_local_activity report_progress`).
pub async fn stored_bytes_by_kind(
    client: &Client,
    workflow_id: &str,
) -> Result<std::collections::BTreeMap<String, (usize, usize)>, HistoryError> {
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let events = events_of(client, workflow_id).await?;
    let mut bytes = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for e in &events {
        let mut kind = event_name(e.event_type);
        if let Some(Attributes::MarkerRecordedEventAttributes(a)) = &e.attributes {
            kind = format!("{kind} {}", a.marker_name);
            let data = a.details.get("data").and_then(|p| p.payloads.first());
            if let Some(t) = data
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
                .and_then(|v| v["activity_type"].as_str().map(str::to_owned))
            {
                kind = format!("{kind} {t}");
            }
        }
        let entry = bytes.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += prost::Message::encoded_len(e);
    }
    Ok(bytes)
}
