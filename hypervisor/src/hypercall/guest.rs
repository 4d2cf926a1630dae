//! What every hypercall handler works with: the calling domain as a [`Guest`], and the
//! [`Disposition`] a handler returns to the system.
//!
//! Only guest-kernel mode makes hypercalls, so guest pointers are read and written in
//! the kernel root.

use crate::domain::outcome::Outcome;
use crate::domain::vcpu::Vcpu;
use crate::mm::guest_memory::{check_range, GuestFault};
use hypercall_abi::Errno;

/// The calling domain as a handler may see it.
pub trait Guest {
    /// Copies guest virtual memory (kernel root) through the checked accessor.
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault>;
    /// Copies bytes into guest virtual memory (kernel root) through the checked accessor.
    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), GuestFault>;
    /// Sends bytes to the console under this domain's prefix.
    fn console_write(&mut self, bytes: &[u8]);
    /// The calling domain's vCPU.
    fn vcpu(&mut self) -> &mut Vcpu;
    /// Copies `count` (at most [`POLL_PORTS_MAX`]) ports of a POLL's array at `address`
    /// (kernel root, checked accessor) into the calling domain's [`PollPorts`] and
    /// returns them.
    fn read_poll_ports(&mut self, address: u64, count: usize) -> Result<&[u32], GuestFault>;
    /// `memory_op` with the hypercall's arguments, from element `done` of its batch (the
    /// system forwards to [`crate::hypercall::memory`]).
    fn memory_op(&mut self, arguments: &[u64; 6], done: u64) -> Batch;
    /// `address_space_op` with the hypercall's arguments.
    fn address_space_op(&mut self, arguments: &[u64; 6]) -> i64;
    /// `mmu_update` with the hypercall's arguments, from entry `done`.
    fn mmu_update(&mut self, arguments: &[u64; 6], done: u64) -> Batch;
    /// Whether the running hypercall has reached a moment the hypervisor has something
    /// else to do (SPEC.md §5.5): a preemptible hypercall that has made progress then
    /// stops at its next preemption point and returns [`Disposition::Preempted`].
    fn preemption_due(&mut self) -> bool;
    /// `event_channel_op` with the hypercall's arguments (the system forwards to
    /// `EventChannels::op` with the caller's id).
    fn event_channel_op(&mut self, arguments: &[u64; 6]) -> i64;
    /// `set_timer_op(deadline_ns)`: absolute system time, 0 cancels; returns 0 (the
    /// system owns the timers).
    fn set_timer(&mut self, deadline_ns: u64) -> i64;
    /// Copies up to `buffer.len()` bytes of this domain's pending console input into
    /// `buffer`, oldest first, *without* consuming them; returns how many.
    fn console_peek(&mut self, buffer: &mut [u8]) -> usize;
    /// Drops the oldest `count` bytes of pending console input (at most what the last
    /// [`Guest::console_peek`] returned): called only once they reached the guest.
    fn console_consume(&mut self, count: usize);
}

/// Most ports one `sched_op(POLL)` may list.
pub const POLL_PORTS_MAX: usize = 128;

/// The caller's POLL port list: the handler reads the guest's array straight into it and
/// the system reads it while the domain polls. One per domain, so a POLL carries only its
/// count (a 0.5 KiB list by value was zeroed once and copied twice per call); a domain
/// writes it only while running, never while it waits on it.
pub type PollPorts = [u32; POLL_PORTS_MAX];

/// A validated `sched_op(POLL)` whose ports are in the caller's [`PollPorts`]: the system
/// returns 0 at once if one of them is pending, else sleeps until one is raised or
/// `deadline_ns` (absolute system time; 0 = none) passes, then returns 0. Upcalls stay as
/// they are (no unmasking).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PollRequest {
    /// How many of the caller's [`PollPorts`] are polled (0 ..= [`POLL_PORTS_MAX`]), each
    /// in `1..PORTS_MAX`.
    pub count: usize,
    /// Absolute system time to give up at; 0 = never.
    pub deadline_ns: u64,
}

impl PollRequest {
    /// The polled ports, in the caller's list.
    pub fn ports<'a>(&self, list: &'a PollPorts) -> &'a [u32] {
        &list[..self.count.min(POLL_PORTS_MAX)]
    }
}

/// What the system must do after a hypercall.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Put the value in RAX and return to the caller.
    Return(i64),
    /// Put the value in RAX, then run the next runnable domain (the caller resumes later).
    Yield(i64),
    /// The caller is finished; release it and run the next domain.
    Shutdown(Outcome),
    /// `iret`: read the [`hypercall_abi::trap::IretFrame`] at the caller's RSP in the
    /// kernel root and resume as [`crate::trap::bounce::iret`] decides (RAX is not a result).
    Iret,
    /// `sched_op(BLOCK)`: clear `upcall_mask`; if `upcall_pending` is set return 0 at
    /// once, else sleep until the domain is woken (an event raised, its timer fired),
    /// then return 0 (the upcall is delivered on that return).
    Block,
    /// `sched_op(POLL)`: see [`PollRequest`].
    Poll(PollRequest),
    /// A preemption point was reached with work left (SPEC.md §5.5): the system keeps
    /// the progress, may run other domains, and resumes the same hypercall from it before
    /// the caller runs again. The guest sees only the time it took.
    Preempted(Progress),
}

/// How far a preempted hypercall got; held by the hypervisor, never read from the guest
/// (SPEC.md §5.5).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Elements completed: entries (`mmu_update`, `multicall`), extents (`memory_op`),
    /// bytes (`console_io`).
    pub done: u64,
    /// `multicall` only: the entry that was itself preempted, with its own progress. It
    /// resumes from here, never read again from the guest's array.
    pub entry: Option<PendingEntry>,
}

impl Progress {
    /// A hypercall that has not started.
    pub const START: Progress = Progress { done: 0, entry: None };

    /// `done` elements completed, no entry pending.
    pub const fn at(done: u64) -> Progress {
        Progress { done, entry: None }
    }
}

/// A multicall entry preempted in the middle of its own work.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// Its hypercall number.
    pub op: u64,
    /// Its arguments, as read from the array before it first ran.
    pub arguments: [u64; 6],
    /// Its own elements completed.
    pub done: u64,
}

/// What a preemptible batch did: finished with RAX's value, or stopped at a preemption
/// point after `done` elements.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Batch {
    /// The hypercall's result.
    Finished(i64),
    /// Elements completed so far; the rest waits for the continuation.
    Preempted(u64),
}

impl Batch {
    /// The disposition of a batch hypercall that is not a multicall.
    pub fn disposition(self) -> Disposition {
        match self {
            Batch::Finished(value) => Disposition::Return(value),
            Batch::Preempted(done) => Disposition::Preempted(Progress::at(done)),
        }
    }
}

/// SPEC.md §5.4's zero-length rule, written once for every hypercall that takes a guest
/// array or buffer with a count: a count of 0 reads and writes nothing, needs no page
/// mapped, and is valid at any guest address — but an address that is non-canonical or
/// in the hypervisor range is `-EFAULT` all the same, so no call accepts a pointer with
/// count 0 that it would refuse with count 1 for its address alone.
pub fn empty_array(address: u64) -> Result<(), Errno> {
    check_range(address, 0).map(drop).map_err(|_| Errno::EFAULT)
}

pub(super) fn error(errno: Errno) -> Disposition {
    Disposition::Return(errno.to_return())
}

pub(super) fn status(result: Result<(), Errno>) -> Disposition {
    match result {
        Ok(()) => Disposition::Return(0),
        Err(errno) => error(errno),
    }
}
