//! The results log's bound (`results_max_len`) on both backends: the reaper keeps about that
//! many entries, and the queue says up to where it deleted, so an export that fell behind
//! knows it lost entries.

mod common;

use common::redis_server::RedisServer;
use scraperv4::queue::{Finished, JobQueue, NewJob, QueueOptions};

async fn fill_and_bound(queue: JobQueue, entries: usize, max_len: usize, exact: bool) {
    let jobs = (0..entries)
        .map(|i| NewJob {
            target_url: format!("https://r.example/{i}"),
            ..NewJob::default()
        })
        .collect();
    queue.submit(jobs).await.unwrap();
    let claimed = queue.claim("w", entries, true).await.unwrap();
    assert_eq!(claimed.len(), entries);
    let finished = claimed
        .iter()
        .map(|job| Finished {
            id: job.id.clone(),
            token: job.token,
            records: Some(r#"[{"x":1}]"#.to_owned()),
            ..Finished::default()
        })
        .collect();
    queue.finish_many(finished).await.unwrap();
    let all = queue.results_after(None, entries).await.unwrap();
    let first = all[0].cursor.clone();
    assert_eq!(queue.results_trimmed_to().await.unwrap(), None);

    queue.reap(100).await.unwrap();
    let left = queue.results_after(None, entries).await.unwrap();
    let kept_from = all.len() - left.len();
    assert_eq!(all[kept_from].cursor, left[0].cursor, "the oldest went");
    if exact {
        assert_eq!(left.len(), max_len);
    } else {
        assert!(
            (max_len..entries).contains(&left.len()),
            "{} entries left",
            left.len()
        );
    }
    // An exporter whose cursor is the first entry lost everything up to the trim.
    let trimmed = queue.results_trimmed_to().await.unwrap().expect("a trim");
    assert_eq!(queue.results_entry(&first).await.unwrap(), None);
    let after = queue.results_after(Some(trimmed), 1).await.unwrap();
    assert_eq!(
        after[0].cursor, left[0].cursor,
        "the trim ends before what is left"
    );

    // An export's trim is recorded the same way: another exporter behind it learns it too.
    let middle = left[left.len() / 2].cursor.clone();
    assert_eq!(
        queue.trim_results(&middle).await.unwrap(),
        u64::try_from(left.len() / 2 + 1).unwrap()
    );
    assert_eq!(
        queue.results_trimmed_to().await.unwrap().as_deref(),
        Some(middle.as_str())
    );
    let last = left.last().expect("entries").cursor.clone();
    queue.trim_results(&last).await.unwrap();
    assert!(queue.results_after(None, 10).await.unwrap().is_empty());
    assert_eq!(
        queue.results_trimmed_to().await.unwrap().as_deref(),
        Some(last.as_str()),
        "an emptied log says up to where it went"
    );
    assert_eq!(queue.trim_results(&last).await.unwrap(), 0);
    assert_eq!(
        queue.results_trimmed_to().await.unwrap().as_deref(),
        Some(last.as_str())
    );

    // An export read up to A; B came in (a later millisecond) before it trimmed what it
    // read: the log says it was trimmed up to A, not up to just before B.
    let a = complete_one(&queue, "https://r.example/a").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    complete_one(&queue, "https://r.example/b").await;
    assert_eq!(queue.trim_results(&a).await.unwrap(), 1);
    assert_eq!(
        queue.results_trimmed_to().await.unwrap().as_deref(),
        Some(a.as_str())
    );
}

/// Completes a new job with one record; its results entry's cursor.
async fn complete_one(queue: &JobQueue, url: &str) -> String {
    queue
        .submit(vec![NewJob {
            target_url: url.to_owned(),
            ..NewJob::default()
        }])
        .await
        .unwrap();
    let job = queue.claim("w", 1, true).await.unwrap().remove(0);
    queue
        .finish_many(vec![Finished {
            id: job.id.clone(),
            token: job.token,
            records: Some(r#"[{"x":2}]"#.to_owned()),
            ..Finished::default()
        }])
        .await
        .unwrap();
    let entries = queue.results_after(None, 100_000).await.unwrap();
    entries.last().expect("its entry").cursor.clone()
}

fn options(name: &str, max_len: u64) -> QueueOptions {
    QueueOptions {
        name: name.to_owned(),
        results_max_len: Some(max_len),
        ..QueueOptions::default()
    }
}

#[test]
fn the_reaper_bounds_the_results_log_on_both_backends() {
    let server = RedisServer::start(&[]);
    let runtime = scraperv4::runtime::handle();
    runtime.block_on(async {
        let redis = JobQueue::open(&server.url(), options("bound", 300))
            .await
            .unwrap();
        fill_and_bound(redis, 1000, 300, false).await;
        let sqlite = JobQueue::open("memory://", options("bound", 300))
            .await
            .unwrap();
        fill_and_bound(sqlite, 1000, 300, true).await;
    });
}
