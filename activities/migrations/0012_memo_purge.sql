-- Transcripts whose memoized results were purged (activities::memo_purge): the sweep that
-- purges those of transcripts deleted, or denied consent, outside a run of reflow (Reflector's
-- API writes the same database) does each one once.
CREATE TABLE memo_purge (
    transcript_id TEXT PRIMARY KEY,
    purged_at TEXT NOT NULL
);
