//! The data of a background task as the rest of the agent sees it: where it is in its
//! life ([`TaskStatus`]), what is worth saying about its end ([`TaskNote`]), the one
//! [`Notification`] of its end, a [`TaskInfo`] snapshot, and its id. Plain data: the
//! wording of all of it is in [`crate::task_text`], the changes to it in
//! [`crate::background_state`].

use std::path::PathBuf;
use std::time::Duration;

use crate::process::ExitKind;
pub use crate::readiness::ReadyBy;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a free slot under the concurrency limit.
    Queued,
    /// Holds a slot: its command is starting or runs.
    Running,
    /// The command exited with code 0.
    Completed,
    /// The command exited non-zero, was killed by a signal it did not get from us, or
    /// could not be started.
    Failed,
    TimedOut,
    Killed,
}

impl TaskStatus {
    pub fn is_finished(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running)
    }
}

/// Something about a task's end beyond its status (worded by [`crate::task_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskNote {
    /// Killed before it got a slot; no process ever ran.
    KilledWhileQueued,
    /// The shell could not be started.
    LaunchFailed(String),
    /// The shell exited while processes it started still ran; they were ended with it.
    Lingering { processes: usize },
    /// A process of the task was killed for going over the memory cap (MiB).
    MemoryCap { mib: u64 },
    /// The agent exited while the task ran (a task of a resumed session's earlier run).
    EndedByExit,
}

/// What a notification says about readiness (`ready_pattern`, `ready_port`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Readiness {
    /// Nothing: the task was not watched, or it had been ready.
    #[default]
    Unwatched,
    /// This is the task's ready notification: it runs on.
    Ready(ReadyBy),
    /// The task ended before it was ready; it waited for this (see
    /// [`crate::readiness::Watch::describe`]).
    NeverReady(String),
}

/// What the model is told when a task ends (one per task), or, once, when a watched
/// task becomes ready (`readiness` is then [`Readiness::Ready`] and the task runs on).
#[derive(Debug, Clone)]
pub struct Notification {
    pub task_id: String,
    pub command: String,
    pub status: TaskStatus,
    pub exit: Option<ExitKind>,
    pub duration: Duration,
    /// Head and tail of the output, cut in the middle if long.
    pub output: String,
    pub output_bytes: u64,
    pub log_path: PathBuf,
    pub note: Option<TaskNote>,
    pub readiness: Readiness,
}

impl Notification {
    /// Whether this is a ready notification, not the task's final one.
    pub fn is_ready(&self) -> bool {
        matches!(self.readiness, Readiness::Ready(_))
    }

    /// The id recorded as delivered in a session transcript: the task's id for its
    /// final notification, `bg-N:ready` for its ready one (which must not count as the
    /// final one delivered when a session is resumed).
    pub fn delivery_id(&self) -> String {
        if self.is_ready() {
            format!("{}:ready", self.task_id)
        } else {
            self.task_id.clone()
        }
    }
}

/// A snapshot of one task, for `check_background` and the REPL's `/tasks`.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub id: String,
    pub command: String,
    pub status: TaskStatus,
    pub exit: Option<ExitKind>,
    /// Run time so far, or in all once finished.
    pub elapsed: Duration,
    pub timeout: Duration,
    pub output: String,
    pub output_bytes: u64,
    pub log_path: PathBuf,
    pub note: Option<TaskNote>,
    /// What made the running task ready, once it is.
    pub ready: Option<ReadyBy>,
    /// Whether its stdin is a pipe `write_background` can write to (until closed).
    pub stdin_open: bool,
}

/// The id the model and the user see for a table key: `bg-3`.
pub fn task_id(key: u64) -> String {
    format!("bg-{key}")
}

/// The table key of an id; `bg-3`, `bg:3` and `3` all name task 3.
pub fn task_key(id: &str) -> Option<u64> {
    id.trim()
        .trim_start_matches("bg:")
        .trim_start_matches("bg-")
        .parse()
        .ok()
}
