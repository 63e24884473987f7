//! `pipeline_version`: the registered versions of pipeline definitions, content-addressed by
//! hash and never changed once written; `pipeline_rollout`: which of them new runs get. Registration (`reflow apply`, the local commands) and
//! its rule that a changed definition bumps its version live in the worker crate
//! (`reflow::gitops::pipelines`); workers read versions through [`crate::versions`].

use workflow::Pipeline;
use workflow::pipeline::fingerprint::Fingerprints;
use workflow::pipeline::rollout::Rollout;

use super::{Db, DbError, now};

/// A stored row, as read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionRow {
    /// Hex sha256 of the definition's canonical JSON.
    pub hash: String,
    /// The definition's name.
    pub name: String,
    /// Its `version:`.
    pub version: i64,
    /// The definition, JSON.
    pub definition: String,
    /// The catalog contract fingerprint it was checked against.
    pub catalog_fingerprint: String,
    /// Its [`Fingerprints`], JSON.
    pub fingerprints: String,
    /// When it was registered (RFC 3339).
    pub registered_at: String,
    /// The repository's commit it was registered from.
    pub git_commit: Option<String>,
}

/// A registered version, decoded and hash-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredVersion {
    /// The definition (its `hash` is the row's, recomputed and checked).
    pub pipeline: Pipeline,
    /// What it was checked against, and its step fingerprints then.
    pub fingerprints: Fingerprints,
    /// When it was registered (RFC 3339).
    pub registered_at: String,
    /// The repository's commit it was registered from.
    pub git_commit: Option<String>,
}

impl VersionRow {
    /// The definition, refused unless its content hashes to the row's hash (a row edited by
    /// hand, or a definition stored by another build whose model serializes differently).
    pub fn decode(&self) -> Result<RegisteredVersion, DbError> {
        let corrupt = |message: String| DbError::Corrupt {
            what: format!("pipeline_version {}", self.hash),
            message,
        };
        let pipeline: Pipeline =
            serde_json::from_str(&self.definition).map_err(|e| corrupt(e.to_string()))?;
        let computed = pipeline.compute_hash();
        if pipeline.hash != self.hash || computed != self.hash {
            return Err(corrupt(format!(
                "the definition hashes to {computed}, not to its key"
            )));
        }
        let fingerprints =
            serde_json::from_str(&self.fingerprints).map_err(|e| corrupt(e.to_string()))?;
        Ok(RegisteredVersion {
            pipeline,
            fingerprints,
            registered_at: self.registered_at.clone(),
            git_commit: self.git_commit.clone(),
        })
    }
}

const COLUMNS: &str = "hash, name, version, definition, catalog_fingerprint, fingerprints, \
                       registered_at, git_commit";

impl Db {
    /// Register `pipeline` (checked against a catalog whose fingerprints are `fingerprints`)
    /// unless its hash is registered already; whether a row was written. The definition's hash
    /// must be its content's.
    pub async fn insert_pipeline_version(
        &self,
        pipeline: &Pipeline,
        fingerprints: &Fingerprints,
        git_commit: Option<&str>,
    ) -> Result<bool, DbError> {
        if pipeline.compute_hash() != pipeline.hash {
            return Err(DbError::Corrupt {
                what: format!("pipeline {} v{}", pipeline.name, pipeline.version),
                message: "its hash is not its content's".into(),
            });
        }
        let definition = serde_json::to_string(pipeline).map_err(|e| DbError::Corrupt {
            what: "pipeline definition".into(),
            message: e.to_string(),
        })?;
        let fps = serde_json::to_string(fingerprints).map_err(|e| DbError::Corrupt {
            what: "pipeline fingerprints".into(),
            message: e.to_string(),
        })?;
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO pipeline_version (hash, name, version, definition, catalog_fingerprint, \
             fingerprints, registered_at, git_commit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (hash) DO NOTHING"
        )
        .bind(&pipeline.hash)
        .bind(&pipeline.name)
        .bind(i64::from(pipeline.version))
        .bind(&definition)
        .bind(&fingerprints.catalog)
        .bind(&fps)
        .bind(now())
        .bind(git_commit)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
        .map_err(DbError::query("register pipeline version"))
    }

    /// The version registered under `hash`.
    pub async fn pipeline_version(&self, hash: &str) -> Result<Option<VersionRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, VersionRow>(&format!(
            "SELECT {COLUMNS} FROM pipeline_version WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read pipeline version"))
    }

    /// Every registered version (of `name` only, when given), oldest first: by name, version,
    /// then registration time.
    pub async fn pipeline_versions(&self, name: Option<&str>) -> Result<Vec<VersionRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, VersionRow>(&format!(
            "SELECT {COLUMNS} FROM pipeline_version WHERE $1 IS NULL OR name = $1 \
             ORDER BY name, version, registered_at"
        ))
        .bind(name)
        .fetch_all(pool)
        .await)
        .map_err(DbError::query("list pipeline versions"))
    }
}

impl Db {
    /// The version of `name` registered as `version` (the newest registration, should two
    /// definitions share one; `reflow apply` refuses that).
    pub async fn pipeline_version_of(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<VersionRow>, DbError> {
        crate::on_pool!(self, |pool| sqlx::query_as::<_, VersionRow>(&format!(
            "SELECT {COLUMNS} FROM pipeline_version WHERE name = $1 AND version = $2 \
             ORDER BY registered_at DESC LIMIT 1"
        ))
        .bind(name)
        .bind(i64::from(version))
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read pipeline version"))
    }

    /// The rollout `reflow apply` applied for pipeline `name`.
    pub async fn pipeline_rollout(&self, name: &str) -> Result<Option<Rollout>, DbError> {
        let row: Option<(String,)> = crate::on_pool!(self, |pool| sqlx::query_as(
            "SELECT rollout FROM pipeline_rollout WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await)
        .map_err(DbError::query("read pipeline rollout"))?;
        row.map(|(json,)| {
            serde_json::from_str(&json).map_err(|e| DbError::Corrupt {
                what: format!("pipeline_rollout {name}"),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Make `rollout` the one of pipeline `name`.
    pub async fn set_pipeline_rollout(&self, name: &str, rollout: &Rollout) -> Result<(), DbError> {
        let json = serde_json::to_string(rollout).map_err(|e| DbError::Corrupt {
            what: "pipeline rollout".into(),
            message: e.to_string(),
        })?;
        crate::on_pool!(self, |pool| sqlx::query(
            "INSERT INTO pipeline_rollout (name, rollout, applied_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET rollout = $2, applied_at = $3"
        )
        .bind(name)
        .bind(&json)
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(DbError::query("apply pipeline rollout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(version: u32) -> (Pipeline, Fingerprints) {
        let catalog = workflow::Catalog::new()
            .activity("a", &[])
            .workflow_type("M");
        let p = workflow::parse_and_validate(
            "t.yaml",
            &format!(
                "name: M\nversion: {version}\nsteps: [{{id: s, activity: a, start_to_close: 1s}}]\n"
            ),
            &catalog,
        )
        .unwrap();
        let f = Fingerprints::of(&p, &catalog);
        (p, f)
    }

    #[tokio::test]
    async fn a_version_is_written_once_read_back_by_hash_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/reflow.db", dir.path().display()))
            .await
            .unwrap();
        let (p1, f1) = pipeline(1);
        assert!(
            db.insert_pipeline_version(&p1, &f1, Some("abc"))
                .await
                .unwrap()
        );
        assert!(!db.insert_pipeline_version(&p1, &f1, None).await.unwrap());
        let (p2, f2) = pipeline(2);
        db.insert_pipeline_version(&p2, &f2, None).await.unwrap();
        let row = db.pipeline_version(&p1.hash).await.unwrap().unwrap();
        let v = row.decode().unwrap();
        assert_eq!(
            (v.pipeline, v.fingerprints, v.git_commit.as_deref()),
            (p1.clone(), f1, Some("abc"))
        );
        assert_eq!(db.pipeline_versions(Some("M")).await.unwrap().len(), 2);
        assert!(db.pipeline_versions(Some("N")).await.unwrap().is_empty());
        assert!(db.pipeline_version("00").await.unwrap().is_none());

        // A definition that does not hash to its key is refused on read and on write.
        let mut forged = row.clone();
        forged.definition = forged
            .definition
            .replace("\"start_to_close_ms\":1000", "\"start_to_close_ms\":2000");
        assert!(matches!(forged.decode(), Err(DbError::Corrupt { .. })));
        let mut bad = p2.clone();
        bad.version = 9;
        assert!(db.insert_pipeline_version(&bad, &f2, None).await.is_err());

        // By name and version; and a rollout, replaced as a whole.
        let row = db.pipeline_version_of("M", 2).await.unwrap().unwrap();
        assert_eq!(row.hash, p2.hash);
        assert!(db.pipeline_version_of("M", 3).await.unwrap().is_none());
        assert_eq!(db.pipeline_rollout("M").await.unwrap(), None);
        let mut r = Rollout {
            current: 1,
            candidate: Some(2),
            ramp: 10,
            ..Rollout::default()
        };
        db.set_pipeline_rollout("M", &r).await.unwrap();
        r.ramp = 50;
        db.set_pipeline_rollout("M", &r).await.unwrap();
        assert_eq!(db.pipeline_rollout("M").await.unwrap(), Some(r));
    }
}
