-- Bytes each attempt wrote to object storage (observability: cost attribution per step;
-- `reflow cost` sums them per step).
ALTER TABLE step_attempt ADD COLUMN bytes_written BIGINT NOT NULL DEFAULT 0;
