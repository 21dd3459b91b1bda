//! Taking a session up again: the transcript found, read, its history made valid, the
//! file reopened for appending, and its background tasks turned into what the new run's
//! BackgroundManager knows of them.
//!
//! Tasks of the earlier run keep their ids and their logs (in the earlier run's log
//! directory), so `check_background` still pages through them; the new run numbers its
//! tasks after the highest id seen. A task whose end the model never heard of (it was
//! still running when the agent exited, or it ended while nobody delivered it) is queued
//! as a notification, so the first request after the resume tells the model: no result
//! is silently lost across a restart.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::replay::{self, TaskTrace};
use super::{Record, Recorder, SessionError, UserSource, list, task_number};
use crate::background_state::Restored;
use crate::background_task::{TaskNote, TaskStatus};
use crate::model::Message;

/// Which session a run works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// A new session.
    New,
    /// The newest session of the workspace (`--continue`).
    Newest,
    /// The session this id, or this unique start of one, names (`--resume`).
    Id(String),
}

/// A session ready to work in.
pub struct Opened {
    pub recorder: Recorder,
    /// The history to start from (empty for a new session).
    pub history: Vec<Message>,
    /// The earlier run's background tasks.
    pub tasks: Vec<Restored>,
    /// Set when an earlier session was taken up.
    pub resumed: Option<Resumed>,
}

/// What taking a session up found, for telling the user.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub id: String,
    pub messages: usize,
    /// Tasks whose end the model is told of in the next request.
    pub reported_tasks: usize,
    /// Unreadable lines skipped.
    pub skipped: usize,
    /// The session's own workspace, when it is not this one.
    pub other_workspace: Option<PathBuf>,
}

/// What the user is told on taking a session up: lines ready for the terminal (the
/// paths shown are made visible).
pub fn describe(resumed: &Resumed) -> String {
    let mut text = format!(
        "[resumed session {}: {} messages",
        resumed.id, resumed.messages
    );
    if resumed.reported_tasks > 0 {
        text.push_str(&format!(
            "; {} background task(s) of the earlier run reported to the model",
            resumed.reported_tasks
        ));
    }
    text.push_str("]\n");
    if resumed.skipped > 0 {
        text.push_str(&format!(
            "warning: {} unreadable line(s) of the transcript were skipped\n",
            resumed.skipped
        ));
    }
    if let Some(other) = &resumed.other_workspace {
        text.push_str(&format!(
            "warning: the session was started in {}; it continues in this workspace\n",
            crate::ui_text::one_line(&other.display().to_string())
        ));
    }
    text
}

/// Opens the chosen session in `dir` for work in `workspace`.
pub fn open(
    dir: &Path,
    choice: &Choice,
    workspace: &Path,
    provider: &str,
    model: &str,
) -> Result<Opened, SessionError> {
    let (id, path) = match choice {
        Choice::New => {
            return Ok(Opened {
                recorder: Recorder::create(dir, workspace, provider, model)?,
                history: Vec::new(),
                tasks: Vec::new(),
                resumed: None,
            });
        }
        Choice::Newest => list::newest(dir, workspace)?,
        Choice::Id(prefix) => list::find(dir, prefix)?,
    };
    // When the earlier run last wrote: the latest it is known to have been alive.
    let last_write_ms = modified_ms(&path);
    let recorder = Recorder::reopen(&path, &id)?;
    // Read after locking: no other agent can be adding to it now.
    let replayed = replay::read(&path)?;
    let mut history = replayed.history;
    let repairs = replay::repair(&mut history, replayed.answered);
    if !repairs.is_empty() {
        // Recorded, so the next replay builds the same history before what follows.
        let _ = recorder.write(&Record::User {
            source: UserSource::Repair,
            blocks: (&repairs[..]).into(),
            delivered: Default::default(),
        });
        replay::push_user(&mut history, repairs);
    }
    let tasks: Vec<Restored> = replayed
        .tasks
        .iter()
        .filter_map(|trace| restored(trace, last_write_ms))
        .collect();
    let reported_tasks = tasks.iter().filter(|t| t.deliver).count();
    let other_workspace =
        (replayed.header.workspace != workspace).then(|| replayed.header.workspace.clone());
    Ok(Opened {
        recorder,
        resumed: Some(Resumed {
            id,
            messages: history.len(),
            reported_tasks,
            skipped: replayed.skipped,
            other_workspace,
        }),
        history,
        tasks,
    })
}

/// The modification time of `path` in Unix milliseconds.
fn modified_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(since.as_millis() as u64)
}

/// A task of the transcript as the new run's BackgroundManager keeps it.
/// `last_write_ms` is when the earlier run last wrote its transcript.
fn restored(trace: &TaskTrace, last_write_ms: Option<u64>) -> Option<Restored> {
    let key = task_number(&trace.id)?;
    let (output, log_bytes, log_modified_ms) = log_summary(&trace.log_path);
    let (status, exit, duration, note) = match &trace.finished {
        Some(finished) => (finished.status, finished.exit, finished.duration, None),
        // Never seen to end: the agent exited (or was killed) while it ran, and the
        // task's output pipe went with it. It ran at least until its last output or the
        // agent's last record, whichever came later.
        None => {
            let ran_ms = log_modified_ms
                .max(last_write_ms)
                .unwrap_or(trace.started_ms)
                .saturating_sub(trace.started_ms);
            (
                TaskStatus::Killed,
                None,
                Duration::from_millis(ran_ms),
                Some(TaskNote::EndedByExit),
            )
        }
    };
    Some(Restored {
        key,
        command: trace.command.clone(),
        status,
        exit,
        duration,
        output,
        output_bytes: log_bytes,
        log_path: trace.log_path.clone(),
        note,
        deliver: !trace.delivered,
    })
}

/// Bytes of a log shown at its start and at its end.
const SHOWN: u64 = 4_000;

/// The head and tail of a log, its size and its modification time (Unix ms); a log that
/// is gone says so.
fn log_summary(path: &Path) -> (String, u64, Option<u64>) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return ("(the log is gone)".into(), 0, None);
    };
    let Ok(meta) = file.metadata() else {
        return ("(the log cannot be read)".into(), 0, None);
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let len = meta.len();
    let mut read = |from: u64, count: u64| -> Vec<u8> {
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let _ = (&mut file).take(count).read_to_end(&mut buf);
        }
        buf
    };
    let text = if len <= 2 * SHOWN {
        String::from_utf8_lossy(&read(0, len)).into_owned()
    } else {
        format!(
            "{}\n[... {} bytes not shown: the whole output is in the log ...]\n{}",
            String::from_utf8_lossy(&read(0, SHOWN)),
            len - 2 * SHOWN,
            String::from_utf8_lossy(&read(len - SHOWN, SHOWN))
        )
    };
    (text, len, modified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::replay::Finished;

    fn trace(log_path: PathBuf, finished: Option<Finished>, delivered: bool) -> TaskTrace {
        TaskTrace {
            id: "bg-4".into(),
            command: "make".into(),
            log_path,
            started_ms: 1_000,
            finished,
            delivered,
        }
    }

    #[test]
    fn a_task_never_seen_to_end_is_reported_ended_by_the_exit_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("bg-4.log");
        let mut text = String::from("first line\n");
        text.push_str(&"x".repeat(20_000));
        text.push_str("\nlast line\n");
        std::fs::write(&log, &text).unwrap();
        let r = restored(&trace(log.clone(), None, false), Some(61_000)).unwrap();
        assert_eq!((r.key, r.status), (4, TaskStatus::Killed));
        assert_eq!(r.note, Some(TaskNote::EndedByExit));
        assert!(r.deliver);
        assert!(r.duration >= Duration::from_secs(60), "{:?}", r.duration);
        assert_eq!(r.output_bytes, text.len() as u64);
        assert!(r.output.starts_with("first line") && r.output.ends_with("last line\n"));
        assert!(r.output.contains("bytes not shown"), "{}", r.output);

        let finished = Finished {
            status: TaskStatus::Completed,
            exit: Some(crate::process::ExitKind::Code(0)),
            duration: Duration::from_secs(3),
            output_bytes: 5,
        };
        let r = restored(&trace(log, Some(finished), true), None).unwrap();
        assert_eq!(
            (r.status, r.note, r.deliver),
            (TaskStatus::Completed, None, false)
        );

        let gone = restored(&trace(dir.path().join("nope.log"), None, false), None).unwrap();
        assert_eq!(gone.output, "(the log is gone)");
    }
}
