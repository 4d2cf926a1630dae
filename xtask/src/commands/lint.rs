//! `cargo xtask lint`: every gate of [`xtask::lint::gates`], each run even when an earlier
//! one failed, so one run reports them all.

use xtask::{workspace, Error, Result};

/// Runs the gates; fails naming those that failed.
pub fn main() -> Result<u8> {
    // rustfmt, clippy and the bare-metal standard library, as for a build.
    xtask::toolchain::ensure()?;
    let rustdoc_flags = std::env::var("RUSTDOCFLAGS").ok();
    let mut failed = Vec::new();
    for gate in xtask::lint::gates(rustdoc_flags.as_deref()) {
        println!("xtask lint: {} (cargo {})", gate.name, gate.args.join(" "));
        let mut command = workspace::cargo();
        command.args(&gate.args).envs(gate.env.iter().map(|(name, value)| (name, value)));
        let status = command
            .status()
            .map_err(|error| Error::usage(format!("cannot run cargo for {}: {error}; is cargo in PATH?", gate.name)))?;
        if !status.success() {
            failed.push(gate.name);
        }
    }
    if failed.is_empty() {
        println!("xtask lint: every gate passed");
        Ok(0)
    } else {
        Err(Error::failed(format!("xtask lint: failed: {}", failed.join("; "))))
    }
}
