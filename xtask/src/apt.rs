//! Debian packages fetched with `apt-get download`: the programs guest-kernel runs
//! ([`crate::busybox`]) and the Linux kernel and Xen `cargo xtask bench --kernel` compares
//! with ([`crate::debian`]). apt-get checks every package against the archive's signed
//! index; a pinned SHA-256 also makes every checkout use the same bytes.
//!
//! A download that fails is retried once after `apt-get update` when running as root (a
//! fresh container has no package lists, a week-old one stale ones).

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

/// Lower-case hexadecimal SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The contents of `path` if their SHA-256 is `sha`.
pub fn read_if_matching(path: &Path, sha: &str) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|bytes| sha256(bytes) == sha)
}

/// One version of one Debian package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Its name (`busybox-static`).
    pub name: String,
    /// Its version, with the epoch if it has one (`1:1.35.0-4+deb12u1+b1`).
    pub version: String,
    /// Its architecture (`amd64`: the guests are x86-64 whatever the host's dpkg says).
    pub architecture: String,
    /// SHA-256 of the package file.
    pub sha256: String,
}

impl Package {
    /// What `apt-get download` is asked for.
    pub fn request(&self) -> String {
        format!("{}:{}={}", self.name, self.architecture, self.version)
    }

    /// The file name `apt-get download` writes (the epoch's `:` as `%3a`).
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.architecture)
    }

    /// The file name in Debian's archive, without the epoch: what a user who fetches the
    /// package by hand gets.
    pub fn archive_file_name(&self) -> String {
        let version = self.version.split_once(':').map_or(self.version.as_str(), |(_, version)| version);
        format!("{}_{version}_{}.deb", self.name, self.architecture)
    }

    /// The package's bytes from `directory`: apt-get's file or one fetched by hand under
    /// the archive's name, if its SHA-256 matches; else downloaded there with apt-get and
    /// checked. `stale` says what to update when Debian no longer serves this version.
    pub fn fetch(&self, directory: &Path, stale: &str) -> Result<Vec<u8>> {
        for name in [self.file_name(), self.archive_file_name()] {
            if let Some(bytes) = read_if_matching(&directory.join(name), &self.sha256) {
                return Ok(bytes);
            }
        }
        self.download(directory, stale)
    }

    /// What to tell a user who has to fetch the package by hand.
    pub fn by_hand(&self, directory: &Path) -> String {
        format!("or put {} (from Debian's archive) into {}", self.archive_file_name(), directory.display())
    }

    fn download(&self, directory: &Path, stale: &str) -> Result<Vec<u8>> {
        let (request, by_hand) = (self.request(), self.by_hand(directory));
        if !crate::packages::on_path("apt-get") {
            return Err(Error::environment(format!(
                "xtask fetches Debian's {} {} with apt-get download, and apt-get is not installed: run xtask on Debian or Ubuntu, {by_hand}",
                self.name, self.version
            )));
        }
        std::fs::create_dir_all(directory).map_err(|error| Error::io("cannot create", directory, error))?;
        println!(
            "xtask: fetching Debian's {} {} with apt-get download into {}",
            self.name,
            self.version,
            directory.display()
        );
        let mut output = apt_get(&["download", &request], directory)?;
        if !output.status.success() && crate::packages::running_as_root() {
            println!(
                "xtask: apt-get download failed ({}); running apt-get update and trying again",
                apt_error(&output)
            );
            update(&by_hand)?;
            output = apt_get(&["download", &request], directory)?;
        }
        if !output.status.success() {
            return Err(Error::environment(format!(
                "apt-get download {request} failed ({}): run `apt-get update` as root and check the network; if Debian no longer serves this version, {stale}; {by_hand}",
                apt_error(&output)
            )));
        }
        let path = directory.join(self.file_name());
        let bytes = std::fs::read(&path).map_err(|error| Error::io("apt-get download did not write", &path, error))?;
        let sha = sha256(&bytes);
        if sha != self.sha256 {
            let _ = std::fs::remove_file(&path);
            return Err(Error::environment(format!(
                "{} has SHA-256 {sha}, not the expected {}: a different build of {} {} (removed it); check where it came from",
                path.display(),
                self.sha256,
                self.name,
                self.version
            )));
        }
        Ok(bytes)
    }
}

/// `apt-get update`, as root only (the caller checked); `by_hand` ends the error.
fn update(by_hand: &str) -> Result<()> {
    let update = apt_get(&["update"], Path::new("/"))?;
    if update.status.success() {
        return Ok(());
    }
    Err(Error::environment(format!(
        "apt-get update failed ({}): is Debian's archive reachable? Fix the network and run xtask again, {by_hand}",
        apt_error(&update)
    )))
}

/// The version of `name` (architecture `architecture`) apt would install now, from the
/// package lists (`apt-cache show`); `None` if the lists do not have it.
pub fn candidate(name: &str, architecture: &str) -> Result<Option<Package>> {
    let output = apt_cache(&["show", "--no-all-versions", &format!("{name}:{architecture}")])?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(parse_show(&String::from_utf8_lossy(&output.stdout), name, architecture))
}

/// Reads `apt-cache show --no-all-versions`: the first stanza's version and SHA-256.
pub fn parse_show(text: &str, name: &str, architecture: &str) -> Option<Package> {
    let stanza = text.split("\n\n").next()?;
    let field = |key: &str| {
        stanza.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(|value| value.trim().to_string()))
    };
    let (version, sha256) = (field("Version")?, field("SHA256")?);
    let good_sha = sha256.len() == 64 && sha256.bytes().all(|byte| byte.is_ascii_hexdigit());
    (field("Package").as_deref() == Some(name) && !version.is_empty() && good_sha).then(|| Package {
        name: name.to_string(),
        version,
        architecture: architecture.to_string(),
        sha256: sha256.to_ascii_lowercase(),
    })
}

/// The packages `name` depends on (`apt-cache depends`), in order; empty if the lists do
/// not have it.
pub fn dependencies(name: &str) -> Result<Vec<String>> {
    let output = apt_cache(&["depends", name])?;
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_depends(&String::from_utf8_lossy(&output.stdout)))
}

/// Reads `apt-cache depends`: the `Depends:` lines' package names (alternatives' `|`
/// and virtual packages' `<...>` left out).
pub fn parse_depends(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('<'))
        .map(str::to_string)
        .collect()
}

/// The last line apt printed that says what went wrong.
pub fn apt_error(output: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with("E:"))
        .or(lines.last())
        .map_or_else(|| format!("exit status {}", output.status), |line| line.to_string())
}

fn apt_get(arguments: &[&str], directory: &Path) -> Result<Output> {
    Command::new("apt-get")
        .args(arguments)
        .current_dir(directory)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|error| Error::environment(format!("cannot run apt-get: {error}")))
}

fn apt_cache(arguments: &[&str]) -> Result<Output> {
    if !crate::packages::on_path("apt-cache") {
        return Err(Error::environment("apt-cache is not installed: run xtask on Debian or Ubuntu"));
    }
    Command::new("apt-cache")
        .args(arguments)
        .output()
        .map_err(|error| Error::environment(format!("cannot run apt-cache: {error}")))
}

/// Writes `contents` to `path` with permissions `mode`: beside it first, then renamed, so
/// an interrupted write never leaves a partial file under the real name.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, contents).map_err(|error| Error::io("cannot write", &partial, error))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
        .map_err(|error| Error::io("cannot set the permissions of", &partial, error))?;
    std::fs::rename(&partial, path).map_err(|error| Error::io("cannot rename to", path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(version: &str) -> Package {
        Package {
            name: "busybox-static".into(),
            version: version.into(),
            architecture: "amd64".into(),
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn names_are_as_apt_get_and_the_archive_write_them() {
        let with_epoch = package("1:1.35.0-4+deb12u1+b1");
        assert_eq!(with_epoch.request(), "busybox-static:amd64=1:1.35.0-4+deb12u1+b1");
        assert_eq!(with_epoch.file_name(), "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb");
        assert_eq!(with_epoch.archive_file_name(), "busybox-static_1.35.0-4+deb12u1+b1_amd64.deb");
        assert_eq!(package("6.1.192-3").file_name(), package("6.1.192-3").archive_file_name());
        assert!(with_epoch
            .by_hand(Path::new("/t"))
            .contains("put busybox-static_1.35.0-4+deb12u1+b1_amd64.deb (from Debian's archive) into /t"));
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn apt_errors_are_cut_to_their_reason() {
        use std::os::unix::process::ExitStatusExt;
        let output = |stderr: &str| Output {
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

    #[test]
    fn the_candidate_is_the_first_stanza() {
        let sha = "14D219D01E1283261817D961DBB3895CB5B4288D0DE10E0BA0632A0D993E15BF";
        let text = format!(
            "Package: linux-image-6.1.0-57-amd64\nSource: linux-signed-amd64 (6.1.192+3)\nVersion: 6.1.192-3\n\
             Filename: pool/updates/main/l/x.deb\nSize: 70591024\nSHA256: {sha}\n\n\
             Package: linux-image-6.1.0-57-amd64\nVersion: 6.1.0-old\nSHA256: {sha}\n"
        );
        let package = parse_show(&text, "linux-image-6.1.0-57-amd64", "amd64").unwrap();
        assert_eq!(package.version, "6.1.192-3");
        assert_eq!(package.sha256, sha.to_ascii_lowercase());
        assert_eq!(package.file_name(), "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb");
        assert_eq!(parse_show(&text, "linux-image-amd64", "amd64"), None, "another package's stanza");
        assert_eq!(parse_show("Package: x\nVersion: 1\nSHA256: abc\n", "x", "amd64"), None, "a short SHA-256");
        assert_eq!(parse_show("", "x", "amd64"), None);
    }

    #[test]
    fn dependencies_are_the_depends_lines() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n |Depends: a\n  Depends: <virtual>\n  Recommends: b\n";
        assert_eq!(parse_depends(text), ["linux-image-6.1.0-57-amd64", "a"]);
        assert!(parse_depends("").is_empty());
    }
}
