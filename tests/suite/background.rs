//! Background tasks: they run beside the model, their results reach it exactly once, and
//! a timeout leaves no process behind.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    ModelServer, Reply, TestEnv, delivered_in, one_shot, processes_with_marker, tool_use,
};

#[test]
fn seed_scenario_file_written_while_a_background_sleep_runs() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "sleep 5 && echo done"}),
        )]),
        Reply::tools(vec![tool_use(
            "w1",
            "write_file",
            json!({"path": "made.txt", "content": "while waiting"}),
        )]),
        Reply::text("file written; waiting for the sleep"),
        Reply::text("the sleep finished"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(
        &env,
        &server,
        "Run sleep 5 && echo done in the background, then create a file",
    );
    out.assert_success();
    assert_eq!(env.read("made.txt"), "while waiting");

    let requests = server.requests();
    assert_eq!(requests.len(), 4, "{out}");
    assert!(
        requests[1].tool_results()[0].1.contains("bg-1"),
        "the id comes back at once"
    );
    // The file was written long before the sleep ended: they overlapped.
    assert!(requests[2].at.duration_since(requests[0].at) < Duration::from_secs(3));
    // One-shot mode waited for the task and gave the model its result.
    let last = requests[3].last_user_text();
    assert!(
        last.contains("<background-results>") && last.contains("[bg:bg-1] completed"),
        "{last}"
    );
    assert!(last.contains("done"), "{last}");
    assert!(out.elapsed < Duration::from_secs(12), "{out}");
    assert!(out.stdout.contains("the sleep finished"), "{out}");
    server.assert_protocol_ok();
}

#[test]
fn seed_scenario_three_sleeps_run_in_parallel() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "b1",
                "background_run",
                json!({"command": "sleep 2; echo two"}),
            ),
            tool_use(
                "b2",
                "background_run",
                json!({"command": "sleep 4; echo four"}),
            ),
            tool_use(
                "b3",
                "background_run",
                json!({"command": "sleep 6; echo six"}),
            ),
        ]),
        Reply::tools(vec![tool_use("c1", "check_background", json!({}))]),
        Reply::text("started three"),
        Reply::text("got some"),
        Reply::text("got more"),
        Reply::text("got all"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(
        &env,
        &server,
        "Start 3 background tasks: sleep 2, sleep 4, sleep 6. Check their status.",
    );
    out.assert_success();
    let requests = server.requests();
    let listing = &requests[2].tool_results()[0].1;
    for id in ["bg-1", "bg-2", "bg-3"] {
        assert!(listing.contains(id), "{listing}");
    }
    assert!(listing.contains("running"), "{listing}");
    for (id, word) in [("bg-1", "two"), ("bg-2", "four"), ("bg-3", "six")] {
        let at = delivered_in(&requests, id);
        assert_eq!(at.len(), 1, "{id} delivered once: {at:?}");
        assert!(requests[at[0]].last_user_text().contains(word));
    }
    // About 6 s in all, not 2 + 4 + 6 = 12.
    assert!(out.elapsed < Duration::from_secs(10), "{out}");
    server.assert_protocol_ok();
}

#[test]
fn seed_scenario_tests_run_in_the_background_while_other_tools_work() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "sleep 2; echo 'test result: ok. 3 passed; 0 failed'"}),
        )]),
        Reply::tools(vec![tool_use(
            "w1",
            "write_file",
            json!({"path": "src.txt", "content": "code"}),
        )]),
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": "cat src.txt && echo ' checked'"}),
        )]),
        Reply::tools(vec![tool_use(
            "r1",
            "read_file",
            json!({"path": "src.txt"}),
        )]),
        Reply::text("waiting for tests"),
        Reply::text("tests passed"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(
        &env,
        &server,
        "run the tests in the background and keep working",
    );
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests[3].tool_results()[0].1, "code checked");
    let at = delivered_in(&requests, "bg-1");
    assert_eq!(at.len(), 1);
    assert!(
        requests[at[0]]
            .last_user_text()
            .contains("3 passed; 0 failed")
    );
    server.assert_protocol_ok();
}

#[test]
fn a_notification_is_delivered_once_in_the_first_request_after_the_task_finished() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "echo quick"}),
        )]),
        // The task finishes while this bash call runs ...
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": "sleep 1.5"}),
        )]),
        // ... so the request that answers it carries the notification, after the result.
        Reply::tools(vec![tool_use(
            "s2",
            "bash",
            json!({"command": "echo again"}),
        )]),
        Reply::text("done"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "go");
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(delivered_in(&requests, "bg-1"), vec![2]);
    let last_message = requests[2].messages().last().unwrap().clone();
    let blocks = last_message["content"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "tool_result", "tool results come first");
    assert!(
        blocks.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("<background-results>")
    );
    // The whole conversation holds it exactly once.
    let history = serde_json::to_string(requests[3].messages()).unwrap();
    assert_eq!(history.matches("[bg:bg-1]").count(), 1);
    server.assert_protocol_ok();
}

#[test]
fn a_timed_out_task_leaves_no_process_behind() {
    let marker = format!("{}", 700_000 + std::process::id() % 100_000);
    let command = format!(
        "sleep {marker} & bash -c 'sleep {marker}; true' & (sleep {marker} &) ; echo started; wait"
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": command, "timeout": 1}),
        )]),
        Reply::text("waiting"),
        Reply::text("it timed out"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "run it");
    out.assert_success();
    let requests = server.requests();
    let at = delivered_in(&requests, "bg-1");
    assert_eq!(at.len(), 1);
    let text = requests[at[0]].last_user_text();
    assert!(text.contains("timed-out"), "{text}");
    assert!(
        text.contains("started"),
        "output before the timeout is kept: {text}"
    );
    let left = processes_with_marker(&marker);
    assert!(left.is_empty(), "processes of the task survived: {left:?}");
}

#[test]
fn bash_times_out_and_kills_its_process_group() {
    let marker = format!("{}", 800_000 + std::process::id() % 100_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": format!("echo before; sleep {marker} & sleep {marker}"), "timeout": 1}),
        )]),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "run");
    out.assert_success();
    let (_, text, is_error) = server.requests()[1].tool_results().remove(0);
    assert!(is_error);
    assert!(
        text.contains("before") && text.contains("timed out after 1s"),
        "{text}"
    );
    assert!(processes_with_marker(&marker).is_empty());
}

#[test]
fn bash_reports_exit_codes_and_caps_output() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "s1",
                "bash",
                json!({"command": "echo out; echo err >&2; exit 3"}),
            ),
            tool_use(
                "s2",
                "bash",
                json!({"command": "head -c 300000 /dev/zero | tr '\\0' a; echo; echo END"}),
            ),
            tool_use("s3", "bash", json!({"command": "pwd"})),
            tool_use(
                "s4",
                "bash",
                json!({"command": "read x; echo \"got [$x]\""}),
            ),
        ]),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "run");
    out.assert_success();
    let results = server.requests()[1].tool_results();
    assert_eq!(results[0].1, "out\nerr\n[exit code 3]");
    let big = &results[1].1;
    assert!(big.len() < 51_000, "{}", big.len());
    assert!(
        big.contains("bytes of output cut") && big.ends_with("END"),
        "head and tail kept"
    );
    let ws = env.workspace.path().canonicalize().unwrap();
    assert_eq!(results[2].1, ws.to_str().unwrap());
    assert_eq!(results[3].1, "got []", "stdin is /dev/null: no hang");
}
