//! Attacks on the plugin platform's limits, replayed through the real binary: a plugin
//! that floods `host.log` (in a call and in `describe()`), a network grant by name that
//! leads to loopback, a URL with userinfo, and the `describe()` defects (a schema a real
//! run rejects, every tool invalid, a panic, an endless loop).
//!
//! The `describe()` variants are copies of the `hostile` component with the mode bytes
//! after its `hostile-describe-mode:` marker overwritten (see plugins/hostile).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::plugins::{built, http_server, install, install_in, plugins_command};
use crate::support::{ModelServer, Reply, TestEnv, agent, run, spawn, tool_use};

const MODE_MARKER: &[u8] = b"hostile-describe-mode:";

/// A copy of the hostile component, in `dir/NAME.wasm`, whose describe() does `mode`.
fn hostile_with_mode(dir: &Path, name: &str, mode: &str) -> PathBuf {
    let mut bytes = std::fs::read(built("hostile")).unwrap();
    let at: Vec<usize> = bytes
        .windows(MODE_MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MODE_MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the describe mode marker appears once");
    assert!(mode.len() <= 10);
    let start = at[0] + MODE_MARKER.len();
    let padded = format!("{mode:.<10}");
    bytes[start..start + 10].copy_from_slice(padded.as_bytes());
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The run's `plugins.log` under the state directory.
fn plugins_log(env: &TestEnv) -> PathBuf {
    fn find(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "plugins.log") {
                return Some(path);
            }
            if path.is_dir()
                && let Some(found) = find(&path)
            {
                return Some(found);
            }
        }
        None
    }
    find(env.state.path()).expect("a plugins.log was written")
}

/// The peak resident memory of a running process, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_log_flood_in_describe_and_in_a_call_is_capped_and_costs_no_memory() {
    let env = TestEnv::new();
    // describe() logs 200 lines of 4 MiB; the call 200 more of 4 MiB.
    hostile_with_mode(&env.path(".agent/plugins"), "hostile", "logflood");
    let pid = Arc::new(AtomicI32::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let (pid_seen, peak_seen) = (pid.clone(), peak.clone());
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "flood",
            "log_flood",
            json!({"lines": 200, "kib": 4096}),
        )]),
        // Asked after the call, while the agent waits: its peak memory so far.
        Reply::with(move |_| {
            let kib = peak_rss_kib(pid_seen.load(Ordering::SeqCst));
            peak_seen.store(kib, Ordering::SeqCst);
            Reply::text("done")
        }),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.args(["-p", "flood"]);
    let started = Instant::now();
    let running = spawn(cmd);
    pid.store(running.pid(), Ordering::SeqCst);
    let out = running.wait(Duration::from_secs(60));
    out.assert_success();
    let results = server.requests()[1].tool_results();
    assert_eq!(results[0].1, "logged", "{results:?}");

    let log = plugins_log(&env);
    let size = std::fs::metadata(&log).unwrap().len();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        size < 256 * 1024,
        "plugins.log holds {size} bytes after 1.6 GB were logged"
    );
    assert!(
        text.contains("hostile describe() - warn: [") && text.contains("more log lines dropped"),
        "describe()'s lines are capped with one marker line: {}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(
        text.contains("hostile log_flood flood warn: [184 more log lines dropped"),
        "the call's lines are capped with one marker line: {}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(text.contains("more bytes cut]"), "long lines are cut");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600,
        "plugins.log is private"
    );
    let peak_mib = peak.load(Ordering::SeqCst) / 1024;
    eprintln!("peak memory after the flood: {peak_mib} MiB");
    assert!(
        peak_mib < 200,
        "the agent's peak memory was {peak_mib} MiB after the flood"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A name other than `localhost` that this machine resolves to an internal address
/// without DNS (from /etc/hosts): the host name, or one of the usual aliases.
fn name_resolving_inside() -> Option<(String, String)> {
    use std::net::ToSocketAddrs;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    for name in [
        hostname.as_str(),
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
    ] {
        if name.is_empty() || name.eq_ignore_ascii_case("localhost") {
            continue;
        }
        let Ok(addresses) = (name, 80).to_socket_addrs() else {
            continue;
        };
        let addresses: Vec<_> = addresses.collect();
        if let Some(v4) = addresses
            .iter()
            .find(|a| a.ip().is_loopback() && a.is_ipv4())
        {
            return Some((name.to_string(), v4.ip().to_string()));
        }
    }
    None
}

#[test]
fn a_granted_name_that_resolves_to_loopback_is_refused_unless_the_grant_names_the_address() {
    let Some((name, ip)) = name_resolving_inside() else {
        eprintln!(
            "SKIPPED: no name other than localhost resolves to a loopback address on this machine"
        );
        return;
    };
    let server_address = http_server("INTERNAL SERVICE");
    let port = server_address.rsplit_once(':').unwrap().1.to_string();
    assert!(server_address.starts_with(&format!("{ip}:")) || ip.starts_with("127."));
    let env = TestEnv::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let fetch = |grant: &str, url: String| {
        let file = install_in(
            elsewhere.path(),
            &built("fetch_url"),
            "fetch_url",
            Some(&format!("network = [{grant}]\n")),
        );
        let server = ModelServer::start(vec![
            Reply::tools(vec![tool_use("f", "fetch_url", json!({"url": url}))]),
            Reply::text("done"),
        ]);
        let mut cmd = agent(&env, &server);
        cmd.arg("--plugin").arg(&file).args(["-p", "fetch"]);
        run(cmd, Duration::from_secs(60)).assert_success();
        let results = server.requests()[1].tool_results();
        (results[0].1.clone(), results[0].2)
    };

    // Granted by name: the name leads to loopback, so it is refused.
    let (text, is_error) = fetch(&format!("{name:?}"), format!("http://{name}:{port}/"));
    assert!(is_error, "a name granted by name reached loopback: {text}");
    assert!(!text.contains("INTERNAL SERVICE"), "{text}");
    assert!(
        text.contains(&format!("resolves to {ip}")) && text.contains("does not name literally"),
        "the error says why: {text}"
    );

    // The grant names the address too: allowed.
    let (text, is_error) = fetch(
        &format!("{name:?}, \"{ip}:{port}\""),
        format!("http://{name}:{port}/"),
    );
    assert!(
        !is_error && text.contains("INTERNAL SERVICE"),
        "a literal grant of the address lets the name through: {text}"
    );

    // `localhost` granted as `localhost` may reach loopback.
    let (text, is_error) = fetch("\"localhost\"", format!("http://localhost:{port}/"));
    assert!(!is_error && text.contains("INTERNAL SERVICE"), "{text}");
}

#[test]
fn a_url_with_userinfo_is_refused() {
    let env = TestEnv::new();
    let host = http_server("SHOULD NOT BE REACHED");
    let elsewhere = tempfile::tempdir().unwrap();
    let file = install_in(
        elsewhere.path(),
        &built("hostile"),
        "hostile",
        Some(&format!("network = [\"{host}\"]\n")),
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use(
                "userinfo",
                "fetch",
                json!({"authority": format!("user:secret@{host}"), "path": "/"}),
            ),
            tool_use("plain", "fetch", json!({"authority": host, "path": "/"})),
        ]),
        Reply::text("done"),
    ]);
    let mut cmd = agent(&env, &server);
    cmd.arg("--plugin").arg(&file).args(["-p", "fetch"]);
    run(cmd, Duration::from_secs(60)).assert_success();
    let results = server.requests()[1].tool_results();
    let (_, text, is_error) = &results[0];
    assert!(is_error, "{text}");
    assert!(
        text.contains("a URL with a user name or password"),
        "the refusal says why: {text}"
    );
    assert_eq!(
        results[1].1, "HTTP 200",
        "the same host without userinfo works"
    );
}

#[test]
fn a_tool_whose_schema_a_run_rejects_is_refused_by_check_inspect_and_list() {
    let env = TestEnv::new();
    let file = hostile_with_mode(&env.path(".agent/plugins"), "hostile", "badschema");
    let file = file.to_str().unwrap();

    let out = plugins_command(&env, &["check", file]);
    assert_eq!(out.code(), Some(1), "check fails: {out}");
    assert!(
        out.stdout
            .contains("tool `typo`: the input schema is not a valid JSON Schema"),
        "{out}"
    );
    assert!(!out.stdout.contains("ok:"), "{out}");

    let out = plugins_command(&env, &["inspect", file]);
    assert!(
        out.stdout.contains("problem:") && out.stdout.contains("`typo`"),
        "{out}"
    );
    assert!(
        !out.stdout.contains("    typo  "),
        "typo is not listed as a tool: {out}"
    );

    let out = plugins_command(&env, &["list"]);
    out.assert_success();
    assert!(
        out.stdout.contains("problem:") && out.stdout.contains("`typo`"),
        "{out}"
    );
    assert!(out.stdout.contains("noop"), "the valid tool loads: {out}");
}

#[test]
fn when_every_tool_is_invalid_each_reason_is_shown() {
    let env = TestEnv::new();
    let file = hostile_with_mode(&env.path(".agent/plugins"), "hostile", "allbad");
    let out = plugins_command(&env, &["check", file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    for reason in [
        "describe() offered no valid tool",
        "tool name \"bad name!\" is invalid",
        "tool `typo`: the input schema is not a valid JSON Schema",
        "tool `not_json`: the input schema is not valid JSON",
    ] {
        assert!(out.stdout.contains(reason), "missing {reason:?}: {out}");
    }
}

#[test]
fn a_panic_in_describe_shows_the_panic_message() {
    let env = TestEnv::new();
    let file = hostile_with_mode(&env.path(".agent/plugins"), "hostile", "panic");
    let out = plugins_command(&env, &["check", file.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout
            .contains("describe() of the hostile plugin panicked on purpose"),
        "{out}"
    );
}

#[test]
fn a_looping_describe_costs_its_short_limit_once_then_is_remembered() {
    let env = TestEnv::new();
    let cache = tempfile::tempdir().unwrap();
    let file = hostile_with_mode(&env.path(".agent/plugins"), "hostile", "loop");
    let check = || {
        let server = ModelServer::start(vec![]);
        let mut cmd = agent(&env, &server);
        cmd.env("AGENT_CACHE_DIR", cache.path())
            .args(["plugins", "check"])
            .arg(&file);
        let started = Instant::now();
        let out = run(cmd, Duration::from_secs(60));
        (out, started.elapsed())
    };
    // The call limit is 30 s; describe() gets 5 s.
    let (out, first) = check();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("did not finish within 5s"), "{out}");
    assert!(first < Duration::from_secs(15), "took {first:?}");

    let (out, second) = check();
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout.contains("did not finish within 5s")
            && out.stdout.contains("remembered from an earlier start"),
        "{out}"
    );
    assert!(
        second < Duration::from_secs(4),
        "a remembered failure costs no time: took {second:?}"
    );
    let stored = std::fs::read_dir(cache.path().join("components/describe-failures"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);

    // The next start of a whole run skips the plugin quickly too, and says why.
    let server = ModelServer::start(vec![Reply::text("done")]);
    let mut cmd = agent(&env, &server);
    cmd.env("AGENT_CACHE_DIR", cache.path()).args(["-p", "hi"]);
    let started = Instant::now();
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        out.stderr.contains("remembered from an earlier start"),
        "{out}"
    );
}

#[test]
fn the_normal_hostile_component_still_describes_its_tools() {
    let env = TestEnv::new();
    install(&env, &built("hostile"), "hostile", None);
    let out = plugins_command(&env, &["list"]);
    out.assert_success();
    assert!(out.stdout.contains("log_flood"), "{out}");
}
