//! Scripted replies of the fake model: what a test wants the n-th model call to
//! answer ([`Reply`], [`ToolUse`]), and how a reply is rendered as an Anthropic
//! Messages API response — a real SSE stream when the request asked for
//! `"stream": true`, one JSON message object otherwise.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::server::Recorded;
use super::wire::Wire;

/// One `tool_use` block the fake model emits; build it with [`tool_use`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    pub id: String,
    pub name: String,
    pub input: Value,
}

/// A `tool_use` block with this id, tool name and JSON input (normally an object).
pub fn tool_use(id: &str, name: &str, input: Value) -> ToolUse {
    ToolUse {
        id: id.to_string(),
        name: name.to_string(),
        input,
    }
}

/// What the fake model answers to one `POST /v1/messages`.
///
/// Message replies ([`Reply::text`], [`Reply::tools`], [`Reply::text_and_tools`],
/// [`Reply::max_tokens`]) are streamed as Anthropic SSE when the request has
/// `"stream": true` and returned as one JSON message object otherwise. Plain
/// HTTP replies ([`Reply::status`], [`Reply::api_error`]) are sent as they are
/// in both cases.
pub struct Reply(Kind);

enum Kind {
    Message(Message),
    Http(Http),
    StreamError { error_type: String, message: String },
    Delay(Duration, Box<Reply>),
    With(Box<dyn FnOnce(&Recorded) -> Reply + Send>),
}

struct Message {
    text: String,
    tools: Vec<ToolUse>,
    stop_reason: String,
}

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// Assistant text, `stop_reason: "end_turn"`. An empty string gives a
    /// message with no content blocks at all (the real API does that too).
    pub fn text(text: &str) -> Reply {
        Reply::message(text, Vec::new(), "end_turn")
    }

    /// `tool_use` blocks, `stop_reason: "tool_use"`.
    pub fn tools(tools: Vec<ToolUse>) -> Reply {
        Reply::message("", tools, "tool_use")
    }

    /// A text block followed by `tool_use` blocks, `stop_reason: "tool_use"`.
    pub fn text_and_tools(text: &str, tools: Vec<ToolUse>) -> Reply {
        Reply::message(text, tools, "tool_use")
    }

    /// Assistant text cut short: `stop_reason: "max_tokens"`.
    pub fn max_tokens(partial_text: &str) -> Reply {
        Reply::message(partial_text, Vec::new(), "max_tokens")
    }

    /// Replaces the stop reason of a message reply (e.g. `"refusal"`,
    /// `"pause_turn"`, or something unknown). Panics on a non-message reply.
    pub fn with_stop_reason(mut self, stop_reason: &str) -> Reply {
        match &mut self.0 {
            Kind::Message(m) => m.stop_reason = stop_reason.to_string(),
            _ => panic!("Reply::with_stop_reason applies only to message replies"),
        }
        self
    }

    /// A plain HTTP answer with this status and, until [`Reply::json`] or
    /// [`Reply::body`] says otherwise, an empty body.
    pub fn status(status: u16) -> Reply {
        Reply(Kind::Http(Http {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }))
    }

    /// Adds a response header to a [`Reply::status`] reply. Panics on other replies.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.http_mut("header")
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a JSON body (and `Content-Type: application/json`) on a
    /// [`Reply::status`] reply. Panics on other replies.
    pub fn json(mut self, body: Value) -> Reply {
        let http = self.http_mut("json");
        http.body = body.to_string().into_bytes();
        set_content_type(&mut http.headers, "application/json");
        self
    }

    /// Sets a raw body on a [`Reply::status`] reply (`Content-Type: text/plain`
    /// unless a content type was given with [`Reply::header`]). Panics on other replies.
    pub fn body(mut self, body: &str) -> Reply {
        let http = self.http_mut("body");
        http.body = body.as_bytes().to_vec();
        if !http
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            http.headers
                .push(("content-type".to_string(), "text/plain".to_string()));
        }
        self
    }

    /// An Anthropic error answer: this HTTP status and the body
    /// `{"type":"error","error":{"type":error_type,"message":message}}`,
    /// e.g. `Reply::api_error(529, "overloaded_error", "Overloaded")`.
    pub fn api_error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::status(status).json(error_body(error_type, message))
    }

    /// A stream that fails midway: HTTP 200 `text/event-stream` with
    /// `message_start` and `ping`, then an `error` event carrying
    /// `{"type":"error","error":{"type":error_type,"message":message}}` and no
    /// `message_stop` (what the real API does when it overloads mid-stream).
    /// Without `"stream": true` in the request it is answered as HTTP 529 with
    /// that error body.
    pub fn stream_error(error_type: &str, message: &str) -> Reply {
        Reply(Kind::StreamError {
            error_type: error_type.to_string(),
            message: message.to_string(),
        })
    }

    /// Waits `delay` before answering with `reply` (simulates a slow model
    /// call). Other requests are served meanwhile.
    pub fn delay(delay: Duration, reply: Reply) -> Reply {
        Reply(Kind::Delay(delay, Box::new(reply)))
    }

    /// A reply computed from the request it answers.
    pub fn with(f: impl FnOnce(&Recorded) -> Reply + Send + 'static) -> Reply {
        Reply(Kind::With(Box::new(f)))
    }

    fn message(text: &str, tools: Vec<ToolUse>, stop_reason: &str) -> Reply {
        Reply(Kind::Message(Message {
            text: text.to_string(),
            tools,
            stop_reason: stop_reason.to_string(),
        }))
    }

    fn http_mut(&mut self, method: &str) -> &mut Http {
        match &mut self.0 {
            Kind::Http(http) => http,
            _ => panic!("Reply::{method} applies only to Reply::status(..) replies"),
        }
    }

    /// Turns the reply into bytes on the wire for the `seq`-th model call
    /// (1-based). Returns `None` when `stop` was raised during a delay.
    pub(super) fn render(
        self,
        request: &Recorded,
        seq: usize,
        stop: &AtomicBool,
    ) -> Option<Rendered> {
        let mut reply = self;
        loop {
            reply = match reply.0 {
                Kind::Delay(delay, inner) => {
                    if !sleep_unless_stopped(delay, stop) {
                        return None;
                    }
                    *inner
                }
                Kind::With(f) => f(request),
                Kind::Http(http) => {
                    return Some(Rendered {
                        status: http.status,
                        headers: http.headers,
                        body: http.body,
                        chunked: false,
                    });
                }
                Kind::Message(message) => return Some(render_message(&message, request, seq)),
                Kind::StreamError {
                    error_type,
                    message,
                } => {
                    return Some(render_stream_error(&error_type, &message, request, seq));
                }
            };
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Message(m) => f
                .debug_struct("Reply::message")
                .field("text", &m.text)
                .field("tools", &m.tools)
                .field("stop_reason", &m.stop_reason)
                .finish(),
            Kind::Http(h) => f
                .debug_struct("Reply::status")
                .field("status", &h.status)
                .field("headers", &h.headers)
                .field("body", &String::from_utf8_lossy(&h.body))
                .finish(),
            Kind::StreamError {
                error_type,
                message,
            } => f
                .debug_struct("Reply::stream_error")
                .field("error_type", error_type)
                .field("message", message)
                .finish(),
            Kind::Delay(d, inner) => f.debug_tuple("Reply::delay").field(d).field(inner).finish(),
            Kind::With(_) => f.write_str("Reply::with(..)"),
        }
    }
}

/// A reply ready to be written: status, headers, body, and whether to send it
/// with chunked transfer encoding (as the real API streams).
pub(super) struct Rendered {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

/// The Anthropic error envelope.
pub(super) fn error_body(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

fn set_content_type(headers: &mut Vec<(String, String)>, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
    headers.push(("content-type".to_string(), value.to_string()));
}

/// Sleeps `total`, in small steps so a dropped server does not wait for it.
/// Returns false when `stop` was raised first.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

fn wants_stream(request: &Recorded) -> bool {
    request.body.get("stream").and_then(Value::as_bool) == Some(true)
}

fn model_of(request: &Recorded) -> String {
    request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model")
        .to_string()
}

/// A rough token count, good enough for `usage` fields.
pub(super) fn tokens(text_len: usize) -> usize {
    text_len / 4 + 1
}

fn content_blocks(message: &Message) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !message.text.is_empty() {
        blocks.push(json!({"type": "text", "text": message.text}));
    }
    for tool in &message.tools {
        blocks.push(
            json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.input}),
        );
    }
    blocks
}

fn render_message(message: &Message, request: &Recorded, seq: usize) -> Rendered {
    if request.wire != Wire::Anthropic {
        return super::wire::render_message(
            &message.text,
            &message.tools,
            &message.stop_reason,
            request,
            seq,
        );
    }
    let blocks = content_blocks(message);
    let input_tokens = tokens(request.body.to_string().len());
    let output_tokens = tokens(Value::Array(blocks.clone()).to_string().len());
    let id = format!("msg_test_{seq:04}");
    let model = model_of(request);

    if !wants_stream(request) {
        let body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": message.stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        });
        return Rendered {
            status: 200,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
            chunked: false,
        };
    }

    let mut sse = Sse::default();
    sse.message_start(&id, &model, input_tokens);
    sse.event("ping", &json!({"type": "ping"}));
    let mut index = 0;
    if !message.text.is_empty() {
        sse.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        for piece in split_pieces(&message.text) {
            sse.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        sse.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    for tool in &message.tools {
        sse.event(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}},
            }),
        );
        // The real API opens with an empty fragment; then the JSON in pieces.
        let mut pieces = vec![String::new()];
        pieces.extend(split_pieces(&tool.input.to_string()));
        for piece in pieces {
            sse.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        sse.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    sse.event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": message.stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
        }),
    );
    sse.event("message_stop", &json!({"type": "message_stop"}));
    sse.into_rendered()
}

fn render_stream_error(
    error_type: &str,
    message: &str,
    request: &Recorded,
    seq: usize,
) -> Rendered {
    if request.wire != Wire::Anthropic && wants_stream(request) {
        return super::wire::render_stream_error(error_type, message, request, seq);
    }
    if !wants_stream(request) {
        return Rendered {
            status: 529,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: error_body(error_type, message).to_string().into_bytes(),
            chunked: false,
        };
    }
    let mut sse = Sse::default();
    let input_tokens = tokens(request.body.to_string().len());
    sse.message_start(
        &format!("msg_test_{seq:04}"),
        &model_of(request),
        input_tokens,
    );
    sse.event("ping", &json!({"type": "ping"}));
    sse.event("error", &error_body(error_type, message));
    sse.into_rendered()
}

/// Builds an SSE body: `event: NAME\ndata: JSON\n\n` per event.
#[derive(Default)]
struct Sse {
    body: String,
}

impl Sse {
    fn event(&mut self, name: &str, data: &Value) {
        self.body.push_str("event: ");
        self.body.push_str(name);
        self.body.push_str("\ndata: ");
        self.body.push_str(&data.to_string());
        self.body.push_str("\n\n");
    }

    fn message_start(&mut self, id: &str, model: &str, input_tokens: usize) {
        self.event(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            }),
        );
    }

    fn into_rendered(self) -> Rendered {
        Rendered {
            status: 200,
            headers: vec![
                ("content-type".to_string(), "text/event-stream".to_string()),
                ("cache-control".to_string(), "no-cache".to_string()),
            ],
            body: self.body.into_bytes(),
            chunked: true,
        }
    }
}

/// Splits `s` at char boundaries into at least 2 non-empty pieces when it has
/// at least 2 chars (pieces of at most 24 chars), else into one piece.
pub(super) fn split_pieces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 2 {
        return vec![s.to_string()];
    }
    let size = chars.len().div_ceil(3).clamp(1, 24);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
