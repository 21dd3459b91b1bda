//! The native tools: `bash` (blocking) and the background-task tools.
//!
//! These are the only tools that start processes, all through [`crate::process`], under one
//! policy: workspace as working directory, a clean environment, stdin from /dev/null, a
//! process group (and cgroup, where the machine has them) per command, a time limit that
//! ends every process the command started. A command runs in the sandbox unless the model
//! asks otherwise (`sandbox: "off"` with a reason) and [`crate::approval`] allows it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::command_check::check_command;
use super::{Tool, ToolContext, ToolError, ToolFuture, ToolHints, ToolOutput, ToolSpec};
use crate::approval::{Approvals, Escalation, Verdict};
use crate::background::BackgroundManager;
use crate::background_state::Extras;
use crate::output::HeadTail;
use crate::process::{self, Confinement, Ending};
use crate::readiness::Watch;
use crate::task_commands;
use crate::tasklog::{self, Page};

/// Output of a `bash` call kept for the model, as in the seed lesson.
const BASH_OUTPUT_LIMIT: usize = 50_000;
/// The longest time limit the model may ask for, in seconds (one day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Settings of the native tools.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub workspace: PathBuf,
    pub bash_timeout: Duration,
    pub background_timeout: Duration,
    /// The OS sandbox commands run in.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
}

/// The names of the native tools, which no plugin tool may take.
pub const NAMES: [&str; 5] = [
    "bash",
    "background_run",
    "check_background",
    "kill_background",
    "write_background",
];

/// What the native tools share: their settings and the background tasks.
pub struct NativeTools {
    config: NativeConfig,
    background: BackgroundManager,
    approvals: Arc<Approvals>,
}

#[derive(Deserialize)]
struct CommandInput {
    command: String,
    timeout: Option<f64>,
    /// `Some` when the model asks to run the command outside the sandbox.
    sandbox: Option<SandboxRequest>,
    reason: Option<String>,
    /// `background_run` only: readiness and a stdin pipe.
    ready_pattern: Option<String>,
    ready_port: Option<u32>,
    #[serde(default)]
    stdin: bool,
}

/// What the model may ask of the sandbox for one command (the schema's `enum`).
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SandboxRequest {
    Off,
}

#[derive(Deserialize)]
struct TaskInput {
    task_id: String,
}

#[derive(Deserialize)]
struct CheckInput {
    task_id: Option<String>,
    tail: Option<usize>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Lines in a log page when `offset` is given without `limit`.
const DEFAULT_PAGE_LINES: usize = 200;

impl NativeTools {
    pub fn new(
        config: NativeConfig,
        background: BackgroundManager,
        approvals: Arc<Approvals>,
    ) -> NativeTools {
        NativeTools {
            config,
            background,
            approvals,
        }
    }

    /// The native tools, one adapter each, in the order of [`NAMES`].
    pub fn into_tools(self) -> Vec<Arc<dyn Tool>> {
        let shared = Arc::new(self);
        let mut specs = shared.specs().into_iter();
        let mut next = || specs.next().expect("a spec per native tool");
        vec![
            Arc::new(Bash(next(), shared.clone())),
            Arc::new(BackgroundRun(next(), shared.clone())),
            Arc::new(CheckBackground(next(), shared.clone())),
            Arc::new(KillBackground(next(), shared.clone())),
            Arc::new(WriteBackground(next(), shared)),
        ]
    }

    /// The specs, in the order of [`NAMES`]; the time limits they state are the ones
    /// configured (`--bash-timeout`, `--background-timeout`).
    fn specs(&self) -> Vec<ToolSpec> {
        let command_schema = |what: &str, default: Duration| {
            let default = default.as_secs();
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": what},
                    "timeout": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": MAX_TIMEOUT_SECS,
                        "description": format!("Time limit in seconds (default {default}); every process the command started is ended when it runs out")
                    },
                    "sandbox": {
                        "type": "string",
                        "enum": ["off"],
                        "description": "Ask to run this command outside the sandbox, with the user's full access to files and the network. Needs the user's approval and a reason; ask only after the command failed because the sandbox refused something it really needs"
                    },
                    "reason": {
                        "type": "string",
                        "description": "With sandbox: \"off\": why the command needs to run outside the sandbox; shown to the user who decides"
                    }
                },
                "required": ["command"]
            })
        };
        vec![
            ToolSpec {
                name: "bash".into(),
                description: "Run a shell command in the workspace and wait for it. Use background_run instead for anything slow (builds, installs, test suites).".into(),
                input_schema: command_schema("The bash command to run", self.config.bash_timeout),
                hints: ToolHints { destructive: true, ..ToolHints::default() },
            },
            ToolSpec {
                name: "background_run".into(),
                description: "Start a shell command in the background and return its task id at once; every process it starts, daemons included, ends when the task ends. Keep working: when it finishes, its result is delivered to you automatically in <background-results>; there is no need to poll or sleep. For a server or watcher give ready_pattern or ready_port: you are told once when it is ready (it keeps running; stop it with kill_background).".into(),
                input_schema: background_schema(command_schema("The bash command to run", self.config.background_timeout)),
                hints: ToolHints { destructive: true, ..ToolHints::default() },
            },
            ToolSpec {
                name: "check_background".into(),
                description: "Show one background task (status, exit code, duration, head and tail of its output) or, without task_id, list all of them. With `tail` or `offset`, page through the task's full log by lines.".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "task_id": {"type": "string", "description": "The task id returned by background_run; omit to list all tasks"},
                        "tail": {"type": "integer", "minimum": 1, "maximum": tasklog::MAX_PAGE_LINES, "description": "Show the last N lines of the log"},
                        "offset": {"type": "integer", "minimum": 0, "description": "Show the log from this line on (0-based)"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": tasklog::MAX_PAGE_LINES, "description": "Lines to show from `offset` (default 200)"}
                    }
                }),
                hints: ToolHints { read_only: true, idempotent: true, ..ToolHints::default() },
            },
            ToolSpec {
                name: "kill_background".into(),
                description: "Stop a background task: every process it started gets SIGTERM, then SIGKILL after a short grace.".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {"task_id": {"type": "string", "description": "The task id returned by background_run"}},
                    "required": ["task_id"]
                }),
                hints: ToolHints { destructive: true, idempotent: true, ..ToolHints::default() },
            },
            ToolSpec {
                name: "write_background".into(),
                description: "Write to the stdin of a background task started with stdin: true. The input is written as given: end a line with \\n. With eof: true its stdin is closed afterwards (the task reads end of input).".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "task_id": {"type": "string", "description": "The task id returned by background_run"},
                        "input": {"type": "string", "maxLength": crate::background::MAX_INPUT, "description": "The text to write, e.g. \"yes\\n\""},
                        "eof": {"type": "boolean", "description": "Close the task's stdin after writing"}
                    },
                    "required": ["task_id"]
                }),
                hints: ToolHints { destructive: true, ..ToolHints::default() },
            },
        ]
    }

    /// The time limit of a command: the one asked for (the schema bounds it to more than 0
    /// and at most a day), or `default`.
    fn timeout(&self, requested: Option<f64>, default: Duration) -> Duration {
        requested
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .unwrap_or(default)
    }

    /// Where a command runs: in the sandbox, or outside it if the model asked and the
    /// approvals allow it (then with the note its result gets). A refusal is the error the model gets.
    async fn confinement(
        &self,
        tool: &'static str,
        input: &CommandInput,
    ) -> Result<(Confinement, Option<&'static str>), String> {
        let sandboxed = Confinement::Sandboxed(self.config.sandbox.clone());
        // With the sandbox off for the whole run there is nothing to approve.
        if input.sandbox.is_none() || self.config.sandbox.mode() == crate::sandbox::Mode::Off {
            return Ok((sandboxed, None));
        }
        let reason = input.reason.as_deref().map(str::trim).unwrap_or_default();
        if reason.is_empty() {
            return Err(
                "a command asking for sandbox: \"off\" needs a reason (say what the sandbox refused and why the command needs it)"
                    .to_string(),
            );
        }
        let escalation = Escalation {
            tool,
            command: input.command.clone(),
            reason: reason.to_string(),
        };
        match self.approvals.decide(escalation).await {
            Verdict::Approved(grounds) => Ok((Confinement::Unsandboxed, Some(grounds.note()))),
            Verdict::Refused(text) => Err(text),
        }
    }

    async fn bash(&self, input: CommandInput) -> Result<ToolOutput, String> {
        let timeout = self.timeout(input.timeout, self.config.bash_timeout);
        check_command(&input.command)?;
        let (confinement, note) = self.confinement("bash", &input).await?;
        let shell = process::spawn_shell(&input.command, &self.config.workspace, &confinement)
            .map_err(|e| format!("could not start bash: {e}"))?;
        let output = Arc::new(Mutex::new(HeadTail::with_limit(BASH_OUTPUT_LIMIT)));
        let sink = output.clone();
        let run = process::supervise(shell, timeout, std::future::pending(), move |bytes| {
            sink.lock().unwrap().push(bytes)
        })
        .await;
        let mut text = output.lock().unwrap().render().trim_end().to_string();
        if text.is_empty() {
            text.push_str("(no output)");
        }
        if let Some(note) = note {
            text.push('\n');
            text.push_str(note);
        }
        if run.lingering > 0 {
            text.push_str(&format!(
                "\n[the shell exited; {} process(es) it started are still running and are ended when the agent exits]",
                run.lingering
            ));
            self.background.adopt(run.processes);
        }
        if let Some(mib) = run.memory_cap_hit {
            text.push_str(&format!(
                "\n[a process of the command was killed for using more than its memory limit of {mib} MiB (--task-memory)]"
            ));
        }
        match (run.ending, run.exit) {
            (Ending::TimedOut, _) => {
                text.push_str(&format!(
                    "\n[timed out after {:.0}s; the command's process group was ended. Use background_run for slow commands]",
                    timeout.as_secs_f64()
                ));
                Ok(ToolOutput::error(text))
            }
            (_, Some(exit)) if !exit.success() => {
                text.push_str(&format!("\n[{exit}]"));
                let sandboxed = matches!(confinement, Confinement::Sandboxed(_));
                if let Some(note) = sandboxed
                    .then(|| self.config.sandbox.refusal_note(true, &text))
                    .flatten()
                {
                    text.push('\n');
                    text.push_str(&note);
                }
                Ok(ToolOutput::ok(text))
            }
            _ => Ok(ToolOutput::ok(text)),
        }
    }

    async fn background_run(&self, input: CommandInput) -> Result<ToolOutput, String> {
        let timeout = self.timeout(input.timeout, self.config.background_timeout);
        check_command(&input.command)?;
        let watch = Watch::new(input.ready_pattern.as_deref(), input.ready_port)
            .map_err(|e| e.to_string())?;
        let (confinement, note) = self.confinement("background_run", &input).await?;
        if let (Some(Watch::Port(port)), Confinement::Sandboxed(sandbox)) = (&watch, &confinement)
            && !sandbox.lets_listen()
        {
            return Err(format!(
                "ready_port {port}: the task could not listen on TCP, because the sandbox closes the network (network off). The user can run the agent with --network (or --sandbox off); or ask for sandbox: \"off\" with a reason; or use ready_pattern on the line the server prints"
            ));
        }
        let extras = Extras {
            watch,
            stdin: input.stdin,
        };
        let mut text = task_commands::start_with(
            &self.background,
            &input.command,
            timeout,
            confinement,
            extras,
        )
        .map_err(|e| e.to_string())?;
        if let Some(note) = note {
            text.push('\n');
            text.push_str(note);
        }
        Ok(ToolOutput::ok(text))
    }

    async fn check_background(&self, input: CheckInput) -> Result<ToolOutput, String> {
        let Some(id) = input.task_id else {
            return Ok(ToolOutput::ok(
                task_commands::list(&self.background).join("\n"),
            ));
        };
        let page = match (input.tail, input.offset) {
            (Some(_), Some(_)) => {
                return Err("invalid input: give either tail or offset, not both".into());
            }
            (Some(count), None) => Some(Page::Tail { count }),
            (None, Some(offset)) => Some(Page::From {
                offset,
                count: input.limit.unwrap_or(DEFAULT_PAGE_LINES),
            }),
            (None, None) => None,
        };
        task_commands::check(&self.background, &id, page)
            .await
            .map(ToolOutput::ok)
            .map_err(|e| e.to_string())
    }

    fn kill_background(&self, input: TaskInput) -> Result<ToolOutput, String> {
        task_commands::kill(&self.background, &input.task_id)
            .map(ToolOutput::ok)
            .map_err(|e| e.to_string())
    }
}

/// Reads an input the registry has checked against the schema; what the schema cannot say
/// (a number too large for its type, ...) still fails here, as input the model sees.
fn parse<T: for<'de> Deserialize<'de>>(input: &Value) -> Result<T, ToolError> {
    T::deserialize(input).map_err(|e| ToolError::Failed(format!("invalid input: {e}")))
}

/// A native tool: its spec and the `NativeTools` method that answers it, called with the
/// input parsed into that method's argument type (`await`ed unless marked `sync`).
macro_rules! native_tool {
    ($(#[$doc:meta])* $name:ident => $method:ident $(, $sync:ident)?) => {
        $(#[$doc])*
        struct $name(ToolSpec, Arc<NativeTools>);

        impl Tool for $name {
            fn spec(&self) -> &ToolSpec {
                &self.0
            }

            fn call<'a>(&'a self, input: &'a Value, _context: &'a ToolContext) -> ToolFuture<'a> {
                Box::pin(async move {
                    let output = self.1.$method(parse(input)?);
                    native_tool!(@finish output $(, $sync)?).map_err(ToolError::Failed)
                })
            }
        }
    };
    (@finish $output:ident) => { $output.await };
    (@finish $output:ident, sync) => { $output };
}

native_tool!(
    /// `bash`: runs a command and waits for it.
    Bash => bash
);
native_tool!(
    /// `background_run`: starts a background task.
    BackgroundRun => background_run
);
native_tool!(
    /// `check_background`: shows a task, a page of its log, or the list of tasks.
    CheckBackground => check_background
);
native_tool!(
    /// `kill_background`: stops a task.
    KillBackground => kill_background, sync
);
native_tool!(
    /// `write_background`: writes to a task's stdin.
    WriteBackground => write_background
);

mod background_extras;
use background_extras::background_schema;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::background::BackgroundConfig;

    #[tokio::test]
    async fn the_specs_follow_the_names_and_state_the_configured_time_limits() {
        let dir = tempfile::tempdir().unwrap();
        let background = BackgroundManager::new(BackgroundConfig {
            workspace: dir.path().to_path_buf(),
            log_dir: dir.path().join("logs"),
            max_running: 1,
            max_tasks: 4,
            sandbox: Arc::new(crate::sandbox::Sandbox::off()),
        });
        let config = NativeConfig {
            workspace: dir.path().to_path_buf(),
            bash_timeout: Duration::from_secs(7),
            background_timeout: Duration::from_secs(4242),
            sandbox: Arc::new(crate::sandbox::Sandbox::off()),
        };
        let (approvals, _) = Approvals::new(crate::approval::ApprovalPolicy::Never);
        let tools = NativeTools::new(config, background, Arc::new(approvals)).into_tools();
        let names: Vec<&str> = tools.iter().map(|t| t.spec().name.as_str()).collect();
        assert_eq!(names, NAMES);
        let timeout_text = |i: usize| {
            tools[i].spec().input_schema["properties"]["timeout"]["description"].to_string()
        };
        assert!(
            timeout_text(0).contains("default 7)"),
            "{}",
            timeout_text(0)
        );
        assert!(
            timeout_text(1).contains("default 4242)"),
            "{}",
            timeout_text(1)
        );
    }
}
