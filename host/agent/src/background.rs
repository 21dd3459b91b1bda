//! The BackgroundManager: shell commands that run beside the agent loop.
//!
//! It owns the task table and the notification queue. `background_run` starts a task and
//! returns its id at once; the task's output streams to a log file (memory stays bounded:
//! only a head and a tail are kept), and when it ends, for whatever reason, exactly one
//! [`Notification`] is queued. The agent loop drains the queue before every model call, so
//! the model learns of finished tasks without polling. Every task runs in its own process
//! group: a timeout, a kill, and [`BackgroundManager::shutdown`] end the whole group.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::io::Write;

use tokio::sync::{Notify, Semaphore, broadcast, oneshot};

use crate::output::HeadTail;
use crate::process::{self, Ending, ExitKind};
use agent_plugin_runtime::private_fs;

/// Output kept in memory per task for `check_background`.
const TASK_OUTPUT_LIMIT: usize = 50_000;
/// Output put into a notification: the head and tail of the task's output.
const NOTIFICATION_OUTPUT_LIMIT: usize = 8_000;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a free slot under the concurrency limit.
    Queued,
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

    pub fn is_finished(self) -> bool {
        !matches!(self, TaskStatus::Queued | TaskStatus::Running)
    }
}

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
}

/// What the model is told when a task ends; one per task.
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
    /// Anything else worth saying: a failed launch, processes left running.
    pub note: Option<String>,
}

impl Notification {
    /// The text the model reads inside `<background-results>`.
    pub fn to_model_text(&self) -> String {
        let mut text = format!(
            "[bg:{}] {}",
            self.task_id,
            status_line(self.status, self.exit, self.duration)
        );
        text.push_str(&format!("\ncommand: {}", self.command));
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

/// "completed (exit code 0) after 1.2s": one task's state, as every view shows it.
pub fn status_line(status: TaskStatus, exit: Option<ExitKind>, duration: Duration) -> String {
    let mut line = status.as_str().to_string();
    if let Some(exit) = exit {
        line.push_str(&format!(" ({exit})"));
    }
    line.push_str(&format!(" after {:.1}s", duration.as_secs_f64()));
    line
}

/// Wraps drained notifications for the model; the user turn carries no user input.
pub fn background_results_text(notifications: &[Notification]) -> String {
    let mut text = String::from(
        "<background-results>\nBackground tasks finished (this is an automatic notice, not input from the user):\n",
    );
    for n in notifications {
        text.push('\n');
        text.push_str(&n.to_model_text());
        text.push('\n');
    }
    text.push_str("</background-results>");
    text
}

struct Task {
    command: String,
    status: TaskStatus,
    exit: Option<ExitKind>,
    created: Instant,
    started: Option<Instant>,
    duration: Option<Duration>,
    timeout: Duration,
    pgid: Option<i32>,
    output: TaskOutput,
    log_path: PathBuf,
    note: Option<String>,
    kill: Option<oneshot::Sender<()>>,
}

/// What memory holds of a task's output: while it runs and until the model has its
/// result, the head and tail the runner captures; once delivered, only the notification's
/// shorter head and tail (the whole output stays in the log on disk).
enum TaskOutput {
    Live(Arc<Mutex<HeadTail>>),
    Delivered { summary: String, total: u64 },
}

impl TaskOutput {
    fn render(&self) -> String {
        match self {
            TaskOutput::Live(output) => output.lock().unwrap().render(),
            TaskOutput::Delivered { summary, .. } => summary.clone(),
        }
    }

    fn total(&self) -> u64 {
        match self {
            TaskOutput::Live(output) => output.lock().unwrap().total(),
            TaskOutput::Delivered { total, .. } => *total,
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
    pub note: Option<String>,
}

impl TaskInfo {
    pub fn summary_line(&self) -> String {
        format!(
            "{}  {}  {}",
            self.id,
            status_line(self.status, self.exit, self.elapsed),
            self.command
        )
    }
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
}

/// Everything a task's runner needs, handed over by `start`.
struct Launch {
    key: u64,
    command: String,
    timeout: Duration,
    log: std::fs::File,
    output: Arc<Mutex<HeadTail>>,
    kill_rx: oneshot::Receiver<()>,
    line: InLine,
}

/// A task's place in the queue for a slot.
struct InLine {
    previous: Option<oneshot::Receiver<()>>,
    my_turn: oneshot::Sender<()>,
}

impl InLine {
    /// Waits for the predecessor to get its slot, then for a slot; lets the successor
    /// queue next. Dropping it half-way (a kill while queued) lets the successor go on.
    async fn wait_for_slot(
        self,
        slots: Arc<Semaphore>,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Some(previous) = self.previous {
            let _ = previous.await;
        }
        let permit = slots.acquire_owned().await.ok();
        let _ = self.my_turn.send(());
        permit
    }
}

struct Shared {
    config: BackgroundConfig,
    tasks: Mutex<BTreeMap<u64, Task>>,
    queue: Mutex<VecDeque<Notification>>,
    queued: Notify,
    finished: broadcast::Sender<Notification>,
    slots: Arc<Semaphore>,
    next_id: Mutex<u64>,
    /// Resolves once the most recently started task holds a slot (or gave up waiting):
    /// each task waits for its predecessor before it queues for a slot, so queued tasks
    /// start in the order they were started.
    last_in_line: Mutex<Option<oneshot::Receiver<()>>>,
    /// Process groups whose shell exited while members still ran; ended at shutdown.
    lingering: Mutex<Vec<i32>>,
}

/// Owns the background tasks; cheap to clone (all clones share one table).
#[derive(Clone)]
pub struct BackgroundManager {
    shared: Arc<Shared>,
}

fn task_key(id: &str) -> Option<u64> {
    id.trim()
        .trim_start_matches("bg:")
        .trim_start_matches("bg-")
        .parse()
        .ok()
}

fn task_id(key: u64) -> String {
    format!("bg-{key}")
}

impl BackgroundManager {
    pub fn new(config: BackgroundConfig) -> BackgroundManager {
        let (finished, _) = broadcast::channel(256);
        let slots = Arc::new(Semaphore::new(config.max_running.max(1)));
        BackgroundManager {
            shared: Arc::new(Shared {
                config,
                tasks: Mutex::new(BTreeMap::new()),
                queue: Mutex::new(VecDeque::new()),
                queued: Notify::new(),
                finished,
                slots,
                next_id: Mutex::new(1),
                last_in_line: Mutex::new(None),
                lingering: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Starts `command` (or queues it when the concurrency limit is reached) and returns
    /// its id at once.
    pub fn start(&self, command: &str, timeout: Duration) -> Result<String, BackgroundError> {
        let key = {
            let mut next = self.shared.next_id.lock().unwrap();
            let limit = self.shared.config.max_tasks;
            if *next > limit as u64 {
                return Err(BackgroundError::TooManyTasks { limit });
            }
            let key = *next;
            *next += 1;
            key
        };
        let id = task_id(key);
        private_fs::ensure_private_dir(&self.shared.config.log_dir).map_err(|source| {
            BackgroundError::Log {
                path: self.shared.config.log_dir.clone(),
                source,
            }
        })?;
        let log_path = self.shared.config.log_dir.join(format!("{id}.log"));
        let log =
            private_fs::create_private_file(&log_path).map_err(|source| BackgroundError::Log {
                path: log_path.clone(),
                source,
            })?;
        let (kill_tx, kill_rx) = oneshot::channel();
        let output = Arc::new(Mutex::new(HeadTail::with_limit(TASK_OUTPUT_LIMIT)));
        self.shared.tasks.lock().unwrap().insert(
            key,
            Task {
                command: command.to_string(),
                status: TaskStatus::Queued,
                exit: None,
                created: Instant::now(),
                started: None,
                duration: None,
                timeout,
                pgid: None,
                output: TaskOutput::Live(output.clone()),
                log_path,
                note: None,
                kill: Some(kill_tx),
            },
        );
        let (my_turn, next_turn) = oneshot::channel();
        let previous = self.shared.last_in_line.lock().unwrap().replace(next_turn);
        let manager = self.clone();
        let command = command.to_string();
        let launch = Launch {
            key,
            command,
            timeout,
            log,
            output,
            kill_rx,
            line: InLine { previous, my_turn },
        };
        tokio::spawn(async move { manager.run_task(launch).await });
        Ok(id)
    }

    async fn run_task(&self, launch: Launch) {
        let Launch {
            key,
            command,
            timeout,
            log,
            output,
            mut kill_rx,
            line,
        } = launch;
        // Wait for a slot; a kill while queued ends the task without starting it.
        let slots = self.shared.slots.clone();
        let permit = tokio::select! {
            permit = line.wait_for_slot(slots) => permit,
            _ = &mut kill_rx => None,
        };
        let Some(_permit) = permit else {
            self.finish(
                key,
                TaskStatus::Killed,
                None,
                Some("killed while queued; never started".into()),
            );
            return;
        };

        let shell = match process::spawn_shell(&command, &self.shared.config.workspace) {
            Ok(shell) => shell,
            Err(e) => {
                self.finish(
                    key,
                    TaskStatus::Failed,
                    None,
                    Some(format!("could not start the command: {e}")),
                );
                return;
            }
        };
        let pgid = shell.pgid;
        let started = Instant::now();
        self.update(key, |t| {
            t.status = TaskStatus::Running;
            t.started = Some(started);
            t.pgid = Some(pgid);
        });

        let capture = output.clone();
        let mut log = log;
        let mut log_ok = true;
        let run = process::supervise(
            shell,
            timeout,
            async {
                // A dropped sender means nobody can kill the task any more, not a kill.
                if kill_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
            move |bytes| {
                capture.lock().unwrap().push(bytes);
                if log_ok {
                    // One unbuffered write per chunk read (up to 64 KiB), so the log is
                    // always current for paging; a full disk only stops the log.
                    log_ok = log.write_all(bytes).is_ok();
                }
            },
        )
        .await;
        let status = match run.ending {
            Ending::TimedOut => TaskStatus::TimedOut,
            Ending::Killed => TaskStatus::Killed,
            Ending::Exited if run.exit.is_some_and(ExitKind::success) => TaskStatus::Completed,
            Ending::Exited => TaskStatus::Failed,
        };
        let mut note = None;
        if run.lingering > 0 {
            note = Some(format!(
                "the shell exited, but {} process(es) it started are still running (process group {pgid}); they are ended when the agent exits",
                run.lingering
            ));
            self.adopt_group(pgid);
        }
        self.finish(key, status, run.exit, note);
    }

    /// Keeps a process group whose shell exited while members still run, so that
    /// [`BackgroundManager::shutdown`] ends it with the rest.
    pub fn adopt_group(&self, pgid: i32) {
        self.shared.lingering.lock().unwrap().push(pgid);
    }

    fn update(&self, key: u64, f: impl FnOnce(&mut Task)) {
        if let Some(task) = self.shared.tasks.lock().unwrap().get_mut(&key) {
            f(task);
        }
    }

    /// Records the end of a task and queues its one notification.
    fn finish(&self, key: u64, status: TaskStatus, exit: Option<ExitKind>, note: Option<String>) {
        let notification = {
            let mut tasks = self.shared.tasks.lock().unwrap();
            let Some(task) = tasks.get_mut(&key) else {
                return;
            };
            if task.status.is_finished() {
                return;
            }
            let duration = task.started.map(|s| s.elapsed()).unwrap_or_default();
            task.status = status;
            task.exit = exit;
            task.duration = Some(duration);
            task.note = note.clone();
            task.kill = None;
            let (output, output_bytes) = match &task.output {
                TaskOutput::Live(output) => {
                    let output = output.lock().unwrap();
                    (
                        output.render_within(NOTIFICATION_OUTPUT_LIMIT),
                        output.total(),
                    )
                }
                TaskOutput::Delivered { summary, total } => (summary.clone(), *total),
            };
            Notification {
                task_id: task_id(key),
                command: task.command.clone(),
                status,
                exit,
                duration,
                output,
                output_bytes,
                log_path: task.log_path.clone(),
                note,
            }
        };
        self.shared
            .queue
            .lock()
            .unwrap()
            .push_back(notification.clone());
        self.shared.queued.notify_waiters();
        let _ = self.shared.finished.send(notification);
    }

    /// Takes every queued notification; each is returned exactly once. A delivered
    /// task keeps only its notification's head and tail in memory from then on.
    pub fn drain_notifications(&self) -> Vec<Notification> {
        let drained: Vec<Notification> = self.shared.queue.lock().unwrap().drain(..).collect();
        let mut tasks = self.shared.tasks.lock().unwrap();
        for notification in &drained {
            if let Some(task) = task_key(&notification.task_id).and_then(|k| tasks.get_mut(&k)) {
                task.output = TaskOutput::Delivered {
                    summary: notification.output.clone(),
                    total: notification.output_bytes,
                };
            }
        }
        drained
    }

    /// Whether a task is queued or running, or a notification waits to be drained.
    pub fn has_pending(&self) -> bool {
        !self.shared.queue.lock().unwrap().is_empty()
            || self
                .shared
                .tasks
                .lock()
                .unwrap()
                .values()
                .any(|t| !t.status.is_finished())
    }

    /// Waits until at least one notification is queued.
    pub async fn wait_for_notification(&self) {
        loop {
            let notified = self.shared.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.shared.queue.lock().unwrap().is_empty() {
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

    /// Asks a task to stop: its process group gets SIGTERM, then SIGKILL after a grace.
    pub fn kill(&self, id: &str) -> Result<TaskStatus, BackgroundError> {
        let unknown = || BackgroundError::UnknownTask(id.to_string());
        let key = task_key(id).ok_or_else(unknown)?;
        let mut tasks = self.shared.tasks.lock().unwrap();
        let task = tasks.get_mut(&key).ok_or_else(unknown)?;
        if let Some(kill) = task.kill.take() {
            let _ = kill.send(());
        }
        Ok(task.status)
    }

    pub fn info(&self, id: &str) -> Result<TaskInfo, BackgroundError> {
        let unknown = || BackgroundError::UnknownTask(id.to_string());
        let key = task_key(id).ok_or_else(unknown)?;
        let tasks = self.shared.tasks.lock().unwrap();
        let task = tasks.get(&key).ok_or_else(unknown)?;
        Ok(info_of(key, task))
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        let tasks = self.shared.tasks.lock().unwrap();
        tasks
            .iter()
            .map(|(key, task)| info_of(*key, task))
            .collect()
    }

    /// Ends every running task's process group (SIGTERM, then SIGKILL after the grace),
    /// and the groups of finished shells whose children lived on. Queued tasks never start.
    pub async fn shutdown(&self) {
        self.shared.slots.close();
        let groups = self.live_groups();
        futures_util::future::join_all(
            groups
                .into_iter()
                .map(|pgid| process::terminate_group(pgid, process::KILL_GRACE)),
        )
        .await;
    }

    /// SIGKILLs every group at once; for a drop guard or a second Ctrl-C.
    pub fn kill_all_now(&self) {
        for pgid in self.live_groups() {
            process::kill_group_now(pgid);
        }
    }

    fn live_groups(&self) -> Vec<i32> {
        let mut groups: Vec<i32> = self
            .shared
            .tasks
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.status == TaskStatus::Running)
            .filter_map(|t| t.pgid)
            .collect();
        groups.extend(self.shared.lingering.lock().unwrap().iter().copied());
        groups
    }
}

fn info_of(key: u64, task: &Task) -> TaskInfo {
    let elapsed = match (task.duration, task.started) {
        (Some(d), _) => d,
        (None, Some(s)) => s.elapsed(),
        (None, None) => task.created.elapsed(),
    };
    TaskInfo {
        id: task_id(key),
        command: task.command.clone(),
        status: task.status,
        exit: task.exit,
        elapsed,
        timeout: task.timeout,
        output: task.output.render(),
        output_bytes: task.output.total(),
        log_path: task.log_path.clone(),
        note: task.note.clone(),
    }
}
