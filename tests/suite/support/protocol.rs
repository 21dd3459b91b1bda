//! The Anthropic Messages API rules every request to the model server is
//! checked against: the rules whose breach makes the real API answer 400
//! (or that the agent must keep anyway), so a test catches a malformed
//! conversation even though the fake model would have accepted it.
//!
//! Headers: `x-api-key` and `anthropic-version` present, a JSON content type.
//! Body: `model` (string), `max_tokens` (positive integer), `messages`
//! (non-empty array); `stream` a boolean if present; `system` a string or an
//! array of text blocks if present; each tool has a `name` (`[a-zA-Z0-9_-]{1,64}`,
//! unique), a `description` and an `input_schema` with `"type": "object"`.
//! Messages: roles alternate user/assistant starting with user; content is a
//! non-empty string or a non-empty array of blocks; text blocks are non-empty;
//! `tool_use` only in assistant messages, with a unique string `id`, a `name`
//! and an object `input`; every `tool_use` is answered by exactly one
//! `tool_result` with the same `tool_use_id` in the immediately following user
//! message, where all `tool_result` blocks come before any other block; no
//! `tool_result` without a matching `tool_use` in the message just before;
//! a `tool_result`'s `content` (optional, as in the real API) is a string or
//! an array of text blocks, and its `is_error` a boolean.

use std::collections::HashSet;

use serde_json::Value;

/// Checks one `POST /v1/messages` (lower-cased header names, JSON body) and
/// returns one line per violation; empty when the request is valid.
pub fn check_request(headers: &[(String, String)], body: &Value) -> Vec<String> {
    let mut v = Vec::new();
    check_headers(headers, &mut v);
    let Some(obj) = body.as_object() else {
        v.push(format!("body is not a JSON object: {}", excerpt(body)));
        return v;
    };

    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        other => v.push(format!(
            "`model` must be a non-empty string, got {}",
            show(other)
        )),
    }
    match obj.get("max_tokens") {
        Some(n) if n.as_u64().is_some_and(|n| n > 0) => {}
        other => v.push(format!(
            "`max_tokens` must be a positive integer, got {}",
            show(other)
        )),
    }
    if let Some(stream) = obj.get("stream")
        && !stream.is_boolean()
    {
        v.push(format!(
            "`stream` must be a boolean, got {}",
            excerpt(stream)
        ));
    }
    if let Some(system) = obj.get("system") {
        check_system(system, &mut v);
    }
    if let Some(tools) = obj.get("tools") {
        check_tools(tools, &mut v);
    }
    match obj.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => check_messages(messages, &mut v),
        other => v.push(format!(
            "`messages` must be a non-empty array, got {}",
            show(other)
        )),
    }
    v
}

fn check_headers(headers: &[(String, String)], v: &mut Vec<String>) {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    for required in ["x-api-key", "anthropic-version"] {
        if get(required).is_none_or(str::is_empty) {
            v.push(format!("header `{required}` is missing"));
        }
    }
    match get("content-type") {
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json") => {}
        other => v.push(format!(
            "header `content-type` must be application/json, got {other:?}"
        )),
    }
}

fn check_system(system: &Value, v: &mut Vec<String>) {
    match system {
        Value::String(_) => {}
        Value::Array(blocks) => {
            for (i, block) in blocks.iter().enumerate() {
                if block_type(block) != Some("text")
                    || !block.get("text").is_some_and(Value::is_string)
                {
                    v.push(format!(
                        "system[{i}] must be a text block, got {}",
                        excerpt(block)
                    ));
                }
            }
        }
        other => v.push(format!(
            "`system` must be a string or an array of text blocks, got {}",
            excerpt(other)
        )),
    }
}

fn check_tools(tools: &Value, v: &mut Vec<String>) {
    let Some(tools) = tools.as_array() else {
        v.push(format!("`tools` must be an array, got {}", excerpt(tools)));
        return;
    };
    let mut names = HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("name").and_then(Value::as_str) {
            Some(name) => {
                let valid = (1..=64).contains(&name.len())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    v.push(format!(
                        "tools[{i}].name {name:?} must match [a-zA-Z0-9_-]{{1,64}}"
                    ));
                }
                if !names.insert(name) {
                    v.push(format!("tools[{i}].name {name:?} is offered twice"));
                }
            }
            None => v.push(format!("tools[{i}] has no string `name`")),
        }
        if !tool.get("description").is_some_and(Value::is_string) {
            v.push(format!("tools[{i}] has no string `description`"));
        }
        match tool.get("input_schema") {
            Some(schema) if schema.get("type").and_then(Value::as_str) == Some("object") => {}
            other => v.push(format!(
                "tools[{i}].input_schema must be an object schema with \"type\": \"object\", got {}",
                show(other)
            )),
        }
    }
}

fn check_messages(messages: &[Value], v: &mut Vec<String>) {
    let mut seen_tool_use_ids = HashSet::new();
    // The tool_use ids of the previous message if it was an assistant message.
    let mut pending: Vec<String> = Vec::new();
    let mut previous_role: Option<&str> = None;

    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        match (previous_role, role) {
            (_, Some(r)) if r != "user" && r != "assistant" => {
                v.push(format!(
                    "messages[{i}].role must be user or assistant, got {r:?}"
                ));
            }
            (None, Some(r)) if r != "user" => v.push(format!(
                "messages[{i}]: the first message must be a user message, got {r:?}"
            )),
            (Some(p), Some(r)) if p == r => {
                v.push(format!(
                    "messages[{i}]: roles must alternate, two {r} messages in a row"
                ));
            }
            (_, None) => v.push(format!("messages[{i}] has no string `role`")),
            _ => {}
        }

        let blocks = match message.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() {
                    v.push(format!("messages[{i}].content is an empty string"));
                }
                Vec::new()
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() {
                    v.push(format!("messages[{i}].content is an empty array"));
                }
                blocks.iter().collect()
            }
            other => {
                v.push(format!(
                    "messages[{i}].content must be a string or an array, got {}",
                    show(other)
                ));
                Vec::new()
            }
        };

        let is_user = role == Some("user");
        let expected = std::mem::take(&mut pending);
        let mut answered: Vec<String> = Vec::new();
        let mut other_block_seen = false;

        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            match block_type(block) {
                Some("text") => {
                    other_block_seen = true;
                    match block.get("text").and_then(Value::as_str) {
                        Some("") => v.push(format!("{at}: text blocks must be non-empty")),
                        Some(_) => {}
                        None => v.push(format!("{at}: text block without a string `text`")),
                    }
                }
                Some("tool_use") => {
                    other_block_seen = true;
                    if is_user {
                        v.push(format!("{at}: tool_use in a user message"));
                    }
                    match block.get("id").and_then(Value::as_str) {
                        Some(id) if !id.is_empty() => {
                            if !seen_tool_use_ids.insert(id.to_string()) {
                                v.push(format!("{at}: tool_use id {id:?} is used twice"));
                            }
                            if !is_user {
                                pending.push(id.to_string());
                            }
                        }
                        _ => v.push(format!("{at}: tool_use without a non-empty string `id`")),
                    }
                    if !block.get("name").is_some_and(Value::is_string) {
                        v.push(format!("{at}: tool_use without a string `name`"));
                    }
                    if !block.get("input").is_some_and(Value::is_object) {
                        v.push(format!("{at}: tool_use `input` must be an object"));
                    }
                }
                Some("tool_result") => {
                    if !is_user {
                        v.push(format!("{at}: tool_result in a non-user message"));
                    }
                    if other_block_seen {
                        v.push(format!("{at}: tool_result after a non-tool_result block (tool_result blocks must come first)"));
                    }
                    match block.get("tool_use_id").and_then(Value::as_str) {
                        Some(id) => {
                            if answered.iter().any(|a| a == id) {
                                v.push(format!("{at}: tool_use {id:?} is answered more than once"));
                            } else if expected.iter().any(|e| e == id) {
                                answered.push(id.to_string());
                            } else {
                                v.push(format!(
                                    "{at}: tool_result for {id:?} has no matching tool_use in the message just before"
                                ));
                            }
                        }
                        None => v.push(format!("{at}: tool_result without a string `tool_use_id`")),
                    }
                    check_tool_result_content(block, &at, v);
                }
                Some(_) => other_block_seen = true,
                None => v.push(format!(
                    "{at}: block without a string `type`: {}",
                    excerpt(block)
                )),
            }
        }

        if is_user {
            for id in expected.iter().filter(|e| !answered.contains(e)) {
                v.push(format!(
                    "messages[{i}]: tool_use {id:?} of messages[{}] is not answered by a tool_result",
                    i - 1
                ));
            }
        } else if !expected.is_empty() {
            v.push(format!(
                "messages[{i}]: tool_use {expected:?} of messages[{}] is followed by a non-user message instead of its tool_result",
                i.saturating_sub(1)
            ));
        }
        previous_role = role;
    }

    if !pending.is_empty() {
        v.push(format!(
            "messages[{}]: tool_use {pending:?} is never answered (the conversation ends with it)",
            messages.len() - 1
        ));
    }
}

fn check_tool_result_content(block: &Value, at: &str, v: &mut Vec<String>) {
    match block.get("content") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(parts)) => {
            for (k, part) in parts.iter().enumerate() {
                if block_type(part) != Some("text")
                    || !part.get("text").is_some_and(Value::is_string)
                {
                    v.push(format!(
                        "{at}.content[{k}] must be a text block, got {}",
                        excerpt(part)
                    ));
                }
            }
        }
        Some(other) => v.push(format!(
            "{at}: tool_result `content` must be a string or an array of text blocks, got {}",
            excerpt(other)
        )),
    }
    if let Some(is_error) = block.get("is_error")
        && !is_error.is_boolean()
    {
        v.push(format!(
            "{at}: tool_result `is_error` must be a boolean, got {}",
            excerpt(is_error)
        ));
    }
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_string(), excerpt)
}

/// A value's JSON, cut to keep violation lines readable.
fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
