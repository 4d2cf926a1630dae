//! `cargo xtask`: build, run, test and benchmark ringfence under QEMU.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Build, run, test and benchmark ringfence under QEMU.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the hypervisor and every guest into target/ringfence/.
    Build,
    /// Boot guests under the hypervisor in QEMU, streaming the console; exits with the
    /// hypervisor's exit status (124 on timeout, 125 if QEMU ended without it).
    Run(commands::run::RunArgs),
    /// Boot as `run` does, halted, with gdb attached: the hypervisor's symbols and a guest's
    /// (`--symbols`), built with full debug information (README: "Debugging with gdb").
    Gdb(commands::gdb::GdbArgs),
    /// Host unit tests, then the build, then the conformance suite under QEMU, then
    /// README's gdb session (`cargo xtask gdb --batch`).
    Test(commands::test::TestArgs),
    /// The static gates CI enforces: cargo fmt --check, clippy (host and
    /// x86_64-unknown-none) and rustdoc, each with warnings denied.
    Lint,
    /// Run the bench guests (one boot each) and compare each row with its native Linux reference measured in this run.
    Bench(commands::bench::BenchArgs),
    /// Regenerate the C header hypercall-abi/include/ringfence.h from hypercall-abi.
    GenHeader,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => commands::build::main(),
        Command::Run(args) => commands::run::main(args),
        Command::Gdb(args) => commands::gdb::main(args),
        Command::Test(args) => commands::test::main(args),
        Command::Bench(args) => commands::bench::main(args),
        Command::Lint => commands::lint::main(),
        Command::GenHeader => commands::gen_header::main(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(u8::try_from(error.exit_code).unwrap_or(1))
        }
    }
}
