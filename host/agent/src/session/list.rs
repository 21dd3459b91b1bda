//! Finding sessions: every transcript in the sessions directory, the newest one of a
//! workspace (`--continue`), the one an id or a unique prefix of it names (`--resume`).
//!
//! "Newest" is by last activity (the transcript's modification time), so a session taken
//! up again is the one `--continue` continues. Sessions without a message (an agent
//! started and left at once, or killed before its first request) are not listed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::clock::is_id_like;
use super::replay;
use super::{Replayed, SessionError};

/// One session, as `agent sessions list` shows it.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: String,
    pub workspace: PathBuf,
    pub started: String,
    /// The user's requests.
    pub prompts: usize,
    pub model_calls: usize,
    pub first_prompt: Option<String>,
    pub path: PathBuf,
    pub modified: SystemTime,
}

impl SessionSummary {
    fn of(replayed: Replayed, path: PathBuf, modified: SystemTime) -> SessionSummary {
        SessionSummary {
            id: replayed.header.id,
            workspace: replayed.header.workspace,
            started: replayed.header.started,
            prompts: replayed.prompts,
            model_calls: replayed.model_calls,
            first_prompt: replayed.first_prompt,
            path,
            modified,
        }
    }
}

/// The transcripts in `dir` as (id, path), those whose name is not an id left out.
fn transcripts(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name.strip_suffix(".jsonl")?;
            is_id_like(id).then(|| (id.to_string(), entry.path()))
        })
        .collect()
}

/// Every session with at least one message, newest activity first. Transcripts that
/// cannot be read are left out.
pub fn all(dir: &Path) -> Vec<SessionSummary> {
    let mut sessions: Vec<SessionSummary> = transcripts(dir)
        .into_iter()
        .filter_map(|(id, path)| {
            let modified = std::fs::symlink_metadata(&path).ok()?.modified().ok()?;
            let replayed = replay::read(&path).ok()?;
            (replayed.header.id == id && !replayed.history.is_empty())
                .then(|| SessionSummary::of(replayed, path, modified))
        })
        .collect();
    sessions.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.id.cmp(&a.id)));
    sessions
}

/// The sessions of `workspace` (a canonical path), newest first.
pub fn of_workspace(dir: &Path, workspace: &Path) -> Vec<SessionSummary> {
    all(dir)
        .into_iter()
        .filter(|s| s.workspace == workspace)
        .collect()
}

/// The newest session of `workspace`, for `--continue`.
pub fn newest(dir: &Path, workspace: &Path) -> Result<(String, PathBuf), SessionError> {
    of_workspace(dir, workspace)
        .into_iter()
        .next()
        .map(|s| (s.id, s.path))
        .ok_or_else(|| SessionError::NothingToContinue(workspace.to_path_buf()))
}

/// The session `prefix` names: its whole id, or the start of exactly one id.
pub fn find(dir: &Path, prefix: &str) -> Result<(String, PathBuf), SessionError> {
    let prefix = prefix.trim();
    if !is_id_like(prefix) {
        return Err(SessionError::Unknown(prefix.to_string()));
    }
    let mut matches: Vec<(String, PathBuf)> = transcripts(dir)
        .into_iter()
        .filter(|(id, _)| id.starts_with(prefix))
        .collect();
    if let Some(exact) = matches.iter().position(|(id, _)| id == prefix) {
        return Ok(matches.swap_remove(exact));
    }
    match matches.len() {
        0 => Err(SessionError::Unknown(prefix.to_string())),
        1 => Ok(matches.remove(0)),
        _ => {
            let mut ids: Vec<String> = matches.into_iter().map(|(id, _)| id).collect();
            ids.sort();
            Err(SessionError::Ambiguous {
                prefix: prefix.to_string(),
                matches: ids,
            })
        }
    }
}
