//! The agent loop: prompt -> model -> tools -> results -> model, until the turn ends.
//!
//! It owns the conversation and speaks to the model only through [`ModelProvider`] and to
//! tools only through the [`ToolRegistry`]. Before every model call it drains the
//! BackgroundManager's queue and puts finished tasks into the current user message, after
//! any tool results (the API wants tool results first), as `<background-results>` text. So
//! the model learns of finished tasks without polling, and each notification is delivered
//! exactly once. How the calls of one answer run (read-only ones together) is in
//! [`calls`].

mod calls;
#[cfg(test)]
mod context_tests;
#[cfg(test)]
mod scripted;

use std::sync::Arc;

use crate::background::BackgroundManager;
use crate::context::{CompactError, Compacted, Context, Frame, WindowSettings};
use crate::model::{
    ContentBlock, Message, ModelError, ModelEvent, ModelProvider, ModelRequest, Role, StopReason,
    ToolDefinition,
};
use crate::render::{Event, Renderer};
use crate::session::{Record, Recorder, UserSource};
use crate::task_text::background_results_text;
use crate::tools::ToolRegistry;
use crate::usage::SessionUsage;

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// The model finished its answer.
    Done,
    /// The answer hit the token limit and was cut.
    MaxTokens,
    /// There was nothing to send (no input and no finished tasks).
    Idle,
}

/// Why a turn stopped before its end. The conversation stays valid either way: the next
/// turn may be tried.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tool failed in a way that is not the model's to handle (see
    /// [`crate::tools::ToolError::Fatal`]).
    #[error("tool `{tool}` failed: {source:#}")]
    Tool {
        tool: String,
        #[source]
        source: anyhow::Error,
    },
}

pub struct Agent {
    provider: Arc<dyn ModelProvider>,
    tools: Arc<ToolRegistry>,
    tool_definitions: Vec<ToolDefinition>,
    background: BackgroundManager,
    renderer: Renderer,
    system: String,
    history: Vec<Message>,
    /// Results of the calls of the last assistant message answered so far; they go into
    /// the history when every call is answered, or when an interrupted turn is repaired.
    answered: Vec<ContentBlock>,
    /// The model's context window and the conversation's size in it.
    context: Context,
    /// Writes every change of the history to the session's transcript.
    recorder: Option<Recorder>,
    /// Tokens used, per turn and in all.
    usage: SessionUsage,
}

impl Agent {
    pub fn new(
        provider: Arc<dyn ModelProvider>,
        tools: ToolRegistry,
        background: BackgroundManager,
        renderer: Renderer,
        system: String,
    ) -> Agent {
        let tool_definitions = tools
            .specs()
            .map(|spec| ToolDefinition {
                name: spec.name.clone(),
                description: spec.description.clone(),
                input_schema: spec.input_schema.clone(),
            })
            .collect();
        Agent {
            provider,
            tools: Arc::new(tools),
            tool_definitions,
            background,
            renderer,
            system,
            history: Vec::new(),
            answered: Vec::new(),
            context: Context::default(),
            recorder: None,
            usage: SessionUsage::default(),
        }
    }

    /// Continues in a session: its history (already valid) replaces this one, and its
    /// recorder writes every change from now on.
    pub fn switch_session(&mut self, history: Vec<Message>, recorder: Option<Recorder>) {
        self.history = history;
        self.answered.clear();
        self.recorder = recorder;
    }

    /// The id of the session being recorded, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.recorder.as_ref().map(Recorder::id)
    }

    /// Writes a record to the session's transcript, if there is one; a failure is shown
    /// once and the conversation goes on.
    fn record(&self, record: Record<'_>) {
        if let Some(warning) = self.recorder.as_ref().and_then(|r| r.write(&record)) {
            self.renderer.emit(Event::Warning(&warning));
        }
    }

    /// Sets the model's context window (by default that of an unknown model).
    pub fn set_context_window(&mut self, settings: WindowSettings) {
        self.context = Context::new(settings);
    }

    /// Replaces the older turns by a summary now (`/compact`); the history is unchanged
    /// on error.
    pub async fn compact(&mut self) -> Result<Compacted, CompactError> {
        let rewrites = self.context.rewrites();
        let compacted = self
            .context
            .compact_now(&mut self.history, &*self.provider, &self.renderer)
            .await;
        self.record_if_rewritten(rewrites);
        if let Ok(compacted) = &compacted {
            self.usage.record(compacted.usage);
        }
        self.renderer.idle();
        compacted
    }

    /// Records the whole history if the context rewrote it since `rewrites`.
    fn record_if_rewritten(&self, rewrites: u64) {
        if self.context.rewrites() != rewrites {
            self.record(Record::History {
                messages: std::borrow::Cow::Borrowed(&self.history),
            });
        }
    }

    /// The conversation so far.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// The tokens used so far, per turn and in all.
    pub fn usage(&self) -> &SessionUsage {
        &self.usage
    }

    /// Runs one turn: adds the user's text (if any), then calls the model and runs the tools
    /// it asks for until it stops asking. With no text, the turn only happens when finished
    /// background tasks wait to be delivered.
    pub async fn run_turn(&mut self, user_text: Option<&str>) -> Result<TurnEnd, TurnError> {
        self.renderer.busy("thinking");
        self.usage.start_turn();
        let end = self.turn(user_text).await;
        self.renderer.idle();
        end
    }

    async fn turn(&mut self, user_text: Option<&str>) -> Result<TurnEnd, TurnError> {
        if let Some(text) = user_text {
            self.push_user(
                vec![ContentBlock::Text {
                    text: text.to_string(),
                }],
                UserSource::Prompt,
                &[],
            );
        }
        loop {
            self.deliver_background_results();
            if self.history.last().is_none_or(|m| m.role != Role::User) {
                return Ok(TurnEnd::Idle);
            }
            let frame = Frame {
                system: &self.system,
                tools: &self.tool_definitions,
            };
            // A compaction is reported to the renderer as `Event::Compacted`, and the
            // rewritten history to the transcript.
            let rewrites = self.context.rewrites();
            let compacted = self
                .context
                .fit(&mut self.history, frame, &*self.provider, &self.renderer)
                .await;
            if let Some(compacted) = compacted {
                // The summary was a model call of its own, billed like any other.
                self.usage.record(compacted.usage);
            }
            self.record_if_rewritten(rewrites);
            let renderer = self.renderer.clone();
            let mut streamed_text = false;
            let mut on_event = |event: ModelEvent| match event {
                ModelEvent::TextDelta(text) => {
                    streamed_text = true;
                    renderer.emit(Event::TextDelta(&text));
                }
                ModelEvent::Retrying {
                    attempt,
                    delay,
                    reason,
                } => renderer.emit(Event::Retrying {
                    attempt,
                    delay,
                    reason: &reason,
                }),
            };
            let request = ModelRequest {
                system: &self.system,
                messages: &self.history,
                tools: &self.tool_definitions,
            };
            let response = self.provider.send(request, &mut on_event).await?;
            self.usage.record(response.usage);
            if streamed_text {
                self.renderer.emit(Event::TextEnd);
            }
            let stop = response.stop_reason.clone();
            self.record(Record::Usage {
                usage: response.usage,
                stop_reason: stop_reason_name(&stop).to_string(),
            });
            self.renderer.emit(Event::TurnEnd {
                stop_reason: stop_reason_name(&stop),
                input_tokens: response.usage.input_tokens,
                output_tokens: response.usage.output_tokens,
            });

            let mut content = response.content;
            if stop == StopReason::MaxTokens {
                // A tool call cut off by the limit has incomplete input: drop it, so that no
                // tool_use is left without its result.
                content.retain(|block| !matches!(block, ContentBlock::ToolUse { .. }));
            }
            let calls: Vec<calls::Call> = content.iter().filter_map(calls::Call::of).collect();
            calls::valid_for_history(&mut content);
            if !content.is_empty() {
                self.record(Record::Assistant {
                    content: (&content[..]).into(),
                });
                self.history.push(Message {
                    role: Role::Assistant,
                    content,
                });
            }
            self.context.observe(&response.usage, self.history.len());
            if calls.is_empty() {
                if stop == StopReason::MaxTokens {
                    self.renderer.emit(Event::Warning(
                        "the model's answer was cut off at the max_tokens limit",
                    ));
                    return Ok(TurnEnd::MaxTokens);
                }
                return Ok(TurnEnd::Done);
            }
            self.answered.clear();
            let fatal = self.run_calls(&calls).await;
            let results = std::mem::take(&mut self.answered);
            self.push_user(results, UserSource::ToolResults, &[]);
            if let Some(error) = fatal {
                return Err(error);
            }
        }
    }

    /// Puts finished background tasks into the current user message, after its other
    /// blocks, opening a new user message if the model spoke last.
    fn deliver_background_results(&mut self) {
        let finished = self.background.drain_notifications();
        if finished.is_empty() {
            return;
        }
        let ids: Vec<&str> = finished.iter().map(|n| n.task_id.as_str()).collect();
        self.renderer
            .emit(Event::BackgroundDelivered { task_ids: ids });
        let text = background_results_text(&finished);
        // A ready notification is recorded as `bg-N:ready`: its task's final result is
        // still to come (a resumed session must deliver it).
        let delivered: Vec<String> = finished.iter().map(|n| n.delivery_id()).collect();
        self.push_user(
            vec![ContentBlock::Text { text }],
            UserSource::Background,
            &delivered,
        );
    }

    /// Appends blocks to the last message if it is the user's, or starts a user message;
    /// the transcript records them, with where they came from.
    fn push_user(&mut self, blocks: Vec<ContentBlock>, source: UserSource, delivered: &[String]) {
        self.record(Record::User {
            source,
            blocks: (&blocks[..]).into(),
            delivered: delivered.into(),
        });
        match self.history.last_mut() {
            Some(message) if message.role == Role::User => message.content.extend(blocks),
            _ => self.history.push(Message {
                role: Role::User,
                content: blocks,
            }),
        }
    }

    /// Makes the history valid again after a turn was interrupted: every `tool_use` of the
    /// last assistant message gets a result (its real one if the call had finished), so
    /// the next request is accepted.
    pub fn repair_after_interrupt(&mut self) {
        let Some(last) = self.history.last() else {
            return;
        };
        if last.role != Role::Assistant {
            return;
        }
        let mut answered = std::mem::take(&mut self.answered);
        let results: Vec<ContentBlock> = last
            .content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::ToolUse { id, .. } => {
                    Some(match answered.iter().position(|r| calls::answers(r, id)) {
                        Some(index) => answered.swap_remove(index),
                        None => ContentBlock::ToolResult {
                            tool_use_id: id.clone(),
                            content: "interrupted by the user before the tool finished".into(),
                            is_error: true,
                        },
                    })
                }
                _ => None,
            })
            .collect();
        if !results.is_empty() {
            self.push_user(results, UserSource::Repair, &[]);
        }
    }
}

#[cfg(test)]
#[path = "agent/session_tests.rs"]
mod session_tests;
#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;

fn stop_reason_name(reason: &StopReason) -> &str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::Other(other) => other,
    }
}
