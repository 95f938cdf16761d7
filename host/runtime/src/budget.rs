//! One memory budget per run for everything a plugin can make the host hold:
//! all of its linear memories and tables together (a component may declare
//! many), and the decoded pixels of the images its handles keep. What the
//! engine holds for a request is bounded by the engine's own admission
//! limits, not here.

use wasmtime::{ResourceLimiter, Result};

/// What one table element costs the host: a pointer.
const TABLE_ELEMENT_BYTES: usize = 8;

/// Instances, tables and memories a plugin may create (a component of a
/// few crates needs a handful of each).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 256;
const MAX_MEMORIES: usize = 64;

const MIB: usize = 1 << 20;

/// The memory a run's plugin holds, against its limit.
#[derive(Debug)]
pub struct RunBudget {
    limit: usize,
    wasm_memory: usize,
    tables: usize,
    images: usize,
    ran_out: Option<String>,
}

impl RunBudget {
    pub fn new(limit: usize) -> RunBudget {
        RunBudget {
            limit,
            wasm_memory: 0,
            tables: 0,
            images: 0,
            ran_out: None,
        }
    }

    fn used(&self) -> usize {
        self.wasm_memory + self.tables + self.images
    }

    fn fits(&self, more: usize) -> bool {
        self.used().saturating_add(more) <= self.limit
    }

    /// What the budget holds, for messages.
    fn holding(&self) -> String {
        let mib = |b: usize| b as f64 / MIB as f64;
        format!(
            "the plugin's memories hold {:.1} MiB, its tables {:.1} MiB, its images {:.1} MiB",
            mib(self.wasm_memory),
            mib(self.tables),
            mib(self.images)
        )
    }

    /// Why the budget refused `more` bytes of `what`.
    fn refusal(&self, what: &str, more: usize) -> String {
        format!(
            "the run's memory budget of {} MiB (--memory-mb) ran out: {}, and it asked for {:.1} MiB more {what}",
            self.limit / MIB,
            self.holding(),
            more as f64 / MIB as f64
        )
    }

    /// Whether an image of `bytes` of pixels would fit, or why not.
    pub fn check_image(&self, bytes: usize) -> std::result::Result<(), String> {
        if self.fits(bytes) {
            Ok(())
        } else {
            Err(format!(
                "{}; drop images it no longer needs",
                self.refusal("for an image", bytes)
            ))
        }
    }

    /// Takes an image of `bytes` of pixels into the budget, or says why not.
    pub fn take_image(&mut self, bytes: usize) -> std::result::Result<(), String> {
        self.check_image(bytes)?;
        self.images += bytes;
        Ok(())
    }

    /// Gives back the pixels of a dropped image.
    pub fn release_image(&mut self, bytes: usize) {
        self.images = self.images.saturating_sub(bytes);
    }

    /// Why a growth of the plugin's memories or tables was refused, if one
    /// was: the reason a trap that followed should give.
    pub fn ran_out(&self) -> Option<&str> {
        self.ran_out.as_deref()
    }
}

impl ResourceLimiter for RunBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        let more = desired.saturating_sub(current);
        if !self.fits(more) {
            // Refused, not trapped: `memory.grow` returns -1 and the plugin
            // may handle it (Rust's `try_reserve` does).
            self.ran_out = Some(self.refusal("for its memory", more));
            return Ok(false);
        }
        self.wasm_memory += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        let more = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        if !self.fits(more) {
            self.ran_out = Some(self.refusal("for a table", more));
            return Ok(false);
        }
        self.tables += more;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    /// A module with `n` memories of one page, each growable by `pages`
    /// pages, and a table growable by `elements`, from the binary format
    /// written out by hand (no text-format parser among the dependencies).
    fn many_memories(n: u32) -> Vec<u8> {
        fn leb(mut v: u32, out: &mut Vec<u8>) {
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
            out.push(id);
            leb(body.len() as u32, out);
            out.extend(body);
        }
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // Types: () -> i32 and (i32) -> i32.
        section(1, vec![2, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f], &mut m);
        // Functions: grow_all (type 1), grow_table (type 1).
        section(3, vec![2, 1, 1], &mut m);
        // Table: funcref, min 0.
        section(4, vec![1, 0x70, 0, 0], &mut m);
        // Memories: n of min 1 page.
        let mut mems = vec![];
        leb(n, &mut mems);
        for _ in 0..n {
            mems.extend([0, 1]);
        }
        section(5, mems, &mut m);
        // Exports: "grow_all" func 0, "grow_table" func 1.
        let mut exports = vec![2];
        exports.push(8);
        exports.extend(b"grow_all");
        exports.extend([0, 0]);
        exports.push(10);
        exports.extend(b"grow_table");
        exports.extend([0, 1]);
        section(7, exports, &mut m);
        // grow_all(pages): grows every memory by `pages`; returns the sum of
        // the results (-1 for each refusal).
        let mut body = vec![0];
        body.extend([0x41, 0]); // i32.const 0
        for i in 0..n {
            body.extend([0x20, 0]); // local.get 0
            body.push(0x40); // memory.grow
            leb(i, &mut body);
            body.push(0x6a); // i32.add
        }
        body.push(0x0b);
        let mut grow_table = vec![0];
        grow_table.extend([0xd0, 0x70]); // ref.null func
        grow_table.extend([0x20, 0]); // local.get 0
        grow_table.extend([0xfc, 15, 0]); // table.grow 0
        grow_table.push(0x0b);
        let mut code = vec![2];
        for f in [body, grow_table] {
            leb(f.len() as u32, &mut code);
            code.extend(f);
        }
        section(10, code, &mut m);
        m
    }

    fn instance(budget_mib: usize, memories: u32) -> (Store<RunBudget>, Instance) {
        let mut config = wasmtime::Config::new();
        config.wasm_multi_memory(true);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, many_memories(memories)).unwrap();
        let mut store = Store::new(&engine, RunBudget::new(budget_mib * MIB));
        store.limiter(|b| b);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        (store, instance)
    }

    #[test]
    fn all_memories_together_stay_within_the_budget() {
        // 8 memories of one page, each asking for 16 MiB more: 128 MiB
        // against 64. Three grow (each returns its old size, 1 page), five
        // are refused (-1 each).
        let (mut store, instance) = instance(64, 8);
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_all")
            .unwrap();
        assert_eq!(grow.call(&mut store, 256).unwrap(), 3 - 5);
        let budget = store.data();
        assert!(budget.used() <= 64 * MIB, "{} bytes", budget.used());
        assert!(budget.ran_out().unwrap().contains("64 MiB"));
    }

    #[test]
    fn a_table_counts_against_the_budget() {
        let (mut store, instance) = instance(8, 1);
        let grow = instance
            .get_typed_func::<i32, i32>(&mut store, "grow_table")
            .unwrap();
        // 500 million elements: about 4 GB of pointers.
        assert_eq!(grow.call(&mut store, 500_000_000).unwrap(), -1);
        assert!(store.data().ran_out().unwrap().contains("for a table"));
        // A small table still grows.
        assert_eq!(grow.call(&mut store, 1000).unwrap(), 0);
    }

    #[test]
    fn images_share_the_budget_with_memory() {
        let mut b = RunBudget::new(10 * MIB);
        b.take_image(6 * MIB).unwrap();
        let e = b.take_image(6 * MIB).unwrap_err();
        assert!(e.contains("10 MiB") && e.contains("images 6.0 MiB"), "{e}");
        b.release_image(6 * MIB);
        b.take_image(6 * MIB).unwrap();
    }
}
