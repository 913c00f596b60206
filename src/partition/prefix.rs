//! A flat cache from a URL's `scheme://authority` prefix to a 32-bit answer.
//!
//! Distinct prefixes are few (about one per site) and one is looked up per URL, so this lookup
//! is the partitioner's hot path. The prefixes' bytes live one after the other in one arena,
//! and each slot of an open-addressing table (linear probing, at most half full) holds the
//! prefix's hash beside its place in the arena and its answer: a hit reads one 24-byte slot,
//! compares the hash and then the bytes once. (A `HashMap<String, _>` reads a slot, then
//! follows a pointer to a separately allocated key: one more cache miss per URL.)

use xxhash_rust::xxh3::xxh3_64;

/// One slot; `len == 0` marks an empty slot (a cached prefix is never empty).
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    start: u32,
    len: u32,
    answer: u32,
}

/// Prefix bytes -> answer.
#[derive(Debug, Default)]
pub(super) struct PrefixCache {
    arena: Vec<u8>,
    slots: Vec<Slot>,
    used: usize,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({}+{} -> {})", self.start, self.len, self.answer)
    }
}

/// The hash the cache uses for `prefix` (computed once by the caller, for the lookup and the
/// insertion after a miss).
#[inline]
pub(super) fn hash(prefix: &[u8]) -> u64 {
    xxh3_64(prefix)
}

impl PrefixCache {
    const FIRST_CAPACITY: usize = 1024;

    /// The answer cached for `prefix` (whose hash is `hash`).
    #[inline]
    pub(super) fn get(&self, prefix: &[u8], hash: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut index = slot_index(hash, mask);
        loop {
            let slot = self.slots[index];
            if slot.len == 0 {
                return None;
            }
            if slot.hash == hash && self.bytes(slot) == prefix {
                return Some(slot.answer);
            }
            index = (index + 1) & mask;
        }
    }

    /// Caches `answer` for `prefix` (not cached yet). Returns false, caching nothing, when
    /// the arena would pass 4 GiB (the caller then simply computes such URLs each time).
    pub(super) fn insert(&mut self, prefix: &[u8], hash: u64, answer: u32) -> bool {
        let (Ok(start), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(prefix.len()))
        else {
            return false;
        };
        if len == 0 || start.checked_add(len).is_none() {
            return false;
        }
        if (self.used + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.arena.extend_from_slice(prefix);
        self.place(Slot {
            hash,
            start,
            len,
            answer,
        });
        self.used += 1;
        true
    }

    fn bytes(&self, slot: Slot) -> &[u8] {
        let start = slot.start as usize;
        &self.arena[start..start + slot.len as usize]
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut index = slot_index(slot.hash, mask);
        while self.slots[index].len != 0 {
            index = (index + 1) & mask;
        }
        self.slots[index] = slot;
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(Self::FIRST_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
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
            let h = hash(prefix.as_bytes());
            assert_eq!(cache.get(prefix.as_bytes(), h), None);
            assert!(cache.insert(prefix.as_bytes(), h, u32::try_from(answer).unwrap()));
        }
        for (answer, prefix) in prefixes.iter().enumerate() {
            let h = hash(prefix.as_bytes());
            assert_eq!(
                cache.get(prefix.as_bytes(), h),
                Some(u32::try_from(answer).unwrap())
            );
        }
        assert_eq!(cache.get(b"https://s5000.com", hash(b"https://s5000.com")), None);
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
}
