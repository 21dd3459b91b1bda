//! Everything one command started, ended as one: [`TaskProcesses`].
//!
//! Where the machine allows it, a task's processes are the members of its own cgroup
//! ([`crate::task_cgroup`]), which no daemon leaves by `setsid` or a double fork. Elsewhere
//! they are found in the process table ([`crate::orphans::ProcessTable::task_members`]):
//! the live processes that descend from the agent (its subreaper role keeps orphans
//! there) and are in the task's process group, or carry the task's marker in their
//! environment (`AGENT_TASK`, set for every command when there are no cgroups), or descend
//! from such a process. The limit of that fallback: a process that left the group,
//! cleared or rewrote its environment, and whose parent exited belongs to no task any
//! more; it is still ended when the agent exits (every process re-parented to the agent
//! is, see [`crate::orphans::end_orphans`]), but not with its task.
//!
//! A process is signalled through a pidfd opened before the last check that it is still
//! the task's, so a pid that was reused by a process that is not ours is never hit.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::orphans::ProcessTable;
use crate::task_cgroup::{self, TaskCgroup};

/// The environment variable that marks a command's processes where there are no cgroups.
pub const MARKER_VAR: &str = "AGENT_TASK";

/// Numbers the markers of the run.
static NEXT_MARKER: AtomicU64 = AtomicU64::new(1);

/// The processes of one command (a `bash` call or a background task). Dropping it ends
/// whatever of them still runs.
#[derive(Debug)]
pub struct TaskProcesses {
    /// The process group of the command's shell (0 until it started).
    pgid: i32,
    cgroup: Option<TaskCgroup>,
    /// The value of [`MARKER_VAR`] in the command's environment, without a cgroup.
    marker: Option<String>,
    /// Set once no process of the task was left: none can appear again.
    ended: AtomicBool,
}

impl TaskProcesses {
    /// Prepares `cmd` before it is spawned: makes the task's cgroup and has the child join
    /// it before exec, or, where there is no cgroup, marks the command's environment.
    /// Fails when the cgroup that enforces a memory cap cannot be made.
    pub fn prepare(cmd: &mut Command) -> std::io::Result<TaskProcesses> {
        let cgroup = match TaskCgroup::create() {
            Ok(cgroup) => cgroup,
            Err(e) if task_cgroup::memory_cap_mib().is_some() => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot make the cgroup that caps the command's memory: {e}"),
                ));
            }
            // Without a cap to enforce, the sweep tracks the task instead.
            Err(_) => None,
        };
        let marker = match &cgroup {
            Some(cgroup) => {
                let (fds, count) = cgroup.join_fds();
                // SAFETY: the closure runs in the forked child before exec and only calls
                // write(2) on descriptors the parent keeps open until spawn returns; it
                // allocates nothing (the error is an OS error code).
                unsafe {
                    cmd.pre_exec(move || {
                        for &fd in &fds[..count] {
                            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                                return Err(std::io::Error::last_os_error());
                            }
                        }
                        Ok(())
                    });
                }
                None
            }
            None => {
                let marker = format!(
                    "{}-{}",
                    std::process::id(),
                    NEXT_MARKER.fetch_add(1, Ordering::Relaxed)
                );
                cmd.env(MARKER_VAR, &marker);
                Some(marker)
            }
        };
        Ok(TaskProcesses {
            pgid: 0,
            cgroup,
            marker,
            ended: AtomicBool::new(false),
        })
    }

    /// Records the process group of the started shell.
    pub fn started(&mut self, pgid: i32) {
        self.pgid = pgid;
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Whether the task has a cgroup of its own.
    pub fn in_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// The pids of the task's live processes.
    fn members(&self) -> Vec<i32> {
        if self.ended.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let pids = match (&self.cgroup, &self.marker) {
            (Some(cgroup), _) => cgroup.pids(),
            (None, Some(marker)) => ProcessTable::read()
                .task_members(self.pgid, marker)
                .iter()
                .map(|p| p.pid)
                .collect(),
            (None, None) => Vec::new(),
        };
        if pids.is_empty() {
            self.ended.store(true, Ordering::SeqCst);
        }
        pids
    }

    /// How many processes of the task still run.
    pub fn live(&self) -> usize {
        self.members().len()
    }

    /// Sends `signal` to every live process of the task.
    fn signal_all(&self, signal: Signal) {
        match (&self.cgroup, &self.marker) {
            (Some(cgroup), _) => {
                signal_checked(&cgroup.pids(), signal, || {
                    cgroup.pids().into_iter().collect()
                });
            }
            (None, Some(marker)) => {
                let members = ProcessTable::read().task_members(self.pgid, marker);
                let pids: Vec<i32> = members.iter().map(|p| p.pid).collect();
                signal_checked(&pids, signal, || {
                    members
                        .iter()
                        .filter(|p| p.still_running())
                        .map(|p| p.pid)
                        .collect()
                });
            }
            (None, None) => {}
        }
    }

    /// Ends the task: SIGTERM to every process, then SIGKILL to what is left after
    /// `grace`. Returns once none is left (or SIGKILL was sent).
    pub async fn terminate(&self, grace: Duration) {
        if self.members().is_empty() {
            return;
        }
        self.signal_all(Signal::SIGTERM);
        // A stopped process cannot act on SIGTERM until it is continued.
        self.signal_all(Signal::SIGCONT);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.members().is_empty() {
                return;
            }
        }
        self.kill_now();
    }

    /// SIGKILLs every process of the task at once; for exits where there is no time to be
    /// polite.
    pub fn kill_now(&self) {
        match &self.cgroup {
            Some(cgroup) => cgroup.kill(),
            None => {
                // A process may fork between the table's snapshot and its signal: repeat
                // until a snapshot finds none.
                for _ in 0..20 {
                    if self.members().is_empty() {
                        return;
                    }
                    self.signal_all(Signal::SIGKILL);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// The task's memory cap in MiB, when the kernel killed a process of it for going
    /// over the cap.
    pub fn hit_memory_cap(&self) -> Option<u64> {
        let cgroup = self.cgroup.as_ref()?;
        if cgroup.hit_memory_cap() {
            task_cgroup::memory_cap_mib()
        } else {
            None
        }
    }
}

impl Drop for TaskProcesses {
    fn drop(&mut self) {
        // A cgroup ends its processes when dropped itself.
        if self.cgroup.is_none() {
            self.kill_now();
        }
    }
}

/// Sends `signal` to those of `pids` that `ours_now` still names after a pidfd to each
/// was opened: a pidfd keeps naming the process that was checked even if its pid is
/// reused meanwhile. Descriptors are opened a batch at a time, so a task of thousands of
/// processes cannot use them up.
fn signal_checked(pids: &[i32], signal: Signal, mut ours_now: impl FnMut() -> HashSet<i32>) {
    for batch in pids.chunks(256) {
        let opened: Vec<(i32, Option<OwnedFd>)> = batch
            .iter()
            .filter_map(|&pid| {
                // SAFETY: pidfd_open takes integers and returns a new descriptor or -1.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                if fd >= 0 {
                    // SAFETY: the descriptor was just returned to us and nothing else owns it.
                    return Some((pid, Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })));
                }
                // Kernels before 5.3 have no pidfd: a plain kill after the check. Any other
                // failure means the process is gone.
                let no_pidfd = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
                no_pidfd.then_some((pid, None))
            })
            .collect();
        let ours = ours_now();
        for (pid, fd) in opened.iter().filter(|(pid, _)| ours.contains(pid)) {
            match fd {
                // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
                Some(fd) => unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as libc::c_int,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    );
                },
                None => {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
                }
            }
        }
    }
}
