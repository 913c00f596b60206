//! Positions in a queue's results log, and how a reader compares them.
//!
//! One log (SQLite, a Redis queue of one shard) has one position: a row number (`12`) or a
//! stream id (`1700000000000-3`). A sharded queue ([`super::sharded`]) has one log per shard,
//! and its cursor holds a position in each: `<k>@<p0>,<p1>,...` — the entry it names is in
//! shard `k`'s log at `p<k>`, and a reader that got it has read every shard `i` up to `p<i>`
//! (`0-0`: nothing yet; no stream entry has that id).

/// The position `0-0`: before a stream's first entry.
pub const START: &str = "0-0";

/// A cursor of a sharded log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    /// The shard whose entry the cursor names.
    pub shard: usize,
    /// The position read up to in each shard's log.
    pub positions: Vec<String>,
}

impl Composite {
    /// Parses `<k>@<p0>,...`; `None` for anything else (a cursor of one log).
    pub fn parse(cursor: &str) -> Option<Self> {
        let (shard, positions) = cursor.split_once('@')?;
        let shard: usize = shard.parse().ok()?;
        let positions: Vec<String> = positions.split(',').map(str::to_owned).collect();
        (shard < positions.len() && positions.iter().all(|p| is_position(p)))
            .then_some(Self { shard, positions })
    }

    /// The cursor as text.
    pub fn encode(&self) -> String {
        format!("{}@{}", self.shard, self.positions.join(","))
    }
}

/// Whether `text` is a position of one log (`12`, `1700000000000-3`).
pub fn is_position(text: &str) -> bool {
    let (major, minor) = text.split_once('-').unwrap_or((text, "0"));
    !major.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// A position of one log as numbers (`12` is `(12, 0)`), for ordering.
pub fn position(cursor: &str) -> (u64, u64) {
    let (major, minor) = cursor.split_once('-').unwrap_or((cursor, "0"));
    (major.parse().unwrap_or(0), minor.parse().unwrap_or(0))
}

/// Whether `later` is past `earlier` in some log: some entry after `earlier` is at or before
/// `later`. Between cursors of a sharded log: in some shard's log.
pub fn past(later: &str, earlier: &str) -> bool {
    match (Composite::parse(later), Composite::parse(earlier)) {
        (Some(later), Some(earlier)) => later
            .positions
            .iter()
            .zip(&earlier.positions)
            .any(|(l, e)| position(l) > position(e)),
        _ => position(later) > position(earlier),
    }
}

/// Whether a page of entries read after `from` skipped entries that a trim up to `trimmed`
/// deleted before they were read: the trim went past `from` in a log, and that log's first
/// entry in the page (`page` holds each entry's cursor, in order) is after the trim, or the
/// page has none of that log.
pub fn skipped_by_trim<'a>(
    from: &str,
    page: impl IntoIterator<Item = &'a str>,
    trimmed: &str,
) -> bool {
    match (Composite::parse(from), Composite::parse(trimmed)) {
        (Some(from), Some(trimmed)) => {
            let mut first: Vec<Option<(u64, u64)>> = vec![None; from.positions.len()];
            for cursor in page.into_iter().filter_map(Composite::parse) {
                if let Some(slot @ None) = first.get_mut(cursor.shard) {
                    *slot = cursor.positions.get(cursor.shard).map(|p| position(p));
                }
            }
            from.positions
                .iter()
                .zip(&trimmed.positions)
                .zip(first)
                .any(|((from, trimmed), first)| {
                    position(trimmed) > position(from)
                        && first.is_none_or(|first| first > position(trimmed))
                })
        }
        _ => {
            position(trimmed) > position(from)
                && page
                    .into_iter()
                    .next()
                    .is_none_or(|first| position(first) > position(trimmed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_stream_ids_and_row_numbers() {
        assert!(position("1700000000000-2") > position("1700000000000-1"));
        assert!(position("1700000000001-0") > position("1700000000000-9"));
        assert!(position("12") > position("9"));
    }

    #[test]
    fn composite_cursors_round_trip_and_refuse_other_text() {
        let cursor = Composite {
            shard: 1,
            positions: vec!["0-0".into(), "5-1".into(), "7-0".into()],
        };
        assert_eq!(cursor.encode(), "1@0-0,5-1,7-0");
        assert_eq!(Composite::parse("1@0-0,5-1,7-0"), Some(cursor));
        for text in ["5-1", "3@0-0,1-1", "x@1-1", "0@1-1,,2-2", "0@a-1", "12"] {
            assert_eq!(Composite::parse(text), None, "{text}");
        }
    }

    #[test]
    fn a_trim_is_past_a_cursor_when_it_is_in_any_shard() {
        assert!(past("5-0", "4-9"));
        assert!(!past("4-9", "4-9"));
        assert!(past("0@3-0,0-0", "1@2-0,9-0"));
        assert!(!past("0@2-0,9-0", "1@2-0,9-0"));
    }

    #[test]
    fn a_page_that_starts_after_the_trim_skipped_entries() {
        // One log.
        assert!(skipped_by_trim("3-0", ["9-0"], "5-0"));
        assert!(!skipped_by_trim("3-0", ["4-0"], "5-0"));
        assert!(skipped_by_trim("3-0", [], "5-0"));
        assert!(!skipped_by_trim("6-0", [], "5-0"));
        // Shard 1's log was trimmed to 5-0 after the reader's 3-0: its first entry in the
        // page decides; shard 0's entries say nothing of it.
        let from = "0@1-0,3-0";
        assert!(skipped_by_trim(from, ["0@2-0,3-0"], "0@0-0,5-0"));
        assert!(skipped_by_trim(
            from,
            ["0@2-0,3-0", "1@2-0,9-0"],
            "0@0-0,5-0"
        ));
        assert!(!skipped_by_trim(
            from,
            ["0@2-0,3-0", "1@2-0,4-0"],
            "0@0-0,5-0"
        ));
        // The trim is behind the reader in every log.
        assert!(!skipped_by_trim(from, [], "0@1-0,2-0"));
    }
}
