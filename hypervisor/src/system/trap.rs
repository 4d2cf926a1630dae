//! The trap entry: exceptions the running domain caused (bounced to its kernel, or
//! a software interrupt or trapping hypercall in disguise), and the timer and console
//! interrupts that arrive while it runs.

use crate::domain::vcpu::Mode;
use crate::mm::guest_memory;
use crate::platform::Platform;
use crate::sched::policy::Reason;
use crate::system::{Step, System};
use crate::trap::bounce::{self, Event};
use crate::trap::frame::TrapFrame;
use crate::trap::frame::HYPERCALL_VECTOR;
use hypercall_abi::hypercall::TRAPPING_HYPERCALL;
use hypercall_abi::trap::vector;

impl<P: Platform> System<P> {
    /// An exception (vector below 32, or a vector the hypervisor does not handle) the
    /// running domain caused or was interrupted by.
    pub fn exception(&mut self, frame: &mut TrapFrame) -> Step {
        // A vector a PVM-based KVM host's own IDT opens to ring 3 (Linux's: 4 for `into`,
        // 0x80 for 32-bit system calls) arrives as if the gate had admitted the guest's
        // `int n`: after the instruction, with no #GP. In 64-bit code only `int 4` raises
        // #OF, and no device of ours uses an unhandled vector, so an `int n` right before
        // RIP naming this vector is that instruction, judged by the trap table like any
        // other (SPEC.md §4.4).
        if let Ok(number @ (4 | 32..=255)) = u8::try_from(frame.vector) {
            if let Some((at, length)) = self.software_interrupt_before(frame.rip, number) {
                frame.rip = at;
                return self.bounce_event(frame, Event::SoftwareInterrupt { vector: number, length });
            }
        }
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
                return self.kill_and_continue(
                    frame,
                    "trapping hypercall at the top of the address space has no return address",
                );
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
    ///
    /// Vector 3's gate admits ring 3, so every #BP is one of those two instructions (no
    /// other instruction or event raises #BP) and RIP is already after it, where a granted
    /// one resumes: when the trap table grants it, it is delivered without reading the
    /// instruction bytes (a page-table walk). Only a refused one needs them, to report the
    /// #GP at the instruction. While tracing, the bytes are read anyway: a BOUNCE record
    /// names the interrupted RIP, the instruction's own (SPEC.md §22).
    fn breakpoint(&mut self, frame: &mut TrapFrame) -> Step {
        let vcpu = &self.domains[self.current].vcpu;
        let granted = vcpu
            .trap_handler(vector::BREAKPOINT)
            .is_some_and(|entry| vcpu.mode == Mode::Kernel || entry.user_may_raise);
        if granted && self.trace.is_none() {
            return self.bounce_event(frame, Event::SoftwareInterrupt { vector: vector::BREAKPOINT, length: 0 });
        }
        if let Some((address, length)) = self.software_interrupt_before(frame.rip, vector::BREAKPOINT) {
            frame.rip = address;
            return self.bounce_event(frame, Event::SoftwareInterrupt { vector: vector::BREAKPOINT, length });
        }
        let event = Event::Exception { vector: vector::BREAKPOINT, error_code: 0, fault_address: 0 };
        self.bounce_event(frame, event)
    }

    /// The address and length of the software interrupt raising `number` that ends at
    /// `rip` (`int3` or `int n`), if there is one: how a host that reports it after the
    /// instruction (#BP; a vector delivered through its own ring-3 gate) is undone.
    fn software_interrupt_before(&self, rip: u64, number: u8) -> Option<(u64, u64)> {
        [1u64, 2].into_iter().find_map(|length| {
            let address = rip.checked_sub(length)?;
            let decoded = self.code_bytes::<2>(address).and_then(bounce::decode_software_interrupt)?;
            (decoded == (number, length)).then_some((address, length))
        })
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
            Some((number, length)) if gates.contains(&u64::from(number)) => {
                Event::SoftwareInterrupt { vector: number, length }
            }
            _ => {
                Event::Exception { vector: vector::GENERAL_PROTECTION, error_code: frame.error_code, fault_address: 0 }
            }
        };
        self.bounce_event(frame, event)
    }
}
