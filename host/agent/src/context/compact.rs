//! Compaction: the older part of the conversation replaced by a summary the model writes,
//! the recent part kept verbatim.
//!
//! The summary is a model call of its own through the same provider (so it is retried like
//! any call): no tools, a system prompt saying what the summary is for, and one user
//! message holding the older part as plain text (a request with `tool_use` blocks but no
//! tools is refused by the API) followed by the instruction. The history is replaced only
//! when the summary came back; on any failure it is left as it was.
//!
//! Where the cut may fall: before an assistant message (the summary becomes the user
//! message before it) or before a user message without tool results (the summary goes in
//! front of its text). Never between a `tool_use` and its results, so every pair stays
//! together and the new history alternates from a user message as the API requires.

use crate::model::{
    ContentBlock, Message, ModelError, ModelEvent, ModelProvider, ModelRequest, Role, Usage,
};

use super::estimate::message_tokens;
use super::trim::head_and_tail;

/// The system prompt of the summary call.
pub const SUMMARY_SYSTEM: &str = "You write the summary of a coding agent's conversation. The summary replaces the conversation in the agent's context, so the agent must be able to carry on the work from it alone. You cannot call tools; answer with the summary only.";

/// What the summary must say; it ends the user message of the summary call.
pub const SUMMARY_INSTRUCTION: &str = "Summarize the conversation above for the agent that will continue it. Plain text, with these sections:
1. What the user asked: every request and constraint, in the user's words where they matter.
2. Files touched: each file read, created or changed, and what changed.
3. Decisions: what was decided or found out, and why.
4. Open tasks: what remains to be done, and the next step.
5. Background tasks still running: id and command of each task started and not yet reported finished in <background-results>.
If the conversation starts with an earlier <conversation-summary>, carry forward what still matters from it. Be concrete (names, paths, numbers); leave out pleasantries.";

/// The tag around the summary in the history.
pub const SUMMARY_TAG: &str = "conversation-summary";

/// Bytes of one tool result or text shown to the summarizer (head and tail).
const SHOWN_BLOCK_BYTES: usize = 4_000;

/// A compaction that happened: what the model wrote and what was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    /// The summary as the model wrote it.
    pub summary: String,
    /// Index in the old history of the first message kept verbatim.
    pub kept_from: usize,
    /// Messages before and after.
    pub messages_before: usize,
    pub messages_after: usize,
    /// Estimated tokens of the conversation before and after (without tools and system).
    pub tokens_before: u64,
    pub tokens_after: u64,
    /// What the summary call used (billed like any call).
    pub usage: Usage,
}

/// Why no summary replaced the history (which is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("the conversation is too short to compact")]
    NothingToCompact,
    #[error("the summary call failed: {0}")]
    Model(#[from] ModelError),
    #[error("the model's summary was empty")]
    EmptySummary,
}

/// Indices where the kept part may start (see the module doc); never 0.
pub fn cut_points(history: &[Message]) -> Vec<usize> {
    (1..history.len())
        .filter(|&i| match history[i].role {
            Role::Assistant => true,
            Role::User => !history[i]
                .content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolResult { .. })),
        })
        .collect()
}

/// The cut that keeps the longest recent part of at most `keep_tokens`; the latest cut
/// when even the last exchange is larger.
pub fn choose_cut(history: &[Message], keep_tokens: u64) -> Option<usize> {
    let cuts = cut_points(history);
    let mut suffix = vec![0u64; history.len() + 1];
    for i in (0..history.len()).rev() {
        suffix[i] = suffix[i + 1] + message_tokens(&history[i]);
    }
    cuts.iter()
        .copied()
        .find(|&k| suffix[k] <= keep_tokens)
        .or(cuts.last().copied())
}

/// Replaces `history[..cut]` by a summary the model writes. `input_budget` bounds the
/// tokens of the summary request. On error `history` is untouched.
pub async fn compact(
    history: &mut Vec<Message>,
    cut: usize,
    input_budget: u64,
    provider: &dyn ModelProvider,
    on_event: &mut (dyn FnMut(ModelEvent) + Send),
) -> Result<Compacted, CompactError> {
    if cut == 0 || cut >= history.len() || !cut_points(history).contains(&cut) {
        return Err(CompactError::NothingToCompact);
    }
    let prompt = summary_prompt(&history[..cut], input_budget);
    let messages = [Message {
        role: Role::User,
        content: vec![ContentBlock::Text { text: prompt }],
    }];
    let request = ModelRequest {
        system: SUMMARY_SYSTEM,
        messages: &messages,
        tools: &[],
    };
    let response = provider.send(request, on_event).await?;
    let summary = response
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let summary = summary.trim().to_string();
    if summary.is_empty() {
        return Err(CompactError::EmptySummary);
    }
    let tokens_before = history.iter().map(message_tokens).sum();
    let messages_before = history.len();
    let summary_block = ContentBlock::Text {
        text: format!(
            "<{SUMMARY_TAG}>\nThe earlier part of this conversation ({cut} messages) was replaced by this summary to fit the context window; the messages after it are verbatim.\n\n{summary}\n</{SUMMARY_TAG}>"
        ),
    };
    let kept = history.split_off(cut);
    let mut compacted = Vec::with_capacity(kept.len() + 1);
    let mut kept = kept.into_iter();
    match kept.as_slice().first() {
        Some(first) if first.role == Role::User => {
            let mut first = kept.next().expect("checked");
            first.content.insert(0, summary_block);
            compacted.push(first);
        }
        _ => compacted.push(Message {
            role: Role::User,
            content: vec![summary_block],
        }),
    }
    compacted.extend(kept);
    *history = compacted;
    Ok(Compacted {
        summary,
        kept_from: cut,
        messages_before,
        messages_after: history.len(),
        tokens_before,
        tokens_after: history.iter().map(message_tokens).sum(),
        usage: response.usage,
    })
}

/// The user message of the summary call: the older messages as text, then the
/// instruction. Long blocks are cut to head and tail; when it is still over
/// `budget_tokens`, messages from the middle are left out (the first one, which holds the
/// user's request or the earlier summary, and the latest ones stay).
fn summary_prompt(older: &[Message], budget_tokens: u64) -> String {
    let rendered: Vec<String> = older.iter().map(render_message).collect();
    let overhead = SUMMARY_INSTRUCTION.len() + SUMMARY_SYSTEM.len() + 200;
    let budget = usize::try_from(budget_tokens.saturating_mul(4))
        .unwrap_or(usize::MAX)
        .saturating_sub(overhead);
    let mut chosen: Vec<&str> = Vec::new();
    let mut used = 0;
    let mut first = rendered.first().map(String::as_str).unwrap_or("");
    let first_cut;
    if first.len() > budget / 2 {
        first_cut = head_and_tail(first, "cut for the summary");
        first = &first_cut;
    }
    used += first.len();
    let mut tail = Vec::new();
    for text in rendered.iter().skip(1).rev() {
        if used + text.len() > budget {
            break;
        }
        used += text.len();
        tail.push(text.as_str());
    }
    chosen.push(first);
    let left_out = rendered.len().saturating_sub(1 + tail.len());
    let omitted;
    if left_out > 0 {
        omitted = format!("[... {left_out} messages left out here for length ...]\n");
        chosen.push(&omitted);
    }
    chosen.extend(tail.into_iter().rev());
    format!(
        "<conversation>\n{}</conversation>\n\n{SUMMARY_INSTRUCTION}",
        chosen.concat()
    )
}

fn render_message(message: &Message) -> String {
    let who = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let mut out = format!("[{who}]\n");
    for block in &message.content {
        match block {
            ContentBlock::Text { text } => {
                out.push_str(&head_and_tail(text, "cut for the summary"));
                out.push('\n');
            }
            ContentBlock::ToolUse { name, input, .. } => {
                let input = serde_json::to_string(input).unwrap_or_default();
                out.push_str(&format!(
                    "[tool call {name} {}]\n",
                    head_and_tail(&input, "cut for the summary")
                ));
            }
            ContentBlock::ToolResult {
                content, is_error, ..
            } => {
                let error = if *is_error { " (error)" } else { "" };
                let shown = if content.len() > SHOWN_BLOCK_BYTES {
                    head_and_tail(content, "cut for the summary")
                } else {
                    content.clone()
                };
                out.push_str(&format!("[tool result{error}]\n{shown}\n"));
            }
        }
    }
    out
}
