//! A run's history as JSON, and its events as (id, time, kind, attributes): what `reflow cost`,
//! `reflow reset-point` and the Conductor status API read. Payloads come decoded with the
//! client's codec ([`crate::codec`]), so readers see the same JSON with encryption on or off.

use serde_json::Value;
use temporalio_client::{Client, NamespacedClient, UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::data_converters::SerializationContextData;
use temporalio_common::payload_visitor::decode_payloads;
use temporalio_common::protos::temporal::api::history::v1::History;

/// One history event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Event id.
    pub id: i64,
    /// RFC 3339 event time.
    pub time: Option<&'a str>,
    /// The attributes' type, e.g. `ActivityTaskScheduledEventAttributes`.
    pub kind: &'a str,
    /// The attributes.
    pub attrs: &'a Value,
}

impl Event<'_> {
    /// The event time.
    pub fn at(&self) -> Option<std::time::SystemTime> {
        self.time
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    }
}

/// The latest run's history of `workflow_id`, in Temporal's JSON form, payloads decoded.
pub async fn fetch(client: &Client, workflow_id: &str) -> Result<Value, String> {
    let mut events = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .map_err(|e| e.to_string())?;
    let codec = client.data_converter().codec();
    for event in &mut events {
        decode_payloads(event, codec, &SerializationContextData::None)
            .await
            .map_err(|e| format!("decoding history payloads: {e}"))?;
    }
    serde_json::to_value(History { events }).map_err(|e| e.to_string())
}

/// The events of a history, in order (events without attributes are skipped).
pub fn events(history: &Value) -> impl Iterator<Item = Event<'_>> {
    history["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let (kind, attrs) = e["attributes"].as_object()?.iter().next()?;
            Some(Event {
                id: e["event_id"].as_i64().unwrap_or(0),
                time: e["event_time"].as_str(),
                kind: kind.as_str(),
                attrs,
            })
        })
}
