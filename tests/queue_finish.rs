//! `finish_many` on both backends (a real redis-server and SQLite): one atomic step that
//! completes a job, appends its records to the results log and submits what it discovered —
//! and, for a stale fencing token, does none of it.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use scraperv4::queue::{Ack, Finished, JobQueue, JobStatus, NewJob, QueueOptions};

fn job(id: &str) -> NewJob {
    NewJob {
        id: Some(id.to_owned()),
        target_url: format!("http://127.0.0.1/{id}"),
        max_retries: 3,
        ..NewJob::default()
    }
}

async fn check(queue: JobQueue) {
    queue.submit(vec![job("a"), job("b")]).await.unwrap();
    let claimed = queue.claim("w1", 2, false).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (a, b) = (&claimed[0], &claimed[1]);

    // b's lease runs out and another worker takes it: w1's token for b is stale now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaped = queue.reap(100).await.unwrap();
    assert!(reaped.requeued >= 1, "{reaped:?}");
    let again = queue.claim("w2", 10, true).await.unwrap();
    let b_new = again
        .iter()
        .find(|j| j.id == b.id)
        .expect("b claimed again");
    let a_still_ours = again.iter().all(|j| j.id != a.id);

    let finish = |id: &str, token: u64, child: &str| Finished {
        id: id.to_owned(),
        token,
        result: Some("{}".to_owned()),
        records: Some(format!(r#"[{{"from":"{id}"}}]"#)),
        latency: None,
        discovered: vec![job(child), job("a")],
    };
    let acks = queue
        .finish_many(vec![finish(&b.id, b.token, "from-stale")])
        .await
        .unwrap();
    assert!(matches!(acks[0], Ack::Stale { .. }), "{acks:?}");
    assert!(
        queue.get("from-stale").await.unwrap().is_none(),
        "a stale finish submits nothing"
    );
    assert!(
        queue.results_after(None, 10).await.unwrap().is_empty(),
        "and records nothing"
    );

    let acks = queue
        .finish_many(vec![finish(&b_new.id, b_new.token, "c")])
        .await
        .unwrap();
    assert_eq!(acks, vec![Ack::Accepted]);
    let results = queue.results_after(None, 10).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].job_id, b.id);
    assert_eq!(results[0].records, r#"[{"from":"b"}]"#);
    assert!(
        results[0].generation > 0,
        "the entry names the job's incarnation"
    );
    let c = queue
        .get("c")
        .await
        .unwrap()
        .expect("discovered job submitted");
    assert_eq!(c.status, JobStatus::Pending);
    // The already-known job `a` was left alone (dedup by id).
    let a_now = queue.get("a").await.unwrap().unwrap();
    assert_ne!(a_now.status, JobStatus::Pending, "{a_now:?}");
    if a_still_ours {
        assert_eq!(a_now.token, a.token);
    }
    // Reading on from the cursor returns nothing new.
    let cursor = results[0].cursor.clone();
    assert!(
        queue
            .results_after(Some(cursor), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

fn options() -> QueueOptions {
    QueueOptions {
        name: "finish".to_owned(),
        lease: Duration::from_millis(300),
        ..QueueOptions::default()
    }
}

#[test]
fn finish_is_atomic_and_fenced_on_redis() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        check(JobQueue::open(&server.url(), options()).await.unwrap()).await;
    });
}

#[test]
fn finish_is_atomic_and_fenced_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    scraperv4::runtime::handle().block_on(async {
        check(JobQueue::open(&url, options()).await.unwrap()).await;
    });
}
