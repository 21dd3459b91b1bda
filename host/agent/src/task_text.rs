//! The one place that words a background task, for every reader: the notification the
//! model gets, the one-line summary (`check_background`, `/tasks`), the live status line,
//! the line announcing a finished task, and the answers of `background_run`,
//! `check_background` and `kill_background` (which `/tasks` and `/kill` give too).
//!
//! Everything here returns text and prints nothing. Texts for the model are raw; texts
//! meant for a terminal line ([`finished_line`], [`status_line_text`]) are already passed
//! through [`one_line`], and the REPL passes the rest through it when printing.

use std::fmt;
use std::time::Duration;

use crate::background_task::{Notification, Readiness, ReadyBy, TaskInfo, TaskNote, TaskStatus};
use crate::process::{self, ExitKind};
use crate::tasklog::LogPage;
use crate::ui_text::{clip, one_line};

/// The answer to a listing when there are no tasks.
pub const NO_TASKS: &str = "There are no background tasks.";

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::TimedOut => "timed-out",
            TaskStatus::Killed => "killed",
        }
    }
}

impl fmt::Display for TaskNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskNote::KilledWhileQueued => f.write_str("killed while queued; never started"),
            TaskNote::LaunchFailed(error) => write!(f, "could not start the command: {error}"),
            TaskNote::Lingering { processes } => write!(
                f,
                "the shell exited while {processes} process(es) it started still ran; they were ended with the task (use bash to leave a server running)"
            ),
            TaskNote::MemoryCap { mib } => write!(
                f,
                "a process of the task was killed for using more than its memory limit of {mib} MiB (--task-memory)"
            ),
            TaskNote::EndedByExit => f.write_str(
                "ended by the agent's exit: the agent stopped while this task ran, so its end was not seen; what it printed until then is in the log",
            ),
        }
    }
}

/// "completed (exit code 0) after 1.2s": one task's state, as every view shows it.
pub fn status_line(status: TaskStatus, exit: Option<ExitKind>, duration: Duration) -> String {
    let mut line = status.as_str().to_string();
    if let Some(exit) = exit {
        line.push_str(&format!(" ({exit})"));
    }
    line.push_str(&format!(" after {:.1}s", duration.as_secs_f64()));
    line
}

impl fmt::Display for ReadyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyBy::Line(line) => write!(f, "output line matched ready_pattern: {line}"),
            ReadyBy::Port(port) => write!(f, "port {port} accepts connections"),
        }
    }
}

impl Notification {
    /// The text the model reads inside `<background-results>`.
    pub fn to_model_text(&self) -> String {
        let head = match &self.readiness {
            Readiness::Ready(_) => format!(
                "ready after {:.1}s (still running; its final result comes when it ends)",
                self.duration.as_secs_f64()
            ),
            _ => status_line(self.status, self.exit, self.duration),
        };
        let mut text = format!("[bg:{}] {head}", self.task_id);
        text.push_str(&format!("\ncommand: {}", self.command));
        match &self.readiness {
            Readiness::Ready(by) => text.push_str(&format!("\nready: {by}")),
            Readiness::NeverReady(awaited) => text.push_str(&format!(
                "\nnote: exited before it was ready (it never printed or opened what ready_pattern/ready_port waited for: {awaited})"
            )),
            Readiness::Unwatched => {}
        }
        if let Some(note) = &self.note {
            text.push_str(&format!("\nnote: {note}"));
        }
        text.push_str(&format!(
            "\nlog: {} ({} bytes)\n",
            self.log_path.display(),
            self.output_bytes
        ));
        if self.output.trim().is_empty() {
            text.push_str("(no output)");
        } else {
            text.push_str(self.output.trim_end());
        }
        text
    }
}

/// Wraps drained notifications for the model; the user turn carries no user input.
pub fn background_results_text(notifications: &[Notification]) -> String {
    let mut text = String::from(
        "<background-results>\nBackground tasks finished or became ready (this is an automatic notice, not input from the user):\n",
    );
    for n in notifications {
        text.push('\n');
        text.push_str(&n.to_model_text());
        text.push('\n');
    }
    text.push_str("</background-results>");
    text
}

impl TaskInfo {
    /// "bg-1  running after 2.0s  cargo build": one line per task in every listing.
    pub fn summary_line(&self) -> String {
        format!(
            "{}  {}  {}",
            self.id,
            status_line(self.status, self.exit, self.elapsed),
            self.command
        )
    }
}

/// The one-line announcement of a finished background task, safe to print.
pub fn finished_line(n: &Notification) -> String {
    let state = match &n.readiness {
        Readiness::Ready(_) => format!("ready after {:.1}s", n.duration.as_secs_f64()),
        _ => status_line(n.status, n.exit, n.duration),
    };
    format!(
        "[background {} {state}: {}]",
        n.task_id,
        clip(&one_line(&n.command), 80)
    )
}

/// The status line's text after the spinner: the tasks queued or running, with their
/// run time (" · bg-1 running 12s cargo build · ..."), or nothing. Safe to print.
pub fn status_line_text(tasks: &[TaskInfo]) -> String {
    let active: Vec<String> = tasks
        .iter()
        .filter(|t| !t.status.is_finished())
        .map(|t| {
            let command: String = t.command.chars().take(30).collect();
            let ready = if t.ready.is_some() { " ready" } else { "" };
            format!(
                "{} {} {:.0}s{ready} {command}",
                t.id,
                t.status.as_str(),
                t.elapsed.as_secs_f64()
            )
        })
        .collect();
    if active.is_empty() {
        String::new()
    } else {
        one_line(&format!(" · {}", active.join(" · "))).into_owned()
    }
}

/// The answer of `background_run`.
pub fn started(id: &str, command: &str, timeout: Duration) -> String {
    format!(
        "Background task {id} started: {command}\nIts result will be delivered to you when it finishes (time limit {:.0}s); keep working meanwhile.",
        timeout.as_secs_f64()
    )
}

/// What `background_run` adds for a watched task or one with a stdin pipe.
pub fn started_extras(watch: Option<&crate::readiness::Watch>, stdin: bool) -> String {
    let mut text = String::new();
    if let Some(watch) = watch {
        text.push_str(&format!(
            "\nYou will also be told once when it is ready (waiting for {}).",
            watch.describe()
        ));
    }
    if stdin {
        text.push_str("\nIts stdin is a pipe: write to it with write_background.");
    }
    text
}

/// The answer of `write_background`.
pub fn written(id: &str, bytes: usize, closed: bool) -> String {
    match (bytes, closed) {
        (0, true) => format!("Closed {id}'s stdin (eof)."),
        (n, true) => format!("Wrote {n} bytes to {id}'s stdin and closed it (eof)."),
        (n, false) => format!("Wrote {n} bytes to {id}'s stdin."),
    }
}

/// The lines of a task listing (`check_background` without an id, `/tasks`).
pub fn listing(tasks: &[TaskInfo]) -> Vec<String> {
    if tasks.is_empty() {
        return vec![NO_TASKS.to_string()];
    }
    tasks.iter().map(TaskInfo::summary_line).collect()
}

/// `check_background` for one task: its summary, log, note and kept output.
pub fn details(task: &TaskInfo) -> String {
    let mut text = format!(
        "{}\nlog: {} ({} bytes)",
        task.summary_line(),
        task.log_path.display(),
        task.output_bytes
    );
    if let Some(note) = &task.note {
        text.push_str(&format!("\nnote: {note}"));
    }
    text.push_str("\n--- output ---\n");
    text.push_str(if task.output.is_empty() {
        "(no output yet)"
    } else {
        task.output.trim_end()
    });
    text
}

/// `check_background` for one page of a task's log.
pub fn log_page(task: &TaskInfo, page: &LogPage) -> String {
    format!("{}\n{}", task.summary_line(), page.render())
}

/// The answer to a kill: `status` is the task's status when the kill came.
pub fn kill_answer(id: &str, status: TaskStatus) -> String {
    if status.is_finished() {
        format!("Task {id} had already ended ({}).", status.as_str())
    } else if status == TaskStatus::Queued {
        format!(
            "Task {id} was queued and never started; it is ended now. Its final result will be delivered as usual."
        )
    } else {
        format!(
            "Stopping task {id}: its process group gets SIGTERM, then SIGKILL after {}s. Its final result will be delivered as usual.",
            process::KILL_GRACE.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskStatus, command: &str) -> TaskInfo {
        TaskInfo {
            id: "bg-1".into(),
            command: command.into(),
            status,
            exit: None,
            elapsed: Duration::from_secs(3),
            timeout: Duration::from_secs(9),
            output: String::new(),
            output_bytes: 0,
            log_path: "/logs/bg-1.log".into(),
            note: None,
            ready: None,
            stdin_open: false,
        }
    }

    #[test]
    fn the_status_line_names_only_active_tasks_on_one_safe_line() {
        let tasks = [
            task(TaskStatus::Running, "make\n\x1b[2Jall"),
            task(TaskStatus::Completed, "done"),
        ];
        let text = status_line_text(&tasks);
        assert_eq!(text, " · bg-1 running 3s make\\n\\x1b[2Jall");
        assert_eq!(status_line_text(&tasks[1..]), "");
        let mut ready = task(TaskStatus::Running, "serve");
        ready.ready = Some(ReadyBy::Port(8080));
        assert_eq!(status_line_text(&[ready]), " · bg-1 running 3s ready serve");
    }

    #[test]
    fn a_ready_notification_says_what_made_it_ready_and_that_the_task_runs_on() {
        let n = Notification {
            task_id: "bg-2".into(),
            command: "serve".into(),
            status: TaskStatus::Running,
            exit: None,
            duration: Duration::from_millis(1500),
            output: "booting\nListening on 8080".into(),
            output_bytes: 28,
            log_path: "/logs/bg-2.log".into(),
            note: None,
            readiness: Readiness::Ready(ReadyBy::Line("Listening on 8080".into())),
        };
        let text = n.to_model_text();
        assert!(
            text.starts_with("[bg:bg-2] ready after 1.5s (still running;"),
            "{text}"
        );
        assert!(text.contains("\nready: output line matched ready_pattern: Listening on 8080\n"));
        assert!(text.ends_with("booting\nListening on 8080"));
        assert_eq!(n.delivery_id(), "bg-2:ready");
        assert_eq!(
            finished_line(&n),
            "[background bg-2 ready after 1.5s: serve]"
        );
    }

    #[test]
    fn kill_answers_say_what_happened() {
        assert!(kill_answer("bg-1", TaskStatus::Running).starts_with("Stopping task bg-1"));
        assert!(kill_answer("bg-1", TaskStatus::Queued).contains("never started"));
        assert_eq!(
            kill_answer("bg-1", TaskStatus::TimedOut),
            "Task bg-1 had already ended (timed-out)."
        );
    }

    #[test]
    fn an_empty_listing_says_so() {
        assert_eq!(listing(&[]), [NO_TASKS]);
        assert!(
            listing(&[task(TaskStatus::Queued, "x")])[0].starts_with("bg-1  queued after 3.0s")
        );
    }
}
