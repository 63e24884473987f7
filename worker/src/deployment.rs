//! Worker Deployment versioning: which build of reflow runs which meeting.
//!
//! With `REFLOW_DEPLOYMENT_NAME` set, every worker of the process registers as version
//! `{name}.{build id}` of that Worker Deployment (build id: `REFLOW_BUILD_ID`, else a hash of
//! the running binary) and opts in to versioning. New runs go to the deployment's *current*
//! version, which `reflow plan` shows and `reflow apply` (or `temporal worker deployment
//! set-current-version`) sets ([`crate::gitops`] plans and applies it with the calls here).
//!
//! The interpreter's workflows are **pinned**: a run finishes on the build that started it.
//! Each run is already pinned to the pipeline definition it started with; pinning it to its
//! interpreter too means a release may change the interpreter's commands (a new step kind, a
//! coalesced upsert, a reordered call) without `patched` gates for every old history, and the
//! replay guard only has to hold within one build. The cost: an old version's workers keep
//! running until the version is drained (no open pinned run), which `temporal worker
//! deployment describe-version` reports and the runbook's upgrade procedure waits for.
//! Auto-upgrade would move in-flight meetings to the new build at their next workflow task,
//! where a changed interpreter fails them with a nondeterminism error.
//!
//! Without `REFLOW_DEPLOYMENT_NAME` workers are unversioned (the embedded default, one
//! process): every worker polls every task.

use temporalio_client::{Client, NamespacedClient};

use temporalio_common::protos::temporal::api::enums::v1::VersionDrainageStatus;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeWorkerDeploymentRequest, DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
};
use temporalio_common::worker::{
    VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion,
};

/// Errors talking to the server about deployments.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The server refused a call.
    #[error("worker deployment {name}: {message}")]
    Temporal {
        /// The deployment.
        name: String,
        /// Why.
        message: String,
    },
    /// The version to make current has no worker polling yet.
    #[error(
        "worker deployment {name}: no worker of build {build_id} has polled yet; start the new build's workers first"
    )]
    NoPollers {
        /// The deployment.
        name: String,
        /// The build.
        build_id: String,
    },
}

/// `call`, again after a pause while the server says it is busy: a Worker Deployment takes a
/// few requests a second (`too many requests issued to Worker Deployment`), and every worker
/// of it, `reflow plan` and an operator's CLI share them.
async fn throttled<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut pause = std::time::Duration::from_millis(250);
    for _ in 0..8 {
        match call().await {
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(4));
            }
            other => return other,
        }
    }
    call().await
}

/// This process's deployment version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The Worker Deployment's name (`REFLOW_DEPLOYMENT_NAME`).
    pub name: String,
    /// This build's id (`REFLOW_BUILD_ID`, else a hash of the binary).
    pub build_id: String,
}

impl Deployment {
    /// From the settings: `None` without `REFLOW_DEPLOYMENT_NAME` (unversioned workers).
    pub fn from_settings(settings: &crate::settings::Settings) -> Option<Deployment> {
        let var = |k: &str| {
            settings
                .var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let name = var("REFLOW_DEPLOYMENT_NAME")?;
        let build_id = var("REFLOW_BUILD_ID")
            .unwrap_or_else(|| temporalio_common::worker::build_id_from_current_exe().to_owned());
        Some(Deployment { name, build_id })
    }

    /// The SDK's options: this version, versioning on, the interpreter's runs pinned.
    pub fn options(&self) -> WorkerDeploymentOptions {
        WorkerDeploymentOptions::new(
            WorkerDeploymentVersion::builder()
                .deployment_name(self.name.clone())
                .build_id(self.build_id.clone())
                .build(),
        )
        .use_worker_versioning(true)
        .default_versioning_behavior(VersioningBehavior::Pinned)
        .build()
    }
}

/// A deployment as the server has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// The current version's build id (`None`: no current version; new runs go to
    /// unversioned workers).
    pub current: Option<String>,
    /// Every version the server knows, with its drainage status (`draining`, `drained`, or
    /// empty while current or never current).
    pub versions: Vec<(String, String)>,
}

/// The deployment `name`; `None` when no worker of it ever polled.
pub async fn describe(client: &Client, name: &str) -> Result<Option<Described>, DeploymentError> {
    let request = DescribeWorkerDeploymentRequest {
        namespace: client.namespace(),
        deployment_name: name.to_owned(),
    };
    let answer = match throttled(|| async {
        client
            .connection()
            .workflow_service()
            .describe_worker_deployment(tonic::Request::new(request.clone()))
            .await
    })
    .await
    {
        Ok(a) => a.into_inner(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
        Err(s) => {
            return Err(DeploymentError::Temporal {
                name: name.to_owned(),
                message: s.message().to_owned(),
            });
        }
    };
    let info = answer.worker_deployment_info.unwrap_or_default();
    let current = info
        .routing_config
        .as_ref()
        .and_then(|r| r.current_deployment_version.as_ref())
        .map(|v| v.build_id.clone())
        .filter(|b| !b.is_empty());
    let versions = info
        .version_summaries
        .iter()
        .filter_map(|v| {
            let build = v.deployment_version.as_ref()?.build_id.clone();
            let drainage = match VersionDrainageStatus::try_from(v.drainage_status) {
                Ok(VersionDrainageStatus::Draining) => "draining",
                Ok(VersionDrainageStatus::Drained) => "drained",
                _ => "",
            };
            Some((build, drainage.to_owned()))
        })
        .collect();
    Ok(Some(Described { current, versions }))
}

/// Whether a worker of `build_id` has polled `name` (the version exists).
pub async fn version_exists(
    client: &Client,
    name: &str,
    build_id: &str,
) -> Result<bool, DeploymentError> {
    let request = DescribeWorkerDeploymentVersionRequest {
        namespace: client.namespace(),
        deployment_version: Some(
            temporalio_common::protos::temporal::api::deployment::v1::WorkerDeploymentVersion {
                deployment_name: name.to_owned(),
                build_id: build_id.to_owned(),
            },
        ),
        ..Default::default()
    };
    match throttled(|| async {
        client
            .connection()
            .workflow_service()
            .describe_worker_deployment_version(tonic::Request::new(request.clone()))
            .await
    })
    .await
    {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(DeploymentError::Temporal {
            name: name.to_owned(),
            message: s.message().to_owned(),
        }),
    }
}

/// Make `build_id` the current version of `name`: new runs start on it; runs pinned to the
/// previous version finish there.
pub async fn set_current(
    client: &Client,
    name: &str,
    build_id: &str,
) -> Result<(), DeploymentError> {
    if !version_exists(client, name, build_id).await? {
        return Err(DeploymentError::NoPollers {
            name: name.to_owned(),
            build_id: build_id.to_owned(),
        });
    }
    let request = SetWorkerDeploymentCurrentVersionRequest {
        namespace: client.namespace(),
        deployment_name: name.to_owned(),
        build_id: build_id.to_owned(),
        identity: "reflow apply".into(),
        ..Default::default()
    };
    throttled(|| async {
        client
            .connection()
            .workflow_service()
            .set_worker_deployment_current_version(tonic::Request::new(request.clone()))
            .await
    })
    .await
    .map_err(|s| DeploymentError::Temporal {
        name: name.to_owned(),
        message: s.message().to_owned(),
    })?;
    Ok(())
}

/// A new deployment has no current version, and runs go to unversioned workers only: once
/// this process's version exists (its workers polled), make it current if nothing is. Any
/// later version is made current by the operator (`reflow apply`, the runbook's upgrade).
/// Tries every second until the deployment has a current version (this one or another), so a
/// slow first poll or a busy server only delays it; says so once if it takes a minute.
pub async fn adopt_if_first(client: Client, d: Deployment) {
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        let outcome = async {
            if !version_exists(&client, &d.name, &d.build_id).await? {
                return Ok::<_, DeploymentError>(false);
            }
            match describe(&client, &d.name).await? {
                Some(Described {
                    current: Some(c), ..
                }) => {
                    if c != d.build_id {
                        tracing::info!(
                            deployment = %d.name, build_id = %d.build_id, current = %c,
                            "this build is not the deployment's current version: it runs the runs pinned to it; `reflow apply` makes it current"
                        );
                    }
                    Ok(true)
                }
                _ => {
                    set_current(&client, &d.name, &d.build_id).await?;
                    tracing::info!(deployment = %d.name, build_id = %d.build_id, "first version of the worker deployment: made current");
                    Ok(true)
                }
            }
        }
        .await;
        match outcome {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "worker deployment not adopted yet"),
        }
        if !warned && started.elapsed() > std::time::Duration::from_secs(60) {
            warned = true;
            tracing::warn!(deployment = %d.name, build_id = %d.build_id, "no current version after a minute: new runs wait; `reflow apply` sets it");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_deployment_pins_runs_to_this_build() {
        let vars = |pairs: &[(&str, &str)]| {
            crate::settings::Settings::from_vars(
                Default::default(),
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert_eq!(Deployment::from_settings(&vars(&[])), None);
        let d = Deployment::from_settings(&vars(&[
            ("REFLOW_DEPLOYMENT_NAME", "reflow"),
            ("REFLOW_BUILD_ID", "2026.12.1"),
        ]))
        .unwrap();
        assert_eq!(d.build_id, "2026.12.1");
        let o = d.options();
        assert!(o.use_worker_versioning);
        assert_eq!(
            o.default_versioning_behavior,
            Some(VersioningBehavior::Pinned)
        );
        assert_eq!(o.version.deployment_name, "reflow");
        // Without a build id, the binary's.
        let d = Deployment::from_settings(&vars(&[("REFLOW_DEPLOYMENT_NAME", "reflow")])).unwrap();
        assert!(!d.build_id.is_empty());
    }
}
