-- How far a running attempt is (0–1, from its heartbeat details): the percentage a long step
-- shows in PIPELINE_PROGRESS while it runs.
ALTER TABLE step_attempt ADD COLUMN progress DOUBLE PRECISION;
