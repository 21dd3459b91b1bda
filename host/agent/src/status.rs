//! The live status line: a spinner on stderr while the agent works, naming the background
//! tasks that run and for how long.
//!
//! It only exists on a terminal (elsewhere it is disabled from the start: no spinner
//! thread, no ticker, no locking around each printed line), is hidden while the
//! REPL waits for input, and every other line printed goes through [`StatusLine::suspend`]
//! so output and spinner never garble each other. Its texts name tools and commands that
//! came from the model, so they are drawn through [`one_line`].

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ui_text::one_line;

/// Produces the text after the spinner, e.g. "2 tasks: bg-1 12s cargo build, ...".
pub type Describe = Arc<dyn Fn() -> String + Send + Sync>;

struct Shown {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

/// Cheap to clone; all clones drive one line.
#[derive(Clone)]
pub struct StatusLine {
    shown: Arc<Mutex<Option<Shown>>>,
    describe: Option<Describe>,
}

impl StatusLine {
    /// A line that never draws (JSON output, tests).
    pub fn disabled() -> StatusLine {
        StatusLine {
            shown: Arc::new(Mutex::new(None)),
            describe: None,
        }
    }

    /// A line drawn on stderr if it is a terminal; otherwise [`StatusLine::disabled`].
    pub fn new(describe: Describe) -> StatusLine {
        if !std::io::stderr().is_terminal() {
            return StatusLine::disabled();
        }
        StatusLine {
            shown: Arc::new(Mutex::new(None)),
            describe: Some(describe),
        }
    }

    /// Starts the spinner with `phase` (e.g. "thinking") until [`StatusLine::hide`].
    pub fn show(&self, phase: &str) {
        let Some(describe) = self.describe.clone() else {
            return;
        };
        let mut shown = self.shown.lock().unwrap();
        let phase = one_line(phase).into_owned();
        if let Some(current) = shown.as_ref() {
            current.bar.set_prefix(phase);
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed}{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(phase);
        bar.enable_steady_tick(Duration::from_millis(120));
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                ticking.set_message(one_line(&describe()).into_owned());
            }
        });
        *shown = Some(Shown { bar, ticker });
    }

    pub fn hide(&self) {
        if let Some(shown) = self.shown.lock().unwrap().take() {
            shown.ticker.abort();
            shown.bar.finish_and_clear();
        }
    }

    /// Runs `print` with the line cleared, then redraws it.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        let bar = self.shown.lock().unwrap().as_ref().map(|s| s.bar.clone());
        match bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}
