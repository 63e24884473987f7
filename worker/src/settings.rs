//! Process configuration: flags, then environment, then an optional TOML file, then defaults.
//!
//! Pipeline YAML says *what* runs; these settings say *how this process* runs (where Temporal
//! is, which queues to serve, where the embedded default keeps its data).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is malformed.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
}

/// The optional TOML file (`reflow.toml`, or `--config`), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Temporal frontend, `host:port` or a URL (`TEMPORAL_ADDRESS`).
    pub temporal_address: Option<String>,
    /// Namespace (`TEMPORAL_NAMESPACE`, default `default`).
    pub temporal_namespace: Option<String>,
    /// Where the embedded default keeps its state (`REFLOW_DATA_DIR`, default `.data`).
    pub data_dir: Option<PathBuf>,
    /// The `temporal` CLI used to start a dev server (`TEMPORAL_CLI`).
    pub temporal_cli: Option<PathBuf>,
    /// Directory of pipeline files (`REFLOW_PIPELINES`, default `pipelines`).
    pub pipelines_dir: Option<PathBuf>,
    /// Object storage of transcripts (`REFLOW_STORAGE_URL`): `s3://bucket/prefix` or
    /// `file:///dir` (default `file://<data_dir>/storage`).
    pub storage_url: Option<String>,
    /// Where Daily's raw tracks are read from when `DAILYCO_STORAGE_AWS_BUCKET_NAME` is not set
    /// (`REFLOW_RECORDINGS_URL`; default `file://<data_dir>/recordings`).
    pub recordings_url: Option<String>,
    /// The database (`DATABASE_URL`): `postgres://…` or `sqlite:///path` (default
    /// `sqlite://<data_dir>/reflow.db`).
    pub database_url: Option<String>,
    /// Payload encryption keys (`REFLOW_CODEC_KEYS`): `id:base64-of-32-bytes`, comma-separated,
    /// newest first (see [`crate::codec`]). Unset: payloads travel in clear.
    pub codec_keys: Option<String>,
    /// Compress payloads before encrypting them (`REFLOW_CODEC_COMPRESS`).
    pub codec_compress: Option<bool>,
    /// Refuse to run without payload encryption, and refuse unsealed payloads in the tasks
    /// workers are given (`REFLOW_CODEC_REQUIRED`; the compose stack sets it).
    pub codec_required: Option<bool>,
    /// The operator's bearer token for the HTTP API (`REFLOW_API_TOKEN`).
    pub api_token: Option<String>,
    /// The key users' JWTs are signed with (`SECRET_KEY`).
    pub secret_key: Option<String>,
    /// Serve the API without credentials on a public address, because something in front of
    /// reflow authenticates every request (`REFLOW_ALLOW_OPEN_API`).
    pub allow_open_api: Option<bool>,
    /// Daily's recordings bucket (`DAILYCO_STORAGE_AWS_BUCKET_NAME`).
    pub daily_bucket: Option<String>,
}

/// Resolved settings.
#[derive(Clone)]
pub struct Settings {
    /// Temporal frontend URL; `None` means "start a dev server" (only `reflow dev`/`demo`).
    pub temporal_address: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Data directory of the embedded default.
    pub data_dir: PathBuf,
    /// The `temporal` CLI.
    pub temporal_cli: PathBuf,
    /// Pipeline files.
    pub pipelines_dir: PathBuf,
    /// Object storage URL, if set (else a directory under the data dir).
    pub storage: Option<String>,
    /// Raw-track storage URL, if set.
    pub recordings: Option<String>,
    /// Database URL, if set.
    pub database: Option<String>,
    /// Payload encryption keys, if set (never printed: see the `Debug` impl).
    pub codec_keys: Option<String>,
    /// Compress before encrypting.
    pub codec_compress: bool,
    /// Keys must be configured.
    pub codec_required: bool,
    /// The operator's API token (never printed).
    pub api_token: Option<String>,
    /// The JWT key (never printed).
    pub secret_key: Option<String>,
    /// Open API on a public address allowed.
    pub allow_open_api: bool,
    /// Daily's recordings bucket.
    pub daily_bucket: Option<String>,
    /// The process environment as read once at [`Settings::load`] (non-empty values): the
    /// backend configurations (`TRANSCRIPT_*`, `LLM_*`, `DAILY_*`, `ZULIP_*`, `AWS_*`, …) and
    /// the worker's tuning knobs are read from here, never from the environment directly.
    env: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

/// Connections the HTTP API serves at once unless `REFLOW_HTTP_MAX_CONNECTIONS` says.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 1024;

/// How long an HTTP connection with nothing in flight stays open unless
/// `REFLOW_HTTP_IDLE_TIMEOUT` says.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// WebSockets the HTTP API keeps open at once unless `REFLOW_WS_MAX` says.
pub const DEFAULT_WS_MAX: usize = 1024;
/// How long in-flight activities get to finish after a stop request before they are
/// cancelled, unless `REFLOW_SHUTDOWN_GRACE` says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How old a Daily webhook's signed timestamp may be unless `REFLOW_DAILY_WEBHOOK_MAX_AGE`
/// says (docs/contracts/daily.md §3.1).
pub const DEFAULT_DAILY_WEBHOOK_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// A duration setting: seconds (`90`, `2.5`) or humantime (`90s`, `24h`, `1h 30m`).
pub(crate) fn duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok(),
    }
}

/// Origins allowed to call `/codec/*` from a browser unless `REFLOW_CODEC_CORS_ORIGINS` says
/// (the local Temporal Web UI).
pub const DEFAULT_CODEC_CORS_ORIGINS: &str = "http://localhost:8233,http://127.0.0.1:8233";

/// The origins of a comma-separated list, trimmed, empty entries dropped.
pub fn origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect()
}

impl Settings {
    /// A setting by its variable name, as the environment held it at load.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    /// Connections served at once (`REFLOW_HTTP_MAX_CONNECTIONS`, a positive number).
    pub fn http_max_connections(&self) -> usize {
        self.var("REFLOW_HTTP_MAX_CONNECTIONS")
            .and_then(|v| v.trim().parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_HTTP_MAX_CONNECTIONS)
    }

    /// A positive count setting.
    pub(crate) fn count(&self, name: &str) -> Option<usize> {
        self.var(name)
            .and_then(|v| v.trim().parse().ok())
            .filter(|n| *n > 0)
    }

    /// How old a Daily webhook's signed timestamp may be (`REFLOW_DAILY_WEBHOOK_MAX_AGE`,
    /// seconds or humantime, default 24 h; docs/contracts/daily.md §3.1).
    pub fn daily_webhook_max_age(&self) -> std::time::Duration {
        self.var("REFLOW_DAILY_WEBHOOK_MAX_AGE")
            .and_then(|v| duration(&v))
            .unwrap_or(DEFAULT_DAILY_WEBHOOK_MAX_AGE)
    }

    /// Browser origins allowed on `/codec/*` (`REFLOW_CODEC_CORS_ORIGINS`, comma-separated).
    pub fn codec_cors_origins(&self) -> Vec<String> {
        origins(
            &self
                .var("REFLOW_CODEC_CORS_ORIGINS")
                .unwrap_or_else(|| DEFAULT_CODEC_CORS_ORIGINS.into()),
        )
    }

    /// Activity slot overrides per queue (`REFLOW_ACTIVITY_SLOTS`, e.g. `reflow-asr=2`).
    pub fn activity_slots(&self) -> Option<String> {
        self.var("REFLOW_ACTIVITY_SLOTS")
    }

    /// How long in-flight activities get to finish after SIGTERM before they are cancelled
    /// (`REFLOW_SHUTDOWN_GRACE`, seconds; [`DEFAULT_SHUTDOWN_GRACE`] by default). A cancelled
    /// transcription keeps its heartbeat details, so the next worker continues it.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        self.var("REFLOW_SHUTDOWN_GRACE")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(DEFAULT_SHUTDOWN_GRACE, std::time::Duration::from_secs_f64)
    }

    /// Resolve from a config file (if any) and the environment; flags are applied by the CLI
    /// on top (clap reads the same variables, so a flag simply wins).
    pub fn load(config: Option<&Path>) -> Result<Settings, SettingsError> {
        let default_file = Path::new("reflow.toml");
        let path = config.or_else(|| default_file.exists().then_some(default_file));
        let raw = match path {
            None => RawSettings::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| SettingsError::Parse {
                    path: p.to_owned(),
                    source,
                })?
            }
        };
        let env: std::collections::BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Ok(Settings::from_vars(raw, env))
    }

    /// Resolve a parsed file against `env` (non-empty variables), keeping `env` for the
    /// backend configurations and knobs read through [`Self::var`].
    pub fn from_vars(
        raw: RawSettings,
        env: std::collections::BTreeMap<String, String>,
    ) -> Settings {
        let mut settings = Settings::resolve(raw, |k| env.get(k).cloned());
        settings.env = std::sync::Arc::new(env);
        settings
    }

    /// Resolve a parsed file against an environment lookup (the process env in [`Self::load`]).
    pub fn resolve(raw: RawSettings, env: impl Fn(&str) -> Option<String>) -> Settings {
        Settings {
            temporal_address: env("TEMPORAL_ADDRESS").or(raw.temporal_address),
            namespace: env("TEMPORAL_NAMESPACE")
                .or(raw.temporal_namespace)
                .unwrap_or_else(|| "default".into()),
            data_dir: env("REFLOW_DATA_DIR")
                .map(PathBuf::from)
                .or(raw.data_dir)
                .unwrap_or_else(|| ".data".into()),
            temporal_cli: env("TEMPORAL_CLI")
                .map(PathBuf::from)
                .or(raw.temporal_cli)
                .unwrap_or_else(find_temporal_cli),
            pipelines_dir: env("REFLOW_PIPELINES")
                .map(PathBuf::from)
                .or(raw.pipelines_dir)
                .unwrap_or_else(|| "pipelines".into()),
            storage: env("REFLOW_STORAGE_URL").or(raw.storage_url),
            recordings: env("REFLOW_RECORDINGS_URL").or(raw.recordings_url),
            database: env("DATABASE_URL").or(raw.database_url),
            codec_keys: env("REFLOW_CODEC_KEYS").or(raw.codec_keys),
            codec_compress: env("REFLOW_CODEC_COMPRESS")
                .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
                .or(raw.codec_compress)
                .unwrap_or(false),
            codec_required: env("REFLOW_CODEC_REQUIRED")
                .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
                .or(raw.codec_required)
                .unwrap_or(false),
            api_token: env("REFLOW_API_TOKEN").or(raw.api_token),
            secret_key: env("SECRET_KEY").or(raw.secret_key),
            allow_open_api: env("REFLOW_ALLOW_OPEN_API")
                .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
                .or(raw.allow_open_api)
                .unwrap_or(false),
            daily_bucket: env("DAILYCO_STORAGE_AWS_BUCKET_NAME").or(raw.daily_bucket),
            env: Default::default(),
        }
    }

    /// The API has credentials (an operator token or a JWT key).
    pub fn api_has_credentials(&self) -> bool {
        self.api_token.is_some() || self.secret_key.is_some()
    }

    /// The API's secrets checked ([`crate::http::keys`]): `SECRET_KEY` and `REFLOW_API_TOKEN`
    /// of at least 32 bytes, and the previous `SECRET_KEY` still accepted for verification
    /// (`SECRET_KEY_PREVIOUS` until `SECRET_KEY_PREVIOUS_UNTIL`), if any.
    pub fn api_keys(
        &self,
    ) -> Result<Option<crate::http::keys::PreviousKey>, crate::http::keys::KeyError> {
        use crate::http::keys::{check_length, previous_key};
        if let Some(k) = &self.secret_key {
            check_length("SECRET_KEY", k)?;
        }
        if let Some(t) = &self.api_token {
            check_length("REFLOW_API_TOKEN", t)?;
        }
        previous_key(
            self.secret_key.as_deref(),
            self.var("SECRET_KEY_PREVIOUS").as_deref(),
            self.var("SECRET_KEY_PREVIOUS_UNTIL").as_deref(),
        )
    }

    /// Users reach the API over https: `REFLOW_PUBLIC_URL` (where the operator's proxy
    /// publishes it) is an `https://` URL.
    pub fn public_https(&self) -> bool {
        self.var("REFLOW_PUBLIC_URL")
            .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"))
    }

    /// The payload codec the keys describe (`None` without keys), refusing unsealed payloads
    /// in worker tasks when `REFLOW_CODEC_REQUIRED` ([`crate::codec::PayloadEncryption::required`]).
    pub fn codec(
        &self,
    ) -> Result<Option<crate::codec::PayloadEncryption>, crate::codec::CodecError> {
        if self.codec_required && self.codec_keys.is_none() {
            return Err(crate::codec::CodecError::Keys(
                "not set, and REFLOW_CODEC_REQUIRED says payloads must be encrypted".into(),
            ));
        }
        self.codec_keys
            .as_deref()
            .map(|k| {
                crate::codec::PayloadEncryption::from_spec(k, self.codec_compress)
                    .map(|c| c.required(self.codec_required))
            })
            .transpose()
    }

    /// The data converter of every client this process makes: the SDK's, with the payload
    /// codec when keys are configured.
    pub fn data_converter(
        &self,
    ) -> Result<temporalio_common::data_converters::DataConverter, crate::codec::CodecError> {
        Ok(self
            .codec()?
            .map(|c| c.data_converter())
            .unwrap_or_default())
    }

    /// The object storage URL: the configured one, or `file://<data_dir>/storage`.
    pub fn storage_url(&self) -> Result<String, activities::storage::StorageError> {
        self.url_or_data_dir(self.storage.as_deref(), "storage")
    }

    /// The raw-track storage URL (when no Daily bucket is configured): the configured one, or
    /// `file://<data_dir>/recordings`.
    pub fn recordings_url(&self) -> Result<String, activities::storage::StorageError> {
        self.url_or_data_dir(self.recordings.as_deref(), "recordings")
    }

    /// The database URL: the configured one, or `sqlite://<data_dir>/reflow.db`.
    pub fn database_url(&self) -> Result<String, activities::storage::StorageError> {
        if let Some(u) = &self.database {
            return Ok(u.clone());
        }
        let path = std::path::absolute(self.data_dir.join("reflow.db"))
            .map_err(|e| activities::storage::StorageError::Config(format!("data dir: {e}")))?;
        Ok(format!("sqlite://{}", path.display()))
    }

    fn url_or_data_dir(
        &self,
        configured: Option<&str>,
        dir: &str,
    ) -> Result<String, activities::storage::StorageError> {
        if let Some(u) = configured {
            return Ok(u.to_owned());
        }
        let dir = std::path::absolute(self.data_dir.join(dir))
            .map_err(|e| activities::storage::StorageError::Config(format!("data dir: {e}")))?;
        url::Url::from_directory_path(&dir)
            .map(String::from)
            .map_err(|()| {
                activities::storage::StorageError::Config(format!(
                    "{} is not an absolute path",
                    dir.display()
                ))
            })
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("temporal_address", &self.temporal_address)
            .field("namespace", &self.namespace)
            .field("data_dir", &self.data_dir)
            .field("temporal_cli", &self.temporal_cli)
            .field("pipelines_dir", &self.pipelines_dir)
            .field("storage", &self.storage)
            .field("recordings", &self.recordings)
            .field("database", &self.database.as_ref().map(|_| "<set>"))
            .field(
                "codec_keys",
                &activities::redacted::Redacted(&self.codec_keys),
            )
            .field("codec_compress", &self.codec_compress)
            .field("codec_required", &self.codec_required)
            .field(
                "api_token",
                &activities::redacted::Redacted(&self.api_token),
            )
            .field(
                "secret_key",
                &activities::redacted::Redacted(&self.secret_key),
            )
            .field("allow_open_api", &self.allow_open_api)
            .field("env", &format_args!("{} variables", self.env.len()))
            .field("daily_bucket", &self.daily_bucket)
            .finish()
    }
}

/// `.venv/bin/temporal` (what `just setup` installs), else `temporal` on `PATH`.
fn find_temporal_cli() -> PathBuf {
    let venv = Path::new(".venv/bin/temporal");
    if venv.exists() {
        venv.to_owned()
    } else {
        PathBuf::from("temporal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_over_the_file_and_the_file_over_defaults() {
        let raw: RawSettings =
            toml::from_str("temporal_address = \"tmp:7233\"\ndata_dir = \"/var/lib/reflow\"\n")
                .unwrap();
        let s = Settings::resolve(raw, |k| {
            (k == "TEMPORAL_NAMESPACE").then(|| "meetings".to_owned())
        });
        assert_eq!(s.temporal_address.as_deref(), Some("tmp:7233"));
        assert_eq!(s.namespace, "meetings");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/reflow"));
        assert_eq!(s.pipelines_dir, PathBuf::from("pipelines"));
        let raw: RawSettings = toml::from_str("temporal_address = \"tmp:7233\"").unwrap();
        let s = Settings::resolve(raw, |k| {
            (k == "TEMPORAL_ADDRESS").then(|| "prod:7233".to_owned())
        });
        assert_eq!(s.temporal_address.as_deref(), Some("prod:7233"));
    }

    #[test]
    fn a_required_codec_without_keys_is_an_error_and_keys_never_print() {
        let s = Settings::resolve(RawSettings::default(), |k| {
            (k == "REFLOW_CODEC_REQUIRED").then(|| "true".to_owned())
        });
        let e = s.data_converter().unwrap_err().to_string();
        assert!(
            e.contains("REFLOW_CODEC_KEYS") && e.contains("REFLOW_CODEC_REQUIRED"),
            "{e}"
        );
        let key = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let s = Settings::resolve(RawSettings::default(), |k| {
            (k == "REFLOW_CODEC_KEYS").then(|| key.to_owned())
        });
        assert_eq!(s.codec().unwrap().unwrap().current_key(), "k1");
        assert!(!format!("{s:?}").contains("AQEB"));
    }

    #[test]
    fn a_misspelled_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("reflow.toml");
        std::fs::write(&f, "temporal_adress = \"x\"\n").unwrap();
        let e = Settings::load(Some(&f)).unwrap_err().to_string();
        assert!(
            e.contains("reflow.toml") && e.contains("temporal_adress"),
            "{e}"
        );
    }

    #[test]
    fn connection_and_webhook_limits_are_settings() {
        let env: std::collections::BTreeMap<String, String> = [
            ("REFLOW_HTTP_MAX_CONNECTIONS", "100"),
            ("REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT", "500"),
            ("REFLOW_HTTP_IDLE_TIMEOUT", "2m"),
            ("REFLOW_WS_MAX", "40"),
            ("REFLOW_WS_MAX_PER_CLIENT", "3"),
            ("REFLOW_DAILY_WEBHOOK_MAX_AGE", "3600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let s = Settings::from_vars(RawSettings::default(), env);
        assert_eq!(
            s.daily_webhook_max_age(),
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(
            duration("1h 30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(duration("-1"), None);
        assert_eq!(duration("soon"), None);
    }

    #[test]
    fn the_settings_own_the_backends_and_the_knobs() {
        let env: std::collections::BTreeMap<String, String> = [
            ("REFLOW_HTTP_MAX_CONNECTIONS", "5"),
            (
                "REFLOW_CODEC_CORS_ORIGINS",
                "https://ui.example, ,https://b.example",
            ),
            ("REFLOW_ACTIVITY_SLOTS", "reflow-asr=2"),
            ("REFLOW_SHUTDOWN_GRACE", "2.5"),
            ("LLM_BACKEND", "openai"),
            ("LLM_URL", "https://llm.example/v1/"),
            ("LLM_MODEL", "m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let s = Settings::from_vars(RawSettings::default(), env);
        assert_eq!(s.http_max_connections(), 5);
        assert_eq!(
            s.codec_cors_origins(),
            ["https://ui.example", "https://b.example"]
        );
        assert_eq!(s.activity_slots().as_deref(), Some("reflow-asr=2"));
        assert_eq!(s.shutdown_grace(), std::time::Duration::from_millis(2500));
        let llm = activities::llm::LlmConfig::from_vars(&|k| s.var(k)).unwrap();
        assert_eq!(llm.backend_name(), "openai:m");
        // Nothing set: the defaults.
        let d = Settings::from_vars(RawSettings::default(), Default::default());
        assert_eq!(d.http_max_connections(), DEFAULT_HTTP_MAX_CONNECTIONS);
        assert_eq!(d.shutdown_grace(), DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(d.codec_cors_origins().len(), 2);
        assert_eq!(d.daily_webhook_max_age(), DEFAULT_DAILY_WEBHOOK_MAX_AGE);
        assert!(
            format!("{s:?}").contains("7 variables"),
            "the environment is never printed"
        );
    }
}
