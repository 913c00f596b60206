//! The shape of the Redis seen-URL filter: a scalable, *blocked* Bloom filter.
//!
//! Each URL sets `k` bits of **one 52-bit word** per layer (a register-blocked Bloom filter,
//! Putze, Sanders and Singler 2007), not `k` bits spread over the layer. On Redis the bits are
//! read and written by the submit script with `BITFIELD`, and the cost of a `BITFIELD`
//! operation (its 3 or 4 arguments, each a string the script hands to the server) dwarfs
//! everything else a URL costs: a word per URL is one `GET` and, for a new URL, one `SET`,
//! where a classic Bloom filter needs `k` operations of 4 arguments. 52 bits: the widest word
//! a Lua number holds exactly (`BITFIELD GET u52` answers an integer the script keeps as a
//! double). A blocked filter needs more bits for a rate than a classic one (words fill
//! unevenly): 13.3 bits per URL at 0.8 % against 10.0 at the best k, and many more at the low rates of the
//! later layers, which is why the first layer takes most of the error budget.
//!
//! The fingerprint gives the word (52 bits of its high half, taken modulo the layer's words
//! by the script) and the mask (`k` distinct bit positions of 52 drawn from its low half);
//! both are computed here, so the script only reads, compares and writes words.

use super::{FILTER_VERSION, Fingerprint};

/// Bits of a filter word.
pub(super) const WORD_BITS: u64 = 52;

/// Largest bitmap of one bucket on Redis (a string holds at most 2^32 bits).
pub(super) const MAX_BUCKET_BITS: u64 = 1 << 32;

/// Share of the promised false-positive rate the first layer gets; the layers after it share
/// the rest (layer `i >= 1`: `(1 - FIRST_SHARE) / 2^i` of it), so the rate over all layers
/// stays below the promise however many are used.
const FIRST_SHARE: f64 = 0.8;

/// The false-positive rate of a blocked Bloom filter of `bits_per_url` bits per URL, words of
/// [`WORD_BITS`] bits and `k` distinct bits per URL: the URLs in a word are
/// Poisson-distributed (mean `WORD_BITS / bits_per_url`), and a new URL is taken for seen
/// when the `x` URLs of its word set its `k` bits: by inclusion-exclusion over the `j` of
/// them left unset, `sum_j (-1)^j C(k, j) (C(W - j, k) / C(W, k))^x`.
#[allow(clippy::cast_precision_loss)]
pub(super) fn blocked_rate(bits_per_url: f64, k: u32) -> f64 {
    let word = WORD_BITS as f64;
    let k = f64::from(k.min(52));
    // (sign * C(k, j), C(W - j, k) / C(W, k)) for j = 0..=k.
    let mut terms = Vec::new();
    let mut choose = 1.0;
    let mut j = 0.0;
    while j <= k {
        let mut apart = 1.0;
        let mut t = 0.0;
        while t < k {
            apart *= (word - j - t).max(0.0) / (word - t);
            t += 1.0;
        }
        let sign = if terms.len() % 2 == 0 { 1.0 } else { -1.0 };
        terms.push((sign * choose, apart));
        choose = choose * (k - j) / (j + 1.0);
        j += 1.0;
    }
    let mean = word / bits_per_url;
    let mut weight = (-mean).exp();
    let mut rate = 0.0;
    for x in 0..400 {
        let all_set: f64 = terms.iter().map(|(c, p)| c * p.powi(x)).sum();
        rate += weight * all_set.max(0.0);
        weight *= mean / f64::from(x + 1);
        if f64::from(x) > mean && weight < 1e-18 {
            break;
        }
    }
    rate
}

/// The fewest bits per URL (to 1/1024 bit) at which [`blocked_rate`] is at most `rate`.
fn bits_per_url(rate: f64, k: u32) -> f64 {
    let (mut low, mut high) = (1.0_f64, 2.0_f64);
    while blocked_rate(high, k) > rate {
        high *= 2.0;
        if high > 1e15 {
            return f64::INFINITY;
        }
    }
    while high - low > 1.0 / 1024.0 {
        let middle = f64::midpoint(low, high);
        if blocked_rate(middle, k) > rate {
            low = middle;
        } else {
            high = middle;
        }
    }
    high
}

impl Fingerprint {
    /// 52 bits of the fingerprint's high half: the word a layer of `w` words uses is this
    /// modulo `w` (exact in a Lua number).
    pub fn word_hash(self) -> u64 {
        #[allow(clippy::cast_possible_truncation)]
        let high = (self.0 >> 64) as u64;
        high >> 12
    }

    /// `k` distinct bits of a 52-bit word (`k` <= 52), drawn from the fingerprint's low
    /// half: a partial Fisher-Yates shuffle of the 52 positions driven by splitmix64.
    pub fn mask(self, k: u32) -> u64 {
        #[allow(clippy::cast_possible_truncation)]
        let mut state = self.0 as u64;
        let mut positions: [u8; 52] = std::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
        let mut mask = 0_u64;
        for i in 0..usize::try_from(k.min(52)).unwrap_or(52) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let left = 52 - i as u64;
            // Lemire's multiply-shift: a position among the `left` not drawn yet.
            #[allow(clippy::cast_possible_truncation)]
            let j = i + (((z >> 32) * left) >> 32) as usize;
            positions.swap(i, j);
            mask |= 1 << positions[i];
        }
        mask
    }

    /// The bit offset, in its bucket's bitmap, of the word this URL uses in layer `layer`.
    pub fn word_offset(self, geometry: &Geometry, layer: usize) -> u64 {
        let (offset, bits, _) = geometry.layers[layer];
        offset + self.word_hash() % (bits / WORD_BITS) * WORD_BITS
    }
}

/// The shape of a queue's filter, fixed when the filter is created and stored with it.
///
/// A scalable Bloom filter (Almeida et al., 2007) per bucket, blocked (see the module): layer
/// `i` holds `capacity * 2^i` URLs; the first at `FIRST_SHARE` (80 %) of the promised rate,
/// layer `i >= 1` at `0.2 / 2^i` of it, so the rate over all layers stays below the promise.
/// Every layer uses the same mask (the `k` that needs the fewest bits for the first layer)
/// and gets the words its rate needs with it; the layers lie one after the other in one
/// bitmap per bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    /// [`FILTER_VERSION`] of the filter.
    pub version: u32,
    /// Bits set per URL (in one word).
    pub k: u32,
    /// The promised false-positive rate.
    pub error_rate: f64,
    /// URLs of the first layer.
    pub capacity: u64,
    /// Width of the recrawl buckets, ms.
    pub bucket_ms: i64,
    /// `(offset, bits, cumulative capacity)` per layer; `bits` is a multiple of
    /// [`WORD_BITS`].
    pub layers: Vec<(u64, u64, u64)>,
}

impl Geometry {
    /// The geometry for `capacity` URLs at `error_rate` and buckets of `bucket_ms`.
    pub fn new(capacity: u64, error_rate: f64, bucket_ms: i64) -> Self {
        let first = error_rate * FIRST_SHARE;
        let k = (1..=12)
            .map(|k| (bits_per_url(first, k), k))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(5, |(_, k)| k);
        let mut layers = Vec::new();
        let (mut offset, mut total) = (0_u64, 0_u64);
        for i in 0..40 {
            let n = capacity.saturating_mul(1 << i);
            let rate = if i == 0 {
                first
            } else {
                error_rate * (1.0 - FIRST_SHARE) / f64::from(1_u32 << i.min(30))
            };
            #[allow(clippy::cast_precision_loss)]
            let (words, room) = (
                (n as f64 * bits_per_url(rate, k) / WORD_BITS as f64).ceil(),
                (MAX_BUCKET_BITS - offset) as f64,
            );
            #[allow(clippy::cast_precision_loss)]
            if !words.is_finite() || words * (WORD_BITS as f64) > room {
                break;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let bits = (words as u64).max(1) * WORD_BITS;
            total += n;
            layers.push((offset, bits, total));
            offset += bits;
        }
        Self {
            version: FILTER_VERSION,
            k,
            error_rate,
            capacity,
            bucket_ms,
            layers,
        }
    }

    /// The layer the `count`-th URL of a bucket goes to (the last one when all are full).
    pub fn layer_of(&self, count: u64) -> usize {
        self.layers
            .iter()
            .position(|&(_, _, cumulative)| count < cumulative)
            .unwrap_or(self.layers.len() - 1)
    }

    /// Bytes of bitmap a bucket holding `count` URLs takes.
    pub fn bytes_for(&self, count: u64) -> u64 {
        if count == 0 {
            return 0;
        }
        let (offset, bits, _) = self.layers[self.layer_of(count - 1)];
        (offset + bits).div_ceil(8)
    }

    /// The stored form (JSON).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::cast_precision_loss)]
mod tests {
    use super::*;

    #[test]
    fn masks_have_k_distinct_bits_of_a_word() {
        for i in 0..10_000 {
            let fp = Fingerprint::of("", &format!("https://example.com/{i}"), &[]);
            for k in [1, 5, 7, 52] {
                let mask = fp.mask(k);
                assert_eq!(mask.count_ones(), k, "{mask:x}");
                assert!(mask < 1 << WORD_BITS);
            }
            assert!(fp.word_hash() < 1 << 52);
        }
        // Every position is drawn about as often (2,000 URLs x 5 bits over 52 positions).
        let mut counts = [0_u32; 52];
        for i in 0..2_000 {
            let mask = Fingerprint::of("", &format!("u{i}"), &[]).mask(5);
            for (bit, count) in counts.iter_mut().enumerate() {
                *count += u32::from(mask >> bit & 1 == 1);
            }
        }
        assert!(counts.iter().all(|c| (120..270).contains(c)), "{counts:?}");
    }

    #[test]
    fn the_rate_model_matches_a_simulated_filter() {
        // 20,000 URLs at 14.2 bits each, 200,000 probes: the model's rate within 10 %.
        let words = 20_000 * 142 / 10 / 52;
        let mut filter = vec![0_u64; words];
        for i in 0..20_000 {
            let fp = Fingerprint::of("", &format!("https://a.example/{i}"), &[]);
            let w = usize::try_from(fp.word_hash() % words as u64).unwrap();
            filter[w] |= fp.mask(5);
        }
        let probes = 200_000;
        let hits = (0..probes)
            .filter(|i| {
                let fp = Fingerprint::of("", &format!("https://b.example/{i}"), &[]);
                let mask = fp.mask(5);
                filter[usize::try_from(fp.word_hash() % words as u64).unwrap()] & mask == mask
            })
            .count();
        #[allow(clippy::cast_precision_loss)]
        let measured = hits as f64 / f64::from(probes);
        #[allow(clippy::cast_precision_loss)]
        let model = blocked_rate(words as f64 * 52.0 / 20_000.0, 5);
        assert!(
            (measured / model - 1.0).abs() < 0.1,
            "measured {measured}, model {model}"
        );
    }

    #[test]
    fn geometry_doubles_layers_and_tightens_the_rate() {
        let g = Geometry::new(1_000_000, 0.01, 1000);
        assert_eq!(g.version, FILTER_VERSION);
        assert_eq!(g.k, 5);
        let (_, bits0, cap0) = g.layers[0];
        assert_eq!(cap0, 1_000_000);
        assert_eq!(bits0 % WORD_BITS, 0);
        // 0.8 % with 5 bits in a 52-bit word: about 13.3 bits per URL (1.66 bytes).
        assert!((13_100_000..13_500_000).contains(&bits0), "{bits0}");
        assert!(blocked_rate(bits0 as f64 / 1e6, 5) <= 0.008);
        assert_eq!(g.layers[1].2, 3_000_000);
        assert_eq!(g.layers[1].0, bits0);
        // The second layer's rate is 0.1 %: more bits per URL.
        assert!(g.layers[1].1 > 2 * bits0);
        assert!(g.layers.iter().map(|l| l.0 + l.1).max().unwrap() <= MAX_BUCKET_BITS);
        assert_eq!(g.layer_of(0), 0);
        assert_eq!(g.layer_of(999_999), 0);
        assert_eq!(g.layer_of(1_000_000), 1);
        assert_eq!(g.bytes_for(1), bits0 / 8);
        let stored: Geometry = serde_json::from_str(&g.encode()).unwrap();
        assert_eq!(stored, g);
        // The promise over all layers: 0.8 % + 0.1 % + 0.05 % + ... < 1 %.
        let total: f64 = (0..g.layers.len())
            .map(|i| {
                let n = g.capacity as f64 * f64::from(1_u32 << i.min(30));
                blocked_rate(g.layers[i].1 as f64 / n, g.k)
            })
            .sum();
        assert!(total <= 0.01, "{total}");
    }

    #[test]
    fn a_bloom_filter_with_this_geometry_keeps_its_promise() {
        // In memory, 200,000 URLs into layers of 50,000: three layers used.
        let g = Geometry::new(50_000, 0.01, 1000);
        let end = usize::try_from(g.layers[3].0 + g.layers[3].1).unwrap();
        let mut bits = vec![false; end];
        let word_set = |bits: &[bool], at: u64, mask: u64| {
            (0..WORD_BITS)
                .filter(|b| mask >> b & 1 == 1)
                .all(|b| bits[usize::try_from(at + b).unwrap()])
        };
        let mut count = 0_u64;
        for i in 0..200_000 {
            let fp = Fingerprint::of("", &format!("https://example.com/{i}"), &[]);
            let at = fp.word_offset(&g, g.layer_of(count));
            let mask = fp.mask(g.k);
            for b in (0..WORD_BITS).filter(|b| mask >> b & 1 == 1) {
                bits[usize::try_from(at + b).unwrap()] = true;
            }
            count += 1;
        }
        let layers = g.layer_of(count - 1) + 1;
        assert_eq!(layers, 3);
        let probes = 100_000;
        let false_positives = (0..probes)
            .filter(|i| {
                let fp = Fingerprint::of("", &format!("https://other.example/{i}"), &[]);
                (0..layers).any(|l| word_set(&bits, fp.word_offset(&g, l), fp.mask(g.k)))
            })
            .count();
        assert!(false_positives < probes / 100, "{false_positives}");
    }
}
