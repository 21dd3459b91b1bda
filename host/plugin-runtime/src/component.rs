//! Checks of a component before it is linked: that it is a component at all, that it
//! speaks our WIT version, and the conversion of what its `describe()` returns into
//! [`ToolSpec`]s (validated by the one rule in [`crate::tool_spec`]).

use anyhow::{Result, anyhow, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings;
use crate::{ToolHints, ToolSpec, WIT_PACKAGE, WIT_VERSION};

/// Tells a component from a core module or a file that is not WebAssembly at all, before
/// wasmtime's parser gives a less helpful message.
pub(crate) fn check_component_header(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const COMPONENT_LAYER: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!("is not a WebAssembly file (it does not start with the `\\0asm` header)");
    }
    if &bytes[4..8] != COMPONENT_LAYER {
        bail!(
            "is a core WebAssembly module, not a component: build it for wasm32-wasip2, or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}

/// Refuses a component built against a WIT version this host does not speak, with a
/// message that says which version it wants. Within our major.minor series, wasmtime's
/// semver-aware linker does the matching. Returns the component's imports.
pub(crate) fn check_wit_version(engine: &Engine, component: &Component) -> Result<Vec<String>> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let names: Vec<String> = imports
        .iter()
        .cloned()
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()))
        .collect();
    let ours = WIT_VERSION
        .rsplit_once('.')
        .map(|(series, _)| series)
        .unwrap_or(WIT_VERSION);
    for name in &names {
        let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !version.starts_with(&format!("{ours}.")) {
            bail!(
                "was built against {WIT_PACKAGE}@{}, but this agent speaks {WIT_PACKAGE}@{ours}.x; rebuild it against the WIT shipped with this agent",
                if version.is_empty() {
                    "an unversioned package"
                } else {
                    version
                }
            );
        }
    }
    let tool_export = format!("{WIT_PACKAGE}/tool@");
    if !names.iter().any(|n| n.starts_with(&tool_export)) {
        bail!(
            "does not export {WIT_PACKAGE}/tool@{WIT_VERSION}: it is not a tool plugin (it has {})",
            if names.is_empty() {
                "no imports or exports".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(imports)
}

pub(crate) fn tool_spec(spec: bindings::agent::tool::types::ToolSpec) -> Result<ToolSpec> {
    use bindings::agent::tool::types::ToolHints as WitHints;
    let schema: serde_json::Value = serde_json::from_str(&spec.input_schema).map_err(|e| {
        anyhow!(
            "tool `{}`: the input schema is not valid JSON: {e}",
            spec.name
        )
    })?;
    let tool = ToolSpec {
        name: spec.name,
        description: spec.description,
        input_schema: schema,
        hints: ToolHints {
            read_only: spec.hints.contains(WitHints::READ_ONLY),
            destructive: spec.hints.contains(WitHints::DESTRUCTIVE),
            idempotent: spec.hints.contains(WitHints::IDEMPOTENT),
        },
    };
    tool.validate()?;
    Ok(tool)
}
