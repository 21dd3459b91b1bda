//! The loop against a scripted model, in process: real native tools and background tasks,
//! scripted tools where a test needs to see how calls overlap. Every request the loop
//! sends is checked against the Messages API's tool protocol ([`super::scripted`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::time::timeout;

use super::scripted::{Scripted, Turn, answer, call, done, text, tools};
use super::{Agent, TurnEnd, TurnError};
use crate::approval::{ApprovalPolicy, Approvals};
use crate::background::{BackgroundConfig, BackgroundManager};
use crate::model::{ContentBlock, Message, Role, StopReason, ToolInput};
use crate::render::{OutputFormat, Renderer};
use crate::status::StatusLine;
use crate::tools::native::{NativeConfig, NativeTools};
use crate::tools::{
    NATIVE_OWNER, Tool, ToolContext, ToolError, ToolFuture, ToolHints, ToolOutput, ToolRegistry,
    ToolSpec,
};

/// Long enough for any step a test waits on; a test that needs it has failed.
const PATIENCE: Duration = Duration::from_secs(20);

/// The results at the start of the last user message, as (id, text, is_error).
fn last_results(messages: &[Message]) -> Vec<(String, String, bool)> {
    let last = messages.last().expect("a message");
    assert_eq!(last.role, Role::User);
    last.content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Some((tool_use_id.clone(), content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

struct Setup {
    agent: Agent,
    model: Arc<Scripted>,
    background: BackgroundManager,
    _dir: tempfile::TempDir,
}

/// An agent with the real native tools (in a fresh workspace) and `extra` tools.
fn setup(turns: Vec<Turn>, extra: Vec<Arc<dyn Tool>>) -> Setup {
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
            workspace,
            bash_timeout: Duration::from_secs(60),
            background_timeout: Duration::from_secs(60),
            sandbox: Arc::new(crate::sandbox::Sandbox::off()),
        },
        background.clone(),
        Arc::new(Approvals::new(ApprovalPolicy::Never).0),
    );
    let mut registry = ToolRegistry::new();
    assert!(
        registry
            .add_group(NATIVE_OWNER, native.into_tools())
            .is_empty()
    );
    assert!(registry.add_group("test", extra).is_empty());
    let model = Scripted::new(turns);
    let renderer = Renderer::new(OutputFormat::Text, StatusLine::disabled());
    let agent = Agent::new(
        model.clone(),
        registry,
        background.clone(),
        renderer,
        "system".into(),
    );
    Setup {
        agent,
        model,
        background,
        _dir: dir,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.background.kill_all_now();
    }
}

/// A scripted tool: logs when each call starts and ends, and runs `body`.
struct Probe {
    spec: ToolSpec,
    log: Arc<Mutex<Vec<String>>>,
    body: Box<dyn Fn() -> ToolFuture<'static> + Send + Sync>,
}

impl Probe {
    fn tool(
        name: &str,
        read_only: bool,
        log: &Arc<Mutex<Vec<String>>>,
        body: impl Fn() -> ToolFuture<'static> + Send + Sync + 'static,
    ) -> Arc<dyn Tool> {
        Arc::new(Probe {
            spec: ToolSpec {
                name: name.into(),
                description: "a probe".into(),
                input_schema: json!({"type": "object"}),
                hints: ToolHints {
                    read_only,
                    ..ToolHints::default()
                },
            },
            log: log.clone(),
            body: Box::new(body),
        })
    }
}

impl Tool for Probe {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, _input: &'a Value, context: &'a ToolContext) -> ToolFuture<'a> {
        Box::pin(async move {
            let log = |what: &str| {
                let line = format!("{what} {}", context.call_id);
                self.log.lock().unwrap().push(line);
            };
            log("start");
            let output = (self.body)().await;
            log("end");
            output
        })
    }
}

#[tokio::test]
async fn a_tool_call_is_answered_and_its_result_is_in_the_next_request() {
    let mut s = setup(
        vec![
            tools(vec![
                text("looking"),
                call("t1", "bash", json!({"command": "echo hi"})),
            ]),
            done("it said hi"),
        ],
        vec![],
    );
    let end = s.agent.run_turn(Some("run echo")).await.unwrap();
    assert_eq!(end, TurnEnd::Done);
    let requests = s.model.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        last_results(&requests[1]),
        [("t1".into(), "hi".into(), false)]
    );
    assert_eq!(s.agent.history().len(), 4);
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_drops_its_unfinished_call_and_ends_the_turn() {
    let mut s = setup(
        vec![
            answer(
                vec![
                    text("partial"),
                    call("t1", "bash", json!({"command": "ec"})),
                ],
                StopReason::MaxTokens,
            ),
            done("again"),
        ],
        vec![],
    );
    let end = s.agent.run_turn(Some("go")).await.unwrap();
    assert_eq!(end, TurnEnd::MaxTokens);
    assert_eq!(s.agent.history()[1].content, vec![text("partial")]);
    assert_eq!(
        s.agent.run_turn(Some("go on")).await.unwrap(),
        TurnEnd::Done
    );
    assert_eq!(s.model.requests().len(), 2);
}

#[tokio::test]
async fn an_interrupted_model_call_or_tool_call_leaves_a_valid_conversation() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let quick = Probe::tool("quick", true, &log, || {
        Box::pin(async { Ok(ToolOutput::ok("quick result")) })
    });
    let mut s = setup(
        vec![
            Turn::Hang,
            tools(vec![
                call("q1", "quick", json!({})),
                call("b1", "bash", json!({"command": "sleep 30"})),
            ]),
            done("fine"),
        ],
        vec![quick],
    );
    // Interrupted while the model answers: the user's text stays, the next turn adds to it.
    let cut = timeout(Duration::from_millis(200), s.agent.run_turn(Some("one"))).await;
    assert!(cut.is_err());
    s.agent.repair_after_interrupt();
    // Interrupted while `bash` runs, after `quick` finished.
    let cut = timeout(Duration::from_millis(500), s.agent.run_turn(Some("two"))).await;
    assert!(cut.is_err());
    s.agent.repair_after_interrupt();
    assert_eq!(
        s.agent.run_turn(Some("three")).await.unwrap(),
        TurnEnd::Done
    );
    let requests = s.model.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1][0].content, vec![text("one"), text("two")]);
    let results = last_results(&requests[2]);
    assert_eq!(results[0], ("q1".into(), "quick result".into(), false));
    assert_eq!(results[1].0, "b1");
    assert!(
        results[1].1.contains("interrupted") && results[1].2,
        "{results:?}"
    );
    assert_eq!(
        requests[2].last().unwrap().content.last(),
        Some(&text("three"))
    );
}

#[tokio::test]
async fn a_finished_background_task_is_delivered_after_the_tool_results_before_the_next_call() {
    let mut s = setup(
        vec![
            tools(vec![call(
                "r1",
                "background_run",
                json!({"command": "sleep 0.3; echo from-the-background"}),
            )]),
            // The task finishes while this command runs.
            tools(vec![call("b1", "bash", json!({"command": "sleep 2"}))]),
            done("seen"),
        ],
        vec![],
    );
    assert_eq!(s.agent.run_turn(Some("go")).await.unwrap(), TurnEnd::Done);
    let requests = s.model.requests();
    let last = requests[2].last().unwrap();
    assert!(
        matches!(&last.content[0], ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == "b1")
    );
    let ContentBlock::Text { text } = &last.content[1] else {
        panic!("no background results in {last:?}");
    };
    assert!(text.starts_with("<background-results>") && text.contains("from-the-background"));
    assert!(!s.background.has_pending());
}

#[tokio::test]
async fn a_task_that_finishes_between_turns_starts_a_turn_of_its_own() {
    let mut s = setup(
        vec![
            tools(vec![call(
                "r1",
                "background_run",
                json!({"command": "sleep 0.3; echo late"}),
            )]),
            done("started"),
            done("noted"),
        ],
        vec![],
    );
    assert_eq!(s.agent.run_turn(Some("go")).await.unwrap(), TurnEnd::Done);
    timeout(PATIENCE, s.background.wait_for_notification())
        .await
        .expect("the task finishes");
    assert_eq!(s.agent.run_turn(None).await.unwrap(), TurnEnd::Done);
    let requests = s.model.requests();
    let ContentBlock::Text { text } = &requests[2].last().unwrap().content[0] else {
        panic!("no background results");
    };
    assert!(text.contains("late"), "{text}");
    assert_eq!(s.agent.run_turn(None).await.unwrap(), TurnEnd::Idle);
}

#[tokio::test]
async fn input_that_is_not_a_json_object_is_answered_without_running_the_tool() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let probe = Probe::tool("probe", false, &log, || {
        Box::pin(async { Ok(ToolOutput::ok("ran")) })
    });
    let broken = ContentBlock::ToolUse {
        id: "p1".into(),
        name: "probe".into(),
        input: ToolInput::parse(r#"{"path": "a"#),
    };
    let mut s = setup(vec![tools(vec![broken]), done("ok")], vec![probe]);
    s.agent.run_turn(Some("go")).await.unwrap();
    assert!(log.lock().unwrap().is_empty(), "the tool ran");
    let requests = s.model.requests();
    let (_, said, is_error) = &last_results(&requests[1])[0];
    assert!(*is_error && said.contains("invalid input") && said.contains(r#"{"path": "a"#));
    let ContentBlock::ToolUse { input, .. } = &requests[1][1].content[0] else {
        panic!("no call in history");
    };
    assert_eq!(*input, ToolInput::from_value(json!({})));
}

#[tokio::test]
async fn read_only_calls_run_together_and_others_alone_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    // Each read-only call waits for the other: run one after the other, they never end.
    let barrier = Arc::new(Barrier::new(2));
    let meet = move || -> ToolFuture<'static> {
        let barrier = barrier.clone();
        Box::pin(async move {
            barrier.wait().await;
            Ok(ToolOutput::ok("met"))
        })
    };
    let reader = Probe::tool("reader", true, &log, meet);
    let writer = Probe::tool("writer", false, &log, || {
        Box::pin(async { Ok(ToolOutput::ok("wrote")) })
    });
    let mut s = setup(
        vec![
            tools(vec![
                call("a", "reader", json!({})),
                call("b", "reader", json!({})),
                call("w", "writer", json!({})),
                call("c", "reader", json!({})),
                call("d", "reader", json!({})),
            ]),
            done("ok"),
        ],
        vec![reader, writer],
    );
    timeout(PATIENCE, s.agent.run_turn(Some("go")))
        .await
        .expect("the read-only calls ran one after the other and waited forever")
        .unwrap();
    let log = log.lock().unwrap().clone();
    let at = |line: &str| log.iter().position(|l| l == line).unwrap();
    assert!(
        at("start b") < at("end a") && at("start a") < at("end b"),
        "{log:?}"
    );
    assert!(at("end a").max(at("end b")) < at("start w"), "{log:?}");
    assert!(at("end w") < at("start c").min(at("start d")), "{log:?}");
    let ids: Vec<String> = last_results(&s.model.requests()[1])
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["a", "b", "w", "c", "d"]);
}

#[tokio::test]
async fn a_fatal_tool_error_answers_every_call_and_ends_the_turn() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let broken = Probe::tool("broken", false, &log, || {
        Box::pin(async {
            Err(ToolError::Fatal(anyhow::anyhow!(
                "the host is out of order"
            )))
        })
    });
    let mut s = setup(
        vec![
            tools(vec![
                call("x", "broken", json!({})),
                call("y", "bash", json!({"command": "touch never-made"})),
            ]),
            done("ok"),
        ],
        vec![broken],
    );
    let error = s.agent.run_turn(Some("go")).await.unwrap_err();
    assert!(
        matches!(&error, TurnError::Tool { tool, .. } if tool == "broken"),
        "{error}"
    );
    assert_eq!(
        s.agent.run_turn(Some("again")).await.unwrap(),
        TurnEnd::Done
    );
    let results = last_results(&s.model.requests()[1]);
    assert!(
        results.iter().all(|(_, _, is_error)| *is_error),
        "{results:?}"
    );
    assert!(results[1].1.starts_with("not run"), "{results:?}");
}
