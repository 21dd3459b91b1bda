//! Turns what the agent does into output: human text, or JSON lines for scripts.
//!
//! Library code never prints; the loop reports [`Event`]s here. In text mode the model's
//! words go to stdout and tool activity to stderr (so `agent -p ... > answer.txt` captures
//! the answer); in JSON mode every event is one JSON object per line on stdout.
//!
//! Nearly everything shown comes from outside the agent (the model, tools, plugins,
//! servers), so every text passes through [`ui_text`](crate::ui_text) on its way out: no
//! terminal control sequence gets through, in either format.

use std::io::Write;

use serde_json::{Value, json};

use crate::background::Notification;
use crate::status::StatusLine;
use crate::task_text;
use crate::term::{Style, markdown::MarkdownStream};
use crate::tools::ToolOutput;
use crate::ui_text::{clip, json_line, one_line, visible};
use crate::usage::{ExitReason, RunSummary, describe};

/// How output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line on stdout.
    Json,
}

/// Something the agent did that the user may want to see.
#[derive(Debug)]
pub enum Event<'a> {
    /// A piece of the model's answer as it streams.
    TextDelta(&'a str),
    /// The model's message is complete.
    TextEnd,
    ToolCall {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
    ToolResult {
        id: &'a str,
        name: &'a str,
        output: &'a ToolOutput,
    },
    /// A background task finished (announced as soon as it happens, in the REPL).
    TaskFinished(&'a Notification),
    /// Finished tasks were put into the conversation for the model.
    BackgroundDelivered {
        task_ids: Vec<&'a str>,
    },
    /// The REPL runs a turn on its own for background news that came while the user was
    /// idle at the prompt ("bg-2 completed, bg-3 failed").
    WakeUp(&'a str),
    Retrying {
        attempt: usize,
        delay: std::time::Duration,
        reason: &'a str,
    },
    Warning(&'a str),
    /// Older turns were replaced by a summary to fit the context window.
    Compacted(&'a crate::context::Compacted),
    /// Large old tool results were cut to head and tail to fit the context window.
    ResultsCut {
        results: usize,
        bytes: usize,
    },
    /// An earlier session was taken up (`--continue`, `--resume`, `/resume`).
    SessionResumed(&'a crate::session::restore::Resumed),
    TurnEnd {
        stop_reason: &'a str,
        input_tokens: u64,
        output_tokens: u64,
    },
    /// The run begins (the first JSON event; nothing in text mode).
    Session {
        /// `None` until sessions are kept.
        session_id: Option<&'a str>,
        provider: &'a str,
        model: &'a str,
        tools: &'a [String],
        workspace: &'a str,
    },
    /// The run ended (the last JSON event; in text mode the usage line, once a model
    /// call was made).
    Result(&'a RunSummary),
}

/// Prints events in the chosen format.
#[derive(Clone)]
pub struct Renderer {
    format: OutputFormat,
    status: StatusLine,
    /// Text mode only: whether answers, tool lines and diffs are rendered ([`crate::term`]).
    style: Style,
    markdown: std::sync::Arc<std::sync::Mutex<MarkdownStream>>,
}

/// The longest tool output echoed on screen in text mode (the model gets all of it).
const SHOWN_OUTPUT_LINES: usize = 6;

impl Renderer {
    /// `status` is drawn in text mode only.
    pub fn new(format: OutputFormat, status: StatusLine) -> Renderer {
        let status = if format == OutputFormat::Text {
            status
        } else {
            StatusLine::disabled()
        };
        Renderer {
            format,
            status,
            style: Style::PLAIN,
            markdown: std::sync::Arc::new(std::sync::Mutex::new(MarkdownStream::new(Style::PLAIN))),
        }
    }

    /// Renders text output in `style` (JSON output stays as it is).
    pub fn with_style(mut self, style: Style) -> Renderer {
        if self.format == OutputFormat::Text {
            self.style = style;
            self.markdown = std::sync::Arc::new(std::sync::Mutex::new(MarkdownStream::new(style)));
        }
        self
    }

    /// Shows the live status line with `phase` until [`Renderer::idle`] or streamed text.
    pub fn busy(&self, phase: &str) {
        self.status.show(phase);
    }

    /// Hides the live status line (the REPL waits for input, the run ends).
    pub fn idle(&self) {
        self.status.hide();
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    pub fn emit(&self, event: Event<'_>) {
        match self.format {
            OutputFormat::Text => self.text(event),
            OutputFormat::Json => {
                if let Some(value) = json_event(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", json_line(&value));
                    let _ = out.flush();
                }
            }
        }
    }

    fn text(&self, event: Event<'_>) {
        match &event {
            // Streamed text continues on the spinner's line: take the spinner away first.
            Event::TextDelta(_) => self.status.hide(),
            Event::ToolCall { name, .. } => self.status.show(&format!("running {name}")),
            _ => {}
        }
        let thinking_next = matches!(event, Event::ToolResult { .. });
        self.status.suspend(|| self.print_text(event));
        if thinking_next {
            self.status.show("thinking");
        }
    }

    fn print_text(&self, event: Event<'_>) {
        if self.style.rendered && self.print_rendered(&event) {
            return;
        }
        match event {
            Event::TextDelta(text) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(visible(text).as_bytes());
                let _ = out.flush();
            }
            Event::TextEnd => println!(),
            Event::ToolCall { name, input, .. } => to_stderr(&format!(
                "> {} {}\n",
                one_line(name),
                summarize_input(input)
            )),
            Event::ToolResult { output, .. } => {
                let marker = if output.is_error { "  ! " } else { "  < " };
                let mut shown = String::new();
                let mut lines = output.text.lines();
                for line in lines.by_ref().take(SHOWN_OUTPUT_LINES) {
                    shown.push_str(marker);
                    shown.push_str(&visible(&clip(line, 160)));
                    shown.push('\n');
                }
                let more = lines.count();
                if more > 0 {
                    shown.push_str(&format!("    ... ({more} more lines)\n"));
                }
                to_stderr(&shown);
            }
            Event::TaskFinished(n) => eprintln!("{}", task_text::finished_line(n)),
            Event::BackgroundDelivered { task_ids } => {
                eprintln!(
                    "[background results delivered to the model: {}]",
                    one_line(&task_ids.join(", "))
                )
            }
            Event::WakeUp(news) => eprintln!("[wake-up: {}]", one_line(news)),
            Event::Retrying {
                attempt,
                delay,
                reason,
            } => eprintln!(
                "[model API: {}; retry {attempt} in {:.1}s]",
                visible(reason),
                delay.as_secs_f64()
            ),
            Event::Warning(text) => eprintln!("warning: {}", visible(text)),
            Event::Compacted(c) => eprintln!(
                "[context: {} earlier messages replaced by a summary, the last {} kept verbatim (~{} -> ~{} tokens)]",
                c.kept_from,
                c.messages_before - c.kept_from,
                c.tokens_before,
                c.tokens_after
            ),
            Event::ResultsCut { results, bytes } => eprintln!(
                "[context: {results} old tool result(s) cut to head and tail ({bytes} bytes)]"
            ),
            Event::SessionResumed(resumed) => {
                to_stderr(&crate::session::restore::describe(resumed))
            }
            Event::TurnEnd { .. } | Event::Session { .. } => {}
            Event::Result(summary) => {
                if summary.tally.calls > 0 {
                    eprintln!("{}", describe(&summary.tally.usage, summary.cost_usd));
                }
            }
        }
    }
}

impl Renderer {
    /// Prints `event` in the rendered view if it has one there; false if it has not.
    fn print_rendered(&self, event: &Event<'_>) -> bool {
        use crate::term::tools;
        let style = &self.style;
        if !matches!(event, Event::TextDelta(_) | Event::TextEnd) {
            // A message cut off (a failed stream, a retry): its last line is not lost.
            let rest = self.markdown.lock().unwrap().finish();
            if !rest.is_empty() {
                println!("{rest}");
            }
        }
        match event {
            Event::TextDelta(text) => {
                let shown = self.markdown.lock().unwrap().push(text);
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(shown.as_bytes());
                let _ = out.flush();
            }
            Event::TextEnd => {
                let rest = self.markdown.lock().unwrap().finish();
                println!("{rest}");
            }
            Event::ToolCall { name, input, .. } => {
                to_stderr(&tools::call(style, name, &summarize_input(input)))
            }
            Event::ToolResult { output, .. } => to_stderr(&tools::result(style, output)),
            _ => return false,
        }
        true
    }
}

/// Writes `text` to stderr in one piece. Stderr is unbuffered, so `eprintln!` makes a
/// system call per formatted piece (a tool result took ~25); one write per event keeps the
/// loop's time per turn down and the lines whole.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn json_event(event: &Event<'_>) -> Option<Value> {
    Some(match event {
        Event::TextDelta(text) => json!({"type": "text", "text": text}),
        Event::TextEnd => return None,
        Event::ToolCall { id, name, input } => {
            json!({"type": "tool_call", "id": id, "name": name, "input": input})
        }
        Event::ToolResult { id, name, output } => json!({
            "type": "tool_result", "id": id, "name": name, "is_error": output.is_error, "output": output.text
        }),
        Event::TaskFinished(n) => json!({
            "type": if n.is_ready() { "background_ready" } else { "background_finished" },
            "task_id": n.task_id,
            "command": n.command,
            "status": n.status.as_str(),
            "exit": n.exit.map(|e| e.to_string()),
            "duration_secs": n.duration.as_secs_f64(),
            "log": n.log_path,
        }),
        Event::BackgroundDelivered { task_ids } => {
            json!({"type": "background_delivered", "task_ids": task_ids})
        }
        Event::WakeUp(news) => json!({"type": "wake_up", "news": news}),
        Event::Retrying {
            attempt,
            delay,
            reason,
        } => json!({
            "type": "retry", "attempt": attempt, "delay_secs": delay.as_secs_f64(), "reason": reason
        }),
        Event::Warning(text) => json!({"type": "warning", "message": text}),
        Event::Compacted(c) => json!({
            "type": "compacted", "summary": c.summary, "kept_from": c.kept_from,
            "messages_before": c.messages_before, "messages_after": c.messages_after,
            "tokens_before": c.tokens_before, "tokens_after": c.tokens_after,
            "usage": c.usage
        }),
        Event::ResultsCut { results, bytes } => {
            json!({"type": "results_cut", "results": results, "bytes": bytes})
        }
        Event::SessionResumed(r) => json!({
            "type": "session_resumed", "session_id": r.id, "messages": r.messages,
            "reported_tasks": r.reported_tasks, "skipped_lines": r.skipped,
            "session_workspace": r.other_workspace,
        }),
        Event::TurnEnd {
            stop_reason,
            input_tokens,
            output_tokens,
        } => json!({
            "type": "turn_end", "stop_reason": stop_reason, "input_tokens": input_tokens, "output_tokens": output_tokens
        }),
        Event::Session {
            session_id,
            provider,
            model,
            tools,
            workspace,
        } => json!({
            "type": "session", "session_id": session_id, "provider": provider, "model": model,
            "tools": tools, "workspace": workspace
        }),
        Event::Result(summary) => result_event(summary),
    })
}

/// `{"type":"result","exit_reason","error"?,"turns","duration_secs","usage","cost_usd"?}`;
/// `turns` counts model calls.
fn result_event(summary: &RunSummary) -> Value {
    let mut event = json!({
        "type": "result",
        "exit_reason": summary.exit.name(),
        "turns": summary.tally.calls,
        "duration_secs": summary.duration.as_secs_f64(),
        "usage": summary.tally.usage,
    });
    if let ExitReason::Error(message) = &summary.exit {
        event["error"] = json!(message);
    }
    if let Some(cost) = summary.cost_usd {
        event["cost_usd"] = json!(cost);
    }
    event
}

/// A one-line view of a tool input: the command or path when there is one. Line breaks
/// are shown as `\n` rather than cut at, so no line of a command is hidden.
fn summarize_input(input: &Value) -> String {
    for key in ["command", "path", "task_id"] {
        if let Some(value) = input.get(key).and_then(Value::as_str) {
            return clip(&one_line(value), 120);
        }
    }
    clip(&json_line(input), 120)
}
