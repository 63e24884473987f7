-- Rollouts (issue 36, pipelines/rollout.yaml as `reflow apply` applied it): which registered
-- version of each pipeline new runs get. Intake reads it for every recording it starts.
CREATE TABLE pipeline_rollout (
    name TEXT PRIMARY KEY,
    -- workflow::pipeline::rollout::Rollout as JSON (current, candidate, ramp, rooms).
    rollout TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
