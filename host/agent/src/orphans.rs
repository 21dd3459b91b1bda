//! The agent as child subreaper: processes that commands leave behind.
//!
//! A command can start a process that leaves its process group (`setsid daemon &`),
//! escaping the group kill that ends a task. The agent is a child subreaper, so such
//! processes are re-parented to it rather than to init: [`reap_orphans`] collects the
//! ones that exit (leaving the shells tokio waits for alone), and [`end_orphans`] ends
//! the ones still running when the agent exits. [`ProcessTable`] reads `/proc`, and
//! decides whether a process group still belongs to the agent (a live member descends
//! from it), so a group id reused by somebody else's processes is never signalled.

use std::collections::BTreeSet;
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
    Some(ProcEntry {
        pid,
        ppid,
        pgrp,
        zombie: state == "Z" || state == "X",
    })
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
        let shell = spawn_shell("sleep 5", Path::new("/"), crate::process::Confinement::Sandboxed).unwrap();
        assert!(ProcessTable::read().group_is_ours(shell.pgid));
        terminate_group(shell.pgid, Duration::from_secs(1)).await;
    }

    #[test]
    fn a_stat_line_with_parentheses_in_the_name_parses() {
        let entry = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((entry.ppid, entry.pgrp, entry.zombie), (7, 42, false));
        assert!(parse_stat(43, "43 (x) Z 1 43").unwrap().zombie);
    }
}
