//! The file side of the Linux system-call layer: open files, pipes, the console terminal,
//! `/dev` and `/proc` over the in-memory file system, and the system calls on them.
//!
//! The kernel owns one [`Files`] and one [`ProcessFiles`] per process. For a system call
//! it builds a [`Caller`] (the process's pid, files, memory, and a view of all processes
//! for `/proc`) and calls [`dispatch`], which answers `None` for calls that are not about
//! files, or the call's [`Outcome`]:
//!
//! * `Done(value)`: the return value;
//! * `Err(errno)`: `-errno` is returned;
//! * `Block(wait)`: nothing changed; the process sleeps until one of `wait.events` is
//!   raised (the kernel collects them with [`Files::take_events`] after every call and
//!   every console input) or `wait.timeout_ns` passes, then the same call runs again
//!   from the same registers (with [`Caller::timed_out`] set if the timeout woke it). A
//!   signal arriving meanwhile ends the sleep with EINTR (nothing was done, so that is
//!   always correct);
//! * `FailAndSignal { error, signal }`: `-error` is returned and `signal` sent to the
//!   caller (EPIPE and SIGPIPE).
//!
//! Console input goes to [`Files::console_input`], which returns the signals typed
//! (Ctrl-C: SIGINT for the foreground group). `fork`, `execve` and `exit` go through
//! [`ProcessFiles::fork`], [`ProcessFiles::exec`] and [`ProcessFiles::exit`].
//!
//! Every pointer argument goes through [`crate::user_memory::UserMemory`] (EFAULT, never
//! a fault in the kernel); every descriptor is checked (EBADF); lengths from user space
//! never size a kernel allocation beyond a fixed bound: data moves in chunks.

mod caller;
mod console;
pub mod control;
pub mod directories;
mod dispatch;
pub mod io;
pub mod metadata;
mod namespace;
pub mod open;
mod open_file;
mod outcome;
mod proc;
mod process_files;
pub mod readiness;
#[cfg(test)]
mod testing;
mod transfer;
mod world;

pub use caller::Caller;
pub use console::{Console, ConsoleOutput, ConsoleSignal};
pub use dispatch::{dispatch, CALLS};
pub use namespace::Location;
pub use open_file::{Access, Device, FileRef, OpenFile};
pub use outcome::{CallResult, Event, Outcome, PipeId, Wait};
pub use proc::{MemoryTotals, ProcNode, ProcessFile, ProcessInfo, ProcessState, ProcessStatus, CLOCK_TICKS_PER_SECOND};
pub use process_files::{ProcessFiles, DEFAULT_UMASK};
pub use world::Files;
