//! The plugin runtime: tool components in wasmtime, each call sandboxed and bounded.
//!
//! One [`Engine`] (pooling allocator, epoch interruption) and one [`Linker`] (WASI p2,
//! wasi:http, our `host` interface) serve the whole process. Each component is compiled
//! once (or loaded from the [`cache`]), checked against our WIT version, linked once into
//! an `InstancePre`, and asked for its tools with `describe`. Every tool call then gets a
//! fresh `Store` and instance from the pool, so calls cannot leak state into each other,
//! with only what the plugin's [`Grants`] name (see [`manifest`]):
//! - preopened directories: the workspace (mounted both as `.` and at its absolute path)
//!   and extra directories, each read-only or read-write; `..`, absolute paths outside
//!   and symlinks that point out fail inside WASI, not by string checks;
//! - the granted environment variables; no arguments, no stdin; stderr captured for
//!   error reports;
//! - outgoing HTTP only to the granted hosts, at addresses the grant means (see [`net`]);
//!   raw sockets are always refused;
//! - a time limit (the epoch deadline stops running wasm; a call blocked in the host is
//!   dropped), a linear-memory limit and an output-size limit;
//! - bounded host-side state: `host.log` lines (see [`log`]), WASI resources, handles,
//!   instances, tables and memories per store.
//!
//! `describe()` gets a shorter time limit than a call, and a `describe()` that traps or
//! times out is remembered for those exact bytes (see [`describe_failures`]).
//!
//! A trap, an endless loop, a memory bomb or a stack overflow ends that one call with a
//! [`CallError`]; the host and the other tools keep working.

pub mod cache;
pub mod describe_failures;
pub mod discovery;
mod handle;
pub mod log;
pub mod manifest;
pub mod net;
pub mod trust;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::tools::{ToolHints, ToolSpec};

use cache::{CacheOutcome, Compiled, ComponentCache};
use describe_failures::DescribeFailures;
pub use handle::PluginHandle;
use manifest::{Access, Grants, HostPattern};
use net::{NetworkGate, Refusal};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        exports: { default: async },
    });
}

use bindings::PluginPre;
use bindings::agent::tool::types::{CallContext, ToolError};

/// The WIT package this host implements; components built against another minor series
/// are refused with a message saying so.
pub const WIT_PACKAGE: &str = "agent:tool";
pub const WIT_VERSION: &str = "0.1.0";

/// How often the epoch ticks; the granularity of the CPU-time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of a plugin's stderr kept for error reports.
const STDERR_CAPTURE: usize = 16 * 1024;
/// How long a call may stay blocked inside the host (a sleep, an HTTP request) past its
/// time limit before it is dropped; running wasm is stopped by the epoch deadline instead.
const BLOCKED_GRACE: Duration = Duration::from_millis(500);
/// Component instances the pooling allocator keeps slots for; a call beyond this many at
/// once fails to instantiate (calls run one at a time today).
const POOL_INSTANCES: u32 = 100;
/// The longest a `describe()` may take: it only lists tools, so a few seconds is plenty,
/// and a looping one must not cost a full call limit on start-up (the call limit is used
/// when it is shorter).
const DESCRIBE_LIMIT: Duration = Duration::from_secs(5);

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

/// Bounds applied to every plugin call.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Time budget of one call: running wasm is interrupted by the epoch deadline, a call
    /// blocked in a host function is dropped.
    pub time_limit: Duration,
    /// The most linear memory one call may use, all its memories together, in bytes.
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

/// Why a tool call failed; shown to the model as an error tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned one of the WIT `tool-error` cases.
    #[error("{kind}: {message}")]
    Tool { kind: &'static str, message: String },
    /// The call ran past its time limit and was stopped.
    #[error("timeout: the plugin did not finish within {0:?} and was stopped")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the limit and was stopped.
    #[error(
        "memory limit: the plugin tried to use {wanted} bytes of memory, over its limit of {limit} bytes, and was stopped"
    )]
    MemoryLimit { wanted: usize, limit: usize },
    /// The plugin trapped: a panic, an out-of-bounds access, a stack overflow, ...
    #[error("the plugin crashed ({trap}){stderr}")]
    Trap { trap: String, stderr: String },
    /// Instantiation or the host side of the call failed.
    #[error("internal: {0:#}")]
    Host(anyhow::Error),
}

/// Per-call state of a store: the WASI and HTTP contexts and the limits.
struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    network: NetworkGate,
    table: ResourceTable,
    limiter: MemoryLimiter,
    logs: log::CallLog,
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
struct MemoryLimitExceeded {
    wanted: usize,
    limit: usize,
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

/// Where a plugin came from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    BuiltIn,
    File {
        path: PathBuf,
        origin: discovery::Origin,
        /// The manifest beside it, as read when the plugin loaded.
        manifest: Option<manifest::ManifestFile>,
    },
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::BuiltIn => f.write_str("built-in"),
            PluginSource::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// One loaded component, ready to be instantiated per call.
pub struct LoadedPlugin {
    pub name: String,
    pub source: PluginSource,
    pub tools: Vec<ToolSpec>,
    pub grants: Grants,
    /// The interfaces the component imports (`wasi:filesystem/types@0.2.6`, ...).
    pub imports: Vec<String>,
    pub cache: CacheOutcome,
    /// SHA-256 (hex) of the bytes the running code was compiled from.
    pub sha256: String,
    /// What the manifest asks beyond the workspace that is withheld until the user
    /// approves this workspace plugin with `agent plugins trust` (see [`trust`]).
    pub withheld: Option<Grants>,
    /// The granted environment variables that are set, with their values.
    env: Vec<(String, String)>,
    pre: PluginPre<CallState>,
}

impl LoadedPlugin {
    /// Whether this is one of the agent's own components (embedded in the binary).
    pub fn is_built_in(&self) -> bool {
        matches!(self.source, PluginSource::BuiltIn)
    }
}

/// What [`PluginHost::load`] made of a component.
pub struct Loaded {
    pub index: usize,
    /// Tools the plugin described but that were refused (bad name, bad schema); the other
    /// tools are loaded.
    pub problems: Vec<String>,
    /// Set when grants were withheld for want of `agent plugins trust`: what was withheld
    /// and how to approve it, for the user.
    pub withheld: Option<String>,
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
    pooling: bool,
    /// Where the lines plugins send to `host.log` go, if anywhere.
    log_file: Option<PathBuf>,
    describe_failures: DescribeFailures,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// `workspace` must be an absolute, canonical path.
    pub fn new(
        workspace: &Path,
        cache_dir: Option<PathBuf>,
        limits: PluginLimits,
    ) -> Result<PluginHost> {
        let (engine, pooling) = new_engine(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI HTTP")?;
        bindings::agent::tool::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the agent:tool types interface")?;
        log::add_to_linker(&mut linker).context("linking the agent:tool host interface")?;
        Ok(PluginHost {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            describe_failures: DescribeFailures::new(cache_dir.as_deref()),
            cache: ComponentCache::new(cache_dir),
            limits,
            workspace: workspace.to_path_buf(),
            plugins: Vec::new(),
            pooling,
            log_file: None,
        })
    }

    /// Appends the lines plugins log (the `host.log` import) to `file`, one line each with
    /// the time, plugin, tool and call id. Without it they are dropped.
    pub fn log_to(&mut self, file: PathBuf) {
        self.log_file = Some(file);
    }

    /// Why the compiled-component cache is not used, if it was configured but is unsafe.
    pub fn cache_problem(&self) -> Option<&str> {
        self.cache.problem()
    }

    pub fn plugins(&self) -> &[LoadedPlugin] {
        &self.plugins
    }

    /// The workspace every workspace grant names (absolute, canonical).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Whether instances come from the pooling allocator (false when the machine refused
    /// its address-space reservation and the engine fell back to on-demand allocation).
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) and links a component, asks it for its tools,
    /// and keeps it. Fails, naming the source, when the bytes are not a component, the
    /// component targets another version of the WIT, or `describe` fails or offers no
    /// valid tool.
    pub async fn load(
        &mut self,
        name: &str,
        source: PluginSource,
        bytes: &[u8],
        grants: Grants,
    ) -> Result<Loaded> {
        check_component_header(bytes).with_context(|| format!("{source}"))?;
        let compiled = self
            .cache
            .load(&self.engine, bytes)
            .with_context(|| format!("{source} is not a valid WebAssembly component"))?;
        self.link(name, source, compiled, grants).await
    }

    /// Checks a compiled component against our WIT, links it, asks it for its tools and
    /// keeps it.
    async fn link(
        &mut self,
        name: &str,
        source: PluginSource,
        compiled: Compiled,
        grants: Grants,
    ) -> Result<Loaded> {
        let Compiled {
            component,
            outcome: cache,
            sha256,
        } = compiled;
        let imports =
            check_wit_version(&self.engine, &component).with_context(|| format!("{source}"))?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{source} imports something this host does not provide"))?;
        let pre = PluginPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{source} does not export the agent:tool/tool interface"))?;
        for dir in &grants.dirs {
            if !dir.path.is_dir() {
                bail!(
                    "{source}: the directory {} granted by its manifest does not exist",
                    dir.path.display()
                );
            }
        }
        let env = grants
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect();
        // A describe() that failed for these exact bytes fails again without running.
        let failure_key = DescribeFailures::key(&self.engine, &sha256);
        if let Some(message) = self.describe_failures.get(&failure_key) {
            bail!(
                "{source}: describe() failed: {message} (remembered from an earlier start for this exact file; a changed file is tried again)"
            );
        }
        let (tools, problems) = match self.describe(name, &pre).await {
            Ok(described) => described,
            Err(CallError::Host(error)) => {
                return Err(error.context(format!("calling describe() of {source}")));
            }
            Err(failure) => {
                let message = failure.to_string();
                self.describe_failures.remember(&failure_key, &message);
                bail!("{source}: describe() failed: {message}");
            }
        };
        if tools.is_empty() {
            let reasons = match problems.is_empty() {
                true => "it returned an empty list".to_string(),
                false => problems.join("; "),
            };
            bail!("{source}: describe() offered no valid tool: {reasons}");
        }
        let problems = problems
            .into_iter()
            .map(|p| format!("{source}: {p}; the tool is skipped"))
            .collect();
        self.plugins.push(LoadedPlugin {
            name: name.to_string(),
            source,
            tools,
            grants,
            imports,
            cache,
            sha256,
            withheld: None,
            env,
            pre,
        });
        Ok(Loaded {
            index: self.plugins.len() - 1,
            problems,
            withheld: None,
        })
    }

    /// Loads a discovered plugin file, with the grants of the manifest beside it. The
    /// plugin is named after the file. A plugin that came with the workspace gets what its
    /// manifest asks beyond the workspace only once `trust` approves it (see [`trust`]);
    /// until then [`Loaded::withheld`] says what was withheld and how to approve it, and
    /// each of its tool descriptions tells the model.
    ///
    /// Trust is decided on the SHA-256 of the very bytes the running code was compiled
    /// from (as the cache reports it) and of the manifest bytes the grants were parsed
    /// from; neither file is read a second time.
    pub async fn load_file(
        &mut self,
        found: &discovery::Found,
        trust: &trust::TrustStore,
    ) -> Result<Loaded> {
        let path = &found.path;
        let (grants, manifest) = Grants::for_component(path).map_err(|e| anyhow!(e))?;
        let compiled = self.cache.load_file(&self.engine, path, |bytes| {
            check_component_header(bytes).with_context(|| path.display().to_string())
        })?;
        let mut withheld = None;
        let mut granted = grants.clone();
        if let Some(manifest_file) = &manifest
            && found.origin == discovery::Origin::Workspace
            && grants.beyond_workspace()
        {
            let pin = trust::Pin {
                workspace: &self.workspace,
                plugin: path,
                component_sha256: &compiled.sha256,
                manifest_sha256: &manifest_file.sha256,
            };
            let (trusted, why) = match trust.is_trusted(&pin) {
                Ok(trusted) => (trusted, String::new()),
                Err(error) => (false, format!(" ({error})")),
            };
            if !trusted {
                let beyond = Grants {
                    workspace: Access::None,
                    ..grants.clone()
                };
                let message = format!(
                    "{}: this plugin came with the workspace, so what its manifest asks beyond the workspace ({}) is withheld; if you trust it, run `agent plugins trust {}`{why}",
                    path.display(),
                    beyond.describe_beyond_workspace().join("; "),
                    path.display()
                );
                withheld = Some((message, beyond));
                granted = grants.workspace_only();
            }
        }
        let name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = PluginSource::File {
            path: path.clone(),
            origin: found.origin,
            manifest,
        };
        let mut loaded = self.link(&name, source, compiled, granted).await?;
        if let Some((message, beyond)) = withheld {
            // Withheld variables and directories are otherwise silent absence: tell the
            // model in every tool description of the plugin.
            let note = format!(
                "\n\n(Not available yet: this plugin came with the workspace, and what its manifest asks beyond the workspace ({}) is withheld until the user approves it with `agent plugins trust {}`; a call that needs it fails.)",
                beyond.describe_beyond_workspace().join("; "),
                path.display()
            );
            let plugin = &mut self.plugins[loaded.index];
            for tool in &mut plugin.tools {
                tool.description.push_str(&note);
            }
            plugin.withheld = Some(beyond);
            loaded.withheld = Some(message);
        }
        Ok(loaded)
    }

    /// Asks a component for its tools, in an instance that is granted nothing, within
    /// [`PluginHost::describe_limit`]. Returns the valid tools and what was wrong with the
    /// others; a trap reports the plugin's stderr (a panic message) as a call does.
    async fn describe(
        &self,
        name: &str,
        pre: &PluginPre<CallState>,
    ) -> Result<(Vec<ToolSpec>, Vec<String>), CallError> {
        let limit = self.describe_limit();
        let (mut store, stderr) = self
            .new_store(&Grants::none(), &[], limit)
            .map_err(CallError::Host)?;
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.agent_tool_tool().call_describe(&mut store).await
        };
        let result = tokio::time::timeout(limit + BLOCKED_GRACE, run).await;
        self.write_log(name, "describe()", "-", &store.data().logs)
            .await;
        let specs = match result {
            Err(_elapsed) => return Err(CallError::Timeout(limit)),
            Ok(Err(error)) => return Err(trap_error(error.into(), &stderr, limit)),
            Ok(Ok(specs)) => specs,
        };
        let mut tools: Vec<ToolSpec> = Vec::with_capacity(specs.len());
        let mut problems = Vec::new();
        for spec in specs {
            match tool_spec(spec) {
                Ok(tool) if tools.iter().any(|t| t.name == tool.name) => {
                    problems.push(format!("tool `{}` is described twice", tool.name));
                }
                Ok(tool) => tools.push(tool),
                Err(problem) => problems.push(format!("{problem:#}")),
            }
        }
        Ok((tools, problems))
    }

    /// The time limit of `describe()`: [`DESCRIBE_LIMIT`], or the call limit if shorter.
    fn describe_limit(&self) -> Duration {
        DESCRIBE_LIMIT.min(self.limits.time_limit)
    }

    /// How long a call may take in all before it is dropped: the time limit, plus a grace
    /// for a call blocked in the host to notice the epoch deadline first.
    fn call_deadline(&self) -> Duration {
        self.limits.time_limit + BLOCKED_GRACE
    }

    /// A store for one call or describe(), with the plugin's grants, stopped after `limit`.
    fn new_store(
        &self,
        grants: &Grants,
        env: &[(String, String)],
        limit: Duration,
    ) -> Result<(Store<CallState>, MemoryOutputPipe)> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = WasiCtxBuilder::new();
        // File operations stay on tokio's blocking pool (wasmtime-wasi's default). Doing
        // them on the calling thread (`allow_blocking_current_thread`) makes a 4 KiB
        // read_file 3x faster, but then a plugin that opens a FIFO blocks a runtime thread
        // for good and the time limit can no longer end the call (the FIFO test hangs).
        wasi.stderr(stderr.clone());
        for (name, value) in env {
            wasi.env(name, value);
        }
        if let Some(perms) = perms(grants.workspace) {
            let absolute = self.workspace.to_string_lossy();
            wasi.preopened_dir(&self.workspace, ".", perms)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("opening the workspace {}", self.workspace.display()))?;
            wasi.preopened_dir(&self.workspace, absolute.as_ref(), perms)
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
                limit: self.limits.memory_bytes,
                used: 0,
            },
            logs: log::CallLog::default(),
        };
        let mut store = Store::new(&self.engine, state);
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

    /// Runs tool `tool` of plugin `index` in a fresh instance.
    pub async fn call(
        &self,
        index: usize,
        tool: &str,
        input: &str,
        call_id: &str,
    ) -> Result<String, CallError> {
        let plugin = &self.plugins[index];
        let (mut store, stderr) = self
            .new_store(&plugin.grants, &plugin.env, self.limits.time_limit)
            .map_err(CallError::Host)?;
        let context = CallContext {
            call_id: call_id.to_string(),
            time_limit_ms: self.limits.time_limit.as_millis() as u64,
            workspace: match plugin.grants.workspace {
                Access::None => String::new(),
                _ => self.workspace.to_string_lossy().into_owned(),
            },
        };
        let run = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance
                .agent_tool_tool()
                .call_call(&mut store, tool, input, &context)
                .await
        };
        let result = tokio::time::timeout(self.call_deadline(), run).await;
        let refused = store.data_mut().network.take_refused();
        let withheld = plugin.withheld.as_ref().map(|grants| Withheld {
            network: &grants.network,
            plugin: &plugin.source,
        });
        self.write_log(&plugin.name, tool, call_id, &store.data().logs)
            .await;
        let result = match result {
            Err(_elapsed) => Err(CallError::Timeout(self.limits.time_limit)),
            Ok(Ok(Ok(text))) => Ok(cap_output(text, self.limits.output_bytes)),
            Ok(Ok(Err(error))) => Err(tool_error(error)),
            Ok(Err(error)) => Err(trap_error(error.into(), &stderr, self.limits.time_limit)),
        };
        result.map_err(|error| with_refused_hosts(error, &refused, withheld))
    }

    /// Appends a call's (or describe()'s) log lines to the log file, if there is one.
    async fn write_log(&self, plugin: &str, tool: &str, call_id: &str, logs: &log::CallLog) {
        if let Some(file) = &self.log_file {
            log::append(file, plugin, tool, call_id, logs.lines()).await;
        }
    }
}

/// What a failed describe or call says: a timeout, the memory limit, or a trap with the
/// plugin's captured stderr (where a Rust panic prints its message).
fn trap_error(error: anyhow::Error, stderr: &MemoryOutputPipe, limit: Duration) -> CallError {
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return CallError::Timeout(limit);
    }
    if let Some(exceeded) = error.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::MemoryLimit {
            wanted: exceeded.wanted,
            limit: exceeded.limit,
        };
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

/// The engine every plugin runs in: epoch interruption for time limits, and the pooling
/// allocator so a fresh instance per call costs microseconds. Falls back to on-demand
/// allocation when the pool's address space cannot be reserved.
fn new_engine(limits: &PluginLimits) -> Result<(Engine, bool)> {
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
        .max_component_instance_size(4 << 20);
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

fn perms(access: Access) -> Option<FsPerms> {
    match access {
        Access::None => None,
        Access::ReadOnly => Some(FsPerms::ReadOnly),
        Access::ReadWrite => Some(FsPerms::ReadWrite),
    }
}

/// Tells a component from a core module or a file that is not WebAssembly at all, before
/// wasmtime's parser gives a less helpful message.
fn check_component_header(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!("is not a WebAssembly file (it does not start with the `\\0asm` header)");
    }
    if &bytes[4..8] != COMPONENT_LAYER {
        bail!(
            "is a core WebAssembly module, not a component: build it for wasm32-wasip2, or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}

/// Refuses a component built against a WIT version this host does not speak, with a
/// message that says which version it wants. Within our major.minor series, wasmtime's
/// semver-aware linker does the matching. Returns the component's imports.
fn check_wit_version(engine: &Engine, component: &Component) -> Result<Vec<String>> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let names: Vec<String> = imports
        .iter()
        .cloned()
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()))
        .collect();
    let ours = WIT_VERSION
        .rsplit_once('.')
        .map(|(series, _)| series)
        .unwrap_or(WIT_VERSION);
    for name in &names {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !version.starts_with(&format!("{ours}.")) {
            bail!(
                "was built against {WIT_PACKAGE}@{}, but this agent speaks {WIT_PACKAGE}@{ours}.x; rebuild it against the WIT shipped with this agent",
                if version.is_empty() {
                    "an unversioned package"
                } else {
                    version
                }
            );
        }
    }
    let tool_export = format!("{WIT_PACKAGE}/tool@");
    if !names.iter().any(|n| n.starts_with(&tool_export)) {
        bail!(
            "does not export {WIT_PACKAGE}/tool@{WIT_VERSION}: it is not a tool plugin (it has {})",
            if names.is_empty() {
                "no imports or exports".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(imports)
}

fn tool_spec(spec: bindings::agent::tool::types::ToolSpec) -> Result<ToolSpec> {
    use bindings::agent::tool::types::ToolHints as WitHints;
    let schema: serde_json::Value = serde_json::from_str(&spec.input_schema).map_err(|e| {
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
            read_only: spec.hints.contains(WitHints::READ_ONLY),
            destructive: spec.hints.contains(WitHints::DESTRUCTIVE),
            idempotent: spec.hints.contains(WitHints::IDEMPOTENT),
        },
    };
    tool.validate()?;
    Ok(tool)
}

/// The network grant a workspace plugin's manifest asks for but that is withheld until the
/// user trusts the plugin.
#[derive(Clone, Copy)]
struct Withheld<'a> {
    network: &'a [HostPattern],
    plugin: &'a PluginSource,
}

/// Adds the hosts the network gate refused to an error, since the plugin's own message
/// may not say why its request failed: either not granted at all, or granted by the
/// manifest but withheld until the user trusts the plugin.
fn with_refused_hosts(
    error: CallError,
    refused: &[Refusal],
    withheld: Option<Withheld<'_>>,
) -> CallError {
    if refused.is_empty() {
        return error;
    }
    // A request the manifest grants but that was withheld for want of trust is told
    // apart from one no grant covers.
    let is_withheld = |refusal: &&Refusal| match (refusal, &withheld) {
        (Refusal::NotGranted(target), Some(w)) => {
            target.rsplit_once(':').is_some_and(|(host, port)| {
                port.parse()
                    .is_ok_and(|port| w.network.iter().any(|p| p.matches(host, port)))
            })
        }
        _ => false,
    };
    let (held, denied): (Vec<&Refusal>, Vec<&Refusal>) = refused.iter().partition(is_withheld);
    let mut note = String::new();
    if !denied.is_empty() {
        let denied: Vec<String> = denied.iter().map(ToString::to_string).collect();
        note.push_str(&format!(
            " (the agent refused this plugin's HTTP request to {})",
            denied.join("; ")
        ));
    }
    if let (false, Some(withheld)) = (held.is_empty(), withheld) {
        let held: Vec<&str> = held
            .iter()
            .filter_map(|r| match r {
                Refusal::NotGranted(target) => Some(target.as_str()),
                _ => None,
            })
            .collect();
        note.push_str(&format!(
            " (the agent refused this plugin's HTTP request to {}: its manifest grants it, but this plugin came with the workspace and the grant is withheld until the user approves it with `agent plugins trust {}`)",
            held.join(", "),
            withheld.plugin
        ));
    }
    match error {
        CallError::Tool { kind, message } => CallError::Tool {
            kind,
            message: message + &note,
        },
        CallError::Trap { trap, stderr } => CallError::Trap {
            trap,
            stderr: stderr + &note,
        },
        other => other,
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
