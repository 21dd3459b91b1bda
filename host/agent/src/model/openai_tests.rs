//! Unit tests of the Responses input items and the assembly of streamed events.

use serde_json::{Value, json};

use super::*;
use crate::model::bounded::Limits;

fn assemble(events: &[Value]) -> Result<(ModelResponse, String), ModelError> {
    let limits = Limits::new(1000, std::time::Duration::from_secs(1));
    let mut answer = ResponsesAnswer::new(Budget::new(&limits));
    let mut streamed = String::new();
    for event in events {
        let kind = event["type"].as_str().unwrap().to_string();
        let done = answer.push(&kind, event, &mut |event| {
            if let ModelEvent::TextDelta(piece) = event {
                streamed.push_str(&piece);
            }
        })?;
        if let Some(done) = done {
            return Ok((done, streamed));
        }
    }
    panic!("no response.completed");
}

#[test]
fn text_and_function_calls_are_assembled() {
    let (response, streamed) = assemble(&[
        json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message"}}),
        json!({"type": "response.output_text.delta", "output_index": 0, "delta": "Hel"}),
        json!({"type": "response.output_text.delta", "output_index": 0, "delta": "lo"}),
        json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "bash", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"command\""}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": ": \"ls\"}"}),
        json!({"type": "response.function_call_arguments.done", "output_index": 1, "arguments": "{\"command\": \"ls\"}"}),
        json!({"type": "response.output_item.done", "output_index": 1,
            "item": {"type": "function_call", "call_id": "call_1", "name": "bash", "arguments": "{\"command\": \"ls\"}"}}),
        json!({"type": "response.completed", "response": {"status": "completed",
            "usage": {"input_tokens": 50, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 20}}}}),
    ])
    .unwrap();
    assert_eq!(streamed, "Hello");
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.content,
        [
            ContentBlock::Text {
                text: "Hello".into()
            },
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "bash".into(),
                input: ToolInput::from_value(json!({"command": "ls"})),
            },
        ]
    );
    assert_eq!(response.usage.input_tokens, 30);
    assert_eq!(response.usage.cache_read_input_tokens, 20);
}

#[test]
fn incomplete_for_max_output_tokens_is_max_tokens_and_broken_arguments_are_invalid() {
    let (response, _) = assemble(&[
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "function_call", "call_id": "c", "name": "bash", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{\"comm"}),
        json!({"type": "response.incomplete", "response": {"status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}, "usage": {}}}),
    ])
    .unwrap();
    assert_eq!(response.stop_reason, StopReason::MaxTokens);
    assert!(matches!(
        &response.content[0],
        ContentBlock::ToolUse {
            input: ToolInput::Invalid { .. },
            ..
        }
    ));
}

#[test]
fn a_failed_response_is_an_error() {
    let error = assemble(&[json!({"type": "response.failed",
        "response": {"error": {"code": "server_error", "message": "boom"}}})])
    .unwrap_err();
    assert!(error.to_string().contains("boom"), "{error}");
}

#[test]
fn outputs_come_after_their_call_and_the_background_text_after_them() {
    let messages = vec![
        Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text { text: "ok".into() },
                ContentBlock::ToolUse {
                    id: "c1".into(),
                    name: "bash".into(),
                    input: ToolInput::from_value(json!({})),
                },
            ],
        },
        Message {
            role: Role::User,
            content: vec![
                ContentBlock::ToolResult {
                    tool_use_id: "c1".into(),
                    content: "boom".into(),
                    is_error: true,
                },
                ContentBlock::Text {
                    text: "<background-results>".into(),
                },
            ],
        },
    ];
    assert_eq!(
        input_items(&messages),
        [
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}),
            json!({"type": "function_call", "call_id": "c1", "name": "bash", "arguments": "{}"}),
            json!({"type": "function_call_output", "call_id": "c1", "output": "Error: boom"}),
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<background-results>"}]}),
        ]
    );
}
