//! Tools: what the model may call, behind one [`Tool`] trait, kept by name in the
//! [`ToolRegistry`].
//!
//! Two kinds of tool are adapters to that trait: native tools ([`native`]: `bash` and the
//! background-task tools, the only ones that start processes) and plugin tools
//! ([`plugin_tool`]: every file tool, run as a WebAssembly component by the
//! [`agent_plugin_runtime`]). The registry owns what is common to every call: the name
//! (one clash rule) and the input check (the tool's JSON Schema), so an adapter receives
//! only input its schema accepts. The agent loop only sees [`ToolSpec`]s and
//! [`ToolOutput`]s.

mod command_check;
mod file_modes;
pub mod native;
pub mod plugin_tool;
mod registry;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

pub use agent_plugin_runtime::{ToolHints, ToolSpec};
pub use registry::{NATIVE_OWNER, ToolRegistry, name_clashes};

/// The result of one tool call, as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    /// The file a `write_file` / `edit_file` call changed, for the screen only (the model
    /// sees `text`).
    pub change: Option<Box<crate::term::diff::FileChange>>,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: false,
            change: None,
        }
    }

    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: true,
            change: None,
        }
    }
}

/// Why a call produced no [`ToolOutput`].
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The call failed in a way the model should be told of (bad input, a refused
    /// command, a plugin error); the model sees the message as an error result and the
    /// turn goes on.
    #[error("{0}")]
    Failed(String),
    /// The host cannot go on with this turn (it is broken, not the call); the loop
    /// answers the calls of the answer so the conversation stays valid, and ends the turn
    /// with this error.
    #[error(transparent)]
    Fatal(anyhow::Error),
}

/// What a call knows besides its input.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The model's id of this call (`tool_use.id`); plugins log it.
    pub call_id: String,
}

/// What [`Tool::call`] returns: a boxed future, so tools are `Arc<dyn Tool>`.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<ToolOutput, ToolError>> + Send + 'a>>;

/// A tool the model may call.
pub trait Tool: Send + Sync {
    /// Its name, description, input schema and hints, as offered to the model.
    fn spec(&self) -> &ToolSpec;

    /// Runs one call. The registry has already checked `input` against the spec's
    /// schema, so an adapter does not check again what the schema says.
    fn call<'a>(&'a self, input: &'a Value, context: &'a ToolContext) -> ToolFuture<'a>;
}
