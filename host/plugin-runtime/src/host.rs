//! [`PluginHost`]: the engine, the linker and the loaded plugins; loading a component
//! (compile or cache, check, link, `describe()`, grants and trust) and calling its tools.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::PluginPre;
use crate::cache::{CacheOutcome, Compiled, ComponentCache};
use crate::component::{check_component_header, check_wit_version, tool_spec};
use crate::describe_failures::DescribeFailures;
use crate::engine::{EpochTicker, new_engine};
use crate::errors::{CallError, trap_error};
use crate::manifest::{Access, Grants};
use crate::sandbox::{self, CallState, FileOps};
use crate::{PluginLimits, ToolSpec, bindings, discovery, log, manifest, trust};

mod call;

/// How long a call may stay blocked inside the host (a sleep, an HTTP request) past its
/// time limit before it is dropped; running wasm is stopped by the epoch deadline instead.
const BLOCKED_GRACE: Duration = Duration::from_millis(500);
/// The longest a `describe()` may take: it only lists tools, so a few seconds is plenty,
/// and a looping one must not cost a full call limit on start-up (the call limit is used
/// when it is shorter).
const DESCRIBE_LIMIT: Duration = Duration::from_secs(5);

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
        let (grants, manifest) = Grants::for_component(path)?;
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
            .new_store(&Grants::none(), &[], limit, FileOps::Pooled)
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
        file_ops: FileOps,
    ) -> Result<(Store<CallState>, MemoryOutputPipe)> {
        sandbox::new_store(
            &self.engine,
            &self.workspace,
            self.limits.memory_bytes,
            grants,
            env,
            limit,
            file_ops,
        )
    }

    /// Appends a call's (or describe()'s) log lines to the log file, if there is one.
    async fn write_log(&self, plugin: &str, tool: &str, call_id: &str, logs: &log::CallLog) {
        if let Some(file) = &self.log_file {
            log::append(file, plugin, tool, call_id, logs.lines()).await;
        }
    }
}
