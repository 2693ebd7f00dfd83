//! Per-turn latency figures of calls.
//!
//! Guarantees: one row per (call, turn); recording a turn again replaces its
//! figures (the actor may learn the mark confirmation after a first write).

use crate::Store;
use crate::error::StoreError;
use crate::sql::{self, RowExt, Sql};
use domain::{CallId, TurnLatency};
use sqlx::any::AnyRow;

pub struct TurnRepo<'a> {
    store: &'a Store,
}

fn opt_ms(row: &AnyRow, col: &str) -> Result<Option<u32>, StoreError> {
    row.opt_int(col)?
        .map(|v| u32::try_from(v).map_err(|_| StoreError::corrupt(format!("{col} out of range: {v}"))))
        .transpose()
}

fn parse(row: &AnyRow) -> Result<TurnLatency, StoreError> {
    Ok(TurnLatency {
        turn_id: row.u32("turn_id")?,
        stt_final_ms: opt_ms(row, "stt_final_ms")?,
        agent_first_token_ms: opt_ms(row, "agent_first_token_ms")?,
        tts_first_audio_ms: opt_ms(row, "tts_first_audio_ms")?,
        first_frame_ms: opt_ms(row, "first_frame_ms")?,
        mark_confirmed_ms: opt_ms(row, "mark_confirmed_ms")?,
    })
}

fn ms(v: Option<u32>) -> Option<i64> {
    v.map(i64::from)
}

impl<'a> TurnRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Stores (or replaces) the figures of one turn of `call`.
    pub async fn record(&self, call: CallId, turn: &TurnLatency) -> Result<(), StoreError> {
        Sql::new(
            "INSERT INTO call_turns (call_id, turn_id, stt_final_ms, agent_first_token_ms, tts_first_audio_ms, \
             first_frame_ms, mark_confirmed_ms, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (call_id, turn_id) DO UPDATE SET stt_final_ms = excluded.stt_final_ms, \
             agent_first_token_ms = excluded.agent_first_token_ms, tts_first_audio_ms = excluded.tts_first_audio_ms, \
             first_frame_ms = excluded.first_frame_ms, mark_confirmed_ms = excluded.mark_confirmed_ms",
        )
        .arg(sql::text(call))
        .arg(i64::from(turn.turn_id))
        .arg(ms(turn.stt_final_ms))
        .arg(ms(turn.agent_first_token_ms))
        .arg(ms(turn.tts_first_audio_ms))
        .arg(ms(turn.first_frame_ms))
        .arg(ms(turn.mark_confirmed_ms))
        .arg(domain::now())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// All turns of the call in order.
    pub async fn list(&self, call: CallId) -> Result<Vec<TurnLatency>, StoreError> {
        let rows = Sql::new(
            "SELECT turn_id, stt_final_ms, agent_first_token_ms, tts_first_audio_ms, first_frame_ms, \
             mark_confirmed_ms FROM call_turns WHERE call_id = $1 ORDER BY turn_id",
        )
        .arg(sql::text(call))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(parse).collect()
    }
}
