//! Console input: the per-domain input ring and the Ctrl-] escape decoder.

pub mod input;
