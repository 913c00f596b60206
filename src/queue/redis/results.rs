//! The bound of the Redis results stream (`results_max_len`) and its trims after an export
//! (`lua/results.lua`): the reaper trims it (`XTRIM MAXLEN ~`, whole stream nodes, so it
//! holds about that many entries), an export with `--trim` deletes what it wrote, and either
//! keeps the first entry left in `results:trimmed`, so an export that fell behind learns it
//! lost entries (see [`crate::queue::JobQueue::results_trimmed_to`]).

use super::{RESULTS, RedisQueue};
use crate::queue::error::QueueResult;

impl RedisQueue {
    /// Trims the results stream to about `max_len` entries; returns how many went.
    pub(super) async fn bound_results(&self, max_len: u64) -> QueueResult<u64> {
        self.run(
            "reap",
            &RESULTS,
            vec!["bound".to_owned(), max_len.to_string()],
        )
        .await
    }

    /// Deletes the results stream before `first_kept` (a stream id), after an export; returns
    /// the entries removed. Recorded like the bound's trims.
    pub(super) async fn trim_results_before(&self, first_kept: String) -> QueueResult<u64> {
        self.run(
            "trim_results",
            &RESULTS,
            vec!["trim".to_owned(), first_kept],
        )
        .await
    }

    /// The last position the bound trimmed the results stream to (every entry up to it is
    /// gone), if it ever did.
    pub async fn results_trimmed_to(&self) -> QueueResult<Option<String>> {
        let mut command = redis::cmd("GET");
        command.arg(format!("{}:results:trimmed", self.base));
        let mut connection = self.connection.clone();
        let first: Option<String> = self.query("results", &command, &mut connection).await?;
        Ok(first.as_deref().and_then(before))
    }
}

/// The stream id just before `id` (`<ms>-<seq>`).
fn before(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    Some(match (ms, seq) {
        (0, 0) => return None,
        (ms, 0) => format!("{}-{}", ms - 1, u64::MAX),
        (ms, seq) => format!("{ms}-{}", seq - 1),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_id_before() {
        assert_eq!(super::before("5-3").as_deref(), Some("5-2"));
        assert_eq!(
            super::before("5-0").as_deref(),
            Some("4-18446744073709551615")
        );
        assert_eq!(super::before("0-0"), None);
    }
}
