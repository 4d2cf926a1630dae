//! Hypercalls: the one dispatch table with the handlers, and the memory family's
//! operations.

pub mod table;
pub mod memory;
