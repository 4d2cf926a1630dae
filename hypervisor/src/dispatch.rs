//! What the system does for the running domain when it enters the hypervisor: a
//! `syscall` (a hypercall from guest-kernel mode, a system call to bounce from
//! guest-user mode), an exception, a timer or console interrupt. Hypercalls, bounces of
//! exceptions and guest-user system calls to the guest kernel (SPEC.md §11) and `iret`
//! are decided by `hypercall`, `bounce` and `memory_ops`; this module applies them.

use crate::bounce::{self, Event};
use crate::domain_memory::DomainMemory;
use crate::event_channel::PortState;
use crate::exception;
use crate::guest_memory::{self, GuestFault};
use crate::hypercall::{self, Disposition, Guest};
use crate::memory_ops;
use crate::outcome::Outcome;
use crate::paging::FrameMemory;
use crate::platform::{say, Platform};
use crate::scheduler::Reason;
use crate::system::{Domain, Step, System};
use crate::trap_frame::{TrapFrame, HYPERCALL_VECTOR};
use crate::upcall;
use crate::vcpu::{Mode, Vcpu};
use crate::wakeups::{Wait, Wakeups};
use alloc::format;
use alloc::string::String;
use hypercall_abi::hypercall::TRAPPING_HYPERCALL;
use hypercall_abi::shared_info::cr2_offset;
use hypercall_abi::trap::{vector, IretFrame};
use hypercall_abi::Errno;
use zerocopy::{FromBytes, IntoBytes};

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

    fn memory_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        memory_ops::memory_op(arguments, domain, memory, &mut *frames.lock(), platform)
    }

    fn address_space_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        let result = memory_ops::address_space_op(arguments, domain, memory, &mut *frames.lock(), platform);
        // A SWITCH takes effect now, not when the hypercall (or multicall) ends: a later
        // DESTROY of the old root in the same multicall must not free the table CR3 holds.
        let root = self.memory().kernel_root();
        self.system.load_root(root);
        result
    }

    fn mmu_update(&mut self, arguments: &[u64; 6]) -> i64 {
        let System { domains, memory, frames, platform, .. } = &mut *self.system;
        let domain = domains[self.index].memory.as_mut().expect("the running domain always has memory");
        memory_ops::mmu_update(arguments, domain, memory, &mut *frames.lock(), platform)
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
    fn handle_hypercall(&mut self, frame: &mut TrapFrame) -> Step {
        let current = self.current;
        let mut caller = CallingDomain { system: self, index: current };
        let disposition = hypercall::dispatch(frame.rax, frame.hypercall_arguments(), &mut caller);
        self.apply_vcpu_changes();
        match disposition {
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
                if upcall::upcall_pending(&self.memory, shared) {
                    return self.finish_return(frame);
                }
                self.sleep(frame, Wait::Event)
            }
            Disposition::Poll(request) => {
                let id = self.domains[current].id;
                // A closed port could never end the sleep (SPEC.md §20.3).
                if request.ports().iter().any(|&port| self.events.port_state(id, port) == PortState::Closed) {
                    frame.rax = Errno::EINVAL.to_return() as u64;
                    return self.finish_return(frame);
                }
                frame.rax = 0;
                let shared = self.domains[current].memory.as_ref().expect("running").shared_info_frame();
                let now_ns = self.clock.now_ns(self.platform.read_tsc());
                let expired = request.deadline_ns != 0 && request.deadline_ns <= now_ns;
                if expired || upcall::any_pending(&self.memory, shared, request.ports()) {
                    return self.finish_return(frame);
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

    /// Puts the running domain to sleep until `wait` is satisfied and runs another (or
    /// idles); the sleeper resumes after its hypercall with RAX = 0.
    fn sleep(&mut self, frame: &mut TrapFrame, wait: Wait) -> Step {
        self.domains[self.current].wait = wait;
        self.switch_away(frame, Reason::Blocked)
    }

    /// Carries out what a hypercall changed in the running vCPU's segment bases. (A new
    /// kernel root is loaded by `address_space_op` itself, at once.)
    fn apply_vcpu_changes(&mut self) {
        if self.domains[self.current].vcpu.segments_dirty {
            self.load_segment_bases();
            self.domains[self.current].vcpu.segments_dirty = false;
        }
    }

    /// The `iret` hypercall: the frame at the guest's RSP, validated, becomes the state.
    fn guest_iret(&mut self, frame: &mut TrapFrame) -> Step {
        let domain = &self.domains[self.current];
        let Some(memory) = domain.memory.as_ref() else {
            unreachable!("the running domain always has memory");
        };
        let mut bytes = [0u8; core::mem::size_of::<IretFrame>()];
        if let Err(fault) = guest_memory::copy_from_guest(&self.memory, memory.kernel_space(), frame.rsp, &mut bytes) {
            let reason = format!("iret frame at rsp {:#x} is not readable: {fault}", frame.rsp);
            return self.kill_and_continue(frame, &reason);
        }
        let Ok(saved) = IretFrame::read_from_bytes(&bytes) else {
            unreachable!("the buffer is exactly one IretFrame");
        };
        let shared = memory.shared_info_frame();
        match bounce::iret(frame, &saved, memory.user_root().is_some()) {
            Ok((resume, mode, events_masked)) => {
                // `iret` restores the virtual interrupt flag the frame saved (SPEC.md §18.3).
                upcall::set_upcall_mask(&mut self.memory, shared, events_masked);
                *frame = resume;
                self.change_mode(mode);
                self.finish_return(frame)
            }
            Err(failure) => self.kill_and_continue(frame, &format!("{failure}")),
        }
    }

    /// Moves the running vCPU to `mode`: its root and GS base follow.
    fn change_mode(&mut self, mode: Mode) {
        let domain = &mut self.domains[self.current];
        if domain.vcpu.mode == mode {
            return;
        }
        domain.vcpu.mode = mode;
        if let Some(root) = domain.current_root() {
            self.load_root(root);
        }
        self.load_segment_bases();
    }

    /// An exception (vector below 32, or a vector the hypervisor does not handle) the
    /// running domain caused or was interrupted by.
    pub fn exception(&mut self, frame: &mut TrapFrame) -> Step {
        match frame.vector {
            // A PVM-based KVM host runs a ring-3 `syscall` to LSTAR without entering ring 0,
            // so it faults fetching the (supervisor) entry stub. RCX and R11 hold what the
            // instruction put there; carry on exactly as the `syscall` entry would. A guest
            // that jumps there itself only gets a system call with registers it chose.
            14 if frame.rip == self.platform.hypercall_entry_address() => {
                frame.rip = frame.rcx;
                frame.rflags = frame.r11;
                frame.vector = HYPERCALL_VECTOR;
                frame.error_code = 0;
                self.system_call(frame)
            }
            6 => self.invalid_opcode(frame),
            // Every gate is ring 0, so a ring-3 `int3` should arrive as #GP; a PVM-based KVM
            // host delivers it as #BP after the instruction instead. Either way it is a
            // software interrupt the trap table must grant, not a hardware #BP.
            3 => self.breakpoint(frame),
            // Error code with the IDT bit: an `int n` through a gate ring 3 may not use.
            13 if frame.error_code & 0b11 == 0b10 => self.refused_gate(frame),
            // Not caused by the guest: nothing to deliver, resume it. (The spurious vector
            // must not be acknowledged.)
            2 | 32..=255 => self.finish_return(frame),
            18 => panic!("machine check while running a guest at rip {:#x}", frame.rip),
            number => {
                let fault_address = if number == 14 { self.platform.fault_address() } else { 0 };
                let event = Event::Exception { vector: number as u8, error_code: frame.error_code, fault_address };
                self.bounce_event(frame, event)
            }
        }
    }

    /// The timer fired while a guest ran (the machine has disarmed it): expire timers,
    /// wake their domains, and preempt the running domain at the end of its slice
    /// (SPEC.md §20.1) — also when it spins with events masked, which masks only virtual
    /// interrupts.
    pub fn timer_interrupt(&mut self, frame: &mut TrapFrame) -> Step {
        let now = self.platform.read_tsc();
        self.expire(now);
        if self.scheduler.slice_expired(now) {
            return self.switch_away(frame, Reason::Preempted);
        }
        self.finish_return(frame)
    }

    /// Console input arrived while a guest ran: it goes to the focused domain, whose
    /// upcall (if it is the one interrupted) is delivered on the way back.
    pub fn console_interrupt(&mut self, frame: &mut TrapFrame) -> Step {
        self.receive_console_input();
        self.platform.end_of_interrupt();
        self.finish_return(frame)
    }

    /// Reads `N` instruction bytes at `address` in the running vCPU's current address space.
    fn code_bytes<const N: usize>(&self, address: u64) -> Option<[u8; N]> {
        let space = self.domains[self.current].current_space()?;
        let mut bytes = [0u8; N];
        guest_memory::copy_from_guest(&self.memory, space, address, &mut bytes).ok()?;
        Some(bytes)
    }

    /// #UD: the trapping hypercall (guest-kernel mode only), an `int n` on a host that
    /// reports ring-3 software interrupts as #UD, or a real invalid opcode.
    fn invalid_opcode(&mut self, frame: &mut TrapFrame) -> Step {
        let kernel = self.domains[self.current].vcpu.mode == Mode::Kernel;
        if kernel && self.code_bytes::<4>(frame.rip) == Some(TRAPPING_HYPERCALL) {
            // The sequence may end at the top of the address space: no return address.
            let Some(next) = frame.rip.checked_add(TRAPPING_HYPERCALL.len() as u64) else {
                return self.kill_and_continue(frame, "trapping hypercall at the top of the address space has no return address");
            };
            frame.rip = next;
            return self.handle_hypercall(frame);
        }
        if let Some((number, length)) = self.code_bytes::<2>(frame.rip).and_then(bounce::decode_software_interrupt) {
            return self.bounce_event(frame, Event::SoftwareInterrupt { vector: number, length });
        }
        let event = Event::Exception { vector: vector::INVALID_OPCODE, error_code: 0, fault_address: 0 };
        self.bounce_event(frame, event)
    }

    /// A #BP from the guest: if the instruction before RIP is `int3` (CC) or `int 3`
    /// (CD 03), it is that software interrupt, judged by the trap table at its address.
    fn breakpoint(&mut self, frame: &mut TrapFrame) -> Step {
        for length in [1u64, 2] {
            let Some(address) = frame.rip.checked_sub(length) else { continue };
            let decoded = self.code_bytes::<2>(address).and_then(bounce::decode_software_interrupt);
            if decoded == Some((vector::BREAKPOINT, length)) {
                frame.rip = address;
                return self.bounce_event(frame, Event::SoftwareInterrupt { vector: vector::BREAKPOINT, length });
            }
        }
        let event = Event::Exception { vector: vector::BREAKPOINT, error_code: 0, fault_address: 0 };
        self.bounce_event(frame, event)
    }

    /// #GP naming an IDT gate: the guest executed `int n` (or `int3`), which the hardware
    /// refused because every gate is ring 0; whether the guest may raise it is the trap
    /// table's decision. The gate index is the error code's selector field (`n * 8 + 2`);
    /// QEMU's TCG reports `n * 16 + 2` (the 16-byte gate's offset), so both are accepted
    /// when the instruction bytes name that vector.
    fn refused_gate(&mut self, frame: &mut TrapFrame) -> Step {
        let gates = [frame.error_code >> 3, frame.error_code >> 4];
        let decoded = self.code_bytes::<2>(frame.rip).and_then(bounce::decode_software_interrupt);
        let event = match decoded {
            Some((number, length)) if gates.contains(&u64::from(number)) => Event::SoftwareInterrupt { vector: number, length },
            _ => Event::Exception { vector: vector::GENERAL_PROTECTION, error_code: frame.error_code, fault_address: 0 },
        };
        self.bounce_event(frame, event)
    }

    /// Delivers `event` to the running domain's guest kernel (SPEC.md §11.4), or kills
    /// the domain if it cannot be delivered — no handler, no stack, a stack it cannot
    /// write: the paravirtual triple fault.
    fn bounce_event(&mut self, frame: &mut TrapFrame, event: Event) -> Step {
        let domain = &self.domains[self.current];
        let Some(memory) = domain.memory.as_ref() else {
            unreachable!("the running domain always has memory");
        };
        let shared = memory.shared_info_frame();
        // The frame's IF is the virtual interrupt flag: !upcall_mask (SPEC.md §18.3).
        let masked = upcall::upcall_mask(&self.memory, shared);
        let delivery = match bounce::deliver(&domain.vcpu, frame, event, masked) {
            Ok(delivery) => delivery,
            Err(failure) => {
                let reason = format!("{}: {failure}", describe(frame, &event));
                return self.kill_and_continue(frame, &reason);
            }
        };
        let written = guest_memory::copy_to_guest(&mut self.memory, memory.kernel_space(), delivery.frame_address, delivery.frame.as_bytes());
        if let Err(fault) = written {
            let reason = format!(
                "{}: fault delivering {}: guest-kernel stack {:#x} is not writable ({fault})",
                describe(frame, &event),
                exception::name(delivery.vector),
                delivery.frame_address
            );
            return self.kill_and_continue(frame, &reason);
        }
        // Only a real #PF has a faulting address (a granted `int 14` does not).
        if matches!(event, Event::Exception { vector: vector::PAGE_FAULT, .. }) {
            self.memory.write(shared, cr2_offset(0), &delivery.frame.fault_address.to_le_bytes());
        }
        if delivery.masks_events {
            upcall::set_upcall_mask(&mut self.memory, shared, true);
        }
        *frame = delivery.resume;
        self.change_mode(Mode::Kernel);
        self.finish_return(frame)
    }

    /// Delivers the running domain's pending event to its event callback (SPEC.md §18.4).
    pub(crate) fn deliver_upcall(&mut self, frame: &mut TrapFrame) -> Step {
        // The handler may read the time first thing: a timer's upcall must not find the
        // clock short of its deadline (SPEC.md §18.4 step 1, §19.4).
        if let Some(shared) = self.domains[self.current].memory.as_ref().map(DomainMemory::shared_info_frame) {
            self.write_time_info(shared);
        }
        self.bounce_event(frame, Event::Upcall)
    }
}

/// One line naming what happened, for kill reports.
fn describe(frame: &TrapFrame, event: &Event) -> String {
    match *event {
        Event::Exception { vector, error_code, fault_address } => format!(
            "{} at rip {:#x} error {:#x} cr2 {:#x}",
            exception::name(u64::from(vector)),
            frame.rip,
            error_code,
            fault_address
        ),
        Event::SoftwareInterrupt { vector, .. } => format!("int {:#x} at rip {:#x}", vector, frame.rip),
        Event::Syscall => format!("guest-user syscall at rip {:#x}", frame.rip),
        Event::Upcall => format!("event upcall at rip {:#x}", frame.rip),
    }
}
