//! The tool registry: every tool the model may call, by name, and how to run it.
//!
//! Two kinds of tool live here behind one interface: native tools (`bash` and the
//! background-task tools, the only ones that start processes) and plugin tools (every file
//! tool, run as a WebAssembly component by the [`agent_plugin_runtime`]). The agent loop
//! only sees [`ToolSpec`]s and [`ToolOutput`]s.

mod file_modes;
pub mod native;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use agent_plugin_runtime::{LoadedPlugin, PluginHost};
pub use agent_plugin_runtime::{ToolHints, ToolSpec};
use native::NativeTools;

/// The result of one tool call, as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: false,
        }
    }

    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Handler {
    Native,
    Plugin(usize),
}

/// The plugin tools that lose their name to an earlier tool: the native tools come first,
/// then the plugins in load order, and the first to offer a name keeps it. One problem per
/// plugin and owner, with the index of the plugin that loses.
pub fn name_clashes(plugins: &[LoadedPlugin]) -> Vec<(usize, String)> {
    let mut owners: HashMap<String, String> = NativeTools::specs()
        .into_iter()
        .map(|spec| (spec.name, "the agent itself".to_string()))
        .collect();
    let mut problems = Vec::new();
    for (index, plugin) in plugins.iter().enumerate() {
        let mut lost: Vec<(String, Vec<&str>)> = Vec::new();
        for tool in &plugin.tools {
            match owners.get(&tool.name) {
                Some(owner) => match lost.iter_mut().find(|(o, _)| o == owner) {
                    Some((_, names)) => names.push(&tool.name),
                    None => lost.push((owner.clone(), vec![&tool.name])),
                },
                None => {
                    owners.insert(tool.name.clone(), plugin.source.to_string());
                }
            }
        }
        for (owner, names) in lost {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let (noun, verb) = if names.len() == 1 {
                ("tool", "is")
            } else {
                ("tools", "are")
            };
            problems.push((
                index,
                format!(
                    "{}: {noun} {} {verb} already provided by {owner}; skipped",
                    plugin.source,
                    list.join(", ")
                ),
            ));
        }
    }
    problems
}

/// Every tool by name; built once at start-up.
pub struct ToolRegistry {
    specs: Vec<ToolSpec>,
    handlers: HashMap<String, (Handler, jsonschema::Validator)>,
    native: NativeTools,
    plugins: Arc<PluginHost>,
}

impl ToolRegistry {
    /// Registers the native tools, then each plugin's tools in load order. A plugin tool
    /// whose name is taken is skipped (see [`name_clashes`] for the problems reported); the
    /// rest still register.
    pub fn new(native: NativeTools, plugins: Arc<PluginHost>) -> (ToolRegistry, Vec<String>) {
        let mut registry = ToolRegistry {
            specs: Vec::new(),
            handlers: HashMap::new(),
            native,
            plugins: plugins.clone(),
        };
        for spec in NativeTools::specs() {
            registry
                .add(spec, Handler::Native)
                .expect("the native tools' schemas are valid");
        }
        let mut problems: Vec<String> = name_clashes(plugins.plugins())
            .into_iter()
            .map(|(_, problem)| problem)
            .collect();
        for (index, plugin) in plugins.plugins().iter().enumerate() {
            for spec in &plugin.tools {
                if registry.handlers.contains_key(&spec.name) {
                    continue;
                }
                if let Err(problem) = registry.add(spec.clone(), Handler::Plugin(index)) {
                    problems.push(format!("{}: {problem}; the tool is skipped", plugin.source));
                }
            }
        }
        (registry, problems)
    }

    /// Registers a tool whose name is free.
    fn add(&mut self, spec: ToolSpec, handler: Handler) -> Result<(), String> {
        let validator = spec.validator().map_err(|e| format!("{e:#}"))?;
        self.handlers
            .insert(spec.name.clone(), (handler, validator));
        self.specs.push(spec);
        Ok(())
    }

    pub fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    /// Runs a tool. Every failure, including an unknown tool name or input that is not a
    /// JSON object, becomes an error output for the model; nothing here ends the loop.
    pub async fn call(&self, name: &str, input: &Value, call_id: &str) -> ToolOutput {
        let Some((handler, validator)) = self.handlers.get(name) else {
            let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
            return ToolOutput::error(format!(
                "unknown tool `{name}`; the tools are: {}",
                known.join(", ")
            ));
        };
        if !input.is_object() {
            return ToolOutput::error(format!(
                "invalid input: the input of `{name}` must be a JSON object"
            ));
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
            return ToolOutput::error(format!(
                "invalid input for `{name}`: {}",
                problems.join("; ")
            ));
        }
        match *handler {
            Handler::Native => self.native.call(name, input).await,
            Handler::Plugin(index) => {
                let kept_mode = (self.plugins.plugins()[index].is_built_in()
                    && file_modes::REPLACING_TOOLS.contains(&name))
                .then(|| input["path"].as_str())
                .flatten()
                .and_then(|path| file_modes::remember(self.plugins.workspace(), path));
                let input = input.to_string();
                match self.plugins.call(index, name, &input, call_id).await {
                    Ok(text) => {
                        if let Some(kept) = kept_mode {
                            kept.restore();
                        }
                        ToolOutput::ok(text)
                    }
                    Err(error) => ToolOutput::error(error.to_string()),
                }
            }
        }
    }
}
