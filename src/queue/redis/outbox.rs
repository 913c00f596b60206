//! The outbox of a shard of a sharded queue ([`crate::queue::sharded`]): the jobs its pages
//! discovered for other shards, appended by the finish that accepted the page (so a worker
//! whose lease was taken over adds none) and forwarded by the client to their shards.
//!
//! Key: `outbox` (stream; per entry `to` — the shard —, `root` — the root generation of the
//! page's crawl —, and the job's 5 submit fields `id spec retries rank key`). An entry is
//! deleted once its job was submitted to its shard; forwarding twice (two clients, or a crash
//! between the submit and the delete) submits an id the shard has: nothing happens.

use super::{RedisQueue, SpecIn};
use crate::queue::error::{QueueError, QueueResult};
use crate::queue::job::{NewJob, PRIORITY_LIMIT};

/// A job in an outbox, on its way to its shard.
#[derive(Debug)]
pub struct Forward {
    /// The outbox entry.
    pub entry: String,
    /// The shard it goes to.
    pub to: usize,
    /// The root generation of the crawl it was discovered in.
    pub root: String,
    /// The job.
    pub job: NewJob,
}

impl RedisQueue {
    /// Up to `limit` jobs of the outbox after entry `after` (from the start: `None`) and
    /// added by `until_ms` (ms since the epoch, the server's clock), oldest first; the entries that could not be read (edited by hand, say: to be deleted with a
    /// warning, never retried for ever); and the last entry read (`None`: the outbox has
    /// nothing more).
    pub(crate) async fn outbox(
        &self,
        after: Option<String>,
        until_ms: u64,
        limit: usize,
    ) -> QueueResult<(Vec<Forward>, Vec<String>, Option<String>)> {
        let mut command = redis::cmd("XRANGE");
        command
            .arg(format!("{}:outbox", self.base))
            .arg(after.map_or_else(|| "-".to_owned(), |id| format!("({id}")))
            .arg(until_ms)
            .arg("COUNT")
            .arg(limit.max(1));
        let mut connection = self.connection.clone();
        let reply: redis::streams::StreamRangeReply =
            self.query("outbox", &command, &mut connection).await?;
        let last = reply.ids.last().map(|entry| entry.id.clone());
        let mut jobs = Vec::with_capacity(reply.ids.len());
        let mut unreadable = Vec::new();
        for entry in reply.ids {
            match forward(&entry) {
                Ok(job) => jobs.push(job),
                Err(reason) => {
                    tracing::warn!(
                        entry = entry.id,
                        reason,
                        "dropped an unreadable outbox entry"
                    );
                    unreadable.push(entry.id);
                }
            }
        }
        Ok((jobs, unreadable, last))
    }

    /// Deletes outbox entries (forwarded, or unreadable).
    pub(crate) async fn outbox_done(&self, entries: &[String]) -> QueueResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut command = redis::cmd("XDEL");
        command.arg(format!("{}:outbox", self.base)).arg(entries);
        let mut connection = self.connection.clone();
        let _: u64 = self.query("outbox", &command, &mut connection).await?;
        Ok(())
    }

    /// Submits jobs another shard's page discovered in the crawl of root generation `root`
    /// (their generations derive from it, as for the page's own shard's).
    pub(crate) async fn submit_forwarded(&self, jobs: &[NewJob], root: &str) -> QueueResult<()> {
        self.submit_rooted(jobs, root, true).await.map(drop)
    }
}

fn forward(entry: &redis::streams::StreamId) -> Result<Forward, String> {
    let field = |name: &str| {
        entry
            .get::<String>(name)
            .ok_or_else(|| format!("field {name} is missing"))
    };
    let to: usize = field("to")?.parse().map_err(|e| format!("field to: {e}"))?;
    let spec: SpecIn =
        serde_json::from_str(&field("spec")?).map_err(|e| format!("field spec: {e}"))?;
    let rank: i64 = field("rank")?
        .parse()
        .map_err(|e| format!("field rank: {e}"))?;
    let key = field("key")?;
    let job = NewJob {
        id: Some(field("id")?),
        name: spec.name,
        template_id: spec.template_id,
        target_url: spec.target_url,
        // Jobs for other shards keep their config in their spec (see finish_routed).
        config: spec
            .config
            .ok_or("field spec has no config")?
            .get()
            .to_owned(),
        priority: PRIORITY_LIMIT - rank,
        max_retries: field("retries")?
            .parse()
            .map_err(|e| format!("field retries: {e}"))?,
        crawl_id: spec.crawl_id,
        depth: spec.depth,
        parent_id: spec.parent_id,
        politeness_key: (!key.is_empty()).then_some(key),
        revisit: None,
    }
    // Its revisit interval and key override again from its config, as when it was found
    // (its size was checked then, by the limit of the client that found it).
    .validated(usize::MAX)
    .map_err(|e: QueueError| e.to_string())?;
    Ok(Forward {
        entry: entry.id.clone(),
        to,
        root: field("root")?,
        job,
    })
}
