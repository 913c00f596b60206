//! Size-aware placement of whole domains on partitions.
//!
//! [`place_largest_first`] is the `domain_grouping` strategy: largest domain first onto the
//! partition whose load relative to its weight stays lowest (LPT scheduling). [`rebalance`]
//! is `optimize_partitions`: it moves whole domains from overloaded to underloaded partitions
//! until every partition is within the tolerance of its fair share, and says which domains
//! make that impossible because each alone exceeds a fair share.

/// One domain (or one invalid URL) and how many URLs it has.
#[derive(Debug, Clone)]
pub struct Group {
    /// The grouping key's text (the URL itself for an invalid URL).
    pub key: String,
    /// Number of URLs.
    pub size: usize,
}

/// Places every group on a partition, largest first; returns the partition of each group.
pub fn place_largest_first(groups: &[Group], weights: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        groups[b]
            .size
            .cmp(&groups[a].size)
            .then_with(|| groups[a].key.cmp(&groups[b].key))
    });
    let mut loads = vec![0_usize; weights.len()];
    let mut placement = vec![0; groups.len()];
    for group in order {
        let target = (0..weights.len())
            .min_by(|&a, &b| {
                let after_a = ratio(loads[a] + groups[group].size, weights[a]);
                let after_b = ratio(loads[b] + groups[group].size, weights[b]);
                after_a.total_cmp(&after_b).then(a.cmp(&b))
            })
            .unwrap_or(0);
        loads[target] += groups[group].size;
        placement[group] = target;
    }
    placement
}

/// What [`rebalance`] did and could not do.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceReport {
    /// Every partition is within `tolerance` of its fair share.
    pub balanced: bool,
    /// The largest `load / fair share` after rebalancing (1.0 is perfect).
    pub max_load_ratio: f64,
    /// Domains that alone exceed `(1 + tolerance)` times the fair share of the partition
    /// they are on: no placement without splitting them can be balanced.
    pub oversized: Vec<(String, usize)>,
    /// Number of groups moved.
    pub moved_groups: usize,
}

/// Moves whole groups between partitions until each is within `tolerance` of its fair share.
///
/// `placement[g]` is the current partition of group `g`; it is updated in place.
pub fn rebalance(
    groups: &[Group],
    placement: &mut [usize],
    weights: &[f64],
    tolerance: f64,
) -> RebalanceReport {
    let total: usize = groups.iter().map(|g| g.size).sum();
    let weight_sum: f64 = weights.iter().sum();
    #[allow(clippy::cast_precision_loss)]
    let fair: Vec<f64> = weights
        .iter()
        .map(|w| total as f64 * w / weight_sum)
        .collect();
    let mut loads = vec![0_usize; weights.len()];
    for (group, &partition) in groups.iter().zip(placement.iter()) {
        loads[partition] += group.size;
    }
    let load_ratio = |load: usize, partition: usize| {
        #[allow(clippy::cast_precision_loss)]
        let load = load as f64;
        if fair[partition] > 0.0 {
            load / fair[partition]
        } else {
            0.0
        }
    };
    // Squared relative load: every accepted move strictly lowers it, so the loop ends.
    let cost = |load: usize, partition: usize| {
        #[allow(clippy::cast_precision_loss)]
        let load = load as f64;
        load * load / weights[partition]
    };

    let mut moved_groups = 0;
    // Hard bound on work even if floating point made a move look better than it is.
    for _ in 0..groups.len().saturating_mul(weights.len()).max(1) {
        let Some(source) = (0..weights.len())
            .max_by(|&a, &b| load_ratio(loads[a], a).total_cmp(&load_ratio(loads[b], b)))
        else {
            break;
        };
        if load_ratio(loads[source], source) <= 1.0 + tolerance {
            break;
        }
        let mut members: Vec<usize> = (0..groups.len())
            .filter(|&g| placement[g] == source)
            .collect();
        members.sort_by(|&a, &b| groups[b].size.cmp(&groups[a].size).then(a.cmp(&b)));
        let mut targets: Vec<usize> = (0..weights.len()).filter(|&p| p != source).collect();
        targets.sort_by(|&a, &b| load_ratio(loads[a], a).total_cmp(&load_ratio(loads[b], b)));

        let best_move = members.iter().find_map(|&group| {
            let size = groups[group].size;
            targets.iter().find_map(|&target| {
                let before = cost(loads[source], source) + cost(loads[target], target);
                let after = cost(loads[source] - size, source) + cost(loads[target] + size, target);
                (after < before - 1e-9).then_some((group, target))
            })
        });
        let Some((group, target)) = best_move else {
            break;
        };
        loads[source] -= groups[group].size;
        loads[target] += groups[group].size;
        placement[group] = target;
        moved_groups += 1;
    }

    let max_load_ratio = (0..weights.len())
        .map(|p| load_ratio(loads[p], p))
        .fold(0.0, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let oversized = groups
        .iter()
        .zip(placement.iter())
        .filter(|&(group, &partition)| group.size as f64 > fair[partition] * (1.0 + tolerance))
        .map(|(group, _)| (group.key.clone(), group.size))
        .collect();
    RebalanceReport {
        balanced: max_load_ratio <= 1.0 + tolerance + 1e-12,
        max_load_ratio,
        oversized,
        moved_groups,
    }
}

fn ratio(load: usize, weight: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let load = load as f64;
    load / weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(sizes: &[usize]) -> Vec<Group> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Group {
                key: format!("d{i}"),
                size,
            })
            .collect()
    }

    #[test]
    fn largest_first_balances_and_respects_weights() {
        let g = groups(&[50, 40, 30, 20, 10, 10, 10, 10, 10, 10]);
        let placement = place_largest_first(&g, &[1.0, 1.0]);
        let load0: usize = g
            .iter()
            .zip(&placement)
            .filter(|(_, p)| **p == 0)
            .map(|(g, _)| g.size)
            .sum();
        assert_eq!(load0, 100);

        let weighted = place_largest_first(&groups(&[10; 30]), &[2.0, 1.0]);
        assert_eq!(weighted.iter().filter(|p| **p == 0).count(), 20);
    }

    #[test]
    fn rebalance_moves_whole_groups_until_within_tolerance() {
        let g = groups(&[10; 20]);
        let mut placement = vec![0; 20]; // everything on partition 0 of 4
        let report = rebalance(&g, &mut placement, &[1.0; 4], 0.1);
        assert!(report.balanced, "{report:?}");
        assert!(report.oversized.is_empty());
        for p in 0..4 {
            assert_eq!(placement.iter().filter(|x| **x == p).count(), 5);
        }
    }

    #[test]
    fn a_domain_bigger_than_a_fair_share_is_reported_not_split() {
        let g = groups(&[100, 10, 10, 10]);
        let mut placement = vec![0, 0, 1, 1];
        let report = rebalance(&g, &mut placement, &[1.0; 3], 0.1);
        assert!(!report.balanced);
        assert_eq!(report.oversized, vec![("d0".to_owned(), 100)]);
        // The big domain stays whole; the small ones leave its partition.
        assert_eq!(placement.iter().filter(|p| **p == placement[0]).count(), 1);
    }
}
