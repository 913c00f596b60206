//! A worker that could not reach the queue gives back what it dropped without counting an
//! expired lease; an ordinary heartbeat counts one (a job whose task died). Both backends.

mod common;

use common::redis_server::RedisServer;
use scraperv4::queue::{JobQueue, JobStatus, NewJob, QueueOptions};

fn new_job(n: usize) -> NewJob {
    NewJob {
        id: Some(format!("j{n}")),
        target_url: format!("http://127.0.0.1:9/{n}"),
        ..NewJob::default()
    }
}

async fn scenario(queue: JobQueue) {
    queue.submit((0..2).map(new_job).collect()).await.unwrap();
    let claimed = queue.claim("w", 2, true).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let kept = vec![(claimed[0].id.clone(), claimed[0].token)];
    let dropped = &claimed[1].id;

    // Dropped during an outage (a lost claim reply, leases that could not be renewed).
    let beat = queue
        .heartbeat_after_outage("w", kept.clone(), None)
        .await
        .unwrap();
    assert_eq!((beat.renewed, beat.released), (1, 1));
    let job = queue.get(dropped).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.lease_expiries, 0, "the queue's trouble, not the job's");

    // Dropped by a task that died: counted.
    let again = queue.claim("w", 1, true).await.unwrap();
    assert_eq!(again[0].id, *dropped);
    let beat = queue.heartbeat("w", Some(kept), None).await.unwrap();
    assert_eq!((beat.renewed, beat.released), (1, 1));
    let job = queue.get(dropped).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.lease_expiries, 1);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.by_status, queue.recount_by_scan().await.unwrap());
}

#[test]
fn an_outage_heartbeat_gives_back_uncounted_on_redis() {
    let server = RedisServer::start(&[]);
    scraperv4::runtime::handle().block_on(async {
        let queue = JobQueue::open(&server.url(), QueueOptions::default())
            .await
            .unwrap();
        scenario(queue).await;
    });
}

#[test]
fn an_outage_heartbeat_gives_back_uncounted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    scraperv4::runtime::handle().block_on(async {
        let queue = JobQueue::open(&url, QueueOptions::default()).await.unwrap();
        scenario(queue).await;
    });
}
