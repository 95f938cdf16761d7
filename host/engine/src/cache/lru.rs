//! A byte-budgeted LRU map: the storage under both caches.

use std::collections::HashMap;
use std::hash::Hash;

/// Entries with a size in bytes; inserting past the budget evicts the least
/// recently used entries first.
pub struct ByteLru<K, V> {
    budget: usize,
    used: usize,
    clock: u64,
    entries: HashMap<K, (V, usize, u64)>,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    pub fn new(budget: usize) -> ByteLru<K, V> {
        ByteLru {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            evictions: 0,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|e| {
            e.2 = clock;
            &e.0
        })
    }

    /// Looks without counting as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|e| &e.0)
    }

    /// Inserts, evicting as needed, and returns what was evicted. An entry
    /// larger than the whole budget is returned instead of stored.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> Vec<(K, V)> {
        if let Some((_, old, _)) = self.entries.remove(&key) {
            self.used -= old;
        }
        if bytes > self.budget {
            return vec![(key, value)];
        }
        let evicted = self.evict_down_to(self.budget - bytes);
        self.clock += 1;
        self.entries.insert(key, (value, bytes, self.clock));
        self.used += bytes;
        evicted
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, size, _)| {
            self.used -= size;
            v
        })
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// Changes the budget, evicting down to it, and returns what was evicted.
    pub fn set_budget(&mut self, budget: usize) -> Vec<(K, V)> {
        self.budget = budget;
        self.evict_down_to(budget)
    }

    fn evict_down_to(&mut self, limit: usize) -> Vec<(K, V)> {
        let mut evicted = vec![];
        while self.used > limit {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let (value, size, _) = self.entries.remove(&oldest).expect("key from the map");
            self.used -= size;
            self.evictions += 1;
            evicted.push((oldest, value));
        }
        evicted
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut c = ByteLru::new(100);
        c.insert("a", 1, 40);
        c.insert("b", 2, 40);
        assert!(c.get(&"a").is_some()); // a is now newer than b
        let evicted = c.insert("c", 3, 40);
        assert_eq!(evicted, vec![("b", 2)]);
        assert_eq!(c.used(), 80);
        assert_eq!(c.insert("huge", 4, 101), vec![("huge", 4)]);
        assert!(c.peek(&"huge").is_none());
        assert_eq!(c.set_budget(40), vec![("a", 1)]);
        assert_eq!(c.evictions(), 2);
    }
}
