//! `/attach ID` in the REPL: shows a background task's output live (following its log)
//! and sends each line the user types to its stdin (a task started with `stdin: true`).
//!
//! What the user types here goes only to the task's pipe: never into the conversation,
//! the session transcript or the line history (a password typed into a task stays out of
//! the model's context). Ctrl-] (or Ctrl-C, or a `/detach` line) detaches; Ctrl-D
//! closes the task's stdin. The task's output passes through [`visible`] (control
//! characters shown, not obeyed), as all untrusted text on the terminal.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustyline::{Cmd, ConditionalEventHandler, Event, EventContext, RepeatCount};

use super::{Ask, Input, LineReader};
use crate::background::{BackgroundError, BackgroundManager, InputError};
use crate::task_text;
use crate::ui_text::{one_line, visible};

/// How much of the log already written is shown on attaching.
const SHOWN_BEFORE: u64 = 2_000;
/// How often the log is read for new output.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Ctrl-] while attached: ends the line read as Ctrl-C does (the attach loop detaches);
/// anywhere else it does what it did before.
pub(super) struct DetachKey(pub(super) Arc<AtomicBool>);

impl ConditionalEventHandler for DetachKey {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        self.0.load(Ordering::Relaxed).then_some(Cmd::Interrupt)
    }
}

/// Attaches the terminal to task `id` until the user detaches or the task ends.
pub(super) async fn attach(reader: &LineReader, background: &BackgroundManager, id: &str) {
    let task = match background.info(id) {
        Ok(task) => task,
        Err(e) => return eprintln!("{}", visible(&e.to_string())),
    };
    if task.status.is_finished() {
        return eprintln!(
            "{} (its log: {})",
            one_line(&task.summary_line()),
            one_line(&task.log_path.display().to_string())
        );
    }
    eprintln!(
        "[attached to {}: {}. Its output follows; lines you type go to its stdin only (never to the model). Ctrl-] or /detach detaches, Ctrl-D closes its stdin]",
        task.id,
        one_line(&task.command)
    );
    if !task.stdin_open {
        eprintln!(
            "[{} takes no input (it was not started with stdin: true, or its stdin was closed): you can only watch]",
            task.id
        );
    }
    let follower = tokio::spawn(follow(background.clone(), task.id.clone(), task.log_path));
    loop {
        let line = match reader.read(Ask::Attach).await {
            Input::Line(line) if line.trim() == "/detach" => break,
            Input::Line(line) => line + "\n",
            Input::Interrupted => break,
            Input::Eof => String::new(),
        };
        let eof = line.is_empty();
        match background.write_input(&task.id, line.as_bytes(), eof).await {
            Ok(_) if eof => eprintln!("[{}: stdin closed]", task.id),
            Ok(_) => {}
            Err(BackgroundError::Input(e @ InputError::Ended { .. })) => {
                eprintln!("[{}]", visible(&e.to_string()));
                break;
            }
            Err(e) => eprintln!("[{}]", visible(&e.to_string())),
        }
        if eof && !task.stdin_open {
            // Ctrl-D on a task that takes no input (or piped input ended): leave.
            break;
        }
    }
    follower.abort();
    eprintln!("[detached from {}]", task.id);
}

/// Prints what the task writes to its log as it comes, until it ends.
async fn follow(background: BackgroundManager, id: String, log_path: PathBuf) {
    let Ok(mut log) = std::fs::File::open(&log_path) else {
        return eprintln!("[the log of {id} cannot be read]");
    };
    let len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = log.seek(SeekFrom::Start(len.saturating_sub(SHOWN_BEFORE)));
    let mut buf = Vec::new();
    loop {
        let ended = background
            .info(&id)
            .map_or(true, |t| t.status.is_finished());
        buf.clear();
        if log.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(visible(&String::from_utf8_lossy(&buf)).as_bytes());
            let _ = out.flush();
        }
        if ended {
            if let Ok(task) = background.info(&id) {
                eprintln!(
                    "\n[{} {}; press Enter to return to the prompt]",
                    task.id,
                    task_text::status_line(task.status, task.exit, task.elapsed)
                );
            }
            return;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
