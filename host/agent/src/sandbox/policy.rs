//! What a sandboxed command may read and write, as a list of path grants: the system, the
//! workspace, the private temporary directory, the toolchains (every directory on `PATH`
//! with its installation prefix, and the configured toolchain directories and caches), a few
//! devices. Pure path logic; [`super::linux`] turns it into kernel rules.
//!
//! Two rules keep secrets out even where a grant is broad:
//! - no grant may contain a protected directory (the home directory itself, `~/.ssh`,
//!   `~/.aws`, `~/.config`, `~/.local/share`, the agent's own state, cache and config
//!   directories, the shared temporary directory, `/`): a `PATH` prefix that would is
//!   narrowed to the `PATH` directory itself, anything else is left out;
//! - a granted directory holding a secret-looking entry (`shadow`, `credentials.toml`,
//!   `ssh_host_*_key`, `.netrc`, ...) is granted entry by entry without it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::settings::{Mode, Settings};

/// What a grant allows beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read files, list directories, execute.
    Read,
    /// Everything: also create, write, truncate, rename and remove.
    Write,
}

/// One path a command may reach, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub path: PathBuf,
    pub access: Access,
    pub why: &'static str,
}

/// A path the policy would have granted but did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub path: PathBuf,
    pub reason: String,
}

/// The resolved policy of one mode in one workspace.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub mode: Mode,
    pub network: bool,
    pub grants: Vec<Grant>,
    pub left_out: Vec<LeftOut>,
    /// Things the user should know (a workspace that contains the home directory, ...).
    pub warnings: Vec<String>,
}

/// System directories commands read.
const SYSTEM_READ: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sys", "/opt", "/etc",
];

/// Device files commands use; read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/shm",
];

/// Directories under the home directory that no grant may contain.
const PROTECTED_IN_HOME: &[&str] = &[
    ".ssh",
    ".aws",
    ".gnupg",
    ".config",
    ".local/share",
    ".local/state",
    ".kube",
    ".docker",
    ".azure",
    ".mozilla",
    ".netrc",
    ".git-credentials",
];

/// How deep /etc is searched for secret-looking entries (`/etc/ssl/private`).
const SYSTEM_SECRET_DEPTH: usize = 2;
/// How deep other granted directories are (`~/.cargo/credentials.toml`).
const SECRET_SEARCH_DEPTH: usize = 1;

/// Whether a directory entry looks like a secret that a granted directory must not expose.
fn secret_like(name: &str) -> bool {
    matches!(
        name,
        "shadow"
            | "shadow-"
            | "gshadow"
            | "gshadow-"
            | "private"
            | "credentials"
            | "credentials.toml"
            | ".credentials.json"
            | ".netrc"
            | ".npmrc"
            | ".pypirc"
            | ".git-credentials"
            | ".ssh"
            | ".gnupg"
            | ".aws"
    ) || (name.starts_with("ssh_host_") && name.ends_with("_key"))
}

/// Builds the policy of `settings.mode` for `workspace`, with `temp_dir` as the private
/// temporary directory and `agent_dirs` (state, cache, config) kept out.
pub fn build(
    settings: &Settings,
    workspace: &Path,
    temp_dir: &Path,
    agent_dirs: &[PathBuf],
) -> Policy {
    let env = &settings.environment;
    let mut protected: Vec<PathBuf> = vec![PathBuf::from("/"), env.temp_root.clone()];
    if let Some(home) = &env.home {
        protected.push(home.clone());
        protected.extend(PROTECTED_IN_HOME.iter().map(|rel| home.join(rel)));
    }
    protected.extend(agent_dirs.iter().cloned());
    let protected: Vec<PathBuf> = protected.iter().map(|p| canonical_or_same(p)).collect();

    let mut builder = Builder {
        protected,
        grants: Vec::new(),
        left_out: Vec::new(),
        seen: HashSet::new(),
    };
    let mut warnings = Vec::new();
    let writes = settings.mode == Mode::WorkspaceWrite;

    for dir in SYSTEM_READ {
        // Only /etc is searched for secrets (shadow, host keys, TLS private keys); the
        // others are large and hold none.
        let depth = if *dir == "/etc" {
            SYSTEM_SECRET_DEPTH
        } else {
            0
        };
        builder.system(Path::new(dir), Access::Read, "system", depth);
    }
    for device in DEVICES {
        builder.system(Path::new(device), Access::Write, "device", 0);
    }
    let workspace_access = if writes { Access::Write } else { Access::Read };
    builder.push(workspace, workspace_access, "workspace");
    if let Some(p) = builder.protected.iter().find(|p| p.starts_with(workspace)) {
        warnings.push(format!(
            "the workspace {} contains {}, which commands can therefore reach",
            workspace.display(),
            p.display()
        ));
    }
    builder.push(temp_dir, Access::Write, "private temporary directory");

    for dir in &env.path {
        builder.path_entry(dir);
    }
    for dir in env.toolchain_homes.iter().chain(&settings.toolchains) {
        builder.checked(dir, Access::Read, "toolchain");
    }
    for dir in &settings.read {
        builder.checked(dir, Access::Read, "configured read");
    }
    if writes {
        let cargo_caches = env
            .cargo_home
            .iter()
            .flat_map(|home| [home.join("registry"), home.join("git")]);
        for dir in cargo_caches.chain(settings.caches.iter().cloned()) {
            builder.checked(&dir, Access::Write, "toolchain cache");
        }
    }
    let extra_write = if writes { Access::Write } else { Access::Read };
    for dir in &settings.write {
        builder.checked(dir, extra_write, "configured write");
    }
    let mut grants = builder.grants;
    // A grant beneath another that already gives as much adds nothing (PATH order can put
    // ~/.pyenv/plugins/x before ~/.pyenv).
    let all = grants.clone();
    grants.retain(|g| {
        !all.iter().any(|other| {
            other.path != g.path && other.access >= g.access && g.path.starts_with(&other.path)
        })
    });
    Policy {
        mode: settings.mode,
        network: settings.network,
        grants,
        left_out: builder.left_out,
        warnings,
    }
}

struct Builder {
    protected: Vec<PathBuf>,
    grants: Vec<Grant>,
    left_out: Vec<LeftOut>,
    seen: HashSet<(PathBuf, Access)>,
}

impl Builder {
    /// A system path: skipped quietly when absent, searched `depth` levels for secrets.
    fn system(&mut self, path: &Path, access: Access, why: &'static str, depth: usize) {
        if let Ok(canonical) = path.canonicalize() {
            self.without_secrets(&canonical, access, why, depth);
        }
    }

    /// A path granted as it is (the workspace, the temporary directory).
    fn push(&mut self, path: &Path, access: Access, why: &'static str) {
        let path = canonical_or_same(path);
        if self.seen.insert((path.clone(), access)) {
            self.grants.push(Grant { path, access, why });
        }
    }

    /// A directory on `PATH`: its installation prefix (the parent of a `bin`, `sbin` or
    /// `shims` directory) when that contains nothing protected, else the directory itself.
    fn path_entry(&mut self, dir: &Path) {
        if !dir.is_absolute() {
            self.leave_out(dir, "a relative PATH entry".into());
            return;
        }
        let Ok(dir) = dir.canonicalize() else {
            return;
        };
        let is_bin = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| matches!(n, "bin" | "sbin" | "shims"));
        let prefix = dir.parent().filter(|_| is_bin).map(Path::to_path_buf);
        if let Some(prefix) = prefix
            && self.protected_inside(&prefix).is_none()
        {
            self.without_secrets(&prefix, Access::Read, "PATH prefix", SECRET_SEARCH_DEPTH);
            return;
        }
        self.checked(&dir, Access::Read, "PATH");
    }

    /// A grant that may not contain a protected directory; absent paths are noted.
    fn checked(&mut self, path: &Path, access: Access, why: &'static str) {
        let Ok(canonical) = path.canonicalize() else {
            self.leave_out(path, "not found".into());
            return;
        };
        if let Some(p) = self.protected_inside(&canonical) {
            let reason = format!("it contains {}", p.display());
            self.leave_out(path, reason);
            return;
        }
        self.without_secrets(&canonical, access, why, SECRET_SEARCH_DEPTH);
    }

    /// Grants `path`, or, when a directory within `depth` levels holds a secret-looking
    /// entry, each of its other entries instead.
    fn without_secrets(&mut self, path: &Path, access: Access, why: &'static str, depth: usize) {
        if self.seen.contains(&(path.to_path_buf(), access)) || self.covered(path, access) {
            return;
        }
        if depth > 0 && path.is_dir() && holds_secret(path, depth) {
            let Ok(entries) = std::fs::read_dir(path) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let child = entry.path();
                if secret_like(&name.to_string_lossy()) {
                    self.leave_out(&child, "looks like a secret".into());
                } else if let Ok(canonical) = child.canonicalize() {
                    // A symlink is granted at its target, as the kernel sees it, unless
                    // that target holds something protected.
                    if self.protected_inside(&canonical).is_none() {
                        self.without_secrets(&canonical, access, why, depth - 1);
                    }
                }
            }
            return;
        }
        if self.seen.insert((path.to_path_buf(), access)) {
            self.grants.push(Grant {
                path: path.to_path_buf(),
                access,
                why,
            });
        }
    }

    /// Whether an earlier grant beneath which `path` lies already gives `access`.
    fn covered(&self, path: &Path, access: Access) -> bool {
        self.grants
            .iter()
            .any(|g| g.access >= access && path.starts_with(&g.path))
    }

    fn protected_inside(&self, path: &Path) -> Option<&PathBuf> {
        self.protected.iter().find(|p| p.starts_with(path))
    }

    fn leave_out(&mut self, path: &Path, reason: String) {
        let path = path.to_path_buf();
        if !self.left_out.iter().any(|l| l.path == path) {
            self.left_out.push(LeftOut { path, reason });
        }
    }
}

/// Whether a secret-looking entry lies within `depth` levels below `dir`.
fn holds_secret(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        secret_like(&entry.file_name().to_string_lossy())
            || (depth > 1
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && holds_secret(&entry.path(), depth - 1))
    })
}

fn canonical_or_same(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::settings::{Environment, FlagSettings};

    fn settings(home: &Path, path: Vec<PathBuf>, mode: Mode) -> Settings {
        let environment = Environment {
            home: Some(home.to_path_buf()),
            path,
            temp_root: std::env::temp_dir(),
            ..Environment::default()
        };
        let flags = FlagSettings {
            mode: Some(mode),
            ..FlagSettings::default()
        };
        Settings::resolve(
            flags,
            &crate::config_file::ConfigFile::default(),
            environment,
        )
        .unwrap()
    }

    fn granted(policy: &Policy, path: &Path) -> Option<Access> {
        let path = path.canonicalize().unwrap();
        policy
            .grants
            .iter()
            .filter(|g| path.starts_with(&g.path))
            .map(|g| g.access)
            .max()
    }

    #[test]
    fn path_prefixes_are_granted_but_never_the_home_or_its_secrets() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        for dir in [
            ".pyenv/shims",
            ".pyenv/versions",
            ".cargo/bin",
            ".cargo/registry",
            ".local/bin",
            ".ssh",
            "bin",
        ] {
            std::fs::create_dir_all(h.join(dir)).unwrap();
        }
        std::fs::write(h.join(".cargo/credentials.toml"), "token").unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let path = vec![
            h.join(".pyenv/shims"),
            h.join(".local/bin"),
            h.join("bin"),
            PathBuf::from("relative"),
        ];
        let policy = build(
            &settings(h, path, Mode::WorkspaceWrite),
            workspace.path(),
            temp.path(),
            &[],
        );
        assert_eq!(
            granted(&policy, &h.join(".pyenv/versions")),
            Some(Access::Read)
        );
        assert_eq!(granted(&policy, &h.join(".cargo/bin")), Some(Access::Read));
        assert_eq!(
            granted(&policy, &h.join(".cargo/registry")),
            Some(Access::Write)
        );
        assert_eq!(granted(&policy, &h.join(".cargo/credentials.toml")), None);
        // ~/.local would hold ~/.local/share; ~/bin's parent is the home itself.
        assert_eq!(granted(&policy, &h.join(".local/bin")), Some(Access::Read));
        assert_eq!(granted(&policy, &h.join(".local")), None);
        assert_eq!(granted(&policy, &h.join("bin")), Some(Access::Read));
        assert_eq!(granted(&policy, h), None);
        assert_eq!(granted(&policy, &h.join(".ssh")), None);
        assert_eq!(granted(&policy, workspace.path()), Some(Access::Write));
        assert_eq!(granted(&policy, temp.path()), Some(Access::Write));
        assert_eq!(granted(&policy, Path::new("/usr/bin")), Some(Access::Read));
        assert_eq!(granted(&policy, Path::new("/tmp")), None);
    }

    #[test]
    fn read_only_writes_only_the_temporary_directory() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".cargo/registry")).unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let policy = build(
            &settings(home.path(), vec![], Mode::ReadOnly),
            workspace.path(),
            temp.path(),
            &[],
        );
        let writable: Vec<&Grant> = policy
            .grants
            .iter()
            .filter(|g| g.access == Access::Write && g.why != "device")
            .collect();
        assert_eq!(writable.len(), 1, "{writable:?}");
        assert_eq!(writable[0].path, temp.path().canonicalize().unwrap());
        assert_eq!(granted(&policy, workspace.path()), Some(Access::Read));
    }

    #[test]
    fn agent_directories_are_never_granted() {
        let home = tempfile::tempdir().unwrap();
        let tools = home.path().join("tools");
        let state = tools.join("agent-state");
        std::fs::create_dir_all(&state).unwrap();
        let mut s = settings(home.path(), vec![], Mode::WorkspaceWrite);
        s.read.push(tools.clone());
        let workspace = tempfile::tempdir().unwrap();
        let temp = tempfile::tempdir().unwrap();
        let policy = build(
            &s,
            workspace.path(),
            temp.path(),
            std::slice::from_ref(&state),
        );
        assert_eq!(granted(&policy, &state), None);
        assert!(
            policy.left_out.iter().any(|l| l.path == tools),
            "{policy:?}"
        );
    }
}
