//! What the agent does to itself at start-up so the commands it runs cannot read its
//! secrets (the API key is in its memory and environment).
//!
//! Commands run as the same user, so without care they could read
//! `/proc/<agent>/environ` or `/proc/<agent>/mem`, or attach a debugger. The agent makes
//! itself non-dumpable (the kernel then lets only processes with `CAP_SYS_PTRACE` read
//! those files; [`crate::process`] starts every command without that capability) and
//! wipes the environment block it started with, which `/proc/<pid>/environ` shows even to
//! a root command, after copying every variable to the heap.

/// Closes the agent's own process to the commands it runs (see the module doc): makes it
/// non-dumpable, and wipes the environment block the process started with, which
/// `/proc/<pid>/environ` shows (even to a root command without `CAP_SYS_PTRACE`), after
/// copying every variable to the heap, where the process keeps reading them.
///
/// # Safety
/// Call once at start-up, before any other thread exists: it rewrites the environment.
pub unsafe fn protect_host() {
    // SAFETY: PR_SET_DUMPABLE takes integers only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // SAFETY: single-threaded, as the caller promises.
    unsafe { wipe_initial_environment() };
}

/// The entries of the C `environ` array, each a `NAME=value` C string.
unsafe fn environ_entries() -> Vec<*mut libc::c_char> {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let mut entries = Vec::new();
    // SAFETY: `environ` is a null-terminated array of C strings; nothing else changes it
    // while we read (single-threaded).
    unsafe {
        let mut at = environ;
        while !at.is_null() && !(*at).is_null() {
            entries.push(*at);
            at = at.add(1);
        }
    }
    entries
}

unsafe fn wipe_initial_environment() {
    // SAFETY: single-threaded (the caller's promise).
    let initial = unsafe { environ_entries() };
    for (name, value) in std::env::vars_os() {
        // setenv stores a fresh heap copy and points `environ` at it.
        // SAFETY: single-threaded.
        unsafe { std::env::set_var(name, value) };
    }
    // SAFETY: as above.
    let in_use = unsafe { environ_entries() };
    for entry in initial.into_iter().filter(|e| !in_use.contains(e)) {
        // SAFETY: `entry` is a NUL-terminated string of the initial block that nothing
        // points to any more; it is overwritten within its length.
        unsafe {
            let len = libc::strlen(entry);
            std::ptr::write_bytes(entry, 0, len);
        }
    }
}
