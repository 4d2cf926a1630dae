//! Guests written in C (`tests/guests-c/*.c`): each file is one freestanding image, compiled
//! by gcc against the generated ABI header (`hypercall-abi/include/ringfence.h`) and linked
//! with guest-rt's linker script into `target/ringfence/guests/<stem>.elf`, where the
//! conformance runner and `cargo xtask run --guest <stem>` find it like any other guest.

use crate::{workspace, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The C compiler.
pub const GCC: &str = "gcc";
/// The Debian package that provides it.
pub const GCC_PACKAGE: &str = "gcc";

/// Directory of the C guests' sources, relative to the workspace root.
pub const SOURCE_DIR: &str = "tests/guests-c";

/// Flags for a freestanding guest in the kernel code model (the image lives in the top
/// 2 GiB, guest-rt/guest.ld), without SSE (no extended state assumed), red zone, stack
/// protector or unwind tables.
pub const CFLAGS: &[&str] = &[
    "-std=c11",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-fno-pic",
    "-fno-pie",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// The C guests' source files, sorted.
pub fn sources() -> Result<Vec<PathBuf>> {
    let dir = workspace::root().join(SOURCE_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|error| Error::io("cannot list", &dir, error))?;
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry.map_err(|error| Error::io("cannot list", &dir, error))?.path();
        if path.extension().is_some_and(|extension| extension == "c") {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// The image names of the C guests (their file stems).
pub fn names() -> Vec<String> {
    sources()
        .unwrap_or_default()
        .iter()
        .filter_map(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .collect()
}

fn have_gcc() -> bool {
    Command::new(GCC).arg("--version").output().is_ok_and(|output| output.status.success())
}

/// Finds gcc, installing it with apt-get when running as root on Debian (as QEMU is).
fn ensure_gcc() -> Result<()> {
    if have_gcc() {
        return Ok(());
    }
    if crate::packages::apt_install(GCC, GCC_PACKAGE)? && have_gcc() {
        return Ok(());
    }
    Err(Error::environment(format!(
        "{GCC} not found in PATH; the C guests need it: sudo apt-get install {GCC_PACKAGE}"
    )))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

/// True if `output` exists and is newer than every input.
fn up_to_date(output: &Path, inputs: &[&Path]) -> bool {
    let Some(built) = modified(output) else { return false };
    inputs.iter().all(|input| modified(input).is_some_and(|time| time <= built))
}

/// The gcc command line that builds `source` into `output`.
pub fn gcc_command(source: &Path, output: &Path) -> Command {
    let root = workspace::root();
    let mut command = Command::new(GCC);
    command
        .args(CFLAGS)
        .arg("-I")
        .arg(root.join("hypercall-abi").join("include"))
        .arg("-T")
        .arg(crate::build::guest_linker_script())
        .args(["-Wl,--no-pie", "-Wl,--build-id=none", "-o"])
        .arg(output)
        .arg(source);
    command
}

/// Builds every C guest whose image is older than its source, the ABI header, the
/// linker script or this file (its flags); returns every C guest image.
pub fn build_c_guests() -> Result<Vec<PathBuf>> {
    let root = workspace::root();
    let header = crate::c_header::header_path();
    let linker_script = crate::build::guest_linker_script();
    // The flags live here: a change to them rebuilds too.
    let flags = root.join("xtask").join("src").join("c_guests.rs");
    let destination = workspace::guests_dir();
    let mut images = Vec::new();
    for source in sources()? {
        let stem = source.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        let output = destination.join(format!("{stem}.elf"));
        if !up_to_date(&output, &[&source, &header, &linker_script, &flags]) {
            ensure_gcc()?;
            std::fs::create_dir_all(&destination).map_err(|error| Error::io("cannot create", &destination, error))?;
            let status = gcc_command(&source, &output)
                .status()
                .map_err(|error| Error::environment(format!("cannot run {GCC}: {error}")))?;
            if !status.success() {
                let _ = std::fs::remove_file(&output);
                return Err(Error::failed(format!(
                    "building C guest {} failed ({status}); see gcc's output above",
                    source.display()
                )));
            }
        }
        images.push(output);
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_guests_are_found() {
        assert!(names().contains(&"c_hypercalls".to_string()));
    }

    #[test]
    fn staleness_follows_mtimes() {
        let dir = std::env::temp_dir().join(format!("ringfence-c-guests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.c");
        let output = dir.join("out.elf");
        std::fs::write(&input, "x").unwrap();
        assert!(!up_to_date(&output, &[&input]), "a missing output is stale");
        std::fs::write(&output, "y").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&input).unwrap().set_modified(old).unwrap();
        assert!(up_to_date(&output, &[&input]));
        std::fs::File::options().write(true).open(&output).unwrap().set_modified(old).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(old + std::time::Duration::from_secs(1))
            .unwrap();
        assert!(!up_to_date(&output, &[&input]), "a newer input makes it stale");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
