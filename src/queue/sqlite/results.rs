//! The bound of the SQLite results log (`results_max_len`): the reaper deletes the oldest
//! entries beyond it and remembers the last entry deleted, so an exporter that had not read
//! that far learns it lost entries (see [`crate::queue::JobQueue::results_trimmed_to`]).

use rusqlite::{OptionalExtension, params};

use super::Ctx;
use crate::queue::error::QueueResult;

/// The table of the last entry deleted per queue (created with the queue's schema).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS results_trimmed (
    queue TEXT PRIMARY KEY,
    upto INTEGER NOT NULL
);
";

/// Records that the entries up to `upto` are gone.
pub(super) fn trimmed(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, upto: i64) -> QueueResult<()> {
    tx.prepare_cached(
        "INSERT INTO results_trimmed (queue, upto) VALUES (?1, ?2) \
         ON CONFLICT (queue) DO UPDATE SET upto = max(upto, ?2)",
    )
    .and_then(|mut upsert| upsert.execute(params![ctx.queue, upto]))
    .map(drop)
    .map_err(|e| ctx.error(&e))
}

/// Deletes the oldest entries beyond the newest `max_len`; returns how many.
pub(super) fn bound(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, max_len: u64) -> QueueResult<u64> {
    let last: Option<i64> = tx
        .query_row(
            "SELECT seq FROM results WHERE queue = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
            params![ctx.queue, max_len],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    let Some(last) = last else {
        return Ok(0);
    };
    let deleted = tx
        .execute(
            "DELETE FROM results WHERE queue = ?1 AND seq <= ?2",
            params![ctx.queue, last],
        )
        .map_err(|e| ctx.error(&e))?;
    trimmed(tx, ctx, last)?;
    Ok(deleted as u64)
}

/// The last entry deleted from the log, if any.
pub(super) fn trimmed_to(tx: &rusqlite::Transaction<'_>, ctx: &Ctx) -> QueueResult<Option<String>> {
    let upto: Option<i64> = tx
        .query_row(
            "SELECT upto FROM results_trimmed WHERE queue = ?1",
            params![ctx.queue],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    Ok(upto.map(|upto| upto.to_string()))
}
