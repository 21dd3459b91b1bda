//! Compaction in process, against the scripted model: where the history may be cut, what
//! the summary request holds, that a failed summary leaves the history as it was, and a
//! long loop that stays inside a small window.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Agent;
use super::scripted::{Scripted, Turn, assert_protocol, call, done, text, tools};
use crate::background::{BackgroundConfig, BackgroundManager};
use crate::context::compact::{self, SUMMARY_INSTRUCTION, cut_points};
use crate::context::estimate::request_tokens;
use crate::context::{Context, Frame, WindowSettings};
use crate::model::{ContentBlock, Message, Role, ToolDefinition};
use crate::render::{OutputFormat, Renderer};
use crate::status::StatusLine;
use crate::tools::{Tool, ToolContext, ToolFuture, ToolOutput, ToolRegistry, ToolSpec};

fn user(blocks: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::User,
        content: blocks,
    }
}

fn assistant(blocks: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::Assistant,
        content: blocks,
    }
}

fn result(id: &str, output: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.into(),
        content: output.into(),
        is_error: false,
    }
}

/// A user prompt, then `n` exchanges of one or two tool calls each, a second prompt in
/// the middle, and the results of the last calls at the end.
fn session(n: usize, output: &str) -> Vec<Message> {
    let mut history = vec![user(vec![text("please fix the build")])];
    for i in 0..n {
        if i == n / 2 {
            history.push(assistant(vec![text("half done")]));
            history.push(user(vec![text("go on")]));
        }
        let a = format!("a{i}");
        let b = format!("b{i}");
        let mut calls = vec![call(&a, "read_file", json!({"path": format!("f{i}.rs")}))];
        let mut results = vec![result(&a, output)];
        if i % 3 == 0 {
            calls.push(call(&b, "bash", json!({"command": "ls"})));
            results.push(result(&b, "ok"));
        }
        history.push(assistant(calls));
        history.push(user(results));
    }
    history
}

fn renderer() -> Renderer {
    Renderer::new(OutputFormat::Json, StatusLine::disabled())
}

#[tokio::test]
async fn every_cut_point_keeps_tool_pairs_and_the_alternation() {
    let history = session(8, "contents");
    let cuts = cut_points(&history);
    // Never before a user message that answers calls.
    for &k in &cuts {
        let starts_with_results = history[k]
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }));
        assert!(!starts_with_results, "cut {k}");
    }
    assert!(cuts.len() > 8, "{cuts:?}");
    for k in cuts {
        let model = Scripted::new(vec![]);
        let mut compacted = history.clone();
        let mut events = |_| {};
        let c = compact::compact(&mut compacted, k, 100_000, &*model, &mut events)
            .await
            .unwrap();
        assert_eq!(c.kept_from, k);
        assert_protocol(&compacted);
        let first = match &compacted[0].content[0] {
            ContentBlock::Text { text } => text.clone(),
            other => panic!("{other:?}"),
        };
        assert!(first.starts_with("<conversation-summary>"), "{first}");
        assert!(first.contains("files a.rs read"));
        // The recent part is verbatim.
        let tail = &history[k + usize::from(history[k].role == Role::User)..];
        assert_eq!(&compacted[compacted.len() - tail.len()..], tail);
        let summaries = model.summaries();
        assert_eq!(summaries.len(), 1);
        let request = &summaries[0];
        assert_eq!(request.len(), 1, "one user message");
        let ContentBlock::Text { text: prompt } = &request[0].content[0] else {
            panic!("the summary request is text")
        };
        assert!(prompt.ends_with(SUMMARY_INSTRUCTION));
        assert!(prompt.contains("please fix the build"));
    }
}

#[tokio::test]
async fn a_failed_summary_leaves_the_history_unchanged() {
    let model = Scripted::new(vec![]);
    model.fail_summaries();
    let history = session(10, "short output");
    let mut kept = history.clone();
    let mut context = Context::new(WindowSettings {
        window: 500,
        compact_at: 0.8,
        answer_tokens: 0,
        source: "test".into(),
    });
    let frame = Frame {
        system: "system",
        tools: &[],
    };
    let error = context
        .compact_now(&mut kept, &*model, &renderer())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("summary call failed"), "{error}");
    assert_eq!(kept, history);
    // Through `fit` too: a warning, no compaction, nothing lost (nothing long to cut).
    assert!(
        context
            .fit(&mut kept, frame, &*model, &renderer())
            .await
            .is_none()
    );
    assert_eq!(kept, history);
    assert_eq!(model.summaries().len(), 2);
}

#[tokio::test]
async fn fit_cuts_old_results_first_and_summarizes_only_when_still_over() {
    let big = "line of a large file\n".repeat(500);
    let model = Scripted::new(vec![]);
    let frame = Frame {
        system: "system",
        tools: &[],
    };
    // 12 results of ~10 KB: cutting the old ones to head and tail is enough.
    let mut history = session(12, &big);
    let window = request_tokens(frame, &history) * 7 / 10;
    let mut context = Context::new(WindowSettings {
        window,
        compact_at: 1.0,
        answer_tokens: 0,
        source: "test".into(),
    });
    assert!(
        context
            .fit(&mut history, frame, &*model, &renderer())
            .await
            .is_none()
    );
    assert!(model.summaries().is_empty(), "no summary was needed");
    assert!(request_tokens(frame, &history) <= window);
    assert_protocol(&history);
    let cut = history.iter().flat_map(|m| &m.content).filter(|b| {
        matches!(b, ContentBlock::ToolResult { content, .. } if content.contains("the full text is in the file"))
    });
    assert!(cut.count() >= 9);
    // A window too small for the cut results too: summarized.
    let mut context = Context::new(WindowSettings {
        window: request_tokens(frame, &history) / 3,
        compact_at: 1.0,
        answer_tokens: 0,
        source: "test".into(),
    });
    let compacted = context.fit(&mut history, frame, &*model, &renderer()).await;
    assert!(compacted.is_some());
    assert_eq!(model.summaries().len(), 1);
    assert_protocol(&history);
    assert!(request_tokens(frame, &history) <= context.settings().limit());
}

/// A tool whose every answer is `size` bytes.
struct Big {
    spec: ToolSpec,
    size: usize,
}

impl Tool for Big {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, input: &'a Value, _: &'a ToolContext) -> ToolFuture<'a> {
        let line = format!("{input} ");
        let text = line.repeat(self.size / line.len() + 1);
        Box::pin(async move { Ok(ToolOutput::ok(text)) })
    }
}

#[tokio::test]
async fn a_long_loop_stays_inside_a_small_window() {
    let dir = tempfile::tempdir().unwrap();
    let background = BackgroundManager::new(BackgroundConfig {
        workspace: dir.path().to_path_buf(),
        log_dir: dir.path().join("logs"),
        max_running: 1,
        max_tasks: 1,
        sandbox: Arc::new(crate::sandbox::Sandbox::off()),
    });
    let mut registry = ToolRegistry::new();
    let big: Arc<dyn Tool> = Arc::new(Big {
        spec: ToolSpec {
            name: "big".into(),
            description: "answers a lot".into(),
            input_schema: json!({"type": "object"}),
            hints: Default::default(),
        },
        size: 6_000,
    });
    assert!(registry.add_group("test", vec![big]).is_empty());
    let turns: Vec<Turn> = (0..40)
        .map(|i| tools(vec![call(&format!("t{i}"), "big", json!({"n": i}))]))
        .chain([done("all done")])
        .collect();
    let model = Scripted::new(turns);
    let mut agent = Agent::new(
        model.clone(),
        registry,
        background,
        renderer(),
        "system".into(),
    );
    let settings = WindowSettings {
        window: 16_000,
        compact_at: 0.8,
        answer_tokens: 0,
        source: "test".into(),
    };
    agent.set_context_window(settings.clone());
    let end = tokio::time::timeout(Duration::from_secs(60), agent.run_turn(Some("work")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, super::TurnEnd::Done);
    let definitions: Vec<ToolDefinition> = agent.tool_definitions.clone();
    let frame = Frame {
        system: "system",
        tools: &definitions,
    };
    let requests = model.requests();
    assert_eq!(requests.len(), 41);
    for (i, request) in requests.iter().enumerate() {
        let tokens = request_tokens(frame, request);
        assert!(tokens <= settings.limit(), "request {i}: {tokens} tokens");
    }
    assert!(!model.summaries().is_empty(), "compacted at least once");
    assert_protocol(agent.history());
}
