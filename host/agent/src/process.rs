//! The one place native processes are started and stopped.
//!
//! Every shell command the agent runs (the blocking `bash` tool and background tasks) goes
//! through [`spawn_shell`]: `bash -c COMMAND` in the workspace, stdin from /dev/null (a
//! command waiting on a prompt gets EOF instead of hanging), a documented environment, its
//! own process group (so a timeout or kill reaches every process it started), and stdout and
//! stderr merged into one pipe in the order they were written. [`terminate_group`] ends a
//! group politely (SIGTERM), then by force (SIGKILL) after a grace period.
//!
//! Commands run as the user, so the host also defends itself against them:
//! [`protect_host`] makes the agent non-dumpable (its `/proc` files, environment and
//! memory, where the API key is, are closed to same-user processes without
//! `CAP_SYS_PTRACE`), and every command starts without that capability. The host is a
//! child subreaper, so a process that leaves its group (`setsid daemon &`) is re-parented
//! to the agent rather than to init: [`reap_orphans`] collects the ones that exit, and
//! [`end_orphans`] ends the ones still running when the agent exits. A group is only
//! signalled while a process of it still descends from the agent, so a process group id
//! reused by somebody else's processes is never hit.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, Once};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncRead;
use tokio::process::{Child, Command};

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Environment variables passed through from the host to commands; everything else is
/// dropped, so API keys in the host's environment never reach a command.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
    "JAVA_HOME",
    "VIRTUAL_ENV",
    "PYENV_ROOT",
    "NVM_DIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// A started shell command: the child process and the read end of its merged output.
pub struct ShellProcess {
    pub child: Child,
    /// The process group id, equal to the shell's pid.
    pub pgid: i32,
    pub output: Box<dyn AsyncRead + Send + Unpin>,
}

/// Closes the agent's own process to the commands it runs (see the module doc): makes it
/// non-dumpable, and wipes the environment block the process started with, which
/// `/proc/<pid>/environ` shows (even to a root command without `CAP_SYS_PTRACE`), after
/// copying every variable to the heap, where the process keeps reading them.
///
/// # Safety
/// Call once at start-up, before any other thread exists: it rewrites the environment.
pub unsafe fn protect_host() {
    // SAFETY: PR_SET_DUMPABLE takes integers only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: single-threaded, as the caller promises.
    unsafe { wipe_initial_environment() };
}

/// The entries of the C `environ` array, each a `NAME=value` C string.
unsafe fn environ_entries() -> Vec<*mut libc::c_char> {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let mut entries = Vec::new();
    // SAFETY: `environ` is a null-terminated array of C strings; nothing else changes it
    // while we read (single-threaded).
    unsafe {
        let mut at = environ;
        while !at.is_null() && !(*at).is_null() {
            entries.push(*at);
            at = at.add(1);
        }
    }
    entries
}

unsafe fn wipe_initial_environment() {
    // SAFETY: single-threaded (the caller's promise).
    let initial = unsafe { environ_entries() };
    for (name, value) in std::env::vars_os() {
        // setenv stores a fresh heap copy and points `environ` at it.
        // SAFETY: single-threaded.
        unsafe { std::env::set_var(name, value) };
    }
    // SAFETY: as above.
    let in_use = unsafe { environ_entries() };
    for entry in initial.into_iter().filter(|e| !in_use.contains(e)) {
        // SAFETY: `entry` is a NUL-terminated string of the initial block that nothing
        // points to any more; it is overwritten within its length.
        unsafe {
            let len = libc::strlen(entry);
            std::ptr::write_bytes(entry, 0, len);
        }
    }
}

/// Makes this process the subreaper of everything it starts, once.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    // SAFETY: PR_SET_CHILD_SUBREAPER takes integers only.
    ONCE.call_once(|| unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    });
}

/// The shells started here that tokio has not reaped yet: [`reap_orphans`] must leave
/// their exit status to tokio. Held across `spawn`, so no shell is ever unlisted.
static SHELLS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The capability that lets a process read a non-dumpable process's `/proc` files.
const CAP_SYS_PTRACE: libc::c_int = 19;

/// Starts `bash -c command` in `cwd`, in a new process group, with stdin from /dev/null.
pub fn spawn_shell(command: &str, cwd: &Path) -> std::io::Result<ShellProcess> {
    become_subreaper();
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_clear()
        .envs(passed_env())
        .env("AGENT", "1")
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Without CAP_SYS_PTRACE even a command running as root cannot read the
            // agent's environment or memory. Fails harmlessly for a user who never had
            // the capability (no CAP_SETPCAP).
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0);
            Ok(())
        });
    }
    let mut shells = SHELLS.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        shells.insert(pid as i32);
    }
    drop(shells);
    // The command (not `cmd`) holds the write ends now; drop ours so EOF arrives when the
    // last process of the command closes its copy.
    drop(cmd);
    let pgid = child.id().map(|id| id as i32).unwrap_or(0);
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
    Ok(ShellProcess {
        child,
        pgid,
        output: Box::new(output),
    })
}

fn passed_env() -> Vec<(OsString, OsString)> {
    PASSED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (OsString::from(name), value)))
        .collect()
}

/// Sends SIGTERM to the whole group, waits up to `grace` for it to empty, then SIGKILLs
/// whatever is left. Returns once no process of the group remains (or SIGKILL was sent).
pub async fn terminate_group(pgid: i32, grace: Duration) {
    if pgid <= 0 || !group_alive(pgid) || !ProcessTable::read().group_is_ours(pgid) {
        return;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    // A stopped process cannot act on SIGTERM until it is continued.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGCONT);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_group_now(pgid);
}

/// SIGKILLs the whole group at once; for exits where there is no time to be polite.
pub fn kill_group_now(pgid: i32) {
    if pgid > 0 && ProcessTable::read().group_is_ours(pgid) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Whether any process of the group still exists (zombies not yet reaped count).
pub fn group_alive(pgid: i32) -> bool {
    pgid > 0 && killpg(Pid::from_raw(pgid), None).is_ok()
}

/// How many live (not zombie) processes are in the group, read from /proc.
pub fn live_processes_in_group(pgid: i32) -> usize {
    ProcessTable::read()
        .entries
        .iter()
        .filter(|p| p.pgrp == pgid && !p.zombie)
        .count()
}

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy)]
struct ProcEntry {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

/// A snapshot of every process on the machine (those that vanish while it is read are
/// left out).
struct ProcessTable {
    entries: Vec<ProcEntry>,
}

impl ProcessTable {
    fn read() -> ProcessTable {
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
    fn group_is_ours(&self, pgid: i32) -> bool {
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

/// How a finished shell command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The shell exited with this code.
    Code(i32),
    /// The shell was ended by this signal number.
    Signal(i32),
}

impl ExitKind {
    pub fn from_status(status: std::process::ExitStatus) -> ExitKind {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitKind::Code(code),
            (None, Some(sig)) => ExitKind::Signal(sig),
            (None, None) => ExitKind::Code(-1),
        }
    }

    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(code) => write!(f, "exit code {code}"),
            ExitKind::Signal(sig) => {
                let name = Signal::try_from(*sig)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by signal {sig} ({name})")
            }
        }
    }
}

/// How long output is still read after the shell exited, for grandchildren that keep the
/// pipe open; after that the rest goes unread (a hang the seed lesson suffers from).
const DRAIN_BOUND: Duration = Duration::from_millis(500);

/// Why a supervised command stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The shell exited by itself.
    Exited,
    /// The time limit ran out; the group was ended.
    TimedOut,
    /// A kill was requested; the group was ended.
    Killed,
}

/// The end of a supervised command.
#[derive(Debug, Clone, Copy)]
pub struct Supervised {
    pub ending: Ending,
    pub exit: Option<ExitKind>,
    /// Live processes left in the group after the shell exited (started in the background
    /// by the command); zero after a timeout or kill.
    pub lingering: usize,
}

/// Runs a started shell to its end: feeds its output to `on_output` as it arrives, ends the
/// whole group on timeout or when `cancel` resolves, and bounds the drain after exit.
pub async fn supervise(
    shell: ShellProcess,
    timeout: Duration,
    cancel: impl std::future::Future<Output = ()>,
    mut on_output: impl FnMut(&[u8]) + Send + 'static,
) -> Supervised {
    use tokio::io::AsyncReadExt;
    let ShellProcess {
        mut child,
        pgid,
        output: mut reader,
    } = shell;
    let _listed = ListedShell(pgid);
    let mut drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            on_output(&buf[..n]);
        }
    });
    let wait_exit =
        |status: std::io::Result<std::process::ExitStatus>| status.ok().map(ExitKind::from_status);
    let ending = tokio::select! {
        status = child.wait() => Some(wait_exit(status)),
        _ = tokio::time::sleep(timeout) => None,
        _ = cancel => {
            terminate_group(pgid, KILL_GRACE).await;
            return finish(Ending::Killed, wait_exit(child.wait().await), &mut drain, pgid).await;
        }
    };
    match ending {
        Some(exit) => finish(Ending::Exited, exit, &mut drain, pgid).await,
        None => {
            terminate_group(pgid, KILL_GRACE).await;
            finish(
                Ending::TimedOut,
                wait_exit(child.wait().await),
                &mut drain,
                pgid,
            )
            .await
        }
    }
}

/// Takes a shell off [`SHELLS`] once its supervision ends (it has been reaped by then).
struct ListedShell(i32);

impl Drop for ListedShell {
    fn drop(&mut self) {
        SHELLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

async fn finish(
    ending: Ending,
    exit: Option<ExitKind>,
    drain: &mut tokio::task::JoinHandle<()>,
    pgid: i32,
) -> Supervised {
    if tokio::time::timeout(DRAIN_BOUND, &mut *drain)
        .await
        .is_err()
    {
        drain.abort();
    }
    // The shell is reaped, so the group is empty unless the command left processes
    // behind; the cheap signal-0 probe spares a /proc scan on every exit.
    let lingering = if ending == Ending::Exited && group_alive(pgid) {
        live_processes_in_group(pgid)
    } else {
        0
    };
    Supervised {
        ending,
        exit,
        lingering,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_groups_that_descend_from_this_process_count_as_ours() {
        let table = ProcessTable::read();
        assert!(
            !table.group_is_ours(1),
            "init's group is somebody else's, as a reused id would be"
        );
        let shell = spawn_shell("sleep 5", Path::new("/")).unwrap();
        let table = ProcessTable::read();
        assert!(table.group_is_ours(shell.pgid));
        assert_eq!(live_processes_in_group(shell.pgid), 1);
        terminate_group(shell.pgid, Duration::from_secs(1)).await;
        assert!(!group_alive(shell.pgid) || live_processes_in_group(shell.pgid) == 0);
    }

    #[test]
    fn a_stat_line_with_parentheses_in_the_name_parses() {
        let entry = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((entry.ppid, entry.pgrp, entry.zombie), (7, 42, false));
        assert!(parse_stat(43, "43 (x) Z 1 43").unwrap().zombie);
    }
}
