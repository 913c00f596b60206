//! A Redis queue spread over several shards: one queue per hash tag, so over several slots
//! (and masters) of a Redis Cluster, driven as one.
//!
//! - **Layout.** A queue created with `shards = N > 1` stores the key bases of its shards
//!   once, in its first shard (`<prefix>:{<name>}:shards`; see `redis/shards.rs`): the first
//!   is the unsharded queue's own (`{<name>}`), the others `{<name>/<k>[.<salt>]}`, the salt
//!   picked on a cluster so the shards spread evenly over the masters of that moment. Every
//!   client reads the layout when it opens the queue (clients need not be told `N`); one
//!   that asks for another number is refused (a queue is not resharded in place).
//! - **Routing.** A job goes to the shard its politeness key picks by rendezvous hashing
//!   ([`crate::partition::rendezvous`]): a key's jobs, pacing, robots.txt record and
//!   seen-URL filter entries live on one shard, so per-key politeness stays exact and a URL
//!   is deduplicated where its jobs are. (A queue's shard count is fixed, so rendezvous is
//!   what keeps a key's shard stable across every client and version.)
//! - **Claims** go round the shards from a rotating start, each shard asked for what is still
//!   missing; a shard that had nothing ready is skipped until its own wake-up time (at most
//!   [`IDLE_SKIP`]), so idle shards cost no round trip on most claims.
//! - **Fencing tokens** carry their shard: the token a client sees is `t * N + k` for token
//!   `t` of shard `k`, so a finish, a failure or a heartbeat goes straight to the job's
//!   shard. A queue of one shard has the tokens it always had.
//! - **Discovered links** for another shard go, in the atomic finish of their page, to the
//!   page's shard's `outbox` (so a finish refused as stale adds none, as on one shard); the
//!   client then forwards them to their shard (submitted with the generations they would
//!   have had there, and through that shard's seen-URL filter) and deletes them. An outbox
//!   left full by a crash is forwarded by the next reaper pass of any client; forwarding
//!   twice submits ids the shard has (nothing happens).
//! - **Results**: one log per shard; a cursor holds a position in each (see
//!   [`super::cursor`]), and a page merges the shards' logs in stream-id order.
//! - **Everything else** (stats, totals, workers, reaping, purging, listing) asks every
//!   shard and adds up; workers register and heartbeat on every shard (each shard's reaper
//!   gives back the jobs of its dead workers); operations by job id ask the shards in turn.

mod health;
mod merge;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::{join_all, try_join_all};

use super::error::{QueueError, QueueResult};
use super::job::{Ack, FailOutcome, Finished, Job, NewJob};
use super::options::QueueOptions;
use super::politeness::{self, Feedback};
use super::redis::{Layout, RedisQueue, slot_of_tag};
use crate::config::ConfigError;
use crate::partition::hashing::rendezvous;

/// The longest a claim skips a shard that had nothing ready.
pub const IDLE_SKIP: Duration = Duration::from_millis(100);

/// Outbox entries read at a time.
const FORWARD_PAGE: usize = 500;
/// The reaper forwards outbox entries older than this (younger ones are their own client's
/// to forward: forwarding them too would only submit them twice).
pub const OUTBOX_GRACE: Duration = Duration::from_secs(10);

/// Jobs on their way from one shard's outbox to another shard: the outbox entries and the
/// jobs, in step.
type Outgoing = (Vec<String>, Vec<NewJob>);

/// A queue over several Redis shards.
pub struct ShardedQueue {
    shards: Vec<RedisQueue>,
    /// Equal weights, one per shard (rendezvous hashing's input).
    weights: Vec<f64>,
    /// Where the next claim starts.
    next: AtomicUsize,
    /// What this client saw of each shard.
    health: health::Health,
}

/// Opens the queue whose first shard `first` is connected (none of the queue's functions
/// called yet: a plain client's calls are refused on a sharded queue): alone when it has one
/// shard, else with the others of its stored layout (created here when `options.shards`
/// asks for several and the queue has no layout yet).
pub async fn open(first: RedisQueue) -> QueueResult<super::JobQueue> {
    let wanted = first.options().shards;
    let refuse = |have: usize, n: u32| -> QueueError {
        ConfigError::invalid(
            "shards",
            n,
            format!(
                "{have}, the number of shards this queue was created with (a queue is not \
                 resharded in place: drain it into a new queue with the shards you want)"
            ),
        )
        .into()
    };
    let mode = first.options().politeness_key.as_str();
    let (layout, first) = match (first.stored_shards().await?, wanted) {
        (Some(layout), None) => (layout, first),
        (Some(layout), Some(n)) if n as usize == layout.bases.len() => (layout, first),
        (Some(layout), Some(n)) => return Err(refuse(layout.bases.len(), n)),
        (None, None | Some(1)) => return Ok(super::JobQueue::Redis(first.opened().await?)),
        (None, Some(n)) => {
            let first = first.opened().await?;
            let masters = first.slot_masters().await?;
            let bases = plan(
                first.base(),
                &first.options().name,
                n as usize,
                masters.as_deref(),
            );
            let layout = Layout {
                bases,
                politeness_key: mode.to_owned(),
            };
            // A queue used before keeps one shard (see `lua/layout.lua`: checked in the step
            // that stores the layout; a plain client's call after it is refused).
            let stored = first.store_shards(&layout).await?;
            (stored, first)
        }
    };
    if layout.politeness_key != mode {
        return Err(ConfigError::invalid(
            "politeness_key",
            mode,
            format!(
                "{}, the mode this sharded queue routes jobs by (every client must make the \
                 same keys)",
                layout.politeness_key
            ),
        )
        .into());
    }
    let bases = layout.bases;
    let n = bases.len();
    let mut options = first.options().clone();
    if let Some(dedup) = &mut options.dedup {
        // The filter's capacity is the queue's: each shard holds its share of the URLs.
        dedup.capacity = dedup.capacity.div_ceil(n as u64).max(1_000);
    }
    let mut shards = Vec::with_capacity(n);
    for base in bases {
        shards.push(first.sibling(base, options.clone()).await?);
    }
    Ok(super::JobQueue::Sharded(ShardedQueue {
        weights: vec![1.0; n],
        next: AtomicUsize::new(0),
        health: health::Health::new(n, options.operation_timeout),
        shards,
    }))
}

/// The key bases of `n` shards of the queue at `first` (named `name`): on a cluster whose
/// slots' masters are `masters`, each shard after the first takes the first salt whose slot
/// is on a master holding the fewest shards so far.
fn plan(first: &str, name: &str, n: usize, masters: Option<&[(u16, u16, String)]>) -> Vec<String> {
    let prefix = first.split_once('{').map_or(first, |(prefix, _)| prefix);
    let master_of = |tag: &str| {
        let slot = slot_of_tag(tag);
        masters?
            .iter()
            .find(|(low, high, _)| (*low..=*high).contains(&slot))
            .map(|(_, _, id)| id.clone())
    };
    let mut load: std::collections::HashMap<String, usize> = masters
        .unwrap_or_default()
        .iter()
        .map(|(_, _, id)| (id.clone(), 0))
        .collect();
    if let Some(owner) = master_of(name) {
        *load.entry(owner).or_default() += 1;
    }
    let mut bases = vec![first.to_owned()];
    for k in 1..n {
        let tag_of = |salt: u32| {
            if salt == 0 {
                format!("{name}/{k}")
            } else {
                format!("{name}/{k}.{salt}")
            }
        };
        let least = load.values().copied().min().unwrap_or(0);
        // A few hundred salts find a slot on any master with near certainty; past them the
        // first tag does (a cluster whose slots are not all served).
        let salt = (0..1_000)
            .find(|&salt| master_of(&tag_of(salt)).is_none_or(|m| load.get(&m) == Some(&least)))
            .unwrap_or(0);
        let tag = tag_of(salt);
        if let Some(owner) = master_of(&tag) {
            *load.entry(owner).or_default() += 1;
        }
        bases.push(format!("{prefix}{{{tag}}}"));
    }
    bases
}

impl ShardedQueue {
    fn n(&self) -> u64 {
        self.shards.len() as u64
    }

    /// The shard of a politeness key.
    fn shard_of_key(&self, key: &str) -> usize {
        rendezvous(key, &self.weights)
    }

    /// The shard of a job.
    fn shard_of(&self, job: &NewJob) -> usize {
        self.shard_of_key(&politeness::key_of(
            &job.target_url,
            job.politeness_key.as_deref(),
            self.options().politeness_key,
        ))
    }

    /// The token clients see for token `token` of shard `shard`.
    fn token_out(&self, shard: usize, token: u64) -> u64 {
        token.saturating_mul(self.n()).saturating_add(shard as u64)
    }

    /// The shard and the shard's token of a token clients hold.
    fn token_in(&self, token: u64) -> (usize, u64) {
        (
            usize::try_from(token % self.n()).unwrap_or(0),
            token / self.n(),
        )
    }

    fn job_out(&self, shard: usize, mut job: Job) -> Job {
        job.token = self.token_out(shard, job.token);
        job
    }

    fn ack_out(&self, shard: usize, ack: Ack) -> Ack {
        match ack {
            Ack::Stale { status, token } => Ack::Stale {
                status,
                token: self.token_out(shard, token),
            },
            other => other,
        }
    }

    /// The backend URL, without any password.
    pub fn location(&self) -> &str {
        self.shards[0].location()
    }

    /// The queue's settings.
    pub fn options(&self) -> &QueueOptions {
        self.shards[0].options()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Submits validated jobs, each to its key's shard (the shards at once).
    pub async fn submit(&self, jobs: Vec<NewJob>) -> QueueResult<Vec<(String, bool)>> {
        let routed = jobs.into_iter().map(|job| (self.shard_of(&job), job));
        self.per_shard("submit", routed, |shard, jobs| {
            self.shards[shard].submit(jobs)
        })
        .await
    }

    /// Sends each shard its share of `items` (`(shard, item)`, the shards at once) and
    /// returns the answers in the order of `items`.
    async fn per_shard<T, R, F>(
        &self,
        operation: &'static str,
        items: impl IntoIterator<Item = (usize, T)>,
        call: impl Fn(usize, Vec<T>) -> F,
    ) -> QueueResult<Vec<R>>
    where
        F: std::future::Future<Output = QueueResult<Vec<R>>>,
    {
        let n = self.shards.len();
        let mut indices: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut groups: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
        let mut total = 0;
        for (index, (shard, item)) in items.into_iter().enumerate() {
            indices[shard].push(index);
            groups[shard].push(item);
            total += 1;
        }
        let calls = groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.is_empty())
            .map(|(shard, group)| {
                let answers = call(shard, group);
                async move {
                    let answers = answers
                        .await
                        .inspect_err(|error| self.health.failed(shard, error))?;
                    Ok::<_, QueueError>((shard, answers))
                }
            });
        let mut out: Vec<Option<R>> = (0..total).map(|_| None).collect();
        for (shard, answers) in try_join_all(calls).await? {
            for (&index, answer) in indices[shard].iter().zip(answers) {
                out[index] = Some(answer);
            }
        }
        out.into_iter()
            .map(|answer| {
                answer.ok_or_else(|| QueueError::Backend {
                    url: self.location().to_owned(),
                    operation,
                    detail: "a shard answered fewer items than it was sent".to_owned(),
                })
            })
            .collect()
    }

    /// Claims up to `limit` jobs round the shards (see the module's doc).
    pub async fn claim(
        &self,
        worker: String,
        limit: usize,
        start: bool,
    ) -> QueueResult<(Vec<QueueResult<Job>>, Option<Duration>)> {
        let n = self.shards.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut claimed = Vec::new();
        let mut wake: Option<Duration> = None;
        let mut earliest = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));
        let mut asked = false;
        let mut failure: Option<QueueError> = None;
        for step in 0..n {
            let shard = (first + step) % n;
            if claimed.len() >= limit {
                break;
            }
            // The last shard of a round is asked anyway when no shard was: a claim never
            // answers nothing without asking.
            if let Some(skip) = self.health.skip(shard)
                && (asked || step + 1 < n)
            {
                earliest(skip);
                continue;
            }
            asked = true;
            let want = limit - claimed.len();
            let (jobs, ready_in) = match self.shards[shard].claim(worker.clone(), want, start).await
            {
                Ok(answer) => answer,
                Err(error) => {
                    // The other shards' work goes on: the jobs claimed so far are returned
                    // (they are leased to the worker), and the shard is left alone a while.
                    tracing::warn!(%error, shard, "a shard's claim failed");
                    self.health.failed(shard, &error);
                    // An unreachable shard is what is reported (the worker backs off and
                    // its next heartbeat gives back what a lost answer leased).
                    if failure
                        .as_ref()
                        .is_none_or(|f| !matches!(f, QueueError::Unavailable { .. }))
                    {
                        failure = Some(error);
                    }
                    continue;
                }
            };
            if jobs.len() < want {
                self.health.idle(
                    shard,
                    Some(ready_in.map_or(IDLE_SKIP, |d| d.min(IDLE_SKIP))),
                );
                if let Some(ready_in) = ready_in {
                    earliest(ready_in);
                }
            } else {
                self.health.idle(shard, None);
            }
            claimed.extend(
                jobs.into_iter()
                    .map(|job| job.map(|job| self.job_out(shard, job))),
            );
        }
        if claimed.is_empty()
            && let Some(error) = failure
        {
            return Err(error);
        }
        let short = claimed.len() < limit;
        Ok((claimed, if short { wake } else { None }))
    }

    /// A fenced operation on the job's shard.
    async fn fenced<T, F>(&self, token: u64, op: impl FnOnce(usize, u64) -> F) -> QueueResult<T>
    where
        F: std::future::Future<Output = QueueResult<T>>,
    {
        let (shard, token) = self.token_in(token);
        op(shard, token)
            .await
            .inspect_err(|error| self.health.failed(shard, error))
    }

    /// Marks a claimed job as running (fenced by `token`).
    pub async fn mark_running(&self, id: String, token: u64) -> QueueResult<Ack> {
        self.fenced(token, |shard, token| async move {
            let ack = self.shards[shard].mark_running(id, token).await?;
            Ok(self.ack_out(shard, ack))
        })
        .await
    }

    /// Completes a job (fenced by `token`).
    pub async fn complete(
        &self,
        id: String,
        token: u64,
        result: Option<String>,
    ) -> QueueResult<Ack> {
        self.fenced(token, |shard, token| async move {
            let ack = self.shards[shard].complete(id, token, result).await?;
            Ok(self.ack_out(shard, ack))
        })
        .await
    }

    /// Records a failed attempt (fenced by `token`).
    pub async fn fail(
        &self,
        id: String,
        token: u64,
        error: String,
        retryable: bool,
        feedback: Option<Feedback>,
    ) -> QueueResult<(Ack, Option<FailOutcome>)> {
        self.fenced(token, |shard, token| async move {
            let (ack, outcome) = self.shards[shard]
                .fail(id, token, error, retryable, feedback)
                .await?;
            Ok((self.ack_out(shard, ack), outcome))
        })
        .await
    }

    /// Gives a claimed job back (fenced by `token`).
    pub async fn release(&self, id: String, token: u64) -> QueueResult<Ack> {
        self.fenced(token, |shard, token| async move {
            let ack = self.shards[shard].release(id, token).await?;
            Ok(self.ack_out(shard, ack))
        })
        .await
    }

    /// Completes many jobs, each on its shard (the shards at once).
    pub async fn complete_many(
        &self,
        completions: Vec<(String, u64, Option<String>)>,
    ) -> QueueResult<Vec<Ack>> {
        let routed = completions.into_iter().map(|(id, token, result)| {
            let (shard, token) = self.token_in(token);
            (shard, (id, token, result))
        });
        self.per_shard("complete_many", routed, |shard, jobs| async move {
            let acks = self.shards[shard].complete_many(jobs).await?;
            Ok(self.acks_out(shard, acks))
        })
        .await
    }

    /// Finishes jobs on their shards; the jobs each discovered for other shards go to its
    /// shard's outbox in the same step, and are forwarded from there (see the module's doc).
    pub async fn finish_many(&self, finished: Vec<Finished>) -> QueueResult<Vec<Ack>> {
        let mut routed = Vec::with_capacity(finished.len());
        for mut job in finished {
            let (shard, token) = self.token_in(job.token);
            job.token = token;
            let (own, other): (Vec<NewJob>, Vec<NewJob>) = std::mem::take(&mut job.discovered)
                .into_iter()
                .partition(|child| self.shard_of(child) == shard);
            job.discovered = own;
            let elsewhere: Vec<(usize, NewJob)> = other
                .into_iter()
                .map(|child| (self.shard_of(&child), child))
                .collect();
            routed.push((shard, (job, elsewhere)));
        }
        let answers = self
            .per_shard("finish", routed, |shard, jobs| async move {
                let answers = self.shards[shard].finish_routed(&jobs).await?;
                Ok(jobs
                    .into_iter()
                    .zip(answers)
                    .map(|((_, elsewhere), (ack, outbox))| {
                        (shard, self.ack_out(shard, ack), elsewhere, outbox)
                    })
                    .collect())
            })
            .await?;
        // Each accepted page's jobs for other shards, forwarded now by the client that has
        // them (their outbox entries deleted once they are submitted); what fails here is
        // left to the reaper.
        let mut groups: BTreeMap<(usize, usize, String), Outgoing> = BTreeMap::new();
        let mut acks = Vec::with_capacity(answers.len());
        for (from, ack, elsewhere, outbox) in answers {
            acks.push(ack);
            let Some((root, entries)) = outbox else {
                continue;
            };
            for ((to, job), entry) in elsewhere.into_iter().zip(entries) {
                let group = groups.entry((from, to, root.clone())).or_default();
                group.0.push(entry);
                group.1.push(job);
            }
        }
        let forwards = groups
            .into_iter()
            .filter(|((_, to, _), _)| !self.health.down(*to))
            .map(|((from, to, root), (entries, jobs))| async move {
                let forwarded = async {
                    self.shards[to].submit_forwarded(&jobs, &root).await?;
                    self.shards[from].outbox_done(&entries).await
                };
                if let Err(error) = forwarded.await {
                    self.health.failed(to, &error);
                    tracing::warn!(%error, from, to, "discovered jobs left in the outbox for the reaper");
                }
            });
        join_all(forwards).await;
        Ok(acks)
    }

    /// Forwards up to `pages` pages of shard `shard`'s outbox — the entries older than
    /// [`OUTBOX_GRACE`], which their own client has had time to forward — to the shards their
    /// jobs belong to; returns the jobs forwarded.
    pub(crate) async fn forward(&self, shard: usize, pages: usize) -> QueueResult<u64> {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(OUTBOX_GRACE);
        let until = u64::try_from(until.as_millis()).unwrap_or(0);
        let mut forwarded = 0;
        let mut after: Option<String> = None;
        let mut failure = None;
        for _ in 0..pages {
            let (jobs, unreadable, last) = self.shards[shard]
                .outbox(after.clone(), until, FORWARD_PAGE)
                .await?;
            let Some(last) = last else { break };
            let mut groups: BTreeMap<(usize, String), Vec<(String, NewJob)>> = BTreeMap::new();
            let mut done = unreadable;
            for forward in jobs {
                if forward.to >= self.shards.len() {
                    tracing::warn!(
                        entry = forward.entry,
                        to = forward.to,
                        "dropped an outbox entry for a shard this queue does not have"
                    );
                    done.push(forward.entry);
                } else {
                    groups
                        .entry((forward.to, forward.root))
                        .or_default()
                        .push((forward.entry, forward.job));
                }
            }
            // A shard that does not answer keeps its entries (forwarded later); the others'
            // go on, at the same time.
            let submits = groups
                .into_iter()
                .filter(|((to, _), _)| !self.health.down(*to))
                .map(|((to, root), entries)| async move {
                    let (ids, jobs): (Vec<String>, Vec<NewJob>) = entries.into_iter().unzip();
                    let outcome = self.shards[to].submit_forwarded(&jobs, &root).await;
                    (to, ids, outcome)
                });
            for (to, ids, outcome) in join_all(submits).await {
                match outcome {
                    Ok(()) => {
                        forwarded += ids.len() as u64;
                        done.extend(ids);
                    }
                    Err(error) => {
                        tracing::warn!(%error, from = shard, to, "could not forward discovered jobs yet");
                        self.health.failed(to, &error);
                        failure.get_or_insert(error);
                    }
                }
            }
            self.shards[shard].outbox_done(&done).await?;
            after = Some(last);
        }
        match failure {
            Some(error) if forwarded == 0 => Err(error),
            _ => Ok(forwarded),
        }
    }

    fn acks_out(&self, shard: usize, acks: Vec<Ack>) -> Vec<Ack> {
        acks.into_iter()
            .map(|ack| self.ack_out(shard, ack))
            .collect()
    }

    /// An operation by job id: the shards in turn until one knows the job.
    async fn by_id<F>(&self, op: impl Fn(usize) -> F) -> QueueResult<Ack>
    where
        F: std::future::Future<Output = QueueResult<Ack>>,
    {
        for shard in 0..self.shards.len() {
            match op(shard).await? {
                Ack::NotFound => {}
                ack => return Ok(self.ack_out(shard, ack)),
            }
        }
        Ok(Ack::NotFound)
    }

    /// Cancels an unfinished job.
    pub async fn cancel(&self, id: String) -> QueueResult<Ack> {
        self.by_id(|shard| self.shards[shard].cancel(id.clone()))
            .await
    }

    /// Puts a failed or cancelled job back to pending, retries reset.
    pub async fn retry(&self, id: String) -> QueueResult<Ack> {
        self.by_id(|shard| self.shards[shard].retry(id.clone()))
            .await
    }

    /// Moves a job whose record cannot be read to `failed` with `reason`.
    pub async fn quarantine(&self, id: String, reason: String) -> QueueResult<Ack> {
        self.by_id(|shard| self.shards[shard].quarantine(id.clone(), reason.clone()))
            .await
    }

    /// One job, or `None` (the shards at once).
    pub async fn get(&self, id: String) -> QueueResult<Option<Job>> {
        let found = try_join_all(self.shards.iter().map(|queue| queue.get(id.clone()))).await?;
        Ok(found
            .into_iter()
            .enumerate()
            .find_map(|(shard, job)| job.map(|job| self.job_out(shard, job))))
    }

    /// The shard of a politeness key's records.
    fn keyed(&self, key: &str) -> &RedisQueue {
        &self.shards[self.shard_of_key(key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_spreads_its_shards_over_the_masters() {
        let masters = vec![
            (0, 5460, "a".to_owned()),
            (5461, 10922, "b".to_owned()),
            (10923, 16383, "c".to_owned()),
        ];
        let bases = plan("p:{q}", "q", 6, Some(&masters));
        assert_eq!(bases[0], "p:{q}");
        let mut load = std::collections::HashMap::new();
        for base in &bases {
            let tag = &base[base.find('{').unwrap() + 1..base.len() - 1];
            let slot = slot_of_tag(tag);
            let owner = &masters
                .iter()
                .find(|(l, h, _)| (*l..=*h).contains(&slot))
                .unwrap()
                .2;
            *load.entry(owner.clone()).or_insert(0) += 1;
        }
        assert_eq!(load.len(), 3, "{bases:?}");
        assert!(load.values().all(|&n| n == 2), "{load:?}");
        // On one server the tags are plain.
        assert_eq!(plan("p:{q}", "q", 3, None), ["p:{q}", "p:{q/1}", "p:{q/2}"]);
    }
}
