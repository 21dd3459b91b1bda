//! Flags, environment and `.env` turned into one validated [`Config`].
//!
//! Only this module reads the agent's settings from the environment (plugins read just the
//! variables their manifest grants them); everything after it gets its settings from a
//! `Config`, so tests and the binary configure the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::approval::ApprovalPolicy;
use crate::cli::Cli;
use crate::config_file::ConfigFile;
use crate::model::anthropic::{AnthropicConfig, DEFAULT_IDLE_TIMEOUT};
use crate::render::OutputFormat;
use agent_plugin_runtime::PluginLimits;
use agent_plugin_runtime::discovery::Origin;

/// A setting is missing or wrong; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "ANTHROPIC_API_KEY is not set: export it, or put ANTHROPIC_API_KEY=... in a .env file in the current directory"
    )]
    MissingApiKey,
    #[error(
        "HOME is not set, so there is no private place for the agent's state: set HOME or AGENT_STATE_DIR"
    )]
    NoStateDir,
    #[error("the workspace {path} is not a directory you can use: {reason}")]
    Workspace { path: PathBuf, reason: String },
    #[error("sandbox settings: {0}")]
    Sandbox(#[from] crate::sandbox::SettingsError),
    #[error(transparent)]
    File(#[from] crate::config_file::ConfigFileError),
    #[error("context settings: {0}")]
    Context(#[from] crate::context::WindowError),
    #[error("the provider {provider} needs an API key: export {var}")]
    MissingKey { provider: String, var: String },
    #[error(
        "unknown provider {name:?}: the known providers are {known} (add others as [providers.NAME] in the agent's config.toml)"
    )]
    UnknownProvider { name: String, known: String },
    #[error(
        "the key of the provider {provider} ({var}) came from ./.env in the workspace; a workspace may not supply that key: export it yourself"
    )]
    KeyFromWorkspace { provider: String, var: String },
    #[error("{}: {message}", path.display())]
    ConfigFile { path: PathBuf, message: String },
    #[error("price table: {0}")]
    Prices(#[from] crate::usage::PricesError),
    #[error("{name} must be {what}, not {value:?}")]
    Invalid {
        name: &'static str,
        what: &'static str,
        value: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute and canonical.
    pub workspace: PathBuf,
    pub model: AnthropicConfigDraft,
    pub output: OutputFormat,
    /// `--color` / `AGENT_COLOR`: whether text output is rendered (see [`crate::term`]).
    pub color: crate::term::ColorChoice,
    pub bash_timeout: Duration,
    pub background_timeout: Duration,
    /// Who decides when a command asks to run outside the sandbox.
    pub approval: ApprovalPolicy,
    pub max_background: usize,
    /// Background tasks one session may start in all.
    pub max_tasks: usize,
    /// Where the four limits above came from (see [`crate::limits`]).
    pub limit_sources: Vec<(&'static str, String)>,
    /// Per-run directory of background task logs (outside the workspace).
    pub task_log_dir: PathBuf,
    /// Where plugins' `host.log` lines go: `plugins.log` in the per-run directory.
    pub plugin_log: PathBuf,
    /// The REPL's line history, kept in the state directory.
    pub history_file: PathBuf,
    /// Where session transcripts are kept.
    pub sessions_dir: PathBuf,
    /// Compiled-component cache, `None` when no cache directory can be found.
    pub cache_dir: Option<PathBuf>,
    /// Directories searched for third-party plugins, in load order.
    pub plugin_dirs: Vec<(PathBuf, Origin)>,
    /// Plugin files named with `--plugin`, loaded after those in `plugin_dirs`.
    pub plugin_files: Vec<PathBuf>,
    pub plugin_limits: PluginLimits,
    /// Per-task cgroups: whether to use them (`AGENT_TASK_CGROUPS=off` does not) and the
    /// memory cap of a task (`--task-memory`).
    pub task_cgroups: crate::task_cgroup::CgroupSettings,
    /// Approvals of what workspace plugins' manifests ask beyond the workspace.
    pub trusted_plugins: PathBuf,
    /// The OS sandbox of native commands.
    pub sandbox: crate::sandbox::Settings,
    /// The agent's own state, cache and config directories, which no command may reach.
    pub agent_dirs: Vec<PathBuf>,
    /// The model's context window and when to compact.
    pub context: crate::context::WindowSettings,
    /// Prices per model: built in, and the `[prices]` table of the user's config.toml.
    pub prices: crate::usage::PriceTable,
    /// Where the user's config.toml is (or would be).
    pub config_file: Option<PathBuf>,
    /// The REPL's idle wake-up (`--no-wake`, `--max-wakes`).
    pub wake: crate::wake::WakeSettings,
}

/// Model settings before the API key is required (plugin commands need no key): the
/// provider chosen (see [`crate::provider`]), which need not be Anthropic despite the name.
#[derive(Debug, Clone)]
pub struct AnthropicConfigDraft {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub max_tokens: u32,
    /// The provider's name: a built-in one or a `[providers.NAME]` table.
    pub provider: String,
    pub wire: crate::provider::Wire,
    /// The variable the key is read from, for messages.
    pub key_env: Option<String>,
    /// The provider works without a key (local servers).
    pub key_optional: bool,
    /// Extra headers of a user-defined provider.
    pub headers: Vec<(String, String)>,
    /// Where `provider`, `model`, `base_url` and `max_tokens` came from (a flag or
    /// variable, `config.toml [table] key`, or `default`), for `agent config show`.
    pub sources: Vec<(&'static str, String)>,
}

/// Retries after a model call's first attempt, and the first backoff delay.
pub(crate) const MODEL_RETRIES: usize = 4;
pub(crate) const MODEL_MIN_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How long a silent model server is waited for. Undocumented: tests set it small.
pub(crate) fn model_idle_timeout() -> Result<Duration, ConfigError> {
    match env("AGENT_MODEL_IDLE_TIMEOUT_SECS") {
        None => Ok(DEFAULT_IDLE_TIMEOUT),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
            _ => Err(ConfigError::Invalid {
                name: "AGENT_MODEL_IDLE_TIMEOUT_SECS",
                what: "a number of seconds, at least 1",
                value,
            }),
        },
    }
}

impl AnthropicConfigDraft {
    /// The client settings; fails when no API key is set.
    pub fn require_key(&self) -> Result<AnthropicConfig, ConfigError> {
        let api_key = match (&self.api_key, self.provider.as_str()) {
            (Some(key), _) => key.clone(),
            (None, "anthropic") => return Err(ConfigError::MissingApiKey),
            (None, _) if self.key_optional => String::new(),
            (None, provider) => {
                return Err(ConfigError::MissingKey {
                    provider: provider.to_string(),
                    var: self.key_env.clone().unwrap_or_default(),
                });
            }
        };
        let idle_timeout = model_idle_timeout()?;
        Ok(AnthropicConfig {
            base_url: self.base_url.clone(),
            api_key,
            model: self.model.clone(),
            max_tokens: self.max_tokens,
            max_retries: MODEL_RETRIES,
            min_retry_delay: MODEL_MIN_RETRY_DELAY,
            idle_timeout,
            extra_headers: Vec::new(),
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// One of the agent's directories: `$OVERRIDE`, else `$XDG_VAR/agent`, else
/// `$HOME/HOME_RELATIVE/agent` (the XDG base-directory defaults).
fn agent_dir(override_var: &str, xdg_var: &str, home_relative: &str) -> Option<PathBuf> {
    env(override_var)
        .map(PathBuf::from)
        .or_else(|| env(xdg_var).map(|d| PathBuf::from(d).join("agent")))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(home_relative).join("agent")))
}

impl Config {
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let workspace = canonical_dir(&cli.workspace)?;
        // No shared fallback (a directory under /tmp another user could have made first):
        // without a home there is nowhere private to keep logs and trust.
        let state_dir = agent_dir("AGENT_STATE_DIR", "XDG_STATE_HOME", ".local/state")
            .ok_or(ConfigError::NoStateDir)?;
        let run_id = format!(
            "{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            std::process::id()
        );
        let task_cgroups = crate::task_cgroup::CgroupSettings {
            enabled: match env("AGENT_TASK_CGROUPS").as_deref().map(str::trim) {
                None | Some("on") => true,
                Some("off") => false,
                Some(value) => {
                    return Err(ConfigError::Invalid {
                        name: "AGENT_TASK_CGROUPS",
                        what: "on or off",
                        value: value.to_string(),
                    });
                }
            },
            memory_mib: cli.task_memory,
        };
        let cache_dir =
            agent_dir("AGENT_CACHE_DIR", "XDG_CACHE_HOME", ".cache").map(|d| d.join("components"));
        let config_dir = agent_dir("AGENT_CONFIG_DIR", "XDG_CONFIG_HOME", ".config");
        let user_plugins = config_dir
            .as_ref()
            .map(|d| (d.join("plugins"), Origin::User));
        let file = ConfigFile::read(config_dir.as_deref())?;
        file.check_tables()?;
        let sandbox = sandbox_settings(cli, &file)?;
        let model = crate::provider::resolve(cli, &file)?;
        let context = crate::context::WindowSettings::resolve(
            cli.context_window,
            env("AGENT_CONTEXT_WINDOW"),
            &file,
            &model.model,
        )?;
        let context = crate::context::WindowSettings {
            answer_tokens: u64::from(model.max_tokens),
            ..context
        };
        let prices = crate::usage::PriceTable::load(&file)?;
        let limits = crate::limits::Limits::resolve(cli, &file)?;
        let cache_root = cache_dir
            .as_ref()
            .and_then(|d| d.parent().map(Path::to_path_buf));
        let agent_dirs = [Some(state_dir.clone()), cache_root, config_dir]
            .into_iter()
            .flatten()
            .collect();
        let plugin_dirs = user_plugins
            .into_iter()
            .chain([(workspace.join(".agent/plugins"), Origin::Workspace)])
            .collect();
        Ok(Config {
            workspace,
            model,
            output: cli.output,
            color: cli.color,
            bash_timeout: limits.bash_timeout,
            background_timeout: limits.background_timeout,
            approval: approval_policy(cli)?,
            max_background: limits.max_background,
            max_tasks: limits.max_tasks,
            limit_sources: limits.sources,
            task_log_dir: state_dir.join("tasks").join(&run_id),
            plugin_log: state_dir.join("tasks").join(&run_id).join("plugins.log"),
            history_file: state_dir.join("repl-history"),
            sessions_dir: crate::session::sessions_dir(&state_dir),
            cache_dir,
            plugin_dirs,
            plugin_files: cli.plugins.clone(),
            trusted_plugins: state_dir.join("trusted-plugins"),
            task_cgroups,
            plugin_limits: PluginLimits {
                time_limit: Duration::from_secs(cli.plugin_timeout),
                memory_bytes: (cli.plugin_memory as usize) << 20,
                ..PluginLimits::default()
            },
            sandbox,
            agent_dirs,
            context,
            prices,
            config_file: file.path().map(Path::to_path_buf),
            wake: crate::wake::WakeSettings {
                enabled: !cli.no_wake,
                max_consecutive: cli.max_wakes,
            },
        })
    }
}

/// The sandbox settings: `--sandbox` > `AGENT_SANDBOX` > `config.toml` in the user's config
/// directory (never the workspace's) > `workspace-write`.
fn sandbox_settings(cli: &Cli, file: &ConfigFile) -> Result<crate::sandbox::Settings, ConfigError> {
    use clap::ValueEnum;
    let from_env = match (cli.sandbox, env("AGENT_SANDBOX")) {
        (None, Some(value)) => Some(crate::sandbox::Mode::from_str(value.trim(), false).map_err(
            |_| ConfigError::Invalid {
                name: "AGENT_SANDBOX",
                what: "one of workspace-write, read-only, off",
                value,
            },
        )?),
        _ => None,
    };
    let flags = crate::sandbox::FlagSettings {
        mode: cli.sandbox.or(from_env),
        mode_from_env: from_env.is_some(),
        network: cli.network,
    };
    Ok(crate::sandbox::Settings::resolve(
        flags,
        file,
        crate::sandbox::Environment::from_process(),
    )?)
}

/// `--approval`, or its default: ask in the REPL; never in one-shot mode, where nobody can
/// be asked.
fn approval_policy(cli: &Cli) -> Result<ApprovalPolicy, ConfigError> {
    match (cli.approval, cli.prompt.is_some()) {
        (Some(ApprovalPolicy::Ask), true) => Err(ConfigError::Invalid {
            name: "--approval",
            what: "never or always with -p, where nobody can be asked",
            value: "ask".to_string(),
        }),
        (Some(policy), _) => Ok(policy),
        (None, true) => Ok(ApprovalPolicy::Never),
        (None, false) => Ok(ApprovalPolicy::Ask),
    }
}

/// A model server gets the API key, so it is reached over https, or over plain http only
/// on this machine (a local proxy or test server).
pub(crate) fn check_base_url_named(name: &'static str, base_url: &str) -> Result<(), ConfigError> {
    let invalid = |what| ConfigError::Invalid {
        name,
        what,
        value: base_url.to_string(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|_| invalid("an https:// URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("a URL without a user name or password in it"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            "an https:// URL (plain http:// is only allowed to localhost, 127.0.0.1 or ::1, since the API key travels with every request)",
        )),
        _ => Err(invalid("an https:// URL")),
    }
}

fn canonical_dir(path: &Path) -> Result<PathBuf, ConfigError> {
    let fail = |reason: String| ConfigError::Workspace {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(fail("not a directory".into()));
    }
    Ok(canonical)
}
