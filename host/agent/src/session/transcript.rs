//! Writing a transcript: the [`Recorder`] the agent and the BackgroundManager call as
//! things happen.
//!
//! Each record is serialized whole, then written with one `write_all` of one line on a
//! file opened for appending, so a crash (even SIGKILL) loses at most the line being
//! written; the kernel has every earlier line. No fsync: what is guarded against is the
//! agent dying, not the machine. The file holds an exclusive advisory lock for as long as
//! the session is open, so two agents never interleave lines in one transcript.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agent_plugin_runtime::private_fs;

use super::clock::{self, Utc};
use super::{FORMAT_VERSION, Header, Record, SessionError};
use crate::background::{Notification, TaskObserver};
use crate::background_task::Readiness;

/// Appends records to one session's transcript; cheap to clone (clones share the file).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    path: PathBuf,
    file: Mutex<File>,
    /// Records written after the header by this run.
    written: AtomicUsize,
    /// Whether this run created the file (an unused new session is removed at the end).
    created: bool,
    /// Set at the first failed write, so the user is warned once.
    failed: AtomicBool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Recorder {
    /// Starts a new session in `dir` (made private if it is not): a new file with a new
    /// id, created exclusively, locked, with its header written.
    pub fn create(
        dir: &Path,
        workspace: &Path,
        provider: &str,
        model: &str,
    ) -> Result<Recorder, SessionError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SessionError::Io { path, source }
        };
        private_fs::ensure_private_dir(dir).map_err(io(dir))?;
        let started = Utc::now();
        let mut attempts = 0;
        let (id, path, file) = loop {
            let id = clock::new_id(started);
            let path = dir.join(format!("{id}.jsonl"));
            match private_fs::create_new_private_file(&path) {
                Ok(file) => break (id, path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(io(&path)(e)),
            }
        };
        lock(&file, &id)?;
        let recorder = Recorder::new(id.clone(), path, file, true);
        let header = Header {
            version: FORMAT_VERSION,
            id,
            workspace: workspace.to_path_buf(),
            started: started.rfc3339(),
            provider: provider.to_string(),
            model: model.to_string(),
        };
        recorder
            .write_line(&Record::Session(header))
            .map_err(io(&recorder.inner.path))?;
        Ok(recorder)
    }

    /// Opens the transcript at `path` to continue session `id`: appended to, locked, and
    /// marked with a `resumed` record.
    pub fn reopen(path: &Path, id: &str) -> Result<Recorder, SessionError> {
        let io = |source| SessionError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = private_fs::append_private_file(path).map_err(io)?;
        lock(&file, id)?;
        if !ends_with_newline(path) {
            // A line torn by a crash: end it, so the next record starts a line of its own
            // (the torn one is then skipped as unreadable).
            file.write_all(b"\n").map_err(io)?;
        }
        let recorder = Recorder::new(id.to_string(), path.to_path_buf(), file, false);
        recorder
            .write_line(&Record::Resumed {
                at: Utc::now().rfc3339(),
            })
            .map_err(io)?;
        Ok(recorder)
    }

    fn new(id: String, path: PathBuf, file: File, created: bool) -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                id,
                path,
                file: Mutex::new(file),
                written: AtomicUsize::new(0),
                created,
                failed: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes one record. Returns a warning to show the first time writing fails (a full
    /// disk, say); the conversation goes on either way, unrecorded from there.
    pub fn write(&self, record: &Record<'_>) -> Option<String> {
        match self.write_line(record) {
            Ok(()) => {
                self.inner.written.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) if !self.inner.failed.swap(true, Ordering::Relaxed) => Some(format!(
                "cannot write the session transcript {}: {e}; the conversation goes on, but it cannot be resumed past this point",
                self.inner.path.display()
            )),
            Err(_) => None,
        }
    }

    fn write_line(&self, record: &Record<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self
            .inner
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // One write of the whole line: an O_APPEND write to a regular file is not split.
        file.write_all(&line)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A session that never got a record (the REPL opened and closed) leaves nothing
        // to list or continue.
        if self.created && self.written.load(Ordering::Relaxed) == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the file is empty or its last byte is a newline.
fn ends_with_newline(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(file) = File::open(path) else {
        return true;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut last = [b'\n'];
    len == 0 || (file.read_at(&mut last, len - 1).is_ok() && last[0] == b'\n')
}

fn lock(file: &File, id: &str) -> Result<(), SessionError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(SessionError::InUse(id.to_string())),
        // A file system without locks still records; only the guard is lost.
        Err(std::fs::TryLockError::Error(_)) => Ok(()),
    }
}

/// Background tasks are recorded as they start and end, so a resumed session knows what
/// ran, where its log is, and what the model never heard about.
impl TaskObserver for Recorder {
    fn started(&self, task_id: &str, command: &str, log_path: &Path) {
        // A failure here was or will be reported by the agent's next write.
        let _ = self.write(&Record::TaskStarted {
            task_id: task_id.to_string(),
            command: command.to_string(),
            log_path: log_path.to_path_buf(),
            at_ms: clock::unix_millis(),
        });
    }

    fn finished(&self, n: &Notification) {
        let _ = self.write(&Record::TaskFinished {
            task_id: n.task_id.clone(),
            status: n.status.as_str().to_string(),
            exit: n.exit.map(Into::into),
            duration_ms: n.duration.as_millis() as u64,
            output_bytes: n.output_bytes,
        });
    }
    fn ready(&self, n: &Notification) {
        if let Readiness::Ready(by) = &n.readiness {
            let _ = self.write(&Record::TaskReady {
                task_id: n.task_id.clone(),
                ready: by.to_string(),
                at_ms: clock::unix_millis(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContentBlock;
    use crate::session::UserSource;

    #[test]
    fn one_agent_at_a_time_appends_and_an_unused_new_session_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("sessions");
        let recorder = Recorder::create(&sessions, dir.path(), "p", "m").unwrap();
        let (id, path) = (recorder.id().to_string(), recorder.path().to_path_buf());
        let blocks = [ContentBlock::Text { text: "hi".into() }];
        assert!(
            recorder
                .write(&Record::User {
                    source: UserSource::Prompt,
                    blocks: (&blocks[..]).into(),
                    delivered: Default::default(),
                })
                .is_none()
        );
        assert!(matches!(
            Recorder::reopen(&path, &id),
            Err(SessionError::InUse(_))
        ));
        drop(recorder);
        // A torn last line is ended before the next record.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"type\":\"us")
            .unwrap();
        let again = Recorder::reopen(&path, &id).unwrap();
        drop(again);
        let replayed = crate::session::replay::read(&path).unwrap();
        assert_eq!((replayed.prompts, replayed.skipped), (1, 1));
        assert!(path.exists(), "a used session stays");

        let unused = Recorder::create(&sessions, dir.path(), "p", "m").unwrap();
        let unused_path = unused.path().to_path_buf();
        assert!(unused_path.exists());
        drop(unused);
        assert!(!unused_path.exists());
    }
}
