//! The hypercall entry: the calling domain as the handlers see it, and what the
//! system does with each disposition — return, yield, shut down, `iret`, BLOCK, POLL.

use crate::domain::outcome::Outcome;
use crate::domain::vcpu::{Mode, Vcpu};
use crate::event::channels::PortState;
use crate::event::upcall;
use crate::hypercall::guest::{Batch, Disposition, Guest, PollRequest, Progress, POLL_PORTS_MAX};
use crate::hypercall::memory::{self as memory_family, Preemption, Tlb};
use crate::hypercall::table;
use crate::mm::domain_memory::DomainMemory;
use crate::mm::guest_memory::{self, GuestFault};
use crate::platform::{say, Platform};
use crate::sched::policy::Reason;
use crate::system::wakeups::Wakeups;
use crate::system::Domain;
use crate::system::Wait;
use crate::system::{Step, System};
use crate::trap::bounce::{self, Event};
use crate::trap::frame::TrapFrame;
use alloc::format;
use hypercall_abi::trace::{flags as trace_flags, kind as trace_kind, TraceRecord};
use hypercall_abi::trap::IretFrame;
use hypercall_abi::{Errno, Hypercall};
use zerocopy::{FromZeros, IntoBytes};

/// The calling domain, as hypercall handlers see it. Hypercalls come only from
/// guest-kernel mode, so guest pointers are resolved in the kernel root. It holds the
/// whole system because some calls reach other domains (event channels).
struct CallingDomain<'a, P: Platform> {
    system: &'a mut System<P>,
    index: usize,
}

impl<P: Platform> CallingDomain<'_, P> {
    fn domain(&self) -> &Domain<P::ExtendedState> {
        &self.system.domains[self.index]
    }

    fn memory(&self) -> &DomainMemory {
        self.domain().memory.as_ref().expect("the running domain always has memory")
    }
}

impl<P: Platform> Guest for CallingDomain<'_, P> {
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
        guest_memory::copy_from_guest(&self.system.memory, self.memory().kernel_space(), address, buffer)
    }

    fn read_poll_ports(&mut self, address: u64, count: usize) -> Result<&[u32], GuestFault> {
        let System { domains, memory, .. } = &mut *self.system;
        let domain = &mut domains[self.index];
        let space = domain.memory.as_ref().expect("the running domain always has memory").kernel_space();
        if count == 1 {
            // The common POLL waits for one port: a fixed-size copy is one load, where the
            // general one is a call to memcpy.
            let mut port = [0u8; 4];
            guest_memory::copy_from_guest(memory, space, address, &mut port)?;
            domain.poll_ports[0] = u32::from_le_bytes(port);
            return Ok(&domain.poll_ports[..1]);
        }
        let ports = &mut domain.poll_ports[..count.min(POLL_PORTS_MAX)];
        guest_memory::copy_from_guest(memory, space, address, ports.as_mut_bytes())?;
        Ok(ports)
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), GuestFault> {
        let System { domains, memory, .. } = &mut *self.system;
        let space = domains[self.index].memory.as_ref().expect("the running domain always has memory").kernel_space();
        guest_memory::copy_to_guest(memory, space, address, bytes)
    }

    fn console_write(&mut self, bytes: &[u8]) {
        let id = self.domain().id;
        self.system.platform.console_write(id, bytes);
    }

    fn vcpu(&mut self) -> &mut Vcpu {
        &mut self.system.domains[self.index].vcpu
    }

    fn memory_op(&mut self, arguments: &[u64; 6], done: u64) -> Batch {
        let deadline = self.system.next_deadline();
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        let mut machine = Machine { platform, deadline };
        memory_family::memory_op(arguments, done, domain, memory, &mut *frames.lock(), &mut machine)
    }

    fn address_space_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        let result = memory_family::address_space_op(arguments, domain, memory, &mut *frames.lock(), platform);
        // A SWITCH takes effect now, not when the hypercall (or multicall) ends: a later
        // DESTROY of the old root in the same multicall must not free the table CR3 holds.
        let root = self.memory().kernel_root();
        self.system.load_root(root);
        result
    }

    fn mmu_update(&mut self, arguments: &[u64; 6], done: u64) -> Batch {
        let deadline = self.system.next_deadline();
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        let mut machine = Machine { platform, deadline };
        memory_family::mmu_update(arguments, done, domain, memory, &mut *frames.lock(), &mut machine)
    }

    fn preemption_due(&mut self) -> bool {
        let deadline = self.system.next_deadline();
        Machine { platform: &mut self.system.platform, deadline }.due()
    }

    fn event_channel_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let id = self.domain().id;
        let System { domains, scheduler, events, memory, platform, .. } = &mut *self.system;
        events.op(id, arguments, &mut Wakeups { domains, scheduler, memory, platform })
    }

    fn console_peek(&mut self, buffer: &mut [u8]) -> usize {
        self.domain().input.peek(buffer)
    }

    fn console_consume(&mut self, count: usize) {
        self.system.domains[self.index].input.consume(count);
    }

    fn set_timer(&mut self, deadline_ns: u64) -> i64 {
        if deadline_ns == 0 {
            self.system.timers.cancel(self.index);
            return 0;
        }
        self.system.timers.set(self.index, deadline_ns);
        // A deadline already reached expires before the call returns (SPEC.md §19.4), so
        // its upcall comes on this return, not at the next timer interrupt.
        let now = self.system.platform.read_tsc();
        if deadline_ns <= self.system.clock.now_ns(now) {
            self.system.expire(now);
        }
        0
    }
}

/// The machine as a memory batch sees it: TLB maintenance, and whether the TSC has
/// reached the deadline of the next thing the hypervisor must do (SPEC.md §5.5). Nothing
/// else can change that deadline while one `mmu_update` or `memory_op` runs, so it is
/// computed once per run.
struct Machine<'a, P: Platform> {
    platform: &'a mut P,
    deadline: Option<u64>,
}

impl<P: Platform> Tlb for Machine<'_, P> {
    fn flush_page(&mut self, virtual_address: u64) {
        self.platform.flush_page(virtual_address);
    }

    fn flush_all(&mut self) {
        self.platform.flush_all();
    }
}

impl<P: Platform> Preemption for Machine<'_, P> {
    fn due(&mut self) -> bool {
        self.deadline.is_some_and(|deadline| self.platform.read_tsc() >= deadline)
    }
}

/// A hypercall in progress (SPEC.md §5.5): what the guest asked, how far it got, and for
/// the trace when it began and whether it has been preempted. Held by the hypervisor
/// while other domains run; the caller resumes only when it is done.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    number: u64,
    arguments: [u64; 6],
    progress: Progress,
    /// TSC when the first run began (only read while tracing).
    began: u64,
    /// Whether some run stopped at a preemption point.
    preempted: bool,
}

impl<P: Platform> System<P> {
    /// A `syscall` instruction: a hypercall from guest-kernel mode, a system call to
    /// bounce to the guest kernel from guest-user mode.
    pub fn system_call(&mut self, frame: &mut TrapFrame) -> Step {
        match self.domains[self.current].vcpu.mode {
            Mode::Kernel => self.handle_hypercall(frame),
            Mode::User => self.bounce_event(frame, Event::Syscall),
        }
    }

    /// One hypercall, from either instruction (`syscall` or the trapping `ud2; "rf"`).
    /// With tracing off this costs one predictable branch more than the call itself.
    pub(super) fn handle_hypercall(&mut self, frame: &mut TrapFrame) -> Step {
        if self.trace.is_some() {
            return self.handle_traced_hypercall(frame);
        }
        self.hypercall::<false>(frame)
    }

    /// [`Self::handle_hypercall`] while some domain is traced (SPEC.md §22).
    #[cold]
    #[inline(never)]
    fn handle_traced_hypercall(&mut self, frame: &mut TrapFrame) -> Step {
        self.hypercall::<true>(frame)
    }

    /// The hypercall itself; `TRACED` brackets the handler with TSC reads and records it
    /// (for a traced caller). One body for both, so the untraced one is exactly the call.
    #[inline(always)]
    fn hypercall<const TRACED: bool>(&mut self, frame: &mut TrapFrame) -> Step {
        // `iret` ends every bounce: straight to its frame check, past the table and the
        // disposition it would only hand back (SPEC.md §11.5: it takes no arguments, and a
        // traced one keeps the general path, which records it).
        if !TRACED && frame.rax == Hypercall::IRET.0 {
            return self.guest_iret(frame);
        }
        let began = if TRACED { self.platform.read_tsc() } else { 0 };
        self.run_hypercall::<TRACED>(frame, frame.rax, frame.hypercall_arguments(), &Progress::START, began, false)
    }

    /// Goes on with the running domain's preempted hypercall (SPEC.md §5.5): the machine
    /// calls this for [`Step::Continue`], so a chain of continuations never deepens the
    /// stack.
    pub fn continue_hypercall(&mut self, frame: &mut TrapFrame) -> Step {
        let Some(call) = self.domains[self.current].continuation.take() else {
            return self.finish_return(frame);
        };
        let Continuation { number, arguments, progress, began, preempted } = call;
        if self.trace.is_some() {
            self.run_hypercall::<true>(frame, number, arguments, &progress, began, preempted)
        } else {
            self.run_hypercall::<false>(frame, number, arguments, &progress, began, preempted)
        }
    }

    /// Runs hypercall `number` from `progress` and carries out what the handler decided;
    /// `began` and `preempted` are the trace's (a [`Continuation`]'s fields, which only a
    /// preempted call needs built).
    #[inline(always)]
    fn run_hypercall<const TRACED: bool>(
        &mut self,
        frame: &mut TrapFrame,
        number: u64,
        arguments: [u64; 6],
        progress: &Progress,
        began: u64,
        preempted: bool,
    ) -> Step {
        let current = self.current;
        let mut caller = CallingDomain { system: self, index: current };
        let disposition = table::resume(number, &arguments, progress, &mut caller);
        self.apply_vcpu_changes();
        if TRACED && !matches!(disposition, Disposition::Preempted(_)) {
            self.record_hypercall(number, arguments, &disposition, began, preempted);
        }
        // Most calls return a value: tested before the table of every other outcome.
        if let Disposition::Return(value) = disposition {
            frame.rax = value as u64;
            return self.finish_return_inline(frame);
        }
        match disposition {
            Disposition::Preempted(progress) => {
                let call = Continuation { number, arguments, progress, began, preempted: true };
                self.domains[current].continuation = Some(call);
                self.preempted(frame)
            }
            Disposition::Return(value) => {
                frame.rax = value as u64;
                self.finish_return(frame)
            }
            Disposition::Yield(value) => {
                frame.rax = value as u64;
                self.switch_away(frame, Reason::Yield)
            }
            Disposition::Shutdown(outcome) => {
                let domain = &self.domains[current];
                let (id, name) = (domain.id, domain.name.clone());
                match outcome {
                    Outcome::Poweroff(code) => say!(self.platform, "d{id} {name}: exited: poweroff code {code}"),
                    Outcome::Crash(code) => say!(self.platform, "d{id} {name}: exited: crash code {code}"),
                    Outcome::Killed | Outcome::Refused => {}
                }
                self.end_current(outcome);
                self.continue_after_end(frame)
            }
            Disposition::Iret => self.guest_iret(frame),
            Disposition::Block => {
                frame.rax = 0;
                let shared = self.domains[current].memory.as_ref().expect("running").shared_info_frame();
                // BLOCK re-enables events atomically with going to sleep (SPEC.md §20.2).
                upcall::set_upcall_mask(&mut self.memory, shared, false);
                let timer_expired = core::mem::take(&mut self.domains[current].timer_expired);
                if timer_expired || upcall::upcall_pending(&self.memory, shared) {
                    return self.finish_return(frame);
                }
                self.sleep(frame, Wait::Event)
            }
            Disposition::Poll(request) => {
                if self.polls_a_closed_port(&request) {
                    frame.rax = Errno::EINVAL.to_return() as u64;
                    return self.finish_return(frame);
                }
                frame.rax = 0;
                let shared = self.domains[current].memory.as_ref().expect("running").shared_info_frame();
                // No deadline, no clock read: the common POLL waits for its ports alone.
                let expired =
                    request.deadline_ns != 0 && request.deadline_ns <= self.clock.now_ns(self.platform.read_tsc());
                let ports = request.ports(&self.domains[current].poll_ports);
                if expired || upcall::any_pending(&self.memory, shared, ports) {
                    return self.finish_return_inline(frame);
                }
                // A deadline left from an earlier POLL must not end this one.
                match request.deadline_ns {
                    0 => self.poll_deadlines.cancel(current),
                    deadline => self.poll_deadlines.set(current, deadline),
                }
                self.sleep(frame, Wait::Ports(request))
            }
        }
    }

    /// The running domain's hypercall stopped at a preemption point: what was due is done
    /// (timers expired, sleepers woken); if its slice is over and another domain can run,
    /// that one runs now and the call goes on when the caller is picked again, else it
    /// goes on at once.
    fn preempted(&mut self, frame: &mut TrapFrame) -> Step {
        let now = self.platform.read_tsc();
        self.expire(now);
        if self.scheduler.slice_expired(now) && self.scheduler.runnable_count() > 1 {
            return self.switch_away(frame, Reason::Preempted);
        }
        Step::Continue
    }

    /// A closed port could never end a POLL's sleep, so such a POLL is refused (SPEC.md
    /// §20.3).
    fn polls_a_closed_port(&self, request: &PollRequest) -> bool {
        let id = self.domains[self.current].id;
        let ports = request.ports(&self.domains[self.current].poll_ports);
        ports.iter().any(|&port| self.events.port_state(id, port) == PortState::Closed)
    }

    /// Records the hypercall the handler just finished, started at TSC `start` and
    /// `preempted` on the way, for the running domain if it is traced; drains its ring
    /// when that left it half full.
    fn record_hypercall(
        &mut self,
        number: u64,
        arguments: [u64; 6],
        disposition: &Disposition,
        start: u64,
        preempted: bool,
    ) {
        let end = self.platform.read_tsc();
        let (flags, result) = match disposition {
            // Other domains ran while it was preempted (SPEC.md §22).
            Disposition::Return(value) if preempted => (trace_flags::RESULT | trace_flags::SWITCHED, *value),
            Disposition::Return(value) => (trace_flags::RESULT, *value),
            Disposition::Yield(value) => (trace_flags::RESULT | trace_flags::SWITCHED, *value),
            Disposition::Poll(request) if self.polls_a_closed_port(request) => {
                (trace_flags::RESULT, Errno::EINVAL.to_return())
            }
            Disposition::Block | Disposition::Poll(_) => (trace_flags::RESULT | trace_flags::SWITCHED, 0),
            // Not recorded: a preempted call is recorded once, when it finishes.
            Disposition::Shutdown(_) | Disposition::Iret | Disposition::Preempted(_) => (0, 0),
        };
        let index = self.current;
        let record = TraceRecord {
            kind: trace_kind::HYPERCALL,
            flags,
            domain: self.domains[index].id,
            number,
            arguments,
            result,
            tsc: start,
            tsc_end: end,
            ..TraceRecord::default()
        };
        if self.trace_record(index, record) {
            self.trace_drain(index);
        }
    }

    /// Puts the running domain to sleep until `wait` is satisfied and runs another (or
    /// idles); the sleeper resumes after its hypercall with RAX = 0.
    fn sleep(&mut self, frame: &mut TrapFrame, wait: Wait) -> Step {
        self.domains[self.current].wait = wait;
        self.switch_away(frame, Reason::Blocked)
    }

    /// Carries out what a hypercall changed in the running vCPU's segment bases. (A new
    /// kernel root is loaded by `address_space_op` itself, at once.)
    /// Inlined: every hypercall runs the test, few change a base.
    #[inline(always)]
    fn apply_vcpu_changes(&mut self) {
        if self.domains[self.current].vcpu.segments_dirty {
            self.load_changed_segment_bases();
        }
    }

    #[cold]
    #[inline(never)]
    fn load_changed_segment_bases(&mut self) {
        self.load_segment_bases();
        self.domains[self.current].vcpu.segments_dirty = false;
    }

    /// The `iret` hypercall: the frame at the guest's RSP, validated, becomes the state.
    fn guest_iret(&mut self, frame: &mut TrapFrame) -> Step {
        let domain = &self.domains[self.current];
        let Some(memory) = domain.memory.as_ref() else {
            unreachable!("the running domain always has memory");
        };
        // Read straight into the frame's bytes: no second copy out of a byte buffer.
        let mut saved = IretFrame::new_zeroed();
        let read = guest_memory::copy_from_guest(&self.memory, memory.kernel_space(), frame.rsp, saved.as_mut_bytes());
        if let Err(fault) = read {
            return self.iret_refused(frame, IretRefusal::Unreadable(fault));
        }
        let shared = memory.shared_info_frame();
        match bounce::iret(&saved, memory.user_root().is_some()) {
            Ok((resume, mode, events_masked)) => {
                // `iret` restores the virtual interrupt flag the frame saved (SPEC.md §18.3).
                upcall::set_upcall_mask(&mut self.memory, shared, events_masked);
                resume.apply(frame);
                self.change_mode(mode);
                self.finish_return_inline(frame)
            }
            Err(failure) => self.iret_refused(frame, IretRefusal::Invalid(failure)),
        }
    }

    /// An `iret` whose frame cannot be used: the domain is killed with the reason.
    #[cold]
    #[inline(never)]
    fn iret_refused(&mut self, frame: &mut TrapFrame, refusal: IretRefusal) -> Step {
        let reason = match refusal {
            IretRefusal::Unreadable(fault) => format!("iret frame at rsp {:#x} is not readable: {fault}", frame.rsp),
            IretRefusal::Invalid(failure) => format!("{failure}"),
        };
        self.kill_and_continue(frame, &reason)
    }
}

/// Why an `iret` was refused.
enum IretRefusal {
    /// The frame could not be read at the guest's RSP.
    Unreadable(GuestFault),
    /// The frame asks for something the ABI forbids.
    Invalid(bounce::IretFailure),
}
