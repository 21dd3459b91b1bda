//! The native tools: `bash` (blocking) and the background-task tools.
//!
//! These are the only tools that start processes, all through [`crate::process`], under one
//! policy: workspace as working directory, a clean environment, stdin from /dev/null, a
//! process group per command, a time limit that ends the whole group.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolHints, ToolOutput, ToolSpec};
use crate::background::BackgroundManager;
use crate::output::HeadTail;
use crate::process::{self, Ending};
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
}

pub struct NativeTools {
    config: NativeConfig,
    background: BackgroundManager,
}

#[derive(Deserialize)]
struct CommandInput {
    command: String,
    timeout: Option<f64>,
}

#[derive(Deserialize)]
struct TaskInput {
    task_id: Option<String>,
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
    pub fn new(config: NativeConfig, background: BackgroundManager) -> NativeTools {
        NativeTools { config, background }
    }

    pub fn specs() -> Vec<ToolSpec> {
        let command_schema = |what: &str, default: u64| {
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": what},
                    "timeout": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "description": format!("Time limit in seconds (default {default}); the command's whole process group is ended when it runs out")
                    }
                },
                "required": ["command"]
            })
        };
        vec![
            ToolSpec {
                name: "bash".into(),
                description: "Run a shell command in the workspace and wait for it. Use background_run instead for anything slow (builds, installs, test suites).".into(),
                input_schema: command_schema("The bash command to run", 120),
                hints: ToolHints { destructive: true, ..ToolHints::default() },
            },
            ToolSpec {
                name: "background_run".into(),
                description: "Start a shell command in the background and return its task id at once. Keep working: when it finishes, its result is delivered to you automatically in <background-results>; there is no need to poll or sleep.".into(),
                input_schema: command_schema("The bash command to run", 300),
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
                description: "Stop a background task: its whole process group gets SIGTERM, then SIGKILL after a short grace.".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {"task_id": {"type": "string", "description": "The task id returned by background_run"}},
                    "required": ["task_id"]
                }),
                hints: ToolHints { destructive: true, idempotent: true, ..ToolHints::default() },
            },
        ]
    }

    pub async fn call(&self, name: &str, input: &Value) -> ToolOutput {
        let result = match name {
            "bash" => match parse::<CommandInput>(input) {
                Ok(input) => self.bash(input).await,
                Err(e) => Err(e),
            },
            "background_run" => {
                parse::<CommandInput>(input).and_then(|input| self.background_run(input))
            }
            "check_background" => match parse::<CheckInput>(input) {
                Ok(input) => self.check_background(input).await,
                Err(e) => Err(e),
            },
            "kill_background" => {
                parse::<TaskInput>(input).and_then(|input| self.kill_background(input))
            }
            other => Err(format!("unknown native tool `{other}`")),
        };
        result.unwrap_or_else(ToolOutput::error)
    }

    fn timeout(&self, requested: Option<f64>, default: Duration) -> Result<Duration, String> {
        match requested {
            None => Ok(default),
            Some(secs) if secs > 0.0 && secs <= MAX_TIMEOUT_SECS as f64 => {
                Ok(Duration::from_secs_f64(secs))
            }
            Some(secs) => Err(format!(
                "invalid input: timeout must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds, not {secs}"
            )),
        }
    }

    async fn bash(&self, input: CommandInput) -> Result<ToolOutput, String> {
        let timeout = self.timeout(input.timeout, self.config.bash_timeout)?;
        check_command(&input.command)?;
        let shell = process::spawn_shell(&input.command, &self.config.workspace)
            .map_err(|e| format!("could not start bash: {e}"))?;
        let pgid = shell.pgid;
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
        if run.lingering > 0 {
            self.background.adopt_group(pgid);
            text.push_str(&format!(
                "\n[the shell exited; {} process(es) it started are still running and are ended when the agent exits]",
                run.lingering
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
                Ok(ToolOutput::ok(text))
            }
            _ => Ok(ToolOutput::ok(text)),
        }
    }

    fn background_run(&self, input: CommandInput) -> Result<ToolOutput, String> {
        let timeout = self.timeout(input.timeout, self.config.background_timeout)?;
        check_command(&input.command)?;
        task_commands::start(&self.background, &input.command, timeout)
            .map(ToolOutput::ok)
            .map_err(|e| e.to_string())
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
        let id = input.task_id.ok_or("invalid input: task_id is required")?;
        task_commands::kill(&self.background, &id)
            .map(ToolOutput::ok)
            .map_err(|e| e.to_string())
    }
}

fn parse<T: for<'de> Deserialize<'de>>(input: &Value) -> Result<T, String> {
    T::deserialize(input).map_err(|e| format!("invalid input: {e}"))
}

/// The one check every native command passes, whether run by `bash` or `background_run`.
///
/// Besides malformed input it refuses, as the seed lesson does, a few commands that a
/// coding agent has no business running: privilege escalation, powering the machine off,
/// deleting the root or home directory, formatting or writing raw disks. This guards
/// against accidents; it is not a security boundary (the commands run as the user).
fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("invalid input: command is empty".into());
    }
    if command.contains('\0') {
        return Err("invalid input: command contains a NUL byte".into());
    }
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .filter(|w| !w.is_empty())
        .collect();
    let blocked_word = words.iter().find(|w| {
        matches!(
            **w,
            "sudo" | "su" | "doas" | "shutdown" | "reboot" | "halt" | "poweroff"
        ) || w.starts_with("mkfs")
    });
    let removes_root = words.windows(3).any(|w| {
        w[0] == "rm"
            && w[1].starts_with('-')
            && w[1].contains('r')
            && matches!(w[2], "/" | "/*" | "~" | "~/" | "$HOME")
    });
    let raw_disk = ["/dev/sd", "/dev/nvme", "/dev/hd", "/dev/vd", "/dev/mmcblk"]
        .iter()
        .any(|dev| command.contains(&format!("> {dev}")) || command.contains(&format!("of={dev}")));
    if blocked_word.is_some() || removes_root || raw_disk {
        return Err(format!(
            "blocked: this command looks dangerous ({}) and is never run by the agent",
            blocked_word.copied().unwrap_or(if removes_root {
                "recursive delete of / or ~"
            } else {
                "write to a raw disk"
            })
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_command;

    #[test]
    fn ordinary_commands_pass() {
        for command in [
            "cargo test",
            "echo pseudo > /dev/null",
            "rm -rf target",
            "ls / && echo ~",
            "git log | head",
        ] {
            assert!(check_command(command).is_ok(), "{command}");
        }
    }

    #[test]
    fn dangerous_commands_are_blocked() {
        for command in [
            "sudo apt-get install x",
            "ls; shutdown -h now",
            "rm -rf /",
            "rm -fr ~",
            "mkfs.ext4 /dev/sda1",
            "dd if=/dev/zero of=/dev/sda",
            "(reboot)",
        ] {
            let err = check_command(command).unwrap_err();
            assert!(err.starts_with("blocked:"), "{command}: {err}");
        }
        assert!(check_command("  ").is_err());
    }
}
