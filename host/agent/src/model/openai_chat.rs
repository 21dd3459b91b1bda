//! The Chat Completions client (`POST {base}/chat/completions`), the format of OpenAI and
//! of most local and hosted compatible servers (Ollama, llama.cpp, vLLM, LM Studio,
//! OpenRouter, DeepSeek). Streamed with `stream_options.include_usage`; the key is
//! optional. Posting, retries and limits are [`super::http`]'s.
//!
//! Our conversation becomes `messages`: the system prompt, user messages, assistant
//! messages with `tool_calls`, a `role: "tool"` message per result, and the text of a user
//! message (our `<background-results>` notice) as a user message after its results. Tool
//! calls stream in pieces (`delta.tool_calls[i]` with an `index`, the id and name once,
//! the arguments in fragments); [`ChatAnswer`] assembles them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::bounded::Budget;
use super::http::{Answer, Endpoint};
pub use super::openai_common::{DEFAULT_BASE_URL, OpenAiConfig};
use super::openai_common::{split_user, usage};
use super::{
    ContentBlock, Message, ModelError, ModelEvent, ModelFuture, ModelProvider, ModelRequest,
    ModelResponse, Role, StopReason, ToolInput, Usage,
};

pub struct OpenAiChatClient {
    config: OpenAiConfig,
    endpoint: Endpoint,
}

impl OpenAiChatClient {
    pub fn new(config: OpenAiConfig) -> anyhow::Result<OpenAiChatClient> {
        let endpoint = config.endpoint("chat/completions")?;
        Ok(OpenAiChatClient { config, endpoint })
    }

    /// Sends one request and streams the answer, reporting text as it arrives.
    pub async fn send(
        &self,
        request: ModelRequest<'_>,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<ModelResponse, ModelError> {
        let body = bytes::Bytes::from(body(&self.config, &request).to_string());
        match self.endpoint.call(&body, on_event).await? {
            Answer::Json(completion) => {
                let response = parse_completion(&completion)?;
                response.announce_text(on_event);
                Ok(response)
            }
            Answer::Stream(mut events) => {
                let mut answer = ChatAnswer::new(Budget::new(events.limits()));
                while let Some(event) = events.next().await? {
                    let data = event.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    if data == "[DONE]" {
                        return answer.finish();
                    }
                    let chunk: Value = serde_json::from_str(data).map_err(|e| {
                        ModelError::Stream(format!("bad JSON in a streamed chunk: {e}"))
                    })?;
                    answer.push(&chunk, on_event)?;
                }
                // Some servers end the stream without `[DONE]`; a finish reason is enough.
                if answer.finish_reason.is_some() {
                    answer.finish()
                } else {
                    Err(ModelError::Stream(
                        "the stream ended before a finish_reason or [DONE]".into(),
                    ))
                }
            }
        }
    }
}

impl ModelProvider for OpenAiChatClient {
    fn send<'a>(
        &'a self,
        request: ModelRequest<'a>,
        on_event: &'a mut (dyn FnMut(ModelEvent) + Send),
    ) -> ModelFuture<'a> {
        Box::pin(OpenAiChatClient::send(self, request, on_event))
    }
}

/// The request body, in a fixed order that only grows at the end from turn to turn.
pub(super) fn body(config: &OpenAiConfig, request: &ModelRequest<'_>) -> Value {
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    messages.extend(chat_messages(request.messages));
    let mut body = json!({
        "model": config.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": config.max_tokens,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.input_schema,
                    },
                })
            })
            .collect();
    }
    body
}

/// The conversation as Chat Completions messages (without the system prompt).
pub(super) fn chat_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    for message in messages {
        match message.role {
            Role::User => {
                let parts = split_user(message);
                for (call_id, output) in parts.results {
                    out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
                }
                if !parts.text.is_empty() {
                    out.push(json!({"role": "user", "content": parts.text}));
                }
            }
            Role::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for block in &message.content {
                    match block {
                        ContentBlock::Text { text: t } => text.push_str(t),
                        ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": input.to_value().to_string()},
                        })),
                        ContentBlock::ToolResult { .. } => {}
                    }
                }
                let mut assistant = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { json!(text) },
                });
                if !calls.is_empty() {
                    assistant["tool_calls"] = Value::Array(calls);
                }
                out.push(assistant);
            }
        }
    }
    out
}

/// A tool call while its pieces arrive.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Assembles a streamed completion from its chunks: text as it comes, tool calls by
/// their `index`, the finish reason and the usage (in the last chunk, often with no
/// choices at all).
pub(super) struct ChatAnswer {
    text: String,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
    budget: Budget,
}

impl ChatAnswer {
    pub(super) fn new(budget: Budget) -> ChatAnswer {
        ChatAnswer {
            text: String::new(),
            calls: BTreeMap::new(),
            finish_reason: None,
            usage: Usage::default(),
            budget,
        }
    }

    /// Takes one chunk.
    pub(super) fn push(
        &mut self,
        chunk: &Value,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<(), ModelError> {
        if let Some(error) = chunk.get("error") {
            return Err(ModelError::Stream(error_text(error)));
        }
        if chunk["usage"].is_object() {
            self.usage = parse_usage(&chunk["usage"]);
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(());
        };
        let delta = &choice["delta"];
        if let Some(piece) = delta["content"].as_str().filter(|p| !p.is_empty()) {
            self.budget.take(piece.len())?;
            self.text.push_str(piece);
            on_event(ModelEvent::TextDelta(piece.to_string()));
        }
        for (position, call) in delta["tool_calls"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .enumerate()
        {
            // Servers that send each call whole may leave out the index.
            let index = call["index"].as_u64().unwrap_or(position as u64);
            let partial = self.calls.entry(index).or_default();
            let function = &call["function"];
            if let Some(id) = call["id"].as_str().filter(|s| !s.is_empty()) {
                self.budget.take(id.len())?;
                partial.id = id.to_string();
            }
            if let Some(name) = function["name"].as_str().filter(|s| !s.is_empty()) {
                self.budget.take(name.len())?;
                partial.name.push_str(name);
            }
            if let Some(piece) = function["arguments"].as_str() {
                self.budget.take(piece.len())?;
                partial.arguments.push_str(piece);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        Ok(())
    }

    /// The assembled answer.
    pub(super) fn finish(self) -> Result<ModelResponse, ModelError> {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        for (index, call) in self.calls {
            content.push(ContentBlock::ToolUse {
                // A server that gives no id gets one, unique within the answer.
                id: if call.id.is_empty() {
                    format!("call_{index}")
                } else {
                    call.id
                },
                name: call.name,
                input: ToolInput::parse(&call.arguments),
            });
        }
        Ok(ModelResponse {
            stop_reason: stop_reason(self.finish_reason.as_deref(), &content),
            content,
            usage: self.usage,
        })
    }
}

/// `finish_reason` mapped to ours; a server that says `stop` while calling tools (some
/// do) is taken at its calls.
fn stop_reason(reason: Option<&str>, content: &[ContentBlock]) -> StopReason {
    let calls = content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    match reason {
        Some("length") => StopReason::MaxTokens,
        _ if calls => StopReason::ToolUse,
        Some("stop") | None => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::EndTurn,
        Some(other) => StopReason::Other(other.to_string()),
    }
}

fn error_text(error: &Value) -> String {
    if let Some(text) = error.as_str() {
        return text.to_string();
    }
    let code = error["code"]
        .as_str()
        .or(error["type"].as_str())
        .unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("(no message)");
    format!("{code}: {message}")
}

fn parse_usage(usage_json: &Value) -> Usage {
    usage(
        usage_json["prompt_tokens"].as_u64().unwrap_or(0),
        usage_json["completion_tokens"].as_u64().unwrap_or(0),
        usage_json["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// A whole (non-streamed) completion.
pub(super) fn parse_completion(completion: &Value) -> Result<ModelResponse, ModelError> {
    if let Some(error) = completion.get("error") {
        return Err(ModelError::Stream(error_text(error)));
    }
    let choice = completion["choices"]
        .get(0)
        .ok_or_else(|| ModelError::Stream("the answer has no choices".into()))?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(ContentBlock::Text {
            text: text.to_string(),
        });
    }
    for (index, call) in message["tool_calls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
    {
        let id = call["id"].as_str().filter(|s| !s.is_empty());
        content.push(ContentBlock::ToolUse {
            id: id.map_or_else(|| format!("call_{index}"), str::to_string),
            name: call["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            input: match &call["function"]["arguments"] {
                Value::String(text) => ToolInput::parse(text),
                Value::Null => ToolInput::parse(""),
                // Some servers send the arguments as an object.
                other => ToolInput::from_value(other.clone()),
            },
        });
    }
    Ok(ModelResponse {
        stop_reason: stop_reason(choice["finish_reason"].as_str(), &content),
        content,
        usage: parse_usage(&completion["usage"]),
    })
}

#[cfg(test)]
#[path = "openai_chat_tests.rs"]
mod tests;
