//! Calling a loaded plugin's tool: a fresh instance per call, on the thread that suits it,
//! within the call's time limit.

use std::sync::Arc;

use super::PluginHost;
use crate::bindings::agent::tool::types::CallContext;
use crate::errors::{CallError, Withheld, cap_output, tool_error, trap_error, with_refused_hosts};
use crate::log;
use crate::manifest::Access;
use crate::sandbox::FileOps;

thread_local! {
    /// The runtime that drives plugin calls on this (blocking-pool) thread, made on its
    /// first call and kept while the thread lives, so a call does not pay for a new one.
    static CALL_RUNTIME: std::io::Result<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_all().build();
}

/// How much longer than the call's own deadline its caller waits for a thread that may be
/// stuck in the kernel, so that the deadline inside the call, which keeps the call's log
/// lines and refused hosts, is the one that normally ends it.
const STUCK_THREAD_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl PluginHost {
    /// Runs tool `tool` of plugin `index` in a fresh instance.
    ///
    /// A plugin with files granted runs from start to end on one thread of tokio's
    /// blocking pool, driven by that thread's own single-threaded runtime, with its file
    /// operations done inline on that thread. Driven by the caller's runtime instead,
    /// every WASI file operation is two thread hand-offs (to the blocking pool and back),
    /// which were most of a `read_file`'s cost; this way a call pays one hand-off each way
    /// (about 0.1 ms on a small VM). A plugin stuck in the kernel (opening a FIFO nobody
    /// writes) keeps its thread until the file operation returns, but the caller still
    /// gets [`CallError::Timeout`] at the time limit: the wait below does not depend on
    /// it. A plugin without files cannot block a thread, so it runs on the caller's task
    /// and pays no hand-off.
    pub async fn call(
        self: &Arc<Self>,
        index: usize,
        tool: &str,
        input: &str,
        call_id: &str,
    ) -> Result<String, CallError> {
        let grants = &self.plugins[index].grants;
        if grants.workspace == Access::None && grants.dirs.is_empty() {
            return self
                .call_here(index, tool, input, call_id, FileOps::Pooled)
                .await;
        }
        let host = self.clone();
        let (tool, input, call_id) = (tool.to_string(), input.to_string(), call_id.to_string());
        let job = tokio::task::spawn_blocking(move || {
            CALL_RUNTIME.with(|runtime| match runtime {
                Ok(runtime) => runtime.block_on(host.call_here(
                    index,
                    &tool,
                    &input,
                    &call_id,
                    FileOps::Inline,
                )),
                Err(e) => Err(CallError::Host(anyhow::anyhow!(
                    "cannot start a runtime for the call: {e}"
                ))),
            })
        });
        // The call's own deadline (inside `call_here`) normally ends it, with its log lines
        // and refused hosts; this wait is the backstop for a thread stuck in the kernel.
        match tokio::time::timeout(self.call_deadline() + STUCK_THREAD_GRACE, job).await {
            Err(_elapsed) => Err(CallError::Timeout(self.limits.time_limit)),
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(CallError::Host(anyhow::anyhow!(
                "the call's thread failed: {join}"
            ))),
        }
    }

    /// The body of [`PluginHost::call`], on the thread that runs it.
    async fn call_here(
        &self,
        index: usize,
        tool: &str,
        input: &str,
        call_id: &str,
        file_ops: FileOps,
    ) -> Result<String, CallError> {
        let plugin = &self.plugins[index];
        let (mut store, stderr) = self
            .new_store(
                &plugin.grants,
                &plugin.env,
                self.limits.time_limit,
                file_ops,
            )
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
        if let Some(file) = &self.log_file {
            log::append_now(file, &plugin.name, tool, call_id, store.data().logs.lines());
        }
        let result = match result {
            Err(_elapsed) => Err(CallError::Timeout(self.limits.time_limit)),
            Ok(Ok(Ok(text))) => Ok(cap_output(text, self.limits.output_bytes)),
            Ok(Ok(Err(error))) => Err(tool_error(error)),
            Ok(Err(error)) => Err(trap_error(error.into(), &stderr, self.limits.time_limit)),
        };
        result.map_err(|error| with_refused_hosts(error, &refused, withheld))
    }
}
