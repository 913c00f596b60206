//! A streaming fetch: URLs go in one by one, results come out as they complete.
//!
//! A [`Stream`] holds at most `window = in_flight + buffered` URLs at a time: up to
//! `in_flight` of them are being fetched (a semaphore of the stream's own, under the
//! fetcher's global and per-host limits), the others wait for a slot or are finished results
//! nobody has taken yet. The caller asks [`Stream::room`] before it pushes more, so the
//! input is pulled lazily and memory stays bounded however long the input is (backpressure:
//! a consumer that stops taking stops the pulling). Results come out in completion order,
//! each with the URL it came from; a failed URL is a result like any other.
//!
//! Every URL is its own task on the process runtime (so the work spreads over every runtime
//! thread); the tasks live in a [`JoinSet`], which doubles as the buffer of finished results.
//! Dropping the stream, or [`Stream::close`], aborts the tasks still running: their
//! connections are dropped mid-request and nothing keeps running behind the caller's back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use super::client::{Fetcher, Page};
use super::error::{FetchError, FetchErrorKind, FetchResult};
use crate::extract::{Item, LimitError, Limits, Template};

/// The longest one page may take to extract.
const PAGE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

type Work<T> = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// URLs in, results out in completion order, with a bounded number in flight and held.
pub struct Stream<T: Send + 'static> {
    tasks: JoinSet<(String, T)>,
    slots: Arc<Semaphore>,
    window: usize,
    work: Work<T>,
    /// The result of a task that panicked (never expected; kept typed all the same).
    panicked: fn(&JoinError) -> T,
    runtime: tokio::runtime::Handle,
}

impl<T: Send + 'static> Stream<T> {
    /// A stream running `work` on each URL pushed, at most `in_flight` at once and at most
    /// `in_flight + buffered` pushed but not yet taken (both at least 1).
    pub fn new<F, Fut>(
        in_flight: usize,
        buffered: usize,
        work: F,
        panicked: fn(&JoinError) -> T,
    ) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        // (Semaphore::new panics past MAX_PERMITS; the Python API refuses such bounds.)
        let in_flight = in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            tasks: JoinSet::new(),
            slots: Arc::new(Semaphore::new(in_flight)),
            window: in_flight.saturating_add(buffered),
            work: Arc::new(move |url| Box::pin(work(url))),
            panicked,
            runtime: crate::runtime::handle().handle().clone(),
        }
    }

    /// How many more URLs may be pushed now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.tasks.len())
    }

    /// URLs pushed whose result has not been taken yet (running, waiting or finished).
    pub fn pending(&self) -> usize {
        self.tasks.len()
    }

    /// Starts work on `url`. The caller keeps to [`Stream::room`]; past it the URL still
    /// runs (nothing is lost) but the bound is the caller's to keep.
    pub fn push(&mut self, url: String) {
        let slots = Arc::clone(&self.slots);
        let work = Arc::clone(&self.work);
        self.tasks.spawn_on(
            async move {
                // The semaphore is never closed: acquiring fails only if it were.
                let _slot = slots.acquire_owned().await;
                let result = work(url.clone()).await;
                (url, result)
            },
            &self.runtime,
        );
    }

    /// Waits for the next finished result, then takes it and up to `max - 1` more that are
    /// already finished. Empty only when nothing is pending.
    pub async fn take(&mut self, max: usize) -> Vec<(String, T)> {
        std::future::poll_fn(|cx| self.poll_take(cx, max)).await
    }

    /// [`Stream::take`] as a poll: the caller may hold a plain mutex around each poll (the
    /// stream is never borrowed across an `.await`).
    pub fn poll_take(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Vec<(String, T)>> {
        let first = match self.tasks.poll_join_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(Vec::new()),
            Poll::Ready(Some(first)) => first,
        };
        let mut out = vec![self.settle(first)];
        while out.len() < max.max(1) {
            match self.tasks.try_join_next() {
                Some(next) => out.push(self.settle(next)),
                None => break,
            }
        }
        Poll::Ready(out)
    }

    /// The results already finished, up to `max`, without waiting.
    pub fn try_take(&mut self, max: usize) -> Vec<(String, T)> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.tasks.try_join_next() {
                Some(next) => out.push(self.settle(next)),
                None => break,
            }
        }
        out
    }

    fn settle(&self, joined: Result<(String, T), JoinError>) -> (String, T) {
        joined.unwrap_or_else(|error| (String::new(), (self.panicked)(&error)))
    }

    /// Aborts the work still running; [`Stream::poll_closed`] tells when it has all ended.
    /// Results not taken are dropped.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }

    /// Ready once every task has ended after [`Stream::abort`] (their connections are
    /// closed by then).
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Poll::Ready(joined) = self.tasks.poll_join_next(cx) {
            if joined.is_none() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    /// Aborts the work still running and waits until every task has ended.
    pub async fn close(&mut self) {
        self.abort();
        std::future::poll_fn(|cx| self.poll_closed(cx)).await;
    }
}

/// A fetch's outcome: the page, or why there is none.
pub type Fetched = FetchResult<Page>;

/// A fetch + extract outcome: the page's items, or why there are none.
#[derive(Debug)]
pub enum Extracted {
    /// The items the template found (maybe none).
    Items(Vec<Item>),
    /// The fetch failed.
    Failed(FetchError),
    /// The page was fetched but extraction was refused (a limit).
    Refused(LimitError),
}

/// A task that ended without a result (it panicked): a typed failure all the same.
pub fn task_failed(error: &JoinError) -> FetchError {
    FetchError::new(
        FetchErrorKind::Decode,
        "",
        format!("the fetch task failed: {error}"),
    )
}

/// A stream fetching each URL with `fetcher`.
pub fn fetching(fetcher: Arc<Fetcher>, in_flight: usize, buffered: usize) -> Stream<Fetched> {
    Stream::new(
        in_flight,
        buffered,
        move |url| {
            let fetcher = Arc::clone(&fetcher);
            async move { fetcher.fetch(&url).await }
        },
        |error| Err(task_failed(error)),
    )
}

/// A stream fetching each URL with `fetcher` and extracting its items with `template`.
pub fn extracting(
    fetcher: Arc<Fetcher>,
    template: Arc<Template>,
    in_flight: usize,
    buffered: usize,
) -> Stream<Extracted> {
    Stream::new(
        in_flight,
        buffered,
        move |url| fetch_extract(Arc::clone(&fetcher), Arc::clone(&template), url),
        |error| Extracted::Failed(task_failed(error)),
    )
}

/// Fetches `url` and extracts its items with `template`; the parsing runs on the blocking
/// pool (CPU work must not hold up the I/O threads).
pub async fn fetch_extract(
    fetcher: Arc<Fetcher>,
    template: Arc<Template>,
    url: String,
) -> Extracted {
    let page = match fetcher.fetch(&url).await {
        Ok(page) => page,
        Err(error) => return Extracted::Failed(error),
    };
    let parsed = tokio::task::spawn_blocking(move || {
        let base = page.final_url.clone();
        let (text, _) = page.into_text();
        template.extract_within(&text, &base, &Limits::within(PAGE_DEADLINE))
    })
    .await;
    match parsed {
        Ok(Ok(items)) => Extracted::Items(items),
        Ok(Err(error)) => Extracted::Refused(error),
        Err(error) => Extracted::Failed(task_failed(&error)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn results_come_in_completion_order_within_the_bounds() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (Arc::clone(&running), Arc::clone(&most));
        let mut stream = Stream::new(
            2,
            1,
            move |url: String| {
                let (r, m) = (Arc::clone(&r), Arc::clone(&m));
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    let ms: u64 = url.parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    ms
                }
            },
            |_| 0,
        );
        assert_eq!(stream.room(), 3);
        for url in ["1000", "1", "2"] {
            stream.push(url.to_owned());
        }
        assert_eq!(stream.room(), 0);
        let runtime = crate::runtime::handle();
        // The tasks race for the two slots (any two may start first): both short ones end
        // long before the long one, whichever of them waited.
        let first = runtime.block_on(stream.take(1));
        assert_eq!(first.len(), 1);
        let second = runtime.block_on(stream.take(8));
        let mut short: Vec<_> = first.into_iter().chain(second).collect();
        short.sort();
        assert_eq!(short, vec![("1".to_owned(), 1), ("2".to_owned(), 2)]);
        let last = runtime.block_on(stream.take(8));
        assert_eq!(last, vec![("1000".to_owned(), 1000)]);
        assert!(runtime.block_on(stream.take(8)).is_empty());
        assert!(most.load(Ordering::SeqCst) <= 2);
    }

    #[test]
    fn closing_aborts_the_running_work() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&started);
        let mut stream = Stream::new(
            4,
            0,
            move |_url: String| {
                let s = Arc::clone(&s);
                async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            },
            |_| (),
        );
        for i in 0..4 {
            stream.push(i.to_string());
        }
        let runtime = crate::runtime::handle();
        runtime.block_on(async {
            while started.load(Ordering::SeqCst) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stream.close().await;
        });
        assert_eq!(stream.pending(), 0);
    }
}
