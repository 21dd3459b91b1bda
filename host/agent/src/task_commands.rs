//! What can be done with background tasks from outside the loop, one operation each, shared
//! by the model's tools (`background_run`, `check_background`, `kill_background`) and the
//! REPL's `/tasks` and `/kill`, so both act and answer alike. Each runs on the
//! [`BackgroundManager`] and words the result through [`crate::task_text`]; none prints.

use std::time::Duration;

use crate::background::{BackgroundError, BackgroundManager};
use crate::process::Confinement;
use crate::task_text;
use crate::tasklog::{self, Page};

/// Starts a task; the answer tells the model its id and that the result will come.
pub fn start(
    background: &BackgroundManager,
    command: &str,
    timeout: Duration,
    confinement: Confinement,
) -> Result<String, BackgroundError> {
    let id = background.start(command, timeout, confinement)?;
    Ok(task_text::started(&id, command, timeout))
}

/// [`start`] for a task watched for readiness or given a stdin pipe.
pub fn start_with(
    background: &BackgroundManager,
    command: &str,
    timeout: Duration,
    confinement: Confinement,
    extras: crate::background_state::Extras,
) -> Result<String, BackgroundError> {
    let said = task_text::started_extras(extras.watch.as_ref(), extras.stdin);
    let id = background.start_with(command, timeout, confinement, extras)?;
    Ok(task_text::started(&id, command, timeout) + &said)
}

/// One summary line per task, or a line saying there are none.
pub fn list(background: &BackgroundManager) -> Vec<String> {
    task_text::listing(&background.list())
}

/// One task in detail, or one page of its log.
pub async fn check(
    background: &BackgroundManager,
    id: &str,
    page: Option<Page>,
) -> Result<String, BackgroundError> {
    let task = background.info(id)?;
    let Some(page) = page else {
        return Ok(task_text::details(&task));
    };
    let path = task.log_path.clone();
    let read = tokio::task::spawn_blocking(move || tasklog::read_page(&path, page))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|source| BackgroundError::ReadLog {
            path: task.log_path.clone(),
            source,
        })?;
    Ok(task_text::log_page(&task, &read))
}

/// Stops a task; the answer says whether it was stopping, dequeued, or already over.
pub fn kill(background: &BackgroundManager, id: &str) -> Result<String, BackgroundError> {
    let status = background.kill(id)?;
    Ok(task_text::kill_answer(id, status))
}
