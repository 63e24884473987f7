//! The commands about one run, named by its workflow id: `reflow run` starts it,
//! `reflow status` shows its step table, `reflow cost` what it spent ([`crate::cost`]) and
//! `reflow reset-point` where to reset it to ([`crate::reset`]), `reflow cancel` stops it.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::connect::{connect, connect_with_db};
use crate::registry::Registry;
use crate::runs;
use crate::settings::Settings;

/// `reflow run`: start a run of `pipeline` (id: `id`, else `<pipeline>-<random>`); with
/// `wait`, print its result, else its id.
pub(super) async fn start(
    settings: &Settings,
    registry: &Registry,
    pipeline: &Path,
    input: &str,
    id: Option<String>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let p = runs::load_pipeline(pipeline, registry.catalog())?;
    let input: Value = serde_json::from_str(input).map_err(runs::RunError::Input)?;
    let client = connect(settings).await?;
    // A run names a registered version: register the file's definition as `reflow apply`
    // would, in the database the workers resolve versions from.
    let db = activities::db::Db::connect(&settings.database_url()?).await?;
    let dir = pipeline.parent().unwrap_or(Path::new("."));
    crate::gitops::register(
        &db,
        vec![p.clone()],
        registry.catalog(),
        crate::gitops::git_commit(dir),
    )
    .await?;
    let id = id.unwrap_or_else(|| {
        format!(
            "{}-{}",
            p.name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        )
    });
    let started = runs::start(&client, &p, input, &id).await?;
    eprintln!(
        "started {} (run {})",
        started.workflow_id,
        started.run_id.as_deref().unwrap_or("?")
    );
    if wait {
        let out = runs::wait(&client, &id).await?;
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `reflow status`: the run's step table (JSON with `json`), after live progress bars until
/// it ends with `follow`.
pub(super) async fn status(
    settings: &Settings,
    workflow_id: &str,
    json: bool,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let progress = if follow {
        crate::follow::follow(&client, workflow_id).await?
    } else {
        runs::query_progress(&client, workflow_id).await?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&progress)?);
    } else {
        print!("{}", runs::render(workflow_id, &progress));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reflow compare`: a recording's live and shadow transcripts, or every pair since a date
/// (JSON with `json`, else Markdown; [`crate::compare`]).
pub(super) async fn compare(
    settings: &Settings,
    recording: Option<String>,
    since: Option<String>,
    room: Option<String>,
    against: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, db) = connect_with_db(settings).await?;
    let against: Option<serde_json::Value> = match against {
        Some(path) => Some(serde_json::from_slice(&anyhow::Context::with_context(
            std::fs::read(&path),
            || format!("reading {}", path.display()),
        )?)?),
        None => None,
    };
    let report = match (recording, since) {
        (Some(r), _) => crate::compare::recording(&client, &db, &r, against.as_ref()).await?,
        (None, Some(s)) => crate::compare::since(&client, &db, &s, room.as_deref()).await?,
        (None, None) => anyhow::bail!("name a recording or --since DATE"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::compare::markdown(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reflow cost`: what the run spent per step (JSON with `json`).
pub(super) async fn cost(
    settings: &Settings,
    workflow_id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    // Bytes written come from the step_attempt table, when the database is there.
    let db = match settings.database_url() {
        Ok(url) => match activities::db::Db::connect(&url).await {
            Ok(db) => Some(db),
            Err(e) => {
                eprintln!("bytes written are not shown: {e}");
                None
            }
        },
        Err(e) => {
            eprintln!("bytes written are not shown: {e}");
            None
        }
    };
    let costs = crate::cost::cost(&client, db.as_ref(), workflow_id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&costs)?);
    } else {
        print!("{}", crate::cost::render(workflow_id, &costs));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reflow reset-point`: the event id that re-runs the run from `step` (default: its earliest
/// failed step).
pub(super) async fn reset_point(
    settings: &Settings,
    workflow_id: &str,
    step: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let point = crate::reset::reset_point(&client, workflow_id, step).await?;
    eprintln!(
        "reset to event {} re-runs {} and what follows",
        point.event_id, point.step
    );
    println!("{}", point.event_id);
    Ok(ExitCode::SUCCESS)
}

/// `reflow cancel`: cancel the running run of `workflow_id` and wait until it has closed (its
/// transcript goes back to `idle`; `POST /v1/transcripts/{id}/process` or the Conductor retry
/// resumes it from where it stopped).
pub(super) async fn cancel(settings: &Settings, workflow_id: &str) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    runs::cancel(&client, workflow_id, "cancelled with reflow cancel").await?;
    let started = std::time::Instant::now();
    // The run closes Canceled; its output is an error by construction.
    let _ = runs::wait(&client, workflow_id).await;
    eprintln!(
        "{workflow_id}: cancelled ({:.1} s); process it again to resume",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
