//! The namespace the repository declares (`TEMPORAL_NAMESPACE`, default `default`) and its
//! retention (`REFLOW_NAMESPACE_RETENTION_DAYS`, default 30): registered when missing,
//! updated when the retention differs.

use std::time::Duration;

use temporalio_client::Client;
use temporalio_common::protos::temporal::api::namespace::v1::NamespaceConfig;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, RegisterNamespaceRequest, UpdateNamespaceRequest,
};

use super::{Change, GitOpsError, Kind, rpc_error};

/// The namespace the repository declares.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredNamespace {
    /// Its name.
    pub name: String,
    /// How long closed runs' histories are kept.
    pub retention: Duration,
}

impl DesiredNamespace {
    /// What the settings declare (`var`: a setting, `None` when unset or blank).
    pub(super) fn declared(var: &dyn Fn(&str) -> Option<String>) -> DesiredNamespace {
        DesiredNamespace {
            name: var("TEMPORAL_NAMESPACE").unwrap_or_else(|| "default".into()),
            retention: Duration::from_secs(
                86_400
                    * var("REFLOW_NAMESPACE_RETENTION_DAYS")
                        .and_then(|s| s.parse::<u64>().ok())
                        .filter(|d| *d > 0)
                        .unwrap_or(30),
            ),
        }
    }
}

fn days(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else {
        format!("{s}s")
    }
}

/// The namespace's retention, `None` when it does not exist.
async fn namespace_retention(client: &Client, name: &str) -> Result<Option<Duration>, GitOpsError> {
    let request = DescribeNamespaceRequest {
        namespace: name.to_owned(),
        ..Default::default()
    };
    match client
        .connection()
        .workflow_service()
        .describe_namespace(tonic::Request::new(request))
        .await
    {
        Ok(r) => Ok(Some(
            r.into_inner()
                .config
                .and_then(|c| c.workflow_execution_retention_ttl)
                .map_or(Duration::ZERO, |d| {
                    Duration::from_secs(d.seconds.max(0) as u64)
                }),
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(rpc_error(Kind::Namespace, name)(s)),
    }
}

/// `reflow plan`'s line for the namespace.
pub(super) async fn plan(client: &Client, ns: &DesiredNamespace) -> Result<Change, GitOpsError> {
    Ok(match namespace_retention(client, &ns.name).await? {
        None => Change::Create {
            kind: Kind::Namespace,
            id: ns.name.clone(),
            summary: format!("retention {}", days(ns.retention)),
        },
        Some(r) if r.as_secs() != ns.retention.as_secs() => Change::Update {
            kind: Kind::Namespace,
            id: ns.name.clone(),
            diffs: vec![format!("retention: {} → {}", days(r), days(ns.retention))],
        },
        Some(_) => Change::Unchanged {
            kind: Kind::Namespace,
            id: ns.name.clone(),
        },
    })
}

/// Register or update the namespace as `changes` (the plan) say.
pub(super) async fn apply(
    client: &Client,
    ns: &DesiredNamespace,
    changes: &[Change],
) -> Result<(), GitOpsError> {
    match changes.iter().find(|c| c.kind() == Kind::Namespace) {
        Some(Change::Create { .. }) => register_namespace(client, ns).await,
        Some(Change::Update { .. }) => update_namespace(client, ns).await,
        _ => Ok(()),
    }
}

async fn register_namespace(client: &Client, ns: &DesiredNamespace) -> Result<(), GitOpsError> {
    let request = RegisterNamespaceRequest {
        namespace: ns.name.clone(),
        description: "reflow".into(),
        workflow_execution_retention_period: ns.retention.try_into().ok(),
        ..Default::default()
    };
    client
        .connection()
        .workflow_service()
        .register_namespace(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::Namespace, &ns.name))?;
    // A new namespace takes a moment to reach every frontend's cache.
    for _ in 0..50 {
        if namespace_retention(client, &ns.name).await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn update_namespace(client: &Client, ns: &DesiredNamespace) -> Result<(), GitOpsError> {
    let request = UpdateNamespaceRequest {
        namespace: ns.name.clone(),
        config: Some(NamespaceConfig {
            workflow_execution_retention_ttl: ns.retention.try_into().ok(),
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .connection()
        .workflow_service()
        .update_namespace(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::Namespace, &ns.name))?;
    Ok(())
}
