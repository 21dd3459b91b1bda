//! Idle wake-up: when background news (a finished task, or any other undelivered
//! notification) waits while the user sits at an empty REPL prompt, the agent runs a turn
//! on its own. This module holds the policy (on/off, the cap on consecutive wake-ups) and
//! the batching window that lets tasks finishing together cost one model call; the REPL
//! does the printing.

use std::time::Duration;

use crate::background::BackgroundManager;
use crate::background_task::Notification;

/// How long to wait, after the first notification, for others to join it in one model
/// call (one-shot mode and REPL wake-ups).
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Wake-ups in a row without user input, by default.
pub const DEFAULT_MAX_WAKES: u32 = 5;

/// The settings from the command line.
#[derive(Debug, Clone, Copy)]
pub struct WakeSettings {
    pub enabled: bool,
    /// Consecutive wake-ups allowed without user input.
    pub max_consecutive: u32,
}

impl Default for WakeSettings {
    fn default() -> Self {
        WakeSettings {
            enabled: true,
            max_consecutive: DEFAULT_MAX_WAKES,
        }
    }
}

/// What to do with news that arrived while the user is idle.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run a turn now.
    Wake,
    /// The cap was just reached: say so once, then wait for the user.
    CapReached,
}

/// The REPL's wake-up state: counts wake-ups since the user last typed a line.
#[derive(Debug)]
pub struct WakePolicy {
    settings: WakeSettings,
    consecutive: u32,
    cap_told: bool,
}

impl WakePolicy {
    pub fn new(settings: WakeSettings) -> WakePolicy {
        WakePolicy {
            settings,
            consecutive: 0,
            cap_told: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn set_enabled(&mut self, on: bool) {
        self.settings.enabled = on;
    }

    pub fn max_consecutive(&self) -> u32 {
        self.settings.max_consecutive
    }

    /// Whether news could lead to a decision at all (so the REPL need not watch for it):
    /// off, or capped and already told, means wait for the user.
    pub fn watching(&self) -> bool {
        self.settings.enabled && !self.cap_told
    }

    /// The user typed a line: the count starts again.
    pub fn user_input(&mut self) {
        self.consecutive = 0;
        self.cap_told = false;
    }

    /// Called when news waits and the prompt is empty; `None` when nothing is to be done.
    pub fn decide(&mut self) -> Option<Decision> {
        if !self.watching() {
            return None;
        }
        if self.consecutive >= self.settings.max_consecutive {
            self.cap_told = true;
            return Some(Decision::CapReached);
        }
        self.consecutive += 1;
        Some(Decision::Wake)
    }
}

/// Waits for the first undelivered notification, then [`BATCH_WINDOW`] more, so that
/// tasks finishing within the window are delivered together (and, in the REPL, the
/// on-screen announcement of the news comes before the wake-up's output).
pub async fn gather(background: &BackgroundManager) {
    background.wait_for_notification().await;
    tokio::time::sleep(BATCH_WINDOW).await;
}

/// What a wake-up line names: each waiting notification's task and what happened to it.
pub fn describe(notifications: &[Notification]) -> String {
    notifications
        .iter()
        .map(|n| {
            if n.is_ready() {
                format!("{} ready", n.task_id)
            } else {
                format!("{} {}", n.task_id, n.status.as_str())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u32) -> WakePolicy {
        WakePolicy::new(WakeSettings {
            enabled: true,
            max_consecutive: max,
        })
    }

    #[test]
    fn caps_consecutive_wakes_and_says_so_once() {
        let mut p = policy(2);
        assert_eq!(p.decide(), Some(Decision::Wake));
        assert_eq!(p.decide(), Some(Decision::Wake));
        assert_eq!(p.decide(), Some(Decision::CapReached));
        assert!(!p.watching());
        assert_eq!(p.decide(), None);
        p.user_input();
        assert_eq!(p.decide(), Some(Decision::Wake));
    }

    #[test]
    fn off_never_wakes_and_on_again_does() {
        let mut p = policy(5);
        p.set_enabled(false);
        assert_eq!(p.decide(), None);
        p.set_enabled(true);
        assert_eq!(p.decide(), Some(Decision::Wake));
    }

    #[test]
    fn a_cap_of_zero_wakes_never_but_tells() {
        let mut p = policy(0);
        assert_eq!(p.decide(), Some(Decision::CapReached));
        assert_eq!(p.decide(), None);
    }
}
