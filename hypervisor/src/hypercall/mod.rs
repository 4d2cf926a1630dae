//! Hypercalls: what a handler sees (`guest`), the handlers by family (`version`,
//! `console`, `sched`, `vcpu`, and `memory`, whose operations the system runs on the
//! caller's memory), and the one dispatch table (`table`), in that order.

mod console;
pub mod guest;
pub mod memory;
mod sched;
pub mod table;
mod vcpu;
mod version;
