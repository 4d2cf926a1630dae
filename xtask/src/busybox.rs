//! Debian's `busybox-static`, the unmodified Linux programs guest-kernel runs: fetched once
//! with `apt-get download` into `target/busybox/`, checked against the SHA-256 pinned
//! here, and its `bin/busybox` taken out of the package without dpkg ([`crate::deb`]).
//!
//! The version is pinned (Debian 12's), so every checkout runs the same binary. When
//! Debian's archive no longer serves it, the download fails with a message naming the
//! constants to update.

use crate::{workspace, Error, Result};
use sha2::{Digest, Sha256};
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

/// The package's file name as `apt-get download` writes it (the epoch's `:` as `%3a`).
pub fn package_file_name() -> String {
    format!("{PACKAGE}_{}_{ARCHITECTURE}.deb", VERSION.replace(':', "%3a"))
}

/// The package's file name in Debian's archive (`pool/main/b/busybox/`), without the
/// epoch: what a user who fetches it by hand gets.
pub fn archive_file_name() -> String {
    let version = VERSION.split_once(':').map_or(VERSION, |(_, version)| version);
    format!("{PACKAGE}_{version}_{ARCHITECTURE}.deb")
}

/// The extracted executable.
pub fn binary_path() -> PathBuf {
    dir().join("busybox")
}

/// Lower-case hexadecimal SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn read_if_matching(path: &Path, sha: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|bytes| sha256(bytes) == sha)
}

/// The busybox executable: the cached one if its SHA-256 matches, else extracted from the
/// package (apt-get's file or one fetched by hand under the archive's name; downloaded
/// first if neither is there).
pub fn ensure() -> Result<PathBuf> {
    let binary = binary_path();
    if read_if_matching(&binary, BINARY_SHA256).is_some() {
        return Ok(binary);
    }
    let package = dir().join(package_file_name());
    let by_hand = dir().join(archive_file_name());
    let deb = match read_if_matching(&package, PACKAGE_SHA256).or_else(|| read_if_matching(&by_hand, PACKAGE_SHA256)) {
        Some(deb) => deb,
        None => download(&package)?,
    };
    let what = package.display().to_string();
    let contents = crate::deb::extract_file(&deb, BINARY_IN_PACKAGE, &what)?;
    if sha256(&contents) != BINARY_SHA256 {
        return Err(Error::failed(format!(
            "{what}: {BINARY_IN_PACKAGE} has SHA-256 {}, not the pinned {BINARY_SHA256}",
            sha256(&contents)
        )));
    }
    write_executable(&binary, &contents)?;
    Ok(binary)
}

fn write_executable(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Written beside and renamed, so an interrupted write never leaves a partial binary.
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, contents).map_err(|error| Error::io("cannot write", &partial, error))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(|error| Error::io("cannot make executable", &partial, error))?;
    std::fs::rename(&partial, path).map_err(|error| Error::io("cannot rename to", path, error))
}

/// What to tell a user who has to fetch the package by hand.
fn by_hand() -> String {
    format!("or put {} (from Debian's archive, pool/main/b/busybox/) into {}", archive_file_name(), dir().display())
}

/// The last line apt-get printed that says what went wrong.
fn apt_error(output: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("E:"))
        .or(lines.last())
        .map_or_else(|| format!("exit status {}", output.status), |line| line.to_string())
}

fn apt_get(arguments: &[&str], directory: &Path) -> Result<std::process::Output> {
    Command::new("apt-get")
        .args(arguments)
        .current_dir(directory)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|error| Error::environment(format!("cannot run apt-get: {error}")))
}

/// Downloads the pinned package to `package` with apt-get and checks it.
fn download(package: &Path) -> Result<Vec<u8>> {
    let directory = dir();
    if !crate::packages::on_path("apt-get") {
        return Err(Error::environment(format!(
            "guest-kernel runs Debian's {PACKAGE} {VERSION}, which xtask fetches with apt-get download, and apt-get is not installed: run xtask on Debian or Ubuntu, {}",
            by_hand()
        )));
    }
    std::fs::create_dir_all(&directory).map_err(|error| Error::io("cannot create", &directory, error))?;
    let wanted = format!("{PACKAGE}:{ARCHITECTURE}={VERSION}");
    println!("xtask: fetching Debian's {PACKAGE} {VERSION} with apt-get download into {}", directory.display());
    let mut output = apt_get(&["download", &wanted], &directory)?;
    if !output.status.success() && crate::packages::running_as_root() {
        // Package lists may be missing (a fresh container) or stale: refresh them once.
        println!("xtask: apt-get download failed ({}); running apt-get update and trying again", apt_error(&output));
        let update = apt_get(&["update"], &directory)?;
        if !update.status.success() {
            return Err(Error::environment(format!(
                "apt-get update failed ({}): is Debian's archive reachable? Fix the network and run xtask again, {}",
                apt_error(&update),
                by_hand()
            )));
        }
        output = apt_get(&["download", &wanted], &directory)?;
    }
    if !output.status.success() {
        return Err(Error::environment(format!(
            "apt-get download {wanted} failed ({}): run `apt-get update` as root and check the network; if Debian no longer serves this version, update VERSION and the SHA-256s in xtask/src/busybox.rs; {}",
            apt_error(&output),
            by_hand()
        )));
    }
    let deb = std::fs::read(package).map_err(|error| Error::io("apt-get download did not write", package, error))?;
    let sha = sha256(&deb);
    if sha != PACKAGE_SHA256 {
        let _ = std::fs::remove_file(package);
        return Err(Error::environment(format!(
            "{} has SHA-256 {sha}, not the pinned {PACKAGE_SHA256}: a different build of {PACKAGE} {VERSION} (removed it); check where it came from before updating PACKAGE_SHA256",
            package.display()
        )));
    }
    Ok(deb)
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
    fn the_package_is_named_as_apt_get_writes_it() {
        assert_eq!(package_file_name(), "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb");
        assert_eq!(archive_file_name(), "busybox-static_1.35.0-4+deb12u1+b1_amd64.deb");
        assert!(by_hand().contains("put busybox-static_1.35.0-4+deb12u1+b1_amd64.deb (from Debian's archive"));
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
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

    #[test]
    fn apt_errors_are_cut_to_their_reason() {
        use std::os::unix::process::ExitStatusExt;
        let output = |stderr: &str| std::process::Output {
            status: std::process::ExitStatus::from_raw(100 << 8),
            stdout: b"Reading package lists...\n".to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        };
        assert_eq!(
            apt_error(&output("W: something\nE: Version '1' for 'busybox-static' was not found\n")),
            "E: Version '1' for 'busybox-static' was not found"
        );
        assert_eq!(apt_error(&output("")), "Reading package lists...");
    }
}
