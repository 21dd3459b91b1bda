//! The BackgroundManager: shell commands that run beside the agent loop.
//!
//! `start` queues a task and returns its id at once; at most `max_running` tasks run, the
//! rest wait and get slots in the order they were started. A task's output streams to a
//! log file (memory stays bounded: only a head and a tail are kept), and when it ends, for
//! whatever reason, exactly one [`Notification`] is queued. The agent loop drains the
//! queue before every model call, so the model learns of finished tasks without polling.
//! Every task runs in its own process group and cgroup where the machine allows one (see
//! [`crate::task_processes`]): its end, whether its shell exits, times out or is killed, and
//! [`BackgroundManager::shutdown`] end every process it started, daemons included. The
//! processes a `bash` call left running are adopted here and ended at shutdown.
//!
//! One owner holds the state: [`State`] (in [`crate::background_state`]) behind one mutex,
//! plus a [`Notify`] for waiters. Every change is one call on `State` under the lock; what
//! has to happen outside it (spawning a task's runner, waking waiters, announcing the end)
//! is returned by that call and done after unlocking. The wording of tasks is in
//! [`crate::task_text`].
//!
//! The mutex is `std::sync::Mutex`, not tokio's: it is held only for short, synchronous
//! table updates and never across an `.await`, so there is nothing to yield for, and it
//! is cheaper and usable from sync code (the status line's closure, the drop guard that
//! kills every group on a panic). Contention is low: a lock per task start, end, kill,
//! listing, and one per model call to drain the queue.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::background_state::{Extras, Killed, Launch, Restored, State};
use crate::process::{self, Confinement, Ending, ExitKind};
use crate::readiness::ReadyBy;
use crate::task_processes::TaskProcesses;
use agent_plugin_runtime::private_fs;

pub use crate::background_task::{Notification, TaskInfo, TaskNote, TaskStatus};
pub use crate::task_text::{background_results_text, status_line};

/// Settings of the manager.
#[derive(Debug, Clone)]
pub struct BackgroundConfig {
    /// The directory commands run in.
    pub workspace: PathBuf,
    /// Where per-task logs are written (outside the workspace).
    pub log_dir: PathBuf,
    /// How many tasks may run at once; more wait, queued, and start in order.
    pub max_running: usize,
    /// How many tasks one session may start in all; more are refused, so one model
    /// answer cannot start thousands of processes.
    pub max_tasks: usize,
    /// The OS sandbox tasks run in.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
}

/// Errors a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    /// Returned by `kill` and `info` for an id that names no task.
    #[error("no background task with id {0}")]
    UnknownTask(String),
    /// Returned by `start` when the session has started `limit` tasks already.
    #[error(
        "refused: this session has already started {limit} background tasks, the most it may (the user can raise the limit with --max-tasks); wait for running tasks to finish, or run the command with bash"
    )]
    TooManyTasks { limit: usize },
    /// Returned by `start` when the log file cannot be created.
    #[error("cannot create the task log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Returned by `write_input`.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Returned when a page of a task's log cannot be read.
    #[error("cannot read the log {path}: {source}")]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Told of every task's start and end as it happens (the session transcript records
/// them, so a resumed session knows what ran and what the model never heard of).
pub trait TaskObserver: Send + Sync {
    fn started(&self, task_id: &str, command: &str, log_path: &Path);
    fn finished(&self, notification: &Notification);
    /// A running task became ready (`ready_pattern` / `ready_port`).
    fn ready(&self, _notification: &Notification) {}
}

struct Shared {
    config: BackgroundConfig,
    observer: Mutex<Option<Arc<dyn TaskObserver>>>,
    state: Mutex<State>,
    /// Woken whenever a notification is queued.
    queued: Notify,
    /// Every notification again, for announcing finished tasks on screen.
    finished: broadcast::Sender<Notification>,
}

/// Owns the background tasks; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct BackgroundManager {
    shared: Arc<Shared>,
}

impl BackgroundManager {
    pub fn new(config: BackgroundConfig) -> BackgroundManager {
        let (finished, _) = broadcast::channel(256);
        let state = State::new(config.max_running, config.max_tasks);
        BackgroundManager {
            shared: Arc::new(Shared {
                config,
                observer: Mutex::new(None),
                state: Mutex::new(state),
                queued: Notify::new(),
                finished,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the table usable: every
        // transition completes its bookkeeping before anything can panic.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `command` (or queues it when the concurrency limit is reached) and returns
    /// its id at once.
    pub fn start(
        &self,
        command: &str,
        timeout: Duration,
        confinement: Confinement,
    ) -> Result<String, BackgroundError> {
        self.start_with(command, timeout, confinement, Extras::default())
    }

    /// [`BackgroundManager::start`] for a task watched for readiness or given a stdin pipe.
    pub fn start_with(
        &self,
        command: &str,
        timeout: Duration,
        confinement: Confinement,
        extras: Extras,
    ) -> Result<String, BackgroundError> {
        let limit = self.shared.config.max_tasks;
        let key = self
            .state()
            .reserve_key()
            .ok_or(BackgroundError::TooManyTasks { limit })?;
        let id = crate::background_task::task_id(key);
        // The log is created outside the lock: file system calls can be slow.
        let log_dir = &self.shared.config.log_dir;
        private_fs::ensure_private_dir(log_dir).map_err(|source| BackgroundError::Log {
            path: log_dir.clone(),
            source,
        })?;
        let log_path = log_dir.join(format!("{id}.log"));
        let log =
            private_fs::create_private_file(&log_path).map_err(|source| BackgroundError::Log {
                path: log_path.clone(),
                source,
            })?;
        if let Some(observer) = self.observer() {
            observer.started(&id, command, &log_path);
        }
        let launches =
            self.state()
                .enqueue(key, command, timeout, confinement, log_path, log, extras);
        self.launch(launches);
        Ok(id)
    }

    /// Sets (or, with `None`, removes) who is told of task starts and ends.
    pub fn set_observer(&self, observer: Option<Arc<dyn TaskObserver>>) {
        *self
            .shared
            .observer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = observer;
    }

    fn observer(&self) -> Option<Arc<dyn TaskObserver>> {
        self.shared
            .observer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes in the tasks of a resumed session's earlier run (see [`State::restore`]);
    /// those the model never heard of are delivered with its next request.
    pub fn restore(&self, tasks: Vec<Restored>) {
        self.state().restore(tasks);
        self.shared.queued.notify_waiters();
    }

    fn launch(&self, launches: Vec<Launch>) {
        for launch in launches {
            let manager = self.clone();
            tokio::spawn(async move { manager.run_task(launch).await });
        }
    }

    /// Runs one task that holds a slot, from spawning its shell to recording its end.
    async fn run_task(&self, launch: Launch) {
        let Launch {
            key,
            command,
            timeout,
            confinement,
            log,
            output,
            kill,
            watch,
            stdin,
        } = launch;
        // Only a sandboxed command's failure may be the sandbox's doing.
        let sandbox = match &confinement {
            Confinement::Sandboxed(sandbox) => Some(sandbox.clone()),
            Confinement::Unsandboxed => None,
        };
        let workspace = &self.shared.config.workspace;
        let mut shell =
            match process::spawn_shell_with_stdin(&command, workspace, &confinement, stdin) {
                Ok(shell) => shell,
                Err(e) => {
                    let note = TaskNote::LaunchFailed(e.to_string());
                    self.finish(key, TaskStatus::Failed, None, Some(note));
                    return;
                }
            };
        self.shell_started(key, &mut shell);
        let (mut matcher, port_watch) = self.watchers(key, watch);
        let manager = self.clone();

        let mut log = log;
        let mut log_ok = true;
        let output_for_note = output.clone();
        let run = process::supervise(
            shell,
            timeout,
            async {
                // A dropped sender means nobody can kill the task any more, not a kill.
                if kill.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
            move |bytes| {
                output.lock().unwrap().push(bytes);
                // After the push: the ready notification's output includes the line.
                if let Some(line) = matcher.as_mut().and_then(|m| m.push(bytes)) {
                    matcher = None;
                    manager.became_ready(key, ReadyBy::Line(line));
                }
                if log_ok {
                    // One unbuffered write per chunk read (up to 64 KiB), so the log is
                    // always current for paging; a full disk only stops the log.
                    log_ok = log.write_all(bytes).is_ok();
                }
            },
        )
        .await;
        if let Some(watch) = port_watch {
            watch.abort();
        }
        let status = match run.ending {
            Ending::TimedOut => TaskStatus::TimedOut,
            Ending::Killed => TaskStatus::Killed,
            Ending::Exited if run.exit.is_some_and(ExitKind::success) => TaskStatus::Completed,
            Ending::Exited => TaskStatus::Failed,
        };
        if status == TaskStatus::Failed {
            // Said in the output the model gets (not the log, which is the command's own).
            let mut output = output_for_note.lock().unwrap();
            if let Some(note) = sandbox
                .as_ref()
                .and_then(|sandbox| sandbox.refusal_note(true, &output.render()))
            {
                output.push(format!("\n{note}\n").as_bytes());
            }
        }
        let mut note = None;
        if run.lingering > 0 {
            // A background task's processes end with it: a daemon it started must not
            // outlive the task the model sees as finished.
            run.processes.terminate(process::KILL_GRACE).await;
            note = Some(TaskNote::Lingering {
                processes: run.lingering,
            });
        }
        if let Some(mib) = run.memory_cap_hit {
            note = Some(TaskNote::MemoryCap { mib });
        }
        let tracked = self.state().forget_processes(key);
        drop((tracked, run.processes));
        self.finish(key, status, run.exit, note);
    }

    /// Records the end of a task, then starts whatever its slot lets start.
    fn finish(&self, key: u64, status: TaskStatus, exit: Option<ExitKind>, note: Option<TaskNote>) {
        let finished = self.state().finish(key, status, exit, note);
        if let Some((notification, launches)) = finished {
            self.announce(notification);
            self.launch(launches);
        }
    }

    /// Wakes the waiters of a queued notification and announces it on screen.
    fn announce(&self, notification: Notification) {
        if let Some(observer) = self.observer() {
            match notification.is_ready() {
                true => observer.ready(&notification),
                false => observer.finished(&notification),
            }
        }
        self.shared.queued.notify_waiters();
        let _ = self.shared.finished.send(notification);
    }

    /// Keeps the processes of a `bash` call whose shell exited while they still run, so
    /// that [`BackgroundManager::shutdown`] ends them with the rest.
    pub fn adopt(&self, processes: Arc<TaskProcesses>) {
        self.state().adopt(processes);
    }

    /// Takes every queued notification; each is returned exactly once. A delivered
    /// task keeps only its notification's head and tail in memory from then on.
    pub fn drain_notifications(&self) -> Vec<Notification> {
        self.state().drain_notifications()
    }

    /// Whether a task is queued or running, or a notification waits to be drained.
    pub fn has_pending(&self) -> bool {
        self.state().has_pending()
    }

    /// Whether a notification waits to be delivered to the model (any kind: this is what
    /// wakes the idle REPL).
    pub fn has_notifications(&self) -> bool {
        self.state().has_notifications()
    }

    /// The notifications waiting to be delivered, left in the queue.
    pub fn undelivered(&self) -> Vec<Notification> {
        self.state().peek_notifications()
    }

    /// Waits until at least one notification is queued.
    pub async fn wait_for_notification(&self) {
        loop {
            let notified = self.shared.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state().has_notifications() {
                return;
            }
            notified.await;
        }
    }

    /// A stream of finished tasks as they finish, for announcing them on screen. The
    /// queue for the model is separate: subscribing takes nothing from it.
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.shared.finished.subscribe()
    }

    /// Stops a task and returns its status when the kill came. A queued task ends at
    /// once, never started; a running one's process group gets SIGTERM, then SIGKILL
    /// after a grace; a finished one is left as it is.
    pub fn kill(&self, id: &str) -> Result<TaskStatus, BackgroundError> {
        let unknown = || BackgroundError::UnknownTask(id.to_string());
        let key = crate::background_task::task_key(id).ok_or_else(unknown)?;
        let killed = self.state().kill(key).ok_or_else(unknown)?;
        Ok(match killed {
            Killed::AlreadyEnded(status) => status,
            Killed::Dequeued(notification) => {
                self.announce(notification);
                TaskStatus::Queued
            }
            Killed::Signalled => TaskStatus::Running,
        })
    }

    pub fn info(&self, id: &str) -> Result<TaskInfo, BackgroundError> {
        let unknown = || BackgroundError::UnknownTask(id.to_string());
        let key = crate::background_task::task_key(id).ok_or_else(unknown)?;
        self.state().info(key).ok_or_else(unknown)
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.state().list()
    }

    /// Ends every running task's processes (SIGTERM, then SIGKILL after the grace), and
    /// those `bash` calls left running. Queued tasks never start.
    pub async fn shutdown(&self) {
        let (ended, running, adopted) = {
            let mut state = self.state();
            (
                state.close(),
                state.running_processes(),
                state.take_adopted(),
            )
        };
        for notification in ended {
            self.announce(notification);
        }
        futures_util::future::join_all(
            running
                .iter()
                .chain(&adopted)
                .map(|processes| processes.terminate(process::KILL_GRACE)),
        )
        .await;
    }

    /// SIGKILLs every process of every task at once; for a drop guard or a second Ctrl-C.
    pub fn kill_all_now(&self) {
        let (running, adopted) = {
            let mut state = self.state();
            (state.running_processes(), state.take_adopted())
        };
        for processes in running.iter().chain(&adopted) {
            processes.kill_now();
        }
    }
}

mod live;
pub use live::{InputError, MAX_INPUT, Written};

#[cfg(test)]
#[path = "background_tests.rs"]
mod tests;
