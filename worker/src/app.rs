//! One reflow process, wired once from [`Settings`]: the activities' services, Daily intake,
//! the workers of the queues it serves and the HTTP API. `reflow worker`, `reflow dev` and
//! `reflow process` build the same [`App`]; they differ only in which queues, which address and
//! what else runs beside it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::http::{ApiState, ServeError};
use crate::intake::Intake;
use crate::registry::{Registry, Services};
use crate::settings::Settings;
use crate::shutdown::Shutdown;

/// Services, intake and a Temporal client, built from the settings.
pub struct App {
    /// What activities use.
    pub services: Services,
    /// Daily intake (webhook, poll), starting the meeting pipeline of the pipelines directory.
    pub intake: Arc<Intake>,
    /// The Temporal client.
    pub client: temporalio_client::Client,
    /// Payload encryption of the API's codec endpoints.
    codec: Option<crate::codec::PayloadEncryption>,
    /// The API's credentials and opt-out, from the settings.
    api_token: Option<String>,
    secret_key: Option<String>,
    secret_key_previous: Option<crate::http::keys::PreviousKey>,
    https: bool,
    allow_open_api: bool,
    /// The HTTP API's limits and the workers' slot overrides, from the settings.
    codec_cors_origins: Vec<String>,
    http_limits: crate::http::limits::HttpLimits,
    daily_webhook_max_age: std::time::Duration,
    /// `REFLOW_ACTIVITY_SLOTS`.
    pub activity_slots: Option<String>,
    /// `REFLOW_SHUTDOWN_GRACE`.
    shutdown_grace: std::time::Duration,
    /// The Worker Deployment version this process's workers register as.
    deployment: Option<crate::deployment::Deployment>,
}

impl App {
    /// Build the services (storage, database, backends) and the intake of the meeting pipeline
    /// in `pipelines_dir` (or the built-in copy).
    pub async fn build(
        settings: &Settings,
        registry: &Registry,
        client: temporalio_client::Client,
        pipelines_dir: &Path,
    ) -> anyhow::Result<App> {
        let mut services = Services::from_settings(settings, registry).await?;
        let pipeline = crate::intake::load_pipeline(Some(pipelines_dir), registry.catalog())?;
        let intake = Arc::new(Intake {
            db: services.db().clone(),
            client: client.clone(),
            pipeline,
            bucket_name: settings.daily_bucket.clone(),
        });
        services.intake = Some(intake.clone());
        let secret_key_previous = settings.api_keys()?;
        match &secret_key_previous {
            Some(p) => tracing::info!(
                until = %humantime::format_rfc3339_seconds(p.until),
                "SECRET_KEY_PREVIOUS accepted for verification"
            ),
            None if settings.var("SECRET_KEY_PREVIOUS").is_some() => tracing::warn!(
                "SECRET_KEY_PREVIOUS is past its SECRET_KEY_PREVIOUS_UNTIL: no longer accepted \
                 (remove both)"
            ),
            None => {}
        }
        Ok(App {
            services,
            intake,
            client,
            codec: settings.codec()?,
            api_token: settings.api_token.clone(),
            secret_key: settings.secret_key.clone(),
            secret_key_previous,
            https: settings.public_https(),
            allow_open_api: settings.allow_open_api,
            codec_cors_origins: settings.codec_cors_origins(),
            http_limits: crate::http::limits::HttpLimits::from_settings(settings),
            daily_webhook_max_age: settings.daily_webhook_max_age(),
            activity_slots: settings.activity_slots(),
            shutdown_grace: settings.shutdown_grace(),
            deployment: crate::deployment::Deployment::from_settings(settings),
        })
    }

    /// The API's state: the settings' credentials, or none (`open`, for the loopback-only
    /// progress page of `reflow process`).
    pub fn api_state(&self, open: bool) -> ApiState {
        let s = &self.services;
        ApiState {
            events: s.events.clone(),
            storage: s.storage.clone(),
            api_token: (!open).then(|| self.api_token.clone()).flatten(),
            secret_key: (!open).then(|| self.secret_key.clone()).flatten(),
            secret_key_previous: (!open).then(|| self.secret_key_previous.clone()).flatten(),
            https: self.https,
            temporal: Some(self.client.clone()),
            intake: Some(self.intake.clone()),
            daily_webhook_secret: (!open).then(|| s.daily.webhook_secret.clone()).flatten(),
            open_on_public_address: !open && self.allow_open_api,
            codec: (!open).then(|| self.codec.clone().map(Arc::new)).flatten(),
            codec_cors_origins: self.codec_cors_origins.clone(),
            limits: self.http_limits,
            daily_webhook_max_age: self.daily_webhook_max_age,
            ..ApiState::new(s.events.clone(), s.storage.clone())
        }
    }

    /// Serve the HTTP API with `state` on `addr` (if any) until `shutdown`; `on_bound` hears the
    /// address bound.
    pub async fn serve_api(
        &self,
        addr: Option<SocketAddr>,
        state: ApiState,
        on_bound: impl FnOnce(SocketAddr) + Send + 'static,
        shutdown: &Shutdown,
    ) -> Result<(), ServeError> {
        let Some(addr) = addr else {
            return Ok(());
        };
        let db = self.services.db().clone();
        if db.backend() == activities::db::Backend::Postgres {
            // Events published by workers in other processes arrive by NOTIFY.
            tokio::spawn(self.services.events.hub().clone().listen_postgres(db));
        }
        let stop = shutdown.clone();
        crate::http::serve(addr, state, on_bound, async move { stop.wait().await }).await
    }

    /// Run the workers of `queues` and the API on `addr` until `shutdown`.
    pub async fn run(
        &self,
        registry: &Registry,
        queues: &[String],
        addr: Option<SocketAddr>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let api = self.serve_api(
            addr,
            self.api_state(false),
            |bound| eprintln!("HTTP API on http://{bound}"),
            shutdown,
        );
        if let Some(d) = self.deployment.clone() {
            tokio::spawn(crate::deployment::adopt_if_first(self.client.clone(), d));
        }
        let setup = crate::worker::Setup {
            slot_overrides: self.activity_slots.clone(),
            grace: self.shutdown_grace,
            deployment: self.deployment.clone(),
        };
        let workers = crate::worker::run_workers(
            self.client.clone(),
            registry,
            &self.services,
            queues,
            &setup,
            shutdown.clone(),
        );
        // Runs owed and not started (Temporal was unreachable when they were asked for).
        let backlog =
            crate::backlog::Backlog::new(self.intake.clone(), Some(self.api_state(false)));
        let stop = shutdown.clone();
        let backlog = tokio::spawn(backlog.run(async move { stop.wait().await }));
        // Memos of transcripts deleted or denied consent outside a run (crate::memo_sweep).
        let stop = shutdown.clone();
        let sweep = tokio::spawn(crate::memo_sweep::run(
            self.services.events.db().clone(),
            self.services.storage.clone(),
            async move { stop.wait().await },
        ));
        let (workers, api) = futures::join!(workers, api);
        backlog.abort();
        sweep.abort();
        workers?;
        api?;
        Ok(())
    }
}
