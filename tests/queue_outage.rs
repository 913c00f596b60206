//! A worker that could not reach the queue gives back what it dropped without counting an
//! expired lease; an ordinary heartbeat counts one (a job whose task died). Both backends.

mod common;

use common::redis_server::RedisServer;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Forwards `127.0.0.1:<port>` to the Redis server and, once, drops the reply to the first
/// command that mentions a robots.txt claim (`...:lock`): the connection closes after the
/// server applied the command, as when the network fails at the wrong moment.
async fn proxy_losing_one_reply(target: u16) -> (u16, std::sync::Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dropped = std::sync::Arc::new(AtomicBool::new(false));
    let once = dropped.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let once = once.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let armed = std::sync::Arc::new(AtomicBool::new(false));
                let arm = armed.clone();
                let watch = once.clone();
                let up = async move {
                    let mut buf = vec![0_u8; 65536];
                    loop {
                        let n = client_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<(), std::io::Error>(());
                        }
                        if !watch.load(Ordering::SeqCst)
                            && buf[..n].windows(5).any(|w| w == b":lock")
                        {
                            arm.store(true, Ordering::SeqCst);
                        }
                        server_write.write_all(&buf[..n]).await?;
                    }
                };
                let down = async move {
                    let mut buf = vec![0_u8; 65536];
                    loop {
                        let n = server_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<(), std::io::Error>(());
                        }
                        if armed.load(Ordering::SeqCst) && !once.swap(true, Ordering::SeqCst) {
                            return Ok(()); // the reply is lost with the connection
                        }
                        client_write.write_all(&buf[..n]).await?;
                    }
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    (port, dropped)
}

#[test]
fn a_robots_claim_whose_reply_was_lost_is_still_won() {
    let server = RedisServer::start(&[]);
    let port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    scraperv4::runtime::handle().block_on(async {
        let (proxy, dropped) = proxy_losing_one_reply(port).await;
        let queue = JobQueue::open(
            &format!("redis://127.0.0.1:{proxy}/0"),
            QueueOptions::default(),
        )
        .await
        .unwrap();
        let ttl = std::time::Duration::from_secs(60);
        // The SET NX is applied, its reply lost; the command is sent again on a new
        // connection and finds the key set — by this very call.
        assert!(queue.robots_claim("http://127.0.0.1:9", ttl).await.unwrap());
        assert!(
            dropped.load(Ordering::SeqCst),
            "the proxy never dropped a reply"
        );
        // Anyone else now finds it claimed.
        assert!(!queue.robots_claim("http://127.0.0.1:9", ttl).await.unwrap());
    });
}
