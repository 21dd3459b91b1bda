//! The interactive loop: a line editor with history, slash commands, and background tasks
//! announced the moment they finish.
//!
//! rustyline blocks, so it lives on its own thread and hands lines over a channel; the async
//! side stays free to announce finished tasks (through rustyline's external printer, which
//! redraws the prompt) and to react to SIGTERM while the user types.
//!
//! Idle wake-up ([`crate::wake`]): the request for the next line stays outstanding while
//! background news is awaited; when news waits and the prompt is empty (rustyline shows
//! us the line being edited through its hinter, which it calls on every change), a turn
//! runs without a line and the prompt, with whatever the user types meanwhile, is kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Editor, ExternalPrinter};
use tokio::sync::{mpsc, oneshot};

use crate::agent::{Agent, TurnEnd, TurnError};
use crate::approval::{self, Answer, Escalation, Question};
use crate::background::BackgroundManager;
use crate::config::Config;
use crate::render::{Event, OutputFormat, Renderer};
use crate::shutdown::{Outcome, shutdown_signal};
use crate::ui_text::{one_line, visible};
use crate::usage::describe;
use crate::wake::{Decision, WakePolicy};

mod idle;
use crate::{task_commands, task_text};
use idle::{
    LineWatch, PendingLine, Printer, has_printer, news_while_idle, redraw_prompt, say_at_prompt,
    wake_turn,
};

const HELP: &str = "Type a request for the agent. Commands:
  /tasks       list background tasks
  /compact     replace the older turns by a summary now (recent turns stay verbatim)
  /kill ID     stop a background task
  /attach ID   watch a background task's output live and type into its stdin
               (never seen by the model); Ctrl-] or /detach detaches
  /resume      list recent sessions of this workspace; /resume ID switches to one
  /cost        tokens used and their cost, this session and last turn
  /wake on|off run a turn by itself when a background task's news comes while you are
               idle at an empty prompt (on by default; at most --max-wakes in a row)
  /help        this help
  exit, q      quit (or Ctrl-D); Ctrl-C stops the running turn";

/// What the line-editor thread hands over.
enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of piped input.
    Eof,
}

/// What a line is read for.
#[derive(Clone, Copy)]
enum Ask {
    /// The next request for the agent (kept in the history).
    Request,
    /// The answer to an approval question (not kept).
    Approval,
    /// A line for an attached task's stdin (not kept: it may be a password).
    Attach,
}

/// The line editor on its own thread: each request gets one line back.
struct LineReader {
    requests: std::sync::mpsc::Sender<(Ask, oneshot::Sender<Input>)>,
    /// Whether the line being edited has text (always false when stdin is not a
    /// terminal: a partial piped line cannot be seen, and is read intact later).
    typing: Arc<AtomicBool>,
}

impl LineReader {
    fn start(history: PathBuf) -> (LineReader, Option<Box<dyn ExternalPrinter + Send>>) {
        let (requests, incoming) = std::sync::mpsc::channel::<(Ask, oneshot::Sender<Input>)>();
        let (printer_tx, printer_rx) = std::sync::mpsc::channel();
        let typing = Arc::new(AtomicBool::new(false));
        let watched = typing.clone();
        std::thread::Builder::new()
            .name("line-editor".into())
            .spawn(move || {
                let Ok(mut editor) = Editor::<LineWatch, DefaultHistory>::new() else {
                    let _ = printer_tx.send(None);
                    for (_, reply) in incoming {
                        let _ = reply.send(Input::Eof);
                    }
                    return;
                };
                let printer = editor
                    .create_external_printer()
                    .ok()
                    .map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
                let _ = printer_tx.send(printer);
                editor.set_helper(Some(LineWatch {
                    typing: watched.clone(),
                }));
                let _ = editor.load_history(&history);
                let attached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                editor.bind_sequence(
                    rustyline::KeyEvent(rustyline::KeyCode::Char(']'), rustyline::Modifiers::CTRL),
                    rustyline::EventHandler::Conditional(Box::new(attach::DetachKey(
                        attached.clone(),
                    ))),
                );
                for (ask, reply) in incoming {
                    let prompt = match ask {
                        Ask::Request => "agent> ",
                        Ask::Approval => "allow? [o]nce / [s]ession / [d]eny> ",
                        Ask::Attach => "",
                    };
                    attached.store(matches!(ask, Ask::Attach), Ordering::Relaxed);
                    watched.store(false, Ordering::Relaxed);
                    let read = editor.readline(prompt);
                    watched.store(false, Ordering::Relaxed);
                    let input = match read {
                        Ok(line) => {
                            if matches!(ask, Ask::Request) && !line.trim().is_empty() {
                                let _ = editor.add_history_entry(line.as_str());
                                let _ = editor.save_history(&history);
                            }
                            Input::Line(line)
                        }
                        Err(ReadlineError::Interrupted) => Input::Interrupted,
                        Err(_) => Input::Eof,
                    };
                    let _ = reply.send(input);
                }
            })
            .expect("spawning the line-editor thread");
        let printer = printer_rx.recv().ok().flatten();
        (LineReader { requests, typing }, printer)
    }

    async fn read(&self, ask: Ask) -> Input {
        let (reply, answer) = oneshot::channel();
        if self.requests.send((ask, reply)).is_err() {
            return Input::Eof;
        }
        answer.await.unwrap_or(Input::Eof)
    }
}

/// What the prompt loop goes on with.
enum Next {
    Input(Input),
    /// Background news waits and the prompt is empty.
    News,
}

pub async fn run(
    agent: &mut Agent,
    background: &BackgroundManager,
    renderer: Renderer,
    config: &Config,
    sandbox: &crate::sandbox::Sandbox,
    mut questions: Option<mpsc::Receiver<Question>>,
) -> Result<Outcome> {
    if let Some(state_dir) = config.history_file.parent() {
        // Without the directory the history is simply not saved (rustyline keeps the
        // file itself 0600).
        let _ = agent_plugin_runtime::private_fs::ensure_private_dir(state_dir);
    }
    let (reader, printer) = LineReader::start(config.history_file.clone());
    let printer: Printer = idle::PromptPrinter::new(printer);
    let announcer = announce_finished_tasks(background, renderer.clone(), printer.clone());
    eprintln!(
        "agent in {} — type /help for commands, exit or Ctrl-D to quit",
        one_line(&config.workspace.display().to_string())
    );
    eprintln!(
        "sandbox of bash and background tasks: {}",
        sandbox.describe()
    );

    let mut wake = WakePolicy::new(config.wake);
    let mut pending = PendingLine::new(&reader);
    // Tasks the user stopped with /kill: they know, so their end wakes no one.
    let mut user_killed = std::collections::HashSet::new();
    let outcome = loop {
        let next = tokio::select! {
            input = pending.next() => Next::Input(input),
            () = shutdown_signal() => break Outcome::Interrupted,
            () = news_while_idle(background, &reader.typing, &user_killed), if wake.watching() => Next::News,
        };
        let input = match next {
            Next::Input(input) => input,
            Next::News => {
                match wake.decide() {
                    Some(Decision::Wake) => {
                        let woke = wake_turn(
                            agent,
                            background,
                            &mut pending,
                            &renderer,
                            &printer,
                            &mut questions,
                        )
                        .await;
                        report_turn(agent, &renderer, woke);
                        redraw_prompt(&printer);
                    }
                    Some(Decision::CapReached) => say_at_prompt(
                        &printer,
                        &format!(
                            "[wake-up: {} in a row without input from you; waiting for you: \
                             what came meanwhile goes with your next message]",
                            wake.max_consecutive()
                        ),
                    ),
                    None => {}
                }
                continue;
            }
        };
        let line = match input {
            Input::Line(line) => line,
            Input::Interrupted => {
                eprintln!("(Ctrl-C: type exit or press Ctrl-D to quit)");
                continue;
            }
            Input::Eof => break Outcome::Success,
        };
        let line = line.trim();
        if !line.is_empty() {
            wake.user_input();
        }
        match line {
            "" => continue,
            "/wake" => eprintln!("wake-up is {}", on_off(wake.enabled())),
            "/wake on" | "/wake off" => {
                wake.set_enabled(line == "/wake on");
                eprintln!("wake-up is {}", on_off(wake.enabled()));
            }
            "exit" | "q" | "quit" => break Outcome::Success,
            "/help" => eprintln!("{HELP}"),
            "/cost" => show_cost(agent, config),
            "/tasks" => {
                for task_line in task_commands::list(background) {
                    // Commands came from the model.
                    eprintln!("{}", one_line(&task_line));
                }
            }
            "/compact" => {
                let compacted = tokio::select! {
                    compacted = agent.compact() => Some(compacted),
                    () = shutdown_signal() => None,
                };
                match compacted {
                    Some(Ok(c)) => renderer.emit(Event::Compacted(&c)),
                    Some(Err(e)) => renderer.emit(Event::Warning(&format!(
                        "/compact: {e} (the conversation is unchanged)"
                    ))),
                    None => {
                        renderer.idle();
                        eprintln!("\n[interrupted; the conversation is unchanged]");
                    }
                }
            }
            _ if line.starts_with("/kill") => match line["/kill".len()..].trim() {
                "" => eprintln!("usage: /kill ID"),
                id => match task_commands::kill(background, id) {
                    Ok(answer) => {
                        user_killed.insert(id.to_string());
                        eprintln!("{}", visible(&answer))
                    }
                    Err(e) => eprintln!("{}", visible(&e.to_string())),
                },
            },
            _ if line.starts_with("/attach") => match line["/attach".len()..].trim() {
                "" => eprintln!("usage: /attach ID"),
                id => attach::attach(&reader, background, id).await,
            },
            _ if line == "/resume" || line.starts_with("/resume ") => {
                match line["/resume".len()..].trim() {
                    "" => {
                        for session in
                            crate::session_commands::recent_in_workspace(config, agent.session_id())
                        {
                            eprintln!("{session}");
                        }
                    }
                    id => {
                        match crate::session_commands::resume_in_repl(id, config, agent, background)
                        {
                            Ok(resumed) => {
                                eprint!("{}", crate::session::restore::describe(&resumed))
                            }
                            Err(e) => eprintln!("{}", visible(&format!("{e:#}"))),
                        }
                    }
                }
            }
            _ if line.starts_with('/') => {
                eprintln!("unknown command {}; type /help", one_line(line))
            }
            prompt => {
                let finished =
                    run_turn_answering(agent, prompt, &reader, &renderer, &mut questions).await;
                report_turn(agent, &renderer, finished);
            }
        }
    };
    announcer.abort();
    Ok(outcome)
}

mod attach;

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Says how a turn ended when it did not end well.
fn report_turn(
    agent: &mut Agent,
    renderer: &Renderer,
    finished: Option<Result<TurnEnd, TurnError>>,
) {
    match finished {
        Some(Ok(_)) => {}
        Some(Err(e)) => renderer.emit(Event::Warning(&format!(
            "{e} (your conversation is kept; try again)"
        ))),
        None => {
            agent.repair_after_interrupt();
            eprintln!("\n[interrupted]");
        }
    }
}

/// The tokens of the session and of the last turn, with their cost when the model's
/// prices are known.
fn show_cost(agent: &Agent, config: &Config) {
    let usage = agent.usage();
    let prices = config.prices.lookup(&config.model.model);
    for (what, tally) in [
        ("session", usage.session()),
        ("last turn", usage.last_turn()),
    ] {
        let cost = prices.map(|p| p.cost(&tally.usage));
        eprintln!(
            "{what} ({} model call{}): {}",
            tally.calls,
            if tally.calls == 1 { "" } else { "s" },
            describe(&tally.usage, cost)
        );
    }
    if prices.is_none() {
        eprintln!(
            "(no prices known for {}: add a [prices.\"MODEL\"] table to config.toml for costs)",
            one_line(&config.model.model)
        );
    }
}

/// Runs one turn to its end, putting the approval questions it raises to the user; `None`
/// when a signal interrupted it.
async fn run_turn_answering(
    agent: &mut Agent,
    prompt: &str,
    reader: &LineReader,
    renderer: &Renderer,
    questions: &mut Option<mpsc::Receiver<Question>>,
) -> Option<Result<TurnEnd, TurnError>> {
    let turn = agent.run_turn(Some(prompt));
    tokio::pin!(turn);
    loop {
        tokio::select! {
            result = &mut turn => return Some(result),
            () = shutdown_signal() => return None,
            question = next_question(questions) => {
                let answer = tokio::select! {
                    answer = ask_user(reader, renderer, &question.escalation) => answer,
                    () = shutdown_signal() => return None,
                };
                let _ = question.answer.send(answer);
            }
        }
    }
}

/// The next approval question, or never when there are none to come.
async fn next_question(questions: &mut Option<mpsc::Receiver<Question>>) -> Question {
    match questions {
        Some(receiver) => match receiver.recv().await {
            Some(question) => question,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Puts one approval question to the user: what would run, and why the model asks. Both
/// come from the model, so control characters are shown, not sent.
async fn ask_user(reader: &LineReader, renderer: &Renderer, escalation: &Escalation) -> Answer {
    renderer.idle();
    eprintln!("\n{}", describe_escalation(escalation));
    let answer = match reader.read(Ask::Approval).await {
        Input::Line(line) => approval::parse_answer(&line),
        Input::Interrupted | Input::Eof => Answer::Deny,
    };
    eprintln!("({})", said(answer));
    answer
}

fn describe_escalation(escalation: &Escalation) -> String {
    format!(
        "The model asks to run a command OUTSIDE the sandbox (with your full access to files and the network):\n  {}: {}\n  reason: {}",
        escalation.tool,
        visible(&escalation.command),
        visible(&escalation.reason),
    )
}

fn said(answer: Answer) -> &'static str {
    match answer {
        Answer::Once => "allowed once",
        Answer::Session => "allowed for this session",
        Answer::Deny => "denied",
    }
}

/// Shows each finished background task as soon as it finishes; the model still gets it
/// with its next call.
fn announce_finished_tasks(
    background: &BackgroundManager,
    renderer: Renderer,
    printer: Printer,
) -> tokio::task::JoinHandle<()> {
    let mut finished = background.subscribe();
    tokio::spawn(async move {
        while let Ok(n) = finished.recv().await {
            if renderer.format() == OutputFormat::Text && has_printer(&printer) {
                say_at_prompt(&printer, &task_text::finished_line(&n));
            } else {
                renderer.emit(Event::TaskFinished(&n));
            }
        }
    })
}
