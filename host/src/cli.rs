//! The command line, as clap types. Parsing only: [`crate::config`] validates and merges
//! these with the environment.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::render::OutputFormat;

/// A coding agent whose file tools run as sandboxed WebAssembly components.
///
/// Without -p it opens a REPL (exit with `exit`, `q` or Ctrl-D). Environment:
/// ANTHROPIC_API_KEY (required), ANTHROPIC_BASE_URL, MODEL_ID; a `.env` file in the current
/// directory is loaded first and overrides the environment, as in the seed lesson.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, long_about)]
pub struct Cli {
    /// Run this one request to the end, print the answer and exit.
    #[arg(short = 'p', long = "prompt", value_name = "PROMPT")]
    pub prompt: Option<String>,

    /// The directory the agent works in; its tools can reach nothing outside it.
    #[arg(short = 'w', long, value_name = "DIR", default_value = ".")]
    pub workspace: PathBuf,

    /// The model to use.
    #[arg(
        short = 'm',
        long,
        env = "MODEL_ID",
        default_value = "claude-sonnet-4-5"
    )]
    pub model: String,

    /// How to print what happens: human text, or JSON lines for scripts.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,

    /// The most tokens one model answer may have.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    pub max_tokens: u32,

    /// Default time limit of a `bash` command, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub bash_timeout: u64,

    /// Default time limit of a background task, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub background_timeout: u64,

    /// How many background tasks run at once; more wait in a queue.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_background: usize,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with tool plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the loaded plugins and their tools.
    List,
}
