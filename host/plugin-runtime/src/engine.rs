//! The one wasmtime engine every plugin runs in, and the thread that ticks its epoch.
//!
//! The pooling allocator makes a fresh instance per call cost microseconds; the epoch is
//! the clock the per-call time limit reads (see [`crate::sandbox`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::PluginLimits;

/// How often the epoch ticks; the granularity of the CPU-time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of each linear memory and table a finished instance leaves mapped and zeroes
/// itself (with `PAGEMAP_SCAN` on Linux 6.7+, only the pages it touched), instead of
/// returning them to the kernel; the next call into the same slot then takes no page
/// faults. A page fault costs far more than zeroing the page, above all in a VM.
const KEEP_RESIDENT: usize = 4 << 20;
/// Component instances the pooling allocator keeps slots for; a call beyond this many at
/// once fails to instantiate (calls run one at a time today).
const POOL_INSTANCES: u32 = 100;
/// Ticks the engine's epoch until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine every plugin runs in: epoch interruption for time limits, and the pooling
/// allocator so a fresh instance per call costs microseconds. Falls back to on-demand
/// allocation when the pool's address space cannot be reserved.
pub(crate) fn new_engine(limits: &PluginLimits) -> Result<(Engine, bool)> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        // Interpreters (componentize-py, componentize-js) link many core modules and
        // have large function tables.
        .total_core_instances(POOL_INSTANCES * 20)
        .total_memories(POOL_INSTANCES * 4)
        .total_tables(POOL_INSTANCES * 20)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(limits.memory_bytes)
        .table_elements(100_000)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Ok(engine) = Engine::new(&pooled) {
        return Ok((engine, true));
    }
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
    Ok((engine, false))
}
