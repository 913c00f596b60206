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
//!   operation timeout has passed (`QueueError::Unavailable`: the worker waits and retries).
//!
//! Queue calls travel on a connection of their own that never sends a request twice
//! (`retries(0)`): redis-rs re-sends a request whose connection dropped before the answer, and
//! a call the server had run would then run twice. Only refusals (nothing ran) are sent
//! again, by [`call`]. Plain commands (one key each: reads, and writes that may be repeated)
//! use a connection that follows redirects and retries.
//!
//! The function library is loaded on the master of the queue's slot (`FUNCTION LOAD
//! REPLACE`: the name carries the hash of the code, so replacing it changes nothing); a
//! master that got the slot later answers "function not found", and the library is loaded
//! there. Replicas get it from their master. Cluster mode needs Redis >= 7 (functions).

use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::Call;
use super::scripts::{self, LIBRARY};
use crate::config::ConfigError;

/// The URL schemes of a cluster, and the scheme of each seed node.
const SCHEMES: [(&str, &str); 4] = [
    ("redis+cluster", "redis"),
    ("rediss+cluster", "rediss"),
    ("valkey+cluster", "redis"),
    ("valkeys+cluster", "rediss"),
];

/// The most times one call loads the function library (see [`call`]).
const MAX_LOADS: u32 = 4;

/// The longest pause between two tries of a call while the slot settles.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// The seed nodes of a cluster URL (`redis+cluster://[user:password@]host:port[,host:port...]
/// [/0][?query][#insecure]`), as single-node URLs carrying the credentials, the query and
/// the fragment; `None` for a URL of one server. A cluster has database 0 only.
pub(super) fn seeds(url: &str) -> Option<Result<Vec<String>, ConfigError>> {
    let (scheme, rest) = url.split_once("://")?;
    let (_, node_scheme) = SCHEMES
        .iter()
        .find(|(cluster, _)| scheme.eq_ignore_ascii_case(cluster))?;
    let invalid = |expected: &str| {
        Some(Err(ConfigError::invalid(
            "queue URL",
            super::redact(url),
            expected,
        )))
    };
    // The credentials end at the last `@` (a password may hold `#`, `/` or `?`).
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, format!("#{fragment}")),
        None => (rest, String::new()),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    let (hosts, db) = rest.split_once('/').unwrap_or((rest, ""));
    if !matches!(db, "" | "0") {
        return invalid(
            "database 0 (a Redis Cluster has no other): redis+cluster://host:port[,host:port...]",
        );
    }
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{node_scheme}://{credentials}{host}{query}{fragment}"))
        .collect();
    if seeds.is_empty() {
        return invalid(
            "one or more nodes after redis+cluster://, e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        );
    }
    Some(Ok(seeds))
}

/// Connects to the cluster through `seeds`: a connection that sends a request at most
/// `retries` more times (after a redirect, a refusal, or a connection that dropped).
pub(super) async fn connect(
    seeds: &[String],
    timeout: Duration,
    retries: u32,
) -> redis::RedisResult<ClusterConnection> {
    let client = redis::cluster::ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(retries)
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

/// A queue call on the cluster, sent to the master of the queue's slot until the slot is
/// settled there or `deadline` has passed. `connection` must not retry by itself (see the
/// module's documentation).
pub(super) async fn call<T: redis::FromRedisValue>(
    connection: &mut ClusterConnection,
    call: &Call<'_>,
    deadline: Instant,
) -> redis::RedisResult<T> {
    let fcall = call.keyless_fcall();
    let base = call.base;
    let guard = format!("{base}:guard");
    let route = queue_node(base);
    let mut pause = Duration::from_millis(5);
    let mut loads = 0;
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
        let missing = scripts::function_missing(&error);
        if missing && loads == 0 {
            // Nothing ran: the master of the slot lost the library (or got the slot later).
            load(connection, base).await?;
            loads += 1;
            continue;
        }
        // Still missing after a load: the call went to a node that is not the slot's master
        // (a keyless call has no key to be redirected by: the client, short of a connection
        // to that master, sent it to another node). Like a slot that moved: the slot map is
        // refreshed and the call sent again, the library loaded again at most a few times.
        if missing && loads < MAX_LOADS {
            // Without REPLACE: a node that has the library keeps it (no recompiling, no
            // copy to its replicas and its append-only file).
            let mut command = redis::cmd("FUNCTION");
            command.arg("LOAD").arg(LIBRARY.code());
            let loaded = connection
                .route_command(command, route.clone())
                .await
                .and_then(redis::Value::extract_error);
            if let Err(error) = loaded
                && !scripts::already_loaded(&error)
            {
                return Err(error);
            }
            loads += 1;
        } else if !missing && !slot_unsettled(&error) {
            return Err(error);
        }
        // A MOVED answer to a keyed command updates the slot map the next call is routed by
        // (during a migration the answer is an ASK, which this connection does not follow).
        let _: redis::RedisResult<i64> = redis::cmd("EXISTS")
            .arg(&guard)
            .query_async(connection)
            .await;
        if Instant::now() + pause >= deadline {
            return Err(error);
        }
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

/// Loads the queue's function library on the master of the slot of the queue at `base`.
pub(super) async fn load(connection: &mut ClusterConnection, base: &str) -> redis::RedisResult<()> {
    let mut command = redis::cmd("FUNCTION");
    command.arg("LOAD").arg("REPLACE").arg(LIBRARY.code());
    connection
        .route_command(command, queue_node(base))
        .await
        .and_then(redis::Value::extract_error)?;
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
            seeds("rediss+cluster://u:p@s#s@a:7000, [::1]:7001/0?protocol=resp3#insecure"),
            Some(Ok(vec![
                "rediss://u:p@s#s@a:7000?protocol=resp3#insecure".to_owned(),
                "rediss://u:p@s#s@[::1]:7001?protocol=resp3#insecure".to_owned()
            ]))
        );
        let refused = seeds("redis+cluster://:s3cret@/0").unwrap().unwrap_err();
        assert!(refused.contains("one or more nodes"), "{refused}");
        assert!(!refused.contains("s3cret"), "{refused}");
        let refused = seeds("redis+cluster://:s3cret@a:7000/2")
            .unwrap()
            .unwrap_err();
        assert!(refused.contains("database 0"), "{refused}");
        assert!(!refused.contains("s3cret"), "{refused}");
    }
}
