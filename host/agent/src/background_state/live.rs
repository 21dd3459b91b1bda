//! The changes to a running task beyond its start and end: it becomes ready
//! (`ready_pattern` / `ready_port`), and its stdin pipe (`stdin: true`) for
//! `write_background`.

use std::sync::Arc;

use super::{NOTIFICATION_OUTPUT_LIMIT, State};
use crate::background_task::{Notification, Readiness, TaskStatus, task_id};
use crate::readiness::{ReadyBy, Watch};

/// The write end of a task's stdin. Writes await (a full pipe waits for the task to
/// read), so it has its own async lock, taken outside the table's.
pub type Stdin = Arc<tokio::sync::Mutex<Option<tokio::process::ChildStdin>>>;

/// What a task may be started with beyond its command.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    pub watch: Option<Watch>,
    pub stdin: bool,
}

/// Why a task takes no input now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoInput {
    /// It was started without `stdin: true`.
    NotPiped,
    /// It waits for a slot; its stdin opens when it starts.
    Queued,
    /// Its input was closed (`eof`).
    Closed,
    /// It has ended with this status.
    Ended(TaskStatus),
}

impl super::Task {
    /// Whether its stdin is a pipe not closed yet.
    pub(super) fn stdin_open(&self) -> bool {
        let open = |stdin: &Stdin| stdin.try_lock().map_or(true, |s| s.is_some());
        self.stdin.as_ref().is_some_and(open)
    }
}

impl State {
    /// Keeps the write end of a started task's stdin for `write_background`.
    pub fn set_stdin(&mut self, key: u64, stdin: tokio::process::ChildStdin) {
        if let Some(task) = self.tasks.get_mut(&key) {
            task.stdin = Some(Arc::new(tokio::sync::Mutex::new(Some(stdin))));
        }
    }

    /// The stdin of a running task, or why it takes no input. `None`: no such task.
    pub fn stdin(&self, key: u64) -> Option<Result<Stdin, NoInput>> {
        let task = self.tasks.get(&key)?;
        Some(match (task.status, &task.stdin) {
            (status, _) if status.is_finished() => Err(NoInput::Ended(status)),
            _ if !task.wants_stdin => Err(NoInput::NotPiped),
            (TaskStatus::Queued, _) => Err(NoInput::Queued),
            // Started, but its shell is not spawned yet: as good as queued.
            (_, None) => Err(NoInput::Queued),
            (_, Some(stdin)) => Ok(stdin.clone()),
        })
    }

    /// Records that a running task is ready and queues its ready notification (with the
    /// output so far); `None` if it is not running or was ready already.
    pub fn became_ready(&mut self, key: u64, by: ReadyBy) -> Option<Notification> {
        let task = self.tasks.get_mut(&key)?;
        if task.status != TaskStatus::Running || task.ready.is_some() {
            return None;
        }
        task.ready = Some(by.clone());
        let (output, output_bytes) = task.output.render_within(NOTIFICATION_OUTPUT_LIMIT);
        let notification = Notification {
            task_id: task_id(key),
            command: task.command.clone(),
            status: task.status,
            exit: None,
            duration: task.started.map(|s| s.elapsed()).unwrap_or_default(),
            output,
            output_bytes,
            log_path: task.log_path.clone(),
            note: None,
            readiness: Readiness::Ready(by),
        };
        self.notifications.push_back(notification.clone());
        Some(notification)
    }
}
