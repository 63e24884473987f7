//! `reflow dev` with no TEMPORAL_ADDRESS: it starts the real Temporal dev server (SQLite file
//! in the data dir, Web UI) and a worker; a run started against it completes and shows up in
//! the Web UI's API; Ctrl-C stops both.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use reflow::temporal::free_port;
use reflow_tests::wait_for;

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_starts_a_server_with_the_web_ui_runs_pipelines_and_stops_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let (port, ui) = (free_port().unwrap(), free_port().unwrap());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .current_dir(&repo)
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--ui-port",
            &ui.to_string(),
        ])
        .env_remove("TEMPORAL_ADDRESS")
        .env("REFLOW_DATA_DIR", data.path())
        .env("TEMPORAL_CLI", reflow_tests::temporal_cli())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    let address = format!("127.0.0.1:{port}");
    let run = Command::new(env!("CARGO_BIN_EXE_reflow-test-worker"))
        .current_dir(&repo)
        .args(["run", "pipelines/digest.yaml", "--id", "dev-digest", "--wait", "--input"])
        .arg(serde_json::json!({"dir": repo.join("pipelines").canonicalize().unwrap(), "report": data.path().join("report.json")}).to_string())
        .env("TEMPORAL_ADDRESS", &address)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(out["files"].as_u64().unwrap() >= 2, "{out}");
    assert!(
        data.path().join("temporal.db").exists(),
        "state lives in the data dir"
    );

    let listed = wait_for(
        "the Web UI to list the run",
        Duration::from_secs(30),
        || async {
            http_get(
                ui,
                "/api/v1/namespaces/default/workflows?query=WorkflowId%3D%22dev-digest%22",
            )
            .filter(|b| b.starts_with("HTTP/1.") && b.contains("dev-digest"))
        },
    )
    .await;
    assert!(
        listed.contains("DirectoryDigest"),
        "the UI lists the run under its pipeline name: {listed}"
    );

    // Ctrl-C: the worker drains, the dev server stops, the process exits cleanly.
    let sent = Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_for("reflow dev to exit", Duration::from_secs(30), || {
        let s = dev.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(status.success(), "{status}");
    wait_for(
        "the dev server to release its port",
        Duration::from_secs(10),
        || async { TcpStream::connect(&address).is_err().then_some(()) },
    )
    .await;
}
