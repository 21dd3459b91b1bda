//! The OpenAI wire formats of the scripted model server: a server started with
//! [`Wire::OpenAi`] (the Responses API, `POST /v1/responses`) or
//! [`Wire::OpenAiChat`] (`POST /v1/chat/completions`) checks each request's
//! shape in that format, records it turned into the Anthropic shape (so the
//! recorded helpers and the Anthropic protocol rules of `protocol.rs` apply to
//! every format alike; the body as sent is kept in `Recorded::raw`), and
//! renders each scripted message reply in that format, streamed or not.
//!
//! Shape rules checked beyond the Anthropic ones: Responses: `store: false`,
//! `input` items of known types, `function_call.arguments` a JSON string,
//! tools `{"type":"function","name","parameters"}`. Chat: known roles, tool
//! calls `{"id","type":"function","function":{"name","arguments"}}`, `tool`
//! messages with a `tool_call_id`, `stream_options.include_usage` when
//! streaming, tools `{"type":"function","function":{...}}`. The Anthropic rules
//! then see tool results that do not directly follow their call (or that have
//! text before them) as violations.

use serde_json::{Map, Value, json};

use super::reply::{Rendered, ToolUse, split_pieces, tokens};
use super::server::Recorded;

/// Which API the server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
    OpenAiChat,
}

impl Wire {
    /// The path of a model call.
    pub fn path(self) -> &'static str {
        match self {
            Wire::Anthropic => "/v1/messages",
            Wire::OpenAi => "/v1/responses",
            Wire::OpenAiChat => "/v1/chat/completions",
        }
    }

    /// The provider name the agent knows this format by.
    pub fn provider(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
            Wire::OpenAiChat => "openai-chat",
        }
    }
}

/// Appends a block to the last message when it has `role`, else to a new one.
fn push_block(messages: &mut Vec<Value>, role: &str, block: Value) {
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(content) = last["content"].as_array_mut()
    {
        content.push(block);
        return;
    }
    messages.push(json!({"role": role, "content": [block]}));
}

fn arguments(value: &Value, at: &str, v: &mut Vec<String>) -> Value {
    match value.as_str().map(serde_json::from_str::<Value>) {
        Some(Ok(parsed)) => parsed,
        _ => {
            v.push(format!(
                "{at}: `arguments` must be a string of JSON, got {value}"
            ));
            json!({})
        }
    }
}

/// The request in the Anthropic shape, with the violations of its own format
/// added to `v`.
pub fn normalize(wire: Wire, body: &Value, v: &mut Vec<String>) -> Value {
    match wire {
        Wire::Anthropic => body.clone(),
        Wire::OpenAi => normalize_responses(body, v),
        Wire::OpenAiChat => normalize_chat(body, v),
    }
}

fn normalize_responses(body: &Value, v: &mut Vec<String>) -> Value {
    if body["store"] != json!(false) {
        v.push(format!("`store` must be false, got {}", body["store"]));
    }
    let mut messages = Vec::new();
    for (i, item) in body["input"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
    {
        let at = format!("input[{i}]");
        match (item["type"].as_str(), item["role"].as_str()) {
            (Some("message"), Some(role @ ("user" | "assistant"))) => {
                let want = if role == "user" {
                    "input_text"
                } else {
                    "output_text"
                };
                for part in item["content"].as_array().map_or(&[][..], Vec::as_slice) {
                    if part["type"] != want {
                        v.push(format!("{at}: a {role} part must be {want}, got {part}"));
                    }
                    push_block(
                        &mut messages,
                        role,
                        json!({"type": "text", "text": part["text"]}),
                    );
                }
            }
            (Some("function_call"), _) => {
                let input = arguments(&item["arguments"], &at, v);
                push_block(
                    &mut messages,
                    "assistant",
                    json!({"type": "tool_use", "id": item["call_id"], "name": item["name"], "input": input}),
                );
            }
            (Some("function_call_output"), _) => {
                if !item["output"].is_string() {
                    v.push(format!("{at}: `output` must be a string"));
                }
                push_block(
                    &mut messages,
                    "user",
                    json!({"type": "tool_result", "tool_use_id": item["call_id"], "content": item["output"]}),
                );
            }
            _ => v.push(format!("{at}: unknown input item {item}")),
        }
    }
    let mut tools = Vec::new();
    for tool in body["tools"].as_array().map_or(&[][..], Vec::as_slice) {
        if tool["type"] != "function" {
            v.push(format!("a tool must have type function: {tool}"));
        }
        tools.push(json!({"name": tool["name"], "description": tool["description"], "input_schema": tool["parameters"]}));
    }
    let mut out = Map::new();
    out.insert("model".into(), body["model"].clone());
    out.insert("max_tokens".into(), body["max_output_tokens"].clone());
    out.insert("messages".into(), Value::Array(messages));
    if let Some(stream) = body.get("stream") {
        out.insert("stream".into(), stream.clone());
    }
    if let Some(system) = body.get("instructions") {
        out.insert("system".into(), system.clone());
    }
    if body.get("tools").is_some() {
        out.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(out)
}

fn normalize_chat(body: &Value, v: &mut Vec<String>) -> Value {
    if body["stream"] == true && body["stream_options"]["include_usage"] != true {
        v.push("a streamed request must ask for stream_options.include_usage".into());
    }
    let mut system = None;
    let mut messages = Vec::new();
    for (i, message) in body["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
    {
        let at = format!("messages[{i}]");
        match message["role"].as_str() {
            Some("system") if i == 0 => system = Some(message["content"].clone()),
            Some("user") => match message["content"].as_str() {
                Some(text) => {
                    push_block(&mut messages, "user", json!({"type": "text", "text": text}))
                }
                None => v.push(format!("{at}: user content must be a string")),
            },
            Some("assistant") => {
                let calls = message["tool_calls"].as_array();
                match &message["content"] {
                    Value::String(text) if !text.is_empty() => push_block(
                        &mut messages,
                        "assistant",
                        json!({"type": "text", "text": text}),
                    ),
                    Value::Null if calls.is_some() => {}
                    other => v.push(format!(
                        "{at}: assistant content {other} without tool calls"
                    )),
                }
                for call in calls.map_or(&[][..], Vec::as_slice) {
                    if call["type"] != "function" || !call["id"].is_string() {
                        v.push(format!(
                            "{at}: a tool call needs an id and type function: {call}"
                        ));
                    }
                    let input = arguments(&call["function"]["arguments"], &at, v);
                    push_block(
                        &mut messages,
                        "assistant",
                        json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}),
                    );
                }
            }
            Some("tool") => {
                if !message["tool_call_id"].is_string() || !message["content"].is_string() {
                    v.push(format!(
                        "{at}: a tool message needs tool_call_id and string content"
                    ));
                }
                push_block(
                    &mut messages,
                    "user",
                    json!({"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}),
                );
            }
            _ => v.push(format!("{at}: unexpected message {message}")),
        }
    }
    let mut tools = Vec::new();
    for tool in body["tools"].as_array().map_or(&[][..], Vec::as_slice) {
        if tool["type"] != "function" {
            v.push(format!("a tool must have type function: {tool}"));
        }
        let f = &tool["function"];
        tools.push(json!({"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}));
    }
    let mut out = Map::new();
    out.insert("model".into(), body["model"].clone());
    let max = body.get("max_tokens").or(body.get("max_completion_tokens"));
    out.insert("max_tokens".into(), max.cloned().unwrap_or(Value::Null));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(stream) = body.get("stream") {
        out.insert("stream".into(), stream.clone());
    }
    if let Some(system) = system {
        out.insert("system".into(), system);
    }
    if body.get("tools").is_some() {
        out.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(out)
}

/// Headers that satisfy the Anthropic header rules, for checking a normalized
/// body (the OpenAI formats send none of them).
pub fn anthropic_headers() -> Vec<(String, String)> {
    vec![
        ("x-api-key".into(), "-".into()),
        ("anthropic-version".into(), "-".into()),
        ("content-type".into(), "application/json".into()),
    ]
}

fn sse_body(events: &[(String, Value)]) -> Rendered {
    let mut body = String::new();
    for (name, data) in events {
        if !name.is_empty() {
            body.push_str(&format!("event: {name}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    Rendered {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: body.into_bytes(),
        chunked: true,
    }
}

fn json_body(value: &Value) -> Rendered {
    Rendered {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: value.to_string().into_bytes(),
        chunked: false,
    }
}

/// A scripted message in the request's format; `stop_reason` is the Anthropic
/// one (`end_turn`, `tool_use`, `max_tokens`).
pub fn render_message(
    text: &str,
    tools: &[ToolUse],
    stop_reason: &str,
    request: &Recorded,
    seq: usize,
) -> Rendered {
    let input_tokens = tokens(request.raw.to_string().len());
    let output_tokens = tokens(text.len() + 20 * tools.len());
    let stream = request.raw["stream"] == true;
    match request.wire {
        Wire::Anthropic => unreachable!("rendered by reply.rs"),
        Wire::OpenAi => responses(
            text,
            tools,
            stop_reason,
            (input_tokens, output_tokens),
            stream,
            seq,
        ),
        Wire::OpenAiChat => chat(
            text,
            tools,
            stop_reason,
            (input_tokens, output_tokens),
            stream,
            seq,
        ),
    }
}

fn responses(
    text: &str,
    tools: &[ToolUse],
    stop_reason: &str,
    (input, output): (usize, usize),
    stream: bool,
    seq: usize,
) -> Rendered {
    let mut items = Vec::new();
    if !text.is_empty() {
        items.push(json!({"type": "message", "id": format!("msg_{seq}"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}));
    }
    for tool in tools {
        items.push(
            json!({"type": "function_call", "id": format!("fc_{}", tool.id), "call_id": tool.id,
            "name": tool.name, "arguments": tool.input.to_string(), "status": "completed"}),
        );
    }
    let incomplete = stop_reason == "max_tokens";
    let usage = json!({"input_tokens": input, "output_tokens": output,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
    let response = json!({
        "id": format!("resp_{seq}"), "object": "response",
        "status": if incomplete { "incomplete" } else { "completed" },
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "output": items, "usage": usage,
    });
    if !stream {
        return json_body(&response);
    }
    let mut events = Vec::new();
    let mut event = |data: Value| {
        events.push((data["type"].as_str().unwrap_or("").to_string(), data));
    };
    event(
        json!({"type": "response.created", "response": {"id": format!("resp_{seq}"), "status": "in_progress", "output": []}}),
    );
    for (index, item) in items.iter().enumerate() {
        if item["type"] == "message" {
            event(
                json!({"type": "response.output_item.added", "output_index": index,
                "item": {"type": "message", "id": item["id"], "role": "assistant", "content": [], "status": "in_progress"}}),
            );
            event(
                json!({"type": "response.content_part.added", "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": ""}}),
            );
            for piece in split_pieces(text) {
                event(
                    json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                    "content_index": 0, "delta": piece}),
                );
            }
            event(
                json!({"type": "response.output_text.done", "output_index": index, "content_index": 0, "text": text}),
            );
        } else {
            let arguments = item["arguments"].as_str().unwrap_or_default();
            event(
                json!({"type": "response.output_item.added", "output_index": index,
                "item": {"type": "function_call", "id": item["id"], "call_id": item["call_id"],
                    "name": item["name"], "arguments": "", "status": "in_progress"}}),
            );
            for piece in split_pieces(arguments) {
                event(
                    json!({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                    "output_index": index, "delta": piece}),
                );
            }
            event(
                json!({"type": "response.function_call_arguments.done", "item_id": item["id"],
                "output_index": index, "arguments": arguments}),
            );
        }
        event(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    let last = if incomplete {
        "response.incomplete"
    } else {
        "response.completed"
    };
    event(json!({"type": last, "response": response}));
    sse_body(&events)
}

fn chat(
    text: &str,
    tools: &[ToolUse],
    stop_reason: &str,
    (input, output): (usize, usize),
    stream: bool,
    seq: usize,
) -> Rendered {
    let finish = match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        _ => "stop",
    };
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0}});
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.input.to_string()}}))
        .collect();
    let id = format!("chatcmpl-{seq}");
    if !stream {
        let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        return json_body(&json!({"id": id, "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}));
    }
    let chunk = |delta: Value, finish: Value| {
        (
            String::new(),
            json!({"id": id, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in split_pieces(text).into_iter().filter(|p| !p.is_empty()) {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    for (index, tool) in tools.iter().enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{"index": index, "id": tool.id, "type": "function",
                "function": {"name": tool.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in split_pieces(&tool.input.to_string()) {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    events.push((
        String::new(),
        json!({"id": id, "object": "chat.completion.chunk", "choices": [], "usage": usage}),
    ));
    let mut rendered = sse_body(&events);
    rendered.body.extend_from_slice(b"data: [DONE]\n\n");
    rendered
}

/// A stream that fails midway, in the request's format.
pub fn render_stream_error(
    error_type: &str,
    message: &str,
    request: &Recorded,
    seq: usize,
) -> Rendered {
    let error = json!({"code": error_type, "message": message});
    match request.wire {
        Wire::Anthropic => unreachable!("rendered by reply.rs"),
        Wire::OpenAi => sse_body(&[
            (
                "response.created".into(),
                json!({"type": "response.created", "response": {"id": format!("resp_{seq}")}}),
            ),
            (
                "response.failed".into(),
                json!({"type": "response.failed", "response": {"status": "failed", "error": error}}),
            ),
        ]),
        Wire::OpenAiChat => sse_body(&[(String::new(), json!({"error": error}))]),
    }
}
