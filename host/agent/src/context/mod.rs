//! Context that never overflows: the loop asks [`Context::fit`] before each model call,
//! and the conversation is made to fit the model's window.
//!
//! [`window`] knows the window (flag, environment, config, built-in table);
//! [`estimate`] the size of the next request (usage where known, bytes/4 otherwise).
//! Past the threshold, first [`trim`] cuts large old tool results to head and tail
//! (cheap, no model call); if the request is still too big, [`compact`] replaces the older
//! turns by a summary the model writes and keeps the recent ones verbatim. If the summary
//! fails, the history is left as it was, the cutting is done harder, and a warning says
//! so.

pub mod compact;
pub mod estimate;
pub mod trim;
pub mod window;

use crate::model::{Message, ModelEvent, ModelProvider, Usage};
use crate::render::{Event, Renderer};

pub use compact::{CompactError, Compacted};
pub use estimate::Frame;
pub use window::{WindowError, WindowSettings};

/// User messages at the end whose tool results are never cut by the first step.
const SPARED_USER_MESSAGES: usize = 3;
/// Old results longer than this are cut to head and tail.
const OLD_RESULT_BYTES: usize = 4_096;
/// The fallback when no summary could be had: all but the newest message's results.
const FALLBACK_RESULT_BYTES: usize = 2_600;
/// Cutting old results is enough only if it brings the request this far under the
/// threshold (percent); otherwise a summary is made at once, rather than cutting one
/// more result every other turn (each cut rewrites old messages, which a provider's
/// prompt cache then reads afresh).
const CUT_ENOUGH_PERCENT: u64 = 75;

/// The context window of this run and the last measured size of the conversation.
#[derive(Debug, Default)]
pub struct Context {
    settings: WindowSettings,
    size: estimate::SizeTracker,
    /// How many times the history was rewritten (results cut, turns summarized), so the
    /// caller can tell it changed and record it.
    rewrites: u64,
}

impl Context {
    pub fn new(settings: WindowSettings) -> Context {
        Context {
            settings,
            size: estimate::SizeTracker::default(),
            rewrites: 0,
        }
    }

    pub fn settings(&self) -> &WindowSettings {
        &self.settings
    }

    /// Records the usage of the answer that made the history `history_len` long.
    pub fn observe(&mut self, usage: &Usage, history_len: usize) {
        self.size.observe(usage, history_len);
    }

    /// How many times this context rewrote the history so far.
    pub fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// The estimated size of the request `frame` + `history`.
    pub fn request_tokens(&self, frame: Frame<'_>, history: &[Message]) -> u64 {
        self.size.request_tokens(frame, history)
    }

    /// Makes the next request (`frame` + `history`) fit under the threshold: cuts old
    /// large tool results, then compacts if that was not enough. Reports what it did
    /// through `renderer`; returns the compaction, if one happened, for the caller to
    /// record.
    pub async fn fit(
        &mut self,
        history: &mut Vec<Message>,
        frame: Frame<'_>,
        provider: &dyn ModelProvider,
        renderer: &Renderer,
    ) -> Option<Compacted> {
        let limit = self.settings.limit();
        if self.request_tokens(frame, history) <= limit {
            return None;
        }
        self.cut(history, SPARED_USER_MESSAGES, OLD_RESULT_BYTES, renderer);
        if self.request_tokens(frame, history) <= limit / 100 * CUT_ENOUGH_PERCENT {
            return None;
        }
        // Keep up to half the threshold verbatim, so the next compaction is many turns
        // away rather than one.
        let keep = (limit / 2).saturating_sub(estimate::frame_tokens(frame));
        match self.compact(history, keep, provider, renderer).await {
            Ok(compacted) => {
                renderer.emit(Event::Compacted(&compacted));
                if self.request_tokens(frame, history) > limit {
                    self.cut(history, 1, FALLBACK_RESULT_BYTES, renderer);
                }
                self.warn_if_over(frame, history, renderer);
                Some(compacted)
            }
            Err(error) => {
                renderer.emit(Event::Warning(&format!(
                    "could not compact the conversation ({error}); it is kept whole, with long tool results cut instead"
                )));
                self.cut(history, 1, FALLBACK_RESULT_BYTES, renderer);
                self.warn_if_over(frame, history, renderer);
                None
            }
        }
    }

    /// Compacts now (`/compact`), whatever the size: everything before the last exchange
    /// is summarized. The history is unchanged on error.
    pub async fn compact_now(
        &mut self,
        history: &mut Vec<Message>,
        provider: &dyn ModelProvider,
        renderer: &Renderer,
    ) -> Result<Compacted, CompactError> {
        self.compact(history, 0, provider, renderer).await
    }

    /// Summarizes all but the longest recent part of at most `keep` tokens (at least the
    /// last exchange is kept). The history is unchanged on error.
    async fn compact(
        &mut self,
        history: &mut Vec<Message>,
        keep: u64,
        provider: &dyn ModelProvider,
        renderer: &Renderer,
    ) -> Result<Compacted, CompactError> {
        let limit = self.settings.limit();
        let cut = compact::choose_cut(history, keep).ok_or(CompactError::NothingToCompact)?;
        let mut on_event = |event: ModelEvent| {
            if let ModelEvent::Retrying {
                attempt,
                delay,
                reason,
            } = event
            {
                renderer.emit(Event::Retrying {
                    attempt,
                    delay,
                    reason: &reason,
                });
            }
        };
        renderer.busy("compacting the conversation");
        let result = compact::compact(history, cut, limit, provider, &mut on_event).await;
        renderer.busy("thinking");
        if result.is_ok() {
            self.size.reset();
            self.rewrites += 1;
        }
        result
    }

    fn cut(&mut self, history: &mut [Message], spare: usize, max: usize, renderer: &Renderer) {
        let cut = trim::cut_old_results(history, spare, max);
        if cut.results > 0 {
            self.size.reset();
            self.rewrites += 1;
            renderer.emit(Event::ResultsCut {
                results: cut.results,
                bytes: cut.bytes,
            });
        }
    }

    fn warn_if_over(&self, frame: Frame<'_>, history: &[Message], renderer: &Renderer) {
        let tokens = self.request_tokens(frame, history);
        if tokens > self.settings.limit() {
            renderer.emit(Event::Warning(&format!(
                "the conversation (~{tokens} tokens) is still over the compaction threshold of the {}-token context window",
                self.settings.window
            )));
        }
    }
}
