//! Prompt prefix → KV. Each prompt is a sequence of token keys (text ids, or
//! an image hash with the row index for image placeholders), cut into blocks
//! whose hashes form a chain. A lookup finds the entry sharing the longest
//! chain of blocks, then extends the match token by token.

use std::collections::HashMap;

use mlx::Array;

use super::ByteLru;
use crate::error::Result;
use crate::model::ImageSpan;

/// Tokens per hashed block.
const BLOCK: usize = 16;

/// The identity of one prompt position: two positions are interchangeable in
/// a KV cache only if their keys are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKey {
    Text(u32),
    Image { image: [u8; 32], row: u32 },
}

impl TokenKey {
    fn hash_into(&self, h: &mut blake3::Hasher) {
        match self {
            TokenKey::Text(id) => {
                h.update(&[0]);
                h.update(&id.to_le_bytes());
            }
            TokenKey::Image { image, row } => {
                h.update(&[1]);
                h.update(image);
                h.update(&row.to_le_bytes());
            }
        }
    }
}

/// Keys for `ids`, where the `i`-th placeholder run shows image `image_hashes[i]`.
pub fn token_keys(
    ids: &[u32],
    spans: &[ImageSpan],
    image_hashes: &[blake3::Hash],
) -> Vec<TokenKey> {
    let mut keys: Vec<TokenKey> = ids.iter().map(|&id| TokenKey::Text(id)).collect();
    for (span, hash) in spans.iter().zip(image_hashes) {
        for r in 0..span.len {
            keys[span.start + r] = TokenKey::Image {
                image: *hash.as_bytes(),
                row: r as u32,
            };
        }
    }
    keys
}

fn block_chain(keys: &[TokenKey]) -> Vec<blake3::Hash> {
    let mut chain = Vec::with_capacity(keys.len() / BLOCK);
    let mut prev = blake3::hash(b"prefix-root");
    for block in keys.chunks_exact(BLOCK) {
        let mut h = blake3::Hasher::new();
        h.update(prev.as_bytes());
        for k in block {
            k.hash_into(&mut h);
        }
        prev = h.finalize();
        chain.push(prev);
    }
    chain
}

struct Entry {
    keys: Vec<TokenKey>,
    chain: Vec<blake3::Hash>,
    /// Per layer `(keys, values)`, each `(1, H, len, D)`.
    kv: Vec<(Array, Array)>,
}

/// The result of a lookup: how many prompt tokens to reuse, and their KV.
pub struct PrefixLookup {
    /// Tokens matched (can equal the prompt length).
    pub matched: usize,
    /// Tokens to reuse: `matched`, but at most `prompt length − 1` so the
    /// last token is recomputed to give logits.
    pub reuse: usize,
    pub kv: Vec<(Array, Array)>,
}

pub struct PrefixCache {
    lru: ByteLru<u64, Entry>,
    by_block: HashMap<blake3::Hash, Vec<u64>>,
    next_id: u64,
    pub lookups: u64,
    pub exact_hits: u64,
    pub partial_hits: u64,
    pub misses: u64,
    pub reused_tokens: u64,
}

impl PrefixCache {
    pub fn new(budget: usize) -> PrefixCache {
        PrefixCache {
            lru: ByteLru::new(budget),
            by_block: HashMap::new(),
            next_id: 0,
            lookups: 0,
            exact_hits: 0,
            partial_hits: 0,
            misses: 0,
            reused_tokens: 0,
        }
    }

    /// Finds the longest cached prefix of `keys`; counts the outcome.
    pub fn lookup(&mut self, keys: &[TokenKey]) -> Result<Option<PrefixLookup>> {
        self.lookups += 1;
        let chain = block_chain(keys);
        // Deepest block of the chain that some entry also has.
        let mut best: Option<(usize, u64)> = None;
        for (i, h) in chain.iter().enumerate().rev() {
            if let Some(ids) = self.by_block.get(h)
                && let Some(&id) = ids.iter().find(|id| self.lru.peek(id).is_some())
            {
                best = Some(((i + 1) * BLOCK, id));
                break;
            }
        }
        // Below one full block, compare the first block's tokens with every
        // entry (bounded: BLOCK comparisons per entry).
        let best = best.or_else(|| {
            self.lru
                .keys()
                .filter_map(|id| {
                    let e = self.lru.peek(id)?;
                    let n = keys
                        .iter()
                        .zip(&e.keys)
                        .take(BLOCK)
                        .take_while(|(a, b)| a == b)
                        .count();
                    (n > 0).then_some((0, *id, n))
                })
                .max_by_key(|(_, _, n)| *n)
                .map(|(start, id, _)| (start, id))
        });
        let Some((mut matched, id)) = best else {
            self.misses += 1;
            return Ok(None);
        };
        // Extend token by token past the last shared block.
        let entry = self.lru.get(&id).expect("found above");
        while matched < keys.len()
            && matched < entry.keys.len()
            && keys[matched] == entry.keys[matched]
        {
            matched += 1;
        }
        let reuse = matched.min(keys.len() - 1);
        if reuse == 0 {
            self.misses += 1;
            return Ok(None);
        }
        if matched == keys.len() {
            self.exact_hits += 1;
        } else {
            self.partial_hits += 1;
        }
        self.reused_tokens += reuse as u64;
        let kv = entry
            .kv
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.slice_axis(2, 0, reuse as i32)?,
                    v.slice_axis(2, 0, reuse as i32)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(PrefixLookup { matched, reuse, kv }))
    }

    /// Stores the KV of a prompt (`kv` covers exactly `keys`). Prompts shorter
    /// than one block are not worth an entry.
    pub fn insert(&mut self, keys: Vec<TokenKey>, kv: Vec<(Array, Array)>) {
        if keys.len() < BLOCK {
            return;
        }
        let chain = block_chain(&keys);
        // An entry with the same full chain and length already covers it.
        if let Some(ids) = chain.last().and_then(|h| self.by_block.get(h)) {
            for id in ids.clone() {
                if self.lru.peek(&id).is_some_and(|e| e.keys == keys) {
                    self.lru.get(&id);
                    return;
                }
            }
        }
        let bytes: usize = kv.iter().map(|(k, v)| k.nbytes() + v.nbytes()).sum();
        let id = self.next_id;
        self.next_id += 1;
        for h in &chain {
            self.by_block.entry(*h).or_default().push(id);
        }
        // What comes back was evicted (or did not fit at all).
        for (gone, entry) in self.lru.insert(id, Entry { keys, chain, kv }, bytes) {
            self.forget(gone, &entry.chain);
        }
    }

    fn forget(&mut self, id: u64, chain: &[blake3::Hash]) {
        for h in chain {
            if let Some(ids) = self.by_block.get_mut(h) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.by_block.remove(h);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.lru.clear();
        self.by_block.clear();
        self.lookups = 0;
        self.exact_hits = 0;
        self.partial_hits = 0;
        self.misses = 0;
        self.reused_tokens = 0;
    }

    pub fn set_budget(&mut self, bytes: usize) {
        for (gone, entry) in self.lru.set_budget(bytes) {
            self.forget(gone, &entry.chain);
        }
    }

    pub fn evictions(&self) -> u64 {
        self.lru.evictions()
    }

    pub fn bytes(&self) -> usize {
        self.lru.used()
    }

    pub fn budget(&self) -> usize {
        self.lru.budget()
    }

    pub fn entries(&self) -> usize {
        self.lru.len()
    }
}
