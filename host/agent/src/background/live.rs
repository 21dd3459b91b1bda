//! What the manager does for a running task beyond starting and ending it: watching it
//! for readiness (`ready_pattern` / `ready_port`) and writing to its stdin
//! (`write_background`).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{BackgroundError, BackgroundManager};
use crate::background_state::NoInput;
use crate::process::ShellProcess;
use crate::readiness::{self, LineMatcher, ReadyBy, Watch};

/// The most bytes one `write_background` call may carry.
pub const MAX_INPUT: usize = 64 * 1024;
/// How long a write may wait for a task that does not read its stdin (a full pipe).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why input could not be written; the text is the model's (or the user's) error.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "task {0} takes no input: it was started without stdin: true, so its stdin is /dev/null (start it again with background_run and stdin: true)"
    )]
    NotPiped(String),
    #[error("task {0} is queued and has not started yet; write to it once it runs")]
    Queued(String),
    #[error("task {0} takes no more input: its stdin was closed (eof)")]
    Closed(String),
    #[error("task {id} has ended ({status}); it takes no more input")]
    Ended { id: String, status: &'static str },
    #[error("the input is {0} bytes; at most {MAX_INPUT} bytes may be written at once")]
    TooLarge(usize),
    #[error(
        "task {id} did not read its input within {secs}s, so the write was given up (part of it may have been written); is it reading its stdin?"
    )]
    Stalled { id: String, secs: u64 },
    #[error("could not write to task {id}'s stdin: {source} (the task closed its input)")]
    Write { id: String, source: std::io::Error },
}

/// What a write did, for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: usize,
    pub closed: bool,
}

impl BackgroundManager {
    /// Records a spawned shell's processes and keeps its stdin pipe, if it has one.
    pub(super) fn shell_started(&self, key: u64, shell: &mut ShellProcess) {
        let mut state = self.state();
        state.started(key, shell.processes.clone());
        if let Some(pipe) = shell.child.stdin.take() {
            state.set_stdin(key, pipe);
        }
    }

    /// The line matcher of a task watched by pattern, or the poller of a task watched
    /// by port (aborted by the runner when the task ends).
    pub(super) fn watchers(
        &self,
        key: u64,
        watch: Option<Watch>,
    ) -> (Option<LineMatcher>, Option<tokio::task::JoinHandle<()>>) {
        match watch {
            Some(Watch::Pattern(regex)) => (Some(LineMatcher::new(regex)), None),
            Some(Watch::Port(port)) => {
                let manager = self.clone();
                let poll = tokio::spawn(async move {
                    while !readiness::port_accepts(port).await {
                        tokio::time::sleep(readiness::PORT_POLL).await;
                    }
                    manager.became_ready(key, ReadyBy::Port(port));
                });
                (None, Some(poll))
            }
            None => (None, None),
        }
    }

    /// Queues a task's ready notification (once) and announces it.
    pub(super) fn became_ready(&self, key: u64, by: ReadyBy) {
        let ready = self.state().became_ready(key, by);
        if let Some(notification) = ready {
            self.announce(notification);
        }
    }

    /// Writes `input` to a running task's stdin, then closes it if `eof`.
    pub async fn write_input(
        &self,
        id: &str,
        input: &[u8],
        eof: bool,
    ) -> Result<Written, BackgroundError> {
        let unknown = || BackgroundError::UnknownTask(id.to_string());
        let key = crate::background_task::task_key(id).ok_or_else(unknown)?;
        let id = crate::background_task::task_id(key);
        if input.len() > MAX_INPUT {
            return Err(InputError::TooLarge(input.len()).into());
        }
        let found = self.state().stdin(key).ok_or_else(unknown)?;
        let stdin = found.map_err(|why| match why {
            NoInput::NotPiped => InputError::NotPiped(id.clone()),
            NoInput::Queued => InputError::Queued(id.clone()),
            NoInput::Closed => InputError::Closed(id.clone()),
            NoInput::Ended(status) => InputError::Ended {
                id: id.clone(),
                status: status.as_str(),
            },
        })?;
        let mut pipe = stdin.lock().await;
        let Some(writer) = pipe.as_mut() else {
            return Err(InputError::Closed(id).into());
        };
        if !input.is_empty() {
            let write = async {
                writer.write_all(input).await?;
                writer.flush().await
            };
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(InputError::Write { id, source }.into()),
                Err(_) => {
                    let secs = WRITE_TIMEOUT.as_secs();
                    return Err(InputError::Stalled { id, secs }.into());
                }
            }
        }
        if eof {
            // Dropping the write end is the end of input the task reads.
            *pipe = None;
        }
        Ok(Written {
            bytes: input.len(),
            closed: eof,
        })
    }
}
