//! Replay of transcripts: torn and damaged lines, and the repair of a history cut short.

use serde_json::json;

use super::*;
use crate::model::ToolInput;
use crate::session::Record;

fn header() -> String {
    json!({"type": "session", "version": 1, "id": "20261126-042800-ab12",
        "workspace": "/w", "started": "2026-11-26T04:28:00Z",
        "provider": "anthropic", "model": "m"})
    .to_string()
}

fn line(record: Record<'_>) -> String {
    serde_json::to_string(&record).unwrap()
}

fn text(text: &str) -> ContentBlock {
    ContentBlock::Text { text: text.into() }
}

fn call(id: &str) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: "bash".into(),
        input: ToolInput::from(json!({"command": "sleep 9"})),
    }
}

fn result(id: &str, content: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.into(),
        content: content.into(),
        is_error: false,
    }
}

fn user(source: UserSource, blocks: &[ContentBlock]) -> String {
    line(Record::User {
        source,
        blocks: blocks.into(),
        delivered: Default::default(),
    })
}

fn assistant(content: &[ContentBlock]) -> String {
    line(Record::Assistant {
        content: content.into(),
    })
}

fn transcript(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn a_torn_last_line_is_ignored_and_the_rest_replays() {
    let whole = transcript(&[
        header(),
        user(UserSource::Prompt, &[text("remember X")]),
        assistant(&[text("ok")]),
        user(UserSource::Prompt, &[text("and Y")]),
    ]);
    // Cut anywhere inside the last line: the first two messages survive.
    let last_start = whole[..whole.len() - 1].rfind('\n').unwrap() + 1;
    for cut in last_start + 1..whole.len() - 1 {
        let replayed = parse(&whole[..cut]).unwrap();
        assert_eq!(replayed.history.len(), 2, "cut at {cut}");
        assert_eq!(replayed.prompts, 1);
        assert_eq!(replayed.skipped, 0, "a torn last line is not damage");
    }
    // A last line whose newline was not written is whole: kept.
    let replayed = parse(&whole[..whole.len() - 1]).unwrap();
    assert_eq!(replayed.history.len(), 3);
    assert_eq!(replayed.first_prompt.as_deref(), Some("remember X"));
}

#[test]
fn a_damaged_middle_line_is_skipped_and_counted_unknown_records_are_ignored() {
    let text_of = transcript(&[
        header(),
        user(UserSource::Prompt, &[text("a")]),
        "{not json".into(),
        r#"{"type":"from_the_future","x":1}"#.into(),
        assistant(&[text("b")]),
    ]);
    let replayed = parse(&text_of).unwrap();
    assert_eq!(replayed.skipped, 1);
    assert_eq!(replayed.history.len(), 2);
}

#[test]
fn no_header_or_a_newer_format_is_refused() {
    assert!(parse(&transcript(&[user(UserSource::Prompt, &[text("a")])])).is_err());
    let newer = header().replace("\"version\":1", "\"version\":99");
    assert!(parse(&transcript(&[newer])).unwrap_err().contains("newer"));
}

#[test]
fn user_records_rebuild_appended_messages_as_the_loop_made_them() {
    let replayed = parse(&transcript(&[
        header(),
        user(UserSource::Prompt, &[text("go")]),
        assistant(&[call("t1")]),
        user(UserSource::ToolResults, &[result("t1", "done")]),
        line(Record::User {
            source: UserSource::Background,
            blocks: (&[text("<background-results>")][..]).into(),
            delivered: (&["bg-1".to_string()][..]).into(),
        }),
        assistant(&[text("fine")]),
    ]))
    .unwrap();
    assert_eq!(replayed.history.len(), 4);
    assert_eq!(
        replayed.history[2].content,
        [result("t1", "done"), text("<background-results>")],
        "the background text went into the results' message, after them"
    );
}

#[test]
fn an_unanswered_call_gets_an_interrupted_result_and_an_unfinished_prompt_is_kept() {
    // The agent died while the tool ran.
    let mut history = parse(&transcript(&[
        header(),
        user(UserSource::Prompt, &[text("go")]),
        assistant(&[text("running"), call("t1"), call("t2")]),
    ]))
    .unwrap()
    .history;
    let added = repair(&mut history, Vec::new());
    assert_eq!(added.len(), 2);
    assert!(
        matches!(&added[0], ContentBlock::ToolResult { tool_use_id, content, is_error: true }
        if tool_use_id == "t1" && content == INTERRUPTED)
    );
    assert_eq!(history.len(), 2, "the caller adds (and records) them");

    // The agent died waiting for the model: the prompt stays for the next request.
    let mut history = parse(&transcript(&[
        header(),
        user(UserSource::Prompt, &[text("go")]),
    ]))
    .unwrap()
    .history;
    assert!(repair(&mut history, Vec::new()).is_empty());
    assert_eq!(history[0].content, [text("go")]);
}

#[test]
fn results_of_calls_done_before_the_exit_are_kept() {
    let replayed = parse(&transcript(&[
        header(),
        user(UserSource::Prompt, &[text("go")]),
        assistant(&[call("t1"), call("t2")]),
        line(Record::Answered {
            result: std::borrow::Cow::Owned(result("t1", "wrote the file")),
        }),
    ]))
    .unwrap();
    let mut history = replayed.history;
    let added = repair(&mut history, replayed.answered);
    assert_eq!(added[0], result("t1", "wrote the file"));
    assert!(
        matches!(&added[1], ContentBlock::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "t2")
    );

    // Once the results are in the history, the single ones are not used again.
    let replayed = parse(&transcript(&[
        header(),
        user(UserSource::Prompt, &[text("go")]),
        assistant(&[call("t1")]),
        line(Record::Answered {
            result: std::borrow::Cow::Owned(result("t1", "x")),
        }),
        user(UserSource::ToolResults, &[result("t1", "x")]),
    ]))
    .unwrap();
    assert!(replayed.answered.is_empty());
}

#[test]
fn damage_inside_the_history_is_repaired_in_place() {
    let mut history = vec![
        Message {
            role: Role::User,
            content: vec![result("orphan", "x"), text("go")],
        },
        Message {
            role: Role::Assistant,
            content: vec![call("t1"), call("t2")],
        },
        Message {
            role: Role::User,
            content: vec![text("later"), result("t2", "two"), result("zz", "stray")],
        },
        Message {
            role: Role::Assistant,
            content: vec![call("t3")],
        },
        Message {
            role: Role::Assistant,
            content: vec![text("again")],
        },
    ];
    assert!(repair(&mut history, Vec::new()).is_empty());
    assert_eq!(history[0].content, [text("go")]);
    assert_eq!(
        history[2].content,
        [
            ContentBlock::ToolResult {
                tool_use_id: "t1".into(),
                content: INTERRUPTED.into(),
                is_error: true
            },
            result("t2", "two"),
            text("later")
        ]
    );
    assert_eq!(
        history[4].role,
        Role::User,
        "a user turn between two answers"
    );
    assert_eq!(history.len(), 6);
}

#[test]
fn tasks_are_traced_from_start_to_end_and_delivery() {
    let replayed = parse(&transcript(&[
        header(),
        line(Record::TaskStarted {
            task_id: "bg-1".into(),
            command: "make".into(),
            log_path: "/l/bg-1.log".into(),
            at_ms: 5,
        }),
        line(Record::TaskStarted {
            task_id: "bg-2".into(),
            command: "sleep 60".into(),
            log_path: "/l/bg-2.log".into(),
            at_ms: 6,
        }),
        line(Record::TaskFinished {
            task_id: "bg-1".into(),
            status: "failed".into(),
            exit: Some(crate::session::Exit::Code(2)),
            duration_ms: 1500,
            output_bytes: 10,
        }),
        line(Record::User {
            source: UserSource::Background,
            blocks: (&[text("results")][..]).into(),
            delivered: (&["bg-1".to_string()][..]).into(),
        }),
    ]))
    .unwrap();
    let [one, two] = &replayed.tasks[..] else {
        panic!("{:?}", replayed.tasks)
    };
    assert!(one.delivered && !two.delivered);
    assert_eq!(one.finished.as_ref().unwrap().status, TaskStatus::Failed);
    assert_eq!(one.finished.as_ref().unwrap().exit, Some(ExitKind::Code(2)));
    assert!(two.finished.is_none());
}

#[test]
fn a_delivered_ready_notification_is_in_the_history_but_leaves_the_final_result_owed() {
    let replayed = parse(&transcript(&[
        header(),
        line(Record::TaskStarted {
            task_id: "bg-1".into(),
            command: "serve".into(),
            log_path: "/l/bg-1.log".into(),
            at_ms: 5,
        }),
        line(Record::TaskReady {
            task_id: "bg-1".into(),
            ready: "port 8080 accepts connections".into(),
            at_ms: 9,
        }),
        line(Record::User {
            source: UserSource::Background,
            blocks: (&[text("[bg:bg-1] ready after 1.0s")][..]).into(),
            delivered: (&["bg-1:ready".to_string()][..]).into(),
        }),
    ]))
    .unwrap();
    assert_eq!(replayed.skipped, 0);
    let [task] = &replayed.tasks[..] else {
        panic!("{:?}", replayed.tasks)
    };
    // Its end was never delivered: a resumed session still owes the model that.
    assert!(!task.delivered && task.finished.is_none());
    assert_eq!(replayed.history.len(), 1);
}
