//! Reading a transcript back: the history it records, made valid for the next request,
//! and what it says about the session (prompts, model calls, background tasks).
//!
//! Records are applied the way the loop made them, so the history comes out as it was.
//! A torn last line (the agent died while writing it) is ignored; any other line that
//! cannot be read is skipped and counted, so a damaged transcript still resumes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FORMAT_VERSION, Header, Record, SessionError, UserSource, parse_status};
use crate::background_task::TaskStatus;
use crate::model::{ContentBlock, Message, Role};
use crate::process::ExitKind;

/// The result given to a call whose result the transcript does not have.
pub const INTERRUPTED: &str = "interrupted: the agent exited before the tool finished";

/// A transcript, read.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub header: Header,
    pub history: Vec<Message>,
    /// Background tasks in the order they started.
    pub tasks: Vec<TaskTrace>,
    /// The user's requests.
    pub prompts: usize,
    pub model_calls: usize,
    /// The text of the first request.
    pub first_prompt: Option<String>,
    /// Lines that could not be read and were skipped (a torn last line is not counted).
    pub skipped: usize,
    /// Results of calls of the last assistant message that were done when the agent
    /// stopped before adding them to the history (see [`repair`]).
    pub answered: Vec<ContentBlock>,
}

/// What a transcript says about one background task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTrace {
    pub id: String,
    pub command: String,
    pub log_path: PathBuf,
    /// Unix time in milliseconds.
    pub started_ms: u64,
    pub finished: Option<Finished>,
    /// Whether its result reached the model.
    pub delivered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub status: TaskStatus,
    pub exit: Option<ExitKind>,
    pub duration: Duration,
    pub output_bytes: u64,
}

/// Reads the transcript at `path` (a private file of this user; never through a link).
pub fn read(path: &Path) -> Result<Replayed, SessionError> {
    let unreadable = |reason: String| SessionError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if let Some(why) = agent_plugin_runtime::private_fs::unsafe_file(&meta) {
        return Err(unreadable(why));
    }
    let bytes = std::fs::read(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&String::from_utf8_lossy(&bytes)).map_err(unreadable)
}

/// Reads only the header of the transcript at `path`.
pub fn read_header(path: &Path) -> Option<Header> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .take(64 * 1024)
        .read_line(&mut first)
        .ok()?;
    match serde_json::from_str(&first).ok()? {
        Record::Session(header) => Some(header),
        _ => None,
    }
}

/// Parses a transcript's text.
pub fn parse(text: &str) -> Result<Replayed, String> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    // The text after the last newline: empty, or a line cut short by a crash.
    let tail = lines.pop().unwrap_or("");
    let mut records = lines.into_iter().map(serde_json::from_str::<Record>);
    let header = match records.next() {
        Some(Ok(Record::Session(header))) => header,
        _ => return Err("it does not start with a session header".into()),
    };
    if header.version > FORMAT_VERSION {
        return Err(format!(
            "it was written by a newer agent (format {}; this one reads {FORMAT_VERSION})",
            header.version
        ));
    }
    let mut replayed = Replayed {
        header,
        history: Vec::new(),
        tasks: Vec::new(),
        prompts: 0,
        model_calls: 0,
        first_prompt: None,
        skipped: 0,
        answered: Vec::new(),
    };
    for record in records {
        match record {
            Ok(record) => replayed.apply(record),
            Err(_) => replayed.skipped += 1,
        }
    }
    // A last line whose newline was not written may still be whole.
    if let Ok(record) = serde_json::from_str::<Record>(tail) {
        replayed.apply(record);
    }
    Ok(replayed)
}

impl Replayed {
    fn apply(&mut self, record: Record<'_>) {
        if matches!(
            record,
            Record::User { .. } | Record::Assistant { .. } | Record::History { .. }
        ) {
            // The history moved on: results kept for a cut turn are in it or moot.
            self.answered.clear();
        }
        match record {
            Record::Answered { result } => self.answered.push(result.into_owned()),
            Record::User {
                source,
                blocks,
                delivered,
            } => {
                if source == UserSource::Prompt {
                    self.prompts += 1;
                    if self.first_prompt.is_none() {
                        self.first_prompt = blocks.iter().find_map(|block| match block {
                            ContentBlock::Text { text } => Some(text.clone()),
                            _ => None,
                        });
                    }
                }
                for id in delivered.iter() {
                    if let Some(task) = self.tasks.iter_mut().find(|t| &t.id == id) {
                        task.delivered = true;
                    }
                }
                push_user(&mut self.history, blocks.into_owned());
            }
            Record::Assistant { content } => {
                if !content.is_empty() {
                    self.history.push(Message {
                        role: Role::Assistant,
                        content: content.into_owned(),
                    });
                }
            }
            Record::History { messages } => self.history = messages.into_owned(),
            Record::Usage { .. } => self.model_calls += 1,
            Record::TaskStarted {
                task_id,
                command,
                log_path,
                at_ms,
            } => {
                self.tasks.retain(|t| t.id != task_id);
                self.tasks.push(TaskTrace {
                    id: task_id,
                    command,
                    log_path,
                    started_ms: at_ms,
                    finished: None,
                    delivered: false,
                });
            }
            Record::TaskFinished {
                task_id,
                status,
                exit,
                duration_ms,
                output_bytes,
            } => {
                if let Some(task) = self.tasks.iter_mut().find(|t| t.id == task_id) {
                    task.finished = Some(Finished {
                        status: parse_status(&status).unwrap_or(TaskStatus::Failed),
                        exit: exit.map(Into::into),
                        duration: Duration::from_millis(duration_ms),
                        output_bytes,
                    });
                }
            }
            // The ready text the model got is in the history; a task's readiness
            // matters no more once the run that watched it is gone.
            Record::TaskReady { .. } => {}
            Record::Session(_) | Record::Resumed { .. } | Record::Unknown => {}
        }
    }
}

/// Appends `blocks` to the last message if it is the user's, or starts a user message:
/// what the loop does.
pub fn push_user(history: &mut Vec<Message>, blocks: Vec<ContentBlock>) {
    match history.last_mut() {
        Some(message) if message.role == Role::User => message.content.extend(blocks),
        _ => history.push(Message {
            role: Role::User,
            content: blocks,
        }),
    }
}

/// Makes `history` valid for the next request. Every `tool_use` gets its `tool_result`
/// at the start of the next user message: inside the history (a damaged transcript)
/// the missing results are put in place; for the last assistant message (the agent
/// exited mid-turn) they are returned, for the caller to add and record as the loop
/// would: the results in `answered` of the calls that were done, an error for the
/// others. An unfinished last user message is kept as it is.
pub fn repair(history: &mut Vec<Message>, mut answered: Vec<ContentBlock>) -> Vec<ContentBlock> {
    // A history starts with a user message, and results there would answer nothing.
    while let Some(first) = history.first_mut() {
        if first.role == Role::User {
            first
                .content
                .retain(|b| !matches!(b, ContentBlock::ToolResult { .. }));
            if !first.content.is_empty() {
                break;
            }
        }
        history.remove(0);
    }
    let mut index = 0;
    while index < history.len() {
        if history[index].role != Role::Assistant {
            index += 1;
            continue;
        }
        let calls: Vec<String> = history[index]
            .content
            .iter()
            .filter_map(|block| match block {
                ContentBlock::ToolUse { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let next = index + 1;
        if next == history.len() {
            return calls
                .into_iter()
                .map(|id| match answered.iter().position(|r| answers(r, &id)) {
                    Some(at) => answered.swap_remove(at),
                    None => interrupted(id),
                })
                .collect();
        }
        if history[next].role == Role::Assistant {
            history.insert(
                next,
                Message {
                    role: Role::User,
                    content: Vec::new(),
                },
            );
        }
        let answer = &mut history[next].content;
        // Results first, in call order: those present are kept, missing ones made up.
        let mut results: Vec<ContentBlock> = calls
            .iter()
            .map(|id| match answer.iter().position(|b| answers(b, id)) {
                Some(at) => answer.remove(at),
                None => interrupted(id.clone()),
            })
            .collect();
        // A result that answers no call of the message before would be refused.
        answer.retain(|b| !matches!(b, ContentBlock::ToolResult { .. }));
        results.append(answer);
        if results.is_empty() {
            results.push(ContentBlock::Text {
                text: "(no input)".into(),
            });
        }
        *answer = results;
        index = next + 1;
    }
    Vec::new()
}

fn answers(block: &ContentBlock, id: &str) -> bool {
    matches!(block, ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == id)
}

fn interrupted(tool_use_id: String) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id,
        content: INTERRUPTED.into(),
        is_error: true,
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
