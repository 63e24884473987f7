//! The soak's memory watch: the resident memory of every live worker process and of the
//! Temporal server, and the executions the server holds in its cache and its Go heap, sampled
//! at a fixed period, and how much each process grew after its warm-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reflow_bench::measure::{ServerGauges, rss_kib, server_gauges};

/// The processes to sample now: a label (`server 1`, `worker soak-2`) and a pid.
pub type Live = Arc<Mutex<Vec<(String, u32)>>>;

/// The live server's metrics address (`host:port`), which changes when it restarts.
pub type ServerMetrics = Arc<Mutex<Option<String>>>;

/// One reading of the server's own gauges: seconds since the soak started, and the gauges.
pub type Cached = (f64, ServerGauges);

/// One reading.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    /// Which process.
    pub label: String,
    /// Its resident memory.
    pub kib: u64,
}

/// A sampler running until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Sample>, Vec<Cached>)>,
}

impl Sampler {
    /// Sample `live` and the cache of the server at `metrics` every `every` from `t0` on.
    pub fn start(live: Live, metrics: ServerMetrics, every: Duration, t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut out = Vec::new();
                let mut cached = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let address = metrics.lock().unwrap().clone();
                    if let Some(address) = address
                        && let Some(g) = server_gauges(&address).await
                    {
                        cached.push((t0.elapsed().as_secs_f64(), g));
                    }
                    let now = live.lock().unwrap().clone();
                    for (label, pid) in now {
                        if let Some(kib) = rss_kib(pid) {
                            out.push(Sample {
                                t_s: t0.elapsed().as_secs_f64(),
                                label,
                                kib,
                            });
                        }
                    }
                    tokio::time::sleep(every).await;
                }
                (out, cached)
            }
        });
        Sampler { stop, task }
    }

    /// Stop sampling; every reading of memory, and of the server's cache.
    pub async fn stop(self) -> (Vec<Sample>, Vec<Cached>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// How one process's memory went.
#[derive(Debug, Clone)]
pub struct Growth {
    /// Which process.
    pub label: String,
    /// Its first and last readings (seconds since the soak started).
    pub from_s: f64,
    /// Its last reading.
    pub to_s: f64,
    /// Mean RSS over the tenth of its life that follows its warm-up (the first quarter), MiB.
    pub after_warm_up_mib: f64,
    /// Mean RSS over the last tenth of its life, MiB.
    pub end_mib: f64,
    /// The most it held, MiB.
    pub peak_mib: f64,
}

impl Growth {
    /// `end` over `after_warm_up`, in percent.
    pub fn pct(&self) -> f64 {
        (self.end_mib / self.after_warm_up_mib - 1.0) * 100.0
    }
}

/// Each process's growth, in the order they first appear (at least 4 readings each).
pub fn growth(samples: &[Sample]) -> Vec<Growth> {
    let mut labels: Vec<&str> = Vec::new();
    for s in samples {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let mean = |xs: &[&Sample]| {
        xs.iter().map(|s| s.kib as f64).sum::<f64>() / xs.len().max(1) as f64 / 1024.0
    };
    labels
        .into_iter()
        .filter_map(|label| {
            let of: Vec<&Sample> = samples.iter().filter(|s| s.label == label).collect();
            if of.len() < 4 {
                return None;
            }
            let (from, to) = (of[0].t_s, of[of.len() - 1].t_s);
            let life = to - from;
            let warm = from + 0.25 * life;
            let mut after: Vec<&Sample> = of
                .iter()
                .copied()
                .filter(|s| s.t_s >= warm && s.t_s <= warm + 0.1 * life)
                .collect();
            if after.is_empty() {
                after.extend(of.iter().copied().find(|s| s.t_s >= warm));
            }
            let end: Vec<&Sample> = of
                .iter()
                .copied()
                .filter(|s| s.t_s >= to - 0.1 * life)
                .collect();
            Some(Growth {
                label: label.to_owned(),
                from_s: from,
                to_s: to,
                after_warm_up_mib: mean(&after),
                end_mib: mean(&end),
                peak_mib: of.iter().map(|s| s.kib).max().unwrap_or(0) as f64 / 1024.0,
            })
        })
        .collect()
}

/// The readings as a table: one row per `period` (the last reading of each process in it),
/// one column per process, and two last columns with the executions the server held in its
/// cache and its Go heap (MiB).
pub fn table(samples: &[Sample], cached: &[Cached], period: f64) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for s in samples {
        if !labels.contains(&s.label.as_str()) {
            labels.push(&s.label);
        }
    }
    let last_t = samples.iter().map(|s| s.t_s).fold(0.0, f64::max);
    let rows = (last_t / period).floor() as usize + 1;
    let mut out = format!(
        "| minute | {} | server's cached executions | server's Go heap MiB |\n|---|{}---|---|\n",
        labels.join(" | "),
        "---|".repeat(labels.len())
    );
    for row in 0..rows {
        let (a, b) = (row as f64 * period, (row + 1) as f64 * period);
        let cells: Vec<String> = labels
            .iter()
            .map(|l| {
                samples
                    .iter()
                    .rfind(|s| s.label == *l && s.t_s >= a && s.t_s < b)
                    .map_or_else(String::new, |s| format!("{:.0}", s.kib as f64 / 1024.0))
            })
            .collect();
        let (held, heap) = cached.iter().rfind(|(t, _)| *t >= a && *t < b).map_or_else(
            Default::default,
            |(_, g)| {
                (
                    g.cached_executions.to_string(),
                    format!("{:.0}", g.heap_bytes as f64 / 1048576.0),
                )
            },
        );
        out.push_str(&format!(
            "| {:.1} | {} | {held} | {heap} |\n",
            b / 60.0,
            cells.join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t_s: f64, label: &str, mib: u64) -> Sample {
        Sample {
            t_s,
            label: label.into(),
            kib: mib * 1024,
        }
    }

    #[test]
    fn growth_compares_the_end_with_the_time_after_warm_up() {
        // A worker that loads for a while (100 → 200 MiB), then holds 200, then ends at 210;
        // a server that starts later and stays flat.
        let mut samples = Vec::new();
        for i in 0..=100 {
            let t = i as f64;
            let mib = if i < 20 {
                100 + 5 * i
            } else if i < 95 {
                200
            } else {
                210
            };
            samples.push(reading(t, "worker a", mib));
            if i >= 50 {
                samples.push(reading(t, "server 2", 80));
            }
        }
        let g = growth(&samples);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].label, "worker a");
        assert!((g[0].after_warm_up_mib - 200.0).abs() < 1e-9, "{g:?}");
        assert!((g[0].end_mib - 2260.0 / 11.0).abs() < 1e-9, "{g:?}");
        assert!((g[0].pct() - 2.727).abs() < 0.01, "{g:?}");
        assert_eq!(g[0].peak_mib, 210.0);
        assert_eq!((g[1].from_s, g[1].to_s, g[1].pct()), (50.0, 100.0, 0.0));
        // One row per minute of readings, one column per process.
        let gauges = |cached_executions, heap_mib: u64| ServerGauges {
            cached_executions,
            heap_bytes: heap_mib << 20,
        };
        let cached = [
            (30.0, gauges(12, 30)),
            (59.0, gauges(40, 41)),
            (61.0, gauges(38, 40)),
        ];
        let t = table(&samples, &cached, 60.0);
        assert!(
            t.starts_with(
                "| minute | worker a | server 2 | server's cached executions | server's Go heap MiB |"
            ),
            "{t}"
        );
        assert!(t.contains("| 1.0 | 200 | 80 | 40 | 41 |"), "{t}");
        assert!(t.contains("| 2.0 | 210 | 80 | 38 | 40 |"), "{t}");
    }
}
