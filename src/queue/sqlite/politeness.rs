//! Politeness on SQLite: the same model as `redis/lua/politeness.lua`, in SQL.
//!
//! A job of a key that needs pacing is **parked** (`jobs.parked = 1`): it leaves the shared
//! claim index (`jobs_shared`, pending jobs with `parked = 0`) for its key's index
//! (`jobs_key`). The `domains` table keeps per key its next allowed time, jobs in flight, the
//! adaptive delay, overrides, the robots.txt delay, a `Retry-After` pause, counters and its
//! best parked job (`head_pri`, `head_seq`: ready keys are taken best first). Triggers keep
//! the in-flight count right on every path out of a lease and send a job that comes back to
//! pending to the right index; the claim moves jobs of a key parked since they were queued
//! as it meets them, so a throttled key never blocks the head of the queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rusqlite::{OptionalExtension, params};

use super::{Ctx, exec};
use crate::queue::error::QueueResult;
use crate::queue::politeness::{Change, DomainInfo, Feedback, Policy, PolicyState};

/// Created after the column migrations (the indexes use the new columns).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS domains (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    next_at INTEGER NOT NULL DEFAULT 0,
    inflight INTEGER NOT NULL DEFAULT 0,
    delay INTEGER NOT NULL DEFAULT 0,
    delay_o INTEGER,
    limit_o INTEGER,
    crawl_delay INTEGER NOT NULL DEFAULT 0,
    crawl_until INTEGER NOT NULL DEFAULT 0,
    pause_until INTEGER NOT NULL DEFAULT 0,
    parked INTEGER NOT NULL DEFAULT 0,
    head_pri INTEGER,
    head_seq INTEGER,
    throttled INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    last_throttled INTEGER NOT NULL DEFAULT 0,
    last_error INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key)
);
CREATE INDEX IF NOT EXISTS domains_ready ON domains (queue, parked, head_pri DESC, head_seq);
CREATE INDEX IF NOT EXISTS domains_updated ON domains (queue, updated);
CREATE TABLE IF NOT EXISTS politeness (
    queue TEXT PRIMARY KEY,
    delay INTEGER,
    lim INTEGER,
    autothrottle REAL,
    max_delay INTEGER,
    max_pause INTEGER
);
CREATE TABLE IF NOT EXISTS robots (
    queue TEXT NOT NULL,
    origin TEXT NOT NULL,
    value TEXT,
    expires INTEGER NOT NULL DEFAULT 0,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, origin)
);
CREATE INDEX IF NOT EXISTS jobs_shared ON jobs (queue, priority DESC, seq)
    WHERE status IN ('pending', 'retrying') AND parked = 0;
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (queue, pkey, priority DESC, seq)
    WHERE status IN ('pending', 'retrying') AND parked = 1;
CREATE INDEX IF NOT EXISTS jobs_key_shared ON jobs (queue, pkey)
    WHERE status IN ('pending', 'retrying') AND parked = 0;
CREATE INDEX IF NOT EXISTS jobs_retry_due ON jobs (queue, not_before)
    WHERE status = 'retrying';
-- A lease ends (finished, failed, released, expired, cancelled): one less in flight.
CREATE TRIGGER IF NOT EXISTS jobs_politeness_lease_end AFTER UPDATE OF status ON jobs
WHEN OLD.status IN ('assigned', 'running') AND NEW.status NOT IN ('assigned', 'running')
    AND OLD.ikey IS NOT NULL
BEGIN
    UPDATE domains SET inflight = MAX(0, inflight - 1)
        WHERE queue = OLD.queue AND key = OLD.ikey;
END;
-- A job waits again (released, retried, expired, replayed): in its key's queue when the key
-- is parked, and the key's best job updated.
CREATE TRIGGER IF NOT EXISTS jobs_politeness_requeue AFTER UPDATE OF status ON jobs
WHEN NEW.status IN ('pending', 'retrying') AND OLD.status NOT IN ('pending', 'retrying')
    AND NEW.pkey <> ''
BEGIN
    UPDATE jobs SET parked = COALESCE(
        (SELECT parked FROM domains WHERE queue = NEW.queue AND key = NEW.pkey), 0)
        WHERE rowid = NEW.rowid;
    UPDATE domains SET head_pri = NEW.priority, head_seq = NEW.seq
        WHERE queue = NEW.queue AND key = NEW.pkey AND parked = 1 AND (head_seq IS NULL
            OR NEW.priority > head_pri OR (NEW.priority = head_pri AND NEW.seq < head_seq));
END;
";

/// A `politeness` row.
type PolicyRow = (
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
);

/// The queue's policy (defaults for what is not stored).
pub(super) fn policy(tx: &rusqlite::Transaction<'_>, ctx: &Ctx) -> QueueResult<PolicyState> {
    let defaults = PolicyState::default();
    let row: Option<PolicyRow> = tx
        .query_row(
            "SELECT delay, lim, autothrottle, max_delay, max_pause FROM politeness WHERE queue = ?1",
            params![ctx.queue],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    let Some((delay, limit, auto, max_delay, max_pause)) = row else {
        return Ok(defaults);
    };
    let ms = |v: Option<i64>, d: u64| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d);
    Ok(PolicyState {
        delay_ms: ms(delay, defaults.delay_ms),
        concurrency: limit.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        autothrottle: auto.unwrap_or(0.0),
        max_delay_ms: ms(max_delay, defaults.max_delay_ms),
        max_pause_ms: ms(max_pause, defaults.max_pause_ms),
    })
}

/// Writes the values of `policy` that are set.
pub(super) fn set_policy(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    policy: &Policy,
) -> QueueResult<PolicyState> {
    let ms = |d: Option<std::time::Duration>| d.map(crate::queue::options::duration_ms);
    exec(
        tx,
        ctx,
        "INSERT INTO politeness (queue, delay, lim, autothrottle, max_delay, max_pause) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (queue) DO UPDATE SET \
         delay = COALESCE(?2, delay), lim = COALESCE(?3, lim), \
         autothrottle = COALESCE(?4, autothrottle), max_delay = COALESCE(?5, max_delay), \
         max_pause = COALESCE(?6, max_pause)",
        params![
            ctx.queue,
            ms(policy.delay),
            policy.concurrency,
            policy.autothrottle,
            ms(policy.max_delay),
            ms(policy.max_pause)
        ],
    )?;
    self::policy(tx, ctx)
}

/// One key's state.
#[derive(Debug, Clone, Default)]
struct Domain {
    next_at: i64,
    inflight: i64,
    delay: i64,
    delay_o: Option<i64>,
    limit_o: Option<i64>,
    crawl_delay: i64,
    crawl_until: i64,
    pause_until: i64,
    parked: bool,
}

impl Domain {
    fn base_delay(&self, p: &PolicyState, now: i64) -> i64 {
        let mut base = self
            .delay_o
            .unwrap_or_else(|| i64::try_from(p.delay_ms).unwrap_or(i64::MAX));
        if self.crawl_delay > 0 && self.crawl_until > now {
            base = base.max(self.crawl_delay);
        }
        base
    }

    fn delay(&self, p: &PolicyState, now: i64) -> i64 {
        self.base_delay(p, now).max(self.delay)
    }

    fn limit(&self, p: &PolicyState) -> i64 {
        self.limit_o.unwrap_or_else(|| i64::from(p.concurrency))
    }

    fn has_slot(&self, p: &PolicyState) -> bool {
        let limit = self.limit(p);
        limit <= 0 || self.inflight < limit
    }

    fn ready_at(&self) -> i64 {
        self.next_at.max(self.pause_until)
    }

    fn ready(&self, p: &PolicyState, now: i64) -> bool {
        self.has_slot(p) && self.ready_at() <= now
    }

    fn needs_parking(&self, p: &PolicyState, now: i64) -> bool {
        p.delay_ms > 0
            || p.concurrency > 0
            || p.autothrottle > 0.0
            || self.delay(p, now) > 0
            || self.limit(p) > 0
            || self.pause_until > now
            || self.inflight > 0
    }
}

fn load(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, key: &str) -> QueueResult<Domain> {
    Ok(tx
        .query_row(
            "SELECT next_at, inflight, delay, delay_o, limit_o, crawl_delay, crawl_until, \
             pause_until, parked FROM domains WHERE queue = ?1 AND key = ?2",
            params![ctx.queue, key],
            |row| {
                Ok(Domain {
                    next_at: row.get(0)?,
                    inflight: row.get(1)?,
                    delay: row.get(2)?,
                    delay_o: row.get(3)?,
                    limit_o: row.get(4)?,
                    crawl_delay: row.get(5)?,
                    crawl_until: row.get(6)?,
                    pause_until: row.get(7)?,
                    parked: row.get(8)?,
                })
            },
        )
        .optional()
        .map_err(|e| ctx.error(&e))?
        .unwrap_or_default())
}

fn save(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, key: &str, d: &Domain) -> QueueResult<()> {
    exec(
        tx,
        ctx,
        "INSERT INTO domains (queue, key, next_at, inflight, delay, delay_o, limit_o, \
         crawl_delay, crawl_until, pause_until, parked, updated) VALUES (?1, ?2, ?3, ?4, ?5, \
         ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (queue, key) DO UPDATE SET next_at = ?3, \
         inflight = ?4, delay = ?5, delay_o = ?6, limit_o = ?7, crawl_delay = ?8, \
         crawl_until = ?9, pause_until = ?10, parked = ?11, updated = ?12",
        params![
            ctx.queue,
            key,
            d.next_at,
            d.inflight,
            d.delay,
            d.delay_o,
            d.limit_o,
            d.crawl_delay,
            d.crawl_until,
            d.pause_until,
            d.parked,
            ctx.now
        ],
    )
}

/// The rank of a job: higher priority first, then submission order (smaller is better).
type Rank = (i64, i64);

fn rank(priority: i64, seq: i64) -> Rank {
    (-priority, seq)
}

/// The best parked job of `key`, and stores it as the key's head.
fn refresh_head(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, key: &str) -> QueueResult<Option<Rank>> {
    let head: Option<(i64, i64)> = tx
        .query_row(
            "SELECT priority, seq FROM jobs WHERE queue = ?1 AND pkey = ?2 AND status IN \
             ('pending', 'retrying') AND parked = 1 ORDER BY priority DESC, seq LIMIT 1",
            params![ctx.queue, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?;
    exec(
        tx,
        ctx,
        "UPDATE domains SET head_pri = ?3, head_seq = ?4 WHERE queue = ?1 AND key = ?2",
        params![ctx.queue, key, head.map(|h| h.0), head.map(|h| h.1)],
    )?;
    Ok(head.map(|(p, s)| rank(p, s)))
}

/// Parks `key`: its waiting jobs leave the shared index for the key's own.
fn park(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, key: &str, d: &mut Domain) -> QueueResult<()> {
    d.parked = true;
    save(tx, ctx, key, d)?;
    exec(
        tx,
        ctx,
        "UPDATE jobs SET parked = 1 WHERE queue = ?1 AND pkey = ?2 AND status IN ('pending', \
         'retrying') AND parked = 0",
        params![ctx.queue, key],
    )?;
    refresh_head(tx, ctx, key).map(drop)
}

/// The keys jobs being inserted go under: `parked` per key (parking keys that need it).
pub(super) struct Inserting {
    policy: PolicyState,
    parked: HashMap<String, bool>,
}

impl Inserting {
    pub(super) fn new(tx: &rusqlite::Transaction<'_>, ctx: &Ctx) -> QueueResult<Self> {
        Ok(Self {
            policy: policy(tx, ctx)?,
            parked: HashMap::new(),
        })
    }

    /// Whether a new job of `key` goes to the key's own queue.
    pub(super) fn parked(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        ctx: &Ctx,
        key: &str,
    ) -> QueueResult<bool> {
        if key.is_empty() {
            return Ok(false);
        }
        if let Some(parked) = self.parked.get(key) {
            return Ok(*parked);
        }
        let mut d = load(tx, ctx, key)?;
        let needed = d.needs_parking(&self.policy, ctx.now);
        if d.parked && !needed && refresh_head(tx, ctx, key)?.is_none() {
            // Nothing to pace any more and nothing waiting in its own queue: unparked.
            d.parked = false;
            save(tx, ctx, key, &d)?;
        }
        let parked = d.parked || needed;
        if parked && !d.parked {
            park(tx, ctx, key, &mut d)?;
        }
        self.parked.insert(key.to_owned(), parked);
        Ok(parked)
    }

    /// After the inserts: the heads of the parked keys that got jobs.
    pub(super) fn finish(self, tx: &rusqlite::Transaction<'_>, ctx: &Ctx) -> QueueResult<()> {
        for (key, parked) in self.parked {
            if parked {
                refresh_head(tx, ctx, &key)?;
            }
        }
        Ok(())
    }
}

/// A job a claim takes: its id and the key whose in-flight count it holds.
pub(super) struct Taken {
    pub(super) id: String,
    pub(super) ikey: Option<String>,
}

/// Picks up to `limit` claimable jobs, best first, among the shared queue and the ready
/// parked keys, booking each key's next slot; `take` leases each job as it is picked (so
/// later picks do not see it). Returns when a paced key or a retry becomes ready, ms from
/// now, when fewer jobs than asked were found.
pub(super) fn claim(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    limit: usize,
    take: impl FnMut(Taken) -> QueueResult<()>,
) -> QueueResult<Option<i64>> {
    let mut claim = Claim {
        tx,
        ctx,
        policy: policy(tx, ctx)?,
        limit,
        domains: HashMap::new(),
        touched: HashSet::new(),
        heap: BinaryHeap::new(),
        page: VecDeque::new(),
        taken: 0,
        take,
    };
    claim.run()?;
    let Claim {
        mut domains,
        touched,
        policy: p,
        taken,
        ..
    } = claim;
    for key in touched {
        let d = domains.get_mut(&key).unwrap_or_else(|| unreachable!());
        let first = refresh_head_after(tx, ctx, &key, d)?;
        if first.is_none() && !d.needs_parking(&p, ctx.now) {
            d.parked = false;
        }
        save(tx, ctx, &key, d)?;
    }
    if taken >= limit {
        return Ok(None);
    }
    wake(tx, ctx, &p)
}

/// One claim in progress.
struct Claim<'t, 'c, F> {
    tx: &'t rusqlite::Transaction<'c>,
    ctx: &'t Ctx,
    policy: PolicyState,
    limit: usize,
    domains: HashMap<String, Domain>,
    touched: HashSet<String>,
    /// Ready parked keys by their best job.
    heap: BinaryHeap<Reverse<(Rank, String)>>,
    /// The next jobs of the shared queue: id, key, rank.
    page: VecDeque<(String, String, Rank)>,
    taken: usize,
    take: F,
}

impl<F: FnMut(Taken) -> QueueResult<()>> Claim<'_, '_, F> {
    fn run(&mut self) -> QueueResult<()> {
        self.load_ready_keys()?;
        let mut after: Option<(i64, i64)> = None;
        let mut more = true;
        let mut budget = self.limit * 4 + 1000;
        while self.taken < self.limit {
            if self.page.is_empty() && more && budget > 0 {
                self.page = shared_page(self.tx, self.ctx, after, self.limit)?;
                more = self.page.len() == self.limit;
            }
            let shared = if budget > 0 { self.page.front() } else { None };
            let best_key = self.heap.peek().map(|Reverse((r, _))| *r);
            let from_shared = match (shared, best_key) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((_, _, r)), Some(k)) => *r <= k,
            };
            if from_shared {
                let (id, key, r) = self.page.pop_front().unwrap_or_default();
                after = Some((-r.0, r.1));
                if self.take_shared(id, key)? {
                    budget -= 1;
                }
            } else if let Some(Reverse((_, key))) = self.heap.pop() {
                self.serve(key)?;
            }
        }
        Ok(())
    }

    /// The best ready keys that have a job due now (a key whose best job is a retry not due
    /// yet must not take the place of a key that can be served).
    fn load_ready_keys(&mut self) -> QueueResult<()> {
        let (tx, ctx) = (self.tx, self.ctx);
        let mut ready = tx
            .prepare_cached(
                "SELECT key, head_pri, head_seq FROM domains WHERE queue = ?1 AND parked = 1 \
                 AND head_seq IS NOT NULL AND MAX(next_at, pause_until) <= ?2 AND \
                 (COALESCE(limit_o, ?3) <= 0 OR inflight < COALESCE(limit_o, ?3)) AND \
                 EXISTS (SELECT 1 FROM jobs WHERE jobs.queue = ?1 AND jobs.pkey = domains.key \
                 AND jobs.status IN ('pending', 'retrying') AND jobs.parked = 1 AND \
                 jobs.not_before <= ?2) ORDER BY head_pri DESC, head_seq LIMIT ?4",
            )
            .map_err(|e| ctx.error(&e))?;
        let rows = ready
            .query_map(
                params![ctx.queue, ctx.now, self.policy.concurrency, self.limit],
                |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)),
            )
            .and_then(Iterator::collect::<rusqlite::Result<Vec<(String, i64, i64)>>>)
            .map_err(|e| ctx.error(&e))?;
        for (key, priority, seq) in rows {
            self.heap.push(Reverse((rank(priority, seq), key)));
        }
        Ok(())
    }

    /// A job from the shared queue: leased, or — its key parked since it was queued — moved
    /// with every job of its key to the key's own queue (true), the key then competing.
    fn take_shared(&mut self, id: String, key: String) -> QueueResult<bool> {
        let (tx, ctx, now) = (self.tx, self.ctx, self.ctx.now);
        if !key.is_empty() {
            let p = self.policy;
            let d = domain(tx, ctx, &mut self.domains, &key)?;
            if d.parked || d.needs_parking(&p, now) {
                if !d.parked {
                    park(tx, ctx, &key, d)?;
                }
                let ready = d.ready(&p, now);
                self.page.retain(|(_, k, _)| *k != key);
                self.touched.insert(key.clone());
                if ready && let Some(first) = head_of(tx, ctx, &key)? {
                    self.heap.push(Reverse((first, key)));
                }
                return Ok(true);
            }
        }
        (self.take)(Taken { id, ikey: None })?;
        self.taken += 1;
        Ok(false)
    }

    /// Takes what a ready parked key allows: one job when it has a delay, else as many as
    /// its limit leaves, while they are as good as the best elsewhere.
    fn serve(&mut self, key: String) -> QueueResult<()> {
        let (tx, ctx, now, p) = (self.tx, self.ctx, self.ctx.now, self.policy);
        self.touched.insert(key.clone());
        let d = domain(tx, ctx, &mut self.domains, &key)?;
        if !d.ready(&p, now) {
            return Ok(());
        }
        let delay = d.delay(&p, now);
        let cap = d.limit(&p);
        let mut n = self.limit - self.taken;
        if delay > 0 {
            n = 1;
        }
        if cap > 0 {
            n = n.min(usize::try_from(cap - d.inflight).unwrap_or(0));
        }
        let bound = [
            self.heap.peek().map(|Reverse((r, _))| *r),
            self.page.front().map(|(_, _, r)| *r),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut got = 0;
        for (id, r) in key_jobs(tx, ctx, &key, n)? {
            if got > 0 && bound.is_some_and(|b| r > b) {
                break;
            }
            (self.take)(Taken {
                id,
                ikey: Some(key.clone()),
            })?;
            got += 1;
        }
        if got == 0 {
            return Ok(());
        }
        self.taken += got;
        let d = self.domains.get_mut(&key).unwrap_or_else(|| unreachable!());
        d.inflight += i64::try_from(got).unwrap_or(0);
        if delay > 0 {
            d.next_at = now.saturating_add(delay);
        }
        if d.ready(&p, now)
            && let Some(first) = head_of(tx, ctx, &key)?
        {
            self.heap.push(Reverse((first, key)));
        }
        Ok(())
    }
}

fn domain<'a>(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    domains: &'a mut HashMap<String, Domain>,
    key: &str,
) -> QueueResult<&'a mut Domain> {
    if !domains.contains_key(key) {
        let d = load(tx, ctx, key)?;
        domains.insert(key.to_owned(), d);
    }
    Ok(domains.get_mut(key).unwrap_or_else(|| unreachable!()))
}

fn refresh_head_after(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    d: &Domain,
) -> QueueResult<Option<Rank>> {
    // The row must exist for the head to be stored.
    save(tx, ctx, key, d)?;
    refresh_head(tx, ctx, key)
}

fn head_of(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, key: &str) -> QueueResult<Option<Rank>> {
    Ok(key_jobs(tx, ctx, key, 1)?
        .into_iter()
        .next()
        .map(|(_, r)| r))
}

/// Up to `n` claimable parked jobs of `key`, best first.
fn key_jobs(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    n: usize,
) -> QueueResult<Vec<(String, Rank)>> {
    let mut select = tx
        .prepare_cached(
            "SELECT id, priority, seq FROM jobs WHERE queue = ?1 AND pkey = ?2 AND status IN \
             ('pending', 'retrying') AND parked = 1 AND not_before <= ?3 \
             ORDER BY priority DESC, seq LIMIT ?4",
        )
        .map_err(|e| ctx.error(&e))?;
    select
        .query_map(params![ctx.queue, key, ctx.now, n], |row| {
            Ok((row.get(0)?, rank(row.get(1)?, row.get(2)?)))
        })
        .and_then(Iterator::collect)
        .map_err(|e| ctx.error(&e))
}

/// The next claimable jobs of the shared queue after `after` (priority, seq).
fn shared_page(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    after: Option<(i64, i64)>,
    limit: usize,
) -> QueueResult<VecDeque<(String, String, Rank)>> {
    let (priority, seq) = after.unwrap_or((i64::MAX, i64::MIN));
    let mut select = tx
        .prepare_cached(
            "SELECT id, pkey, priority, seq FROM jobs WHERE queue = ?1 AND status IN \
             ('pending', 'retrying') AND parked = 0 AND not_before <= ?2 AND \
             (priority < ?3 OR (priority = ?3 AND seq > ?4)) ORDER BY priority DESC, seq \
             LIMIT ?5",
        )
        .map_err(|e| ctx.error(&e))?;
    select
        .query_map(params![ctx.queue, ctx.now, priority, seq, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, rank(row.get(2)?, row.get(3)?)))
        })
        .and_then(Iterator::collect)
        .map_err(|e| ctx.error(&e))
}

/// In how many ms a parked key or a retry becomes ready (`None`: nothing scheduled).
fn wake(tx: &rusqlite::Transaction<'_>, ctx: &Ctx, p: &PolicyState) -> QueueResult<Option<i64>> {
    let key: Option<i64> = tx
        .query_row(
            "SELECT MIN(MAX(next_at, pause_until)) FROM domains WHERE queue = ?1 AND parked = 1 \
             AND head_seq IS NOT NULL AND MAX(next_at, pause_until) > ?2 AND \
             (COALESCE(limit_o, ?3) <= 0 OR inflight < COALESCE(limit_o, ?3))",
            params![ctx.queue, ctx.now, p.concurrency],
            |row| row.get(0),
        )
        .map_err(|e| ctx.error(&e))?;
    let retry: Option<i64> = tx
        .query_row(
            "SELECT MIN(not_before) FROM jobs WHERE queue = ?1 AND status = 'retrying' AND \
             not_before > ?2",
            params![ctx.queue, ctx.now],
            |row| row.get(0),
        )
        .map_err(|e| ctx.error(&e))?;
    Ok([key, retry]
        .into_iter()
        .flatten()
        .min()
        .map(|at| (at - ctx.now).max(0)))
}

/// A failure that slows `key` down for the whole fleet (see `penalize` in politeness.lua).
pub(super) fn penalize(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    feedback: Feedback,
) -> QueueResult<()> {
    if key.is_empty() {
        return Ok(());
    }
    let p = policy(tx, ctx)?;
    let mut d = load(tx, ctx, key)?;
    let now = ctx.now;
    // Once per delay: answers to requests that were in flight together are one signal.
    let last: Option<i64> = tx
        .query_row(
            "SELECT MAX(last_throttled, last_error) FROM domains WHERE queue = ?1 AND key = ?2",
            params![ctx.queue, key],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?
        .flatten();
    let current = d.delay(&p, now);
    if now - last.unwrap_or(0) >= current {
        let max_delay = i64::try_from(p.max_delay_ms).unwrap_or(i64::MAX);
        let delay = current.saturating_mul(2).max(1000).min(max_delay);
        d.delay = delay;
        d.next_at = d.next_at.max(now.saturating_add(delay));
    }
    let (kind, pause) = feedback.encode();
    if pause > 0 {
        let pause = i64::try_from(pause.min(p.max_pause_ms)).unwrap_or(i64::MAX);
        d.pause_until = d.pause_until.max(now.saturating_add(pause));
    }
    if d.parked {
        save(tx, ctx, key, &d)?;
    } else {
        park(tx, ctx, key, &mut d)?;
    }
    let sql = if kind == "throttled" {
        "UPDATE domains SET throttled = throttled + 1, last_throttled = ?3 WHERE queue = ?1 \
         AND key = ?2"
    } else {
        "UPDATE domains SET errors = errors + 1, last_error = ?3 WHERE queue = ?1 AND key = ?2"
    };
    exec(tx, ctx, sql, params![ctx.queue, key, now])
}

/// A success of a job of `key` after `latency_ms` (see `succeed` in politeness.lua).
pub(super) fn succeed(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    latency_ms: Option<i64>,
) -> QueueResult<()> {
    let p = policy(tx, ctx)?;
    let mut d = load(tx, ctx, key)?;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let mut delay = d.delay as f64;
    match latency_ms {
        #[allow(clippy::cast_precision_loss)]
        Some(latency) if p.autothrottle > 0.0 => {
            let target = latency as f64 / p.autothrottle;
            delay = if target > delay {
                f64::midpoint(delay, target)
            } else {
                target.max(delay * 0.9)
            };
        }
        _ => delay *= 0.9,
    }
    #[allow(clippy::cast_precision_loss)]
    let capped = delay.floor().min(p.max_delay_ms as f64);
    #[allow(clippy::cast_possible_truncation)]
    let delay = if capped < 10.0 { 0 } else { capped as i64 };
    if delay != d.delay {
        d.delay = delay;
        save(tx, ctx, key, &d)?;
    }
    Ok(())
}

/// `(runnable, parked keys, waiting keys)`: see `stats.lua`.
pub(super) fn runnable(tx: &rusqlite::Transaction<'_>, ctx: &Ctx) -> QueueResult<(u64, u64, u64)> {
    let p = policy(tx, ctx)?;
    let now = ctx.now;
    let horizon = crate::queue::options::duration_ms(ctx.options.runnable_horizon);
    let shared: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND status IN ('pending', 'retrying') \
             AND not_before <= ?2 AND parked = 0",
            params![ctx.queue, now],
            |row| row.get(0),
        )
        .map_err(|e| ctx.error(&e))?;
    let waiting: Vec<(String, i64)> = tx
        .prepare_cached(
            "SELECT pkey, COUNT(*) FROM jobs WHERE queue = ?1 AND status IN ('pending', \
             'retrying') AND not_before <= ?2 AND parked = 1 GROUP BY pkey",
        )
        .and_then(|mut select| {
            select
                .query_map(params![ctx.queue, now], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .and_then(Iterator::collect)
        })
        .map_err(|e| ctx.error(&e))?;
    let mut total = shared;
    let mut waiting_keys = 0;
    for (key, n) in waiting {
        let d = load(tx, ctx, &key)?;
        let mut slots = n;
        let cap = d.limit(&p);
        if cap > 0 {
            slots = slots.min((cap - d.inflight).max(0));
        }
        let delay = d.delay(&p, now);
        let wait = (d.ready_at() - now).max(0);
        if wait > 0 {
            waiting_keys += 1;
        }
        // Requests at wait, wait + delay, ... within [now, now + horizon): a key limited to
        // one a second adds horizon / 1 s, not one more.
        if wait >= horizon {
            slots = 0;
        } else if delay > 0 {
            slots = slots.min((horizon - wait + delay - 1) / delay);
        }
        total += slots;
    }
    let parked: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM domains WHERE queue = ?1 AND parked = 1",
            params![ctx.queue],
            |row| row.get(0),
        )
        .map_err(|e| ctx.error(&e))?;
    Ok((
        u64::try_from(total).unwrap_or(0),
        u64::try_from(parked).unwrap_or(0),
        waiting_keys,
    ))
}

const DESCRIBE: &str = "SELECT key, next_at, inflight, delay, delay_o, limit_o, crawl_delay, \
    crawl_until, pause_until, parked, throttled, errors, last_throttled, last_error \
    FROM domains WHERE queue = ?1";

fn describe(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    p: &PolicyState,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<DomainInfo> {
    let key: String = row.get(0)?;
    let d = Domain {
        next_at: row.get(1)?,
        inflight: row.get(2)?,
        delay: row.get(3)?,
        delay_o: row.get(4)?,
        limit_o: row.get(5)?,
        crawl_delay: row.get(6)?,
        crawl_until: row.get(7)?,
        pause_until: row.get(8)?,
        parked: row.get(9)?,
    };
    let now = ctx.now;
    let waiting: i64 = tx.query_row(
        "SELECT COUNT(*) FROM jobs WHERE queue = ?1 AND pkey = ?2 AND status IN ('pending', \
         'retrying') AND parked = 1",
        params![ctx.queue, key],
        |r| r.get(0),
    )?;
    let positive = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(DomainInfo {
        waiting: positive(waiting),
        inflight: positive(d.inflight),
        delay_ms: positive(d.delay(p, now)),
        concurrency: u32::try_from(d.limit(p)).unwrap_or(0),
        ready_at: if d.ready_at() > now { d.ready_at() } else { 0 },
        throttled: positive(row.get(10)?),
        errors: positive(row.get(11)?),
        last_throttled: row.get(12)?,
        last_error: row.get(13)?,
        parked: d.parked,
        delay_override_ms: d.delay_o.and_then(|v| u64::try_from(v).ok()),
        concurrency_override: d.limit_o.and_then(|v| u32::try_from(v).ok()),
        crawl_delay_ms: if d.crawl_until > now {
            positive(d.crawl_delay)
        } else {
            0
        },
        paused_until: if d.pause_until > now {
            d.pause_until
        } else {
            0
        },
        now,
        key,
    })
}

/// Keys with a record, most recently changed first.
pub(super) fn list(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    offset: usize,
    limit: usize,
) -> QueueResult<Vec<DomainInfo>> {
    let p = policy(tx, ctx)?;
    let mut select = tx
        .prepare(&format!(
            "{DESCRIBE} ORDER BY updated DESC, key LIMIT ?2 OFFSET ?3"
        ))
        .map_err(|e| ctx.error(&e))?;
    select
        .query_map(params![ctx.queue, limit, offset], |row| {
            describe(tx, ctx, &p, row)
        })
        .and_then(Iterator::collect)
        .map_err(|e| ctx.error(&e))
}

/// One key, if the queue keeps a record of it.
pub(super) fn get(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
) -> QueueResult<Option<DomainInfo>> {
    let p = policy(tx, ctx)?;
    tx.query_row(
        &format!("{DESCRIBE} AND key = ?2"),
        params![ctx.queue, key],
        |row| describe(tx, ctx, &p, row),
    )
    .optional()
    .map_err(|e| ctx.error(&e))
}

/// Sets or clears a key's overrides; parks the key when it needs pacing now.
pub(super) fn set(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    delay_ms: Change<i64>,
    concurrency: Change<u32>,
) -> QueueResult<DomainInfo> {
    let p = policy(tx, ctx)?;
    let mut d = load(tx, ctx, key)?;
    let before = d.delay(&p, ctx.now);
    match delay_ms {
        Change::Keep => {}
        Change::Clear => d.delay_o = None,
        Change::Set(v) => d.delay_o = Some(v),
    }
    match concurrency {
        Change::Keep => {}
        Change::Clear => d.limit_o = None,
        Change::Set(v) => d.limit_o = Some(i64::from(v)),
    }
    // A shorter delay counts from the last claim: the next slot comes sooner (a key set to
    // an hour by mistake and set back is not left waiting the hour).
    let after = d.delay(&p, ctx.now);
    if after < before && d.next_at > ctx.now {
        d.next_at = ctx.now.max(d.next_at.saturating_sub(before - after));
    }
    after_change(tx, ctx, key, &mut d, &p)?;
    get(tx, ctx, key).map(|info| info.unwrap_or_else(|| unreachable!()))
}

/// A robots.txt `Crawl-delay` for `key` for `ttl_ms`.
pub(super) fn set_crawl_delay(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    delay_ms: i64,
    ttl_ms: i64,
) -> QueueResult<()> {
    let p = policy(tx, ctx)?;
    let mut d = load(tx, ctx, key)?;
    // One key can cover several origins (a registrable domain's hosts): the longest
    // Crawl-delay in force holds for the key.
    d.crawl_delay = if d.crawl_until > ctx.now {
        delay_ms.max(d.crawl_delay)
    } else {
        delay_ms
    };
    d.crawl_until = ctx.now.saturating_add(ttl_ms);
    after_change(tx, ctx, key, &mut d, &p)
}

fn after_change(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    key: &str,
    d: &mut Domain,
    p: &PolicyState,
) -> QueueResult<()> {
    if d.needs_parking(p, ctx.now) && !d.parked {
        return park(tx, ctx, key, d);
    }
    save(tx, ctx, key, d)?;
    if d.parked && refresh_head(tx, ctx, key)?.is_none() && !d.needs_parking(p, ctx.now) {
        d.parked = false;
        save(tx, ctx, key, d)?;
    }
    Ok(())
}

/// Forgets records of keys idle since `before` that hold nothing worth keeping; how many.
pub(super) fn forget_idle(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    before: i64,
    limit: usize,
) -> QueueResult<u64> {
    let forgotten = tx
        .execute(
            "DELETE FROM domains WHERE rowid IN (SELECT d.rowid FROM domains d WHERE \
             d.queue = ?1 AND d.updated < ?2 AND d.inflight = 0 AND d.delay_o IS NULL AND \
             d.limit_o IS NULL AND d.pause_until <= ?3 AND d.crawl_until <= ?3 AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.queue = d.queue AND j.pkey = d.key AND j.status \
             IN ('pending', 'retrying') AND j.parked = 1) LIMIT ?4)",
            params![ctx.queue, before, ctx.now, limit],
        )
        .map_err(|e| ctx.error(&e))?;
    Ok(forgotten as u64)
}

/// The shared robots.txt outcome for `origin`, while it is fresh.
pub(super) fn robots_get(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    origin: &str,
) -> QueueResult<Option<String>> {
    Ok(tx
        .query_row(
            "SELECT value FROM robots WHERE queue = ?1 AND origin = ?2 AND expires > ?3",
            params![ctx.queue, origin, ctx.now],
            |row| row.get::<_, Option<String>>(0),
        )
        .optional()
        .map_err(|e| ctx.error(&e))?
        .flatten())
}

/// Shares the outcome for `origin` for `ttl_ms` (expired entries are swept as it goes).
pub(super) fn robots_put(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    origin: &str,
    value: &str,
    ttl_ms: i64,
) -> QueueResult<()> {
    exec(
        tx,
        ctx,
        "DELETE FROM robots WHERE queue = ?1 AND expires <= ?2 AND claimed_until <= ?2",
        params![ctx.queue, ctx.now],
    )?;
    exec(
        tx,
        ctx,
        "INSERT INTO robots (queue, origin, value, expires) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (queue, origin) DO UPDATE SET value = ?3, expires = ?4",
        params![ctx.queue, origin, value, ctx.now.saturating_add(ttl_ms)],
    )
}

/// True when nobody has claimed fetching `origin`'s robots.txt within `ttl_ms`.
pub(super) fn robots_claim(
    tx: &rusqlite::Transaction<'_>,
    ctx: &Ctx,
    origin: &str,
    ttl_ms: i64,
) -> QueueResult<bool> {
    let changed = tx
        .execute(
            "INSERT INTO robots (queue, origin, claimed_until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (queue, origin) DO UPDATE SET claimed_until = ?3 \
             WHERE claimed_until <= ?4",
            params![ctx.queue, origin, ctx.now.saturating_add(ttl_ms), ctx.now],
        )
        .map_err(|e| ctx.error(&e))?;
    Ok(changed == 1)
}
