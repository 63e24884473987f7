//! The one place activities and workflow types meet the Temporal worker.
//!
//! [`Registry`] lists what a worker registers; [`Registry::catalog`] derives from the same
//! list what `reflow validate` accepts, so a pipeline that validates names only things the
//! worker can run. Tests extend the built-in registry with their own activities and types.

use std::path::PathBuf;
use std::sync::Arc;

use activities::asr::{AsrActivities, AsrConfig, Transcriber};
use activities::audio::activities::{self as audio, AudioActivities};
use activities::daily::activities::{self as daily, DailyActivities};
use activities::daily::client::DailyConfig;
use activities::db::{Db, DbError};
use activities::events::{Emits, EventHub, Events};
use activities::files::FileActivities;
use activities::lifecycle::{self, LifecycleActivities};
use activities::llm::steps::{self as summary, SummaryActivities};
use activities::llm::{Llm, LlmConfig};
use activities::memo::MemoActivities;
use activities::progress::{self, ProgressActivities};
use activities::storage::{Storage, StorageConfig, StorageError};
use activities::versions::{VersionActivities, Versions};
use activities::webhook::WebhookActivities;
use activities::zulip::{ZulipActivities, ZulipConfig};
use temporalio_sdk::WorkerOptions;
use workflow::Catalog;
use workflow::workflows::{
    DiarizationPipeline, DirectoryDigest, FileDigest, PollDailyRecordings, TrackProcessing,
};

use crate::backfill::BackfillActivities;
use crate::poll::PollActivities;

/// What activities need from the process: storage, the database, the event hub and a
/// scratch directory.
#[derive(Clone, Debug)]
pub struct Services {
    /// The transcript bucket (or directory).
    pub storage: Storage,
    /// Daily's raw tracks (the recordings bucket).
    pub recordings: Storage,
    /// Local scratch space for files being decoded or encoded.
    pub scratch: PathBuf,
    /// The data directory: the only place an activity writes a file a pipeline names.
    pub data_dir: PathBuf,
    /// Where transcripts and events live, with the fan-out sockets listen to.
    pub events: Events,
    /// The transcription backend (`TRANSCRIPT_*`).
    pub transcriber: Arc<Transcriber>,
    /// The LLM backend (`LLM_*`).
    pub llm: Arc<Llm>,
    /// Daily's API (`DAILY_*`).
    pub daily: DailyConfig,
    /// Zulip (`ZULIP_*`, `UI_BASE_URL`).
    pub zulip: ZulipConfig,
    /// Hosts customer webhooks may reach at private addresses
    /// (`REFLOW_WEBHOOK_ALLOWED_PRIVATE_HOSTS`).
    pub webhook_private_hosts: Vec<String>,
    /// Daily intake, for the poll activity (set once a Temporal client exists).
    pub intake: Option<Arc<crate::intake::Intake>>,
}

/// Why the services could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// Object storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Transcription or LLM configuration.
    #[error("{0}")]
    Config(String),
}

impl Services {
    /// Open the storage and database the settings name; events may be published as the
    /// registry's catalog declares.
    pub async fn from_settings(
        settings: &crate::settings::Settings,
        registry: &Registry,
    ) -> Result<Services, ServicesError> {
        let vars = |k: &str| settings.var(k);
        let transcripts = StorageConfig::from_vars(&settings.storage_url()?, &vars);
        let recordings = match StorageConfig::daily_from_vars(&transcripts, &vars) {
            Some(daily) => daily,
            None => StorageConfig::from_vars(&settings.recordings_url()?, &vars),
        };
        let db = Db::connect(&settings.database_url()?).await?;
        Ok(Services {
            storage: Storage::open(&transcripts)?,
            recordings: Storage::open(&recordings)?,
            scratch: settings.data_dir.join("scratch"),
            data_dir: std::path::absolute(&settings.data_dir)
                .unwrap_or_else(|_| settings.data_dir.clone()),
            events: Events::new(db, EventHub::default(), registry.emits()),
            transcriber: Arc::new(Transcriber::new(
                AsrConfig::from_vars(&vars).map_err(|e| ServicesError::Config(e.to_string()))?,
            )),
            llm: Arc::new(Llm::new(
                LlmConfig::from_vars(&vars).map_err(|e| ServicesError::Config(e.to_string()))?,
            )),
            daily: DailyConfig::from_vars(&vars),
            zulip: ZulipConfig::from_vars(&vars),
            webhook_private_hosts: activities::webhook::allowed_private_hosts(&vars),
            intake: None,
        })
    }

    /// The database.
    pub fn db(&self) -> &Db {
        self.events.db()
    }
}

/// Registers activities and workflow types on a worker's options.
pub type Registration =
    Arc<dyn Fn(&mut WorkerOptions, &Services) -> Result<(), String> + Send + Sync>;

/// What a worker runs: registrations plus the matching catalog.
#[derive(Clone)]
pub struct Registry {
    registrations: Vec<(Registration, Kind)>,
    catalog: Catalog,
}

/// Whether a registration belongs to the production pipelines or to the example pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Production,
    Example,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Registry {
            registrations: Vec::new(),
            catalog: Catalog::new(),
        }
    }

    /// reflow's built-in activities and workflow types: the production pipelines' and the
    /// example pipeline's ([`Self::examples`]); a production worker drops the latter with
    /// [`Self::without_examples`].
    pub fn builtin() -> Self {
        Self::production().merge(Self::examples())
    }

    /// The example pipeline (`pipelines/digest.yaml`): it lists, reads and writes files the
    /// run names, so only `reflow demo`, `reflow dev` and `reflow worker --examples` register
    /// it, and `write_report` writes inside the data directory only.
    pub fn examples() -> Self {
        let catalog = Catalog::new()
            .merge(activities::files::declare(Catalog::new()))
            .workflow_type("DirectoryDigest")
            .workflow_type("FileDigest");
        let registration: Registration = Arc::new(|o: &mut WorkerOptions, services: &Services| {
            o.register_activities(FileActivities::new(services.data_dir.clone()));
            o.register_workflow::<DirectoryDigest>()
                .map_err(|e| e.to_string())?;
            o.register_workflow::<FileDigest>()
                .map_err(|e| e.to_string())?;
            Ok(())
        });
        Registry {
            registrations: vec![(registration, Kind::Example)],
            catalog,
        }
    }

    /// The production pipelines' activities and workflow types (meeting, Daily poll).
    pub fn production() -> Self {
        // Each system declares its steps (events, cost; contracts from their types) in one place.
        let modules: [fn(Catalog) -> Catalog; 8] = [
            audio::declare,
            activities::asr::declare,
            summary::declare,
            daily::declare,
            lifecycle::declare,
            activities::zulip::declare,
            activities::webhook::declare,
            crate::poll::declare,
        ];
        let catalog = modules
            .into_iter()
            .fold(Catalog::new(), |c, declare| declare(c))
            .activity(ProgressActivities::report_progress.name(), progress::EMITS)
            .activity(VersionActivities::resolve_pipeline.name(), &[])
            .activity(MemoActivities::memo_plan.name(), &[])
            .activity(MemoActivities::memo_store.name(), &[])
            .activity(BackfillActivities::backfill_page.name(), &[])
            .activity(BackfillActivities::backfill_prepare.name(), &[])
            .activity(BackfillActivities::backfill_settle.name(), &[])
            .workflow_type("DiarizationPipeline")
            .workflow_type("TrackProcessing")
            .workflow_type("PollDailyRecordings");
        let memo_catalog = Arc::new(catalog.clone());
        Registry::empty().with(
            catalog,
            Arc::new(move |o: &mut WorkerOptions, services: &Services| {
                o.register_activities(ProgressActivities::new(services.events.clone()));
                // Memoized runs: a plan in the first task, what was computed stored at the end.
                o.register_activities(MemoActivities::new(
                    Versions::of(services.db()),
                    memo_catalog.clone(),
                    services.storage.clone(),
                    services.recordings.clone(),
                    services.transcriber.config().identity(),
                    services.llm.config().identity(),
                ));
                // Every run's first workflow task resolves its registered definition.
                o.register_activities(VersionActivities::new(Versions::of(services.db())));
                o.register_activities(AudioActivities::new(
                    services.storage.clone(),
                    services.recordings.clone(),
                    services.scratch.clone(),
                    services.events.clone(),
                ));
                o.register_activities(AsrActivities::new(
                    services.storage.clone(),
                    services.scratch.clone(),
                    services.transcriber.clone(),
                ));
                o.register_activities(SummaryActivities::new(
                    services.storage.clone(),
                    services.events.clone(),
                    services.llm.clone(),
                ));
                o.register_activities(DailyActivities::new(
                    services.daily.clone(),
                    services.events.clone(),
                ));
                o.register_activities(LifecycleActivities::new(
                    services.storage.clone(),
                    services.recordings.clone(),
                    services.events.clone(),
                ));
                o.register_activities(ZulipActivities::new(
                    services.zulip.clone(),
                    services.events.clone(),
                ));
                o.register_activities(WebhookActivities::new(
                    services.events.clone(),
                    services.webhook_private_hosts.clone(),
                    services.zulip.ui_base_url.clone(),
                ));
                o.register_workflow::<DiarizationPipeline>()
                    .map_err(|e| e.to_string())?;
                o.register_workflow::<TrackProcessing>()
                    .map_err(|e| e.to_string())?;
                o.register_activities(PollActivities::new(
                    services.daily.clone(),
                    services.intake.clone(),
                ));
                o.register_workflow::<PollDailyRecordings>()
                    .map_err(|e| e.to_string())?;
                // `reflow backfill`: its workflow beside the pipelines it re-runs.
                o.register_activities(BackfillActivities::new(
                    services.intake.clone(),
                    services.events.clone(),
                ));
                o.register_workflow::<workflow::backfill::Backfill>()
                    .map_err(|e| e.to_string())?;
                Ok(())
            }),
        )
    }

    /// Both registries' registrations and catalogs.
    pub fn merge(mut self, other: Registry) -> Self {
        self.catalog = self.catalog.merge(other.catalog);
        self.registrations.extend(other.registrations);
        self
    }

    /// The same catalog (pipelines still validate) without the example pipeline's
    /// registrations: what a production worker runs.
    pub fn without_examples(mut self) -> Self {
        self.registrations
            .retain(|(_, kind)| *kind == Kind::Production);
        self
    }

    /// Whether the example pipeline's activities would be registered.
    pub fn registers_examples(&self) -> bool {
        self.registrations
            .iter()
            .any(|(_, kind)| *kind == Kind::Example)
    }

    /// Which events each activity may publish, from the catalog.
    pub fn emits(&self) -> Emits {
        self.catalog
            .activity_names()
            .fold(Emits::default(), |e, name| {
                let declared = self
                    .catalog
                    .get_activity(name)
                    .map(|a| a.emits.clone())
                    .unwrap_or_default();
                e.with(name, declared)
            })
    }

    /// Add a registration and what it makes known.
    pub fn with(mut self, catalog: Catalog, registration: Registration) -> Self {
        self.catalog = self.catalog.merge(catalog);
        self.registrations.push((registration, Kind::Production));
        self
    }

    /// What `reflow validate` checks pipelines against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Apply every registration to `options`.
    pub fn register(&self, options: &mut WorkerOptions, services: &Services) -> Result<(), String> {
        self.registrations
            .iter()
            .try_for_each(|(r, _)| r(options, services))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workflow_type_the_workflow_crate_declares_is_registered() {
        let r = Registry::builtin();
        for t in workflow::workflows::WORKFLOW_TYPES {
            assert!(
                r.catalog().has_workflow_type(t),
                "{t} is declared but not registered"
            );
        }
    }

    #[test]
    fn a_production_worker_registers_no_example_activity_but_validates_the_example() {
        let production = Registry::builtin().without_examples();
        assert!(!production.registers_examples());
        assert!(Registry::builtin().registers_examples());
        assert!(production.catalog().get_activity("write_report").is_some());
        assert!(
            Registry::production()
                .catalog()
                .get_activity("write_report")
                .is_none()
        );
    }

    #[test]
    fn every_activity_a_pipeline_can_name_has_a_contract_whose_input_refuses_unknown_fields() {
        let registry = Registry::builtin();
        let catalog = registry.catalog();
        for name in catalog.activity_names() {
            let entry = catalog.get_activity(name).unwrap();
            if name == activities::progress::ProgressActivities::report_progress.name()
                || name == VersionActivities::resolve_pipeline.name()
                || name == MemoActivities::memo_plan.name()
                || name == MemoActivities::memo_store.name()
                || name.starts_with("backfill_")
            {
                continue; // internal: scheduled by the interpreter or the backfill, never by a step
            }
            if name == crate::poll::PollActivities::poll_daily_recordings.name() {
                // Its input is optional (the schedule passes none), as its declared contract,
                // taken from the function's own `Option<PollInput>`, says.
                assert!(entry.input.as_ref().unwrap()["anyOf"].is_array());
                continue;
            }
            let (input, output) = (entry.input.as_ref(), entry.output.as_ref());
            assert!(
                input.is_some() && output.is_some(),
                "{name} has no contract"
            );
            assert_eq!(
                input.unwrap()["additionalProperties"],
                false,
                "{name}'s input takes unknown fields"
            );
        }
        // And at run time, the input's deserialization says which field.
        let err = serde_json::from_value::<activities::audio::activities::MixdownInput>(
            serde_json::json!({"transcript_id": "t", "padded_keys": [], "started_at": "now"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `started_at`"), "{err}");
    }

    #[test]
    fn validate_finds_the_contract_bugs_the_production_pipeline_once_had() {
        // finalize without started_at (the ended-run duration was never recorded) and
        // mixdown_tracks with a started_at it ignores: both on the real pipeline and catalog.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/diarization.yaml");
        let good = std::fs::read_to_string(path).unwrap();
        let registry = Registry::builtin();
        workflow::parse_and_validate("diarization.yaml", &good, registry.catalog()).unwrap();
        let finalize_with = "      padded_keys: ${pad_track[*].padded_key}\n      started_at: ${workflow.started_at}\n";
        let mixdown_with =
            "      padded_keys: ${pad_track[*].padded_key}\n\n  - id: generate_waveform";
        assert!(good.contains(finalize_with) && good.contains(mixdown_with));
        let broken = good
            .replace(finalize_with, "      padded_keys: ${pad_track[*].padded_key}\n")
            .replace(
                mixdown_with,
                "      padded_keys: ${pad_track[*].padded_key}\n      started_at: ${workflow.started_at}\n\n  - id: generate_waveform",
            );
        let report = workflow::parse_and_validate("diarization.yaml", &broken, registry.catalog())
            .unwrap_err()
            .to_string();
        assert!(
            report.contains(r#"step "finalize": with: activity "finalize" requires "started_at""#),
            "{report}"
        );
        assert!(
            report.contains(r#"step "mixdown_tracks": with: "started_at" is not an input"#),
            "{report}"
        );
    }

    /// Every `#[activity(name = "…")]` in the production and example sources.
    fn activities_in_sources() -> std::collections::BTreeSet<String> {
        fn scan(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    scan(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for line in text.lines() {
                        if let Some(rest) = line.trim().strip_prefix("#[activity(name = \"") {
                            out.insert(rest.split('"').next().unwrap().to_owned());
                        }
                    }
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut names = std::collections::BTreeSet::new();
        for dir in ["activities/src", "worker/src"] {
            scan(&root.join(dir), &mut names);
        }
        names
    }

    #[test]
    fn every_activity_in_the_code_is_declared_and_every_llm_step_has_a_budget() {
        let registry = Registry::builtin();
        let catalog = registry.catalog();
        let declared: std::collections::BTreeSet<String> =
            catalog.activity_names().map(str::to_owned).collect();
        assert_eq!(
            activities_in_sources(),
            declared,
            "an activity of the code is not declared (its module's `declare`), or the reverse"
        );
        // Every step that calls the LLM says so in its declaration, with a budget; the
        // budget the embedded model gets is read from there.
        let llm_steps: Vec<&str> = catalog
            .activity_names()
            .filter(|n| {
                matches!(
                    catalog.cost_of(n),
                    Some(workflow::catalog::Cost::Llm { embedded_max_tokens }) if embedded_max_tokens > 0
                )
            })
            .collect();
        assert_eq!(
            llm_steps,
            [
                "detect_chunk_topic",
                "extract_subjects",
                "generate_detailed_summary",
                "generate_recap",
                "generate_title",
                "identify_action_items"
            ]
        );
        assert!(
            catalog
                .cost_of("transcribe_track")
                .is_some_and(workflow::catalog::Cost::is_paid)
        );
    }

    #[test]
    fn a_name_that_is_not_declared_fails_validation() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/diarization.yaml");
        let good = std::fs::read_to_string(path).unwrap();
        let registry = Registry::builtin();
        assert!(good.contains("activity: generate_title\n"));
        let step = good.replace("activity: generate_title\n", "activity: generate_titel\n");
        let report = workflow::parse_and_validate("diarization.yaml", &step, registry.catalog())
            .unwrap_err()
            .to_string();
        assert!(report.contains("generate_titel"), "{report}");
        assert!(good.contains("[FINAL_TITLE]"));
        let event = good.replacen("[FINAL_TITLE]", "[FINAL_TITEL]", 1);
        let report = workflow::parse_and_validate("diarization.yaml", &event, registry.catalog())
            .unwrap_err()
            .to_string();
        assert!(report.contains("FINAL_TITEL"), "{report}");
    }
}
