//! `kernel-test`: guest-kernel's test programs in one executable. Run as `test-<program>`
//! (a link to it) or as `kernel-test <program> [arguments]`; `kernel-test --list` prints
//! the programs, one a line, which is how `cargo xtask` learns what to link.

use std::process::ExitCode;

use guest_kernel_user::programs::{find, PREFIX, PROGRAMS};

fn usage() -> ExitCode {
    let names: Vec<&str> = PROGRAMS.iter().map(|(name, _)| *name).collect();
    eprintln!("usage: kernel-test PROGRAM [ARGUMENTS] | kernel-test --list (programs: {})", names.join(" "));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let invoked = arguments.first().map(String::as_str).unwrap_or_default();
    let invoked = invoked.rsplit('/').next().unwrap_or_default();
    if let Some(main) = invoked.strip_prefix(PREFIX).and_then(find) {
        return main(&arguments[1..]);
    }
    match arguments.get(1).map(String::as_str) {
        Some("--list") if arguments.len() == 2 => {
            for (name, _) in PROGRAMS {
                println!("{PREFIX}{name}");
            }
            ExitCode::SUCCESS
        }
        Some(name) => match find(name) {
            Some(main) => main(&arguments[2..]),
            None => usage(),
        },
        None => usage(),
    }
}
