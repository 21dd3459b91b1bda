//! Running the real `agent` binary: a throw-away workspace and state directory
//! ([`TestEnv`]), a [`Command`] wired to a [`ModelServer`] ([`agent`]), running
//! it with a hard time limit while draining its output on threads ([`run`],
//! [`spawn`] / [`Running`]), and finding processes that outlived it
//! ([`processes_with_marker`]).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::server::ModelServer;

/// A temp workspace directory, a temp state dir and a temp user config dir (where user
/// plugins go); all are deleted when the value is dropped.
pub struct TestEnv {
    pub workspace: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub config: tempfile::TempDir,
}

impl TestEnv {
    /// Creates both directories (under the system temp dir).
    pub fn new() -> TestEnv {
        let make = |prefix: &str| match tempfile::Builder::new().prefix(prefix).tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        TestEnv {
            workspace: make("agent-ws-"),
            state: make("agent-state-"),
            config: make("agent-config-"),
        }
    }

    /// `rel` inside the workspace (not created).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.workspace.path().join(rel)
    }

    /// Writes `contents` to `rel` inside the workspace, creating parent
    /// directories; returns the full path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            panic!("cannot create {}: {e}", parent.display());
        }
        if let Err(e) = std::fs::write(&path, contents) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    /// The text of `rel` inside the workspace; panics if it cannot be read.
    pub fn read(&self, rel: &str) -> String {
        let path = self.path(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

/// The cache directory shared by every test run (`$CARGO_TARGET_TMPDIR/agent-cache`),
/// so compiled components are cached across tests.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-cache")
}

/// A `Command` for the real binary with: current dir = the workspace; a
/// cleared environment except `PATH` and `HOME`; `ANTHROPIC_API_KEY=test-key`,
/// `ANTHROPIC_BASE_URL=<server.url()>`, `MODEL_ID=test-model`,
/// `AGENT_STATE_DIR=<env.state>`, `AGENT_CACHE_DIR=<cache_dir()>`,
/// `AGENT_CONFIG_DIR=<env.config>`; stdin null.
/// Add arguments (and more env, or a piped stdin) before running it.
pub fn agent(env: &TestEnv, server: &ModelServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
    cmd.current_dir(env.workspace.path()).env_clear();
    for kept in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(kept) {
            cmd.env(kept, value);
        }
    }
    cmd.env("ANTHROPIC_API_KEY", "test-key")
        .env("ANTHROPIC_BASE_URL", server.url())
        .env("MODEL_ID", "test-model")
        .env("AGENT_STATE_DIR", env.state.path())
        .env("AGENT_CACHE_DIR", cache_dir())
        .env("AGENT_CONFIG_DIR", env.config.path())
        .stdin(Stdio::null());
    // Where the kernel cannot sandbox commands the agent refuses them; the tests of other
    // things then run them unsandboxed (the sandbox's own tests skip, saying so).
    if landlock_abi() < 1 {
        cmd.env("AGENT_SANDBOX", "off");
    }
    cmd
}

/// The Landlock ABI of this kernel, 0 without Landlock. Asked of the kernel here rather than
/// of `agent_host::sandbox::support()`: whether the sandbox tests run must not depend on
/// the code they test.
pub fn landlock_abi() -> i64 {
    // SAFETY: the version query passes no pointer the kernel writes to.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    abi.max(0)
}

/// The outcome of a finished process.
#[derive(Debug)]
pub struct RunResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunResult {
    /// Panics, showing the output, unless the process exited with status 0.
    pub fn assert_success(&self) -> &RunResult {
        assert!(self.status.success(), "the agent failed:\n{self}");
        self
    }

    /// The exit code, `None` if the process was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status: {}, after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with a hard time limit: past `limit` it is killed
/// (SIGKILL) and this panics with its output so far. Stdout and stderr are
/// captured (read on threads, so a chatty process cannot block).
pub fn run(cmd: Command, limit: Duration) -> RunResult {
    spawn(cmd).wait(limit)
}

/// Starts `cmd` with stdout and stderr captured, for tests that interact with
/// the running process (signal it, watch its output, write to its stdin if the
/// command was given `Stdio::piped()` stdin). Killed if dropped unfinished.
pub fn spawn(mut cmd: Command) -> Running {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start {:?}: {e}", cmd.get_program()),
    };
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        readers.push(drain(pipe, Arc::clone(&stdout)));
    }
    if let Some(pipe) = child.stderr.take() {
        readers.push(drain(pipe, Arc::clone(&stderr)));
    }
    Running {
        child: Some(child),
        stdout,
        stderr,
        readers,
        started,
    }
}

/// Copies everything from `pipe` into `sink` as it arrives, on a thread.
fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&sink).extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn lock(buf: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buf.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&lock(buf)).into_owned()
}

/// A process started by [`spawn`].
pub struct Running {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or(0)
    }

    /// Sends signal `sig` (e.g. `libc::SIGINT`) to the process.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0, "no process to signal");
        // SAFETY: kill(2) with a pid we spawned and have not yet reaped; it
        // touches no memory of ours.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The process's stdin, if the command was given `Stdio::piped()` (once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        text(&self.stdout)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        text(&self.stderr)
    }

    /// Waits until `pred(stdout, stderr)` holds on the output so far; panics
    /// with the output if it does not within `limit`.
    pub fn wait_for_output(&self, limit: Duration, pred: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let (out, err) = (self.stdout_so_far(), self.stderr_so_far());
            if pred(&out, &err) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {limit:?} for the expected output\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit, at most `limit` from its start; past
    /// that it is killed and this panics with its output so far.
    pub fn wait(mut self, limit: Duration) -> RunResult {
        let Some(mut child) = self.child.take() else {
            panic!("process already reaped");
        };
        let deadline = self.started + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let status = child.wait();
                    self.join_readers(Duration::from_secs(2));
                    panic!(
                        "the process ran longer than {limit:?} and was killed ({status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.stdout_so_far(),
                        self.stderr_so_far()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("cannot wait for the process: {e}"),
            }
        };
        let elapsed = self.started.elapsed();
        // A surviving grandchild may hold the pipes open: don't wait for it forever.
        self.join_readers(Duration::from_secs(5));
        RunResult {
            status,
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
            elapsed,
        }
    }

    /// Joins the output readers, giving up after `grace` (they are then left
    /// running, detached).
    fn join_readers(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for reader in std::mem::take(&mut self.readers) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pids of live processes whose command line (arguments joined by spaces)
/// contains `marker`, excluding the current test process. Use a marker unique
/// to the test (tests run in parallel in one process).
pub fn processes_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // The process may be gone by now: then it does not count.
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let cmdline: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
                String::from_utf8_lossy(&cmdline).contains(marker)
            })
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs `agent -p PROMPT` in `env` against `server`, with a one-minute hard limit.
pub fn one_shot(env: &TestEnv, server: &ModelServer, prompt: &str) -> RunResult {
    let mut cmd = agent(env, server);
    cmd.args(["-p", prompt]);
    run(cmd, Duration::from_secs(60))
}
