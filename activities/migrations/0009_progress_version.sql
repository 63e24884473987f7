-- The pipeline version of the run a PIPELINE_PROGRESS state belongs to (issue 36: the progress
-- page shows it). NULL for states reported before it was sent.
ALTER TABLE pipeline_progress ADD COLUMN pipeline_version BIGINT;
