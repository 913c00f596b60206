//! What a sharded queue ([`crate::queue::sharded`]) needs of Redis: the stored layout (the
//! key bases of its shards), a queue at another key base on the same connection, and on a
//! cluster the master of every slot (to spread the shards over the masters).
//!
//! Key: `shards` of the first shard (`<prefix>:{<name>}:shards`, JSON: the key bases of
//! every shard, the first one included, and the politeness-key mode jobs are routed by),
//! written once, when the queue is created with several shards, and never changed.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::scripts::LAYOUT;
use super::{Connection, RedisQueue};
use crate::config::ConfigError;
use crate::queue::error::QueueResult;
use crate::queue::options::QueueOptions;

/// The slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The slot of a key whose hash tag is `tag` (CRC16/XMODEM, as Redis computes it).
pub fn slot_of_tag(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

/// A sharded queue's layout, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// The key base of each shard, the first shard's first.
    pub bases: Vec<String>,
    /// What politeness keys are made of (`domain`, `host`): jobs are routed by them, so
    /// every client must make them alike.
    pub politeness_key: String,
}

impl RedisQueue {
    /// The key base of this queue: `<prefix>:{<name>}` (or a shard's).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The layout stored by the queue's creator, or `None` for a queue of one shard.
    pub(crate) async fn stored_shards(&self) -> QueueResult<Option<Layout>> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("GET");
        command.arg(format!("{}:shards", self.base));
        let stored: Option<String> = self.query("connect", &command, &mut connection).await?;
        stored.map(|text| self.parse_layout(&text)).transpose()
    }

    /// Gives the queue `layout` in one step with the check that it was never used (see
    /// `lua/layout.lua`; a queue that was is refused with a `ConfigError` saying how).
    pub(crate) async fn store_shards(&self, layout: &Layout) -> QueueResult<Layout> {
        let text = serde_json::to_string(layout).unwrap_or_default();
        let stored: String = self.run("connect", &LAYOUT, vec![text]).await?;
        self.parse_layout(&stored)
    }

    fn parse_layout(&self, text: &str) -> QueueResult<Layout> {
        let prefix = format!("{}:{{", self.options.prefix);
        let layout: Layout = serde_json::from_str(text).map_err(|e| {
            ConfigError::invalid(
                "shard layout",
                format!("{}:shards", self.base),
                format!("a layout written by this version ({e})"),
            )
        })?;
        if layout.bases.first().map(String::as_str) != Some(self.base.as_str())
            || layout
                .bases
                .iter()
                .any(|b| !b.starts_with(&prefix) || !b.ends_with('}'))
        {
            return Err(ConfigError::invalid(
                "shard layout",
                format!("{}:shards", self.base),
                "key bases of this queue, its own first",
            )
            .into());
        }
        Ok(layout)
    }

    /// `command` (a read of the queue's keys); for a client of the queue as one shard, in
    /// the same round trip as a check that the queue has no shards (the Lua calls make it in
    /// `prelude.lua`): a reader that opened the queue before it had shards would see one
    /// shard's jobs or results as all of them.
    pub(super) async fn query_checked<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> QueueResult<T> {
        let mut connection = self.connection.clone();
        if self.call_base != self.base {
            return self.query(operation, command, &mut connection).await;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(format!("{}:shards", self.base))
            .add_command(command.clone());
        let (sharded, value): (i64, T) = self.query(operation, &pipe, &mut connection).await?;
        if sharded == 1 {
            return Err(ConfigError::invalid("queue", &self.redacted_url, super::RESHARDED).into());
        }
        Ok(value)
    }

    /// A queue at key base `base` on this queue's connection (a shard), opened like
    /// [`RedisQueue::connect`] opens one: functions loaded on its node, its seen-URL filter
    /// read, `options`' policy written.
    pub(crate) async fn sibling(&self, base: String, options: QueueOptions) -> QueueResult<Self> {
        let queue = Self {
            connection: self.connection.clone(),
            blocking: std::sync::Mutex::new(Vec::new()),
            client: self.client.clone(),
            options,
            call_base: format!("{base}!"),
            base,
            redacted_url: self.redacted_url.clone(),
            functions: std::sync::atomic::AtomicBool::new(false),
            seen: None,
        };
        queue.opened().await
    }

    /// On a cluster, the master of each range of slots, `(first, last, node id)`; `None` on a
    /// single server.
    pub(crate) async fn slot_masters(&self) -> QueueResult<Option<Vec<(u16, u16, String)>>> {
        let Connection::Cluster(commands, _) = &self.connection else {
            return Ok(None);
        };
        let mut command = redis::cmd("CLUSTER");
        command.arg("SLOTS");
        let mut connection = commands.clone();
        let call = connection.route_command(
            command,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        );
        let reply = self
            .answered("connect", self.options.operation_timeout, call)
            .await?;
        let redis::Value::Array(ranges) = reply else {
            return Ok(Some(Vec::new()));
        };
        let mut masters = Vec::with_capacity(ranges.len());
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let (Some(first), Some(last), Some(redis::Value::Array(node))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            let number = |value: &redis::Value| redis::from_redis_value_ref::<u16>(value).ok();
            let id = node
                .get(2)
                .and_then(|id| redis::from_redis_value_ref::<String>(id).ok());
            if let (Some(first), Some(last), Some(id)) = (number(first), number(last), id) {
                masters.push((first, last, id));
            }
        }
        Ok(Some(masters))
    }
}

#[cfg(test)]
mod tests {
    use super::slot_of_tag;

    #[test]
    fn slots_are_the_ones_redis_computes() {
        // `CLUSTER KEYSLOT` of these keys on Redis 7.0.
        assert_eq!(slot_of_tag("foo"), 12_182);
        assert_eq!(slot_of_tag("bar"), 5_061);
        assert_eq!(slot_of_tag("123456789"), 12_739);
    }
}
