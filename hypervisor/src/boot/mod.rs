//! Boot inputs: the guest-image archive and the command line.

pub mod archive;
pub mod command_line;
#[cfg(test)]
mod parser_tests;
