-- What a `process` request kept in `run_backlog` asked for besides `force` (issue 37 item 5):
-- its re-run options as JSON text (`{"from": "merge_transcripts", "fresh": false, "notify":
-- false}`), so that the backlog loop starts exactly the run the request asked for. NULL for
-- intake rows and for rows written before this column (a plain `process`).
ALTER TABLE run_backlog ADD COLUMN options TEXT;
