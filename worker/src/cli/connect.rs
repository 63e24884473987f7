//! How a command reaches Temporal: the frontend `TEMPORAL_ADDRESS` names, or (for `dev`,
//! `demo` and `process` without one) a local dev server the command starts and stops.

use std::time::Duration;

use anyhow::bail;

use crate::settings::Settings;
use crate::temporal::{self, DevServer};

/// A client of the configured frontend; an error without `TEMPORAL_ADDRESS`.
pub(super) async fn connect(settings: &Settings) -> anyhow::Result<temporalio_client::Client> {
    let Some(address) = &settings.temporal_address else {
        bail!(
            "TEMPORAL_ADDRESS is not set: point it at a Temporal frontend, or run `reflow dev` for a local server"
        );
    };
    Ok(temporal::connect_with(
        address,
        &settings.namespace,
        Duration::from_secs(10),
        settings.data_converter()?,
    )
    .await?)
}

/// A client of the configured frontend and the settings' database: what the commands that
/// find transcripts and start or read their runs need.
pub(super) async fn connect_with_db(
    settings: &Settings,
) -> anyhow::Result<(temporalio_client::Client, activities::db::Db)> {
    let client = connect(settings).await?;
    let db = activities::db::Db::connect(&settings.database_url()?).await?;
    Ok((client, db))
}

/// A client of the configured frontend, or of a dev server started on `port` (Web UI on
/// `ui_port`) when none is configured; the server is returned for the caller to stop.
pub(super) async fn connect_or_start(
    settings: &Settings,
    port: u16,
    ui_port: Option<u16>,
) -> anyhow::Result<(temporalio_client::Client, Option<DevServer>)> {
    if settings.temporal_address.is_some() {
        return Ok((connect(settings).await?, None));
    }
    let opts =
        temporal::dev_server_options(&settings.temporal_cli, &settings.data_dir, port, ui_port);
    let server = DevServer::start(opts).await?;
    eprintln!(
        "Temporal dev server on {} (state in {}){}",
        server.address,
        settings.data_dir.join("temporal.db").display(),
        server
            .ui_url
            .as_deref()
            .map(|u| format!(", Web UI {u}"))
            .unwrap_or_default()
    );
    let client = temporal::connect_with(
        &server.address,
        &settings.namespace,
        Duration::from_secs(20),
        settings.data_converter()?,
    )
    .await?;
    Ok((client, Some(server)))
}

/// Refuse to start runs on a namespace `reflow apply` has not prepared: one line naming the
/// search attributes it lacks (a run's first workflow task would fail without them) and
/// `reflow apply`. The dev server a command starts itself has them from its start.
pub(super) async fn require_applied(
    settings: &Settings,
    client: &temporalio_client::Client,
) -> anyhow::Result<()> {
    let missing = crate::gitops::missing_search_attributes(client).await?;
    if !missing.is_empty() {
        bail!(
            "namespace {:?} at {} lacks reflow's search attributes {}: run `reflow apply` first",
            settings.namespace,
            settings
                .temporal_address
                .as_deref()
                .unwrap_or("the dev server"),
            missing.join(", ")
        );
    }
    Ok(())
}

/// Register the definitions of `dir` (and the built-in ones) in `db`, as `reflow apply` would:
/// the local commands (`dev`, `process`, the demo) run their own definitions. A changed
/// definition that kept a registered version number is refused, as by `apply`.
pub(super) async fn register_pipelines(
    db: &activities::db::Db,
    dir: &std::path::Path,
    catalog: &workflow::Catalog,
) -> anyhow::Result<()> {
    let declared = crate::gitops::DesiredPipelines::declared(db.clone(), dir, catalog)?;
    crate::gitops::register_declared(&declared).await?;
    Ok(())
}
