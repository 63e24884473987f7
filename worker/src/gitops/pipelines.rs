//! Pipeline versions: every definition the repository declares (each `pipelines/*.yaml`, and
//! the built-in meeting and poll pipelines when the directory has none: intake and the
//! `daily-poll` schedule start those) registered in reflow's database as an immutable version
//! (`pipeline_version`: name, version, content hash, the definition, the catalog contract
//! fingerprint it was checked against and its step fingerprints, when, and the repository's
//! commit). Runs name a version by its hash; workers resolve it from there
//! ([`activities::versions`]).
//!
//! A definition whose hash is registered is unchanged. A changed definition must bump its
//! `version:`: one that keeps a registered version number is refused by plan and apply, since
//! runs in flight (and their replays) name that version. A new version is planned as its
//! change from the newest registered version of the same name, step by step
//! ([`workflow::pipeline::diff`]): steps added, removed and changed (with the fields that
//! changed), then the steps a re-run on the new version could reuse because the step and
//! everything upstream of it are unchanged (static fingerprints, definitions only).
//!
//! `reflow apply` registers from the repository; `reflow process`, `reflow dev` and the demo
//! register their own definitions with [`register`] (the same rule).

use std::path::{Path, PathBuf};

use activities::db::Db;
use activities::db::pipelines::RegisteredVersion;
use workflow::pipeline::diff::diff;
use workflow::pipeline::fingerprint::Fingerprints;
use workflow::{Catalog, Pipeline};

use super::{Change, GitOpsError, Kind};
use crate::runs::{self, RunError};

/// The definitions the repository declares, to be registered in `db`.
#[derive(Debug, Clone)]
pub struct DesiredPipelines {
    /// Where versions are registered.
    pub db: Db,
    /// The definitions, each with its fingerprints against this build's catalog.
    pub declared: Vec<(Pipeline, Fingerprints)>,
    /// `git rev-parse HEAD` of the repository they come from, when known.
    pub git_commit: Option<String>,
}

impl DesiredPipelines {
    /// Every `*.yaml` of `dir` (a missing directory declares none), plus the built-in meeting
    /// and poll pipelines when `dir` has no `diarization.yaml` / `daily-poll.yaml`, validated
    /// against `catalog`.
    pub fn declared(db: Db, dir: &Path, catalog: &Catalog) -> Result<Self, GitOpsError> {
        let mut pipelines = Vec::new();
        for file in yaml_files(dir) {
            pipelines.push(runs::load_pipeline(&file, catalog)?);
        }
        pipelines.push(crate::intake::load_pipeline(Some(dir), catalog)?);
        pipelines.push(builtin_poll(dir, catalog)?);
        Ok(DesiredPipelines::of(
            db,
            pipelines,
            catalog,
            git_commit(dir),
        ))
    }

    /// `pipelines` (deduplicated by hash, in order) fingerprinted against `catalog`.
    pub fn of(
        db: Db,
        pipelines: Vec<Pipeline>,
        catalog: &Catalog,
        git_commit: Option<String>,
    ) -> Self {
        let mut declared: Vec<(Pipeline, Fingerprints)> = Vec::new();
        for p in pipelines {
            if !declared.iter().any(|(d, _)| d.hash == p.hash) {
                let fps = Fingerprints::of(&p, catalog);
                declared.push((p, fps));
            }
        }
        DesiredPipelines {
            db,
            declared,
            git_commit,
        }
    }
}

/// The pipeline files of `dir` (`*.yaml` / `*.yml` but `rollout.yaml`), sorted (none when it
/// does not exist).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .filter(|p| !p.ends_with(workflow::pipeline::rollout::ROLLOUT_FILE))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// `dir`'s `daily-poll.yaml`, else the built-in one.
fn builtin_poll(dir: &Path, catalog: &Catalog) -> Result<Pipeline, GitOpsError> {
    let path = dir.join("daily-poll.yaml");
    if path.exists() {
        return Ok(runs::load_pipeline(&path, catalog)?);
    }
    Ok(workflow::parse_and_validate(
        "pipelines/daily-poll.yaml (built in)",
        super::DAILY_POLL_YAML,
        catalog,
    )
    .map_err(RunError::from)?)
}

/// `git rev-parse HEAD` in `dir`, when it is inside a git work tree.
pub fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

fn id(p: &Pipeline) -> String {
    format!("{} v{}", p.name, p.version)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn step_count(p: &Pipeline) -> usize {
    p.main.steps.len() + p.children.values().map(|g| g.steps.len()).sum::<usize>()
}

/// `reflow plan`'s lines for the declared definitions: unchanged, a first version, or a new
/// version as its change from the newest registered one; an error for a changed definition
/// that kept a registered version number.
pub(super) async fn plan(d: &DesiredPipelines) -> Result<Vec<Change>, GitOpsError> {
    let mut out = Vec::new();
    for (p, fps) in &d.declared {
        let mut registered: Vec<RegisteredVersion> = Vec::new();
        for row in d.db.pipeline_versions(Some(&p.name)).await? {
            registered.push(row.decode()?);
        }
        out.push(plan_one(p, fps, &registered, d.git_commit.as_deref())?);
    }
    Ok(out)
}

fn plan_one(
    p: &Pipeline,
    fps: &Fingerprints,
    registered: &[RegisteredVersion],
    git_commit: Option<&str>,
) -> Result<Change, GitOpsError> {
    if registered.iter().any(|r| r.pipeline.hash == p.hash) {
        return Ok(Change::Unchanged {
            kind: Kind::Pipeline,
            id: id(p),
        });
    }
    if let Some(same) = registered.iter().find(|r| r.pipeline.version == p.version) {
        return Err(GitOpsError::Conflict {
            kind: Kind::Pipeline,
            id: id(p),
            message: format!(
                "the definition changed ({} → {}) but its version did not: bump `version:` to {} (registered {}{}; a registered version never changes: runs in flight and their replays name it)",
                short(&same.pipeline.hash),
                short(&p.hash),
                registered
                    .iter()
                    .map(|r| r.pipeline.version)
                    .max()
                    .unwrap_or(p.version)
                    + 1,
                same.registered_at,
                same.git_commit
                    .as_deref()
                    .map(|c| format!(" from {}", short(c)))
                    .unwrap_or_default(),
            ),
        });
    }
    let from = git_commit
        .map(|c| format!(", from {}", short(c)))
        .unwrap_or_default();
    let Some(current) = registered.iter().max_by_key(|r| r.pipeline.version) else {
        return Ok(Change::Create {
            kind: Kind::Pipeline,
            id: id(p),
            summary: format!("{}, {} steps{from}", short(&p.hash), step_count(p)),
        });
    };
    let d = diff(&current.pipeline, &current.fingerprints, p, fps);
    let mut lines = vec![format!(
        "v{} → v{} ({} → {}{from})",
        current.pipeline.version,
        p.version,
        short(&current.pipeline.hash),
        short(&p.hash)
    )];
    lines.extend(d.fields.iter().map(|f| {
        if f.starts_with(['+', '-', '~']) {
            f.clone()
        } else {
            format!("~ {f}")
        }
    }));
    lines.extend(d.steps.iter().map(ToString::to_string));
    if d.fields.is_empty() && d.steps.is_empty() {
        lines.push("no step changed (only what the steps do not read)".into());
    }
    lines.push(format!(
        "reusable on v{} (the step and everything upstream unchanged): {}",
        p.version,
        if d.reusable.is_empty() {
            "none".to_owned()
        } else {
            d.reusable
                .iter()
                .map(|k| {
                    if k.graph == p.main.name {
                        k.step.clone()
                    } else {
                        k.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    Ok(Change::Update {
        kind: Kind::Pipeline,
        id: id(p),
        diffs: lines,
    })
}

/// Register the versions `changes` (the plan) create or update.
pub(super) async fn apply(d: &DesiredPipelines, changes: &[Change]) -> Result<(), GitOpsError> {
    for (p, fps) in &d.declared {
        let planned = changes.iter().any(|c| {
            c.kind() == Kind::Pipeline
                && c.id() == id(p)
                && matches!(c, Change::Create { .. } | Change::Update { .. })
        });
        if planned {
            d.db.insert_pipeline_version(p, fps, d.git_commit.as_deref())
                .await?;
        }
    }
    Ok(())
}

/// Register `pipelines` in `db` as `reflow apply` would (the local commands' path: `reflow
/// process`, `dev` and the demo register their own definitions); the changes made. A changed
/// definition that kept a registered version number is refused the same way.
pub async fn register(
    db: &Db,
    pipelines: Vec<Pipeline>,
    catalog: &Catalog,
    git_commit: Option<String>,
) -> Result<Vec<Change>, GitOpsError> {
    register_declared(&DesiredPipelines::of(
        db.clone(),
        pipelines,
        catalog,
        git_commit,
    ))
    .await
}

/// Register what `d` declares (plan, then apply); the changes made.
pub async fn register_declared(d: &DesiredPipelines) -> Result<Vec<Change>, GitOpsError> {
    let changes = plan(d).await?;
    apply(d, &changes).await?;
    for c in changes.iter().filter(|c| c.is_change()) {
        tracing::info!(change = %c, "pipeline version registered");
    }
    Ok(changes)
}

/// The versions among `pipelines` that `db` does not have registered, as `Name vN (hash)`:
/// what a worker refuses to start without.
pub async fn unregistered(db: &Db, pipelines: &[&Pipeline]) -> Result<Vec<String>, GitOpsError> {
    let versions = activities::versions::Versions::of(db);
    let mut missing = Vec::new();
    for p in pipelines {
        if !versions.contains(&p.hash).await? {
            missing.push(p.reference().short());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new()
            .activity("a", &[])
            .activity("b", &[])
            .workflow_type("M")
    }

    fn version(yaml: &str) -> RegisteredVersion {
        let p = workflow::parse_and_validate("t.yaml", yaml, &catalog()).unwrap();
        RegisteredVersion {
            fingerprints: Fingerprints::of(&p, &catalog()),
            pipeline: p,
            registered_at: "2026-12-07T00:00:00Z".into(),
            git_commit: Some("0123456789abcdef".into()),
        }
    }

    const V1: &str = "name: M\nversion: 1\ndefaults: {start_to_close: 10s}\n\
        steps:\n  - {id: one, activity: a}\n  - {id: two, activity: b, needs: [one]}\n  - {id: three, activity: b}\n";

    #[test]
    fn unchanged_new_changed_and_a_version_that_was_not_bumped() {
        let v1 = version(V1);
        let plan = |yaml: &str, reg: &[RegisteredVersion]| {
            let r = version(yaml);
            plan_one(&r.pipeline, &r.fingerprints, reg, None)
        };
        assert!(matches!(plan(V1, &[]).unwrap(), Change::Create { id, .. } if id == "M v1"));
        assert!(!plan(V1, std::slice::from_ref(&v1)).unwrap().is_change());

        let edited = V1.replace(
            "{id: two, activity: b, needs: [one]}",
            "{id: two, activity: b, needs: [one], retry: {maximum_attempts: 2}}",
        );
        let err = plan(&edited, std::slice::from_ref(&v1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bump `version:` to 2") && err.contains("M v1"),
            "{err}"
        );

        let v2 = edited.replace("version: 1", "version: 2");
        let change = plan(&v2, std::slice::from_ref(&v1)).unwrap();
        assert_eq!(
            change.to_string(),
            format!(
                "~ pipeline M v2: v1 → v2 ({} → {})\n    ~ step M.two: retry\n    reusable on v2 (the step and everything upstream unchanged): one, three",
                short(&v1.pipeline.hash),
                short(&version(&v2).pipeline.hash)
            )
        );
    }
}
