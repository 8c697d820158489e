//! Instances from a pool: each tier's engine keeps a fixed number of memory, table and
//! stack slots reserved, so instantiating a plugin reuses a slot instead of mapping fresh
//! memory for every call.
//!
//! The pool decides only where an instance's memory comes from, never how much a call may
//! use: the store's limiter (memory and tables against one byte limit, and the counts of
//! instances, tables and memories) applies the same under both allocators. A component the
//! pool's fixed sizes cannot hold, and a call that finds every slot taken, are served by
//! an engine with the same configuration that allocates on demand. When the pool's
//! address space cannot be reserved at all (a low `ulimit -v`), every instance is
//! allocated on demand.
//!
//! The allocator does not change compiled code: pooled and on-demand engines share one
//! compatibility hash, so artifacts (embedded, cached) load into either.

use wasmtime::{Config, Engine, PoolingAllocationConfig};

use super::engine_config::{self, Tier};

/// Component instances (calls) one engine's pool serves at once; a call beyond them is
/// allocated on demand.
pub const INSTANCES: u32 = 16;

/// Core instances one component may hold to come from the pool (a Rust plugin has 3; the
/// Python and JavaScript templates fit too).
pub const CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// Linear memories one component may define to come from the pool.
pub const MEMORIES_PER_COMPONENT: u32 = 4;

/// Tables one component may define to come from the pool.
pub const TABLES_PER_COMPONENT: u32 = 16;

/// Elements of one pooled table: a table declared larger is allocated on demand, and a
/// pooled table grows no further (`table.grow` returns -1, where on demand the memory
/// limit would stop it later). 1 Mi elements is 8 MiB of table; the plugins built by
/// Pier's templates and toolchains declare far fewer.
pub const TABLE_ELEMENTS: usize = 1 << 20;

/// Largest pooled linear memory: 4 GiB, all a 32-bit memory can address, so that the
/// store's limiter, never the pool, is what stops a memory from growing.
pub const MAX_MEMORY: usize = 4 << 30;

/// Bytes of each memory and table a freed slot resets in place rather than unmapping.
pub const KEEP_RESIDENT: usize = 1 << 20;

/// The configuration of `tier` with instances from a pool.
pub fn pooled_config(tier: Tier) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(INSTANCES)
        .total_core_instances(INSTANCES * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        // Most plugins define one memory and two tables.
        .total_memories(INSTANCES * 2)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_memories_per_module(MEMORIES_PER_COMPONENT)
        .max_memory_size(MAX_MEMORY)
        .total_tables(INSTANCES * 4)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_tables_per_module(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(INSTANCES)
        // A freed slot is reset before it is reused, so one call never sees another's
        // memory. Resetting with the pages a call dirtied (found by the `PAGEMAP_SCAN`
        // ioctl, on Linux 6.7 and later) keeps them mapped for the next call, instead of
        // unmapping them and faulting them in again.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    let mut config = engine_config::engine_config_for(tier);
    config.allocation_strategy(pool);
    config
}

/// One tier's engines: `pooled` serves what fits its pool, `on_demand` the rest. They are
/// the same engine when the pool could not be made.
#[derive(Clone)]
pub struct Engines {
    /// Instances from the pool (or on demand, when there is no pool).
    pub pooled: Engine,
    /// Instances allocated on demand.
    pub on_demand: Engine,
}

impl Engines {
    /// The engines of `tier`.
    pub fn new(tier: Tier) -> wasmtime::Result<Self> {
        let on_demand = Engine::new(&engine_config::engine_config_for(tier))?;
        let pooled = match Engine::new(&pooled_config(tier)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::debug!("no instance pool for {} ({e}); instances are allocated on demand", tier.compiler());
                on_demand.clone()
            }
        };
        Ok(Engines { pooled, on_demand })
    }

    /// Whether instances come from a pool.
    pub fn has_pool(&self) -> bool {
        !Engine::same(&self.pooled, &self.on_demand)
    }

    /// Both engines (one, when there is no pool).
    pub fn all(&self) -> Vec<Engine> {
        if self.has_pool() { vec![self.pooled.clone(), self.on_demand.clone()] } else { vec![self.pooled.clone()] }
    }

    /// The component `make` builds in the pooled engine; in the on-demand engine when the
    /// pool refuses it (more instances, memories or tables than a slot holds). Any error
    /// is retried on demand, so a component neither engine can make is tried twice; the
    /// first engine's error is the one returned.
    pub fn component<T>(&self, make: impl Fn(&Engine) -> wasmtime::Result<T>) -> wasmtime::Result<T> {
        match make(&self.pooled) {
            Err(e) if self.has_pool() => match make(&self.on_demand) {
                Ok(made) => {
                    tracing::debug!("the instance pool cannot hold this plugin ({e:#}); it is allocated on demand");
                    Ok(made)
                }
                Err(_) => Err(e),
            },
            made => made,
        }
    }
}

/// Whether `error` says that every slot of a pool is taken.
pub fn exhausted(error: &wasmtime::Error) -> bool {
    error.chain().any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_and_on_demand_engines_load_the_same_artifacts() {
        for tier in [Tier::Optimized, Tier::Baseline] {
            let engines = Engines::new(tier).unwrap();
            assert!(engines.has_pool(), "{tier:?}: the pool could not be reserved");
            assert_eq!(
                engine_config::engine_key(&engines.pooled),
                engine_config::engine_key(&engines.on_demand),
                "{tier:?}"
            );
        }
        // And the embedded artifacts were compiled with the configuration without a pool.
        let optimized = Engines::new(Tier::Optimized).unwrap();
        assert!(super::super::builtin::artifact_fits(&engine_config::engine_key(&optimized.pooled)));
    }
}
