//! The running system: the domain table, entering and leaving domains, killing and
//! ending them, and the choice of what runs next. The binary holds it behind a lock and
//! carries out the [`Step`]s it returns.

use crate::console_input::{EscapeDecoder, InputRing};
use crate::domain_memory::DomainMemory;
use crate::event_channel::EventChannels;
use crate::frame_allocator::{Frame, FrameAllocator};
use crate::outcome::{self, Outcome};
use crate::paging::{AddressSpace, FrameMemory};
use crate::platform::{say, Platform};
use crate::scheduler::{Reason, Scheduler};
use crate::time::{Clock, Timers};
use crate::trap_frame::{ReturnPath, TrapFrame};
use crate::upcall;
use crate::vcpu::{Mode, Vcpu};
use crate::wakeups::{Wait, Wakeups};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::shared_info::SharedInfo;
use spin::Mutex;
use zerocopy::IntoBytes;

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
    /// Whether it has run at all (for the boot line that all domains have).
    pub entered: bool,
    /// Console input not yet read (SPEC.md §21).
    pub input: InputRing,
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
    /// The root loaded last, so unchanged roots are not reloaded (a CR3 write is a trap
    /// on some hosts). Every change to a space that is not loaded is followed by a load
    /// before that space is used, so skipping same-root loads never leaves stale TLB
    /// entries.
    loaded_root: Option<Frame>,
}

/// Byte offset of `wc_version` in the shared-info page.
const WALLCLOCK_OFFSET: usize = core::mem::offset_of!(SharedInfo, wc_version);
/// Byte offset of `vcpu_info[0].time`.
const TIME_INFO_OFFSET: usize = core::mem::offset_of!(SharedInfo, vcpu_info) + core::mem::offset_of!(hypercall_abi::shared_info::VcpuInfo, time);

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
            timers: Timers::new(),
            poll_deadlines: Timers::new(),
            wallclock: start.wallclock,
            entry_tsc: start.entry_tsc,
            never_entered: 0,
            tsc_hz: start.tsc_hz,
            focus: None,
            escape: EscapeDecoder::new(),
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
                say!(self.platform, "boot: all {} domains reached their first instruction {cycles} cycles after hypervisor entry", self.domains.len());
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

    /// Validates `frame` for return to the current domain; a frame that cannot be
    /// returned to safely kills its domain and the next one runs instead.
    pub(crate) fn finish_return(&mut self, frame: &mut TrapFrame) -> Step {
        loop {
            let domain = &self.domains[self.current];
            // SPEC.md §18.4: every return to a guest delivers a pending, unmasked event first.
            if let Some(memory) = domain.memory.as_ref() {
                if upcall::upcall_due(&self.memory, memory.shared_info_frame(), &domain.vcpu) {
                    return self.deliver_upcall(frame);
                }
            }
            self.rearm();
            if let Some(path) = frame.prepare_return() {
                return Step::Resume(path);
            }
            self.kill_current(&format!("return to non-canonical rip {:#x} refused (XSA-7 guard)", frame.rip));
            match self.next_frame(Reason::Ended, false) {
                Ok(next) => *frame = next,
                Err(step) => return step,
            }
        }
    }

    /// Kills the running domain, saying why.
    pub(crate) fn kill_current(&mut self, reason: &str) {
        let domain = &self.domains[self.current];
        say!(self.platform, "d{} {}: killed: {}", domain.id, domain.name, reason);
        self.end_current(Outcome::Killed);
    }

    /// Releases the current domain's ports, timers and memory and records how it ended.
    pub(crate) fn end_current(&mut self, outcome: Outcome) {
        // Leave the dying address space before its tables are freed.
        self.load_root(self.hypervisor_root);
        let current = self.current;
        let id = self.domains[current].id;
        // Ports first: peers' ends change and their waiters wake while this page still exists.
        let Self { domains, scheduler, events, timers, memory, platform, .. } = self;
        events.remove_domain(id, &mut Wakeups { domains, scheduler, memory, platform });
        timers.cancel(current);
        self.poll_deadlines.cancel(current);
        self.domains[current].wait = Wait::Nothing;
        if let Some(domain_memory) = self.domains[current].memory.take() {
            domain_memory.destroy(&mut self.memory, &mut *self.frames.lock());
        }
        self.domain_ended_for_input(current);
        self.outcomes.push(outcome);
    }

    /// Kills the running domain with `reason` and continues with the next one.
    pub(crate) fn kill_and_continue(&mut self, frame: &mut TrapFrame, reason: &str) -> Step {
        self.kill_current(reason);
        self.continue_after_end(frame)
    }

    /// Runs whoever is next after the current domain ended.
    pub(crate) fn continue_after_end(&mut self, frame: &mut TrapFrame) -> Step {
        match self.next_frame(Reason::Ended, false) {
            Ok(next) => {
                *frame = next;
                self.finish_return(frame)
            }
            Err(step) => step,
        }
    }

    /// Saves the running domain's state and returns to whoever the scheduler picks for
    /// `reason` (possibly the same domain, for a yield or preemption with nobody waiting).
    pub(crate) fn switch_away(&mut self, frame: &mut TrapFrame, reason: Reason) -> Step {
        self.domains[self.current].state = *frame;
        match self.next_frame(reason, false) {
            Ok(next) => {
                *frame = next;
                self.finish_return(frame)
            }
            Err(step) => step,
        }
    }

    /// Continues after the machine halted for [`Step::Idle`]: `frame` becomes the state
    /// of whoever runs now.
    pub fn resume_after_idle(&mut self, frame: &mut TrapFrame) -> Step {
        match self.next_frame(Reason::Yield, true) {
            Ok(next) => {
                *frame = next;
                self.finish_return(frame)
            }
            Err(step) => step,
        }
    }

    /// Lets the scheduler pick who runs after the current domain stops for `reason`,
    /// and returns that domain's state, ready to return to (`left`: the outgoing
    /// domain's state is saved already). When every live domain sleeps, the machine
    /// halts until a timer or console interrupt wakes one (SPEC.md §20.1): [`Step::Idle`];
    /// when none is left, the run ends: [`Step::Exit`].
    fn next_frame(&mut self, mut reason: Reason, mut left: bool) -> Result<TrapFrame, Step> {
        loop {
            let now = self.platform.read_tsc();
            match self.scheduler.switch(reason, now) {
                Some(next) => {
                    if next != self.current || left {
                        if !left {
                            self.leave_current();
                        }
                        self.enter_domain(next);
                    }
                    let mut frame = self.domains[next].state;
                    // The saved state came from a validated return or a new domain; keep
                    // the invariant explicit anyway.
                    if frame.prepare_return().is_none() {
                        self.kill_current("saved state has a non-canonical rip");
                        return self.next_frame(Reason::Ended, false);
                    }
                    return Ok(frame);
                }
                None if self.scheduler.live_count() == 0 => return Err(Step::Exit(self.finish())),
                None => {
                    if !left {
                        self.leave_current();
                        left = true;
                    }
                    self.expire(now);
                    if self.scheduler.runnable_count() == 0 {
                        self.rearm();
                        return Err(Step::Idle);
                    }
                    reason = Reason::Yield;
                }
            }
        }
    }

    /// Prints the summary and says the run's exit status.
    pub fn finish(&mut self) -> ExitStatus {
        let free_now = self.frames.lock().free_count();
        let outcomes = &self.outcomes;
        let count = |wanted: fn(&Outcome) -> bool| outcomes.iter().filter(|outcome| wanted(outcome)).count();
        say!(
            self.platform,
            "summary: {} domains: {} poweroff, {} crash, {} killed, {} refused; frames free {} at start, {} at end; ports open 0 at start, {} at end",
            outcomes.len(),
            count(|outcome| matches!(outcome, Outcome::Poweroff(_))),
            count(|outcome| matches!(outcome, Outcome::Crash(_))),
            count(|outcome| matches!(outcome, Outcome::Killed)),
            count(|outcome| matches!(outcome, Outcome::Refused)),
            self.frames_free_at_start,
            free_now,
            self.events.open_ports()
        );
        let fairness = self.scheduler.fairness(|_| true);
        say!(self.platform, "scheduler: {}", fairness.display(self.tsc_hz));
        if free_now != self.frames_free_at_start {
            say!(self.platform, "frame leak: {} frames not returned", self.frames_free_at_start.abs_diff(free_now));
        }
        let status = outcome::exit_status(self.outcomes.iter().copied());
        say!(self.platform, "exit status {}: {}", status.0, status.describe());
        status
    }
}
