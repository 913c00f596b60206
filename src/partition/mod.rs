//! Splitting a list of URLs among workers.
//!
//! Owns the partitioning strategies of the scaling guide's `DataPartitioner`:
//!
//! - `domain_hash`: each domain to a partition by weighted rendezvous hashing
//!   ([`hashing`]), so growing from n to n+1 partitions moves only ~1/(n+1) of the domains
//!   (the seed's `md5 % n` moved almost all of them).
//! - `round_robin`: URLs dealt in turn (smooth weighted round robin when weighted).
//! - `domain_grouping`: whole domains, largest first, onto the least-loaded partition
//!   ([`balance`]).
//!
//! and `optimize`, which rebalances existing partitions by moving whole domains. URLs are
//! grouped by host or registrable domain ([`key`]). An invalid URL is never dropped: it gets
//! partition `-1` and comes back in [`Assignment::invalid`] with its reason.

pub mod balance;
pub mod hashing;
pub mod key;
mod prefix;

use std::collections::HashMap;

use crate::config::{ConfigError, ConfigResult};
pub use balance::RebalanceReport;
pub use key::GroupingKey;

/// The partition of an invalid URL in [`Assignment::partition_of`].
pub const INVALID: i32 = -1;

/// How URLs are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Consistent hashing of the grouping key.
    DomainHash,
    /// URLs dealt in turn, ignoring domains.
    RoundRobin,
    /// Whole domains, balanced by size.
    DomainGrouping,
}

impl Strategy {
    /// The accepted names, for error messages.
    pub const NAMES: &'static str = "domain_hash, round_robin, domain_grouping";

    /// Parses a strategy name; an unknown one is a [`ConfigError`] (the seed silently fell
    /// back to round robin, hiding typos).
    pub fn parse(name: &str) -> ConfigResult<Self> {
        match name {
            "domain_hash" => Ok(Self::DomainHash),
            "round_robin" => Ok(Self::RoundRobin),
            "domain_grouping" => Ok(Self::DomainGrouping),
            _ => Err(ConfigError::invalid(
                "partition strategy",
                name,
                format!("expected one of {}", Self::NAMES),
            )),
        }
    }
}

/// Parses a grouping key name (`registrable_domain` or `host`).
pub fn parse_grouping(name: &str) -> ConfigResult<GroupingKey> {
    GroupingKey::parse(name).ok_or_else(|| {
        ConfigError::invalid(
            "grouping key",
            name,
            format!("expected one of {}", GroupingKey::NAMES),
        )
    })
}

/// Weights for `partitions` partitions: equal ones when `weights` is `None`, else checked.
pub fn weights_for(partitions: usize, weights: Option<Vec<f64>>) -> ConfigResult<Vec<f64>> {
    if partitions == 0 {
        return Err(ConfigError::invalid(
            "num_partitions",
            0,
            "at least 1 partition",
        ));
    }
    let Some(weights) = weights else {
        return Ok(vec![1.0; partitions]);
    };
    if weights.len() != partitions {
        return Err(ConfigError::invalid(
            "weights",
            format!("{} weights", weights.len()),
            format!("one weight per partition ({partitions})"),
        ));
    }
    if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w <= 0.0) {
        return Err(ConfigError::invalid(
            "weights",
            bad,
            "every weight finite and > 0",
        ));
    }
    Ok(weights)
}

/// Checks a rebalancing tolerance (a fraction of the fair share, e.g. 0.1 for 10 %).
pub fn check_tolerance(tolerance: f64) -> ConfigResult<f64> {
    if tolerance.is_finite() && tolerance >= 0.0 {
        Ok(tolerance)
    } else {
        Err(ConfigError::invalid(
            "tolerance",
            tolerance,
            "a finite fraction >= 0, e.g. 0.1 for 10 %",
        ))
    }
}

/// Where each URL goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The partition of each input URL, in input order; [`INVALID`] for an invalid URL.
    pub partition_of: Vec<i32>,
    /// `(index in the input, reason)` of each invalid URL.
    pub invalid: Vec<(usize, String)>,
}

/// A configured partitioner.
#[derive(Debug, Clone, Copy)]
pub struct Partitioner {
    /// The strategy.
    pub strategy: Strategy,
    /// What URLs are grouped by (for the domain strategies and for `optimize`).
    pub grouping: GroupingKey,
}

impl Partitioner {
    /// Assigns each URL a partition among `weights.len()` partitions (see [`weights_for`]).
    pub fn assign<S: AsRef<str>>(&self, urls: &[S], weights: &[f64]) -> Assignment {
        let mut table = key::KeyTable::new(self.grouping);
        let mut invalid = Vec::new();
        let keys: Vec<Option<key::KeyId>> = urls
            .iter()
            .enumerate()
            .map(|(index, url)| match table.key_of(url.as_ref()) {
                Ok(id) => Some(id),
                Err(reason) => {
                    invalid.push((index, reason));
                    None
                }
            })
            .collect();
        let partition_of_key: Vec<usize> = match self.strategy {
            Strategy::DomainHash => (0..table.len())
                .map(|id| hashing::rendezvous(table.key(id_of(id)), weights))
                .collect(),
            Strategy::DomainGrouping => {
                let groups = group_sizes(&keys, &table);
                balance::place_largest_first(&groups, weights)
            }
            Strategy::RoundRobin => {
                let mut dealer = SmoothRoundRobin::new(weights);
                let partition_of = keys
                    .iter()
                    .map(|k| k.map_or(INVALID, |_| to_i32(dealer.next())))
                    .collect();
                return Assignment {
                    partition_of,
                    invalid,
                };
            }
        };
        let partition_of = keys
            .iter()
            .map(|k| k.map_or(INVALID, |id| to_i32(partition_of_key[id as usize])))
            .collect();
        Assignment {
            partition_of,
            invalid,
        }
    }
}

/// The result of [`optimize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Optimized {
    /// The new partition of each URL of the flattened input, in input order.
    pub partition_of: Vec<i32>,
    /// What was achieved.
    pub report: RebalanceReport,
    /// `(index in the flattened input, reason)` of each invalid URL (moved as a unit of one).
    pub invalid: Vec<(usize, String)>,
}

/// Rebalances existing partitions by moving whole domains.
///
/// `urls` is every partition's URLs one after the other and `lengths[p]` the size of
/// partition `p`. A domain found in several partitions is first gathered on the one holding
/// most of it (domain affinity), then whole domains move from overloaded to underloaded
/// partitions until each is within `tolerance` of its fair share.
pub fn optimize<S: AsRef<str>>(
    urls: &[S],
    lengths: &[usize],
    weights: &[f64],
    grouping: GroupingKey,
    tolerance: f64,
) -> ConfigResult<Optimized> {
    if lengths.iter().sum::<usize>() != urls.len() {
        return Err(ConfigError::invalid(
            "partitions",
            "inconsistent lengths",
            "partition lengths that add up to the number of URLs",
        ));
    }
    let original: Vec<usize> = lengths
        .iter()
        .enumerate()
        .flat_map(|(partition, &len)| std::iter::repeat_n(partition, len))
        .collect();

    let mut table = key::KeyTable::new(grouping);
    let mut invalid = Vec::new();
    // Group index per URL: domains first, then one group per invalid URL.
    let mut group_of_url = Vec::with_capacity(urls.len());
    let mut invalid_groups = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        match table.key_of(url.as_ref()) {
            Ok(id) => group_of_url.push(GroupRef::Domain(id)),
            Err(reason) => {
                invalid_groups.push(index);
                group_of_url.push(GroupRef::Invalid(invalid_groups.len() - 1));
                invalid.push((index, reason));
            }
        }
    }
    let domains = table.len();
    let group_index = |g: &GroupRef| match *g {
        GroupRef::Domain(id) => id as usize,
        GroupRef::Invalid(i) => domains + i,
    };
    let mut groups: Vec<balance::Group> = (0..domains)
        .map(|id| balance::Group {
            key: table.key(id_of(id)).to_owned(),
            size: 0,
        })
        .chain(invalid_groups.iter().map(|&i| balance::Group {
            key: urls[i].as_ref().to_owned(),
            size: 0,
        }))
        .collect();
    // Count each group's URLs per partition to find where most of it already is.
    let mut counts: HashMap<(usize, usize), usize> = HashMap::new();
    for (group_ref, &partition) in group_of_url.iter().zip(&original) {
        let group = group_index(group_ref);
        groups[group].size += 1;
        *counts.entry((group, partition)).or_default() += 1;
    }
    let mut placement = vec![usize::MAX; groups.len()];
    let mut best = vec![0_usize; groups.len()];
    for (&(group, partition), &count) in &counts {
        if count > best[group] || (count == best[group] && partition < placement[group]) {
            best[group] = count;
            placement[group] = partition;
        }
    }
    let report = balance::rebalance(&groups, &mut placement, weights, tolerance);
    let partition_of = group_of_url
        .iter()
        .map(|g| to_i32(placement[group_index(g)]))
        .collect();
    Ok(Optimized {
        partition_of,
        report,
        invalid,
    })
}

enum GroupRef {
    Domain(key::KeyId),
    Invalid(usize),
}

fn group_sizes(keys: &[Option<key::KeyId>], table: &key::KeyTable) -> Vec<balance::Group> {
    let mut groups: Vec<balance::Group> = (0..table.len())
        .map(|id| balance::Group {
            key: table.key(id_of(id)).to_owned(),
            size: 0,
        })
        .collect();
    for id in keys.iter().flatten() {
        groups[*id as usize].size += 1;
    }
    groups
}

/// Smooth weighted round robin (nginx's): deals in proportion to the weights, interleaved.
struct SmoothRoundRobin<'a> {
    weights: &'a [f64],
    current: Vec<f64>,
    total: f64,
}

impl<'a> SmoothRoundRobin<'a> {
    fn new(weights: &'a [f64]) -> Self {
        Self {
            weights,
            current: vec![0.0; weights.len()],
            total: weights.iter().sum(),
        }
    }

    fn next(&mut self) -> usize {
        let mut best = 0;
        for (partition, weight) in self.weights.iter().enumerate() {
            self.current[partition] += weight;
            if self.current[partition] > self.current[best] {
                best = partition;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

fn id_of(index: usize) -> key::KeyId {
    key::KeyId::try_from(index).expect("key ids fit in u32 (checked when assigned)")
}

fn to_i32(partition: usize) -> i32 {
    i32::try_from(partition).expect("partition counts are checked to fit in i32")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(strategy: Strategy, urls: &[&str], n: usize) -> Assignment {
        let partitioner = Partitioner {
            strategy,
            grouping: GroupingKey::RegistrableDomain,
        };
        partitioner.assign(urls, &weights_for(n, None).unwrap())
    }

    #[test]
    fn unknown_strategy_is_a_config_error_naming_the_choices() {
        let error = Strategy::parse("random").unwrap_err().to_string();
        assert!(
            error.contains("random") && error.contains("domain_hash"),
            "{error}"
        );
    }

    #[test]
    fn bad_weights_are_config_errors() {
        assert!(weights_for(0, None).is_err());
        assert!(weights_for(2, Some(vec![1.0])).is_err());
        assert!(weights_for(2, Some(vec![1.0, 0.0])).is_err());
        assert!(weights_for(2, Some(vec![1.0, f64::NAN])).is_err());
        assert!(check_tolerance(-0.1).is_err());
    }

    #[test]
    fn round_robin_deals_valid_urls_in_turn_and_keeps_invalid_ones_aside() {
        let urls = [
            "http://a.com/1",
            "nope",
            "http://a.com/2",
            "http://b.com/",
            "http://c.com/",
        ];
        let result = assign(Strategy::RoundRobin, &urls, 2);
        assert_eq!(result.partition_of, vec![0, INVALID, 1, 0, 1]);
        assert_eq!(result.invalid.len(), 1);
        assert_eq!(result.invalid[0].0, 1);
    }

    #[test]
    fn smooth_round_robin_follows_weights() {
        let mut dealer = SmoothRoundRobin::new(&[2.0, 1.0]);
        let dealt: Vec<usize> = (0..6).map(|_| dealer.next()).collect();
        assert_eq!(dealt.iter().filter(|p| **p == 0).count(), 4);
    }

    #[test]
    fn domain_strategies_keep_each_domain_in_one_partition() {
        let urls: Vec<String> = (0..400)
            .map(|i| format!("https://www{}.site{}.co.uk/p{i}", i % 3, i % 37))
            .collect();
        for strategy in [Strategy::DomainHash, Strategy::DomainGrouping] {
            let result = assign(
                strategy,
                &urls.iter().map(String::as_str).collect::<Vec<_>>(),
                5,
            );
            let mut seen: HashMap<String, i32> = HashMap::new();
            for (url, &partition) in urls.iter().zip(&result.partition_of) {
                let domain = url.split('.').nth(1).unwrap().to_owned();
                assert_eq!(*seen.entry(domain).or_insert(partition), partition);
            }
        }
    }

    #[test]
    fn optimize_restores_domain_affinity_then_balances() {
        // Round robin split every domain over both partitions.
        let urls: Vec<String> = (0..40)
            .map(|i| format!("http://d{}.com/{i}", i % 4))
            .collect();
        let lengths = [20, 20];
        let result = optimize(&urls, &lengths, &[1.0, 1.0], GroupingKey::Host, 0.1).unwrap();
        assert!(result.report.balanced);
        let mut partition_of_domain: HashMap<&str, i32> = HashMap::new();
        for (url, p) in urls.iter().zip(&result.partition_of) {
            let domain = &url[7..9];
            assert_eq!(
                *partition_of_domain.entry(domain).or_insert(*p),
                *p,
                "{url}"
            );
        }
        let zeros = result.partition_of.iter().filter(|p| **p == 0).count();
        assert_eq!(zeros, 20);
    }
}
