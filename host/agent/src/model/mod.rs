//! Model providers: the conversation types and the [`ModelProvider`] trait that sends them.
//!
//! The conversation is kept in the Anthropic Messages shape (user and assistant messages
//! made of text, `tool_use` and `tool_result` blocks), which is what the loop reasons in.
//! The loop only knows [`ModelProvider`]; [`anthropic`] speaks the Messages API,
//! [`openai`] the OpenAI Responses API and [`openai_chat`] Chat Completions (OpenAI and
//! the many servers compatible with it). What they share, posting with retries and
//! reading answers within limits, is [`http`]'s and `bounded`'s; [`sse`] decodes streamed
//! answers; `request_body` encodes each Anthropic message of the conversation once, not on
//! every call.

pub mod anthropic;
mod anthropic_answer;
mod bounded;
pub mod http;
mod input;
pub mod openai;
pub mod openai_chat;
mod openai_common;
mod request_body;
pub mod sse;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use input::ToolInput;

/// What a [`ModelProvider::send`] returns: a boxed future, so the trait stays object-safe
/// (`Arc<dyn ModelProvider>`) without a macro crate.
pub type ModelFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ModelResponse, ModelError>> + Send + 'a>>;

/// A model API: sends the conversation and returns the assistant's next message.
///
/// The loop is written against this trait only, so a provider is added (or scripted in
/// tests) without touching it. `on_event` receives progress (text as it streams, retries)
/// while the call runs.
pub trait ModelProvider: Send + Sync {
    fn send<'a>(
        &'a self,
        request: ModelRequest<'a>,
        on_event: &'a mut (dyn FnMut(ModelEvent) + Send),
    ) -> ModelFuture<'a>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        /// What the model gave as the input; see [`ToolInput`] for input that is not a
        /// JSON object.
        input: ToolInput,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    /// A reason this host does not know; treated like the end of the turn.
    Other(String),
}

impl StopReason {
    pub fn parse(reason: &str) -> StopReason {
        match reason {
            "end_turn" => StopReason::EndTurn,
            "tool_use" => StopReason::ToolUse,
            "max_tokens" => StopReason::MaxTokens,
            "stop_sequence" => StopReason::StopSequence,
            other => StopReason::Other(other.to_string()),
        }
    }
}

/// Tokens used by one model call. `input_tokens` counts only the uncached input (the
/// Anthropic convention); cache reads and writes are counted apart, as they are billed
/// apart. A provider that reports cached tokens inside its input count (OpenAI) moves
/// them to `cache_read_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

/// The assistant's answer to one request.
#[derive(Debug, Clone)]
pub struct ModelResponse {
    pub content: Vec<ContentBlock>,
    pub stop_reason: StopReason,
    pub usage: Usage,
}

impl ModelResponse {
    /// Reports the text of an answer that came whole (a server that ignored `stream`) as
    /// if it had streamed, so the user sees it the same way.
    pub(crate) fn announce_text(&self, on_event: &mut (dyn FnMut(ModelEvent) + Send)) {
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                on_event(ModelEvent::TextDelta(text.clone()));
            }
        }
    }
}

/// What happens during a call, for showing progress as it streams.
#[derive(Debug, Clone)]
pub enum ModelEvent {
    /// A piece of assistant text.
    TextDelta(String),
    /// A request failed in a way worth retrying; the next attempt starts after `delay`.
    Retrying {
        attempt: usize,
        delay: std::time::Duration,
        reason: String,
    },
}

/// A tool as the model API wants it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// Everything one model call sends.
#[derive(Debug, Clone, Copy)]
pub struct ModelRequest<'a> {
    pub system: &'a str,
    pub messages: &'a [Message],
    pub tools: &'a [ToolDefinition],
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The API answered with an error status (after retries, where it was retryable).
    #[error("model API error {status}{}: {message}", kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Api {
        status: u16,
        kind: Option<String>,
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("cannot reach the model API at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a redirect. It is not followed, since the request carries
    /// the API key; nor retried.
    #[error(
        "the model API at {url} answered {status} with a redirect to {location}; redirects are not followed, since the API key would go along: set the base URL to the address that answers"
    )]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
    /// The answer stream broke off or could not be understood. Not retried: the model may
    /// already have produced part of an answer.
    #[error("the model's answer stream failed: {0}")]
    Stream(String),
    /// The answer went past one of the size limits; reading it stopped there.
    #[error("the model's answer was refused: {what} is larger than {}", size(*limit))]
    TooLarge { what: &'static str, limit: usize },
    /// The server stopped making progress; the call was given up.
    #[error("the model's answer stalled: {0}")]
    Stalled(String),
}

/// `bytes` in the largest binary unit that divides it, e.g. `4 MiB`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}
