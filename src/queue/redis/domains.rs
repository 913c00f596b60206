//! Politeness keys on Redis: listing, overrides, robots.txt delays and the queue's policy
//! (`domains.lua`; the scheduling itself is in `politeness.lua` and `claim.lua`).

use super::{DOMAINS, DOMAINS_READ, RedisQueue};
use crate::queue::error::QueueResult;
use crate::queue::politeness::{Change, DomainInfo, Policy, PolicyState};

/// A key as `domains.lua` describes it: 16 values as text.
type Row = Vec<String>;

fn info(row: &Row) -> DomainInfo {
    let int = |i: usize| -> i64 { row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let now = int(15);
    let positive = |v: i64| u64::try_from(v).unwrap_or(0);
    DomainInfo {
        key: row.first().cloned().unwrap_or_default(),
        waiting: positive(int(1)),
        inflight: positive(int(2)),
        delay_ms: positive(int(3)),
        concurrency: u32::try_from(int(4)).unwrap_or(0),
        ready_at: if int(5) > now { int(5) } else { 0 },
        throttled: positive(int(6)),
        errors: positive(int(7)),
        last_throttled: int(8),
        last_error: int(9),
        parked: int(10) == 1,
        delay_override_ms: u64::try_from(int(11)).ok(),
        concurrency_override: u32::try_from(int(12)).ok(),
        crawl_delay_ms: positive(int(13)),
        paused_until: if int(14) > now { int(14) } else { 0 },
        now,
    }
}

fn ms(value: Option<std::time::Duration>) -> String {
    value.map_or_else(String::new, |d| d.as_millis().to_string())
}

impl RedisQueue {
    /// Keys with a record, most recently changed first.
    pub async fn domains(&self, offset: usize, limit: usize) -> QueueResult<Vec<DomainInfo>> {
        let rows: Vec<Row> = self
            .run(
                "domains",
                &DOMAINS_READ,
                vec!["list".to_owned(), offset.to_string(), limit.to_string()],
            )
            .await?;
        Ok(rows.iter().map(info).collect())
    }

    /// One key, if the queue keeps a record of it.
    pub async fn domain(&self, key: String) -> QueueResult<Option<DomainInfo>> {
        let row: Row = self
            .run("domains", &DOMAINS_READ, vec!["get".to_owned(), key])
            .await?;
        Ok((!row.is_empty()).then(|| info(&row)))
    }

    /// Sets or clears a key's overrides (delay in ms).
    pub async fn set_domain(
        &self,
        key: String,
        delay_ms: Change<i64>,
        concurrency: Change<u32>,
    ) -> QueueResult<DomainInfo> {
        let row: Row = self
            .run(
                "set_domain",
                &DOMAINS,
                vec![
                    "set".to_owned(),
                    key,
                    delay_ms.encode(),
                    concurrency.encode(),
                ],
            )
            .await?;
        Ok(info(&row))
    }

    /// A robots.txt `Crawl-delay` for `key`, in force for `ttl_ms`.
    pub async fn set_crawl_delay(
        &self,
        key: String,
        delay_ms: i64,
        ttl_ms: i64,
    ) -> QueueResult<()> {
        let _: redis::Value = self
            .run(
                "set_crawl_delay",
                &DOMAINS,
                vec![
                    "robots".to_owned(),
                    key,
                    delay_ms.to_string(),
                    ttl_ms.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The shared robots.txt outcome for `origin`.
    pub async fn robots_get(&self, origin: String) -> QueueResult<Option<String>> {
        let mut command = redis::cmd("GET");
        command.arg(self.robots_key(&origin));
        let mut connection = self.connection.clone();
        self.query("robots", &command, &mut connection).await
    }

    /// Shares the outcome for `origin` for `ttl_ms`.
    pub async fn robots_put(&self, origin: String, value: String, ttl_ms: i64) -> QueueResult<()> {
        let mut command = redis::cmd("SET");
        command
            .arg(self.robots_key(&origin))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms.max(1));
        let mut connection = self.connection.clone();
        self.query("robots", &command, &mut connection).await
    }

    /// True when nobody has claimed fetching `origin`'s robots.txt within `ttl_ms`.
    ///
    /// The claim holds a value of this call's own: when `query` sends the `SET NX` again
    /// after a lost reply, the second one finds the key set, and the value says whether it
    /// was this call that set it.
    pub async fn robots_claim(&self, origin: String, ttl_ms: i64) -> QueueResult<bool> {
        let lock = format!("{}:lock", self.robots_key(&origin));
        let mine = uuid::Uuid::new_v4().simple().to_string();
        let mut command = redis::cmd("SET");
        command
            .arg(&lock)
            .arg(&mine)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1));
        let mut connection = self.connection.clone();
        let answer: Option<String> = self.query("robots", &command, &mut connection).await?;
        if answer.is_some() {
            return Ok(true);
        }
        let holder: Option<String> = self
            .query("robots", redis::cmd("GET").arg(&lock), &mut connection)
            .await?;
        Ok(holder.as_deref() == Some(mine.as_str()))
    }

    fn robots_key(&self, origin: &str) -> String {
        format!("{}:robots:{origin}", self.base)
    }

    /// Writes the values of `policy` that are set; the policy after it.
    pub async fn set_policy(&self, policy: Policy) -> QueueResult<PolicyState> {
        let values: Vec<Option<String>> = self
            .run(
                "policy",
                &DOMAINS,
                vec![
                    "policy".to_owned(),
                    ms(policy.delay),
                    policy
                        .concurrency
                        .map_or_else(String::new, |c| c.to_string()),
                    policy
                        .autothrottle
                        .map_or_else(String::new, |t| t.to_string()),
                    ms(policy.max_delay),
                    ms(policy.max_pause),
                ],
            )
            .await?;
        Ok(state(&values))
    }
}

/// The stored policy, defaults for what is not stored.
pub(crate) fn state(values: &[Option<String>]) -> PolicyState {
    let defaults = PolicyState::default();
    let get = |i: usize| values.get(i).cloned().flatten();
    PolicyState {
        delay_ms: get(0)
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.delay_ms),
        concurrency: get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.concurrency),
        autothrottle: get(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.autothrottle),
        max_delay_ms: get(3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.max_delay_ms),
        max_pause_ms: get(4)
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.max_pause_ms),
    }
}
