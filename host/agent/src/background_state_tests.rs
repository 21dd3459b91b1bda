//! Unit tests of the background task table.

use super::*;

fn log() -> std::fs::File {
    tempfile::tempfile().unwrap()
}

fn start(state: &mut State, command: &str) -> (u64, Vec<Launch>) {
    let key = state.reserve_key().unwrap();
    let launches = state.enqueue(
        key,
        command,
        Duration::from_secs(9),
        Confinement::Unsandboxed,
        "x.log".into(),
        log(),
        Extras::default(),
    );
    (key, launches)
}

fn keys(launches: &[Launch]) -> Vec<u64> {
    launches.iter().map(|l| l.key).collect()
}

#[test]
fn slots_go_to_queued_tasks_in_start_order() {
    let mut state = State::new(2, 10);
    assert_eq!(keys(&start(&mut state, "a").1), [1]);
    assert_eq!(keys(&start(&mut state, "b").1), [2]);
    assert!(start(&mut state, "c").1.is_empty());
    assert!(start(&mut state, "d").1.is_empty());
    let statuses: Vec<_> = state.list().iter().map(|t| t.status).collect();
    use TaskStatus::*;
    assert_eq!(statuses, [Running, Running, Queued, Queued]);
    // The second finishes first: the oldest queued task gets its slot.
    let (_, next) = state.finish(2, Completed, None, None).unwrap();
    assert_eq!(keys(&next), [3]);
    let (_, next) = state.finish(1, Failed, None, None).unwrap();
    assert_eq!(keys(&next), [4]);
    assert!(
        state.finish(1, Failed, None, None).is_none(),
        "one end per task"
    );
}

#[test]
fn a_kill_while_queued_ends_the_task_and_keeps_the_line_moving() {
    let mut state = State::new(1, 10);
    start(&mut state, "a");
    start(&mut state, "b");
    start(&mut state, "c");
    let Some(Killed::Dequeued(n)) = state.kill(2) else {
        panic!("a queued task ends at once");
    };
    assert_eq!(
        (n.status, n.note),
        (TaskStatus::Killed, Some(TaskNote::KilledWhileQueued))
    );
    assert!(matches!(state.kill(1), Some(Killed::Signalled)));
    let (_, next) = state.finish(1, TaskStatus::Killed, None, None).unwrap();
    assert_eq!(keys(&next), [3], "the killed queued task never starts");
    assert!(matches!(
        state.kill(2),
        Some(Killed::AlreadyEnded(TaskStatus::Killed))
    ));
    assert_eq!(state.drain_notifications().len(), 2);
    assert!(
        state.drain_notifications().is_empty(),
        "each is drained once"
    );
}

#[test]
fn the_session_cap_refuses_more_tasks() {
    let mut state = State::new(1, 2);
    assert!(state.reserve_key().is_some());
    assert!(state.reserve_key().is_some());
    assert!(state.reserve_key().is_none());
}

#[test]
fn closing_ends_queued_tasks_and_starts_nothing() {
    let mut state = State::new(1, 10);
    start(&mut state, "a");
    start(&mut state, "b");
    assert_eq!(state.close().len(), 1);
    let (_, next) = state.finish(1, TaskStatus::Killed, None, None).unwrap();
    assert!(next.is_empty());
    assert!(!state.list().iter().any(|t| !t.status.is_finished()));
}

#[test]
fn a_delivered_task_keeps_only_its_summary() {
    let mut state = State::new(1, 10);
    let (key, launches) = start(&mut state, "a");
    launches[0].output.lock().unwrap().push(&vec![b'x'; 40_000]);
    state.finish(key, TaskStatus::Completed, None, None);
    state.drain_notifications();
    let info = state.info(key).unwrap();
    assert_eq!(info.output_bytes, 40_000);
    assert!(
        info.output.len() <= NOTIFICATION_OUTPUT_LIMIT + 100,
        "{}",
        info.output.len()
    );
}
