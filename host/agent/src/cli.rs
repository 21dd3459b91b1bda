//! The command line, as clap types. Parsing only: [`crate::config`] validates and merges
//! these with the environment.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::approval::ApprovalPolicy;
use crate::render::OutputFormat;

/// A coding agent whose file tools run as sandboxed WebAssembly components.
///
/// Without -p it opens a REPL (exit with `exit`, `q` or Ctrl-D). Environment:
/// ANTHROPIC_API_KEY (required by the default provider), ANTHROPIC_BASE_URL, MODEL_ID;
/// OPENAI_API_KEY and OPENAI_BASE_URL for the openai and openai-chat providers. A `.env`
/// file in the current directory may supply those, never overriding the environment (a
/// base URL only together with its key); it may set nothing else.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, long_about)]
pub struct Cli {
    /// Run this one request to the end, print the answer and exit.
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: Option<String>,

    /// The directory the agent works in; its tools can reach nothing outside it.
    #[arg(short = 'w', long, value_name = "DIR", default_value = ".")]
    pub workspace: PathBuf,

    /// The model to use (default: `model` in the [model] table of the agent's
    /// config.toml, else the provider's default, claude-sonnet-4-5 for anthropic).
    #[arg(short = 'm', long, env = "MODEL_ID")]
    pub model: Option<String>,

    /// The model provider: anthropic (the default), openai (the Responses API),
    /// openai-chat (Chat Completions: OpenAI, Ollama, llama.cpp, vLLM, OpenRouter, ...) or
    /// a [providers.NAME] table of the agent's config.toml. Also `provider` in its [model]
    /// table.
    #[arg(long, env = "AGENT_PROVIDER", value_name = "NAME")]
    pub provider: Option<String>,

    /// How to print what happens: human text, or JSON lines for scripts.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: OutputFormat,

    /// Rendered output: Markdown answers with colours, compact tool calls, a diff of every
    /// edit. auto: on a terminal (NO_COLOR keeps the layout, drops the colours); always:
    /// even when piped; never: plain text. Never with --output json.
    #[arg(
        long,
        value_enum,
        env = "AGENT_COLOR",
        default_value = "auto",
        global = true,
        value_name = "WHEN"
    )]
    pub color: crate::term::ColorChoice,

    /// The most tokens one model answer may have (default 8192, or `max_tokens` in the
    /// [model] table of the agent's config.toml).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,

    /// Default time limit of a `bash` command, in seconds (default 120, or `bash_timeout`
    /// in the [limits] table of the agent's config.toml).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub bash_timeout: Option<u64>,

    /// Default time limit of a background task, in seconds (default 300, or
    /// `background_timeout` in [limits]).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub background_timeout: Option<u64>,

    /// How many background tasks run at once; more wait in a queue (default 8, or
    /// `max_background` in [limits]).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_background: Option<u64>,

    /// How many background tasks one session may start in all; more are refused (default
    /// 300, or `max_tasks` in [limits]).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tasks: Option<u64>,

    /// Memory limit of one command (a `bash` call or a background task, with every
    /// process it starts), in MiB; enforced by a cgroup, so the agent refuses to start
    /// where it cannot make one. No limit by default.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub task_memory: Option<u64>,

    /// Who decides when the model asks to run a command outside the sandbox (`sandbox:
    /// "off"` with a reason): `ask` the user (the REPL's default), `never` (the default
    /// with -p: the model is told it was refused) or `always` (runs every such command
    /// without asking).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub approval: Option<ApprovalPolicy>,

    /// Also load this plugin component (repeatable). Its grants come from NAME.toml
    /// beside it; without one it gets no files, environment or network.
    #[arg(long = "plugin", value_name = "FILE", global = true)]
    pub plugins: Vec<PathBuf>,

    /// Time limit of one plugin tool call, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS", global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub plugin_timeout: u64,

    /// Memory limit of one plugin tool call, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB", global = true, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub plugin_memory: u64,

    /// The OS sandbox of bash and background tasks: workspace-write (the default) lets
    /// them read the system, the workspace and the toolchains on PATH and write the
    /// workspace, a private temporary directory and toolchain caches; read-only writes only
    /// the temporary directory; off runs them with all your rights. Also set by
    /// AGENT_SANDBOX or `mode` in the [sandbox] table of ~/.config/agent/config.toml
    /// ($AGENT_CONFIG_DIR/config.toml; never a file in the workspace).
    #[arg(long, value_enum, value_name = "MODE", global = true)]
    pub sandbox: Option<crate::sandbox::Mode>,

    /// Let bash and background tasks use the network (by default they get only Unix
    /// sockets). Also `network = true` in the [sandbox] table of the agent's config.toml.
    #[arg(long, global = true)]
    pub network: bool,

    /// The model's context window in tokens (also AGENT_CONTEXT_WINDOW, or `window` in the
    /// [context] table of the agent's config.toml; by default known from the model's
    /// name). Past `compact_at` of it (0.8 unless the [context] table says otherwise) old
    /// tool results are cut and older turns replaced by a summary.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1024..))]
    pub context_window: Option<u64>,
    /// Continue the newest session of this workspace (its conversation and background
    /// tasks), with -p or in the REPL.
    #[arg(short = 'c', long = "continue", conflicts_with = "resume")]
    pub continue_session: bool,

    /// Continue the session with this id (or a unique start of it); see `agent sessions
    /// list`.
    #[arg(long, value_name = "ID")]
    pub resume: Option<String>,

    /// In the REPL, do not wake the model when a background task's news arrives while
    /// you are idle at the prompt; it gets the news with your next message (`/wake on`
    /// turns waking back on).
    #[arg(long)]
    pub no_wake: bool,

    /// In the REPL, how many wake-ups may follow each other without input from you
    /// before the agent waits for you (default 5).
    #[arg(long, value_name = "N", default_value_t = crate::wake::DEFAULT_MAX_WAKES)]
    pub max_wakes: u32,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with tool plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The OS sandbox of bash and background tasks.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Saved conversations (transcripts in the state directory's `sessions`).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// The agent's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the settings this run would use and where each came from (flag, environment,
    /// config.toml or default). The API key is never printed.
    Show {
        /// One JSON object instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List the sessions of every workspace, newest first: id, workspace, start time,
    /// turns (the user's requests) and the first request.
    List {
        /// One JSON object per line instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Show what this machine supports and what each mode would enforce in this workspace;
    /// exits non-zero if the chosen mode cannot be enforced.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins the agent would load (built-in, user, workspace, --plugin), their
    /// tools and grants, and any problems.
    List,
    /// Show one component: its tools with their input schemas, its imports and its grants.
    Inspect {
        /// The component file (`NAME.wasm`; its manifest is `NAME.toml` beside it).
        file: PathBuf,
    },
    /// Load one component as the agent would and report every problem; exits non-zero
    /// if there is any.
    Check {
        /// The component file (`NAME.wasm`; its manifest is `NAME.toml` beside it).
        file: PathBuf,
    },
    /// Approve what the manifest of a plugin that came with the workspace asks beyond the
    /// workspace (directories, environment variables, hosts). The approval holds for this
    /// file in this workspace until the component or its manifest changes.
    #[command(group(
        clap::ArgGroup::new("action")
            .required(true)
            .args(["file", "list", "revoke"])
    ))]
    Trust {
        /// The component file (`NAME.wasm`, with `NAME.toml` beside it) in the workspace's
        /// `.agent/plugins`.
        file: Option<PathBuf>,
        /// List the approvals given, in every workspace.
        #[arg(long)]
        list: bool,
        /// Withdraw the approval of this plugin file.
        #[arg(long, value_name = "FILE")]
        revoke: Option<PathBuf>,
    },
}
