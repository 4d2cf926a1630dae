//! The console's policy: input (the per-domain input ring and the Ctrl-] escape decoder)
//! and output (what a source's bytes may put on the wire).

pub mod input;
pub mod output;
