//! The OS sandbox of native commands, replayed through the real binary and the real kernel,
//! for `bash` and `background_run` both: secrets in a temporary HOME (read directly, and
//! found by name through `find /`), writes to HOME and outside the workspace, a loopback
//! HTTP server reached by curl, python and bash's /dev/tcp, and the agent's
//! /proc/<pid>/environ all fail; ordinary work (a build, python, git, mktemp, pipes, npm,
//! background tasks and their logs) succeeds; `--sandbox off` really opens everything (so
//! none of this is vacuous) and `--sandbox read-only` refuses a workspace write.
//!
//! Every test skips, saying so on stderr, on a kernel without Landlock.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::support::{ModelServer, Reply, TestEnv, agent, landlock_abi, run, tool_use};

const SSH_SECRET: &str = "SSH-PRIVATE-KEY-4711";
const AWS_SECRET: &str = "AWS-SECRET-0815";
const LOOPBACK_ANSWER: &str = "LOOPBACK-REACHED";

/// Whether the test must skip; says why on stderr.
fn no_landlock(test: &str) -> bool {
    if landlock_abi() < 1 {
        eprintln!(
            "SKIPPED {test}: this kernel does not offer Landlock, so the sandbox cannot be tested"
        );
        return true;
    }
    false
}

/// A loopback HTTP server that answers every connection with [`LOOPBACK_ANSWER`] and
/// counts them.
struct Loopback {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Loopback {
    fn start() -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                let body = LOOPBACK_ANSWER;
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Loopback { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A temporary HOME holding secrets, and a directory outside the workspace.
struct Secrets {
    home: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        let home = tempfile::Builder::new()
            .prefix("agent-home-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(home.path().join(".ssh/id_rsa"), SSH_SECRET).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            format!("[default]\naws_secret_access_key = {AWS_SECRET}\n"),
        )
        .unwrap();
        let outside = tempfile::Builder::new()
            .prefix("agent-outside-")
            .tempdir()
            .unwrap();
        Secrets { home, outside }
    }

    fn planted(&self) -> Vec<PathBuf> {
        vec![
            self.home.path().join("planted"),
            self.outside.path().join("planted"),
        ]
    }
}

/// The attacks, one shell script; each prints its own marker line.
fn attacks(secrets: &Secrets, loopback: &Loopback) -> String {
    let port = loopback.port;
    let outside = secrets.outside.path().display();
    format!(
        r#"
echo "ssh:[$(cat "$HOME/.ssh/id_rsa" 2>&1)]"
echo "aws:[$(cat "$HOME/.aws/credentials" 2>&1 | tr '\n' ' ')]"
echo "found:[$(find / -maxdepth 4 -name id_rsa 2>/dev/null | while read -r f; do cat "$f" 2>&1; done | tr '\n' ' ')]"
echo "write-home:[$(echo x > "$HOME/planted" 2>&1 && echo written)]"
echo "write-outside:[$(echo x > "{outside}/planted" 2>&1 && echo written)]"
echo "curl:[$(curl -s -m 5 http://127.0.0.1:{port}/ 2>&1)]"
echo "python:[$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=5).read().decode())' 2>&1 | tail -1)]"
echo "devtcp:[$( (exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3) 2>&1 | tail -1)]"
echo "environ:[$(tr '\0' '\n' < /proc/$PPID/environ 2>&1 | grep -c test-key)]"
echo attacks-done
"#
    )
}

/// The ordinary work a coding agent does; each prints `NAME-ok` when it worked.
fn ordinary_work() -> String {
    r#"
set -u
w="work-$$" && mkdir "$w" && cd "$w"
cargo --version >/dev/null && echo cargo-ok
printf 'fn main() { println!("built-ok") }\n' > hello.rs && rustc -o hello hello.rs 2>&1 && ./hello
python3 -c 'print("python-" + "ok")'
(git init -q repo && cd repo && echo hi > f && git add f && git -c user.name=t -c user.email=t@example.com commit -q -m first && git log --oneline | grep -q first && echo git-ok) 2>&1
t=$(mktemp) && echo temp > "$t" && case "$t" in "$TMPDIR"/*) [ "$(cat "$t")" = temp ] && echo mktemp-ok;; *) echo "mktemp outside TMPDIR: $t";; esac
seq 1 1000 | sort -rn | head -1 | grep -q 1000 && echo pipes-ok
if command -v npm >/dev/null; then printf '{"name":"x","version":"1.0.0","scripts":{"hi":"echo npm-script-ran"}}' > package.json && npm run -s hi 2>&1 | grep -q npm-script-ran && echo npm-ok; else echo npm-ok npm-missing; fi
echo work-done
"#
    .to_string()
}

/// An agent with HOME set to the secrets' home (toolchains still come from PATH, with
/// `CARGO_HOME` and `RUSTUP_HOME` naming the real ones, as a user's environment would).
fn agent_with_home(
    env: &TestEnv,
    server: &ModelServer,
    secrets: &Secrets,
) -> std::process::Command {
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".cargo"));
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| real_home.join(".rustup"));
    let mut cmd = agent(env, server);
    cmd.env("HOME", secrets.home.path())
        .env("CARGO_HOME", cargo_home)
        .env("RUSTUP_HOME", rustup_home);
    cmd
}

/// Runs `script` once through `bash` and once through `background_run` in one one-shot
/// run with `extra` flags; returns (bash result, background result, agent stderr).
fn run_both(
    env: &TestEnv,
    secrets: &Secrets,
    extra: &[&str],
    script: &str,
) -> (String, String, String) {
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use("b1", "bash", json!({"command": script, "timeout": 60})),
            tool_use(
                "g1",
                "background_run",
                json!({"command": script, "timeout": 60}),
            ),
        ]),
        Reply::text("started"),
        Reply::text("done"),
        Reply::text("done"),
    ]);
    let mut cmd = agent_with_home(env, &server, secrets);
    cmd.args(extra).args(["-p", "probe"]);
    let out = run(cmd, Duration::from_secs(120));
    out.assert_success();
    let requests = server.requests();
    let bash = requests[1]
        .tool_results()
        .into_iter()
        .find(|(id, _, _)| id == "b1")
        .map(|(_, text, _)| text)
        .unwrap_or_default();
    let background = requests
        .iter()
        .map(|r| r.last_user_text())
        .find(|t| t.contains("<background-results>"))
        .unwrap_or_default();
    (bash, background, out.stderr)
}

/// The text between `name:[` and the matching `]` at the end of its line.
fn probe<'a>(output: &'a str, name: &str) -> &'a str {
    let start = format!("{name}:[");
    output
        .lines()
        .find_map(|line| line.strip_prefix(&start))
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("no {name} probe in:\n{output}"))
}

fn assert_all_refused(label: &str, output: &str, secrets: &Secrets) {
    assert!(output.contains("attacks-done"), "{label}: {output}");
    for name in ["ssh", "aws", "found"] {
        let text = probe(output, name);
        assert!(
            !text.contains(SSH_SECRET) && !text.contains(AWS_SECRET),
            "{label}: {name} read a secret: {output}"
        );
    }
    for name in ["write-home", "write-outside"] {
        assert!(
            !probe(output, name).contains("written"),
            "{label}: {name}: {output}"
        );
    }
    for name in ["curl", "python", "devtcp"] {
        assert!(
            !probe(output, name).contains(LOOPBACK_ANSWER),
            "{label}: {name} reached the loopback server: {output}"
        );
    }
    assert_eq!(probe(output, "environ"), "0", "{label}: {output}");
    for planted in secrets.planted() {
        assert!(
            !planted.exists(),
            "{label}: {} was written",
            planted.display()
        );
    }
}

#[test]
fn the_default_sandbox_refuses_secrets_writes_outside_and_the_network() {
    if no_landlock("the_default_sandbox_refuses_secrets_writes_outside_and_the_network") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let loopback = Loopback::start();
    let (bash, background, _) = run_both(&env, &secrets, &[], &attacks(&secrets, &loopback));
    eprintln!("bash:\n{bash}\nbackground_run:\n{background}");
    assert_all_refused("bash", &bash, &secrets);
    assert_all_refused("background_run", &background, &secrets);
    assert_eq!(
        loopback.connections(),
        0,
        "a command reached the loopback server"
    );
    // The result says the sandbox may be why commands failed.
    assert!(
        bash.contains("Permission denied") || bash.contains("Operation not permitted"),
        "{bash}"
    );
}

#[test]
fn a_refused_command_says_the_sandbox_may_be_why() {
    if no_landlock("a_refused_command_says_the_sandbox_may_be_why") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let script = "cat \"$HOME/.ssh/id_rsa\"";
    let (bash, background, _) = run_both(&env, &secrets, &[], script);
    for (label, output) in [("bash", &bash), ("background_run", &background)] {
        assert!(!output.contains(SSH_SECRET), "{label}: {output}");
        assert!(
            output.contains("[sandbox: workspace-write;") && output.contains("sandbox:\"off\""),
            "{label}: {output}"
        );
    }
}

#[test]
fn ordinary_work_succeeds_in_the_default_sandbox() {
    if no_landlock("ordinary_work_succeeds_in_the_default_sandbox") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let (bash, background, _) = run_both(&env, &secrets, &[], &ordinary_work());
    for (label, output) in [("bash", &bash), ("background_run", &background)] {
        for done in [
            "cargo-ok",
            "built-ok",
            "python-ok",
            "git-ok",
            "mktemp-ok",
            "pipes-ok",
            "npm-ok",
            "work-done",
        ] {
            assert!(output.contains(done), "{label}: no {done} in:\n{output}");
        }
        assert!(!output.contains("[sandbox:"), "{label}: {output}");
        if output.contains("npm-missing") {
            eprintln!("npm is not installed: the npm run check was skipped");
        }
    }
    let repos = std::fs::read_dir(env.workspace.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("repo/.git").is_dir())
        .count();
    assert_eq!(repos, 2, "one repository per command");
    // The background task's log holds its output too.
    let logs: Vec<PathBuf> = walk(env.state.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert!(
        logs.iter().any(|log| std::fs::read_to_string(log)
            .is_ok_and(|text| text.contains("python-ok") && text.contains("work-done"))),
        "no task log with the output among {logs:?}"
    );
}

#[test]
fn sandbox_off_really_gives_full_access() {
    if no_landlock("sandbox_off_really_gives_full_access") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let loopback = Loopback::start();
    let (bash, background, stderr) = run_both(
        &env,
        &secrets,
        &["--sandbox", "off"],
        &attacks(&secrets, &loopback),
    );
    assert!(stderr.contains("the sandbox is off"), "{stderr}");
    for (label, output) in [("bash", &bash), ("background_run", &background)] {
        assert!(
            probe(output, "ssh").contains(SSH_SECRET),
            "{label}: {output}"
        );
        assert!(
            probe(output, "aws").contains(AWS_SECRET),
            "{label}: {output}"
        );
        assert!(
            probe(output, "found").contains(SSH_SECRET),
            "{label}: {output}"
        );
        assert!(
            probe(output, "write-outside").contains("written"),
            "{label}: {output}"
        );
        for name in ["curl", "python", "devtcp"] {
            assert!(
                probe(output, name).contains(LOOPBACK_ANSWER),
                "{label}: {name}: {output}"
            );
        }
    }
    for planted in secrets.planted() {
        assert!(planted.exists(), "{} was not written", planted.display());
    }
}

#[test]
fn network_opens_sockets_but_not_the_files() {
    if no_landlock("network_opens_sockets_but_not_the_files") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let loopback = Loopback::start();
    let (bash, background, _) = run_both(
        &env,
        &secrets,
        &["--network"],
        &attacks(&secrets, &loopback),
    );
    for (label, output) in [("bash", &bash), ("background_run", &background)] {
        for name in ["curl", "python", "devtcp"] {
            assert!(
                probe(output, name).contains(LOOPBACK_ANSWER),
                "{label}: {name}: {output}"
            );
        }
        for name in ["ssh", "aws", "found"] {
            assert!(
                !probe(output, name).contains(SSH_SECRET),
                "{label}: {output}"
            );
            assert!(
                !probe(output, name).contains(AWS_SECRET),
                "{label}: {output}"
            );
        }
    }
}

#[test]
fn read_only_refuses_a_workspace_write_and_the_environment_and_config_choose_modes() {
    if no_landlock(
        "read_only_refuses_a_workspace_write_and_the_environment_and_config_choose_modes",
    ) {
        return;
    }
    let script = "t=$(mktemp) && echo tmp-ok; echo data > made.txt && echo wrote; cat made.txt";
    let secrets = Secrets::new();
    // By flag; by AGENT_SANDBOX; by the user's config.toml.
    for how in ["flag", "env", "config"] {
        let env = TestEnv::new();
        let server = ModelServer::start(vec![
            Reply::tools(vec![tool_use("b1", "bash", json!({"command": script}))]),
            Reply::text("done"),
        ]);
        let mut cmd = agent_with_home(&env, &server, &secrets);
        match how {
            "flag" => {
                cmd.args(["--sandbox", "read-only"]);
            }
            "env" => {
                cmd.env("AGENT_SANDBOX", "read-only");
            }
            _ => {
                std::fs::write(
                    env.config.path().join("config.toml"),
                    "[sandbox]\nmode = \"read-only\"\n",
                )
                .unwrap();
            }
        }
        cmd.args(["-p", "write"]);
        let out = run(cmd, Duration::from_secs(60));
        out.assert_success();
        let (_, result, _) = server.requests()[1].tool_results().remove(0);
        assert!(!result.contains("wrote"), "{how}: {result}");
        assert!(result.contains("tmp-ok"), "{how}: {result}");
        assert!(result.contains("[sandbox: read-only;"), "{how}: {result}");
        assert!(!env.path("made.txt").exists(), "{how}");
    }
}

#[test]
fn the_users_config_can_add_paths_and_the_network() {
    if no_landlock("the_users_config_can_add_paths_and_the_network") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let loopback = Loopback::start();
    let extra = tempfile::Builder::new()
        .prefix("agent-extra-")
        .tempdir()
        .unwrap();
    std::fs::write(extra.path().join("notes"), "extra-readable").unwrap();
    std::fs::write(
        env.config.path().join("config.toml"),
        format!(
            "[sandbox]\nnetwork = true\nwrite = [{:?}]\nread = [\"~/.ssh\"]\n",
            extra.path().display().to_string()
        ),
    )
    .unwrap();
    let script = format!(
        "cat notes && echo x > made && echo wrote; curl -s -m 5 http://127.0.0.1:{}/; echo; cat ~/.ssh/id_rsa",
        loopback.port
    );
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "bash",
            json!({"command": format!("cd {} && {script}", extra.path().display())}),
        )]),
        Reply::text("done"),
    ]);
    let mut cmd = agent_with_home(&env, &server, &secrets);
    cmd.args(["-p", "x"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    let (_, result, _) = server.requests()[1].tool_results().remove(0);
    assert!(
        result.contains("extra-readable") && result.contains("wrote"),
        "{result}"
    );
    assert!(result.contains(LOOPBACK_ANSWER), "{result}");
    // ~/.ssh is protected: a configured grant of it is left out.
    assert!(!result.contains(SSH_SECRET), "{result}");
}

#[test]
fn a_workspace_cannot_widen_its_own_sandbox_and_bad_settings_are_one_line_errors() {
    if no_landlock("a_workspace_cannot_widen_its_own_sandbox_and_bad_settings_are_one_line_errors")
    {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    // A repository's own config files are not the user's.
    env.write(".agent/config.toml", "[sandbox]\nmode = \"off\"\n");
    env.write("config.toml", "[sandbox]\nmode = \"off\"\n");
    env.write(".env", "AGENT_SANDBOX=off\n");
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "bash",
            json!({"command": "cat \"$HOME/.ssh/id_rsa\""}),
        )]),
        Reply::text("done"),
    ]);
    let mut cmd = agent_with_home(&env, &server, &secrets);
    cmd.args(["-p", "read"]);
    let out = run(cmd, Duration::from_secs(60));
    out.assert_success();
    let (_, result, _) = server.requests()[1].tool_results().remove(0);
    assert!(!result.contains(SSH_SECRET), "{result}");

    for (setup, expected) in [
        ("env", "AGENT_SANDBOX must be one of"),
        ("file", "config.toml: line 2"),
    ] {
        let env = TestEnv::new();
        let server = ModelServer::start(vec![]);
        let mut cmd = agent_with_home(&env, &server, &secrets);
        if setup == "env" {
            cmd.env("AGENT_SANDBOX", "wide-open");
        } else {
            std::fs::write(
                env.config.path().join("config.toml"),
                "[sandbox]\nmode = \"wide-open\"\n",
            )
            .unwrap();
        }
        cmd.args(["-p", "x"]);
        let out = run(cmd, Duration::from_secs(30));
        assert_eq!(out.code(), Some(2), "{out}");
        let error = out.stderr.trim();
        assert!(error.contains(expected), "{out}");
        assert_eq!(error.lines().count(), 1, "{out}");
    }
}

#[test]
fn sandbox_check_reports_what_this_kernel_enforces() {
    if no_landlock("sandbox_check_reports_what_this_kernel_enforces") {
        return;
    }
    let env = TestEnv::new();
    let secrets = Secrets::new();
    let server = ModelServer::start(vec![]);
    let mut cmd = agent_with_home(&env, &server, &secrets);
    cmd.args(["sandbox", "check", "--output", "json"]);
    let out = run(cmd, Duration::from_secs(30));
    out.assert_success();
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["support"]["landlock_abi"], json!(landlock_abi()));
    assert_eq!(report["chosen_mode"], "workspace-write");
    let modes = report["modes"].as_array().unwrap();
    assert!(modes.iter().all(|m| m["enforceable"] == true), "{report}");
    let write: Vec<&str> = modes[0]["write"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    let workspace = env.workspace.path().canonicalize().unwrap();
    assert!(write.contains(&workspace.to_str().unwrap()), "{report}");
    let home = secrets.home.path().canonicalize().unwrap();
    let everything = report.to_string();
    assert!(
        !modes[0]["read"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .is_some_and(|p| Path::new(p) == home || home.starts_with(p) && p != "/")),
        "{everything}"
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn the_mode_is_shown_in_help_and_the_repl_banner() {
    let env = TestEnv::new();
    let server = ModelServer::start(vec![]);
    let mut help = agent(&env, &server);
    help.arg("--help");
    let out = run(help, Duration::from_secs(30));
    out.assert_success();
    assert!(out.stdout.contains("--sandbox <MODE>"), "{out}");
    assert!(out.stdout.contains("workspace-write"), "{out}");
    assert!(out.stdout.contains("--network"), "{out}");
    // Without -p the REPL starts, shows its banner, and ends at the end of its input.
    for (flags, shown) in [
        (
            &[][..],
            "sandbox of bash and background tasks: workspace-write, network off",
        ),
        (
            &["--sandbox", "read-only", "--network"][..],
            "read-only, network on",
        ),
    ] {
        let mut repl = agent(&env, &server);
        repl.args(flags);
        let out = run(repl, Duration::from_secs(30));
        out.assert_success();
        if landlock_abi() >= 1 {
            assert!(out.stderr.contains(shown), "{out}");
        }
    }
}
