//! The Worker Deployment's current version (with `REFLOW_DEPLOYMENT_NAME`): this build
//! (`REFLOW_BUILD_ID`), made current once its workers poll; runs pinned to the previous
//! version finish on it. The versioning itself (what a worker registers as, the server's
//! calls) is [`crate::deployment`]'s.

use temporalio_client::Client;

use super::{Change, GitOpsError, Kind};
use crate::deployment::{Deployment, DeploymentError, describe, set_current, version_exists};

/// `reflow plan`'s line for the deployment: its current version against this build.
pub(super) async fn plan(client: &Client, d: &Deployment) -> Result<Change, GitOpsError> {
    let err = |e: DeploymentError| GitOpsError::Temporal {
        kind: Kind::Deployment,
        id: d.name.clone(),
        message: e.to_string(),
    };
    let described = describe(client, &d.name).await.map_err(err)?;
    let polling = version_exists(client, &d.name, &d.build_id)
        .await
        .map_err(err)?;
    let waiting = if polling {
        ""
    } else {
        "; no worker of this build polls yet: start them first"
    };
    Ok(match described.and_then(|x| x.current) {
        Some(current) if current == d.build_id => Change::Unchanged {
            kind: Kind::Deployment,
            id: d.name.clone(),
        },
        Some(current) => Change::Update {
            kind: Kind::Deployment,
            id: d.name.clone(),
            diffs: vec![format!(
                "current version: {current} → {} (runs pinned to {current} finish on it){waiting}",
                d.build_id
            )],
        },
        None => Change::Create {
            kind: Kind::Deployment,
            id: d.name.clone(),
            summary: format!("current version {}{waiting}", d.build_id),
        },
    })
}

/// Make one planned deployment change: this build becomes the current version.
pub(super) async fn apply(
    client: &Client,
    d: &Deployment,
    change: &Change,
) -> Result<(), GitOpsError> {
    if let Change::Create { .. } | Change::Update { .. } = change {
        set_current(client, &d.name, &d.build_id)
            .await
            .map_err(|e| GitOpsError::Conflict {
                kind: Kind::Deployment,
                id: d.name.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}
