//! A flat cache from a URL's `scheme://authority` prefix to a 32-bit answer.
//!
//! Distinct prefixes are few (about one per site) and one is looked up per URL, in no
//! particular order, so this lookup is the partitioner's hot path and its cost is cache
//! misses. Each slot of the open-addressing table (linear probing, at most half full) is one
//! 64-byte cache line holding the prefix's hash, its answer and, for a prefix of up to 48
//! bytes (nearly all: `https://` and a host name), the prefix itself: a hit reads one line.
//! Longer prefixes live in an arena. (A `HashMap<String, _>` reads a slot, then follows a
//! pointer to a separately allocated key: two misses per URL.)

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes of a prefix kept in its slot.
const INLINE: usize = 48;

/// One slot; `len == 0` marks an empty slot (a cached prefix is never empty).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    hash: u64,
    answer: u32,
    len: u32,
    /// The prefix when `len <= INLINE`, else its start in the arena (first 8 bytes).
    inline: [u8; INLINE],
}

impl Slot {
    const EMPTY: Self = Self {
        hash: 0,
        answer: 0,
        len: 0,
        inline: [0; INLINE],
    };
}

/// Prefix bytes -> answer.
pub(super) struct PrefixCache {
    slots: Vec<Slot>,
    used: usize,
    /// Prefixes longer than [`INLINE`].
    arena: Vec<u8>,
    /// The hash's seed, random per cache: the URLs come from crawled pages, and with a known
    /// hash a site could fill one run of slots with prefixes chosen to collide (linear
    /// probing then costs a walk of that run per URL).
    seed: u64,
}

impl Default for PrefixCache {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            used: 0,
            arena: Vec::new(),
            seed: rand::random(),
        }
    }
}

impl std::fmt::Debug for PrefixCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache")
            .field("used", &self.used)
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl PrefixCache {
    const FIRST_CAPACITY: usize = 1024;

    /// The hash this cache uses for `prefix` (computed once by the caller, for the lookup
    /// and the insertion after a miss).
    #[inline]
    pub(super) fn hash(&self, prefix: &[u8]) -> u64 {
        xxh3_64_with_seed(prefix, self.seed)
    }

    /// The answer cached for `prefix` (whose hash is `hash`).
    #[inline]
    pub(super) fn get(&self, prefix: &[u8], hash: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut index = slot_index(hash, mask);
        loop {
            let slot = &self.slots[index];
            if slot.len == 0 {
                return None;
            }
            if slot.hash == hash && self.bytes(slot) == prefix {
                return Some(slot.answer);
            }
            index = (index + 1) & mask;
        }
    }

    /// Caches `answer` for `prefix` (not cached yet). Returns false, caching nothing, for an
    /// empty prefix or when it cannot be stored (over 4 GiB of long prefixes): the caller
    /// then simply computes such URLs each time.
    pub(super) fn insert(&mut self, prefix: &[u8], hash: u64, answer: u32) -> bool {
        let Ok(len) = u32::try_from(prefix.len()) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        let mut slot = Slot {
            hash,
            answer,
            len,
            inline: [0; INLINE],
        };
        if prefix.len() <= INLINE {
            slot.inline[..prefix.len()].copy_from_slice(prefix);
        } else {
            let Ok(start) = u32::try_from(self.arena.len()) else {
                return false;
            };
            if start.checked_add(len).is_none() {
                return false;
            }
            slot.inline[..4].copy_from_slice(&start.to_ne_bytes());
            self.arena.extend_from_slice(prefix);
        }
        if (self.used + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(slot);
        self.used += 1;
        true
    }

    #[inline]
    fn bytes<'a>(&'a self, slot: &'a Slot) -> &'a [u8] {
        let len = slot.len as usize;
        if len <= INLINE {
            &slot.inline[..len]
        } else {
            let start = [
                slot.inline[0],
                slot.inline[1],
                slot.inline[2],
                slot.inline[3],
            ];
            let start = u32::from_ne_bytes(start) as usize;
            &self.arena[start..start + len]
        }
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut index = slot_index(slot.hash, mask);
        while self.slots[index].len != 0 {
            index = (index + 1) & mask;
        }
        self.slots[index] = slot;
    }

    #[cold]
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(Self::FIRST_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![Slot::EMPTY; capacity]);
        for slot in old.into_iter().filter(|slot| slot.len != 0) {
            self.place(slot);
        }
    }
}

#[inline]
fn slot_index(hash: u64, mask: usize) -> usize {
    // The table index uses the low bits; xxh3 mixes them as well as the high ones.
    #[allow(clippy::cast_possible_truncation)]
    let low = hash as usize;
    low & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_across_growth_and_nothing_else() {
        let mut cache = PrefixCache::default();
        let prefixes: Vec<String> = (0..5_000).map(|i| format!("https://s{i}.com")).collect();
        for (answer, prefix) in prefixes.iter().enumerate() {
            let h = cache.hash(prefix.as_bytes());
            assert_eq!(cache.get(prefix.as_bytes(), h), None);
            assert!(cache.insert(prefix.as_bytes(), h, u32::try_from(answer).unwrap()));
        }
        for (answer, prefix) in prefixes.iter().enumerate() {
            let h = cache.hash(prefix.as_bytes());
            assert_eq!(
                cache.get(prefix.as_bytes(), h),
                Some(u32::try_from(answer).unwrap())
            );
        }
        assert_eq!(
            cache.get(b"https://s5000.com", cache.hash(b"https://s5000.com")),
            None
        );
    }

    #[test]
    fn equal_hashes_of_different_prefixes_are_told_apart_by_their_bytes() {
        let mut cache = PrefixCache::default();
        // The same (forced) hash for two prefixes: the second probes past the first.
        assert!(cache.insert(b"http://a", 7, 1));
        assert!(cache.insert(b"http://b", 7, 2));
        assert_eq!(cache.get(b"http://a", 7), Some(1));
        assert_eq!(cache.get(b"http://b", 7), Some(2));
        assert_eq!(cache.get(b"http://c", 7), None);
    }

    #[test]
    fn long_prefixes_are_kept_whole_in_the_arena() {
        let mut cache = PrefixCache::default();
        let long = format!("https://{}.example.com", "a".repeat(60));
        let longer = format!("{long}:8080");
        assert!(cache.insert(long.as_bytes(), cache.hash(long.as_bytes()), 1));
        assert!(cache.insert(longer.as_bytes(), cache.hash(longer.as_bytes()), 2));
        assert_eq!(
            cache.get(long.as_bytes(), cache.hash(long.as_bytes())),
            Some(1)
        );
        assert_eq!(
            cache.get(longer.as_bytes(), cache.hash(longer.as_bytes())),
            Some(2)
        );
        let other = long.replace("aaa.", "aab.");
        assert_eq!(
            cache.get(other.as_bytes(), cache.hash(long.as_bytes())),
            None
        );
    }

    #[test]
    fn each_cache_hashes_with_its_own_seed() {
        // A site cannot precompute colliding prefixes: the slots differ from cache to cache.
        let caches: Vec<PrefixCache> = (0..4).map(|_| PrefixCache::default()).collect();
        let hashes: std::collections::HashSet<u64> = caches
            .iter()
            .map(|c| c.hash(b"https://a.example"))
            .collect();
        assert!(hashes.len() > 1, "four caches, one hash: not seeded");
    }
}
