//! A queue rolled back under an exporter: a SQLite database restored from a backup, a
//! `redis-server` restarted from an older snapshot. Jobs finished after the snapshot run
//! again; the jobs they discovered are discovered again — possibly by another page, in
//! another order. The JSON Lines file must still hold every job's records exactly once:
//! discovered jobs get the same generation whoever discovers them (it derives from the
//! crawl's root), and the exporter notices that the log no longer holds the entry it stopped
//! at and reads it again from the start, skipping what the file holds.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use scraperv4::queue::{Ack, Finished, JobQueue, NewJob, QueueOptions};
use scraperv4::sink::JsonlSink;

fn job(id: &str) -> NewJob {
    NewJob {
        id: Some(id.to_owned()),
        target_url: format!("http://127.0.0.1/{id}"),
        crawl_id: Some("crawl".to_owned()),
        ..NewJob::default()
    }
}

/// Claims `id` (it must be runnable) and finishes it with one record and `discovered`.
async fn run(queue: &JobQueue, id: &str, discovered: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let claimed = loop {
        match queue.claim("w", 100, true).await {
            Ok(jobs) if !jobs.is_empty() => break jobs,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("nothing to claim for {id}: {other:?}"),
        }
    };
    let mine = claimed.iter().find(|j| j.id == id).unwrap_or_else(|| {
        panic!(
            "{id} is not runnable; claimed {:?}",
            claimed.iter().map(|j| &j.id).collect::<Vec<_>>()
        )
    });
    // Give the others back untouched.
    for other in claimed.iter().filter(|j| j.id != id) {
        queue.release(&other.id, other.token).await.unwrap();
    }
    let acks = queue
        .finish_many(vec![Finished {
            id: id.to_owned(),
            token: mine.token,
            result: None,
            records: Some(format!(r#"[{{"job":"{id}"}}]"#)),
            latency: None,
            discovered: discovered.iter().map(|d| job(d)).collect(),
        }])
        .await
        .unwrap();
    assert!(matches!(acks[0], Ack::Accepted), "{id}: {acks:?}");
}

/// How many records of each job the file holds.
fn records_per_job(path: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        *seen
            .entry(record["job"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

/// The scenario, with `snapshot` taking a backup of the queue and `restore` putting it back
/// (and returning the queue reopened).
async fn scenario<S, R, F>(queue: JobQueue, snapshot: S, restore: R)
where
    S: FnOnce(&JobQueue),
    R: FnOnce(JobQueue) -> F,
    F: std::future::Future<Output = JobQueue>,
{
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("items.jsonl");
    queue.submit(vec![job("seed")]).await.unwrap();
    run(&queue, "seed", &["a", "b"]).await;
    snapshot(&queue);
    // After the snapshot: a discovers c; c runs. The file gets seed, a, c.
    run(&queue, "a", &["c"]).await;
    run(&queue, "c", &[]).await;
    let mut sink = JsonlSink::open(&out).unwrap();
    assert_eq!(sink.export(&queue).await.unwrap(), 3);

    // Rolled back: a and c never happened. This time b runs first and discovers d then c
    // (c comes from another page, later in the order), then a, c, d.
    let queue = restore(queue).await;
    run(&queue, "b", &["d", "c"]).await;
    run(&queue, "a", &["c"]).await;
    run(&queue, "c", &[]).await;
    run(&queue, "d", &[]).await;
    let written = sink.export(&queue).await.unwrap();
    let seen = records_per_job(&out);
    assert_eq!(
        seen,
        [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("seed", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        "every job's records once"
    );
    assert_eq!(written, 2, "only b and d were new");
    // Read again from the start: seed was in the file already; a and c ran again.
    assert_eq!(sink.duplicates(), 3, "seed, a and c recognised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restored_from_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.db");
    let backup = dir.path().join("backup.db");
    let url = format!("sqlite://{}", db.display());
    let queue = JobQueue::open(&url, QueueOptions::default()).await.unwrap();
    let (db, backup, url) = (&db, &backup, &url);
    Box::pin(scenario(
        queue,
        |_| {
            let connection = rusqlite::Connection::open(db).unwrap();
            connection
                .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
                .unwrap();
        },
        move |queue| async move {
            drop(queue);
            for suffix in ["-wal", "-shm"] {
                let mut side = db.clone().into_os_string();
                side.push(suffix);
                let _ = std::fs::remove_file(side);
            }
            std::fs::copy(backup, db).unwrap();
            JobQueue::open(url, QueueOptions::default()).await.unwrap()
        },
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_from_an_older_snapshot() {
    let mut server = RedisServer::start(&[]);
    let url = server.url();
    let queue = JobQueue::open(&url, QueueOptions::default()).await.unwrap();
    let dump = server.dir.path().join("dump.rdb");
    let saved = server.dir.path().join("saved.rdb");
    let client = redis::Client::open(url.as_str()).unwrap();
    let (server, dump, saved, url) = (&mut server, &dump, &saved, &url);
    Box::pin(scenario(
        queue,
        |_| {
            let mut connection = client.get_connection().unwrap();
            redis::cmd("SAVE").query::<()>(&mut connection).unwrap();
            std::fs::copy(dump, saved).unwrap();
        },
        move |queue| async move {
            drop(queue);
            // Killed (no save on the way out), then started from the older snapshot.
            server.stop();
            std::fs::copy(saved, dump).unwrap();
            server.restart();
            JobQueue::open(url, QueueOptions::default()).await.unwrap()
        },
    ))
    .await;
}
