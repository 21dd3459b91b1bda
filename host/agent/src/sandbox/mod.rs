//! The OS sandbox of native commands (`bash` and background tasks).
//!
//! [`settings`] says which mode the user chose (`workspace-write`, `read-only`, `off`) and
//! whether commands get the network; [`policy`] turns that into path grants for this
//! workspace; the platform module enforces them in the kernel (`linux`: Landlock, seccomp,
//! `no_new_privs`; elsewhere nothing is enforceable yet, so sandboxed commands are refused).
//! [`Sandbox`] is the sandbox of one run: its private temporary directory (`TMPDIR` of every
//! command, removed at exit) and the prepared enforcement that [`crate::process`] applies
//! to each child. [`Confinement`] is the per-call choice: sandboxed, or (once approved)
//! not. [`check`] is `agent sandbox check`.

pub mod check;
pub mod policy;
mod report;
pub mod settings;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;
// The seam for macOS (Seatbelt) and other systems: nothing is enforced there yet.
#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as platform;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use platform::{EnforceError, Enforcement, support};
pub use policy::{Access, Grant, LeftOut, Policy};
pub use report::{Enforced, Support};
pub use settings::{Environment, FlagSettings, Mode, Settings, SettingsError};

/// How one command runs: in the run's sandbox, or (approved by the user) outside it.
#[derive(Clone)]
pub enum Confinement {
    Sandboxed(Arc<Sandbox>),
    Unsandboxed,
}

/// The sandbox of one run.
#[derive(Debug)]
pub struct Sandbox {
    mode: Mode,
    network: bool,
    /// The private temporary directory (not in `off` mode).
    temp_dir: Option<PathBuf>,
    policy: Option<Policy>,
    /// `None` in `off` mode.
    enforcement: Option<Result<Enforcement, EnforceError>>,
}

/// Owns the private temporary directory; dropping it removes the directory and all in it.
pub struct TempDirGuard(#[allow(dead_code)] Option<tempfile::TempDir>);

impl Sandbox {
    /// The sandbox of a run in `workspace`: makes the private temporary directory (0700)
    /// and prepares the kernel rules. A mode the kernel cannot enforce is not an error here:
    /// every sandboxed command is then refused with the reason.
    pub fn new(
        settings: &Settings,
        workspace: &Path,
        agent_dirs: &[PathBuf],
    ) -> std::io::Result<(Arc<Sandbox>, TempDirGuard)> {
        if settings.mode == Mode::Off {
            return Ok((Arc::new(Sandbox::off()), TempDirGuard(None)));
        }
        // tempfile makes the directory 0700 with an unpredictable name.
        let temp = tempfile::Builder::new()
            .prefix("agent-commands-")
            .tempdir_in(&settings.environment.temp_root)?;
        let policy = policy::build(settings, workspace, temp.path(), agent_dirs);
        let enforcement = Enforcement::prepare(&policy);
        let sandbox = Sandbox {
            mode: settings.mode,
            network: settings.network,
            temp_dir: Some(temp.path().to_path_buf()),
            policy: Some(policy),
            enforcement: Some(enforcement),
        };
        Ok((Arc::new(sandbox), TempDirGuard(Some(temp))))
    }

    /// No sandbox: commands run with the user's rights (`--sandbox off`, and tests of
    /// other things).
    pub fn off() -> Sandbox {
        Sandbox {
            mode: Mode::Off,
            network: true,
            temp_dir: None,
            policy: None,
            enforcement: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether a sandboxed command may listen on (and connect to) TCP: the network is on,
    /// or the sandbox is off.
    pub fn lets_listen(&self) -> bool {
        self.network || self.mode == Mode::Off
    }

    /// `workspace-write, network off`, for the banner and notes.
    pub fn describe(&self) -> String {
        match self.mode {
            Mode::Off => "off (commands run with all your rights)".into(),
            mode => format!(
                "{}, network {}",
                mode.name(),
                if self.network { "on" } else { "off" }
            ),
        }
    }

    /// The private temporary directory commands get as `TMPDIR`.
    pub fn temp_dir(&self) -> Option<&Path> {
        self.temp_dir.as_deref()
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Why the mode cannot be enforced here, if it cannot.
    pub fn unenforceable(&self) -> Option<&EnforceError> {
        self.enforcement.as_ref().and_then(|e| e.as_ref().err())
    }

    /// What the kernel enforces on each command, when anything.
    pub fn enforced(&self) -> Option<&Enforced> {
        self.enforcement
            .as_ref()
            .and_then(|e| e.as_ref().ok())
            .map(|e| &e.enforced)
    }

    /// What the user should hear at start-up: `off` mode, a mode the kernel cannot
    /// enforce, a workspace that contains protected directories.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.mode == Mode::Off {
            warnings.push(
                "the sandbox is off (--sandbox off): bash and background tasks run with all your rights, on every file and the network"
                    .to_string(),
            );
        }
        if let Some(error) = self.unenforceable() {
            warnings.push(format!(
                "the {} sandbox cannot be enforced on this machine ({error}): bash and background tasks will be refused; `agent sandbox check` says more, and --sandbox off runs them unsandboxed",
                self.mode.name()
            ));
        }
        if let Some(policy) = &self.policy {
            warnings.extend(policy.warnings.iter().cloned());
        }
        warnings
    }

    /// Checks, before forking, that a sandboxed command can start: the refusal otherwise.
    pub fn ready(&self) -> std::io::Result<()> {
        match self.unenforceable() {
            None => Ok(()),
            Some(error) => Err(std::io::Error::other(format!(
                "refused: the {} sandbox cannot be enforced on this machine ({error}); the command was not run. `agent sandbox check` says what this machine supports; the user may choose --sandbox off",
                self.mode.name()
            ))),
        }
    }

    /// Confines the calling process.
    ///
    /// # Safety
    /// Only in a forked child before `exec`, after [`Sandbox::ready`] succeeded in the
    /// parent: it makes raw system calls only.
    pub unsafe fn apply_in_child(&self) -> std::io::Result<()> {
        match &self.enforcement {
            None => Ok(()),
            // SAFETY: the caller's promise.
            Some(Ok(enforcement)) => unsafe { enforcement.apply() },
            // Never reached after `ready`; refuse rather than run unconfined.
            Some(Err(_)) => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
        }
    }

    /// A note for the result of a command that failed in a way the sandbox may have caused
    /// (its output mentions a refused access), so the model can tell the user or ask for
    /// approval instead of guessing. A heuristic: the kernel does not say who refused.
    pub fn refusal_note(&self, failed: bool, output: &str) -> Option<String> {
        const SIGNS: &[&str] = &[
            "Permission denied",
            "Operation not permitted",
            "Network is unreachable",
            "Address family not supported",
            "Read-only file system",
            "EACCES",
            "EPERM",
            "PermissionError",
        ];
        if !failed || self.mode == Mode::Off || !SIGNS.iter().any(|s| output.contains(s)) {
            return None;
        }
        let network = if self.network {
            ""
        } else {
            " and the network (only Unix sockets)"
        };
        let refused = match self.mode {
            Mode::ReadOnly => format!(
                "reads outside the system, the workspace and the toolchains, every write outside the private temporary directory{network}"
            ),
            _ => format!(
                "reads outside the system, the workspace and the toolchains, writes outside the workspace, the private temporary directory and the toolchain caches{network}"
            ),
        };
        Some(format!(
            "[sandbox: {}; {refused} are refused — if this failure is the sandbox, the command can ask to run outside it with sandbox:\"off\" and a reason, which the user must approve]",
            self.mode.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_note_only_for_failures_that_look_like_the_sandbox() {
        let sandbox = Sandbox {
            mode: Mode::WorkspaceWrite,
            network: false,
            temp_dir: None,
            policy: None,
            enforcement: None,
        };
        let note = sandbox
            .refusal_note(true, "cat: /root/.ssh/id_rsa: Permission denied")
            .unwrap();
        assert!(note.starts_with("[sandbox: workspace-write;"), "{note}");
        assert!(note.contains("network"), "{note}");
        assert!(sandbox.refusal_note(false, "Permission denied").is_none());
        assert!(sandbox.refusal_note(true, "error: no such file").is_none());
        assert!(
            Sandbox::off()
                .refusal_note(true, "Permission denied")
                .is_none()
        );
    }
}
