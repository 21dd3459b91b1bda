//! What the [`BackgroundManager`](crate::background::BackgroundManager) knows about its
//! tasks, and every change to it, as plain synchronous code.
//!
//! [`State`] is the one owner of the task table, the notification queue, the next id, the
//! FIFO of tasks waiting for a slot and the processes `bash` calls left running. Each method is one
//! transition that keeps them consistent with each other (a finished task frees its slot
//! and hands it to the next in line in the same step), so the manager only has to lock,
//! call one method, unlock, and then act on what it returned: spawn the runners of
//! [`Launch`]es, wake waiters, announce the [`Notification`]. Nothing here awaits, spawns
//! or signals a process, which is what lets it sit behind one std mutex and be tested
//! without processes.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::background_task::{
    Notification, Readiness, TaskInfo, TaskNote, TaskStatus, task_id, task_key,
};
use crate::output::HeadTail;
use crate::process::{Confinement, ExitKind};
use crate::readiness::{ReadyBy, Watch};
use crate::task_processes::TaskProcesses;

/// Output kept in memory per task for `check_background`.
const TASK_OUTPUT_LIMIT: usize = 50_000;
/// Output put into a notification: the head and tail of the task's output.
const NOTIFICATION_OUTPUT_LIMIT: usize = 8_000;

/// What memory holds of a task's output: while it runs and until the model has its
/// result, the head and tail the runner captures; once delivered, only the notification's
/// shorter head and tail (the whole output stays in the log on disk).
///
/// The live buffer has its own lock, shared with the runner's output callback: output
/// arrives in chunks of up to 64 KiB at disk speed, and copying it must not hold the
/// table's lock that status queries and other tasks' transitions wait for.
enum TaskOutput {
    Live(Arc<Mutex<HeadTail>>),
    Delivered { summary: String, total: u64 },
}

impl TaskOutput {
    fn render_within(&self, limit: usize) -> (String, u64) {
        match self {
            TaskOutput::Live(output) => {
                let output = output.lock().unwrap();
                (output.render_within(limit), output.total())
            }
            TaskOutput::Delivered { summary, total } => (summary.clone(), *total),
        }
    }
}

struct Task {
    command: String,
    /// Inside the sandbox, or (approved) outside it.
    confinement: Confinement,
    status: TaskStatus,
    exit: Option<ExitKind>,
    created: Instant,
    started: Option<Instant>,
    duration: Option<Duration>,
    timeout: Duration,
    /// The processes of the running task.
    processes: Option<Arc<TaskProcesses>>,
    output: TaskOutput,
    log_path: PathBuf,
    note: Option<TaskNote>,
    /// The open log, kept until the task gets its slot and the runner takes it.
    log: Option<std::fs::File>,
    /// Asks the runner to end the task; set while it holds a slot.
    kill: Option<oneshot::Sender<()>>,
    /// Whether the task holds one of the `max_running` slots.
    holds_slot: bool,
    /// What the task waits for to be ready, and what made it ready once it is.
    watch: Option<Watch>,
    ready: Option<ReadyBy>,
    /// Whether it was started with `stdin: true`, and the pipe's write end once it runs.
    wants_stdin: bool,
    stdin: Option<Stdin>,
}

/// Everything a task's runner needs, handed out when the task gets its slot.
pub struct Launch {
    pub key: u64,
    pub command: String,
    pub timeout: Duration,
    pub confinement: Confinement,
    pub log: std::fs::File,
    pub output: Arc<Mutex<HeadTail>>,
    pub kill: oneshot::Receiver<()>,
    pub watch: Option<Watch>,
    /// Whether its stdin is to be a pipe.
    pub stdin: bool,
}

/// A task of an earlier run of a resumed session, known from its transcript: it keeps
/// its id and log, and is told to the model if it never was.
#[derive(Debug, Clone)]
pub struct Restored {
    pub key: u64,
    pub command: String,
    pub status: TaskStatus,
    pub exit: Option<ExitKind>,
    pub duration: Duration,
    /// What the model is told of its output (the head and tail of its log).
    pub output: String,
    pub output_bytes: u64,
    pub log_path: PathBuf,
    pub note: Option<TaskNote>,
    /// Whether the model still has to be told of its end.
    pub deliver: bool,
}

/// What [`State::kill`] did.
#[derive(Debug)]
pub enum Killed {
    /// The task had ended already, with this status.
    AlreadyEnded(TaskStatus),
    /// The task was queued; it ended at once, and this is its notification.
    Dequeued(Notification),
    /// The task runs; its runner was asked to end it.
    Signalled,
}

/// The manager's whole state.
pub struct State {
    tasks: BTreeMap<u64, Task>,
    notifications: VecDeque<Notification>,
    next_key: u64,
    /// Keys this run has reserved (the `max_tasks` cap counts only these, not the
    /// restored tasks of an earlier run).
    reserved: usize,
    /// Keys of queued tasks, oldest first: the order they get slots in.
    waiting: VecDeque<u64>,
    running: usize,
    max_running: usize,
    max_tasks: usize,
    /// Processes of `bash` calls whose shell exited while they still ran; ended at
    /// shutdown.
    adopted: Vec<Arc<TaskProcesses>>,
    /// Set by shutdown: nothing starts any more.
    closed: bool,
}

impl State {
    pub fn new(max_running: usize, max_tasks: usize) -> State {
        State {
            tasks: BTreeMap::new(),
            notifications: VecDeque::new(),
            next_key: 1,
            reserved: 0,
            waiting: VecDeque::new(),
            running: 0,
            max_running: max_running.max(1),
            max_tasks,
            adopted: Vec::new(),
            closed: false,
        }
    }

    /// Takes the next key, or `None` once the session has started `max_tasks` tasks.
    pub fn reserve_key(&mut self) -> Option<u64> {
        if self.reserved >= self.max_tasks {
            return None;
        }
        self.reserved += 1;
        let key = self.next_key;
        self.next_key += 1;
        Some(key)
    }

    /// Takes in the tasks of an earlier run: each replaces a finished task of the same
    /// id (a running or queued one is left alone), those never told to the model are
    /// queued as notifications, and new ids continue after the highest one.
    pub fn restore(&mut self, restored: Vec<Restored>) {
        for r in restored {
            self.next_key = self.next_key.max(r.key + 1);
            if self
                .tasks
                .get(&r.key)
                .is_some_and(|t| !t.status.is_finished())
            {
                continue;
            }
            let notification = Notification {
                task_id: task_id(r.key),
                command: r.command.clone(),
                status: r.status,
                exit: r.exit,
                duration: r.duration,
                output: r.output.clone(),
                output_bytes: r.output_bytes,
                log_path: r.log_path.clone(),
                note: r.note.clone(),
                readiness: Readiness::Unwatched,
            };
            let now = Instant::now();
            self.tasks.insert(
                r.key,
                Task {
                    command: r.command,
                    confinement: Confinement::Unsandboxed,
                    status: r.status,
                    exit: r.exit,
                    created: now,
                    started: Some(now),
                    duration: Some(r.duration),
                    timeout: Duration::ZERO,
                    processes: None,
                    output: TaskOutput::Delivered {
                        summary: r.output,
                        total: r.output_bytes,
                    },
                    log_path: r.log_path,
                    note: r.note,
                    log: None,
                    kill: None,
                    holds_slot: false,
                    watch: None,
                    ready: None,
                    wants_stdin: false,
                    stdin: None,
                },
            );
            if r.deliver {
                self.notifications.push_back(notification);
            }
        }
    }

    /// Queues a task under a reserved key, then hands out every slot that is free.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        key: u64,
        command: &str,
        timeout: Duration,
        confinement: Confinement,
        log_path: PathBuf,
        log: std::fs::File,
        extras: Extras,
    ) -> Vec<Launch> {
        let task = Task {
            command: command.to_string(),
            confinement,
            status: TaskStatus::Queued,
            exit: None,
            created: Instant::now(),
            started: None,
            duration: None,
            timeout,
            processes: None,
            output: TaskOutput::Live(Arc::new(Mutex::new(HeadTail::with_limit(
                TASK_OUTPUT_LIMIT,
            )))),
            log_path,
            note: None,
            log: Some(log),
            kill: None,
            holds_slot: false,
            watch: extras.watch,
            ready: None,
            wants_stdin: extras.stdin,
            stdin: None,
        };
        self.tasks.insert(key, task);
        // Keys are reserved in start order; keep the line in that order even if two
        // starts finished creating their logs the other way round.
        let at = self.waiting.partition_point(|&k| k < key);
        self.waiting.insert(at, key);
        self.launch_ready()
    }

    /// Gives free slots to the oldest queued tasks.
    fn launch_ready(&mut self) -> Vec<Launch> {
        let mut launches = Vec::new();
        while !self.closed && self.running < self.max_running {
            let Some(key) = self.waiting.pop_front() else {
                break;
            };
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            let (Some(log), TaskOutput::Live(output)) = (task.log.take(), &task.output) else {
                continue;
            };
            let (kill_tx, kill_rx) = oneshot::channel();
            task.status = TaskStatus::Running;
            task.started = Some(Instant::now());
            task.kill = Some(kill_tx);
            task.holds_slot = true;
            self.running += 1;
            launches.push(Launch {
                key,
                command: task.command.clone(),
                timeout: task.timeout,
                confinement: task.confinement.clone(),
                log,
                output: output.clone(),
                kill: kill_rx,
                watch: task.watch.clone(),
                stdin: task.wants_stdin,
            });
        }
        launches
    }

    /// Records the processes of a task whose shell started.
    pub fn started(&mut self, key: u64, processes: Arc<TaskProcesses>) {
        if let Some(task) = self.tasks.get_mut(&key) {
            task.processes = Some(processes);
        }
    }

    /// Records the end of a task, queues its one notification, and hands its slot to the
    /// next in line. `None` if the task had already ended.
    pub fn finish(
        &mut self,
        key: u64,
        status: TaskStatus,
        exit: Option<ExitKind>,
        note: Option<TaskNote>,
    ) -> Option<(Notification, Vec<Launch>)> {
        let task = self.tasks.get_mut(&key)?;
        if task.status.is_finished() {
            return None;
        }
        let duration = task.started.map(|s| s.elapsed()).unwrap_or_default();
        task.status = status;
        task.exit = exit;
        task.duration = Some(duration);
        task.note = note.clone();
        task.kill = None;
        task.log = None;
        task.processes = None;
        // Closing it tells whatever of the task still reads (a daemon left) there is no more.
        task.stdin = None;
        let readiness = match (&task.watch, &task.ready) {
            (Some(watch), None) => Readiness::NeverReady(watch.describe()),
            _ => Readiness::Unwatched,
        };
        let freed = std::mem::take(&mut task.holds_slot);
        let (output, output_bytes) = task.output.render_within(NOTIFICATION_OUTPUT_LIMIT);
        let notification = Notification {
            task_id: task_id(key),
            command: task.command.clone(),
            status,
            exit,
            duration,
            output,
            output_bytes,
            log_path: task.log_path.clone(),
            note,
            readiness,
        };
        self.waiting.retain(|&k| k != key);
        if freed {
            self.running -= 1;
        }
        self.notifications.push_back(notification.clone());
        Some((notification, self.launch_ready()))
    }

    /// Ends a queued task at once, or asks a running one's runner to end it.
    pub fn kill(&mut self, key: u64) -> Option<Killed> {
        let task = self.tasks.get_mut(&key)?;
        Some(match task.status {
            status if status.is_finished() => Killed::AlreadyEnded(status),
            TaskStatus::Queued => {
                let (notification, _) = self
                    .finish(
                        key,
                        TaskStatus::Killed,
                        None,
                        Some(TaskNote::KilledWhileQueued),
                    )
                    .expect("a queued task has not ended");
                Killed::Dequeued(notification)
            }
            _ => {
                if let Some(kill) = task.kill.take() {
                    let _ = kill.send(());
                }
                Killed::Signalled
            }
        })
    }

    /// Keeps the processes of a `bash` call to end at shutdown.
    pub fn adopt(&mut self, processes: Arc<TaskProcesses>) {
        self.adopted.push(processes);
    }

    /// Takes the processes of a task whose runner is done with them, so the last clone
    /// (whose drop removes its cgroup) is dropped outside the lock.
    pub fn forget_processes(&mut self, key: u64) -> Option<Arc<TaskProcesses>> {
        self.tasks.get_mut(&key)?.processes.take()
    }

    /// Takes every queued notification; each is returned exactly once. A delivered task
    /// keeps only its notification's head and tail in memory from then on.
    pub fn drain_notifications(&mut self) -> Vec<Notification> {
        let drained: Vec<Notification> = self.notifications.drain(..).collect();
        // A ready notification leaves the running task's live output alone.
        for notification in drained.iter().filter(|n| !n.is_ready()) {
            if let Some(task) = task_key(&notification.task_id).and_then(|k| self.tasks.get_mut(&k))
            {
                task.output = TaskOutput::Delivered {
                    summary: notification.output.clone(),
                    total: notification.output_bytes,
                };
            }
        }
        drained
    }

    pub fn has_notifications(&self) -> bool {
        !self.notifications.is_empty()
    }

    /// The queued notifications, left in the queue.
    pub fn peek_notifications(&self) -> Vec<Notification> {
        self.notifications.iter().cloned().collect()
    }

    /// Whether a task is queued or running, or a notification waits to be drained.
    pub fn has_pending(&self) -> bool {
        self.has_notifications() || self.tasks.values().any(|t| !t.status.is_finished())
    }

    pub fn info(&self, key: u64) -> Option<TaskInfo> {
        self.tasks.get(&key).map(|task| info_of(key, task))
    }

    pub fn list(&self) -> Vec<TaskInfo> {
        self.tasks.iter().map(|(key, t)| info_of(*key, t)).collect()
    }

    /// Stops handing out slots and ends every queued task; returns their notifications.
    pub fn close(&mut self) -> Vec<Notification> {
        self.closed = true;
        let queued: Vec<u64> = self.waiting.iter().copied().collect();
        queued
            .into_iter()
            .filter_map(|key| {
                self.finish(
                    key,
                    TaskStatus::Killed,
                    None,
                    Some(TaskNote::KilledWhileQueued),
                )
            })
            .map(|(notification, _)| notification)
            .collect()
    }

    /// The processes of running tasks.
    pub fn running_processes(&self) -> Vec<Arc<TaskProcesses>> {
        self.tasks
            .values()
            .filter(|t| t.status == TaskStatus::Running)
            .filter_map(|t| t.processes.clone())
            .collect()
    }

    /// Takes the processes `bash` calls left running.
    pub fn take_adopted(&mut self) -> Vec<Arc<TaskProcesses>> {
        std::mem::take(&mut self.adopted)
    }
}

mod info;
use info::info_of;
mod live;
pub use live::{Extras, NoInput, Stdin};

#[cfg(test)]
#[path = "background_state_tests.rs"]
mod tests;
