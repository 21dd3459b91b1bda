//! `agent sessions list`, and what a run and the REPL's `/resume` do to work in a
//! session: open it, hand its background tasks to the BackgroundManager, give its
//! history and recorder to the agent. The one session module that prints is this one,
//! for `agent sessions list` (like `plugin_commands`).

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::agent::Agent;
use crate::background::BackgroundManager;
use crate::cli::{Cli, SessionsCommand};
use crate::config::Config;
use crate::session::restore::{self, Choice, Opened, Resumed};
use crate::session::{SessionSummary, list};
use crate::ui_text::{clip, json_line, one_line};

/// Which session the flags ask for.
pub fn choice(cli: &Cli) -> Choice {
    match (&cli.resume, cli.continue_session) {
        (Some(id), _) => Choice::Id(id.clone()),
        (None, true) => Choice::Newest,
        (None, false) => Choice::New,
    }
}

/// Opens the session of this run (new, or taken up again).
pub fn open(config: &Config, choice: &Choice) -> Result<Opened> {
    Ok(restore::open(
        &config.sessions_dir,
        choice,
        &config.workspace,
        &config.model.provider,
        &config.model.model,
    )?)
}

/// Makes `opened` the session `agent` and `background` work in: its earlier tasks are
/// known (and reported) again, and every change from now on is recorded in it.
pub fn attach(opened: Opened, agent: &mut Agent, background: &BackgroundManager) {
    background.restore(opened.tasks);
    background.set_observer(Some(Arc::new(opened.recorder.clone())));
    agent.switch_session(opened.history, Some(opened.recorder));
}

/// `/resume ID` in the REPL: switches to that session. Refused while background tasks
/// of this one run or wait to be delivered, so none of their results is lost.
pub fn resume_in_repl(
    id: &str,
    config: &Config,
    agent: &mut Agent,
    background: &BackgroundManager,
) -> Result<Resumed> {
    if background.has_pending() {
        anyhow::bail!(
            "background tasks of this session are running or not yet delivered to the model; wait for them (or /kill them) before switching"
        );
    }
    let (found, _) = list::find(&config.sessions_dir, id)?;
    if agent.session_id() == Some(found.as_str()) {
        anyhow::bail!("this is session {found} already");
    }
    let opened = open(config, &Choice::Id(found))?;
    let resumed = opened.resumed.clone();
    attach(opened, agent, background);
    resumed.ok_or_else(|| anyhow::anyhow!("no session was resumed"))
}

/// `/resume` without an id: the recent sessions of this workspace, one line each, ready
/// to print.
pub fn recent_in_workspace(config: &Config, current: Option<&str>) -> Vec<String> {
    let sessions: Vec<SessionSummary> = list::of_workspace(&config.sessions_dir, &config.workspace)
        .into_iter()
        .take(10)
        .collect();
    if sessions.is_empty() {
        return vec!["no earlier sessions in this workspace".into()];
    }
    let mut lines: Vec<String> = sessions
        .iter()
        .map(|s| {
            let mark = if current == Some(s.id.as_str()) {
                " (this one)"
            } else {
                ""
            };
            format!("{}{mark}", summary_line(s, false))
        })
        .collect();
    lines.push("type /resume ID (or the start of one) to switch".into());
    lines
}

/// `agent sessions ...`.
pub fn run(command: &SessionsCommand, config: &Config) -> Result<()> {
    match command {
        SessionsCommand::List { json } => {
            let sessions = list::all(&config.sessions_dir);
            if *json {
                for s in &sessions {
                    println!("{}", json_line(&summary_json(s)));
                }
            } else if sessions.is_empty() {
                eprintln!(
                    "no sessions yet (transcripts are kept in {})",
                    one_line(&config.sessions_dir.display().to_string())
                );
            } else {
                for s in &sessions {
                    println!("{}", summary_line(s, true));
                }
            }
        }
    }
    Ok(())
}

/// One session on one line, safe to print: id, start, turns, workspace, first request
/// (its first line, clipped).
pub fn summary_line(s: &SessionSummary, with_workspace: bool) -> String {
    let started = s.started.replace('T', " ").replace('Z', "");
    let workspace = if with_workspace {
        format!("  {}", s.workspace.display())
    } else {
        String::new()
    };
    let prompt = clip(s.first_prompt.as_deref().unwrap_or(""), 60);
    let line = format!(
        "{}  {}  {:>3} turn{}{workspace}  {prompt}",
        s.id,
        started,
        s.prompts,
        if s.prompts == 1 { " " } else { "s" },
    );
    // All of it from a file, the prompt from whoever typed it: no control goes out.
    one_line(&line).into_owned()
}

fn summary_json(s: &SessionSummary) -> serde_json::Value {
    json!({
        "id": s.id,
        "workspace": s.workspace,
        "started": s.started,
        "turns": s.prompts,
        "model_calls": s.model_calls,
        "first_prompt": s.first_prompt,
        "transcript": s.path,
    })
}
