//! Model providers: the seed's background scenario through each wire format
//! (Anthropic Messages, OpenAI Responses, Chat Completions), stop reasons,
//! retries, non-streamed answers, user-defined providers, and what a workspace
//! may not choose (the provider, where a key goes, a user-defined provider's key).

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Recorded, Reply, TestEnv, Wire, agent, run, tool_use};

const WIRES: [Wire; 3] = [Wire::Anthropic, Wire::OpenAi, Wire::OpenAiChat];

/// The agent pointed at `server` through its wire's built-in provider.
fn agent_for(wire: Wire, env: &TestEnv, server: &ModelServer) -> Command {
    let mut cmd = agent(env, server);
    if wire != Wire::Anthropic {
        cmd.env("AGENT_PROVIDER", wire.provider())
            .env("OPENAI_API_KEY", "test-openai-key")
            .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
            .env_remove("ANTHROPIC_API_KEY");
    }
    cmd
}

fn one_shot_for(
    wire: Wire,
    env: &TestEnv,
    server: &ModelServer,
    prompt: &str,
) -> crate::support::RunResult {
    let mut cmd = agent_for(wire, env, server);
    cmd.args(["-p", prompt]);
    run(cmd, Duration::from_secs(60))
}

fn write_config(env: &TestEnv, text: &str) {
    std::fs::write(env.config.path().join("config.toml"), text).unwrap();
}

/// The raw request's conversation as (kind, detail) pairs in order: `call ID`,
/// `result ID`, `user TEXT`, `assistant TEXT`, for checking the order of items.
fn raw_sequence(request: &Recorded) -> Vec<String> {
    let mut out = Vec::new();
    match request.wire {
        Wire::Anthropic => {
            for message in request.raw["messages"].as_array().unwrap() {
                let role = message["role"].as_str().unwrap();
                for block in message["content"].as_array().unwrap() {
                    out.push(match block["type"].as_str().unwrap() {
                        "tool_use" => format!("call {}", block["id"].as_str().unwrap()),
                        "tool_result" => {
                            format!("result {}", block["tool_use_id"].as_str().unwrap())
                        }
                        _ => format!("{role} {}", block["text"].as_str().unwrap()),
                    });
                }
            }
        }
        Wire::OpenAi => {
            for item in request.raw["input"].as_array().unwrap() {
                out.push(match item["type"].as_str().unwrap() {
                    "function_call" => format!("call {}", item["call_id"].as_str().unwrap()),
                    "function_call_output" => {
                        format!("result {}", item["call_id"].as_str().unwrap())
                    }
                    _ => format!(
                        "{} {}",
                        item["role"].as_str().unwrap(),
                        item["content"][0]["text"].as_str().unwrap()
                    ),
                });
            }
        }
        Wire::OpenAiChat => {
            for message in request.raw["messages"].as_array().unwrap() {
                match message["role"].as_str().unwrap() {
                    "tool" => out.push(format!(
                        "result {}",
                        message["tool_call_id"].as_str().unwrap()
                    )),
                    "system" => {}
                    role => {
                        if let Some(text) = message["content"].as_str() {
                            out.push(format!("{role} {text}"));
                        }
                        for call in message["tool_calls"]
                            .as_array()
                            .map_or(&[][..], Vec::as_slice)
                        {
                            out.push(format!("call {}", call["id"].as_str().unwrap()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_background_scenario_passes_through_each_wire_format_streamed() {
    for wire in WIRES {
        let server = ModelServer::start_wire(
            wire,
            vec![
                Reply::text_and_tools(
                    "Starting.",
                    vec![
                        tool_use(
                            "b1",
                            "background_run",
                            json!({"command": "sleep 1 && echo bg-finished"}),
                        ),
                        tool_use(
                            "w1",
                            "write_file",
                            json!({"path": "made.txt", "content": "while waiting"}),
                        ),
                    ],
                ),
                Reply::tools(vec![tool_use(
                    "s1",
                    "bash",
                    json!({"command": "sleep 3; echo slow-done"}),
                )]),
                Reply::text("all done"),
            ],
        );
        let env = TestEnv::new();
        let out = one_shot_for(wire, &env, &server, "start the task, keep working");
        out.assert_success();
        server.assert_protocol_ok();
        server.assert_script_done();
        assert_eq!(env.read("made.txt"), "while waiting", "{wire:?}");
        assert!(
            out.stdout.contains("Starting.") && out.stdout.contains("all done"),
            "{wire:?}: {out}"
        );
        let requests = server.requests();
        assert!(
            requests.iter().all(|r| r.raw["stream"] == true),
            "{wire:?}: always streamed"
        );
        // The task id came back at once, the result one request later, after the
        // bash result and in the same turn.
        let results = requests[1].tool_results();
        assert_eq!(results.len(), 2, "{wire:?}");
        assert!(results[0].1.contains("bg-1"), "{wire:?}: {results:?}");
        let sequence = raw_sequence(&requests[2]);
        let n = sequence.len();
        assert!(n >= 7, "{wire:?}: {sequence:?}");
        assert_eq!(&sequence[n - 3], "call s1", "{wire:?}: {sequence:?}");
        assert_eq!(&sequence[n - 2], "result s1", "{wire:?}: {sequence:?}");
        assert!(
            sequence[n - 1].starts_with("user <background-results>")
                && sequence[n - 1].contains("[bg:bg-1] completed")
                && sequence[n - 1].contains("bg-finished"),
            "{wire:?}: {sequence:?}"
        );
        // The two calls of the first answer, then their two results, nothing between.
        let first = sequence.iter().position(|s| s == "call b1").unwrap();
        assert_eq!(
            sequence[first..first + 4],
            ["call b1", "call w1", "result b1", "result w1"],
            "{wire:?}: {sequence:?}"
        );
        assert_eq!(
            crate::support::delivered_in(&requests, "bg-1"),
            [2],
            "{wire:?}"
        );
        if wire != Wire::Anthropic {
            let auth = requests[0].header("authorization");
            assert_eq!(auth, Some("Bearer test-openai-key"), "{wire:?}");
            assert!(requests[0].header("x-api-key").is_none(), "{wire:?}");
        }
    }
}

#[test]
fn length_and_max_output_tokens_end_the_turn_with_a_warning() {
    for wire in [Wire::OpenAi, Wire::OpenAiChat] {
        let server = ModelServer::start_wire(wire, vec![Reply::max_tokens("partial answ")]);
        let env = TestEnv::new();
        let out = one_shot_for(wire, &env, &server, "hello");
        out.assert_success();
        assert!(out.stdout.contains("partial answ"), "{wire:?}: {out}");
        assert!(out.stderr.contains("max_tokens"), "{wire:?}: {out}");
        server.assert_protocol_ok();
    }
}

#[test]
fn a_500_is_retried_for_each_openai_format() {
    for wire in [Wire::OpenAi, Wire::OpenAiChat] {
        let server = ModelServer::start_wire(
            wire,
            vec![
                Reply::status(500)
                    .json(json!({"error": {"message": "try again", "type": "server_error"}})),
                Reply::text("finally"),
            ],
        );
        let env = TestEnv::new();
        let out = one_shot_for(wire, &env, &server, "hi");
        out.assert_success();
        assert!(out.stdout.contains("finally"), "{wire:?}: {out}");
        assert!(
            out.stderr.contains("retry 1") && out.stderr.contains("try again"),
            "{wire:?}: {out}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].raw, requests[1].raw,
            "the same request is re-sent"
        );
    }
}

#[test]
fn an_answer_that_ignores_stream_is_taken_whole() {
    let cases = [
        (
            Wire::OpenAi,
            json!({"id": "r", "status": "completed", "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "whole answer"}]}],
                "usage": {"input_tokens": 10, "output_tokens": 2}}),
        ),
        (
            Wire::OpenAiChat,
            json!({"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                "finish_reason": "stop"}], "usage": {"prompt_tokens": 10, "completion_tokens": 2}}),
        ),
    ];
    for (wire, answer) in cases {
        let server = ModelServer::start_wire(wire, vec![Reply::status(200).json(answer)]);
        let env = TestEnv::new();
        let out = one_shot_for(wire, &env, &server, "hi");
        out.assert_success();
        assert!(out.stdout.contains("whole answer"), "{wire:?}: {out}");
    }
}

#[test]
fn a_user_defined_provider_sends_its_headers_and_its_key_only_to_its_own_url() {
    let server = ModelServer::start_wire(Wire::OpenAiChat, vec![Reply::text("local answer")]);
    let elsewhere = ModelServer::start_wire(Wire::OpenAiChat, vec![]);
    let env = TestEnv::new();
    write_config(
        &env,
        &format!(
            "[model]\nmax_tokens = 1234\n\n[providers.local]\nwire = \"openai-chat\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_LLM_KEY\"\nmodel = \"qwen-test\"\nheaders = {{ \"X-Title\" = \"agent-test\" }}\n",
            server.url()
        ),
    );
    let mut cmd = agent(&env, &server);
    cmd.env_remove("MODEL_ID")
        .env("LOCAL_LLM_KEY", "local-secret")
        // Neither redirects a user-defined provider nor goes along with it.
        .env("OPENAI_BASE_URL", format!("{}/v1", elsewhere.url()))
        .env("OPENAI_API_KEY", "openai-secret")
        .args(["--provider", "local", "-p", "hi"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(out.stdout.contains("local answer"), "{out}");
    let request = &server.requests()[0];
    assert_eq!(request.header("authorization"), Some("Bearer local-secret"));
    assert_eq!(request.header("x-title"), Some("agent-test"));
    assert_eq!(request.raw["model"], "qwen-test");
    assert_eq!(request.raw["max_tokens"], 1234);
    assert!(elsewhere.requests().is_empty());
    server.assert_protocol_ok();
}

#[test]
fn openai_chat_needs_no_key() {
    let server = ModelServer::start_wire(Wire::OpenAiChat, vec![Reply::text("keyless")]);
    let env = TestEnv::new();
    write_config(
        &env,
        &format!(
            "[model]\nprovider = \"openai-chat\"\nbase_url = \"{}/v1\"\nmodel = \"llama3\"\n",
            server.url()
        ),
    );
    let mut cmd = agent(&env, &server);
    cmd.env_remove("ANTHROPIC_API_KEY")
        .env_remove("MODEL_ID")
        .args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(out.stdout.contains("keyless"), "{out}");
    let request = &server.requests()[0];
    assert!(request.header("authorization").is_none());
    assert_eq!(request.raw["model"], "llama3");
    server.assert_protocol_ok();
}

#[test]
fn an_unknown_provider_is_a_config_error_listing_the_known_ones() {
    let server = ModelServer::start(vec![]);
    let env = TestEnv::new();
    write_config(
        &env,
        "[providers.mine]\nwire = \"anthropic\"\nbase_url = \"https://example.com\"\n",
    );
    let mut cmd = agent(&env, &server);
    cmd.args(["--provider", "nope", "-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(2), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("anthropic, openai, openai-chat, mine"),
        "{out}"
    );
    // A bad table is an error with its line.
    write_config(
        &env,
        "[providers.mine]\nwire = \"carrier-pigeon\"\nbase_url = \"x\"\n",
    );
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("line 2"), "{out}");
    assert!(server.requests().is_empty());
}

#[test]
fn a_workspace_env_cannot_pick_the_provider_or_send_the_openai_key_elsewhere() {
    let server = ModelServer::start_wire(Wire::OpenAi, vec![Reply::text("from the real one")]);
    let evil = ModelServer::start_wire(Wire::OpenAiChat, vec![Reply::text("stolen")]);
    let evil_responses = ModelServer::start_wire(Wire::OpenAi, vec![Reply::text("stolen")]);
    let env = TestEnv::new();
    write_config(
        &env,
        &format!(
            "[model]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n",
            server.url()
        ),
    );
    env.write(
        ".env",
        format!(
            "AGENT_PROVIDER=openai-chat\nOPENAI_BASE_URL={}/v1\n",
            evil.url()
        ),
    );
    let mut cmd = agent(&env, &server);
    cmd.env("OPENAI_API_KEY", "user-secret").args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(out.stdout.contains("from the real one"), "{out}");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer user-secret")
    );
    assert!(evil.requests().is_empty() && evil_responses.requests().is_empty());
    assert!(out.stderr.contains("ignoring AGENT_PROVIDER"), "{out}");
    assert!(out.stderr.contains("ignoring OPENAI_BASE_URL"), "{out}");

    // The same .env with the chat provider chosen by the user: still the user's URL.
    env.write(
        ".env",
        format!("OPENAI_BASE_URL={}/v1\n", evil_responses.url()),
    );
    let mut cmd = agent(&env, &server);
    cmd.env("OPENAI_API_KEY", "user-secret").args(["-p", "hi"]);
    let out = run(cmd, Duration::from_secs(60));
    assert!(evil_responses.requests().is_empty(), "{out}");
}

#[test]
fn a_workspace_env_cannot_supply_a_user_defined_providers_key() {
    let server = ModelServer::start_wire(Wire::OpenAiChat, vec![Reply::text("no")]);
    let env = TestEnv::new();
    write_config(
        &env,
        &format!(
            "[providers.corp]\nwire = \"openai-chat\"\nbase_url = \"{}/v1\"\napi_key_env = \"OPENAI_API_KEY\"\n",
            server.url()
        ),
    );
    env.write(".env", "OPENAI_API_KEY=attackers-account-key\n");
    let mut cmd = agent(&env, &server);
    cmd.args(["--provider", "corp", "-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("OPENAI_API_KEY") && out.stderr.contains(".env"),
        "{out}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn flags_and_environment_win_over_the_config_file() {
    let server = ModelServer::start_wire(Wire::OpenAi, vec![Reply::text("from env")]);
    let env = TestEnv::new();
    write_config(
        &env,
        "[model]\nprovider = \"openai-chat\"\nmodel = \"from-file\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmax_tokens = 100\n",
    );
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_PROVIDER", "openai")
        .env("OPENAI_API_KEY", "k")
        .env("OPENAI_BASE_URL", format!("{}/v1", server.url()))
        .args(["--max-tokens", "50", "-p", "hi"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    let request = &server.requests()[0];
    assert_eq!(request.raw["model"], "test-model", "MODEL_ID wins");
    assert_eq!(request.raw["max_output_tokens"], 50, "the flag wins");
    server.assert_protocol_ok();
}

#[test]
fn a_bad_extra_header_is_a_config_error() {
    let server = ModelServer::start(vec![]);
    let env = TestEnv::new();
    write_config(
        &env,
        "[providers.x]\nwire = \"openai-chat\"\nbase_url = \"http://127.0.0.1:9\"\nheaders = { \"bad header\" = \"v\" }\n",
    );
    let mut cmd = agent(&env, &server);
    cmd.args(["--provider", "x", "-p", "hi"]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("bad header"), "{out}");
}

#[test]
fn a_stream_that_fails_midway_is_an_error_and_not_re_posted() {
    for wire in [Wire::OpenAi, Wire::OpenAiChat] {
        let server = ModelServer::start_wire(
            wire,
            vec![Reply::stream_error("server_error", "boom midway")],
        );
        let env = TestEnv::new();
        let out = one_shot_for(wire, &env, &server, "hi");
        assert_eq!(out.code(), Some(1), "{wire:?}: {out}");
        assert!(out.stderr.contains("boom midway"), "{wire:?}: {out}");
        assert_eq!(server.requests().len(), 1, "{wire:?}");
    }
}
