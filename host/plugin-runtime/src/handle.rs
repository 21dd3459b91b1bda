//! A handle to one loaded plugin: what a caller keeps to call it, instead of an index into
//! the host's list.

use std::path::Path;
use std::sync::Arc;

use crate::{CallError, LoadedPlugin, PluginHost};

/// One loaded plugin of a shared [`PluginHost`], callable on its own.
#[derive(Clone)]
pub struct PluginHandle {
    host: Arc<PluginHost>,
    /// Its place in the host's list, which only grows; private to this module.
    index: usize,
}

impl PluginHandle {
    /// A handle for every plugin of `host`, in load order.
    pub fn all(host: &Arc<PluginHost>) -> Vec<PluginHandle> {
        (0..host.plugins().len())
            .map(|index| PluginHandle {
                host: host.clone(),
                index,
            })
            .collect()
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.host.plugins()[self.index]
    }

    /// The workspace its workspace grant names (absolute, canonical).
    pub fn workspace(&self) -> &Path {
        self.host.workspace()
    }

    /// Runs its tool `tool` in a fresh instance, as [`PluginHost::call`].
    pub async fn call(&self, tool: &str, input: &str, call_id: &str) -> Result<String, CallError> {
        self.host.call(self.index, tool, input, call_id).await
    }
}
