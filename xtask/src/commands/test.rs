//! `cargo xtask test`: host unit tests, the build, then the conformance suite.

use clap::Args;
use std::path::PathBuf;
use xtask::accel::Accel;
use xtask::{workspace, Error, Result};

/// Options of `cargo xtask test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Accelerator for the conformance suite (default: kvm if usable, else tcg).
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Test this hypervisor image instead of the one built from this workspace.
    #[arg(long, value_name = "PATH")]
    hypervisor: Option<PathBuf>,
    /// Only run conformance cases whose names contain one of these.
    filters: Vec<String>,
}

fn step(name: &str, mut command: std::process::Command) -> Result<bool> {
    println!("xtask test: {name}");
    let status = command
        .status()
        .map_err(|error| Error::usage(format!("cannot run cargo for {name}: {error}; is cargo in PATH?")))?;
    Ok(status.success())
}

/// Runs every stage; fails if any failed.
pub fn main(args: TestArgs) -> Result<u8> {
    if let Some(path) = &args.hypervisor {
        if !path.is_file() {
            return Err(Error::usage(format!("--hypervisor {} does not exist", path.display())));
        }
    }
    xtask::qemu::ensure_qemu()?;
    xtask::qemu::check_accel_request(args.accel)?;
    let mut failed = Vec::new();

    let mut host = workspace::cargo();
    host.args(["test", "--workspace"]);
    if !step("host unit tests (cargo test --workspace)", host)? {
        failed.push("host unit tests");
    }

    println!("xtask test: build");
    if let Err(error) = xtask::build::build_all() {
        eprintln!("error: {error}");
        failed.push("build");
        return finish(&failed);
    }

    let mut suite = workspace::cargo();
    suite.args(["run", "--release", "--quiet", "-p", "conformance", "--"]);
    if let Some(accel) = args.accel {
        suite.args(["--accel", accel.name()]);
    }
    if let Some(path) = &args.hypervisor {
        let path = path.canonicalize().map_err(|error| Error::io("cannot resolve", path, error))?;
        suite.arg("--hypervisor").arg(path);
    }
    suite.args(&args.filters);
    if !step("conformance suite", suite)? {
        failed.push("conformance suite");
    }
    finish(&failed)
}

fn finish(failed: &[&str]) -> Result<u8> {
    if failed.is_empty() {
        println!("xtask test: everything passed");
        Ok(0)
    } else {
        Err(Error::failed(format!("xtask test: failed: {}", failed.join(", "))))
    }
}
