//! guest-kernel's userland (`guest-kernel/user`): `init`, `kernel-test`, `lmbench` and
//! `lmbench-true`, static Linux programs built for [`TARGET`] with the `userland` profile (release code, no debug
//! information: the kernel holds the initramfs in memory).

use crate::{workspace, Error, Result};
use std::path::PathBuf;
use std::process::Command;

/// The target the userland is built for: static executables with Rust's std over musl.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The userland's package.
pub const PACKAGE: &str = "guest-kernel-user";
/// The cargo profile it is built with (root `Cargo.toml`).
pub const PROFILE: &str = "userland";
/// PID 1.
pub const INIT: &str = "init";
/// The test programs' executable; `kernel-test --list` names the programs.
pub const KERNEL_TEST: &str = "kernel-test";
/// The benchmark of the Linux system interface (`cargo xtask bench --kernel`).
pub const LMBENCH: &str = "lmbench";
/// The program lmbench's `fork exec` row runs.
pub const LMBENCH_TRUE: &str = "lmbench-true";

/// The built programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Userland {
    /// `init`'s executable.
    pub init: PathBuf,
    /// `kernel-test`'s executable.
    pub kernel_test: PathBuf,
    /// `lmbench`'s executable.
    pub lmbench: PathBuf,
    /// `lmbench-true`'s executable.
    pub lmbench_true: PathBuf,
    /// The test programs' names as `kernel-test --list` prints them (`test-fork`, ...),
    /// each a link to `kernel-test` in the initramfs.
    pub test_programs: Vec<String>,
}

/// The arguments of the `cargo build` that builds the userland.
pub fn cargo_args() -> Vec<String> {
    ["build", "--profile", PROFILE, "--target", TARGET, "--message-format=json-render-diagnostics", "-p", PACKAGE]
        .into_iter()
        .chain(["--bin", INIT, "--bin", KERNEL_TEST, "--bin", LMBENCH, "--bin", LMBENCH_TRUE])
        .map(str::to_string)
        .collect()
}

/// Reads `kernel-test --list`: one program name a line, each `test-` and a lower-case
/// word (the names become file names in the initramfs).
pub fn parse_list(text: &str) -> Result<Vec<String>> {
    let names: Vec<String> = text.lines().map(str::to_string).collect();
    let bad = |name: &String| {
        !name.starts_with("test-")
            || name.len() == "test-".len()
            || !name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    };
    if let Some(name) = names.iter().find(|name| bad(name)) {
        return Err(Error::failed(format!("{KERNEL_TEST} --list printed {name:?}, not a test-<program> name")));
    }
    if names.is_empty() {
        return Err(Error::failed(format!("{KERNEL_TEST} --list printed no program")));
    }
    Ok(names)
}

/// The linker Rust's musl target runs (with the musl C library and start files that come
/// with the target's standard library), and the Debian package that provides it.
const LINKER: &str = "cc";
const LINKER_PACKAGE: &str = "gcc";

/// Finds the linker, installing it with apt-get when running as root on Debian.
fn ensure_linker() -> Result<()> {
    use crate::packages::{apt_install, on_path};
    if on_path(LINKER) || (apt_install(LINKER, LINKER_PACKAGE)? && on_path(LINKER)) {
        return Ok(());
    }
    Err(Error::environment(format!(
        "{LINKER} not found in PATH; Rust's {TARGET} target links guest-kernel's userland with it: sudo apt-get install {LINKER_PACKAGE}"
    )))
}

/// Builds the userland (cargo decides what is stale) and asks `kernel-test` for its
/// programs: it is a static Linux executable, so it runs on the x86-64 Linux host too.
pub fn build() -> Result<Userland> {
    crate::build::ensure_toolchain()?;
    ensure_linker()?;
    let mut command = workspace::cargo();
    command.args(cargo_args());
    let built = crate::build::run_cargo(command, &format!("the userland ({PACKAGE} for {TARGET})"))?;
    let find = |name: &str| {
        built
            .iter()
            .find(|(bin, _)| bin == name)
            .map(|(_, path)| path.clone())
            .ok_or_else(|| Error::failed(format!("cargo reported no executable for {name}")))
    };
    let (init, kernel_test, lmbench, lmbench_true) =
        (find(INIT)?, find(KERNEL_TEST)?, find(LMBENCH)?, find(LMBENCH_TRUE)?);
    let output = Command::new(&kernel_test).arg("--list").output().map_err(|error| {
        Error::environment(format!(
            "cannot run {} --list on this host ({error}); the initramfs is built on x86-64 Linux",
            kernel_test.display()
        ))
    })?;
    if !output.status.success() {
        return Err(Error::failed(format!("{} --list failed ({})", kernel_test.display(), output.status)));
    }
    let test_programs = parse_list(&String::from_utf8_lossy(&output.stdout))?;
    Ok(Userland { init, kernel_test, lmbench, lmbench_true, test_programs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_file_lists_the_userland_target() {
        let text = std::fs::read_to_string(workspace::root().join("rust-toolchain.toml")).unwrap();
        let wanted = crate::toolchain::parse_toolchain_file(&text).unwrap();
        assert!(wanted.targets.contains(&TARGET.to_string()), "{wanted:?}");
    }

    #[test]
    fn the_build_names_the_profile_target_and_every_program() {
        assert_eq!(
            cargo_args().join(" "),
            "build --profile userland --target x86_64-unknown-linux-musl --message-format=json-render-diagnostics \
             -p guest-kernel-user --bin init --bin kernel-test --bin lmbench --bin lmbench-true"
        );
        let manifest = std::fs::read_to_string(workspace::root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[profile.userland]"), "the profile is defined in the root manifest");
    }

    #[test]
    fn the_program_list_is_checked() {
        assert_eq!(parse_list("test-fork\ntest-fork-bomb\n").unwrap(), ["test-fork", "test-fork-bomb"]);
        for bad in ["", "fork\n", "test-\n", "test-a/b\n", "test-x y\n"] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
    }
}
