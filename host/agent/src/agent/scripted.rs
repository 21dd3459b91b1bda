//! A scripted model for the loop's tests: it answers from a script and checks every
//! request it gets against the Messages API's tool protocol. Summary requests of a
//! compaction (no tools, the summary system prompt) are answered apart, off the script,
//! since when they come depends on sizes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::model::{
    ContentBlock, Message, ModelError, ModelEvent, ModelFuture, ModelProvider, ModelRequest,
    ModelResponse, Role, StopReason, ToolInput, Usage,
};

/// One scripted answer of the model.
pub(super) enum Turn {
    Answer(ModelResponse),
    /// Never answers (a call the user interrupts).
    Hang,
}

/// A model that gives scripted answers and keeps every request's messages.
#[derive(Default)]
pub(super) struct Scripted {
    turns: Mutex<VecDeque<Turn>>,
    requests: Mutex<Vec<Vec<Message>>>,
    /// The summary requests, and whether they fail.
    summaries: Mutex<Vec<Vec<Message>>>,
    fail_summaries: std::sync::atomic::AtomicBool,
}

impl Scripted {
    pub(super) fn new(turns: Vec<Turn>) -> Arc<Scripted> {
        Arc::new(Scripted {
            turns: Mutex::new(turns.into()),
            ..Scripted::default()
        })
    }

    pub(super) fn summaries(&self) -> Vec<Vec<Message>> {
        self.summaries.lock().unwrap().clone()
    }

    /// Makes every summary request fail from now on.
    pub(super) fn fail_summaries(&self) {
        self.fail_summaries
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn requests(&self) -> Vec<Vec<Message>> {
        self.requests.lock().unwrap().clone()
    }
}

impl ModelProvider for Scripted {
    fn send<'a>(
        &'a self,
        request: ModelRequest<'a>,
        _on_event: &'a mut (dyn FnMut(ModelEvent) + Send),
    ) -> ModelFuture<'a> {
        let messages = request.messages.to_vec();
        assert_protocol(&messages);
        if request.tools.is_empty() && request.system == crate::context::compact::SUMMARY_SYSTEM {
            self.summaries.lock().unwrap().push(messages);
            let fail = self
                .fail_summaries
                .load(std::sync::atomic::Ordering::SeqCst);
            return Box::pin(async move {
                if fail {
                    return Err(ModelError::Stream("the summary call failed".into()));
                }
                Ok(ModelResponse {
                    content: vec![text("the user asked for work; files a.rs read")],
                    stop_reason: StopReason::EndTurn,
                    usage: Usage::default(),
                })
            });
        }
        self.requests.lock().unwrap().push(messages);
        let turn = self.turns.lock().unwrap().pop_front();
        Box::pin(async move {
            match turn {
                Some(Turn::Answer(response)) => Ok(response),
                Some(Turn::Hang) => std::future::pending().await,
                None => Err(ModelError::Stream("the script has no more answers".into())),
            }
        })
    }
}

pub(super) fn text(text: &str) -> ContentBlock {
    ContentBlock::Text { text: text.into() }
}

pub(super) fn call(id: &str, name: &str, input: Value) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: name.into(),
        input: ToolInput::from_value(input),
    }
}

pub(super) fn answer(content: Vec<ContentBlock>, stop_reason: StopReason) -> Turn {
    Turn::Answer(ModelResponse {
        content,
        stop_reason,
        usage: Usage::default(),
    })
}

pub(super) fn tools(content: Vec<ContentBlock>) -> Turn {
    answer(content, StopReason::ToolUse)
}

pub(super) fn done(said: &str) -> Turn {
    answer(vec![text(said)], StopReason::EndTurn)
}

/// The API's tool protocol: roles alternate from the user's; each `tool_use` is answered
/// by exactly one `tool_result` at the start of the next user message; no other results;
/// every input (as sent) is a JSON object.
pub(super) fn assert_protocol(messages: &[Message]) {
    for (i, message) in messages.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        assert_eq!(message.role, expected, "message {i} in {messages:#?}");
        assert!(!message.content.is_empty(), "message {i} is empty");
        let asked: Vec<&str> = message
            .content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::ToolUse { id, input, .. } => {
                    let sent = serde_json::to_value(input).unwrap();
                    assert!(sent.is_object(), "input of {id} is sent as {sent}");
                    Some(id.as_str())
                }
                _ => None,
            })
            .collect();
        let results = |m: &Message| -> Vec<String> {
            m.content
                .iter()
                .take_while(|b| matches!(b, ContentBlock::ToolResult { .. }))
                .filter_map(|b| match b {
                    ContentBlock::ToolResult { tool_use_id, .. } => Some(tool_use_id.clone()),
                    _ => None,
                })
                .collect()
        };
        if message.role == Role::User {
            let all = message
                .content
                .iter()
                .filter(|b| matches!(b, ContentBlock::ToolResult { .. }))
                .count();
            assert_eq!(
                all,
                results(message).len(),
                "a tool_result after other blocks"
            );
            let before: Vec<&str> = match i.checked_sub(1).map(|p| &messages[p]) {
                Some(previous) => previous
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::ToolUse { id, .. } => Some(id.as_str()),
                        _ => None,
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut answered = results(message);
            answered.sort();
            let mut expected: Vec<String> = before.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(answered, expected, "results of message {i}");
        } else if let Some(next) = messages.get(i + 1) {
            assert_eq!(results(next).len(), asked.len(), "unanswered calls");
        }
    }
}
