//! Attacks on what decides which plugin code runs with which grants, replayed through the
//! real binary: a compiled-code cache others can write (native code injection), trust
//! decided on other bytes than those that run, trust-store line injection, approvals that
//! leak across workspaces; and what `plugins check|inspect|trust` and the model are told
//! about grants withheld until a workspace plugin is trusted.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::plugins::{built, http_server, install, plugins_command};
use crate::support::{ModelServer, Reply, RunResult, TestEnv, agent, one_shot, run, tool_use};

/// `agent plugins ARGS...` in `env`, with the compiled-code cache in `cache` and the state
/// (trust store) in `state`.
fn plugins_with(
    env: &TestEnv,
    cache: Option<&Path>,
    state: Option<&Path>,
    args: &[&str],
) -> RunResult {
    let server = ModelServer::start(vec![]);
    let mut cmd = agent(env, &server);
    if let Some(cache) = cache {
        cmd.env("AGENT_CACHE_DIR", cache);
    }
    if let Some(state) = state {
        cmd.env("AGENT_STATE_DIR", state);
    }
    cmd.arg("plugins").args(args);
    run(cmd, Duration::from_secs(120))
}

/// The `plugins list --output json` report.
fn list_json(out: &RunResult) -> Value {
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The report of the plugin named `name` in a `plugins list --output json` report.
fn plugin<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {report}"))
}

fn tool_names(plugin: &Value) -> Vec<String> {
    plugin["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The compiled entries (`*.cwasm`) in a cache directory.
fn entries(components: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(components)
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

/// The one entry that appeared in `components` while `f` ran.
fn new_entry(components: &Path, f: impl FnOnce()) -> PathBuf {
    let before = entries(components);
    f();
    let added: Vec<_> = entries(components).difference(&before).cloned().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    added[0].clone()
}

/// `bytes` (a component) with a custom section appended so it is exactly `size` bytes.
fn padded(bytes: &[u8], size: usize) -> Vec<u8> {
    fn leb(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }
    let extra = size - bytes.len();
    for width in 1..=5 {
        // Section: id 0, LEB size, then the name `p` (length 1) and the payload.
        let Some(content) = extra.checked_sub(1 + width) else {
            continue;
        };
        if content >= 2 && leb(content).len() == width {
            let mut out = bytes.to_vec();
            out.push(0);
            out.extend(leb(content));
            out.extend([1, b'p']);
            out.extend(std::iter::repeat_n(0u8, content - 2));
            assert_eq!(out.len(), size);
            return out;
        }
    }
    panic!("cannot pad {} bytes to {size}", bytes.len());
}

/// Hole 2: `.cwasm` files are machine code. A cache directory others can write, or an
/// entry that is not the user's own, must never be loaded: here the entry the agent looks
/// up for `fetch_url` is replaced with the compiled `hostile` component, which would show
/// hostile's tools (and run its code) if it were loaded.
#[test]
fn compiled_code_the_user_did_not_write_is_never_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let components = cache.path().join("components");
    let env = TestEnv::new();
    let other = TestEnv::new();
    let list =
        |env: &TestEnv| plugins_with(env, Some(cache.path()), None, &["list", "--output", "json"]);
    // The built-ins first, so each later run adds exactly one entry.
    list_json(&list(&TestEnv::new()));
    let real = new_entry(&components, || {
        install(&env, &built("fetch_url"), "p", None);
        list_json(&list(&env));
    });
    let hostile = new_entry(&components, || {
        install(&other, &built("hostile"), "p", None);
        list_json(&list(&other));
    });
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let plant = || std::fs::copy(&hostile, &real).unwrap();

    // A cache directory that others can write is not used at all.
    plant();
    std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o777)).unwrap();
    let report = list_json(&list(&env));
    assert_eq!(tool_names(plugin(&report, "p")), ["fetch_url"], "{report}");
    assert_eq!(plugin(&report, "p")["cache"], "disabled");
    assert!(
        report["problems"]
            .to_string()
            .contains("can be written by others"),
        "{report}"
    );

    // In a private directory, an entry others can write is refused and replaced.
    std::fs::set_permissions(&components, std::fs::Permissions::from_mode(0o700)).unwrap();
    plant();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o666)).unwrap();
    let report = list_json(&list(&env));
    assert_eq!(tool_names(plugin(&report, "p")), ["fetch_url"], "{report}");
    assert_eq!(mode(&real), 0o600, "replaced by a private entry");

    // And so is an entry owned by someone else (the tests run as root, who can chown).
    plant();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    if std::os::unix::fs::chown(&real, Some(4242), Some(4242)).is_ok() {
        let report = list_json(&list(&env));
        assert_eq!(tool_names(plugin(&report, "p")), ["fetch_url"], "{report}");
        let meta = std::fs::metadata(&real).unwrap();
        assert_eq!(meta.uid(), std::fs::metadata(&components).unwrap().uid());
    }

    // The cache still works: the replaced entry is a hit; the directory and entries
    // are private.
    let report = list_json(&list(&env));
    assert_eq!(plugin(&report, "p")["cache"], "hit", "{report}");
    assert!(
        report["problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(mode(&components), 0o700);
    for entry in entries(&components) {
        assert_eq!(mode(&entry), 0o600, "{}", entry.display());
    }
}

/// Hole 3: the cache index once named a file by path, size, modification time and inode,
/// and trust re-read the file. A same-size rewrite in place with the modification time
/// restored then ran the old (untrusted) code under the approval of the new file. The
/// code that runs must be the code whose hash was trusted.
#[test]
fn the_code_that_runs_is_the_code_that_was_trusted() {
    let env = TestEnv::new();
    let hostile = std::fs::read(built("hostile")).unwrap();
    let benign = std::fs::read(built("fetch_url")).unwrap();
    let size = hostile.len().max(benign.len()) + 1000;
    let (hostile, benign) = (padded(&hostile, size), padded(&benign, size));
    let manifest = "env = [\"PLANTED_SECRET\"]\nnetwork = [\"example.com\"]\n";
    env.write(".agent/plugins/p.toml", manifest);
    let file = env.write(".agent/plugins/p.wasm", &hostile);

    // The hostile component is seen once (untrusted), so the cache indexes it.
    let report = list_json(&plugins_command(&env, &["list", "--output", "json"]));
    assert!(tool_names(plugin(&report, "p")).contains(&"env".to_string()));

    // Rewritten in place (same inode, same size), with the modification time put back.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    {
        use std::io::Write;
        let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        handle.write_all(&benign).unwrap();
        handle.set_modified(mtime).unwrap();
    }
    let out = plugins_command(&env, &["trust", file.to_str().unwrap()]);
    out.assert_success();

    let report = list_json(&plugins_command(&env, &["list", "--output", "json"]));
    let p = plugin(&report, "p");
    assert_eq!(
        tool_names(p),
        ["fetch_url"],
        "the new file's code runs: {report}"
    );
    assert_eq!(p["grants"]["env"], json!(["PLANTED_SECRET"]), "{report}");
    let out = plugins_command(
        &env,
        &["inspect", file.to_str().unwrap(), "--output", "json"],
    );
    out.assert_success();
    let inspected: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(inspected["sha256"], sha256_hex(&benign), "{out}");
}

/// Hole 9: approvals were lines `<component> <manifest> <path>`, so trusting a file whose
/// name held a newline planted a second pin that made another plugin trusted.
#[test]
fn a_plugin_name_with_a_newline_cannot_plant_an_approval() {
    let env = TestEnv::new();
    let hostile_manifest = "env = [\"PLANTED_SECRET\"]\n";
    let hostile = install(&env, &built("hostile"), "hostile", Some(hostile_manifest));
    let pin = format!(
        "{} {}",
        sha256_hex(&std::fs::read(&hostile).unwrap()),
        sha256_hex(hostile_manifest.as_bytes())
    );
    let name = format!("x\n{pin} y");
    let benign = install(
        &env,
        &built("fetch_url"),
        &name,
        Some("network = [\"example.com\"]\n"),
    );
    let out = plugins_command(&env, &["trust", benign.to_str().unwrap()]);
    out.assert_success();

    let report = list_json(&plugins_command(&env, &["list", "--output", "json"]));
    let hostile = plugin(&report, "hostile");
    assert_eq!(hostile["grants"]["env"], json!([]), "{report}");
    assert_eq!(
        hostile["withheld"]["env"],
        json!(["PLANTED_SECRET"]),
        "{report}"
    );
    let benign = plugin(&report, &name);
    assert_eq!(
        benign["grants"]["network"],
        json!(["example.com"]),
        "{report}"
    );

    let store = env.state.path().join("trusted-plugins");
    let meta = std::fs::metadata(&store).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&store).unwrap();
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored["approvals"].as_array().unwrap().len(), 1, "{text}");
}

/// Hole 9: an approval holds in the workspace it was given in; the same plugin with the
/// same manifest in another checkout asks again. `trust --list` shows approvals and
/// `trust --revoke FILE` withdraws one.
#[test]
fn an_approval_holds_in_its_own_workspace_only_and_can_be_listed_and_revoked() {
    let first = TestEnv::new();
    let second = TestEnv::new();
    let state = first.state.path();
    let manifest = "network = [\"example.com\"]\n";
    let file = install(&first, &built("fetch_url"), "fetch_url", Some(manifest));
    install(&second, &built("fetch_url"), "fetch_url", Some(manifest));
    plugins_with(
        &first,
        None,
        Some(state),
        &["trust", file.to_str().unwrap()],
    )
    .assert_success();

    let granted = |env: &TestEnv| {
        let report = list_json(&plugins_with(
            env,
            None,
            Some(state),
            &["list", "--output", "json"],
        ));
        plugin(&report, "fetch_url")["grants"]["network"].clone()
    };
    assert_eq!(granted(&first), json!(["example.com"]));
    assert_eq!(
        granted(&second),
        json!([]),
        "another workspace is not trusted"
    );

    let out = plugins_with(&second, None, Some(state), &["trust", "--list"]);
    out.assert_success();
    let workspace = first.workspace.path().canonicalize().unwrap();
    assert!(
        out.stdout.contains(&workspace.display().to_string()),
        "{out}"
    );
    assert!(out.stdout.contains("network: example.com"), "{out}");
    let out = plugins_with(
        &first,
        None,
        Some(state),
        &["trust", "--list", "--output", "json"],
    );
    out.assert_success();
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        listed["approvals"][0]["workspace"],
        json!(workspace),
        "{out}"
    );
    assert_eq!(
        listed["approvals"][0]["plugin"],
        json!(workspace.join(".agent/plugins/fetch_url.wasm")),
        "{out}"
    );

    let out = plugins_with(
        &first,
        None,
        Some(state),
        &["trust", "--revoke", file.to_str().unwrap()],
    );
    out.assert_success();
    assert!(out.stdout.contains("revoked"), "{out}");
    assert_eq!(granted(&first), json!([]));
    let out = plugins_with(
        &first,
        None,
        Some(state),
        &["trust", "--revoke", file.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(1), "nothing left to revoke: {out}");
    assert!(out.stderr.contains("no approval"), "{out}");
}

#[test]
fn trusting_a_missing_file_says_it_does_not_exist() {
    let env = TestEnv::new();
    let out = plugins_command(&env, &["trust", "missing.wasm"]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("does not exist"), "{out}");
    assert!(!out.stderr.contains("manifest"), "{out}");
}

/// `check` and `inspect` show a workspace plugin as a run would load it: what is granted
/// now, and what is withheld until `agent plugins trust FILE`.
#[test]
fn check_and_inspect_show_what_is_withheld_until_trusted() {
    let env = TestEnv::new();
    let file = install(
        &env,
        &built("fetch_url"),
        "fetch_url",
        Some("network = [\"example.com\"]\nenv = [\"LANG\"]\n"),
    );
    let path = file.to_str().unwrap();
    let out = plugins_command(&env, &["check", path]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("grants: workspace: none; env: none; network: none"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("withheld until you run `agent plugins trust")
            && out.stdout.contains("env: LANG; network: example.com"),
        "{out}"
    );
    let out = plugins_command(&env, &["check", path, "--output", "json"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{out}");
    assert_eq!(report["grants"]["network"], json!([]), "{out}");
    assert_eq!(
        report["withheld"]["network"],
        json!(["example.com"]),
        "{out}"
    );

    let out = plugins_command(&env, &["inspect", path, "--output", "json"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["origin"], "workspace", "{out}");
    assert_eq!(report["grants"]["env"], json!([]), "{out}");
    assert_eq!(report["withheld"]["env"], json!(["LANG"]), "{out}");
    let out = plugins_command(&env, &["inspect", path]);
    assert!(
        out.stdout
            .contains("withheld until you run `agent plugins trust"),
        "{out}"
    );

    plugins_command(&env, &["trust", path]).assert_success();
    let out = plugins_command(&env, &["check", path, "--output", "json"]);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["grants"]["network"], json!(["example.com"]), "{out}");
    assert_eq!(report["withheld"], Value::Null, "{out}");
}

/// The model is told that a grant is withheld until the user trusts the plugin, rather
/// than to add a host the manifest already names, and the tool descriptions say what is
/// withheld (a missing variable or directory is otherwise silent).
#[test]
fn the_model_is_told_what_is_withheld_until_trusted() {
    let env = TestEnv::new();
    let host = http_server("reached");
    install(
        &env,
        &built("fetch_url"),
        "fetch_url",
        Some(&format!("network = [\"{host}\"]\nenv = [\"LANG\"]\n")),
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "f1",
            "fetch_url",
            json!({"url": format!("http://{host}/")}),
        )]),
        Reply::text("done"),
    ]);
    let out = one_shot(&env, &server, "fetch");
    out.assert_success();
    let requests = server.requests();
    let tools = requests[0].body["tools"].as_array().unwrap();
    let description = tools.iter().find(|t| t["name"] == "fetch_url").unwrap()["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("withheld until the user approves it with `agent plugins trust")
            && description.contains("env: LANG"),
        "{description}"
    );
    let (_, text, is_error) = requests[1].tool_results().remove(0);
    assert!(is_error, "{text}");
    assert!(
        text.contains("withheld until the user approves it with `agent plugins trust"),
        "{text}"
    );
    assert!(
        !text.contains("not in its manifest's network grant"),
        "{text}"
    );
}
