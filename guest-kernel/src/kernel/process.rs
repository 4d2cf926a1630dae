//! A process: its registers, address space, files, signals, and why it is not running.

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use guest_kernel_core::files::{ProcessFiles, Wait};
use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{ExitStatus, SignalSet, Signals};

use super::signal_frame::Information;
use super::space::Space;
use crate::arch::machine::UserContext;

/// Why a process is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sleep {
    /// A file system call waits (pipes, the console, `poll`).
    Files(Wait),
    /// `wait4` waits for a child to change state.
    Child,
    /// A `vfork` parent waits for its child to `execve` or exit.
    Vfork(Pid),
    /// `rt_sigsuspend`/`pause`: only a signal wakes it.
    Signal,
    /// `nanosleep`, `clock_nanosleep`: only the deadline (or a signal) wakes it.
    Time,
    /// `futex(FUTEX_WAIT)` on this user address.
    Futex(u64),
}

/// What a process is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Ready to run (or running).
    Ready,
    /// Asleep in the system call its registers hold; it runs again from them when woken.
    Blocked(Sleep),
    /// Stopped by a signal until SIGCONT.
    Stopped,
    /// Exited; waiting to be reaped.
    Zombie(ExitStatus),
}

impl State {
    /// Whether the process may run. Asked a few times per system call: a discriminant test,
    /// where `== State::Ready` calls the derived comparison of the whole enum out of line.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready)
    }
}

/// A blocked system call's bookkeeping across restarts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Restart {
    /// The call's number (RAX is overwritten only when it completes).
    pub number: u64,
    /// When it first blocked (ns since boot): timeouts count from here.
    pub since_ns: u64,
    /// Its deadline, if it has one (ns since boot).
    pub deadline_ns: Option<u64>,
    /// The deadline passed: the call is run once more to say so.
    pub timed_out: bool,
    /// The mask to restore when the call ends (`ppoll`, `rt_sigsuspend` swap masks).
    pub saved_mask: Option<SignalSet>,
}

/// CPU time and faults, for `/proc`, `times` and `getrusage`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// In user mode.
    pub user_ns: u64,
    /// In the kernel on its behalf.
    pub system_ns: u64,
    /// Of waited-for children, user mode.
    pub children_user_ns: u64,
    /// Of waited-for children, kernel.
    pub children_system_ns: u64,
    /// Faults resolved without I/O.
    pub minor_faults: u64,
    /// When it started (ns since boot).
    pub start_ns: u64,
}

/// One process.
pub struct Process {
    /// The executable's file name (`comm`).
    pub name: Vec<u8>,
    /// `execve`'s arguments, each followed by a NUL (`/proc/<pid>/cmdline`).
    pub command_line: Vec<u8>,
    /// User-mode state.
    pub context: Box<UserContext>,
    /// The address space (`None` once it exited).
    pub space: Option<Space>,
    /// Open files, the working directory and the file-creation mask (`None` once it
    /// exited).
    pub files: Option<ProcessFiles>,
    /// Signal dispositions, mask, pending set.
    pub signals: Signals,
    /// What it is doing.
    pub state: State,
    /// Set while a system call is blocked (or about to be restarted).
    pub restart: Option<Restart>,
    /// `set_tid_address`/`CLONE_CHILD_CLEARTID`: zeroed at exit.
    pub clear_child_tid: u64,
    /// Its `vfork` parent, until it calls `execve` or exits.
    pub vfork_parent: Option<Pid>,
    /// CPU time and faults.
    pub usage: Usage,
    /// For each pending signal, what its handler's `siginfo` says: the sender (kill),
    /// the child (SIGCHLD), the faulting address (SIGSEGV).
    pub signal_information: BTreeMap<u32, Information>,
}
