//! What a file system call asks of the kernel besides its return value: to put the caller
//! to sleep until something happens, or to send it a signal.
//!
//! The kernel has one kernel stack, so no call waits inside the core: a call that cannot
//! complete returns [`Outcome::Block`] having changed nothing, and the kernel runs it
//! again, from the same registers, once one of the [`Event`]s it names has happened (or
//! its timeout passed). Every call here is written to be run again that way.

use alloc::vec::Vec;

use crate::linux::Errno;
use crate::signal::{Signal, SignalSet};

/// A pipe's number (unique while the kernel runs; never reused).
pub type PipeId = u64;

/// Something that can wake a sleeping call.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// Bytes arrived in the pipe, or its last writer closed (readers see end of file).
    PipeReadable(PipeId),
    /// Room appeared in the pipe, or its last reader closed (writers see EPIPE).
    PipeWritable(PipeId),
    /// The console has something for `read`: a line (canonical mode), bytes (raw mode),
    /// or end of file.
    ConsoleReadable,
}

/// What a blocked call waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Any one of these wakes the call (none: only the timeout or a signal does).
    pub events: Vec<Event>,
    /// Nanoseconds after which the call is run again with [`super::Caller::timed_out`]
    /// set, counted from the first time this call blocked (not from each restart); `None`
    /// waits without a limit.
    pub timeout_ns: Option<u64>,
    /// The signal mask to hold while the call sleeps (`ppoll`, `pselect6`); the caller's
    /// own mask comes back when the call ends.
    pub signal_mask: Option<SignalSet>,
}

impl Wait {
    /// Waiting for one event, without a timeout.
    pub fn on(event: Event) -> Wait {
        Wait { events: alloc::vec![event], timeout_ns: None, signal_mask: None }
    }
}

/// How a system call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It completed: this is the return value (RAX).
    Done(u64),
    /// It cannot complete now and changed nothing: the caller sleeps until the wait is
    /// over, then the kernel runs the same call again from the same registers.
    Block(Wait),
    /// It failed with `error` and the caller is sent `signal` (a write to a pipe with no
    /// reader: EPIPE and SIGPIPE).
    FailAndSignal {
        /// The error the call returns.
        error: Errno,
        /// The signal for the calling process.
        signal: Signal,
    },
}

/// What every file system call returns.
pub type CallResult = Result<Outcome, Errno>;

/// A completed call's return value.
pub(crate) fn done(value: impl Into<u64>) -> CallResult {
    Ok(Outcome::Done(value.into()))
}
