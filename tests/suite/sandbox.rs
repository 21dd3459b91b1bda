//! Attempts to leave the workspace through the file tools: nothing outside is read or
//! written, and each attempt gets a clear error.

use serde_json::json;

use crate::support::{ModelServer, Reply, TestEnv, one_shot, tool_use};

#[test]
fn paths_outside_the_workspace_are_refused_by_the_sandbox() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "TOP SECRET").unwrap();
    let env = TestEnv::new();
    std::os::unix::fs::symlink(&secret, env.path("link-to-secret")).unwrap();
    std::os::unix::fs::symlink(outside.path(), env.path("link-to-dir")).unwrap();
    env.write("inside.txt", "fine");
    let ws = env.workspace.path().canonicalize().unwrap();
    let outside_abs = outside.path().canonicalize().unwrap();
    let rel_escape = format!(
        "../{}/secret.txt",
        outside_abs.file_name().unwrap().to_string_lossy()
    );
    // Climb from the workspace up to / and down into the outside directory.
    let depth = ws.components().count() - 1;
    let deep_escape = format!(
        "{}{}",
        "../".repeat(depth),
        outside_abs
            .join("secret.txt")
            .display()
            .to_string()
            .trim_start_matches('/')
    );

    let attempts = vec![
        tool_use("a1", "read_file", json!({"path": secret.to_str().unwrap()})),
        tool_use("a2", "read_file", json!({"path": rel_escape})),
        tool_use("a3", "read_file", json!({"path": deep_escape})),
        tool_use("a4", "read_file", json!({"path": "link-to-secret"})),
        tool_use("a5", "read_file", json!({"path": "link-to-dir/secret.txt"})),
        tool_use("a6", "read_file", json!({"path": "/etc/passwd"})),
        tool_use(
            "a7",
            "write_file",
            json!({"path": outside_abs.join("new.txt").to_str().unwrap(), "content": "x"}),
        ),
        tool_use(
            "a8",
            "write_file",
            json!({"path": "../escaped.txt", "content": "x"}),
        ),
        tool_use(
            "a9",
            "write_file",
            json!({"path": "link-to-dir/new.txt", "content": "x"}),
        ),
        tool_use(
            "a10",
            "write_file",
            json!({"path": "link-to-secret", "content": "overwritten"}),
        ),
        tool_use(
            "a11",
            "edit_file",
            json!({"path": "link-to-secret", "old_text": "TOP", "new_text": "NOT"}),
        ),
        tool_use(
            "a12",
            "edit_file",
            json!({"path": secret.to_str().unwrap(), "old_text": "TOP", "new_text": "NOT"}),
        ),
        tool_use(
            "a13",
            "write_file",
            json!({"path": "sub/../../escaped2.txt", "content": "x"}),
        ),
    ];
    let count = attempts.len();
    let server = ModelServer::start(vec![
        Reply::tools(attempts),
        Reply::tools(vec![
            tool_use(
                "ok1",
                "read_file",
                json!({"path": ws.join("inside.txt").to_str().unwrap()}),
            ),
            tool_use("ok2", "read_file", json!({"path": "./inside.txt"})),
        ]),
        Reply::text("done"),
    ]);
    let out = one_shot(&env, &server, "escape");
    out.assert_success();

    let requests = server.requests();
    let results = requests[1].tool_results();
    assert_eq!(results.len(), count);
    for (id, text, is_error) in &results {
        assert!(is_error, "{id} must fail: {text}");
        assert!(
            !text.contains("TOP SECRET") && !text.contains("root:"),
            "{id} leaked: {text}"
        );
        assert!(
            text.contains("permission denied") || text.contains("not found"),
            "{id}: the error should say why: {text}"
        );
    }
    let said = |id: &str| results.iter().find(|r| r.0 == id).unwrap().1.clone();
    assert!(
        said("a1").contains("outside the workspace"),
        "{}",
        said("a1")
    );
    assert!(
        said("a6").contains("outside the workspace"),
        "{}",
        said("a6")
    );
    for id in ["a4", "a5", "a9", "a10", "a11"] {
        assert!(
            said(id).contains("symlink that leads outside the workspace"),
            "{id}: {}",
            said(id)
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP SECRET");
    let mut left: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["secret.txt"],
        "nothing new outside the workspace"
    );
    assert!(!ws.parent().unwrap().join("escaped.txt").exists());
    assert!(!ws.parent().unwrap().join("escaped2.txt").exists());

    // Absolute paths inside the workspace work, as they do in shell commands.
    let ok = requests[2].tool_results();
    assert_eq!(ok[0].1, "fine");
    assert_eq!(ok[1].1, "fine");
    server.assert_protocol_ok();
}
