//! The one place native processes are started and stopped.
//!
//! Every shell command the agent runs (the blocking `bash` tool and background tasks) goes
//! through [`spawn_shell`]: `bash -c COMMAND` in the workspace, stdin from /dev/null (a
//! command waiting on a prompt gets EOF instead of hanging; only a background task started
//! with `stdin: true` gets a pipe instead), a documented environment, its
//! own process group, its own cgroup where the machine allows one (see
//! [`crate::task_processes`]: a timeout or kill reaches every process it started, daemons
//! that left the group included), and stdout and stderr merged into one pipe in the order
//! they were written. [`supervise`] ends a command's processes politely (SIGTERM), then by
//! force (SIGKILL) after a grace period.
//!
//! A command runs in the run's OS sandbox unless the call says otherwise
//! ([`Confinement`]): the kernel rules are applied in the child before `exec` (see
//! [`crate::sandbox`]), and `TMPDIR` points to the sandbox's private temporary directory.
//! Commands run as the user, so each starts without `CAP_SYS_PTRACE` (see
//! [`crate::host_secrets`]), and a group is only signalled while a process of it still
//! descends from the agent (see [`crate::orphans`]), so a reused group id is never hit.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncRead;
use tokio::process::{Child, Command};

pub use crate::sandbox::Confinement;
use crate::task_processes::TaskProcesses;

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

/// A started shell command: the child process, the read end of its merged output, and
/// every process it starts.
pub struct ShellProcess {
    pub child: Child,
    /// The process group id, equal to the shell's pid.
    pub pgid: i32,
    pub output: Box<dyn AsyncRead + Send + Unpin>,
    /// Ends whatever of the command still runs when the last clone is dropped.
    pub processes: Arc<TaskProcesses>,
}

/// The capability that lets a process read a non-dumpable process's `/proc` files.
const CAP_SYS_PTRACE: libc::c_int = 19;

/// Starts `bash -c command` in `cwd`, in a new process group, with stdin from /dev/null,
/// confined as `confinement` says. A sandbox the kernel cannot enforce refuses to start the
/// command (an error that says so), never runs it unconfined.
pub fn spawn_shell(
    command: &str,
    cwd: &Path,
    confinement: &Confinement,
) -> std::io::Result<ShellProcess> {
    spawn_shell_with_stdin(command, cwd, confinement, false)
}

/// [`spawn_shell`], with stdin a pipe when `piped` (the write end is the child's
/// `stdin`, for a background task started with `stdin: true`), else /dev/null.
pub fn spawn_shell_with_stdin(
    command: &str,
    cwd: &Path,
    confinement: &Confinement,
    piped: bool,
) -> std::io::Result<ShellProcess> {
    let sandbox = match confinement {
        Confinement::Sandboxed(sandbox) => {
            sandbox.ready()?;
            Some(sandbox.clone())
        }
        Confinement::Unsandboxed => None,
    };
    crate::orphans::become_subreaper();
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
        .stdin(if piped { Stdio::piped() } else { Stdio::null() })
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(false);
    let sandboxed = sandbox.is_some();
    if let Some(temp) = sandbox.as_deref().and_then(|s| s.temp_dir()) {
        cmd.env("TMPDIR", temp).env("TMP", temp).env("TEMP", temp);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes raw system
    // calls (prctl, landlock_restrict_self, seccomp), which is sound in the child of a
    // multi-threaded process; everything they use was prepared in the parent.
    unsafe {
        cmd.pre_exec(move || {
            // Without CAP_SYS_PTRACE even a command running as root cannot read the
            // agent's environment or memory. Fails harmlessly for a user who never had
            // the capability (no CAP_SETPCAP).
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0);
            match &sandbox {
                Some(sandbox) => sandbox.apply_in_child(),
                None => Ok(()),
            }
        });
    }
    // After the environment is set: without a cgroup, this marks it.
    let mut processes = TaskProcesses::prepare(&mut cmd)?;
    let mut shells = crate::orphans::SHELLS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn().map_err(|e| match sandboxed {
        true => std::io::Error::new(e.kind(), format!("{e} (in the sandbox; nothing ran)")),
        false => e,
    })?;
    if let Some(pid) = child.id() {
        shells.insert(pid as i32);
    }
    drop(shells);
    // The command (not `cmd`) holds the write ends now; drop ours so EOF arrives when the
    // last process of the command closes its copy.
    drop(cmd);
    let pgid = child.id().map(|id| id as i32).unwrap_or(0);
    processes.started(pgid);
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
    Ok(ShellProcess {
        child,
        pgid,
        output: Box::new(output),
        processes: Arc::new(processes),
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
    if pgid <= 0 || !group_alive(pgid) || !crate::orphans::ProcessTable::read().group_is_ours(pgid)
    {
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
    if pgid > 0 && crate::orphans::ProcessTable::read().group_is_ours(pgid) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Whether any process of the group still exists (zombies not yet reaped count).
pub fn group_alive(pgid: i32) -> bool {
    pgid > 0 && killpg(Pid::from_raw(pgid), None).is_ok()
}

/// How many live (not zombie) processes are in the group, read from /proc.
pub fn live_processes_in_group(pgid: i32) -> usize {
    crate::orphans::ProcessTable::read()
        .entries
        .iter()
        .filter(|p| p.pgrp == pgid && !p.zombie)
        .count()
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
#[derive(Debug)]
pub struct Supervised {
    pub ending: Ending,
    pub exit: Option<ExitKind>,
    /// Live processes of the command left after the shell exited (started in the
    /// background by it, daemons included); zero after a timeout or kill.
    pub lingering: usize,
    /// The command's memory cap in MiB, when the kernel killed a process of it for going
    /// over the cap.
    pub memory_cap_hit: Option<u64>,
    /// What is left of the command: dropping the last clone ends it.
    pub processes: Arc<TaskProcesses>,
}

/// Runs a started shell to its end: feeds its output to `on_output` as it arrives, ends
/// all its processes on timeout or when `cancel` resolves, and bounds the drain after
/// exit. Processes left after the shell exited run on until the caller drops
/// [`Supervised::processes`].
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
        processes,
    } = shell;
    let _listed = crate::orphans::ListedShell(pgid);
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
            processes.terminate(KILL_GRACE).await;
            return finish(Ending::Killed, wait_exit(child.wait().await), &mut drain, processes).await;
        }
    };
    match ending {
        Some(exit) => finish(Ending::Exited, exit, &mut drain, processes).await,
        None => {
            processes.terminate(KILL_GRACE).await;
            finish(
                Ending::TimedOut,
                wait_exit(child.wait().await),
                &mut drain,
                processes,
            )
            .await
        }
    }
}

async fn finish(
    ending: Ending,
    exit: Option<ExitKind>,
    drain: &mut tokio::task::JoinHandle<()>,
    processes: Arc<TaskProcesses>,
) -> Supervised {
    if tokio::time::timeout(DRAIN_BOUND, &mut *drain)
        .await
        .is_err()
    {
        drain.abort();
    }
    // The shell is reaped, so nothing is left unless the command left processes behind.
    let lingering = if ending == Ending::Exited {
        processes.live()
    } else {
        0
    };
    Supervised {
        ending,
        exit,
        lingering,
        memory_cap_hit: processes.hit_memory_cap(),
        processes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sandboxed_command_gets_its_temporary_directory_and_nothing_outside() {
        use crate::sandbox::{Environment, FlagSettings, Sandbox, Settings};
        let workspace = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(
            FlagSettings::default(),
            &crate::config_file::ConfigFile::default(),
            Environment::from_process(),
        )
        .unwrap();
        let (sandbox, _temp) = Sandbox::new(&settings, workspace.path(), &[]).unwrap();
        if let Some(error) = sandbox.unenforceable() {
            eprintln!("SKIPPED: the sandbox cannot be enforced here: {error}");
            return;
        }
        let temp = sandbox.temp_dir().unwrap().to_path_buf();
        let command = format!(
            "echo in > inside; echo out > {}/outside; test \"$TMPDIR\" = {} && echo > \"$TMPDIR/t\"",
            outside.path().display(),
            temp.display()
        );
        let mut shell = spawn_shell(
            &command,
            workspace.path(),
            &Confinement::Sandboxed(sandbox.clone()),
        )
        .unwrap();
        assert!(shell.child.wait().await.unwrap().success());
        assert!(workspace.path().join("inside").exists());
        assert!(!outside.path().join("outside").exists());
        assert!(temp.join("t").exists());
    }

    #[tokio::test]
    async fn a_group_is_ended_whole() {
        let shell = spawn_shell(
            "sleep 5 & sleep 5",
            Path::new("/"),
            &Confinement::Unsandboxed,
        )
        .unwrap();
        assert!(live_processes_in_group(shell.pgid) >= 1);
        terminate_group(shell.pgid, Duration::from_secs(1)).await;
        assert!(!group_alive(shell.pgid) || live_processes_in_group(shell.pgid) == 0);
    }

    #[tokio::test]
    async fn a_daemon_that_left_the_group_is_counted_and_ends_with_its_command() {
        let shell = spawn_shell(
            "setsid sleep 31 > /dev/null 2>&1 < /dev/null & sleep 0.2",
            Path::new("/"),
            &Confinement::Unsandboxed,
        )
        .unwrap();
        let run = supervise(
            shell,
            Duration::from_secs(10),
            std::future::pending(),
            |_| {},
        )
        .await;
        assert_eq!((run.ending, run.lingering), (Ending::Exited, 1));
        let processes = run.processes;
        assert_eq!(processes.live(), 1);
        drop(processes);
        // The drop ends it at once; give the kernel a moment to reap.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left = crate::orphans::ProcessTable::read()
            .entries
            .iter()
            .filter(|p| {
                !p.zombie
                    && std::fs::read(format!("/proc/{}/cmdline", p.pid))
                        .is_ok_and(|c| c == b"sleep\x0031\x00")
            })
            .count();
        assert_eq!(left, 0, "the daemon outlived its command");
    }
}
