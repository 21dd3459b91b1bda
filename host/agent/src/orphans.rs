//! The agent as child subreaper: processes that commands leave behind.
//!
//! A command can start a process that leaves its process group (`setsid daemon &`),
//! escaping the group kill that ends a task. The agent is a child subreaper, so such
//! processes are re-parented to it rather than to init: [`reap_orphans`] collects the
//! ones that exit (leaving the shells tokio waits for alone), and [`end_orphans`] ends
//! the ones still running when the agent exits. [`ProcessTable`] reads `/proc`, and
//! decides whether a process group still belongs to the agent (a live member descends
//! from it), so a group id reused by somebody else's processes is never signalled, and
//! finds the processes of a task where there is no cgroup to hold them
//! ([`ProcessTable::task_members`], used by [`crate::task_processes`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, Once};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Makes this process the subreaper of everything it starts, once.
pub(crate) fn become_subreaper() {
    static ONCE: Once = Once::new();
    // SAFETY: PR_SET_CHILD_SUBREAPER takes integers only.
    ONCE.call_once(|| unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    });
}

/// The shells started here that tokio has not reaped yet: [`reap_orphans`] must leave
/// their exit status to tokio. Held across `spawn`, so no shell is ever unlisted.
pub(crate) static SHELLS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcEntry {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
    pub(crate) zombie: bool,
    /// When the process started, in clock ticks after boot: with the pid, it names one
    /// process even after the pid is reused.
    pub(crate) start_time: u64,
}

impl ProcEntry {
    /// Whether the process this entry was read from still runs (not a later process
    /// that got its pid).
    pub(crate) fn still_running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| parse_stat(self.pid, &stat))
            .is_some_and(|now| now.start_time == self.start_time && !now.zombie)
    }
}

/// A snapshot of every process on the machine (those that vanish while it is read are
/// left out).
pub(crate) struct ProcessTable {
    pub(crate) entries: Vec<ProcEntry>,
}

impl ProcessTable {
    pub(crate) fn read() -> ProcessTable {
        let entries = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                parse_stat(pid, &stat)
            })
            .collect();
        ProcessTable { entries }
    }

    fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.entries.iter().find(|p| p.pid == pid)
    }

    /// Whether `pid` is this process or one of its descendants.
    fn descends_from_us(&self, mut pid: i32) -> bool {
        let me = std::process::id() as i32;
        // A parent chain is short; the bound only guards against a cycle in a snapshot
        // taken while processes come and go.
        for _ in 0..64 {
            if pid == me {
                return true;
            }
            match self.get(pid) {
                Some(entry) if entry.ppid > 1 => pid = entry.ppid,
                _ => return false,
            }
        }
        false
    }

    /// Whether a live process of group `pgid` descends from this process; a group id
    /// reused by processes that are not ours is not.
    pub(crate) fn group_is_ours(&self, pgid: i32) -> bool {
        self.entries
            .iter()
            .any(|p| p.pgrp == pgid && !p.zombie && self.descends_from_us(p.pid))
    }

    /// The live processes of the task whose shell leads group `pgid` and whose commands
    /// carry `AGENT_TASK=marker` in their environment, for machines without cgroups: the
    /// processes that descend from this one and are in that group or carry that marker,
    /// and their descendants (whatever group or environment they have now). A process
    /// that left the group and dropped the marker, and whose parent is gone, is found by
    /// no task; [`end_orphans`] still ends it at exit.
    pub(crate) fn task_members(&self, pgid: i32, marker: &str) -> Vec<ProcEntry> {
        let me = std::process::id() as i32;
        let by_pid: HashMap<i32, &ProcEntry> = self.entries.iter().map(|p| (p.pid, p)).collect();
        let wanted = format!("{}={marker}", crate::task_processes::MARKER_VAR);
        // Whether each process is the task's by itself; read lazily, once per process.
        let mut marked: HashMap<i32, bool> = HashMap::new();
        let mut is_marked = |p: &ProcEntry| {
            *marked
                .entry(p.pid)
                .or_insert_with(|| (pgid > 0 && p.pgrp == pgid) || environ_has(p.pid, &wanted))
        };
        self.entries
            .iter()
            .filter(|p| !p.zombie && p.pid != me)
            .filter(|p| {
                // Walk up to this process; the task's if any process on the way is marked.
                let mut found = false;
                let mut at = **p;
                for _ in 0..64 {
                    if at.pid == me {
                        return found;
                    }
                    found = found || is_marked(&at);
                    match by_pid.get(&at.ppid) {
                        Some(parent) => at = **parent,
                        None => return false,
                    }
                }
                false
            })
            .copied()
            .collect()
    }

    /// This process's children that it did not start as shells: descendants of commands
    /// re-parented to it.
    fn orphans(&self) -> impl Iterator<Item = &ProcEntry> {
        let me = std::process::id() as i32;
        let shells = SHELLS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.entries
            .iter()
            .filter(move |p| p.ppid == me && !shells.contains(&p.pid))
    }
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and
/// may itself hold spaces and parentheses): state, ppid, pgrp, ...
fn parse_stat(pid: i32, stat: &str) -> Option<ProcEntry> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // starttime is the 22nd field; pgrp was the 5th.
    let start_time = fields.nth(16).and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(ProcEntry {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z" || state == "X",
        start_time,
    })
}

/// Whether `/proc/PID/environ` holds exactly the entry `wanted` (`NAME=value`).
fn environ_has(pid: i32, wanted: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|&b| b == 0).any(|e| e == wanted.as_bytes()))
}

/// Collects the exit status of orphans that have exited, so they do not stay zombies.
/// Shells are left to tokio, which waits for them.
pub fn reap_orphans() {
    for orphan in ProcessTable::read().orphans().filter(|p| p.zombie) {
        // SAFETY: waitpid on a specific child pid with WNOHANG only writes `status`.
        let mut status = 0;
        unsafe { libc::waitpid(orphan.pid, &mut status, libc::WNOHANG) };
    }
}

/// Ends every process re-parented to the agent (daemons that commands left behind),
/// with their process groups: SIGTERM, then SIGKILL to what is left after `grace`.
/// Orphans of orphans are re-parented in turn, so it repeats until none is left or the
/// time runs out.
pub async fn end_orphans(grace: Duration) {
    let term_until = tokio::time::Instant::now() + grace;
    let kill_until = term_until + Duration::from_millis(500);
    let mut warned = BTreeSet::new();
    loop {
        reap_orphans();
        let live: Vec<ProcEntry> = ProcessTable::read()
            .orphans()
            .filter(|p| !p.zombie)
            .copied()
            .collect();
        let now = tokio::time::Instant::now();
        if live.is_empty() || now >= kill_until {
            return;
        }
        for orphan in live {
            let signal = if now >= term_until {
                Signal::SIGKILL
            } else if warned.insert(orphan.pid) {
                Signal::SIGTERM
            } else {
                continue;
            };
            let pid = Pid::from_raw(orphan.pid);
            if orphan.pgrp == orphan.pid {
                let _ = killpg(pid, signal);
                let _ = killpg(pid, Signal::SIGCONT);
            }
            let _ = nix::sys::signal::kill(pid, signal);
            let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILLs every orphan and its group at once; for a drop guard where there is no time
/// (or no runtime) to be polite.
pub fn kill_orphans_now() {
    for orphan in ProcessTable::read().orphans().filter(|p| !p.zombie) {
        let pid = Pid::from_raw(orphan.pid);
        if orphan.pgrp == orphan.pid {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
}

/// Reaps exited orphans whenever a child exits, for as long as the runtime lives.
pub fn spawn_orphan_reaper() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut exits) = signal(SignalKind::child()) else {
        return;
    };
    tokio::spawn(async move {
        while exits.recv().await.is_some() {
            // Exits come in bursts (a task's whole group at once): one scan per burst.
            tokio::time::sleep(Duration::from_millis(100)).await;
            reap_orphans();
        }
    });
}

/// Takes a shell off [`SHELLS`] once its supervision ends (it has been reaped by then).
pub(crate) struct ListedShell(pub(crate) i32);

impl Drop for ListedShell {
    fn drop(&mut self) {
        SHELLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{spawn_shell, terminate_group};
    use std::path::Path;

    #[tokio::test]
    async fn only_groups_that_descend_from_this_process_count_as_ours() {
        assert!(
            !ProcessTable::read().group_is_ours(1),
            "init's group is somebody else's, as a reused id would be"
        );
        let shell = spawn_shell(
            "sleep 5",
            Path::new("/"),
            &crate::process::Confinement::Unsandboxed,
        )
        .unwrap();
        assert!(ProcessTable::read().group_is_ours(shell.pgid));
        terminate_group(shell.pgid, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_task_is_its_group_and_the_processes_that_carry_its_marker() {
        become_subreaper();
        let mut cmd = tokio::process::Command::new("bash");
        // The shell exits: both sleeps are re-parented to this process.
        cmd.args(["-c", "setsid sleep 32 & sleep 32 & sleep 0.1"])
            .env(crate::task_processes::MARKER_VAR, "unit-test-marker")
            .process_group(0);
        let mut shell = cmd.spawn().unwrap();
        let pgid = shell.id().unwrap() as i32;
        let _ = shell.wait().await;
        let table = ProcessTable::read();
        let members: Vec<i32> = table
            .task_members(pgid, "unit-test-marker")
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(
            members.len(),
            2,
            "the shell's sleep and the daemon: {members:?}"
        );
        assert_eq!(table.task_members(pgid, "other").len(), 1, "the group only");
        assert!(table.task_members(0, "other").is_empty());
        for pid in members {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reap_orphans();
    }

    #[test]
    fn a_stat_line_with_parentheses_in_the_name_parses() {
        let entry = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((entry.ppid, entry.pgrp, entry.zombie), (7, 42, false));
        let line = "9 (x) S 1 9 9 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(parse_stat(9, line).unwrap().start_time, 12345);
        assert!(parse_stat(43, "43 (x) Z 1 43").unwrap().zombie);
    }
}
