//! Caches keyed on content, never on token ids alone (`docs/design.md`, "The
//! prefix cache keys on content"):
//! - the vision cache maps an image's pixel hash (plus processor settings and
//!   model identity) to its vision and DeepStack features;
//! - the prefix cache maps a chain of hashed token blocks, with each image's
//!   hash folded into the tokens it covers, to stored KV.

mod lru;
mod prefix;
mod vision;

use serde::{Deserialize, Serialize};

pub use lru::ByteLru;
pub use prefix::{PrefixCache, PrefixLookup, TokenKey, token_keys};
pub use vision::VisionCache;

/// How much of a request's prompt came from the prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixOutcome {
    /// The cache is off.
    Disabled,
    Miss,
    /// Some leading tokens were reused.
    Partial,
    /// The whole prompt was cached; only its last token was recomputed.
    Exact,
}

/// What one request reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    pub prefix: PrefixOutcome,
    /// Prompt tokens whose KV came from the cache.
    pub reused_tokens: usize,
    /// Images whose features came from the vision cache.
    pub vision_hits: usize,
    /// Images encoded by the vision tower in this request.
    pub vision_misses: usize,
    /// Images not needed at all, because the prefix cache covered them.
    pub vision_skipped: usize,
}

/// Counters since the cache was created or cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    pub enabled: bool,
    pub prefix_lookups: u64,
    pub prefix_exact_hits: u64,
    pub prefix_partial_hits: u64,
    pub prefix_misses: u64,
    pub prefix_reused_tokens: u64,
    pub prefix_evictions: u64,
    pub prefix_entries: u64,
    pub prefix_bytes: u64,
    pub prefix_budget_bytes: u64,
    pub vision_lookups: u64,
    pub vision_hits: u64,
    pub vision_misses: u64,
    pub vision_evictions: u64,
    pub vision_entries: u64,
    pub vision_bytes: u64,
    pub vision_budget_bytes: u64,
}
