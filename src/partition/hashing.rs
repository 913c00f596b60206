//! Weighted rendezvous (highest-random-weight) hashing of keys onto partitions.
//!
//! Each key scores every partition with a hash of (key, partition) scaled by the partition's
//! weight, and goes to the highest score. Adding partition `n` moves a key only when the new
//! partition outscores the old winner, which happens for about `w_n / sum(w)` of the keys
//! (1/(n+1) with equal weights); no key moves between old partitions. The hash is xxh3 with
//! fixed seeds, so the answer is the same in every process, run and machine.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The partition of `key` among `weights.len()` partitions (weights > 0, checked by callers).
pub fn rendezvous(key: &str, weights: &[f64]) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (partition, &weight) in weights.iter().enumerate() {
        let hash = xxh3_64_with_seed(key.as_bytes(), partition as u64);
        // A uniform draw in (0, 1) from the top 53 bits; never exactly 0 or 1.
        #[allow(clippy::cast_precision_loss)]
        let uniform = ((hash >> 11) as f64 + 0.5) / (1_u64 << 53) as f64;
        // Weighted HRW: score = -w / ln(u); larger weight, proportionally more keys.
        let score = -weight / uniform.ln();
        if score > best_score {
            best_score = score;
            best = partition;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_by_one_partition_only_moves_keys_to_the_new_one() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("site{i}.example")).collect();
        for n in [1_usize, 4, 8, 15] {
            let before = vec![1.0; n];
            let after = vec![1.0; n + 1];
            let mut moved = 0;
            for key in &keys {
                let (old, new) = (rendezvous(key, &before), rendezvous(key, &after));
                if old != new {
                    assert_eq!(new, n, "{key} moved between old partitions");
                    moved += 1;
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let share = f64::from(moved) / keys.len() as f64;
            #[allow(clippy::cast_precision_loss)]
            let expected = 1.0 / (n + 1) as f64;
            assert!(
                (share - expected).abs() < 0.25 * expected,
                "n={n}: moved {share}"
            );
        }
    }

    #[test]
    fn weights_scale_the_share() {
        let weights = [1.0, 2.0, 1.0];
        let mut counts = [0_u32; 3];
        for i in 0..30_000 {
            counts[rendezvous(&format!("k{i}"), &weights)] += 1;
        }
        let ratio = f64::from(counts[1]) / f64::from(counts[0] + counts[2]) * 2.0;
        assert!((ratio - 2.0).abs() < 0.15, "{counts:?}");
    }

    #[test]
    fn answers_are_fixed_across_runs() {
        // Pinned when first computed: a change here re-shards every deployed fleet.
        let pinned: Vec<usize> = ["example.com", "example.org", "a.b.c", "127.0.0.1"]
            .iter()
            .map(|key| rendezvous(key, &[1.0; 16]))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [usize; 4] = [3, 14, 4, 14];
}
