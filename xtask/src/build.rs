//! Building the hypervisor and guest images for `x86_64-unknown-none` and copying them to
//! `target/ringfence/` (contract: "Toolchain/build").
//!
//! All images a command needs are built by one `cargo build`: the hypervisor's and the
//! guest packages' build scripts pass their linker scripts, so no binary needs `cargo
//! rustc` and its extra arguments. Cargo then checks freshness once, links in parallel, and
//! a build with nothing changed costs one cargo start. Its JSON messages name the
//! executables, wherever the target directory is.

use crate::workspace;
use crate::{Error, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The bare-metal target every kernel image is built for.
pub const TARGET: &str = "x86_64-unknown-none";
/// Packages whose binaries are guest images.
pub const GUEST_PACKAGES: &[&str] = &["guest-kernel", "conformance-guests", "guide-listings"];
/// The hypervisor's package and binary.
const HYPERVISOR: &str = "hypervisor";

/// The directory of a guest package, relative to the workspace root.
fn package_dir(package: &str) -> &'static str {
    match package {
        "conformance-guests" => "tests/guests",
        "guide-listings" => "docs/listings",
        _ => "guest-kernel",
    }
}

/// One guest binary of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestBin {
    /// Cargo package name.
    pub package: String,
    /// Binary name; also the image name in the boot archive.
    pub bin: String,
    /// The package's `Cargo.toml`.
    pub manifest: PathBuf,
}

/// Which images one build makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Images {
    /// The hypervisor and every guest.
    All,
    /// The hypervisor and these guests (of [`guest_bins`]).
    Hypervisor(Vec<GuestBin>),
}

/// The arguments of the one `cargo build` that builds `images`.
pub fn cargo_args(images: &Images) -> Vec<String> {
    let mut args: Vec<String> =
        ["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics", "-p", HYPERVISOR]
            .map(str::to_string)
            .into();
    match images {
        Images::All => {
            for package in GUEST_PACKAGES {
                args.extend(["-p".to_string(), package.to_string()]);
            }
            args.push("--bins".to_string());
        }
        Images::Hypervisor(guests) => {
            let mut packages: Vec<&str> = guests.iter().map(|guest| guest.package.as_str()).collect();
            packages.sort_unstable();
            packages.dedup();
            for package in packages {
                args.extend(["-p".to_string(), package.to_string()]);
            }
            let mut bins: Vec<&str> = guests.iter().map(|guest| guest.bin.as_str()).collect();
            bins.push(HYPERVISOR);
            bins.sort_unstable();
            bins.dedup();
            for bin in bins {
                args.extend(["--bin".to_string(), bin.to_string()]);
            }
        }
    }
    args
}

/// The executables a `cargo build --message-format=json` run reported, as (binary name,
/// path), from its standard output.
pub fn executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| {
            let is_bin = message["target"]["kind"].as_array()?.iter().any(|kind| kind == "bin");
            let name = message["target"]["name"].as_str()?;
            let path = message["executable"].as_str()?;
            is_bin.then(|| (name.to_string(), PathBuf::from(path)))
        })
        .collect()
}

/// Runs a cargo build with JSON messages on its standard output (cargo's progress and
/// diagnostics go to the terminal as usual) and returns the executables it reported.
pub fn run_cargo(mut command: Command, what: &str) -> Result<Vec<(String, PathBuf)>> {
    eprintln!("xtask: building {what}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| Error::environment(format!("cannot run cargo to build {what}: {error}; is cargo in PATH?")))?;
    let mut messages = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
            messages.push_str(&line);
            messages.push('\n');
        }
    }
    let status = child.wait().map_err(|error| Error::environment(format!("cannot wait for cargo: {error}")))?;
    if !status.success() {
        return Err(Error::failed(format!("building {what} failed ({status}); see the compiler output above")));
    }
    Ok(executables(&messages))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io("cannot create", parent, error))?;
    }
    std::fs::copy(from, to)
        .map_err(|error| Error::failed(format!("cannot copy {} to {}: {error}", from.display(), to.display())))?;
    Ok(())
}

/// Makes sure the toolchain has every target and component `rust-toolchain.toml` lists
/// (the bare-metal [`TARGET`] and the userland's musl target among them), once per process.
pub fn ensure_toolchain() -> Result<()> {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if CHECKED.get().is_none() {
        crate::toolchain::ensure()?;
        let _ = CHECKED.set(());
    }
    Ok(())
}

/// Every guest binary of the workspace's guest packages, found as cargo finds binaries
/// (`src/main.rs`, `src/bin/<name>.rs`, `src/bin/<name>/main.rs`; the guest packages
/// declare no others): reading two directories is much cheaper than `cargo metadata`.
pub fn guest_bins() -> Result<Vec<GuestBin>> {
    let mut bins = Vec::new();
    for package in GUEST_PACKAGES {
        let dir = workspace::root().join(package_dir(package));
        let mut add = |bin: &str| {
            bins.push(GuestBin { package: package.to_string(), bin: bin.to_string(), manifest: dir.join("Cargo.toml") })
        };
        if dir.join("src/main.rs").is_file() {
            add(package);
        }
        let bin_dir = dir.join("src/bin");
        let Ok(entries) = std::fs::read_dir(&bin_dir) else { continue };
        let mut names = Vec::new();
        for entry in entries {
            let path = entry.map_err(|error| Error::io("cannot read", &bin_dir, error))?.path();
            let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_string();
            if (path.is_file() && path.extension().is_some_and(|ext| ext == "rs")) || path.join("main.rs").is_file() {
                names.push(stem);
            }
        }
        names.sort_unstable();
        names.iter().filter(|name| is_guest_image(package, name)).for_each(|name| add(name));
    }
    if bins.is_empty() {
        return Err(Error::failed(format!("no binaries found in the guest packages {GUEST_PACKAGES:?}")));
    }
    Ok(bins)
}

/// False for the one binary of the guest packages that is not a ringfence guest:
/// guest-kernel's native build ([`crate::native`]), a kernel for bare hardware.
fn is_guest_image(package: &str, bin: &str) -> bool {
    (package, bin) != (crate::native::PACKAGE, crate::native::BIN)
}

/// Builds guest-kernel's native kernel ([`crate::native`]) and copies it to
/// `target/ringfence/guest-kernel-native.elf`.
pub fn build_native_kernel() -> Result<PathBuf> {
    ensure_toolchain()?;
    let mut command = workspace::cargo();
    command.args(crate::native::cargo_args());
    let built = run_cargo(command, "guest-kernel's native kernel")?;
    let path = built
        .iter()
        .find(|(name, _)| name == crate::native::BIN)
        .map(|(_, path)| path)
        .ok_or_else(|| Error::failed(format!("cargo reported no executable for {}", crate::native::BIN)))?;
    let image = crate::native::image();
    copy(path, &image)?;
    Ok(image)
}

/// Builds `images` in one cargo invocation and copies them to `target/ringfence/`
/// (`hypervisor.elf`, `guests/<bin>.elf`); returns the copies, the hypervisor first.
pub fn build(images: &Images) -> Result<Vec<PathBuf>> {
    ensure_toolchain()?;
    let (what, wanted) = match images {
        Images::All => ("the hypervisor and every guest".to_string(), None),
        Images::Hypervisor(guests) => {
            let names: Vec<&str> = guests.iter().map(|guest| guest.bin.as_str()).collect();
            (["hypervisor"].iter().chain(&names).copied().collect::<Vec<_>>().join(", "), Some(names))
        }
    };
    let mut command = workspace::cargo();
    command.args(cargo_args(images));
    let built = run_cargo(command, &what)?;

    let hypervisor = built
        .iter()
        .find(|(name, _)| name == HYPERVISOR)
        .map(|(_, path)| path)
        .ok_or_else(|| Error::failed("cargo reported no hypervisor executable"))?;
    let mut copies = vec![workspace::hypervisor_elf()];
    copy(hypervisor, &copies[0])?;
    crate::hot_paths::check(&copies[0])?;
    for (name, path) in &built {
        if name == HYPERVISOR || wanted.as_ref().is_some_and(|wanted| !wanted.contains(&name.as_str())) {
            continue;
        }
        let copy_path = workspace::guests_dir().join(format!("{name}.elf"));
        copy(path, &copy_path)?;
        copies.push(copy_path);
    }
    if let Some(wanted) = wanted {
        if let Some(missing) = wanted.iter().find(|name| !built.iter().any(|(built, _)| built == *name)) {
            return Err(Error::failed(format!("cargo reported no executable for guest {missing}")));
        }
    }
    Ok(copies)
}

/// Builds everything `cargo xtask build` builds: the Rust images in one cargo invocation,
/// then the C guests (rebuilt only when a source changed), then guest-kernel's initramfs
/// (rewritten only when its contents changed).
pub fn build_all() -> Result<Vec<PathBuf>> {
    let mut images = build(&Images::All)?;
    images.extend(crate::c_guests::build_c_guests()?);
    images.push(crate::initramfs::initramfs()?);
    Ok(images)
}

/// Reads `cargo metadata --no-deps` for the crate of `manifest`.
fn metadata(manifest: &Path) -> Result<serde_json::Value> {
    let mut command = workspace::cargo();
    command.args(["metadata", "--format-version", "1", "--no-deps"]).arg("--manifest-path").arg(manifest);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| Error::environment(format!("cannot run cargo metadata: {error}; is cargo in PATH?")))?;
    if !output.status.success() {
        return Err(Error::failed(format!("cargo metadata for {} failed ({})", manifest.display(), output.status)));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| Error::failed(format!("cannot parse cargo metadata output: {error}")))
}

/// The binaries of the packages in `wanted` (all packages if `None`), from cargo-metadata
/// JSON.
pub fn bins_from_metadata(metadata: &serde_json::Value, wanted: Option<&[&str]>) -> Vec<GuestBin> {
    let mut bins = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        if wanted.is_some_and(|wanted| !wanted.contains(&name)) {
            continue;
        }
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().into_iter().flatten().any(|kind| kind == "bin");
            let bin = target["name"].as_str().filter(|bin| is_bin && is_guest_image(name, bin));
            if let Some(bin) = bin {
                bins.push(GuestBin { package: name.to_string(), bin: bin.to_string(), manifest: manifest.clone() });
            }
        }
    }
    bins
}

/// guest-rt's linker script, for the builds cargo does not run (gcc for the C guests).
/// Cargo builds learn its path from guest-rt's build script (`DEP_GUEST_RT_LINKER_SCRIPT`),
/// which names the same file.
pub fn guest_linker_script() -> PathBuf {
    workspace::root().join("guest-rt").join("guest.ld")
}

/// True if the package of `manifest` has a build script, from cargo-metadata JSON.
pub fn has_build_script(metadata: &serde_json::Value, manifest: &Path) -> bool {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| package["manifest_path"].as_str().is_some_and(|path| Path::new(path) == manifest))
        .flat_map(|package| package["targets"].as_array().into_iter().flatten())
        .any(|target| target["kind"].as_array().into_iter().flatten().any(|kind| kind == "custom-build"))
}

/// Builds a user's guest crate in `dir` (a directory with `Cargo.toml` and exactly one
/// binary) into `target/ringfence/user-guests/`, and returns the ELF path. The crate links
/// itself with guest-rt's linker script through its build script (as `cargo xtask
/// new-guest` writes it), so this is a plain `cargo build`, run in `dir` so that the
/// crate's own `.cargo/config.toml` applies as it does when the user runs cargo there; the
/// crate is its own workspace, with its own `Cargo.lock` and target directory
/// (`CARGO_TARGET_DIR` moves it, as usual).
pub fn build_guest_crate(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::usage(format!(
            "{} has no Cargo.toml; a guest crate directory needs one (`cargo xtask new-guest DIR` writes one)",
            dir.display()
        )));
    }
    let manifest = manifest.canonicalize().map_err(|error| Error::io("cannot resolve", &manifest, error))?;
    let metadata = metadata(&manifest)?;
    let bins: Vec<GuestBin> =
        bins_from_metadata(&metadata, None).into_iter().filter(|bin| bin.manifest == manifest).collect();
    let guest = match bins.as_slice() {
        [bin] => bin,
        [] => return Err(Error::usage(format!("{} defines no binary; add src/main.rs", manifest.display()))),
        many => {
            return Err(Error::usage(format!(
                "{} defines several binaries ({}); pass the built ELF file instead",
                manifest.display(),
                many.iter().map(|bin| bin.bin.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    if !has_build_script(&metadata, &manifest) {
        return Err(Error::usage(format!(
            "{} has no build script, so nothing links it with guest-rt's linker script; copy build.rs from \
             a crate `cargo xtask new-guest DIR` writes (it reads DEP_GUEST_RT_LINKER_SCRIPT from guest-rt)",
            manifest.display()
        )));
    }
    ensure_toolchain()?;
    let mut command = workspace::cargo();
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&guest.manifest)
        .args(["--bin", &guest.bin]);
    let built = run_cargo(command, &format!("guest crate {} (binary {})", dir.display(), guest.bin))?;
    let path = built
        .iter()
        .find(|(name, _)| *name == guest.bin)
        .map(|(_, path)| path)
        .ok_or_else(|| Error::failed(format!("cargo reported no executable for {}", guest.bin)))?;
    let artifact = workspace::artifact_dir().join("user-guests").join(format!("{}.elf", guest.bin));
    copy(path, &artifact)?;
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(package: &str, bin: &str) -> GuestBin {
        GuestBin { package: package.into(), bin: bin.into(), manifest: "/w/Cargo.toml".into() }
    }

    #[test]
    fn bins_are_taken_from_the_wanted_packages_only() {
        let metadata = serde_json::json!({
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
        assert_eq!(bins_from_metadata(&metadata, None).len(), 3);
    }

    #[test]
    fn a_guest_crate_without_a_build_script_is_told_apart() {
        let metadata = |kinds: &[&str]| {
            let targets: Vec<serde_json::Value> =
                kinds.iter().map(|kind| serde_json::json!({"name": "g", "kind": [kind]})).collect();
            serde_json::json!({"packages": [
                {"name": "g", "manifest_path": "/g/Cargo.toml", "targets": targets},
                {"name": "other", "manifest_path": "/o/Cargo.toml", "targets": [{"name": "build-script-build", "kind": ["custom-build"]}]}
            ]})
        };
        let manifest = Path::new("/g/Cargo.toml");
        assert!(has_build_script(&metadata(&["bin", "custom-build"]), manifest));
        assert!(!has_build_script(&metadata(&["bin"]), manifest), "another package's build script does not count");
        assert!(guest_linker_script().is_file(), "{}", guest_linker_script().display());
    }

    #[test]
    fn the_guest_scan_finds_what_cargo_metadata_finds() {
        let workspace = metadata(&workspace::root().join("Cargo.toml")).unwrap();
        let mut expected = bins_from_metadata(&workspace, Some(GUEST_PACKAGES));
        let mut scanned = guest_bins().unwrap();
        for bins in [&mut expected, &mut scanned] {
            for bin in bins.iter_mut() {
                bin.manifest = bin.manifest.canonicalize().unwrap();
            }
            bins.sort_by(|a, b| (&a.package, &a.bin).cmp(&(&b.package, &b.bin)));
        }
        assert_eq!(scanned, expected);
    }

    #[test]
    fn one_cargo_build_makes_every_image_of_a_command() {
        let common = "build --release --target x86_64-unknown-none --message-format=json-render-diagnostics";
        assert_eq!(
            cargo_args(&Images::All).join(" "),
            format!("{common} -p hypervisor -p guest-kernel -p conformance-guests -p guide-listings --bins")
        );
        let some = Images::Hypervisor(vec![
            guest("conformance-guests", "hello"),
            guest("guest-kernel", "guest-kernel"),
            guest("conformance-guests", "fault_loop"),
            guest("conformance-guests", "hello"),
        ]);
        assert_eq!(
            cargo_args(&some).join(" "),
            format!("{common} -p hypervisor -p conformance-guests -p guest-kernel --bin fault_loop --bin guest-kernel --bin hello --bin hypervisor")
        );
        assert_eq!(
            cargo_args(&Images::Hypervisor(Vec::new())).join(" "),
            format!("{common} -p hypervisor --bin hypervisor")
        );
    }

    #[test]
    fn executables_are_read_from_cargo_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"guest_rt"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"hello"},"executable":"/t/release/hello","fresh":true}"#,
            r#"{"reason":"build-script-executed","package_id":"x"}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"hypervisor"},"executable":"/t/release/hypervisor"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            executables(&messages),
            [
                ("hello".to_string(), PathBuf::from("/t/release/hello")),
                ("hypervisor".into(), "/t/release/hypervisor".into())
            ]
        );
    }
}
