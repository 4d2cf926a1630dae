//! One error type for the host tools: a message that names what is missing and how to fix
//! it, plus the process exit code the failure deserves.

use std::fmt;

/// Exit code for usage and environment errors (bad path, missing tool, unknown guest).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a failed step (a build that did not compile, a test that failed).
pub const EXIT_FAILED: i32 = 1;

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
    /// A usage or environment problem (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { message: message.into(), exit_code: EXIT_USAGE }
    }

    /// A step that ran and failed (exit code 1).
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
