//! The JSON body of a Messages API call, with each message of the conversation encoded
//! once rather than on every call.
//!
//! The whole conversation goes with every call, so encoding it afresh made each turn
//! slower than the last (most of the host's time per turn after a hundred tool calls). The
//! encoder keeps each message's JSON beside a copy of the message; a call re-encodes only
//! the messages that are new or differ from the copy (comparing is several times cheaper
//! than encoding), so nothing depends on how the caller edits its history.
//!
//! The body's buffer is taken back from the last call when the HTTP client has let go of
//! it, so a quarter-megabyte body late in a session is not a fresh allocation (and fresh
//! pages to fault in) on every turn.
//!
//! # Prompt caching
//!
//! The API caches a request's prefix (in the order tools -> system -> messages) up to each
//! block marked `cache_control: {"type": "ephemeral"}`, at most 4 marks per request; a
//! later request whose prefix is byte-for-byte the same up to a block boundary reads it
//! back at a tenth of the price (writing it costs 1.25x). From each mark the API also
//! looks back block by block (about 20 blocks) for a prefix cached earlier. Two marks are
//! set here:
//! - on the system prompt, sent as one text block for that (or on the last tool when
//!   there is no system prompt): tools + system, the same for the whole session;
//! - on the last content block of the newest message: the whole conversation, which the
//!   next request extends.
//!
//! The mark is put in when the body is assembled, never into a message's kept encoding.
//! So in the next request the message that was the newest is encoded exactly as before,
//! without its mark: every byte up to where the mark stood is the same as in the request
//! that wrote the cache, and the API (whose cache key is the content, not the marks: a
//! mark only says where to write) finds that prefix two or so blocks back from the new
//! mark. Keeping old marks instead would need ever more of them (past the limit of 4),
//! and taking one away later would change bytes before a mark the previous request
//! wrote. A turn that adds more than ~20 blocks (a dozen parallel tool calls) falls out of
//! the look-back window and writes the conversation afresh once.
//! Nothing in the prefix changes from turn to turn: the system prompt holds no time, the
//! tools come in the registry's fixed order, and old messages keep their encoding.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde::Serialize;

use super::{ContentBlock, Message, ToolDefinition};

/// The encoded messages of the last call, in order, and the body it was sent as.
#[derive(Default)]
pub struct RequestEncoder {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    messages: Vec<(Message, Vec<u8>)>,
    last_body: Option<Bytes>,
}

/// What one call sends besides the conversation.
pub struct Settings<'a> {
    pub model: &'a str,
    pub max_tokens: u32,
    pub system: &'a str,
    pub tools: &'a [ToolDefinition],
}

impl RequestEncoder {
    /// The body `{"model", "max_tokens", "stream": true, "system"?, "tools"?, "messages"}`
    /// (`system` and `tools` only when not empty), with the cache marks of the module
    /// doc.
    pub fn body(&self, settings: &Settings<'_>, messages: &[Message]) -> Bytes {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            messages: cache,
            last_body,
        } = &mut *state;
        cache.truncate(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match cache.get_mut(index) {
                Some((kept, _)) if kept == message => {}
                Some(entry) => *entry = (message.clone(), encode(message)),
                None => cache.push((message.clone(), encode(message))),
            }
        }
        let size: usize = cache.iter().map(|(_, json)| json.len() + 1).sum();
        let mut out = match last_body.take().map(Bytes::try_into_mut) {
            Some(Ok(reused)) => Vec::from(reused),
            _ => Vec::new(),
        };
        out.clear();
        out.reserve(size + 4096);
        out.extend_from_slice(b"{\"model\":");
        write(&mut out, settings.model);
        out.extend_from_slice(b",\"max_tokens\":");
        write(&mut out, &settings.max_tokens);
        out.extend_from_slice(b",\"stream\":true");
        if !settings.system.is_empty() {
            out.extend_from_slice(b",\"system\":[{\"type\":\"text\",\"text\":");
            write(&mut out, settings.system);
            out.extend_from_slice(CACHE_MARK);
            out.extend_from_slice(b"}]");
        }
        if !settings.tools.is_empty() {
            out.extend_from_slice(b",\"tools\":");
            write(&mut out, settings.tools);
            if settings.system.is_empty() {
                // `[..., {...}]`: the mark goes inside the last tool's object.
                mark_before(&mut out, b"}]");
            }
        }
        out.extend_from_slice(b",\"messages\":[");
        let newest = cache.len().saturating_sub(1);
        for (index, (message, json)) in cache.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(json);
            if index == newest && cacheable(message) {
                // `{"role":..,"content":[..., {...}]}`: inside the last block's object.
                mark_before(&mut out, b"}]}");
            }
        }
        out.extend_from_slice(b"]}");
        let body = Bytes::from(out);
        *last_body = Some(body.clone());
        body
    }
}

/// What marks a cache breakpoint, as the last key of a block's object.
const CACHE_MARK: &[u8] = br#","cache_control":{"type":"ephemeral"}"#;

/// Puts [`CACHE_MARK`] into the object that ends just before `tail`, the end of `out`.
fn mark_before(out: &mut Vec<u8>, tail: &[u8]) {
    debug_assert!(out.ends_with(tail), "the JSON ends as encoded");
    let at = out.len() - tail.len();
    out.splice(at..at, CACHE_MARK.iter().copied());
}

/// Whether the message's last block may carry a mark: the API refuses one on an empty
/// text block, and a message without blocks has nowhere to put it.
fn cacheable(message: &Message) -> bool {
    match message.content.last() {
        None => false,
        Some(ContentBlock::Text { text }) => !text.is_empty(),
        Some(_) => true,
    }
}

fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, message);
    out
}

/// Appends `value` as JSON. These types (strings, numbers and JSON values, string keys
/// only) always encode, and a `Vec` never fails to take bytes.
fn write(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("the request's types always encode as JSON");
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{ContentBlock, Role};

    fn text(role: Role, text: &str) -> Message {
        Message {
            role,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    fn tools() -> Vec<ToolDefinition> {
        vec![ToolDefinition {
            name: "read_file".into(),
            description: "Reads \"a\" file\n".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }]
    }

    /// The body as one `json!` value of everything, with the cache marks: on the system
    /// block (or the last tool without one) and on the newest message's last block.
    fn expected(settings: &Settings<'_>, messages: &[Message]) -> Value {
        let mark = json!({"type": "ephemeral"});
        let mut body = json!({
            "model": settings.model,
            "max_tokens": settings.max_tokens,
            "messages": messages,
            "stream": true,
        });
        if let Some(block) = body["messages"]
            .as_array_mut()
            .and_then(|m| m.last_mut())
            .and_then(|m| m["content"].as_array_mut())
            .and_then(|c| c.last_mut())
            .filter(|b| b["type"] != "text" || b["text"] != "")
        {
            block["cache_control"] = mark.clone();
        }
        if !settings.system.is_empty() {
            body["system"] =
                json!([{"type": "text", "text": settings.system, "cache_control": mark}]);
        }
        if !settings.tools.is_empty() {
            body["tools"] = json!(settings.tools);
            if settings.system.is_empty() {
                let tools = body["tools"].as_array_mut().unwrap();
                tools.last_mut().unwrap()["cache_control"] = mark;
            }
        }
        body
    }

    fn parsed(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("the body is JSON")
    }

    #[test]
    fn the_body_is_the_same_json_as_one_value_of_everything() {
        let tools = tools();
        let settings = Settings {
            model: "m\u{1b}",
            max_tokens: 8192,
            system: "be brief",
            tools: &tools,
        };
        let messages = vec![
            text(Role::User, "hi \"there\"\n"),
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolUse {
                    id: "toolu_1".into(),
                    name: "read_file".into(),
                    input: crate::model::ToolInput::from_value(json!({"path": "a.txt"})),
                }],
            },
            Message {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "toolu_1".into(),
                    content: "line\u{0}\n".into(),
                    is_error: true,
                }],
            },
        ];
        let encoder = RequestEncoder::default();
        for _ in 0..2 {
            let body = encoder.body(&settings, &messages);
            assert_eq!(parsed(&body), expected(&settings, &messages));
        }
        let bare = Settings {
            system: "",
            tools: &[],
            ..settings
        };
        let body = encoder.body(&bare, &[]);
        assert_eq!(parsed(&body), expected(&bare, &[]));
        assert!(parsed(&body).get("system").is_none() && parsed(&body).get("tools").is_none());
    }

    #[test]
    fn the_buffer_is_reused_once_released_and_never_while_held() {
        let settings = Settings {
            model: "m",
            max_tokens: 1,
            system: "",
            tools: &[],
        };
        let encoder = RequestEncoder::default();
        let long = vec![text(Role::User, &"x".repeat(100_000))];
        let held = encoder.body(&settings, &long);
        let held_copy = held.to_vec();
        let short = vec![text(Role::User, "y")];
        let second = encoder.body(&settings, &short);
        assert_eq!(
            held.to_vec(),
            held_copy,
            "a body still held is never written to"
        );
        drop((held, second));
        encoder.body(&settings, &long);
        // Released: the next body is written into the long body's buffer, which is far
        // larger than a short body needs.
        let third = encoder.body(&settings, &short);
        assert_eq!(parsed(&third), expected(&settings, &short));
        drop(encoder);
        let capacity = third
            .try_into_mut()
            .expect("nothing else holds it")
            .capacity();
        assert!(
            capacity >= 100_000,
            "capacity {capacity}: the buffer was not reused"
        );
    }

    #[test]
    fn the_next_request_repeats_every_byte_before_the_last_mark() {
        let tools = tools();
        let settings = Settings {
            model: "m",
            max_tokens: 1,
            system: "be brief",
            tools: &tools,
        };
        let encoder = RequestEncoder::default();
        let mut messages = vec![text(Role::User, "one")];
        let mut previous = encoder.body(&settings, &messages).to_vec();
        for turn in 0..3 {
            messages.push(text(Role::Assistant, &format!("answer {turn}")));
            messages.push(text(Role::User, &format!("question {turn}")));
            let body = encoder.body(&settings, &messages).to_vec();
            let marks = |b: &[u8]| {
                b.windows(CACHE_MARK.len())
                    .filter(|w| *w == CACHE_MARK)
                    .count()
            };
            assert_eq!(marks(&body), 2, "system and newest message");
            let last_mark = previous
                .windows(CACHE_MARK.len())
                .rposition(|w| w == CACHE_MARK)
                .unwrap();
            assert_eq!(body[..last_mark], previous[..last_mark]);
            assert_eq!(parsed(&body), expected(&settings, &messages));
            previous = body;
        }
        // No system prompt: the tools carry the first mark.
        let bare = Settings {
            system: "",
            ..settings
        };
        let body = encoder.body(&bare, &messages);
        assert_eq!(parsed(&body), expected(&bare, &messages));
        // An empty text block cannot carry a mark.
        messages.push(text(Role::User, ""));
        let body = encoder.body(&bare, &messages);
        assert_eq!(parsed(&body), expected(&bare, &messages));
    }

    #[test]
    fn a_changed_or_dropped_message_is_encoded_anew() {
        let settings = Settings {
            model: "m",
            max_tokens: 1,
            system: "",
            tools: &[],
        };
        let encoder = RequestEncoder::default();
        let mut messages = vec![
            text(Role::User, "one"),
            text(Role::Assistant, "two"),
            text(Role::User, "three"),
        ];
        encoder.body(&settings, &messages);
        // The last message grows (more blocks appended), an earlier one is replaced.
        messages[2].content.push(ContentBlock::Text {
            text: "four".into(),
        });
        messages[0] = text(Role::User, "uno");
        let body = encoder.body(&settings, &messages);
        assert_eq!(parsed(&body), expected(&settings, &messages));
        messages.truncate(1);
        let body = encoder.body(&settings, &messages);
        assert_eq!(parsed(&body), expected(&settings, &messages));
        messages.push(text(Role::Assistant, "dos"));
        let body = encoder.body(&settings, &messages);
        assert_eq!(parsed(&body), expected(&settings, &messages));
    }
}
