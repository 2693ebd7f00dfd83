//! Transcript segments of calls.
//!
//! Guarantees: `seq` numbers a call's segments 0, 1, 2, ... with no gaps or
//! duplicates even under concurrent appends: the counter lives on the call row
//! and is bumped by a single `UPDATE ... RETURNING` in the same transaction as
//! the insert. A segment is committed (durable) when `append` returns.

use crate::Store;
use crate::error::StoreError;
use crate::sql::{self, RowExt, Sql};
use domain::{CallId, Speaker, TranscriptSegment};
use sqlx::any::AnyRow;

pub struct TranscriptRepo<'a> {
    store: &'a Store,
}

fn parse(row: &AnyRow) -> Result<TranscriptSegment, StoreError> {
    Ok(TranscriptSegment {
        call_id: row.parse("call_id")?,
        seq: row.int("seq")?,
        speaker: row.parse("speaker")?,
        text: row.text("text")?,
        start_ms: row.int("start_ms")?,
        end_ms: row.int("end_ms")?,
        created_at: row.ts("created_at")?,
    })
}

impl<'a> TranscriptRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn append(
        &self,
        call: CallId,
        speaker: Speaker,
        text: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<TranscriptSegment, StoreError> {
        let mut tx = self.store.pool().begin().await?;
        // The UPDATE is the transaction's first statement: it takes the call's
        // row lock (PostgreSQL) or the write lock (SQLite) before anything is
        // read, so concurrent appends queue instead of racing.
        let row = Sql::new(
            "UPDATE calls SET transcript_next_seq = transcript_next_seq + 1 WHERE id = $1 \
             RETURNING transcript_next_seq - 1 AS seq",
        )
        .arg(sql::text(call))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::not_found("call"))?;
        let segment = TranscriptSegment {
            call_id: call,
            seq: row.int("seq")?,
            speaker,
            text: text.to_owned(),
            start_ms,
            end_ms,
            created_at: domain::now(),
        };
        Sql::new(
            "INSERT INTO transcript_segments (call_id, seq, speaker, text, start_ms, end_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .arg(sql::text(call))
        .arg(segment.seq)
        .arg(speaker.as_str())
        .arg(segment.text.as_str())
        .arg(start_ms)
        .arg(end_ms)
        .arg(segment.created_at)
        .write(&mut *tx, "transcript segment already exists")
        .await?;
        tx.commit().await?;
        Ok(segment)
    }

    /// All segments of the call in `seq` order.
    pub async fn list(&self, call: CallId) -> Result<Vec<TranscriptSegment>, StoreError> {
        let rows = Sql::new(
            "SELECT call_id, seq, speaker, text, start_ms, end_ms, created_at FROM transcript_segments \
             WHERE call_id = $1 ORDER BY seq",
        )
        .arg(sql::text(call))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(parse).collect()
    }
}
