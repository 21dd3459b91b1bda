//! What one call's store holds and may do: the WASI context built from the plugin's
//! grants, the HTTP gate, the memory limiter and the caps on host-side tables, handles,
//! instances, tables and memories.
//!
//! Every call (and every `describe()`) gets a fresh store from [`new_store`], so nothing
//! a call leaves behind reaches the next one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings;
use crate::log;
use crate::manifest::{Access, Grants};
use crate::net::NetworkGate;

/// Bytes of a plugin's stderr kept for error reports.
const STDERR_CAPTURE: usize = 16 * 1024;
/// What one store (one call) may hold in host-side tables and instances. Each number is
/// what a tool plausibly needs, with a wide margin, far below wasmtime's defaults (a
/// million table entries, 100,000 handles, 10,000 instances/tables/memories):
/// - WASI resources (open files and directories, streams, pollables, HTTP requests and
///   responses): a tool walking a tree keeps one descriptor and stream per level open,
///   an interpreter a few dozen; 10,000 live at once is generous, and bounds the host
///   memory a guest can pin by opening and never closing.
const MAX_RESOURCES: usize = 10_000;
/// - Component-model handles the guest creates itself (`resource.new`).
const MAX_COMPONENT_HANDLES: usize = 10_000;
/// - Core instances, tables and memories of one component: the interpreter-based
///   components (componentize-py, componentize-js) link the most, under twenty core
///   instances, a few dozen tables and a handful of memories.
const MAX_CORE_INSTANCES: usize = 100;
const MAX_TABLES: usize = 100;
const MAX_MEMORIES: usize = 20;
/// - Elements of one table: the interpreters' function tables hold tens of thousands.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;
// Left at wasmtime's defaults, on purpose:
// - the host-call allowance (`Store::set_hostcall_fuel`, 128 MiB): it bounds each single
//   copy from the guest (reset at every host call, nothing accumulates), every such copy
//   is already bounded by the guest's memory limit, and the same allowance bounds lifting
//   a call's result, which the host accepts and then cuts to the output limit with a
//   marker; lowering it would turn a long answer into a crash. `host.log`, the one import
//   that kept what it was given, no longer copies its message at all (see [`log`]);
// - wasi:http's header limit (128 KiB per fields resource) and outgoing-body buffering
//   (one chunk of at most 1 MiB): both already small and per request.

/// Per-call state of a store: the WASI and HTTP contexts and the limits.
pub(crate) struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) network: NetworkGate,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) logs: log::CallLog,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.network,
        }
    }
}

impl bindings::agent::tool::types::Host for CallState {}

/// The memory limit of one call. Unlike a plain refusal, which many languages turn into
/// an abort with no reason given, going over the limit stops the call with an error that
/// says so.
struct MemoryLimiter {
    /// The most bytes all linear memories of the call may hold together.
    limit: usize,
    /// Bytes the call's memories hold now.
    used: usize,
}

/// Raised inside the store when a plugin asks for more memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin asked for {wanted} bytes of linear memory, over its limit of {limit}")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) wanted: usize,
    pub(crate) limit: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_sub(current) + desired;
        if wanted > self.limit {
            return Err(MemoryLimitExceeded {
                wanted,
                limit: self.limit,
            }
            .into());
        }
        self.used = wanted;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Where a store's file operations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOps {
    /// On tokio's blocking pool (wasmtime-wasi's default): the store is driven by a
    /// runtime worker, which must never block.
    Pooled,
    /// On the thread driving the store, which is a thread of its own (see
    /// [`crate::PluginHost::call`]): each file operation then costs a system call instead
    /// of two thread hand-offs.
    Inline,
}

/// A fresh store for one call (or one `describe()`): a WASI context with only what
/// `grants` name, the HTTP gate, bounded tables and handles, the memory limit, and an
/// epoch deadline that yields every tick and interrupts running wasm past `limit`.
pub(crate) fn new_store(
    engine: &Engine,
    workspace: &Path,
    memory_bytes: usize,
    grants: &Grants,
    env: &[(String, String)],
    limit: Duration,
    file_ops: FileOps,
) -> Result<(Store<CallState>, MemoryOutputPipe)> {
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_blocking_current_thread(file_ops == FileOps::Inline);
    wasi.stderr(stderr.clone());
    for (name, value) in env {
        wasi.env(name, value);
    }
    if let Some(perms) = perms(grants.workspace) {
        let absolute = workspace.to_string_lossy();
        wasi.preopened_dir(workspace, ".", perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("opening the workspace {}", workspace.display()))?;
        wasi.preopened_dir(workspace, absolute.as_ref(), perms)
            .map_err(anyhow::Error::from)?;
    }
    for dir in &grants.dirs {
        if let Some(perms) = perms(dir.access) {
            let guest = dir.path.to_string_lossy();
            wasi.preopened_dir(&dir.path, guest.as_ref(), perms)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("opening the granted directory {guest}"))?;
        }
    }
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let state = CallState {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        network: NetworkGate::new(grants.network.clone()),
        table,
        limiter: MemoryLimiter {
            limit: memory_bytes,
            used: 0,
        },
        logs: log::CallLog::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_max_component_handles(MAX_COMPONENT_HANDLES);
    // Running wasm checks the clock every tick and yields to the async runtime, so a
    // busy plugin never holds a runtime thread; past the limit it is interrupted.
    let started = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if started.elapsed() >= limit {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    Ok((store, stderr))
}

fn perms(access: Access) -> Option<FsPerms> {
    match access {
        Access::None => None,
        Access::ReadOnly => Some(FsPerms::ReadOnly),
        Access::ReadWrite => Some(FsPerms::ReadWrite),
    }
}
