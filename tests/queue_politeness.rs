//! Fleet-wide politeness at claim time: the same scenarios on both backends (a real
//! redis-server and SQLite). Jobs on `127.0.0.x` hosts: each address is its own key.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use scraperv4::queue::{Change, Feedback, Finished, Job, JobQueue, NewJob, Policy, QueueOptions};

fn job(id: &str, host: &str, priority: i64) -> NewJob {
    NewJob {
        id: Some(id.to_owned()),
        target_url: format!("http://{host}/{id}"),
        priority,
        ..NewJob::default()
    }
}

fn jobs(prefix: &str, host: &str, n: usize, priority: i64) -> Vec<NewJob> {
    (0..n)
        .map(|i| job(&format!("{prefix}{i}"), host, priority))
        .collect()
}

fn per_key(claimed: &[Job]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for job in claimed {
        *counts.entry(job.politeness_key.clone()).or_default() += 1;
    }
    counts
}

async fn complete(queue: &JobQueue, claimed: &[Job]) {
    let finished = claimed
        .iter()
        .map(|job| Finished {
            id: job.id.clone(),
            token: job.token,
            ..Finished::default()
        })
        .collect();
    queue.finish_many(finished).await.unwrap();
}

/// The queue settings of every scenario (short leases).
fn options() -> QueueOptions {
    QueueOptions {
        lease: Duration::from_millis(500),
        ..QueueOptions::default()
    }
}

/// Opens a fresh queue with the given settings (on one backend).
trait OpenQueue {
    fn open(&self, options: QueueOptions) -> impl std::future::Future<Output = JobQueue>;
}

impl<F, Fut> OpenQueue for F
where
    F: Fn(QueueOptions) -> Fut,
    Fut: std::future::Future<Output = JobQueue>,
{
    fn open(&self, options: QueueOptions) -> impl std::future::Future<Output = JobQueue> {
        self(options)
    }
}

/// Every scenario, each on a fresh queue from `open`.
async fn scenarios(open: impl OpenQueue) {
    a_delay_gives_one_job_per_slot(&open).await;
    no_head_of_line_blocking(&open).await;
    parked_keys_move_their_shared_jobs(&open).await;
    in_flight_limits_free_their_slots(&open).await;
    priorities_hold_across_and_within_keys(&open).await;
    throttling_pauses_the_key_for_the_fleet(&open).await;
    a_queue_wide_delay_paces_every_key(&open).await;
    crawl_delay_is_held_fleet_wide(&open).await;
    unthrottled_keys_are_not_tracked(&open).await;
    answers_in_flight_together_are_one_signal(&open).await;
    retries_not_due_do_not_hide_ready_keys(&open).await;
    a_key_parked_after_its_jobs_were_queued_is_not_runnable(&open).await;
    a_large_claim_from_one_key(&open).await;
    a_shorter_delay_brings_the_next_slot_forward(&open).await;
    the_longest_crawl_delay_of_a_key_holds(&open).await;
}

async fn retries_not_due_do_not_hide_ready_keys(open: &impl OpenQueue) {
    // A key whose best job is a retry due in a minute must not take the place of a ready
    // key with work (SQLite ranked keys by their best job, due or not, and looked at
    // `limit` of them: a claim of one job found nothing).
    let queue = open
        .open(QueueOptions {
            retry_base: Duration::from_secs(60),
            ..options()
        })
        .await;
    for host in ["127.0.0.30", "127.0.0.31"] {
        queue
            .set_domain(host, Change::Keep, Change::Set(5))
            .await
            .unwrap();
    }
    queue.submit(jobs("a", "127.0.0.30", 1, 0)).await.unwrap();
    queue.submit(jobs("b", "127.0.0.31", 5, 0)).await.unwrap();
    let first = queue.claim("w", 1, true).await.unwrap();
    assert_eq!(first[0].id, "a0");
    let (ack, _) = queue
        .fail("a0", first[0].token, "timeout", true, None)
        .await
        .unwrap();
    assert!(matches!(ack, scraperv4::queue::Ack::Accepted), "{ack:?}");
    let next = queue.claim("w", 1, true).await.unwrap();
    assert_eq!(next.len(), 1, "the ready key's job, not nothing");
    assert_eq!(next[0].id, "b0");
}

async fn a_key_parked_after_its_jobs_were_queued_is_not_runnable(open: &impl OpenQueue) {
    // 3,000 jobs queued for a key with no policy, then the key limited to one request a
    // second: `runnable` (what the autoscaler scales on) counts what the key lets through
    // within the horizon, not its backlog — also before any claim has met its jobs.
    let queue = open.open(options()).await;
    queue
        .submit(jobs("r", "127.0.0.32", 3000, 0))
        .await
        .unwrap();
    assert_eq!(queue.stats().await.unwrap().runnable, 3000);
    queue
        .set_domain(
            "127.0.0.32",
            Change::Set(Duration::from_secs(1)),
            Change::Keep,
        )
        .await
        .unwrap();
    let horizon = options().runnable_horizon.as_secs();
    let runnable = queue.stats().await.unwrap().runnable;
    assert_eq!(runnable, horizon, "one a second within the horizon");
    let info = queue.domain("127.0.0.32").await.unwrap().unwrap();
    assert_eq!(info.waiting, 3000, "{info:?}");
}

async fn a_large_claim_from_one_key(open: &impl OpenQueue) {
    // One claim taking 9,000 jobs of one key (Redis: more values than a Lua unpack() takes,
    // which failed the script half-way, after it had leased the jobs taken before).
    let queue = open.open(options()).await;
    queue
        .set_domain("127.0.0.33", Change::Keep, Change::Set(100_000))
        .await
        .unwrap();
    queue.submit(jobs("x", "127.0.0.34", 5, 1)).await.unwrap();
    queue
        .submit(jobs("k", "127.0.0.33", 9000, 0))
        .await
        .unwrap();
    let claimed = queue.claim("w", 9005, true).await.unwrap();
    assert_eq!(claimed.len(), 9005);
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.count(scraperv4::queue::JobStatus::Pending),
        0,
        "{stats:?}"
    );
    let info = queue.domain("127.0.0.33").await.unwrap().unwrap();
    assert_eq!((info.inflight, info.waiting), (9000, 0), "{info:?}");
}

async fn a_shorter_delay_brings_the_next_slot_forward(open: &impl OpenQueue) {
    // A key set to an hour by mistake and set back is not left waiting the hour; a delay
    // over a day is refused.
    let queue = open.open(options()).await;
    let hour = Change::Set(Duration::from_secs(3600));
    queue
        .set_domain("127.0.0.35", hour, Change::Keep)
        .await
        .unwrap();
    queue.submit(jobs("h", "127.0.0.35", 2, 0)).await.unwrap();
    assert_eq!(queue.claim("w", 5, true).await.unwrap().len(), 1);
    assert!(queue.claim("w", 5, true).await.unwrap().is_empty());
    queue
        .set_domain("127.0.0.35", Change::Clear, Change::Keep)
        .await
        .unwrap();
    assert_eq!(queue.claim("w", 5, true).await.unwrap().len(), 1);
    let too_long = Change::Set(Duration::from_secs(2 * 24 * 3600));
    let error = queue
        .set_domain("127.0.0.35", too_long, Change::Keep)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("at most a day"), "{error}");
}

async fn the_longest_crawl_delay_of_a_key_holds(open: &impl OpenQueue) {
    // Two hosts of one registrable domain ask for 10 s and 1 s: the key keeps 10 s (the
    // last writer used to win, breaking the first host's robots.txt).
    let queue = open.open(options()).await;
    let ttl = Duration::from_secs(600);
    for delay in [10, 1] {
        queue
            .set_crawl_delay("example.com", Duration::from_secs(delay), ttl)
            .await
            .unwrap();
    }
    let info = queue.domain("example.com").await.unwrap().unwrap();
    assert_eq!(info.crawl_delay_ms, 10_000, "{info:?}");
    // A sub-millisecond Crawl-delay with a TTL of 0 still paces the key (it truncated to
    // 0 ms, held for 0 ms: never parked, so a worker gave its jobs back for ever).
    queue
        .set_crawl_delay("tiny.example", Duration::from_micros(500), Duration::ZERO)
        .await
        .unwrap();
    let info = queue.domain("tiny.example").await.unwrap().unwrap();
    assert_eq!(info.crawl_delay_ms, 1, "{info:?}");
    assert!(info.parked, "{info:?}");
}

async fn a_delay_gives_one_job_per_slot(open: &impl OpenQueue) {
    // A key with a delay gives one job per claim and says when the next one is due.
    let queue = open.open(options()).await;
    queue
        .set_domain(
            "127.0.0.2",
            Change::Set(Duration::from_millis(600)),
            Change::Keep,
        )
        .await
        .unwrap();
    queue.submit(jobs("d", "127.0.0.2", 3, 0)).await.unwrap();
    let (first, _) = queue.claim_with_wake("w", 10, true).await.unwrap();
    assert_eq!(first.len(), 1, "one job per delay");
    assert_eq!(first[0].politeness_key, "127.0.0.2");
    let (none, wake) = queue.claim_with_wake("w", 10, true).await.unwrap();
    assert!(none.is_empty());
    let wake = wake.expect("the key's next slot");
    assert!(
        wake <= Duration::from_millis(600) && wake >= Duration::from_millis(300),
        "{wake:?}"
    );
    tokio::time::sleep(wake + Duration::from_millis(20)).await;
    let (second, _) = queue.claim_with_wake("w", 10, true).await.unwrap();
    assert_eq!(second.len(), 1, "the next slot came");
    let info = queue.domain("127.0.0.2").await.unwrap().unwrap();
    assert_eq!(info.delay_ms, 600);
    assert_eq!(info.inflight, 2);
    assert_eq!(info.waiting, 1);
    assert!(info.parked);
}

async fn no_head_of_line_blocking(open: &impl OpenQueue) {
    // No head-of-line blocking: a throttled key's 200 better jobs do not hide another key's.
    let queue = open.open(options()).await;
    queue
        .set_domain(
            "127.0.0.3",
            Change::Set(Duration::from_secs(30)),
            Change::Keep,
        )
        .await
        .unwrap();
    queue.submit(jobs("a", "127.0.0.3", 200, 10)).await.unwrap();
    queue.submit(jobs("b", "127.0.0.4", 5, 0)).await.unwrap();
    let claimed = queue.claim("w", 10, true).await.unwrap();
    let counts = per_key(&claimed);
    assert_eq!(counts.get("127.0.0.3"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("127.0.0.4"), Some(&5), "{counts:?}");
    assert_eq!(
        claimed[0].politeness_key, "127.0.0.3",
        "the better job first"
    );
}

async fn parked_keys_move_their_shared_jobs(open: &impl OpenQueue) {
    // A key parked while its jobs wait in the shared queue: they move when a claim meets them.
    let queue = open.open(options()).await;
    queue.submit(jobs("e", "127.0.0.5", 50, 5)).await.unwrap();
    queue.submit(jobs("f", "127.0.0.6", 3, 0)).await.unwrap();
    queue
        .set_domain(
            "127.0.0.5",
            Change::Set(Duration::from_secs(30)),
            Change::Keep,
        )
        .await
        .unwrap();
    let claimed = queue.claim("w", 100, true).await.unwrap();
    let counts = per_key(&claimed);
    assert_eq!(counts.get("127.0.0.5"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("127.0.0.6"), Some(&3), "{counts:?}");
    assert_eq!(
        queue.domain("127.0.0.5").await.unwrap().unwrap().waiting,
        49
    );
}

async fn in_flight_limits_free_their_slots(open: &impl OpenQueue) {
    // A fleet-wide in-flight limit: slots come back when jobs finish, fail or are released.
    let queue = open.open(options()).await;
    queue
        .set_domain("127.0.0.7", Change::Keep, Change::Set(2))
        .await
        .unwrap();
    queue.submit(jobs("c", "127.0.0.7", 6, 0)).await.unwrap();
    let claimed = queue.claim("w", 10, true).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        queue.claim("w2", 10, true).await.unwrap().is_empty(),
        "limit reached"
    );
    complete(&queue, &claimed[..1]).await;
    let more = queue.claim("w2", 10, true).await.unwrap();
    assert_eq!(more.len(), 1, "a completion frees a slot");
    queue
        .release(&claimed[1].id, claimed[1].token)
        .await
        .unwrap();
    let more = queue.claim("w2", 10, true).await.unwrap();
    assert_eq!(more.len(), 1, "a release frees a slot");
    // A worker killed while holding a slot: the lease expires, the slot comes back.
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue.reap(100).await.unwrap();
    assert_eq!(
        queue.domain("127.0.0.7").await.unwrap().unwrap().inflight,
        0
    );
    assert_eq!(queue.claim("w3", 10, true).await.unwrap().len(), 2);
}

async fn priorities_hold_across_and_within_keys(open: &impl OpenQueue) {
    // Among ready keys the better job goes first; within a key, priority order holds.
    let queue = open.open(options()).await;
    for host in ["127.0.0.8", "127.0.0.9"] {
        queue
            .set_domain(host, Change::Keep, Change::Set(1))
            .await
            .unwrap();
    }
    queue
        .submit(vec![
            job("low", "127.0.0.8", 1),
            job("high", "127.0.0.9", 5),
            job("mid", "127.0.0.9", 3),
        ])
        .await
        .unwrap();
    let claimed = queue.claim("w", 1, true).await.unwrap();
    assert_eq!(claimed[0].id, "high");
    let claimed = queue.claim("w", 5, true).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["low"],
        "127.0.0.9 is at its limit"
    );
}

async fn throttling_pauses_the_key_for_the_fleet(open: &impl OpenQueue) {
    // A 429 with Retry-After pauses the key for the fleet and doubles its delay; the other
    // keys are not slowed; successes bring the delay down again.
    let queue = open.open(options()).await;
    queue.submit(jobs("t", "127.0.0.10", 4, 0)).await.unwrap();
    queue.submit(jobs("u", "127.0.0.11", 4, 0)).await.unwrap();
    let claimed = queue.claim("w", 1, true).await.unwrap();
    let victim = &claimed[0];
    let feedback = Feedback::Throttled {
        retry_after: Some(Duration::from_millis(800)),
    };
    queue
        .fail(&victim.id, victim.token, "HTTP 429", true, Some(feedback))
        .await
        .unwrap();
    let info = queue.domain(&victim.politeness_key).await.unwrap().unwrap();
    assert_eq!(info.throttled, 1);
    assert!(info.delay_ms >= 1000, "{info:?}");
    assert!(info.paused_until > 0, "{info:?}");
    let claimed = queue.claim("w", 20, true).await.unwrap();
    let counts = per_key(&claimed);
    assert!(
        !counts.contains_key(&victim.politeness_key),
        "paused: {counts:?}"
    );
    let other = if victim.politeness_key == "127.0.0.10" {
        "127.0.0.11"
    } else {
        "127.0.0.10"
    };
    assert!(counts.get(other).copied().unwrap_or(0) >= 3, "{counts:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let resumed = loop {
        let claimed = queue.claim("w", 20, true).await.unwrap();
        if !claimed.is_empty() {
            break claimed;
        }
        assert!(Instant::now() < deadline, "the paused key never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resumed.len(), 1, "paced after the pause: one per delay");
    let before = queue
        .domain(&victim.politeness_key)
        .await
        .unwrap()
        .unwrap()
        .delay_ms;
    complete(&queue, &resumed).await;
    let after = queue
        .domain(&victim.politeness_key)
        .await
        .unwrap()
        .unwrap()
        .delay_ms;
    assert!(
        after < before && after >= before * 8 / 10,
        "{before} -> {after}"
    );
}

async fn a_queue_wide_delay_paces_every_key(open: &impl OpenQueue) {
    // A queue-wide delay paces every key; `runnable` counts what the delays let through.
    let options_paced = QueueOptions {
        policy: Policy {
            delay: Some(Duration::from_secs(2)),
            ..Policy::default()
        },
        runnable_horizon: Duration::from_secs(10),
        ..options()
    };
    let queue = open.open(options_paced).await;
    queue
        .submit(jobs("p", "127.0.0.12", 1000, 0))
        .await
        .unwrap();
    queue.submit(jobs("q", "127.0.0.13", 3, 0)).await.unwrap();
    let stats = queue.stats().await.unwrap();
    // 10 s at one job per 2 s, ready now (at 0, 2, 4, 6, 8 s): 5 for the big key; 3 for
    // the small one.
    assert_eq!(stats.runnable, 5 + 3, "{stats:?}");
    assert_eq!(stats.paced_keys, 2);
    let claimed = queue.claim("w", 100, true).await.unwrap();
    assert_eq!(per_key(&claimed).len(), 2);
    assert_eq!(claimed.len(), 2, "one per key");
    let stats = queue.stats().await.unwrap();
    // Each key waits just under 2 s now: at most 5 + 2.
    assert!(stats.runnable <= 5 + 2, "{stats:?}");
    assert_eq!(stats.waiting_keys, 2);
}

async fn crawl_delay_is_held_fleet_wide(open: &impl OpenQueue) {
    // Crawl-delay from robots.txt: the key's least delay for the fleet, for its TTL.
    let queue = open.open(options()).await;
    queue
        .set_crawl_delay(
            "127.0.0.14",
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    queue.submit(jobs("r", "127.0.0.14", 3, 0)).await.unwrap();
    assert_eq!(queue.claim("w", 10, true).await.unwrap().len(), 1);
    let info = queue.domain("127.0.0.14").await.unwrap().unwrap();
    assert_eq!((info.crawl_delay_ms, info.delay_ms), (1000, 1000));
}

async fn unthrottled_keys_are_not_tracked(open: &impl OpenQueue) {
    // Keys with nothing to pace are not tracked; a cleared override unparks the key once its
    // own queue is empty.
    let queue = open.open(options()).await;
    queue.submit(jobs("s", "127.0.0.15", 3, 0)).await.unwrap();
    assert!(queue.domain("127.0.0.15").await.unwrap().is_none());
    queue
        .set_domain(
            "127.0.0.15",
            Change::Set(Duration::from_millis(1)),
            Change::Keep,
        )
        .await
        .unwrap();
    queue
        .set_domain("127.0.0.15", Change::Clear, Change::Keep)
        .await
        .unwrap();
    let claimed = queue.claim("w", 10, true).await.unwrap();
    assert_eq!(claimed.len(), 3);
    complete(&queue, &claimed).await;
    queue.submit(jobs("s2-", "127.0.0.15", 2, 0)).await.unwrap();
    assert!(!queue.domain("127.0.0.15").await.unwrap().unwrap().parked);
    assert_eq!(queue.claim("w", 10, true).await.unwrap().len(), 2);
}

async fn answers_in_flight_together_are_one_signal(open: &impl OpenQueue) {
    // 8 requests were in flight when the site started answering 429: the delay doubles once
    // (to its first step, 1 s), not 8 times.
    let queue = open.open(options()).await;
    queue.submit(jobs("v", "127.0.0.16", 8, 0)).await.unwrap();
    let claimed = queue.claim("w", 8, true).await.unwrap();
    assert_eq!(claimed.len(), 8);
    for job in &claimed {
        let feedback = Feedback::Throttled { retry_after: None };
        queue
            .fail(&job.id, job.token, "HTTP 429", true, Some(feedback))
            .await
            .unwrap();
    }
    let info = queue.domain("127.0.0.16").await.unwrap().unwrap();
    assert_eq!((info.delay_ms, info.throttled), (1000, 8), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn politeness_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    scenarios(|options| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://{}", dir.path().join(format!("q{n}.db")).display());
        async move { JobQueue::open(&url, options).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn politeness_on_redis() {
    let server = RedisServer::start(&[]);
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let url = server.url();
    scenarios(|options| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let options = QueueOptions {
            name: format!("q{n}"),
            ..options
        };
        let url = url.clone();
        async move { JobQueue::open(&url, options).await.unwrap() }
    })
    .await;
}
