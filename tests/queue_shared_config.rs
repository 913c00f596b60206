//! Discovered jobs keep their crawl's config once, by reference (`queue/shared_config.rs`),
//! on every backend (a real redis-server, a 3-shard queue on it, SQLite): the jobs a client
//! reads back have their configs byte for byte, the Redis job records do not hold copies, a
//! refused finish stores nothing another page could rely on, and a config gone from the
//! store is a typed error for the jobs naming it, not a panic or a wrong config.

mod common;

use common::redis_server::RedisServer;
use scraperv4::queue::{Ack, Finished, JobQueue, JobStatus, NewJob, QueueError, QueueOptions};

/// A config whose text a re-encoding would change (spacing, a number past 2^64, escapes).
const CRAWL: &str = r#"{ "headers": {"User-Agent": "caf\u00e9 bot/1.0", "X-Pad": "................................"},
  "big": 123456789012345678901234567890, "nested": [1, 2.50, {"k": null}] }"#;

fn page(id: &str, config: &str) -> NewJob {
    NewJob {
        id: Some(id.to_owned()),
        target_url: format!("http://127.0.0.1/{id}"),
        config: config.to_owned(),
        crawl_id: Some("crawl".to_owned()),
        ..NewJob::default()
    }
}

fn child(parent: &str, id: &str, config: &str) -> NewJob {
    NewJob {
        parent_id: Some(parent.to_owned()),
        depth: 1,
        // Many sites: on a sharded queue the links of one page go to every shard.
        target_url: format!("http://127.0.0.{}/{id}", 1 + id.len() % 7),
        ..page(id, config)
    }
}

async fn finish(queue: &JobQueue, job: &scraperv4::queue::Job, kids: Vec<NewJob>) -> Ack {
    let acks = queue
        .finish_many(vec![Finished {
            id: job.id.clone(),
            token: job.token,
            result: Some("{}".to_owned()),
            records: None,
            latency: None,
            discovered: kids,
        }])
        .await
        .unwrap();
    acks.into_iter().next().unwrap()
}

async fn check(queue: &JobQueue) {
    let other = CRAWL.replace("bot/1.0", "bot/2.0");
    queue.submit(vec![page("root", CRAWL)]).await.unwrap();
    let root = queue.claim("w", 1, true).await.unwrap().remove(0);
    assert_eq!(root.config, CRAWL);
    let mut kids: Vec<NewJob> = (0..30)
        .map(|i| child("root", &format!("k{i}"), CRAWL))
        .collect();
    kids.push(child("root", "other-1", &other));
    kids.push(child("root", "other-2", &other));
    kids.push(child("root", "small", r#"{"page": 2}"#));
    kids.push(child("root", "alone", &CRAWL.replace("X-Pad", "X-One")));
    assert_eq!(finish(queue, &root, kids.clone()).await, Ack::Accepted);
    // Every way of reading a job gives its config back, byte for byte.
    for kid in &kids {
        let got = queue.get(kid.id()).await.unwrap().expect("submitted");
        assert_eq!(got.config, kid.config, "get {}", kid.id());
    }
    let listed: Vec<_> = queue
        .list(JobStatus::Pending, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(listed.len(), kids.len());
    let mut claimed = Vec::new();
    while claimed.len() < kids.len() {
        let batch = queue.claim("w", 7, true).await.unwrap();
        assert!(!batch.is_empty(), "every child can be claimed");
        claimed.extend(batch);
    }
    for job in listed.iter().chain(&claimed) {
        let kid = kids.iter().find(|k| k.id() == job.id).unwrap();
        assert_eq!(job.config, kid.config, "{}", job.id);
        assert_eq!(job.parent_id.as_deref(), Some("root"));
    }
    // A stale finish (the lease was taken over) submits nothing and stores nothing; the
    // accepted finish of another page still shares its configs.
    let k0 = claimed.iter().find(|j| j.id == "k0").unwrap();
    // (A token of another claim of the same shard: a sharded queue's tokens name it.)
    let stale = scraperv4::queue::Job {
        token: k0.token + 3000,
        ..k0.clone()
    };
    let late: Vec<NewJob> = (0..3)
        .map(|i| child("k0", &format!("late{i}"), &other))
        .collect();
    let ack = finish(queue, &stale, late).await;
    assert!(matches!(ack, Ack::Stale { .. }), "{ack:?}");
    assert!(queue.get("late0").await.unwrap().is_none());
    let k1 = claimed.iter().find(|j| j.id == "k1").unwrap();
    let next: Vec<NewJob> = (0..3)
        .map(|i| child("k1", &format!("next{i}"), &other))
        .collect();
    assert_eq!(finish(queue, k1, next).await, Ack::Accepted);
    for i in 0..3 {
        let got = queue.get(&format!("next{i}")).await.unwrap().unwrap();
        assert_eq!(got.config, other);
    }
}

fn options(name: &str, shards: Option<u32>) -> QueueOptions {
    QueueOptions {
        name: name.to_owned(),
        shards,
        ..QueueOptions::default()
    }
}

/// A queue whose jobs keep their own configs (`shared_configs` off).
async fn unshared(url: &str, name: &str) -> JobQueue {
    let options = QueueOptions {
        shared_configs: false,
        ..options(name, None)
    };
    JobQueue::open(url, options).await.unwrap()
}

/// How many of the 30 links of `check`'s first page hold the crawl's config in their record.
fn copies_of(name: &str, connection: &mut redis::Connection) -> usize {
    (0..30)
        .filter(|i| {
            let spec: String = redis::cmd("HGET")
                .arg(format!("scraperv4:{{{name}}}:job:k{i}"))
                .arg("spec")
                .query(connection)
                .unwrap();
            spec.contains("X-Pad")
        })
        .count()
}

#[test]
fn discovered_jobs_share_their_config_on_redis() {
    let server = RedisServer::start(&[]);
    let runtime = scraperv4::runtime::handle();
    runtime.block_on(async {
        let redis = JobQueue::open(&server.url(), options("shared", None))
            .await
            .unwrap();
        check(&redis).await;
        // The Redis records: 29 of the 30 children of one config hold a reference, not
        // the text; the text is stored once.
        let client = redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_connection().unwrap();
        assert_eq!(copies_of("shared", &mut connection), 1, "one carrier");
        let stored: Vec<String> = redis::cmd("KEYS")
            .arg("scraperv4:{shared}:config:*")
            .query(&mut connection)
            .unwrap();
        assert_eq!(stored.len(), 2, "the two shared configs: {stored:?}");

        // A config gone from the store (keys deleted by hand): the jobs naming it are a
        // typed error; a page finished later stores it again for its own children.
        for key in &stored {
            let _: i64 = redis::cmd("DEL").arg(key).query(&mut connection).unwrap();
        }
        let error = redis.get("k5").await.unwrap_err();
        assert!(
            matches!(&error, QueueError::CorruptJob { detail, .. } if detail.contains("config")),
            "{error:?}"
        );
        redis.submit(vec![page("root2", CRAWL)]).await.unwrap();
        let mut root2 = None;
        while root2.is_none() {
            let batch = redis.claim("w", 50, true).await.unwrap();
            assert!(!batch.is_empty());
            root2 = batch.into_iter().find(|j| j.id == "root2");
        }
        let kids: Vec<NewJob> = (0..3)
            .map(|i| child("root2", &format!("r{i}"), CRAWL))
            .collect();
        assert_eq!(finish(&redis, &root2.unwrap(), kids).await, Ack::Accepted);
        assert_eq!(redis.get("r2").await.unwrap().unwrap().config, CRAWL);
        // A stored text that is not the carrier of the hash it is stored under (edited by
        // hand): refused, not served as the config.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("scraperv4:{shared}:config:*")
            .query(&mut connection)
            .unwrap();
        assert_eq!(keys.len(), 1);
        let text: String = redis::cmd("GET")
            .arg(&keys[0])
            .query(&mut connection)
            .unwrap();
        let hash = keys[0].rsplit(':').next().unwrap();
        let forged = text.replace(hash, &"0".repeat(32));
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(forged)
            .query(&mut connection)
            .unwrap();
        let error = redis.get("r2").await.unwrap_err();
        assert!(
            matches!(&error, QueueError::CorruptJob { detail, .. } if detail.contains("another")),
            "{error:?}"
        );

        // Off (a rolling upgrade with older clients): every job keeps its own copy.
        let own = unshared(&server.url(), "own").await;
        check(&own).await;
        assert_eq!(copies_of("own", &mut connection), 30);
    });
}

#[test]
fn a_sharded_queue_shares_configs_per_shard() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        let sharded = JobQueue::open(&server.url(), options("shared-3", Some(3)))
            .await
            .unwrap();
        check(&sharded).await;
    });
}

#[test]
fn sqlite_shares_configs_per_call_too() {
    scraperv4::runtime::handle().block_on(async {
        let sqlite = JobQueue::open("memory://", options("shared", None))
            .await
            .unwrap();
        check(&sqlite).await;

        // SQLite's rows: the same rule per call (a config no other job of the call shares
        // stays in its job), and nothing shared with the setting off.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("queue.db");
        let url = format!("sqlite://{}", file.display());
        let on = JobQueue::open(&url, options("on", None)).await.unwrap();
        check(&on).await;
        let off = unshared(&url, "off").await;
        check(&off).await;
        let db = rusqlite::Connection::open(&file).unwrap();
        let stored = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(
            stored("SELECT COUNT(*) FROM configs WHERE queue = 'on'"),
            2,
            "the two shared configs"
        );
        assert_eq!(stored("SELECT COUNT(*) FROM configs WHERE queue = 'off'"), 0);
        assert_eq!(
            stored("SELECT COUNT(*) FROM jobs WHERE queue = 'on' AND config LIKE '@%'"),
            30 + 2 + 3,
            "every job of a shared config refers to it (the carrier's row holds it)"
        );
        assert_eq!(
            stored("SELECT COUNT(*) FROM jobs WHERE queue = 'on' AND id IN ('alone', 'small') AND config LIKE '{%'"),
            2
        );
        assert_eq!(
            stored("SELECT COUNT(*) FROM jobs WHERE queue = 'off' AND config LIKE '@%'"),
            0
        );
        drop(db);
    });
}
