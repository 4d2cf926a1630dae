//! Building the hypervisor and guest images for `x86_64-unknown-none` and copying them to
//! `target/ringfence/` (contract: "Toolchain/build").

use crate::workspace;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bare-metal target every kernel image is built for.
pub const TARGET: &str = "x86_64-unknown-none";
/// Packages whose binaries are guest images.
pub const GUEST_PACKAGES: &[&str] = &["guest-kernel", "conformance-guests"];

/// One guest binary of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestBin {
    /// Cargo package name.
    pub package: String,
    /// Binary name; also the image name in the boot archive.
    pub bin: String,
    /// The package's `Cargo.toml`.
    pub manifest: PathBuf,
    /// The target directory cargo uses for it.
    pub target_dir: PathBuf,
}

fn run_cargo(mut command: Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .map_err(|error| Error::usage(format!("cannot run cargo to {what}: {error}; is cargo in PATH?")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::failed(format!("{what} failed ({status}); see the compiler output above")))
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io("cannot create", parent, error))?;
    }
    std::fs::copy(from, to)
        .map_err(|error| Error::failed(format!("cannot copy {} to {}: {error}", from.display(), to.display())))?;
    Ok(())
}

/// Makes sure the toolchain can build for [`TARGET`], once per process.
fn ensure_toolchain() -> Result<()> {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if CHECKED.get().is_none() {
        crate::toolchain::ensure()?;
        let _ = CHECKED.set(());
    }
    Ok(())
}

/// Builds the hypervisor and copies it to `target/ringfence/hypervisor.elf`.
pub fn build_hypervisor() -> Result<PathBuf> {
    ensure_toolchain()?;
    let mut command = workspace::cargo();
    command.args(["build", "--release", "--target", TARGET, "-p", "hypervisor"]);
    run_cargo(command, "building the hypervisor")?;
    let built = workspace::root().join("target").join(TARGET).join("release").join("hypervisor");
    let artifact = workspace::hypervisor_elf();
    copy(&built, &artifact)?;
    Ok(artifact)
}

/// Reads `cargo metadata --no-deps` for the workspace (or for `manifest`).
fn metadata(manifest: Option<&Path>) -> Result<serde_json::Value> {
    let mut command = workspace::cargo();
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(manifest) = manifest {
        command.arg("--manifest-path").arg(manifest);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| Error::usage(format!("cannot run cargo metadata: {error}; is cargo in PATH?")))?;
    if !output.status.success() {
        return Err(Error::failed(format!("cargo metadata failed ({})", output.status)));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| Error::failed(format!("cannot parse cargo metadata output: {error}")))
}

/// The binaries of the packages in `wanted` (all packages if `None`), from cargo-metadata
/// JSON.
pub fn bins_from_metadata(metadata: &serde_json::Value, wanted: Option<&[&str]>) -> Vec<GuestBin> {
    let target_dir = PathBuf::from(metadata["target_directory"].as_str().unwrap_or("target"));
    let mut bins = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        if wanted.is_some_and(|wanted| !wanted.contains(&name)) {
            continue;
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().into_iter().flatten().any(|kind| kind == "bin");
            if let (true, Some(bin)) = (is_bin, target["name"].as_str()) {
                bins.push(GuestBin {
                    package: name.to_string(),
                    bin: bin.to_string(),
                    manifest: manifest.clone(),
                    target_dir: target_dir.clone(),
                });
            }
        }
    }
    bins
}

/// Every guest binary of the workspace's guest packages.
pub fn guest_bins() -> Result<Vec<GuestBin>> {
    let metadata = metadata(None)?;
    let bins = bins_from_metadata(&metadata, Some(GUEST_PACKAGES));
    if bins.is_empty() {
        return Err(Error::failed(format!("no binaries found in the guest packages {GUEST_PACKAGES:?}")));
    }
    Ok(bins)
}

/// Builds one guest binary with guest-rt's linker script and copies it to `destination`.
pub fn build_guest_bin(guest: &GuestBin, destination: &Path) -> Result<PathBuf> {
    ensure_toolchain()?;
    let linker_script = workspace::root().join("guest-rt").join("guest.ld");
    if !linker_script.is_file() {
        return Err(Error::failed(format!(
            "guest linker script {} is missing; guest-rt provides it",
            linker_script.display()
        )));
    }
    let mut command = workspace::cargo();
    command
        .args(["rustc", "--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(&guest.manifest)
        .args(["-p", &guest.package, "--bin", &guest.bin, "--"])
        .arg(format!("-Clink-arg=-T{}", linker_script.display()))
        .arg("-Clink-arg=--no-pie");
    run_cargo(command, &format!("building guest {} (package {})", guest.bin, guest.package))?;
    let built = guest.target_dir.join(TARGET).join("release").join(&guest.bin);
    let artifact = destination.join(format!("{}.elf", guest.bin));
    copy(&built, &artifact)?;
    Ok(artifact)
}

/// Builds every guest binary into `target/ringfence/guests/`.
pub fn build_guests() -> Result<Vec<PathBuf>> {
    let destination = workspace::guests_dir();
    guest_bins()?.iter().map(|guest| build_guest_bin(guest, &destination)).collect()
}

/// Builds a user's guest crate in `dir` (a directory with `Cargo.toml` and exactly one
/// binary) the same way, into `target/ringfence/user-guests/`, and returns the ELF path.
pub fn build_guest_crate(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::usage(format!("{} has no Cargo.toml; a guest crate directory needs one", dir.display())));
    }
    let manifest = manifest.canonicalize().map_err(|error| Error::io("cannot resolve", &manifest, error))?;
    let metadata = metadata(Some(&manifest))?;
    let bins: Vec<GuestBin> =
        bins_from_metadata(&metadata, None).into_iter().filter(|bin| bin.manifest == manifest).collect();
    match bins.as_slice() {
        [bin] => build_guest_bin(bin, &workspace::artifact_dir().join("user-guests")),
        [] => Err(Error::usage(format!("{} defines no binary; add src/main.rs", manifest.display()))),
        many => Err(Error::usage(format!(
            "{} defines several binaries ({}); pass the built ELF file instead",
            manifest.display(),
            many.iter().map(|bin| bin.bin.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Builds everything `cargo xtask build` builds.
pub fn build_all() -> Result<()> {
    build_hypervisor()?;
    build_guests()?;
    crate::c_guests::build_c_guests()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_taken_from_the_wanted_packages_only() {
        let metadata = serde_json::json!({
            "target_directory": "/w/target",
            "packages": [
                {"name": "conformance-guests", "manifest_path": "/w/tests/guests/Cargo.toml",
                 "targets": [
                    {"name": "hello", "kind": ["bin"]},
                    {"name": "conformance_guests", "kind": ["lib"]},
                    {"name": "version", "kind": ["bin"]}]},
                {"name": "xtask", "manifest_path": "/w/xtask/Cargo.toml",
                 "targets": [{"name": "xtask", "kind": ["bin"]}]}
            ]
        });
        let bins = bins_from_metadata(&metadata, Some(GUEST_PACKAGES));
        let names: Vec<&str> = bins.iter().map(|bin| bin.bin.as_str()).collect();
        assert_eq!(names, ["hello", "version"]);
        assert_eq!(bins[0].package, "conformance-guests");
        assert_eq!(bins[0].target_dir, PathBuf::from("/w/target"));
        assert_eq!(bins_from_metadata(&metadata, None).len(), 3);
    }
}
