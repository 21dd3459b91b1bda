//! Sessions: every conversation is written to a transcript as it happens, and `--continue`,
//! `--resume` and the REPL's `/resume` take it up again, after an exit or a SIGKILL, with
//! a valid history and no background result lost.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ModelServer, Reply, TestEnv, agent, processes_with_marker, run, spawn, tool_use,
};

const LIMIT: Duration = Duration::from_secs(60);

/// The transcripts in the state directory.
fn transcripts(env: &TestEnv) -> Vec<PathBuf> {
    let dir = env.state.path().join("sessions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Whether a `bg-1.log` of some run in the state directory holds `needle`.
fn task_log_has(env: &TestEnv, needle: &str) -> bool {
    let Ok(runs) = std::fs::read_dir(env.state.path().join("tasks")) else {
        return false;
    };
    runs.filter_map(Result::ok).any(|run| {
        std::fs::read_to_string(run.path().join("bg-1.log")).is_ok_and(|log| log.contains(needle))
    })
}

fn session_id(path: &std::path::Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// `(role, text of the text blocks)` of each message of a request.
fn roles_and_texts(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let text = m["content"]
                .as_array()
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .unwrap_or_default();
            (m["role"].as_str().unwrap_or("").to_string(), text)
        })
        .collect()
}

/// Every `tool_use` id of an assistant message is answered by a `tool_result` at the
/// start of the next message.
fn assert_every_call_answered(messages: &[Value]) {
    for (i, m) in messages.iter().enumerate() {
        if m["role"] != "assistant" {
            continue;
        }
        let calls: Vec<&str> = m["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        if calls.is_empty() {
            continue;
        }
        let next = messages.get(i + 1).expect("a message answers the calls");
        let results: Vec<&str> = next["content"]
            .as_array()
            .unwrap()
            .iter()
            .take(calls.len())
            .map(|b| b["tool_use_id"].as_str().unwrap_or("not a result"))
            .collect();
        assert_eq!(results, calls, "{messages:#?}");
    }
}

#[test]
fn continue_carries_the_conversation_into_the_next_run() {
    let server = ModelServer::start(vec![Reply::text("noted: X is 42"), Reply::text("X was 42")]);
    let env = TestEnv::new();
    let mut first = agent(&env, &server);
    first
        .args(["-p", "remember X=42"])
        .env("ANTHROPIC_API_KEY", "sk-never-in-a-transcript-7731");
    run(first, LIMIT).assert_success();
    let mut second = agent(&env, &server);
    second
        .args(["--continue", "-p", "what was X?"])
        .env("ANTHROPIC_API_KEY", "sk-never-in-a-transcript-7731");
    let out = run(second, LIMIT);
    out.assert_success();
    assert!(out.stdout.contains("X was 42"), "{out}");
    assert!(out.stderr.contains("resumed session"), "{out}");

    let requests = server.requests();
    assert_eq!(
        roles_and_texts(requests[1].messages()),
        [
            ("user".to_string(), "remember X=42".to_string()),
            ("assistant".into(), "noted: X is 42".into()),
            ("user".into(), "what was X?".into()),
        ],
        "the second run's first request holds the first conversation"
    );
    server.assert_protocol_ok();

    // One session, continued in the same file: private, and without the key.
    let files = transcripts(&env);
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(files[0].parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!text.contains("sk-never-in-a-transcript-7731"));
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("\"type\":\"session\""),
        "{text}"
    );
    assert!(text.contains("\"type\":\"resumed\""), "{text}");
}

#[test]
fn sessions_list_shows_each_session_and_unknown_ids_are_refused() {
    let server = ModelServer::start(vec![Reply::text("one"), Reply::text("two")]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "first \u{1b}[31mred\u{1b}[0m request\nsecond line"]);
    run(cmd, LIMIT).assert_success();
    std::thread::sleep(Duration::from_millis(1100));
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "another one"]);
    run(cmd, LIMIT).assert_success();
    let files = transcripts(&env);
    assert_eq!(files.len(), 2);

    let mut list = agent(&env, &server);
    list.args(["sessions", "list"]);
    let out = run(list, LIMIT);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Newest first; escapes shown, not sent; the first line of the first request only.
    assert!(lines[0].starts_with(&session_id(&files[1])), "{out}");
    assert!(
        lines[0].contains("another one") && lines[0].contains("1 turn"),
        "{out}"
    );
    assert!(!out.stdout.contains('\u{1b}'), "{out}");
    assert!(lines[1].contains("first \\x1b[31mred"), "{out}");
    assert!(!out.stdout.contains("second line"), "{out}");
    let workspace = env.workspace.path().canonicalize().unwrap();
    assert!(lines[1].contains(&workspace.display().to_string()), "{out}");

    let mut list = agent(&env, &server);
    list.args(["sessions", "list", "--json"]);
    let out = run(list, LIMIT);
    let entries: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries[1]["id"], session_id(&files[0]));
    assert_eq!(entries[1]["turns"], 1);
    assert_eq!(entries[1]["model_calls"], 1);

    for args in [
        &["--resume", "19990101-000000-dead", "-p", "x"][..],
        &["--resume", "../../etc/passwd", "-p", "x"],
        &["--resume", "2", "-p", "x"],
    ] {
        let mut cmd = agent(&env, &server);
        cmd.args(args);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), Some(2), "{args:?}: {out}");
        assert!(
            out.stderr.contains("no session with id") || out.stderr.contains("matches several"),
            "{out}"
        );
    }
    let other = TestEnv::new();
    let mut cmd = agent(&other, &server);
    cmd.args(["-c", "-p", "x"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("no session to continue"), "{out}");
    assert_eq!(
        server.requests().len(),
        2,
        "no model call for a refused resume"
    );
}

#[test]
fn a_session_killed_mid_tool_call_resumes_with_every_call_answered() {
    let marker = format!("{}", 41_000 + std::process::id() % 10_000);
    let server = ModelServer::start(vec![Reply::text_and_tools(
        "running it",
        vec![
            tool_use("t0", "bash", json!({"command": "echo quick-one-done"})),
            tool_use("t1", "bash", json!({"command": format!("sleep {marker}")})),
        ],
    )]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "run the long command"]);
    let running = spawn(cmd);
    server.wait_for_requests(1, LIMIT);
    let deadline = std::time::Instant::now() + LIMIT;
    while processes_with_marker(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal(libc::SIGKILL);
    let _ = running.wait(LIMIT);
    for pid in processes_with_marker(&marker) {
        // SAFETY: kill(2) on a pid just read; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    let resumed = ModelServer::start(vec![Reply::text("picked up")]);
    let mut cmd = agent(&env, &resumed);
    cmd.args(["--continue", "-p", "carry on"]);
    run(cmd, LIMIT).assert_success();
    let request = &resumed.requests()[0];
    let messages = request.messages();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_every_call_answered(messages);
    let results = request.tool_results();
    // The call that was done keeps its real result; the one cut short gets an error.
    assert_eq!(results[0].0, "t0");
    assert!(
        results[0].1.contains("quick-one-done") && !results[0].2,
        "{results:?}"
    );
    assert_eq!(results[1].0, "t1");
    assert!(
        results[1].1.contains("interrupted: the agent exited"),
        "{results:?}"
    );
    assert!(results[1].2, "an error result");
    assert!(request.last_user_text().ends_with("carry on"));
    resumed.assert_protocol_ok();
}

#[test]
fn a_task_running_at_a_kill_is_reported_ended_and_its_log_stays_readable() {
    let marker = format!("{}", 51_000 + std::process::id() % 10_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": format!("echo started-{marker}; sleep {marker}")}),
        )]),
        // The answer never comes: the agent is killed while it waits.
        Reply::delay(Duration::from_secs(120), Reply::text("too late")),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "start the long task"]);
    let running = spawn(cmd);
    server.wait_for_requests(2, LIMIT);
    let deadline = std::time::Instant::now() + LIMIT;
    while processes_with_marker(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The task's first line reached its log (the agent writes the log as output comes).
    while !task_log_has(&env, &format!("started-{marker}")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's output never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.signal(libc::SIGKILL);
    let _ = running.wait(LIMIT);
    for pid in processes_with_marker(&marker) {
        // SAFETY: kill(2) on a pid just read; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let id = session_id(&transcripts(&env)[0]);

    let resumed = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "c1",
                "check_background",
                json!({"task_id": "bg-1", "offset": 0}),
            ),
            tool_use("b2", "background_run", json!({"command": "echo second"})),
        ]),
        Reply::text("read it"),
        Reply::text("all done"),
    ]);
    let mut cmd = agent(&env, &resumed);
    // A unique start of the id is enough.
    cmd.args(["--resume", &id[..id.len() - 2], "-p", "what happened?"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let requests = resumed.requests();
    let first = requests[0].last_user_text();
    assert!(first.contains("what happened?"), "{first}");
    assert!(first.contains("<background-results>"), "{first}");
    assert!(first.contains("[bg:bg-1] killed"), "{first}");
    assert!(first.contains("ended by the agent's exit"), "{first}");
    assert!(first.contains(&format!("started-{marker}")), "{first}");
    assert!(first.contains("bg-1.log"), "{first}");
    assert_every_call_answered(requests[0].messages());
    let results = requests[1].tool_results();
    assert!(
        results[0].1.contains(&format!("started-{marker}")),
        "{results:?}"
    );
    assert!(!results[0].2, "{results:?}");
    assert!(
        results[1].1.contains("bg-2"),
        "new ids follow the old: {results:?}"
    );
    // Reported once: the later requests do not repeat it.
    let reported = requests
        .iter()
        .filter(|r| r.last_user_text().contains("[bg:bg-1]"))
        .count();
    assert_eq!(reported, 1);
    resumed.assert_protocol_ok();
}

#[test]
fn resume_in_the_repl_lists_and_switches_sessions() {
    let server = ModelServer::start(vec![
        Reply::text("remembered the colour"),
        Reply::text("it was teal"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "the colour is teal"]);
    run(cmd, LIMIT).assert_success();
    let id = session_id(&transcripts(&env)[0]);

    let mut cmd = agent(&env, &server);
    cmd.stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().unwrap();
    stdin.write_all(b"/resume\n").unwrap();
    running.wait_for_output(LIMIT, |_, err| err.contains("the colour is teal"));
    stdin
        .write_all(format!("/resume {id}\nwhich colour?\n").as_bytes())
        .unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("it was teal"));
    stdin.write_all(b"exit\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(
        out.stderr.contains(&format!("resumed session {id}")),
        "{out}"
    );
    let requests = server.requests();
    assert_eq!(
        requests[1].messages().len(),
        3,
        "{:#?}",
        requests[1].messages()
    );
    server.assert_protocol_ok();
    // The REPL's own session had no message: it left no transcript.
    assert_eq!(transcripts(&env).len(), 1);
}
