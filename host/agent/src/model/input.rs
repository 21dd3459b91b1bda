//! A tool call's input as a provider received it: a JSON object, or what the model sent
//! instead.
//!
//! The model API requires a `tool_use` input to be a JSON object, but a model can send
//! broken or non-object JSON (a cut stream, a confused model). The provider keeps that as
//! [`ToolInput::Invalid`] rather than dropping or rewriting it, so the loop can answer the
//! call with an error result (naming what was wrong) without running the tool. What is
//! sent back to the API is always valid: an invalid input serializes as `{}`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum ToolInput {
    /// A JSON object, as the API requires.
    Object(Map<String, Value>),
    /// The model's input was not a JSON object.
    Invalid {
        /// The text the model sent (or the JSON value, serialized).
        raw: String,
        /// Why it was refused.
        error: String,
    },
}

impl ToolInput {
    /// Parses the joined `input_json` text of a streamed block. Empty text is `{}` (a tool
    /// without parameters streams nothing).
    pub fn parse(raw: &str) -> ToolInput {
        if raw.trim().is_empty() {
            return ToolInput::Object(Map::new());
        }
        match serde_json::from_str::<Value>(raw) {
            Ok(value) => ToolInput::from_value_with_raw(value, raw),
            Err(e) => ToolInput::Invalid {
                raw: raw.to_string(),
                error: format!("it is not valid JSON ({e})"),
            },
        }
    }

    /// An input from an already parsed value (a non-streamed answer).
    pub fn from_value(value: Value) -> ToolInput {
        let raw = value.to_string();
        ToolInput::from_value_with_raw(value, &raw)
    }

    fn from_value_with_raw(value: Value, raw: &str) -> ToolInput {
        match value {
            Value::Object(map) => ToolInput::Object(map),
            _ => ToolInput::Invalid {
                raw: raw.to_string(),
                error: "it is not a JSON object".into(),
            },
        }
    }

    /// The input as JSON: the object, or `{}` for an invalid input (what the API is sent).
    pub fn to_value(&self) -> Value {
        match self {
            ToolInput::Object(map) => Value::Object(map.clone()),
            ToolInput::Invalid { .. } => Value::Object(Map::new()),
        }
    }
}

impl From<Value> for ToolInput {
    fn from(value: Value) -> ToolInput {
        ToolInput::from_value(value)
    }
}

impl Serialize for ToolInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolInput::Object(map) => map.serialize(serializer),
            ToolInput::Invalid { .. } => Map::<String, Value>::new().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ToolInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ToolInput, D::Error> {
        Value::deserialize(deserializer).map(ToolInput::from_value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_pass_and_anything_else_is_invalid_but_sent_as_an_empty_object() {
        assert_eq!(ToolInput::parse(r#"{"a": 1}"#).to_value(), json!({"a": 1}));
        assert_eq!(ToolInput::parse("  ").to_value(), json!({}));
        for raw in [r#"{"a": "#, "[1, 2]", "\"text\"", "null"] {
            let input = ToolInput::parse(raw);
            let ToolInput::Invalid { raw: kept, .. } = &input else {
                panic!("{raw} was accepted");
            };
            assert_eq!(kept, raw);
            assert_eq!(serde_json::to_value(&input).unwrap(), json!({}));
        }
        let parsed: ToolInput = serde_json::from_value(json!([1])).unwrap();
        assert!(matches!(parsed, ToolInput::Invalid { .. }));
    }
}
