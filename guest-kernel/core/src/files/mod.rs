//! The file side of the Linux system-call layer: open files, pipes, socket pairs, the
//! console terminal, `/dev` and `/proc` over the in-memory file system, and the system
//! calls on them ([`CALLS`] lists them).
//!
//! What the kernel does with it:
//!
//! * At boot: unpack the initramfs into a [`crate::fs::tree::FileSystem`], make the
//!   [`Files`] over it with a [`ConsoleOutput`] writing to the platform console, make
//!   init's [`ProcessFiles`] and give it the console with [`Files::install_console`].
//! * For a system call: [`Files::set_now`] with the wall clock, build a [`Caller`] (the
//!   process's pid, its [`ProcessFiles`], its memory, the kernel's [`ProcessInfo`], and
//!   whether this run follows the call's timeout) and call [`dispatch`], which answers
//!   `None` for a call that is not about files, else:
//!   * `Ok(Outcome::Done(value))`: `value` goes in RAX;
//!   * `Err(errno)`: `errno.to_return()` goes in RAX;
//!   * `Ok(Outcome::Block(wait))`: nothing changed; the process sleeps until one of
//!     `wait.events` is raised or `wait.timeout_ns` (counted from the first time this
//!     call blocked, not from each run) passes, holding `wait.signal_mask` if given; then
//!     the same call runs again from the same registers, with [`Caller::timed_out`] set if
//!     the timeout woke it. A signal arriving meanwhile ends the sleep: the call returns
//!     EINTR (or is run again under `SA_RESTART`); both are correct, as it did nothing;
//!   * `Ok(Outcome::FailAndSignal { error, signal })`: `-error` goes in RAX and `signal` is
//!     sent to the caller (EPIPE and SIGPIPE, from a pipe or a stream socket).
//!
//!   A call borrows the caller's [`ProcessFiles`] mutably and the [`ProcessInfo`]
//!   shared, so the kernel keeps the one apart from what the other reads (a map of
//!   [`ProcessFiles`] by pid, or the entry taken out of the process for the call).
//! * After every call, console input and exit: [`Files::take_events`], and wake every
//!   process sleeping on one of them.
//! * When console input arrives: [`Files::console_input`]; each [`ConsoleSignal`] it
//!   returns (Ctrl-C: SIGINT) goes to every process of its group.
//! * `fork`: [`ProcessFiles::fork`]; `execve`, once it cannot fail: [`ProcessFiles::exec`];
//!   exit: [`ProcessFiles::exit`] (never just drop a [`ProcessFiles`]: its pipes would stay
//!   open). `execve` finds its program with [`Files::resolve`] and reads it from
//!   [`Files::fs`].
//!
//! Every pointer argument goes through [`crate::user_memory::UserMemory`] (EFAULT, never a
//! fault in the kernel); every descriptor is checked (EBADF); lengths from user space
//! never size a kernel allocation beyond a fixed bound: data moves in chunks, and a
//! transfer is cut to Linux's `MAX_RW_COUNT`.

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
pub mod socket;
mod socket_end;
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
