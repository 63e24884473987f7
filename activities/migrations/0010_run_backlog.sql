-- Runs owed (issue 37 item 5): a transcript whose run must be started and was not yet. Intake
-- writes the row with the recording and transcript rows, before it asks Temporal to start the
-- run, and deletes it once Temporal has the run (started, or already there); a `process`
-- request that could not reach Temporal is written here too. So a webhook or poll result that
-- arrives while Temporal is unreachable (or a process that dies between the rows and the start)
-- is kept, and the worker's backlog loop (reflow::backlog) starts it once Temporal answers, in
-- `requested_at` order. One row per transcript: a second request while one is owed is the same
-- request.
CREATE TABLE run_backlog (
    transcript_id TEXT PRIMARY KEY REFERENCES transcript (id) ON DELETE CASCADE,
    -- `intake` (the recording's first run, workflow id `diarization-{recording_id}`, reuse
    -- rejected: a second start is a no-op) or `process` (POST /v1/transcripts/{id}/process).
    kind TEXT NOT NULL,
    -- `process` with `?force=true`.
    forced BOOLEAN NOT NULL DEFAULT FALSE,
    requested_at TEXT NOT NULL,
    -- Start attempts that failed, the last failure, and when the next attempt is due.
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT NOT NULL,
    -- A replica draining the row holds it until `claimed_until` (several may run the loop).
    claimed_by TEXT,
    claimed_until TEXT
);
CREATE INDEX run_backlog_order ON run_backlog (requested_at, transcript_id);
