//! The SQLite side of the seen-URL filter ([`crate::queue::dedup`]): an exact table of 64-bit
//! fingerprints, not a Bloom filter.
//!
//! SQLite keeps its data on disk, not in memory, and one machine submits a few thousand URLs
//! a second at most: a B-tree row per URL (about 30 bytes with the queue name) costs little,
//! has no false positives (two of 100 million URLs share 64 bits with a probability of about
//! 3 in 10,000) and needs no resizing. The semantics are the Redis filter's: a URL with a
//! revisit interval R is new when it was last taken in a bucket before
//! `floor((now - R) / bucket)`; a URL without one is seen for ever. The two kinds are apart,
//! as on Redis (a URL taken for ever does not hold back one with a revisit interval).

use rusqlite::{OptionalExtension, params};

use super::Ctx;
use crate::queue::dedup::{DedupOptions, Fingerprint, scope_of};
use crate::queue::error::QueueResult;
use crate::queue::job::NewJob;
use crate::queue::options::duration_ms;

/// The table (created with the queue's schema).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seen (
    queue TEXT NOT NULL,
    fp INTEGER NOT NULL,
    -- 0: seen for ever; 1: seen in `bucket`, forgotten after `expires` (ms).
    kind INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    expires INTEGER,
    PRIMARY KEY (queue, fp, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expiry ON seen (queue, expires) WHERE kind = 1;
";

/// A job looked up in the filter: what recording it needs.
pub(super) struct Probe {
    fp: i64,
    revisit: i64,
}

/// The filter within one transaction.
pub(super) struct Seen<'a> {
    options: &'a DedupOptions,
    width: i64,
}

impl<'a> Seen<'a> {
    /// The filter when the queue has dedup on.
    pub(super) fn of(ctx: &'a Ctx) -> Option<Self> {
        let options = ctx.options.dedup.as_ref()?;
        Some(Self {
            options,
            width: options.bucket_ms(),
        })
    }

    /// `Some(probe)` when `job` is new (record it with [`Seen::record`] once it is queued),
    /// `None` when the filter has seen it within its revisit interval.
    pub(super) fn check(
        &self,
        tx: &rusqlite::Transaction<'_>,
        ctx: &Ctx,
        job: &NewJob,
    ) -> QueueResult<Option<Probe>> {
        let fp = Fingerprint::of(
            &scope_of(job.crawl_id.as_deref(), &job.template_id),
            &job.target_url,
            &self.options.ignored_params,
        )
        .short();
        let revisit = job.revisit.or(self.options.revisit).map_or(0, duration_ms);
        let kind = i64::from(revisit > 0);
        let bucket: Option<i64> = tx
            .prepare_cached("SELECT bucket FROM seen WHERE queue = ?1 AND fp = ?2 AND kind = ?3")
            .and_then(|mut select| {
                select
                    .query_row(params![ctx.queue, fp, kind], |row| row.get(0))
                    .optional()
            })
            .map_err(|e| ctx.error(&e))?;
        let new = match bucket {
            None => true,
            Some(_) if revisit == 0 => false,
            Some(bucket) => bucket < (ctx.now - revisit).div_euclid(self.width),
        };
        Ok(new.then_some(Probe { fp, revisit }))
    }

    /// Records a job found new and queued.
    pub(super) fn record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        ctx: &Ctx,
        probe: &Probe,
    ) -> QueueResult<()> {
        let current = ctx.now.div_euclid(self.width);
        let (kind, expires) = if probe.revisit > 0 {
            (1, Some((current + 1) * self.width + probe.revisit))
        } else {
            (0, None)
        };
        tx.prepare_cached(
            "INSERT INTO seen (queue, fp, kind, bucket, expires) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (queue, fp, kind) DO UPDATE SET bucket = ?4, expires = ?5",
        )
        .and_then(|mut upsert| upsert.execute(params![ctx.queue, probe.fp, kind, current, expires]))
        .map(drop)
        .map_err(|e| ctx.error(&e))
    }
}

/// Forgets URLs whose revisit interval has passed (at most `limit`).
pub(super) fn expire(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, limit: usize) -> QueueResult<()> {
    tx.prepare_cached(
        "DELETE FROM seen WHERE queue = ?1 AND kind = 1 AND fp IN (SELECT fp FROM seen \
         WHERE queue = ?1 AND kind = 1 AND expires < ?2 LIMIT ?3)",
    )
    .and_then(|mut delete| delete.execute(params![ctx.queue, ctx.now, limit]))
    .map(drop)
    .map_err(|e| ctx.error(&e))
}
