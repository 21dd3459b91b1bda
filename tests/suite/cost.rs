//! Prompt caching, usage and cost: the cache marks keep the request prefix byte-identical
//! from turn to turn, cache tokens reported by the server are summed into the end-of-run
//! line, the `result` event and `/cost`, prices come from the built-in table or the
//! `[prices]` table of config.toml, and `--output json` opens with a `session` event.
//!
//! The model server here is its own (tiny_http on 127.0.0.1): the shared one keeps
//! request bodies parsed, and these tests need the raw bytes and chosen `usage` numbers.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ModelServer, TestEnv, agent, run, spawn};

const LIMIT: Duration = Duration::from_secs(60);
/// A cache mark as the agent adds it: the last key of the marked block. "Up to the mark"
/// is up to where these bytes begin; the next request has the block's closing `}` there.
const MARK: &str = r#","cache_control":{"type":"ephemeral"}"#;

/// One scripted answer: a `read_file` call or text, and the usage it reports.
struct Answer {
    read: Option<&'static str>,
    text: &'static str,
    stop: &'static str,
    /// input, output, cache read, cache write
    usage: [u64; 4],
}

fn read(path: &'static str, usage: [u64; 4]) -> Answer {
    Answer {
        read: Some(path),
        text: "",
        stop: "tool_use",
        usage,
    }
}

fn text(text: &'static str, usage: [u64; 4]) -> Answer {
    Answer {
        read: None,
        text,
        stop: "end_turn",
        usage,
    }
}

/// A Messages API that streams the scripted answers in order and keeps each request's raw
/// body.
struct CacheServer {
    http: Arc<tiny_http::Server>,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl CacheServer {
    fn start(script: Vec<Answer>) -> CacheServer {
        let http = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("listening"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (server, kept) = (Arc::clone(&http), Arc::clone(&bodies));
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for mut request in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let seq = {
                    let mut kept = kept.lock().unwrap();
                    kept.push(body);
                    kept.len()
                };
                let response = match script.next() {
                    Some(answer) => tiny_http::Response::from_data(sse(&answer, seq))
                        .with_header(
                            tiny_http::Header::from_bytes("content-type", "text/event-stream")
                                .unwrap(),
                        ),
                    None => tiny_http::Response::from_data(
                        br#"{"type":"error","error":{"type":"api_error","message":"script exhausted"}}"#
                            .to_vec(),
                    )
                    .with_status_code(400)
                    .with_header(
                        tiny_http::Header::from_bytes("content-type", "application/json").unwrap(),
                    ),
                };
                let _ = request.respond(response);
            }
        });
        CacheServer { http, bodies }
    }

    fn url(&self) -> String {
        format!("http://{}", self.http.server_addr().to_ip().unwrap())
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.http.unblock();
    }
}

/// The answer as the API streams it, the usage split between `message_start` (input and
/// cache counts) and `message_delta` (output).
fn sse(answer: &Answer, seq: usize) -> Vec<u8> {
    let [input, output, read, write] = answer.usage;
    let block = match answer.read {
        Some(path) => (
            json!({"type": "tool_use", "id": format!("toolu_{seq}"), "name": "read_file", "input": {}}),
            json!({"type": "input_json_delta", "partial_json": json!({"path": path}).to_string()}),
        ),
        None => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": answer.text}),
        ),
    };
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": format!("msg_{seq}"), "type": "message",
                "role": "assistant", "content": [], "stop_reason": null, "usage": {
                    "input_tokens": input, "output_tokens": 1,
                    "cache_read_input_tokens": read, "cache_creation_input_tokens": write}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block.0}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": block.1}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": answer.stop},
                "usage": {"output_tokens": output}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// The agent command aimed at `server` (the shared harness's settings otherwise).
fn agent_for(env: &TestEnv, server: &CacheServer, model: &str) -> Command {
    let unused = ModelServer::start(vec![]);
    let mut cmd = agent(env, &unused);
    cmd.env("ANTHROPIC_BASE_URL", server.url())
        .env("MODEL_ID", model);
    cmd
}

/// A three-call session: two reads, then the answer; usage of 10+20+30 in, 5+6+7 out,
/// 0+1000+1200 cache read, 900+150+160 cache write.
fn three_calls() -> Vec<Answer> {
    vec![
        read("a.txt", [10, 5, 0, 900]),
        read("b.txt", [20, 6, 1000, 150]),
        text("all read", [30, 7, 1200, 160]),
    ]
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn marks(body: &[u8]) -> Vec<usize> {
    let text = String::from_utf8_lossy(body);
    text.match_indices(MARK).map(|(at, _)| at).collect()
}

#[test]
fn consecutive_requests_repeat_every_byte_up_to_the_last_cache_mark() {
    let server = CacheServer::start(three_calls());
    let env = TestEnv::new();
    env.write("a.txt", "alpha\n".repeat(50));
    env.write("b.txt", "beta\n".repeat(50));
    let mut cmd = agent_for(&env, &server, "claude-sonnet-4-5");
    cmd.args(["-p", "read a.txt and b.txt"]);
    run(cmd, LIMIT).assert_success();
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 3);
    for (n, pair) in bodies.windows(2).enumerate() {
        let (first, next) = (&pair[0], &pair[1]);
        let first_marks = marks(first);
        assert_eq!(
            first_marks.len(),
            2,
            "request {n}: system and newest message"
        );
        let last = *first_marks.last().unwrap();
        assert!(
            first[..last] == next[..last],
            "request {} changed bytes before the last cache mark of request {n}",
            n + 1
        );
    }
    for body in &bodies {
        let body: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
        let newest = body["messages"].as_array().unwrap().last().unwrap();
        let last_block = newest["content"].as_array().unwrap().last().unwrap();
        assert_eq!(last_block["cache_control"]["type"], "ephemeral");
    }
}

#[test]
fn cache_tokens_are_summed_into_the_end_of_run_line() {
    let server = CacheServer::start(three_calls());
    let env = TestEnv::new();
    env.write("a.txt", "alpha\n");
    env.write("b.txt", "beta\n");
    let mut cmd = agent_for(&env, &server, "claude-sonnet-4-5-20250929");
    cmd.args(["-p", "read both"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    // Sonnet 4.5: $3 in, $15 out, $3.75 cache write, $0.30 cache read per million.
    let cost = (60.0 * 3.0 + 18.0 * 15.0 + 2200.0 * 0.30 + 1210.0 * 3.75) / 1e6;
    let line = format!("tokens: 60 in, 18 out, 2200 cache read, 1210 cache write; cost ${cost:.4}");
    assert!(out.stderr.contains(&line), "wanted {line:?}:\n{out}");
}

#[test]
fn json_output_opens_with_the_session_and_closes_with_the_result() {
    let server = CacheServer::start(three_calls());
    let env = TestEnv::new();
    env.write("a.txt", "alpha\n");
    env.write("b.txt", "beta\n");
    let mut cmd = agent_for(&env, &server, "claude-haiku-4-5");
    cmd.args(["--output", "json", "-p", "read both"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let events = json_lines(&out.stdout);
    let session = &events[0];
    assert_eq!(session["type"], "session", "{out}");
    // The id names this run's transcript.
    let id = session["session_id"].as_str().expect("a session id");
    assert!(
        env.state
            .path()
            .join("sessions")
            .join(format!("{id}.jsonl"))
            .is_file(),
        "{out}"
    );
    assert_eq!(session["provider"], "anthropic");
    assert_eq!(session["model"], "claude-haiku-4-5");
    let tools: Vec<&str> = session["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"read_file") && tools.contains(&"bash"),
        "{tools:?}"
    );
    let workspace = env.workspace.path().canonicalize().unwrap();
    assert_eq!(session["workspace"], workspace.display().to_string());

    let result = events.last().unwrap();
    assert_eq!(result["type"], "result", "{out}");
    assert_eq!(result["exit_reason"], "done");
    assert_eq!(result["turns"], 3);
    assert!(result["duration_secs"].as_f64().unwrap() > 0.0);
    assert_eq!(
        result["usage"],
        json!({"input_tokens": 60, "output_tokens": 18,
            "cache_read_input_tokens": 2200, "cache_creation_input_tokens": 1210})
    );
    // Haiku 4.5: $1 in, $5 out, $1.25 cache write, $0.10 cache read per million.
    let cost = (60.0 + 18.0 * 5.0 + 2200.0 * 0.10 + 1210.0 * 1.25) / 1e6;
    let reported = result["cost_usd"].as_f64().unwrap();
    assert!((reported - cost).abs() < 1e-12, "{reported} vs {cost}");
}

#[test]
fn the_result_event_names_a_cut_answer_and_an_error() {
    let server = CacheServer::start(vec![Answer {
        stop: "max_tokens",
        ..text("cut sho", [1, 2, 0, 0])
    }]);
    let env = TestEnv::new();
    let mut cmd = agent_for(&env, &server, "test-model");
    cmd.args(["--output", "json", "-p", "go"]);
    let out = run(cmd, LIMIT);
    let result = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(result["exit_reason"], "max_tokens", "{out}");

    // The script is empty: the server answers 400, which is not retried.
    let server = CacheServer::start(vec![]);
    let mut cmd = agent_for(&env, &server, "test-model");
    cmd.args(["--output", "json", "-p", "go"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(1), "{out}");
    let result = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(result["exit_reason"], "error", "{out}");
    assert!(
        result["error"]
            .as_str()
            .unwrap()
            .contains("script exhausted"),
        "{out}"
    );
    assert_eq!(result["turns"], 0);
}

#[test]
fn a_prices_table_in_the_config_sets_the_cost() {
    let env = TestEnv::new();
    std::fs::write(
        env.config.path().join("config.toml"),
        "[prices.\"claude-sonnet-4-5\"]\ninput = 1000\n\n[prices.\"my-model\"]\ninput = 100\noutput = 200\ncache_read = 10\ncache_write = 20\n",
    )
    .unwrap();
    // An override of a known model keeps the prices it does not name.
    let server = CacheServer::start(vec![text("hi", [1000, 100, 0, 0])]);
    let mut cmd = agent_for(&env, &server, "claude-sonnet-4-5");
    cmd.args(["-p", "hi"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let cost = (1000.0 * 1000.0 + 100.0 * 15.0) / 1e6;
    assert!(
        out.stderr.contains(&format!("; cost ${cost:.4}")),
        "{cost}:\n{out}"
    );
    // A model the agent does not know gets prices from the table.
    let server = CacheServer::start(vec![text("hi", [1000, 100, 2000, 3000])]);
    let mut cmd = agent_for(&env, &server, "my-model-7b");
    cmd.args(["-p", "hi"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    let cost = (1000.0 * 100.0 + 100.0 * 200.0 + 2000.0 * 10.0 + 3000.0 * 20.0) / 1e6;
    assert!(
        out.stderr.contains(&format!("; cost ${cost:.4}")),
        "{cost}:\n{out}"
    );
}

#[test]
fn a_bad_prices_table_is_a_one_line_error() {
    let env = TestEnv::new();
    std::fs::write(
        env.config.path().join("config.toml"),
        "[prices.\"my-model\"]\ninput = 1\noutput = 2\ncache_reads = 3\n",
    )
    .unwrap();
    let server = CacheServer::start(vec![]);
    let mut cmd = agent_for(&env, &server, "my-model");
    cmd.args(["-p", "hi"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), Some(2), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("line 4") && out.stderr.contains("cache_reads"),
        "{out}"
    );
    assert!(server.bodies().is_empty());
}

#[test]
fn an_unknown_model_shows_tokens_only() {
    let server = CacheServer::start(vec![text("hi", [40, 4, 0, 0])]);
    let env = TestEnv::new();
    let mut cmd = agent_for(&env, &server, "some-local-model");
    cmd.args(["-p", "hi"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    assert!(
        out.stderr
            .contains("tokens: 40 in, 4 out, 0 cache read, 0 cache write\n"),
        "{out}"
    );
    assert!(!out.stderr.contains("cost"), "{out}");

    let server = CacheServer::start(vec![text("hi", [40, 4, 0, 0])]);
    let mut cmd = agent_for(&env, &server, "some-local-model");
    cmd.args(["--output", "json", "-p", "hi"]);
    let out = run(cmd, LIMIT);
    let result = json_lines(&out.stdout).pop().unwrap();
    assert!(result.get("cost_usd").is_none(), "{out}");
}

#[test]
fn cost_in_the_repl_shows_the_session_and_the_last_turn() {
    let server = CacheServer::start(vec![
        read("a.txt", [10, 5, 0, 900]),
        text("first done", [20, 6, 1000, 150]),
        text("second done", [30, 7, 1200, 160]),
    ]);
    let env = TestEnv::new();
    env.write("a.txt", "alpha\n");
    let mut cmd = agent_for(&env, &server, "claude-sonnet-4-5");
    cmd.stdin(Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().unwrap();
    stdin.write_all(b"/cost\nread a.txt\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("first done"));
    stdin.write_all(b"again\n").unwrap();
    running.wait_for_output(LIMIT, |out, _| out.contains("second done"));
    stdin.write_all(b"/cost\nexit\n").unwrap();
    let out = running.wait(LIMIT);
    out.assert_success();
    assert!(
        out.stderr
            .contains("session (0 model calls): tokens: 0 in, 0 out, 0 cache read, 0 cache write; cost $0.0000"),
        "{out}"
    );
    let cost = (60.0 * 3.0 + 18.0 * 15.0 + 2200.0 * 0.30 + 1210.0 * 3.75) / 1e6;
    assert!(
        out.stderr.contains(&format!(
            "session (3 model calls): tokens: 60 in, 18 out, 2200 cache read, 1210 cache write; cost ${cost:.4}"
        )),
        "{out}"
    );
    let last = (30.0 * 3.0 + 7.0 * 15.0 + 1200.0 * 0.30 + 160.0 * 3.75) / 1e6;
    assert!(
        out.stderr.contains(&format!(
            "last turn (1 model call): tokens: 30 in, 7 out, 1200 cache read, 160 cache write; cost ${last:.4}"
        )),
        "{out}"
    );
    // The REPL shows usage on request only, not at exit.
    assert_eq!(out.stderr.matches("session (").count(), 2, "{out}");
}
