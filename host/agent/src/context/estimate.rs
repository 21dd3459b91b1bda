//! The size of a request in tokens: measured where the model reported it, estimated where
//! it could not have.
//!
//! After each answer the provider's usage gives the size of what was sent plus the answer
//! (input + cache read + cache write + output tokens). Whatever was added to the history
//! since (tool results, background results, the user's next line) and every request
//! before the first answer are estimated as a quarter of their JSON bytes, the system
//! prompt and tool definitions included: about right for English and code, and the
//! threshold leaves room for its error.

use crate::model::{Message, ToolDefinition, Usage};

/// What a request sends besides the conversation.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub system: &'a str,
    pub tools: &'a [ToolDefinition],
}

/// Tokens of `bytes` bytes of JSON: one per four, rounded up.
pub fn tokens_of_bytes(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Estimated tokens of one message (its JSON as the API gets it).
pub fn message_tokens(message: &Message) -> u64 {
    tokens_of_bytes(serde_json::to_vec(message).map_or(0, |json| json.len()))
}

/// Estimated tokens of the system prompt and the tool definitions.
pub fn frame_tokens(frame: Frame<'_>) -> u64 {
    let tools = serde_json::to_vec(frame.tools).map_or(0, |json| json.len());
    tokens_of_bytes(frame.system.len() + tools)
}

/// Estimated tokens of a whole request.
pub fn request_tokens(frame: Frame<'_>, messages: &[Message]) -> u64 {
    frame_tokens(frame) + messages.iter().map(message_tokens).sum::<u64>()
}

/// The last size the model reported: the tokens of the request and its answer, which
/// were the first `covers` messages of the history.
#[derive(Debug, Clone, Copy)]
struct Measured {
    tokens: u64,
    covers: usize,
}

/// Keeps the last measured size and estimates the next request from it.
#[derive(Debug, Default)]
pub struct SizeTracker {
    measured: Option<Measured>,
}

impl SizeTracker {
    /// Records the usage of the answer that made the history `history_len` messages long.
    /// A provider that reports no usage (all zero) leaves the estimate to the bytes.
    pub fn observe(&mut self, usage: &Usage, history_len: usize) {
        let tokens = usage.input_tokens
            + usage.cache_read_input_tokens
            + usage.cache_creation_input_tokens
            + usage.output_tokens;
        self.measured =
            (usage.input_tokens > 0 || usage.cache_read_input_tokens > 0).then_some(Measured {
                tokens,
                covers: history_len,
            });
    }

    /// Forgets the measurement: the history it measured was rewritten.
    pub fn reset(&mut self) {
        self.measured = None;
    }

    /// The size of the request `frame` + `history` would be.
    pub fn request_tokens(&self, frame: Frame<'_>, history: &[Message]) -> u64 {
        match self.measured {
            Some(m) if m.covers <= history.len() => {
                m.tokens + history[m.covers..].iter().map(message_tokens).sum::<u64>()
            }
            _ => request_tokens(frame, history),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentBlock, Role};

    fn user(text: &str) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    #[test]
    fn usage_measures_what_was_sent_and_bytes_estimate_what_came_since() {
        let frame = Frame {
            system: "abcd",
            tools: &[],
        };
        let mut history = vec![user(&"x".repeat(400))];
        let estimate = request_tokens(frame, &history);
        assert!((100..120).contains(&estimate), "{estimate}");
        let mut size = SizeTracker::default();
        assert_eq!(size.request_tokens(frame, &history), estimate);
        size.observe(
            &Usage {
                input_tokens: 1000,
                output_tokens: 50,
                cache_creation_input_tokens: 10,
                cache_read_input_tokens: 5,
            },
            1,
        );
        history.push(user(&"y".repeat(40)));
        assert_eq!(
            size.request_tokens(frame, &history),
            1065 + message_tokens(&history[1])
        );
        size.observe(&Usage::default(), 2);
        assert_eq!(
            size.request_tokens(frame, &history),
            request_tokens(frame, &history)
        );
    }
}
