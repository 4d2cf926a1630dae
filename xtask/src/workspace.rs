//! Where the workspace and its artifacts live.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `target/ringfence`: every artifact the host tools produce.
pub fn artifact_dir() -> PathBuf {
    root().join("target").join("ringfence")
}

/// The hypervisor image `cargo xtask build` produces.
pub fn hypervisor_elf() -> PathBuf {
    artifact_dir().join("hypervisor.elf")
}

/// Directory of the built guest images, `<bin>.elf` each.
pub fn guests_dir() -> PathBuf {
    artifact_dir().join("guests")
}

/// Scratch directory for boot archives of runs and test cases.
pub fn runs_dir() -> PathBuf {
    artifact_dir().join("runs")
}

/// The `cargo` that invoked us (cargo sets `CARGO`), or `cargo` from PATH.
pub fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root());
    command
}

/// The cache of the accelerator probe's times for this host (see `accel`).
pub fn accel_probe_cache() -> PathBuf {
    artifact_dir().join("accel-probe")
}

/// The built image the accelerator probe boots.
pub fn probe_guest() -> PathBuf {
    guests_dir().join(format!("{}.elf", crate::accel::PROBE_GUEST))
}
