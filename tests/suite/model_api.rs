//! Talking to the model API: configuration errors, API errors and retries.

use std::time::Duration;

use crate::support::{ModelServer, Reply, TestEnv, agent, one_shot, run};

#[test]
fn a_missing_api_key_is_a_one_line_error() {
    let server = ModelServer::start(vec![]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.env_remove("ANTHROPIC_API_KEY").args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(2), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(out.stderr.contains("ANTHROPIC_API_KEY"), "{out}");
    assert!(server.requests().is_empty());
}

#[test]
fn the_key_can_come_from_a_dotenv_file() {
    let server = ModelServer::start(vec![Reply::text("hello")]);
    let env = TestEnv::new();
    env.write(
        ".env",
        "ANTHROPIC_API_KEY=from-dotenv\nMODEL_ID=dotenv-model\n",
    );
    let mut cmd = agent(&env, &server);
    // A .env never overrides the environment, so the variables it sets must be unset.
    cmd.env_remove("ANTHROPIC_API_KEY")
        .env_remove("MODEL_ID")
        .args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    out.assert_success();
    let request = &server.requests()[0];
    assert_eq!(request.header("x-api-key"), Some("from-dotenv"));
    assert_eq!(request.body["model"], "dotenv-model");
}

#[test]
fn an_api_error_is_a_one_line_message_and_a_failure_exit() {
    let server = ModelServer::start(vec![Reply::api_error(
        400,
        "invalid_request_error",
        "messages: bad thing",
    )]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "hi");
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("model API error 400 (invalid_request_error): messages: bad thing"),
        "{out}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(!out.stderr.contains("panicked"));
    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
}

#[test]
fn a_429_is_retried_after_the_retry_after_delay() {
    let server = ModelServer::start(vec![
        Reply::api_error(429, "rate_limit_error", "slow down").header("retry-after", "1"),
        Reply::api_error(529, "overloaded_error", "overloaded").header("retry-after", "0"),
        Reply::text("finally"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "hi");
    out.assert_success();
    assert!(out.stdout.contains("finally"), "{out}");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retry-after honoured: {waited:?}"
    );
    assert!(out.stderr.contains("retry 1"), "{out}");
    assert_eq!(
        requests[0].body, requests[2].body,
        "the same request is re-sent"
    );
}

#[test]
fn the_request_carries_model_headers_and_tools() {
    let server = ModelServer::start(vec![Reply::text("hi")]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "hello");
    out.assert_success();
    let request = &server.requests()[0];
    assert_eq!(request.header("x-api-key"), Some("test-key"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.body["model"], "test-model");
    let mut names = request.tool_names();
    names.sort();
    assert_eq!(
        names,
        [
            "background_run",
            "bash",
            "check_background",
            "edit_file",
            "kill_background",
            "read_file",
            "write_background",
            "write_file"
        ]
    );
    server.assert_protocol_ok();
}

#[test]
fn max_tokens_ends_the_turn_with_a_warning() {
    let server = ModelServer::start(vec![Reply::max_tokens("partial answ")]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "hello");
    out.assert_success();
    assert!(out.stdout.contains("partial answ"));
    assert!(out.stderr.contains("max_tokens"), "{out}");
}
