//! Plugin tools: the [`Tool`] adapter for a tool a WebAssembly plugin offers.

use std::sync::Arc;

use serde_json::Value;

use super::{Tool, ToolContext, ToolError, ToolFuture, ToolOutput, ToolSpec, file_modes};
use crate::term::diff;
use agent_plugin_runtime::{PluginHandle, PluginHost};

/// One tool of one loaded plugin.
pub struct PluginTool {
    spec: ToolSpec,
    plugin: PluginHandle,
    /// Whether the call replaces a file whose mode the host keeps (see [`file_modes`]).
    keeps_mode: bool,
}

impl PluginTool {
    /// Every tool of every plugin of `host`, grouped by plugin (in load order) with the
    /// plugin's source, as [`super::ToolRegistry::add_group`] takes them.
    pub fn all(host: &Arc<PluginHost>) -> Vec<(String, Vec<Arc<dyn Tool>>)> {
        PluginHandle::all(host)
            .into_iter()
            .map(|plugin| {
                let owner = plugin.plugin().source.to_string();
                let tools = plugin
                    .plugin()
                    .tools
                    .iter()
                    .map(|spec| {
                        Arc::new(PluginTool::new(spec.clone(), plugin.clone())) as Arc<dyn Tool>
                    })
                    .collect();
                (owner, tools)
            })
            .collect()
    }

    pub fn new(spec: ToolSpec, plugin: PluginHandle) -> PluginTool {
        let keeps_mode = plugin.plugin().is_built_in()
            && file_modes::REPLACING_TOOLS.contains(&spec.name.as_str());
        PluginTool {
            spec,
            plugin,
            keeps_mode,
        }
    }

    async fn run(&self, input: &Value, context: &ToolContext) -> Result<ToolOutput, ToolError> {
        let kept_mode = self
            .keeps_mode
            .then(|| input["path"].as_str())
            .flatten()
            .and_then(|path| file_modes::remember(self.plugin.workspace(), path));
        // The user sees every edit: the file before the call, to diff with after it.
        let before = self
            .keeps_mode
            .then(|| input["path"].as_str())
            .flatten()
            .map(|path| diff::Before::read(self.plugin.workspace(), path));
        let text = self
            .plugin
            .call(&self.spec.name, &input.to_string(), &context.call_id)
            .await
            .map_err(|error| ToolError::Failed(error.to_string()))?;
        if let Some(kept) = kept_mode {
            kept.restore();
        }
        let mut output = ToolOutput::ok(text);
        output.change = before.and_then(diff::Before::change).map(Box::new);
        Ok(output)
    }
}

impl Tool for PluginTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, input: &'a Value, context: &'a ToolContext) -> ToolFuture<'a> {
        Box::pin(self.run(input, context))
    }
}
