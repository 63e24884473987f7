-- Which attempt published an event, and its position among that attempt's events
-- (`{workflow_id}/{run_id}/{activity_id}#{n}`): a retried activity (a killed worker, a lost
-- completion) publishes its events again, and the log keeps the first copy only, so a
-- WebSocket replay never shows an event twice. NULL for events reflow announces itself.
ALTER TABLE transcript_event ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX transcript_event_origin ON transcript_event (transcript_id, origin);
