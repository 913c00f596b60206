//! The queue on a Redis Cluster (`redis+cluster://host:port[,host:port...]`).
//!
//! Every key of a queue carries the queue's hash tag, so a queue lives in one slot, on one
//! master (its replica takes over on a failover). The queue's scripts read keys they cannot
//! declare beforehand (a claim reads the records of the jobs it picks), and Redis does not
//! undo a script that fails half way. While the slot is being migrated (`redis-cli --cluster
//! reshard`), keys already moved would fail such a script between two writes on the old
//! node, or read as missing on the new one. So on a cluster:
//!
//! - a queue call declares no keys: the keys its shared modules need travel as its first
//!   arguments (see `cluster_args` in `prelude.lua`), and the call is sent to the master of
//!   the queue's slot by the client's slot map. A call that declared a key would be
//!   redirected (`ASK`) to the importing node mid-migration and run there over half the keys;
//! - the call's first access is a key that never exists. A node refuses it ("non local key")
//!   while the slot is migrating away (the key could be on the other node) and once the slot
//!   has moved or the node became a replica, before the call has written anything;
//! - the client then sends a keyed `EXISTS` of that key, whose `MOVED` answer updates its slot
//!   map, waits a little and sends the call again, until the slot has settled or the
//!   operation timeout has passed ([`QueueError::Unavailable`]: the worker waits and retries).
//!
//! The function library is loaded on every master (`FUNCTION LOAD REPLACE`: the name carries
//! the hash of the code, so replacing it changes nothing); a master that got the slot later
//! answers "function not found", and the library is loaded again. Cluster mode needs
//! Redis >= 7 (functions).

use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::scripts::{self, LIBRARY, QueueScript};
use crate::config::ConfigError;

/// The URL schemes of a cluster, and the scheme of each seed node.
const SCHEMES: [(&str, &str); 4] = [
    ("redis+cluster", "redis"),
    ("rediss+cluster", "rediss"),
    ("valkey+cluster", "redis"),
    ("valkeys+cluster", "rediss"),
];

/// The longest pause between two tries of a call while the slot settles.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// The seed nodes of a cluster URL (`redis+cluster://[user:password@]host:port[,host:port...]
/// [#insecure]`), as single-node URLs; `None` for a URL of one server.
pub(super) fn seeds(url: &str) -> Option<Result<Vec<String>, ConfigError>> {
    let (scheme, rest) = url.split_once("://")?;
    let (_, node_scheme) = SCHEMES
        .iter()
        .find(|(cluster, _)| scheme.eq_ignore_ascii_case(cluster))?;
    let redacted = super::redact(url);
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, format!("#{fragment}")),
        None => (rest, String::new()),
    };
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.split(['/', '?']).next().unwrap_or_default();
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{node_scheme}://{credentials}{host}{fragment}"))
        .collect();
    if seeds.is_empty() {
        return Some(Err(ConfigError::invalid(
            "queue URL",
            redacted,
            "one or more nodes after redis+cluster://, e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        )));
    }
    Some(Ok(seeds))
}

/// Connects to the cluster through `seeds`.
pub(super) async fn connect(
    seeds: &[String],
    timeout: Duration,
) -> redis::RedisResult<ClusterConnection> {
    let client = redis::cluster::ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(2_000)
        .build()?;
    client.get_async_connection().await
}

/// The node refused a queue call because the queue's slot is not settled on it (migrating,
/// moved, or the node is a replica now), or the cluster is reconfiguring: nothing ran.
pub(super) fn slot_unsettled(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    text.contains("non local key")
        || error.code().is_some_and(|code| {
            [
                "MOVED",
                "ASK",
                "TRYAGAIN",
                "CLUSTERDOWN",
                "READONLY",
                "MASTERDOWN",
            ]
            .contains(&code)
        })
}

/// A queue call on the cluster: `script` with `keys` (the first is the queue's `counts`) and
/// the queue's `base` and `args`, sent to the master of the queue's slot until the slot is
/// settled there or `deadline` has passed.
pub(super) async fn call<T: redis::FromRedisValue>(
    connection: &mut ClusterConnection,
    script: &QueueScript,
    keys: &[String],
    base: &str,
    args: &[String],
    deadline: Instant,
) -> redis::RedisResult<T> {
    let mut fcall = redis::cmd("FCALL");
    fcall
        .arg(LIBRARY.function(script))
        .arg(0)
        .arg(keys.len())
        .arg(keys)
        .arg(base)
        .arg(args);
    let guard = format!("{base}:guard");
    let route = queue_node(base);
    let mut pause = Duration::from_millis(5);
    loop {
        // A routed command's error reply comes back as a value.
        let reply = connection
            .route_command(fcall.clone(), route.clone())
            .await
            .and_then(redis::Value::extract_error);
        let error = match reply {
            Ok(value) => return redis::from_redis_value(value).map_err(Into::into),
            Err(error) => error,
        };
        if scripts::function_missing(&error) {
            load(connection).await?;
            continue;
        }
        if !slot_unsettled(&error) || Instant::now() + pause >= deadline {
            return Err(error);
        }
        // A keyed command is redirected like any other: a MOVED answer updates the slot
        // map the next call is routed by (during a migration it is answered by either node).
        let _: redis::RedisResult<i64> = redis::cmd("EXISTS")
            .arg(&guard)
            .query_async(connection)
            .await;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The master of the slot of the queue whose keys start with `base`.
pub(super) fn queue_node(base: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        base,
        SlotAddr::Master,
    )))
}

/// Loads the queue's function library on every master.
pub(super) async fn load(connection: &mut ClusterConnection) -> redis::RedisResult<()> {
    let mut command = redis::cmd("FUNCTION");
    command.arg("LOAD").arg("REPLACE").arg(LIBRARY.code());
    let _: redis::Value = command.query_async(connection).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        let seeds = |url: &str| seeds(url).map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(seeds("redis://h:6379/0"), None);
        assert_eq!(seeds("sqlite:///q.db"), None);
        assert_eq!(
            seeds("redis+cluster://a:7000,b:7001"),
            Some(Ok(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ]))
        );
        assert_eq!(
            seeds("rediss+cluster://u:p@ss@a:7000, [::1]:7001/0#insecure"),
            Some(Ok(vec![
                "rediss://u:p@ss@a:7000#insecure".to_owned(),
                "rediss://u:p@ss@[::1]:7001#insecure".to_owned()
            ]))
        );
        let refused = seeds("redis+cluster://:s3cret@/0").unwrap().unwrap_err();
        assert!(refused.contains("one or more nodes"), "{refused}");
        assert!(!refused.contains("s3cret"), "{refused}");
    }
}
