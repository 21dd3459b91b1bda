//! How a run ends: the [`Outcome`] that picks the exit code, and the signal (Ctrl-C or
//! SIGTERM) that ends a run early. The one-shot path ([`crate::app`]) and the REPL
//! ([`crate::repl`]) both end through these.

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// A command that checks something found a problem (`agent plugins check`, `agent
    /// sandbox check`).
    CheckFailed,
}

impl Outcome {
    /// The outcome of a checking command that found everything in order (`ok`) or not.
    pub fn of_check(ok: bool) -> Outcome {
        if ok {
            Outcome::Success
        } else {
            Outcome::CheckFailed
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
