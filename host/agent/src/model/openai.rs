//! The OpenAI Responses API client (`POST {base}/responses`): stateless (`store: false`,
//! the whole conversation as input items each time), streamed, function tools. Posting,
//! retries and limits are [`super::http`]'s.
//!
//! Our conversation becomes input items: user and assistant `message` items, a
//! `function_call` item per tool call and a `function_call_output` item per result, with
//! the text of a user message (our `<background-results>` notice) after its outputs. The
//! answer's events are assembled by [`ResponsesAnswer`].

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

pub struct OpenAiClient {
    config: OpenAiConfig,
    endpoint: Endpoint,
}

impl OpenAiClient {
    pub fn new(config: OpenAiConfig) -> anyhow::Result<OpenAiClient> {
        let endpoint = config.endpoint("responses")?;
        Ok(OpenAiClient { config, endpoint })
    }

    /// Sends one request and streams the answer, reporting text as it arrives.
    pub async fn send(
        &self,
        request: ModelRequest<'_>,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<ModelResponse, ModelError> {
        let body = bytes::Bytes::from(body(&self.config, &request).to_string());
        match self.endpoint.call(&body, on_event).await? {
            Answer::Json(response) => {
                let response = parse_response(&response)?;
                response.announce_text(on_event);
                Ok(response)
            }
            Answer::Stream(mut events) => {
                let mut answer = ResponsesAnswer::new(Budget::new(events.limits()));
                while let Some(event) = events.next().await? {
                    if event.data.trim().is_empty() {
                        continue;
                    }
                    let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                        ModelError::Stream(format!("bad JSON in a `{}` event: {e}", event.event))
                    })?;
                    if let Some(done) = answer.push(&event.event, &data, on_event)? {
                        return Ok(done);
                    }
                }
                Err(ModelError::Stream(
                    "the stream ended before response.completed".into(),
                ))
            }
        }
    }
}

impl ModelProvider for OpenAiClient {
    fn send<'a>(
        &'a self,
        request: ModelRequest<'a>,
        on_event: &'a mut (dyn FnMut(ModelEvent) + Send),
    ) -> ModelFuture<'a> {
        Box::pin(OpenAiClient::send(self, request, on_event))
    }
}

/// The request body. Keys and items come in a fixed order and nothing in it changes
/// from turn to turn but the new items at the end, so the server's prefix cache holds.
pub(super) fn body(config: &OpenAiConfig, request: &ModelRequest<'_>) -> Value {
    let mut body = json!({
        "model": config.model,
        "input": input_items(request.messages),
        "stream": true,
        "store": false,
        "max_output_tokens": config.max_tokens,
    });
    if !request.system.is_empty() {
        body["instructions"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                    // Strict mode wants every property required; our schemas have options.
                    "strict": false,
                })
            })
            .collect();
    }
    body
}

/// The conversation as Responses input items.
pub(super) fn input_items(messages: &[Message]) -> Vec<Value> {
    let mut items = Vec::new();
    for message in messages {
        match message.role {
            Role::User => {
                let parts = split_user(message);
                for (call_id, output) in parts.results {
                    items.push(json!({
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": output,
                    }));
                }
                if !parts.text.is_empty() {
                    items.push(json!({
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": parts.text}],
                    }));
                }
            }
            Role::Assistant => {
                for block in &message.content {
                    match block {
                        ContentBlock::Text { text } if !text.is_empty() => items.push(json!({
                            "type": "message",
                            "role": "assistant",
                            "content": [{"type": "output_text", "text": text}],
                        })),
                        ContentBlock::ToolUse { id, name, input } => items.push(json!({
                            "type": "function_call",
                            "call_id": id,
                            "name": name,
                            "arguments": input.to_value().to_string(),
                        })),
                        _ => {}
                    }
                }
            }
        }
    }
    items
}

/// An output item while its events arrive.
#[derive(Debug)]
enum Item {
    Text(String),
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Assembles a streamed Responses answer from its events, keyed by `output_index`.
pub(super) struct ResponsesAnswer {
    items: BTreeMap<u64, Item>,
    budget: Budget,
}

impl ResponsesAnswer {
    pub(super) fn new(budget: Budget) -> ResponsesAnswer {
        ResponsesAnswer {
            items: BTreeMap::new(),
            budget,
        }
    }

    /// Takes one event (its type is in the data's `type`, else the SSE event name);
    /// returns the whole answer once the response is finished.
    pub(super) fn push(
        &mut self,
        event: &str,
        data: &Value,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<Option<ModelResponse>, ModelError> {
        let kind = data["type"].as_str().unwrap_or(event);
        let index = data["output_index"].as_u64().unwrap_or(0);
        match kind {
            "response.output_text.delta" | "response.refusal.delta" => {
                let piece = data["delta"].as_str().unwrap_or("");
                self.budget.take(piece.len())?;
                match self.items.entry(index).or_insert(Item::Text(String::new())) {
                    Item::Text(text) => text.push_str(piece),
                    Item::Call { .. } => return Err(mixed(index)),
                }
                on_event(ModelEvent::TextDelta(piece.to_string()));
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = &data["item"];
                if item["type"].as_str() == Some("function_call") {
                    let call_id = item["call_id"].as_str().unwrap_or_default();
                    let name = item["name"].as_str().unwrap_or_default();
                    let full = item["arguments"].as_str().unwrap_or_default();
                    let known = match self.items.get(&index) {
                        Some(Item::Call { arguments, .. }) => arguments.len(),
                        _ => 0,
                    };
                    self.budget.take(call_id.len() + name.len())?;
                    self.budget.take(full.len().saturating_sub(known))?;
                    let entry = self.items.entry(index).or_insert(Item::Call {
                        call_id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    let Item::Call {
                        call_id: id,
                        name: n,
                        arguments,
                    } = entry
                    else {
                        return Err(mixed(index));
                    };
                    if !call_id.is_empty() {
                        *id = call_id.to_string();
                    }
                    if !name.is_empty() {
                        *n = name.to_string();
                    }
                    // The finished item holds the whole arguments; they win over the deltas.
                    if !full.is_empty() {
                        *arguments = full.to_string();
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                let piece = data["delta"].as_str().unwrap_or("");
                self.budget.take(piece.len())?;
                match call(&mut self.items, index) {
                    Item::Call { arguments, .. } => arguments.push_str(piece),
                    Item::Text(_) => return Err(mixed(index)),
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(full) = data["arguments"].as_str()
                    && let Item::Call { arguments, .. } = call(&mut self.items, index)
                {
                    self.budget
                        .take(full.len().saturating_sub(arguments.len()))?;
                    *arguments = full.to_string();
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = &data["response"];
                let reason = response["incomplete_details"]["reason"].as_str();
                let stop = (kind == "response.incomplete").then(|| match reason {
                    Some("max_output_tokens") | None => StopReason::MaxTokens,
                    Some(other) => StopReason::Other(other.to_string()),
                });
                return Ok(Some(self.finish(stop, parse_usage(&response["usage"]))));
            }
            "response.failed" => {
                let error = &data["response"]["error"];
                return Err(ModelError::Stream(error_text(error)));
            }
            "error" => {
                let error = data.get("error").unwrap_or(data);
                return Err(ModelError::Stream(error_text(error)));
            }
            _ => {}
        }
        Ok(None)
    }

    fn finish(&mut self, stop: Option<StopReason>, usage: Usage) -> ModelResponse {
        let mut content = Vec::new();
        for item in std::mem::take(&mut self.items).into_values() {
            match item {
                Item::Text(text) if text.is_empty() => {}
                Item::Text(text) => content.push(ContentBlock::Text { text }),
                Item::Call {
                    call_id,
                    name,
                    arguments,
                } => content.push(ContentBlock::ToolUse {
                    id: call_id,
                    name,
                    input: ToolInput::parse(&arguments),
                }),
            }
        }
        ModelResponse {
            stop_reason: stop.unwrap_or_else(|| stop_for(&content)),
            content,
            usage,
        }
    }
}

fn mixed(index: u64) -> ModelError {
    ModelError::Stream(format!(
        "output item {index} is both text and a function call"
    ))
}

/// The item at `index`, a call when its `added` event was not seen.
fn call(items: &mut BTreeMap<u64, Item>, index: u64) -> &mut Item {
    items.entry(index).or_insert(Item::Call {
        call_id: String::new(),
        name: String::new(),
        arguments: String::new(),
    })
}

/// `ToolUse` when the answer calls a tool, else the end of the turn.
fn stop_for(content: &[ContentBlock]) -> StopReason {
    if content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
    {
        StopReason::ToolUse
    } else {
        StopReason::EndTurn
    }
}

fn error_text(error: &Value) -> String {
    let code = error["code"]
        .as_str()
        .or(error["type"].as_str())
        .unwrap_or("error");
    let message = error["message"].as_str().unwrap_or("(no message)");
    format!("{code}: {message}")
}

fn parse_usage(usage_json: &Value) -> Usage {
    usage(
        usage_json["input_tokens"].as_u64().unwrap_or(0),
        usage_json["output_tokens"].as_u64().unwrap_or(0),
        usage_json["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// A whole (non-streamed) response object.
pub(super) fn parse_response(response: &Value) -> Result<ModelResponse, ModelError> {
    if response["status"].as_str() == Some("failed") || response["error"].is_object() {
        return Err(ModelError::Stream(error_text(&response["error"])));
    }
    let output = response["output"]
        .as_array()
        .ok_or_else(|| ModelError::Stream("the answer has no output array".into()))?;
    let mut content = Vec::new();
    for item in output {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().map_or(&[][..], Vec::as_slice) {
                    let text = part["text"].as_str().or(part["refusal"].as_str());
                    if let Some(text) = text.filter(|t| !t.is_empty()) {
                        content.push(ContentBlock::Text {
                            text: text.to_string(),
                        });
                    }
                }
            }
            Some("function_call") => content.push(ContentBlock::ToolUse {
                id: item["call_id"].as_str().unwrap_or_default().to_string(),
                name: item["name"].as_str().unwrap_or_default().to_string(),
                input: ToolInput::parse(item["arguments"].as_str().unwrap_or("")),
            }),
            _ => {}
        }
    }
    let stop = match response["status"].as_str() {
        Some("incomplete") => Some(match response["incomplete_details"]["reason"].as_str() {
            Some("max_output_tokens") | None => StopReason::MaxTokens,
            Some(other) => StopReason::Other(other.to_string()),
        }),
        _ => None,
    };
    Ok(ModelResponse {
        stop_reason: stop.unwrap_or_else(|| stop_for(&content)),
        content,
        usage: parse_usage(&response["usage"]),
    })
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
