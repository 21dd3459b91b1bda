//! Unit tests of the Chat Completions body and the assembly of streamed chunks.

use serde_json::{Value, json};

use super::*;
use crate::model::bounded::Limits;

fn budget(limit: usize) -> Budget {
    let mut limits = Limits::new(1000, std::time::Duration::from_secs(1));
    limits.content_bytes = limit;
    Budget::new(&limits)
}

fn assemble(chunks: &[Value]) -> (ModelResponse, String) {
    let mut answer = ChatAnswer::new(budget(1 << 20));
    let mut streamed = String::new();
    for chunk in chunks {
        answer
            .push(chunk, &mut |event| {
                if let ModelEvent::TextDelta(piece) = event {
                    streamed.push_str(&piece);
                }
            })
            .unwrap();
    }
    (answer.finish().unwrap(), streamed)
}

fn delta(delta: Value) -> Value {
    json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

#[test]
fn tool_calls_are_assembled_from_pieces_by_index() {
    let (response, streamed) = assemble(&[
        delta(json!({"role": "assistant", "content": "Let me "})),
        delta(json!({"content": "look."})),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
            "function": {"name": "read_file", "arguments": ""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]})),
        delta(json!({"tool_calls": [{"index": 1, "id": "call_b",
            "function": {"name": "bash", "arguments": "{\"command\":"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "th\": \"a\"}"}}]})),
        delta(json!({"tool_calls": [{"index": 1, "function": {"arguments": " \"ls\"}"}}]})),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}}}),
    ]);
    assert_eq!(streamed, "Let me look.");
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.content,
        [
            ContentBlock::Text {
                text: "Let me look.".into()
            },
            ContentBlock::ToolUse {
                id: "call_a".into(),
                name: "read_file".into(),
                input: ToolInput::from_value(json!({"path": "a"})),
            },
            ContentBlock::ToolUse {
                id: "call_b".into(),
                name: "bash".into(),
                input: ToolInput::from_value(json!({"command": "ls"})),
            },
        ]
    );
    assert_eq!(response.usage.input_tokens, 40);
    assert_eq!(response.usage.cache_read_input_tokens, 60);
    assert_eq!(response.usage.output_tokens, 7);
}

#[test]
fn broken_arguments_are_kept_as_invalid_input_and_length_is_max_tokens() {
    let (response, _) = assemble(&[
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "bash", "arguments": "{\"command\": \"l"}}]}),
        ),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}),
    ]);
    assert_eq!(response.stop_reason, StopReason::MaxTokens);
    let ContentBlock::ToolUse { input, .. } = &response.content[0] else {
        panic!("{response:?}");
    };
    assert!(matches!(input, ToolInput::Invalid { .. }), "{input:?}");
}

#[test]
fn the_content_budget_holds_for_arguments() {
    let mut answer = ChatAnswer::new(budget(10));
    let big =
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "x".repeat(11)}}]}));
    let error = answer.push(&big, &mut |_| {}).unwrap_err();
    assert!(matches!(error, ModelError::TooLarge { .. }), "{error}");
}

#[test]
fn results_come_as_tool_messages_then_the_background_text() {
    let messages = vec![
        Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: "go".into() }],
        },
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "c1".into(),
                name: "bash".into(),
                input: ToolInput::from_value(json!({"command": "ls"})),
            }],
        },
        Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult {
                    tool_use_id: "c1".into(),
                    content: "a.txt".into(),
                    is_error: false,
                },
                ContentBlock::Text {
                    text: "<background-results>x</background-results>".into(),
                },
            ],
        },
    ];
    let out = chat_messages(&messages);
    assert_eq!(
        out,
        [
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "a.txt"}),
            json!({"role": "user", "content": "<background-results>x</background-results>"}),
        ]
    );
}

#[test]
fn a_whole_completion_is_parsed() {
    let response = parse_completion(&json!({
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }))
    .unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.content.len(), 1);
    assert_eq!(response.usage.input_tokens, 5);
}
