-- Latency figures of each turn of a call, in ms from the end of the
-- caller's speech (turn 0: from the start of the media stream).
CREATE TABLE call_turns (
    call_id              TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    turn_id              BIGINT NOT NULL,
    stt_final_ms         BIGINT,
    agent_first_token_ms BIGINT,
    tts_first_audio_ms   BIGINT,
    first_frame_ms       BIGINT,
    mark_confirmed_ms    BIGINT,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (call_id, turn_id)
);
