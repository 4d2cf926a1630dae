//! The two Rust entry points the assembly calls — `hypercall_dispatch` (the `syscall`
//! entry) and `trap_dispatch` (every exception and interrupt) — and what they carry out
//! for the running domain: hypercalls, bounces of exceptions and guest-user system calls
//! to the guest kernel (SPEC.md §11), and `iret`. The decisions are the library's
//! (`hypercall`, `bounce`, `memory_ops`); this module applies them to the machine.

use crate::machine::{console, cpu, entry, memory::DirectMap};
use crate::machine::apic;
use crate::system::{
    end_current, finish_return, kill_current, load_root, load_segment_bases, next_frame,
    write_time_info,
    next_frame_or_finish, Domain, System, FRAMES, SYSTEM,
};
use crate::input_focus;
use crate::wakeups::{self, Wait, Wakeups};
use hypervisor::upcall;
use alloc::format;
use alloc::string::String;
use hypercall_abi::hypercall::TRAPPING_HYPERCALL;
use hypercall_abi::Errno;
use hypercall_abi::shared_info::cr2_offset;
use hypercall_abi::trap::{vector, IretFrame};
use hypervisor::bounce::{self, Event};
use hypervisor::domain_memory::DomainMemory;
use hypervisor::event_channel::PortState;
use hypervisor::exception;
use hypervisor::guest_memory::{self, GuestFault};
use hypervisor::hypercall::{self, Disposition, Guest};
use hypervisor::memory_ops::{self, Tlb};
use hypervisor::outcome::Outcome;
use hypervisor::scheduler::Reason;
use hypervisor::paging::FrameMemory;
use hypervisor::trap_frame::{ReturnPath, TrapFrame, HYPERCALL_VECTOR};
use hypervisor::vcpu::{Mode, Vcpu};
use x86_64::VirtAddr;
use zerocopy::{FromBytes, IntoBytes};

type Guard = spin::MutexGuard<'static, Option<System>>;

/// The calling domain, as hypercall handlers see it. Hypercalls come only from
/// guest-kernel mode, so guest pointers are resolved in the kernel root. It holds the
/// whole system because some calls reach other domains (event channels).
struct CallingDomain<'a> {
    system: &'a mut System,
    index: usize,
}

impl CallingDomain<'_> {
    fn domain(&self) -> &Domain {
        &self.system.domains[self.index]
    }

    fn memory(&self) -> &DomainMemory {
        self.domain().memory.as_ref().expect("the running domain always has memory")
    }

    fn memory_mut(&mut self) -> &mut DomainMemory {
        self.system.domains[self.index].memory.as_mut().expect("the running domain always has memory")
    }
}

impl Guest for CallingDomain<'_> {
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
        guest_memory::copy_from_guest(&DirectMap, self.memory().kernel_space(), address, buffer)
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> Result<(), GuestFault> {
        guest_memory::copy_to_guest(&mut DirectMap, self.memory().kernel_space(), address, bytes)
    }

    fn console_write(&mut self, bytes: &[u8]) {
        console::write_domain(self.domain().id, bytes);
    }

    fn vcpu(&mut self) -> &mut Vcpu {
        &mut self.system.domains[self.index].vcpu
    }

    fn memory_op(&mut self, arguments: &[u64; 6]) -> i64 {
        memory_ops::memory_op(arguments, self.memory_mut(), &mut DirectMap, &mut *FRAMES.lock(), &mut HardwareTlb)
    }

    fn address_space_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let result = memory_ops::address_space_op(arguments, self.memory_mut(), &mut DirectMap, &mut *FRAMES.lock(), &mut HardwareTlb);
        // A SWITCH takes effect now, not when the hypercall (or multicall) ends: a later
        // DESTROY of the old root in the same multicall must not free the table CR3 holds.
        load_root(self.memory().kernel_root());
        result
    }

    fn mmu_update(&mut self, arguments: &[u64; 6]) -> i64 {
        memory_ops::mmu_update(arguments, self.memory_mut(), &mut DirectMap, &mut *FRAMES.lock(), &mut HardwareTlb)
    }

    fn event_channel_op(&mut self, arguments: &[u64; 6]) -> i64 {
        let id = self.domain().id;
        let System { domains, scheduler, events, .. } = &mut *self.system;
        events.op(id, arguments, &mut Wakeups { domains, scheduler })
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
        let now = cpu::rdtsc();
        if deadline_ns <= self.system.clock.now_ns(now) {
            wakeups::expire(self.system, now);
        }
        0
    }
}

/// TLB maintenance for the loaded root (no PCID: a CR3 write flushes everything else).
struct HardwareTlb;

impl Tlb for HardwareTlb {
    fn flush_page(&mut self, virtual_address: u64) {
        // A non-canonical address was never mapped, so there is nothing to flush.
        if let Ok(address) = VirtAddr::try_new(virtual_address) {
            x86_64::instructions::tlb::flush(address);
        }
    }

    fn flush_all(&mut self) {
        x86_64::instructions::tlb::flush_all();
    }
}

fn running(guard: &mut Guard) -> &mut System {
    guard.as_mut().expect("guests run only after boot installed the system")
}

/// Rust side of the `syscall` entry. Returns how to go back to the guest.
#[no_mangle]
extern "C" fn hypercall_dispatch(frame: &mut TrapFrame) -> u64 {
    system_call(SYSTEM.lock(), frame)
}

/// A `syscall` instruction: a hypercall from guest-kernel mode, a system call to bounce
/// to the guest kernel from guest-user mode.
fn system_call(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    match system.domains[system.current].vcpu.mode {
        Mode::Kernel => handle_hypercall(guard, frame),
        Mode::User => bounce_event(guard, frame, Event::Syscall),
    }
}

/// One hypercall, from either instruction (`syscall` or the trapping `ud2; "rf"`).
fn handle_hypercall(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    let current = system.current;
    let mut caller = CallingDomain { system, index: current };
    let disposition = hypercall::dispatch(frame.rax, frame.hypercall_arguments(), &mut caller);
    let system = caller.system;
    apply_vcpu_changes(system);
    match disposition {
        Disposition::Return(value) => {
            frame.rax = value as u64;
            finish_return(guard, frame)
        }
        Disposition::Yield(value) => {
            frame.rax = value as u64;
            switch_away(guard, frame, Reason::Yield)
        }
        Disposition::Shutdown(outcome) => {
            let domain = &system.domains[current];
            let (id, name) = (domain.id, domain.name.clone());
            match outcome {
                Outcome::Poweroff(code) => hvprintln!("d{id} {name}: exited: poweroff code {code}"),
                Outcome::Crash(code) => hvprintln!("d{id} {name}: exited: crash code {code}"),
                Outcome::Killed | Outcome::Refused => {}
            }
            end_current(system, outcome);
            *frame = next_frame_or_finish(guard);
            finish_return(SYSTEM.lock(), frame)
        }
        Disposition::Iret => guest_iret(guard, frame),
        Disposition::Block => {
            frame.rax = 0;
            let shared = system.domains[current].memory.as_ref().expect("running").shared_info_frame();
            // BLOCK re-enables events atomically with going to sleep (SPEC.md §20.2).
            upcall::set_upcall_mask(&mut DirectMap, shared, false);
            if upcall::upcall_pending(&DirectMap, shared) {
                return finish_return(guard, frame);
            }
            sleep(guard, frame, Wait::Event)
        }
        Disposition::Poll(request) => {
            let id = system.domains[current].id;
            // A closed port could never end the sleep (SPEC.md §20.3).
            if request.ports().iter().any(|&port| system.events.port_state(id, port) == PortState::Closed) {
                frame.rax = Errno::EINVAL.to_return() as u64;
                return finish_return(guard, frame);
            }
            frame.rax = 0;
            let shared = system.domains[current].memory.as_ref().expect("running").shared_info_frame();
            let now_ns = system.clock.now_ns(cpu::rdtsc());
            let expired = request.deadline_ns != 0 && request.deadline_ns <= now_ns;
            if expired || upcall::any_pending(&DirectMap, shared, request.ports()) {
                return finish_return(guard, frame);
            }
            // A deadline left from an earlier POLL must not end this one.
            match request.deadline_ns {
                0 => system.poll_deadlines.cancel(current),
                deadline => system.poll_deadlines.set(current, deadline),
            }
            sleep(guard, frame, Wait::Ports(request))
        }
    }
}

/// Puts the running domain to sleep until `wait` is satisfied and runs another (or
/// idles); the sleeper resumes after its hypercall with RAX = 0.
fn sleep(mut guard: Guard, frame: &mut TrapFrame, wait: Wait) -> u64 {
    let system = running(&mut guard);
    let current = system.current;
    system.domains[current].wait = wait;
    switch_away(guard, frame, Reason::Blocked)
}

/// Saves the running domain's state and returns to whoever the scheduler picks for
/// `reason` (possibly the same domain, for a yield or preemption with nobody waiting).
fn switch_away(mut guard: Guard, frame: &mut TrapFrame, reason: Reason) -> u64 {
    let system = running(&mut guard);
    let current = system.current;
    system.domains[current].state = *frame;
    *frame = next_frame(guard, reason);
    finish_return(SYSTEM.lock(), frame)
}

/// Carries out what a hypercall changed in the running vCPU's segment bases. (A new
/// kernel root is loaded by `address_space_op` itself, at once.)
fn apply_vcpu_changes(system: &mut System) {
    let domain = &mut system.domains[system.current];
    if domain.vcpu.segments_dirty {
        load_segment_bases(&domain.vcpu);
        domain.vcpu.segments_dirty = false;
    }
}

/// The `iret` hypercall: the frame at the guest's RSP, validated, becomes the state.
fn guest_iret(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    let domain = &mut system.domains[system.current];
    let Some(memory) = domain.memory.as_ref() else {
        unreachable!("the running domain always has memory");
    };
    let mut bytes = [0u8; core::mem::size_of::<IretFrame>()];
    if let Err(fault) = guest_memory::copy_from_guest(&DirectMap, memory.kernel_space(), frame.rsp, &mut bytes) {
        let reason = format!("iret frame at rsp {:#x} is not readable: {fault}", frame.rsp);
        return kill_and_continue(guard, frame, &reason);
    }
    let Ok(saved) = IretFrame::read_from_bytes(&bytes) else {
        unreachable!("the buffer is exactly one IretFrame");
    };
    let shared = memory.shared_info_frame();
    match bounce::iret(frame, &saved, memory.user_root().is_some()) {
        Ok((resume, mode, events_masked)) => {
            // `iret` restores the virtual interrupt flag the frame saved (SPEC.md §18.3).
            upcall::set_upcall_mask(&mut DirectMap, shared, events_masked);
            *frame = resume;
            change_mode(system, mode);
            finish_return(guard, frame)
        }
        Err(failure) => kill_and_continue(guard, frame, &format!("{failure}")),
    }
}

/// Moves the running vCPU to `mode`: its root and GS base follow.
fn change_mode(system: &mut System, mode: Mode) {
    let domain = &mut system.domains[system.current];
    if domain.vcpu.mode == mode {
        return;
    }
    domain.vcpu.mode = mode;
    if let Some(root) = domain.current_root() {
        load_root(root);
    }
    load_segment_bases(&domain.vcpu);
}

/// Rust side of every exception and interrupt.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) -> u64 {
    if !frame.from_guest() {
        // The idle loop halts with interrupts on; it finds out what happened itself.
        match frame.vector {
            vector if vector == u64::from(apic::TIMER_VECTOR) => {
                apic::timer_interrupt();
                return ReturnPath::Iret as u64;
            }
            vector if vector == u64::from(apic::SPURIOUS_VECTOR) => return ReturnPath::Iret as u64,
            vector if vector == u64::from(apic::CONSOLE_VECTOR) => {
                // The idle loop halts with the system unlocked, so this cannot deadlock;
                // try_lock keeps it that way should an interrupt ever land elsewhere.
                match SYSTEM.try_lock().as_mut().and_then(|guard| guard.as_mut()) {
                    Some(system) => input_focus::receive(system),
                    // Draining is what re-arms the UART's edge; the bytes are lost.
                    None => while console::receive().is_some() {},
                }
                apic::eoi();
                return ReturnPath::Iret as u64;
            }
            _ => {}
        }
        panic!(
            "hypervisor {} (vector {}) at rip {:#x} error {:#x} cr2 {:#x}",
            exception::name(frame.vector),
            frame.vector,
            frame.rip,
            frame.error_code,
            cpu::fault_address()
        );
    }
    let guard = SYSTEM.lock();
    match frame.vector {
        // A PVM-based KVM host runs a ring-3 `syscall` to LSTAR without entering ring 0,
        // so it faults fetching the (supervisor) entry stub. RCX and R11 hold what the
        // instruction put there; carry on exactly as the `syscall` entry would. A guest
        // that jumps there itself only gets a system call with registers it chose.
        14 if frame.rip == entry::hypercall_entry_address() => {
            frame.rip = frame.rcx;
            frame.rflags = frame.r11;
            frame.vector = HYPERCALL_VECTOR;
            frame.error_code = 0;
            system_call(guard, frame)
        }
        6 => invalid_opcode(guard, frame),
        // Every gate is ring 0, so a ring-3 `int3` should arrive as #GP; a PVM-based KVM
        // host delivers it as #BP after the instruction instead. Either way it is a
        // software interrupt the trap table must grant, not a hardware #BP.
        3 => breakpoint(guard, frame),
        // Error code with the IDT bit: an `int n` through a gate ring 3 may not use.
        13 if frame.error_code & 0b11 == 0b10 => refused_gate(guard, frame),
        number if number == u64::from(apic::TIMER_VECTOR) => timer_interrupt(guard, frame),
        number if number == u64::from(apic::CONSOLE_VECTOR) => console_interrupt(guard, frame),
        // Not caused by the guest: nothing to deliver, resume it. (The spurious vector
        // must not be acknowledged.)
        2 | 32..=255 => finish_return(guard, frame),
        18 => panic!("machine check while running a guest at rip {:#x}", frame.rip),
        number => {
            let fault_address = if number == 14 { cpu::fault_address() } else { 0 };
            let event = Event::Exception { vector: number as u8, error_code: frame.error_code, fault_address };
            bounce_event(guard, frame, event)
        }
    }
}

/// The LAPIC timer fired while a guest ran: expire timers, wake their domains, and
/// preempt the running domain at the end of its slice (SPEC.md §20.1) — also when it
/// spins with events masked, which masks only virtual interrupts.
fn timer_interrupt(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    apic::timer_interrupt();
    let system = running(&mut guard);
    let now = cpu::rdtsc();
    wakeups::expire(system, now);
    if system.scheduler.slice_expired(now) {
        return switch_away(guard, frame, Reason::Preempted);
    }
    finish_return(guard, frame)
}

/// COM1 received bytes while a guest ran: they go to the focused domain, whose upcall (if
/// it is the one interrupted) is delivered on the way back.
fn console_interrupt(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    input_focus::receive(running(&mut guard));
    apic::eoi();
    finish_return(guard, frame)
}

/// Reads `N` instruction bytes at `address` in the running vCPU's current address space.
fn code_bytes<const N: usize>(system: &System, address: u64) -> Option<[u8; N]> {
    let space = system.domains[system.current].current_space()?;
    let mut bytes = [0u8; N];
    guest_memory::copy_from_guest(&DirectMap, space, address, &mut bytes).ok()?;
    Some(bytes)
}

/// #UD: the trapping hypercall (guest-kernel mode only), an `int n` on a host that
/// reports ring-3 software interrupts as #UD, or a real invalid opcode.
fn invalid_opcode(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    let kernel = system.domains[system.current].vcpu.mode == Mode::Kernel;
    if kernel && code_bytes::<4>(system, frame.rip) == Some(TRAPPING_HYPERCALL) {
        // The sequence may end at the top of the address space: no return address.
        let Some(next) = frame.rip.checked_add(TRAPPING_HYPERCALL.len() as u64) else {
            return kill_and_continue(guard, frame, "trapping hypercall at the top of the address space has no return address");
        };
        frame.rip = next;
        return handle_hypercall(guard, frame);
    }
    if let Some((number, length)) = code_bytes::<2>(system, frame.rip).and_then(bounce::decode_software_interrupt) {
        return bounce_event(guard, frame, Event::SoftwareInterrupt { vector: number, length });
    }
    let event = Event::Exception { vector: vector::INVALID_OPCODE, error_code: 0, fault_address: 0 };
    bounce_event(guard, frame, event)
}

/// A #BP from the guest: if the instruction before RIP is `int3` (CC) or `int 3`
/// (CD 03), it is that software interrupt, judged by the trap table at its address.
fn breakpoint(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    for length in [1u64, 2] {
        let Some(address) = frame.rip.checked_sub(length) else { continue };
        let decoded = code_bytes::<2>(system, address).and_then(bounce::decode_software_interrupt);
        if decoded == Some((vector::BREAKPOINT, length)) {
            frame.rip = address;
            return bounce_event(guard, frame, Event::SoftwareInterrupt { vector: vector::BREAKPOINT, length });
        }
    }
    let event = Event::Exception { vector: vector::BREAKPOINT, error_code: 0, fault_address: 0 };
    bounce_event(guard, frame, event)
}

/// #GP naming an IDT gate: the guest executed `int n` (or `int3`), which the hardware
/// refused because every gate is ring 0; whether the guest may raise it is the trap
/// table's decision. The gate index is the error code's selector field (`n * 8 + 2`);
/// QEMU's TCG reports `n * 16 + 2` (the 16-byte gate's offset), so both are accepted
/// when the instruction bytes name that vector.
fn refused_gate(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    let system = running(&mut guard);
    let gates = [frame.error_code >> 3, frame.error_code >> 4];
    let decoded = code_bytes::<2>(system, frame.rip).and_then(bounce::decode_software_interrupt);
    let event = match decoded {
        Some((number, length)) if gates.contains(&u64::from(number)) => Event::SoftwareInterrupt { vector: number, length },
        _ => Event::Exception { vector: vector::GENERAL_PROTECTION, error_code: frame.error_code, fault_address: 0 },
    };
    bounce_event(guard, frame, event)
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

/// Delivers `event` to the running domain's guest kernel (SPEC.md §11.4), or kills the
/// domain if it cannot be delivered — no handler, no stack, a stack it cannot write:
/// the paravirtual triple fault.
fn bounce_event(mut guard: Guard, frame: &mut TrapFrame, event: Event) -> u64 {
    let system = running(&mut guard);
    let domain = &mut system.domains[system.current];
    let shared = domain.memory.as_ref().expect("the running domain always has memory").shared_info_frame();
    // The frame's IF is the virtual interrupt flag: !upcall_mask (SPEC.md §18.3).
    let masked = upcall::upcall_mask(&DirectMap, shared);
    let delivery = match bounce::deliver(&domain.vcpu, frame, event, masked) {
        Ok(delivery) => delivery,
        Err(failure) => {
            let reason = format!("{}: {failure}", describe(frame, &event));
            return kill_and_continue(guard, frame, &reason);
        }
    };
    let Some(memory) = domain.memory.as_ref() else {
        unreachable!("the running domain always has memory");
    };
    let written = guest_memory::copy_to_guest(&mut DirectMap, memory.kernel_space(), delivery.frame_address, delivery.frame.as_bytes());
    if let Err(fault) = written {
        let reason = format!(
            "{}: fault delivering {}: guest-kernel stack {:#x} is not writable ({fault})",
            describe(frame, &event),
            exception::name(delivery.vector),
            delivery.frame_address
        );
        return kill_and_continue(guard, frame, &reason);
    }
    // Only a real #PF has a faulting address (a granted `int 14` does not).
    if matches!(event, Event::Exception { vector: vector::PAGE_FAULT, .. }) {
        DirectMap.write(memory.shared_info_frame(), cr2_offset(0), &delivery.frame.fault_address.to_le_bytes());
    }
    if delivery.masks_events {
        upcall::set_upcall_mask(&mut DirectMap, shared, true);
    }
    *frame = delivery.resume;
    change_mode(system, Mode::Kernel);
    finish_return(guard, frame)
}

/// Delivers the running domain's pending event to its event callback (SPEC.md §18.4).
pub(crate) fn deliver_upcall(mut guard: Guard, frame: &mut TrapFrame) -> u64 {
    // The handler may read the time first thing: a timer's upcall must not find the
    // clock short of its deadline (SPEC.md §18.4 step 1, §19.4).
    let system = running(&mut guard);
    if let Some(memory) = system.domains[system.current].memory.as_ref() {
        write_time_info(memory.shared_info_frame(), &system.clock);
    }
    bounce_event(guard, frame, Event::Upcall)
}

/// Kills the running domain with `reason` and continues with the next one.
fn kill_and_continue(mut guard: Guard, frame: &mut TrapFrame, reason: &str) -> u64 {
    kill_current(running(&mut guard), reason);
    *frame = next_frame_or_finish(guard);
    finish_return(SYSTEM.lock(), frame)
}

