//! The Anthropic Messages API client: streaming (SSE), tool use, retries.
//!
//! A request is retried with exponential backoff on 429, 529, other 5xx answers and
//! connection failures, honouring `retry-after`. Once an answer has started streaming it is
//! never re-posted: a stream that breaks midway is an error. Unknown event types are
//! ignored; `tool_use` input arrives as partial JSON and is parsed when its block stops.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{ContentBlock, ModelError, ModelEvent, ModelRequest, ModelResponse, StopReason, Usage};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// The longest `retry-after` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff delay; doubled on each retry.
    pub min_retry_delay: Duration,
}

pub struct AnthropicClient {
    http: reqwest::Client,
    config: AnthropicConfig,
    url: String,
}

/// One failed attempt, before retry policy is applied.
#[derive(Debug)]
enum Attempt {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    Connect(reqwest::Error),
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Status { status, .. } => *status == 429 || *status == 529 || *status >= 500,
            Attempt::Connect(_) => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Status { status, body, .. } => {
                let (_, message) = api_error_parts(body);
                format!("HTTP {status}: {message}")
            }
            Attempt::Connect(e) => format!("{e}"),
        }
    }
}

/// The error type and message of an API error body, or the raw body.
fn api_error_parts(body: &str) -> (Option<String>, String) {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() {
                "(empty answer)".to_string()
            } else {
                body.chars().take(500).collect()
            }
        });
    (kind, message)
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> anyhow::Result<AnthropicClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(600))
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        Ok(AnthropicClient { http, config, url })
    }

    /// Sends one request and streams the answer, reporting text as it arrives.
    pub async fn send(
        &self,
        request: ModelRequest<'_>,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<ModelResponse, ModelError> {
        let mut body = json!({
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "messages": request.messages,
            "stream": true,
        });
        if !request.system.is_empty() {
            body["system"] = json!(request.system);
        }
        if !request.tools.is_empty() {
            body["tools"] = json!(request.tools);
        }

        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.min_retry_delay)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.config.max_retries)
            .with_jitter();
        let mut attempt = 0;
        let response = (|| self.post(&body))
            .retry(backoff)
            .when(Attempt::retryable)
            .adjust(|error, delay| {
                // `delay` is None once retries are used up; keep it that way.
                let retry_after = match error {
                    Attempt::Status { retry_after, .. } => *retry_after,
                    Attempt::Connect(_) => None,
                };
                delay.map(|d| retry_after.map_or(d, |r| r.min(MAX_RETRY_AFTER)))
            })
            .notify(|error, delay| {
                attempt += 1;
                on_event(ModelEvent::Retrying {
                    attempt,
                    delay,
                    reason: error.describe(),
                });
            })
            .await
            .map_err(|error| match error {
                Attempt::Status { status, body, .. } => {
                    let (kind, message) = api_error_parts(&body);
                    ModelError::Api {
                        status,
                        kind,
                        message,
                    }
                }
                Attempt::Connect(source) => ModelError::Connect {
                    url: self.url.clone(),
                    source,
                },
            })?;

        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            // A server that ignores `stream` answers with the whole message at once.
            let message: Value = response
                .json()
                .await
                .map_err(|e| ModelError::Stream(e.to_string()))?;
            let response = parse_message(&message)?;
            for block in &response.content {
                if let ContentBlock::Text { text } = block {
                    on_event(ModelEvent::TextDelta(text.clone()));
                }
            }
            return Ok(response);
        }
        read_stream(response, on_event).await
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, Attempt> {
        let response = self
            .http
            .post(&self.url)
            .header("x-api-key", &self.config.api_key)
            .header("anthropic-version", API_VERSION)
            .json(body)
            .send()
            .await
            .map_err(Attempt::Connect)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64);
        let body = response.text().await.unwrap_or_default();
        Err(Attempt::Status {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }
}

/// A content block while its deltas arrive.
enum PartialBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    /// A block type this host does not use (thinking, ...): skipped.
    Ignored,
}

async fn read_stream(
    response: reqwest::Response,
    on_event: &mut (dyn FnMut(ModelEvent) + Send),
) -> Result<ModelResponse, ModelError> {
    let mut events = response.bytes_stream().eventsource();
    let mut blocks: BTreeMap<u64, PartialBlock> = BTreeMap::new();
    let mut stop_reason = None;
    let mut usage = Usage::default();
    let mut finished = false;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| ModelError::Stream(e.to_string()))?;
        if event.event == "ping" || event.data.trim().is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ModelError::Stream(format!("bad JSON in a `{}` event: {e}", event.event))
        })?;
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.event.as_str() {
            "message_start" => {
                usage.input_tokens = data["message"]["usage"]["input_tokens"]
                    .as_u64()
                    .unwrap_or(0);
            }
            "content_block_start" => {
                let block = &data["content_block"];
                let partial = match block["type"].as_str() {
                    Some("text") => {
                        PartialBlock::Text(block["text"].as_str().unwrap_or("").to_string())
                    }
                    Some("tool_use") => PartialBlock::ToolUse {
                        id: block["id"].as_str().unwrap_or_default().to_string(),
                        name: block["name"].as_str().unwrap_or_default().to_string(),
                        json: String::new(),
                    },
                    _ => PartialBlock::Ignored,
                };
                blocks.insert(index, partial);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (blocks.get_mut(&index), delta["type"].as_str()) {
                    (Some(PartialBlock::Text(text)), Some("text_delta")) => {
                        let piece = delta["text"].as_str().unwrap_or("");
                        text.push_str(piece);
                        on_event(ModelEvent::TextDelta(piece.to_string()));
                    }
                    (Some(PartialBlock::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    stop_reason = Some(StopReason::parse(reason));
                }
                if let Some(n) = data["usage"]["output_tokens"].as_u64() {
                    usage.output_tokens = n;
                }
            }
            "message_stop" => {
                finished = true;
                break;
            }
            "error" => {
                let kind = data["error"]["type"].as_str().unwrap_or("error");
                let message = data["error"]["message"].as_str().unwrap_or("(no message)");
                return Err(ModelError::Stream(format!("{kind}: {message}")));
            }
            // content_block_stop needs no action: blocks are assembled at the end. Other
            // event types may be added by the API at any time and are ignored.
            _ => {}
        }
    }
    if !finished {
        return Err(ModelError::Stream(
            "the stream ended before message_stop".into(),
        ));
    }
    let content = blocks.into_values().filter_map(finish_block).collect();
    Ok(ModelResponse {
        content,
        stop_reason: stop_reason.unwrap_or(StopReason::EndTurn),
        usage,
    })
}

/// Turns an assembled block into content; a tool input that is not a JSON object becomes
/// an object carrying the raw text under `__invalid_json`, which the loop answers with an
/// error result instead of calling the tool.
fn finish_block(block: PartialBlock) -> Option<ContentBlock> {
    match block {
        PartialBlock::Text(text) if text.is_empty() => None,
        PartialBlock::Text(text) => Some(ContentBlock::Text { text }),
        PartialBlock::ToolUse { id, name, json } => {
            let input = if json.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(&json) {
                    Ok(value) if value.is_object() => value,
                    _ => json!({ INVALID_JSON_KEY: json }),
                }
            };
            Some(ContentBlock::ToolUse { id, name, input })
        }
        PartialBlock::Ignored => None,
    }
}

/// Where [`finish_block`] keeps tool input that was not a JSON object.
pub const INVALID_JSON_KEY: &str = "__invalid_json";

fn parse_message(message: &Value) -> Result<ModelResponse, ModelError> {
    let content: Vec<ContentBlock> = message["content"]
        .as_array()
        .ok_or_else(|| ModelError::Stream("the answer has no content array".into()))?
        .iter()
        .filter_map(|block| serde_json::from_value(block.clone()).ok())
        .collect();
    Ok(ModelResponse {
        content,
        stop_reason: StopReason::parse(message["stop_reason"].as_str().unwrap_or("end_turn")),
        usage: Usage {
            input_tokens: message["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: message["usage"]["output_tokens"].as_u64().unwrap_or(0),
        },
    })
}
