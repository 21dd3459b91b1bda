//! How a call can fail, in the words the model reads: the typed [`CallError`], and turning
//! a trap, a WIT `tool-error`, an over-long answer or a refused request into it.

use std::time::Duration;

use wasmtime::Trap;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::PluginSource;
use crate::bindings::agent::tool::types::ToolError;
use crate::manifest::HostPattern;
use crate::net::Refusal;
use crate::sandbox::MemoryLimitExceeded;

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

/// What a failed describe or call says: a timeout, the memory limit, or a trap with the
/// plugin's captured stderr (where a Rust panic prints its message).
pub(crate) fn trap_error(
    error: anyhow::Error,
    stderr: &MemoryOutputPipe,
    limit: Duration,
) -> CallError {
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

/// The network grant a workspace plugin's manifest asks for but that is withheld until the
/// user trusts the plugin.
#[derive(Clone, Copy)]
pub(crate) struct Withheld<'a> {
    pub(crate) network: &'a [HostPattern],
    pub(crate) plugin: &'a PluginSource,
}

/// Adds the hosts the network gate refused to an error, since the plugin's own message
/// may not say why its request failed: either not granted at all, or granted by the
/// manifest but withheld until the user trusts the plugin.
pub(crate) fn with_refused_hosts(
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
        (Refusal::NotGranted { host, port }, Some(w)) => {
            w.network.iter().any(|p| p.matches(host, *port))
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
        let held: Vec<String> = held
            .iter()
            .filter_map(|r| match r {
                Refusal::NotGranted { host, port } => Some(format!("{host}:{port}")),
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

pub(crate) fn tool_error(error: ToolError) -> CallError {
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

pub(crate) fn cap_output(mut text: String, limit: usize) -> String {
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
