//! The loop and its transcript: what the agent records replays to the very history it
//! holds, tool results, appended background results and all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Agent;
use super::scripted::{Scripted, call, done, tools};
use crate::background::{BackgroundConfig, BackgroundManager};
use crate::render::{OutputFormat, Renderer};
use crate::session::replay;
use crate::session::restore::{self, Choice};
use crate::status::StatusLine;
use crate::tools::native::{NativeConfig, NativeTools};
use crate::tools::{NATIVE_OWNER, ToolRegistry};

#[tokio::test]
async fn the_transcript_replays_to_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let background = BackgroundManager::new(BackgroundConfig {
        workspace: workspace.clone(),
        log_dir: dir.path().join("logs"),
        max_running: 4,
        max_tasks: 16,
        sandbox: Arc::new(crate::sandbox::Sandbox::off()),
    });
    let native = NativeTools::new(
        NativeConfig {
            workspace: workspace.clone(),
            bash_timeout: Duration::from_secs(60),
            background_timeout: Duration::from_secs(60),
            sandbox: Arc::new(crate::sandbox::Sandbox::off()),
        },
        background.clone(),
        Arc::new(crate::approval::Approvals::new(crate::approval::ApprovalPolicy::Never).0),
    );
    let mut registry = ToolRegistry::new();
    assert!(
        registry
            .add_group(NATIVE_OWNER, native.into_tools())
            .is_empty()
    );
    let model = Scripted::new(vec![
        tools(vec![
            call(
                "b1",
                "background_run",
                json!({"command": "sleep 2; echo from-the-task"}),
            ),
            call("s1", "bash", json!({"command": "echo now"})),
        ]),
        done("started"),
        done("got it"),
    ]);
    let mut agent = Agent::new(
        model.clone(),
        registry,
        background.clone(),
        Renderer::new(OutputFormat::Text, StatusLine::disabled()),
        "system".into(),
    );
    let sessions = dir.path().join("sessions");
    let opened = restore::open(&sessions, &Choice::New, &workspace, "test", "m").unwrap();
    let path = opened.recorder.path().to_path_buf();
    crate::session_commands::attach(opened, &mut agent, &background);

    agent.run_turn(Some("start it")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), background.wait_for_notification())
        .await
        .unwrap();
    agent.run_turn(None).await.unwrap();

    let replayed = replay::read(&path).unwrap();
    assert_eq!(replayed.history, agent.history());
    assert_eq!((replayed.prompts, replayed.model_calls), (1, 3));
    let task = &replayed.tasks[0];
    assert_eq!(task.id, "bg-1");
    assert!(task.finished.is_some() && task.delivered, "{task:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    background.kill_all_now();
}
