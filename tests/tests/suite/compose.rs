//! The compose stack (`temporal-compose/`) is structurally sound — no Docker engine runs here,
//! so it is validated, not run: the services of docs/contracts/observability.md §7.2 with pinned
//! images and no deprecated auto-setup, schema setup before the server, every task queue the
//! pipelines use served by a reflow worker, every mounted file present, Prometheus scraping every
//! reflow process and loading the alert rules, Grafana provisioned with the dashboards. And
//! closed (issue 39): ports published on loopback only, storage and Temporal on the compose
//! network only, no credential in the file (each one `${NAME:?…}` from `reflow.env`, which
//! `scripts/compose-env.sh` generates), no anonymous Grafana, secrets and data kept out of the
//! image's build context.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v.apply_merge().unwrap();
    v
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn the_compose_stack_is_complete_and_consistent() {
    let dir = root().join("temporal-compose");
    let compose = yaml(&dir.join("docker-compose.yml"));
    let services = compose["services"].as_mapping().expect("services");
    let service = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("service {name} is missing"))
    };

    // Pinned images (§7.1); the deprecated auto-setup image is not used.
    for (name, image) in [
        ("postgresql", "postgres:16"),
        ("temporal-admin-tools", "temporalio/admin-tools:1.31.2"),
        ("temporal", "temporalio/server:1.31.2"),
        ("temporal-create-namespace", "temporalio/admin-tools:1.31.2"),
        ("temporal-ui", "temporalio/ui:2.52.0"),
    ] {
        assert_eq!(s(&service(name)["image"]), image, "{name}");
    }
    for (name, svc) in services {
        let image = s(&svc["image"]);
        assert!(
            !image.contains("auto-setup"),
            "{name:?} uses the deprecated auto-setup"
        );
        assert!(!image.is_empty(), "{name:?} has an image");
        assert!(!image.ends_with(":latest"), "{name:?} pins its image");
    }

    // Schema setup runs (and succeeds) before the server starts.
    let temporal = service("temporal");
    assert_eq!(
        s(&temporal["depends_on"]["temporal-admin-tools"]["condition"]),
        "service_completed_successfully"
    );
    assert_eq!(s(&temporal["environment"]["DB"]), "postgres12");
    assert_eq!(s(&temporal["environment"]["POSTGRES_SEEDS"]), "postgresql");
    let setup = s(&service("temporal-admin-tools")["command"][0]);
    for db in ["temporal", "temporal_visibility"] {
        assert!(
            setup.contains(&format!("--db {db} setup-schema")),
            "{db} schema set up"
        );
    }
    let namespace = s(&service("temporal-create-namespace")["command"][0]);
    for (name, kind) in workflow::search::ALL {
        assert!(
            namespace.contains(&format!(" {name}={kind}")),
            "search attribute {name} created as {kind}"
        );
    }

    // Every task queue the repository's pipelines use is served by a reflow worker.
    let mut served = Vec::new();
    for (name, svc) in services {
        if s(&svc["image"]) != "reflow:local" {
            continue;
        }
        let cmd: Vec<&str> = svc["command"]
            .as_sequence()
            .map(|c| c.iter().map(s).collect())
            .unwrap_or_default();
        if let Some(i) = cmd.iter().position(|a| *a == "--queues") {
            served.extend(cmd[i + 1].split(',').map(str::to_owned));
        }
        assert_eq!(
            s(&svc["environment"]["TEMPORAL_ADDRESS"]),
            "temporal:7233",
            "{name:?}"
        );
        // Payloads are encrypted; reflow's secrets come from reflow.env by interpolation
        // (`no_credential_is_written_in_the_compose_file` checks how).
        assert_eq!(
            s(&svc["environment"]["REFLOW_CODEC_REQUIRED"]),
            "true",
            "{name:?}"
        );
        for secret in ["REFLOW_API_TOKEN", "SECRET_KEY", "REFLOW_CODEC_KEYS"] {
            assert_eq!(
                required_var(s(&svc["environment"][secret])),
                Some(secret),
                "{name:?}: {secret} is required from reflow.env"
            );
        }
    }
    assert_eq!(
        s(&service("temporal-ui")["environment"]["TEMPORAL_CODEC_ENDPOINT"]),
        "http://localhost:8000/codec"
    );
    let catalog = reflow::registry::Registry::builtin();
    for file in reflow::cli::pipeline_files(&root().join("pipelines")).unwrap() {
        let p = reflow::runs::load_pipeline(&file, catalog.catalog()).unwrap();
        for q in p.task_queues() {
            assert!(
                served.contains(&q),
                "queue {q} of {} has no worker",
                file.display()
            );
        }
    }

    // Mounted files exist; the image's Dockerfile too.
    for (name, svc) in services {
        for volume in svc["volumes"].as_sequence().into_iter().flatten() {
            let source = s(volume).split(':').next().unwrap_or_default();
            if source.starts_with('.') {
                assert!(
                    dir.join(source).exists(),
                    "{name:?} mounts missing {source}"
                );
            }
        }
    }
    assert!(dir.join("Dockerfile").exists());

    // Prometheus loads the alert rules and scrapes every reflow process; Grafana gets the
    // dashboards.
    let prom = yaml(&dir.join("prometheus/prometheus.yml"));
    assert_eq!(
        s(&prom["rule_files"][0]),
        "/etc/prometheus/alerts/*.rules.yml"
    );
    let targets: Vec<String> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|j| {
            j["static_configs"][0]["targets"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .map(|t| s(&t).to_owned())
        .collect();
    // On each worker's metrics port (`--metrics`, /metrics alone, no credentials), which is
    // never published: the API port's /metrics answers the operator's token only.
    for (name, svc) in services {
        if s(&svc["image"]) == "reflow:local" && svc["command"][0] == "worker" {
            let cmd: Vec<&str> = svc["command"]
                .as_sequence()
                .map(|c| c.iter().map(s).collect())
                .unwrap_or_default();
            assert!(
                cmd.windows(2).any(|w| w == ["--metrics", "0.0.0.0:9464"]),
                "{name:?} serves its metrics port: {cmd:?}"
            );
            let target = format!("{}:9464", s(name));
            assert!(targets.contains(&target), "{name:?} is scraped");
            for port in svc["ports"].as_sequence().into_iter().flatten() {
                assert!(!s(port).contains("9464"), "{name:?} publishes its metrics");
            }
        }
    }
    assert!(targets.iter().any(|t| t == "temporal:8000"));
    let grafana = yaml(&dir.join("grafana/provisioning/dashboards/reflow.yml"));
    assert_eq!(
        s(&grafana["providers"][0]["options"]["path"]),
        "/var/lib/grafana/dashboards"
    );
    for d in ["pipeline", "worker"] {
        let path = root().join(format!("dashboards/{d}.json"));
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            dash["panels"].as_array().is_some_and(|p| p.len() >= 5),
            "{d}: a Grafana dashboard with panels"
        );
    }
}

/// The cluster gets the dynamic config the embedded dev server runs with (the transfer-queue
/// read ceiling that otherwise holds every step to 50 ms, eager activity dispatch), with the
/// same values.
#[test]
fn the_cluster_lifts_the_same_queue_ceilings_as_the_dev_server() {
    let config = yaml(&root().join("temporal-compose/dynamicconfig/development-sql.yaml"));
    for setting in reflow::temporal::DEV_SERVER_DYNAMIC_CONFIG {
        let (key, value) = setting.split_once('=').expect("KEY=VALUE");
        let values = config[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("development-sql.yaml does not set {key}"));
        let set = values
            .iter()
            .map(|v| match &v["value"] {
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => s(other).to_owned(),
            })
            .collect::<Vec<_>>();
        assert_eq!(set, [value], "{key} in development-sql.yaml");
    }
}

// ---- Exposure and credentials (issue 39: "the compose stack is open") ----

/// The script that writes `temporal-compose/reflow.env`, named by every `${VAR:?…}` message.
const GENERATOR: &str = "scripts/compose-env.sh";

/// The opt-in for publishing reflow's API beyond loopback.
const BIND_OPT_IN: &str = "${REFLOW_BIND_ADDRESS:-127.0.0.1}";

/// Credentials issued by a third party (Daily, the GPU/LLM providers, Zulip): the generator
/// cannot make them, and their integration is off while they are empty (reflow reads empty as
/// unset, and refuses Daily's webhooks without `DAILY_WEBHOOK_SECRET`). These alone may be
/// `${NAME:-}`; every other credential is `${NAME:?…}`.
const THIRD_PARTY: &[&str] = &[
    "DAILY_API_KEY",
    "DAILY_WEBHOOK_SECRET",
    "DAILYCO_STORAGE_AWS_ACCESS_KEY_ID",
    "DAILYCO_STORAGE_AWS_SECRET_ACCESS_KEY",
    "TRANSCRIPT_MODAL_API_KEY",
    "LLM_API_KEY",
    "ZULIP_API_KEY",
];

/// A `SECRET_KEY` rotation in progress (docs/runbook.md, "Rotating SECRET_KEY"): the previous
/// key and its date, empty (no rotation) unless the operator sets them.
const ROTATION: &[&str] = &["SECRET_KEY_PREVIOUS", "SECRET_KEY_PREVIOUS_UNTIL"];

fn compose() -> Value {
    yaml(&root().join("temporal-compose/docker-compose.yml"))
}

fn services(compose: &Value) -> Vec<(String, Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (s(k).to_owned(), v.clone()))
        .collect()
}

/// A compose interpolation: `${NAME}`, `${NAME:?message}`, `${NAME:-default}`, `$NAME`.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    name: String,
    /// `""`, `":?"`, `"?"`, `":-"`, `"-"`, `":+"` or `"+"`.
    op: String,
    arg: String,
}

/// The interpolations in `text` (`$$` is compose's escaped dollar, for the container's shell).
fn refs(text: &str) -> Vec<Ref> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let end = text[i..]
                    .find('}')
                    .map(|e| i + e)
                    .unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
                let inner = &text[i + 2..end];
                assert!(!inner.contains("${"), "nested interpolation in {text:?}");
                let n = inner
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(inner.len());
                let rest = &inner[n..];
                let op_len = match rest.as_bytes() {
                    [b':', b'?' | b'-' | b'+', ..] => 2,
                    [b'?' | b'-' | b'+', ..] => 1,
                    [] => 0,
                    _ => panic!("unexpected interpolation ${{{inner}}} in {text:?}"),
                };
                out.push(Ref {
                    name: inner[..n].to_owned(),
                    op: rest[..op_len].to_owned(),
                    arg: rest[op_len..].to_owned(),
                });
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let n = text[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(text.len() - i - 1);
                out.push(Ref {
                    name: text[i + 1..i + 1 + n].to_owned(),
                    op: String::new(),
                    arg: String::new(),
                });
                i += 1 + n;
            }
            _ => i += 1,
        }
    }
    out
}

/// `NAME` when `value` is exactly `${NAME:?message}` with a message naming the generator.
fn required_var(value: &str) -> Option<&str> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    let (name, message) = inner.split_once(":?")?;
    (!inner.contains("${") && !name.is_empty() && message.contains(GENERATOR)).then_some(name)
}

/// Every string scalar under `v` (compose interpolates values, not keys).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(t) => out.push(t.clone()),
        Value::Sequence(seq) => seq.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// Every interpolation in the compose file's values.
fn compose_refs(compose: &Value) -> Vec<Ref> {
    let mut all = Vec::new();
    strings(compose, &mut all);
    all.iter().flat_map(|t| refs(t)).collect()
}

/// A service's environment as pairs (mapping or `KEY=value` list).
fn env_of(svc: &Value) -> Vec<(String, String)> {
    match &svc["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(t) => t.clone(),
                    Value::Null => String::new(),
                    other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
                };
                (s(k).to_owned(), v)
            })
            .collect(),
        Value::Sequence(seq) => seq
            .iter()
            .map(|e| {
                let (k, v) = s(e).split_once('=').unwrap_or((s(e), ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A service's command and entrypoint, as one text.
fn script_of(svc: &Value) -> String {
    let mut parts = Vec::new();
    strings(&svc["entrypoint"], &mut parts);
    strings(&svc["command"], &mut parts);
    parts.join("\n")
}

/// The host address of each published port: `None` when the entry publishes on every
/// interface (`"8080:8080"`, `"8080"`, or a long-syntax entry without `host_ip`).
fn published(svc: &Value) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for port in svc["ports"].as_sequence().into_iter().flatten() {
        match port {
            Value::Mapping(_) => {
                let ip = port["host_ip"].as_str().map(str::to_owned);
                out.push((serde_yaml_ng::to_string(port).unwrap(), ip));
            }
            other => {
                let spec = match other {
                    Value::Number(n) => n.to_string(),
                    _ => s(other).to_owned(),
                };
                let ip = if spec.starts_with("${") {
                    spec.find("}:").map(|e| spec[..=e].to_owned())
                } else {
                    let parts: Vec<&str> = spec.split(':').collect();
                    (parts.len() == 3).then(|| parts[0].to_owned())
                };
                out.push((spec, ip));
            }
        }
    }
    out
}

fn credential_like(key: &str) -> bool {
    regex::Regex::new(
        r"(?i)(PASSWORD|PASSWD|_PWD$|SECRET|TOKEN|API_KEY|ACCESS_KEY|_KEYS?$|ROOT_USER)",
    )
    .unwrap()
    .is_match(key)
}

/// Docker's published ports bypass the host firewall: everything is published on loopback
/// only. reflow's API (authenticated; Daily's webhooks and users reach it through the
/// operator's TLS proxy) may be opted onto another address with `REFLOW_BIND_ADDRESS`; the
/// Temporal Web UI and Prometheus authenticate nobody and never leave loopback.
#[test]
fn published_ports_bind_loopback_unless_the_operator_opts_in() {
    let compose = compose();
    let mut publishing = Vec::new();
    for (name, svc) in services(&compose) {
        assert!(
            svc.get("network_mode").is_none_or(|m| s(m) != "host"),
            "{name} uses the host's network (every port of it open)"
        );
        for (spec, ip) in published(&svc) {
            publishing.push(name.clone());
            match ip.as_deref() {
                Some("127.0.0.1") => {}
                Some(BIND_OPT_IN) if name == "reflow-api" => {}
                other => panic!(
                    "{name} publishes {spec:?} on {} (expected 127.0.0.1{})",
                    other.unwrap_or("every interface"),
                    if name == "reflow-api" {
                        format!(" or {BIND_OPT_IN}")
                    } else {
                        String::new()
                    }
                ),
            }
        }
    }
    publishing.sort();
    publishing.dedup();
    assert_eq!(
        publishing,
        ["grafana", "prometheus", "reflow-api", "temporal-ui"],
        "only the API and the operator's UIs are published"
    );
}

/// MinIO, PostgreSQL and Temporal's frontend are reached on the compose network only: they
/// publish nothing, even on loopback (the Temporal CLI runs in a container, see the runbook).
#[test]
fn storage_and_temporal_are_on_the_compose_network_only() {
    let compose = compose();
    for name in ["minio", "postgresql", "temporal"] {
        let svc = &compose["services"][name];
        assert!(svc.is_mapping(), "service {name} exists");
        assert!(
            svc.get("ports").is_none(),
            "{name} publishes {:?}",
            svc["ports"]
        );
    }
}

/// No credential is written in the compose file or the files it mounts: every password-,
/// secret-, token- or key-like environment value is `${NAME:?… scripts/compose-env.sh …}`, so
/// compose refuses to start without reflow.env (third-party keys alone may be empty); URLs
/// carry no literal password; the containers' scripts take passwords from their environment.
#[test]
fn no_credential_is_written_in_the_compose_file() {
    let compose = compose();
    let userinfo = regex::Regex::new(r"://[^:/@\s]+:([^@\s]+)@").unwrap();
    let flag = regex::Regex::new(r"(?:--pw|--password)[ =]+\S+").unwrap();
    let alias = regex::Regex::new(r"mc alias set +\S+ +\S+ +(\S+) +(\S+)").unwrap();
    for (name, svc) in services(&compose) {
        for (key, value) in env_of(&svc) {
            if !credential_like(&key) {
                continue;
            }
            let third_party = (THIRD_PARTY.contains(&key.as_str())
                || ROTATION.contains(&key.as_str()))
                && value == format!("${{{key}:-}}");
            assert!(
                required_var(&value).is_some() || third_party,
                "{name}: {key}={value:?} is not ${{NAME:?set it in reflow.env ({GENERATOR})}}"
            );
        }
        let mut texts = Vec::new();
        strings(&svc, &mut texts);
        for text in &texts {
            for c in userinfo.captures_iter(text) {
                assert!(
                    required_var(&c[1]).is_some(),
                    "{name}: a URL with the literal password {:?}",
                    &c[1]
                );
            }
        }
        let script = script_of(&svc);
        assert!(
            !flag.is_match(&script),
            "{name}: a password on the command line: {:?}",
            flag.find(&script).map(|m| m.as_str())
        );
        for c in alias.captures_iter(&script) {
            for arg in [&c[1], &c[2]] {
                assert!(
                    arg.trim_matches('"').starts_with("$$"),
                    "{name}: mc alias set with the literal credential {arg:?}"
                );
            }
        }
    }
    // Mounted init scripts create users without literal passwords.
    let dir = root().join("temporal-compose");
    let literal = regex::Regex::new(r"(?i)password\s+'[^']*'").unwrap();
    for (name, svc) in services(&compose) {
        for volume in svc["volumes"].as_sequence().into_iter().flatten() {
            let source = s(volume).split(':').next().unwrap_or_default();
            let path = dir.join(source);
            if source.starts_with('.') && path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    !literal.is_match(&text),
                    "{name} mounts {source}, which writes a password"
                );
            }
        }
    }
}

/// Grafana lets nobody in anonymously and its admin password comes from reflow.env.
#[test]
fn grafana_has_no_anonymous_access_and_an_admin_password_from_the_env_file() {
    let compose = compose();
    let env: std::collections::BTreeMap<String, String> = env_of(&compose["services"]["grafana"])
        .into_iter()
        .collect();
    assert_eq!(
        env.get("GF_AUTH_ANONYMOUS_ENABLED").map(String::as_str),
        Some("false"),
        "anonymous access is switched off explicitly"
    );
    assert!(
        !env.contains_key("GF_AUTH_ANONYMOUS_ORG_ROLE"),
        "no role for anonymous users"
    );
    assert!(
        env.get("GF_AUTH_DISABLE_LOGIN_FORM")
            .is_none_or(|v| v != "true"),
        "login stays on"
    );
    assert!(
        env.get("GF_SECURITY_ADMIN_PASSWORD")
            .is_some_and(|v| required_var(v).is_some()),
        "admin password from reflow.env: {env:?}"
    );
    // No grafana.ini or provisioning file switches anonymous access back on.
    let provisioning = root().join("temporal-compose/grafana");
    let mut stack = vec![provisioning];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    !text.contains("[auth.anonymous]"),
                    "{} configures anonymous access",
                    path.display()
                );
            }
        }
    }
}

/// Whether `path` (relative to the build context, `/`-separated) is left out by the
/// `.dockerignore` `patterns` (Docker's rules: patterns match from the context root, `**`
/// any number of directories, `!` re-includes, a match on a directory excludes its contents).
fn dockerignored(patterns: &[String], path: &str) -> bool {
    let regex_of = |p: &str| {
        let p = p.trim_start_matches('/').trim_end_matches('/');
        let mut r = String::from("^");
        let mut chars = p.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                        r.push_str("(?:.*/)?");
                    } else {
                        r.push_str(".*");
                    }
                }
                '*' => r.push_str("[^/]*"),
                '?' => r.push_str("[^/]"),
                c => r.push_str(&regex::escape(&c.to_string())),
            }
        }
        r.push_str("(?:/.*)?$");
        regex::Regex::new(&r).unwrap()
    };
    let mut excluded = false;
    for p in patterns {
        let (negate, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        if regex_of(p).is_match(path) {
            excluded = !negate;
        }
    }
    excluded
}

/// `docker compose build` sends the repository root (context `..`): the secrets, the data
/// and the build outputs stay out of it; what the Dockerfile needs stays in. reflow.env is
/// git-ignored too.
#[test]
fn the_build_context_leaves_secrets_and_data_out() {
    let compose = compose();
    let build = &compose["x-reflow"]["build"];
    assert_eq!(
        s(&build["context"]),
        "..",
        "the context is the repository root"
    );
    let context = root().join("temporal-compose").join(s(&build["context"]));
    // BuildKit prefers <Dockerfile>.dockerignore over the context's .dockerignore.
    assert!(
        !root()
            .join(format!("{}.dockerignore", s(&build["dockerfile"])))
            .exists(),
        "a Dockerfile-specific ignore file would replace the checked one"
    );
    let patterns: Vec<String> = std::fs::read_to_string(context.join(".dockerignore"))
        .expect(".dockerignore at the repository root")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for path in [
        "temporal-compose/reflow.env",
        "reflow.env",
        ".env",
        "deploy/prod/reflow.env",
        "some/where/staging.env",
        ".data/transcripts/t1/transcript.json",
        "tests/.data/x.db",
        "reflow.db",
        "target/release/reflow",
        "bench/target/x",
        ".venv/bin/python",
        ".git/config",
        ".cache/reflow/models/x",
        "node_modules/x/index.js",
        "docs/node_modules/x/index.js",
    ] {
        assert!(
            dockerignored(&patterns, path),
            "{path} is in the build context"
        );
    }
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "worker/src/main.rs",
        "pipelines/diarization.yaml",
        "scripts/setup-models.sh",
        "native/ctranslate2/.gitignore",
        "temporal-compose/Dockerfile",
    ] {
        assert!(
            !dockerignored(&patterns, path),
            "{path} is needed by the build but ignored"
        );
    }
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(
        gitignore
            .lines()
            .any(|l| ["/temporal-compose/reflow.env", "reflow.env", "*.env"].contains(&l.trim())),
        ".gitignore leaves reflow.env out"
    );
}

/// The documented generator writes reflow.env with every variable the compose file refers
/// to, a fresh random value for each one compose requires, readable by its owner only; it
/// never overwrites an existing file.
#[test]
fn the_generator_writes_every_variable_the_stack_requires() {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    let compose = compose();
    let all = compose_refs(&compose);
    for r in &all {
        assert!(
            matches!(r.op.as_str(), ":?" | ":-"),
            "${{{}{}{}}}: use :? for a credential, :- for a setting (a bare or `?` reference \
             lets an empty value through)",
            r.name,
            r.op,
            r.arg
        );
    }
    let required: Vec<&str> = all
        .iter()
        .filter(|r| r.op == ":?")
        .map(|r| r.name.as_str())
        .collect();
    assert!(!required.is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let generate = |path: &Path| {
        std::process::Command::new("bash")
            .arg(root().join(GENERATOR))
            .arg(path)
            .output()
            .unwrap()
    };
    let read = |path: &Path| -> (String, BTreeMap<String, String>) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut vars = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((k, v)) = line.split_once('=') {
                assert!(
                    vars.insert(k.to_owned(), v.to_owned()).is_none(),
                    "{k} written twice"
                );
            } else {
                assert!(line.trim().is_empty(), "not KEY=value: {line:?}");
            }
        }
        (text, vars)
    };

    let path = tmp.path().join("reflow.env");
    let out = generate(&path);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "reflow.env is readable by its owner only");
    let (text, vars) = read(&path);
    for r in &all {
        let line = regex::Regex::new(&format!(r"(?m)^#?\s*{}=", r.name)).unwrap();
        assert!(
            line.is_match(&text),
            "reflow.env does not mention {}",
            r.name
        );
    }
    let mut seen = BTreeMap::new();
    for name in &required {
        let value = vars
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is required by the compose file but not written"));
        assert!(
            value.len() >= 20
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=:_-".contains(&b)),
            "{name}={value:?}: a random value of at least 160 bits, without quoting"
        );
        if let Some(other) = seen.insert(value.clone(), *name) {
            assert_eq!(other, *name, "{other} and {name} share a value");
        }
    }
    // Long enough for reflow, which refuses shorter at start.
    for name in ["SECRET_KEY", "REFLOW_API_TOKEN"] {
        reflow::http::keys::check_length(name, &vars[name]).unwrap();
    }
    reflow::codec::PayloadEncryption::from_spec(&vars["REFLOW_CODEC_KEYS"], false)
        .expect("REFLOW_CODEC_KEYS as reflow reads it");

    // Values embedded in URLs need no escaping; MinIO's credentials fit its limits.
    let mut texts = Vec::new();
    strings(&compose, &mut texts);
    let userinfo = regex::Regex::new(r"://[^:/@\s]+:([^@\s]+)@").unwrap();
    for c in texts.iter().flat_map(|t| userinfo.captures_iter(t)) {
        let name = required_var(&c[1]).unwrap();
        assert!(
            vars[name]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
            "{name} is used in a URL but needs escaping"
        );
    }
    let var_of = |svc: &str, key: &str| {
        let env: BTreeMap<String, String> = env_of(&compose["services"][svc]).into_iter().collect();
        let value = env.get(key).unwrap_or_else(|| panic!("{svc} has no {key}"));
        vars[required_var(value).unwrap_or_else(|| panic!("{svc}: {key}={value}"))].clone()
    };
    for (svc, user, password) in [
        ("minio", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
        ("reflow-api", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ] {
        assert!((3..=20).contains(&var_of(svc, user).len()), "{svc}: {user}");
        assert!(
            (8..=40).contains(&var_of(svc, password).len()),
            "{svc}: {password}"
        );
    }

    // Never overwrites; a second file gets its own values.
    let again = generate(&path);
    assert!(!again.status.success(), "overwrote an existing reflow.env");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "file untouched"
    );
    let other = tmp.path().join("other.env");
    assert!(generate(&other).status.success());
    let (_, other) = read(&other);
    for name in &required {
        assert_ne!(vars[*name], other[*name], "{name} is not random");
    }
}
