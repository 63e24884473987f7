//! What the benchmark binaries read about the processes they run: the Temporal server's own
//! `action` counter (its metrics port), a process's resident memory and CPU time from
//! `/proc`, quantiles of samples, and the `reflow` release binary next to the benchmark.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// What the server says of its own memory, from its Prometheus endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ServerGauges {
    /// The workflow executions it holds in its mutable-state cache
    /// (`cache_usage{cache_type="mutablestate"}`).
    pub cached_executions: u64,
    /// Its Go heap in bytes: live objects and those not yet swept (`memory_heap`, Go's
    /// `HeapAlloc`; the dev server's services share one process and one heap).
    pub heap_bytes: u64,
}

/// [`ServerGauges`] of the server whose Prometheus endpoint is `metrics_address`
/// (`host:port`); `None` when it cannot be read.
pub async fn server_gauges(metrics_address: &str) -> Option<ServerGauges> {
    let text = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let gauge = |name: &str, label: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            labels
                .contains(label)
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
                .map(|v| v as u64)
        })
    };
    Some(ServerGauges {
        cached_executions: gauge("cache_usage", "cache_type=\"mutablestate\"")?,
        heap_bytes: gauge("memory_heap", "service_name=\"history\"")?,
    })
}

/// The server's `action` counter in namespace `default`, by `action_type`, from its
/// Prometheus endpoint at `metrics_address` (`host:port`).
pub async fn action_counts(metrics_address: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("http://{metrics_address}/metrics"))
        .await
        .context("scrape the dev server's metrics")?
        .text()
        .await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("action{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
        };
        if label("namespace").as_deref() != Some("default") {
            continue;
        }
        let kind = label("action_type").unwrap_or_default();
        *out.entry(kind).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`); `None` once it
/// has exited.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time of process `pid` (`"self"` for this one), from `/proc/PID/stat`
/// (in clock ticks of 1/100 s, USER_HZ on Linux).
pub fn cpu_time(pid: impl std::fmt::Display) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at "state" (field 3).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// The `q` quantile of `xs` (nearest rank; sorted in place; 0 when empty).
pub fn quantile<T: Copy + Ord + Default>(xs: &mut [T], q: f64) -> T {
    if xs.is_empty() {
        return T::default();
    }
    xs.sort_unstable();
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// The `reflow` release binary next to this benchmark (its `just` recipe builds it).
pub fn reflow_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("reflow");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: `cargo build --release -p reflow-worker --bin reflow`",
        bin.display()
    );
    Ok(bin)
}
