//! The test programs, by name.

use std::process::ExitCode;

pub mod brk;
pub mod command;
pub mod efault;
pub mod exec;
pub mod fork;
pub mod fork_bomb;
pub mod fs;
pub mod memory_hog;
pub mod mmap;
pub mod pipe;
pub mod proc;
pub mod signal;
pub mod time;
pub mod vdso;
pub mod vector;

/// A program's entry point: it gets its arguments after its name.
pub type Main = fn(&[String]) -> ExitCode;

/// Every test program: its name (`test-<name>` in the initramfs) and entry point.
pub const PROGRAMS: &[(&str, Main)] = &[
    ("fork", fork::main),
    ("pipe", pipe::main),
    ("signal", signal::main),
    ("mmap", mmap::main),
    ("exec", exec::main),
    ("efault", efault::main),
    ("brk", brk::main),
    ("proc", proc::main),
    ("command", command::main),
    ("fs", fs::main),
    ("time", time::main),
    ("vector", vector::main),
    ("vdso", vdso::main),
    ("fork-bomb", fork_bomb::main),
    ("memory-hog", memory_hog::main),
];

/// The prefix of the programs' names as installed.
pub const PREFIX: &str = "test-";

/// The program `name` stands for: `fork` or `test-fork`.
pub fn find(name: &str) -> Option<Main> {
    let name = name.strip_prefix(PREFIX).unwrap_or(name);
    PROGRAMS.iter().find(|(program, _)| *program == name).map(|(_, main)| *main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_either_name() {
        assert!(find("fork").is_some() && find("test-fork").is_some() && find("test-memory-hog").is_some());
        assert!(find("nothing").is_none() && find("test-").is_none());
        let mut names: Vec<&str> = PROGRAMS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROGRAMS.len(), "names are unique");
    }
}
