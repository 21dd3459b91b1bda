//! The scripted model server: a tiny_http server on 127.0.0.1 (port chosen by
//! the OS) that answers the n-th `POST /v1/messages` with the n-th scripted
//! [`Reply`], records every request it receives ([`Recorded`]) and checks each
//! against the Anthropic protocol rules (see `protocol.rs`).
//!
//! Each request is answered on its own thread, so a [`Reply::delay`] does not
//! hold up other requests. The server stops when the [`ModelServer`] is dropped.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::protocol::check_request;
use super::reply::{Rendered, Reply, error_body};
use super::wire::{Wire, anthropic_headers, normalize};

/// One HTTP request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The JSON body; a body that is not JSON is kept as a `Value::String` of its text.
    pub body: Value,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// When the request was received (after its body was read).
    pub at: Instant,
    /// HTTP method, e.g. `"POST"`.
    pub method: String,
    /// Request target as sent, e.g. `"/v1/messages"`.
    pub path: String,
    /// The format the server plays; `body` is in the Anthropic shape whatever it is.
    pub wire: Wire,
    /// The body as sent (the same as `body` for the Anthropic format).
    pub raw: Value,
}

impl Recorded {
    /// The value of header `name` (any case); the first one if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `messages` array of the body (empty if absent).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// All text of the last message (normally the user's) joined with `\n`:
    /// its string content, or its text blocks and the contents of its
    /// `tool_result` blocks (string content, or the text blocks inside an
    /// array content), in order.
    pub fn last_user_text(&self) -> String {
        let Some(content) = self.messages().last().and_then(|m| m.get("content")) else {
            return String::new();
        };
        if let Some(s) = content.as_str() {
            return s.to_string();
        }
        let mut parts = Vec::new();
        for block in content.as_array().map_or(&[][..], Vec::as_slice) {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => parts.push(
                    block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                Some("tool_result") => parts.push(content_text(block.get("content"))),
                _ => {}
            }
        }
        parts.join("\n")
    }

    /// The `tool_result` blocks of the last message, in order, as
    /// `(tool_use_id, content as text, is_error)`; `is_error` is false when absent.
    pub fn tool_results(&self) -> Vec<(String, String, bool)> {
        let Some(blocks) = self
            .messages()
            .last()
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| {
                (
                    b.get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    content_text(b.get("content")),
                    b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                )
            })
            .collect()
    }

    /// Names of the tools offered in the request (`tools[].name`).
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

/// Text of a `tool_result` content: the string itself, or the text blocks of
/// an array joined with `\n`.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A fake Anthropic Messages API serving a script of replies; see the module doc.
pub struct ModelServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

struct State {
    wire: Wire,
    script: Vec<Option<Reply>>,
    /// How many `POST /v1/messages` were received.
    calls: usize,
    requests: Vec<Recorded>,
    violations: Vec<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking responder thread must not hide the recordings.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ModelServer {
    /// Starts serving the replies in order: the n-th `POST /v1/messages` gets
    /// `script[n]`. A request beyond the script gets HTTP 500 with an Anthropic
    /// error body whose message says "script exhausted" (and it is recorded, so
    /// tests can assert on it). Any other method or path gets 404 and is
    /// recorded as a protocol violation.
    pub fn start(script: Vec<Reply>) -> ModelServer {
        ModelServer::start_wire(Wire::Anthropic, script)
    }

    /// Like [`ModelServer::start`], playing `wire` (see `wire.rs`): model calls are
    /// `POST` to [`Wire::path`], checked in that format and recorded in the Anthropic
    /// shape; message replies are rendered in that format.
    pub fn start_wire(wire: Wire, script: Vec<Reply>) -> ModelServer {
        let http = match tiny_http::Server::http("127.0.0.1:0") {
            Ok(server) => server,
            Err(e) => panic!("model server: cannot listen on 127.0.0.1:0: {e}"),
        };
        let Some(addr) = http.server_addr().to_ip() else {
            panic!("model server: not listening on an IP address");
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                wire,
                script: script.into_iter().map(Some).collect(),
                calls: 0,
                requests: Vec::new(),
                violations: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("model-server-{}", addr.port()))
            .spawn(move || serve(&http, &thread_shared));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => panic!("model server: cannot spawn its thread: {e}"),
        };
        ModelServer {
            shared,
            addr,
            thread: Some(thread),
        }
    }

    /// `"http://127.0.0.1:PORT"`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of arrival (all methods and paths).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// How many `POST /v1/messages` calls came beyond the end of the script.
    pub fn exhausted(&self) -> usize {
        let state = self.shared.lock();
        state.calls.saturating_sub(state.script.len())
    }

    /// The protocol violations found so far, one line each, prefixed with the
    /// 1-based number of the request they were found in.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Panics listing every protocol violation found so far (see `protocol.rs`
    /// for the rules), if any.
    pub fn assert_protocol_ok(&self) {
        let violations = self.violations();
        if !violations.is_empty() {
            panic!(
                "the model server saw {} protocol violation(s):\n  {}",
                violations.len(),
                violations.join("\n  ")
            );
        }
    }

    /// Panics unless the model was called exactly as many times as the script
    /// has replies (every reply used, none beyond).
    pub fn assert_script_done(&self) {
        let state = self.shared.lock();
        assert_eq!(
            state.calls,
            state.script.len(),
            "the agent made {} model call(s) but the script has {} reply(ies)",
            state.calls,
            state.script.len()
        );
    }

    /// Waits until at least `n` requests were received and returns them all;
    /// panics if that takes longer than `limit`.
    pub fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "waited {limit:?} for {n} request(s) to the model server, got {}",
                    state.requests.len()
                );
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        state.requests.clone()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // The serving loop polls `stop`; its panic (if any) was already reported.
            let _ = thread.join();
        }
    }
}

/// The serving loop: receive, record, and hand each request to a responder thread.
fn serve(http: &tiny_http::Server, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match http.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(request)) => accept(request, shared),
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

/// What to answer to one request.
enum Plan {
    Script { reply: Reply, seq: usize },
    Exhausted { seq: usize, script_len: usize },
    NotFound,
}

fn accept(mut request: tiny_http::Request, shared: &Arc<Shared>) {
    let mut raw = Vec::new();
    let read_error = request.as_reader().read_to_end(&mut raw).err();
    let body: Value = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    let wire = shared.lock().wire;
    let mut shape = Vec::new();
    let normalized = normalize(wire, &body, &mut shape);
    let mut recorded = Recorded {
        body: normalized,
        raw: body,
        wire,
        headers: request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        at: Instant::now(),
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
    };
    let is_messages_call =
        recorded.method == "POST" && recorded.path.split('?').next() == Some(wire.path());
    if !is_messages_call {
        recorded.body = recorded.raw.clone();
    }

    let plan = {
        let mut state = shared.lock();
        state.requests.push(recorded.clone());
        let number = state.requests.len();
        let mut found = Vec::new();
        if let Some(e) = read_error {
            found.push(format!("cannot read the request body: {e}"));
        }
        let plan = if is_messages_call {
            if wire == Wire::Anthropic {
                found.extend(check_request(&recorded.headers, &recorded.body));
            } else {
                found.append(&mut shape);
                found.extend(check_request(&anthropic_headers(), &recorded.body));
            }
            let index = state.calls;
            state.calls += 1;
            let script_len = state.script.len();
            match state.script.get_mut(index).and_then(Option::take) {
                Some(reply) => Plan::Script {
                    reply,
                    seq: index + 1,
                },
                None => Plan::Exhausted {
                    seq: index + 1,
                    script_len,
                },
            }
        } else {
            found.push(format!(
                "unexpected request {} {}",
                recorded.method, recorded.path
            ));
            Plan::NotFound
        };
        state
            .violations
            .extend(found.into_iter().map(|v| format!("request #{number}: {v}")));
        plan
    };
    shared.changed.notify_all();

    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("model-server-reply".to_string())
        .spawn(move || respond(request, plan, &recorded, &shared));
    if let Err(e) = spawned {
        panic!("model server: cannot spawn a responder thread: {e}");
    }
}

fn respond(request: tiny_http::Request, plan: Plan, recorded: &Recorded, shared: &Shared) {
    let rendered = match plan {
        Plan::Script { reply, seq } => match reply.render(recorded, seq, &shared.stop) {
            Some(rendered) => rendered,
            // The server was dropped during a delay: leave without answering.
            None => return,
        },
        Plan::Exhausted { seq, script_len } => json_error(
            500,
            "api_error",
            &format!(
                "script exhausted: this is model call #{seq} but the script has {script_len} reply(ies)"
            ),
        ),
        Plan::NotFound => json_error(
            404,
            "not_found_error",
            &format!("no such endpoint: {} {}", recorded.method, recorded.path),
        ),
    };
    let headers = rendered
        .headers
        .iter()
        .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    let length = (!rendered.chunked).then_some(rendered.body.len());
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(rendered.status),
        headers,
        Cursor::new(rendered.body),
        length,
        None,
    );
    // The client may have gone away (e.g. the agent was killed): nothing to do then.
    let _ = request.respond(response);
}

fn json_error(status: u16, error_type: &str, message: &str) -> Rendered {
    Rendered {
        status,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: error_body(error_type, message).to_string().into_bytes(),
        chunked: false,
    }
}

/// Indexes of the requests whose newest user message carries the `<background-results>`
/// notification of background task `task` (for example `bg-1`).
pub fn delivered_in(requests: &[Recorded], task: &str) -> Vec<usize> {
    let tag = format!("[bg:{task}]");
    requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.last_user_text().contains(&tag))
        .map(|(i, _)| i)
        .collect()
}
