//! The operations of a sharded queue that ask every shard and put the answers together:
//! counts, workers, listings, politeness records and the results logs.

use std::collections::HashMap;

use futures_util::future::{join_all, try_join_all};

use super::ShardedQueue;
use crate::queue::cursor::{self, Composite};
use crate::queue::error::{QueueError, QueueResult};
use crate::queue::job::{
    Heartbeat, Job, JobStatus, QueueStats, ReapReport, ResultsEntry, WorkerInfo,
};
use crate::queue::politeness::{Change, DomainInfo, Policy, PolicyState};
use crate::queue::redis::RedisQueue;

impl ShardedQueue {
    /// Up to `limit` entries after `cursor`, the shards' logs merged in stream-id order; each
    /// entry's cursor holds the position reached in every shard (see [`crate::queue::cursor`]).
    pub async fn results_after(
        &self,
        from: Option<String>,
        limit: usize,
    ) -> QueueResult<Vec<ResultsEntry>> {
        let mut positions = self.positions(from.as_deref())?;
        let pages = try_join_all(self.shards.iter().zip(&positions).map(|(queue, at)| {
            let after = (at != cursor::START).then(|| at.clone());
            queue.results_after(after, limit)
        }))
        .await?;
        let mut pages: Vec<std::collections::VecDeque<ResultsEntry>> =
            pages.into_iter().map(Into::into).collect();
        let mut merged = Vec::with_capacity(limit.min(1024));
        while merged.len() < limit.max(1) {
            let next = pages
                .iter()
                .enumerate()
                .filter_map(|(shard, page)| {
                    page.front()
                        .map(|entry| (cursor::position(&entry.cursor), shard))
                })
                .min();
            let Some((_, shard)) = next else { break };
            let Some(mut entry) = pages[shard].pop_front() else {
                break;
            };
            positions[shard] = std::mem::take(&mut entry.cursor);
            entry.cursor = Composite {
                shard,
                positions: positions.clone(),
            }
            .encode();
            merged.push(entry);
        }
        Ok(merged)
    }

    /// The position in each shard's log of a cursor of this queue (the start for `None`).
    fn positions(&self, from: Option<&str>) -> QueueResult<Vec<String>> {
        let Some(from) = from else {
            return Ok(vec![cursor::START.to_owned(); self.shards.len()]);
        };
        match Composite::parse(from) {
            Some(c) if c.positions.len() == self.shards.len() => Ok(c.positions),
            // A cursor of the queue's log from before it had shards: the first shard's.
            None if cursor::is_position(from) => {
                let mut positions = vec![cursor::START.to_owned(); self.shards.len()];
                from.clone_into(&mut positions[0]);
                Ok(positions)
            }
            _ => Err(crate::config::ConfigError::invalid(
                "results cursor",
                from,
                format!(
                    "a cursor this queue returned (<shard>@<position>,... with {} positions)",
                    self.shards.len()
                ),
            )
            .into()),
        }
    }

    /// Deletes every shard's log up to its position in `cursor`; returns the entries removed.
    pub async fn trim_results(&self, cursor: String) -> QueueResult<u64> {
        let positions = self.positions(Some(&cursor))?;
        let removed = try_join_all(
            self.shards
                .iter()
                .zip(positions)
                .filter(|(_, at)| at != cursor::START)
                .map(|(queue, at)| queue.trim_results(at)),
        )
        .await?;
        Ok(removed.into_iter().sum())
    }

    /// The job id and generation of the entry `cursor` names, if its shard's log has it —
    /// and every other shard's log still has the entry the cursor read it up to: a log
    /// trimmed or rolled back under the cursor (a failover to a replica that lagged) makes
    /// the reader start again, as on one log.
    pub async fn results_entry(&self, cursor: String) -> QueueResult<Option<(String, u64)>> {
        let positions = self.positions(Some(&cursor))?;
        let named = Composite::parse(&cursor).map_or(0, |c| c.shard);
        let found = try_join_all(self.shards.iter().zip(&positions).map(
            |(queue, at)| async move {
                if at == cursor::START {
                    Ok(Some((String::new(), 0)))
                } else {
                    queue.results_entry(at.clone()).await
                }
            },
        ))
        .await?;
        if found.iter().any(Option::is_none) {
            return Ok(None);
        }
        Ok(found
            .into_iter()
            .nth(named)
            .flatten()
            .filter(|(job, _)| !job.is_empty()))
    }

    /// The position every shard's log was trimmed to (`0-0` for a shard never trimmed), if
    /// any was.
    pub async fn results_trimmed_to(&self) -> QueueResult<Option<String>> {
        let trimmed = try_join_all(self.shards.iter().map(RedisQueue::results_trimmed_to)).await?;
        if trimmed.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(
            Composite {
                shard: 0,
                positions: trimmed
                    .into_iter()
                    .map(|t| t.unwrap_or_else(|| cursor::START.to_owned()))
                    .collect(),
            }
            .encode(),
        ))
    }

    /// Jobs with `status`, shard by shard (each shard's in its own order): each shard's count
    /// says which shards the page falls on, and only those are read, from the right offset.
    pub async fn list(
        &self,
        status: JobStatus,
        offset: usize,
        limit: usize,
    ) -> QueueResult<Vec<QueueResult<Job>>> {
        let counts = try_join_all(self.shards.iter().map(RedisQueue::stats)).await?;
        let mut jobs = Vec::with_capacity(limit.min(1024));
        let mut skip = offset;
        for (shard, stats) in counts.iter().enumerate() {
            let have = usize::try_from(stats.count(status)).unwrap_or(usize::MAX);
            if skip >= have {
                skip -= have;
                continue;
            }
            let want = limit - jobs.len();
            let page = self.shards[shard].list(status, skip, want).await?;
            skip = 0;
            jobs.extend(
                page.into_iter()
                    .map(|job| job.map(|job| self.job_out(shard, job))),
            );
            if jobs.len() >= limit {
                break;
            }
        }
        Ok(jobs)
    }

    /// The shards' counts added up (workers register on every shard: counted once).
    pub async fn stats(&self) -> QueueResult<QueueStats> {
        let all = try_join_all(self.shards.iter().map(RedisQueue::stats)).await?;
        let mut stats = QueueStats {
            by_status: JobStatus::ALL.into_iter().map(|s| (s, 0)).collect(),
            ..QueueStats::default()
        };
        let mut totals = Vec::with_capacity(all.len());
        for shard in all {
            for ((_, sum), (_, n)) in stats.by_status.iter_mut().zip(&shard.by_status) {
                *sum += n;
            }
            stats.total += shard.total;
            stats.active_workers = stats.active_workers.max(shard.active_workers);
            stats.total_workers = stats.total_workers.max(shard.total_workers);
            stats.runnable += shard.runnable;
            stats.paced_keys += shard.paced_keys;
            stats.waiting_keys += shard.waiting_keys;
            totals.push(shard.totals);
        }
        stats.totals = crate::queue::QueueTotals::sum(totals);
        Ok(stats)
    }

    /// Counts by reading every job record of every shard.
    pub async fn recount_by_scan(&self) -> QueueResult<Vec<(JobStatus, u64)>> {
        let mut counts: Vec<(JobStatus, u64)> =
            JobStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for queue in &self.shards {
            for ((_, sum), (_, n)) in counts.iter_mut().zip(queue.recount_by_scan().await?) {
                *sum += n;
            }
        }
        Ok(counts)
    }

    /// Registers the worker on every shard; returns the jobs given back.
    pub async fn register_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<u64> {
        let released = try_join_all(
            self.shards
                .iter()
                .map(|queue| queue.register_worker(worker.clone(), session.clone())),
        )
        .await?;
        Ok(released.into_iter().sum())
    }

    /// A heartbeat on every shard, each told the claims it holds.
    pub async fn heartbeat(
        &self,
        worker: String,
        held: Option<Vec<(String, u64)>>,
        session: Option<String>,
        count_unlisted: bool,
    ) -> QueueResult<Heartbeat> {
        let mut per_shard: Vec<Option<Vec<(String, u64)>>> =
            vec![held.as_ref().map(|_| Vec::new()); self.shards.len()];
        for (id, token) in held.into_iter().flatten() {
            let (shard, token) = self.token_in(token);
            if let Some(list) = &mut per_shard[shard] {
                list.push((id, token));
            }
        }
        let listed = per_shard.clone();
        // A shard where a call of this client went unanswered since its last heartbeat may
        // have leased jobs the worker does not know of (a claim whose answer was lost): they
        // are given back without counting an expired lease, as after an outage of one queue.
        let troubled: Vec<bool> = (0..self.shards.len())
            .map(|shard| self.health.take_trouble(shard))
            .collect();
        let beats = join_all(self.shards.iter().zip(per_shard).zip(&troubled).map(
            |((queue, held), &troubled)| {
                let count = count_unlisted && !troubled;
                queue.heartbeat(worker.clone(), held, session.clone(), count)
            },
        ))
        .await;
        // A shard that does not answer does not stop the others' leases being renewed and
        // their lost claims reported; the error is returned when no shard answered.
        let mut beat = Heartbeat::default();
        let mut failure = None;
        let mut answered = false;
        for (shard, one) in beats.into_iter().enumerate() {
            let one = match one {
                Ok(one) => one,
                Err(error) => {
                    tracing::warn!(%error, shard, "a shard's heartbeat failed");
                    self.health.failed(shard, &error);
                    if troubled[shard] {
                        self.health.keep_trouble(shard);
                    }
                    // Leases that shard has not renewed for a whole lease may be another
                    // worker's by now: given up, as a worker gives up every job when its
                    // queue has been unreachable that long.
                    if self.health.expired(shard, self.options().lease)
                        && let Some(held) = &listed[shard]
                    {
                        beat.lost.extend(
                            held.iter()
                                .map(|(id, token)| (id.clone(), self.token_out(shard, *token))),
                        );
                    }
                    failure.get_or_insert(error);
                    continue;
                }
            };
            self.health.renewed(shard);
            answered = true;
            beat.renewed += one.renewed;
            beat.draining |= one.draining;
            beat.released += one.released;
            beat.superseded |= one.superseded;
            beat.lost.extend(
                one.lost
                    .into_iter()
                    .map(|(id, token)| (id, self.token_out(shard, token))),
            );
        }
        match failure {
            Some(error) if !answered => Err(error),
            _ => Ok(beat),
        }
    }

    /// Sets the worker's drain flag on every shard; false when no shard knows it.
    pub async fn set_draining(&self, worker: String, draining: bool) -> QueueResult<bool> {
        let found = try_join_all(
            self.shards
                .iter()
                .map(|queue| queue.set_draining(worker.clone(), draining)),
        )
        .await?;
        Ok(found.into_iter().any(|f| f))
    }

    /// Removes the worker from every shard (each shard decides by the session whether the id
    /// is still this run's); the jobs given back — `None` when some shard says another run
    /// has taken the id over.
    pub async fn unregister_worker(
        &self,
        worker: String,
        session: Option<String>,
    ) -> QueueResult<Option<u64>> {
        let answers = try_join_all(
            self.shards
                .iter()
                .map(|queue| queue.unregister_worker(worker.clone(), session.clone())),
        )
        .await?;
        Ok(answers.into_iter().sum())
    }

    /// The workers as every shard knows them, with the jobs they hold on any.
    pub async fn workers(&self) -> QueueResult<Vec<WorkerInfo>> {
        let lists = try_join_all(self.shards.iter().map(RedisQueue::workers)).await?;
        let mut order = Vec::new();
        let mut merged: HashMap<String, WorkerInfo> = HashMap::new();
        for worker in lists.into_iter().flatten() {
            if let Some(seen) = merged.get_mut(&worker.id) {
                seen.registered_at = seen.registered_at.min(worker.registered_at);
                if worker.last_heartbeat > seen.last_heartbeat {
                    seen.last_heartbeat = worker.last_heartbeat;
                    seen.state = worker.state;
                }
                seen.draining |= worker.draining;
                seen.jobs.extend(worker.jobs);
            } else {
                order.push(worker.id.clone());
                merged.insert(worker.id.clone(), worker);
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|id| merged.remove(&id))
            .collect())
    }

    /// Every shard's reaper pass, added up; outboxes left full (a client that crashed after
    /// a finish) are forwarded first. A shard that does not answer is skipped (the error is
    /// returned only when none answered): the others' expired leases still go back.
    pub async fn reap(&self, limit: usize) -> QueueResult<ReapReport> {
        for shard in 0..self.shards.len() {
            if let Err(error) = self.forward(shard, limit.div_ceil(500).max(1)).await {
                tracing::warn!(%error, shard, "could not forward a shard's outbox");
            }
        }
        let reports = join_all(self.shards.iter().map(|queue| queue.reap(limit))).await;
        let mut sum = ReapReport::default();
        let mut failure = None;
        let mut answered = false;
        for (shard, report) in reports.into_iter().enumerate() {
            match report {
                Ok(one) => {
                    answered = true;
                    sum.requeued += one.requeued;
                    sum.failed += one.failed;
                    sum.purged += one.purged;
                    sum.workers_expired += one.workers_expired;
                }
                Err(error) => {
                    tracing::warn!(%error, shard, "a shard's reaper pass failed");
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) if !answered => Err(error),
            _ => Ok(sum),
        }
    }

    /// Deletes finished jobs older than `older_than_ms` on every shard.
    pub async fn purge(&self, older_than_ms: i64) -> QueueResult<u64> {
        let purged =
            try_join_all(self.shards.iter().map(|queue| queue.purge(older_than_ms))).await?;
        Ok(purged.into_iter().sum())
    }

    /// The politeness keys with a record, shard by shard.
    pub async fn domains(&self, offset: usize, limit: usize) -> QueueResult<Vec<DomainInfo>> {
        let end = offset.saturating_add(limit);
        let pages = try_join_all(self.shards.iter().map(|queue| queue.domains(0, end))).await?;
        Ok(pages
            .into_iter()
            .flatten()
            .skip(offset)
            .take(limit)
            .collect())
    }

    /// One politeness key's record, from its shard.
    pub async fn domain(&self, key: String) -> QueueResult<Option<DomainInfo>> {
        self.keyed(&key).domain(key).await
    }

    /// Sets or clears a key's overrides, on its shard.
    pub async fn set_domain(
        &self,
        key: String,
        delay_ms: Change<i64>,
        concurrency: Change<u32>,
    ) -> QueueResult<DomainInfo> {
        self.keyed(&key)
            .set_domain(key, delay_ms, concurrency)
            .await
    }

    /// A robots.txt `Crawl-delay` for `key`, on its shard.
    pub async fn set_crawl_delay(
        &self,
        key: String,
        delay_ms: i64,
        ttl_ms: i64,
    ) -> QueueResult<()> {
        self.keyed(&key)
            .set_crawl_delay(key, delay_ms, ttl_ms)
            .await
    }

    /// Writes `policy` on every shard; the policy after it.
    pub async fn set_policy(&self, policy: Policy) -> QueueResult<PolicyState> {
        let states = try_join_all(self.shards.iter().map(|queue| queue.set_policy(policy))).await?;
        states
            .into_iter()
            .next()
            .ok_or_else(|| QueueError::Backend {
                url: self.location().to_owned(),
                operation: "policy",
                detail: "a queue without shards".to_owned(),
            })
    }

    /// The shared robots.txt outcome for `origin`, on the origin's shard.
    pub async fn robots_get(&self, origin: String) -> QueueResult<Option<String>> {
        self.keyed(&origin).robots_get(origin).await
    }

    /// Shares the robots.txt outcome for `origin`, on the origin's shard.
    pub async fn robots_put(&self, origin: String, value: String, ttl_ms: i64) -> QueueResult<()> {
        self.keyed(&origin).robots_put(origin, value, ttl_ms).await
    }

    /// Claims the fetch of `origin`'s robots.txt, on the origin's shard.
    pub async fn robots_claim(&self, origin: String, ttl_ms: i64) -> QueueResult<bool> {
        self.keyed(&origin).robots_claim(origin, ttl_ms).await
    }
}
