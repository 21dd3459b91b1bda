//! `agent config show` and the one config file: each setting with where it came from, the
//! key never shown, and unknown tables refused with their line and column.

use std::time::Duration;

use crate::support::{ModelServer, TestEnv, agent, run};

const LIMIT: Duration = Duration::from_secs(30);

fn write_config(env: &TestEnv, text: &str) {
    std::fs::write(env.config.path().join("config.toml"), text).unwrap();
}

/// The `config show --json` report: setting -> (value, source).
fn show(env: &TestEnv, server: &ModelServer, args: &[&str]) -> serde_json::Value {
    let mut cmd = agent(env, server);
    cmd.env("ANTHROPIC_API_KEY", "sk-secret-never-shown-4242")
        .args(args)
        .args(["config", "show", "--json"]);
    let out = run(cmd, LIMIT);
    out.assert_success();
    assert!(!out.stdout.contains("sk-secret-never-shown-4242"), "{out}");
    serde_json::from_str(out.stdout.trim()).expect("one JSON object")
}

#[test]
fn each_setting_says_where_it_came_from() {
    let server = ModelServer::start(vec![]);
    let env = TestEnv::new();
    write_config(
        &env,
        "[model]\nmax_tokens = 1000\n[context]\nwindow = 50000\n[sandbox]\nmode = \"read-only\"\n[limits]\nbash_timeout = 9\nmax_tasks = 5\n",
    );
    let report = show(&env, &server, &["--bash-timeout", "7"]);
    let setting = |name: &str| {
        (
            report[name]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            report[name]["source"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    assert_eq!(setting("provider"), ("anthropic".into(), "default".into()));
    // MODEL_ID is set by the harness.
    assert_eq!(setting("model").0, "test-model");
    assert!(setting("model").1.contains("MODEL_ID"), "{report}");
    let (tokens, source) = setting("max_tokens");
    assert_eq!(tokens, "1000");
    assert!(source.contains("config.toml"), "{report}");
    assert_eq!(setting("context_window").0, "50000");
    assert!(
        setting("context_window").1.contains("config.toml"),
        "{report}"
    );
    assert_eq!(setting("sandbox").0, "read-only");
    assert_eq!(
        setting("bash_timeout"),
        ("7s".into(), "--bash-timeout".into())
    );
    assert_eq!(
        setting("background_timeout"),
        ("300s".into(), "default".into())
    );
    assert_eq!(
        setting("max_tasks"),
        ("5".into(), "config.toml [limits] max_tasks".into())
    );
    assert_eq!(
        setting("api_key"),
        ("set".into(), "ANTHROPIC_API_KEY".into())
    );

    // A flag beats the file.
    let report = show(&env, &server, &["--max-tokens", "50"]);
    assert_eq!(report["bash_timeout"]["value"], "9s");
    assert_eq!(report["max_tokens"]["value"], "50");
    assert_eq!(report["max_tokens"]["source"], "--max-tokens");
}

#[test]
fn an_unknown_table_or_key_is_refused_with_its_line_and_column() {
    let server = ModelServer::start(vec![]);
    let env = TestEnv::new();
    for (text, expected) in [
        (
            "[model]\nmax_tokens = 10\n\n[modle]\nx = 1\n",
            "line 4, column 2",
        ),
        ("[context]\n  windw = 5000\n", "line 2, column 3"),
        ("[limits]\nmax_tasks = 0\n", "max_tasks must be at least 1"),
    ] {
        write_config(&env, text);
        let mut cmd = agent(&env, &server);
        cmd.args(["config", "show"]);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), Some(2), "{text}: {out}");
        assert!(out.stderr.contains(expected), "{text}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
        let mut cmd = agent(&env, &server);
        cmd.args(["-p", "hi"]);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), Some(2), "a run refuses it too: {out}");
    }
    assert!(server.requests().is_empty());
}
