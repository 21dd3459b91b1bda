//! Finding third-party plugin files: `*.wasm` in the plugin directories, plus files named
//! on the command line.
//!
//! Discovery only lists paths; it never reads a component. A directory that does not exist
//! is normal (most users have none); one that cannot be read, or a `--plugin` path that is
//! not a file, is a problem reported by name, and the rest are still found.

use std::path::{Path, PathBuf};

/// Where a plugin file was found; also the order in which plugins load, so a plugin in an
/// earlier place keeps a tool name that a later one also offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The user's plugin directory (`$XDG_CONFIG_HOME/agent/plugins`).
    User,
    /// The workspace's `.agent/plugins`.
    Workspace,
    /// `--plugin PATH`.
    CommandLine,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::Workspace => "workspace",
            Origin::CommandLine => "--plugin",
        }
    }
}

/// One plugin file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Lists the plugins in `dirs` (each with its origin; sorted by file name within a
/// directory) and then `files`. The same file reached twice is listed once.
pub fn discover(dirs: &[(PathBuf, Origin)], files: &[PathBuf]) -> (Vec<Found>, Vec<String>) {
    let mut found: Vec<Found> = Vec::new();
    let mut problems = Vec::new();
    for (dir, origin) in dirs {
        match wasm_files_in(dir) {
            Ok(paths) => found.extend(paths.into_iter().map(|path| Found {
                path,
                origin: *origin,
            })),
            Err(problem) => problems.push(problem),
        }
    }
    for file in files {
        if file.is_file() {
            found.push(Found {
                path: file.clone(),
                origin: Origin::CommandLine,
            });
        } else {
            problems.push(format!(
                "--plugin {}: no such file; the plugin is skipped",
                file.display()
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert(f.path.canonicalize().unwrap_or_else(|_| f.path.clone())));
    (found, problems)
}

/// Where `file` is as discovery would find it: a file directly in one of `dirs` is that
/// directory's plugin (named by the directory's path, as [`discover`] names it, whatever
/// path led to it), anything else is a `--plugin` file. `plugins inspect|check|trust FILE`
/// use this so that they see the grants a run would give.
pub fn locate(dirs: &[(PathBuf, Origin)], file: &Path) -> Found {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let (Ok(parent), Some(name)) = (parent.canonicalize(), file.file_name()) {
        for (dir, origin) in dirs {
            if dir.canonicalize().is_ok_and(|dir| dir == parent) {
                return Found {
                    path: dir.join(name),
                    origin: *origin,
                };
            }
        }
    }
    Found {
        path: file.to_path_buf(),
        origin: Origin::CommandLine,
    }
}

fn wasm_files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(format!(
                "cannot read the plugin directory {}: {e}",
                dir.display()
            ));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_files_in_order_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.wasm", "a.wasm", "a.toml", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let extra = dir.path().join("a.wasm");
        let missing = dir.path().join("missing.wasm");
        let (found, problems) = discover(
            &[
                (dir.path().to_path_buf(), Origin::Workspace),
                (dir.path().join("absent"), Origin::User),
            ],
            &[extra, missing],
        );
        let names: Vec<_> = found
            .iter()
            .map(|f| f.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.wasm", "b.wasm"], "a.wasm twice is listed once");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("missing.wasm"), "{problems:?}");
    }

    #[test]
    fn a_file_in_a_plugin_directory_is_located_there_by_any_path() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("ws/.agent/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::write(plugins.join("p.wasm"), b"").unwrap();
        std::os::unix::fs::symlink(&plugins, dir.path().join("link")).unwrap();
        let dirs = [(plugins.clone(), Origin::Workspace)];
        let found = locate(&dirs, &dir.path().join("link/p.wasm"));
        assert_eq!(found.origin, Origin::Workspace);
        assert_eq!(found.path, plugins.join("p.wasm"));
        let elsewhere = dir.path().join("p.wasm");
        assert_eq!(locate(&dirs, &elsewhere).origin, Origin::CommandLine);
    }
}
