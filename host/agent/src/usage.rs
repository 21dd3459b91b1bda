//! Tokens and what they cost: per model call, per turn and per session.
//!
//! The loop records the [`Usage`] of every model call in a [`SessionUsage`]; the end of a
//! run and the REPL's `/cost` show it, priced by the model's entry in the
//! [`PriceTable`] when there is one (an unknown model shows tokens only). Input, output,
//! cache reads and cache writes are kept apart, as the APIs bill them apart.

pub mod prices;

use std::time::Duration;

use crate::model::Usage;
pub use prices::{PriceTable, Prices, PricesError};

/// The usage of some model calls, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub usage: Usage,
    /// Model calls counted.
    pub calls: u64,
}

impl Tally {
    pub fn add(&mut self, usage: Usage) {
        let sum = &mut self.usage;
        sum.input_tokens = sum.input_tokens.saturating_add(usage.input_tokens);
        sum.output_tokens = sum.output_tokens.saturating_add(usage.output_tokens);
        sum.cache_creation_input_tokens = sum
            .cache_creation_input_tokens
            .saturating_add(usage.cache_creation_input_tokens);
        sum.cache_read_input_tokens = sum
            .cache_read_input_tokens
            .saturating_add(usage.cache_read_input_tokens);
        self.calls += 1;
    }
}

/// The usage of a session and of its last turn.
#[derive(Debug, Clone, Default)]
pub struct SessionUsage {
    session: Tally,
    last_turn: Tally,
}

impl SessionUsage {
    /// A turn begins: the last turn's counts start again from zero.
    pub fn start_turn(&mut self) {
        self.last_turn = Tally::default();
    }

    /// One model call's usage.
    pub fn record(&mut self, usage: Usage) {
        self.session.add(usage);
        self.last_turn.add(usage);
    }

    pub fn session(&self) -> Tally {
        self.session
    }

    pub fn last_turn(&self) -> Tally {
        self.last_turn
    }
}

/// How a run ended, for the end-of-run summary and the `result` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The model finished its answer.
    Done,
    /// The last answer was cut at the token limit.
    MaxTokens,
    /// The run failed; the message says why.
    Error(String),
    /// A signal (Ctrl-C, SIGTERM) ended the run.
    Interrupted,
}

impl ExitReason {
    pub fn name(&self) -> &'static str {
        match self {
            ExitReason::Done => "done",
            ExitReason::MaxTokens => "max_tokens",
            ExitReason::Error(_) => "error",
            ExitReason::Interrupted => "interrupted",
        }
    }
}

/// What a run did, as the end-of-run line and the `result` event show it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub exit: ExitReason,
    pub duration: Duration,
    pub tally: Tally,
    /// In US dollars, when the model's prices are known.
    pub cost_usd: Option<f64>,
}

/// One line of counts and, when known, the cost: `tokens: 1200 in, 80 out, 5000 cache
/// read, 300 cache write; cost $0.0123`.
pub fn describe(usage: &Usage, cost_usd: Option<f64>) -> String {
    let tokens = format!(
        "tokens: {} in, {} out, {} cache read, {} cache write",
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens
    );
    match cost_usd {
        Some(cost) => format!("{tokens}; cost ${cost:.4}"),
        None => tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, read: u64, write: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
        }
    }

    #[test]
    fn turns_and_the_session_are_summed_apart() {
        let mut tracked = SessionUsage::default();
        tracked.start_turn();
        tracked.record(usage(10, 1, 100, 20));
        tracked.record(usage(5, 2, 120, 0));
        tracked.start_turn();
        tracked.record(usage(1, 3, 0, 7));
        assert_eq!(tracked.session().usage, usage(16, 6, 220, 27));
        assert_eq!(tracked.session().calls, 3);
        assert_eq!(tracked.last_turn().usage, usage(1, 3, 0, 7));
        assert_eq!(tracked.last_turn().calls, 1);
    }

    #[test]
    fn the_line_shows_the_cost_only_when_known() {
        let u = usage(1000, 20, 3000, 400);
        assert_eq!(
            describe(&u, None),
            "tokens: 1000 in, 20 out, 3000 cache read, 400 cache write"
        );
        assert!(describe(&u, Some(0.01234)).ends_with("; cost $0.0123"));
    }
}
