//! The running system: the domain table and what every entry into the hypervisor does
//! to it. The binary holds it behind a lock and carries out the [`Step`]s it returns.
//!
//! This file is the table itself: domains, entering and leaving them, the loaded root
//! and the time published to them. The other files add to [`System`] in this order,
//! each using only those before it: `tracing` (the hypercall trace's rings and drains,
//! which leaving a domain uses too), `wakeups` (raising events, waking sleepers,
//! timers), `focus` (console input), `lifecycle` (kill, end, the summary), `switch` (who
//! runs next, idling), `delivery` (returning to a guest, bounces and upcalls),
//! `hypercall` and `trap` (the entries), `boot` (building the domains and the first
//! entry).

pub mod audit;
pub mod boot;
mod delivery;
mod focus;
pub mod hypercall;
mod lifecycle;
mod switch;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_entry;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_records;
#[cfg(test)]
mod tests_seqlock;
#[cfg(test)]
mod tests_traps;
mod tracing;
mod trap;
pub mod wakeups;

use crate::console::input::{EscapeDecoder, InputRing};
use crate::domain::outcome::Outcome;
use crate::domain::vcpu::{Mode, Vcpu};
use crate::event::channels::EventChannels;
use crate::hypercall::guest::{PollPorts, PollRequest};
use crate::mm::domain_memory::DomainMemory;
use crate::mm::frames::{Frame, FrameAllocator};
use crate::mm::paging::{AddressSpace, FrameMemory};
use crate::platform::{say, Platform};
use crate::sched::policy::Scheduler;
use crate::time::{Clock, DeadlineCache, Timers};
use crate::trace::Trace;
use crate::trap::frame::{ReturnPath, TrapFrame};
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::shared_info::SharedInfo;
use spin::Mutex;
use zerocopy::IntoBytes;

/// What a domain that is not running is waiting for.
#[derive(Clone, Debug, Default)]
pub enum Wait {
    /// Not waiting (running or queued).
    #[default]
    Nothing,
    /// `sched_op(BLOCK)`: any unmasked event.
    Event,
    /// `sched_op(POLL)`: one of the ports in its [`Domain::poll_ports`], or the deadline.
    Ports(PollRequest),
}

/// One domain.
pub struct Domain<E> {
    /// Its id (1, 2, ... in boot order).
    pub id: u32,
    /// The image it was built from.
    pub name: String,
    /// Saved registers while not running.
    pub state: TrapFrame,
    /// The virtual CPU's paravirtual state.
    pub vcpu: Vcpu,
    /// `None` once the domain has ended.
    pub memory: Option<DomainMemory>,
    /// Its x87/SSE/AVX registers while not running.
    pub extended_state: E,
    /// What it sleeps for, if blocked.
    pub wait: Wait,
    /// Its last POLL's ports (SPEC.md §20.3), which [`Wait::Ports`] counts. Inline (0.5 KiB
    /// per domain): a box would make building a domain one more allocation that can fail.
    pub poll_ports: PollPorts,
    /// Its timer expired while it was neither blocked nor polling, and no `BLOCK` has
    /// returned for it since: the next `BLOCK` returns at once (SPEC.md §20.2). Without it
    /// a timer reached before `BLOCK` — as a deadline a moment ahead easily is — would be
    /// lost to a domain with `VIRQ_TIMER` unbound, which would sleep for good.
    pub timer_expired: bool,
    /// Whether it has run at all (for the boot line that all domains have).
    pub entered: bool,
    /// Console input not yet read (SPEC.md §21).
    pub input: InputRing,
    /// Its hypercall stopped at a preemption point, to go on before it runs again
    /// (SPEC.md §5.5).
    pub continuation: Option<hypercall::Continuation>,
}

impl<E> Domain<E> {
    /// The address space of the mode the vCPU is in.
    pub fn current_space(&self) -> Option<&AddressSpace> {
        let memory = self.memory.as_ref()?;
        match self.vcpu.mode {
            Mode::Kernel => Some(memory.kernel_space()),
            Mode::User => memory.user_space(),
        }
    }

    /// CR3 for the mode the vCPU is in.
    pub fn current_root(&self) -> Option<Frame> {
        let memory = self.memory.as_ref()?;
        match self.vcpu.mode {
            Mode::Kernel => Some(memory.kernel_root()),
            Mode::User => memory.user_root(),
        }
    }
}

/// What the machine does next after the system handled an entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Return to the current domain with the (updated) frame, by this path.
    Resume(ReturnPath),
    /// No domain can run: halt with the system unlocked until an interrupt, then call
    /// [`System::resume_after_idle`].
    Idle,
    /// Every domain has ended: the summary is printed, exit with this status.
    Exit(ExitStatus),
    /// The current domain's hypercall was preempted and goes on now: call
    /// [`System::continue_hypercall`] (from the machine's loop, so a chain of
    /// continuations does not grow the stack).
    Continue,
}

/// The domains and everything shared between them.
pub struct System<P: Platform> {
    /// The machine.
    pub platform: P,
    /// Frame contents.
    pub memory: P::Memory,
    /// Every free frame.
    pub frames: &'static Mutex<FrameAllocator>,
    /// Every domain built, live or ended; domain `i` has id `i + 1`.
    pub domains: Vec<Domain<P::ExtendedState>>,
    /// The index of the running domain.
    pub current: usize,
    /// How each domain ended (and each refused one).
    pub outcomes: Vec<Outcome>,
    /// The root whose slots 256..272 every address space copies.
    pub hypervisor_root: Frame,
    /// For the summary's frame-leak check.
    pub frames_free_at_start: u64,
    /// Who runs next; domain `i` is scheduler index `i`.
    pub scheduler: Scheduler,
    /// Every domain's event-channel ports.
    pub events: EventChannels,
    /// TSC to nanoseconds since boot (SPEC.md §19).
    pub clock: Clock,
    /// The TSC of the earliest deadline, as last converted with `clock`.
    pub deadline_cache: DeadlineCache,
    /// Each domain's `set_timer_op` deadline.
    pub timers: Timers,
    /// Each polling domain's `sched_op(POLL)` timeout.
    pub poll_deadlines: Timers,
    /// (wc_sec, wc_nsec): the wallclock at system time 0, from the RTC.
    pub wallclock: (u32, u32),
    /// The TSC at hypervisor entry, for the boot lines.
    pub entry_tsc: u64,
    /// How many domains have not run yet: when the last one first runs, the boot line
    /// says how long it took to start them all.
    pub never_entered: usize,
    /// TSC ticks per second (for the summary's milliseconds).
    pub tsc_hz: u64,
    /// The domain console input goes to.
    pub focus: Option<u32>,
    /// The Ctrl-] escape state (SPEC.md §21.3).
    pub escape: EscapeDecoder,
    /// The hypercall trace's rings, when `trace=` selected a domain (SPEC.md §22).
    pub trace: Option<Trace>,
    /// The counts the end-of-run audit compares against, when `audit` was given.
    pub audit_start: Option<audit::Counts>,
    /// The root loaded last, so unchanged roots are not reloaded (a CR3 write is a trap
    /// on some hosts). Every change to a space that is not loaded is followed by a load
    /// before that space is used, so skipping same-root loads never leaves stale TLB
    /// entries.
    loaded_root: Option<Frame>,
}

/// Byte offset of `wc_version` in the shared-info page.
const WALLCLOCK_OFFSET: usize = core::mem::offset_of!(SharedInfo, wc_version);
/// Byte offset of `vcpu_info[0].time`.
const TIME_INFO_OFFSET: usize =
    core::mem::offset_of!(SharedInfo, vcpu_info) + core::mem::offset_of!(hypercall_abi::shared_info::VcpuInfo, time);

/// The index of domain `id` among `domains`, if it is still live (ids start at 1).
pub fn live_index<E>(domains: &[Domain<E>], id: u32) -> Option<usize> {
    let index = (id as usize).checked_sub(1)?;
    domains.get(index).filter(|domain| domain.memory.is_some()).map(|_| index)
}

/// What a new system starts from, found by the machine at boot.
pub struct Start<P: Platform> {
    /// The machine.
    pub platform: P,
    /// Frame contents.
    pub memory: P::Memory,
    /// Every free frame.
    pub frames: &'static Mutex<FrameAllocator>,
    /// The hypervisor's page-table root.
    pub hypervisor_root: Frame,
    /// TSC to nanoseconds since boot.
    pub clock: Clock,
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// The TSC at hypervisor entry.
    pub entry_tsc: u64,
    /// (wc_sec, wc_nsec) at system time 0.
    pub wallclock: (u32, u32),
    /// Cycles of a scheduler time slice.
    pub slice_cycles: u64,
}

impl<P: Platform> System<P> {
    /// A system with no domains yet.
    pub fn new(start: Start<P>) -> Self {
        let frames_free_at_start = start.frames.lock().free_count();
        Self {
            platform: start.platform,
            memory: start.memory,
            frames: start.frames,
            domains: Vec::new(),
            current: 0,
            outcomes: Vec::new(),
            hypervisor_root: start.hypervisor_root,
            frames_free_at_start,
            scheduler: Scheduler::new(start.slice_cycles),
            events: EventChannels::new(),
            clock: start.clock,
            deadline_cache: DeadlineCache::default(),
            timers: Timers::new(),
            poll_deadlines: Timers::new(),
            wallclock: start.wallclock,
            entry_tsc: start.entry_tsc,
            never_entered: 0,
            tsc_hz: start.tsc_hz,
            focus: None,
            escape: EscapeDecoder::new(),
            trace: None,
            audit_start: None,
            loaded_root: None,
        }
    }

    /// Writes a seqlocked block of the shared-info page at `offset`, whose first u32 is
    /// its version: the version goes odd, `body(memory, odd version)` writes the fields,
    /// the version goes even again (SPEC.md §19.2, §19.3).
    fn seqlock_write(memory: &mut P::Memory, shared: Frame, offset: usize, body: impl FnOnce(&mut P::Memory, u32)) {
        let mut version = [0u8; 4];
        memory.read(shared, offset, &mut version);
        let odd = u32::from_le_bytes(version) | 1;
        memory.write(shared, offset, &odd.to_le_bytes());
        body(memory, odd);
        memory.write(shared, offset, &odd.wrapping_add(1).to_le_bytes());
    }

    /// Writes the wallclock (wc_sec, wc_nsec) under its version.
    pub(crate) fn write_wallclock(&mut self, shared: Frame) {
        let (seconds, nanoseconds) = self.wallclock;
        Self::seqlock_write(&mut self.memory, shared, WALLCLOCK_OFFSET, |memory, _| {
            memory.write(shared, WALLCLOCK_OFFSET + 4, &seconds.to_le_bytes());
            memory.write(shared, WALLCLOCK_OFFSET + 8, &nanoseconds.to_le_bytes());
        });
    }

    /// Refreshes vCPU 0's time info under its version.
    pub(crate) fn write_time_info(&mut self, shared: Frame) {
        let tsc = self.platform.read_tsc();
        let clock = self.clock;
        // The info carries the (odd) version in its first field, so the copy keeps it odd.
        Self::seqlock_write(&mut self.memory, shared, TIME_INFO_OFFSET, |memory, odd| {
            memory.write(shared, TIME_INFO_OFFSET, clock.vcpu_time_info(tsc, odd).as_bytes());
        });
    }

    /// Makes `index` the running domain: its extended state, segment bases and the root
    /// of its vCPU's mode are loaded. The outgoing domain's extended state must have been
    /// saved (see [`Self::leave_current`]).
    pub(crate) fn enter_domain(&mut self, index: usize) {
        self.current = index;
        if !self.domains[index].entered {
            self.domains[index].entered = true;
            self.never_entered -= 1;
            if self.never_entered == 0 && self.domains.len() > 1 {
                let cycles = self.platform.read_tsc().wrapping_sub(self.entry_tsc);
                say!(
                    self.platform,
                    "boot: all {} domains reached their first instruction {cycles} cycles after hypervisor entry",
                    self.domains.len()
                );
            }
        }
        let domain = &mut self.domains[index];
        self.platform.restore_extended_state(&mut domain.extended_state);
        if let Some(shared) = domain.memory.as_ref().map(DomainMemory::shared_info_frame) {
            self.write_time_info(shared);
        }
        self.load_segment_bases();
        self.domains[index].vcpu.segments_dirty = false;
        if let Some(root) = self.domains[index].current_root() {
            self.load_root(root);
        }
    }

    /// Saves what the hardware holds of the running domain before another one runs.
    pub(crate) fn leave_current(&mut self) {
        if self.trace.is_some() {
            self.trace_drain(self.current);
        }
        let domain = &mut self.domains[self.current];
        if domain.memory.is_some() {
            self.platform.save_extended_state(&mut domain.extended_state);
        }
    }

    /// FS base, and GS base of the running vCPU's mode (the hypervisor never uses either).
    pub(crate) fn load_segment_bases(&mut self) {
        let vcpu = &self.domains[self.current].vcpu;
        self.platform.write_segment_bases(vcpu.fs_base, vcpu.gs_base());
    }

    /// Loads `root` unless it is loaded already.
    pub(crate) fn load_root(&mut self, root: Frame) {
        if self.loaded_root.replace(root) != Some(root) {
            self.platform.load_root(root);
        }
    }
}
