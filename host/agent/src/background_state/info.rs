//! What a task looks like from outside the table: the [`TaskInfo`] of a [`Task`], as the
//! tools, the REPL and the status line see it.

use super::Task;
use crate::background_task::{TaskInfo, task_id};

pub(super) fn info_of(key: u64, task: &Task) -> TaskInfo {
    let elapsed = match (task.duration, task.started) {
        (Some(d), _) => d,
        (None, Some(s)) => s.elapsed(),
        (None, None) => task.created.elapsed(),
    };
    let (output, output_bytes) = task.output.render_within(usize::MAX);
    TaskInfo {
        id: task_id(key),
        command: task.command.clone(),
        status: task.status,
        exit: task.exit,
        elapsed,
        timeout: task.timeout,
        output,
        output_bytes,
        log_path: task.log_path.clone(),
        note: task.note.clone(),
        ready: task.ready.clone(),
        stdin_open: task.stdin_open(),
    }
}
