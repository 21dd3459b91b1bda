//! Sessions: every conversation written as it happens to a JSONL transcript, and read
//! back to resume it.
//!
//! A transcript is `<state dir>/sessions/<id>.jsonl`, private to the user (0600 in a 0700
//! directory). Its first line is a [`Header`]; then one [`Record`] per event, each
//! written with one `write` of one line the moment it happens: a message added to the
//! history, blocks appended to the last user message, background tasks started and
//! finished, the usage of each model call. A crash loses at most the line being written,
//! and a torn last line is ignored when reading. Only the conversation goes in: never the
//! API key or any other setting.
//!
//! [`transcript`] writes (the [`Recorder`] the agent calls when its history changes, and
//! the BackgroundManager when a task starts or ends), [`replay`] reads a transcript back
//! into a valid history, [`list`] finds sessions, [`restore`] opens the session a run
//! works in (new, or taken up again with its background tasks restored); [`clock`] names
//! sessions and times them.
//!
//! Whoever replaces the history wholesale (a compaction) records [`Record::History`];
//! replay then starts over from it.

pub mod clock;
pub mod list;
pub mod replay;
pub mod restore;
pub mod transcript;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::background_task::{TaskStatus, task_key};
use crate::model::{ContentBlock, Message, Usage};
use crate::process::ExitKind;

pub use list::SessionSummary;
pub use replay::Replayed;
pub use transcript::Recorder;

/// The transcript format this agent writes; a newer one is refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// The directory of transcripts inside the agent's state directory.
pub fn sessions_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

/// Why a session cannot be found, opened or read. The first three are the user's to fix
/// (a wrong id, nothing to continue): the binary exits 2 on them.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no session with id {0} (see `agent sessions list`)")]
    Unknown(String),
    #[error("the id {prefix} matches several sessions: {}; give more of it", matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("there is no session to continue in {} (see `agent sessions list`)", .0.display())]
    NothingToContinue(PathBuf),
    #[error("session {0} is open in another agent; end that one first")]
    InUse(String),
    #[error("the transcript {path} cannot be used: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the transcript {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SessionError {
    /// Whether the user named a session that is not there (exit code 2, like a usage
    /// error).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SessionError::Unknown(_)
                | SessionError::Ambiguous { .. }
                | SessionError::NothingToContinue(_)
        )
    }
}

/// The first line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub id: String,
    /// The canonical workspace path.
    pub workspace: PathBuf,
    /// RFC 3339, UTC.
    pub started: String,
    pub provider: String,
    pub model: String,
}

/// Where the blocks of a user record came from. Replay treats them all alike (appended to
/// the last message if it is the user's, else a new user message, as the loop does); the
/// source says what to count as a prompt and which background results were delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSource {
    /// The user's request.
    Prompt,
    /// The results of the last assistant message's tool calls.
    ToolResults,
    /// `<background-results>` of these tasks.
    Background,
    /// Results made up for calls that never finished (an interrupt, or an exit).
    Repair,
}

/// A task's exit as stored (the process module's type stays free of serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl From<ExitKind> for Exit {
    fn from(exit: ExitKind) -> Exit {
        match exit {
            ExitKind::Code(code) => Exit::Code(code),
            ExitKind::Signal(signal) => Exit::Signal(signal),
        }
    }
}

impl From<Exit> for ExitKind {
    fn from(exit: Exit) -> ExitKind {
        match exit {
            Exit::Code(code) => ExitKind::Code(code),
            Exit::Signal(signal) => ExitKind::Signal(signal),
        }
    }
}

/// One line of a transcript after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Session(Header),
    /// User blocks, added as the loop adds them (see [`UserSource`]).
    User {
        source: UserSource,
        blocks: Cow<'a, [ContentBlock]>,
        /// The background tasks whose results these blocks deliver.
        #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
        delivered: Cow<'a, [String]>,
    },
    /// An assistant message added to the history.
    Assistant {
        content: Cow<'a, [ContentBlock]>,
    },
    /// One call's result, the moment the call is done. The `tool_results` user record
    /// that follows holds them all; these matter only if the agent stops before it.
    Answered {
        result: Cow<'a, ContentBlock>,
    },
    /// The whole history replaced (a compaction, say); replay starts over from it.
    History {
        messages: Cow<'a, [Message]>,
    },
    /// The tokens of one model call.
    Usage {
        usage: Usage,
        stop_reason: String,
    },
    TaskStarted {
        task_id: String,
        command: String,
        log_path: PathBuf,
        /// Unix time in milliseconds.
        at_ms: u64,
    },
    TaskFinished {
        task_id: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<Exit>,
        duration_ms: u64,
        output_bytes: u64,
    },
    /// A running task became ready (`ready_pattern` / `ready_port`); its
    /// `<background-results>` are in a `background` user record once delivered.
    TaskReady {
        task_id: String,
        /// What made it ready, as the model is told.
        ready: String,
        /// Unix time in milliseconds.
        at_ms: u64,
    },
    /// The session was taken up again by a new run of the agent.
    Resumed {
        at: String,
    },
    /// A record type this agent does not know (written by a newer one): skipped.
    #[serde(other)]
    Unknown,
}

/// The status a stored name stands for.
pub fn parse_status(name: &str) -> Option<TaskStatus> {
    Some(match name {
        "queued" => TaskStatus::Queued,
        "running" => TaskStatus::Running,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        "timed-out" => TaskStatus::TimedOut,
        "killed" => TaskStatus::Killed,
        _ => return None,
    })
}

/// The number of a task id (`bg-7` is 7).
pub fn task_number(id: &str) -> Option<u64> {
    task_key(id)
}
