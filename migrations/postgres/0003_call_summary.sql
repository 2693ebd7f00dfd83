-- Post-call summaries written by the `call_summary` job. `summary` itself
-- exists since 0001. `extraction` is the structured result as JSON text
-- (including `appointment_booked` and `follow_up_needed`). `summary_status`
-- is NULL until a summary job touches the call. `summary_emailed_at` (epoch
-- ms) makes the notification email at-most-once per stored summary.
ALTER TABLE calls ADD COLUMN outcome TEXT;
ALTER TABLE calls ADD COLUMN extraction TEXT;
ALTER TABLE calls ADD COLUMN summary_status TEXT
    CHECK (summary_status IN ('pending', 'done', 'failed'));
ALTER TABLE calls ADD COLUMN summary_error TEXT;
ALTER TABLE calls ADD COLUMN summary_emailed_at BIGINT;
