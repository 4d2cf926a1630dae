//! Tools xtask needs from the machine (QEMU, gcc, rustup): finding them on PATH, and
//! installing a missing one from Debian's packages when that can be done without asking
//! (running as root, apt-get present).

use crate::{Error, Result};
use std::process::Command;

/// True if `program` is a file in one of PATH's directories.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// True if xtask runs as root (apt-get can install and refresh without asking).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|line| line.starts_with("Uid:")).map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Installs Debian's `package` (which provides `program`) with apt-get, saying so in one
/// line. `Ok(false)`: it cannot be done here (not root, or no apt-get); the caller names
/// the command. A failed apt-get is an environment error naming it.
pub fn apt_install(program: &str, package: &str) -> Result<bool> {
    if !running_as_root() || !on_path("apt-get") {
        return Ok(false);
    }
    println!("{program} not found; installing Debian package {package} with apt-get");
    for args in [&["update"][..], &["install", "-y", package][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|error| Error::environment(format!("cannot run apt-get: {error}")))?;
        if !status.success() {
            return Err(Error::environment(format!(
                "apt-get {} failed ({status}); install {program} yourself (Debian package {package})",
                args.join(" ")
            )));
        }
    }
    Ok(true)
}
