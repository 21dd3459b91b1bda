//! The rendered terminal view: forced on through a pipe with `AGENT_COLOR=always` (or
//! `--color always`), never in `--output json`, and plain text otherwise when piped.

use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Reply, TestEnv, agent, run, tool_use};

fn edit_session() -> Vec<Reply> {
    vec![
        Reply::tools(vec![tool_use(
            "w1",
            "write_file",
            json!({"path": "todo.txt", "content": "one\ntwo\nthree\n"}),
        )]),
        Reply::tools(vec![tool_use(
            "e1",
            "edit_file",
            json!({"path": "todo.txt", "old_text": "two", "new_text": "TWO"}),
        )]),
        Reply::text("## Done\nThe list has **three** items:\n- `one`\n- \x1b]0;pwned\x07two\n"),
    ]
}

#[test]
fn agent_color_always_renders_markdown_tool_lines_and_diffs_through_a_pipe() {
    let server = ModelServer::start(edit_session());
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_COLOR", "always").args(["-p", "edit"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    // A captured session for people to look at (`cat` it on a terminal).
    if let Some(path) = std::env::var_os("AGENT_RENDER_TRANSCRIPT") {
        std::fs::write(path, format!("{}{}", out.stderr, out.stdout)).unwrap();
    }
    assert!(out.stdout.contains("\x1b[1;35mDone\x1b[0m"), "{out}");
    assert!(out.stdout.contains("\x1b[1mthree\x1b[0m"), "{out}");
    assert!(
        out.stdout.contains("\x1b[36m•\x1b[0m \x1b[36mone\x1b[0m"),
        "{out}"
    );
    assert!(out.stdout.contains("\\x1b]0;pwned\\x07two"), "{out}");
    assert!(!out.stdout.contains("\x1b]"), "{out}");
    assert!(out.stderr.contains("\x1b[1mwrite_file\x1b[0m"), "{out}");
    assert!(out.stderr.contains("+++ todo.txt (new file)"), "{out}");
    assert!(
        out.stderr
            .contains("\x1b[31m-two\x1b[0m\n\x1b[32m+TWO\x1b[0m"),
        "{out}"
    );
    // NO_COLOR does not undo an explicit `always`; `--color never` wins over the variable.
    let server = ModelServer::start(vec![Reply::text("**b**")]);
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_COLOR", "always")
        .args(["--color", "never", "-p", "x"]);
    let out = run(cmd, Duration::from_secs(30));
    out.assert_success();
    assert_eq!(out.stdout, "**b**\n", "{out}");
}

#[test]
fn piped_output_stays_plain() {
    let server = ModelServer::start(edit_session());
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "edit"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(
        !out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'),
        "{out}"
    );
    assert!(
        out.stdout
            .starts_with("## Done\nThe list has **three** items:\n"),
        "{out}"
    );
    assert!(!out.stderr.contains("+++"), "{out}");
}

#[test]
fn json_output_is_never_rendered() {
    let server = ModelServer::start(edit_session());
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_COLOR", "always")
        .args(["--output", "json", "--color", "always", "-p", "edit"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(
        !out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'),
        "{out}"
    );
    for line in out.stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect(line);
    }
}
