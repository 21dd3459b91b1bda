//! Controlling background tasks: kill, the concurrency limit, paging through logs, output
//! that is not UTF-8, and delivery of a task that ends during a model call.

use std::time::Duration;

use serde_json::json;

use crate::support::{
    ModelServer, Reply, TestEnv, agent, delivered_in, one_shot, processes_with_marker, run,
    tool_use,
};

#[test]
fn kill_background_ends_the_whole_process_group() {
    let marker = format!("{}", 400_000 + std::process::id() % 100_000);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": format!("echo up; sleep {marker} & (sleep {marker} &); sleep {marker}")}),
        )]),
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": "sleep 0.5"}),
        )]),
        Reply::tools(vec![tool_use(
            "k1",
            "kill_background",
            json!({"task_id": "bg-1"}),
        )]),
        Reply::tools(vec![tool_use(
            "k2",
            "kill_background",
            json!({"task_id": "bg-9"}),
        )]),
        Reply::text("killed it"),
        Reply::text("noted"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "start then stop");
    out.assert_success();
    let requests = server.requests();
    assert!(
        requests[3].tool_results()[0]
            .1
            .contains("Stopping task bg-1")
    );
    let (_, unknown, is_error) = requests[4].tool_results().remove(0);
    assert!(
        is_error && unknown.contains("no background task with id bg-9"),
        "{unknown}"
    );
    let at = delivered_in(&requests, "bg-1");
    assert_eq!(at.len(), 1, "exactly one notification");
    let text = requests[at[0]].last_user_text();
    assert!(
        text.contains("[bg:bg-1] killed") && text.contains("up"),
        "{text}"
    );
    assert!(
        processes_with_marker(&marker).is_empty(),
        "no process of the task survives"
    );
    server.assert_protocol_ok();
}

#[test]
fn tasks_over_the_concurrency_limit_wait_queued_and_start_in_order() {
    let server = ModelServer::start(vec![
        Reply::tools(
            (1..=4)
                .map(|i| {
                    tool_use(
                        &format!("b{i}"),
                        "background_run",
                        json!({"command": format!("sleep 1; echo task{i}")}),
                    )
                })
                .collect(),
        ),
        Reply::tools(vec![tool_use("c1", "check_background", json!({}))]),
        Reply::text("waiting"),
        // One answer per delivery; tasks that end together may come in one.
        Reply::text("one"),
        Reply::text("two"),
        Reply::text("three"),
        Reply::text("four"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "run four", "--max-background", "2"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    let requests = server.requests();
    let listing = &requests[2].tool_results()[0].1;
    assert_eq!(listing.matches("running").count(), 2, "{listing}");
    assert_eq!(listing.matches("queued").count(), 2, "{listing}");
    let first: Vec<usize> = (1..=4)
        .map(|i| delivered_in(&requests, &format!("bg-{i}"))[0])
        .collect();
    assert!(
        first[0] <= first[2] && first[1] <= first[3],
        "queued tasks start in order: {first:?}"
    );
    assert!(
        out.elapsed >= Duration::from_secs(2),
        "two rounds of one second: {out}"
    );
    server.assert_protocol_ok();
}

#[test]
fn check_background_pages_a_long_log_by_lines() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "for i in $(seq 0 999); do echo \"line $i\"; done"}),
        )]),
        Reply::text("waiting"),
        Reply::tools(vec![
            tool_use(
                "c1",
                "check_background",
                json!({"task_id": "bg-1", "offset": 500, "limit": 3}),
            ),
            tool_use(
                "c2",
                "check_background",
                json!({"task_id": "bg-1", "tail": 2}),
            ),
            tool_use(
                "c3",
                "check_background",
                json!({"task_id": "bg-1", "offset": 5000}),
            ),
            tool_use("c4", "check_background", json!({"task_id": "bg-1"})),
        ]),
        Reply::text("read it"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "make a long log");
    out.assert_success();
    let results = server.requests()[3].tool_results();
    assert!(
        results[0].1.contains("lines 500-502 of 1000"),
        "{}",
        results[0].1
    );
    assert!(
        results[0].1.ends_with("line 500\nline 501\nline 502"),
        "{}",
        results[0].1
    );
    assert!(
        results[1].1.ends_with("line 998\nline 999"),
        "{}",
        results[1].1
    );
    assert!(
        results[2].1.contains("the log has 1000 lines"),
        "{}",
        results[2].1
    );
    let summary = &results[3].1;
    let state = env.state.path().canonicalize().unwrap();
    assert!(
        summary.contains(state.to_str().unwrap()) && summary.contains("bg-1.log"),
        "log path shown: {summary}"
    );
    assert!(
        summary.contains("completed") && summary.contains("line 999"),
        "{summary}"
    );
}

#[test]
fn output_that_is_not_utf8_is_shown_lossily() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "b1",
                "background_run",
                json!({"command": "printf 'bg\\377\\376ok\\n'"}),
            ),
            tool_use("s1", "bash", json!({"command": "printf 'sh\\377ok'"})),
        ]),
        Reply::text("waiting"),
        Reply::text("seen"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "print bytes");
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests[1].tool_results()[1].1, "sh\u{fffd}ok");
    let at = delivered_in(&requests, "bg-1")[0];
    assert!(
        requests[at]
            .last_user_text()
            .contains("bg\u{fffd}\u{fffd}ok")
    );
}

#[test]
fn a_task_that_ends_during_a_model_call_is_delivered_in_the_next_request() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": "sleep 0.3; echo fast"}),
        )]),
        // The model takes 1.5 s to answer; the task ends meanwhile.
        Reply::delay(
            Duration::from_millis(1500),
            Reply::tools(vec![tool_use("s1", "bash", json!({"command": "echo hi"}))]),
        ),
        Reply::text("done"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "go");
    out.assert_success();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(delivered_in(&requests, "bg-1"), vec![2]);
    let history = serde_json::to_string(requests[2].messages()).unwrap();
    assert_eq!(history.matches("[bg:bg-1]").count(), 1);
    server.assert_protocol_ok();
}

#[test]
fn the_same_command_policy_applies_to_bash_and_background_run() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use("s1", "bash", json!({"command": "sudo rm -rf /"})),
            tool_use("b1", "background_run", json!({"command": "sudo rm -rf /"})),
            tool_use("b2", "background_run", json!({"command": "env | sort"})),
        ]),
        Reply::text("waiting"),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.env("SECRET_TOKEN", "hunter2").args(["-p", "go"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    let requests = server.requests();
    let results = requests[1].tool_results();
    for (id, text, is_error) in &results[..2] {
        assert!(*is_error && text.starts_with("blocked:"), "{id}: {text}");
    }
    // The refused command started no task, so `env | sort` is bg-1.
    let at = delivered_in(&requests, "bg-1")[0];
    let env_listing = requests[at].last_user_text();
    assert!(env_listing.contains("AGENT=1"), "{env_listing}");
    assert!(
        !env_listing.contains("hunter2") && !env_listing.contains("ANTHROPIC_API_KEY"),
        "{env_listing}"
    );
}
