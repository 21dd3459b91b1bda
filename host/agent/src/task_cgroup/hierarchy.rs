//! The cgroup hierarchies as files: finding this process's cgroup in them
//! (`/proc/self/mountinfo`, `/proc/self/cgroup`), and making, probing, writing and removing
//! the agent's directories there. No state: [`super`] decides what to make and when.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::Leaf;

/// This process's cgroup directory: in the cgroup2 hierarchy (`controller` None) or in the
/// v1 hierarchy of `controller`. None when that hierarchy is not mounted here or the
/// cgroup lies outside what is mounted (another cgroup namespace).
pub(super) fn own_cgroup_dir(
    mountinfo: &str,
    cgroup: &str,
    controller: Option<&str>,
) -> Option<PathBuf> {
    let path = cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(name) => controllers.split(',').any(|c| c == name),
        };
        wanted.then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS... - FSTYPE SOURCE SUPER_OPTIONS`
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        let mut after = after.split(' ');
        let (fstype, super_options) = (after.next()?, after.nth(1).unwrap_or(""));
        let matches = match controller {
            None => fstype == "cgroup2",
            Some(name) => fstype == "cgroup" && super_options.split(',').any(|o| o == name),
        };
        if !matches {
            return None;
        }
        let relative = Path::new(path).strip_prefix(root).ok()?;
        Some(Path::new(&unescape_mount_path(mount_point)).join(relative))
    })
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
pub(super) fn unescape_mount_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Makes `<parent>/<name>` after removing what dead agents left there; None when the
/// directory cannot be made or holds no `cgroup.procs` (not a cgroup).
pub(super) fn make_run_dir(parent: &Path, name: &str) -> Option<PathBuf> {
    remove_stale_run_dirs(parent);
    let dir = parent.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    if dir.join("cgroup.procs").exists() {
        Some(dir)
    } else {
        let _ = std::fs::remove_dir(&dir);
        None
    }
}

/// Whether a command can join a cgroup made in `run_dir`: making a directory can be
/// allowed where moving a process is not (the move needs write access to the cgroup
/// both sides share), and a command that cannot join its cgroup would not start. Tried
/// with `true` in a probe cgroup; a run dir that fails it is removed.
pub(super) fn can_join(run_dir: &Path) -> bool {
    use std::os::unix::process::CommandExt;
    let joined = Leaf::create(run_dir, "probe").is_ok_and(|probe| {
        let fd = probe.procs.as_raw_fd();
        let mut cmd = std::process::Command::new("true");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only write(2) on a descriptor the parent keeps open; nothing allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let ok = cmd.status().is_ok_and(|status| status.success());
        let _ = std::fs::remove_dir(&probe.dir);
        ok
    });
    if !joined {
        let _ = std::fs::remove_dir(run_dir);
    }
    joined
}

/// Removes the empty `agent-<pid>/task-<n>` directories of agents no longer running (ended
/// by SIGKILL before they could clean up). A populated cgroup cannot be removed, so
/// nothing running is touched.
pub(super) fn remove_stale_run_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("agent-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_cgroup_tree(&entry.path());
    }
}

/// Removes a cgroup directory and its child cgroups, deepest first; what is busy stays.
pub(super) fn remove_cgroup_tree(dir: &Path) -> bool {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    std::fs::remove_dir(dir).is_ok()
}

/// Turns the memory controller on for the run's task cgroups, where the parent
/// delegated it.
pub(super) fn enable_v2_memory(run_dir: &Path) -> bool {
    let controllers =
        std::fs::read_to_string(run_dir.join("cgroup.controllers")).unwrap_or_default();
    controllers.split_whitespace().any(|c| c == "memory")
        && write_file(&run_dir.join("cgroup.subtree_control"), "+memory").is_ok()
}

pub(super) fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP: &str = "\
8:pids:/
4:memory:/process_api/abc
0::/user.slice/x.scope
";

    #[test]
    fn own_cgroups_are_found_from_mountinfo_and_proc_cgroup() {
        assert_eq!(
            own_cgroup_dir(MOUNTINFO, CGROUP, None).unwrap(),
            Path::new("/sys/fs/cgroup/unified/user.slice/x.scope")
        );
        assert_eq!(
            own_cgroup_dir(MOUNTINFO, CGROUP, Some("memory")).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert!(own_cgroup_dir(MOUNTINFO, CGROUP, Some("cpu")).is_none());
        let pure_v1 = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(own_cgroup_dir(pure_v1, CGROUP, None).is_none());
    }

    #[test]
    fn a_cgroup_outside_the_mounted_root_is_not_used() {
        let mountinfo = "41 31 0:38 /lxc/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_cgroup_dir(mountinfo, "0::/lxc/c1/inner\n", None).unwrap(),
            Path::new("/sys/fs/cgroup/inner")
        );
        assert!(own_cgroup_dir(mountinfo, "0::/elsewhere\n", None).is_none());
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
