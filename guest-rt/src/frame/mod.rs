//! The context of an event taken in guest-kernel mode (SPEC.md §11.4): what a handler sees
//! and may change ([`TrapContext`]), what it asks for afterwards ([`TrapAction`]), the asm
//! entry stub that builds the context and the `iret` that leaves it, and the one-line
//! report of a frame. The trap dispatcher, the upcall entry and user runs all build on it;
//! guests reach these names through `trap`.

mod context;
mod report;
mod stub;

pub use context::{SavedRegisters, TrapAction, TrapContext, TrapHandler};
pub use report::{vector_name, ShowFrame, UNHANDLED_CRASH_CODE};
pub(crate) use stub::entry_stub;
pub use stub::iret;
