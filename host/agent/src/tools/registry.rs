//! The tool registry: every tool the model may call, by name.
//!
//! It owns the two rules every call shares, each in one place: who keeps a name when two
//! tools offer it ([`claim`]: the first to offer it), and whether an input is acceptable
//! (the tool's JSON Schema, compiled once when the tool registers). Tools are
//! `Arc<dyn Tool>`: native tools and plugin tools alike.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::plugin_tool::PluginTool;
use super::{Tool, ToolContext, ToolError, ToolOutput, ToolSpec, native};
use agent_plugin_runtime::{LoadedPlugin, PluginHost};

/// The owner named when a plugin offers a native tool's name.
pub const NATIVE_OWNER: &str = "the agent itself";

/// The one clash rule: `owner` offers `names`; a name nobody holds yet becomes `owner`'s,
/// a name already held is lost. Returns, per name, whether it was kept, and one problem
/// per earlier owner
/// `owner` lost names to, e.g. "x.wasm: tool `bash` is already provided by the agent
/// itself; skipped".
fn claim<'a>(
    owners: &mut HashMap<String, String>,
    owner: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> (Vec<bool>, Vec<String>) {
    let mut kept = Vec::new();
    let mut lost: Vec<(String, Vec<&str>)> = Vec::new();
    for name in names {
        match owners.get(name) {
            Some(holder) => {
                kept.push(false);
                match lost.iter_mut().find(|(h, _)| h == holder) {
                    Some((_, names)) => names.push(name),
                    None => lost.push((holder.clone(), vec![name])),
                }
            }
            None => {
                kept.push(true);
                owners.insert(name.to_string(), owner.to_string());
            }
        }
    }
    let problems = lost
        .into_iter()
        .map(|(holder, names)| {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let (noun, verb) = if names.len() == 1 {
                ("tool", "is")
            } else {
                ("tools", "are")
            };
            format!(
                "{owner}: {noun} {} {verb} already provided by {holder}; skipped",
                list.join(", ")
            )
        })
        .collect();
    (kept, problems)
}

/// The plugin tools that lose their name to an earlier tool, by [`claim`]: the native
/// tools come first, then the plugins in load order. One problem per plugin and owner,
/// with the index of the plugin that loses. (What `agent plugins list|check` report; a
/// run's [`ToolRegistry`] applies the same rule.)
pub fn name_clashes(plugins: &[LoadedPlugin]) -> Vec<(usize, String)> {
    let mut owners = HashMap::new();
    claim(&mut owners, NATIVE_OWNER, native::NAMES.iter().copied());
    let mut problems = Vec::new();
    for (index, plugin) in plugins.iter().enumerate() {
        let names = plugin.tools.iter().map(|tool| tool.name.as_str());
        let (_, lost) = claim(&mut owners, &plugin.source.to_string(), names);
        problems.extend(lost.into_iter().map(|problem| (index, problem)));
    }
    problems
}

struct Registered {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

/// Every tool by name, in the order they registered; built once at start-up.
#[derive(Default)]
pub struct ToolRegistry {
    tools: Vec<Registered>,
    by_name: HashMap<String, usize>,
    owners: HashMap<String, String>,
}

impl ToolRegistry {
    pub fn new() -> ToolRegistry {
        ToolRegistry::default()
    }

    /// The registry of a run: the native tools, then every plugin's tools in load order.
    /// Returns the problems met (names lost to an earlier tool, invalid specs).
    pub fn with_plugins(
        native: Vec<Arc<dyn Tool>>,
        plugins: &Arc<PluginHost>,
    ) -> (ToolRegistry, Vec<String>) {
        let mut registry = ToolRegistry::new();
        let mut problems = registry.add_group(NATIVE_OWNER, native);
        for (owner, tools) in PluginTool::all(plugins) {
            problems.extend(registry.add_group(&owner, tools));
        }
        (registry, problems)
    }

    /// Registers the tools one owner offers (the native tools as [`NATIVE_OWNER`], a
    /// plugin as its source), after those registered before. A tool whose spec is invalid
    /// or whose name is taken is skipped with a problem; the rest register.
    pub fn add_group(&mut self, owner: &str, tools: Vec<Arc<dyn Tool>>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        for tool in tools {
            match tool.spec().validator() {
                Ok(validator) => valid.push(Registered { tool, validator }),
                Err(e) => problems.push(format!("{owner}: {e:#}; the tool is skipped")),
            }
        }
        let names: Vec<String> = valid.iter().map(|r| r.tool.spec().name.clone()).collect();
        let (kept, lost) = claim(&mut self.owners, owner, names.iter().map(String::as_str));
        for ((registered, name), kept) in valid.into_iter().zip(names).zip(kept) {
            if kept {
                self.by_name.insert(name, self.tools.len());
                self.tools.push(registered);
            }
        }
        problems.splice(0..0, lost);
        problems
    }

    /// The specs of every tool, in registration order.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|r| r.tool.spec())
    }

    /// The tool registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.tools[i].tool)
    }

    /// Whether `name` is a tool whose hints say it only reads (and so may run alongside
    /// other read-only calls).
    pub fn is_read_only(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|tool| tool.spec().hints.read_only)
    }

    /// Runs a tool. Every failure the model should hear of (an unknown name, input that is
    /// not a JSON object or breaks the schema, the tool's own [`ToolError::Failed`])
    /// becomes an error output; only [`ToolError::Fatal`] is returned as an error.
    pub async fn call(
        &self,
        name: &str,
        input: &Value,
        context: &ToolContext,
    ) -> Result<ToolOutput, anyhow::Error> {
        let Some(&index) = self.by_name.get(name) else {
            let known: Vec<&str> = self.specs().map(|s| s.name.as_str()).collect();
            return Ok(ToolOutput::error(format!(
                "unknown tool `{name}`; the tools are: {}",
                known.join(", ")
            )));
        };
        let Registered { tool, validator } = &self.tools[index];
        if !input.is_object() {
            return Ok(ToolOutput::error(format!(
                "invalid input: the input of `{name}` must be a JSON object"
            )));
        }
        let problems: Vec<String> = validator
            .iter_errors(input)
            .take(5)
            .map(|error| match error.instance_path().to_string() {
                path if path.is_empty() => error.to_string(),
                path => format!("{path}: {error}"),
            })
            .collect();
        if !problems.is_empty() {
            return Ok(ToolOutput::error(format!(
                "invalid input for `{name}`: {}",
                problems.join("; ")
            )));
        }
        match tool.call(input, context).await {
            Ok(output) => Ok(output),
            Err(ToolError::Failed(message)) => Ok(ToolOutput::error(message)),
            Err(ToolError::Fatal(error)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::claim;

    #[test]
    fn the_first_owner_keeps_a_name_and_losses_are_grouped_by_owner() {
        let mut owners = HashMap::new();
        let (kept, lost) = claim(&mut owners, "a", ["x", "y"]);
        assert_eq!((kept, lost.len()), (vec![true, true], 0));
        let (kept, _) = claim(&mut owners, "b", ["z", "z"]);
        assert_eq!(kept, vec![true, false]);
        let (kept, lost) = claim(&mut owners, "c", ["x", "w", "y", "z"]);
        assert_eq!(kept, vec![false, true, false, false]);
        assert_eq!(
            lost,
            vec![
                "c: tools `x`, `y` are already provided by a; skipped",
                "c: tool `z` is already provided by b; skipped",
            ]
        );
    }
}
