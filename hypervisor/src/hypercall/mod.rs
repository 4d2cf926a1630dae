//! Hypercalls: what a handler sees (`guest`), the handlers by family (`version`,
//! `console`, `sched`, `vcpu`, and `memory`, whose operations the system runs on the
//! caller's memory), and the one dispatch table (`table`), in that order.

pub mod guest;
mod version;
mod console;
mod sched;
mod vcpu;
pub mod table;
pub mod memory;
