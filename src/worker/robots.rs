//! The fleet's shared robots.txt, kept in the queue: each origin's file is fetched by one
//! worker per TTL and read by the others ([`crate::fetch::robots::RobotsStore`]); and the
//! `Crawl-delay` a site asks for, handed to the queue, which holds it for the whole fleet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::fetch::robots::{BoxFuture, RobotsStore};
use crate::queue::JobQueue;

/// The queue as the fetcher's robots.txt store. A queue that cannot be reached reads as "not
/// stored" and "fetch it yourself": robots.txt is then fetched per worker, as without a fleet.
pub(crate) struct QueueRobots(pub(crate) Arc<JobQueue>);

impl RobotsStore for QueueRobots {
    fn get<'a>(&'a self, origin: &'a str) -> BoxFuture<'a, Option<String>> {
        async move { self.0.robots_get(origin).await.ok().flatten() }.boxed()
    }

    fn put<'a>(&'a self, origin: &'a str, value: String, ttl: Duration) -> BoxFuture<'a, ()> {
        async move {
            if let Err(error) = self.0.robots_put(origin, value, ttl).await {
                tracing::debug!(origin, %error, "could not share robots.txt");
            }
        }
        .boxed()
    }

    fn claim<'a>(&'a self, origin: &'a str, ttl: Duration) -> BoxFuture<'a, bool> {
        async move { self.0.robots_claim(origin, ttl).await.unwrap_or(true) }.boxed()
    }
}

/// The crawl delays this worker has handed to the queue, per politeness key, and when.
#[derive(Default)]
pub(crate) struct CrawlDelays {
    sent: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl CrawlDelays {
    /// Whether `delay` for `key` should be sent now: it changed, or `ttl` has passed since
    /// it was last sent.
    pub(crate) fn due(&self, key: &str, delay: Duration, ttl: Duration) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        let due = sent
            .get(key)
            .is_none_or(|(last, at)| *last != delay || at.elapsed() >= ttl / 2);
        if due {
            if sent.len() > 100_000 {
                sent.clear();
            }
            sent.insert(key.to_owned(), (delay, Instant::now()));
        }
        due
    }

    /// Forgets that `key`'s delay was sent (the queue did not take it): the next job of the
    /// key sends it again.
    pub(crate) fn forget(&self, key: &str) {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
