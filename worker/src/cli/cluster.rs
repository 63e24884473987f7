//! `reflow plan` and `reflow apply`: the cluster (and the pipeline versions registered in
//! reflow's database) against what the repository declares ([`crate::gitops`]), printed one
//! `+ ~ -` line per object.

use std::path::PathBuf;
use std::process::ExitCode;

use super::connect::connect;
use crate::gitops::{self, Desired};
use crate::registry::Registry;
use crate::settings::Settings;

/// `reflow plan`: what `apply` would change, without changing it.
pub(super) async fn plan(
    settings: &Settings,
    registry: &Registry,
    pipelines: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let desired = desired(settings, registry, pipelines).await?;
    let client = connect(settings).await?;
    let changes = gitops::plan(&client, &desired).await?;
    for c in &changes {
        println!("{c}");
    }
    let n = changes.iter().filter(|c| c.is_change()).count();
    println!(
        "{}",
        if n == 0 {
            "no changes: the cluster matches the repository".to_owned()
        } else {
            format!("{n} change(s) to apply")
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `reflow apply`: make the cluster match the repository (idempotent).
pub(super) async fn apply(
    settings: &Settings,
    registry: &Registry,
    pipelines: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let desired = desired(settings, registry, pipelines).await?;
    let client = connect(settings).await?;
    let changes = gitops::apply(&client, &desired).await?;
    for c in &changes {
        println!("{c}");
    }
    if !changes.iter().any(gitops::Change::is_change) {
        println!("nothing to change: the cluster already matches the repository");
    }
    Ok(ExitCode::SUCCESS)
}

/// What the settings and the pipeline directory (`pipelines`, else the settings') declare,
/// pipeline versions included (registered in the settings' database).
async fn desired(
    settings: &Settings,
    registry: &Registry,
    pipelines: Option<PathBuf>,
) -> anyhow::Result<Desired> {
    let dir = pipelines.unwrap_or_else(|| settings.pipelines_dir.clone());
    let mut desired = Desired::from_settings(settings, Some(&dir), registry.catalog())?;
    let db = activities::db::Db::connect(&settings.database_url()?).await?;
    desired.rollouts = gitops::DesiredRollouts::declared(db.clone(), &dir)?;
    desired.pipelines = Some(gitops::DesiredPipelines::declared(
        db,
        &dir,
        registry.catalog(),
    )?);
    Ok(desired)
}
