//! The Anthropic Messages API client: streaming (SSE), tool use; posting, retries and
//! limits are [`super::http`]'s.
//!
//! Unknown event types are ignored; `tool_use` input arrives as partial JSON and is parsed
//! when its block stops.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

pub use super::anthropic_answer::Limits;
use super::anthropic_answer::{parse_message, read_events};
use super::http::{Answer, Endpoint, HttpSettings, secret_header};
use super::request_body::{RequestEncoder, Settings};
use super::{ModelError, ModelEvent, ModelFuture, ModelProvider, ModelRequest, ModelResponse};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
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
    /// Headers a user-defined provider adds to every request.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl AnthropicConfig {
    pub(super) fn http_settings(&self) -> HttpSettings {
        HttpSettings {
            max_retries: self.max_retries,
            min_retry_delay: self.min_retry_delay,
            idle_timeout: self.idle_timeout,
            max_tokens: self.max_tokens,
        }
    }
}

pub struct AnthropicClient {
    config: AnthropicConfig,
    endpoint: Endpoint,
    encoder: RequestEncoder,
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> anyhow::Result<AnthropicClient> {
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        let mut headers = config.extra_headers.clone();
        // A user-defined provider (a local proxy) may need no key.
        if !config.api_key.is_empty() {
            headers.push((
                HeaderName::from_static("x-api-key"),
                secret_header(&config.api_key)?,
            ));
        }
        headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        ));
        let endpoint = Endpoint::new(url, headers, config.http_settings())?;
        Ok(AnthropicClient {
            config,
            endpoint,
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
        match self.endpoint.call(&body, on_event).await? {
            Answer::Json(message) => {
                let response = parse_message(&message)?;
                response.announce_text(on_event);
                Ok(response)
            }
            Answer::Stream(events) => read_events(events, on_event).await,
        }
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
