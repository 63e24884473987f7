-- The reset generation of an attempt (docs/contracts/conductor-status.md §3): an activity reset
-- (a retry of a step waiting in backoff) starts its attempts at 1 again in the same run, so
-- an attempt is (workflow, run, activity, generation, attempt); generation 0 until the first
-- reset. SQLite cannot change a primary key in place: the table is rebuilt, rows kept.
CREATE TABLE step_attempt_next (
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    attempt BIGINT NOT NULL,
    activity_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    failure_type TEXT,
    failure_message TEXT,
    worker_identity TEXT,
    bytes_written BIGINT NOT NULL DEFAULT 0,
    progress DOUBLE PRECISION,
    PRIMARY KEY (workflow_id, run_id, activity_id, generation, attempt)
);
INSERT INTO step_attempt_next (workflow_id, run_id, activity_id, generation, attempt,
    activity_type, task_queue, status, started_at, ended_at, failure_type, failure_message,
    worker_identity, bytes_written, progress)
SELECT workflow_id, run_id, activity_id, 0, attempt, activity_type, task_queue, status,
    started_at, ended_at, failure_type, failure_message, worker_identity, bytes_written, progress
FROM step_attempt;
DROP TABLE step_attempt;
ALTER TABLE step_attempt_next RENAME TO step_attempt;
