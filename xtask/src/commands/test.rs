//! `cargo xtask test`: host unit tests, the build, then the conformance suite.

use clap::Args;
use std::path::PathBuf;
use xtask::accel::Accel;
use xtask::{workspace, Error, Result};

/// Options of `cargo xtask test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Accelerator for the conformance suite (default: the faster of KVM and TCG here, measured once
    /// per host; when that is TCG and KVM works, a smoke subset runs under KVM too).
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

    let hypervisor = match &args.hypervisor {
        Some(path) => path.canonicalize().map_err(|error| Error::io("cannot resolve", path, error))?,
        None => workspace::hypervisor_elf(),
    };
    // One decision for the whole run, measured once per host (xtask::accel).
    let qemu = xtask::qemu::ensure_qemu()?;
    let choice = xtask::qemu::choose_accel(
        args.accel,
        &qemu,
        &hypervisor,
        &workspace::probe_guest(),
        &workspace::accel_probe_cache(),
    )?;
    for line in &choice.lines {
        println!("{line}");
    }
    let suite = |accel: Accel, smoke: bool| {
        let mut suite = workspace::cargo();
        suite.args(["run", "--release", "--quiet", "-p", "conformance", "--", "--accel", accel.name()]);
        suite.arg("--hypervisor").arg(&hypervisor);
        if smoke {
            suite.arg("--smoke");
        }
        suite.args(&args.filters);
        suite
    };
    if !step(&format!("conformance suite under {}", choice.accel.name()), suite(choice.accel, false))? {
        failed.push("conformance suite");
    }
    // KVM runs here but TCG was faster: the smoke subset keeps KVM proven.
    if args.accel.is_none()
        && choice.kvm_boots
        && choice.accel == Accel::Tcg
        && !step("conformance smoke subset under kvm (TCG ran the whole suite)", suite(Accel::Kvm, true))?
    {
        failed.push("conformance smoke subset under kvm");
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
