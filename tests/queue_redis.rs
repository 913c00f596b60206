//! The Rust queue API against a real redis-server (the Python suite covers every semantic on
//! every backend; this checks the core without the bindings).

mod common;

use common::redis_server::RedisServer;
use scraperv4::queue::{Ack, JobQueue, JobStatus, NewJob, QueueOptions};

fn new_job(n: usize) -> NewJob {
    NewJob {
        target_url: format!("https://example.com/{n}"),
        max_retries: 3,
        ..NewJob::default()
    }
}

#[test]
fn submit_claim_complete_and_fencing_on_redis() {
    let server = RedisServer::start(&[]);
    let runtime = scraperv4::runtime::handle();
    runtime.block_on(async {
        let options = QueueOptions {
            name: "rust".to_owned(),
            ..QueueOptions::default()
        };
        let queue = JobQueue::open(&server.url(), options).await.unwrap();
        let created = queue.submit((0..3).map(new_job).collect()).await.unwrap();
        assert_eq!(created.len(), 3);
        assert!(created.iter().all(|(_, new)| *new));

        let claimed = queue.claim("w1", 2, false).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(
            claimed
                .iter()
                .all(|job| job.attempt == 1 && job.status == JobStatus::Assigned)
        );

        let job = &claimed[0];
        assert_ne!(claimed[0].token, claimed[1].token, "one token per claim");
        assert_eq!(
            queue
                .complete(&job.id, job.token, Some("[1]".to_owned()))
                .await
                .unwrap(),
            Ack::Accepted
        );
        assert_eq!(
            queue.complete(&job.id, job.token, None).await.unwrap(),
            Ack::Stale {
                status: JobStatus::Completed,
                token: job.token
            }
        );
        assert_eq!(
            queue.complete("missing", 1, None).await.unwrap(),
            Ack::NotFound
        );

        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.count(JobStatus::Completed), 1);
        assert_eq!(stats.count(JobStatus::Assigned), 1);
        assert_eq!(stats.count(JobStatus::Pending), 1);
        assert_eq!(stats.by_status, queue.recount_by_scan().await.unwrap());
    });
}
