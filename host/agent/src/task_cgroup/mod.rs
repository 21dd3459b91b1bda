//! Per-task cgroups: where the machine allows it, every command (a `bash` call or a
//! background task) runs in a cgroup of its own, so every process it starts, including
//! daemons that leave its process group (`setsid`) or double-fork, is found and ended
//! with it, and its memory can be capped (`--task-memory`).
//!
//! What the machine offers is found at run time by [`configure`] (or on first use): the
//! cgroup2 mount and this process's cgroup in it (`/proc/self/mountinfo`,
//! `/proc/self/cgroup`), under which the agent makes `agent-<pid>/task-<n>`; a memory cap
//! goes into `memory.max` there when the memory controller is delegated to it, else into
//! `memory.limit_in_bytes` of the same directories made under the agent's cgroup v1
//! memory cgroup (which also tracks a task where there is no cgroup2). A machine with
//! neither gets no cgroups: [`crate::task_processes`] then falls back to the process group
//! and a sweep of the process table.
//!
//! A command joins its cgroups in the forked child before exec, by writing "0" to
//! `cgroup.procs` files opened by the parent: the child of a multi-threaded process may
//! only make raw system calls there. A task is ended by `cgroup.kill` (or, on kernels
//! without it, by SIGKILLing every pid its `cgroup.procs` lists), and its directories are
//! removed once empty; the run's directory goes at exit ([`finish_run`]), and directories
//! that agents killed by SIGKILL left behind are removed at the next start when empty.
//!
//! A command running as root may still move itself out of its cgroup by writing to
//! another `cgroup.procs`; the sandbox's file system rules are what stop that.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod hierarchy;
use hierarchy::{can_join, enable_v2_memory, make_run_dir, own_cgroup_dir, write_file};

/// What the user asked of task cgroups.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupSettings {
    /// Whether cgroups may be used at all (`AGENT_TASK_CGROUPS=off` turns them off).
    pub enabled: bool,
    /// The memory cap of one task, in MiB (`--task-memory`).
    pub memory_mib: Option<u64>,
}

/// Why the configured settings cannot be honoured here.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "--task-memory {mib}: a task's memory cannot be capped on this machine ({why}); commands are not run uncapped when a cap was asked for, so leave the flag off or run the agent where it can make cgroups"
    )]
    MemoryCapUnavailable { mib: u64, why: String },
}

/// How a task's processes are tracked and capped on this machine, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    /// A cgroup2 cgroup per task.
    CgroupV2,
    /// A cgroup v1 memory cgroup per task (no usable cgroup2).
    CgroupV1Memory,
    /// No cgroups: the process group and a sweep of the process table.
    Sweep,
}

/// Where the memory cap of a task is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoryIn {
    V2,
    V1,
}

/// What this run found and made: the parents of its task cgroups.
#[derive(Debug, Default)]
struct Support {
    /// `<cgroup2 mount>/<our cgroup>/agent-<pid>`.
    v2: Option<PathBuf>,
    /// `<v1 memory mount>/<our memory cgroup>/agent-<pid>`, made when a task needs it.
    v1_memory: Option<PathBuf>,
    /// The cap in bytes and where it goes.
    memory: Option<(u64, MemoryIn)>,
}

static SUPPORT: OnceLock<Support> = OnceLock::new();
/// Numbers task directories within the run.
static NEXT_TASK: AtomicU64 = AtomicU64::new(1);
/// Task cgroups that exist (made and not yet dropped).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Set at exit: the last task cgroup dropped also removes the run's directories.
static CLOSING: AtomicBool = AtomicBool::new(false);
/// Task directories whose removal failed (processes still exiting); retried later.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Finds what the machine offers and makes this run's cgroup directories. Called once at
/// start-up; fails when a memory cap was asked for that cannot be enforced here.
pub fn configure(settings: CgroupSettings) -> Result<Tracking, CgroupError> {
    let support = detect(settings)?;
    let _ = SUPPORT.set(support);
    Ok(tracking())
}

/// How tasks are tracked in this run.
pub fn tracking() -> Tracking {
    let support = support();
    match (&support.v2, &support.v1_memory) {
        (Some(_), _) => Tracking::CgroupV2,
        (None, Some(_)) => Tracking::CgroupV1Memory,
        (None, None) => Tracking::Sweep,
    }
}

/// The memory cap of a task in MiB, when one is enforced.
pub fn memory_cap_mib() -> Option<u64> {
    support().memory.map(|(bytes, _)| bytes >> 20)
}

fn support() -> &'static Support {
    // Without `configure` (unit tests): cgroups where possible, no cap.
    SUPPORT.get_or_init(|| {
        detect(CgroupSettings {
            enabled: true,
            memory_mib: None,
        })
        .unwrap_or_default()
    })
}

fn detect(settings: CgroupSettings) -> Result<Support, CgroupError> {
    let unavailable = |why: &str| CgroupError::MemoryCapUnavailable {
        mib: settings.memory_mib.unwrap_or(0),
        why: why.to_string(),
    };
    if !settings.enabled {
        return match settings.memory_mib {
            Some(_) => Err(unavailable(
                "task cgroups are turned off by AGENT_TASK_CGROUPS=off",
            )),
            None => Ok(Support::default()),
        };
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let run_name = format!("agent-{}", std::process::id());
    let v2 = own_cgroup_dir(&mounts, &cgroups, None)
        .and_then(|ours| make_run_dir(&ours, &run_name))
        .filter(|dir| can_join(dir));
    let v1_memory_parent = own_cgroup_dir(&mounts, &cgroups, Some("memory"));
    let bytes = settings.memory_mib.map(|mib| mib << 20);
    let mut support = Support {
        v2,
        v1_memory: None,
        memory: None,
    };
    let v2_memory = support.v2.as_deref().is_some_and(enable_v2_memory);
    let needs_v1 = (bytes.is_some() && !v2_memory) || support.v2.is_none();
    if needs_v1 {
        support.v1_memory = v1_memory_parent
            .and_then(|ours| make_run_dir(&ours, &run_name))
            .filter(|dir| can_join(dir));
    }
    if let Some(bytes) = bytes {
        support.memory = match (v2_memory, &support.v1_memory) {
            (true, _) => Some((bytes, MemoryIn::V2)),
            (false, Some(_)) => Some((bytes, MemoryIn::V1)),
            (false, None) => {
                if let Some(dir) = &support.v2 {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(unavailable(
                    "no cgroup2 memory controller delegated to the agent's cgroup and no writable cgroup v1 memory hierarchy",
                ));
            }
        };
    }
    Ok(support)
}

/// One cgroup directory of a task and its open `cgroup.procs`.
#[derive(Debug)]
struct Leaf {
    dir: PathBuf,
    procs: File,
}

impl Leaf {
    fn create(parent: &Path, name: &str) -> std::io::Result<Leaf> {
        let dir = parent.join(name);
        std::fs::create_dir(&dir)?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"));
        match procs {
            Ok(procs) => Ok(Leaf { dir, procs }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The processes in the cgroup (exited ones are not listed, reaped or not).
    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn write(&self, file: &str, value: &str) -> std::io::Result<()> {
        write_file(&self.dir.join(file), value)
    }

    /// The counter `name` of a flat keyed file such as `memory.events`.
    fn counter(&self, file: &str, name: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0)
    }
}

/// The cgroups of one task; its processes are ended and its directories removed when it
/// is dropped.
#[derive(Debug)]
pub struct TaskCgroup {
    v2: Option<Leaf>,
    v1_memory: Option<Leaf>,
}

impl TaskCgroup {
    /// Makes a new task's cgroups; `None` where the machine offers none. Fails only when
    /// a directory cannot be made or its cap set.
    pub fn create() -> std::io::Result<Option<TaskCgroup>> {
        retry_pending();
        let support = support();
        if support.v2.is_none() && support.v1_memory.is_none() {
            return Ok(None);
        }
        let name = format!("task-{}", NEXT_TASK.fetch_add(1, Ordering::Relaxed));
        let memory = support.memory;
        let v2 = support
            .v2
            .as_deref()
            .map(|parent| Leaf::create(parent, &name))
            .transpose()?;
        LIVE.fetch_add(1, Ordering::SeqCst);
        // From here the drop removes what was made.
        let mut cgroup = TaskCgroup {
            v2,
            v1_memory: None,
        };
        let v1_wanted = cgroup.v2.is_none() || matches!(memory, Some((_, MemoryIn::V1)));
        if let (Some(parent), true) = (&support.v1_memory, v1_wanted) {
            cgroup.v1_memory = Some(Leaf::create(parent, &name)?);
        }
        match memory {
            Some((bytes, MemoryIn::V2)) => {
                let leaf = cgroup.v2.as_ref().expect("v2 memory implies a v2 cgroup");
                leaf.write("memory.max", &bytes.to_string())?;
                // Swap would let a task go past its cap; not every kernel has the file.
                let _ = leaf.write("memory.swap.max", "0");
            }
            Some((bytes, MemoryIn::V1)) => {
                let leaf = cgroup.v1_memory.as_ref().expect("v1 memory cgroup made");
                leaf.write("memory.limit_in_bytes", &bytes.to_string())?;
                let _ = leaf.write("memory.memsw.limit_in_bytes", &bytes.to_string());
            }
            None => {}
        }
        Ok(Some(cgroup))
    }

    /// The `cgroup.procs` descriptors the child writes "0" to before exec, and how many.
    pub fn join_fds(&self) -> ([RawFd; 2], usize) {
        let mut fds = [-1; 2];
        let mut n = 0;
        for leaf in [&self.v2, &self.v1_memory].into_iter().flatten() {
            fds[n] = leaf.procs.as_raw_fd();
            n += 1;
        }
        (fds, n)
    }

    /// The cgroup that holds every process of the task (none only while one is made).
    fn tracker(&self) -> Option<&Leaf> {
        self.v2.as_ref().or(self.v1_memory.as_ref())
    }

    /// The processes of the task still running.
    pub fn pids(&self) -> Vec<i32> {
        self.tracker().map(Leaf::pids).unwrap_or_default()
    }

    /// SIGKILLs every process of the task at once: `cgroup.kill`, or where the kernel
    /// lacks it, each listed pid until none is left (frozen meanwhile where possible, so
    /// none can fork).
    pub fn kill(&self) {
        if let Some(v2) = &self.v2
            && v2.write("cgroup.kill", "1").is_ok()
        {
            return;
        }
        let Some(leaf) = self.tracker() else {
            return;
        };
        let frozen = self
            .v2
            .as_ref()
            .is_some_and(|v2| v2.write("cgroup.freeze", "1").is_ok());
        for _ in 0..100 {
            let pids = leaf.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // Listed in the task's own cgroup: one of its processes.
                // SAFETY: kill takes integers only.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if frozen && let Some(v2) = &self.v2 {
            let _ = v2.write("cgroup.freeze", "0");
        }
    }

    /// Whether the kernel killed a process of the task for going over its memory cap.
    pub fn hit_memory_cap(&self) -> bool {
        match support().memory {
            Some((_, MemoryIn::V2)) => self
                .v2
                .as_ref()
                .is_some_and(|leaf| leaf.counter("memory.events", "oom_kill") > 0),
            Some((_, MemoryIn::V1)) => self
                .v1_memory
                .as_ref()
                .is_some_and(|leaf| leaf.counter("memory.oom_control", "oom_kill") > 0),
            None => false,
        }
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        if !self.pids().is_empty() {
            self.kill();
            // Killed processes leave the cgroup within moments; wait a little so the
            // directory can go now rather than later.
            let until = Instant::now() + Duration::from_millis(200);
            while !self.pids().is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for leaf in [self.v2.take(), self.v1_memory.take()]
            .into_iter()
            .flatten()
        {
            if std::fs::remove_dir(&leaf.dir).is_err() {
                PENDING
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(leaf.dir);
            }
        }
        if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 && CLOSING.load(Ordering::SeqCst) {
            remove_run_dirs();
        }
    }
}

/// Removes task directories whose removal failed before.
fn retry_pending() {
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    pending.retain(|dir| std::fs::remove_dir(dir).is_err() && dir.exists());
}

fn remove_run_dirs() {
    retry_pending();
    if let Some(support) = SUPPORT.get() {
        for dir in [&support.v2, &support.v1_memory].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// At exit: waits up to `limit` for the task cgroups still held to be dropped, then
/// removes the run's directories (or leaves that to the last drop).
pub async fn finish_run(limit: Duration) {
    CLOSING.store(true, Ordering::SeqCst);
    let until = tokio::time::Instant::now() + limit;
    while LIVE.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if LIVE.load(Ordering::SeqCst) == 0 {
        remove_run_dirs();
    }
}
