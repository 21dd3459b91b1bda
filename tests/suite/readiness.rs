//! Readiness and input of background tasks: a task watched with `ready_pattern` or
//! `ready_port` tells the model once when it is ready while it keeps running (and says so
//! when it exits before); a task started with `stdin: true` takes `write_background`
//! input, `eof` closes it, and a task without a pipe refuses input clearly.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Recorded, Reply, RunResult, TestEnv, agent, run, tool_use};

fn one_shot_with(env: &TestEnv, server: &ModelServer, args: &[&str]) -> RunResult {
    let mut cmd: Command = agent(env, server);
    cmd.args(args).args(["-p", "start the server"]);
    run(cmd, Duration::from_secs(60))
}

/// The requests carrying `[bg:ID]` text with `word` in their last user message.
fn carrying(requests: &[Recorded], id: &str, word: &str) -> Vec<usize> {
    let tag = format!("[bg:{id}]");
    requests
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let text = r.last_user_text();
            text.contains(&tag) && text.contains(word)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Start a watched server, hear it is ready, kill it, hear it ended.
fn ready_script(input: serde_json::Value) -> Vec<Reply> {
    vec![
        Reply::tools(vec![tool_use("b1", "background_run", input)]),
        Reply::text("started; waiting until it is ready"),
        Reply::tools(vec![tool_use(
            "k1",
            "kill_background",
            json!({"task_id": "bg-1"}),
        )]),
        Reply::text("stopping it"),
        Reply::text("it ended"),
    ]
}

/// The ready notification came in its own request, about `delay` after the task
/// started (within a second of the line), before the final one, exactly once.
/// `within` bounds the wait from the task's start: 1 s of sleep, then the line or the
/// listener (a python3 start on a loaded machine takes longer than an echo).
fn assert_ready_then_final(requests: &[Recorded], what: &str, within: Duration, out: &RunResult) {
    assert_eq!(requests.len(), 5, "{out}");
    let ready = carrying(requests, "bg-1", "ready after");
    assert_eq!(ready, [2], "one ready notification: {out}");
    let text = requests[2].last_user_text();
    assert!(text.contains("<background-results>"), "{text}");
    assert!(text.contains(what), "{text}");
    assert!(text.contains("still running"), "{text}");
    // The task started when the first tool result went out; it was ready 1 s later.
    let waited = requests[2].at.duration_since(requests[1].at);
    assert!(
        waited >= Duration::from_millis(900) && waited < within,
        "ready notification after {waited:?}"
    );
    let last = requests[4].last_user_text();
    assert!(last.contains("[bg:bg-1] killed"), "{last}");
    assert!(!last.contains("ready after"), "{last}");
    assert!(out.elapsed < Duration::from_secs(15), "{out}");
}

#[test]
fn a_line_matching_ready_pattern_tells_the_model_while_the_task_runs() {
    let server = ModelServer::start(ready_script(json!({
        "command": "echo booting; sleep 1; echo 'Listening on 8080'; sleep 30",
        "ready_pattern": "Listening on \\d+"
    })));
    let env = TestEnv::new();
    let out = one_shot_with(&env, &server, &[]);
    out.assert_success();
    let requests = server.requests();
    let started = &requests[1].tool_results()[0].1;
    assert!(started.contains("told once when it is ready"), "{started}");
    assert_ready_then_final(
        &requests,
        "ready: output line matched ready_pattern: Listening on 8080",
        Duration::from_millis(2_000),
        &out,
    );
    // The output so far comes with it.
    assert!(requests[2].last_user_text().contains("booting"));
    // The session transcript records it, and its delivery apart from the final result.
    let transcript = files_text(&env.state.path().join("sessions"));
    assert!(
        transcript.contains("\"type\":\"task_ready\""),
        "{transcript}"
    );
    assert!(
        transcript.contains("\"delivered\":[\"bg-1:ready\"]"),
        "{transcript}"
    );
    assert!(
        transcript.contains("\"delivered\":[\"bg-1\"]"),
        "{transcript}"
    );
    server.assert_protocol_ok();
}

/// A free port on 127.0.0.1 (taken and released: nothing else binds it in the second).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_port_that_accepts_connections_tells_the_model_while_the_task_runs() {
    let port = free_port();
    let server = ModelServer::start(ready_script(json!({
        "command": format!(
            "python3 -c \"import socket,time\ntime.sleep(1)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port}))\ns.listen()\ntime.sleep(30)\""
        ),
        "ready_port": port
    })));
    let env = TestEnv::new();
    // The sandbox closes TCP by default: a listening server needs --network.
    let out = one_shot_with(&env, &server, &["--network"]);
    out.assert_success();
    assert_ready_then_final(
        &server.requests(),
        &format!("ready: port {port} accepts connections"),
        Duration::from_millis(4_000),
        &out,
    );
    server.assert_protocol_ok();
}

#[test]
fn ready_port_without_the_network_is_refused_up_front_saying_what_to_do() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "sleep 30", "ready_port": 8080}),
        )]),
        Reply::text("cannot"),
    ]);
    let env = TestEnv::new();
    let out = one_shot_with(&env, &server, &[]);
    out.assert_success();
    let requests = server.requests();
    let (_, text, is_error) = &requests[1].tool_results()[0];
    if crate::support::landlock_abi() < 1 {
        // No sandbox here (the harness runs with it off): the task just starts.
        return;
    }
    assert!(is_error, "{text}");
    assert!(text.contains("--network"), "{text}");
}

#[test]
fn a_task_that_exits_before_it_is_ready_says_so() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "echo 'port in use'; exit 3", "ready_pattern": "Listening"}),
        )]),
        Reply::text("waiting"),
        Reply::text("it died"),
    ]);
    let env = TestEnv::new();
    let out = one_shot_with(&env, &server, &[]);
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "{out}");
    let last = requests[2].last_user_text();
    assert!(last.contains("[bg:bg-1] failed (exit code 3)"), "{last}");
    assert!(last.contains("exited before it was ready"), "{last}");
    assert!(last.contains("port in use"), "{last}");
    assert!(carrying(&requests, "bg-1", "ready after").is_empty());
}

#[test]
fn a_bad_ready_pattern_is_the_models_error_and_nothing_starts() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "touch started", "ready_pattern": "Listening (on"}),
        )]),
        Reply::text("oops"),
    ]);
    let env = TestEnv::new();
    let out = one_shot_with(&env, &server, &[]);
    out.assert_success();
    let requests = server.requests();
    let (_, text, is_error) = &requests[1].tool_results()[0];
    assert!(is_error, "{text}");
    assert!(
        text.contains("ready_pattern is not a valid regex"),
        "{text}"
    );
    assert!(!env.path("started").exists());
}

/// After bg-1's result: once, a write to it (now ended); otherwise a plain answer.
fn late(wrote: &Arc<AtomicBool>) -> Reply {
    let wrote = wrote.clone();
    Reply::with(move |request| {
        if request.last_user_text().contains("[bg:bg-1]") && !wrote.swap(true, Ordering::SeqCst) {
            Reply::tools(vec![tool_use(
                "w4",
                "write_background",
                json!({"task_id": "bg-1", "input": "late\n"}),
            )])
        } else {
            Reply::text("ok")
        }
    })
}

#[test]
fn stdin_true_takes_input_and_eof_closes_it() {
    let wrote_late = Arc::new(AtomicBool::new(false));
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "b1",
                "background_run",
                json!({"command": "read line; echo \"got $line\"; cat; echo end", "stdin": true}),
            ),
            tool_use("b2", "background_run", json!({"command": "sleep 30"})),
        ]),
        Reply::tools(vec![tool_use(
            "w1",
            "write_background",
            json!({"task_id": "bg-1", "input": "hello\n"}),
        )]),
        Reply::tools(vec![
            tool_use(
                "w2",
                "write_background",
                json!({"task_id": "bg-1", "input": "the rest\n", "eof": true}),
            ),
            tool_use(
                "w3",
                "write_background",
                json!({"task_id": "bg-2", "input": "x\n"}),
            ),
            tool_use("k2", "kill_background", json!({"task_id": "bg-2"})),
        ]),
        Reply::text("waiting"),
        late(&wrote_late),
        late(&wrote_late),
        late(&wrote_late),
        late(&wrote_late),
        late(&wrote_late),
    ]);
    let env = TestEnv::new();
    let out = one_shot_with(&env, &server, &[]);
    out.assert_success();
    let requests = server.requests();
    let first = &requests[2].tool_results()[0];
    assert_eq!(first.1, "Wrote 6 bytes to bg-1's stdin.", "{out}");
    assert!(!first.2);
    let results = requests[3].tool_results();
    assert_eq!(
        results[0].1,
        "Wrote 9 bytes to bg-1's stdin and closed it (eof)."
    );
    assert!(results[1].2, "writing to a task without stdin is an error");
    assert!(
        results[1].1.contains("bg-2 takes no input") && results[1].1.contains("stdin: true"),
        "{}",
        results[1].1
    );
    let finished: Vec<usize> = carrying(&requests, "bg-1", "completed");
    assert_eq!(finished.len(), 1, "{out}");
    let text = requests[finished[0]].last_user_text();
    assert!(
        text.contains("got hello\nthe rest\nend"),
        "the task read both writes and then end of input: {text}"
    );
    // Once it ended, it takes no more input.
    let late = requests
        .iter()
        .flat_map(|r| r.tool_results())
        .find(|(id, _, _)| id == "w4");
    let (_, text, is_error) = late.expect("the late write was answered");
    assert!(is_error && text.contains("has ended (completed)"), "{text}");
}

/// Every file under `dir`, read as text (lossily).
fn files_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return text;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[test]
fn attach_shows_live_output_and_typed_lines_reach_only_the_task() {
    use std::io::Write;
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "echo waiting for input; while read l; do echo \"got ${#l} chars\"; done", "stdin": true}),
        )]),
        Reply::text("started it"),
        Reply::text("ok"),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.stdin(std::process::Stdio::piped());
    let mut running = crate::support::spawn(cmd);
    let mut stdin = running.take_stdin().unwrap();
    stdin.write_all(b"start a reader\n").unwrap();
    let limit = Duration::from_secs(30);
    running.wait_for_output(limit, |out, _| out.contains("started it"));
    stdin.write_all(b"/attach bg-1\nsecret-pw-123\n").unwrap();
    // The task's own output (its log) would hold what it prints: this task prints only
    // the length of what it read.
    running.wait_for_output(limit, |out, _| out.contains("got 13 chars"));
    stdin.write_all(b"/detach\nexit\n").unwrap();
    let out = running.wait(limit);
    out.assert_success();
    assert!(
        out.stdout.contains("waiting for input"),
        "the output so far: {out}"
    );
    assert!(out.stderr.contains("[attached to bg-1"), "{out}");
    assert!(out.stderr.contains("[detached from bg-1]"), "{out}");
    for request in server.requests() {
        let sent = serde_json::to_string(request.messages()).unwrap();
        assert!(!sent.contains("secret-pw-123"), "the model saw it: {sent}");
    }
    // Not in the transcript, the line history, or anything else the agent keeps.
    let kept = files_text(env.state.path());
    assert!(
        kept.contains("got 13 chars"),
        "the task log is there: {kept}"
    );
    assert!(!kept.contains("secret-pw-123"), "{kept}");
    assert!(!files_text(env.config.path()).contains("secret-pw-123"));
}
