//! Image hash → vision features (merged rows and DeepStack levels). Values
//! are array handles, so a hit clones handles, not data.

use super::ByteLru;
use crate::model::VisionFeatures;

pub struct VisionCache {
    lru: ByteLru<blake3::Hash, VisionFeatures>,
    pub lookups: u64,
    pub hits: u64,
    pub misses: u64,
}

impl VisionCache {
    pub fn new(budget: usize) -> VisionCache {
        VisionCache {
            lru: ByteLru::new(budget),
            lookups: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, key: &blake3::Hash) -> Option<VisionFeatures> {
        self.lookups += 1;
        let hit = self.lru.get(key).cloned();
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    pub fn insert(&mut self, key: blake3::Hash, features: VisionFeatures) {
        let bytes = features.nbytes();
        self.lru.insert(key, features, bytes);
    }

    pub fn clear(&mut self) {
        self.lru.clear();
        self.lookups = 0;
        self.hits = 0;
        self.misses = 0;
    }

    pub fn set_budget(&mut self, bytes: usize) {
        self.lru.set_budget(bytes);
    }

    pub fn lru(&self) -> &ByteLru<blake3::Hash, VisionFeatures> {
        &self.lru
    }
}
