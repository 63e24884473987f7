-- Event positions never repeat for a transcript, even after a re-run clears its log
-- (pipeline.md §4.2): live sockets skip what they already sent by position, so a reused
-- position would hide a new event. The counter lives on the transcript.
ALTER TABLE transcript ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
UPDATE transcript SET event_seq = (
    SELECT COALESCE(MAX(e.seq), 0) FROM transcript_event e WHERE e.transcript_id = transcript.id
);
