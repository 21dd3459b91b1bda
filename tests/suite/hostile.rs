//! The hostile-plugin suite: a component (`plugins/hostile`, built from source) that loops,
//! blocks, allocates, recurses, panics, floods, and tries to reach files, environment
//! variables and hosts it was not granted. Each attempt must end in a clear error for the
//! model, leak nothing, and leave the host answering the next tool call of the same
//! plugin and of the others.

use serde_json::{Value, json};

use crate::support::plugins::{built, http_server, install, plugins_command};
use crate::support::{ModelServer, Reply, TestEnv, agent, run, tool_use};

/// Runs one scripted turn: the model calls `calls` (each followed by `count_calls`, which
/// proves the plugin still answers), then finishes. Returns the results in order.
fn run_hostile(env: &TestEnv, calls: &[(&str, Value)], flags: &[&str]) -> Vec<(String, bool)> {
    let mut script = Vec::new();
    for (i, (tool, input)) in calls.iter().enumerate() {
        script.push(Reply::tools(vec![
            tool_use(&format!("h{i}"), tool, input.clone()),
            tool_use(&format!("next{i}"), "count_calls", json!({})),
        ]));
    }
    script.push(Reply::tools(vec![tool_use(
        "builtin",
        "read_file",
        json!({"path": "hello.txt"}),
    )]));
    script.push(Reply::text("done"));
    let server = ModelServer::start(script);
    env.write("hello.txt", "still here");
    let mut cmd = agent(env, &server);
    cmd.args(flags).args(["-p", "misbehave"]);
    let out = run(cmd, std::time::Duration::from_secs(120));
    out.assert_success();
    server.assert_protocol_ok();

    let requests = server.requests();
    let mut results = Vec::new();
    for (i, request) in requests[1..=calls.len()].iter().enumerate() {
        let got = request.tool_results();
        assert_eq!(got.len(), 2, "call {i}: {got:?}");
        assert_eq!(
            (got[1].1.as_str(), got[1].2),
            ("1", false),
            "after {:?} the plugin must answer again, from a fresh instance",
            calls[i].0
        );
        results.push((got[0].1.clone(), got[0].2));
    }
    let last = requests[calls.len() + 1].tool_results();
    assert_eq!(last[0].1, "still here", "the built-in tools still work");
    results
}

#[test]
fn runaway_plugins_cost_one_failed_call_and_the_host_keeps_working() {
    let env = TestEnv::new();
    install(&env, &built("hostile"), "hostile", None);
    let results = run_hostile(
        &env,
        &[
            ("spin", json!({})),
            ("sleep", json!({"ms": 60_000})),
            ("allocate", json!({"mib": 1024})),
            ("recurse", json!({})),
            ("panic", json!({})),
            ("allocate", json!({"mib": 8})),
            ("recurse_small", json!({})),
        ],
        &["--plugin-timeout", "1", "--plugin-memory", "64"],
    );
    let expect = |i: usize, needle: &str| {
        let (text, is_error) = &results[i];
        assert!(is_error, "call {i} must fail: {text}");
        assert!(
            text.contains(needle),
            "call {i} should say {needle:?}: {text}"
        );
    };
    expect(0, "did not finish within 1s");
    expect(1, "did not finish within 1s");
    expect(2, "memory limit");
    expect(2, "67108864");
    // Rust keeps big frames on a shadow stack in linear memory: running off its end is an
    // out-of-bounds access; running out of the wasm call stack is "call stack exhausted".
    expect(3, "the plugin crashed");
    assert!(
        results[3].0.contains("out of bounds") || results[3].0.contains("call stack exhausted"),
        "{}",
        results[3].0
    );
    expect(4, "the plugin crashed");
    expect(4, "panicked on purpose");
    assert_eq!(
        results[5],
        ("allocated 8 MiB".to_string(), false),
        "under the limit works"
    );
    expect(6, "call stack exhausted");
}

#[test]
fn a_plugin_blocked_on_a_fifo_is_stopped_at_its_time_limit() {
    let env = TestEnv::new();
    let fifo = env.path("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    install(
        &env,
        &built("hostile"),
        "hostile",
        Some("workspace = \"read-only\"\n"),
    );
    let results = run_hostile(
        &env,
        &[("read_path", json!({"path": "pipe"}))],
        &["--plugin-timeout", "1"],
    );
    let (text, is_error) = &results[0];
    assert!(
        *is_error && text.contains("did not finish within 1s"),
        "{text}"
    );
}

#[test]
fn a_100_mb_answer_is_cut_to_the_output_limit_with_a_marker() {
    let env = TestEnv::new();
    install(&env, &built("hostile"), "hostile", None);
    let results = run_hostile(&env, &[("flood", json!({"mib": 100}))], &[]);
    let (text, is_error) = &results[0];
    assert!(!is_error);
    assert!(
        text.len() < 101_000,
        "{} bytes reached the model",
        text.len()
    );
    assert!(
        text.ends_with("more bytes]"),
        "{}",
        &text[text.len() - 80..]
    );
    assert!(
        text.contains("plugin output cut: 104757600 more bytes"),
        "{}",
        &text[text.len() - 80..]
    );
}

#[test]
fn input_that_breaks_the_schema_never_reaches_the_plugin() {
    let env = TestEnv::new();
    install(&env, &built("hostile"), "hostile", None);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use("bad", "allocate", json!({"mib": "lots"}))]),
        Reply::text("done"),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "go"]);
    run(cmd, std::time::Duration::from_secs(60)).assert_success();
    let results = server.requests()[1].tool_results();
    let (_, text, is_error) = &results[0];
    assert!(is_error);
    assert!(text.contains("invalid input for `allocate`"), "{text}");
    assert!(text.contains("/mib"), "the error names the field: {text}");
    assert!(
        !text.contains("allocated"),
        "the plugin was not called: {text}"
    );
}

#[test]
fn a_plugin_without_a_manifest_reaches_no_file_no_variable_and_no_host() {
    let env = TestEnv::new();
    env.write("inside.txt", "workspace file");
    install(&env, &built("hostile"), "hostile", None);
    let host = http_server("REMOTE CONTENT");
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use("f1", "read_path", json!({"path": "/etc/passwd"})),
            tool_use("f2", "read_path", json!({"path": "inside.txt"})),
            tool_use("f3", "list_dir", json!({"path": "/"})),
            tool_use(
                "f4",
                "write_path",
                json!({"path": "new.txt", "content": "x"}),
            ),
            tool_use("e1", "env", json!({"name": "AGENT_TEST_SECRET"})),
            tool_use("e2", "env", json!({"name": "PATH"})),
            tool_use("n1", "fetch", json!({"authority": host, "path": "/"})),
        ]),
        Reply::text("done"),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_TEST_SECRET", "hunter2")
        .args(["-p", "snoop"]);
    run(cmd, std::time::Duration::from_secs(60)).assert_success();

    let results = server.requests()[1].tool_results();
    assert_eq!(results.len(), 7);
    for (id, text, is_error) in &results {
        assert!(is_error, "{id} must fail: {text}");
        for secret in [
            "root:",
            "workspace file",
            "hunter2",
            "/usr/bin",
            "REMOTE CONTENT",
        ] {
            assert!(!text.contains(secret), "{id} leaked {secret:?}: {text}");
        }
    }
    let said = |id: &str| results.iter().find(|r| r.0 == id).unwrap().1.clone();
    assert!(said("n1").contains("HttpRequestDenied"), "{}", said("n1"));
    assert!(
        said("n1").contains(&format!("refused this plugin's HTTP request to {host}")),
        "the host names the refused host: {}",
        said("n1")
    );
    assert!(!env.path("new.txt").exists());
}

#[test]
fn a_manifest_grants_exactly_what_it_names() {
    let env = TestEnv::new();
    env.write("inside.txt", "workspace file");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), env.path("link")).unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("data.txt"), "shared data").unwrap();
    let shared_dir = shared.path().canonicalize().unwrap();
    let allowed = http_server("ALLOWED HOST");
    let other = http_server("OTHER HOST");
    let manifest = format!(
        "workspace = \"read-only\"\nenv = [\"GRANTED_VAR\"]\nnetwork = [\"{allowed}\"]\n\
         [[dir]]\npath = \"{}\"\naccess = \"read-only\"\n",
        shared_dir.display()
    );
    let file = install(&env, &built("hostile"), "hostile", Some(&manifest));
    plugins_command(&env, &["trust", file.to_str().unwrap()]).assert_success();
    let ws = env.workspace.path().canonicalize().unwrap();
    let depth = ws.components().count() - 1;
    let climb = format!(
        "{}{}",
        "../".repeat(depth),
        outside
            .path()
            .join("secret.txt")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            // Granted: these work.
            tool_use("ok1", "read_path", json!({"path": "inside.txt"})),
            tool_use("ok2", "read_path", json!({"path": ws.join("inside.txt")})),
            tool_use(
                "ok3",
                "read_path",
                json!({"path": shared_dir.join("data.txt")}),
            ),
            tool_use("ok4", "env", json!({"name": "GRANTED_VAR"})),
            tool_use("ok5", "fetch", json!({"authority": allowed, "path": "/"})),
            // Not granted: these fail.
            tool_use("no1", "read_path", json!({"path": "/etc/passwd"})),
            tool_use("no2", "read_path", json!({"path": "../secret.txt"})),
            tool_use("no3", "read_path", json!({"path": climb})),
            tool_use("no4", "read_path", json!({"path": "link"})),
            tool_use(
                "no5",
                "write_path",
                json!({"path": "inside.txt", "content": "changed"}),
            ),
            tool_use(
                "no6",
                "write_path",
                json!({"path": shared_dir.join("new.txt"), "content": "x"}),
            ),
            tool_use("no7", "env", json!({"name": "AGENT_TEST_SECRET"})),
            tool_use("no8", "fetch", json!({"authority": other, "path": "/"})),
        ]),
        Reply::text("done"),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_TEST_SECRET", "hunter2")
        .env("GRANTED_VAR", "granted value")
        .args(["-p", "use grants"]);
    run(cmd, std::time::Duration::from_secs(60)).assert_success();

    let results = server.requests()[1].tool_results();
    let said = |id: &str| results.iter().find(|r| r.0 == id).cloned().unwrap();
    assert_eq!(said("ok1").1, "workspace file");
    assert_eq!(said("ok2").1, "workspace file");
    assert_eq!(said("ok3").1, "shared data");
    assert_eq!(said("ok4").1, "granted value");
    assert_eq!(said("ok5").1, "HTTP 200");
    for id in ["ok1", "ok2", "ok3", "ok4", "ok5"] {
        assert!(!said(id).2, "{id} should work: {}", said(id).1);
    }
    for id in ["no1", "no2", "no3", "no4", "no5", "no6", "no7", "no8"] {
        let (_, text, is_error) = said(id);
        assert!(is_error, "{id} must fail: {text}");
        for secret in ["root:", "TOP SECRET", "hunter2", "OTHER HOST"] {
            assert!(!text.contains(secret), "{id} leaked {secret:?}: {text}");
        }
    }
    assert!(
        said("no8").1.contains("HttpRequestDenied"),
        "{}",
        said("no8").1
    );
    assert_eq!(env.read("inside.txt"), "workspace file");
    assert!(!shared_dir.join("new.txt").exists());
}
