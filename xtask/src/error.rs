//! One error type for the host tools: a message that names what is missing and how to fix
//! it, plus the process exit code the failure deserves.
//!
//! `cargo xtask run` passes the hypervisor's summarized status through (0–5 and 100,
//! SPEC.md §10), so xtask's own failures use codes no run can end with: a script can tell
//! "the guest powered off with code 1" from "the guest did not compile".

use std::fmt;

/// A step xtask ran failed: a build that did not compile, a test stage, a lint gate, an
/// artifact that could not be written.
pub const EXIT_FAILED: i32 = 120;
/// The command line is wrong: an unknown guest, a bad size, a missing path the user named.
pub const EXIT_USAGE: i32 = 121;
/// A tool xtask needs is missing or cannot run: QEMU, rustup or its target, cargo, /dev/kvm.
pub const EXIT_ENVIRONMENT: i32 = 122;
/// QEMU refused to start: it exited with an error before the hypervisor printed anything
/// (a bad `--qemu-arg`, a missing file).
pub const EXIT_QEMU_REFUSED: i32 = 123;
/// The run's timeout expired; QEMU was killed.
pub const EXIT_TIMEOUT: i32 = 124;
/// QEMU ended after the hypervisor started but without the hypervisor ending the run (a
/// triple fault, a QEMU crash).
pub const EXIT_NO_ENDING: i32 = 125;

/// A failure of a host tool.
#[derive(Debug)]
pub struct Error {
    /// What went wrong, and what to do about it.
    pub message: String,
    /// The exit code `cargo xtask` ends with.
    pub exit_code: i32,
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A usage problem ([`EXIT_USAGE`]).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: EXIT_USAGE }
    }

    /// A missing or broken tool ([`EXIT_ENVIRONMENT`]).
    pub fn environment(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: EXIT_ENVIRONMENT }
    }

    /// A step that ran and failed ([`EXIT_FAILED`]).
    pub fn failed(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: EXIT_FAILED }
    }

    /// An I/O error on `path` while doing `what`.
    pub fn io(what: &str, path: &std::path::Path, error: std::io::Error) -> Self {
        Self::failed(format!("{what} {}: {error}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtask_codes_are_never_hypervisor_statuses() {
        let hypervisor: Vec<i32> = [0u8, 1, 2, 3, 4, 5, 100].into_iter().map(i32::from).collect();
        let own = [EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_QEMU_REFUSED, EXIT_TIMEOUT, EXIT_NO_ENDING];
        for code in own {
            assert!(!hypervisor.contains(&code) && (1..=255).contains(&code), "{code}");
        }
        let mut unique = own.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), own.len());
    }
}
