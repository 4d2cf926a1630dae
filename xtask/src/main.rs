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
    /// Build the hypervisor, every guest and guest-kernel's initramfs into target/ringfence/.
    Build,
    /// Boot guests under the hypervisor in QEMU, streaming the console; exits with the
    /// hypervisor's exit status (124 on timeout, 125 if QEMU ended without it).
    Run(commands::run::RunArgs),
    /// Boot as `run` does, halted, with gdb attached: the hypervisor's symbols and a guest's
    /// (`--symbols`), built with full debug information (README: "Debugging with gdb").
    Gdb(commands::gdb::GdbArgs),
    /// Host unit tests, then the build, guest-kernel's native build (`run --native`), the
    /// conformance suite under QEMU, README's gdb session (`cargo xtask gdb --batch`) and
    /// README's first steps (its "What you will see" listing, a new-guest crate built
    /// outside the checkout).
    Test(commands::test::TestArgs),
    /// The static gates CI enforces: cargo fmt --check, clippy (host, x86_64-unknown-none,
    /// and x86_64-unknown-linux-musl for guest-kernel's userland) and rustdoc, each with
    /// warnings denied.
    Lint,
    /// Fuzz the hypercall interface: fuzzer domains beside a heartbeat witness, with the
    /// hypervisor's end-of-run audit (README: "Fuzzing").
    Fuzz(commands::fuzz::FuzzArgs),
    /// Run the bench guests (one boot each) and compare each row with its native Linux reference measured in this run.
    Bench(commands::bench::BenchArgs),
    /// Write a new guest crate into PATH (a new or empty directory, in or out of the
    /// checkout) that `cargo xtask run --guest PATH` builds and boots.
    NewGuest(commands::new_guest::NewGuestArgs),
    /// Regenerate the C header hypercall-abi/include/ringfence.h from hypercall-abi.
    GenHeader,
}

/// The exit code of a command line clap did not accept: 0 for --help and --version (they
/// print to stdout), [`xtask::error::EXIT_USAGE`] for a real error.
fn parse_exit_code(error: &clap::Error) -> i32 {
    if error.use_stderr() {
        xtask::error::EXIT_USAGE
    } else {
        0
    }
}

fn main() -> ExitCode {
    // Bad arguments are a usage error like any other (exit 121, SPEC.md §10), not clap's 2;
    // --help and --version still print and succeed.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(parse_exit_code(&error)).unwrap_or(1));
        }
    };
    let result = match cli.command {
        Command::Build => commands::build::main(),
        Command::Run(args) => commands::run::main(args),
        Command::Gdb(args) => commands::gdb::main(args),
        Command::Test(args) => commands::test::main(args),
        Command::Bench(args) => commands::bench::main(args),
        Command::Fuzz(args) => commands::fuzz::main(args),
        Command::Lint => commands::lint::main(),
        Command::GenHeader => commands::gen_header::main(),
        Command::NewGuest(args) => commands::new_guest::main(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(u8::try_from(error.exit_code).unwrap_or(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_exit_with_the_usage_code_and_help_succeeds() {
        let code = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(_) => None,
            Err(error) => Some(parse_exit_code(&error)),
        };
        assert_eq!(code(&["xtask", "new-guest"]), Some(xtask::error::EXIT_USAGE));
        assert_eq!(code(&["xtask", "run", "--bogus"]), Some(xtask::error::EXIT_USAGE));
        assert_eq!(code(&["xtask", "--help"]), Some(0));
        assert_eq!(code(&["xtask", "new-guest", "/tmp/g", "--name", "g"]), None);
    }
}
