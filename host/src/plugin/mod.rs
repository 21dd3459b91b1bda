//! The plugin runtime: tool components in wasmtime, each call sandboxed and bounded.
//!
//! One [`Engine`] and one [`Linker`] serve the whole process. Each component is compiled
//! once (or loaded from the [`cache`]), linked once into an `InstancePre`, and asked for its
//! tools with `describe`. Every tool call then gets a fresh `Store` and instance, so calls
//! cannot leak state into each other, with:
//! - only the directories its grant names preopened (the built-in file tools get the
//!   workspace, read-write, mounted both as `.` and at its absolute path); `..`, absolute
//!   paths outside and symlinks that point out fail inside WASI, not by string checks;
//! - no environment, arguments, network or stdin; stderr captured for error reports;
//! - a CPU-time limit (epoch interruption, driven by a ticker thread), a linear-memory limit
//!   and an output-size limit.
//!
//! A trap, an endless loop or a memory bomb ends that one call with a [`CallError`]; the
//! host and the other tools keep working.

pub mod cache;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::tools::{ToolHints, ToolSpec};
use cache::{CacheOutcome, ComponentCache};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
    });
}

use bindings::agent::tool::host::LogLevel;
use bindings::agent::tool::types::{CallContext, ToolError};
use bindings::{Plugin as PluginBindings, PluginPre};

/// How often the epoch ticks; the granularity of the CPU-time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of a plugin's stderr kept for error reports.
const STDERR_CAPTURE: usize = 16 * 1024;

/// Bounds applied to every plugin call.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Wall-clock budget of one call (interruption by epoch deadline).
    pub time_limit: Duration,
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Longest text a call may return; longer output is cut with a marker.
    pub output_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            time_limit: Duration::from_secs(30),
            memory_bytes: 256 << 20,
            output_bytes: 100_000,
        }
    }
}

/// What a plugin may touch. Deny by default: a plugin without a grant sees no files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceAccess {
    None,
    ReadOnly,
    ReadWrite,
}

/// Why a tool call failed; shown to the model as an error tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned one of the WIT `tool-error` cases.
    #[error("{kind}: {message}")]
    Tool { kind: &'static str, message: String },
    /// The call ran past its CPU-time limit and was interrupted.
    #[error("timeout: the plugin did not finish within {0:?} and was stopped")]
    Timeout(Duration),
    /// The plugin trapped: a panic, an out-of-bounds access, running out of memory, ...
    #[error("the plugin crashed ({trap}){stderr}")]
    Trap { trap: String, stderr: String },
    /// Instantiation or the host side of the call failed.
    #[error("internal: {0:#}")]
    Host(anyhow::Error),
}

/// Per-call state of a store: the WASI context and the limits.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    logs: Vec<String>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::agent::tool::host::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) {
        const MAX_LOG_LINES: usize = 1000;
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push(format!("{level:?}: {message}"));
        }
    }
}

impl bindings::agent::tool::types::Host for CallState {}

/// Where a plugin came from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    BuiltIn,
    File(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::BuiltIn => f.write_str("built-in"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One loaded component, ready to be instantiated per call.
pub struct LoadedPlugin {
    pub name: String,
    pub source: PluginSource,
    pub tools: Vec<ToolSpec>,
    pub workspace_access: WorkspaceAccess,
    pub cache: CacheOutcome,
    pre: PluginPre<CallState>,
}

/// Ticks the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
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

/// The engine, the linker and every loaded plugin.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    limits: PluginLimits,
    workspace: PathBuf,
    plugins: Vec<LoadedPlugin>,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// `workspace` must be an absolute, canonical path.
    pub fn new(
        workspace: &Path,
        cache_dir: Option<PathBuf>,
        limits: PluginLimits,
    ) -> Result<PluginHost> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        PluginBindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the agent:tool host interface")?;
        Ok(PluginHost {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            cache: ComponentCache::new(cache_dir),
            limits,
            workspace: workspace.to_path_buf(),
            plugins: Vec::new(),
        })
    }

    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// Compiles (or loads from the cache) and links a component, asks it for its tools,
    /// and keeps it. Returns the plugin's index.
    pub fn load(
        &mut self,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        workspace_access: WorkspaceAccess,
    ) -> Result<usize> {
        let (component, cache) = self
            .cache
            .load(&self.engine, bytes)
            .with_context(|| format!("{source} is not a valid WebAssembly component"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("{source} does not fit the agent:tool@0.1 plugin world (wrong imports?)")
            })?;
        let pre = PluginPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{source} does not export the agent:tool/tool interface"))?;
        let tools = self
            .describe(&pre)
            .with_context(|| format!("calling describe() of {source}"))?;
        self.plugins.push(LoadedPlugin {
            name: name.to_string(),
            source,
            tools,
            workspace_access,
            cache,
            pre,
        });
        Ok(self.plugins.len() - 1)
    }

    /// Asks a component for its tools, in an instance that is granted nothing.
    fn describe(&self, pre: &PluginPre<CallState>) -> Result<Vec<ToolSpec>> {
        let (mut store, _stderr) = self.new_store(WorkspaceAccess::None)?;
        let instance = pre.instantiate(&mut store)?;
        let specs = instance.agent_tool_tool().call_describe(&mut store)?;
        let mut tools = Vec::with_capacity(specs.len());
        for spec in specs {
            let schema: serde_json::Value =
                serde_json::from_str(&spec.input_schema).map_err(|e| {
                    anyhow!(
                        "tool `{}`: the input schema is not valid JSON: {e}",
                        spec.name
                    )
                })?;
            let tool = ToolSpec {
                name: spec.name,
                description: spec.description,
                input_schema: schema,
                hints: ToolHints {
                    read_only: spec
                        .hints
                        .contains(bindings::agent::tool::types::ToolHints::READ_ONLY),
                    destructive: spec
                        .hints
                        .contains(bindings::agent::tool::types::ToolHints::DESTRUCTIVE),
                    idempotent: spec
                        .hints
                        .contains(bindings::agent::tool::types::ToolHints::IDEMPOTENT),
                },
            };
            tool.validate()?;
            tools.push(tool);
        }
        if tools.is_empty() {
            bail!("describe() returned no tools");
        }
        Ok(tools)
    }

    fn new_store(&self, access: WorkspaceAccess) -> Result<(Store<CallState>, MemoryOutputPipe)> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone());
        let perms = match access {
            WorkspaceAccess::None => None,
            WorkspaceAccess::ReadOnly => Some(FsPerms::ReadOnly),
            WorkspaceAccess::ReadWrite => Some(FsPerms::ReadWrite),
        };
        if let Some(perms) = perms {
            let absolute = self.workspace.to_string_lossy();
            wasi.preopened_dir(&self.workspace, ".", perms)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("opening the workspace {}", self.workspace.display()))?;
            wasi.preopened_dir(&self.workspace, absolute.as_ref(), perms)?;
        }
        let state = CallState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(64)
                .tables(64)
                .memories(64)
                .build(),
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let ticks = (self.limits.time_limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok((store, stderr))
    }

    /// Runs tool `tool` of plugin `index` in a fresh instance. Blocking: call it from a
    /// blocking thread.
    pub fn call(
        &self,
        index: usize,
        tool: &str,
        input: &str,
        call_id: &str,
    ) -> Result<String, CallError> {
        let plugin = &self.plugins[index];
        let (mut store, stderr) = self
            .new_store(plugin.workspace_access)
            .map_err(CallError::Host)?;
        let instance = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Host(e.into()))?;
        let context = CallContext {
            call_id: call_id.to_string(),
            time_limit_ms: self.limits.time_limit.as_millis() as u64,
            workspace: match plugin.workspace_access {
                WorkspaceAccess::None => String::new(),
                _ => self.workspace.to_string_lossy().into_owned(),
            },
        };
        let result = instance
            .agent_tool_tool()
            .call_call(&mut store, tool, input, &context);
        match result {
            Ok(Ok(text)) => Ok(cap_output(text, self.limits.output_bytes)),
            Ok(Err(error)) => Err(tool_error(error)),
            Err(error) => Err(self.trap_error(error.into(), &stderr)),
        }
    }

    fn trap_error(&self, error: anyhow::Error, stderr: &MemoryOutputPipe) -> CallError {
        if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
            return CallError::Timeout(self.limits.time_limit);
        }
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let captured = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_string();
        let stderr = if captured.is_empty() {
            String::new()
        } else {
            format!("; its stderr said: {}", last_chars(&captured, 2000))
        };
        CallError::Trap { trap, stderr }
    }
}

fn tool_error(error: ToolError) -> CallError {
    let (kind, message) = match error {
        ToolError::InvalidInput(m) => ("invalid input", m),
        ToolError::NotFound(m) => ("not found", m),
        ToolError::PermissionDenied(m) => ("permission denied", m),
        ToolError::Conflict(m) => ("conflict", m),
        ToolError::Io(m) => ("io error", m),
        ToolError::Timeout(m) => ("timeout", m),
        ToolError::Internal(m) => ("internal error", m),
    };
    CallError::Tool { kind, message }
}

fn cap_output(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("\n... [plugin output cut: {cut} more bytes]"));
    text
}

fn last_chars(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
