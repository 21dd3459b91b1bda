//! No process escapes its task (issue 10, item 4): daemons a command starts with `setsid`,
//! `nohup` or a double fork end when a background task ends (its shell exits, or it is
//! killed) and when the agent exits; the `bash` tool's leftovers are reported, kept until
//! the agent exits, then ended; and `--task-memory` caps a task. Each escape test runs
//! twice: with per-task cgroups (where the machine has them) and with the fallback that
//! sweeps the process table (`AGENT_TASK_CGROUPS=off`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::{
    ModelServer, Recorded, Reply, RunResult, TestEnv, agent, processes_with_marker, run, spawn,
    tool_use,
};

const LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// A number unique to one test (and this test process) to put in `sleep` arguments.
fn marker(base: u32) -> String {
    format!("{base}{:05}", std::process::id() % 100_000)
}

/// Three daemons that leave the command's reach in different ways, each `sleep {m}N`.
fn daemons(m: &str) -> String {
    format!(
        "setsid sleep {m}1 > /dev/null 2>&1 < /dev/null & \
         nohup sleep {m}2 > /dev/null 2>&1 < /dev/null & \
         ( ( sleep {m}3 > /dev/null 2>&1 < /dev/null & ) & ) ; \
         sleep 0.3; echo started"
    )
}

#[derive(Clone, Copy)]
enum Mode {
    /// Per-task cgroups where the machine has them (the default).
    Default,
    /// No cgroups: the process-table sweep.
    Sweep,
}

fn one_shot_in(mode: Mode, env: &TestEnv, server: &ModelServer, args: &[&str]) -> RunResult {
    let mut cmd = agent(env, server);
    if let Mode::Sweep = mode {
        cmd.env("AGENT_TASK_CGROUPS", "off");
    }
    cmd.args(args);
    run(cmd, LIMIT)
}

/// The processes with `marker` alive when the model was called, once recorded.
type Seen = Arc<Mutex<Option<Vec<i32>>>>;

/// A reply that records which processes with `marker` run when it is asked for, if the
/// request carries `tag` (any request when `tag` is empty).
fn record_then(seen: &Seen, marker: &str, tag: &'static str, reply: Reply) -> Reply {
    let (seen, marker) = (seen.clone(), marker.to_string());
    Reply::with(move |request: &Recorded| {
        if request.last_user_text().contains(tag) {
            *seen.lock().unwrap() = Some(processes_with_marker(&marker));
        }
        reply
    })
}

fn recorded(seen: &Seen) -> Vec<i32> {
    seen.lock()
        .unwrap()
        .clone()
        .expect("the model was called at the moment to check")
}

/// Kills what a failing test left, then asserts nothing was left.
fn assert_none_left(marker: &str, when: &str) {
    let left = processes_with_marker(marker);
    for pid in &left {
        // SAFETY: kill takes integers only; these are the test's own sleeps.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "{when}: escaped: {left:?}");
}

fn daemons_of_a_background_task_end_when_its_shell_exits(mode: Mode, base: u32) {
    let m = marker(base);
    let seen: Seen = Arc::default();
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": daemons(&m)}),
        )]),
        Reply::text("started"),
        record_then(&seen, &m, "[bg:bg-1]", Reply::text("seen")),
    ]);
    let env = TestEnv::new();
    let out = one_shot_in(mode, &env, &server, &["-p", "go"]);
    out.assert_success();
    let alive_at_notification = recorded(&seen);
    assert_none_left(&m, "after exit");
    assert!(
        alive_at_notification.is_empty(),
        "daemons outlived their finished task: {alive_at_notification:?}"
    );
    let requests = server.requests();
    let note = requests[2].last_user_text();
    assert!(
        note.contains("3 process(es)") && note.contains("ended with the task"),
        "{note}"
    );
}

#[test]
fn daemons_of_a_background_task_end_when_its_shell_exits_cgroup() {
    daemons_of_a_background_task_end_when_its_shell_exits(Mode::Default, 931);
}

#[test]
fn daemons_of_a_background_task_end_when_its_shell_exits_sweep() {
    daemons_of_a_background_task_end_when_its_shell_exits(Mode::Sweep, 932);
}

fn kill_background_ends_the_daemons_of_a_task(mode: Mode, base: u32) {
    let m = marker(base);
    let (running, left): (Seen, Seen) = Default::default();
    let command = format!("{}; sleep {m}4", daemons(&m));
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "b1",
            "background_run",
            json!({"command": command}),
        )]),
        Reply::tools(vec![tool_use("s1", "bash", json!({"command": "sleep 1"}))]),
        record_then(
            &running,
            &m,
            "",
            Reply::tools(vec![tool_use(
                "k1",
                "kill_background",
                json!({"task_id": "bg-1"}),
            )]),
        ),
        record_then(&left, &m, "[bg:bg-1] killed", Reply::text("stopping")),
        record_then(&left, &m, "[bg:bg-1] killed", Reply::text("stopped")),
    ]);
    let env = TestEnv::new();
    let out = one_shot_in(mode, &env, &server, &["-p", "go"]);
    out.assert_success();
    let (running, left) = (recorded(&running), recorded(&left));
    assert_none_left(&m, "after exit");
    assert_eq!(
        running.len(),
        4,
        "the task and its daemons ran: {running:?}"
    );
    assert!(
        left.is_empty(),
        "daemons outlived kill_background: {left:?}"
    );
}

#[test]
fn kill_background_ends_the_daemons_of_a_task_cgroup() {
    kill_background_ends_the_daemons_of_a_task(Mode::Default, 933);
}

#[test]
fn kill_background_ends_the_daemons_of_a_task_sweep() {
    kill_background_ends_the_daemons_of_a_task(Mode::Sweep, 934);
}

fn daemons_a_bash_call_leaves_are_reported_kept_and_ended_at_exit(mode: Mode, base: u32) {
    let m = marker(base);
    let seen: Seen = Arc::default();
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": daemons(&m)}),
        )]),
        record_then(&seen, &m, "", Reply::text("left running")),
    ]);
    let env = TestEnv::new();
    let out = one_shot_in(mode, &env, &server, &["-p", "go"]);
    out.assert_success();
    let kept = recorded(&seen);
    assert_none_left(&m, "after the agent exited");
    assert_eq!(kept.len(), 3, "kept running for the session: {kept:?}");
    let (_, result, _) = server.requests()[1].tool_results().remove(0);
    assert!(
        result.contains("3 process(es) it started are still running")
            && result.contains("ended when the agent exits"),
        "the model is told of every leftover, daemons included: {result}"
    );
}

#[test]
fn daemons_a_bash_call_leaves_are_reported_kept_and_ended_at_exit_cgroup() {
    daemons_a_bash_call_leaves_are_reported_kept_and_ended_at_exit(Mode::Default, 935);
}

#[test]
fn daemons_a_bash_call_leaves_are_reported_kept_and_ended_at_exit_sweep() {
    daemons_a_bash_call_leaves_are_reported_kept_and_ended_at_exit(Mode::Sweep, 936);
}

fn a_timeout_ends_the_daemons_of_a_command(mode: Mode, base: u32) {
    let m = marker(base);
    let (after_bash, after_task): (Seen, Seen) = Default::default();
    let daemon_then_wait =
        |n: u32| format!("setsid sleep {m}{n} > /dev/null 2>&1 < /dev/null & sleep {m}9{n}");
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": daemon_then_wait(1), "timeout": 1}),
        )]),
        record_then(
            &after_bash,
            &m,
            "",
            Reply::tools(vec![tool_use(
                "b1",
                "background_run",
                json!({"command": daemon_then_wait(2), "timeout": 1}),
            )]),
        ),
        Reply::text("waiting"),
        record_then(&after_task, &m, "[bg:bg-1] timed-out", Reply::text("seen")),
    ]);
    let env = TestEnv::new();
    let out = one_shot_in(mode, &env, &server, &["-p", "go"]);
    out.assert_success();
    let (after_bash, after_task) = (recorded(&after_bash), recorded(&after_task));
    assert_none_left(&m, "after exit");
    assert!(
        after_bash.is_empty(),
        "outlived the bash timeout: {after_bash:?}"
    );
    assert!(
        after_task.is_empty(),
        "outlived the task's timeout: {after_task:?}"
    );
}

#[test]
fn a_timeout_ends_the_daemons_of_a_command_cgroup() {
    a_timeout_ends_the_daemons_of_a_command(Mode::Default, 937);
}

#[test]
fn a_timeout_ends_the_daemons_of_a_command_sweep() {
    a_timeout_ends_the_daemons_of_a_command(Mode::Sweep, 938);
}

fn ctrl_c_in_the_repl_ends_the_running_bash_call_with_its_daemons(mode: Mode, base: u32) {
    let m = marker(base);
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": format!("setsid sleep {m}1 > /dev/null 2>&1 < /dev/null & sleep {m}2")}),
        )]),
        Reply::text("never mind"),
    ]);
    let env = TestEnv::new();
    let mut cmd = agent(&env, &server);
    if let Mode::Sweep = mode {
        cmd.env("AGENT_TASK_CGROUPS", "off");
    }
    cmd.stdin(std::process::Stdio::piped());
    let mut running = spawn(cmd);
    let mut stdin = running.take_stdin().expect("stdin is piped");
    std::io::Write::write_all(&mut stdin, b"start it\n").unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    while processes_with_marker(&m).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    running.signal(libc::SIGINT);
    running.wait_for_output(LIMIT, |_, err| err.contains("[interrupted]"));
    // The REPL goes on; the interrupted command's processes do not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_with_marker(&m).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left = processes_with_marker(&m);
    std::io::Write::write_all(&mut stdin, b"exit\n").unwrap();
    running.wait(LIMIT).assert_success();
    assert_none_left(&m, "after exit");
    assert!(left.is_empty(), "outlived the interrupted call: {left:?}");
}

#[test]
fn ctrl_c_in_the_repl_ends_the_running_bash_call_with_its_daemons_cgroup() {
    ctrl_c_in_the_repl_ends_the_running_bash_call_with_its_daemons(Mode::Default, 939);
}

#[test]
fn ctrl_c_in_the_repl_ends_the_running_bash_call_with_its_daemons_sweep() {
    ctrl_c_in_the_repl_ends_the_running_bash_call_with_its_daemons(Mode::Sweep, 940);
}

/// This test process's own directory in the cgroup2 hierarchy, if it may make cgroups
/// there (as the agent will try to): None on machines without that.
fn writable_cgroup2_dir() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        (after.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| fields[4])
    })?;
    let dir = Path::new(mount).join(path.trim_start_matches('/'));
    let probe = dir.join(format!("escapes-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

#[test]
fn commands_run_in_a_cgroup_of_their_own_which_is_removed_at_exit() {
    let Some(own) = writable_cgroup2_dir() else {
        eprintln!("skipped: this machine gives the tests no writable cgroup2 hierarchy");
        return;
    };
    let server = ModelServer::start(vec![
        Reply::tools(vec![tool_use(
            "s1",
            "bash",
            json!({"command": "grep '^0::' /proc/self/cgroup"}),
        )]),
        Reply::text("ok"),
    ]);
    let env = TestEnv::new();
    one_shot_in(Mode::Default, &env, &server, &["-p", "go"]).assert_success();
    let (_, result, _) = server.requests()[1].tool_results().remove(0);
    let run_dir = result
        .split('/')
        .find(|part| part.starts_with("agent-"))
        .unwrap_or_else(|| panic!("not in a per-run cgroup: {result}"));
    assert!(result.contains(&format!("/{run_dir}/task-")), "{result}");
    assert!(
        !own.join(run_dir).exists(),
        "the run's cgroup {run_dir} is left behind"
    );
}

#[test]
fn a_memory_cap_that_cannot_be_enforced_refuses_the_run() {
    let server = ModelServer::start(vec![Reply::text("should not be asked")]);
    let env = TestEnv::new();
    let out = one_shot_in(
        Mode::Sweep,
        &env,
        &server,
        &["--task-memory", "64", "-p", "go"],
    );
    assert!(!out.status.success(), "{out}");
    assert!(
        out.stderr.contains("--task-memory 64") && out.stderr.contains("cannot be capped"),
        "{out}"
    );
    assert!(server.requests().is_empty(), "nothing ran uncapped");
}

#[test]
fn a_command_over_its_memory_cap_is_killed_and_says_so() {
    let big = "head -c 600M /dev/zero | tail | wc -c";
    let small = "head -c 8M /dev/zero | tail | wc -c";
    let server = ModelServer::start(vec![
        Reply::tools(vec![
            tool_use("s1", "bash", json!({"command": big})),
            tool_use("s2", "bash", json!({"command": small})),
            tool_use("b1", "background_run", json!({"command": big})),
        ]),
        Reply::text("waiting"),
        Reply::text("seen"),
    ]);
    let env = TestEnv::new();
    let out = one_shot_in(
        Mode::Default,
        &env,
        &server,
        &["--task-memory", "64", "-p", "go"],
    );
    if !out.status.success() && out.stderr.contains("cannot be capped") {
        eprintln!(
            "skipped: this machine cannot cap a task's memory: {}",
            out.stderr
        );
        return;
    }
    out.assert_success();
    let requests = server.requests();
    let results = requests[1].tool_results();
    let capped = "memory limit of 64 MiB";
    assert!(
        results[0].1.contains(capped) && !results[0].1.contains("629145600"),
        "{:?}",
        results[0]
    );
    assert!(
        results[1].1.contains("8388608") && !results[1].1.contains(capped),
        "{:?}",
        results[1]
    );
    let at = crate::support::delivered_in(&requests, "bg-1");
    let note = requests[at[0]].last_user_text();
    assert!(note.contains(capped), "{note}");
}
