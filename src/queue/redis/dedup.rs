//! The Redis side of the seen-URL filter ([`crate::queue::dedup`]): its keys, the arguments
//! the submit scripts take for it (`lua/dedup.lua`), the stored geometry and the server's
//! clock.
//!
//! Keys: `seen:geometry` (the filter's shape, JSON, written by the first submit and never
//! changed), `seen:all` and `seen:all:n` (bitmap and URL count of the URLs seen for ever),
//! `seen:<bucket>` and `seen:<bucket>:n` (the same per time bucket of recrawl, expiring when
//! the longest revisit interval of their URLs has passed). A script declares every one of
//! them it may touch: the buckets from the client's estimate of the server's clock, one bucket
//! of slack on each side; the script checks them against its own clock before it changes
//! anything and asks for a retry (`SEENCLOCK <now>`) when they do not cover it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::RedisQueue;
use super::scripts::QueueScript;
use crate::config::ConfigError;
use crate::queue::dedup::{
    DedupOptions, FILTER_VERSION, Fingerprint, Geometry, MAX_WINDOW_BUCKETS, scope_of,
    window_too_wide,
};
use crate::queue::error::{QueueError, QueueResult};
use crate::queue::job::NewJob;
use crate::queue::options::duration_ms;

/// The filter as a client of one queue knows it.
pub(super) struct SeenFilter {
    options: DedupOptions,
    geometry: Geometry,
    /// The geometry as stored (compared byte for byte by the scripts).
    encoded: String,
    /// The server's clock minus this machine's, ms: buckets follow the server's clock.
    offset_ms: AtomicI64,
}

fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SeenFilter {
    /// Refuses, before anything is sent, a job whose revisit interval the buckets cannot
    /// keep (so a batch is submitted whole or not at all).
    pub(super) fn check_windows(&self, jobs: &[NewJob]) -> QueueResult<()> {
        let default = self.options.revisit.map_or(0, duration_ms);
        for job in jobs {
            let revisit = job.revisit.map_or(default, duration_ms);
            if let Some(why) = window_too_wide(revisit, self.geometry.bucket_ms) {
                return Err(QueueError::InvalidJob {
                    job_id: job.id().to_owned(),
                    reason: why,
                });
            }
        }
        Ok(())
    }

    /// The keys and the trailing arguments of a script call whose own arguments are `args`
    /// and that may submit `jobs` (with the ARGV index of each job's submit fields). A job
    /// asking for a revisit interval longer than the buckets allow is refused, unless it was
    /// `discovered` by a finished page: then it gets the longest one (its page's completion
    /// must not fail for it).
    fn region(
        &self,
        base: &str,
        args: &[String],
        jobs: &[(usize, &NewJob)],
        discovered: bool,
    ) -> QueueResult<(Vec<String>, Vec<String>)> {
        let width = self.geometry.bucket_ms;
        let default = self.options.revisit.map_or(0, duration_ms);
        let mut tail = Vec::with_capacity(5 + jobs.len() * 4 + 1);
        tail.push(self.encoded.clone());
        tail.push(String::new());
        tail.push(String::new());
        tail.push(jobs.len().to_string());
        let mut longest = 0;
        let mut shortened = 0;
        for &(index, job) in jobs {
            let mut revisit = job.revisit.map_or(default, duration_ms);
            if let Some(why) = window_too_wide(revisit, width) {
                if !discovered {
                    return Err(QueueError::InvalidJob {
                        job_id: job.id().to_owned(),
                        reason: why,
                    });
                }
                revisit = MAX_WINDOW_BUCKETS * width;
                shortened += 1;
            }
            longest = longest.max(revisit);
            let fingerprint = Fingerprint::of(
                &scope_of(job.crawl_id.as_deref(), &job.template_id),
                &job.target_url,
                &self.options.ignored_params,
            );
            tail.push(index.to_string());
            tail.push(revisit.to_string());
            // Hexadecimal: cheaper to read for the script (strtoul, not strtod).
            tail.push(format!("{:x}", fingerprint.word_hash()));
            tail.push(format!("{:x}", fingerprint.mask(self.geometry.k)));
        }
        let (lo, hi) = if longest > 0 {
            let now = local_ms() + self.offset_ms.load(Ordering::Relaxed);
            (
                (now - longest).div_euclid(width) - 1,
                now.div_euclid(width) + 1,
            )
        } else {
            (0, -1)
        };
        tail[1] = lo.to_string();
        tail[2] = hi.to_string();
        tail.push((args.len() + 2).to_string());
        let mut keys = Vec::with_capacity(3 + 2 * usize::try_from(hi - lo + 1).unwrap_or(0));
        keys.push(format!("{base}:seen:geometry"));
        keys.push(format!("{base}:seen:all"));
        keys.push(format!("{base}:seen:all:n"));
        for bucket in lo..=hi {
            keys.push(format!("{base}:seen:{bucket}"));
            keys.push(format!("{base}:seen:{bucket}:n"));
        }
        if shortened > 0 {
            tracing::warn!(
                links = shortened,
                longest_s = MAX_WINDOW_BUCKETS * width / 1000,
                "discovered links asked for a revisit interval longer than the queue's dedup \
                 buckets allow: they get the longest one (on Redis a revisit spans at most \
                 {MAX_WINDOW_BUCKETS} buckets)"
            );
        }
        Ok((keys, tail))
    }
}

impl RedisQueue {
    /// The seen-URL filter of this queue when dedup is on: the stored geometry is read (a
    /// filter keeps the shape it was created with, whatever the options say now) and the
    /// server's clock compared with this machine's.
    pub(super) async fn open_seen(&self) -> QueueResult<Option<SeenFilter>> {
        let Some(options) = self.options.dedup.clone() else {
            return Ok(None);
        };
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("GET");
        command.arg(format!("{}:seen:geometry", self.base));
        let stored: Option<String> = self.query("connect", &command, &mut connection).await?;
        let (geometry, encoded) = match stored {
            None => {
                let wanted = options.redis_geometry()?;
                let encoded = wanted.encode();
                (wanted, encoded)
            }
            Some(text) => {
                let geometry: Geometry = serde_json::from_str(&text).map_err(|e| {
                    ConfigError::invalid(
                        "seen-URL filter",
                        format!("{}:seen:geometry", self.redacted_url),
                        format!("a geometry written by this version ({e})"),
                    )
                })?;
                if geometry.version != FILTER_VERSION {
                    return Err(ConfigError::invalid(
                        "seen-URL filter",
                        format!("version {}", geometry.version),
                        format!(
                            "version {FILTER_VERSION}: this filter was written by another \
                             release, with another layout (delete the queue's seen:* keys to \
                             start a new filter; the URLs it holds are then new again)"
                        ),
                    )
                    .into());
                }
                if geometry.capacity != options.capacity
                    || geometry.error_rate.to_bits() != options.error_rate.to_bits()
                    || geometry.bucket_ms != options.bucket_ms()
                {
                    tracing::warn!(
                        queue = self.redacted_url,
                        stored_capacity = geometry.capacity,
                        stored_error_rate = geometry.error_rate,
                        stored_bucket_ms = geometry.bucket_ms,
                        "the queue's seen-URL filter was created with other settings: it keeps \
                         them (delete the queue's seen:* keys to start a new filter)"
                    );
                }
                (geometry, text)
            }
        };
        // The stored buckets decide: a queue-wide revisit they cannot keep is refused here,
        // not job by job.
        if let Some(revisit) = options.revisit
            && let Some(mut why) = window_too_wide(duration_ms(revisit), geometry.bucket_ms)
        {
            if geometry.bucket_ms != options.bucket_ms() {
                let _ = write!(
                    why,
                    "; this queue's filter keeps the buckets it was created with ({} s): a \
                     shorter revisit, or delete the queue's seen:* keys to start a filter \
                     with other buckets",
                    geometry.bucket_ms / 1000
                );
            }
            return Err(ConfigError::invalid("revisit", format!("{revisit:?}"), why).into());
        }
        let filter = SeenFilter {
            options,
            geometry,
            encoded,
            offset_ms: AtomicI64::new(0),
        };
        let (seconds, micros): (i64, i64) = self
            .query("connect", &redis::cmd("TIME"), &mut connection)
            .await?;
        filter.offset_ms.store(
            seconds * 1000 + micros / 1000 - local_ms(),
            Ordering::Relaxed,
        );
        Ok(Some(filter))
    }

    /// Runs a script that may submit `jobs` (the ARGV index of each job's submit fields):
    /// with the seen-URL filter's keys and arguments when dedup is on.
    pub(super) async fn run_submitting<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &QueueScript,
        args: Vec<String>,
        jobs: &[(usize, &NewJob)],
        discovered: bool,
    ) -> QueueResult<T> {
        let Some(filter) = &self.seen else {
            return self.run(operation, script, args).await;
        };
        let mut retried = false;
        loop {
            let (keys, tail) = filter.region(&self.base, &args, jobs, discovered)?;
            let mut all = args.clone();
            all.extend(tail);
            match self.run_keyed(operation, script, keys, all).await {
                Err(QueueError::Backend { detail, .. })
                    if !retried && server_now(&detail).is_some() =>
                {
                    // The buckets declared missed the server's clock (it moved, or a bucket
                    // boundary passed): nothing was changed; again with its time.
                    let now = server_now(&detail).unwrap_or_default();
                    filter.offset_ms.store(now - local_ms(), Ordering::Relaxed);
                    retried = true;
                }
                other => return other,
            }
        }
    }
}

/// The server time in a `SEENCLOCK <now>` error.
fn server_now(detail: &str) -> Option<i64> {
    let rest = &detail[detail.find("SEENCLOCK")? + "SEENCLOCK".len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_errors_carry_the_server_time() {
        assert_eq!(
            server_now("SEENCLOCK: 1700000000123"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            server_now("An error was signalled by the server - SEENCLOCK 42"),
            Some(42)
        );
        assert_eq!(server_now("BUSY"), None);
    }
}
