//! Exception handling for guest kernels (SPEC.md §11): one asm entry that every trap-table
//! vector (and the system-call callback) points at, a Rust dispatcher behind it, and a
//! table of Rust handlers.
//!
//! The hypervisor enters a handler with an
//! [`ExceptionFrame`](hypercall_abi::trap::ExceptionFrame) at RSP and every other
//! general register as it was when the event happened. The entry pushes the registers the
//! frame does not carry (RAX, RCX and R11 are in `frame.iret`), hands the dispatcher a
//! [`TrapContext`] over all of it, then restores the registers, steps over the frame
//! header and issues `iret`, which resumes whatever the handler left in `frame.iret`. So
//! a handler returns somewhere else by changing `rip`, and changes registers by writing
//! them in the context.
//!
//! ```ignore
//! guest_rt::trap::install()?;
//! guest_rt::trap::set_handler(vector::INVALID_OPCODE, |context| {
//!     context.skip(2); // over the ud2
//!     TrapAction::Resume
//! })?;
//! ```

mod dispatch;
mod record;
mod table;

pub use crate::frame::{
    iret, vector_name, SavedRegisters, ShowFrame, TrapAction, TrapContext, TrapHandler, UNHANDLED_CRASH_CODE,
};
pub use dispatch::entry_address;
pub use record::Record;
pub use table::{clear_handler, entry_for, grant_user, install, remove_vector, set_handler};
