//! Commands that ask to run outside the sandbox (`sandbox: "off"` with a reason): the
//! REPL asks the user, driven through a pipe; one-shot mode refuses by default.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Reply, TestEnv, agent, landlock_abi, run, spawn, tool_use};

const LIMIT: Duration = Duration::from_secs(60);

/// A file outside the workspace and a command that copies it into the workspace: only a
/// command outside the sandbox can.
struct Outside {
    _dir: tempfile::TempDir,
    command: String,
}

const SECRET: &str = "outside-the-workspace-4711";

fn outside() -> Outside {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    Outside {
        command: format!("cat {} > got.txt", secret.display()),
        _dir: dir,
    }
}

fn escalate(id: &str, tool: &str, command: &str) -> crate::support::ToolUse {
    tool_use(
        id,
        tool,
        json!({"command": command, "sandbox": "off", "reason": "the file is outside the workspace"}),
    )
}

/// The text and error flag of the tool result for `id`, from the request that carries it.
fn result_of(server: &ModelServer, id: &str) -> (String, bool) {
    server
        .requests()
        .iter()
        .flat_map(|r| r.tool_results())
        .find(|(tool_use_id, _, _)| tool_use_id == id)
        .map(|(_, text, is_error)| (text, is_error))
        .unwrap_or_else(|| panic!("no tool result for {id}"))
}

/// Runs the REPL with `lines` typed into it (then EOF), against `server`.
fn repl(env: &TestEnv, server: &ModelServer, lines: &str) -> crate::support::RunResult {
    let mut cmd = agent(env, server);
    cmd.stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    running.wait(LIMIT)
}

#[test]
fn one_shot_refuses_to_leave_the_sandbox_by_default_and_the_model_is_told_why() {
    let outside = outside();
    let server = ModelServer::start(vec![
        Reply::tools(vec![escalate("t1", "bash", &outside.command)]),
        Reply::tools(vec![escalate("t2", "background_run", &outside.command)]),
        Reply::text("understood"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "copy the file"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    for id in ["t1", "t2"] {
        let (text, is_error) = result_of(&server, id);
        assert!(is_error, "{text}");
        assert!(text.contains("--approval never"), "{text}");
    }
    assert!(!env.path("got.txt").exists(), "the command did not run");
    server.assert_protocol_ok();
}

#[test]
fn one_shot_with_approval_always_runs_the_command_and_warns() {
    let outside = outside();
    let server = ModelServer::start(vec![
        Reply::tools(vec![escalate("t1", "bash", &outside.command)]),
        Reply::text("done"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "copy the file", "--approval", "always"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    assert!(out.stderr.contains("--approval always"), "{out}");
    let (text, is_error) = result_of(&server, "t1");
    assert!(!is_error && text.contains("--approval always"), "{text}");
    assert_eq!(env.read("got.txt"), SECRET);
}

#[test]
fn a_request_to_leave_the_sandbox_needs_a_reason_and_ask_needs_the_repl() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "t1",
            "bash",
            json!({"command": "echo hi > got.txt", "sandbox": "off"}),
        )]),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go", "--approval", "always"]);
    run(cmd, LIMIT).assert_success();
    let (text, is_error) = result_of(&server, "t1");
    assert!(is_error && text.contains("needs a reason"), "{text}");
    assert!(!env.path("got.txt").exists());

    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go", "--approval", "ask"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--approval"), "{out}");
}

#[test]
fn the_repl_asks_and_allow_once_runs_the_command_outside_the_sandbox() {
    let outside = outside();
    // Control characters in the command and reason are shown, not sent to the terminal.
    let command = format!("{} # \x1b[2J", outside.command);
    let server = ModelServer::start(vec![
        // Inside the sandbox the file cannot be read.
        Reply::tools(vec![tool_use(
            "t0",
            "bash",
            json!({"command": outside.command}),
        )]),
        Reply::tools(vec![tool_use(
            "t1",
            "bash",
            json!({"command": command, "sandbox": "off", "reason": "outside\x07 file"}),
        )]),
        Reply::text("copied"),
    ]);
    let env = TestEnv::new();
    let out = repl(&env, &server, "copy the file\no\n");
    out.assert_success();
    if landlock_abi() > 0 {
        let (text, _) = result_of(&server, "t0");
        assert!(
            text.contains("Permission denied") && text.contains("sandbox:\"off\""),
            "{text}"
        );
    }
    assert!(out.stderr.contains("OUTSIDE the sandbox"), "{out}");
    assert!(
        out.stderr.contains("outside\\x07 file") || out.stderr.contains("outside^G file"),
        "{out}"
    );
    assert!(
        !out.stderr.contains('\x1b') && !out.stderr.contains('\x07'),
        "{out}"
    );
    let (text, is_error) = result_of(&server, "t1");
    assert!(
        !is_error && text.contains("approved once by the user"),
        "{text}"
    );
    assert_eq!(env.read("got.txt"), SECRET);
}

#[test]
fn the_repl_user_can_deny_and_the_model_is_told() {
    let outside = outside();
    let server = ModelServer::start(vec![
        Reply::tools(vec![escalate("t1", "background_run", &outside.command)]),
        Reply::text("ok, staying inside"),
    ]);
    let env = TestEnv::new();
    let out = repl(&env, &server, "copy the file\nd\n");
    out.assert_success();
    let (text, is_error) = result_of(&server, "t1");
    assert!(is_error && text.contains("the user denied"), "{text}");
    assert!(!env.path("got.txt").exists());
}

#[test]
fn allow_for_the_session_covers_the_same_command_without_asking_again() {
    let outside = outside();
    let server = ModelServer::start(vec![
        Reply::tools(vec![escalate("t1", "bash", &outside.command)]),
        Reply::tools(vec![escalate("t2", "bash", &outside.command)]),
        Reply::tools(vec![escalate("t3", "bash", "echo other > other.txt")]),
        Reply::text("done"),
    ]);
    let env = TestEnv::new();
    // One "s" for the first question; the third command is a different one, asked about
    // again, and the end of input denies it.
    let out = repl(&env, &server, "copy twice\ns\n");
    let asked = out.stderr.matches("OUTSIDE the sandbox").count();
    assert_eq!(asked, 2, "{out}");
    for id in ["t1", "t2"] {
        let (text, is_error) = result_of(&server, id);
        assert!(
            !is_error && text.contains("for the session"),
            "{id}: {text}"
        );
    }
    let (text, is_error) = result_of(&server, "t3");
    assert!(is_error && text.contains("denied"), "{text}");
    assert!(!env.path("other.txt").exists());
    assert_eq!(env.read("got.txt"), SECRET);
}
