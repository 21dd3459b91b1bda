//! Idle wake-up: a background task finishing while the user sits at an empty REPL prompt
//! starts a model call by itself (the REPL driven through a pipe whose stdin stays open,
//! nothing typed); `--no-wake` and `/wake off` wait for the next line; the cap on
//! consecutive wake-ups; and the one-shot batching window.

use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Reply, Running, TestEnv, agent, run, spawn, tool_use};

const LIMIT: Duration = Duration::from_secs(60);

/// Starts the REPL with extra flags; the returned stdin is held open, so the REPL waits at
/// its prompt until the test types.
fn start_repl(env: &TestEnv, server: &ModelServer, flags: &[&str]) -> (Running, ChildStdin) {
    let mut cmd = agent(env, server);
    cmd.args(flags).stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let stdin = running.take_stdin().expect("stdin is piped");
    (running, stdin)
}

fn start_task(id: &str, command: &str) -> Reply {
    Reply::tools(vec![tool_use(
        id,
        "background_run",
        json!({ "command": command }),
    )])
}

#[test]
fn a_task_finishing_while_idle_wakes_the_model_and_the_turn_is_in_the_session() {
    let server = ModelServer::start(vec![
        start_task("b1", "sleep 1; echo wake-output"),
        Reply::text("started it"),
        Reply::text("woke and saw it"),
        Reply::text("continued"),
    ]);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server, &[]);
    stdin.write_all(b"start the job\n").unwrap();
    // Nothing more is typed: the finished task alone brings the next model call.
    running.wait_for_output(LIMIT, |out, _| out.contains("woke and saw it"));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let text = requests[2].last_user_text();
    assert!(
        text.contains("[bg:bg-1] completed") && text.contains("wake-output"),
        "{text}"
    );
    assert!(!text.contains("start the job"), "no user words: {text}");
    stdin.write_all(b"q\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(out.stderr.contains("[wake-up: bg-1 completed]"), "{out}");

    // The wake-up turn is in the session's transcript like any turn.
    let mut cmd = agent(&env, &server);
    cmd.args(["--continue", "-p", "carry on"]);
    run(cmd, LIMIT).assert_success();
    let requests = server.requests();
    let resumed = serde_json::to_string(requests[3].messages()).unwrap();
    assert!(
        resumed.contains("wake-output") && resumed.contains("woke and saw it"),
        "{resumed}"
    );
    server.assert_protocol_ok();
}

/// A finished task is announced but not delivered until the user types.
fn waits_for_the_next_line(flags: &[&str], before_start: &[u8]) {
    let server = ModelServer::start(vec![
        start_task("b1", "sleep 0.5; echo later-output"),
        Reply::text("started it"),
        Reply::text("saw the result"),
    ]);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server, flags);
    stdin.write_all(before_start).unwrap();
    stdin.write_all(b"start the job\n").unwrap();
    running.wait_for_output(LIMIT, |_, err| err.contains("[background bg-1 completed"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.requests().len(), 2, "no model call without input");
    stdin.write_all(b"what happened?\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("saw the result"));
    stdin.write_all(b"q\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(!out.stderr.contains("[wake-up"), "{out}");
    let text = server.requests()[2].last_user_text();
    assert!(
        text.starts_with("what happened?") && text.contains("later-output"),
        "{text}"
    );
    server.assert_protocol_ok();
}

#[test]
fn no_wake_waits_for_the_next_line() {
    waits_for_the_next_line(&["--no-wake"], b"");
}

#[test]
fn slash_wake_off_waits_for_the_next_line() {
    waits_for_the_next_line(&[], b"/wake off\n");
}

#[test]
fn consecutive_wake_ups_stop_at_the_cap_until_the_user_types() {
    // Every turn starts a new short task, so every wake-up leads to another.
    let mut script = Vec::new();
    for n in 0..6 {
        script.push(start_task(&format!("b{n}"), "sleep 0.2"));
        script.push(Reply::text(&format!("turn {n} started a task")));
    }
    script.push(Reply::text("hello again"));
    let server = ModelServer::start(script);
    let env = TestEnv::new();
    let (running, mut stdin) = start_repl(&env, &server, &[]);
    stdin.write_all(b"keep going\n").unwrap();
    running.wait_for_output(LIMIT, |_, err| err.contains("5 in a row without input"));
    std::thread::sleep(Duration::from_millis(1500));
    // The typed turn and five wake-ups, two calls each; bg-6 waits.
    assert_eq!(server.requests().len(), 12);
    stdin.write_all(b"hello\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("hello again"));
    stdin.write_all(b"q\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert_eq!(out.stderr.matches("[wake-up: bg-").count(), 5, "{out}");
    assert_eq!(out.stderr.matches("in a row without input").count(), 1);
    let text = server.requests()[12].last_user_text();
    assert!(
        text.starts_with("hello") && text.contains("[bg:bg-6] completed"),
        "{text}"
    );
    server.assert_protocol_ok();
}

#[test]
fn one_shot_delivers_tasks_finishing_together_in_one_call() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "b1",
                "background_run",
                json!({"command": "sleep 0.5; echo first-done"}),
            ),
            tool_use(
                "b2",
                "background_run",
                json!({"command": "sleep 0.51; echo second-done"}),
            ),
        ]),
        Reply::text("waiting"),
        Reply::text("got both"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one call for both results: {out}");
    let text = requests[2].last_user_text();
    assert!(
        text.contains("first-done") && text.contains("second-done"),
        "{text}"
    );
    server.assert_protocol_ok();
}
