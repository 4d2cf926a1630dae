//! Debian's `busybox-static`, the unmodified Linux programs guest-kernel runs: fetched once
//! with `apt-get download` into `target/busybox/`, checked against the SHA-256 pinned
//! here, and its `bin/busybox` taken out of the package without dpkg ([`crate::deb`]).
//!
//! The version is pinned (Debian 12's), so every checkout runs the same binary. When
//! Debian's archive no longer serves it, the download fails with a message naming the
//! constants to update.

use crate::apt::{self, Package};
use crate::{workspace, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian package.
pub const PACKAGE: &str = "busybox-static";
/// Its pinned version (Debian 12 "bookworm").
pub const VERSION: &str = "1:1.35.0-4+deb12u1+b1";
/// Its architecture (guest-kernel runs x86-64 programs whatever the host's dpkg says).
pub const ARCHITECTURE: &str = "amd64";
/// SHA-256 of the package file.
pub const PACKAGE_SHA256: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";
/// SHA-256 of the `bin/busybox` it installs (so the extracted copy is checked without the
/// package).
pub const BINARY_SHA256: &str = "3d9f2889d6782537624a4e1a10e68a2ddd53e0ee8bac02676f27308f42ec6bf6";
/// The file in the package.
const BINARY_IN_PACKAGE: &str = "bin/busybox";

/// `target/busybox`: the package and the extracted binary.
pub fn dir() -> PathBuf {
    workspace::root().join("target").join("busybox")
}

/// The pinned package.
pub fn package() -> Package {
    Package {
        name: PACKAGE.to_string(),
        version: VERSION.to_string(),
        architecture: ARCHITECTURE.to_string(),
        sha256: PACKAGE_SHA256.to_string(),
    }
}

/// The extracted executable.
pub fn binary_path() -> PathBuf {
    dir().join("busybox")
}

/// The busybox executable: the cached one if its SHA-256 matches, else extracted from the
/// package (apt-get's file or one fetched by hand under the archive's name; downloaded
/// first if neither is there).
pub fn ensure() -> Result<PathBuf> {
    let binary = binary_path();
    if apt::read_if_matching(&binary, BINARY_SHA256).is_some() {
        return Ok(binary);
    }
    let package = package();
    let deb = package.fetch(&dir(), "update VERSION and the SHA-256s in xtask/src/busybox.rs")?;
    let what = dir().join(package.file_name()).display().to_string();
    let contents = crate::deb::extract_file(&deb, BINARY_IN_PACKAGE, &what)?;
    if apt::sha256(&contents) != BINARY_SHA256 {
        return Err(Error::failed(format!(
            "{what}: {BINARY_IN_PACKAGE} has SHA-256 {}, not the pinned {BINARY_SHA256}",
            apt::sha256(&contents)
        )));
    }
    apt::write_atomically(&binary, &contents, 0o755)?;
    Ok(binary)
}

/// The paths busybox installs its applets at (`bin/ls`, `usr/bin/[`), from `busybox
/// --list-full` (a static x86-64 Linux executable runs on the host): without busybox
/// itself, and without `init` and `linuxrc`, since `/sbin/init` is guest-kernel's own.
pub fn applets(busybox: &Path) -> Result<Vec<String>> {
    let output = Command::new(busybox).arg("--list-full").output().map_err(|error| {
        Error::environment(format!("cannot run {} --list-full on this host: {error}", busybox.display()))
    })?;
    if !output.status.success() {
        return Err(Error::failed(format!("{} --list-full failed ({})", busybox.display(), output.status)));
    }
    parse_applets(&String::from_utf8_lossy(&output.stdout))
}

/// Reads `busybox --list-full`'s output (see [`applets`]); each path must be relative,
/// without `.`/`..` components, and one of `bin`, `sbin`, `usr/bin`, `usr/sbin` or the
/// top level.
pub fn parse_applets(text: &str) -> Result<Vec<String>> {
    let mut applets = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (directory, name) = line.rsplit_once('/').unwrap_or(("", line));
        let good_name = !name.is_empty()
            && name != "."
            && name != ".."
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"[_.-".contains(&byte));
        if !good_name || !["", "bin", "sbin", "usr/bin", "usr/sbin"].contains(&directory) {
            return Err(Error::failed(format!("busybox --list-full printed {line:?}, not an applet path")));
        }
        if ["bin/busybox", "sbin/init", "linuxrc"].contains(&line) {
            continue;
        }
        applets.push(line.to_string());
    }
    if applets.is_empty() {
        return Err(Error::failed("busybox --list-full printed no applet"));
    }
    Ok(applets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_are_sha256_digests() {
        assert_eq!(package().file_name(), "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb");
        for pin in [PACKAGE_SHA256, BINARY_SHA256] {
            assert!(pin.len() == 64 && pin.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase()));
        }
    }

    #[test]
    fn applet_paths_are_checked_and_ours_left_out() {
        let applets = parse_applets("usr/bin/[\nbin/ls\nbin/busybox\nsbin/init\nlinuxrc\nusr/sbin/chroot\n\n").unwrap();
        assert_eq!(applets, ["usr/bin/[", "bin/ls", "usr/sbin/chroot"]);
        for bad in ["/bin/ls", "bin/../etc/passwd", "etc/ls", "bin/a b", "bin/", "", "bin/busybox\n"] {
            assert!(parse_applets(bad).is_err(), "{bad:?}");
        }
    }
}
