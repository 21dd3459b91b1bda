//! Running the tool calls of one model answer.
//!
//! Calls run in the order the model gave them, except that a run of consecutive calls to
//! read-only tools (by their hints: `read_file`, `check_background`, ...) runs
//! concurrently, at most [`MAX_PARALLEL`] at a time; a call to any other tool runs alone,
//! after everything before it and before everything after it. Results keep the model's
//! order whatever order the calls finish in, and each result is kept in `Agent::answered`
//! as soon as its group is done, so an interrupted turn keeps the results it has.

use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinSet;

use super::{Agent, TurnError};
use crate::model::{ContentBlock, ToolInput};
use crate::render::Event;
use crate::tools::{ToolContext, ToolOutput, ToolRegistry};

/// Read-only calls in flight at once. Each plugin call takes an instance from a bounded
/// pool, so one answer with many calls must not take all of it.
const MAX_PARALLEL: usize = 8;

/// One `tool_use` of the model's answer.
#[derive(Debug, Clone)]
pub(super) struct Call {
    id: String,
    name: String,
    input: ToolInput,
}

impl Call {
    pub(super) fn of(block: &ContentBlock) -> Option<Call> {
        match block {
            ContentBlock::ToolUse { id, name, input } => Some(Call {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            _ => None,
        }
    }

    /// The input as shown to the user: the object, or the raw text the model sent.
    fn shown_input(&self) -> Value {
        match &self.input {
            ToolInput::Object(_) => self.input.to_value(),
            ToolInput::Invalid { raw, .. } => Value::String(raw.clone()),
        }
    }
}

/// Whether `result` is the `tool_result` of the call `id`.
pub(super) fn answers(result: &ContentBlock, id: &str) -> bool {
    matches!(result, ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == id)
}

/// Replaces every invalid tool input in `content` by `{}`, so the history (and every
/// later request) holds only what the API accepts; the call itself was answered with an
/// error naming what was wrong.
pub(super) fn valid_for_history(content: &mut [ContentBlock]) {
    for block in content {
        if let ContentBlock::ToolUse { input, .. } = block
            && let ToolInput::Invalid { .. } = input
        {
            *input = ToolInput::Object(Default::default());
        }
    }
}

impl Agent {
    /// Answers every call, in order, into `self.answered`. A fatal tool error stops the
    /// calls not yet started; they are answered with an error too, so no `tool_use` is
    /// left without its result, and the first such error is returned.
    pub(super) async fn run_calls(&mut self, calls: &[Call]) -> Option<TurnError> {
        let mut rest = calls;
        let mut fatal = None;
        while let Some(first) = rest.first() {
            let together = if self.runs_alongside(first) {
                rest.iter().take_while(|c| self.runs_alongside(c)).count()
            } else {
                1
            };
            let (group, after) = rest.split_at(together);
            rest = after;
            // A lone call is announced before it runs, as it may take a while; the calls
            // of a group are shown each with its result, in order, once all are done.
            let announced = group.len() == 1;
            if announced {
                self.renderer.emit(Event::ToolCall {
                    id: &first.id,
                    name: &first.name,
                    input: &first.shown_input(),
                });
            } else {
                self.renderer
                    .busy(&format!("running {} read-only tools", group.len()));
            }
            let outcomes = if group.len() == 1 {
                vec![run_one(&self.tools, first).await]
            } else {
                run_together(&self.tools, group).await
            };
            for (call, outcome) in group.iter().zip(outcomes) {
                let output = outcome.unwrap_or_else(|error| {
                    let output = ToolOutput::error(format!("{error:#}"));
                    fatal.get_or_insert(TurnError::Tool {
                        tool: call.name.clone(),
                        source: error,
                    });
                    output
                });
                self.answer(call, output, !announced);
            }
            if fatal.is_some() {
                let not_run = ToolOutput::error(
                    "not run: the turn ended on a failure of the host in an earlier call",
                );
                for call in rest {
                    self.answer(call, not_run.clone(), true);
                }
                break;
            }
        }
        fatal
    }

    /// Whether `call` may run alongside other calls: a valid call to a read-only tool.
    fn runs_alongside(&self, call: &Call) -> bool {
        matches!(call.input, ToolInput::Object(_)) && self.tools.is_read_only(&call.name)
    }

    /// Keeps the result of `call` and shows it, after the call itself if `show_call`.
    fn answer(&mut self, call: &Call, output: ToolOutput, show_call: bool) {
        if show_call {
            self.renderer.emit(Event::ToolCall {
                id: &call.id,
                name: &call.name,
                input: &call.shown_input(),
            });
        }
        self.renderer.emit(Event::ToolResult {
            id: &call.id,
            name: &call.name,
            output: &output,
        });
        let result = ContentBlock::ToolResult {
            tool_use_id: call.id.clone(),
            content: output.text,
            is_error: output.is_error,
        };
        self.record(crate::session::Record::Answered {
            result: std::borrow::Cow::Borrowed(&result),
        });
        self.answered.push(result);
    }
}

/// Runs one call; an invalid input is answered without running the tool.
async fn run_one(tools: &ToolRegistry, call: &Call) -> Result<ToolOutput, anyhow::Error> {
    match &call.input {
        ToolInput::Invalid { raw, error } => Ok(ToolOutput::error(format!(
            "invalid input: the input of `{}` is not a JSON object ({error}): {raw}",
            call.name
        ))),
        ToolInput::Object(_) => {
            let context = ToolContext {
                call_id: call.id.clone(),
            };
            tools
                .call(&call.name, &call.input.to_value(), &context)
                .await
        }
    }
}

/// Runs `group` concurrently, at most [`MAX_PARALLEL`] at a time, each call as a task of
/// its own (a plugin call's wasm runs on a thread of its own, so they compute in parallel);
/// returns the outcomes in the order of `group`. Dropping the future (an interrupted
/// turn) aborts the calls still running.
async fn run_together(
    tools: &Arc<ToolRegistry>,
    group: &[Call],
) -> Vec<Result<ToolOutput, anyhow::Error>> {
    let mut outcomes = Vec::with_capacity(group.len());
    for chunk in group.chunks(MAX_PARALLEL) {
        let mut running = JoinSet::new();
        for (index, call) in chunk.iter().cloned().enumerate() {
            let tools = tools.clone();
            running.spawn(async move { (index, run_one(&tools, &call).await) });
        }
        let mut done: Vec<Option<Result<ToolOutput, anyhow::Error>>> =
            chunk.iter().map(|_| None).collect();
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok((index, outcome)) => done[index] = Some(outcome),
                // A panicking tool is a broken host, not the model's error.
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        }
        outcomes.extend(done.into_iter().map(|o| o.expect("every call was joined")));
    }
    outcomes
}
