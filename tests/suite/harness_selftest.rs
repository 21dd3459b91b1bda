//! Tests of the harness itself (no agent binary involved): the scripted model
//! server is driven with a raw HTTP/1.1 client over `TcpStream`, its SSE is
//! parsed and checked against the Anthropic streaming format, and the protocol
//! checker and process helpers are exercised directly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    ModelServer, Reply, check_request, processes_with_marker, run, spawn, tool_use,
};

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client and SSE parser.

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// The headers a well-behaved client sends.
const GOOD_HEADERS: &[(&str, &str)] = &[
    ("x-api-key", "test-key"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
];

/// POSTs `body` to `{url}/v1/messages` and reads the whole response.
fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    let host = url.strip_prefix("http://").expect("an http:// url");
    let mut stream = TcpStream::connect(host).expect("connect to the model server");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    let body = body.to_string();
    let mut request =
        format!("POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .expect("send the request");

    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(response) = parse_response(&raw) {
            return response;
        }
        let n = stream.read(&mut buf).expect("read the response");
        assert!(
            n > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Parses a complete HTTP response (Content-Length or chunked body); `None`
/// while incomplete.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line
        .split(' ')
        .nth(1)?
        .parse()
        .expect("a numeric status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else {
        let len: usize =
            find("content-length").map_or(0, |l| l.parse().expect("a numeric content-length"));
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    })
}

fn decode_chunked(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16)
            .expect("a hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        rest = &rest[size + 2..];
    }
}

/// Parses an SSE body into `(event name, data JSON)`, insisting on the
/// `event: NAME\ndata: JSON\n\n` shape and on the data's `type` being the name.
fn parse_sse(body: &str) -> Vec<(String, Value)> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.trim_end_matches('\n')
        .split("\n\n")
        .map(|event| {
            let mut lines = event.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("event without an `event:` line: {event:?}"));
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("event without a `data:` line: {event:?}"));
            assert!(lines.next().is_none(), "extra lines in event: {event:?}");
            let data: Value = serde_json::from_str(data)
                .unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
            assert_eq!(data["type"], name, "data type differs from the event name");
            (name.to_string(), data)
        })
        .collect()
}

/// A streamed message put back together, with how it was cut up.
struct Assembled {
    message: Value,
    /// Per content block: how many non-empty deltas carried it.
    deltas: Vec<usize>,
    pings: usize,
}

/// Checks the Anthropic event grammar and rebuilds the message from it.
fn assemble(events: &[(String, Value)]) -> Assembled {
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(
        &names[names.len() - 2..],
        ["message_delta", "message_stop"],
        "{names:?}"
    );

    let mut message = events[0].1["message"].clone();
    for (field, expected) in [
        ("type", json!("message")),
        ("role", json!("assistant")),
        ("content", json!([])),
        ("stop_reason", Value::Null),
    ] {
        assert_eq!(message[field], expected, "message_start.message.{field}");
    }
    assert!(
        message["id"].is_string() && message["model"].is_string(),
        "{message}"
    );
    assert!(message["usage"]["input_tokens"].is_u64(), "{message}");

    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    let mut deltas: Vec<usize> = Vec::new();
    let mut open: Option<usize> = None;
    let mut pings = 0;
    for (name, data) in &events[1..] {
        match name.as_str() {
            "ping" => pings += 1,
            "content_block_start" => {
                assert_eq!(open, None, "block started while another is open");
                let index = usize::try_from(data["index"].as_u64().expect("an index"))
                    .expect("small index");
                assert_eq!(index, blocks.len(), "block indexes must count up from 0");
                let block = data["content_block"].clone();
                match block["type"].as_str() {
                    Some("text") => assert_eq!(block["text"], "", "text blocks start empty"),
                    Some("tool_use") => assert_eq!(
                        block["input"],
                        json!({}),
                        "tool_use blocks start with input {{}}"
                    ),
                    other => panic!("unexpected block type {other:?}"),
                }
                blocks.push(block);
                json_parts.push(String::new());
                deltas.push(0);
                open = Some(index);
            }
            "content_block_delta" => {
                let index = open.expect("delta outside a block");
                assert_eq!(data["index"], index);
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let piece = delta["text"].as_str().expect("text_delta.text");
                        let text =
                            format!("{}{piece}", blocks[index]["text"].as_str().unwrap_or(""));
                        blocks[index]["text"] = json!(text);
                        deltas[index] += usize::from(!piece.is_empty());
                    }
                    Some("input_json_delta") => {
                        let piece = delta["partial_json"].as_str().expect("partial_json");
                        json_parts[index].push_str(piece);
                        deltas[index] += usize::from(!piece.is_empty());
                    }
                    other => panic!("unexpected delta type {other:?}"),
                }
            }
            "content_block_stop" => {
                let index = open.take().expect("stop outside a block");
                assert_eq!(data["index"], index);
                if blocks[index]["type"] == "tool_use" {
                    blocks[index]["input"] = serde_json::from_str(&json_parts[index])
                        .unwrap_or_else(|e| {
                            panic!(
                                "partial_json pieces do not join into JSON ({e}): {}",
                                json_parts[index]
                            )
                        });
                }
            }
            "message_delta" => {
                assert_eq!(open, None, "message_delta while a block is open");
                assert!(data["delta"]["stop_reason"].is_string(), "{data}");
                assert_eq!(data["delta"]["stop_sequence"], Value::Null);
                assert!(data["usage"]["output_tokens"].is_u64(), "{data}");
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
            }
            "message_stop" => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    message["content"] = Value::Array(blocks);
    Assembled {
        message,
        deltas,
        pings,
    }
}

fn tool_definitions() -> Value {
    json!([
        {"name": "bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
        {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    ])
}

fn request_body(messages: Value, stream: bool) -> Value {
    json!({
        "model": "test-model",
        "max_tokens": 1024,
        "stream": stream,
        "system": "You are under test.",
        "tools": tool_definitions(),
        "messages": messages,
    })
}

fn panic_text(result: std::thread::Result<()>) -> String {
    let payload = result.expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The model server.

#[test]
fn streams_tool_use_then_text_as_anthropic_sse() {
    let server = ModelServer::start(vec![
        Reply::text_and_tools(
            "Let me look — ünïcode ✓",
            vec![
                tool_use(
                    "toolu_1",
                    "bash",
                    json!({"command": "ls -la", "timeout": 5}),
                ),
                tool_use("toolu_2", "read_file", json!({"path": "dir/ä.txt"})),
            ],
        ),
        Reply::text("All done."),
    ]);
    assert!(server.url().starts_with("http://127.0.0.1:") && !server.url().ends_with('/'));

    let first_messages = json!([{"role": "user", "content": "list the files"}]);
    let response = post(
        &server.url(),
        GOOD_HEADERS,
        &request_body(first_messages.clone(), true),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let streamed = assemble(&parse_sse(&response.body));
    assert!(streamed.pings >= 1, "no ping event");
    assert_eq!(streamed.message["stop_reason"], "tool_use");
    assert_eq!(streamed.message["model"], "test-model");
    let content = streamed.message["content"].clone();
    assert_eq!(
        content,
        json!([
            {"type": "text", "text": "Let me look — ünïcode ✓"},
            {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls -la", "timeout": 5}},
            {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {"path": "dir/ä.txt"}},
        ])
    );
    assert!(
        streamed.deltas.iter().all(|&n| n >= 2),
        "each block needs 2+ deltas: {:?}",
        streamed.deltas
    );

    let mut messages = first_messages.as_array().cloned().unwrap_or_default();
    messages.push(json!({"role": "assistant", "content": content}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file_a\nfile_b"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "no such file"}], "is_error": true},
        {"type": "text", "text": "go on"},
    ]}));
    let response = post(
        &server.url(),
        GOOD_HEADERS,
        &request_body(json!(messages), true),
    );
    assert_eq!(response.status, 200);
    let streamed = assemble(&parse_sse(&response.body));
    assert_eq!(streamed.message["stop_reason"], "end_turn");
    assert_eq!(
        streamed.message["content"],
        json!([{"type": "text", "text": "All done."}])
    );
    assert!(streamed.deltas[0] >= 2);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].at <= requests[1].at);
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].header("X-API-Key"), Some("test-key"));
    assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(requests[0].last_user_text(), "list the files");
    assert_eq!(requests[0].tool_names(), ["bash", "read_file"]);
    assert_eq!(
        requests[1].last_user_text(),
        "file_a\nfile_b\nno such file\ngo on"
    );
    assert_eq!(
        requests[1].tool_results(),
        [
            ("toolu_1".to_string(), "file_a\nfile_b".to_string(), false),
            ("toolu_2".to_string(), "no such file".to_string(), true),
        ]
    );
    server.assert_protocol_ok();
    server.assert_script_done();
}

#[test]
fn answers_a_non_streaming_request_with_one_json_message() {
    let server = ModelServer::start(vec![
        Reply::text_and_tools(
            "Checking.",
            vec![tool_use("t1", "bash", json!({"command": "pwd"}))],
        ),
        Reply::max_tokens("cut sh"),
    ]);
    let response = post(
        &server.url(),
        GOOD_HEADERS,
        &request_body(json!([{"role": "user", "content": "where am I"}]), false),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let message = response.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["stop_reason"], "tool_use");
    assert!(message["usage"]["output_tokens"].is_u64());
    assert_eq!(
        message["content"],
        json!([
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "pwd"}},
        ])
    );

    let messages = json!([
        {"role": "user", "content": "where am I"},
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "/tmp"}]},
    ]);
    let response = post(
        &server.url(),
        GOOD_HEADERS,
        &request_body(messages.clone(), true),
    );
    let streamed = assemble(&parse_sse(&response.body));
    assert_eq!(streamed.message["stop_reason"], "max_tokens");
    assert_eq!(
        streamed.message["content"],
        json!([{"type": "text", "text": "cut sh"}])
    );
    server.assert_protocol_ok();
}

#[test]
fn a_request_beyond_the_script_gets_500_and_is_recorded() {
    let server = ModelServer::start(vec![Reply::text("the only reply")]);
    let body = request_body(json!([{"role": "user", "content": "hi"}]), true);
    assert_eq!(post(&server.url(), GOOD_HEADERS, &body).status, 200);
    server.assert_script_done();

    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["type"], "error");
    assert!(
        response.body.contains("script exhausted"),
        "{}",
        response.body
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(server.exhausted(), 1);
    let failure = panic_text(catch_unwind(AssertUnwindSafe(|| {
        server.assert_script_done()
    })));
    assert!(failure.contains("2 model call(s)"), "{failure}");
}

#[test]
fn an_unanswered_tool_use_is_a_protocol_violation() {
    let server = ModelServer::start(vec![Reply::text("ok")]);
    let messages = json!([
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_lost", "name": "bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": "I never answered the tool"},
    ]);
    // The fake model still answers; the violation is recorded for the test.
    assert_eq!(
        post(&server.url(), GOOD_HEADERS, &request_body(messages, true)).status,
        200
    );
    let violations = server.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].starts_with("request #1: "), "{violations:?}");
    assert!(violations[0].contains("toolu_lost"), "{violations:?}");
    let failure = panic_text(catch_unwind(AssertUnwindSafe(|| {
        server.assert_protocol_ok()
    })));
    assert!(
        failure.contains("toolu_lost") && failure.contains("1 protocol violation"),
        "{failure}"
    );
}

#[test]
fn missing_headers_and_other_endpoints_are_violations() {
    let server = ModelServer::start(vec![Reply::text("ok")]);
    let body = request_body(json!([{"role": "user", "content": "hi"}]), false);
    let response = post(
        &server.url(),
        &[("content-type", "application/json")],
        &body,
    );
    assert_eq!(response.status, 200);
    let violations = server.violations().join("\n");
    assert!(
        violations.contains("`x-api-key` is missing"),
        "{violations}"
    );
    assert!(
        violations.contains("`anthropic-version` is missing"),
        "{violations}"
    );

    let host = server.url().replace("http://", "");
    let mut stream = TcpStream::connect(&host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    let get = format!("GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(get.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    let response = loop {
        if let Some(response) = parse_response(&raw) {
            break response;
        }
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed early");
        raw.extend_from_slice(&buf[..n]);
    };
    assert_eq!(response.status, 404);
    assert!(
        server
            .violations()
            .join("\n")
            .contains("unexpected request GET /v1/models")
    );
    // Other endpoints do not consume the script.
    server.assert_script_done();
}

#[test]
fn the_checker_accepts_valid_conversations() {
    let headers: Vec<(String, String)> = GOOD_HEADERS
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let valid = [
        json!([{"role": "user", "content": "hi"}]),
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "two tools"},
                {"type": "tool_use", "id": "a", "name": "bash", "input": {}},
                {"type": "tool_use", "id": "b", "name": "bash", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "b", "content": "second first is fine"},
                {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "x"}], "is_error": false},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "read_file", "input": {"path": "p"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}, {"type": "text", "text": "after"}]},
            {"role": "assistant", "content": "plain text"},
            {"role": "user", "content": "more"},
        ]),
    ];
    for messages in valid {
        let violations = check_request(&headers, &request_body(messages.clone(), true));
        assert!(violations.is_empty(), "{messages}\n{violations:#?}");
    }
}

#[test]
fn the_checker_reports_each_rule() {
    let headers: Vec<(String, String)> = GOOD_HEADERS
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let use_a = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "bash", "input": {}}]});
    let result = |id: &str| json!({"type": "tool_result", "tool_use_id": id, "content": "out"});
    let text = json!({"type": "text", "text": "note"});
    let hi = json!({"role": "user", "content": "hi"});
    let cases = [
        (
            json!([{"role": "assistant", "content": "hello"}]),
            "first message must be a user message",
        ),
        (json!([hi, hi]), "roles must alternate"),
        (json!([hi, use_a]), "never answered"),
        (
            json!([hi, use_a, {"role": "user", "content": [text]}]),
            "\"a\" of messages[1] is not answered",
        ),
        (
            json!([hi, use_a, {"role": "user", "content": [text, result("a")]}]),
            "tool_result blocks must come first",
        ),
        (
            json!([hi, use_a, {"role": "user", "content": [result("a"), result("a")]}]),
            "answered more than once",
        ),
        (
            json!([hi, use_a, {"role": "user", "content": [result("a"), result("zzz")]}]),
            "\"zzz\" has no matching tool_use",
        ),
        (
            json!([{"role": "user", "content": [result("a")]}]),
            "no matching tool_use",
        ),
        (
            json!([hi, use_a, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": {"x": 1}}]}]),
            "must be a string or an array of text blocks",
        ),
        (
            json!([hi, use_a, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": [{"type": "image"}]}]}]),
            "must be a text block",
        ),
        (json!([{"role": "user", "content": []}]), "empty array"),
        (
            json!([{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            "text blocks must be non-empty",
        ),
        (json!([]), "`messages` must be a non-empty array"),
    ];
    for (messages, expected) in cases {
        let violations = check_request(&headers, &request_body(messages.clone(), true)).join("\n");
        assert!(
            violations.contains(expected),
            "{messages}\nexpected {expected:?} in:\n{violations}"
        );
    }

    let bad_body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "bash", "input_schema": {"type": "string"}}, {"name": "has space", "description": "d", "input_schema": {"type": "object"}}],
    });
    let violations = check_request(&[], &bad_body).join("\n");
    for expected in [
        "`x-api-key` is missing",
        "`anthropic-version` is missing",
        "`model` must be a non-empty string",
        "`max_tokens` must be a positive integer",
        "tools[0] has no string `description`",
        "tools[0].input_schema must be an object schema",
        "tools[1].name \"has space\"",
    ] {
        assert!(
            violations.contains(expected),
            "expected {expected:?} in:\n{violations}"
        );
    }
}

#[test]
fn status_delay_computed_and_stream_error_replies() {
    let server = ModelServer::start(vec![
        Reply::status(429).header("retry-after", "1").json(
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ),
        Reply::delay(Duration::from_millis(300), Reply::text("slow answer")),
        Reply::with(|req| Reply::text(&format!("you said: {}", req.last_user_text()))),
        Reply::stream_error("overloaded_error", "Overloaded"),
        Reply::api_error(529, "overloaded_error", "Overloaded"),
    ]);
    let body = request_body(json!([{"role": "user", "content": "echo me"}]), true);

    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(response.json()["error"]["type"], "rate_limit_error");

    let started = Instant::now();
    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        assemble(&parse_sse(&response.body)).message["content"][0]["text"],
        "slow answer"
    );

    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert_eq!(
        assemble(&parse_sse(&response.body)).message["content"][0]["text"],
        "you said: echo me"
    );

    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert_eq!(response.status, 200);
    let events = parse_sse(&response.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_start", "ping", "error"]);
    assert_eq!(events[2].1["error"]["type"], "overloaded_error");

    let response = post(&server.url(), GOOD_HEADERS, &body);
    assert_eq!(response.status, 529);
    assert_eq!(response.json()["error"]["message"], "Overloaded");
    server.assert_protocol_ok();
    server.assert_script_done();
}

#[test]
fn a_delayed_reply_does_not_hold_up_the_next_request() {
    let server = ModelServer::start(vec![
        Reply::delay(Duration::from_secs(2), Reply::text("slow")),
        Reply::text("fast"),
    ]);
    let url = server.url();
    let body = request_body(json!([{"role": "user", "content": "hi"}]), false);
    let slow = {
        let (url, body) = (url.clone(), body.clone());
        std::thread::spawn(move || post(&url, GOOD_HEADERS, &body))
    };
    server.wait_for_requests(1, Duration::from_secs(10));
    let started = Instant::now();
    let fast = post(&url, GOOD_HEADERS, &body);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(fast.json()["content"][0]["text"], "fast");
    let slow = slow.join().expect("the slow request thread");
    assert_eq!(slow.json()["content"][0]["text"], "slow");
}

#[test]
fn dropping_the_server_stops_it_promptly() {
    let server = ModelServer::start(vec![Reply::delay(
        Duration::from_secs(60),
        Reply::text("never"),
    )]);
    let host = server.url().replace("http://", "");
    let url = server.url();
    let body = request_body(json!([{"role": "user", "content": "hi"}]), false);
    let pending = std::thread::spawn(move || {
        let host = url.replace("http://", "");
        // Either an error status or a dropped connection is fine; it must not hang.
        let mut stream = TcpStream::connect(host).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("set a read timeout");
        let body = body.to_string();
        let request = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    server.wait_for_requests(1, Duration::from_secs(10));

    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    pending.join().expect("the pending request returns");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&host).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The process helpers.

#[test]
fn run_captures_output_and_exit_status() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo out; echo err >&2; head -c 1000000 /dev/zero | tr '\\0' x; exit 3",
    ]);
    let result = run(cmd, Duration::from_secs(30));
    assert_eq!(result.code(), Some(3));
    assert!(result.stdout.starts_with("out\n"));
    assert_eq!(result.stdout.len(), 4 + 1_000_000);
    assert_eq!(result.stderr, "err\n");
    assert!(result.elapsed < Duration::from_secs(30));
}

#[test]
fn run_kills_a_process_that_overruns_its_limit() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo started; exec sleep 30"]);
    let started = Instant::now();
    let failure = panic_text(catch_unwind(AssertUnwindSafe(|| {
        run(cmd, Duration::from_millis(300));
    })));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        failure.contains("ran longer than") && failure.contains("started"),
        "{failure}"
    );
}

#[test]
fn processes_with_marker_finds_live_processes_only() {
    let marker = format!("harness-selftest-marker-{}", std::process::id());
    let mut cmd = Command::new("sh");
    // The marker is the shell's $0, so it is in the shell's command line.
    cmd.args(["-c", "while :; do sleep 0.05; done", &marker]);
    let running = spawn(cmd);
    let pid = running.pid();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with_marker(&marker).contains(&pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} not found by its marker"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    running.signal(libc::SIGTERM);
    let result = running.wait(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&result.status),
        Some(libc::SIGTERM)
    );
    assert!(processes_with_marker(&marker).is_empty());
}

/// reqwest + eventsource-stream (what the agent uses) read the stream; the
/// same client twice, so a kept-alive connection is reused.
#[test]
fn the_agents_http_stack_reads_the_stream() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;

    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use("t1", "bash", json!({"command": "echo hi"}))]),
        Reply::text("second"),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = reqwest::Client::new();
    let body = request_body(json!([{"role": "user", "content": "hi"}]), true);
    for _ in 0..2 {
        let events = runtime.block_on(async {
            let response = client
                .post(format!("{}/v1/messages", server.url()))
                .header("x-api-key", "test-key")
                .header("anthropic-version", "2023-06-01")
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 200);
            let mut events = Vec::new();
            let mut stream = response.bytes_stream().eventsource();
            while let Some(event) = stream.next().await {
                let event = event.expect("a well-formed SSE event");
                let data: Value = serde_json::from_str(&event.data).expect("JSON data");
                events.push((event.event, data));
            }
            events
        });
        let streamed = assemble(&events);
        assert!(
            streamed.message["content"]
                .as_array()
                .is_some_and(|c| c.len() == 1)
        );
    }
    let requests = server.requests();
    assert_eq!(requests[1].last_user_text(), "hi");
    server.assert_protocol_ok();
    server.assert_script_done();
}
