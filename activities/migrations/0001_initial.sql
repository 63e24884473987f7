-- reflow's database, one schema for SQLite (the embedded default) and PostgreSQL
-- (production): only types both accept (TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN). Times are
-- RFC 3339 UTC text, JSON documents are text. Tables and columns follow Reflector's where
-- reflow reads or writes them (events-and-api.md §6), plus reflow's additions.

CREATE TABLE room (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    user_id TEXT,
    zulip_auto_post BOOLEAN NOT NULL DEFAULT FALSE,
    zulip_stream TEXT,
    zulip_topic TEXT,
    webhook_url TEXT,
    webhook_secret TEXT,
    skip_consent BOOLEAN NOT NULL DEFAULT FALSE,
    platform TEXT NOT NULL DEFAULT 'daily',
    created_at TEXT NOT NULL
);

CREATE TABLE meeting (
    id TEXT PRIMARY KEY,
    room_name TEXT,
    room_id TEXT REFERENCES room (id),
    start_date TEXT,
    end_date TEXT,
    platform TEXT NOT NULL DEFAULT 'daily',
    calendar_event_id TEXT,
    is_active BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX meeting_room_name ON meeting (room_name);

CREATE TABLE meeting_consent (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meeting (id),
    user_id TEXT,
    consent_given BOOLEAN NOT NULL,
    consent_timestamp TEXT NOT NULL
);
CREATE INDEX meeting_consent_meeting ON meeting_consent (meeting_id);

CREATE TABLE recording (
    id TEXT PRIMARY KEY,
    bucket_name TEXT NOT NULL,
    object_key TEXT,
    recorded_at TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    meeting_id TEXT REFERENCES meeting (id),
    track_keys TEXT,
    deleted_at TEXT
);

CREATE TABLE transcript (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'idle',
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    duration DOUBLE PRECISION,
    created_at TEXT NOT NULL,
    title TEXT,
    short_summary TEXT,
    long_summary TEXT,
    action_items TEXT,
    topics TEXT NOT NULL DEFAULT '[]',
    participants TEXT NOT NULL DEFAULT '[]',
    webvtt TEXT,
    source_language TEXT DEFAULT 'en',
    target_language TEXT DEFAULT 'en',
    reviewed BOOLEAN NOT NULL DEFAULT FALSE,
    audio_location TEXT NOT NULL DEFAULT 'local',
    audio_deleted BOOLEAN NOT NULL DEFAULT FALSE,
    user_id TEXT,
    share_mode TEXT NOT NULL DEFAULT 'private',
    meeting_id TEXT REFERENCES meeting (id),
    recording_id TEXT UNIQUE REFERENCES recording (id),
    room_id TEXT REFERENCES room (id),
    source_kind TEXT NOT NULL DEFAULT 'room',
    zulip_message_id BIGINT,
    deleted_at TEXT,
    change_seq BIGINT NOT NULL DEFAULT 0,
    workflow_id TEXT,
    workflow_run_id TEXT,
    error TEXT
);

-- Append-only event log; seq orders replay.
CREATE TABLE transcript_event (
    transcript_id TEXT NOT NULL REFERENCES transcript (id),
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (transcript_id, seq)
);

-- Latest PIPELINE_PROGRESS per step, for the on-connect catch-up.
CREATE TABLE pipeline_progress (
    workflow_id TEXT NOT NULL,
    step_index BIGINT NOT NULL,
    transcript_id TEXT,
    current_step TEXT NOT NULL,
    step_status TEXT NOT NULL,
    total_steps BIGINT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 1,
    max_attempts BIGINT NOT NULL DEFAULT 0,
    started_at TEXT,
    message TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workflow_id, step_index)
);

-- One row per activity attempt, written by the activity wrapper.
CREATE TABLE step_attempt (
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    activity_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    failure_type TEXT,
    failure_message TEXT,
    worker_identity TEXT,
    PRIMARY KEY (workflow_id, run_id, activity_id, attempt)
);
