//! The REPL's side of idle wake-up (the policy is [`crate::wake`]): watching the line
//! being edited, keeping the prompt's line request outstanding across a wake-up turn, the
//! wake-up turn itself, and printing while the prompt is shown.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustyline::ExternalPrinter;
use tokio::sync::mpsc;

use super::{Ask, Input, LineReader, describe_escalation, next_question, said};
use crate::agent::{Agent, TurnEnd, TurnError};
use crate::approval::{self, Answer, Question};
use crate::background::BackgroundManager;
use crate::render::{Event, OutputFormat, Renderer};
use crate::shutdown::shutdown_signal;
use crate::wake;

/// rustyline's external printer, shared by the announcements and the wake-ups.
pub(super) type Printer = Arc<PromptPrinter>;

pub(super) struct PromptPrinter {
    /// `None` when the terminal is not interactive.
    editor: Mutex<Option<Box<dyn ExternalPrinter + Send>>>,
    /// A wake-up turn prints below the prompt rustyline still shows: what comes
    /// meanwhile is printed plainly, not with the prompt redrawn in the middle of it.
    in_turn: AtomicBool,
}

impl PromptPrinter {
    pub(super) fn new(editor: Option<Box<dyn ExternalPrinter + Send>>) -> Printer {
        Arc::new(PromptPrinter {
            editor: Mutex::new(editor),
            in_turn: AtomicBool::new(false),
        })
    }

    /// Prints through rustyline (which clears the prompt, prints, and redraws the prompt
    /// and the line being typed below); false when the terminal is not interactive.
    fn through_editor(&self, text: String) -> bool {
        if let Ok(mut editor) = self.editor.lock()
            && let Some(editor) = editor.as_mut()
        {
            return editor.print(text).is_ok();
        }
        false
    }
}

/// Watches the line being edited: rustyline calls the hinter on every change of it.
pub(super) struct LineWatch {
    pub(super) typing: Arc<AtomicBool>,
}

impl rustyline::hint::Hinter for LineWatch {
    type Hint = String;
    fn hint(&self, line: &str, _pos: usize, _ctx: &rustyline::Context<'_>) -> Option<String> {
        self.typing.store(!line.is_empty(), Ordering::Relaxed);
        None
    }
}
impl rustyline::completion::Completer for LineWatch {
    type Candidate = String;
}
impl rustyline::highlight::Highlighter for LineWatch {}
impl rustyline::validate::Validator for LineWatch {}
impl rustyline::Helper for LineWatch {}

/// The request for the next line, kept outstanding across wake-up turns so that what the
/// user types meanwhile is not lost. Cancel-safe: dropping `next` keeps the request.
pub(super) struct PendingLine<'r> {
    reader: &'r LineReader,
    line: Pin<Box<dyn Future<Output = Input> + 'r>>,
}

impl<'r> PendingLine<'r> {
    pub(super) fn new(reader: &'r LineReader) -> PendingLine<'r> {
        PendingLine {
            reader,
            line: Box::pin(reader.read(Ask::Request)),
        }
    }

    pub(super) async fn next(&mut self) -> Input {
        let input = self.line.as_mut().await;
        self.line = Box::pin(self.reader.read(Ask::Request));
        input
    }
}

/// Returns once background news waits for the model (any notification kind, gathered for
/// [`wake::BATCH_WINDOW`]) while nothing is typed at the prompt. The ends of `quiet`
/// tasks (the user killed them) alone wake no one: they go with the next line.
pub(super) async fn news_while_idle(
    background: &BackgroundManager,
    typing: &AtomicBool,
    quiet: &HashSet<String>,
) {
    loop {
        wake::gather(background).await;
        let news = background
            .undelivered()
            .iter()
            .any(|n| !quiet.contains(&n.task_id));
        if !typing.load(Ordering::Relaxed) && news {
            return;
        }
        // The user is typing: the news goes with their line unless they clear it.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A turn the agent runs by itself with the waiting news. The prompt's line request
/// stays outstanding; an approval question of this turn is answered by that line.
pub(super) async fn wake_turn(
    agent: &mut Agent,
    background: &BackgroundManager,
    pending: &mut PendingLine<'_>,
    renderer: &Renderer,
    printer: &Printer,
    questions: &mut Option<mpsc::Receiver<Question>>,
) -> Option<Result<TurnEnd, TurnError>> {
    let news = wake::describe(&background.undelivered());
    printer.in_turn.store(true, Ordering::Relaxed);
    if renderer.format() == OutputFormat::Text && has_printer(printer) {
        // Rustyline's empty prompt is on this line (the announcement of the news, printed
        // through rustyline, came a batching window earlier): the turn's output replaces it.
        use std::io::Write;
        print!("\r\x1b[2K");
        let _ = std::io::stdout().flush();
    }
    renderer.emit(Event::WakeUp(&news));
    let turn = agent.run_turn(None);
    tokio::pin!(turn);
    let result = loop {
        tokio::select! {
            result = &mut turn => break Some(result),
            () = shutdown_signal() => break None,
            question = next_question(questions) => {
                renderer.idle();
                // Through rustyline: the question, then the prompt that takes the answer.
                let question_text = format!(
                    "{}\n  answer at the prompt: [o]nce / [s]ession / [d]eny",
                    describe_escalation(&question.escalation)
                );
                if !printer.through_editor(question_text.clone()) {
                    eprintln!("{question_text}");
                }
                let answer = tokio::select! {
                    input = pending.next() => match input {
                        Input::Line(line) => approval::parse_answer(&line),
                        Input::Interrupted | Input::Eof => Answer::Deny,
                    },
                    () = shutdown_signal() => break None,
                };
                eprintln!("({})", said(answer));
                let _ = question.answer.send(answer);
            }
        }
    };
    printer.in_turn.store(false, Ordering::Relaxed);
    result
}

pub(super) fn has_printer(printer: &Printer) -> bool {
    printer.editor.lock().map(|p| p.is_some()).unwrap_or(false)
}

/// Prints while the prompt is shown: through rustyline, which redraws the prompt and the
/// line being typed below the text; plainly when the terminal is not interactive or a
/// wake-up turn is printing.
pub(super) fn say_at_prompt(printer: &Printer, text: &str) {
    if printer.in_turn.load(Ordering::Relaxed) || !printer.through_editor(text.to_string()) {
        eprintln!("{text}");
    }
}

/// After a wake-up turn: shows the prompt (and the line typed meanwhile) again.
pub(super) fn redraw_prompt(printer: &Printer) {
    printer.through_editor(String::new());
}
