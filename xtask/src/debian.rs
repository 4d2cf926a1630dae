//! Debian's Linux kernel and Xen hypervisor, the reference stacks `cargo xtask bench
//! --kernel` runs the lmbench program on: fetched with `apt-get download` ([`crate::apt`])
//! into `target/debian/`, the one file each is needed for taken out of its package
//! ([`crate::deb`]), and only that file kept: `vmlinuz` (Linux 6.1, built with
//! `CONFIG_XEN_PV=y`, so the same kernel boots natively and as Xen's dom0) and `xen`
//! (Xen 4.17, gunzipped: QEMU's multiboot loader takes only the ELF). Each has a
//! `<file>.source` beside it naming the package, version and the file's SHA-256, so the
//! cache is checked without the package.
//!
//! The versions are pinned (with the SHA-256 of the package and of the file), so every
//! checkout measures the same binaries. Debian's security archive replaces a kernel
//! package within weeks, though, and drops the old one: then the kernel the
//! `linux-image-amd64` metapackage depends on now (and the `xen-hypervisor-4.17-amd64`
//! apt would install now) is used instead, with a warning naming the pin to update; apt
//! still checks it against the archive's signed index.

use crate::apt::{self, Package};
use crate::{workspace, Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The architecture of both packages.
const ARCHITECTURE: &str = "amd64";

/// What to update when a pin is gone.
const STALE: &str = "update the pins in xtask/src/debian.rs";

/// `target/debian`.
pub fn dir() -> PathBuf {
    workspace::root().join("target").join("debian")
}

/// A reference stack's binary.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Component {
    /// Linux's compressed kernel image.
    Linux,
    /// The Xen hypervisor's ELF image.
    Xen,
}

/// A pinned package and the SHA-256 of the file kept from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The package's name.
    pub package: &'static str,
    /// Its version.
    pub version: &'static str,
    /// SHA-256 of the package file.
    pub package_sha256: &'static str,
    /// SHA-256 of the kept file (after gunzip for Xen).
    pub file_sha256: &'static str,
}

/// The kernel `linux-image-amd64` depended on in Debian 12 when this was pinned.
const LINUX: Pin = Pin {
    package: "linux-image-6.1.0-57-amd64",
    version: "6.1.192-3",
    package_sha256: "14d219d01e1283261817d961dbb3895cb5b4288d0de10e0ba0632a0d993e15bf",
    file_sha256: "85667e6c72245133bd7e3e80bac7d16b26fda15c0a3c68faa4b713850ea526cd",
};

/// Debian 12's Xen 4.17 when this was pinned.
const XEN: Pin = Pin {
    package: "xen-hypervisor-4.17-amd64",
    version: "4.17.7+13-g2445b30a44-0+deb12u1",
    package_sha256: "fc074298a677325306662eea382cc4503339b8e1f4db54b24702b0b07cf6741d",
    file_sha256: "075d2ef568bbacf900c520ffdf50a5cb8ef65c7155130aef1caa559c47966e6a",
};

/// The metapackage whose dependency names the current kernel.
const LINUX_METAPACKAGE: &str = "linux-image-amd64";

impl Component {
    /// Its lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Linux => "linux",
            Component::Xen => "xen",
        }
    }

    /// The pinned package.
    pub fn pin(self) -> Pin {
        match self {
            Component::Linux => LINUX,
            Component::Xen => XEN,
        }
    }

    /// The kept file's name in [`dir`].
    fn kept_name(self) -> &'static str {
        match self {
            Component::Linux => "vmlinuz",
            Component::Xen => "xen",
        }
    }

    /// Where package `package` installs the file: Linux's image is named after the
    /// kernel release the package is named after.
    pub fn file_in_package(self, package: &str) -> String {
        match self {
            Component::Linux => format!("boot/vmlinuz-{}", package.strip_prefix("linux-image-").unwrap_or(package)),
            Component::Xen => "boot/xen-4.17-amd64.gz".to_string(),
        }
    }

    /// The kept file made from the packaged one.
    fn unpack(self, packaged: Vec<u8>, what: &str) -> Result<Vec<u8>> {
        match self {
            Component::Linux => Ok(packaged),
            Component::Xen => gunzip(&packaged, what),
        }
    }

    /// The package apt would install now instead of the pin, if the package lists know one.
    fn current(self) -> Result<Option<Package>> {
        let name = match self {
            Component::Linux => {
                match apt::dependencies(LINUX_METAPACKAGE)?.into_iter().find(|name| name.starts_with("linux-image-")) {
                    Some(name) => name,
                    None => return Ok(None),
                }
            }
            Component::Xen => XEN.package.to_string(),
        };
        apt::candidate(&name, ARCHITECTURE)
    }
}

impl Pin {
    /// The pinned package as apt names it.
    pub fn package(&self) -> Package {
        Package {
            name: self.package.to_string(),
            version: self.version.to_string(),
            architecture: ARCHITECTURE.to_string(),
            sha256: self.package_sha256.to_string(),
        }
    }
}

/// Decompresses a gzip file, checking its CRC.
pub fn gunzip(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut output = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut output)
        .map_err(|error| Error::failed(format!("{what} does not gunzip: {error}")))?;
    Ok(output)
}

/// A kept file and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The file.
    pub path: PathBuf,
    /// The package it came from.
    pub package: String,
    /// The package's version.
    pub version: String,
    /// True if that is the pinned version.
    pub pinned: bool,
}

/// The `<file>.source` record: package, version and the kept file's SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    package: String,
    version: String,
    sha256: String,
}

impl Source {
    fn to_text(&self) -> String {
        format!("package {}\nversion {}\nsha256 {}\n", self.package, self.version, self.sha256)
    }

    fn parse(text: &str) -> Option<Source> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ').map(|value| value.trim().to_string()))
        };
        let source = Source { package: field("package")?, version: field("version")?, sha256: field("sha256")? };
        let plain = |value: &str| !value.is_empty() && !value.contains(char::is_whitespace);
        (plain(&source.package) && plain(&source.version) && source.sha256.len() == 64).then_some(source)
    }
}

/// The component's file: the cached copy if it is what its record says, else taken from
/// the pinned package (downloaded first if needed), else from the package apt would
/// install now (with a warning). An error says what to fix (exit 122 when apt-get or the
/// archive cannot be reached).
pub fn ensure(component: Component) -> Result<Fetched> {
    let directory = dir();
    let kept = directory.join(component.kept_name());
    let record = kept.with_extension("source");
    let pin = component.pin();
    if let Some(source) = std::fs::read_to_string(&record).ok().and_then(|text| Source::parse(&text)) {
        if apt::read_if_matching(&kept, &source.sha256).is_some() {
            let pinned = source.package == pin.package && source.version == pin.version;
            return Ok(Fetched { path: kept, package: source.package, version: source.version, pinned });
        }
    }
    let pinned = pin.package();
    let (package, deb) = match pinned.fetch(&directory, STALE) {
        Ok(deb) => (pinned.clone(), deb),
        Err(error) => match component.current() {
            Ok(Some(current)) if current != pinned => {
                println!(
                    "xtask: warning: the pinned {} {} is not available ({}); using {} {}, the version Debian's package lists name now ({STALE})",
                    pinned.name, pinned.version, error.message, current.name, current.version
                );
                let deb = current.fetch(&directory, STALE)?;
                (current, deb)
            }
            _ => return Err(error),
        },
    };
    let file = component.file_in_package(&package.name);
    let what = format!("{} {}", package.name, package.version);
    let contents = component.unpack(crate::deb::extract_file(&deb, &file, &what)?, &format!("{what}: {file}"))?;
    let sha256 = apt::sha256(&contents);
    let is_pin = package == pinned;
    if is_pin && sha256 != pin.file_sha256 {
        return Err(Error::failed(format!(
            "{what}: {file} has SHA-256 {sha256}, not the pinned {} ({STALE})",
            pin.file_sha256
        )));
    }
    apt::write_atomically(&kept, &contents, 0o644)?;
    let source = Source { package: package.name.clone(), version: package.version.clone(), sha256 };
    apt::write_atomically(&record, source.to_text().as_bytes(), 0o644)?;
    remove_packages(&directory, &package);
    println!("xtask: kept {} from {what} ({} KiB)", kept.display(), contents.len() / 1024);
    Ok(Fetched { path: kept, package: package.name, version: package.version, pinned: is_pin })
}

/// Removes the package file once its one needed file is kept (a kernel's is 70 MB).
fn remove_packages(directory: &Path, package: &Package) {
    for name in [package.file_name(), package.archive_file_name()] {
        // A file that cannot be removed only costs disk space.
        let _ = std::fs::remove_file(directory.join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_name_their_files() {
        assert_eq!(Component::Linux.file_in_package(LINUX.package), "boot/vmlinuz-6.1.0-57-amd64");
        assert_eq!(Component::Linux.file_in_package("linux-image-6.1.0-60-amd64"), "boot/vmlinuz-6.1.0-60-amd64");
        assert_eq!(Component::Xen.file_in_package(XEN.package), "boot/xen-4.17-amd64.gz");
        for pin in [LINUX, XEN] {
            for sha in [pin.package_sha256, pin.file_sha256] {
                assert!(
                    sha.len() == 64 && sha.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
                );
            }
            assert_eq!(pin.package().request(), format!("{}:amd64={}", pin.package, pin.version));
        }
    }

    #[test]
    fn the_source_record_round_trips_and_refuses_garbage() {
        let source =
            Source { package: "xen-hypervisor-4.17-amd64".into(), version: "4.17.7".into(), sha256: "a".repeat(64) };
        assert_eq!(Source::parse(&source.to_text()), Some(source));
        for bad in ["", "package x\nversion 1\n", "package x\nversion 1\nsha256 abc\n", "package \nversion 1\nsha256 x"]
        {
            assert_eq!(Source::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gzip_is_checked() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"\x7fELF xen").unwrap();
        let mut gz = encoder.finish().unwrap();
        assert_eq!(gunzip(&gz, "x.gz").unwrap(), b"\x7fELF xen");
        let crc = gz.len() - 8;
        gz[crc] ^= 1;
        assert!(gunzip(&gz, "x.gz").unwrap_err().message.starts_with("x.gz does not gunzip"));
        assert!(gunzip(b"not gzip", "y.gz").is_err());
    }
}
