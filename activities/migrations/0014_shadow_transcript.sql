-- Shadow runs (issue 37 item 3): a shadow transcript is written by a shadow run of another
-- pipeline version beside a recording's live run. `shadow_of` is the live transcript it
-- shadows; NULL for every transcript users see. No user route lists or returns a transcript
-- with it set; `reflow compare` reads the pairs.
ALTER TABLE transcript ADD COLUMN shadow_of TEXT;
CREATE INDEX transcript_shadow_of ON transcript (shadow_of);
