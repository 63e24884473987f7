-- Registered pipeline versions (issue 36). `reflow apply` registers every pipelines/*.yaml here
-- (`reflow process`, `dev` and the demo register their own); a run's input names a version by
-- its hash, and workers resolve the definition from this table. Content-addressed: `hash` is
-- the sha256 of `definition`'s canonical JSON, and a row is never updated or deleted. That one
-- `name` + `version` has one definition is refused by `reflow plan`/`apply` (a changed
-- definition must bump its `version:`), not by a constraint.
CREATE TABLE pipeline_version (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- The validated definition (workflow::Pipeline) as JSON.
    definition TEXT NOT NULL,
    -- The activity catalog's contract fingerprint it was checked against.
    catalog_fingerprint TEXT NOT NULL,
    -- Its static step fingerprints and activity contracts (workflow::pipeline::fingerprint), JSON.
    fingerprints TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    -- `git rev-parse HEAD` of the repository it was registered from, when known.
    git_commit TEXT
);
CREATE INDEX pipeline_version_name ON pipeline_version (name, version);
