use super::*;

fn manager(max_running: usize, logs: &std::path::Path) -> BackgroundManager {
    BackgroundManager::new(BackgroundConfig {
        workspace: std::env::temp_dir(),
        log_dir: logs.to_path_buf(),
        max_running,
        max_tasks: 10,
        sandbox: Arc::new(crate::sandbox::Sandbox::off()),
    })
}

#[tokio::test]
async fn queued_tasks_start_in_order_and_a_kill_while_queued_skips_one() {
    let logs = tempfile::tempdir().unwrap();
    let manager = manager(1, logs.path());
    let mut finished = manager.subscribe();
    for word in ["one", "two", "three"] {
        manager
            .start(
                &format!("echo {word}"),
                Duration::from_secs(30),
                Confinement::Unsandboxed,
            )
            .unwrap();
    }
    assert_eq!(manager.kill("bg-2").unwrap(), TaskStatus::Queued);
    let mut order = Vec::new();
    for _ in 0..3 {
        let n = finished.recv().await.unwrap();
        order.push((n.task_id, n.status, n.output.trim().to_string()));
    }
    let completed = |id: &str, out: &str| (id.to_string(), TaskStatus::Completed, out.into());
    assert_eq!(
        order,
        [
            ("bg-2".to_string(), TaskStatus::Killed, String::new()),
            completed("bg-1", "one"),
            completed("bg-3", "three"),
        ]
    );
    assert_eq!(manager.drain_notifications().len(), 3);
    assert!(!manager.has_pending());
    assert!(matches!(
        manager.kill("bg-9"),
        Err(BackgroundError::UnknownTask(_))
    ));
}

#[tokio::test]
async fn a_session_may_start_only_max_tasks() {
    let logs = tempfile::tempdir().unwrap();
    let manager = BackgroundManager::new(BackgroundConfig {
        max_tasks: 1,
        ..manager(1, logs.path()).shared.config.clone()
    });
    manager
        .start("true", Duration::from_secs(30), Confinement::Unsandboxed)
        .unwrap();
    assert!(matches!(
        manager.start("true", Duration::from_secs(30), Confinement::Unsandboxed),
        Err(BackgroundError::TooManyTasks { limit: 1 })
    ));
}
