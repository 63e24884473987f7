//! The compose stack (`temporal-compose/`) is structurally sound — no Docker engine runs here,
//! so it is validated, not run: the services of docs/contracts/observability.md §7.2 with pinned
//! images and no deprecated auto-setup, schema setup before the server, every task queue the
//! pipelines use served by a reflow worker, every mounted file present, Prometheus scraping every
//! reflow process and loading the alert rules, Grafana provisioned with the dashboards.

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
        // Secrets come from the operator's env file, which must exist: the API binds
        // 0.0.0.0 and refuses to serve it without credentials.
        assert_eq!(s(&svc["env_file"][0]["path"]), "reflow.env", "{name:?}");
        assert_eq!(
            s(&svc["environment"]["REFLOW_CODEC_REQUIRED"]),
            "true",
            "{name:?}"
        );
        assert_eq!(
            svc["env_file"][0]["required"].as_bool(),
            Some(true),
            "{name:?}"
        );
        for secret in [
            "REFLOW_API_TOKEN",
            "SECRET_KEY",
            "DAILY_API_KEY",
            "LLM_API_KEY",
        ] {
            assert!(
                svc["environment"].get(secret).is_none(),
                "{name:?} sets {secret} in the compose file"
            );
        }
    }
    let example = std::fs::read_to_string(dir.join("reflow.env.example")).unwrap();
    for secret in ["REFLOW_API_TOKEN=", "SECRET_KEY=", "REFLOW_CODEC_KEYS="] {
        assert!(
            example.contains(secret),
            "reflow.env.example lacks {secret}"
        );
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
    for (name, svc) in services {
        if s(&svc["image"]) == "reflow:local" && svc["command"][0] == "worker" {
            let target = format!("{}:8000", s(name));
            assert!(targets.contains(&target), "{name:?} is scraped");
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
