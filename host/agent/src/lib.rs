//! `agent`: a command-line coding agent whose file tools run as sandboxed WebAssembly
//! components.
//!
//! How the pieces fit (data flows one way: CLI -> loop -> (model | tools) -> loop):
//! - [`cli`] parses flags; [`config`] merges them with the environment into a `Config`;
//!   [`dotenv`] decides the little a `.env` file may add to that environment; [`provider`]
//!   picks the model provider and builds its client;
//!   [`app`] builds everything from it and runs one-shot or [`repl`] mode; [`shutdown`] is
//!   how either ends.
//! - [`agent`] is the loop: it owns the conversation, calls the [`model`], runs tools through
//!   the [`tools`] registry, and injects finished background tasks before each model call;
//!   [`context`] keeps each request inside the model's context window (cutting old tool
//!   results, compacting older turns into a summary).
//! - [`tools`] maps names to native tools (`bash`, background tasks) or plugin tools;
//!   [`approval`] decides whether a command may run outside the sandbox (asking the user
//!   through the REPL).
//! - [`agent_plugin_runtime`] (its own crate, which knows nothing of the agent) runs WASI
//!   components in wasmtime, one sandboxed, bounded instance per call;
//!   [`plugin_commands`] decides which plugins load and runs `agent plugins ...`.
//! - [`background`] owns background tasks and their notifications: its data types are
//!   [`background_task`], its one state and the transitions on it [`background_state`];
//!   [`task_text`] words a task for the model, the screen and the tools; [`task_commands`]
//!   are the task operations the tools and the REPL share. [`process`] is the one place
//!   processes are spawned and killed, [`sandbox`] confines them in the kernel (Landlock,
//!   seccomp) to the workspace and the toolchains, [`task_processes`] holds everything one
//!   command started (in a [`task_cgroup`] where the machine allows), [`orphans`] ends what
//!   they leave behind and [`host_secrets`] keeps them out of the agent's own memory;
//!   [`output`] bounds captured
//!   output; [`tasklog`] pages through task logs; the runtime's `private_fs` keeps what
//!   the agent stores private to the user.
//! - [`session`] writes each conversation to a transcript as it happens and reads it back
//!   to resume it (`--continue`, `--resume`, `/resume`); [`session_commands`] is
//!   `agent sessions ...` and the REPL's `/resume`.
//! - [`render`] turns events into text or JSON lines: library code never prints;
//!   [`status`] is its live status line of running tasks; [`ui_text`] makes untrusted text
//!   safe to show on a terminal (every print path uses it); [`term`] is the rendered view
//!   on a terminal (Markdown, compact tool lines, diffs of edits).

pub mod agent;
pub mod app;
pub mod approval;
pub mod background;
pub mod background_state;
pub mod background_task;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod config_show;
pub mod context;
pub mod dotenv;
pub mod host_secrets;
pub mod limits;
pub mod model;
pub mod orphans;
pub mod output;
pub mod plugin_commands;
pub mod process;
pub mod provider;
pub mod readiness;
pub mod render;
pub mod repl;
pub mod sandbox;
pub mod session;
pub mod session_commands;
pub mod shutdown;
pub mod status;
pub mod task_cgroup;
pub mod task_commands;
pub mod task_processes;
pub mod task_text;
pub mod tasklog;
pub mod term;
pub mod tools;
pub mod ui_text;
pub mod usage;
pub mod wake;
