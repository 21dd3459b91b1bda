//! Context that never overflows, through the real binary: a 60-call session in a small
//! `--context-window` keeps every request under the window by cutting old results and
//! compacting older turns into a summary, and `/compact` does it on demand in the REPL.
//!
//! The model server tells a summary request (no tools, the summary system prompt) from a
//! turn of the session and answers each in kind, since when compaction happens depends on
//! sizes. Request sizes are measured as the agent estimates them: a quarter of the JSON
//! body's bytes.

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ModelServer, Recorded, Reply, TestEnv, agent, run, spawn, tool_use};

const WINDOW: usize = 24_000;
const CALLS: usize = 60;
const SUMMARY: &str =
    "SUMMARY: the user asked to read every file; files f00..f59 read; no background tasks";

/// Whether a request is the summary call of a compaction. The system prompt is a string,
/// or text blocks (which can carry a prompt-cache mark).
fn is_summary(request: &Recorded) -> bool {
    let system = match request.body.get("system") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    request.body.get("tools").is_none()
        && system.contains("summary of a coding agent's conversation")
}

fn tokens(request: &Recorded) -> usize {
    request.body.to_string().len() / 4
}

/// Replies that answer summary requests with [`SUMMARY`] and the session's requests with
/// the next step of `steps`.
fn script(steps: Vec<Reply>) -> Vec<Reply> {
    let steps = Arc::new(Mutex::new(steps.into_iter()));
    let made = Arc::new(AtomicUsize::new(0));
    (0..CALLS * 2)
        .map(|_| {
            let steps = steps.clone();
            let made = made.clone();
            Reply::with(move |request| {
                if is_summary(request) {
                    return Reply::text(SUMMARY);
                }
                made.fetch_add(1, Ordering::SeqCst);
                steps.lock().unwrap().next().unwrap_or_else(|| {
                    Reply::api_error(400, "invalid_request_error", "no more steps")
                })
            })
        })
        .collect()
}

#[test]
fn a_sixty_call_session_stays_inside_a_small_window_and_finishes() {
    let env = TestEnv::new();
    for i in 0..CALLS {
        let text: String = (0..120)
            .map(|line| format!("file {i:02} line {line:03}: some source text here\n"))
            .collect();
        env.write(&format!("f{i:02}.txt"), text);
    }
    let steps: Vec<Reply> = (0..CALLS)
        .map(|i| {
            let call = if i % 10 == 9 {
                tool_use(
                    &format!("c{i}"),
                    "bash",
                    json!({"command": format!("echo step {i}")}),
                )
            } else {
                tool_use(
                    &format!("c{i}"),
                    "read_file",
                    json!({"path": format!("f{i:02}.txt")}),
                )
            };
            Reply::tools(vec![call])
        })
        .chain([Reply::text("read all sixty files")])
        .collect();
    let server = ModelServer::start(script(steps));
    let mut cmd = agent(&env, &server);
    cmd.args([
        "--context-window",
        &WINDOW.to_string(),
        "-p",
        "read every file",
    ]);
    let out = run(cmd, Duration::from_secs(180));
    out.assert_success();
    assert!(out.stdout.contains("read all sixty files"), "{out}");
    server.assert_protocol_ok();

    let requests = server.requests();
    let (summaries, turns): (Vec<&Recorded>, Vec<&Recorded>) =
        requests.iter().partition(|r| is_summary(r));
    assert_eq!(turns.len(), CALLS + 1, "every step was asked for once");
    assert!(!summaries.is_empty(), "no compaction happened");
    for (i, request) in requests.iter().enumerate() {
        assert!(
            tokens(request) <= WINDOW,
            "request {i} has ~{} tokens, over the window of {WINDOW}",
            tokens(request)
        );
    }
    // The summary request: no tools, one user message holding the older turns and the
    // instruction.
    for summary in &summaries {
        let messages = summary.messages();
        assert_eq!(messages.len(), 1, "{:?}", summary.body);
        assert_eq!(messages[0]["role"], "user");
        let prompt = summary.last_user_text();
        assert!(
            prompt.contains("Files touched") && prompt.contains("Background tasks still running")
        );
        assert!(prompt.contains("Open tasks") && prompt.contains("What the user asked"));
    }
    assert!(summaries[0].last_user_text().contains("read every file"));
    // After a compaction the model sees the summary first, then recent turns verbatim.
    let last = turns.last().unwrap();
    let first = last.messages()[0].to_string();
    assert!(
        first.contains("<conversation-summary>") && first.contains(SUMMARY),
        "{first}"
    );
    assert!(last.messages().len() < 2 * CALLS);
    // Old results were cut to head and tail before (or besides) summarizing.
    assert!(
        requests.iter().any(|r| r
            .body
            .to_string()
            .contains("cut here to fit the context window")),
        "no result was cut"
    );
    assert!(
        out.stderr
            .contains("earlier messages replaced by a summary"),
        "{out}"
    );
}

#[test]
fn slash_compact_in_the_repl_summarizes_and_the_conversation_goes_on() {
    let env = TestEnv::new();
    env.write("a.txt", "alpha\n");
    env.write("b.txt", "beta\n");
    let steps = vec![
        Reply::tools(vec![tool_use("r1", "read_file", json!({"path": "a.txt"}))]),
        Reply::tools(vec![tool_use("r2", "read_file", json!({"path": "b.txt"}))]),
        Reply::text("read both"),
        Reply::text("carrying on"),
    ];
    let server = ModelServer::start(script(steps));
    let mut cmd = agent(&env, &server);
    cmd.stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().unwrap();
    let limit = Duration::from_secs(60);
    stdin.write_all(b"read the files\n").unwrap();
    running.wait_for_output(limit, |out, _| out.contains("read both"));
    stdin.write_all(b"/compact\n").unwrap();
    running.wait_for_output(limit, |_, err| err.contains("replaced by a summary"));
    stdin.write_all(b"what next?\n").unwrap();
    running.wait_for_output(limit, |out, _| out.contains("carrying on"));
    stdin.write_all(b"exit\n").unwrap();
    let out = running.wait(limit);
    out.assert_success();
    server.assert_protocol_ok();

    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    assert!(is_summary(&requests[3]));
    let prompt = requests[3].last_user_text();
    assert!(
        prompt.contains("read the files") && prompt.contains("alpha"),
        "{prompt}"
    );
    // The summary, then the last answer verbatim, then the new line.
    let after = requests[4].messages();
    assert_eq!(after.len(), 3, "{after:#?}");
    assert!(after[0].to_string().contains(SUMMARY));
    assert!(after[1].to_string().contains("read both"));
    assert!(requests[4].last_user_text().contains("what next?"));
}
