//! Rollouts: `pipelines/rollout.yaml` ([`workflow::pipeline::rollout`]) applied to reflow's
//! database, where intake reads which registered version each recording's run gets (the
//! current one, a candidate on a ramp, per-room overrides). Every version a rollout names must
//! be registered, or declared in the same apply; a pipeline the file no longer names keeps the
//! rollout it had (remove it by naming only `current`).

use std::path::Path;

use activities::db::Db;
use workflow::pipeline::fingerprint::Fingerprints;
use workflow::pipeline::rollout::{ROLLOUT_FILE, Rollout, Rollouts};
use workflow::{Pipeline, pipeline::rollout::RolloutError};

use super::{Change, GitOpsError, Kind};
use crate::runs::RunError;

/// The rollouts the repository declares, to be applied in `db`.
#[derive(Debug, Clone)]
pub struct DesiredRollouts {
    /// Where rollouts (and the versions they name) live.
    pub db: Db,
    /// The declaration.
    pub declared: Rollouts,
}

impl DesiredRollouts {
    /// `dir`'s `rollout.yaml`, when it has one.
    pub fn declared(db: Db, dir: &Path) -> Result<Option<Self>, GitOpsError> {
        let path = dir.join(ROLLOUT_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| RunError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let declared = Rollouts::parse(&path.display().to_string(), &text).map_err(invalid)?;
        Ok(Some(DesiredRollouts { db, declared }))
    }
}

fn invalid(e: RolloutError) -> GitOpsError {
    GitOpsError::Conflict {
        kind: Kind::Rollout,
        id: ROLLOUT_FILE.into(),
        message: e.to_string(),
    }
}

/// A rollout in words: `current v2, candidate v3 on 10 %, room standup → v3`.
pub fn describe(r: &Rollout) -> String {
    let mut parts = vec![format!("current v{}", r.current)];
    if let Some(c) = r.candidate {
        parts.push(format!("candidate v{c} on {} %", r.ramp));
    }
    parts.extend(
        r.rooms
            .iter()
            .map(|(room, v)| format!("room {room} → v{v}")),
    );
    if let Some(s) = &r.shadow {
        let mut on = vec![format!("{} %", s.ramp)];
        on.extend(s.rooms.iter().map(|room| format!("room {room}")));
        parts.push(format!("shadow v{} on {}", s.version, on.join(", ")));
    }
    parts.join(", ")
}

/// `reflow plan`'s lines for the declared rollouts; an error for a version that is neither
/// registered nor declared among `pipelines` (registered by the same apply).
pub(super) async fn plan(
    d: &DesiredRollouts,
    pipelines: &[(Pipeline, Fingerprints)],
) -> Result<Vec<Change>, GitOpsError> {
    let mut out = Vec::new();
    for (name, rollout) in &d.declared.pipelines {
        for v in rollout.versions() {
            let declared = pipelines
                .iter()
                .any(|(p, _)| p.name == *name && p.version == v);
            if !declared && d.db.pipeline_version_of(name, v).await?.is_none() {
                return Err(GitOpsError::Conflict {
                    kind: Kind::Rollout,
                    id: name.clone(),
                    message: format!(
                        "version {v} is not registered (apply the pipeline directory that holds it first)"
                    ),
                });
            }
        }
        if let Some(shadow) = &rollout.shadow {
            shadow_safe(d, name, shadow.version, pipelines).await?;
        }
        out.push(match d.db.pipeline_rollout(name).await? {
            None => Change::Create {
                kind: Kind::Rollout,
                id: name.clone(),
                summary: describe(rollout),
            },
            Some(had) if had != *rollout => Change::Update {
                kind: Kind::Rollout,
                id: name.clone(),
                diffs: vec![format!("{} → {}", describe(&had), describe(rollout))],
            },
            Some(_) => Change::Unchanged {
                kind: Kind::Rollout,
                id: name.clone(),
            },
        });
    }
    Ok(out)
}

/// Refuse a shadow version that could not skip its effects outside reflow
/// ([`workflow::pipeline::effects`]), taken from `pipelines` or else the registered ones.
async fn shadow_safe(
    d: &DesiredRollouts,
    name: &str,
    version: u32,
    pipelines: &[(Pipeline, Fingerprints)],
) -> Result<(), GitOpsError> {
    let p = match pipelines
        .iter()
        .find(|(p, _)| p.name == name && p.version == version)
    {
        Some((p, _)) => p.clone(),
        None => match d.db.pipeline_version_of(name, version).await? {
            Some(row) => row.decode()?.pipeline,
            None => return Ok(()), // refused above as not registered
        },
    };
    workflow::pipeline::effects::external_steps(
        &p,
        crate::registry::Registry::production().catalog(),
    )
    .map(drop)
    .map_err(|e| GitOpsError::Conflict {
        kind: Kind::Rollout,
        id: name.to_owned(),
        message: e.to_string(),
    })
}

/// Apply the rollouts `changes` (the plan) create or update.
pub(super) async fn apply(d: &DesiredRollouts, changes: &[Change]) -> Result<(), GitOpsError> {
    for (name, rollout) in &d.declared.pipelines {
        let planned = changes.iter().any(|c| {
            c.kind() == Kind::Rollout
                && c.id() == name
                && matches!(c, Change::Create { .. } | Change::Update { .. })
        });
        if planned {
            d.db.set_pipeline_rollout(name, rollout).await?;
            tracing::info!(pipeline = %name, rollout = %describe(rollout), "rollout applied");
        }
    }
    Ok(())
}
