//! What the two OpenAI wire formats share: the client settings, the endpoint with its
//! `Authorization: Bearer` key (optional: local servers need none), and how a user message
//! of our conversation splits into tool results and text.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use super::http::{Endpoint, HttpSettings, secret_header};
use super::{ContentBlock, Message};

/// The default base URL of both OpenAI formats (`OPENAI_BASE_URL` overrides it).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Settings of an OpenAI-format client.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Up to the version, e.g. `https://api.openai.com/v1`; the client appends
    /// `/responses` or `/chat/completions`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer KEY` when present.
    pub api_key: Option<String>,
    pub model: String,
    pub max_tokens: u32,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff delay; doubled on each retry.
    pub min_retry_delay: Duration,
    /// See [`super::anthropic::DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Headers a user-defined provider adds to every request.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl OpenAiConfig {
    /// The endpoint at `{base_url}/{path}` with the key and extra headers.
    pub(super) fn endpoint(&self, path: &str) -> anyhow::Result<Endpoint> {
        let url = format!("{}/{path}", self.base_url.trim_end_matches('/'));
        let mut headers = self.extra_headers.clone();
        if let Some(key) = &self.api_key {
            headers.push((
                reqwest::header::AUTHORIZATION,
                secret_header(&format!("Bearer {key}"))?,
            ));
        }
        Endpoint::new(
            url,
            headers,
            HttpSettings {
                max_retries: self.max_retries,
                min_retry_delay: self.min_retry_delay,
                idle_timeout: self.idle_timeout,
                max_tokens: self.max_tokens,
            },
        )
    }
}

/// A user message as the OpenAI formats want it: the tool results first (each answers a
/// call of the message before), then the text (our `<background-results>` notice, or the
/// user's words) as one user message after them.
pub(super) struct UserParts<'a> {
    /// `(call id, output)`; an error result says so in its output, as these formats have
    /// no error flag.
    pub results: Vec<(&'a str, std::borrow::Cow<'a, str>)>,
    /// The text blocks joined with blank lines; empty when there are none.
    pub text: String,
}

pub(super) fn split_user(message: &Message) -> UserParts<'_> {
    let mut results = Vec::new();
    let mut texts: Vec<&str> = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let output = if *is_error {
                    std::borrow::Cow::Owned(format!("Error: {content}"))
                } else {
                    std::borrow::Cow::Borrowed(content.as_str())
                };
                results.push((tool_use_id.as_str(), output));
            }
            ContentBlock::Text { text } => texts.push(text),
            // A user message holds no tool calls; nothing to send for one.
            ContentBlock::ToolUse { .. } => {}
        }
    }
    UserParts {
        results,
        text: texts.join("\n\n"),
    }
}

/// Cached input tokens are counted inside the input by these APIs; ours are apart.
pub(super) fn usage(input: u64, output: u64, cached: u64) -> super::Usage {
    super::Usage {
        input_tokens: input.saturating_sub(cached),
        output_tokens: output,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
    }
}
