//! The built-in file tools, run as a WebAssembly component by the real binary.

use serde_json::json;

use crate::support::{ModelServer, Reply, TestEnv, one_shot, tool_use};

#[test]
fn write_read_and_edit_a_file() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "w1",
            "write_file",
            json!({"path": "notes/todo.txt", "content": "one\ntwo\nthree\n"}),
        )]),
        Reply::tools(vec![tool_use(
            "r1",
            "read_file",
            json!({"path": "notes/todo.txt"}),
        )]),
        Reply::tools(vec![tool_use(
            "e1",
            "edit_file",
            json!({"path": "notes/todo.txt", "old_text": "two", "new_text": "TWO"}),
        )]),
        Reply::tools(vec![tool_use(
            "r2",
            "read_file",
            json!({"path": "notes/todo.txt", "limit": 1}),
        )]),
        Reply::text("all done"),
    ]);
    let env = TestEnv::new();
    let out = one_shot(&env, &server, "make a todo list");
    out.assert_success();
    assert!(out.stdout.contains("all done"), "{out}");
    assert_eq!(env.read("notes/todo.txt"), "one\nTWO\nthree\n");

    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    let result = |i: usize| requests[i].tool_results().remove(0);
    assert_eq!(
        result(1),
        (
            "w1".into(),
            "Wrote 14 bytes to notes/todo.txt".into(),
            false
        )
    );
    assert_eq!(result(2), ("r1".into(), "one\ntwo\nthree\n".into(), false));
    let (_, edited, is_error) = result(3);
    assert!(
        !is_error && edited.contains("Edited notes/todo.txt"),
        "{edited}"
    );
    assert_eq!(
        result(4),
        ("r2".into(), "one\n... (2 more lines)".into(), false)
    );
    server.assert_protocol_ok();
}

#[test]
fn file_tool_errors_are_clear_and_the_agent_keeps_going() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "e1",
                "edit_file",
                json!({"path": "a.txt", "old_text": "absent", "new_text": "x"}),
            ),
            tool_use("r1", "read_file", json!({"path": "missing.txt"})),
            tool_use("r2", "read_file", json!({"path": "."})),
            tool_use("w1", "write_file", json!({"path": "a.txt"})),
            tool_use("r3", "read_file", json!({"path": "a.txt", "limit": "ten"})),
            tool_use("x1", "no_such_tool", json!({})),
        ]),
        Reply::tools(vec![tool_use("r4", "read_file", json!({"path": "a.txt"}))]),
        Reply::text("recovered"),
    ]);
    let env = TestEnv::new();
    env.write("a.txt", "present\n");
    let out = one_shot(&env, &server, "try things");
    out.assert_success();
    assert_eq!(
        env.read("a.txt"),
        "present\n",
        "a failed edit changes nothing"
    );

    let requests = server.requests();
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 6);
    for (id, text, is_error) in &results {
        assert!(is_error, "{id} should fail: {text}");
    }
    assert!(
        results[0].1.contains("conflict") && results[0].1.contains("old_text was not found"),
        "{:?}",
        results[0]
    );
    assert!(
        results[1].1.contains("not found") && results[1].1.contains("missing.txt"),
        "{:?}",
        results[1]
    );
    assert!(results[2].1.contains("directory"), "{:?}", results[2]);
    assert!(
        results[3].1.contains("content"),
        "missing field named: {:?}",
        results[3]
    );
    assert!(
        results[4].1.contains("limit"),
        "bad field named: {:?}",
        results[4]
    );
    assert!(
        results[5].1.contains("unknown tool `no_such_tool`"),
        "{:?}",
        results[5]
    );
    // The plugin keeps working after errors.
    assert_eq!(requests[2].tool_results()[0].1, "present\n");
    server.assert_protocol_ok();
}

#[test]
fn read_file_caps_huge_files_and_shows_invalid_utf8_lossily() {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use("r1", "read_file", json!({"path": "big.txt"})),
            tool_use("r2", "read_file", json!({"path": "bin.dat"})),
        ]),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    env.write("big.txt", "x".repeat(200_000));
    env.write("bin.dat", [b'h', b'i', 0xff, 0xfe, b'!']);
    let out = one_shot(&env, &server, "read");
    out.assert_success();
    let results = server.requests()[1].tool_results();
    let (_, big, is_error) = &results[0];
    assert!(!is_error);
    assert!(big.len() < 60_000, "capped: {} bytes", big.len());
    assert!(
        big.contains("output truncated: 150000 more bytes"),
        "{}",
        &big[big.len() - 200..]
    );
    assert_eq!(results[1].1, "hi\u{fffd}\u{fffd}!");
}
