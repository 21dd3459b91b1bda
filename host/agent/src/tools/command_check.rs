//! The check every native command passes before it runs: not empty, no NUL byte, and a
//! short deny-list, as in the seed lesson, of commands a coding agent has no business
//! running. A hint for the model and a guard against accidents, not a boundary: the kernel
//! sandbox ([`crate::sandbox`]) is what confines commands.

/// The one check every native command passes, whether run by `bash` or `background_run`.
///
/// Besides malformed input it refuses, as the seed lesson does, a few commands that a
/// coding agent has no business running: privilege escalation, powering the machine off,
/// deleting the root or home directory, formatting or writing raw disks. This guards
/// against accidents; it is not a security boundary (the commands run as the user).
pub(super) fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("invalid input: command is empty".into());
    }
    if command.contains('\0') {
        return Err("invalid input: command contains a NUL byte".into());
    }
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .filter(|w| !w.is_empty())
        .collect();
    let blocked_word = words.iter().find(|w| {
        matches!(
            **w,
            "sudo" | "su" | "doas" | "shutdown" | "reboot" | "halt" | "poweroff"
        ) || w.starts_with("mkfs")
    });
    let removes_root = words.windows(3).any(|w| {
        w[0] == "rm"
            && w[1].starts_with('-')
            && w[1].contains('r')
            && matches!(w[2], "/" | "/*" | "~" | "~/" | "$HOME")
    });
    let raw_disk = ["/dev/sd", "/dev/nvme", "/dev/hd", "/dev/vd", "/dev/mmcblk"]
        .iter()
        .any(|dev| command.contains(&format!("> {dev}")) || command.contains(&format!("of={dev}")));
    if blocked_word.is_some() || removes_root || raw_disk {
        return Err(format!(
            "blocked: this command looks dangerous ({}) and is never run by the agent",
            blocked_word.copied().unwrap_or(if removes_root {
                "recursive delete of / or ~"
            } else {
                "write to a raw disk"
            })
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_commands_pass() {
        for command in [
            "cargo test",
            "echo pseudo > /dev/null",
            "rm -rf target",
            "ls / && echo ~",
            "git log | head",
        ] {
            assert!(check_command(command).is_ok(), "{command}");
        }
    }

    #[test]
    fn dangerous_commands_are_blocked() {
        for command in [
            "sudo apt-get install x",
            "ls; shutdown -h now",
            "rm -rf /",
            "rm -fr ~",
            "mkfs.ext4 /dev/sda1",
            "dd if=/dev/zero of=/dev/sda",
            "(reboot)",
        ] {
            let err = check_command(command).unwrap_err();
            assert!(err.starts_with("blocked:"), "{command}: {err}");
        }
        assert!(check_command("  ").is_err());
    }
}
