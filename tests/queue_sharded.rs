//! A queue of 3 shards on a real redis-server: the jobs a page discovers for other shards
//! travel through its shard's outbox — added only by a finish that is accepted, forwarded to
//! their shards through those shards' seen-URL filters, and forwarded by the reaper when the
//! client that finished the page did not.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use scraperv4::partition::hashing::rendezvous;
use scraperv4::queue::dedup::DedupOptions;
use scraperv4::queue::{Ack, Finished, JobQueue, JobStatus, NewJob, QueueOptions};

const SHARDS: u32 = 3;

/// The `skip`-th loopback address whose politeness key (the address) goes to `shard`.
fn host_on(shard: usize, skip: usize) -> String {
    (2..255)
        .map(|i| format!("127.0.0.{i}"))
        .filter(|host| rendezvous(host, &[1.0; SHARDS as usize]) == shard)
        .nth(skip)
        .expect("a host for every shard")
}

fn job(id: &str, host: &str) -> NewJob {
    NewJob {
        id: Some(id.to_owned()),
        target_url: format!("http://{host}/{id}"),
        max_retries: 3,
        ..NewJob::default()
    }
}

fn options(name: &str) -> QueueOptions {
    QueueOptions {
        name: name.to_owned(),
        lease: Duration::from_millis(300),
        shards: Some(SHARDS),
        dedup: Some(DedupOptions::default()),
        ..QueueOptions::default()
    }
}

#[test]
fn links_for_other_shards_wait_for_an_accepted_finish() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        let queue = JobQueue::open(&server.url(), options("links"))
            .await
            .unwrap();
        assert_eq!(queue.shards(), 3);
        let page = job("page", &host_on(0, 0));
        // A URL shard 2 has seen already, under another id.
        let seen = job("seen-first", &host_on(2, 1));
        queue.submit(vec![page, seen.clone()]).await.unwrap();
        let mut again_seen = seen.clone();
        again_seen.id = Some("seen-again".to_owned());
        let children = vec![
            job("c0", &host_on(0, 1)),
            job("c1", &host_on(1, 0)),
            job("c2", &host_on(2, 0)),
            again_seen,
        ];

        let claimed = queue.claim("w1", 10, true).await.unwrap();
        let first = claimed.iter().find(|j| j.id == "page").unwrap().clone();
        // Its lease runs out and another worker takes the page over.
        tokio::time::sleep(Duration::from_millis(400)).await;
        queue.reap(100).await.unwrap();
        let second = queue
            .claim("w2", 10, true)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.id == "page")
            .expect("the page claimed again");
        assert_ne!(second.token, first.token);

        let finished = |token: u64| Finished {
            id: "page".to_owned(),
            token,
            result: None,
            records: Some(r#"[{"n":1}]"#.to_owned()),
            latency: None,
            discovered: children.clone(),
        };
        let acks = queue
            .finish_many(vec![finished(first.token)])
            .await
            .unwrap();
        assert!(
            matches!(acks[0], Ack::Stale { token, .. } if token == second.token),
            "{acks:?}"
        );
        queue.reap(100).await.unwrap();
        for child in ["c0", "c1", "c2", "seen-again"] {
            assert!(
                queue.get(child).await.unwrap().is_none(),
                "{child}: a stale finish adds no job on any shard"
            );
        }

        let acks = queue
            .finish_many(vec![finished(second.token)])
            .await
            .unwrap();
        assert_eq!(acks, vec![Ack::Accepted]);
        for child in ["c0", "c1", "c2"] {
            let found = queue.get(child).await.unwrap().expect(child);
            assert_eq!(found.status, JobStatus::Pending, "{child}");
            assert_eq!(found.parent_id, None, "{child}: as submitted");
        }
        assert!(
            queue.get("seen-again").await.unwrap().is_none(),
            "a forwarded link goes through its shard's seen-URL filter"
        );
        let stats = queue.stats().await.unwrap();
        // The three links, the page, and `seen-first` (claimed with the page, held by w2).
        assert_eq!(stats.count(JobStatus::Pending), 3, "{stats:?}");
        assert_eq!(stats.count(JobStatus::Completed), 1, "{stats:?}");
        assert_eq!(stats.total, 5, "{stats:?}");

        let mut redis = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let left: u64 = redis::cmd("XLEN")
            .arg("scraperv4:{links}:outbox")
            .query(&mut redis)
            .unwrap();
        assert_eq!(left, 0, "forwarded entries are deleted");
    });
}

#[test]
fn the_reaper_forwards_what_a_crashed_client_left_in_an_outbox() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        let queue = JobQueue::open(&server.url(), options("crash")).await.unwrap();
        let host = host_on(1, 0);
        let spec = format!(
            r#"{{"name":"","template_id":"t","target_url":"http://{host}/f","config":{{}},"priority":0}}"#
        );
        // As finish.lua leaves them when the client dies before forwarding: one readable
        // entry, one that is not (a field missing).
        let mut redis = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let outbox = "scraperv4:{crash}:outbox";
        // (Ids of long ago: the reaper leaves younger entries to the client that wrote them.)
        let _: String = redis::cmd("XADD")
            .arg(outbox)
            .arg("1000-1")
            .arg(&[
                ("to", "1"),
                ("root", "42"),
                ("id", "forwarded"),
                ("spec", spec.as_str()),
                ("retries", "2"),
                ("rank", "1000000"),
                ("key", host.as_str()),
            ])
            .query(&mut redis)
            .unwrap();
        let _: String = redis::cmd("XADD")
            .arg(outbox)
            .arg("1000-2")
            .arg(&[("to", "1"), ("id", "broken")])
            .query(&mut redis)
            .unwrap();

        queue.reap(100).await.unwrap();
        let forwarded = queue.get("forwarded").await.unwrap().expect("forwarded");
        assert_eq!(forwarded.status, JobStatus::Pending);
        assert_eq!(forwarded.max_retries, 2);
        assert_eq!(forwarded.politeness_key, host);
        let generation: u64 = redis::cmd("HGET")
            .arg("scraperv4:{crash/1}:job:forwarded")
            .arg("gen")
            .query(&mut redis)
            .unwrap();
        assert!(generation > 1 << 52, "the generation derives from the crawl's root: {generation}");
        let left: u64 = redis::cmd("XLEN").arg(outbox).query(&mut redis).unwrap();
        assert_eq!(left, 0, "the unreadable entry is dropped, not retried for ever");
    });
}

#[test]
fn a_broken_shard_does_not_stop_the_others() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        let queue = JobQueue::open(&server.url(), options("broken")).await.unwrap();
        let jobs: Vec<NewJob> = (0..3)
            .flat_map(|shard| (0..4).map(move |i| job(&format!("s{shard}-{i}"), &host_on(shard, i))))
            .collect();
        queue.submit(jobs).await.unwrap();
        queue.register_worker("w", None).await.unwrap();
        let held = queue.claim("w", 3, true).await.unwrap();
        assert_eq!(held.len(), 3);

        // Shard 1's keys become unusable (as a shard whose server does not answer): every
        // call on it fails.
        let mut redis = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        for name in ["pending", "leases", "workers", "counts", "seq"] {
            let key = format!("scraperv4:{{broken/1}}:{name}");
            let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).unwrap();
            let _: () = redis::cmd("SADD").arg(&key).arg("x").query(&mut redis).unwrap();
        }
        // Old outbox entries (their client died): one for shard 1 ahead of one for shard 2.
        let outbox = "scraperv4:{broken}:outbox";
        for (id, to, host) in [("1000-1", "1", host_on(1, 9)), ("1000-2", "2", host_on(2, 9))] {
            let spec = format!(
                r#"{{"name":"","template_id":"t","target_url":"http://{host}/o{to}","config":{{}},"priority":0}}"#
            );
            let _: String = redis::cmd("XADD")
                .arg(outbox)
                .arg(id)
                .arg(&[
                    ("to", to),
                    ("root", "7"),
                    ("id", &format!("o{to}")),
                    ("spec", spec.as_str()),
                    ("retries", "3"),
                    ("rank", "1000000"),
                    ("key", host.as_str()),
                ])
                .query(&mut redis)
                .unwrap();
        }

        let mut claimed = held.clone();
        for round in 0..3 {
            // Each claim starts at another shard: the broken one first, second and third.
            let jobs = queue.claim("w", 2, true).await;
            let jobs = jobs.unwrap_or_else(|e| panic!("claim {round} failed with work left: {e}"));
            assert!(!jobs.is_empty(), "claim {round}");
            claimed.extend(jobs);
        }
        for _ in 0..20 {
            // Once the other shards are empty, a claim that found nothing says why.
            if let Ok(jobs) = queue.claim("w", 20, true).await {
                claimed.extend(jobs);
            }
        }
        let ids: std::collections::BTreeSet<&str> = claimed.iter().map(|j| j.id.as_str()).collect();
        let from = |shard: usize| ids.iter().filter(|id| id.starts_with(&format!("s{shard}-"))).count();
        assert_eq!((from(0), from(2)), (4, 4), "{ids:?}");

        let held: Vec<(String, u64)> = claimed.iter().map(|j| (j.id.clone(), j.token)).collect();
        let beat = queue.heartbeat("w", Some(held), None).await.unwrap();
        assert!(beat.renewed >= 8, "the answering shards renew: {beat:?}");

        let report = queue.reap(100).await.unwrap();
        assert_eq!(report.requeued, 0, "{report:?}");
        let forwarded = queue.get("o2").await.unwrap();
        assert!(forwarded.is_some(), "the entry behind the stuck one is forwarded");
        let left: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(outbox)
            .arg("-")
            .arg("+")
            .query(&mut redis)
            .unwrap();
        assert_eq!(left.len(), 1, "the entry for the broken shard waits: {left:?}");
    });
}
