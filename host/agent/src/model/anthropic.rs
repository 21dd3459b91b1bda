//! The Anthropic Messages API client: streaming (SSE), tool use, retries.
//!
//! A request is retried with exponential backoff on 429, 529, other 5xx answers and
//! connection failures, honouring `retry-after`. Once an answer has started streaming it is
//! never re-posted: a stream that breaks midway is an error. Unknown event types are
//! ignored; `tool_use` input arrives as partial JSON and is parsed when its block stops.
//!
//! The server is not trusted with the key or with the host's memory and time: redirects
//! are never followed (the key would go along), and every answer is read within limits
//! ([`Limits`]): bytes per event, per answer and per error body, and time without progress.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

pub use super::anthropic_answer::Limits;
use super::anthropic_answer::{BodyEnd, body_error, parse_message, read_at_most, read_stream};
use super::request_body::{RequestEncoder, Settings};
use super::{
    ContentBlock, ModelError, ModelEvent, ModelFuture, ModelProvider, ModelRequest, ModelResponse,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// The longest `retry-after` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How long the server may send nothing (before the answer: no byte; while it streams: no
/// complete event) before the call fails. The API streams pings while it works, and its
/// first event comes as soon as a request is accepted, so two silent minutes mean a dead
/// or hostile server.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

pub struct AnthropicClient {
    http: reqwest::Client,
    config: AnthropicConfig,
    url: String,
    limits: Limits,
    encoder: RequestEncoder,
}

/// One failed attempt, before retry policy is applied.
#[derive(Debug)]
enum Attempt {
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// A 3xx answer: never followed, never retried.
    Redirect {
        status: u16,
        location: String,
    },
    Connect(reqwest::Error),
}

impl Attempt {
    fn retryable(&self) -> bool {
        match self {
            Attempt::Status { status, .. } => *status == 429 || *status == 529 || *status >= 500,
            Attempt::Redirect { .. } => false,
            Attempt::Connect(_) => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Attempt::Status { status, body, .. } => {
                let (_, message) = api_error_parts(body);
                format!("HTTP {status}: {message}")
            }
            Attempt::Redirect { status, location } => format!("HTTP {status} to {location}"),
            Attempt::Connect(e) => format!("{e}"),
        }
    }
}

/// The longest server-written message kept in an error.
const MESSAGE_CHARS: usize = 500;

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
        .map(|m| m.chars().take(MESSAGE_CHARS).collect())
        .unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() {
                "(empty answer)".to_string()
            } else {
                body.chars().take(MESSAGE_CHARS).collect()
            }
        });
    (kind, message)
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> anyhow::Result<AnthropicClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Per read, not in all: no byte for this long fails the request.
            .read_timeout(config.idle_timeout)
            // A redirect would carry the API key to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        let limits = Limits::new(config.max_tokens, config.idle_timeout);
        Ok(AnthropicClient {
            http,
            config,
            url,
            limits,
            encoder: RequestEncoder::default(),
        })
    }

    /// Sends one request and streams the answer, reporting text as it arrives.
    pub async fn send(
        &self,
        request: ModelRequest<'_>,
        on_event: &mut (dyn FnMut(ModelEvent) + Send),
    ) -> Result<ModelResponse, ModelError> {
        let settings = Settings {
            model: &self.config.model,
            max_tokens: self.config.max_tokens,
            system: request.system,
            tools: request.tools,
        };
        // Shared, not copied, by each attempt: by the end of a long session the body is
        // the whole conversation.
        let body = self.encoder.body(&settings, request.messages);

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
                    Attempt::Redirect { .. } | Attempt::Connect(_) => None,
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
                Attempt::Redirect { status, location } => ModelError::Redirect {
                    url: self.url.clone(),
                    status,
                    location,
                },
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
            let deadline = Instant::now() + self.limits.answer_time;
            let (body, end) = read_at_most(response, self.limits.content_bytes, deadline).await;
            match end {
                BodyEnd::Complete => {}
                BodyEnd::Cut => {
                    return Err(ModelError::TooLarge {
                        what: "the answer",
                        limit: self.limits.content_bytes,
                    });
                }
                BodyEnd::Late => return Err(self.limits.late()),
                BodyEnd::Failed(error) => return Err(body_error(error, self.limits.idle)),
            }
            let message: Value = serde_json::from_slice(&body)
                .map_err(|e| ModelError::Stream(format!("the answer is not JSON: {e}")))?;
            let response = parse_message(&message)?;
            for block in &response.content {
                if let ContentBlock::Text { text } = block {
                    on_event(ModelEvent::TextDelta(text.clone()));
                }
            }
            return Ok(response);
        }
        let idle = self.limits.idle;
        let bytes = Box::pin(
            response
                .bytes_stream()
                .map(move |chunk| chunk.map_err(|e| body_error(e, idle))),
        );
        read_stream(bytes, &self.limits, on_event).await
    }

    async fn post(&self, body: &bytes::Bytes) -> Result<reqwest::Response, Attempt> {
        let response = self
            .http
            .post(&self.url)
            .header("x-api-key", &self.config.api_key)
            .header("anthropic-version", API_VERSION)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(Attempt::Connect)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(MESSAGE_CHARS)
                        .collect()
                })
                .unwrap_or_else(|| "(no location)".to_string());
            return Err(Attempt::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64);
        // Only the start is read, for a while: the message is in it, and the rest may never
        // end. A body that breaks off is shown as far as it came.
        let deadline = Instant::now() + self.limits.idle;
        let (body, _) = read_at_most(response, self.limits.error_bytes, deadline).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        Err(Attempt::Status {
            status: status.as_u16(),
            retry_after,
            body,
        })
    }
}

impl ModelProvider for AnthropicClient {
    fn send<'a>(
        &'a self,
        request: ModelRequest<'a>,
        on_event: &'a mut (dyn FnMut(ModelEvent) + Send),
    ) -> ModelFuture<'a> {
        Box::pin(AnthropicClient::send(self, request, on_event))
    }
}
