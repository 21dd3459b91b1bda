//! The REPL, driven through a pipe as a user types, and how the host exits with tasks
//! still running.

use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{
    ModelServer, Reply, Running, TestEnv, agent, processes_with_marker, run, spawn, tool_use,
};

const LIMIT: Duration = Duration::from_secs(60);

fn marker(base: u32) -> String {
    format!("{}", base + std::process::id() % 100_000)
}

/// Whether processes with `marker` appear within a few seconds: a background task starts
/// beside the model call that follows it, and may be slower on a loaded machine.
fn task_started(marker: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with_marker(marker).is_empty() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Starts the REPL with a pipe to type into it.
fn start_repl(env: &TestEnv, server: &ModelServer) -> (Running, ChildStdin) {
    let mut cmd = agent(env, server);
    cmd.stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let stdin = running.take_stdin().expect("stdin is piped");
    (running, stdin)
}

#[test]
fn the_repl_answers_ignores_empty_lines_and_quits() {
    let server = ModelServer::start(vec![Reply::text("hi there"), Reply::text("second answer")]);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server);
    stdin.write_all(b"hello\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("hi there"));
    stdin.write_all(b"\n   \n/tasks\nagain\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("second answer"));
    stdin.write_all(b"exit\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(out.stderr.contains("no background tasks"), "{out}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "empty lines and /tasks call no model");
    // The conversation carries on across lines.
    assert_eq!(requests[1].messages().len(), 3);
    server.assert_protocol_ok();
}

#[test]
fn a_task_finishing_while_the_user_types_is_announced_and_delivered_with_the_next_message() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "sleep 1; echo finished-output"}),
        )]),
        Reply::text("started it"),
        Reply::text("saw the result"),
    ]);
    let env = TestEnv::new();
    // Through a pipe the line being typed cannot be seen, so idle wake-up is turned off to
    // play a user who is typing (tests/suite/wake.rs has the wake-ups).
    let mut cmd = agent(&env, &server);
    cmd.arg("--no-wake").stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().expect("stdin is piped");
    stdin.write_all(b"start the job\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("started it"));
    // Announced at once, without any input.
    running.wait_for_output(LIMIT, |_, err| err.contains("[background bg-1 completed"));
    assert_eq!(server.requests().len(), 2);
    stdin.write_all(b"what happened?\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("saw the result"));
    stdin.write_all(b"q\n").unwrap();
    running.wait(LIMIT).assert_success();
    let requests = server.requests();
    let text = requests[2].last_user_text();
    assert!(
        text.starts_with("what happened?"),
        "the user's words come first: {text}"
    );
    assert!(
        text.contains("[bg:bg-1] completed") && text.contains("finished-output"),
        "{text}"
    );
    server.assert_protocol_ok();
}

#[test]
fn quitting_the_repl_ends_running_tasks() {
    let marker = marker(600_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": format!("sleep {marker} & (sleep {marker} &); sleep {marker}")}),
        )]),
        Reply::text("running"),
    ]);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server);
    stdin.write_all(b"start\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("running"));
    assert!(task_started(&marker), "the task runs");
    stdin.write_all(b"exit\n").unwrap();
    running.wait(LIMIT).assert_success();
    assert_eq!(
        processes_with_marker(&marker),
        Vec::<i32>::new(),
        "no orphan survives"
    );
}

#[test]
fn sigterm_in_one_shot_mode_ends_running_tasks() {
    let marker = marker(500_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": format!("sleep {marker} & sleep {marker}")}),
        )]),
        Reply::text("waiting for it"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go"]);
    let running = spawn(cmd);
    running.wait_for_output(LIMIT, |out, _| out.contains("waiting for it"));
    assert!(task_started(&marker), "the task runs");
    running.signal(libc::SIGTERM);
    let out = running.wait(LIMIT);
    assert_eq!(out.code(), Some(130), "{out}");
    assert_eq!(
        processes_with_marker(&marker),
        Vec::<i32>::new(),
        "no orphan survives"
    );
}

#[test]
fn json_output_is_one_event_per_line() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use("s1", "bash", json!({"command": "echo hi"}))]),
        Reply::text("done"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go", "--output", "json"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"tool_call")
            && kinds.contains(&"tool_result")
            && kinds.contains(&"turn_end"),
        "{kinds:?}"
    );
    let result = events.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert_eq!(result["output"], "hi");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "text")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "done");
}

#[test]
fn slash_kill_stops_a_task_without_asking_the_model() {
    let marker = marker(300_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": format!("sleep {marker}")}),
        )]),
        Reply::text("running"),
    ]);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server);
    stdin.write_all(b"start\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("running"));
    stdin.write_all(b"/tasks\n/kill bg-1\n").unwrap();
    running.wait_for_output(LIMIT, |_, err| err.contains("[background bg-1 killed"));
    assert!(processes_with_marker(&marker).is_empty());
    stdin.write_all(b"/kill bg-7\nexit\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(
        out.stderr.contains("bg-1  running"),
        "/tasks lists it: {out}"
    );
    assert!(
        out.stderr.contains("no background task with id bg-7"),
        "{out}"
    );
    assert_eq!(server.requests().len(), 2, "the model was not asked");
}
