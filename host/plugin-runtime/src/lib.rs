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
pub mod catalog;
mod component;
pub mod describe_failures;
pub mod discovery;
mod engine;
mod errors;
mod handle;
mod host;
pub mod log;
pub mod manifest;
pub mod net;
pub mod private_fs;
mod sandbox;
mod tool_spec;
pub mod trust;

use std::time::Duration;

pub use errors::CallError;
pub use handle::PluginHandle;
pub use host::{Loaded, LoadedPlugin, PluginHost, PluginSource};
pub use tool_spec::{ToolHints, ToolSpec};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
        exports: { default: async },
    });
}

/// The WIT package this host implements; components built against another minor series
/// are refused with a message saying so.
pub const WIT_PACKAGE: &str = "agent:tool";
pub const WIT_VERSION: &str = "0.1.0";

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
