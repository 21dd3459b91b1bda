//! A tool as a plugin describes it and the model is offered it: name, description, input
//! schema and hints, and the one check that decides whether a tool is acceptable.
//!
//! Every path that loads or lists tools (a run, `plugins list|inspect|check`, the agent's
//! registry) calls [`ToolSpec::validate`], so a tool a real run would refuse is refused
//! everywhere, with the same reason.

use anyhow::{Result, bail};
use serde_json::Value;

/// What the host may assume about a tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolHints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

/// A tool as offered to the model.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the input; always an object schema.
    pub input_schema: Value,
    pub hints: ToolHints,
}

impl ToolSpec {
    /// Checks what the model API requires of a tool: a name of 1 to 64 characters of
    /// `[a-zA-Z0-9_-]` and an object schema that compiles as a JSON Schema. This is the
    /// one check for every path (loading, `plugins list|inspect|check`, the registry), so
    /// a tool that a real run would refuse is refused everywhere, with the same reason.
    pub fn validate(&self) -> Result<()> {
        self.validator().map(|_| ())
    }

    /// [`ToolSpec::validate`], returning the compiled schema that checks inputs.
    pub fn validator(&self) -> Result<jsonschema::Validator> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            bail!(
                "tool name {:?} is invalid: use 1 to 64 characters of a-z, A-Z, 0-9, `_` and `-`",
                self.name
            );
        }
        if self.input_schema.get("type").and_then(Value::as_str) != Some("object") {
            bail!(
                "tool `{}`: the input schema must be a JSON object schema ({{\"type\": \"object\", ...}})",
                self.name
            );
        }
        jsonschema::validator_for(&self.input_schema).map_err(|e| {
            anyhow::anyhow!(
                "tool `{}`: the input schema is not a valid JSON Schema: {e}",
                self.name
            )
        })
    }
}
