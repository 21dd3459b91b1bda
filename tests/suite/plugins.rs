//! Third-party plugins as a user meets them: discovered in the workspace, the user's
//! config directory and `--plugin`, offered to the model, broken ones reported by file
//! while the rest load, and the `agent plugins list|inspect|check` commands.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::plugins::{built, example, http_server, install, install_in, plugins_command};
use crate::support::{ModelServer, Reply, TestEnv, agent, one_shot, run, tool_use};

#[test]
fn plugins_from_every_place_are_offered_and_broken_ones_are_named() {
    let env = TestEnv::new();
    let hostile = built("hostile");
    install(&env, &built("fetch_url"), "fetch_url", None);
    install_in(
        &env.config.path().join("plugins"),
        &hostile,
        "from-user-dir",
        None,
    );
    // The same tools again under another name: every tool name is taken, so it is skipped.
    install(&env, &hostile, "copy-of-hostile", None);
    install(&env, &built("future_wit"), "future", None);
    env.write(".agent/plugins/garbage.wasm", "this is not wasm");
    env.write(
        ".agent/plugins/empty-component.wasm",
        b"\0asm\x0d\x00\x01\x00",
    );
    install(
        &env,
        &built("fetch_url"),
        "bad-manifest",
        Some("workspace = \"everything\"\n"),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let extra = install_in(elsewhere.path(), &built("fetch_url"), "renamed", None);
    // A second copy of fetch_url: its one tool clashes, so it is skipped.

    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use("t1", "count_calls", json!({}))]),
        Reply::text("done"),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.args(["--plugin", extra.to_str().unwrap(), "-p", "what tools?"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();

    let offered = server.requests()[0].tool_names();
    for tool in ["bash", "read_file", "fetch_url", "count_calls", "spin"] {
        assert!(
            offered.contains(&tool.to_string()),
            "{tool} missing: {offered:?}"
        );
    }
    assert_eq!(
        offered.iter().filter(|t| *t == "count_calls").count(),
        1,
        "a tool name is offered once: {offered:?}"
    );
    assert!(
        !offered
            .iter()
            .any(|t| t == "bad name!" || t == "string_schema")
    );
    assert_eq!(
        server.requests()[1].tool_results()[0].1,
        "1",
        "the user-dir plugin answers"
    );

    let warnings = &out.stderr;
    for expected in [
        "copy-of-hostile.wasm: tools `noop`, `count_calls`, `spin`",
        "are already provided by",
        "future.wasm: was built against agent:tool@0.2.0, but this agent speaks agent:tool@0.1.x",
        "garbage.wasm: is not a WebAssembly file",
        "empty-component.wasm: does not export agent:tool/tool@0.1.0",
        "bad-manifest.toml: line 1, column 13: unknown variant `everything`",
        "from-user-dir.wasm: tool name \"bad name!\" is invalid",
        "from-user-dir.wasm: tool `string_schema`: the input schema must be a JSON object schema",
        "renamed.wasm: tool `fetch_url` is already provided by",
        "fetch_url.wasm; skipped",
    ] {
        assert!(
            warnings.contains(expected),
            "no warning {expected:?} in:\n{warnings}"
        );
    }
}

#[test]
fn fetch_url_reaches_the_granted_host_and_only_that_one() {
    let env = TestEnv::new();
    let allowed = http_server("hello from the granted host");
    let other = http_server("SHOULD NOT BE READ");
    install_in(
        &env.config.path().join("plugins"),
        &built("fetch_url"),
        "fetch_url",
        Some(&format!("network = [\"{allowed}\"]\n")),
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "ok",
                "fetch_url",
                json!({"url": format!("http://{allowed}/page")}),
            ),
            tool_use(
                "no",
                "fetch_url",
                json!({"url": format!("http://{other}/page")}),
            ),
            tool_use("bad", "fetch_url", json!({"url": "not a url"})),
        ]),
        Reply::text("done"),
    ]);
    one_shot(&env, &server, "fetch").assert_success();
    let results = server.requests()[1].tool_results();
    assert_eq!(
        (results[0].1.as_str(), results[0].2),
        ("HTTP 200\n\nhello from the granted host", false)
    );
    assert!(
        results[1].2 && results[1].1.contains("permission denied"),
        "{:?}",
        results[1]
    );
    assert!(
        results[1].1.contains("does not allow this plugin to reach"),
        "{:?}",
        results[1]
    );
    assert!(!results[1].1.contains("SHOULD NOT"));
    assert!(
        results[2].2 && results[2].1.contains("invalid input"),
        "{:?}",
        results[2]
    );

    // What the plugin logged went to the run's plugins.log, not to the model or terminal.
    let runs = std::fs::read_dir(env.state.path().join("tasks")).unwrap();
    let run_dir = runs.map(|e| e.unwrap().path()).next().unwrap();
    let log = std::fs::read_to_string(run_dir.join("plugins.log")).unwrap();
    assert!(
        log.contains(&format!(
            "fetch_url fetch_url ok debug: GET http://{allowed}/page"
        )),
        "{log}"
    );
}

#[test]
fn plugins_list_shows_each_plugin_its_tools_and_grants() {
    let env = TestEnv::new();
    install(
        &env,
        &built("fetch_url"),
        "fetch_url",
        Some("network = [\"example.com\"]\n"),
    );
    install(&env, &built("fetch_url"), "second-copy", None);
    let out = plugins_command(&env, &["list"]);
    out.assert_success();
    assert!(out.stdout.contains("fs-tools (built-in"), "{out}");
    assert!(
        out.stdout
            .contains("second-copy.wasm: tool `fetch_url` is already provided by"),
        "{out}"
    );
    assert!(out.stdout.contains("fetch_url (workspace: "), "{out}");
    assert!(
        out.stdout.contains("(network: example.com) is withheld"),
        "{out}"
    );

    let out = plugins_command(&env, &["list", "--output", "json"]);
    out.assert_success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fs-tools", "fetch_url", "second-copy"]);
    // The plugin came with the workspace and is not trusted: its network grant is withheld.
    assert_eq!(
        report["plugins"][1]["grants"],
        json!({"workspace": "none", "dirs": [], "env": [], "network": []})
    );
    assert!(
        report["problems"]
            .to_string()
            .contains("(network: example.com) is withheld"),
        "{report}"
    );
    assert_eq!(report["plugins"][0]["grants"]["workspace"], "read-write");
    assert_eq!(report["pooling_allocator"], true);
}

#[test]
fn plugins_inspect_shows_tools_imports_and_grants() {
    let env = TestEnv::new();
    let file = install(
        &env,
        &built("fetch_url"),
        "fetch_url",
        Some("network = [\"example.com:443\"]\nenv = [\"LANG\"]\n"),
    );
    let out = plugins_command(&env, &["inspect", file.to_str().unwrap()]);
    out.assert_success();
    for expected in [
        "plugin    fetch_url",
        "manifest  ",
        "fetch_url.toml",
        "network: example.com:443",
        "env: LANG",
        "workspace: none",
        "wasi:http/outgoing-handler",
        "input schema: {",
        "\"read-only\"",
    ] {
        assert!(out.stdout.contains(expected), "no {expected:?} in:\n{out}");
    }
}

#[test]
fn plugins_check_passes_a_good_plugin_and_fails_a_broken_one() {
    let env = TestEnv::new();
    let good = install(&env, &built("fetch_url"), "fetch_url", None);
    let out = plugins_command(&env, &["check", good.to_str().unwrap()]);
    out.assert_success();
    assert!(
        out.stdout.contains("ok: ") && out.stdout.contains("offers 1 tool"),
        "{out}"
    );

    let hostile = install(&env, &built("hostile"), "hostile", None);
    let out = plugins_command(&env, &["check", hostile.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout.contains("tool name \"bad name!\" is invalid"),
        "{out}"
    );
    assert!(out.stdout.contains("failed: "), "{out}");

    let future = install(&env, &built("future_wit"), "future", None);
    let out = plugins_command(
        &env,
        &["check", future.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(out.code(), Some(1), "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("agent:tool@0.2.0"),
        "{out}"
    );

    // A file that is not there fails with a clear message.
    let out = plugins_command(&env, &["check", "/nonexistent/x.wasm"]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("no such file"), "{out}");
}

#[test]
fn the_python_and_javascript_examples_answer_the_model() {
    let env = TestEnv::new();
    env.write(
        "Cargo.json",
        r#"{"dependencies": {"serde": {"version": "1.0.228"}}, "items": [{"name": "first"}]}"#,
    );
    let manifest = std::fs::read_to_string(example("json-query.toml")).unwrap();
    install(
        &env,
        &example("json-query.wasm"),
        "json-query",
        Some(&manifest),
    );
    install(&env, &example("word-count.wasm"), "word-count", None);
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "py1",
                "json_query",
                json!({"path": "Cargo.json", "query": "dependencies.serde.version"}),
            ),
            tool_use(
                "py2",
                "json_query",
                json!({"path": "Cargo.json", "query": "dependencies.tokio"}),
            ),
            tool_use(
                "py3",
                "json_query",
                json!({"path": "/etc/passwd", "query": ""}),
            ),
            tool_use(
                "js1",
                "word_count",
                json!({"text": "the cat and the hat\nthe end"}),
            ),
            tool_use("js2", "word_count", json!({"text": ""})),
        ]),
        Reply::text("done"),
    ]);
    // With a cold compiled-code cache (a fresh clone, as in CI) the 18 MB Python
    // component is compiled first, which can take most of a minute on a loaded machine.
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "use the examples"]);
    let out = run(cmd, std::time::Duration::from_secs(180));
    out.assert_success();
    let results = server.requests()[1].tool_results();
    let said = |id: &str| results.iter().find(|r| r.0 == id).cloned().unwrap();

    assert_eq!(
        (said("py1").1.as_str(), said("py1").2),
        ("\"1.0.228\"", false)
    );
    assert!(said("py2").2, "{:?}", said("py2"));
    assert!(
        said("py2").1.contains("not found") && said("py2").1.contains("serde"),
        "{:?}",
        said("py2")
    );
    assert!(
        said("py3").2 && said("py3").1.contains("permission denied"),
        "{:?}",
        said("py3")
    );
    assert!(!said("py3").1.contains("root:"));

    assert!(!said("js1").2, "{:?}", said("js1"));
    let counts: Value = serde_json::from_str(&said("js1").1).unwrap();
    assert_eq!(counts["lines"], 2);
    assert_eq!(counts["words"], 7);
    assert_eq!(counts["top_words"][0], json!(["the", 3]));
    assert!(
        said("js2").2 && said("js2").1.contains("invalid input"),
        "{:?}",
        said("js2")
    );
}

#[test]
fn a_workspace_plugin_gets_more_than_the_workspace_only_once_trusted() {
    let env = TestEnv::new();
    let host = http_server("reached");
    let file = install(
        &env,
        &built("fetch_url"),
        "fetch_url",
        Some(&format!("network = [\"{host}\"]\n")),
    );
    let fetch = |id: &str| tool_use(id, "fetch_url", json!({"url": format!("http://{host}/")}));
    let run_once = |id: &str| {
        let server = ModelServer::start(vec![Reply::tools(vec![fetch(id)]), Reply::text("done")]);
        let out = one_shot(&env, &server, "fetch");
        out.assert_success();
        let result = server.requests()[1].tool_results().remove(0);
        (result.1, result.2, out.stderr)
    };

    let (text, is_error, warnings) = run_once("before");
    assert!(is_error && text.contains("permission denied"), "{text}");
    assert!(
        warnings.contains(&format!("network: {host}) is withheld")),
        "{warnings}"
    );
    assert!(warnings.contains("agent plugins trust"), "{warnings}");

    let out = plugins_command(&env, &["trust", file.to_str().unwrap()]);
    out.assert_success();
    assert!(out.stdout.contains(&format!("network: {host}")), "{out}");
    let (text, is_error, warnings) = run_once("trusted");
    assert_eq!(
        (text.as_str(), is_error),
        ("HTTP 200\n\nreached", false),
        "{warnings}"
    );
    assert!(!warnings.contains("withheld"), "{warnings}");

    // A changed manifest is a new request: withheld again until trusted again.
    std::fs::write(
        file.with_extension("toml"),
        format!("network = [\"{host}\", \"example.com\"]\n"),
    )
    .unwrap();
    let (text, is_error, warnings) = run_once("changed");
    assert!(is_error && text.contains("permission denied"), "{text}");
    assert!(warnings.contains("withheld"), "{warnings}");
}
