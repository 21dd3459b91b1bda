//! Approvals: whether one command may run outside the sandbox.
//!
//! The model asks for it with `sandbox: "off"` and a `reason` on `bash` or
//! `background_run`. The user's policy decides: `ask` (the REPL puts the question to the
//! user: allow once, allow this exact command for the session, or deny), `never` (the model
//! gets a refusal it can act on) or `always` (chosen explicitly, warned about at start).
//! This module owns the policy and the commands allowed for the session. The question
//! itself goes over a channel to whoever can answer it (the REPL), so no tool reads or
//! writes the terminal.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

/// Who decides when a command asks to run outside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApprovalPolicy {
    /// Ask the user each time (the REPL); one-shot mode cannot ask.
    Ask,
    /// Refuse every such request; the model is told why.
    Never,
    /// Allow every such request without asking.
    Always,
}

/// A command the model asks to run outside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// `bash` or `background_run`.
    pub tool: &'static str,
    pub command: String,
    /// The model's reason, shown to the user.
    pub reason: String,
}

/// The user's answer to one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Allow this call.
    Once,
    /// Allow this exact command for the rest of the session.
    Session,
    Deny,
}

/// A question waiting for the user, and where the answer goes.
pub struct Question {
    pub escalation: Escalation,
    pub answer: oneshot::Sender<Answer>,
}

/// Why a command may run outside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounds {
    /// The user allowed this call.
    Once,
    /// The user allowed this command for the session (now or earlier).
    Session,
    /// `--approval always`.
    Always,
}

/// What was decided for one escalation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved(Grounds),
    /// Refused; the text is for the model.
    Refused(String),
}

impl Grounds {
    /// The note the model gets with the command's result.
    pub fn note(self) -> &'static str {
        match self {
            Grounds::Once => "[ran outside the sandbox: approved once by the user]",
            Grounds::Session => {
                "[ran outside the sandbox: the user approved this command for the session]"
            }
            Grounds::Always => "[ran outside the sandbox: --approval always]",
        }
    }
}

/// The policy of a run, and what the user allowed for the session.
pub struct Approvals {
    policy: ApprovalPolicy,
    /// Where questions go under [`ApprovalPolicy::Ask`].
    asker: Option<mpsc::Sender<Question>>,
    session: Mutex<HashSet<String>>,
}

impl Approvals {
    /// The approvals of a run, and under [`ApprovalPolicy::Ask`] the receiving end of
    /// its questions, for the REPL to answer.
    pub fn new(policy: ApprovalPolicy) -> (Approvals, Option<mpsc::Receiver<Question>>) {
        let (asker, questions) = match policy {
            ApprovalPolicy::Ask => {
                let (tx, rx) = mpsc::channel(1);
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let approvals = Approvals {
            policy,
            asker,
            session: Mutex::new(HashSet::new()),
        };
        (approvals, questions)
    }

    /// Decides whether `escalation` may run outside the sandbox, asking the user if the
    /// policy says so.
    pub async fn decide(&self, escalation: Escalation) -> Verdict {
        match self.policy {
            ApprovalPolicy::Always => Verdict::Approved(Grounds::Always),
            ApprovalPolicy::Never => Verdict::Refused(
                "refused: running a command outside the sandbox needs the user's approval, and \
                 this run does not ask for it (--approval never). Do the work inside the \
                 sandbox (it can write the workspace and the temporary directory, with no \
                 network), or stop and tell the user what you need and why."
                    .to_string(),
            ),
            ApprovalPolicy::Ask => self.ask(escalation).await,
        }
    }

    async fn ask(&self, escalation: Escalation) -> Verdict {
        if self.allowed_for_session(&escalation.command) {
            return Verdict::Approved(Grounds::Session);
        }
        let command = escalation.command.clone();
        let (answer_tx, answer_rx) = oneshot::channel();
        let question = Question {
            escalation,
            answer: answer_tx,
        };
        let sent = match &self.asker {
            Some(asker) => asker.send(question).await.is_ok(),
            None => false,
        };
        if !sent {
            return Verdict::Refused(
                "refused: nobody can approve running a command outside the sandbox here; do \
                 the work inside the sandbox."
                    .to_string(),
            );
        }
        match answer_rx.await.unwrap_or(Answer::Deny) {
            Answer::Once => Verdict::Approved(Grounds::Once),
            Answer::Session => {
                self.session
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(command);
                Verdict::Approved(Grounds::Session)
            }
            Answer::Deny => Verdict::Refused(
                "refused: the user denied running this command outside the sandbox. Do not \
                 ask again for the same thing: do the work inside the sandbox, or ask the user \
                 how to go on."
                    .to_string(),
            ),
        }
    }

    fn allowed_for_session(&self, command: &str) -> bool {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(command)
    }
}

/// Reads the user's answer to the approval prompt: `o`/`once`/`y`/`yes`, `s`/`session`,
/// anything else denies.
pub fn parse_answer(line: &str) -> Answer {
    match line.trim().to_ascii_lowercase().as_str() {
        "o" | "once" | "y" | "yes" | "a" | "allow" => Answer::Once,
        "s" | "session" => Answer::Session,
        _ => Answer::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escalation(command: &str) -> Escalation {
        Escalation {
            tool: "bash",
            command: command.to_string(),
            reason: "needs the network".to_string(),
        }
    }

    #[tokio::test]
    async fn never_and_always_decide_without_asking() {
        let (never, questions) = Approvals::new(ApprovalPolicy::Never);
        assert!(questions.is_none());
        assert!(matches!(
            never.decide(escalation("curl x")).await,
            Verdict::Refused(text) if text.contains("--approval never")
        ));
        let (always, _) = Approvals::new(ApprovalPolicy::Always);
        assert_eq!(
            always.decide(escalation("curl x")).await,
            Verdict::Approved(Grounds::Always)
        );
    }

    #[tokio::test]
    async fn a_session_answer_covers_that_exact_command_only() {
        let (approvals, questions) = Approvals::new(ApprovalPolicy::Ask);
        let mut questions = questions.unwrap();
        let answers = tokio::spawn(async move {
            let mut asked = Vec::new();
            while let Some(question) = questions.recv().await {
                asked.push(question.escalation.command.clone());
                let answer = if asked.len() == 1 {
                    Answer::Session
                } else {
                    Answer::Deny
                };
                let _ = question.answer.send(answer);
            }
            asked
        });
        assert_eq!(
            approvals.decide(escalation("curl a")).await,
            Verdict::Approved(Grounds::Session)
        );
        // Allowed for the session: not asked again.
        assert_eq!(
            approvals.decide(escalation("curl a")).await,
            Verdict::Approved(Grounds::Session)
        );
        assert!(matches!(
            approvals.decide(escalation("curl b")).await,
            Verdict::Refused(text) if text.contains("denied")
        ));
        drop(approvals);
        assert_eq!(answers.await.unwrap(), ["curl a", "curl b"]);
    }

    #[test]
    fn answers_are_read_leniently_and_default_to_deny() {
        assert_eq!(parse_answer(" O\n"), Answer::Once);
        assert_eq!(parse_answer("session"), Answer::Session);
        assert_eq!(parse_answer(""), Answer::Deny);
        assert_eq!(parse_answer("sure, whatever"), Answer::Deny);
    }
}
