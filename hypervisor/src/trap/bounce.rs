//! Exception and event-upcall delivery ("bounce") and the `iret` hypercall's frame check.
//!
//! Both are pure decisions: [`deliver`] computes the [`ExceptionFrame`], where it goes
//! and the registers to resume with; the system writes the frame through the checked
//! accessor in the kernel root and switches the vCPU to guest-kernel mode. [`iret`]
//! validates a frame the guest handed back and computes the registers to resume with.
//! Neither mutates anything, so a refused event or frame leaves the domain as it was for
//! the kill report.
//!
//! The virtual interrupt flag is the shared-info `upcall_mask` (1 = events off). Hardware
//! IF is always on while a guest runs, so a frame's `rflags.IF` carries the virtual flag
//! instead: every frame says IF = !mask at the time of the event, and `iret` hands back
//! the mask a frame asks for (`!rflags.IF`), which is how an upcall handler's return
//! re-enables events.

use crate::domain::vcpu::{is_guest_address, Mode, Vcpu};
use crate::trap::frame::{TrapFrame, GUEST_CODE_SELECTOR, GUEST_STACK_SELECTOR, RFLAGS_INTERRUPT, RFLAGS_RESERVED_ONE};
use core::fmt;
use hypercall_abi::event::EVENT_VECTOR;
use hypercall_abi::layout::{is_canonical, is_guest_range};
use hypercall_abi::trap::vector::VectorName;
use hypercall_abi::trap::{
    exception_flags, iret_flags, page_fault, vector, ExceptionFrame, IretFrame, KERNEL_CS, KERNEL_SS,
    RFLAGS_GUEST_SETTABLE, SYSCALL_VECTOR, USER_CS, USER_SS,
};
use hypercall_abi::GuestVirtualAddress;

/// Size of the frame written below the stack pointer.
const FRAME_BYTES: u64 = core::mem::size_of::<ExceptionFrame>() as u64;
/// Length of the `syscall` instruction (0f 05): a refused one faults at its first byte.
const SYSCALL_LENGTH: u64 = 2;

/// RFLAGS.TF: a handler must not start single-stepped.
const RFLAGS_TRAP: u64 = 1 << 8;
/// RFLAGS.DF: the ABI promises handlers a clear direction flag, as hardware gates do not.
const RFLAGS_DIRECTION: u64 = 1 << 10;
/// RFLAGS.NT.
const RFLAGS_NESTED_TASK: u64 = 1 << 14;
/// RFLAGS.RF.
const RFLAGS_RESUME: u64 = 1 << 16;
/// RFLAGS.AC: with SMAP-like checks in a guest kernel, a handler starts with them on.
const RFLAGS_ALIGNMENT_CHECK: u64 = 1 << 18;
/// What delivery clears in the handler's RFLAGS (IF is kept: it is virtual).
const RFLAGS_CLEARED_ON_DELIVERY: u64 =
    RFLAGS_TRAP | RFLAGS_DIRECTION | RFLAGS_NESTED_TASK | RFLAGS_RESUME | RFLAGS_ALIGNMENT_CHECK;

/// What happened to the guest.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum Event {
    /// A CPU exception at `interrupted.rip` (for traps like #DB, the CPU's RIP as saved).
    /// `fault_address` is CR2 and only used for #PF.
    Exception { vector: u8, error_code: u64, fault_address: u64 },
    /// `int n` / `int3` at `interrupted.rip`, `length` bytes long (see
    /// [`decode_software_interrupt`]).
    SoftwareInterrupt { vector: u8, length: u64 },
    /// A `syscall` whose return address is `interrupted.rip` (= RCX), with RFLAGS as the
    /// CPU saved them in R11 also in `interrupted.rflags`.
    Syscall,
    /// An event upcall: pending events and events unmasked, delivered to the event
    /// callback with [`EVENT_VECTOR`]; the guest resumes at `interrupted.rip` on `iret`.
    Upcall,
}

/// What the system carries out for a delivered event.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Where `frame` goes, in the kernel root; 16-byte aligned.
    pub frame_address: u64,
    /// The bytes to write there.
    pub frame: ExceptionFrame,
    /// The registers that change to enter the handler in guest-kernel mode.
    pub resume: Resume,
    /// The event happened in guest-user mode (the system switches to the kernel root and
    /// GS base).
    pub from_user: bool,
    /// The vector actually delivered (a refused `int n` is #GP, a `syscall` without
    /// entry is #UD, a granted `syscall` is [`SYSCALL_VECTOR`], an upcall is
    /// [`EVENT_VECTOR`]).
    pub vector: u64,
    /// The system sets `upcall_mask` before the handler runs (an upcall: the handler
    /// starts with events off, and its `iret` restores the flag the frame carries).
    /// Exceptions leave the mask as it is.
    pub masks_events: bool,
}

/// The registers a delivery or an `iret` changes; every other register keeps the value it
/// has in the frame they are applied to. Small on purpose: the system applies it to the
/// live frame in place instead of copying a whole [`TrapFrame`] around (under QEMU's TCG
/// every copied word showed in the bounce benchmarks).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// RAX, RCX and R11, if they change (`iret` restores them; a delivery keeps them).
    pub registers: Option<[u64; 3]>,
    /// Where execution resumes.
    pub rip: u64,
    /// The stack pointer to resume with.
    pub rsp: u64,
    /// RFLAGS to resume with (hardware IF and bit 1 set).
    pub rflags: u64,
}

impl Resume {
    /// Writes the changed registers into `frame`, with the guest's hardware selectors.
    #[inline]
    pub fn apply(&self, frame: &mut TrapFrame) {
        if let Some([rax, rcx, r11]) = self.registers {
            frame.rax = rax;
            frame.rcx = rcx;
            frame.r11 = r11;
        }
        frame.rip = self.rip;
        frame.rsp = self.rsp;
        frame.rflags = self.rflags;
        frame.cs = GUEST_CODE_SELECTOR;
        frame.ss = GUEST_STACK_SELECTOR;
    }

    /// `frame` with the changes applied (for tests and callers that keep the original).
    pub fn applied_to(&self, frame: &TrapFrame) -> TrapFrame {
        let mut resumed = *frame;
        self.apply(&mut resumed);
        resumed
    }
}

/// Why an event could not be delivered; the domain is killed with this one-line reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum DeliveryFailure {
    /// The trap table has no handler (or no syscall entry and no #UD handler, or no
    /// event callback for an upcall).
    NoHandler { vector: u64, rip: u64 },
    /// The event came from guest-user mode and `stack_switch` was never called.
    NoKernelStack { vector: u64 },
    /// The frame would not fit below `stack`: it wraps, leaves canonical space or
    /// touches the hypervisor range.
    BadStack { vector: u64, stack: u64 },
    /// The system could not write the frame at `frame_address` (like a triple fault).
    StackNotWritable { vector: u64, frame_address: u64 },
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoHandler { vector, rip } => write!(f, "no handler for {} at rip {rip:#x}", VectorName(vector)),
            Self::NoKernelStack { vector } => {
                write!(f, "no guest-kernel stack for {} from guest-user mode", VectorName(vector))
            }
            Self::BadStack { vector, stack } => write!(
                f,
                "fault delivering {}: guest stack {stack:#x} cannot hold the exception frame",
                VectorName(vector)
            ),
            Self::StackNotWritable { vector, frame_address } => {
                write!(f, "fault delivering {}: guest stack {frame_address:#x} not writable", VectorName(vector))
            }
        }
    }
}

/// The vector, error code, fault address, handler and reported RIP an event resolves to.
struct Target {
    vector: u64,
    error_code: u64,
    fault_address: u64,
    handler: Option<u64>,
    rip: u64,
}

fn exception_target(vcpu: &Vcpu, vector: u8, error_code: u64, rip: u64) -> Target {
    Target {
        vector: u64::from(vector),
        error_code,
        fault_address: 0,
        handler: vcpu.trap_handler(vector).map(|entry| entry.handler),
        rip,
    }
}

fn resolve(vcpu: &Vcpu, interrupted: &TrapFrame, event: Event) -> Target {
    let from_user = vcpu.mode == Mode::User;
    match event {
        Event::Exception { vector: vector::PAGE_FAULT, error_code, fault_address } => {
            // The hardware USER bit is always set (both modes are ring 3); the guest
            // needs the virtual mode instead.
            let user = if from_user { page_fault::USER } else { 0 };
            let error_code = (error_code & !page_fault::USER) | user;
            Target { fault_address, ..exception_target(vcpu, vector::PAGE_FAULT, error_code, interrupted.rip) }
        }
        Event::Exception { vector, error_code, .. } => exception_target(vcpu, vector, error_code, interrupted.rip),
        Event::SoftwareInterrupt { vector, length } => match vcpu.trap_handler(vector) {
            Some(entry) if !from_user || entry.user_may_raise => {
                exception_target(vcpu, vector, 0, interrupted.rip.wrapping_add(length))
            }
            // What a hardware gate with too low a DPL does: #GP with the IDT-selector
            // error code, reported at the instruction.
            _ => exception_target(vcpu, vector::GENERAL_PROTECTION, u64::from(vector) * 8 + 2, interrupted.rip),
        },
        Event::Syscall => match vcpu.syscall_entry {
            Some(entry) => Target {
                vector: SYSCALL_VECTOR,
                error_code: 0,
                fault_address: 0,
                handler: Some(entry),
                rip: interrupted.rip,
            },
            // What `syscall` with EFER.SCE clear does: #UD at the instruction.
            None => exception_target(vcpu, vector::INVALID_OPCODE, 0, interrupted.rip.wrapping_sub(SYSCALL_LENGTH)),
        },
        Event::Upcall => Target {
            vector: EVENT_VECTOR,
            error_code: 0,
            fault_address: 0,
            handler: vcpu.event_callback,
            rip: interrupted.rip,
        },
    }
}

/// Decides how `event`, which interrupted the guest in `vcpu.mode` with registers
/// `interrupted`, reaches the guest kernel. `events_masked` is the domain's
/// `upcall_mask` at the event; the frame's `iret.rflags.IF` is its inverse (the
/// interrupted hardware IF is always 1 and says nothing). Inline: the caller writes the
/// frame where this builds it, with no copy of the whole result in between (a plain
/// `#[inline]` was not enough for the compiler to take it).
#[inline(always)]
pub fn deliver(
    vcpu: &Vcpu,
    interrupted: &TrapFrame,
    event: Event,
    events_masked: bool,
) -> Result<Delivery, DeliveryFailure> {
    let from_user = vcpu.mode == Mode::User;
    let target = resolve(vcpu, interrupted, event);
    let vector = target.vector;
    let handler = target.handler.ok_or(DeliveryFailure::NoHandler { vector, rip: target.rip })?;
    let stack =
        if from_user { vcpu.kernel_stack.ok_or(DeliveryFailure::NoKernelStack { vector })? } else { interrupted.rsp };
    let frame_address = (stack & !15)
        .checked_sub(FRAME_BYTES)
        .filter(|&address| is_guest_range(address, FRAME_BYTES))
        .ok_or(DeliveryFailure::BadStack { vector, stack })?;
    let (cs, ss) = if from_user { (USER_CS, USER_SS) } else { (KERNEL_CS, KERNEL_SS) };
    let frame = ExceptionFrame {
        vector,
        error_code: target.error_code,
        fault_address: GuestVirtualAddress(target.fault_address),
        flags: if from_user { exception_flags::FROM_USER } else { 0 },
        iret: IretFrame {
            rax: interrupted.rax,
            r11: interrupted.r11,
            rcx: interrupted.rcx,
            flags: 0,
            rip: target.rip,
            cs,
            // Hardware may have set bits (RF after a fault) that `iret` refuses; the
            // guest must be able to return with the frame exactly as given.
            rflags: (interrupted.rflags & RFLAGS_GUEST_SETTABLE & !RFLAGS_INTERRUPT)
                | RFLAGS_RESERVED_ONE
                | if events_masked { 0 } else { RFLAGS_INTERRUPT },
            rsp: interrupted.rsp,
            ss,
        },
    };
    let resume = Resume {
        registers: None,
        rip: handler,
        rsp: frame_address,
        rflags: interrupted.rflags & !RFLAGS_CLEARED_ON_DELIVERY,
    };
    let masks_events = event == Event::Upcall;
    Ok(Delivery { frame_address, frame, resume, from_user, vector, masks_events })
}

/// Recognizes the software-interrupt instructions in the two bytes at a faulting RIP:
/// `CC` (`int3`, vector 3, one byte) and `CD nn` (`int nn`, two bytes). Hosts report
/// them differently (#GP on TCG, #UD on a PVM host), so the system decodes them itself.
pub fn decode_software_interrupt(bytes: [u8; 2]) -> Option<(u8, u64)> {
    match bytes {
        [0xcc, _] => Some((vector::BREAKPOINT, 1)),
        [0xcd, vector] => Some((vector, 2)),
        _ => None,
    }
}

/// Why an `iret` frame was refused; the domain is killed with this one-line reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum IretFailure {
    /// `flags` has a bit this version does not define.
    Flags(u64),
    /// `cs` is neither [`KERNEL_CS`] nor [`USER_CS`].
    CodeSelector(u64),
    /// `ss` does not belong to the mode `cs` names.
    StackSelector { cs: u64, ss: u64 },
    /// `rip` is not canonical.
    RipNotCanonical(u64),
    /// `rip` is inside the hypervisor range.
    RipInHypervisor(u64),
    /// `rsp` is not canonical.
    RspNotCanonical(u64),
    /// `rsp` is inside the hypervisor range.
    RspInHypervisor(u64),
    /// `rflags` sets a bit outside [`RFLAGS_GUEST_SETTABLE`] (other than bit 1).
    Rflags(u64),
    /// The frame returns to guest-user mode but no user root is installed.
    NoUserRoot,
}

/// Names of the RFLAGS bits a frame may not set, for reports.
const FORBIDDEN_RFLAGS: [(u64, &str); 6] =
    [(3 << 12, "IOPL"), (1 << 14, "NT"), (1 << 16, "RF"), (1 << 17, "VM"), (1 << 19, "VIF"), (1 << 20, "VIP")];

impl fmt::Display for IretFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("iret frame: ")?;
        match *self {
            Self::Flags(flags) => write!(f, "flags {flags:#x} has undefined bits"),
            Self::CodeSelector(cs) => write!(f, "cs {cs:#x} is not a guest selector"),
            Self::StackSelector { cs, ss } => write!(f, "ss {ss:#x} does not match cs {cs:#x}"),
            Self::RipNotCanonical(rip) => write!(f, "rip {rip:#x} is not canonical"),
            Self::RipInHypervisor(rip) => write!(f, "rip {rip:#x} is in the hypervisor range"),
            Self::RspNotCanonical(rsp) => write!(f, "rsp {rsp:#x} is not canonical"),
            Self::RspInHypervisor(rsp) => write!(f, "rsp {rsp:#x} is in the hypervisor range"),
            Self::Rflags(rflags) => {
                let forbidden = rflags & !(RFLAGS_GUEST_SETTABLE | RFLAGS_RESERVED_ONE);
                write!(f, "rflags {rflags:#x} sets forbidden bits {forbidden:#x} (")?;
                let mut rest = forbidden;
                let mut first = true;
                for (mask, name) in FORBIDDEN_RFLAGS {
                    if rest & mask != 0 {
                        f.write_str(if first { "" } else { " " })?;
                        f.write_str(name)?;
                        rest &= !mask;
                        first = false;
                    }
                }
                if rest != 0 {
                    f.write_str(if first { "reserved" } else { " reserved" })?;
                }
                f.write_str(")")
            }
            Self::NoUserRoot => {
                write!(f, "cs {USER_CS:#x} returns to guest-user mode but there is no user address space")
            }
        }
    }
}

/// Validates `frame` (read from the guest's RSP in the kernel root) and computes where
/// execution resumes: RAX, RCX, R11, RIP, RSP and RFLAGS from the frame (hardware IF
/// and bit 1 forced on); applied to the registers at the hypercall, every other register
/// keeps its value, and the selectors are the hardware ones. Also returns the mode to
/// resume in and the `upcall_mask` to restore: masked exactly when the frame's IF is
/// clear. The system stores that mask, then re-checks for a deliverable upcall before
/// resuming.
#[inline]
pub fn iret(frame: &IretFrame, has_user_root: bool) -> Result<(Resume, Mode, bool), IretFailure> {
    if frame.flags & !iret_flags::ALL != 0 {
        return Err(IretFailure::Flags(frame.flags));
    }
    let (mode, expected_ss) = match frame.cs {
        KERNEL_CS => (Mode::Kernel, KERNEL_SS),
        USER_CS => (Mode::User, USER_SS),
        cs => return Err(IretFailure::CodeSelector(cs)),
    };
    if frame.ss != expected_ss {
        return Err(IretFailure::StackSelector { cs: frame.cs, ss: frame.ss });
    }
    if !is_canonical(frame.rip) {
        return Err(IretFailure::RipNotCanonical(frame.rip));
    }
    if !is_guest_address(frame.rip) {
        return Err(IretFailure::RipInHypervisor(frame.rip));
    }
    if !is_canonical(frame.rsp) {
        return Err(IretFailure::RspNotCanonical(frame.rsp));
    }
    if !is_guest_address(frame.rsp) {
        return Err(IretFailure::RspInHypervisor(frame.rsp));
    }
    if frame.rflags & !(RFLAGS_GUEST_SETTABLE | RFLAGS_RESERVED_ONE) != 0 {
        return Err(IretFailure::Rflags(frame.rflags));
    }
    if mode == Mode::User && !has_user_root {
        return Err(IretFailure::NoUserRoot);
    }
    let resume = Resume {
        registers: Some([frame.rax, frame.rcx, frame.r11]),
        rip: frame.rip,
        rsp: frame.rsp,
        rflags: frame.rflags | RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE,
    };
    let events_masked = frame.rflags & RFLAGS_INTERRUPT == 0;
    Ok((resume, mode, events_masked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trap::frame::RFLAGS_INTERRUPT;
    use alloc::string::ToString;
    use hypercall_abi::layout::{HYPERVISOR_END, HYPERVISOR_START};
    use hypercall_abi::trap::{trap_flags, TrapTableEntry};

    const HANDLER: u64 = 0xffff_ffff_8000_2000;
    const KERNEL_STACK: u64 = 0xffff_ffff_8010_0000;

    /// Registers with a distinct value in every general register.
    fn interrupted(rsp: u64) -> TrapFrame {
        TrapFrame {
            r15: 15,
            r14: 14,
            r13: 13,
            r12: 12,
            r11: 11,
            r10: 10,
            r9: 9,
            r8: 8,
            rbp: 0xb9,
            rdi: 0xd1,
            rsi: 0x51,
            rdx: 0xd8,
            rcx: 0xc8,
            rbx: 0xb8,
            rax: 0xa8,
            vector: 0,
            error_code: 0,
            rip: 0x40_1000,
            cs: GUEST_CODE_SELECTOR,
            rflags: RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE,
            rsp,
            ss: GUEST_STACK_SELECTOR,
        }
    }

    fn vcpu_with(entries: &[(u8, u8)]) -> Vcpu {
        let mut vcpu = Vcpu::new();
        let entries: alloc::vec::Vec<_> = entries
            .iter()
            .map(|&(vector, flags)| TrapTableEntry {
                vector,
                flags,
                reserved: [0; 6],
                handler: hypercall_abi::GuestVirtualAddress(HANDLER + u64::from(vector) * 16),
            })
            .collect();
        vcpu.set_trap_table(&entries).unwrap();
        vcpu.kernel_stack = Some(KERNEL_STACK);
        vcpu
    }

    fn handler(vector: u8) -> u64 {
        HANDLER + u64::from(vector) * 16
    }

    fn user(mut vcpu: Vcpu) -> Vcpu {
        vcpu.mode = Mode::User;
        vcpu
    }

    #[test]
    fn kernel_mode_exception_uses_interrupted_stack_aligned() {
        let vcpu = vcpu_with(&[(13, 0)]);
        for (rsp, expected) in [(0x7000, 0x7000 - 104), (0x7008, 0x7000 - 104), (0x700f, 0x7000 - 104)] {
            let frame = interrupted(rsp);
            let delivery =
                deliver(&vcpu, &frame, Event::Exception { vector: 13, error_code: 0x18, fault_address: 0xdead }, false)
                    .unwrap();
            assert_eq!(delivery.frame_address, expected);
            assert_eq!(delivery.frame_address % 8, 0);
            assert_eq!((delivery.frame_address + 104) % 16, 0, "the stack above the frame is 16-byte aligned");
            assert_eq!(delivery.vector, 13);
            assert!(!delivery.from_user);
            assert_eq!(delivery.frame.error_code, 0x18);
            assert_eq!(delivery.frame.fault_address, GuestVirtualAddress(0), "only #PF reports an address");
            assert_eq!(delivery.frame.flags, 0);
            assert_eq!((delivery.frame.iret.cs, delivery.frame.iret.ss), (KERNEL_CS, KERNEL_SS));
            assert_eq!(delivery.frame.iret.rsp, rsp);
            assert_eq!(delivery.frame.iret.rip, 0x40_1000);
            assert_eq!(delivery.resume.rip, handler(13));
            assert_eq!(delivery.resume.rsp, expected);
        }
    }

    #[test]
    fn user_mode_exception_uses_kernel_stack() {
        let vcpu = user(vcpu_with(&[(0, 0)]));
        let delivery = deliver(
            &vcpu,
            &interrupted(0x7000),
            Event::Exception { vector: 0, error_code: 0, fault_address: 0 },
            false,
        )
        .unwrap();
        assert!(delivery.from_user);
        assert_eq!(delivery.frame_address, KERNEL_STACK - 104);
        assert_eq!(delivery.frame.flags, exception_flags::FROM_USER);
        assert_eq!((delivery.frame.iret.cs, delivery.frame.iret.ss), (USER_CS, USER_SS));
        assert_eq!(delivery.frame.iret.rsp, 0x7000);
    }

    #[test]
    fn registers_are_preserved_and_flags_cleared() {
        let vcpu = vcpu_with(&[(6, 0)]);
        let mut frame = interrupted(0x7000);
        // TF, DF, NT, RF, AC set along with IF and a status flag.
        frame.rflags =
            RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE | 1 | (1 << 8) | (1 << 10) | (1 << 14) | (1 << 16) | (1 << 18);
        let delivery =
            deliver(&vcpu, &frame, Event::Exception { vector: 6, error_code: 0, fault_address: 0 }, false).unwrap();
        let resume = delivery.resume.applied_to(&frame);
        assert_eq!(resume.rflags, RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE | 1);
        assert_eq!((resume.cs, resume.ss), (GUEST_CODE_SELECTOR, GUEST_STACK_SELECTOR));
        let expected = TrapFrame { rip: handler(6), rsp: delivery.frame_address, rflags: resume.rflags, ..frame };
        assert_eq!(resume, expected, "every other register unchanged");
        let iret = delivery.frame.iret;
        assert_eq!((iret.rax, iret.r11, iret.rcx, iret.flags), (0xa8, 11, 0xc8, 0));
        // The saved RFLAGS must pass `iret`: RF and NT are dropped, the rest kept.
        assert_eq!(iret.rflags, frame.rflags & !((1 << 14) | (1 << 16)));
        assert!(super::iret(&iret, false).is_ok());
    }

    #[test]
    fn missing_handler_and_stack() {
        let vcpu = vcpu_with(&[(14, 0)]);
        let failure = deliver(
            &vcpu,
            &interrupted(0x7000),
            Event::Exception { vector: 13, error_code: 0, fault_address: 0 },
            false,
        );
        assert_eq!(failure, Err(DeliveryFailure::NoHandler { vector: 13, rip: 0x40_1000 }));
        assert_eq!(failure.unwrap_err().to_string(), "no handler for #GP at rip 0x401000");
        let mut vcpu = user(vcpu);
        vcpu.kernel_stack = None;
        let failure = deliver(
            &vcpu,
            &interrupted(0x7000),
            Event::Exception { vector: 14, error_code: 0, fault_address: 0 },
            false,
        );
        assert_eq!(failure, Err(DeliveryFailure::NoKernelStack { vector: 14 }));
        assert_eq!(failure.unwrap_err().to_string(), "no guest-kernel stack for #PF from guest-user mode");
    }

    #[test]
    fn stack_arithmetic_is_checked() {
        let vcpu = vcpu_with(&[(14, 0)]);
        let event = Event::Exception { vector: 14, error_code: 0, fault_address: 0 };
        for stack in [0, 8, 96, 0x0000_8000_0000_0050, HYPERVISOR_END, HYPERVISOR_END + 64, 0xffff_8000_0000_1000] {
            assert_eq!(
                deliver(&vcpu, &interrupted(stack), event, false),
                Err(DeliveryFailure::BadStack { vector: 14, stack }),
                "stack {stack:#x}"
            );
        }
        // Just enough room, and the top of the lower half is a usable stack top.
        assert_eq!(deliver(&vcpu, &interrupted(112), event, false).unwrap().frame_address, 8);
        assert!(deliver(&vcpu, &interrupted(0x0000_8000_0000_0000), event, false).is_ok());
        assert!(deliver(&vcpu, &interrupted(HYPERVISOR_END + 112), event, false).is_ok());
        assert!(deliver(&vcpu, &interrupted(u64::MAX), event, false).is_ok());
        let mut vcpu = user(vcpu);
        vcpu.kernel_stack = Some(HYPERVISOR_START + 0x1000);
        assert!(matches!(deliver(&vcpu, &interrupted(0x7000), event, false), Err(DeliveryFailure::BadStack { .. })));
        let text = DeliveryFailure::BadStack { vector: 14, stack: 8 }.to_string();
        assert_eq!(text, "fault delivering #PF: guest stack 0x8 cannot hold the exception frame");
        let text = DeliveryFailure::StackNotWritable { vector: 14, frame_address: 0x6f90 }.to_string();
        assert_eq!(text, "fault delivering #PF: guest stack 0x6f90 not writable");
    }

    #[test]
    fn page_fault_user_bit_is_the_virtual_mode() {
        let vcpu = vcpu_with(&[(14, 0)]);
        let hardware = page_fault::USER | page_fault::WRITE | page_fault::PRESENT;
        let event = Event::Exception { vector: 14, error_code: hardware, fault_address: 0x1234 };
        let kernel = deliver(&vcpu, &interrupted(0x7000), event, false).unwrap();
        assert_eq!(kernel.frame.error_code, page_fault::WRITE | page_fault::PRESENT);
        assert_eq!(kernel.frame.fault_address, GuestVirtualAddress(0x1234));
        let from_user = deliver(&user(vcpu.clone()), &interrupted(0x7000), event, false).unwrap();
        assert_eq!(from_user.frame.error_code, hardware);
        let event = Event::Exception { vector: 14, error_code: page_fault::FETCH, fault_address: 0x1234 };
        let from_user = deliver(&user(vcpu), &interrupted(0x7000), event, false).unwrap();
        assert_eq!(from_user.frame.error_code, page_fault::FETCH | page_fault::USER);
    }

    #[test]
    fn software_interrupts_from_kernel_mode() {
        let vcpu = vcpu_with(&[(0x80, 0), (13, 0), (3, 0)]);
        let granted =
            deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 0x80, length: 2 }, false).unwrap();
        assert_eq!((granted.vector, granted.frame.vector, granted.frame.error_code), (0x80, 0x80, 0));
        assert_eq!(granted.frame.iret.rip, 0x40_1002, "resumes after the instruction");
        assert_eq!(granted.resume.rip, handler(0x80));
        let breakpoint =
            deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 3, length: 1 }, false).unwrap();
        assert_eq!((breakpoint.vector, breakpoint.frame.iret.rip), (3, 0x40_1001));
        // No handler: #GP(n*8+2) at the instruction.
        let refused =
            deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 0x81, length: 2 }, false).unwrap();
        assert_eq!((refused.vector, refused.frame.vector), (13, 13));
        assert_eq!(refused.frame.error_code, 0x81 * 8 + 2);
        assert_eq!(refused.frame.iret.rip, 0x40_1000);
        assert_eq!(refused.resume.rip, handler(13));
    }

    #[test]
    fn software_interrupts_from_user_mode() {
        let vcpu =
            user(vcpu_with(&[(0x80, trap_flags::USER_MAY_RAISE), (0x81, 0), (3, trap_flags::USER_MAY_RAISE), (13, 0)]));
        let granted =
            deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 0x80, length: 2 }, false).unwrap();
        assert_eq!(
            (granted.vector, granted.frame.iret.rip, granted.frame.flags),
            (0x80, 0x40_1002, exception_flags::FROM_USER)
        );
        let breakpoint =
            deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 3, length: 1 }, false).unwrap();
        assert_eq!(breakpoint.vector, 3);
        for vector in [0x81, 0x82, 14] {
            let refused =
                deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector, length: 2 }, false).unwrap();
            assert_eq!(refused.vector, 13, "vector {vector}");
            assert_eq!(refused.frame.error_code, u64::from(vector) * 8 + 2);
            assert_eq!(refused.frame.iret.rip, 0x40_1000);
        }
        // Refused with no #GP handler: the failure names #GP.
        let vcpu = user(vcpu_with(&[(0x81, 0)]));
        let failure = deliver(&vcpu, &interrupted(0x7000), Event::SoftwareInterrupt { vector: 0x81, length: 2 }, false);
        assert_eq!(failure, Err(DeliveryFailure::NoHandler { vector: 13, rip: 0x40_1000 }));
    }

    #[test]
    fn syscall_with_and_without_entry() {
        let mut vcpu = user(vcpu_with(&[(6, 0)]));
        vcpu.syscall_entry = Some(0xffff_ffff_8000_5000);
        let mut frame = interrupted(0x7000);
        frame.rcx = frame.rip;
        frame.r11 = frame.rflags;
        let delivery = deliver(&vcpu, &frame, Event::Syscall, false).unwrap();
        assert_eq!((delivery.vector, delivery.frame.vector), (SYSCALL_VECTOR, SYSCALL_VECTOR));
        assert_eq!(delivery.frame.flags, exception_flags::FROM_USER);
        assert_eq!(delivery.frame.iret.rip, 0x40_1000);
        assert_eq!(delivery.resume.rip, 0xffff_ffff_8000_5000);
        assert_eq!(delivery.frame_address, KERNEL_STACK - 104);
        vcpu.syscall_entry = None;
        let undefined = deliver(&vcpu, &frame, Event::Syscall, false).unwrap();
        assert_eq!((undefined.vector, undefined.frame.vector), (6, 6));
        assert_eq!(undefined.frame.iret.rip, 0x40_0ffe, "#UD at the syscall instruction");
        assert_eq!(undefined.resume.rip, handler(6));
        let vcpu = user(vcpu_with(&[]));
        assert_eq!(
            deliver(&vcpu, &frame, Event::Syscall, false),
            Err(DeliveryFailure::NoHandler { vector: 6, rip: 0x40_0ffe })
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_software_interrupt([0xcc, 0x90]), Some((3, 1)));
        assert_eq!(decode_software_interrupt([0xcd, 0x80]), Some((0x80, 2)));
        assert_eq!(decode_software_interrupt([0xcd, 0x03]), Some((3, 2)));
        assert_eq!(decode_software_interrupt([0x0f, 0x0b]), None);
        assert_eq!(decode_software_interrupt([0xce, 0x00]), None);
    }

    fn good_frame() -> IretFrame {
        IretFrame {
            rax: 1,
            r11: 2,
            rcx: 3,
            flags: 0,
            rip: 0xffff_ffff_8000_3000,
            cs: KERNEL_CS,
            rflags: RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE,
            rsp: 0xffff_ffff_8010_0000,
            ss: KERNEL_SS,
        }
    }

    #[test]
    fn iret_restores_frame_registers_only() {
        let current = interrupted(0x7000);
        let (resume, mode, masked) = iret(&good_frame(), false).unwrap();
        let resume = resume.applied_to(&current);
        assert!(!masked, "IF set: events enabled");
        assert_eq!(mode, Mode::Kernel);
        let expected = TrapFrame {
            rax: 1,
            r11: 2,
            rcx: 3,
            rip: 0xffff_ffff_8000_3000,
            rsp: 0xffff_ffff_8010_0000,
            rflags: RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE,
            ..current
        };
        assert_eq!(resume, expected);
        let user_frame = IretFrame {
            cs: USER_CS,
            ss: USER_SS,
            rip: 0x40_0000,
            rsp: 0x7fff_0000,
            rflags: 0x202 | 0x8d5,
            ..good_frame()
        };
        let (resume, mode, _) = iret(&user_frame, true).unwrap();
        let resume = resume.applied_to(&current);
        assert_eq!(mode, Mode::User);
        assert_eq!((resume.cs, resume.ss), (GUEST_CODE_SELECTOR, GUEST_STACK_SELECTOR));
        assert_eq!(resume.rflags, 0x202 | 0x8d5, "bit 1 set in the frame stays set");
        // Bit 1 may be clear in the frame; hardware has it set.
        let (resume, _, masked) = iret(&IretFrame { rflags: 0, ..good_frame() }, false).unwrap();
        assert_eq!(resume.rflags, RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE, "hardware IF stays on");
        assert!(masked, "IF clear in the frame: events masked");
        // Every settable flag is accepted.
        assert!(iret(&IretFrame { rflags: RFLAGS_GUEST_SETTABLE, ..good_frame() }, false).is_ok());
    }

    #[test]
    fn iret_refusals() {
        let cases = [
            (IretFrame { flags: 1, ..good_frame() }, IretFailure::Flags(1), "iret frame: flags 0x1 has undefined bits"),
            (
                IretFrame { cs: 0x08, ..good_frame() },
                IretFailure::CodeSelector(0x08),
                "iret frame: cs 0x8 is not a guest selector",
            ),
            (
                IretFrame { cs: 0x23, ss: 0x1b, ..good_frame() },
                IretFailure::CodeSelector(0x23),
                "iret frame: cs 0x23 is not a guest selector",
            ),
            (
                IretFrame { ss: USER_SS, ..good_frame() },
                IretFailure::StackSelector { cs: KERNEL_CS, ss: USER_SS },
                "iret frame: ss 0x2b does not match cs 0xe033",
            ),
            (
                IretFrame { cs: USER_CS, ..good_frame() },
                IretFailure::StackSelector { cs: USER_CS, ss: KERNEL_SS },
                "iret frame: ss 0xe02b does not match cs 0x33",
            ),
            (
                IretFrame { rip: 0x0000_8000_0000_0000, ..good_frame() },
                IretFailure::RipNotCanonical(0x0000_8000_0000_0000),
                "iret frame: rip 0x800000000000 is not canonical",
            ),
            (
                IretFrame { rip: HYPERVISOR_START + 0x10, ..good_frame() },
                IretFailure::RipInHypervisor(HYPERVISOR_START + 0x10),
                "iret frame: rip 0xffff800000000010 is in the hypervisor range",
            ),
            (
                IretFrame { rsp: 0xffff_0000_0000_0000, ..good_frame() },
                IretFailure::RspNotCanonical(0xffff_0000_0000_0000),
                "iret frame: rsp 0xffff000000000000 is not canonical",
            ),
            (
                IretFrame { rsp: HYPERVISOR_END - 8, ..good_frame() },
                IretFailure::RspInHypervisor(HYPERVISOR_END - 8),
                "iret frame: rsp 0xffff87fffffffff8 is in the hypervisor range",
            ),
            (
                IretFrame { rflags: 0x3202, ..good_frame() },
                IretFailure::Rflags(0x3202),
                "iret frame: rflags 0x3202 sets forbidden bits 0x3000 (IOPL)",
            ),
            (
                IretFrame { rflags: 0x4202, ..good_frame() },
                IretFailure::Rflags(0x4202),
                "iret frame: rflags 0x4202 sets forbidden bits 0x4000 (NT)",
            ),
            (
                IretFrame { rflags: 0x3_0202, ..good_frame() },
                IretFailure::Rflags(0x3_0202),
                "iret frame: rflags 0x30202 sets forbidden bits 0x30000 (RF VM)",
            ),
            (
                IretFrame { rflags: 0x18_0202, ..good_frame() },
                IretFailure::Rflags(0x18_0202),
                "iret frame: rflags 0x180202 sets forbidden bits 0x180000 (VIF VIP)",
            ),
            (
                IretFrame { rflags: 0x202 | (1 << 3), ..good_frame() },
                IretFailure::Rflags(0x20a),
                "iret frame: rflags 0x20a sets forbidden bits 0x8 (reserved)",
            ),
            (
                IretFrame { rflags: 0x202 | (1 << 40) | (1 << 13), ..good_frame() },
                IretFailure::Rflags(0x202 | (1 << 40) | (1 << 13)),
                "iret frame: rflags 0x10000002202 sets forbidden bits 0x10000002000 (IOPL reserved)",
            ),
            (
                IretFrame { cs: USER_CS, ss: USER_SS, rip: 0x40_0000, ..good_frame() },
                IretFailure::NoUserRoot,
                "iret frame: cs 0x33 returns to guest-user mode but there is no user address space",
            ),
        ];
        for (frame, failure, text) in cases {
            assert_eq!(iret(&frame, false), Err(failure), "{frame:?}");
            assert_eq!(failure.to_string(), text);
        }
        // The hypervisor range's end is guest memory again.
        assert!(iret(&IretFrame { rip: HYPERVISOR_END, rsp: HYPERVISOR_END, ..good_frame() }, false).is_ok());
    }

    #[test]
    fn upcall_goes_to_the_event_callback() {
        let mut vcpu = vcpu_with(&[(13, 0)]);
        vcpu.event_callback = Some(0xffff_ffff_8000_7000);
        let delivery = deliver(&vcpu, &interrupted(0x7000), Event::Upcall, false).unwrap();
        assert_eq!((delivery.vector, delivery.frame.vector), (EVENT_VECTOR, EVENT_VECTOR));
        assert_eq!((delivery.frame.error_code, delivery.frame.fault_address.0, delivery.frame.flags), (0, 0, 0));
        assert_eq!(delivery.frame.iret.rip, 0x40_1000, "resumes where it was interrupted");
        assert_eq!(delivery.resume.rip, 0xffff_ffff_8000_7000);
        assert_eq!(delivery.frame_address, 0x7000 - 104);
        assert!(delivery.masks_events);
        assert_ne!(delivery.frame.iret.rflags & RFLAGS_INTERRUPT, 0, "events were enabled");
        // From guest-user mode: the kernel stack, FROM_USER, the user selectors.
        let delivery = deliver(&user(vcpu.clone()), &interrupted(0x7000), Event::Upcall, false).unwrap();
        assert_eq!(delivery.frame_address, KERNEL_STACK - 104);
        assert_eq!(delivery.frame.flags, exception_flags::FROM_USER);
        assert_eq!((delivery.frame.iret.cs, delivery.frame.iret.ss), (USER_CS, USER_SS));
        // Exceptions leave the mask alone.
        let exception = deliver(
            &vcpu,
            &interrupted(0x7000),
            Event::Exception { vector: 13, error_code: 0, fault_address: 0 },
            false,
        );
        assert!(!exception.unwrap().masks_events);
    }

    #[test]
    fn upcall_without_callback_is_a_delivery_failure() {
        let vcpu = vcpu_with(&[(13, 0)]);
        let failure = deliver(&vcpu, &interrupted(0x7000), Event::Upcall, false);
        assert_eq!(failure, Err(DeliveryFailure::NoHandler { vector: EVENT_VECTOR, rip: 0x40_1000 }));
        let mut vcpu = user(vcpu);
        vcpu.event_callback = Some(HANDLER);
        vcpu.kernel_stack = None;
        let failure = deliver(&vcpu, &interrupted(0x7000), Event::Upcall, false);
        assert_eq!(failure, Err(DeliveryFailure::NoKernelStack { vector: EVENT_VECTOR }));
    }

    #[test]
    fn frame_if_is_the_virtual_flag() {
        let vcpu = vcpu_with(&[(6, 0)]);
        let event = Event::Exception { vector: 6, error_code: 0, fault_address: 0 };
        let mut frame = interrupted(0x7000);
        frame.rflags |= 1 | (1 << 11); // CF, OF
        let enabled = deliver(&vcpu, &frame, event, false).unwrap();
        let masked = deliver(&vcpu, &frame, event, true).unwrap();
        assert_eq!(enabled.frame.iret.rflags, RFLAGS_INTERRUPT | RFLAGS_RESERVED_ONE | 1 | (1 << 11));
        assert_eq!(masked.frame.iret.rflags, RFLAGS_RESERVED_ONE | 1 | (1 << 11));
        // Hardware IF stays on in the handler whatever the virtual flag.
        assert_ne!(masked.resume.rflags & RFLAGS_INTERRUPT, 0);
        // Even a (hypothetical) interrupted IF of 0 does not leak into the frame.
        frame.rflags &= !RFLAGS_INTERRUPT;
        assert_ne!(deliver(&vcpu, &frame, event, false).unwrap().frame.iret.rflags & RFLAGS_INTERRUPT, 0);
    }

    #[test]
    fn mask_round_trips_through_deliver_and_iret() {
        let mut vcpu = vcpu_with(&[(6, 0)]);
        vcpu.event_callback = Some(HANDLER);
        let current = interrupted(0x9000);
        for (event, masked_at_event) in [
            (Event::Upcall, false),
            (Event::Exception { vector: 6, error_code: 0, fault_address: 0 }, false),
            (Event::Exception { vector: 6, error_code: 0, fault_address: 0 }, true),
            (Event::SoftwareInterrupt { vector: 6, length: 2 }, true),
        ] {
            let delivery = deliver(&vcpu, &current, event, masked_at_event).unwrap();
            let (resume, mode, restored) = iret(&delivery.frame.iret, false).unwrap();
            assert_eq!(restored, masked_at_event, "{event:?}");
            assert_eq!(mode, Mode::Kernel);
            assert_eq!((resume.rip, resume.rsp), (delivery.frame.iret.rip, 0x9000));
            assert_ne!(resume.rflags & RFLAGS_INTERRUPT, 0, "hardware IF on");
        }
        // A handler may edit the frame to return with events off (or on).
        let delivery = deliver(&vcpu, &current, Event::Upcall, false).unwrap();
        let edited = IretFrame { rflags: delivery.frame.iret.rflags & !RFLAGS_INTERRUPT, ..delivery.frame.iret };
        assert!(iret(&edited, false).unwrap().2, "masked on return");
    }
}
